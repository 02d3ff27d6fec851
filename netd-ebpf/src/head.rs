//! A routed frame's head ([`FrameHead`]: MACs, TTL, addresses, header
//! checksum) comes off the packet in one load and goes back in one store,
//! changed on the stack in between: a helper call per field and per
//! checksum change was most of what routing a packet cost a program.

use aya_ebpf::programs::TcContext;
use netd_common::head::{FRAME_HEAD_LEN, FrameHead};

use crate::parse::ETH_DST_OFF;

/// The frame's head; `Err` if the frame is shorter than an Ethernet and an
/// IPv4 header (the parse already refused those).
#[inline(always)]
pub fn load(ctx: &TcContext) -> Result<FrameHead, ()> {
    ctx.load::<[u8; FRAME_HEAD_LEN]>(ETH_DST_OFF)
        .map(FrameHead)
        .map_err(|_| ())
}

#[inline(always)]
pub fn store(ctx: &TcContext, head: &FrameHead) -> Result<(), ()> {
    ctx.store(ETH_DST_OFF, &head.0, 0).map_err(|_| ())
}

/// Only the MACs, for a frame whose IP header stays as it is.
#[inline(always)]
pub fn store_macs(ctx: &TcContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), ()> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&dst);
    macs[6..].copy_from_slice(&src);
    ctx.store(ETH_DST_OFF, &macs, 0).map_err(|_| ())
}
