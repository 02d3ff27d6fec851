//! The SQLite file: its schema, reading every row, committing changes.
//!
//! WAL journal and `synchronous = FULL`: a commit is one append to the log
//! and one fsync, durable when it returns; a crash at any moment leaves the
//! last committed transaction, never part of one.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::rows::{Change, NetworkRows, Rows};

/// `PRAGMA user_version` of the schema below. A file of version 1 (before
/// port rows: a guest's document held its ports) gets the ports table at
/// open; a file with another version was written by another netd; it is
/// refused, never rewritten.
pub const SCHEMA_VERSION: i64 = 2;

/// Version 2's addition: a row per published port, in publication order
/// (rowid: a new row's is above every other's).
const PORTS_TABLE: &str = "
CREATE TABLE ports (
    network TEXT NOT NULL,
    guest   TEXT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (network, guest, doc)
) STRICT;
";

const SCHEMA: &str = "
CREATE TABLE networks (
    name TEXT PRIMARY KEY NOT NULL,
    doc  TEXT NOT NULL
) STRICT;
CREATE TABLE guests (
    network TEXT NOT NULL,
    name    TEXT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (network, name)
) STRICT;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
";

/// An open state database.
pub struct Db {
    conn: Connection,
    /// False for a version-1 file opened read-only (it has no port rows).
    ports_table: bool,
}

impl Db {
    /// Opens `path`, creating it with the schema if it does not exist.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A reader (`netd state dump` in another process, a backup) may hold
        // the file for a moment; wait for it rather than fail a request.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let db = Db {
            conn,
            ports_table: true,
        };
        match db.version()? {
            0 => db.create_schema()?,
            1 => db.add_ports_table()?,
            SCHEMA_VERSION => {}
            other => {
                return Err(foreign_schema(other));
            }
        }
        Ok(db)
    }

    /// Opens `path` for reading only; never creates or changes it.
    pub fn open_read_only(path: &Path) -> rusqlite::Result<Db> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut db = Db {
            conn,
            ports_table: true,
        };
        match db.version()? {
            1 => db.ports_table = false,
            SCHEMA_VERSION => {}
            other => return Err(foreign_schema(other)),
        }
        Ok(db)
    }

    fn version(&self) -> rusqlite::Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
    }

    fn create_schema(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} {PORTS_TABLE} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
    }

    /// Version 1 to 2 in one transaction: its guests' documents keep their
    /// ports until the next save of their network moves them to rows.
    fn add_ports_table(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {PORTS_TABLE} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
    }

    /// Every row.
    pub fn read(&self) -> rusqlite::Result<Rows> {
        let mut rows = Rows::default();
        let mut networks = self.conn.prepare("SELECT name, doc FROM networks")?;
        for row in networks.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
            let (name, doc): (String, String) = row?;
            rows.networks.insert(
                name,
                NetworkRows {
                    doc,
                    ..NetworkRows::default()
                },
            );
        }
        let mut guests = self.conn.prepare("SELECT network, name, doc FROM guests")?;
        for row in guests.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))? {
            let (network, name, doc): (String, String, String) = row?;
            rows.networks
                .entry(network)
                .or_default()
                .guests
                .insert(name, doc);
        }
        let ports_query = if self.ports_table {
            "SELECT network, guest, doc FROM ports ORDER BY rowid"
        } else {
            "SELECT '', '', '' WHERE 0"
        };
        let mut ports = self.conn.prepare(ports_query)?;
        for row in ports.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))? {
            let (network, guest, doc): (String, String, String) = row?;
            let forward = serde_json::from_str(&doc).map_err(|err| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    err.into(),
                )
            })?;
            rows.networks
                .entry(network)
                .or_default()
                .ports
                .entry(guest)
                .or_default()
                .push(forward);
        }
        let mut meta = self.conn.prepare("SELECT key, value FROM meta")?;
        for row in meta.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
            let (key, value): (String, String) = row?;
            rows.meta.insert(key, value);
        }
        Ok(rows)
    }

    /// Commits `changes` as one transaction: all of them or none.
    pub fn commit(&mut self, changes: &[Change]) -> rusqlite::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for change in changes {
            match change {
                Change::PutNetwork { name, doc } => tx
                    .prepare_cached("INSERT OR REPLACE INTO networks (name, doc) VALUES (?1, ?2)")?
                    .execute(params![name, doc])?,
                Change::DeleteNetwork { name } => {
                    tx.prepare_cached("DELETE FROM ports WHERE network = ?1")?
                        .execute(params![name])?;
                    tx.prepare_cached("DELETE FROM guests WHERE network = ?1")?
                        .execute(params![name])?;
                    tx.prepare_cached("DELETE FROM networks WHERE name = ?1")?
                        .execute(params![name])?
                }
                Change::PutGuest { network, name, doc } => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO guests (network, name, doc) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![network, name, doc])?,
                Change::DeleteGuest { network, name } => {
                    tx.prepare_cached("DELETE FROM ports WHERE network = ?1 AND guest = ?2")?
                        .execute(params![network, name])?;
                    tx.prepare_cached("DELETE FROM guests WHERE network = ?1 AND name = ?2")?
                        .execute(params![network, name])?
                }
                Change::PutPort {
                    network,
                    guest,
                    doc,
                    ..
                } => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO ports (network, guest, doc) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![network, guest, doc])?,
                Change::DeletePort {
                    network,
                    guest,
                    doc,
                    ..
                } => tx
                    .prepare_cached(
                        "DELETE FROM ports WHERE network = ?1 AND guest = ?2 AND doc = ?3",
                    )?
                    .execute(params![network, guest, doc])?,
                Change::PutMeta { key, value } => tx
                    .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                    .execute(params![key, value])?,
            };
        }
        tx.commit()
    }

    /// A consistent copy of the database at `path` (which must not exist),
    /// taken while the daemon runs.
    pub fn copy_to(&self, path: &Path) -> rusqlite::Result<()> {
        self.conn.execute(
            "VACUUM INTO ?1",
            params![path.to_string_lossy().into_owned()],
        )?;
        Ok(())
    }
}

/// The error for a database of another schema version.
fn foreign_schema(version: i64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
        Some(format!(
            "schema version {version}, this netd knows {SCHEMA_VERSION}: it was written by \
             another netd version"
        )),
    )
}
