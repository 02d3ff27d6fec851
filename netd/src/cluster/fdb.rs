//! Which forwarding entries a node's VXLAN device of a spanned network
//! needs: each remote guest's MAC to its node's underlay address, and one
//! all-zero MAC entry per remote node holding guests of the network, so that
//! broadcasts (ARP) reach every such node by head-end replication, with no
//! multicast in the underlay. Nodes whose lease has expired are left out:
//! their guests are withdrawn.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use super::records::SpanGuests;
use crate::mac::Mac;

/// One FDB entry of a VXLAN device: frames to `mac` are sent to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    pub mac: Mac,
    pub remote: Ipv4Addr,
}

/// The MAC of the flood entries.
pub const FLOOD: Mac = Mac([0; 6]);

/// What `me`'s VXLAN device of a network with `table` should hold, given
/// the live nodes and their underlay addresses.
pub fn desired(
    me: &str,
    live: &BTreeMap<String, Ipv4Addr>,
    table: &SpanGuests,
) -> BTreeSet<FdbEntry> {
    let mut entries = BTreeSet::new();
    for guest in table.guests.values() {
        if guest.node == me {
            continue;
        }
        let Some(&remote) = live.get(&guest.node) else {
            continue;
        };
        entries.insert(FdbEntry {
            mac: guest.mac,
            remote,
        });
        entries.insert(FdbEntry { mac: FLOOD, remote });
    }
    entries
}

/// A remote guest as this node's bridge answers ARP for it: a static
/// neighbour entry (address -> MAC) on the bridge, and a static bridge FDB
/// entry of the MAC on the VXLAN port, so that the bridge's neighbour
/// suppression replies from here instead of flooding the request to every
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// The neighbour entries `me`'s bridge of a network with `table` should
/// hold: every guest on another live node (those of a node whose lease
/// expired are withdrawn with its FDB entries).
pub fn neighbours(
    me: &str,
    live: &BTreeMap<String, Ipv4Addr>,
    table: &SpanGuests,
) -> BTreeSet<Neighbour> {
    table
        .guests
        .values()
        .filter(|guest| guest.node != me && live.contains_key(&guest.node))
        .map(|guest| Neighbour {
            ip: guest.ip,
            mac: guest.mac,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::SpanGuest;

    fn guest(node: &str, last: u8) -> SpanGuest {
        SpanGuest {
            node: node.into(),
            ip: Ipv4Addr::new(172, 18, 0, last),
            mac: Mac([2, 0, 0, 0, 0, last]),
            slot: last,
        }
    }

    fn table() -> SpanGuests {
        SpanGuests {
            guests: [
                ("a", guest("n1", 1)),
                ("b", guest("n2", 2)),
                ("c", guest("n2", 3)),
                ("d", guest("n3", 4)),
            ]
            .into_iter()
            .map(|(n, g)| (n.to_owned(), g))
            .collect(),
            cursor: None,
        }
    }

    fn live(nodes: &[(&str, u8)]) -> BTreeMap<String, Ipv4Addr> {
        nodes
            .iter()
            .map(|(n, last)| (n.to_string(), Ipv4Addr::new(10, 0, 0, *last)))
            .collect()
    }

    #[test]
    fn remote_guests_and_one_flood_entry_per_remote_node() {
        let entries = desired("n1", &live(&[("n1", 1), ("n2", 2), ("n3", 3)]), &table());
        let n2 = Ipv4Addr::new(10, 0, 0, 2);
        let n3 = Ipv4Addr::new(10, 0, 0, 3);
        let expected: BTreeSet<FdbEntry> = [
            FdbEntry {
                mac: Mac([2, 0, 0, 0, 0, 2]),
                remote: n2,
            },
            FdbEntry {
                mac: Mac([2, 0, 0, 0, 0, 3]),
                remote: n2,
            },
            FdbEntry {
                mac: Mac([2, 0, 0, 0, 0, 4]),
                remote: n3,
            },
            FdbEntry {
                mac: FLOOD,
                remote: n2,
            },
            FdbEntry {
                mac: FLOOD,
                remote: n3,
            },
        ]
        .into();
        assert_eq!(entries, expected);
    }

    #[test]
    fn a_node_whose_lease_expired_is_withdrawn() {
        let entries = desired("n1", &live(&[("n1", 1), ("n3", 3)]), &table());
        assert!(
            entries
                .iter()
                .all(|e| e.remote == Ipv4Addr::new(10, 0, 0, 3))
        );
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn neighbours_are_the_live_remote_guests() {
        let got = neighbours("n2", &live(&[("n1", 1), ("n2", 2)]), &table());
        let expected: BTreeSet<Neighbour> = [Neighbour {
            ip: Ipv4Addr::new(172, 18, 0, 1),
            mac: Mac([2, 0, 0, 0, 0, 1]),
        }]
        .into();
        // n2's own guests (b, c) are not neighbours; n3's lease expired.
        assert_eq!(got, expected);
        let all = neighbours("n2", &live(&[("n1", 1), ("n2", 2), ("n3", 3)]), &table());
        assert_eq!(all.len(), 2);
        assert!(
            all.iter()
                .all(|n| n.ip.octets()[3] == 1 || n.ip.octets()[3] == 4)
        );
    }

    #[test]
    fn a_node_alone_in_a_network_needs_nothing() {
        let mut table = table();
        table.guests.retain(|_, g| g.node == "n1");
        assert!(desired("n1", &live(&[("n1", 1), ("n2", 2)]), &table).is_empty());
        assert!(neighbours("n1", &live(&[("n1", 1), ("n2", 2)]), &table).is_empty());
    }
}
