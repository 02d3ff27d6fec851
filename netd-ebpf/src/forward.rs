//! Sending a packet on from the gateway without its kernel stack:
//! `bpf_redirect_peer` puts it straight into the ingress of a veth's peer
//! in the next namespace. Into a network, the MACs of both ends of its /30
//! are known from the map; by route, a FIB lookup finds the veth and the
//! MACs, and until the neighbour is known `bpf_redirect_neigh` lets the
//! kernel resolve it. With the eBPF host side, the host is reached by a
//! redirect that carries the packet's zone in its mark.

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, TC_ACT_OK, TC_ACT_SHOT,
        bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    nat::ZONE_HOST,
    zones::{GatewayInfo, NetworkInfo, network_flags, zone_mark},
};

use crate::{counters::bump, head, maps};

pub const AF_INET: u8 = 2;

/// Sends the packet to `zone`: the host side, or a network's uplink.
#[inline(always)]
pub fn to_zone(ctx: &TcContext, gw: &GatewayInfo, zone: u32, counted: u32) -> i32 {
    if zone == ZONE_HOST {
        return by_route(ctx, gw, counted);
    }
    match maps::network(zone) {
        Some(net) => to_network(ctx, &net, counted),
        None => {
            bump(counted, Counter::DroppedNoRoute);
            TC_ACT_SHOT
        }
    }
}

/// Into a network: the next hop is its uplink, whatever the destination
/// (the gateway has no routes to overlapping guest subnets).
#[inline(always)]
pub fn to_network(ctx: &TcContext, net: &NetworkInfo, counted: u32) -> i32 {
    if net.uplink_mac != [0; 6] {
        // Both ends of the /30 are known: no lookup at all.
        if head::store_macs(ctx, net.uplink_mac, net.gateway_port_mac).is_err() {
            bump(counted, Counter::Malformed);
            return TC_ACT_SHOT;
        }
        bump(counted, Counter::Forwarded);
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect_peer(net.gateway_port_ifindex, 0) as i32 };
    }
    let mut params = lookup_params(ctx, net.uplink_ip);
    match fib(ctx, &mut params) {
        BPF_FIB_LKUP_RET_SUCCESS if params.ifindex == net.gateway_port_ifindex => {
            redirect_peer(ctx, &params, counted)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            let mut nh = bpf_redir_neigh {
                nh_family: AF_INET as u32,
                __bindgen_anon_1: aya_ebpf::bindings::bpf_redir_neigh__bindgen_ty_1 {
                    ipv4_nh: u32::from_ne_bytes(net.uplink_ip),
                },
            };
            bump(counted, Counter::Forwarded);
            // SAFETY: `nh` lives across the call; the size is its own.
            unsafe {
                bpf_redirect_neigh(
                    net.gateway_port_ifindex,
                    &mut nh,
                    size_of::<bpf_redir_neigh>() as i32,
                    0,
                ) as i32
            }
        }
        _ => {
            bump(counted, Counter::DroppedNoRoute);
            TC_ACT_SHOT
        }
    }
}

/// Wherever the gateway's routes lead: the host, or a routable network.
/// Packets the gateway itself should see go to its stack.
#[inline(always)]
pub fn by_route(ctx: &TcContext, gw: &GatewayInfo, counted: u32) -> i32 {
    let Ok(dst) = ctx.load::<[u8; 4]>(crate::parse::IP_DST_OFF) else {
        return TC_ACT_OK;
    };
    let mut params = lookup_params(ctx, dst);
    match fib(ctx, &mut params) {
        BPF_FIB_LKUP_RET_SUCCESS => {
            if params.ifindex == gw.host_side_ifindex {
                return redirect_peer(ctx, &params, counted);
            }
            // Into a network by its route: only routable networks have one,
            // and only the host side may use it; a network reaching another
            // goes through a published port instead.
            let from_host = ingress_ifindex(ctx) == gw.host_side_ifindex;
            let routable = maps::zone_of_ifindex(params.ifindex)
                .and_then(maps::network)
                .is_some_and(|net| net.flags & network_flags::ROUTABLE != 0);
            if from_host && routable {
                return redirect_peer(ctx, &params, counted);
            }
            bump(counted, Counter::DroppedCrossNetwork);
            TC_ACT_SHOT
        }
        BPF_FIB_LKUP_RET_NO_NEIGH if params.ifindex == gw.host_side_ifindex => {
            bump(counted, Counter::Forwarded);
            // SAFETY: no parameters: the kernel looks the next hop up itself.
            unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            bump(counted, Counter::DroppedNoRoute);
            TC_ACT_SHOT
        }
        _ => {
            // Local to the gateway, or something the stack must handle
            // (fragmentation needed, an unresolved neighbour into a network).
            bump(counted, Counter::ToStack);
            TC_ACT_OK
        }
    }
}

/// To the host's programs, which translate once and send it out of the
/// host: the packet's zone goes with it in the mark.
#[inline(always)]
pub fn to_host_programs(ctx: &TcContext, gw: &GatewayInfo, zone: u32) -> i32 {
    ctx.set_mark(zone_mark(zone));
    bump(zone, Counter::Forwarded);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(gw.host_side_ifindex, 0) as i32 }
}

/// The mark the packet arrived with.
#[inline(always)]
pub fn mark(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context the program was given.
    unsafe { (*ctx.skb.skb).mark }
}

#[inline(always)]
pub fn ingress_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context the program was given.
    unsafe { (*ctx.skb.skb).ingress_ifindex }
}

/// [`lookup_params`] in this CPU's scratch slot rather than on the stack,
/// for the host link program, whose stack is full. Only that program may
/// use the slot: a program run is never interrupted by another on its CPU
/// except through helpers that run one at once (`bpf_clone_redirect`),
/// which it does not call.
#[inline(always)]
pub fn scratch_params(ctx: &TcContext, dst: [u8; 4]) -> Option<&'static mut bpf_fib_lookup> {
    let slot = maps::FIB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the map's value for this CPU, used by one program run at a
    // time (see above) and written whole before it is read.
    unsafe {
        *slot = lookup_params(ctx, dst);
        Some(&mut *slot)
    }
}

#[inline(always)]
pub fn lookup_params(ctx: &TcContext, dst: [u8; 4]) -> bpf_fib_lookup {
    // SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and unions).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = ingress_ifindex(ctx);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    // `tot_len` stays 0: then the kernel checks the MTU the way forwarding
    // does (`is_skb_forwardable`), which lets GSO packets through. A length
    // from the IP header would fail every large TCP segment veth carries.
    params
}

#[inline(always)]
pub fn fib(ctx: &TcContext, params: &mut bpf_fib_lookup) -> u32 {
    fib_flags(ctx, params, 0)
}

/// A FIB lookup with `BPF_FIB_LOOKUP_*` flags; the return code, or
/// `u32::MAX` if the helper itself failed.
#[inline(always)]
pub fn fib_flags(ctx: &TcContext, params: &mut bpf_fib_lookup, flags: u32) -> u32 {
    // SAFETY: `params` is a valid, initialised bpf_fib_lookup of that size.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            params as *mut bpf_fib_lookup,
            size_of::<bpf_fib_lookup>() as i32,
            flags,
        )
    };
    if rc < 0 { u32::MAX } else { rc as u32 }
}

#[inline(always)]
fn redirect_peer(ctx: &TcContext, params: &bpf_fib_lookup, counted: u32) -> i32 {
    if head::store_macs(ctx, params.dmac, params.smac).is_err() {
        bump(counted, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    bump(counted, Counter::Forwarded);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(params.ifindex, 0) as i32 }
}
