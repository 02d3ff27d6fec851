//! The gateway's two programs, each reading like a packet's journey:
//! parse, find its connection (or start one), rewrite, send on.
//!
//! From the host side come replies to guests' connections and new
//! connections to published ports; from a network come guests' packets to
//! the outside, replies to connections through published ports, and guests'
//! connections to published ports (hairpin).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    csum::{ICMP_ECHO_REQUEST, is_icmp_error},
    nat::{CtEntry, CtKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ZONE_HOST, kind},
    zones::{GatewayInfo, network_flags},
};

use crate::{
    conntrack,
    counters::bump,
    forward, icmp_error, maps, nat,
    parse::{self, Ipv4, Parsed, Transport},
};

/// A parsed packet the gateway may translate.
struct Flow {
    ip: Ipv4,
    t: Transport,
    key: CtKey,
}

/// Parses, and settles what needs no connection lookup. `Err` carries the
/// verdict for packets that stop here.
#[inline(always)]
fn classify(ctx: &TcContext, zone: u32) -> Result<Flow, i32> {
    let ip = match parse::ipv4(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::NotIpv4 => {
            bump(zone, Counter::NotIpv4);
            return Err(TC_ACT_OK);
        }
        Parsed::Malformed => {
            bump(zone, Counter::Malformed);
            return Err(TC_ACT_OK);
        }
    };
    if ip.fragment {
        bump(zone, Counter::DroppedFragment);
        return Err(TC_ACT_SHOT);
    }
    let Some(t) = parse::transport(ctx, &ip) else {
        bump(zone, Counter::Malformed);
        return Err(TC_ACT_OK);
    };
    let key = CtKey {
        zone,
        src: ip.src,
        dst: ip.dst,
        sport: t.sport,
        dport: t.dport,
        proto: ip.proto,
        _pad: [0; 3],
    };
    Ok(Flow { ip, t, key })
}

/// An existing connection's packet: rewrite and send on.
#[inline(always)]
fn translate(ctx: &TcContext, gw: &GatewayInfo, flow: &Flow, entry: &CtEntry) -> i32 {
    let zone = flow.key.zone;
    if nat::rewrite(ctx, &flow.ip, &flow.t, entry).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(zone, Counter::Translated);
    forward::to_zone(ctx, gw, entry.out_zone, zone)
}

/// A new connection: record it, rewrite, send on.
#[inline(always)]
fn start(
    ctx: &TcContext,
    gw: &GatewayInfo,
    flow: &Flow,
    wanted: CtEntry,
    allocate: bool,
    counter: Counter,
) -> i32 {
    let zone = flow.key.zone;
    match conntrack::create(&flow.key, wanted, allocate, flow.t.tcp_flags) {
        Ok(entry) => {
            bump(zone, counter);
            translate(ctx, gw, flow, &entry)
        }
        Err(reason) => {
            bump(zone, reason);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn is_error(flow: &Flow) -> bool {
    flow.ip.proto == IPPROTO_ICMP && is_icmp_error(flow.t.icmp_type)
}

/// On the gateway's veth to the host, ingress.
pub fn from_host(ctx: &TcContext) -> i32 {
    let Some(gw) = maps::gateway() else {
        return TC_ACT_OK;
    };
    let flow = match classify(ctx, ZONE_HOST) {
        Ok(flow) => flow,
        Err(verdict) => return verdict,
    };
    if is_error(&flow) {
        return icmp_error::translate(ctx, &gw, &flow.ip, ZONE_HOST);
    }
    if let Some(entry) = conntrack::lookup(&flow.key, flow.t.tcp_flags) {
        return translate(ctx, &gw, &flow, &entry);
    }
    if flow.ip.dst == gw.gateway_ip
        && matches!(flow.ip.proto, IPPROTO_TCP | IPPROTO_UDP)
        && let Some(target) = maps::forward(flow.ip.proto, flow.t.dport)
    {
        let wanted = CtEntry {
            new_src: flow.ip.src,
            new_dst: target.guest_ip,
            new_sport: flow.t.sport,
            new_dport: target.guest_port,
            out_zone: target.zone,
            kind: kind::DNAT,
            ..CtEntry::default()
        };
        return start(ctx, &gw, &flow, wanted, false, Counter::NewDnat);
    }
    // Untranslated: routable networks, and the gateway itself.
    forward::by_route(ctx, &gw, ZONE_HOST)
}

/// On each gateway port to a network, ingress.
pub fn from_network(ctx: &TcContext) -> i32 {
    let Some(gw) = maps::gateway() else {
        return TC_ACT_OK;
    };
    let Some(zone) = maps::zone_of_ifindex(forward::ingress_ifindex(ctx)) else {
        return TC_ACT_OK;
    };
    let Some(net) = maps::network(zone) else {
        return TC_ACT_OK;
    };
    let flow = match classify(ctx, zone) {
        Ok(flow) => flow,
        Err(verdict) => return verdict,
    };
    if is_error(&flow) {
        return icmp_error::translate(ctx, &gw, &flow.ip, zone);
    }
    if let Some(entry) = conntrack::lookup(&flow.key, flow.t.tcp_flags) {
        return translate(ctx, &gw, &flow, &entry);
    }
    let ip = &flow.ip;
    let to_gateway = ip.dst == gw.gateway_ip;
    if (to_gateway || maps::is_host_addr(ip.dst))
        && matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP)
        && let Some(target) = maps::forward(ip.proto, flow.t.dport)
        && (to_gateway || target.host_ip == [0; 4] || target.host_ip == ip.dst)
    {
        // Hairpin: both ends translated, so the reply comes back this way
        // even when both guests share a bridge.
        let wanted = CtEntry {
            new_src: gw.gateway_ip,
            new_dst: target.guest_ip,
            new_sport: flow.t.sport,
            new_dport: target.guest_port,
            out_zone: target.zone,
            kind: kind::HAIRPIN,
            ..CtEntry::default()
        };
        return start(ctx, &gw, &flow, wanted, true, Counter::NewHairpin);
    }
    if to_gateway {
        bump(zone, Counter::ToStack);
        return TC_ACT_OK;
    }
    if net.flags & network_flags::ROUTABLE != 0 {
        // The host knows this subnet's route and masquerades it itself.
        return forward::by_route(ctx, &gw, zone);
    }
    let translatable = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => true,
        IPPROTO_ICMP => flow.t.icmp_type == ICMP_ECHO_REQUEST,
        _ => false,
    };
    if !translatable {
        bump(zone, Counter::DroppedUnsupported);
        return TC_ACT_SHOT;
    }
    let wanted = CtEntry {
        new_src: gw.gateway_ip,
        new_dst: ip.dst,
        new_sport: flow.t.sport,
        new_dport: flow.t.dport,
        out_zone: ZONE_HOST,
        kind: kind::SNAT,
        ..CtEntry::default()
    };
    start(ctx, &gw, &flow, wanted, true, Counter::NewSnat)
}
