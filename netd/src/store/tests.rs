use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::model::test_support::{guest, network};

/// A store in a not yet existing subdirectory, so that creation is tested.
fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    (dir, state)
}

fn sample() -> State {
    let mut web = network("web", "172.18.0.0/24", 1);
    web.guests.insert("a".into(), guest("a", "172.18.0.2", 1));
    web.guests.insert("b".into(), guest("b", "172.18.0.3", 2));
    State {
        networks: [
            ("web".to_owned(), web),
            ("db".to_owned(), network("db", "172.18.1.0/24", 2)),
        ]
        .into(),
        uplink_cursor: Some(2),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn nothing_saved_is_none_and_creates_nothing() {
    let (_tmp, dir) = temp_dir();
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load().unwrap(), None);
    assert!(!dir.exists());
}

#[test]
fn an_empty_state_saved_is_not_a_missing_one() {
    let (_tmp, dir) = temp_dir();
    Store::open(&dir).unwrap().save(&State::default()).unwrap();
    assert_eq!(
        Store::open(&dir).unwrap().load().unwrap(),
        Some(State::default())
    );
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn saves_survive_a_reopen_network_by_network() {
    let (_tmp, dir) = temp_dir();
    let mut state = sample();
    let mut store = Store::open(&dir).unwrap();
    store.save(&state).unwrap();

    state
        .networks
        .get_mut("db")
        .unwrap()
        .guests
        .insert("x".into(), guest("x", "172.18.1.2", 1));
    store.save_network(&state, "db").unwrap();
    state.networks.remove("web");
    store.save_network(&state, "web").unwrap();
    drop(store);

    assert_eq!(Store::open(&dir).unwrap().load().unwrap(), Some(state));
}

#[test]
fn a_scoped_save_does_not_look_at_other_networks() {
    let (_tmp, dir) = temp_dir();
    let mut state = sample();
    let mut store = Store::open(&dir).unwrap();
    store.save(&state).unwrap();
    // Changed in memory but saved under another network's name: not written.
    state.networks.get_mut("web").unwrap().guests.remove("a");
    store.save_network(&state, "db").unwrap();
    let reopened = Store::open(&dir).unwrap().load().unwrap().unwrap();
    assert!(reopened.networks["web"].guests.contains_key("a"));
}

#[test]
fn a_legacy_json_state_is_imported_once_and_kept() {
    let (_tmp, dir) = temp_dir();
    fs::create_dir_all(&dir).unwrap();
    let state = sample();
    fs::write(
        dir.join(LEGACY_STATE_FILE),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load().unwrap(), Some(state.clone()));
    assert!(!dir.join(LEGACY_STATE_FILE).exists());
    assert!(dir.join(IMPORTED_STATE_FILE).exists());
    assert!(dir.join(STATE_DB).exists());
    drop(store);
    // A later state.json (say, restored by hand) is not imported over the database.
    fs::write(dir.join(LEGACY_STATE_FILE), b"{\"networks\": {}}").unwrap();
    assert_eq!(Store::open(&dir).unwrap().load().unwrap(), Some(state));
}

#[test]
fn a_bad_legacy_json_state_is_refused_and_left_alone() {
    let (_tmp, dir) = temp_dir();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(LEGACY_STATE_FILE), b"{\"networks\": ").unwrap();
    let message = Store::open(&dir).err().unwrap().to_string();
    assert!(
        message.contains("from an older netd cannot be imported"),
        "{message}"
    );
    assert!(message.contains("move it"), "{message}");
    assert!(dir.join(LEGACY_STATE_FILE).exists());
    assert!(!dir.join(STATE_DB).exists());
}

#[test]
fn a_record_that_does_not_parse_is_an_error_naming_it_and_the_fix() {
    let (_tmp, dir) = temp_dir();
    Store::open(&dir).unwrap().save(&sample()).unwrap();
    let conn = rusqlite::Connection::open(dir.join(STATE_DB)).unwrap();
    conn.execute("UPDATE guests SET doc = '{\"name\":' WHERE name = 'a'", [])
        .unwrap();
    drop(conn);
    let message = Store::open(&dir).unwrap().load().unwrap_err().to_string();
    assert!(message.contains("network \"web\""), "{message}");
    assert!(message.contains("netd state restore"), "{message}");
}

#[test]
fn backups_keep_the_last_three_starts() {
    let (_tmp, dir) = temp_dir();
    let mut state = sample();
    let mut store = Store::open(&dir).unwrap();
    for n in 0..5u16 {
        state.uplink_cursor = Some(n);
        store.save(&state).unwrap();
        store.keep_backup().unwrap();
    }
    let backups = store.backups();
    assert_eq!(backups.len(), BACKUPS);
    for (i, path) in backups.iter().enumerate() {
        let back = Store::read_file(path).unwrap();
        assert_eq!(back.uplink_cursor, Some(4 - i as u16), "{}", path.display());
    }
    assert!(!dir.join(format!("{STATE_DB}.4")).exists());
}

#[test]
fn replace_puts_a_backup_or_a_json_file_in_place() {
    let (_tmp, dir) = temp_dir();
    let old = sample();
    let mut store = Store::open(&dir).unwrap();
    store.save(&old).unwrap();
    store.keep_backup().unwrap();
    let mut newer = old.clone();
    newer.networks.remove("db");
    store.save(&newer).unwrap();
    drop(store);

    let backup = Store::read_file(&dir.join(format!("{STATE_DB}.1"))).unwrap();
    Store::replace(&dir, &backup).unwrap();
    assert_eq!(
        Store::open(&dir).unwrap().load().unwrap(),
        Some(old.clone())
    );

    let json = dir.join("some.json");
    fs::write(&json, serde_json::to_vec(&newer).unwrap()).unwrap();
    Store::replace(&dir, &Store::read_file(&json).unwrap()).unwrap();
    assert_eq!(Store::open(&dir).unwrap().load().unwrap(), Some(newer));

    let message = Store::read_file(&dir.join("nothing-here"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("nothing-here"), "{message}");
}

#[test]
fn ports_are_rows_of_their_own_in_publication_order_across_a_reopen() {
    let (_tmp, dir) = temp_dir();
    let mut state = sample();
    let mut store = Store::open(&dir).unwrap();
    store.save(&state).unwrap();
    fn guest_a(state: &mut State) -> &mut crate::model::Guest {
        state
            .networks
            .get_mut("web")
            .unwrap()
            .guests
            .get_mut("a")
            .unwrap()
    }
    for spec in ["9000:80", "8080:80/udp", "7000-7001:70-71"] {
        guest_a(&mut state).ports.push(spec.parse().unwrap());
        let changes = rows::network_changes(&store.written, &state, "web").unwrap();
        assert!(
            matches!(changes.as_slice(), [rows::Change::PutPort { .. }]),
            "one port added writes its row alone: {changes:?}"
        );
        store.save_network(&state, "web").unwrap();
    }
    guest_a(&mut state).ports.remove(1);
    let changes = rows::network_changes(&store.written, &state, "web").unwrap();
    assert!(
        matches!(changes.as_slice(), [rows::Change::DeletePort { .. }]),
        "{changes:?}"
    );
    store.save_network(&state, "web").unwrap();
    let reopened = Store::open(&dir).unwrap().load().unwrap().unwrap();
    assert_eq!(reopened, state);
    // The guest is removed with its ports.
    state.networks.get_mut("web").unwrap().guests.remove("a");
    store.save_network(&state, "web").unwrap();
    assert_eq!(Store::open(&dir).unwrap().load().unwrap().unwrap(), state);
}

#[test]
fn a_version_1_file_with_ports_in_guest_documents_is_read_and_moved_to_rows() {
    let (_tmp, dir) = temp_dir();
    let mut state = sample();
    state
        .networks
        .get_mut("web")
        .unwrap()
        .guests
        .get_mut("a")
        .unwrap()
        .ports
        .push("9000:80".parse().unwrap());
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(STATE_DB);
    {
        // Version 1: no ports table, each guest's ports in its document.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE networks (name TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL) STRICT;
             CREATE TABLE guests (network TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
                 PRIMARY KEY (network, name)) STRICT;
             CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        for (name, net) in &state.networks {
            conn.execute(
                "INSERT INTO networks VALUES (?1, ?2)",
                rusqlite::params![name, rows::network_doc(net).unwrap()],
            )
            .unwrap();
            for (guest, g) in &net.guests {
                conn.execute(
                    "INSERT INTO guests VALUES (?1, ?2, ?3)",
                    rusqlite::params![name, guest, serde_json::to_string(g).unwrap()],
                )
                .unwrap();
            }
        }
        conn.execute("INSERT INTO meta VALUES ('uplink_cursor', '2')", [])
            .unwrap();
    }
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.load().unwrap().unwrap(), state);
    store.save_network(&state, "web").unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let ports: i64 = conn
        .query_row("SELECT count(*) FROM ports", [], |row| row.get(0))
        .unwrap();
    assert_eq!(ports, 1, "the save moved the port to its row");
    assert_eq!(Store::open(&dir).unwrap().load().unwrap().unwrap(), state);
}
