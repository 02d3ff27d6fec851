//! Enforcing a network's fault policy: the policy in force is read on every
//! packet, before anything else forwards it, so established connections are
//! cut too. Every fault class that selects the packet (its pair or its
//! guest's traffic with the outside, and its protocol and port) applies:
//! drops (all or a share), and on the guest's own port the impairments
//! (`Impairments`) the caller carries out.

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use netd_common::partition::{FaultClass, MAX_FAULTS, PartitionPolicy, RateBucket, RateKey};

use crate::maps;

/// Where a guest's packet is going, as the policy sees it.
#[derive(Clone, Copy)]
pub enum Peer {
    /// Another guest of the same network, by slot.
    Guest(u8),
    /// Anything outside the network (the gateway, the host, the internet).
    Outside,
}

/// A packet's transport, as fault classes match it.
#[derive(Clone, Copy)]
pub struct Traffic {
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// What the policy does to a packet it lets through.
#[derive(Clone, Copy, Default)]
pub struct Impairments {
    pub duplicate: bool,
    pub corrupt: bool,
    /// The delay line's ifindex (0: not delayed), from the first class
    /// that delays the packet, and that class's index (`delay_class`),
    /// which tells the daemon how long to hold it.
    pub delay_ifindex: u32,
    pub delay_class: u32,
}

/// Why a packet is dropped.
pub enum Drop {
    /// A cut or a loss share.
    Partition,
    /// Its sender is over a class's rate.
    Rate,
}

#[inline(always)]
fn random() -> u32 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn selects(class: &FaultClass, slot: u8, peer: Peer, outbound: bool, traffic: &Traffic) -> bool {
    let selected = match peer {
        Peer::Guest(other) if outbound => class.selects_pair(slot, other),
        Peer::Guest(other) => class.selects_pair(other, slot),
        Peer::Outside => class.selects_outside(slot),
    };
    selected && class.selects_traffic(traffic.proto, traffic.sport, traffic.dport)
}

/// Whether the policy drops this packet between guest `slot` and `peer`
/// (in the direction given by `outbound`): the journeys that only drop
/// (from the outside, and a guest's hairpin through a published port).
#[inline(always)]
pub fn drops(
    policy: &PartitionPolicy,
    slot: u8,
    peer: Peer,
    outbound: bool,
    traffic: &Traffic,
) -> bool {
    let mut index = 0;
    while index < MAX_FAULTS {
        if index as u32 >= policy.count {
            break;
        }
        let class = &policy.faults[index];
        if selects(class, slot, peer, outbound, traffic) && class.drops(random()) {
            return true;
        }
        index += 1;
    }
    false
}

/// Whether the policy cuts (drops whole, not a share) what guest `from`
/// sends to guest `to`: what a receiving node checks again for packets
/// from the overlay, where shares, rates and impairments, already applied
/// by the sender, are not applied twice.
#[inline(always)]
pub fn cuts(policy: &PartitionPolicy, from: u8, to: u8, traffic: &Traffic) -> bool {
    let mut index = 0;
    while index < MAX_FAULTS {
        if index as u32 >= policy.count {
            break;
        }
        let class = &policy.faults[index];
        if class.flags & netd_common::partition::fault_flags::DROP_ALL != 0
            && selects(class, from, Peer::Guest(to), true, traffic)
        {
            return true;
        }
        index += 1;
    }
    false
}

/// A packet a guest sends, as the policy's classes see it.
pub struct Sent {
    pub zone: u32,
    /// The sender's slot.
    pub slot: u8,
    pub peer: Peer,
    pub traffic: Traffic,
    /// Bytes, for the rate.
    pub len: u32,
}

/// A packet a guest sends, through every class of the policy of its
/// network: dropped, or let through with the impairments to carry out. Out
/// of line (the guest port's program is near the verifier's stack limit),
/// so its arguments travel in one struct: a BPF function takes at most
/// five, in registers.
#[inline(never)]
pub fn from_guest(policy: &PartitionPolicy, sent: &Sent) -> Result<Impairments, Drop> {
    let (zone, slot, peer, traffic, len) =
        (sent.zone, sent.slot, sent.peer, &sent.traffic, sent.len);
    let mut impair = Impairments::default();
    let mut index = 0;
    while index < MAX_FAULTS {
        if index as u32 >= policy.count {
            break;
        }
        let class = &policy.faults[index];
        if selects(class, slot, peer, true, traffic) {
            if class.drops(random()) {
                return Err(Drop::Partition);
            }
            if class.rate_bytes_per_sec != 0 && !take_tokens(zone, policy, index, slot, len) {
                return Err(Drop::Rate);
            }
            impair.duplicate |= class.duplicates(random());
            impair.corrupt |= class.corrupts(random());
            if impair.delay_ifindex == 0 {
                impair.delay_ifindex = class.delay_line();
                impair.delay_class = index as u32;
            }
        }
        index += 1;
    }
    Ok(impair)
}

/// Takes `len` bytes from the sender's bucket of class `index`; whether
/// the packet may pass. A bucket is made full on a sender's first packet.
#[inline(always)]
fn take_tokens(zone: u32, policy: &PartitionPolicy, index: usize, slot: u8, len: u32) -> bool {
    let class = &policy.faults[index];
    let key = RateKey {
        zone,
        generation: policy.generation,
        class: index as u32,
        slot: slot as u32,
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    match maps::RATE_BUCKETS.get_ptr_mut(key) {
        // SAFETY: an LRU value stays valid for the program's run; CPUs may
        // race on it, which costs the rate a little accuracy, never safety.
        Some(bucket) => unsafe { (*bucket).take(class, now, len as u64) },
        None => {
            let mut bucket = RateBucket::full(class, now);
            let passes = bucket.take(class, now, len as u64);
            let _ = maps::RATE_BUCKETS.insert(key, bucket, 0);
            passes
        }
    }
}
