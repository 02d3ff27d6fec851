//! Connection tracking: one LRU entry per direction of a connection; new
//! connections claim their reply direction first, so two flows can never
//! share a translated identity.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
};
use netd_common::{
    counters::Counter,
    nat::{
        CtEntry, CtKey, IPPROTO_ICMP, LAST_SEEN_GRANULARITY_NS, NAT_KEEP_PORT_MIN, NAT_PORT_MAX,
        NAT_PORT_MIN, NAT_PORT_PROBES,
    },
};

use crate::maps::{self, CONNTRACK};

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// The entry for a packet arriving with `key`, refreshed: last-seen time
/// (at most once per granule) and the TCP flags of its direction.
#[inline(always)]
pub fn lookup(key: &CtKey, tcp_flags: u8) -> Option<CtEntry> {
    let entry = CONNTRACK.get_ptr_mut(key)?;
    let now = now();
    // SAFETY: a pointer into the map's value; concurrent writers only ever
    // store a newer time or more flag bits, so a lost update is harmless.
    unsafe {
        if now.wrapping_sub((*entry).last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
            (*entry).last_seen_ns = now;
        }
        if (*entry).tcp_flags & tcp_flags != tcp_flags {
            (*entry).tcp_flags |= tcp_flags;
        }
        Some(*entry)
    }
}

/// Looks up without refreshing (for ICMP errors, which say nothing about
/// whether the connection is alive).
#[inline(always)]
pub fn peek(key: &CtKey) -> Option<CtEntry> {
    // SAFETY: copied out at once.
    unsafe { CONNTRACK.get(key) }.copied()
}

/// Records a new connection: the packet arriving with `key` becomes
/// `wanted`. With `allocate`, `wanted.new_sport` is only a wish: the first
/// free source port (the wish, if at least [`NAT_KEEP_PORT_MIN`], then random
/// ones) is taken, claimed by inserting the reply entry with `BPF_NOEXIST`.
/// Returns the entry as stored, or the reason to drop the packet.
#[inline(always)]
pub fn create(
    key: &CtKey,
    mut wanted: CtEntry,
    allocate: bool,
    tcp_flags: u8,
) -> Result<CtEntry, Counter> {
    let now = now();
    wanted.last_seen_ns = now;
    wanted.tcp_flags = tcp_flags;
    wanted.kind |= netd_common::nat::kind::ORIGINAL;
    let reply_entry = CtEntry {
        new_src: key.dst,
        new_dst: key.src,
        new_sport: key.dport,
        new_dport: key.sport,
        out_zone: key.zone,
        kind: wanted.kind & netd_common::nat::kind::MASK,
        tcp_flags: 0,
        _pad: [0; 6],
        last_seen_ns: now,
    };
    if !allocate {
        let reply_key = wanted.reply_key(key.proto);
        if CONNTRACK
            .insert(reply_key, reply_entry, BPF_ANY as u64)
            .is_err()
        {
            return Err(Counter::DroppedTableFull);
        }
    } else {
        let wish = wanted.new_sport;
        let mut claimed = false;
        let mut attempt = 0;
        while attempt <= NAT_PORT_PROBES {
            let candidate =
                if attempt == 0 && (wish >= NAT_KEEP_PORT_MIN || key.proto == IPPROTO_ICMP) {
                    wish
                } else {
                    random_port()
                };
            attempt += 1;
            // A published port on the gateway address is not ours to hand out.
            if key.proto != IPPROTO_ICMP && maps::forward(key.proto, candidate).is_some() {
                continue;
            }
            wanted.new_sport = candidate;
            let reply_key = wanted.reply_key(key.proto);
            if CONNTRACK
                .insert(reply_key, reply_entry, BPF_NOEXIST as u64)
                .is_ok()
            {
                claimed = true;
                break;
            }
        }
        if !claimed {
            return Err(Counter::DroppedNoPort);
        }
    }
    if CONNTRACK.insert(key, wanted, BPF_ANY as u64).is_err() {
        let _ = CONNTRACK.remove(wanted.reply_key(key.proto));
        return Err(Counter::DroppedTableFull);
    }
    Ok(wanted)
}

#[inline(always)]
fn random_port() -> u16 {
    // SAFETY: plain helper call.
    let random = unsafe { bpf_get_prandom_u32() };
    NAT_PORT_MIN + (random % (NAT_PORT_MAX - NAT_PORT_MIN + 1) as u32) as u16
}
