//! Enforcing a network's partition: the policy in force is read on every
//! packet, before anything else forwards it, so established connections are
//! cut too. Affected packets are dropped, all of them or a random share.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use netd_common::partition::PartitionPolicy;

/// Where a guest's packet is going, as the policy sees it.
pub enum Peer {
    /// Another guest of the same network, by slot.
    Guest(u8),
    /// Anything outside the network (the gateway, the host, the internet).
    Outside,
}

/// Whether the policy drops this packet between guest `slot` and `peer`
/// (in the direction given by `outbound`).
#[inline(always)]
pub fn drops(policy: &PartitionPolicy, slot: u8, peer: Peer, outbound: bool) -> bool {
    let cut = match peer {
        Peer::Guest(other) if outbound => policy.cut_between(slot, other),
        Peer::Guest(other) => policy.cut_between(other, slot),
        Peer::Outside => policy.cut_from_outside(slot),
    };
    // SAFETY: plain helper call.
    cut && policy.drops(unsafe { bpf_get_prandom_u32() })
}
