//! One control plane per SQLite data dir. Two processes scheduling the same SQLite database would
//! each mark the other's running trials interrupted at start, dispatch the same studies twice and
//! sweep each other's model files; SQLite has no session lock to stop them (PostgreSQL has the
//! leader lock, `leader.rs`). So the control plane holds an exclusive `flock` on
//! `<data-dir>/control.lock` from before it opens the database until it has closed it; the kernel
//! drops the lock when the process ends, however it ends. The file says who holds it, for the
//! refusal's message; its content is never trusted for anything else.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "control.lock";

/// Held for as long as this control plane uses the data dir; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another control plane is already running on the data dir {dir} ({holder}); stop it first, \
         or give this one another --data-dir (TANREN_DATA_DIR)"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock the data dir {dir} ({path}): {source}")]
    Io {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Take the data dir's lock, or say who holds it. `serving` is written into the lock file for the
/// next one to read.
pub fn acquire(data_dir: &Path, serving: &str) -> Result<DataDirLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        dir: data_dir.to_path_buf(),
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let said = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = match said.trim() {
                "" => "a process that has not said who it is yet".to_string(),
                s => s.to_string(),
            };
            return Err(LockError::Held {
                dir: data_dir.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let who = format!(
        "pid {} on host {}, serving {serving}\n",
        std::process::id(),
        match host.trim() {
            "" => "?",
            h => h,
        }
    );
    file.set_len(0)
        .and_then(|()| file.write_all(who.as_bytes()))
        .and_then(|()| file.flush())
        .map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_taker_is_refused_with_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("control");
        let first = acquire(&data, "http://127.0.0.1:1").unwrap();
        let err = acquire(&data, "http://127.0.0.1:2").unwrap_err().to_string();
        assert!(err.contains(&data.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("http://127.0.0.1:1"),
            "{err}"
        );
        drop(first);
        let _again = acquire(&data, "http://127.0.0.1:2").unwrap();
        let said = std::fs::read_to_string(data.join(LOCK_FILE)).unwrap();
        assert!(said.contains("http://127.0.0.1:2"), "{said}");
    }
}
