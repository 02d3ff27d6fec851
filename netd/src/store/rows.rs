//! What a save writes: the desired state as rows (one per network, one per
//! guest, one per published port, a few settings), and the changes that
//! turn the rows last written into the rows of a new state. Pure: no
//! database here.
//!
//! A save names the network it changed, so its cost is that network's rows
//! (at most a few hundred guests), not the whole state's; a port added or
//! removed writes that port's row alone, however many the guest publishes
//! (a guest's document holds no ports).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{
    model::{Guest, Network, State},
    ports::PortForward,
};

/// The settings row holding `State::uplink_cursor`.
pub const META_UPLINK_CURSOR: &str = "uplink_cursor";

/// One network's rows as last written: its document (the network without
/// its guests) and each guest's document (without its ports), all JSON,
/// and each guest's published ports in publication order (a row each).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRows {
    pub doc: String,
    pub guests: HashMap<String, String>,
    /// Guests without ports have no entry.
    pub ports: HashMap<String, Vec<PortForward>>,
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
    /// The network's guests and ports go with it.
    DeleteNetwork {
        name: String,
    },
    PutGuest {
        network: String,
        name: String,
        doc: String,
    },
    /// The guest's ports go with it.
    DeleteGuest {
        network: String,
        name: String,
    },
    /// A port published by a guest (its row's key is `doc`, the forward's
    /// JSON); a new row sorts after every other, so rows read in their
    /// order are the publication order.
    PutPort {
        network: String,
        guest: String,
        forward: PortForward,
        doc: String,
    },
    DeletePort {
        network: String,
        guest: String,
        forward: PortForward,
        doc: String,
    },
    PutMeta {
        key: String,
        value: String,
    },
}

/// A network's document: everything but its guests, which have rows of
/// their own.
pub fn network_doc(network: &Network) -> serde_json::Result<String> {
    // Serialised without its guests at all: through a value of the whole
    // network, a port add to a guest of 10,000 built and dropped 10,000
    // forwards' maps (most of its time). Every field named, so that a new
    // one is not forgotten here.
    let shell = Network {
        name: network.name.clone(),
        subnet: network.subnet,
        routable: network.routable,
        uplink_slot: network.uplink_slot,
        guests: BTreeMap::new(),
        guest_cursor: network.guest_cursor,
        created_at: network.created_at,
        partition: network.partition.clone(),
        internal: network.internal,
        mtu: network.mtu,
        span: network.span.clone(),
    };
    let mut value = serde_json::to_value(&shell)?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("guests");
    }
    serde_json::to_string(&value)
}

/// A guest's document: everything but its ports, which have rows of their
/// own.
pub fn guest_doc(guest: &Guest) -> serde_json::Result<String> {
    if guest.ports.is_empty() {
        return serde_json::to_string(guest);
    }
    let mut shell = guest.clone();
    shell.ports.clear();
    serde_json::to_string(&shell)
}

/// A port's row: the forward's JSON.
pub fn port_doc(forward: &PortForward) -> serde_json::Result<String> {
    serde_json::to_string(forward)
}

/// A network back from its document, its guests' documents and their port
/// rows. A guest document written by a netd before port rows holds its
/// ports itself (kept; a later save moves them to rows).
pub fn network_from_docs<'a>(
    doc: &str,
    guests: impl IntoIterator<Item = &'a str>,
    ports: &HashMap<String, Vec<PortForward>>,
) -> serde_json::Result<Network> {
    let mut value: serde_json::Value = serde_json::from_str(doc)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("guests".to_owned(), serde_json::json!({}));
    }
    let mut network: Network = serde_json::from_value(value)?;
    for guest in guests {
        let mut guest: Guest = serde_json::from_str(guest)?;
        if let Some(rows) = ports.get(&guest.name) {
            guest.ports.extend(rows.iter().cloned());
        }
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
    let mut ports = HashMap::new();
    for (name, guest) in &network.guests {
        guests.insert(name.clone(), guest_doc(guest)?);
        if !guest.ports.is_empty() {
            ports.insert(name.clone(), guest.ports.clone());
        }
    }
    Ok(NetworkRows {
        doc: network_doc(network)?,
        guests,
        ports,
    })
}

/// What turns a guest's port rows `before` into `after`: the forwards
/// withdrawn, then those published (in `after`'s order). Compares the
/// forwards, never serialises the unchanged ones: a port added to a guest
/// of 10,000 costs one comparison per port and one row.
fn port_changes(
    network: &str,
    guest: &str,
    before: &[PortForward],
    after: &[PortForward],
) -> serde_json::Result<Vec<Change>> {
    let put = |forward: &PortForward| -> serde_json::Result<Change> {
        Ok(Change::PutPort {
            network: network.to_owned(),
            guest: guest.to_owned(),
            forward: forward.clone(),
            doc: port_doc(forward)?,
        })
    };
    // The usual case: ports only appended since.
    if after.len() >= before.len() && after[..before.len()] == *before {
        return after[before.len()..].iter().map(put).collect();
    }
    let kept: HashSet<&PortForward> = after.iter().collect();
    let had: HashSet<&PortForward> = before.iter().collect();
    let mut changes = Vec::new();
    for gone in before.iter().filter(|forward| !kept.contains(forward)) {
        changes.push(Change::DeletePort {
            network: network.to_owned(),
            guest: guest.to_owned(),
            forward: gone.clone(),
            doc: port_doc(gone)?,
        });
    }
    for new in after.iter().filter(|forward| !had.contains(forward)) {
        changes.push(put(new)?);
    }
    Ok(changes)
}

/// A network's rows but its ports (compared by [`port_changes`]).
fn network_rows_without_ports(network: &Network) -> serde_json::Result<NetworkRows> {
    let mut guests = HashMap::with_capacity(network.guests.len());
    for (name, guest) in &network.guests {
        guests.insert(name.clone(), guest_doc(guest)?);
    }
    Ok(NetworkRows {
        doc: network_doc(network)?,
        guests,
        ports: HashMap::new(),
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
            let after = network_rows_without_ports(network)?;
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
            // Ports of the guests that stay (a removed guest's go with it).
            let mut guests: Vec<&Guest> = network.guests.values().collect();
            guests.sort_by(|a, b| a.name.cmp(&b.name));
            for guest in guests {
                let had = before.ports.get(&guest.name).map_or(&[][..], Vec::as_slice);
                changes.extend(port_changes(name, &guest.name, had, &guest.ports)?);
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
                    rows.ports.remove(name);
                }
            }
            Change::PutPort {
                network,
                guest,
                forward,
                ..
            } => {
                written
                    .networks
                    .entry(network.clone())
                    .or_default()
                    .ports
                    .entry(guest.clone())
                    .or_default()
                    .push(forward.clone());
            }
            Change::DeletePort {
                network,
                guest,
                forward,
                ..
            } => {
                if let Some(rows) = written.networks.get_mut(network)
                    && let Some(ports) = rows.ports.get_mut(guest)
                {
                    ports.retain(|held| held != forward);
                    if ports.is_empty() {
                        rows.ports.remove(guest);
                    }
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
        let back =
            network_from_docs(&doc, guests.iter().map(String::as_str), &HashMap::new()).unwrap();
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
