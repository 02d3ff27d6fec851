//! A guest's bridge port, ingress (what the guest sends): the guest may only
//! send as itself — its own MAC, and its own IPv4 address in ARP and IP —
//! and only to whom the network's partition lets it. Then the packet leaves
//! in one step, as on a direct veth: to another guest of the network
//! straight into that guest's veth, to the outside (sent to the bridge's
//! MAC) routed by the program itself straight into the gateway's port. Only
//! ARP, broadcasts and packets for the bridge itself cross the bridge. A
//! guest of an internal network sends nothing outside its subnet.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect_peer,
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    head::Ttl,
    zones::{NetworkInfo, REMOTE_GUEST, gateway_flags, network_flags, zone_mark},
};

use crate::{
    counters::bump,
    forward::ingress_ifindex,
    head, impairment, maps,
    network::traffic_of,
    parse::{
        self, ARP_SENDER_IP_OFF, ARP_SENDER_MAC_OFF, ETH_DST_OFF, ETH_P_ARP, ETH_TYPE_OFF, Parsed,
    },
    partition::{self, Drop, Impairments, Peer, Sent},
};

pub fn from_guest(ctx: &TcContext) -> i32 {
    // Both MACs in one load: the source says who sends, the destination
    // where to.
    let Ok(macs) = ctx.load::<[u8; 12]>(ETH_DST_OFF) else {
        return TC_ACT_SHOT;
    };
    let src_mac = [macs[6], macs[7], macs[8], macs[9], macs[10], macs[11]];
    let dst_mac = [macs[0], macs[1], macs[2], macs[3], macs[4], macs[5]];
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
    let Some(net) = maps::network(me.zone) else {
        // Not registered yet: the bridge and the namespace's routing serve.
        return TC_ACT_OK;
    };
    let inside = net.contains(ip.dst);
    // An internal network's guests reach nothing outside it, by whatever
    // MAC they address it (the bridge's stack would route it otherwise).
    if !inside && net.flags & network_flags::INTERNAL != 0 {
        bump(me.zone, Counter::DroppedInternal);
        return TC_ACT_SHOT;
    }
    let other = if inside {
        maps::guest_port(me.zone, ip.dst)
    } else {
        None
    };
    let mut impair = Impairments::default();
    if let Some(policy) = maps::partition(me.zone) {
        let peer = match &other {
            Some(other) => Peer::Guest(other.slot),
            None => Peer::Outside,
        };
        let sent = Sent {
            zone: me.zone,
            slot: me.slot,
            peer,
            traffic: traffic_of(ctx, &ip),
            len: ctx.len(),
        };
        match partition::from_guest(policy, &sent) {
            Ok(found) => impair = found,
            Err(Drop::Partition) => {
                bump(me.zone, Counter::DroppedPartition);
                return TC_ACT_SHOT;
            }
            Err(Drop::Rate) => {
                bump(me.zone, Counter::DroppedRate);
                return TC_ACT_SHOT;
            }
        }
        if impair.corrupt {
            impairment::corrupt(ctx, me.zone, ip.l4);
        }
    }
    let Some(next) = next_hop(&net, other, ip.dst, inside, dst_mac) else {
        return TC_ACT_OK;
    };
    if impair.delay_ifindex != 0 {
        return impairment::delay(
            ctx,
            me.zone,
            impair.delay_ifindex,
            impair.delay_class,
            impair.duplicate,
        );
    }
    deliver(ctx, &net, me.zone, next, impair.duplicate)
}

/// Where a guest's packet leaves for, past the bridge.
#[derive(Clone, Copy)]
pub enum NextHop {
    /// Another guest's veth (its bridge port's ifindex).
    Guest(u32),
    /// The gateway, through the network's uplink; the packet's destination.
    Gateway([u8; 4]),
}

/// Where the packet goes in one step, or None when the bridge and the
/// namespace's stack serve it (ARP-less guesses, packets for the bridge,
/// a network whose uplink is not known yet).
#[inline(always)]
pub fn next_hop(
    net: &NetworkInfo,
    other: Option<netd_common::zones::GuestPort>,
    dst: [u8; 4],
    inside: bool,
    dst_mac: [u8; 6],
) -> Option<NextHop> {
    match other {
        // Another guest of this node, addressed by its own MAC: into its
        // veth. A remote guest (a spanned network's) goes on to the bridge
        // and out through the overlay.
        Some(other) if other.guest_mac == dst_mac && other.port_ifindex != REMOTE_GUEST => {
            Some(NextHop::Guest(other.port_ifindex))
        }
        None if !inside && dst_mac == net.bridge_mac && net.uplink_mac != [0; 6] => {
            Some(NextHop::Gateway(dst))
        }
        _ => None,
    }
}

/// Sends the packet on in one step (and its copy first, if duplicated):
/// the guest port's last step, and the delay line's once a packet's delay
/// is over.
#[inline(always)]
pub fn deliver(
    ctx: &TcContext,
    net: &NetworkInfo,
    zone: u32,
    next: NextHop,
    duplicate: bool,
) -> i32 {
    match next {
        NextHop::Guest(port_ifindex) => {
            if duplicate {
                impairment::duplicate(ctx, zone, port_ifindex);
            }
            bump(zone, Counter::Delivered);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect_peer(port_ifindex, 0) as i32 }
        }
        NextHop::Gateway(dst) => to_gateway(ctx, net, zone, dst, duplicate),
    }
}

/// Routes a packet for the outside as the network namespace would, and
/// puts it straight into the gateway's port for this network. A function
/// of its own in the object: its frame head would not fit in the guest
/// port's stack beside the partition's.
#[inline(never)]
fn to_gateway(ctx: &TcContext, net: &NetworkInfo, zone: u32, dst: [u8; 4], duplicate: bool) -> i32 {
    let Ok(mut frame) = head::load(ctx) else {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    if frame.decrement_ttl() == Ttl::Expired {
        // The namespace's stack sends "time exceeded".
        return TC_ACT_OK;
    }
    frame.set_macs(net.gateway_port_mac, net.uplink_mac);
    if head::store(ctx, &frame).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    if for_host_programs(net, dst) {
        ctx.set_mark(zone_mark(zone));
    }
    if duplicate {
        impairment::duplicate(ctx, zone, net.uplink_ifindex);
    }
    bump(zone, Counter::Forwarded);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(net.uplink_ifindex, 0) as i32 }
}

/// Whether the packet is for the eBPF host side's programs, which
/// translate it: not for the gateway, nor for one of the host's addresses
/// (where published ports turn round at the gateway), nor from a routable
/// network (the host's stack routes those). Such a packet is marked with
/// its zone here, and the gateway's program sends it on at once, without
/// lookups of its own; the mark survives the step into the gateway and no
/// guest can set it (a veth clears it between namespaces).
#[inline(always)]
fn for_host_programs(net: &NetworkInfo, dst: [u8; 4]) -> bool {
    let Some(gw) = maps::gateway() else {
        return false;
    };
    if gw.flags & gateway_flags::HOST_EBPF == 0 || net.flags & network_flags::ROUTABLE != 0 {
        return false;
    }
    dst != gw.gateway_ip && !maps::is_host_addr(dst)
}

/// ARP passes when it speaks for the guest itself; everything else that is
/// not IPv4 (IPv6 would reach other guests around the IPv4 policy) is
/// dropped: netd's networks are IPv4.
fn arp_or_drop(ctx: &TcContext, zone: u32, src_mac: [u8; 6], own_ip: [u8; 4]) -> i32 {
    let Ok(ethertype) = ctx.load::<[u8; 2]>(ETH_TYPE_OFF) else {
        return TC_ACT_SHOT;
    };
    if u16::from_be_bytes(ethertype) != ETH_P_ARP {
        bump(zone, Counter::DroppedUnsupported);
        return TC_ACT_SHOT;
    }
    let (Ok(sender_mac), Ok(sender_ip)) = (
        ctx.load::<[u8; 6]>(ARP_SENDER_MAC_OFF),
        ctx.load::<[u8; 4]>(ARP_SENDER_IP_OFF),
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
