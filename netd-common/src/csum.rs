//! Internet checksum arithmetic (RFC 1071, incremental update by RFC 1624)
//! and the rewrite of the packet an ICMP error quotes (RFC 5508).
//!
//! Pure functions on bytes: the eBPF programs call them on headers copied to
//! the stack, and user-space tests call them on crafted packets. Words are
//! read big-endian; the arithmetic does not depend on byte order as long as
//! it is the same throughout.

/// The checksum after one 16-bit word of the covered data changed from `old`
/// to `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    !fold(sum)
}

/// As [`replace16`], for a 32-bit field such as an address.
#[inline(always)]
pub fn replace32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let check = replace16(check, word(&old, 0), word(&new, 0));
    replace16(check, word(&old, 2), word(&new, 2))
}

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum of `data` from scratch (for tests and crafted packets).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u16::from_be_bytes([pair[0], pair[1]]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u16::from_be_bytes([*last, 0]) as u32;
    }
    !fold(sum)
}

#[inline(always)]
pub fn word(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[inline(always)]
fn set_word(bytes: &mut [u8], at: usize, value: u16) {
    let [hi, lo] = value.to_be_bytes();
    bytes[at] = hi;
    bytes[at + 1] = lo;
}

/// Bytes of an ICMP error the rewrite needs: the ICMP header (8), the quoted
/// IPv4 header without options (20) and the first 8 bytes of its transport
/// header (ports, or the echo identifier). RFC 792 guarantees these.
pub const ICMP_ERROR_LEN: usize = 36;
/// Offsets within those bytes.
const ICMP_CSUM: usize = 2;
const INNER_IP: usize = 8;
const INNER_IP_CSUM: usize = INNER_IP + 10;
const INNER_SRC: usize = INNER_IP + 12;
const INNER_DST: usize = INNER_IP + 16;
const INNER_L4: usize = INNER_IP + 20;
/// Offset of a quoted TCP header's checksum from the quoted transport header;
/// it lies beyond [`ICMP_ERROR_LEN`], so the caller passes it separately when
/// the error quotes that much.
pub const INNER_TCP_CSUM_OFFSET: usize = 16;

/// The quoted packet's protocol and its identity as it was sent
/// (source, destination, source port, destination port). For a quoted ICMP
/// echo, the identifier is the request's "source port" and the reply's
/// "destination port", as in [`crate::nat::CtKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

/// Reads the quoted packet of an ICMP error. None if it is not something the
/// gateway translates (options in the quoted header, a non-echo ICMP, an
/// unknown protocol).
#[inline(always)]
pub fn quoted(bytes: &[u8; ICMP_ERROR_LEN]) -> Option<Quoted> {
    // Options would move the transport header; a non-first fragment has
    // none at all (what follows the header is payload, not ports).
    let fragment_offset = word(bytes, INNER_IP + 6) & 0x1fff;
    if bytes[INNER_IP] != 0x45 || fragment_offset != 0 {
        return None;
    }
    let proto = bytes[INNER_IP + 9];
    let (sport, dport) = match proto {
        crate::nat::IPPROTO_TCP | crate::nat::IPPROTO_UDP => {
            (word(bytes, INNER_L4), word(bytes, INNER_L4 + 2))
        }
        crate::nat::IPPROTO_ICMP => match bytes[INNER_L4] {
            ICMP_ECHO_REQUEST => (word(bytes, INNER_L4 + 4), 0),
            ICMP_ECHO_REPLY => (0, word(bytes, INNER_L4 + 4)),
            _ => return None,
        },
        _ => return None,
    };
    Some(Quoted {
        proto,
        src: [
            bytes[INNER_SRC],
            bytes[INNER_SRC + 1],
            bytes[INNER_SRC + 2],
            bytes[INNER_SRC + 3],
        ],
        dst: [
            bytes[INNER_DST],
            bytes[INNER_DST + 1],
            bytes[INNER_DST + 2],
            bytes[INNER_DST + 3],
        ],
        sport,
        dport,
    })
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Whether an ICMP type is an error that quotes a packet (RFC 5508 §3).
pub const fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// Rewrites the packet an ICMP error quotes to `to` (ports given in the same
/// byte order as read by [`quoted`]) and keeps every checksum right: the
/// quoted IPv4 header's, the quoted UDP (unless zero) or TCP checksum, the
/// quoted echo's, and the ICMP error's own, which covers all of them.
///
/// `inner_tcp_csum` is the quoted TCP checksum when the error quotes it.
#[inline(always)]
pub fn rewrite_icmp_error(
    bytes: &mut [u8; ICMP_ERROR_LEN],
    inner_tcp_csum: Option<&mut [u8; 2]>,
    to: &Quoted,
) {
    let Some(from) = quoted(bytes) else {
        return;
    };
    let mut outer = word(bytes, ICMP_CSUM);

    // Each changed word of the ICMP payload moves the outer checksum too.
    let change = |bytes: &mut [u8; ICMP_ERROR_LEN], at: usize, new: u16, outer: &mut u16| {
        let old = word(bytes, at);
        if old != new {
            *outer = replace16(*outer, old, new);
            set_word(bytes, at, new);
        }
    };

    // The quoted IPv4 header: addresses and its own checksum.
    let ip_csum = replace32(
        replace32(word(bytes, INNER_IP_CSUM), from.src, to.src),
        from.dst,
        to.dst,
    );
    for (at, addr) in [(INNER_SRC, to.src), (INNER_DST, to.dst)] {
        change(bytes, at, word(&addr, 0), &mut outer);
        change(bytes, at + 2, word(&addr, 2), &mut outer);
    }
    change(bytes, INNER_IP_CSUM, ip_csum, &mut outer);

    match from.proto {
        crate::nat::IPPROTO_UDP | crate::nat::IPPROTO_TCP => {
            let transport = |check: u16| {
                let check = replace32(replace32(check, from.src, to.src), from.dst, to.dst);
                let check = replace16(check, from.sport, to.sport);
                replace16(check, from.dport, to.dport)
            };
            change(bytes, INNER_L4, to.sport, &mut outer);
            change(bytes, INNER_L4 + 2, to.dport, &mut outer);
            if from.proto == crate::nat::IPPROTO_UDP {
                let check = word(bytes, INNER_L4 + 6);
                // Zero means "no checksum" and stays zero; a computed zero
                // is sent as 0xffff (RFC 768).
                if check != 0 {
                    let new = match transport(check) {
                        0 => 0xffff,
                        other => other,
                    };
                    change(bytes, INNER_L4 + 6, new, &mut outer);
                }
            } else if let Some(field) = inner_tcp_csum {
                let old = u16::from_be_bytes(*field);
                let new = transport(old);
                outer = replace16(outer, old, new);
                *field = new.to_be_bytes();
            }
        }
        _ => {
            // ICMP echo: the identifier and the echo's own checksum.
            let (old_id, new_id) = if bytes[INNER_L4] == ICMP_ECHO_REQUEST {
                (from.sport, to.sport)
            } else {
                (from.dport, to.dport)
            };
            let echo_csum = replace16(word(bytes, INNER_L4 + 2), old_id, new_id);
            change(bytes, INNER_L4 + 4, new_id, &mut outer);
            change(bytes, INNER_L4 + 2, echo_csum, &mut outer);
        }
    }
    set_word(bytes, ICMP_CSUM, outer);
}

/// "Fragmentation needed" code of [`ICMP_DEST_UNREACH`].
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// The IPv4 header and transport bytes a frag-needed error quotes.
pub const FRAG_NEEDED_QUOTE: usize = 28;
/// A frag-needed error as the host programs build it: IPv4 header (20),
/// ICMP header (8), quote (28).
pub const FRAG_NEEDED_LEN: usize = 20 + 8 + FRAG_NEEDED_QUOTE;

/// The IPv4 and ICMP headers of a "fragmentation needed" error (RFC 1191)
/// from `src` about `quote` (the first 28 bytes of the packet that did not
/// fit, as its sender sent it), telling its sender the next hop's `mtu`.
/// The whole error is these 28 bytes followed by the quote; every checksum
/// is computed here. The programs turn a packet that is too big into this
/// in place, as a router's stack would answer it.
#[inline(always)]
pub fn frag_needed(quote: &[u8; FRAG_NEEDED_QUOTE], src: [u8; 4], mtu: u16) -> [u8; 28] {
    let mut out = [0u8; 28];
    // IPv4: version 4, IHL 5, length, DF clear, TTL 64, protocol ICMP.
    out[0] = 0x45;
    set_word(&mut out, 2, FRAG_NEEDED_LEN as u16);
    out[8] = 64;
    out[9] = 1;
    out[12..16].copy_from_slice(&src);
    out[16..20].copy_from_slice(&quote[12..16]);
    let ip_check = !fold(sum_words(&out, 0, 20));
    set_word(&mut out, 10, ip_check);
    // ICMP: type, code, checksum, unused, next-hop MTU; the quote follows.
    out[20] = ICMP_DEST_UNREACH;
    out[21] = ICMP_FRAG_NEEDED;
    set_word(&mut out, 26, mtu);
    let icmp_check = !fold(sum_words(&out, 20, 28) + sum_words(quote, 0, FRAG_NEEDED_QUOTE));
    set_word(&mut out, 22, icmp_check);
    out
}

/// The one's complement sum (unfolded) of the big-endian words in
/// `bytes[from..to]`.
#[inline(always)]
fn sum_words(bytes: &[u8], from: usize, to: usize) -> u32 {
    let mut sum: u32 = 0;
    let mut at = from;
    while at + 1 < to {
        sum += word(bytes, at) as u32;
        at += 2;
    }
    sum
}
