//! A spanned network's VXLAN device, ingress (what other nodes' guests
//! send here, decapsulated): a packet from a remote guest to a guest of
//! this node meets the partition's cuts once more, as this node has them,
//! so a sending node that is late to apply a partition cannot let traffic
//! through. Everything else (ARP, broadcasts, unknown senders) goes on to
//! the bridge.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::counters::Counter;

use crate::{
    counters::bump,
    maps,
    network::traffic_of,
    parse::{self, ETH_DST_OFF, Parsed},
    partition,
};

pub fn from_overlay(ctx: &TcContext) -> i32 {
    let Ok(dst_mac) = ctx.load::<[u8; 6]>(ETH_DST_OFF) else {
        return TC_ACT_OK;
    };
    // For a guest of this node: its identity says the zone and its slot.
    let Some(to) = maps::guest_by_mac(dst_mac) else {
        return TC_ACT_OK;
    };
    let Some(policy) = maps::partition(to.zone) else {
        return TC_ACT_OK;
    };
    let ip = match parse::ipv4(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::Malformed => {
            bump(to.zone, Counter::Malformed);
            return TC_ACT_SHOT;
        }
        Parsed::NotIpv4 => return TC_ACT_OK,
    };
    let Some(from) = maps::guest_port(to.zone, ip.src) else {
        return TC_ACT_OK;
    };
    if partition::cuts(policy, from.slot, to.slot, &traffic_of(ctx, &ip)) {
        bump(to.zone, Counter::DroppedPartition);
        return TC_ACT_SHOT;
    }
    TC_ACT_OK
}
