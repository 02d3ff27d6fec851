//! A spanned network's VXLAN device, ingress (what other nodes' guests
//! send here, decapsulated): a packet from a remote guest to a guest of
//! this node meets the partition's cuts once more, as this node has them,
//! so a sending node that is late to apply a partition cannot let traffic
//! through. ARP for or from the network's gateway address is dropped:
//! every node's bridge holds that address, and a guest must resolve its own
//! node's bridge, never take another node's answer (or request) for it.
//! Everything else (other ARP, broadcasts, unknown senders) goes on to the
//! bridge.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::counters::Counter;

use crate::{
    counters::bump,
    maps,
    network::traffic_of,
    parse::{
        self, ARP_SENDER_IP_OFF, ARP_TARGET_IP_OFF, ETH_DST_OFF, ETH_P_ARP, ETH_TYPE_OFF, Parsed,
    },
    partition,
};

pub fn from_overlay(ctx: &TcContext) -> i32 {
    if let Some(zone) = arp_of_gateway(ctx) {
        bump(zone, Counter::DroppedOverlayArp);
        return TC_ACT_SHOT;
    }
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

/// The zone of the spanned network whose gateway address an ARP packet
/// asks for or comes from (None for any other packet).
#[inline(always)]
fn arp_of_gateway(ctx: &TcContext) -> Option<u32> {
    let ethertype = ctx.load::<[u8; 2]>(ETH_TYPE_OFF).ok()?;
    if u16::from_be_bytes(ethertype) != ETH_P_ARP {
        return None;
    }
    let sender = ctx.load::<[u8; 4]>(ARP_SENDER_IP_OFF).ok()?;
    if let Some(zone) = maps::overlay_gateway(sender) {
        return Some(zone);
    }
    let target = ctx.load::<[u8; 4]>(ARP_TARGET_IP_OFF).ok()?;
    maps::overlay_gateway(target)
}
