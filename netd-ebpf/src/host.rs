//! The eBPF host side: the host's two programs. A guest's connection out is
//! translated once, here, to the host's own address on the device the
//! host's FIB picks, and leaves by that device without the host's stack or
//! netfilter (no nf_conntrack entry); its replies, and new connections to
//! published ports, are taken off the device's ingress and go straight to
//! the gateway. Every other packet passes untouched.
//!
//! - `from_gateway`, on the host's end of the host link (`netd0`): packets
//!   the gateway marked with their zone.
//! - `from_world`, on every other host device: replies and published ports.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_SRC, TC_ACT_OK, TC_ACT_SHOT, bpf_fib_lookup,
    },
    helpers::generated::{
        bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer, bpf_skb_change_tail,
    },
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    csum::{FRAG_NEEDED_LEN, FRAG_NEEDED_QUOTE, ICMP_ECHO_REQUEST, frag_needed},
    head::{FrameHead, Ttl},
    nat::{CtEntry, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ZONE_HOST, kind, substitute_salt},
    zones::{GatewayInfo, gateway_flags, zone_mark, zone_of_mark},
};

use crate::{
    conntrack,
    counters::bump,
    flow::{Flow, classify, is_error},
    forward::{self, fib_flags, scratch_params},
    head, icmp_error, maps, nat, next_hop,
    parse::ETH_HDR_LEN,
};

/// The host's gateway facts, when the eBPF host side is in force.
#[inline(always)]
fn host_side() -> Option<&'static GatewayInfo> {
    maps::gateway().filter(|gw| gw.flags & gateway_flags::HOST_EBPF != 0)
}

/// On `netd0`'s ingress: a guest's packet for the outside.
pub fn from_gateway(ctx: &TcContext) -> i32 {
    let Some(zone) = zone_of_mark(forward::mark(ctx)) else {
        // The gateway's own traffic, and what its stack routes: the host's
        // stack takes it as ever.
        return TC_ACT_OK;
    };
    ctx.set_mark(0);
    let Some(gw) = host_side() else {
        return TC_ACT_SHOT;
    };
    let flow = match classify(ctx, zone) {
        Ok(flow) => flow,
        // Guests' packets never reach the host's stack untranslated.
        Err(_) => return TC_ACT_SHOT,
    };
    if is_error(&flow) {
        return match icmp_error::translate(ctx, &flow.ip, zone) {
            Ok(entry) if entry.out_zone == ZONE_HOST => out_of_host(ctx, gw, entry.new_dst, zone),
            Ok(_) | Err(_) => {
                bump(zone, Counter::DroppedIcmpErrorUnknown);
                TC_ACT_SHOT
            }
        };
    }
    // Where it leaves, found before anything is rewritten: a packet too big
    // for that device is answered with the packet as the guest sent it.
    let Some(params) = scratch_params(ctx, flow.ip.dst) else {
        return TC_ACT_SHOT;
    };
    let known = conntrack::lookup(&flow.key, flow.t.tcp_flags);
    // An established connection's next hop is remembered; a new one needs
    // the lookup's source address.
    let rc = if known.is_some() && next_hop::recall(ctx, flow.ip.dst, params) {
        BPF_FIB_LKUP_RET_SUCCESS
    } else {
        let epoch = next_hop::epoch();
        let flags = if known.is_some() {
            0
        } else {
            BPF_FIB_LOOKUP_SRC
        };
        let rc = fib_flags(ctx, params, flags);
        if rc == BPF_FIB_LKUP_RET_SUCCESS {
            next_hop::remember(flow.ip.dst, params, epoch);
        }
        rc
    };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH => {}
        BPF_FIB_LKUP_RET_FRAG_NEEDED => return too_big(ctx, gw, params, zone),
        _ => {
            bump(zone, Counter::DroppedNoRoute);
            return TC_ACT_SHOT;
        }
    }
    if params.ifindex == gw.host_link_ifindex {
        // Back towards the gateway: a network addressing another directly.
        bump(zone, Counter::DroppedCrossNetwork);
        return TC_ACT_SHOT;
    }
    let entry = match known {
        Some(entry) if entry.out_zone == ZONE_HOST => entry,
        Some(_) => {
            bump(zone, Counter::DroppedNoRoute);
            return TC_ACT_SHOT;
        }
        None => match start_snat(gw, &flow, params) {
            Ok(entry) => entry,
            Err(reason) => {
                bump(zone, reason);
                return TC_ACT_SHOT;
            }
        },
    };
    let Ok(mut frame) = head::load(ctx) else {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    if nat::transport(ctx, &flow.ip, &flow.t, &entry).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    nat::translate(&mut frame, &entry);
    bump(zone, Counter::Translated);
    send(ctx, frame, rc, params, zone)
}

/// A guest's new connection out: its source becomes the address the host
/// would use on the egress device, and a port reserved from the host's own
/// sockets: its own port if the host address can keep it, else always the
/// same substitute (see `PortRange::substitute`), else random ones.
#[inline(always)]
fn start_snat(gw: &GatewayInfo, flow: &Flow, params: &bpf_fib_lookup) -> Result<CtEntry, Counter> {
    let translatable = match flow.ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => true,
        IPPROTO_ICMP => flow.t.icmp_type == ICMP_ECHO_REQUEST,
        _ => false,
    };
    if !translatable {
        return Err(Counter::DroppedUnsupported);
    }
    // SAFETY: the lookup with BPF_FIB_LOOKUP_SRC filled the union's IPv4 side.
    let src = unsafe { params.__bindgen_anon_3.ipv4_src };
    if src == 0 {
        return Err(Counter::DroppedNoRoute);
    }
    let ports = gw.host_ports();
    // The substitute chosen here, not in the port search that every
    // program shares: that search is as big as the gateway's stack allows.
    let sport = if ports.keeps(flow.t.sport) || flow.ip.proto == IPPROTO_ICMP {
        flow.t.sport
    } else {
        ports.substitute(flow.t.sport, substitute_salt(flow.ip.src))
    };
    let wanted = CtEntry {
        new_src: src.to_ne_bytes(),
        new_dst: flow.ip.dst,
        new_sport: sport,
        new_dport: flow.t.dport,
        out_zone: ZONE_HOST,
        kind: kind::SNAT,
        ..CtEntry::default()
    };
    let entry = conntrack::create(&flow.key, wanted, Some(ports), flow.t.tcp_flags)?;
    bump(flow.key.zone, Counter::NewSnat);
    Ok(entry)
}

/// Sends a translated packet out of the host by a FIB lookup on `dst`.
#[inline(always)]
fn out_of_host(ctx: &TcContext, gw: &GatewayInfo, dst: [u8; 4], zone: u32) -> i32 {
    let Some(params) = scratch_params(ctx, dst) else {
        return TC_ACT_SHOT;
    };
    let rc = fib_flags(ctx, params, 0);
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH
            if params.ifindex != gw.host_link_ifindex =>
        {
            let Ok(frame) = head::load(ctx) else {
                bump(zone, Counter::Malformed);
                return TC_ACT_SHOT;
            };
            send(ctx, frame, rc, params, zone)
        }
        _ => {
            bump(zone, Counter::DroppedNoRoute);
            TC_ACT_SHOT
        }
    }
}

/// Out by the device the lookup found: the host routes it, so the TTL
/// drops by one; with the neighbour known the frame is complete, else the
/// kernel resolves it. `frame` is the packet's head with whatever the
/// caller changed in it, stored here with the hop in one write.
#[inline(always)]
fn send(ctx: &TcContext, mut frame: FrameHead, rc: u32, params: &bpf_fib_lookup, zone: u32) -> i32 {
    if frame.decrement_ttl() == Ttl::Expired {
        bump(zone, Counter::DroppedNoRoute);
        return TC_ACT_SHOT;
    }
    if rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        frame.set_macs(params.dmac, params.smac);
    }
    if head::store(ctx, &frame).is_err() {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(zone, Counter::Forwarded);
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        // SAFETY: no parameters: the kernel looks the next hop up itself.
        return unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) as i32 };
    }
    if maps::egress_by_peer(params.ifindex) {
        // A veth with nothing on its egress: straight into its peer's
        // ingress, past the backlog queue its transmit would go through.
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect_peer(params.ifindex, 0) as i32 };
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(params.ifindex, 0) as i32 }
}

/// A guest's packet too big for the egress device, with DF set (GSO
/// packets are cut by the device's own segmentation and never land here):
/// it becomes the "fragmentation needed" error a router would send, back to
/// the guest, so that its path MTU drops as it would behind any router.
#[inline(always)]
fn too_big(ctx: &TcContext, gw: &GatewayInfo, params: &bpf_fib_lookup, zone: u32) -> i32 {
    let Ok(quote) = ctx.load::<[u8; FRAG_NEEDED_QUOTE]>(ETH_HDR_LEN) else {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    if quote[6] & 0x40 == 0 {
        // DF clear: the stack would fragment, which netd does not do.
        bump(zone, Counter::DroppedFragment);
        return TC_ACT_SHOT;
    }
    // SAFETY: after FRAG_NEEDED the union holds the device's MTU.
    let mtu = unsafe { params.__bindgen_anon_1.mtu_result };
    let header = frag_needed(&quote, gw.host_ip, mtu);
    // SAFETY: plain helper call; the packet is only shortened.
    let trimmed = unsafe {
        bpf_skb_change_tail(
            ctx.as_ptr() as *mut _,
            (ETH_HDR_LEN + FRAG_NEEDED_LEN) as u32,
            0,
        )
    };
    if trimmed != 0
        || ctx.store(ETH_HDR_LEN, &header, 0).is_err()
        || ctx.store(ETH_HDR_LEN + header.len(), &quote, 0).is_err()
    {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(zone, Counter::FragNeededSent);
    into_gateway(ctx, gw, zone)
}

/// Into the gateway, marked with the zone it is for.
#[inline(always)]
fn into_gateway(ctx: &TcContext, gw: &GatewayInfo, zone: u32) -> i32 {
    ctx.set_mark(zone_mark(zone));
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(gw.host_link_ifindex, 0) as i32 }
}

/// On every other host device's ingress: a reply to a guest's connection,
/// or a connection to a published port, goes straight to the gateway.
pub fn from_world(ctx: &TcContext) -> i32 {
    let Some(gw) = host_side() else {
        return TC_ACT_OK;
    };
    let Ok(flow) = classify_quietly(ctx) else {
        return TC_ACT_OK;
    };
    // The host's own connections out, and its privileged services, cost
    // no connection lookup: netd's replies come to ports a guest may hold
    // (its reserved range, and unprivileged ports outside the host's
    // ephemeral range), new and ongoing connections through published
    // ports to those.
    if matches!(flow.ip.proto, IPPROTO_TCP | IPPROTO_UDP)
        && !gw.host_ports().keeps(flow.t.dport)
        && maps::forward(flow.ip.proto, flow.t.dport).is_none()
    {
        return TC_ACT_OK;
    }
    if is_error(&flow) {
        return match icmp_error::translate(ctx, &flow.ip, ZONE_HOST) {
            Ok(entry) if entry.out_zone != ZONE_HOST => deliver(ctx, gw, entry.out_zone),
            Ok(_) => TC_ACT_OK,
            Err(verdict) => verdict,
        };
    }
    let entry = match conntrack::lookup(&flow.key, flow.t.tcp_flags) {
        Some(entry) => entry,
        None => match start_dnat(&flow) {
            Some(Ok(entry)) => entry,
            Some(Err(reason)) => {
                bump(ZONE_HOST, reason);
                return TC_ACT_SHOT;
            }
            // Not netd's: the host's own traffic.
            None => return TC_ACT_OK,
        },
    };
    if entry.out_zone == ZONE_HOST {
        return TC_ACT_OK;
    }
    let Ok(mut frame) = head::load(ctx) else {
        bump(entry.out_zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    if frame.decrement_ttl() == Ttl::Expired {
        bump(entry.out_zone, Counter::DroppedNoRoute);
        return TC_ACT_SHOT;
    }
    nat::translate(&mut frame, &entry);
    if nat::transport(ctx, &flow.ip, &flow.t, &entry).is_err() || head::store(ctx, &frame).is_err()
    {
        bump(entry.out_zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(entry.out_zone, Counter::Translated);
    deliver(ctx, gw, entry.out_zone)
}

#[inline(always)]
fn deliver(ctx: &TcContext, gw: &GatewayInfo, zone: u32) -> i32 {
    bump(zone, Counter::Forwarded);
    into_gateway(ctx, gw, zone)
}

/// Parses what might be netd's, without counting: most packets on a host's
/// devices are the host's own. Fragments pass to the host's stack, which
/// reassembles its own; netd's connections do not fragment (see the README).
#[inline(always)]
fn classify_quietly(ctx: &TcContext) -> Result<Flow, ()> {
    let Ok(flow) = crate::flow::parse_quietly(ctx, ZONE_HOST) else {
        return Err(());
    };
    // Echo requests are for the host itself; replies and errors may be a
    // guest's.
    let candidate = match flow.ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => true,
        IPPROTO_ICMP => flow.t.icmp_type != ICMP_ECHO_REQUEST,
        _ => false,
    };
    if candidate { Ok(flow) } else { Err(()) }
}

/// A new connection to a published port on one of the host's addresses.
/// None: no port is published there.
#[inline(always)]
fn start_dnat(flow: &Flow) -> Option<Result<CtEntry, Counter>> {
    if !matches!(flow.ip.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return None;
    }
    let target = maps::forward(flow.ip.proto, flow.t.dport)?;
    if (target.host_ip != [0; 4] && target.host_ip != flow.ip.dst)
        || !maps::is_host_addr(flow.ip.dst)
    {
        return None;
    }
    let wanted = CtEntry::to_published(flow.ip.src, flow.t.sport, &target);
    let created = conntrack::create(&flow.key, wanted, None, flow.t.tcp_flags);
    if created.is_ok() {
        bump(target.zone, Counter::NewDnat);
    }
    Some(created)
}
