//! The dual-json outbox's durable side (store-modes.md §2). The entries themselves travel inside the journal
//! records of their writes; this module keeps the pending set in memory and the progress files in
//! `<data dir>/outbox/`:
//! - `applied`: the highest contiguous applied `seq` (rewritten atomically; losing an update only means entries are
//!   applied again, which replay tolerates);
//! - `pending.jsonl`: the entries still pending when a compaction dropped the journal records that held them,
//!   rewritten (temporary file, fsync, rename) by every compaction before it drops anything.
//!
//! At start-up the pending set is `pending.jsonl` plus the entries of the replayed journal, minus those at or
//! below `applied`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::fs::Fs;
use crate::store::outbox::{FailureRecord, OutboxEntry, OutboxSource};

pub const PENDING_FILE: &str = "pending.jsonl";
pub const STATUS_FILE: &str = "status.jsonl";
pub const APPLIED_FILE: &str = "applied";

struct Inner {
    pending: BTreeMap<u64, OutboxEntry>,
    /// Highest seq made durable so far (pending or applied).
    highest: u64,
    /// What `applied` on disk says.
    persisted_applied: u64,
}

pub struct JsonOutbox {
    dir: PathBuf,
    fs: Fs,
    inner: Mutex<Inner>,
    notify: Arc<Notify>,
}

impl JsonOutbox {
    /// Loads the progress files; `replayed` are the entries of the journal records replayed at start-up.
    pub fn load(data_dir: &Path, fs: Fs, replayed: Vec<OutboxEntry>) -> std::io::Result<JsonOutbox> {
        let dir = data_dir.join("outbox");
        std::fs::create_dir_all(&dir)?;
        let applied = match std::fs::read_to_string(dir.join(APPLIED_FILE)) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a number", dir.join(APPLIED_FILE).display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let mut pending = BTreeMap::new();
        let mut highest = applied;
        let path = dir.join(PENDING_FILE);
        match std::fs::File::open(&path) {
            Ok(f) => {
                for (n, line) in BufReader::new(f).lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let e: OutboxEntry = serde_json::from_str(&line).map_err(|err| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{} line {}: {err}", path.display(), n + 1),
                        )
                    })?;
                    highest = highest.max(e.seq);
                    pending.insert(e.seq, e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for e in replayed {
            highest = highest.max(e.seq);
            pending.insert(e.seq, e);
        }
        pending.retain(|seq, _| *seq > applied);
        Ok(JsonOutbox {
            dir,
            fs,
            inner: Mutex::new(Inner { pending, highest, persisted_applied: applied }),
            notify: Arc::new(Notify::new()),
        })
    }

    /// The next seq to hand out.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().highest + 1
    }

    /// Entries whose journal record is now durable.
    pub fn push(&self, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for e in entries {
            inner.highest = inner.highest.max(e.seq);
            inner.pending.insert(e.seq, e);
        }
        drop(inner);
        self.notify.notify_one();
    }

    pub fn pending_snapshot(&self) -> Vec<OutboxEntry> {
        self.inner.lock().pending.values().cloned().collect()
    }

    /// Whether an aggregate has entries not yet applied (shadow reads skip such records).
    pub fn has_pending(&self, ordering_key: &str) -> bool {
        let inner = self.inner.lock();
        // A long backlog (the secondary is down) makes every comparison moot; don't scan it on each read.
        inner.pending.len() > 10_000 || inner.pending.values().any(|e| e.ordering_key == ordering_key)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().pending.is_empty()
    }

    /// Drops every pending entry (`dual-json → json` with `force`). Returns how many were discarded.
    pub fn discard_all(&self) -> usize {
        let mut inner = self.inner.lock();
        let n = inner.pending.len();
        inner.pending.clear();
        let highest = inner.highest;
        drop(inner);
        self.persist_applied(highest);
        n
    }

    /// Rewrites `pending.jsonl` with `entries` (called by compaction before it drops journal records).
    pub fn write_pending_file(&self, entries: &[OutboxEntry]) -> std::io::Result<()> {
        let path = self.dir.join(PENDING_FILE);
        if entries.is_empty() && !path.exists() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut bytes, e).expect("entries serialise");
            bytes.push(b'\n');
        }
        let tmp = self.dir.join(format!(".{PENDING_FILE}.tmp"));
        self.fs.write_synced(&tmp, &bytes)?;
        self.fs.rename(&tmp, &path)?;
        self.fs.sync_dir(&self.dir)
    }

    fn contiguous_applied(inner: &Inner) -> u64 {
        match inner.pending.keys().next() {
            Some(first) => first - 1,
            None => inner.highest,
        }
    }

    fn persist_applied(&self, value: u64) {
        let mut inner = self.inner.lock();
        if value <= inner.persisted_applied {
            return;
        }
        inner.persisted_applied = value;
        drop(inner);
        let tmp = self.dir.join(format!(".{APPLIED_FILE}.tmp"));
        let result =
            std::fs::write(&tmp, format!("{value}\n")).and_then(|_| std::fs::rename(&tmp, self.dir.join(APPLIED_FILE)));
        if let Err(e) = result {
            // Not fatal: the entries stay applied in the secondary and are only re-applied after a restart.
            tracing::warn!(error = %e, "cannot record outbox progress in outbox/applied");
        }
    }
}

#[async_trait::async_trait]
impl OutboxSource for JsonOutbox {
    async fn pending(&self, limit: usize) -> Vec<OutboxEntry> {
        self.inner.lock().pending.values().take(limit).cloned().collect()
    }

    async fn mark_applied(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let contiguous = {
            let mut inner = self.inner.lock();
            for s in seqs {
                inner.pending.remove(s);
            }
            Self::contiguous_applied(&inner)
        };
        self.persist_applied(contiguous);
    }

    fn depth(&self) -> (usize, Option<String>) {
        let inner = self.inner.lock();
        (inner.pending.len(), inner.pending.values().next().map(|e| e.at.clone()))
    }

    async fn record_failures(&self, failures: &[FailureRecord]) {
        let mut bytes = Vec::new();
        for f in failures {
            bytes.extend(serde_json::to_vec(f).expect("failure records serialise"));
            bytes.push(b'\n');
        }
        let (tmp, path) = (self.dir.join(format!("{STATUS_FILE}.tmp")), self.dir.join(STATUS_FILE));
        // Losing an update only restarts a backoff; the entries themselves are safe in the journal.
        if let Err(e) = self.fs.write_synced(&tmp, &bytes).and_then(|_| self.fs.rename(&tmp, &path)) {
            tracing::warn!(error = %e, path = %path.display(), "cannot record the outbox retry state");
        }
    }

    async fn load_failures(&self) -> Vec<FailureRecord> {
        let Ok(text) = std::fs::read_to_string(self.dir.join(STATUS_FILE)) else { return Vec::new() };
        let pending = self.inner.lock().pending.keys().copied().collect::<std::collections::HashSet<u64>>();
        text.lines()
            .filter_map(|l| serde_json::from_str::<FailureRecord>(l).ok())
            .filter(|f| pending.contains(&f.seq))
            .collect()
    }

    fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

/// The ids of records with outbox entries not yet applied, read from the files only (no lock needed, so a CLI can
/// ask while a dual-json server runs): `pending.jsonl` plus the entries of the journal records after `BASE`, minus
/// those at or below `applied`. `applied` may lag the server's memory by one replay pass, which can only report
/// too many records as pending, never too few.
pub fn pending_ids_on_disk(data_dir: &Path) -> Result<std::collections::HashSet<String>, String> {
    let journal_dir = data_dir.join("journal");
    let mut replayed = Vec::new();
    if journal_dir.is_dir() {
        let base = super::journal::read_base(&journal_dir).map_err(|e| format!("journal/BASE: {e}"))?;
        let records = super::journal::read_all(&journal_dir, base).map_err(|e| e.to_string())?;
        replayed.extend(records.into_iter().flat_map(|r| r.outbox));
    }
    let dir = data_dir.join("outbox");
    if !dir.is_dir() && replayed.is_empty() {
        return Ok(Default::default());
    }
    // Loading creates `outbox/` when missing; only do so when there is something to load.
    let outbox = JsonOutbox::load(data_dir, Fs::default(), replayed).map_err(|e| format!("outbox: {e}"))?;
    Ok(outbox.pending_snapshot().into_iter().map(|e| e.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::json::state::Op;

    fn entry(seq: u64) -> OutboxEntry {
        OutboxEntry::from_op(&Op::DelFile { id: format!("f{seq}") }, seq, 1, "2026-01-01T00:00:00.000Z")
    }

    #[tokio::test]
    async fn pending_is_pending_jsonl_plus_replayed_entries_minus_applied() {
        let dir = tempfile::tempdir().unwrap();
        let ob = JsonOutbox::load(dir.path(), Fs::default(), vec![]).unwrap();
        ob.push((1..=5).map(entry).collect());
        ob.write_pending_file(&ob.pending_snapshot()).unwrap();
        ob.mark_applied(&[1, 2, 4]).await;
        assert_eq!(std::fs::read_to_string(dir.path().join("outbox/applied")).unwrap().trim(), "2");
        // After a restart: 4 is pending again (only the contiguous prefix is recorded), re-applying is harmless.
        let ob = JsonOutbox::load(dir.path(), Fs::default(), vec![entry(6), entry(7)]).unwrap();
        let seqs: Vec<u64> = ob.pending(100).await.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6, 7]);
        assert_eq!(ob.next_seq(), 8);
        ob.mark_applied(&[3, 4, 5, 6, 7]).await;
        assert_eq!(ob.depth().0, 0);
        assert_eq!(std::fs::read_to_string(dir.path().join("outbox/applied")).unwrap().trim(), "7");
        assert_eq!(ob.next_seq(), 8, "seqs never go back, even with nothing pending");
    }

    #[test]
    fn discarding_records_everything_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let ob = JsonOutbox::load(dir.path(), Fs::default(), vec![entry(1), entry(2)]).unwrap();
        assert_eq!(ob.discard_all(), 2);
        let ob = JsonOutbox::load(dir.path(), Fs::default(), vec![entry(1), entry(2)]).unwrap();
        assert!(ob.is_empty());
    }

    #[test]
    fn a_corrupt_pending_file_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outbox")).unwrap();
        std::fs::write(dir.path().join("outbox/pending.jsonl"), "{\"seq\":1}\nnot json\n").unwrap();
        let err = JsonOutbox::load(dir.path(), Fs::default(), vec![]).err().unwrap();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// A failing entry's retry state survives a restart (`status.jsonl`); entries no longer pending are dropped.
    #[tokio::test]
    async fn failing_entries_keep_their_attempts_across_a_restart() {
        use crate::store::outbox::{ApplyError, OutboxTarget, Replayer};
        struct Refuses;
        #[async_trait::async_trait]
        impl OutboxTarget for Refuses {
            fn name(&self) -> &'static str {
                "refuses"
            }
            async fn apply(&self, _: &OutboxEntry) -> Result<(), ApplyError> {
                Err(ApplyError::Failed("value refused by the secondary".into()))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("outbox").join(STATUS_FILE);
        let attempts = |path: &Path| -> u32 {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| serde_json::from_str::<FailureRecord>(l).ok()))
                .map_or(0, |f| f.attempts)
        };
        let ob = Arc::new(JsonOutbox::load(dir.path(), Fs::default(), vec![]).unwrap());
        ob.push(vec![entry(1)]);
        let r = Replayer::start(ob.clone(), Arc::new(Refuses), std::time::Duration::from_millis(20));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while attempts(&status) < 3 {
            assert!(std::time::Instant::now() < deadline, "the failures were never recorded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        r.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = attempts(&status);
        let line: FailureRecord =
            serde_json::from_str(std::fs::read_to_string(&status).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!((line.seq, line.last_error.as_str()), (1, "value refused by the secondary"));

        // Restarted: the counting goes on from there instead of starting at 1 again.
        let ob = Arc::new(JsonOutbox::load(dir.path(), Fs::default(), vec![entry(1), entry(2)]).unwrap());
        let restored = ob.load_failures().await;
        assert_eq!(restored.iter().map(|f| (f.seq, f.attempts)).collect::<Vec<_>>(), vec![(1, before)]);
        let r = Replayer::start(ob.clone(), Arc::new(Refuses), std::time::Duration::from_millis(20));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while attempts(&status) <= before {
            assert!(std::time::Instant::now() < deadline, "the restored entry was not retried");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        r.stop();
        // An entry that is no longer pending has no retry state to restore.
        ob.mark_applied(&[1, 2]).await;
        assert!(ob.load_failures().await.is_empty());
    }
}
