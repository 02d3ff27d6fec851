//! The impairments a fault policy asks of a guest's packet besides drops:
//! a copy sent ahead of it, or bytes damaged on the way. Out of line: rare
//! paths of a program near the verifier's stack limit.

use aya_ebpf::{
    EbpfContext,
    bindings::TC_ACT_SHOT,
    helpers::generated::{bpf_redirect, bpf_skb_vlan_push},
    programs::TcContext,
};
use netd_common::counters::Counter;

use crate::{counters::bump, parse::ETH_HDR_LEN};

/// 802.1Q, the tag that carries a delayed packet's fault class to the
/// daemon (big-endian, as the helper takes it).
const ETH_P_8021Q_BE: u16 = 0x8100u16.to_be();

/// Offset of the IPv4 identification from the start of the frame.
const IP_ID_OFF: usize = ETH_HDR_LEN + 4;

/// Damages the packet as a bad link would, leaving every checksum as it
/// was: the last byte (payload, for a packet that has any past its
/// transport header's start) is inverted, and a bit flipped in each byte
/// of the IPv4 identification (a change no ones'-complement sum can miss,
/// whatever the identification was; inverting would miss 0 <-> 0xffff).
/// The identification matters: a locally sent packet carries a checksum
/// its receiver never verifies (CHECKSUM_PARTIAL over a veth), but the IP
/// header checksum is verified always, so the receiver's stack drops the
/// packet (`InCsumErrors`) before any application sees it.
#[inline(never)]
pub fn corrupt(ctx: &TcContext, zone: u32, l4: usize) {
    let last = ctx.len() as usize;
    if last > l4 + 1
        && let Ok(byte) = ctx.load::<u8>(last - 1)
    {
        let _ = ctx.store(last - 1, &!byte, 0);
    }
    if let Ok(id) = ctx.load::<[u8; 2]>(IP_ID_OFF) {
        let _ = ctx.store(IP_ID_OFF, &[id[0] ^ 1, id[1] ^ 1], 0);
    }
    bump(zone, Counter::Corrupted);
}

/// Sends a copy of the packet out of `ifindex` (egress of a veth: its peer
/// receives it), ahead of the original.
#[inline(never)]
pub fn duplicate(ctx: &TcContext, zone: u32, ifindex: u32) {
    if ctx.clone_redirect(ifindex, 0).is_ok() {
        bump(zone, Counter::Duplicated);
    }
}

/// Sends the packet (and its copy, if it is duplicated) into the delay
/// line: out of the network's TAP device, to the daemon, which holds it for
/// its class's delay and writes it back (`delay_return::deliver`). The
/// class travels as an 802.1Q tag (VLAN id = class + 1) that the TAP hands
/// to the reader in the frame; the daemon strips it before writing back.
#[inline(never)]
pub fn delay(ctx: &TcContext, zone: u32, ifindex: u32, class: u32, duplicate: bool) -> i32 {
    // SAFETY: plain helper call on this program's packet.
    let tagged =
        unsafe { bpf_skb_vlan_push(ctx.as_ptr().cast(), ETH_P_8021Q_BE, (class + 1) as u16) };
    if tagged != 0 {
        bump(zone, Counter::Malformed);
        return TC_ACT_SHOT;
    }
    if duplicate {
        self::duplicate(ctx, zone, ifindex);
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}
