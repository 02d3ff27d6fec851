//! The host link program's remembered next hops ([`NextHop`]): an
//! established connection's packet takes the device and MACs its
//! destination's last FIB lookup found, while the daemon's routing epoch
//! says nothing changed and the entry is young.

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    maps::{Array, LruHashMap},
    programs::TcContext,
};
use netd_common::{
    maps::NEXT_HOPS_MAX_ENTRIES,
    next_hop::{NEXT_HOP_MAX_AGE_NS, NextHop},
};

use crate::conntrack::coarse_now;

netd_map! {
    "NETD_NEXT_HOPS" == netd_common::maps::NEXT_HOPS,
    static NEXT_HOPS: LruHashMap<[u8; 4], NextHop> = LruHashMap::with_max_entries(NEXT_HOPS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_ROUTE_EPOCH" == netd_common::maps::ROUTE_EPOCH,
    static ROUTE_EPOCH: Array<u32> = Array::with_max_entries(1, 0);
}

/// The host's routing epoch now. Read before a lookup whose answer is to be
/// remembered: a change during the lookup then leaves the entry stale.
#[inline(always)]
pub fn epoch() -> u32 {
    ROUTE_EPOCH.get(0).copied().unwrap_or(0)
}

/// Fills `params` (device, MACs) from the hop remembered for `dst`, if it
/// still holds for this packet.
#[inline(always)]
pub fn recall(ctx: &TcContext, dst: [u8; 4], params: &mut bpf_fib_lookup) -> bool {
    let Some(hop) = NEXT_HOPS.get_ptr(dst) else {
        return false;
    };
    // SAFETY: reading the skb's fields the program was given, and a map
    // value that stays valid for the program's run (RCU); a concurrent
    // update may mix an old and a new hop's fields, both of them right
    // within their epoch, and the epoch is checked again by the next
    // packet.
    let (hop, gso) = unsafe { (&*hop, (*ctx.skb.skb).gso_size != 0) };
    if !hop.usable(epoch(), coarse_now(), ctx.len(), gso) {
        return false;
    }
    params.ifindex = hop.ifindex;
    params.dmac = hop.dmac;
    params.smac = hop.smac;
    true
}

/// Remembers a successful lookup for `dst`, made in `epoch`, unless the
/// hop remembered is this one and in force (each new connection looks its
/// next hop up, and an LRU update costs more than this look).
#[inline(always)]
pub fn remember(dst: [u8; 4], params: &bpf_fib_lookup, epoch: u32) {
    if epoch == 0 {
        return;
    }
    if let Some(hop) = NEXT_HOPS.get_ptr(dst) {
        // SAFETY: as in `recall`.
        let hop = unsafe { &*hop };
        if hop.epoch == epoch
            && hop.ifindex == params.ifindex
            && hop.dmac == params.dmac
            && hop.smac == params.smac
            && coarse_now().wrapping_sub(hop.since_ns) < NEXT_HOP_MAX_AGE_NS / 2
        {
            return;
        }
    }
    let hop = NextHop {
        ifindex: params.ifindex,
        epoch,
        since_ns: coarse_now(),
        dmac: params.dmac,
        smac: params.smac,
        // SAFETY: after a successful lookup on an skb the kernel leaves the
        // device's MTU in the union.
        mtu: u32::from(unsafe { params.__bindgen_anon_1.mtu_result }),
    };
    let _ = NEXT_HOPS.insert(dst, hop, 0);
}
