//! A network's delay line, ingress (what the daemon writes back into the
//! TAP device once a packet's delay is over): the packet passed the guest
//! port's checks and policy before it was held, so it is only sent on, as
//! the guest port would have sent it, never through the policy again (a
//! delayed packet is delayed once). The sender is known by its MAC.

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use netd_common::counters::Counter;

use crate::{
    counters::bump,
    guest_port::{deliver, next_hop},
    maps,
    parse::{self, ETH_DST_OFF, ETH_SRC_OFF, Parsed},
};

pub fn from_daemon(ctx: &TcContext) -> i32 {
    let (Ok(src_mac), Ok(dst_mac)) = (
        ctx.load::<[u8; 6]>(ETH_SRC_OFF),
        ctx.load::<[u8; 6]>(ETH_DST_OFF),
    ) else {
        return TC_ACT_SHOT;
    };
    // The guest left while its packet was held: nobody to send it for.
    let Some(me) = maps::guest_by_mac(src_mac) else {
        return TC_ACT_SHOT;
    };
    let Parsed::Ipv4(ip) = parse::ipv4(ctx) else {
        bump(me.zone, Counter::Malformed);
        return TC_ACT_SHOT;
    };
    let Some(net) = maps::network(me.zone) else {
        return TC_ACT_SHOT;
    };
    let inside = net.contains(ip.dst);
    let other = if inside {
        maps::guest_port(me.zone, ip.dst)
    } else {
        None
    };
    match next_hop(&net, other, ip.dst, inside, dst_mac) {
        Some(next) => deliver(ctx, &net, me.zone, next, false),
        // The destination left meanwhile; the TAP's own stack would drop it.
        None => TC_ACT_SHOT,
    }
}
