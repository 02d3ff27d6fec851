//! The TTL a router takes off when the programs route a packet past a
//! namespace's stack.

use aya_ebpf::programs::TcContext;

use crate::parse::{IP_CSUM_OFF, IP_TTL_OFF};

pub enum Hop {
    /// Decremented, checksum updated.
    Done,
    /// The TTL would reach zero: the stack must answer "time exceeded".
    Expired,
    /// The header could not be read or written.
    Malformed,
}

/// Decrements the IPv4 TTL, keeping the header checksum right.
#[inline(always)]
pub fn decrement(ctx: &TcContext) -> Hop {
    let Ok([ttl, proto]) = ctx.load::<[u8; 2]>(IP_TTL_OFF) else {
        return Hop::Malformed;
    };
    if ttl <= 1 {
        return Hop::Expired;
    }
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([ttl - 1, proto]);
    if ctx
        .l3_csum_replace(IP_CSUM_OFF, old.to_be() as u64, new.to_be() as u64, 2)
        .is_err()
        || ctx.store(IP_TTL_OFF, &(ttl - 1), 0).is_err()
    {
        return Hop::Malformed;
    }
    Hop::Done
}
