//! What a save writes: the desired state as rows (one per network, one per
//! guest, a few settings), and the changes that turn the rows last written
//! into the rows of a new state. Pure: no database here.
//!
//! A save names the network it changed, so its cost is that network's rows
//! (at most a few hundred guests), not the whole state's.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Guest, Network, State};

/// The settings row holding `State::uplink_cursor`.
pub const META_UPLINK_CURSOR: &str = "uplink_cursor";

/// One network's rows as last written: its document (the network without
/// its guests) and each guest's document, all JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRows {
    pub doc: String,
    pub guests: HashMap<String, String>,
}

/// Every row as last written (what the database holds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub networks: HashMap<String, NetworkRows>,
    pub meta: BTreeMap<String, String>,
}

/// One row written or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    PutNetwork {
        name: String,
        doc: String,
    },
    /// The network's guests go with it.
    DeleteNetwork {
        name: String,
    },
    PutGuest {
        network: String,
        name: String,
        doc: String,
    },
    DeleteGuest {
        network: String,
        name: String,
    },
    PutMeta {
        key: String,
        value: String,
    },
}

/// A network's document: everything but its guests, which have rows of
/// their own.
pub fn network_doc(network: &Network) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(network)?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("guests");
    }
    serde_json::to_string(&value)
}

pub fn guest_doc(guest: &Guest) -> serde_json::Result<String> {
    serde_json::to_string(guest)
}

/// A network back from its document and its guests' documents.
pub fn network_from_docs<'a>(
    doc: &str,
    guests: impl IntoIterator<Item = &'a str>,
) -> serde_json::Result<Network> {
    let mut value: serde_json::Value = serde_json::from_str(doc)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("guests".to_owned(), serde_json::json!({}));
    }
    let mut network: Network = serde_json::from_value(value)?;
    for guest in guests {
        let guest: Guest = serde_json::from_str(guest)?;
        network.guests.insert(guest.name.clone(), guest);
    }
    Ok(network)
}

/// The settings rows of `state`.
pub fn meta_of(state: &State) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    if let Some(cursor) = state.uplink_cursor {
        meta.insert(META_UPLINK_CURSOR.to_owned(), cursor.to_string());
    }
    meta
}

/// The rows `state` consists of (for a full save or an import).
pub fn rows_of(state: &State) -> serde_json::Result<Rows> {
    let mut rows = Rows {
        meta: meta_of(state),
        ..Rows::default()
    };
    for (name, network) in &state.networks {
        rows.networks.insert(name.clone(), network_rows(network)?);
    }
    Ok(rows)
}

fn network_rows(network: &Network) -> serde_json::Result<NetworkRows> {
    let mut guests = HashMap::with_capacity(network.guests.len());
    for (name, guest) in &network.guests {
        guests.insert(name.clone(), guest_doc(guest)?);
    }
    Ok(NetworkRows {
        doc: network_doc(network)?,
        guests,
    })
}

/// What turns `written` into `state` for network `name` (changed, added or
/// removed) and the settings; other networks are not looked at.
pub fn network_changes(
    written: &Rows,
    state: &State,
    name: &str,
) -> serde_json::Result<Vec<Change>> {
    let mut changes = Vec::new();
    let before = written.networks.get(name);
    match (before, state.networks.get(name)) {
        (None, None) => {}
        (Some(_), None) => changes.push(Change::DeleteNetwork {
            name: name.to_owned(),
        }),
        (before, Some(network)) => {
            let after = network_rows(network)?;
            let empty = NetworkRows::default();
            let before = before.unwrap_or(&empty);
            if before.doc != after.doc {
                changes.push(Change::PutNetwork {
                    name: name.to_owned(),
                    doc: after.doc,
                });
            }
            let mut removed: Vec<&String> = before
                .guests
                .keys()
                .filter(|guest| !after.guests.contains_key(*guest))
                .collect();
            removed.sort();
            for guest in removed {
                changes.push(Change::DeleteGuest {
                    network: name.to_owned(),
                    name: guest.clone(),
                });
            }
            let mut put: Vec<(String, String)> = after
                .guests
                .into_iter()
                .filter(|(guest, doc)| before.guests.get(guest) != Some(doc))
                .collect();
            put.sort();
            for (guest, doc) in put {
                changes.push(Change::PutGuest {
                    network: name.to_owned(),
                    name: guest,
                    doc,
                });
            }
        }
    }
    changes.extend(meta_changes(&written.meta, &meta_of(state)));
    Ok(changes)
}

/// What turns `written` into `state`, every network looked at.
pub fn all_changes(written: &Rows, state: &State) -> serde_json::Result<Vec<Change>> {
    let mut names: Vec<&String> = written
        .networks
        .keys()
        .chain(state.networks.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut changes = Vec::new();
    for name in names {
        changes.extend(
            network_changes(written, state, name)?
                .into_iter()
                .filter(|change| !matches!(change, Change::PutMeta { .. })),
        );
    }
    changes.extend(meta_changes(&written.meta, &meta_of(state)));
    Ok(changes)
}

fn meta_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<Change> {
    after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(value))
        .map(|(key, value)| Change::PutMeta {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// `written` after `changes` were committed.
pub fn apply(written: &mut Rows, changes: &[Change]) {
    for change in changes {
        match change {
            Change::PutNetwork { name, doc } => {
                written.networks.entry(name.clone()).or_default().doc = doc.clone();
            }
            Change::DeleteNetwork { name } => {
                written.networks.remove(name);
            }
            Change::PutGuest { network, name, doc } => {
                written
                    .networks
                    .entry(network.clone())
                    .or_default()
                    .guests
                    .insert(name.clone(), doc.clone());
            }
            Change::DeleteGuest { network, name } => {
                if let Some(rows) = written.networks.get_mut(network) {
                    rows.guests.remove(name);
                }
            }
            Change::PutMeta { key, value } => {
                written.meta.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{guest, network};

    fn state_with(networks: Vec<Network>) -> State {
        State {
            networks: networks.into_iter().map(|n| (n.name.clone(), n)).collect(),
            uplink_cursor: Some(3),
        }
    }

    #[test]
    fn documents_round_trip_with_guests_in_rows_of_their_own() {
        let mut web = network("web", "172.18.0.0/24", 1);
        web.guests.insert("a".into(), guest("a", "172.18.0.2", 1));
        let doc = network_doc(&web).unwrap();
        assert!(!doc.contains("\"guests\""), "{doc}");
        let guests = [guest_doc(&web.guests["a"]).unwrap()];
        let back = network_from_docs(&doc, guests.iter().map(String::as_str)).unwrap();
        assert_eq!(back, web);
    }

    #[test]
    fn a_guest_added_writes_one_row_and_the_network_is_untouched() {
        let web = network("web", "172.18.0.0/24", 1);
        let mut state = state_with(vec![web.clone(), network("db", "172.18.1.0/24", 2)]);
        let mut written = rows_of(&state).unwrap();
        assert_eq!(network_changes(&written, &state, "web").unwrap(), vec![]);

        let a = guest("a", "172.18.0.2", 1);
        state
            .networks
            .get_mut("web")
            .unwrap()
            .guests
            .insert("a".into(), a.clone());
        let changes = network_changes(&written, &state, "web").unwrap();
        assert_eq!(
            changes,
            vec![Change::PutGuest {
                network: "web".into(),
                name: "a".into(),
                doc: guest_doc(&a).unwrap(),
            }]
        );
        apply(&mut written, &changes);
        assert_eq!(written, rows_of(&state).unwrap());
    }

    #[test]
    fn removals_and_settings_are_changes_too() {
        let mut web = network("web", "172.18.0.0/24", 1);
        web.guests.insert("a".into(), guest("a", "172.18.0.2", 1));
        web.guests.insert("b".into(), guest("b", "172.18.0.3", 2));
        let mut state = state_with(vec![web, network("db", "172.18.1.0/24", 2)]);
        let mut written = rows_of(&state).unwrap();

        state.networks.get_mut("web").unwrap().guests.remove("b");
        state.uplink_cursor = Some(7);
        let changes = network_changes(&written, &state, "web").unwrap();
        assert_eq!(
            changes,
            vec![
                Change::DeleteGuest {
                    network: "web".into(),
                    name: "b".into()
                },
                Change::PutMeta {
                    key: META_UPLINK_CURSOR.into(),
                    value: "7".into()
                },
            ]
        );
        apply(&mut written, &changes);

        state.networks.remove("db");
        let changes = network_changes(&written, &state, "db").unwrap();
        assert_eq!(changes, vec![Change::DeleteNetwork { name: "db".into() }]);
        apply(&mut written, &changes);
        assert_eq!(written, rows_of(&state).unwrap());
    }

    #[test]
    fn a_full_diff_finds_what_a_scoped_one_would() {
        let mut state = state_with(vec![
            network("web", "172.18.0.0/24", 1),
            network("db", "172.18.1.0/24", 2),
        ]);
        let mut written = rows_of(&state).unwrap();
        state.networks.remove("web");
        state
            .networks
            .get_mut("db")
            .unwrap()
            .guests
            .insert("x".into(), guest("x", "172.18.1.2", 1));
        state
            .networks
            .insert("new".into(), network("new", "172.18.2.0/24", 3));
        let changes = all_changes(&written, &state).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        apply(&mut written, &changes);
        assert_eq!(written, rows_of(&state).unwrap());
    }
}
