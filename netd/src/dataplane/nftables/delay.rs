//! Delays and rates on the nftables dataplane, through the delay line
//! (`crate::delay`) and the rate shapers (`shapers`): `table netdev
//! netd_delay` in the network's namespace. Pure: the script.
//!
//! - Out: an egress hook on each guest's bridge port, so a packet is
//!   shaped and delayed after the bridge's own table has checked it
//!   (spoofing, cuts, loss). A packet of a rate clause's pairs (and
//!   protocol) goes `fwd to` the clause's shaper first, `shape<class>`
//!   (a veth with a tbf qdisc); the first rate clause that selects a
//!   packet shapes it. Then a packet of a delaying clause's pairs (and
//!   port or protocol) goes `fwd to` the clause's TAP, `delay<class>`:
//!   nftables cannot push the 802.1Q tag the eBPF ports tag frames with,
//!   so each delaying clause has a TAP of its own and the line knows the
//!   class by the TAP. The first delaying clause that selects a packet
//!   delays it. So a clause with a rate and a delay is a slow link and
//!   then a long wire: shaped, then delayed.
//! - Back: an ingress hook on each shaper's peer (`shape<class>-out`)
//!   marks what comes out shaped ([`SHAPED_MARK`]) and an ingress hook on
//!   each TAP marks what the line writes back ([`RETURNED_MARK`]); both
//!   forward it by destination MAC out of that guest's port, whose egress
//!   hook shapes only unmarked packets and delays only packets the line
//!   has not returned (so each is shaped once and delayed once).

use std::{collections::BTreeMap, fmt::Write, net::Ipv4Addr};

use super::{
    script::{GuestSpec, mac_text},
    shapers,
};
use crate::{
    ifname,
    partition::{FaultClass, PartitionRules},
};

/// The table, in each network namespace whose policy delays.
pub const DELAY_TABLE: &str = "netdev netd_delay";

/// The mark of a packet the delay line wrote back ("ndly").
pub const RETURNED_MARK: u32 = 0x6e64_6c79;

/// The mark of a packet that came out of a rate shaper ("nshp").
pub const SHAPED_MARK: u32 = 0x6e73_6870;

/// The TAP of delaying class `class`.
pub fn tap_name(class: usize) -> String {
    ifname::clause_delay_line(class)
}

/// The classes of `rules` that delay.
pub fn delaying_classes(rules: &PartitionRules) -> Vec<usize> {
    rules
        .faults
        .iter()
        .enumerate()
        .filter(|(_, fault)| fault.impair.delay_ms.is_some())
        .map(|(class, _)| class)
        .collect()
}

/// Whether `rules` need the delay table: a clause delays or has a rate.
pub fn needed(rules: &PartitionRules) -> bool {
    !delaying_classes(rules).is_empty() || !shapers::rate_classes(rules).is_empty()
}

/// The senders of `fault`'s pairs to `guest`, by address.
fn senders_to(
    fault: &FaultClass,
    guest: &GuestSpec,
    ip_of: &BTreeMap<u8, Ipv4Addr>,
) -> Vec<String> {
    fault
        .pairs
        .iter()
        .filter(|(_, to)| *to == guest.slot)
        .filter_map(|(from, _)| Some(ip_of.get(from)?.to_string()))
        .collect()
}

/// Replaces the delay table in one transaction: the table as `rules` and
/// `guests` (by bridge port) need it, or none when nothing delays or is
/// shaped.
pub fn script(guests: &BTreeMap<String, GuestSpec>, rules: &PartitionRules) -> String {
    let mut out = format!("table {DELAY_TABLE}\ndelete table {DELAY_TABLE}\n");
    let classes = delaying_classes(rules);
    let shaped = shapers::rate_classes(rules);
    if classes.is_empty() && shaped.is_empty() {
        return out;
    }
    let ip_of: BTreeMap<u8, Ipv4Addr> = guests.values().map(|g| (g.slot, g.ip)).collect();
    let _ = writeln!(out, "table {DELAY_TABLE} {{");
    for (port, guest) in guests {
        let _ = writeln!(
            out,
            "  chain to_{} {{\n    type filter hook egress device \"{port}\" priority filter; policy accept;",
            guest.slot
        );
        // Shaping first (a slow link, then a long wire): what the shaper
        // sends on carries its mark and goes to the delay line after.
        let shaper_marks = format!("meta mark != {RETURNED_MARK:#x} meta mark != {SHAPED_MARK:#x}");
        let delay_marks = format!("meta mark != {RETURNED_MARK:#x}");
        let diversions = shaped
            .iter()
            .map(|&class| (class, &shaper_marks, ifname::rate_shaper(class)))
            .chain(
                classes
                    .iter()
                    .map(|&class| (class, &delay_marks, tap_name(class))),
            );
        for (class, marks, device) in diversions {
            let fault = &rules.faults[class];
            let senders = senders_to(fault, guest, &ip_of);
            if senders.is_empty() {
                continue;
            }
            for traffic in traffic_matches(fault) {
                let _ = writeln!(
                    out,
                    "    {marks} ip saddr {{ {} }} ip daddr {}{traffic} fwd to \"{device}\"",
                    senders.join(", "),
                    guest.ip,
                );
            }
        }
        let _ = writeln!(out, "  }}");
    }
    for &class in &classes {
        let tap = tap_name(class);
        let _ = writeln!(
            out,
            "  chain back_{class} {{\n    type filter hook ingress device \"{tap}\" priority filter; policy accept;"
        );
        for (port, guest) in guests {
            let _ = writeln!(
                out,
                "    ether daddr {} meta mark set {RETURNED_MARK:#x} fwd to \"{port}\"",
                mac_text(guest.mac)
            );
        }
        let _ = writeln!(out, "    drop\n  }}");
    }
    for &class in &shaped {
        let _ = writeln!(
            out,
            "  chain shaped_{class} {{\n    type filter hook ingress device \"{}\" priority filter; policy accept;",
            ifname::rate_shaper_out(class)
        );
        for (port, guest) in guests {
            let _ = writeln!(
                out,
                "    ether daddr {} meta mark set {SHAPED_MARK:#x} fwd to \"{port}\"",
                mac_text(guest.mac)
            );
        }
        let _ = writeln!(out, "    drop\n  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

/// The protocol and port matches of a class's packets: one per rule (a
/// port is tried as the destination and as the source).
fn traffic_matches(fault: &FaultClass) -> Vec<String> {
    let proto = match (fault.traffic.proto, fault.traffic.port) {
        (Some(proto), _) => format!(" meta l4proto {proto}"),
        (None, Some(_)) => " meta l4proto { tcp, udp }".to_owned(),
        (None, None) => String::new(),
    };
    match fault.traffic.port {
        Some(port) => vec![
            format!("{proto} th dport {port}"),
            format!("{proto} th sport {port}"),
        ],
        None => vec![proto],
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::partition::test_support::compiled;

    fn guests() -> BTreeMap<String, GuestSpec> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(slot, name)| {
                (
                    format!("vp-{name}"),
                    GuestSpec {
                        mac: [2, 0, 0, 0, 0, slot as u8 + 1],
                        ip: Ipv4Addr::new(172, 18, 0, slot as u8 + 1),
                        slot: slot as u8,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_delaying_clause_sends_its_pairs_to_its_tap_and_back_by_mac() {
        let rules = compiled(
            "isolate c + cut --from a --to b --delay 50ms --port 7000/udp",
            "a b c",
        );
        assert_eq!(delaying_classes(&rules), [1]);
        let script = script(&guests(), &rules);
        assert!(
            script.starts_with("table netdev netd_delay\ndelete table netdev netd_delay\n"),
            "{script}"
        );
        assert!(script.contains(
            "  chain to_1 {\n    type filter hook egress device \"vp-b\" priority filter; policy accept;\n    meta mark != 0x6e646c79 ip saddr { 172.18.0.1 } ip daddr 172.18.0.2 meta l4proto udp th dport 7000 fwd to \"delay1\"\n    meta mark != 0x6e646c79 ip saddr { 172.18.0.1 } ip daddr 172.18.0.2 meta l4proto udp th sport 7000 fwd to \"delay1\"\n  }"
        ), "{script}");
        assert!(
            script.contains("  chain to_0 {\n    type filter hook egress device \"vp-a\" priority filter; policy accept;\n  }"),
            "nothing to a is delayed: {script}"
        );
        assert!(script.contains(
            "  chain back_1 {\n    type filter hook ingress device \"delay1\" priority filter; policy accept;\n    ether daddr 02:00:00:00:00:01 meta mark set 0x6e646c79 fwd to \"vp-a\"\n"
        ), "{script}");
        assert!(
            script.contains("fwd to \"vp-c\"\n    drop\n  }\n}\n"),
            "{script}"
        );
    }

    #[test]
    fn a_rate_clause_goes_through_its_shaper_before_any_delay_and_back_by_mac() {
        let rules = compiled(
            "cut --from a --to b --rate 1mbit --delay 20ms + all --rate 2mbit --proto udp",
            "a b c",
        );
        assert!(needed(&rules));
        let script = script(&guests(), &rules);
        assert!(script.contains(
            "  chain to_1 {\n    type filter hook egress device \"vp-b\" priority filter; policy accept;\n    meta mark != 0x6e646c79 meta mark != 0x6e736870 ip saddr { 172.18.0.1 } ip daddr 172.18.0.2 fwd to \"shape0\"\n    meta mark != 0x6e646c79 meta mark != 0x6e736870 ip saddr { 172.18.0.1, 172.18.0.3 } ip daddr 172.18.0.2 meta l4proto udp fwd to \"shape1\"\n    meta mark != 0x6e646c79 ip saddr { 172.18.0.1 } ip daddr 172.18.0.2 fwd to \"delay0\"\n  }"
        ), "{script}");
        assert!(script.contains(
            "  chain shaped_1 {\n    type filter hook ingress device \"shape1-out\" priority filter; policy accept;\n    ether daddr 02:00:00:00:00:01 meta mark set 0x6e736870 fwd to \"vp-a\"\n"
        ), "{script}");
        assert!(script.contains("  chain shaped_0 {"), "{script}");
        assert!(
            script.ends_with("fwd to \"vp-c\"\n    drop\n  }\n}\n"),
            "{script}"
        );
        let rate_only = compiled("all --rate 1mbit", "a b c");
        assert!(needed(&rate_only));
        assert!(!super::script(&guests(), &rate_only).contains("delay0"));
        assert!(!needed(&compiled("isolate a", "a b c")));
    }

    #[test]
    fn the_first_delaying_clause_comes_first_and_nothing_delaying_removes_the_table() {
        let rules = compiled("all --delay 10ms + all --delay 20ms --proto tcp", "a b c");
        let script = script(&guests(), &rules);
        let first = script.find("fwd to \"delay0\"").unwrap();
        let second = script.find("meta l4proto tcp fwd to \"delay1\"").unwrap();
        assert!(first < second, "{script}");
        assert!(
            script.contains(
                "ip saddr { 172.18.0.2, 172.18.0.3 } ip daddr 172.18.0.1 fwd to \"delay0\""
            )
        );
        assert_eq!(
            super::script(&guests(), &compiled("isolate a", "a b c")),
            "table netdev netd_delay\ndelete table netdev netd_delay\n"
        );
        assert_eq!(tap_name(3), "delay3");
    }
}
