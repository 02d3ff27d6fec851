//! The state directory's lock: one daemon per state directory.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use super::{StoreError, create_dir};

/// The file [`StoreLock::take`] locks.
pub const LOCK_FILE: &str = "lock";

/// Holds the state directory's lock; dropping it releases the lock. The lock
/// file itself stays: deleting it would let a daemon that opened the old file
/// and one that creates a new one both "hold" the lock.
#[derive(Debug)]
pub struct StoreLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StoreLock {
    /// Takes an exclusive lock on `dir/lock` for as long as the returned
    /// guard lives, so two daemons never share a state directory. A live
    /// holder makes a second daemon fail at once and say who holds the
    /// lock; a holder that is exiting (killed, its main thread a zombie
    /// while its other threads finish, still holding the file) is waited
    /// for, up to [`EXITING_HOLDER_WAIT`].
    pub fn take(dir: &Path) -> Result<StoreLock, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match Self::try_take(dir) {
                Err(StoreError::Locked { pid: Some(pid), .. })
                    if holder_is_exiting(pid) && started.elapsed() < EXITING_HOLDER_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                taken => return taken,
            }
        }
    }

    fn try_take(dir: &Path) -> Result<StoreLock, StoreError> {
        create_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let lock_err = |error| StoreError::Lock {
            path: path.clone(),
            error,
        };
        // No O_TRUNC: the holder's pid must survive until we own the lock.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(lock_err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let pid = read_pid(&mut file);
                return Err(StoreError::Locked { path, pid });
            }
            Err((_, errno)) => return Err(lock_err(io::Error::from(errno))),
        };
        write_pid(&mut file).map_err(lock_err)?;
        Ok(StoreLock { _file: file, path })
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long a daemon waits for an exiting holder of the lock.
pub const EXITING_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether process `pid` is exiting: gone, or a zombie (state Z or X in
/// `/proc/PID/stat`).
fn holder_is_exiting(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => exiting_in_stat(&stat),
        Err(_) => true,
    }
}

/// The state field of a `/proc/PID/stat` line says the process is exiting
/// (the name before it, in parentheses, may hold spaces and parentheses).
fn exiting_in_stat(stat: &str) -> bool {
    let after_name = stat.rfind(')').map_or("", |end| &stat[end + 1..]);
    matches!(after_name.split_whitespace().next(), Some("Z" | "X"))
}

/// The pid the lock's holder wrote, if it got that far; only used in the
/// error message, so anything unreadable is just "unknown".
fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_holder_is_exiting_a_running_one_is_not() {
        assert!(exiting_in_stat("17932 (netd) Z 1 17932 17932 0 -1"));
        assert!(exiting_in_stat("17932 (a (b) c) X 1 2 3"));
        assert!(!exiting_in_stat("17932 (netd) S 1 17932 17932 0 -1"));
        assert!(!exiting_in_stat("17932 (Z) R 1"));
        assert!(!holder_is_exiting(std::process::id() as i32));
    }

    #[test]
    fn second_lock_fails_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let first = StoreLock::take(dir.path()).unwrap();
        assert_eq!(first.path(), dir.path().join(LOCK_FILE));
        let message = StoreLock::take(dir.path()).unwrap_err().to_string();
        let expected = format!(
            "another netd daemon holds {} (pid {})",
            first.path().display(),
            std::process::id()
        );
        assert!(message.starts_with(&expected), "{message}");
        drop(first);
        let again = StoreLock::take(dir.path()).unwrap();
        let pid = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }

    #[test]
    fn lock_without_a_pid_says_unknown() {
        let message = StoreError::Locked {
            path: PathBuf::from("/var/lib/netd/lock"),
            pid: None,
        }
        .to_string();
        assert!(
            message.starts_with("another netd daemon holds /var/lib/netd/lock (pid unknown)"),
            "{message}"
        );
    }
}
