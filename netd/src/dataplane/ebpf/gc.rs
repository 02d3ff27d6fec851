//! Conntrack timeouts and garbage collection. The programs only refresh an
//! entry's last-seen time and flags; deciding when a connection is over is
//! done here, on both of its entries together, so a one-way stream keeps its
//! reply direction alive.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use netd_common::nat::{
    CtEntry, CtKey, IPPROTO_TCP, IPPROTO_UDP, ShareKey, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, kind,
    tcp_closed,
};

/// Timeouts by protocol and TCP state (Cilium's defaults).
pub const TCP_ESTABLISHED: Duration = Duration::from_secs(6 * 3600);
pub const TCP_OPENING: Duration = Duration::from_secs(60);
pub const TCP_CLOSING: Duration = Duration::from_secs(10);
pub const UDP: Duration = Duration::from_secs(60);
pub const ICMP: Duration = Duration::from_secs(30);
/// An entry whose partner is gone (a race between two first packets, or a
/// half-evicted pair) is useless: it goes soon.
pub const ORPHAN: Duration = Duration::from_secs(10);

/// How long a connection may stay idle, from the TCP flags each direction
/// has shown.
pub fn timeout(proto: u8, original_flags: u8, reply_flags: u8) -> Duration {
    match proto {
        IPPROTO_TCP => {
            let both = original_flags | reply_flags;
            if both & TCP_RST != 0 || (original_flags & TCP_FIN != 0 && reply_flags & TCP_FIN != 0)
            {
                TCP_CLOSING
            } else if reply_flags & (TCP_SYN | TCP_ACK) != 0 && original_flags & TCP_ACK != 0 {
                TCP_ESTABLISHED
            } else {
                TCP_OPENING
            }
        }
        IPPROTO_UDP => UDP,
        _ => ICMP,
    }
}

/// How many source ports each guest holds towards each destination: one
/// per connection it started whose source was translated (to the outside,
/// or to a published port). The programs count up as they translate; this
/// recount puts back what evictions, takeovers and races left wrong.
pub fn port_shares(entries: &[(CtKey, CtEntry)]) -> BTreeMap<ShareKey, u32> {
    let by_key: HashMap<CtKey, &CtEntry> = entries.iter().map(|(k, e)| (*k, e)).collect();
    let mut shares = BTreeMap::new();
    for (key, entry) in entries {
        let allocated = matches!(entry.kind & kind::MASK, kind::SNAT | kind::HAIRPIN);
        if entry.kind & kind::ORIGINAL == 0 || !allocated {
            continue;
        }
        // A closed connection's port is anyone's to take: it holds none.
        let reply_flags = by_key
            .get(&entry.reply_key(key.proto))
            .map_or(0, |reply| reply.tcp_flags);
        if key.proto == IPPROTO_TCP && tcp_closed(entry.tcp_flags, reply_flags) {
            continue;
        }
        *shares.entry(ShareKey::of(key)).or_insert(0) += 1;
    }
    shares
}

/// Each key once (its last value), from a walk that may repeat keys.
pub fn unique(walk: impl Iterator<Item = (CtKey, CtEntry)>) -> Vec<(CtKey, CtEntry)> {
    let by_key: HashMap<CtKey, CtEntry> = walk.collect();
    by_key.into_iter().collect()
}

/// The keys to delete: pairs idle for longer than their timeout, and orphans.
/// `now_ns` is CLOCK_MONOTONIC, the programs' `bpf_ktime_get_ns`.
pub fn expired(entries: &[(CtKey, CtEntry)], now_ns: u64) -> Vec<CtKey> {
    let by_key: HashMap<CtKey, &CtEntry> = entries.iter().map(|(k, e)| (*k, e)).collect();
    let idle = |last_seen: u64| Duration::from_nanos(now_ns.saturating_sub(last_seen));
    let mut doomed = Vec::new();
    for (key, entry) in entries {
        let partner_key = entry.reply_key(key.proto);
        let partner = by_key
            .get(&partner_key)
            .filter(|p| p.reply_key(key.proto) == *key);
        match partner {
            None => {
                if idle(entry.last_seen_ns) > ORPHAN {
                    doomed.push(*key);
                }
            }
            // Each pair is judged once, from its original entry.
            Some(partner) if entry.kind & kind::ORIGINAL != 0 => {
                let last_seen = entry.last_seen_ns.max(partner.last_seen_ns);
                if idle(last_seen) > timeout(key.proto, entry.tcp_flags, partner.tcp_flags) {
                    doomed.push(*key);
                    doomed.push(partner_key);
                }
            }
            Some(_) => {}
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use netd_common::nat::{IPPROTO_ICMP, ZONE_HOST};

    const SEC: u64 = 1_000_000_000;

    /// A guest's TCP connection out, as the programs record it.
    fn pair(last_original: u64, last_reply: u64, of: u8, rf: u8) -> Vec<(CtKey, CtEntry)> {
        let original_key = CtKey {
            zone: 3,
            src: [172, 18, 0, 5],
            dst: [203, 0, 113, 10],
            sport: 40000,
            dport: 80,
            proto: IPPROTO_TCP,
            _pad: [0; 3],
        };
        let original = CtEntry {
            new_src: [172, 18, 255, 2],
            new_dst: [203, 0, 113, 10],
            new_sport: 40001,
            new_dport: 80,
            out_zone: ZONE_HOST,
            kind: kind::SNAT | kind::ORIGINAL,
            tcp_flags: of,
            last_seen_ns: last_original,
            ..Default::default()
        };
        let reply_key = original.reply_key(IPPROTO_TCP);
        let reply = CtEntry {
            new_src: original_key.dst,
            new_dst: original_key.src,
            new_sport: original_key.dport,
            new_dport: original_key.sport,
            out_zone: 3,
            kind: kind::SNAT,
            tcp_flags: rf,
            last_seen_ns: last_reply,
            ..Default::default()
        };
        vec![(original_key, original), (reply_key, reply)]
    }

    #[test]
    fn tcp_state_decides_the_timeout() {
        assert_eq!(timeout(IPPROTO_TCP, TCP_SYN, 0), TCP_OPENING);
        assert_eq!(
            timeout(IPPROTO_TCP, TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK),
            TCP_ESTABLISHED
        );
        assert_eq!(
            timeout(IPPROTO_TCP, TCP_ACK | TCP_FIN, TCP_ACK | TCP_FIN),
            TCP_CLOSING
        );
        assert_eq!(
            timeout(IPPROTO_TCP, TCP_ACK, TCP_ACK | TCP_RST),
            TCP_CLOSING
        );
        // One FIN is a half-close: the other side may still send for long.
        assert_eq!(
            timeout(IPPROTO_TCP, TCP_ACK | TCP_FIN, TCP_SYN | TCP_ACK),
            TCP_ESTABLISHED
        );
        assert_eq!(timeout(IPPROTO_UDP, 0, 0), UDP);
        assert_eq!(timeout(IPPROTO_ICMP, 0, 0), ICMP);
    }

    #[test]
    fn an_idle_pair_goes_whole_and_a_live_one_stays() {
        let established = TCP_SYN | TCP_ACK;
        let now = 100_000 * SEC;
        let live = pair(now - 10 * SEC, now - 7000 * SEC, established, established);
        assert!(expired(&live, now).is_empty());
        let idle = pair(
            now - 7 * 3600 * SEC,
            now - 7 * 3600 * SEC,
            established,
            established,
        );
        let doomed = expired(&idle, now);
        assert_eq!(doomed.len(), 2);
        assert!(doomed.contains(&idle[0].0) && doomed.contains(&idle[1].0));
    }

    #[test]
    fn a_one_way_stream_keeps_its_reply_direction() {
        let now = 1000 * SEC;
        // Original direction sends; replies stopped long ago.
        let entries = pair(
            now - SEC,
            now - 500 * SEC,
            TCP_SYN | TCP_ACK,
            TCP_SYN | TCP_ACK,
        );
        assert!(expired(&entries, now).is_empty());
    }

    #[test]
    fn an_unanswered_syn_goes_after_a_minute() {
        let now = 1000 * SEC;
        let entries = pair(now - 61 * SEC, now - 61 * SEC, TCP_SYN, 0);
        assert_eq!(expired(&entries, now).len(), 2);
        let entries = pair(now - 59 * SEC, now - 59 * SEC, TCP_SYN, 0);
        assert!(expired(&entries, now).is_empty());
    }

    #[test]
    fn port_shares_count_each_guests_translated_connections_per_destination() {
        let mut entries = pair(0, 0, 0, 0);
        let mut second = pair(0, 0, 0, 0);
        second[0].0.sport = 40002;
        entries.extend(second);
        let shares = port_shares(&entries);
        assert_eq!(shares.len(), 1, "{shares:?}");
        let (share, count) = shares.iter().next().unwrap();
        assert_eq!(*count, 2, "two connections, two ports");
        assert_eq!(
            (share.zone, share.guest, share.dst, share.dport),
            (3, [172, 18, 0, 5], [203, 0, 113, 10], 80)
        );
        // A connection through a published port holds no port of the guest's.
        let mut dnat = pair(0, 0, 0, 0);
        dnat[0].1.kind = kind::DNAT | kind::ORIGINAL;
        assert!(port_shares(&dnat).is_empty());
        // Nor does a closed one.
        let closed = pair(0, 0, TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK);
        assert!(port_shares(&closed).is_empty());
    }

    #[test]
    fn a_walk_that_repeats_keys_counts_each_once() {
        let entries = pair(0, 0, TCP_SYN, TCP_SYN | TCP_ACK);
        let repeated = entries.iter().chain(entries.iter()).chain(entries.iter());
        let unique = unique(repeated.copied());
        assert_eq!(unique.len(), entries.len());
    }

    #[test]
    fn orphans_go_after_a_short_while() {
        let now = 1000 * SEC;
        let mut entries = pair(now - 11 * SEC, now - 11 * SEC, TCP_SYN, 0);
        let reply = entries.pop().unwrap();
        assert_eq!(expired(&[reply], now), vec![reply.0]);
        assert_eq!(expired(&entries, now), vec![entries[0].0]);
        let fresh = pair(now - SEC, now - SEC, TCP_SYN, 0);
        assert!(expired(&fresh[1..], now).is_empty());
    }
}
