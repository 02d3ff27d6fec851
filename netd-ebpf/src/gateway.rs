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
    csum::ICMP_ECHO_REQUEST,
    nat::{CtEntry, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, PortRange, ZONE_HOST, kind},
    zones::{GatewayInfo, gateway_flags, network_flags, zone_of_mark},
};

use crate::{
    conntrack,
    counters::bump,
    flow::{Flow, classify, is_error},
    forward, icmp_error, maps, nat,
    parse::{ETH_P_IP, IP_DST_OFF},
    partition::{self, Peer, Traffic},
};

/// An existing connection's packet: rewrite and send on.
#[inline(always)]
fn translate(ctx: &TcContext, gw: &GatewayInfo, flow: &Flow, entry: &CtEntry) -> i32 {
    let zone = flow.key.zone;
    if entry.out_zone == zone && cut_between_guests(zone, flow, entry.new_dst) {
        bump(zone, Counter::DroppedPartition);
        return TC_ACT_SHOT;
    }
    if nat::rewrite(ctx, &flow.ip, &flow.t, entry).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(zone, Counter::Translated);
    forward::to_zone(ctx, gw, entry.out_zone, zone)
}

/// Whether the network's partition cuts guest `from` off guest `to`: a
/// guest reaching another of its network through a published port (hairpin)
/// meets the same cut as on the direct way, on every packet.
#[inline(always)]
fn cut_between_guests(zone: u32, flow: &Flow, to: [u8; 4]) -> bool {
    let from = flow.ip.src;
    let Some(policy) = maps::partition(zone) else {
        return false;
    };
    let (Some(sender), Some(receiver)) = (maps::guest_port(zone, from), maps::guest_port(zone, to))
    else {
        return false;
    };
    let traffic = Traffic {
        proto: flow.ip.proto,
        sport: flow.t.sport,
        dport: flow.t.dport,
    };
    partition::drops(
        policy,
        sender.slot,
        Peer::Guest(receiver.slot),
        true,
        &traffic,
    )
}

/// A new connection: record it, rewrite, send on.
#[inline(always)]
fn start(
    ctx: &TcContext,
    gw: &GatewayInfo,
    flow: &Flow,
    wanted: CtEntry,
    ports: Option<PortRange>,
    counter: Counter,
) -> i32 {
    let zone = flow.key.zone;
    match conntrack::create(&flow.key, wanted, ports, flow.t.tcp_flags) {
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

/// On the gateway's veth to the host, ingress.
pub fn from_host(ctx: &TcContext) -> i32 {
    let Some(gw) = maps::gateway() else {
        return TC_ACT_OK;
    };
    // From the host's programs: already translated, bound for a network.
    if let Some(zone) = zone_of_mark(forward::mark(ctx)) {
        ctx.set_mark(0);
        return match maps::network(zone) {
            Some(net) => forward::to_network(ctx, &net, zone),
            None => {
                bump(ZONE_HOST, Counter::DroppedNoRoute);
                TC_ACT_SHOT
            }
        };
    }
    let flow = match classify(ctx, ZONE_HOST) {
        Ok(flow) => flow,
        Err(verdict) => return verdict,
    };
    if is_error(&flow) {
        return match icmp_error::translate(ctx, &flow.ip, ZONE_HOST) {
            Ok(entry) => forward::to_zone(ctx, gw, entry.out_zone, ZONE_HOST),
            Err(verdict) => verdict,
        };
    }
    if let Some(entry) = conntrack::lookup(&flow.key, flow.t.tcp_flags) {
        return translate(ctx, gw, &flow, &entry);
    }
    if flow.ip.dst == gw.gateway_ip
        && matches!(flow.ip.proto, IPPROTO_TCP | IPPROTO_UDP)
        && let Some(target) = maps::forward(flow.ip.proto, flow.t.dport)
    {
        let wanted = CtEntry::to_published(flow.ip.src, flow.t.sport, &target);
        return start(ctx, gw, &flow, wanted, None, Counter::NewDnat);
    }
    // Untranslated: routable networks, and the gateway itself.
    forward::by_route(ctx, gw, ZONE_HOST)
}

/// On each gateway port to a network, ingress.
pub fn from_network(ctx: &TcContext) -> i32 {
    let Some(gw) = maps::gateway() else {
        return TC_ACT_OK;
    };
    // Marked by the guest's port: for the host's programs, which translate
    // it (see `guest_port::for_host_programs`); nothing to look up here.
    if gw.flags & gateway_flags::HOST_EBPF != 0
        && let Some(zone) = zone_of_mark(forward::mark(ctx))
    {
        return forward::to_host_programs(ctx, gw, zone);
    }
    let Some(zone) = maps::zone_of_ifindex(forward::ingress_ifindex(ctx)) else {
        return TC_ACT_OK;
    };
    let Some(net) = maps::network(zone) else {
        return TC_ACT_OK;
    };
    // With the eBPF host side, what is not for the gateway or the host
    // itself goes on at once: the host's programs translate it, once.
    // Routable networks are the host's routes: their packets may answer
    // connections from outside that were never translated, so they take
    // the host's stack (and its table's masquerade), as before.
    if gw.flags & gateway_flags::HOST_EBPF != 0
        && net.flags & network_flags::ROUTABLE == 0
        && !for_this_host(ctx, gw)
    {
        return forward::to_host_programs(ctx, gw, zone);
    }
    let flow = match classify(ctx, zone) {
        Ok(flow) => flow,
        Err(verdict) => return verdict,
    };
    if is_error(&flow) {
        return match icmp_error::translate(ctx, &flow.ip, zone) {
            Ok(entry) => forward::to_zone(ctx, gw, entry.out_zone, zone),
            Err(verdict) => verdict,
        };
    }
    if let Some(entry) = conntrack::lookup(&flow.key, flow.t.tcp_flags) {
        return translate(ctx, gw, &flow, &entry);
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
        return start(
            ctx,
            gw,
            &flow,
            wanted,
            Some(PortRange::GATEWAY),
            Counter::NewHairpin,
        );
    }
    if to_gateway {
        bump(zone, Counter::ToStack);
        return TC_ACT_OK;
    }
    if net.flags & network_flags::ROUTABLE != 0 {
        // The host knows this subnet's route and masquerades it itself.
        return forward::by_route(ctx, gw, zone);
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
    start(
        ctx,
        gw,
        &flow,
        wanted,
        Some(PortRange::GATEWAY),
        Counter::NewSnat,
    )
}

/// Whether an IPv4 packet is addressed to the gateway or one of the host's
/// addresses (published ports through them are turned around here, and the
/// host's own services are reached through the gateway's address). What is
/// not IPv4 counts as for this host: it takes the gateway's ordinary way.
#[inline(always)]
fn for_this_host(ctx: &TcContext, gw: &GatewayInfo) -> bool {
    let (Ok(ethertype), Ok(dst)) = (ctx.load::<[u8; 2]>(12), ctx.load::<[u8; 4]>(IP_DST_OFF))
    else {
        return true;
    };
    u16::from_be_bytes(ethertype) != ETH_P_IP || dst == gw.gateway_ip || maps::is_host_addr(dst)
}
