//! The single-instance lock of a data dir (`<data dir>/.lock`, an flock holding the owner's pid).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data dir {dir} is locked by another fluxstudio instance (pid {pid}); json, dual-json and dual-postgres run a single instance")]
    Held { dir: String, pid: String },
    #[error("cannot open {path}: {err}")]
    Io { path: String, err: std::io::Error },
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(".lock");
        let io = |err| LockError::Io { path: path.display().to_string(), err };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the kernel call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held { dir: data_dir.display().to_string(), pid: pid.trim().to_owned() });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// Whether another process holds the lock right now (used by CLI commands to pick the control socket).
    pub fn is_held(data_dir: &Path) -> bool {
        let path = data_dir.join(".lock");
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            return false;
        };
        // SAFETY: as above; a successful probe is released at once by closing the descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        rc != 0
    }
}
