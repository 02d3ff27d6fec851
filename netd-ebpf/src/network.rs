//! The network namespace's uplink program: packets the gateway sends to a
//! guest go straight into the guest's veth (`bpf_redirect_peer` on its
//! bridge port), past the namespace's routing and the bridge. What it cannot
//! place (unknown guests, broadcast, ARP) takes the ordinary way.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect_peer,
    programs::TcContext,
};
use netd_common::{counters::Counter, head::Ttl, zones::network_flags};

use crate::{
    counters::bump,
    head, maps,
    parse::{self, ETH_DST_OFF, ETH_HDR_LEN, Parsed},
    partition::{self, Peer, Traffic},
};

pub fn from_gateway(ctx: &TcContext) -> i32 {
    // The frame is addressed to this network's uplink: its MAC says which
    // network this is (broadcasts and ARP find nothing and pass).
    let Ok(dst_mac) = ctx.load::<[u8; 6]>(ETH_DST_OFF) else {
        return TC_ACT_OK;
    };
    let Some(zone) = maps::zone_of_mac(dst_mac) else {
        return TC_ACT_OK;
    };
    let Parsed::Ipv4(ip) = parse::ipv4(ctx) else {
        return TC_ACT_OK;
    };
    let Some(net) = maps::network(zone) else {
        return TC_ACT_OK;
    };
    // Nothing from outside reaches an internal network's guests, nor the
    // namespace's stack, which would route it to them.
    if net.flags & network_flags::INTERNAL != 0 {
        bump(zone, Counter::DroppedInternal);
        return TC_ACT_SHOT;
    }
    // Larger than the guests' MTU: the stack routes it and, as a router
    // does, fragments it or (DF set) answers "fragmentation needed" with
    // the bridge's MTU. The shortcut would hand the guest an oversized frame.
    if net.mtu != 0 && ctx.len() > u32::from(net.mtu) + ETH_HDR_LEN as u32 {
        return TC_ACT_OK;
    }
    let Some(port) = maps::guest_port(zone, ip.dst) else {
        return TC_ACT_OK;
    };
    // Everything through the uplink comes from outside the network.
    if let Some(policy) = maps::partition(zone)
        && partition::drops(
            policy,
            port.slot,
            Peer::Outside,
            false,
            &traffic_of(ctx, &ip),
        )
    {
        bump(zone, Counter::DroppedPartition);
        return TC_ACT_SHOT;
    }
    // Routing would decrement the TTL; so does the shortcut.
    let Ok(mut frame) = head::load(ctx) else {
        bump(zone, Counter::Malformed);
        return TC_ACT_OK;
    };
    if frame.decrement_ttl() == Ttl::Expired {
        // The stack sends "time exceeded".
        return TC_ACT_OK;
    }
    frame.set_macs(port.guest_mac, port.bridge_mac);
    if head::store(ctx, &frame).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_OK;
    }
    bump(zone, Counter::Delivered);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(port.port_ifindex, 0) as i32 }
}

/// The packet's protocol and ports, as fault classes match them (none for
/// a fragment after the first, or a header too short).
#[inline(always)]
pub fn traffic_of(ctx: &TcContext, ip: &parse::Ipv4) -> Traffic {
    let ports = if ip.fragment {
        None
    } else {
        parse::transport(ctx, ip)
    };
    Traffic {
        proto: ip.proto,
        sport: ports.map_or(0, |t| t.sport),
        dport: ports.map_or(0, |t| t.dport),
    }
}
