//! Persisted desired state: one pretty JSON file, `state.json`, in the state
//! directory (`/var/lib/netd` by default).
//!
//! Saves are atomic (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory): a crash at any point leaves either the old or
//! the new complete file, never a mix. The store is generic over the state
//! type, so the model can change without touching this module.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Seek, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};
use serde::{Serialize, de::DeserializeOwned};

/// The state file inside the store's directory.
pub const STATE_FILE: &str = "state.json";
/// Where a save writes before renaming over [`STATE_FILE`]. Never read: a
/// leftover one is a save that crashed before committing.
pub const TEMP_FILE: &str = "state.json.tmp";
/// The file [`Store::lock`] locks.
pub const LOCK_FILE: &str = "lock";
/// How many previous states a save keeps beside [`STATE_FILE`], newest
/// first: `state.json.1` is the state before the last change, up to
/// `state.json.3`. Every one of them was a state the daemon ran on, so each
/// is a good state to roll back to.
pub const BACKUPS: usize = 3;

/// What went wrong with the state directory, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create state directory {}: {error}: check that its parent is writable by netd \
         (it runs as root), or set state_dir in the config",
        path.display()
    )]
    CreateDir { path: PathBuf, error: io::Error },

    #[error(
        "cannot read state file {}: {error}: make it readable by netd (it runs as root)",
        path.display()
    )]
    Read { path: PathBuf, error: io::Error },

    #[error(
        "state file {} is corrupt: {error}: roll back to the previous state (cp {0}.1 {0}; .2 \
         and .3 are older), or move it aside (mv {0} {0}.bad) and start with \
         `netd daemon --adopt-empty-state`, which removes every network netd had; netd never \
         replaces it on its own",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },

    #[error("cannot serialize the state: {error}: this is a bug in netd, please report it")]
    Serialize { error: serde_json::Error },

    #[error(
        "cannot save state: {step} {} failed: {error}: check free space and permissions of the \
         state directory; the previous state file is intact",
        path.display()
    )]
    Write {
        /// The step that failed, e.g. "fsync of".
        step: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    #[error(
        "another netd daemon holds {} ({}): stop it, or give this daemon its own state_dir",
        path.display(),
        pid_text(*pid)
    )]
    Locked { path: PathBuf, pid: Option<i32> },

    #[error(
        "cannot lock {}: {error}: check that the state directory is writable by netd",
        path.display()
    )]
    Lock { path: PathBuf, error: io::Error },
}

fn pid_text(pid: Option<i32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

/// The state directory: where the desired state is saved and loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir`; nothing is touched until the first call.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed state file (`dir/state.json`).
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The `n`th previous state (1 = the one before the last save), see
    /// [`BACKUPS`].
    pub fn backup_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{STATE_FILE}.{n}"))
    }

    /// The previous states that exist, newest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        (1..=BACKUPS)
            .map(|n| self.backup_path(n))
            .filter(|path| path.exists())
            .collect()
    }

    /// The last saved state, or `None` if nothing was ever saved here. A file
    /// that does not parse is an error, not `None`: starting empty would make
    /// the daemon tear down every network it had.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        let path = self.state_path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StoreError::Read { path, error }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|error| StoreError::Corrupt { path, error })
    }

    /// Replaces the saved state with `state`, atomically and durably: when
    /// this returns Ok the new state survives a power cut; when it fails or
    /// the machine crashes, the old state file is still complete.
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), StoreError> {
        let mut json =
            serde_json::to_vec_pretty(state).map_err(|error| StoreError::Serialize { error })?;
        json.push(b'\n');
        self.create_dir()?;
        let temp = self.dir.join(TEMP_FILE);
        write_synced(&temp, &json)?;
        let path = self.state_path();
        self.rotate_backups()?;
        fs::rename(&temp, &path).map_err(|error| StoreError::Write {
            step: "renaming the new state over",
            path: path.clone(),
            error,
        })?;
        // The rename is only durable once the directory entry is on disk.
        sync_dir(&self.dir)
    }

    /// Takes an exclusive lock on `dir/lock` for as long as the returned
    /// guard lives, so two daemons never share a state directory. Does not
    /// wait: a second daemon should fail at once and say who holds the lock.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        self.create_dir()?;
        let path = self.dir.join(LOCK_FILE);
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

    /// Shifts `state.json.1..` one up (dropping the oldest) and makes the
    /// current state `state.json.1` (a hard link, so `state.json` stays in
    /// place until the rename over it). A crash at any point leaves
    /// `state.json` complete.
    fn rotate_backups(&self) -> Result<(), StoreError> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(());
        }
        let step_err = |step, path: &Path| {
            let path = path.to_owned();
            move |error| StoreError::Write { step, path, error }
        };
        for n in (1..BACKUPS).rev() {
            let from = self.backup_path(n);
            if from.exists() {
                let to = self.backup_path(n + 1);
                fs::rename(&from, &to).map_err(step_err("keeping a previous state as", &to))?;
            }
        }
        let newest = self.backup_path(1);
        match fs::remove_file(&newest) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(step_err("removing", &newest)(error)),
        }
        fs::hard_link(&path, &newest).map_err(step_err("keeping the current state as", &newest))
    }

    /// Creates the state directory if missing; 0700 because the state names
    /// every network and guest on the host.
    fn create_dir(&self) -> Result<(), StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|error| StoreError::CreateDir {
                path: self.dir.clone(),
                error,
            })
    }
}

/// Holds the state directory's lock; dropping it releases the lock. The lock
/// file itself stays: deleting it would let a daemon that opened the old file
/// and one that creates a new one both "hold" the lock.
#[derive(Debug)]
pub struct StoreLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StoreLock {
    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to a fresh `path` (mode 0600) and fsyncs it, so that the
/// rename that follows never exposes a partly written file. A leftover file
/// from a crashed save is truncated and overwritten.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let write_err = |step| {
        move |error| StoreError::Write {
            step,
            path: path.to_owned(),
            error,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err("creating"))?;
    file.write_all(bytes).map_err(write_err("writing"))?;
    file.sync_all().map_err(write_err("fsync of"))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let sync_err = |error| StoreError::Write {
        step: "fsync of the directory",
        path: dir.to_owned(),
        error,
    };
    File::open(dir)
        .map_err(sync_err)?
        .sync_all()
        .map_err(sync_err)
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
    use std::{collections::BTreeMap, os::unix::fs::PermissionsExt};

    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        networks: BTreeMap<String, u32>,
    }

    fn state(pairs: &[(&str, u32)]) -> State {
        let networks = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        State { networks }
    }

    /// A store in a not yet existing subdirectory, so that creation is tested.
    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        (dir, store)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_then_load_round_trips() {
        let (_dir, store) = temp_store();
        store.save(&state(&[("a", 1), ("b", 2)])).unwrap();
        assert_eq!(
            store.load::<State>().unwrap(),
            Some(state(&[("a", 1), ("b", 2)]))
        );
        store.save(&state(&[("c", 3)])).unwrap();
        assert_eq!(store.load::<State>().unwrap(), Some(state(&[("c", 3)])));
    }

    #[test]
    fn save_creates_private_dir_and_file_without_leftovers() {
        let (_dir, store) = temp_store();
        store.save(&state(&[("a", 1)])).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.state_path()), 0o600);
        assert!(!store.dir().join(TEMP_FILE).exists());
        let text = fs::read_to_string(store.state_path()).unwrap();
        assert!(
            text.contains("\n  \"networks\""),
            "pretty JSON expected: {text}"
        );
    }

    #[test]
    fn load_of_missing_state_is_none() {
        let (_dir, store) = temp_store();
        assert_eq!(store.load::<State>().unwrap(), None);
        fs::create_dir_all(store.dir()).unwrap();
        assert_eq!(store.load::<State>().unwrap(), None);
    }

    #[test]
    fn stale_temp_file_is_ignored_and_overwritten() {
        let (_dir, store) = temp_store();
        store.save(&state(&[("old", 1)])).unwrap();
        // A save that crashed after writing half of its temporary file.
        let temp = store.dir().join(TEMP_FILE);
        fs::write(&temp, b"{\"networks\": {\"half").unwrap();
        assert_eq!(store.load::<State>().unwrap(), Some(state(&[("old", 1)])));
        store.save(&state(&[("new", 2)])).unwrap();
        assert_eq!(store.load::<State>().unwrap(), Some(state(&[("new", 2)])));
        assert!(!temp.exists());
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let (_dir, store) = temp_store();
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.state_path(), b"{\"networks\": ").unwrap();
        let err = store.load::<State>().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        let message = err.to_string();
        let path = store.state_path().display().to_string();
        assert!(
            message.contains(&format!("state file {path} is corrupt")),
            "{message}"
        );
        assert!(message.contains("move it aside"), "{message}");
        // Still there, untouched.
        assert_eq!(fs::read(store.state_path()).unwrap(), b"{\"networks\": ");
    }

    #[test]
    fn saves_keep_the_last_three_states_to_roll_back_to() {
        let (_dir, store) = temp_store();
        for n in 0..6 {
            store.save(&state(&[("n", n)])).unwrap();
        }
        assert_eq!(store.load::<State>().unwrap(), Some(state(&[("n", 5)])));
        let backups = store.backups();
        assert_eq!(backups.len(), BACKUPS);
        for (i, path) in backups.iter().enumerate() {
            let back: State = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
            assert_eq!(back, state(&[("n", 4 - i as u32)]), "{}", path.display());
            assert_eq!(mode(path), 0o600);
        }
        assert!(!store.dir().join(format!("{STATE_FILE}.4")).exists());
    }

    #[test]
    fn second_lock_fails_while_the_first_is_held() {
        let (_dir, store) = temp_store();
        let first = store.lock().unwrap();
        assert_eq!(first.path(), store.dir().join(LOCK_FILE));
        let err = store.lock().unwrap_err();
        let message = err.to_string();
        let expected = format!(
            "another netd daemon holds {} (pid {})",
            first.path().display(),
            std::process::id()
        );
        assert!(message.starts_with(&expected), "{message}");
        drop(first);
        let again = store.lock().unwrap();
        let pid = fs::read_to_string(again.path()).unwrap();
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
