//! The write-ahead journal (data-model.md §1).
//!
//! Layout: `journal/<first seq, 20 digits>.wal` segments; `journal/BASE` holds the seq of the last compacted
//! snapshot (records at or below it are already in the legacy files); `journal/COMPACTING` is the marker of a
//! compaction between its first rename and its last.
//!
//! Record format — one line per acknowledged write:
//! `{"seq":N,"at":"<timestamp>","ops":[<Op>, …],"outbox":[<entry>, …]}` (`outbox` only in dual-json) TAB `<crc32c of the JSON text, 8 lower-case hex digits>` LF.
//! The JSON text never contains a raw TAB or LF (serde escapes them), so the split is unambiguous. A record is
//! valid only when it is complete and its checksum matches; a torn or bad record at the very end of the last
//! segment is a write that was never acknowledged and is cut off, anywhere else it is corruption.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fs::Fs;
use super::state::Op;
use crate::store::outbox::OutboxEntry;

#[derive(Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: String,
    pub ops: Vec<Op>,
    /// dual-json: the outbox entries of this write (store-modes.md §2), durable with it in the same record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<OutboxEntry>,
}

pub fn encode(record: &Record) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("journal records always serialise");
    let crc = crc32c::crc32c(&json);
    let mut line = json;
    line.extend_from_slice(format!("\t{crc:08x}\n").as_bytes());
    line
}

fn decode(line: &[u8]) -> Option<Record> {
    let tab = line.iter().rposition(|b| *b == b'\t')?;
    let (json, crc) = (&line[..tab], &line[tab + 1..]);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Segments sorted by their first seq.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn read_base(dir: &Path) -> io::Result<u64> {
    match fs::read_to_string(dir.join("BASE")) {
        Ok(s) => {
            s.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "journal/BASE is not a number"))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("{path}: corrupt journal record at line {line} (not the last record; refusing to guess)")]
    Corrupt { path: PathBuf, line: usize },
}

/// Reads every record after `base`, in seq order, truncating a torn tail of the last segment.
pub fn read_all(dir: &Path, base: u64) -> Result<Vec<Record>, ReplayError> {
    let segments = list_segments(dir).map_err(|err| ReplayError::Io { path: dir.to_owned(), err })?;
    let mut out = Vec::new();
    let last = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.iter().enumerate() {
        let io_err = |err| ReplayError::Io { path: path.clone(), err };
        let file = File::open(path).map_err(io_err)?;
        let mut reader = BufReader::new(file);
        let mut offset: u64 = 0;
        let mut line_no = 0;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let complete = buf.ends_with(b"\n");
            let record = if complete { decode(&buf[..buf.len() - 1]) } else { None };
            match record {
                Some(r) => {
                    offset += n as u64;
                    if r.seq > base {
                        out.push(r);
                    }
                }
                None => {
                    // Anything after a bad record means the bad one was not the torn tail of a crash.
                    let mut rest = Vec::new();
                    std::io::Read::read_to_end(&mut reader, &mut rest).map_err(io_err)?;
                    if i != last || !rest.is_empty() {
                        return Err(ReplayError::Corrupt { path: path.clone(), line: line_no });
                    }
                    tracing::warn!(path = %path.display(), line = line_no, "discarding torn journal tail (write never acknowledged)");
                    let f = OpenOptions::new().write(true).open(path).map_err(io_err)?;
                    f.set_len(offset).map_err(io_err)?;
                    f.sync_all().map_err(io_err)?;
                    break;
                }
            }
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// The compaction marker: which temporary files become which legacy files, and which files go away.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Marker {
    pub seq: u64,
    pub renames: Vec<(PathBuf, PathBuf)>,
    pub removes: Vec<PathBuf>,
}

pub const MARKER: &str = "COMPACTING";

/// Finishes the renames of an interrupted compaction from its marker (the temporary files were fsynced before
/// the marker was written), then records the new base and drops the covered segments.
pub fn finish_compaction(fs: &Fs, data_dir: &Path, dir: &Path, marker: &Marker) -> io::Result<()> {
    for (tmp, target) in &marker.renames {
        if tmp.exists() {
            fs.rename(tmp, target)?;
        }
    }
    for path in &marker.removes {
        fs.remove(path)?;
    }
    fs.sync_dir(data_dir)?;
    let act = super::format::activities_dir(data_dir);
    if act.exists() {
        fs.sync_dir(&act)?;
    }
    let tmp = dir.join(".BASE.tmp");
    fs.write_synced(&tmp, marker.seq.to_string().as_bytes())?;
    fs.rename(&tmp, &dir.join("BASE"))?;
    for (first, path) in list_segments(dir)? {
        if first <= marker.seq {
            fs.remove(&path)?;
        }
    }
    fs.remove(&dir.join(MARKER))?;
    fs.sync_dir(dir)
}

pub fn read_marker(dir: &Path) -> io::Result<Option<Marker>> {
    match fs::read(dir.join(MARKER)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("journal/{MARKER}: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
