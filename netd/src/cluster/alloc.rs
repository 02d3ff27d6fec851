//! Cluster-wide allocation, as pure functions of what etcd holds: a VNI for
//! a new spanned network, an address and a partition slot for a new guest.
//! The etcd layer (`etcd`) reads, calls these, and writes the result back
//! only if nothing changed in between (compare-and-swap), retrying
//! otherwise.

use std::{collections::BTreeSet, net::Ipv4Addr};

use super::records::{Applied, SpanGuest, SpanGuests, SpanNetwork};
use crate::{ipam, mac::Mac, model};

/// VXLAN network identifiers are 24 bits; 0 is left unused.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The lowest VNI not in `taken`.
pub fn pick_vni(taken: &BTreeSet<u32>) -> Result<u32, String> {
    (1..=MAX_VNI)
        .find(|vni| !taken.contains(vni))
        .ok_or_else(|| format!("all {MAX_VNI} VNIs are taken: remove a spanned network"))
}

/// What a node asks for when it adds a guest to a spanned network.
#[derive(Debug, Clone)]
pub struct GuestRequest<'a> {
    pub name: &'a str,
    pub node: &'a str,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<Mac>,
}

/// The allocation table with `request`'s guest in it, and that guest.
/// Asking again for a guest this node already has (same address and MAC,
/// if given) returns it unchanged: a retried request after a timeout
/// must not fail.
pub fn add_guest(
    network: &SpanNetwork,
    table: &SpanGuests,
    request: &GuestRequest,
) -> Result<(SpanGuests, SpanGuest), String> {
    if let Some(existing) = table.guests.get(request.name) {
        let same = existing.node == request.node
            && request.ip.is_none_or(|ip| ip == existing.ip)
            && request.mac.is_none_or(|mac| mac == existing.mac);
        return if same {
            Ok((table.clone(), existing.clone()))
        } else {
            Err(format!(
                "guest {:?} exists in spanned network {:?} on node {:?} with address {}: \
                 remove it there first (`netd guest rm {} {}` on that node)",
                request.name, network.name, existing.node, existing.ip, network.name, request.name
            ))
        };
    }
    let used: BTreeSet<Ipv4Addr> = table.guests.values().map(|g| g.ip).collect();
    let ip = match request.ip {
        Some(ip) => {
            let holder = table
                .guests
                .iter()
                .find(|(_, g)| g.ip == ip)
                .map(|(name, g)| format!("{name} (on node {})", g.node));
            ipam::check_guest_ip(network.subnet, ip, holder.as_deref())
                .map_err(|err| err.to_string())?;
            ip
        }
        None => ipam::allocate_guest_ip(&network.name, network.subnet, &used, table.cursor)
            .map_err(|err| err.to_string())?,
    };
    let mac = request
        .mac
        .unwrap_or_else(|| Mac(model::guest_mac(&network.name, ip)));
    if let Some((holder, g)) = table.guests.iter().find(|(_, g)| g.mac == mac) {
        return Err(format!(
            "MAC address {mac} is guest {holder:?}'s (on node {}) in network {:?}: give another \
             --mac, or leave it out to get one derived from the address",
            g.node, network.name
        ));
    }
    let held: BTreeSet<u8> = table.guests.values().map(|g| g.slot).collect();
    let slot = (0..=u8::MAX)
        .find(|slot| !held.contains(slot))
        .ok_or_else(|| {
            format!(
                "spanned network {:?} has no free partition slot",
                network.name
            )
        })?;
    let guest = SpanGuest {
        node: request.node.to_owned(),
        ip,
        mac,
        slot,
    };
    let mut next = table.clone();
    next.guests.insert(request.name.to_owned(), guest.clone());
    if request.ip.is_none() {
        next.cursor = Some(ip);
    }
    Ok((next, guest))
}

/// The table without guest `name` of `node` (unchanged if it is not
/// there or is another node's).
pub fn remove_guest(table: &SpanGuests, name: &str, node: &str) -> SpanGuests {
    let mut next = table.clone();
    if next.guests.get(name).is_some_and(|g| g.node == node) {
        next.guests.remove(name);
    }
    next
}

/// Milliseconds between the first and the last node holding guests in the
/// network (per `table`) applying its partition of `revision`; None until
/// every such node has (or before any partition was set).
pub fn spread_ms(
    table: &SpanGuests,
    applied: &std::collections::BTreeMap<String, Applied>,
    revision: i64,
) -> Option<u64> {
    let holders: BTreeSet<&str> = table.guests.values().map(|g| g.node.as_str()).collect();
    let times: Vec<u64> = holders
        .iter()
        .filter_map(|node| applied.get(*node))
        .filter(|a| a.revision == revision)
        .map(|a| a.applied_at_ms)
        .collect();
    if revision == 0 || times.is_empty() || times.len() < holders.len() {
        return None;
    }
    Some(times.iter().max()? - times.iter().min()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> SpanNetwork {
        SpanNetwork {
            name: "web".into(),
            subnet: "172.18.0.0/24".parse().unwrap(),
            vni: 1,
            mtu: 1450,
            created_by: "n1".into(),
            created_at: 0,
        }
    }

    fn request<'a>(name: &'a str, node: &'a str, ip: Option<&str>) -> GuestRequest<'a> {
        GuestRequest {
            name,
            node,
            ip: ip.map(|ip| ip.parse().unwrap()),
            mac: None,
        }
    }

    #[test]
    fn vnis_are_the_lowest_free() {
        assert_eq!(pick_vni(&BTreeSet::new()), Ok(1));
        assert_eq!(pick_vni(&[1, 2, 4].into()), Ok(3));
    }

    #[test]
    fn guests_on_two_nodes_get_different_addresses_and_slots() {
        let net = network();
        let (table, a) =
            add_guest(&net, &SpanGuests::default(), &request("a", "n1", None)).unwrap();
        let (table, b) = add_guest(&net, &table, &request("b", "n2", None)).unwrap();
        assert_ne!(a.ip, b.ip);
        assert_ne!(a.slot, b.slot);
        assert_ne!(a.mac, b.mac);
        assert_eq!(table.guests.len(), 2);
        assert_eq!(table.on_node("n2").count(), 1);
        assert_eq!(b.mac, Mac(model::guest_mac("web", b.ip)));
    }

    #[test]
    fn a_taken_address_names_its_holder_and_node() {
        let net = network();
        let (table, _) = add_guest(
            &net,
            &SpanGuests::default(),
            &request("a", "n1", Some("172.18.0.5")),
        )
        .unwrap();
        let err = add_guest(&net, &table, &request("b", "n2", Some("172.18.0.5"))).unwrap_err();
        assert!(err.contains("a (on node n1)"), "{err}");
    }

    #[test]
    fn the_same_guest_again_is_unchanged_and_another_nodes_is_refused() {
        let net = network();
        let (table, a) =
            add_guest(&net, &SpanGuests::default(), &request("a", "n1", None)).unwrap();
        let (again, same) = add_guest(&net, &table, &request("a", "n1", None)).unwrap();
        assert_eq!((again, same), (table.clone(), a));
        let err = add_guest(&net, &table, &request("a", "n2", None)).unwrap_err();
        assert!(err.contains("on node \"n1\""), "{err}");
    }

    #[test]
    fn an_address_outside_the_subnet_is_refused() {
        let err = add_guest(
            &network(),
            &SpanGuests::default(),
            &request("a", "n1", Some("10.0.0.1")),
        )
        .unwrap_err();
        assert!(err.contains("10.0.0.1"), "{err}");
    }

    #[test]
    fn removing_takes_only_the_nodes_own_guest() {
        let net = network();
        let (table, _) =
            add_guest(&net, &SpanGuests::default(), &request("a", "n1", None)).unwrap();
        assert_eq!(remove_guest(&table, "a", "n2"), table);
        assert!(remove_guest(&table, "a", "n1").guests.is_empty());
    }

    #[test]
    fn the_spread_waits_for_every_node_holding_guests() {
        let net = network();
        let (table, _) =
            add_guest(&net, &SpanGuests::default(), &request("a", "n1", None)).unwrap();
        let (table, _) = add_guest(&net, &table, &request("b", "n2", None)).unwrap();
        let at = |revision, ms| Applied {
            revision,
            applied_at_ms: ms,
        };
        let mut applied: std::collections::BTreeMap<String, Applied> =
            [("n1".to_owned(), at(7, 1_000))].into();
        assert_eq!(spread_ms(&table, &applied, 7), None, "n2 has not applied 7");
        applied.insert("n2".into(), at(6, 900));
        assert_eq!(spread_ms(&table, &applied, 7), None, "n2 is behind");
        applied.insert("n2".into(), at(7, 1_012));
        // A node without guests does not hold the spread up.
        applied.insert("n3".into(), at(5, 0));
        assert_eq!(spread_ms(&table, &applied, 7), Some(12));
        assert_eq!(spread_ms(&table, &applied, 0), None, "never set");
    }
}
