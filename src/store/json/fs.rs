//! The JSON store's file-system seam. Every durable step goes through [`Fs`], so tests can inject an I/O error at
//! an exact point (a failing fsync, a full disk during compaction) and check that nothing is acknowledged that is
//! not on disk and that the legacy files stay the last good version.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsOp {
    JournalAppend,
    JournalSync,
    CompactWrite,
    CompactRename,
    SyncDir,
    Remove,
}

pub type FaultHook = Arc<dyn Fn(FsOp, &Path) -> io::Result<()> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Fs {
    hook: Option<FaultHook>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").field("faults", &self.hook.is_some()).finish()
    }
}

impl Fs {
    pub fn with_faults(hook: FaultHook) -> Fs {
        Fs { hook: Some(hook) }
    }

    fn check(&self, op: FsOp, path: &Path) -> io::Result<()> {
        match &self.hook {
            Some(h) => h(op, path),
            None => Ok(()),
        }
    }

    pub fn append(&self, file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.check(FsOp::JournalAppend, path)?;
        file.write_all(bytes)
    }

    pub fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(FsOp::JournalSync, path)?;
        file.sync_data()
    }

    /// Creates (or truncates) `path`, writes `bytes` and fsyncs the file.
    pub fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.check(FsOp::CompactWrite, path)?;
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FsOp::CompactRename, to)?;
        fs::rename(from, to)
    }

    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::SyncDir, dir)?;
        File::open(dir)?.sync_all()
    }

    pub fn remove(&self, path: &Path) -> io::Result<()> {
        self.check(FsOp::Remove, path)?;
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}
