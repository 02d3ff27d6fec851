//! Persisted desired state: a SQLite database, `state.db`, in the state
//! directory (`/var/lib/netd` by default).
//!
//! One row per network and per guest (JSON documents of the model's types,
//! so the model can grow without a schema change). A save names the network
//! it changed and commits only the rows that differ from what was last
//! written, as one transaction, durable when it returns; its cost is that
//! of one network, not of the whole state.
//!
//! - `rows`: the state as rows and the changes between two states (pure);
//! - `db`: the SQLite file;
//! - `lock`: one daemon per state directory;
//! - `json_file`: the JSON file older netd versions wrote, imported once.

mod db;
pub mod json_file;
mod lock;
pub mod rows;

use std::{
    fs::{self, DirBuilder},
    io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

pub use lock::{LOCK_FILE, StoreLock};

use self::{
    db::Db,
    json_file::{IMPORTED_STATE_FILE, JsonError, LEGACY_STATE_FILE},
    rows::{Change, Rows},
};
use crate::model::State;

/// The database inside the store's directory.
pub const STATE_DB: &str = "state.db";
/// How many earlier databases the daemon keeps, one per start and per
/// stop: `state.db.1` is the state the daemon last started or stopped on,
/// up to `state.db.3`. Each is a state the daemon ran on, so each is a good
/// state to roll back to (`netd state restore`).
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
        "cannot open state database {}: {error}: if it is damaged, stop netd and roll back with \
         `netd state restore {0}.1` (.2 and .3 are older); netd never replaces it on its own",
        path.display()
    )]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },

    #[error(
        "state database {} holds a record netd cannot read ({what}: {error}): stop netd and roll \
         back with `netd state restore {0}.1` (.2 and .3 are older); netd never replaces it on \
         its own",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        what: String,
        error: serde_json::Error,
    },

    #[error(
        "state file {} from an older netd cannot be imported: {error}: correct it, or move it \
         aside and start netd without it",
        path.display()
    )]
    Import { path: PathBuf, error: JsonError },

    #[error("cannot serialize the state: {error}: this is a bug in netd, please report it")]
    Serialize { error: serde_json::Error },

    #[error(
        "cannot save state to {}: {error}: check free space and permissions of the state \
         directory; the previous state is intact",
        path.display()
    )]
    Write {
        path: PathBuf,
        error: rusqlite::Error,
    },

    #[error(
        "cannot {step} {}: {error}: check free space and permissions of the state directory",
        path.display()
    )]
    File {
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
pub struct Store {
    dir: PathBuf,
    /// None until the first save when there was no database. Behind a
    /// mutex only so that the store can be shared between threads (a
    /// connection is `Send`, not `Sync`); the service's lock already
    /// serialises its use.
    db: Mutex<Option<Db>>,
    /// What the database holds, to diff the next save against.
    written: Rows,
    /// Whether there was no saved state at all when the store was opened.
    fresh: bool,
}

impl Store {
    /// The store in `dir`: its database if there is one, after importing a
    /// `state.json` of an older netd once (kept as `state.json.imported`).
    /// Creates nothing when there is no state at all.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        let path = dir.join(STATE_DB);
        if !path.exists() {
            import_legacy(&dir)?;
        }
        if !path.exists() {
            return Ok(Store {
                dir,
                db: Mutex::new(None),
                written: Rows::default(),
                fresh: true,
            });
        }
        let db = Db::open(&path).map_err(|error| StoreError::Open {
            path: path.clone(),
            error,
        })?;
        let written = db
            .read()
            .map_err(|error| StoreError::Open { path, error })?;
        Ok(Store {
            dir,
            db: Mutex::new(Some(db)),
            written,
            fresh: false,
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database (`dir/state.db`).
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(STATE_DB)
    }

    /// The `n`th earlier database (1 = the newest), see [`BACKUPS`].
    pub fn backup_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{STATE_DB}.{n}"))
    }

    /// The earlier databases that exist, newest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        (1..=BACKUPS)
            .map(|n| self.backup_path(n))
            .filter(|path| path.exists())
            .collect()
    }

    /// The saved state, or `None` if nothing was ever saved here. A record
    /// that does not parse is an error, not a state without it: starting on
    /// less would make the daemon tear down what is missing.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        if self.fresh {
            return Ok(None);
        }
        rows_to_state(&self.written, &self.db_path()).map(Some)
    }

    /// Saves what changed in network `name` (added, changed or removed) and
    /// the state's settings; other networks' rows are not looked at. Durable
    /// when it returns Ok; on failure the database is as before.
    pub fn save_network(&mut self, state: &State, name: &str) -> Result<(), StoreError> {
        let changes = rows::network_changes(&self.written, state, name)
            .map_err(|error| StoreError::Serialize { error })?;
        self.commit(&changes)
    }

    /// Saves every difference between `state` and what was last written
    /// (for changes that touch every network, like `cleanup`).
    pub fn save(&mut self, state: &State) -> Result<(), StoreError> {
        let changes = rows::all_changes(&self.written, state)
            .map_err(|error| StoreError::Serialize { error })?;
        self.commit(&changes)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() && !self.fresh {
            return Ok(());
        }
        let path = self.db_path();
        let db = self
            .db
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if db.is_none() {
            create_dir(&self.dir)?;
            let opened = Db::open(&path).map_err(|error| StoreError::Open {
                path: path.clone(),
                error,
            })?;
            *db = Some(opened);
            self.fresh = false;
        }
        db.as_mut()
            .expect("opened above")
            .commit(changes)
            .map_err(|error| StoreError::Write { path, error })?;
        rows::apply(&mut self.written, changes);
        Ok(())
    }

    /// Keeps a copy of the database as `state.db.1`, shifting older copies
    /// up to `state.db.3`. The daemon calls it once the state it starts on
    /// has passed its checks.
    pub fn keep_backup(&self) -> Result<(), StoreError> {
        let db = self
            .db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(db) = db.as_ref() else {
            return Ok(());
        };
        let temp = self.dir.join(format!("{STATE_DB}.backup.tmp"));
        remove_if_present(&temp)?;
        db.copy_to(&temp).map_err(|error| StoreError::Write {
            path: temp.clone(),
            error,
        })?;
        for n in (1..BACKUPS).rev() {
            let from = self.backup_path(n);
            if from.exists() {
                rename(&from, &self.backup_path(n + 1))?;
            }
        }
        rename(&temp, &self.backup_path(1))
    }

    /// Replaces the database in `dir` with one holding `state` (`netd state
    /// restore`, with the daemon stopped and the lock held).
    pub fn replace(dir: &Path, state: &State) -> Result<(), StoreError> {
        create_dir(dir)?;
        let path = dir.join(STATE_DB);
        let temp = dir.join(format!("{STATE_DB}.restore.tmp"));
        remove_if_present(&temp)?;
        write_new_db(&temp, state)?;
        // The old database's log must not be replayed onto the new one.
        for suffix in ["-wal", "-shm"] {
            remove_if_present(&dir.join(format!("{STATE_DB}{suffix}")))?;
        }
        rename(&temp, &path)
    }

    /// The state in a database or JSON state file at `path`, unchecked.
    pub fn read_file(path: &Path) -> Result<State, StoreError> {
        let mut magic = [0u8; 16];
        let is_sqlite = fs::File::open(path)
            .and_then(|mut file| io::Read::read_exact(&mut file, &mut magic))
            .is_ok()
            && &magic == b"SQLite format 3\0";
        if is_sqlite {
            let open_err = |error| StoreError::Open {
                path: path.to_owned(),
                error,
            };
            let rows = Db::open_read_only(path)
                .and_then(|db| db.read())
                .map_err(open_err)?;
            return rows_to_state(&rows, path);
        }
        match json_file::read(path) {
            Ok(Some(state)) => Ok(state),
            Ok(None) => Err(StoreError::Import {
                path: path.to_owned(),
                error: JsonError::Read(io::ErrorKind::NotFound.into()),
            }),
            Err(error) => Err(StoreError::Import {
                path: path.to_owned(),
                error,
            }),
        }
    }
}

/// The state the rows hold.
fn rows_to_state(rows: &Rows, path: &Path) -> Result<State, StoreError> {
    let corrupt = |what: String| {
        move |error| StoreError::Corrupt {
            path: path.to_owned(),
            what,
            error,
        }
    };
    let mut state = State::default();
    for (name, network) in &rows.networks {
        let net = rows::network_from_docs(
            &network.doc,
            network.guests.values().map(String::as_str),
            &network.ports,
        )
        .map_err(corrupt(format!("network {name:?}")))?;
        state.networks.insert(name.clone(), net);
    }
    if let Some(cursor) = rows.meta.get(rows::META_UPLINK_CURSOR) {
        let cursor = serde_json::from_str(cursor).map_err(corrupt("the uplink cursor".into()))?;
        state.uplink_cursor = Some(cursor);
    }
    Ok(state)
}

/// Imports `dir/state.json` into a new `dir/state.db`, if there is such a
/// file: the database is built aside and renamed into place, then the JSON
/// file is renamed, so a crash at any point imports again or not at all.
fn import_legacy(dir: &Path) -> Result<(), StoreError> {
    let legacy = dir.join(LEGACY_STATE_FILE);
    let state = match json_file::read(&legacy) {
        Ok(Some(state)) => state,
        Ok(None) => return Ok(()),
        Err(error) => {
            return Err(StoreError::Import {
                path: legacy,
                error,
            });
        }
    };
    let temp = dir.join(format!("{STATE_DB}.import.tmp"));
    remove_if_present(&temp)?;
    write_new_db(&temp, &state)?;
    rename(&temp, &dir.join(STATE_DB))?;
    rename(&legacy, &dir.join(IMPORTED_STATE_FILE))?;
    tracing::info!(
        "imported {} into {}; the file is kept as {IMPORTED_STATE_FILE}",
        legacy.display(),
        dir.join(STATE_DB).display()
    );
    Ok(())
}

/// A new database at `path` holding `state`, committed and closed.
fn write_new_db(path: &Path, state: &State) -> Result<(), StoreError> {
    let write_err = |error| StoreError::Write {
        path: path.to_owned(),
        error,
    };
    let mut db = Db::open(path).map_err(write_err)?;
    let changes = rows::all_changes(&Rows::default(), state)
        .map_err(|error| StoreError::Serialize { error })?;
    db.commit(&changes).map_err(write_err)?;
    // Closing checkpoints the log into the file, so the file alone is the
    // whole database when it is renamed.
    drop(db);
    Ok(())
}

/// Renames durably: the directory entry is synced too.
fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    let file_err = |step| {
        move |error| StoreError::File {
            step,
            path: to.to_owned(),
            error,
        }
    };
    fs::rename(from, to).map_err(file_err("rename into place"))?;
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(file_err("sync the directory of"))
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::File {
            step: "remove",
            path: path.to_owned(),
            error,
        }),
    }
}

/// Creates the state directory if missing; 0700 because the state names
/// every network and guest on the host.
fn create_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| StoreError::CreateDir {
            path: dir.to_owned(),
            error,
        })
}

#[cfg(test)]
mod tests;
