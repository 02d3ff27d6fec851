//! Rewriting a packet to a conntrack entry's identity, keeping the IPv4,
//! TCP, UDP and ICMP checksums right. The transport checksum goes through
//! the kernel's helpers, which update it incrementally and handle
//! offloaded (CHECKSUM_PARTIAL) packets, whose checksum field holds only
//! the pseudo-header sum; the IPv4 header is changed in the frame's head
//! ([`FrameHead`]), one store for every field.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netd_common::{
    csum::ICMP_ECHO_REQUEST,
    head::FrameHead,
    nat::{CtEntry, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    head,
    parse::{Ipv4, Transport},
};

/// Where the transport checksum is and how the helper must treat it.
struct L4Csum {
    offset: usize,
    /// Extra `bpf_l4_csum_replace` flags: UDP's zero ("no checksum") must
    /// stay zero, and a computed zero must become 0xffff.
    flags: u64,
}

fn l4_csum(ip: &Ipv4) -> Option<L4Csum> {
    match ip.proto {
        IPPROTO_TCP => Some(L4Csum {
            offset: ip.l4 + 16,
            flags: 0,
        }),
        IPPROTO_UDP => Some(L4Csum {
            offset: ip.l4 + 6,
            flags: BPF_F_MARK_MANGLED_0 as u64,
        }),
        _ => None,
    }
}

/// Rewrites the whole packet to `to`: for a program that holds no head of
/// its own.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, ip: &Ipv4, t: &Transport, to: &CtEntry) -> Result<(), ()> {
    let mut frame = head::load(ctx)?;
    transport(ctx, ip, t, to)?;
    translate(&mut frame, to);
    head::store(ctx, &frame)
}

/// The IPv4 side of a translation, in the frame's head (stored by the
/// caller, with whatever else it changes there).
#[inline(always)]
pub fn translate(frame: &mut FrameHead, to: &CtEntry) {
    frame.set_addresses(to.new_src, to.new_dst);
}

/// The transport side of a translation, in the packet: ports (or the echo
/// identifier), and the checksum over them and the addresses' pseudo-header.
#[inline(always)]
pub fn transport(ctx: &TcContext, ip: &Ipv4, t: &Transport, to: &CtEntry) -> Result<(), ()> {
    let csum = l4_csum(ip);
    if let Some(c) = &csum {
        for (old, new) in [(ip.src, to.new_src), (ip.dst, to.new_dst)] {
            if old != new {
                ctx.l4_csum_replace(
                    c.offset,
                    u32::from_ne_bytes(old) as u64,
                    u32::from_ne_bytes(new) as u64,
                    c.flags | BPF_F_PSEUDO_HDR as u64 | 4,
                )
                .map_err(|_| ())?;
            }
        }
    }
    match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let c = csum.ok_or(())?;
            for (offset, old, new) in [
                (ip.l4, t.sport, to.new_sport),
                (ip.l4 + 2, t.dport, to.new_dport),
            ] {
                if old != new {
                    replace_u16(ctx, offset, c.offset, c.flags, old, new)?;
                }
            }
        }
        IPPROTO_ICMP => {
            let (old, new) = if t.icmp_type == ICMP_ECHO_REQUEST {
                (t.sport, to.new_sport)
            } else {
                (t.dport, to.new_dport)
            };
            if old != new {
                // The ICMP checksum covers no pseudo-header.
                replace_u16(ctx, ip.l4 + 4, ip.l4 + 2, 0, old, new)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn replace_u16(
    ctx: &TcContext,
    offset: usize,
    csum_offset: usize,
    flags: u64,
    old: u16,
    new: u16,
) -> Result<(), ()> {
    let (old_wire, new_wire) = (old.to_be() as u64, new.to_be() as u64);
    ctx.l4_csum_replace(csum_offset, old_wire, new_wire, flags | 2)
        .map_err(|_| ())?;
    ctx.store(offset, &new.to_be_bytes(), 0).map_err(|_| ())
}
