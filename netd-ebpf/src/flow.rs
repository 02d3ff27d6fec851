//! A packet as the translating programs see it: parsed, with the key its
//! connection is found by. What needs no connection lookup (not IPv4,
//! malformed, fragments) is settled here.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::{
    counters::Counter,
    csum::is_icmp_error,
    nat::{CtKey, IPPROTO_ICMP},
};

use crate::{
    counters::bump,
    parse::{self, Ipv4, Parsed, Transport},
};

/// A parsed packet a program may translate.
pub struct Flow {
    pub ip: Ipv4,
    pub t: Transport,
    pub key: CtKey,
}

/// Parses, and settles what needs no connection lookup. `Err` carries the
/// verdict for packets that stop here.
#[inline(always)]
pub fn classify(ctx: &TcContext, zone: u32) -> Result<Flow, i32> {
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
    Ok(flow_of(zone, ip, t))
}

/// The flow of a parsed packet arriving in `zone`.
#[inline(always)]
fn flow_of(zone: u32, ip: Ipv4, t: Transport) -> Flow {
    let key = CtKey {
        zone,
        src: ip.src,
        dst: ip.dst,
        sport: t.sport,
        dport: t.dport,
        proto: ip.proto,
        _pad: [0; 3],
    };
    Flow { ip, t, key }
}

#[inline(always)]
pub fn is_error(flow: &Flow) -> bool {
    flow.ip.proto == IPPROTO_ICMP && is_icmp_error(flow.t.icmp_type)
}

/// As [`classify`], for programs that see mostly other people's packets:
/// nothing counted, fragments and non-IPv4 refused alike.
#[inline(always)]
pub fn parse_quietly(ctx: &TcContext, zone: u32) -> Result<Flow, ()> {
    let Parsed::Ipv4(ip) = parse::ipv4(ctx) else {
        return Err(());
    };
    if ip.fragment {
        return Err(());
    }
    let t = parse::transport(ctx, &ip).ok_or(())?;
    Ok(flow_of(zone, ip, t))
}
