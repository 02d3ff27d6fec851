//! netd's TC programs. Each entry point reads like the packet's journey:
//! parse, decide, count, return a verdict.
#![no_std]
#![no_main]

/// Declares a map under its literal name (aya's map macro takes no other)
/// and fails the build unless that name is `netd-common`'s constant for it,
/// so kernel and user space cannot disagree on a name.
macro_rules! netd_map {
    ($literal:literal == $constant:expr, $(#[$meta:meta])* $vis:vis static $ident:ident : $ty:ty = $init:expr;) => {
        $(#[$meta])*
        #[aya_ebpf::macros::map(name = $literal)]
        $vis static $ident: $ty = $init;
        const _: () = assert!(
            crate::same_str($literal, $constant),
            concat!("map name ", $literal, " differs from netd-common's constant")
        );
    };
}

/// Byte-wise string equality, usable in constants.
pub const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

mod conntrack;
mod counters;
mod delay_return;
mod filter;
mod flow;
mod forward;
mod gateway;
mod guest_port;
mod head;
mod host;
mod icmp_error;
mod impairment;
mod maps;
mod nat;
mod network;
mod next_hop;
mod overlay;
mod parse;
mod partition;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// The first program: drops IPv4 packets whose destination is in the
/// blocked-destination map and counts every verdict.
#[classifier]
pub fn netd_filter(ctx: TcContext) -> i32 {
    filter::run(&ctx)
}

/// The gateway's veth to the host, ingress: replies to guests' connections
/// and new connections to published ports.
#[classifier]
pub fn netd_gw_host(ctx: TcContext) -> i32 {
    gateway::from_host(&ctx)
}

/// Each gateway port to a network, ingress: guests' traffic.
#[classifier]
pub fn netd_gw_net(ctx: TcContext) -> i32 {
    gateway::from_network(&ctx)
}

/// Each network's uplink, ingress: packets for a guest go straight to it.
#[classifier]
pub fn netd_net_uplink(ctx: TcContext) -> i32 {
    network::from_gateway(&ctx)
}

/// The host's end of the host link (`netd0`), ingress: guests' packets out,
/// translated once to the host's address (eBPF host side).
#[classifier]
pub fn netd_host_link(ctx: TcContext) -> i32 {
    host::from_gateway(&ctx)
}

/// Every other host device, ingress: replies to guests' connections and
/// connections to published ports (eBPF host side).
#[classifier]
pub fn netd_host_world(ctx: TcContext) -> i32 {
    host::from_world(&ctx)
}

/// Each guest's bridge port, ingress: only the guest's own MAC and IP, and
/// the network's partition.
#[classifier]
pub fn netd_guest_port(ctx: TcContext) -> i32 {
    guest_port::from_guest(&ctx)
}

/// A spanned network's VXLAN device, ingress: the partition's cuts again
/// for what other nodes' guests send.
#[classifier]
pub fn netd_overlay_in(ctx: TcContext) -> i32 {
    overlay::from_overlay(&ctx)
}

/// Each network's delay line (its TAP device), ingress: packets the
/// daemon held for their delay, sent on without the policy.
#[classifier]
pub fn netd_delay_return(ctx: TcContext) -> i32 {
    delay_return::from_daemon(&ctx)
}

// The verifier rejects programs that could panic, so this is never reached.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
