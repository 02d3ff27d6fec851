//! ICMP errors about translated connections (RFC 5508): the error quotes the
//! packet as it was sent, with translated addresses and ports. It is
//! delivered to the right side and its quote rewritten to what that side
//! sent, so that the guest's (or the peer's) stack matches it to its socket.

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    csum::{self, ICMP_ERROR_LEN, INNER_TCP_CSUM_OFFSET, Quoted},
    nat::{CtEntry, CtKey, IPPROTO_TCP, ZONE_HOST},
};

use crate::{
    conntrack,
    counters::bump,
    parse::{IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, Ipv4},
};

/// Offset of the quoted transport header within the ICMP message.
const QUOTED_L4: usize = 8 + 20;

/// Rewrites an ICMP error that arrived in `zone` about one of its
/// connections. Returns the connection's entry (its `out_zone` says where
/// the error goes now), or the verdict for an error that stops here.
#[inline(always)]
pub fn translate(ctx: &TcContext, ip: &Ipv4, zone: u32) -> Result<CtEntry, i32> {
    let unknown = |zone: u32| {
        if zone == ZONE_HOST {
            // Perhaps about the host's or the gateway's own packets: the
            // stack decides.
            bump(zone, Counter::ToStack);
            Err(TC_ACT_OK)
        } else {
            // Never let a guest's address leak out untranslated.
            bump(zone, Counter::DroppedIcmpErrorUnknown);
            Err(TC_ACT_SHOT)
        }
    };
    let Ok(mut bytes) = ctx.load::<[u8; ICMP_ERROR_LEN]>(ip.l4) else {
        return unknown(zone);
    };
    let Some(quoted) = csum::quoted(&bytes) else {
        return unknown(zone);
    };
    // The quote is a packet this side sent; its connection's entry here is
    // the one its replies arrive by.
    let key = CtKey {
        zone,
        src: quoted.dst,
        dst: quoted.src,
        sport: quoted.dport,
        dport: quoted.sport,
        proto: quoted.proto,
        _pad: [0; 3],
    };
    let Some(entry) = conntrack::peek(&key) else {
        return unknown(zone);
    };
    let to = Quoted {
        proto: quoted.proto,
        src: entry.new_dst,
        dst: entry.new_src,
        sport: entry.new_dport,
        dport: entry.new_sport,
    };

    let tcp_csum_at = ip.l4 + QUOTED_L4 + INNER_TCP_CSUM_OFFSET;
    let mut tcp_csum = if quoted.proto == IPPROTO_TCP {
        ctx.load::<[u8; 2]>(tcp_csum_at).ok()
    } else {
        None
    };
    csum::rewrite_icmp_error(&mut bytes, tcp_csum.as_mut(), &to);
    if ctx
        .store(ip.l4, &bytes, BPF_F_RECOMPUTE_CSUM as u64)
        .is_err()
    {
        bump(zone, Counter::Malformed);
        return Err(TC_ACT_SHOT);
    }
    if let Some(field) = tcp_csum
        && ctx
            .store(tcp_csum_at, &field, BPF_F_RECOMPUTE_CSUM as u64)
            .is_err()
    {
        bump(zone, Counter::Malformed);
        return Err(TC_ACT_SHOT);
    }

    // The error goes to whoever sent the quoted packet on the other side; if
    // the quoted destination itself reported it, it speaks for the
    // translated destination.
    let new_src = if ip.src == quoted.dst { to.dst } else { ip.src };
    for (offset, old, new) in [(IP_SRC_OFF, ip.src, new_src), (IP_DST_OFF, ip.dst, to.src)] {
        if old == new {
            continue;
        }
        let (old32, new32) = (
            u32::from_ne_bytes(old) as u64,
            u32::from_ne_bytes(new) as u64,
        );
        if ctx.l3_csum_replace(IP_CSUM_OFF, old32, new32, 4).is_err()
            || ctx.store(offset, &new, 0).is_err()
        {
            bump(zone, Counter::Malformed);
            return Err(TC_ACT_SHOT);
        }
    }
    bump(zone, Counter::IcmpErrorTranslated);
    Ok(entry)
}
