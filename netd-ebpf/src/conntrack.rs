//! Connection tracking: one LRU entry per direction of a connection; new
//! connections claim their reply direction first, so two flows can never
//! share a translated identity.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, generated::bpf_ktime_get_coarse_ns},
};
use netd_common::{
    counters::Counter,
    nat::{
        CtEntry, CtKey, IPPROTO_ICMP, IPPROTO_TCP, LAST_SEEN_GRANULARITY_NS, NAT_PORT_PROBES,
        ORPHAN_SECS, PortRange, ShareKey, idle_timeout_ns, kind, tcp_closed, tcp_reopens,
    },
};

use crate::maps::{self, CONNTRACK, PORT_SHARES};

/// The programs' clock (CLOCK_MONOTONIC), as user space's collector reads it.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// A clock good to a jiffy and cheaper to read: enough to decide whether an
/// entry's last-seen time, kept to the second, is due for a refresh.
#[inline(always)]
pub fn coarse_now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The entry for a packet arriving with `key`, refreshed: last-seen time
/// (at most once per granule) and the TCP flags of its direction. A new
/// connection on an ended one's tuple keeps the translation and starts the
/// pair's state over ([`tcp_reopens`]).
#[inline(always)]
pub fn lookup(key: &CtKey, tcp_flags: u8) -> Option<CtEntry> {
    let entry = CONNTRACK.get_ptr_mut(key)?;
    // SAFETY: as below; both entries' flags start over, a lost race with
    // another CPU only leaves more flag bits, which the next packets add.
    unsafe {
        if key.proto == IPPROTO_TCP && tcp_reopens(tcp_flags, (*entry).tcp_flags) {
            (*entry).tcp_flags = 0;
            if let Some(partner) = CONNTRACK.get_ptr_mut((*entry).reply_key(key.proto)) {
                (*partner).tcp_flags = 0;
            }
        }
    }
    let now = coarse_now();
    // SAFETY: a pointer into the map's value; concurrent writers only ever
    // store a newer time or more flag bits, so a lost update is harmless.
    // The coarse clock lags the fine one by at most a jiffy, far below the
    // granule, so the collector's judgement is unchanged.
    unsafe {
        if now.wrapping_sub((*entry).last_seen_ns) > LAST_SEEN_GRANULARITY_NS
            && now > (*entry).last_seen_ns
        {
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
/// `wanted`. With `ports`, `wanted.new_sport` is only a wish: the first
/// free source port (the wish, if the range keeps it, then random ones in
/// the range) is taken, claimed by inserting the reply entry with
/// `BPF_NOEXIST`; a port whose connection has ended (TCP closed, or idle
/// past its timeout) is taken over at once rather than waiting for the
/// collector. Returns the entry as stored, or the reason to drop the packet.
#[inline(always)]
pub fn create(
    key: &CtKey,
    mut wanted: CtEntry,
    ports: Option<PortRange>,
    tcp_flags: u8,
) -> Result<CtEntry, Counter> {
    let now = now();
    wanted.last_seen_ns = now;
    wanted.tcp_flags = tcp_flags;
    wanted.kind |= kind::ORIGINAL;
    let reply_entry = CtEntry {
        new_src: key.dst,
        new_dst: key.src,
        new_sport: key.dport,
        new_dport: key.sport,
        out_zone: key.zone,
        kind: wanted.kind & kind::MASK,
        tcp_flags: 0,
        _pad: [0; 6],
        last_seen_ns: now,
    };
    match ports {
        None => {
            let reply_key = wanted.reply_key(key.proto);
            if CONNTRACK
                .insert(reply_key, reply_entry, BPF_ANY as u64)
                .is_err()
            {
                return Err(Counter::DroppedTableFull);
            }
        }
        Some(range) => {
            let share = ShareKey::of(key);
            let held = PORT_SHARES.get_ptr_mut(share);
            // SAFETY: a pointer into the map's value, read once.
            let over = held.is_some_and(|held| unsafe { *held } >= range.share());
            // Beyond its share a guest gets one try at a free port: while
            // the range is roomy it is not held back, as it fills up the
            // others' many tries win the ports left.
            let probes = if over { 0 } else { NAT_PORT_PROBES };
            let wish = wanted.new_sport;
            let mut claimed = false;
            let mut attempt = 0;
            while attempt <= probes {
                let candidate = if attempt == 0 && (range.keeps(wish) || key.proto == IPPROTO_ICMP)
                {
                    wish
                } else {
                    // SAFETY: plain helper call.
                    range.pick(unsafe { bpf_get_prandom_u32() })
                };
                attempt += 1;
                // A published port is not ours to hand out.
                if key.proto != IPPROTO_ICMP && maps::forward(key.proto, candidate).is_some() {
                    continue;
                }
                wanted.new_sport = candidate;
                let reply_key = wanted.reply_key(key.proto);
                // An ended connection's port is as good as free, beyond the
                // share too: the share bounds the ports a guest holds live,
                // and its count lags (the collector recounts every tick), so
                // a guest reconnecting fast is over it on paper long before
                // it holds that many.
                if CONNTRACK
                    .insert(reply_key, reply_entry, BPF_NOEXIST as u64)
                    .is_ok()
                    || take_over(&reply_key, reply_entry, now)
                {
                    claimed = true;
                    break;
                }
            }
            if !claimed {
                return Err(if over {
                    Counter::DroppedPortShare
                } else {
                    Counter::DroppedNoPort
                });
            }
            match held {
                // SAFETY: as above; concurrent creates may lose an increment,
                // which the collector's recount puts right.
                Some(held) => unsafe { *held += 1 },
                None => {
                    let _ = PORT_SHARES.insert(share, 1, BPF_ANY as u64);
                }
            }
        }
    }
    if CONNTRACK.insert(key, wanted, BPF_ANY as u64).is_err() {
        let _ = CONNTRACK.remove(wanted.reply_key(key.proto));
        return Err(Counter::DroppedTableFull);
    }
    Ok(wanted)
}

/// Takes over `reply_key` if the connection holding it has ended: both of
/// its entries go, and `reply_entry` takes the key.
#[inline(always)]
fn take_over(reply_key: &CtKey, reply_entry: CtEntry, now: u64) -> bool {
    let Some(held) = peek(reply_key) else {
        return false;
    };
    let partner_key = held.reply_key(reply_key.proto);
    let ended = match peek(&partner_key) {
        None => now.saturating_sub(held.last_seen_ns) > ORPHAN_SECS * 1_000_000_000,
        Some(partner) => {
            let (original, reply) = if held.kind & kind::ORIGINAL != 0 {
                (held.tcp_flags, partner.tcp_flags)
            } else {
                (partner.tcp_flags, held.tcp_flags)
            };
            let last_seen = if held.last_seen_ns > partner.last_seen_ns {
                held.last_seen_ns
            } else {
                partner.last_seen_ns
            };
            (reply_key.proto == IPPROTO_TCP && tcp_closed(original, reply))
                || now.saturating_sub(last_seen) > idle_timeout_ns(reply_key.proto, original, reply)
        }
    };
    if !ended {
        return false;
    }
    let _ = CONNTRACK.remove(partner_key);
    CONNTRACK
        .insert(reply_key, reply_entry, BPF_ANY as u64)
        .is_ok()
}
