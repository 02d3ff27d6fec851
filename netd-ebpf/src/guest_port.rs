//! A guest's bridge port, ingress (what the guest sends): the guest may only
//! send as itself — its own MAC, and its own IPv4 address in ARP and IP — and
//! only to whom the network's partition lets it.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::counters::Counter;

use crate::{
    counters::bump,
    forward::ingress_ifindex,
    maps,
    parse::{self, Parsed},
    partition::{self, Peer},
};

const ETH_P_ARP: u16 = 0x0806;
/// The ARP sender's MAC and IPv4 address, from the start of the frame.
const ARP_SENDER_MAC: usize = 14 + 8;
const ARP_SENDER_IP: usize = 14 + 14;

pub fn from_guest(ctx: &TcContext) -> i32 {
    let Ok(src_mac) = ctx.load::<[u8; 6]>(6) else {
        return TC_ACT_SHOT;
    };
    // Unknown MAC, or a known one on another guest's port: forged.
    let Some(me) = maps::guest_by_mac(src_mac) else {
        bump(0, Counter::DroppedSpoofed);
        return TC_ACT_SHOT;
    };
    if me.port_ifindex != ingress_ifindex(ctx) {
        bump(me.zone, Counter::DroppedSpoofed);
        return TC_ACT_SHOT;
    }
    let ip = match parse::ipv4(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::Malformed => {
            bump(me.zone, Counter::Malformed);
            return TC_ACT_SHOT;
        }
        Parsed::NotIpv4 => return arp_or_drop(ctx, me.zone, src_mac, me.ip),
    };
    if ip.src != me.ip {
        bump(me.zone, Counter::DroppedSpoofed);
        return TC_ACT_SHOT;
    }
    let Some(policy) = maps::partition(me.zone) else {
        return TC_ACT_OK;
    };
    let peer = match maps::guest_port(me.zone, ip.dst) {
        Some(other) => Peer::Guest(other.slot),
        None => Peer::Outside,
    };
    if partition::drops(policy, me.slot, peer, true) {
        bump(me.zone, Counter::DroppedPartition);
        return TC_ACT_SHOT;
    }
    TC_ACT_OK
}

/// ARP passes when it speaks for the guest itself; everything else that is
/// not IPv4 (IPv6 would reach other guests around the IPv4 policy) is
/// dropped: netd's networks are IPv4.
fn arp_or_drop(ctx: &TcContext, zone: u32, src_mac: [u8; 6], own_ip: [u8; 4]) -> i32 {
    let Ok(ethertype) = ctx.load::<[u8; 2]>(12) else {
        return TC_ACT_SHOT;
    };
    if u16::from_be_bytes(ethertype) != ETH_P_ARP {
        bump(zone, Counter::DroppedUnsupported);
        return TC_ACT_SHOT;
    }
    let (Ok(sender_mac), Ok(sender_ip)) = (
        ctx.load::<[u8; 6]>(ARP_SENDER_MAC),
        ctx.load::<[u8; 4]>(ARP_SENDER_IP),
    ) else {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    if sender_mac != src_mac || sender_ip != own_ip {
        bump(zone, Counter::DroppedSpoofed);
        return TC_ACT_SHOT;
    }
    bump(zone, Counter::NotIpv4);
    TC_ACT_OK
}
