//! Specification of `netd_common::csum`: Internet checksum arithmetic
//! (RFC 1071, RFC 1624) and the RFC 5508 rewrite of the packet an ICMP error
//! quotes.
//!
//! Every ICMP error here is crafted from scratch by the small builder below,
//! with every checksum computed from scratch by `checksum`. The rewrite is
//! then driven as the eBPF program drives it (the first 36 bytes of the ICMP
//! message on the stack, plus the quoted TCP checksum when present), and its
//! result is checked against a packet built from scratch with the new
//! identity: every checksum must verify from scratch, and apart from the
//! checksum fields no byte may differ from that packet.

use netd_common::csum::{
    ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_ERROR_LEN, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, INNER_TCP_CSUM_OFFSET, Quoted, checksum, fold, is_icmp_error, quoted,
    replace16, replace32, rewrite_icmp_error, word,
};
use netd_common::nat::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

const IPPROTO_GRE: u8 = 47;
const ICMP_CODE_PORT_UNREACH: u8 = 3;
const ICMP_CODE_FRAG_NEEDED: u8 = 4;

// Offsets within an ICMP error message whose quoted header has no options.
const OUTER_CSUM: usize = 2;
const INNER_IP: usize = 8;
const INNER_IP_CSUM: usize = INNER_IP + 10;
const INNER_SRC: usize = INNER_IP + 12;
const INNER_DST: usize = INNER_IP + 16;
const INNER_L4: usize = INNER_IP + 20;
/// Where the eBPF program finds the quoted TCP checksum.
const TCP_CSUM_SLOT: usize = INNER_L4 + INNER_TCP_CSUM_OFFSET;

// ---------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------

/// The quoted packet's transport.
#[derive(Clone, Debug)]
enum L4 {
    /// A UDP header; `checksum: false` sends it without a checksum (zero).
    Udp { checksum: bool },
    /// A 20-byte TCP header.
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
    },
    /// An ICMP echo request or reply; the identifier is the tuple's `sport`
    /// for a request and its `dport` for a reply.
    Echo { ty: u8, seq: u16 },
    /// No header the builder knows: the payload follows the IPv4 header.
    Raw,
}

/// The packet an ICMP error quotes, as it was sent.
#[derive(Clone, Debug)]
struct Packet {
    tuple: Quoted,
    tos: u8,
    ip_id: u16,
    frag: u16,
    ttl: u8,
    /// IPv4 options, a multiple of 4 bytes.
    options: Vec<u8>,
    l4: L4,
    payload: Vec<u8>,
}

/// An ICMP error.
#[derive(Clone, Debug)]
struct IcmpError {
    ty: u8,
    code: u8,
    /// ICMP header bytes 4-7: unused, a pointer, or the next-hop MTU (6-7).
    rest: [u8; 4],
    quoted: Packet,
    /// How many bytes of the quoted transport header and payload the error
    /// carries; None: all of them.
    quote_l4: Option<usize>,
}

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn put16(bytes: &mut [u8], at: usize, v: u16) {
    bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The checksum, from scratch, of a TCP or UDP segment over its pseudo-header.
fn pseudo_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(12 + l4.len());
    data.extend_from_slice(&src);
    data.extend_from_slice(&dst);
    data.extend_from_slice(&[0, proto]);
    data.extend_from_slice(&be16(l4.len() as u16));
    data.extend_from_slice(l4);
    checksum(&data)
}

impl Packet {
    fn udp(tuple: Quoted, payload: &[u8]) -> Packet {
        Packet::new(tuple, L4::Udp { checksum: true }, payload)
    }

    fn tcp(tuple: Quoted, payload: &[u8]) -> Packet {
        let l4 = L4::Tcp {
            seq: 0x1234_5678,
            ack: 0x9abc_def0,
            flags: 0x18,
            window: 64240,
        };
        Packet::new(tuple, l4, payload)
    }

    fn echo(tuple: Quoted, ty: u8, seq: u16, payload: &[u8]) -> Packet {
        Packet::new(tuple, L4::Echo { ty, seq }, payload)
    }

    fn new(tuple: Quoted, l4: L4, payload: &[u8]) -> Packet {
        Packet {
            tuple,
            tos: 0,
            ip_id: 0x1c46,
            frag: 0x4000,
            ttl: 64,
            options: Vec::new(),
            l4,
            payload: payload.to_vec(),
        }
    }

    fn with_tuple(&self, tuple: Quoted) -> Packet {
        Packet {
            tuple,
            ..self.clone()
        }
    }

    fn transport(&self) -> Vec<u8> {
        let t = &self.tuple;
        let mut b = Vec::new();
        match self.l4 {
            L4::Udp { checksum: with } => {
                b.extend_from_slice(&be16(t.sport));
                b.extend_from_slice(&be16(t.dport));
                b.extend_from_slice(&be16((8 + self.payload.len()) as u16));
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&self.payload);
                if with {
                    // RFC 768: a computed zero is sent as all ones.
                    let c = match pseudo_checksum(t.src, t.dst, IPPROTO_UDP, &b) {
                        0 => 0xffff,
                        c => c,
                    };
                    put16(&mut b, 6, c);
                }
            }
            L4::Tcp {
                seq,
                ack,
                flags,
                window,
            } => {
                b.extend_from_slice(&be16(t.sport));
                b.extend_from_slice(&be16(t.dport));
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ack.to_be_bytes());
                b.extend_from_slice(&[5 << 4, flags]);
                b.extend_from_slice(&be16(window));
                b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                b.extend_from_slice(&self.payload);
                let c = pseudo_checksum(t.src, t.dst, IPPROTO_TCP, &b);
                put16(&mut b, 16, c);
            }
            L4::Echo { ty, seq } => {
                let id = if ty == ICMP_ECHO_REQUEST {
                    t.sport
                } else {
                    t.dport
                };
                b.extend_from_slice(&[ty, 0, 0, 0]);
                b.extend_from_slice(&be16(id));
                b.extend_from_slice(&be16(seq));
                b.extend_from_slice(&self.payload);
                let c = checksum(&b);
                put16(&mut b, 2, c);
            }
            L4::Raw => b.extend_from_slice(&self.payload),
        }
        b
    }

    fn ihl(&self) -> usize {
        assert_eq!(self.options.len() % 4, 0);
        20 + self.options.len()
    }

    fn bytes(&self) -> Vec<u8> {
        let l4 = self.transport();
        let ihl = self.ihl();
        let t = &self.tuple;
        let mut b = vec![0x40 | (ihl / 4) as u8, self.tos];
        b.extend_from_slice(&be16((ihl + l4.len()) as u16));
        b.extend_from_slice(&be16(self.ip_id));
        b.extend_from_slice(&be16(self.frag));
        b.extend_from_slice(&[self.ttl, t.proto, 0, 0]);
        b.extend_from_slice(&t.src);
        b.extend_from_slice(&t.dst);
        b.extend_from_slice(&self.options);
        let c = checksum(&b);
        put16(&mut b, 10, c);
        b.extend_from_slice(&l4);
        b
    }
}

impl IcmpError {
    fn new(ty: u8, code: u8, quoted: Packet) -> IcmpError {
        IcmpError {
            ty,
            code,
            rest: [0; 4],
            quoted,
            quote_l4: None,
        }
    }

    /// Fragmentation needed: type 3 code 4, next-hop MTU in bytes 6-7.
    fn frag_needed(mtu: u16, quoted: Packet) -> IcmpError {
        let [hi, lo] = mtu.to_be_bytes();
        IcmpError {
            rest: [0, 0, hi, lo],
            ..IcmpError::new(ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, quoted)
        }
    }

    fn quoting(&self, quoted: Packet) -> IcmpError {
        IcmpError {
            quoted,
            ..self.clone()
        }
    }

    fn truncated(self, quote_l4: usize) -> IcmpError {
        IcmpError {
            quote_l4: Some(quote_l4),
            ..self
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut datagram = self.quoted.bytes();
        if let Some(n) = self.quote_l4 {
            datagram.truncate(self.quoted.ihl() + n);
        }
        let mut b = vec![self.ty, self.code, 0, 0];
        b.extend_from_slice(&self.rest);
        b.extend_from_slice(&datagram);
        let c = checksum(&b);
        put16(&mut b, OUTER_CSUM, c);
        b
    }
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Quoted {
    Quoted {
        proto: IPPROTO_UDP,
        src,
        dst,
        sport,
        dport,
    }
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Quoted {
    Quoted {
        proto: IPPROTO_TCP,
        src,
        dst,
        sport,
        dport,
    }
}

fn echo_request(src: [u8; 4], dst: [u8; 4], id: u16) -> Quoted {
    Quoted {
        proto: IPPROTO_ICMP,
        src,
        dst,
        sport: id,
        dport: 0,
    }
}

fn echo_reply(src: [u8; 4], dst: [u8; 4], id: u16) -> Quoted {
    Quoted {
        proto: IPPROTO_ICMP,
        src,
        dst,
        sport: 0,
        dport: id,
    }
}

// ---------------------------------------------------------------------------
// Driving the rewrite as the eBPF program does, and verifying from scratch
// ---------------------------------------------------------------------------

fn head(msg: &[u8]) -> [u8; ICMP_ERROR_LEN] {
    msg[..ICMP_ERROR_LEN].try_into().unwrap()
}

/// Splits `msg` into the 36 bytes on the stack and (if `pass_tcp_csum`) the
/// quoted TCP checksum, rewrites, and reassembles.
fn rewrite(msg: &[u8], pass_tcp_csum: bool, to: &Quoted) -> Vec<u8> {
    let mut bytes = head(msg);
    let mut slot: Option<[u8; 2]> =
        pass_tcp_csum.then(|| msg[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2].try_into().unwrap());
    rewrite_icmp_error(&mut bytes, slot.as_mut(), to);
    let mut out = msg.to_vec();
    out[..ICMP_ERROR_LEN].copy_from_slice(&bytes);
    if let Some(slot) = slot {
        out[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2].copy_from_slice(&slot);
    }
    out
}

/// Whether data carrying its own checksum sums to (negative) zero.
fn sums_to_zero(data: &[u8]) -> bool {
    checksum(data) == 0
}

/// Whether two checksums are the same one's complement number (0x0000 and
/// 0xffff both being zero).
fn same_ones_complement(a: u16, b: u16) -> bool {
    a == b || (a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)
}

fn inner_ihl(msg: &[u8]) -> usize {
    (msg[INNER_IP] & 0x0f) as usize * 4
}

/// (1) The quoted IPv4 header's checksum, from scratch.
fn inner_ip_valid(msg: &[u8]) -> bool {
    sums_to_zero(&msg[INNER_IP..INNER_IP + inner_ihl(msg)])
}

/// Whether the whole quoted datagram is in the message.
fn quotes_whole_datagram(msg: &[u8]) -> bool {
    word(msg, INNER_IP + 2) as usize == msg.len() - INNER_IP
}

/// (2) and (3): the quoted transport checksum, from scratch, over the quoted
/// header's (new) addresses. Needs the whole quoted datagram.
fn inner_l4_valid(msg: &[u8]) -> bool {
    assert!(quotes_whole_datagram(msg));
    let ip = &msg[INNER_IP..];
    let l4 = &ip[inner_ihl(msg)..];
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    match ip[9] {
        IPPROTO_UDP if word(l4, 6) == 0 => true,
        IPPROTO_UDP => pseudo_checksum(src, dst, IPPROTO_UDP, l4) == 0,
        IPPROTO_TCP => pseudo_checksum(src, dst, IPPROTO_TCP, l4) == 0,
        IPPROTO_ICMP => sums_to_zero(l4),
        other => panic!("no checksum to verify for protocol {other}"),
    }
}

/// Offset of the quoted transport checksum in the message, when present (a
/// truncated quote may hold only its first byte).
fn inner_l4_csum_at(msg: &[u8], proto: u8) -> Option<usize> {
    let at = match proto {
        IPPROTO_UDP => INNER_L4 + 6,
        IPPROTO_TCP => TCP_CSUM_SLOT,
        IPPROTO_ICMP => INNER_L4 + 2,
        _ => return None,
    };
    (msg.len() > at).then_some(at)
}

/// Crafts `err`, rewrites its quoted packet to `to` and checks the result
/// against the same error crafted from scratch around `to`.
fn check_rewrite(err: &IcmpError, to: Quoted, pass_tcp_csum: bool) -> Vec<u8> {
    let from = err.quoted.tuple;
    let msg = err.bytes();
    let full = err.quote_l4.is_none();

    // The builder itself is right.
    assert!(sums_to_zero(&msg), "crafted outer checksum");
    assert!(inner_ip_valid(&msg), "crafted quoted IPv4 checksum");
    if full {
        assert!(inner_l4_valid(&msg), "crafted quoted transport checksum");
    }

    // `quoted` reads the identity the packet was sent with.
    assert_eq!(
        quoted(&head(&msg)),
        Some(from),
        "quoted() of the crafted error"
    );

    let out = rewrite(&msg, pass_tcp_csum, &to);
    assert_eq!(out.len(), msg.len());
    assert_eq!(quoted(&head(&out)), Some(to), "quoted() after the rewrite");

    // (4) The ICMP error's own checksum, over every byte the message holds.
    assert!(
        sums_to_zero(&out),
        "outer ICMP checksum after the rewrite: {out:02x?}"
    );
    // (1) The quoted IPv4 header's checksum.
    assert!(
        inner_ip_valid(&out),
        "quoted IPv4 header checksum after the rewrite: {out:02x?}"
    );
    // (2), (3) The quoted transport checksum, unless the caller could not
    // pass it (then it is left as it was).
    let l4_csum = inner_l4_csum_at(&msg, from.proto);
    let tcp_left_alone = from.proto == IPPROTO_TCP && !pass_tcp_csum;
    if full && !tcp_left_alone {
        assert!(
            inner_l4_valid(&out),
            "quoted transport checksum after the rewrite: {out:02x?}"
        );
    }

    // (5) The same error crafted from scratch around the new identity.
    let mut expected = err.quoting(err.quoted.with_tuple(to)).bytes();
    if tcp_left_alone && let Some(at) = l4_csum {
        let end = msg.len().min(at + 2);
        expected[at..end].copy_from_slice(&msg[at..end]);
        put16(&mut expected, OUTER_CSUM, 0);
        let c = checksum(&expected);
        put16(&mut expected, OUTER_CSUM, c);
    }
    assert_eq!(quoted(&head(&expected)), Some(to));
    // The checksum fields may differ from scratch in their representation of
    // zero only; a TCP checksum that was not passed must be as it was.
    let l4_csum_updated = l4_csum.filter(|_| !tcp_left_alone);
    let csum_fields: Vec<usize> = [Some(OUTER_CSUM), Some(INNER_IP_CSUM), l4_csum_updated]
        .into_iter()
        .flatten()
        .collect();
    for at in 0..out.len() {
        if csum_fields.iter().any(|&f| at == f || at == f + 1) {
            continue;
        }
        assert_eq!(
            out[at], expected[at],
            "byte {at} of {out:02x?}\nexpected {expected:02x?}"
        );
    }
    for &at in &csum_fields {
        let (got, want) = (word(&out, at), word(&expected, at));
        assert!(
            same_ones_complement(got, want),
            "checksum at {at}: {got:#06x}, from scratch {want:#06x}"
        );
    }
    if from.proto == IPPROTO_UDP
        && let Some(at) = l4_csum
    {
        // UDP: zero means "no checksum", so it stays zero and nothing else
        // becomes zero.
        assert_eq!(
            word(&out, at) == 0,
            word(&msg, at) == 0,
            "UDP checksum zero-ness"
        );
        assert_eq!(word(&out, at), word(&expected, at));
    }
    out
}

/// Crafts `err` and checks that the rewrite leaves every byte as it was.
fn check_untouched(err: &IcmpError, to: Quoted) {
    let msg = err.bytes();
    assert!(sums_to_zero(&msg), "crafted outer checksum");
    assert_eq!(quoted(&head(&msg)), None);
    let pass = msg.len() >= TCP_CSUM_SLOT + 2;
    assert_eq!(rewrite(&msg, pass, &to), msg);
    assert_eq!(rewrite(&msg, false, &to), msg);
}

// ---------------------------------------------------------------------------
// Checksum arithmetic
// ---------------------------------------------------------------------------

/// RFC 1071 §3's worked example.
const RFC1071: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

#[test]
fn rfc1071_example_sums_to_0xddf2() {
    let sum: u32 = RFC1071
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]) as u32)
        .sum();
    assert_eq!(sum, 0x2ddf0);
    assert_eq!(fold(sum), 0xddf2);
}

#[test]
fn rfc1071_example_checksum_is_0x220d() {
    assert_eq!(checksum(&RFC1071), 0x220d);
    // Appended, it makes the data sum to zero.
    let mut with = RFC1071.to_vec();
    with.extend_from_slice(&be16(0x220d));
    assert_eq!(checksum(&with), 0);
}

#[test]
fn rfc1071_example_byte_order_independence() {
    // RFC 1071 §2(B): summing byte-swapped words gives the byte-swapped sum.
    let swapped: Vec<u8> = RFC1071.chunks(2).flat_map(|p| [p[1], p[0]]).collect();
    assert_eq!(checksum(&swapped), 0x220du16.swap_bytes());
}

#[test]
fn fold_adds_the_carries_back() {
    assert_eq!(fold(0), 0);
    assert_eq!(fold(0xffff), 0xffff);
    assert_eq!(fold(0x1_0000), 1);
    assert_eq!(fold(0x1_fffe), 0xffff);
    assert_eq!(fold(0xffff_ffff), 0xffff);
    assert_eq!(fold(0x2ddf0), 0xddf2);
    // A carry produced by the first fold is added by the second.
    assert_eq!(fold(0xffff_0001), 1);
}

#[test]
fn checksum_of_odd_length_pads_with_a_zero_byte() {
    assert_eq!(checksum(&[0xab]), !0xab00);
    assert_eq!(checksum(&[1, 2, 3]), checksum(&[1, 2, 3, 0]));
    assert_eq!(
        checksum(&RFC1071[..7]),
        checksum(&[&RFC1071[..7], &[0][..]].concat())
    );
}

#[test]
fn checksum_of_nothing_is_all_ones() {
    assert_eq!(checksum(&[]), 0xffff);
    assert_eq!(checksum(&[0, 0]), 0xffff);
}

#[test]
fn checksum_carries_across_many_words() {
    // 0xffff * n sums to (negative) zero whatever n.
    assert_eq!(checksum(&[0xff; 4096]), 0);
    // 0x8000 twice carries once: 0x0001.
    assert_eq!(checksum(&[0x80, 0, 0x80, 0]), !1);
}

#[test]
fn rfc1624_example_replace16_gives_0x0000() {
    // RFC 1624 §4: HC = 0xdd2f, m = 0x5555, m' = 0x3285; eqn. 3 gives 0x0000
    // (where eqn. 2 of RFC 1141 would wrongly give 0xffff).
    assert_eq!(replace16(0xdd2f, 0x5555, 0x3285), 0x0000);
}

#[test]
fn replace16_on_the_rfc1071_example_matches_recomputation() {
    for at in [0, 2, 4, 6] {
        for new in [0x0000, 0x0001, 0x1234, 0x7fff, 0x8000, 0xfffe, 0xffff] {
            let mut data = RFC1071;
            let old = word(&data, at);
            put16(&mut data, at, new);
            let got = replace16(0x220d, old, new);
            assert!(
                same_ones_complement(got, checksum(&data)),
                "at {at} new {new:#x}"
            );
        }
    }
}

#[test]
fn replace16_can_yield_zero() {
    // The data is one word w; its checksum is !w. Changing w to 0xffff makes
    // the data sum to 0xffff, whose checksum is 0x0000: the incremental update
    // does produce a zero, which UDP must not send (see the UDP tests).
    let w = 0x1234;
    assert_eq!(checksum(&be16(w)), !w);
    assert_eq!(replace16(!w, w, 0xffff), 0x0000);
    assert_eq!(checksum(&be16(0xffff)), 0x0000);
}

#[test]
fn replace16_of_an_unchanged_word_keeps_the_checksum() {
    for check in [0x0001, 0x1234, 0x8000, 0xfffe] {
        for w in [0x0000, 0x00ff, 0xabcd, 0xffff] {
            assert_eq!(replace16(check, w, w), check);
        }
    }
    // Zero is zero, in either representation.
    assert!(same_ones_complement(replace16(0x0000, 0x1234, 0x1234), 0));
    assert!(same_ones_complement(replace16(0xffff, 0x1234, 0x1234), 0));
}

#[test]
fn replace32_is_two_replace16() {
    let data = [10, 0, 0, 1, 192, 168, 1, 1, 0xde, 0xad];
    let check = checksum(&data);
    let mut new = data;
    new[..4].copy_from_slice(&[172, 18, 255, 2]);
    let got = replace32(check, [10, 0, 0, 1], [172, 18, 255, 2]);
    assert_eq!(got, checksum(&new));
    assert_eq!(
        got,
        replace16(replace16(check, 0x0a00, 0xac12), 0x0001, 0xff02)
    );
}

/// xorshift64*: deterministic, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn u8(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    fn u16(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn addr(&mut self) -> [u8; 4] {
        self.u32().to_be_bytes()
    }
    /// A 16-bit value biased towards the edges of the one's complement
    /// arithmetic.
    fn word(&mut self) -> u16 {
        match self.below(8) {
            0 => 0,
            1 => 0xffff,
            2 => 0xfffe,
            3 => 1,
            _ => self.u16(),
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

#[test]
fn replace16_and_replace32_match_recomputation_on_random_data() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = 2 + 2 * rng.below(40);
        let mut data = rng.bytes(len);
        if rng.chance(4) {
            // Words of all ones or zeros, to reach the edges.
            let fill = if rng.chance(2) { 0xff } else { 0 };
            data.iter_mut().for_each(|b| *b = fill);
        }
        let check = checksum(&data);
        let at = 2 * rng.below(len / 2);
        let old = word(&data, at);
        let new = rng.word();
        put16(&mut data, at, new);
        let got = replace16(check, old, new);
        assert!(
            same_ones_complement(got, checksum(&data)),
            "replace16 {data:02x?} at {at}"
        );

        if len >= 4 {
            let at = 2 * rng.below(len / 2 - 1);
            let check = checksum(&data);
            let old: [u8; 4] = data[at..at + 4].try_into().unwrap();
            let new = if rng.chance(8) { old } else { rng.addr() };
            data[at..at + 4].copy_from_slice(&new);
            let got = replace32(check, old, new);
            assert!(
                same_ones_complement(got, checksum(&data)),
                "replace32 {data:02x?} at {at}"
            );
        }
    }
}

#[test]
fn incrementally_updated_data_still_sums_to_zero() {
    // Data that carries its checksum stays valid through any number of
    // incremental updates.
    let mut rng = Rng(42);
    let mut data = rng.bytes(64);
    put16(&mut data, 10, 0);
    let c = checksum(&data);
    put16(&mut data, 10, c);
    for _ in 0..10_000 {
        let at = 2 * rng.below(32);
        if at == 10 {
            continue;
        }
        let (old, new) = (word(&data, at), rng.word());
        put16(&mut data, at, new);
        let c = replace16(word(&data, 10), old, new);
        put16(&mut data, 10, c);
        assert!(sums_to_zero(&data));
    }
}

#[test]
fn icmp_errors_are_the_types_that_quote_a_packet() {
    assert!(is_icmp_error(ICMP_DEST_UNREACH));
    assert!(is_icmp_error(ICMP_TIME_EXCEEDED));
    assert!(is_icmp_error(ICMP_PARAMETER_PROBLEM));
    assert!(!is_icmp_error(ICMP_ECHO_REQUEST));
    assert!(!is_icmp_error(ICMP_ECHO_REPLY));
}

// ---------------------------------------------------------------------------
// The rewrite of ICMP errors
// ---------------------------------------------------------------------------

const GATEWAY: [u8; 4] = [172, 18, 255, 2];
const GUEST: [u8; 4] = [172, 18, 0, 5];
const DNS_SERVER: [u8; 4] = [203, 0, 113, 10];
const WEB_SERVER: [u8; 4] = [198, 51, 100, 7];

#[test]
fn port_unreachable_quoting_udp_is_translated_back_to_the_guest() {
    // The guest's 172.18.0.5:5353 -> 203.0.113.10:53 left as
    // 172.18.255.2:40000 -> 203.0.113.10:53; the server's port unreachable
    // quotes the latter and must reach the guest quoting the former.
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    let query =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, query),
    );

    let out = check_rewrite(&err, guest, false);

    assert_eq!(out[..2], [ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH]);
    assert_eq!(out[INNER_SRC..INNER_SRC + 4], GUEST);
    assert_eq!(out[INNER_DST..INNER_DST + 4], DNS_SERVER);
    assert_eq!(word(&out, INNER_L4), 5353);
    assert_eq!(word(&out, INNER_L4 + 2), 53);
    assert_ne!(word(&out, INNER_L4 + 6), 0);
    assert_eq!(out[INNER_L4 + 8..], query[..]);
}

#[test]
fn port_unreachable_rewrite_round_trips() {
    // Rewriting back to the original identity restores the original bytes.
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, b"ping?"),
    );
    let msg = err.bytes();
    let there = rewrite(&msg, false, &guest);
    let back = rewrite(&there, false, &sent);
    for at in 0..msg.len() {
        if [OUTER_CSUM, INNER_IP_CSUM, INNER_L4 + 6]
            .iter()
            .any(|&f| at == f || at == f + 1)
        {
            continue;
        }
        assert_eq!(back[at], msg[at], "byte {at}");
    }
    for at in [OUTER_CSUM, INNER_IP_CSUM, INNER_L4 + 6] {
        assert!(same_ones_complement(word(&back, at), word(&msg, at)));
    }
}

#[test]
fn udp_without_checksum_stays_without_checksum() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    let packet = Packet::new(sent, L4::Udp { checksum: false }, b"no checksum here");
    let err = IcmpError::new(ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, packet);
    assert_eq!(word(&err.bytes(), INNER_L4 + 6), 0);

    let out = check_rewrite(&err, guest, false);

    assert_eq!(word(&out, INNER_L4 + 6), 0);
}

/// A payload whose first word makes the UDP checksum of `tuple`'s datagram,
/// computed from scratch, come out zero (so that it is sent as 0xffff).
fn payload_with_zero_udp_checksum(tuple: Quoted, tail: &[u8]) -> Vec<u8> {
    let mut payload = [&[0, 0][..], tail].concat();
    let raw = pseudo_checksum(tuple.src, tuple.dst, IPPROTO_UDP, &{
        let mut p = Packet::new(tuple, L4::Udp { checksum: false }, &payload).transport();
        put16(&mut p, 6, 0);
        p
    });
    // The datagram summed to !raw; adding raw makes it sum to 0xffff.
    put16(&mut payload, 0, raw);
    let l4 = Packet::new(tuple, L4::Udp { checksum: false }, &payload).transport();
    assert_eq!(pseudo_checksum(tuple.src, tuple.dst, IPPROTO_UDP, &l4), 0);
    payload
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_all_ones() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    // Over the guest's identity the datagram's checksum is zero; over the
    // gateway's it is not.
    let payload = payload_with_zero_udp_checksum(guest, b"tail");
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, &payload),
    );
    let msg = err.bytes();
    let old = word(&msg, INNER_L4 + 6);
    assert_ne!(old, 0);
    assert_ne!(old, 0xffff);
    // The incremental update, as RFC 1624 computes it, yields 0x0000 here.
    let incremental = replace16(
        replace16(
            replace32(replace32(old, sent.src, guest.src), sent.dst, guest.dst),
            sent.sport,
            guest.sport,
        ),
        sent.dport,
        guest.dport,
    );
    assert_eq!(incremental, 0);

    let out = check_rewrite(&err, guest, false);

    assert_eq!(word(&out, INNER_L4 + 6), 0xffff);
}

#[test]
fn udp_checksum_sent_as_all_ones_is_updated() {
    // The reverse: the quoted datagram's computed checksum was zero, sent as
    // 0xffff; after the rewrite it is an ordinary, valid checksum.
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    let payload = payload_with_zero_udp_checksum(sent, b"tail");
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, &payload),
    );
    assert_eq!(word(&err.bytes(), INNER_L4 + 6), 0xffff);

    let out = check_rewrite(&err, guest, false);

    let new = word(&out, INNER_L4 + 6);
    assert!(new != 0 && new != 0xffff, "{new:#06x}");
}

#[test]
fn udp_checksum_of_all_ones_survives_a_sum_preserving_rewrite() {
    // Swapping the addresses and the ports leaves the one's complement sum as
    // it was: a checksum sent as 0xffff stays 0xffff, never 0.
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let swapped = udp(DNS_SERVER, 53, GATEWAY, 40000);
    let payload = payload_with_zero_udp_checksum(sent, b"odd");
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, &payload),
    );
    assert_eq!(word(&err.bytes(), INNER_L4 + 6), 0xffff);

    let out = check_rewrite(&err, swapped, false);

    assert_eq!(word(&out, INNER_L4 + 6), 0xffff);
}

#[test]
fn identity_rewrite_changes_nothing() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let err = IcmpError::new(
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        Packet::udp(sent, b"same"),
    );
    let msg = err.bytes();
    assert_eq!(rewrite(&msg, false, &sent), msg);
    let sent = tcp(GATEWAY, 40001, WEB_SERVER, 443);
    let msg = IcmpError::frag_needed(1400, Packet::tcp(sent, b"same")).bytes();
    assert_eq!(rewrite(&msg, true, &sent), msg);
}

fn frag_needed_quoting_tcp() -> (IcmpError, Quoted) {
    // The guest's 172.18.0.5:51000 -> 198.51.100.7:443 left as
    // 172.18.255.2:40001; a router on the path cannot forward it unfragmented.
    let sent = tcp(GATEWAY, 40001, WEB_SERVER, 443);
    let guest = tcp(GUEST, 51000, WEB_SERVER, 443);
    let segment: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    (
        IcmpError::frag_needed(1400, Packet::tcp(sent, &segment)),
        guest,
    )
}

#[test]
fn fragmentation_needed_quoting_tcp_with_its_checksum() {
    let (err, guest) = frag_needed_quoting_tcp();
    let msg = err.bytes();
    assert!(msg.len() >= TCP_CSUM_SLOT + 2);

    let out = check_rewrite(&err, guest, true);

    assert_eq!(out[..2], [ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED]);
    // The next-hop MTU is untouched.
    assert_eq!(word(&out, 6), 1400);
    assert_eq!(out[INNER_SRC..INNER_SRC + 4], GUEST);
    assert_eq!(out[INNER_DST..INNER_DST + 4], WEB_SERVER);
    assert_eq!(word(&out, INNER_L4), 51000);
    assert_eq!(word(&out, INNER_L4 + 2), 443);
    assert_ne!(
        out[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2],
        msg[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2]
    );
}

#[test]
fn fragmentation_needed_quoting_only_8_bytes_of_tcp() {
    // RFC 792's minimum: the quoted TCP header stops at its sequence number,
    // so there is no TCP checksum to update, and the outer checksum covers
    // just the 36 bytes.
    let (err, guest) = frag_needed_quoting_tcp();
    let err = err.truncated(8);
    let msg = err.bytes();
    assert_eq!(msg.len(), ICMP_ERROR_LEN);

    let out = check_rewrite(&err, guest, false);

    assert_eq!(word(&out, 6), 1400);
    assert_eq!(out[INNER_SRC..INNER_SRC + 4], GUEST);
    assert_eq!(word(&out, INNER_L4), 51000);
    assert_eq!(out[INNER_L4 + 4..], msg[INNER_L4 + 4..]);
}

#[test]
fn fragmentation_needed_quoting_tcp_without_passing_its_checksum() {
    // When the caller does not pass the quoted TCP checksum although the
    // error holds it, that field is left alone and the outer checksum is
    // still right over every byte.
    let (err, guest) = frag_needed_quoting_tcp();
    let msg = err.bytes();
    let out = check_rewrite(&err, guest, false);
    assert_eq!(
        out[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2],
        msg[TCP_CSUM_SLOT..TCP_CSUM_SLOT + 2]
    );
}

#[test]
fn time_exceeded_quoting_an_echo_request_changes_its_identifier() {
    // The guest's ping 172.18.0.5 -> 8.8.8.8 (identifier 0x1234) left as
    // 172.18.255.2 with identifier 0x8001; its TTL ran out on the way.
    let sent = echo_request(GATEWAY, [8, 8, 8, 8], 0x8001);
    let guest = echo_request(GUEST, [8, 8, 8, 8], 0x1234);
    let packet = Packet::echo(
        sent,
        ICMP_ECHO_REQUEST,
        7,
        b"abcdefghijklmnopqrstuvwabcdefghi",
    );
    let err = IcmpError::new(ICMP_TIME_EXCEEDED, 0, Packet { ttl: 1, ..packet });

    let out = check_rewrite(&err, guest, false);

    assert_eq!(out[INNER_SRC..INNER_SRC + 4], GUEST);
    assert_eq!(out[INNER_DST..INNER_DST + 4], [8, 8, 8, 8]);
    assert_eq!(out[INNER_L4], ICMP_ECHO_REQUEST);
    assert_eq!(word(&out, INNER_L4 + 4), 0x1234);
    assert_eq!(word(&out, INNER_L4 + 6), 7);
}

#[test]
fn time_exceeded_quoting_an_echo_request_truncated_to_8_bytes() {
    let sent = echo_request(GATEWAY, [8, 8, 8, 8], 0x8001);
    let guest = echo_request(GUEST, [8, 8, 8, 8], 0x1234);
    let packet = Packet::echo(sent, ICMP_ECHO_REQUEST, 7, b"payload that is not quoted");
    let err = IcmpError::new(ICMP_TIME_EXCEEDED, 0, packet).truncated(8);
    let out = check_rewrite(&err, guest, false);
    assert_eq!(word(&out, INNER_L4 + 4), 0x1234);
}

#[test]
fn destination_unreachable_quoting_an_echo_reply_changes_its_identifier() {
    // A reply's identifier is its "destination port".
    let sent = echo_reply([192, 0, 2, 1], GATEWAY, 0x8001);
    let guest = echo_reply([192, 0, 2, 1], GUEST, 0x4321);
    let packet = Packet::echo(sent, ICMP_ECHO_REPLY, 1, b"pong");
    let err = IcmpError::new(ICMP_DEST_UNREACH, 1, packet);

    let out = check_rewrite(&err, guest, false);

    assert_eq!(out[INNER_L4], ICMP_ECHO_REPLY);
    assert_eq!(word(&out, INNER_L4 + 4), 0x4321);
}

#[test]
fn parameter_problem_quoting_udp_keeps_its_pointer() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    let err = IcmpError {
        rest: [1, 0, 0, 0],
        ..IcmpError::new(ICMP_PARAMETER_PROBLEM, 0, Packet::udp(sent, b"x"))
    };
    let out = check_rewrite(&err, guest, false);
    assert_eq!(out[4..8], [1, 0, 0, 0]);
}

#[test]
fn quoted_header_with_options_is_not_translated() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let guest = udp(GUEST, 5353, DNS_SERVER, 53);
    // IHL 6: a router alert option (RFC 2113).
    let packet = Packet {
        options: vec![0x94, 0x04, 0x00, 0x00],
        ..Packet::udp(sent, b"with options")
    };
    let err = IcmpError::new(ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, packet);
    assert_eq!(err.bytes()[INNER_IP], 0x46);
    check_untouched(&err, guest);

    let sent = tcp(GATEWAY, 40001, WEB_SERVER, 443);
    let packet = Packet {
        options: vec![0x01, 0x01, 0x01, 0x00],
        ..Packet::tcp(sent, b"nop nop nop eol")
    };
    check_untouched(
        &IcmpError::frag_needed(1400, packet),
        tcp(GUEST, 51000, WEB_SERVER, 443),
    );
}

#[test]
fn quoted_unknown_protocol_is_not_translated() {
    let sent = Quoted {
        proto: IPPROTO_GRE,
        src: GATEWAY,
        dst: WEB_SERVER,
        sport: 0,
        dport: 0,
    };
    let to = Quoted { src: GUEST, ..sent };
    let packet = Packet::new(
        sent,
        L4::Raw,
        &[0x00, 0x00, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54, 0xaa, 0xbb],
    );
    check_untouched(&IcmpError::new(ICMP_DEST_UNREACH, 2, packet), to);
}

#[test]
fn quoted_icmp_other_than_echo_is_not_translated() {
    // An error about an error (or any non-echo ICMP) carries no identifier.
    let sent = Quoted {
        proto: IPPROTO_ICMP,
        src: GATEWAY,
        dst: WEB_SERVER,
        sport: 0,
        dport: 0,
    };
    let to = Quoted { src: GUEST, ..sent };
    let inner_error = [ICMP_DEST_UNREACH, 3, 0xab, 0xcd, 0, 0, 0, 0, 0x45, 0];
    let packet = Packet::new(sent, L4::Raw, &inner_error);
    check_untouched(&IcmpError::new(ICMP_TIME_EXCEEDED, 0, packet), to);
}

#[test]
fn quoted_packet_that_is_not_ipv4_is_not_translated() {
    let sent = udp(GATEWAY, 40000, DNS_SERVER, 53);
    let mut msg = IcmpError::new(ICMP_DEST_UNREACH, 3, Packet::udp(sent, b"v6?")).bytes();
    msg[INNER_IP] = 0x65;
    put16(&mut msg, OUTER_CSUM, 0);
    let c = checksum(&msg);
    put16(&mut msg, OUTER_CSUM, c);
    assert_eq!(quoted(&head(&msg)), None);
    assert_eq!(rewrite(&msg, false, &udp(GUEST, 5353, DNS_SERVER, 53)), msg);
}

// ---------------------------------------------------------------------------
// Properties over random packets
// ---------------------------------------------------------------------------

fn random_error(rng: &mut Rng) -> (IcmpError, Quoted, bool) {
    let proto_pick = rng.below(4);
    let (sport, dport) = (rng.word(), rng.word());
    let (src, dst) = (rng.addr(), rng.addr());
    let len = rng.below(80);
    let payload = rng.bytes(len);
    let (tuple, l4) = match proto_pick {
        0 => (
            udp(src, sport, dst, dport),
            L4::Udp {
                checksum: !rng.chance(8),
            },
        ),
        1 => (
            tcp(src, sport, dst, dport),
            L4::Tcp {
                seq: rng.u32(),
                ack: rng.u32(),
                flags: rng.u8(),
                window: rng.u16(),
            },
        ),
        2 => (
            echo_request(src, dst, sport),
            L4::Echo {
                ty: ICMP_ECHO_REQUEST,
                seq: rng.u16(),
            },
        ),
        _ => (
            echo_reply(src, dst, dport),
            L4::Echo {
                ty: ICMP_ECHO_REPLY,
                seq: rng.u16(),
            },
        ),
    };
    let quoted = Packet {
        tuple,
        tos: rng.u8(),
        ip_id: rng.u16(),
        frag: if rng.chance(2) { 0x4000 } else { 0 },
        ttl: rng.u8(),
        options: Vec::new(),
        l4,
        payload,
    };
    let (ty, code, rest) = match rng.below(3) {
        0 => {
            let code = rng.below(16) as u8;
            let rest = if code == ICMP_CODE_FRAG_NEEDED {
                [0, 0, rng.u8(), rng.u8()]
            } else {
                [0; 4]
            };
            (ICMP_DEST_UNREACH, code, rest)
        }
        1 => (ICMP_TIME_EXCEEDED, rng.below(2) as u8, [0; 4]),
        _ => (ICMP_PARAMETER_PROBLEM, 0, [rng.below(28) as u8, 0, 0, 0]),
    };
    let l4_len = quoted.transport().len();
    let quote_l4 = match rng.below(4) {
        0 => Some(8),
        1 => Some(8 + rng.below(l4_len - 8 + 1)),
        _ => None,
    };
    let err = IcmpError {
        ty,
        code,
        rest,
        quoted,
        quote_l4,
    };

    // A NAT changes one side (source or destination), sometimes both.
    let mut to = tuple;
    let side = rng.below(3);
    if side != 1 {
        to.src = if rng.chance(8) { tuple.src } else { rng.addr() };
    }
    if side != 0 {
        to.dst = if rng.chance(8) { tuple.dst } else { rng.addr() };
    }
    match proto_pick {
        0 | 1 => {
            if side != 1 {
                to.sport = rng.word();
            }
            if side != 0 {
                to.dport = rng.word();
            }
        }
        2 => to.sport = rng.word(),
        _ => to.dport = rng.word(),
    }
    let present = err.bytes().len() >= TCP_CSUM_SLOT + 2;
    let pass = tuple.proto == IPPROTO_TCP && present && !rng.chance(8);
    (err, to, pass)
}

#[test]
fn random_errors_keep_every_checksum_valid() {
    let mut rng = Rng(0x5eed_0fc5_u64);
    for i in 0..5000 {
        let (err, to, pass) = random_error(&mut rng);
        let result = std::panic::catch_unwind(|| check_rewrite(&err, to, pass));
        if result.is_err() {
            panic!("case {i}: {err:?}\n-> {to:?}, tcp checksum passed: {pass}");
        }
    }
}

#[test]
fn random_errors_with_a_zero_udp_checksum_after_the_rewrite() {
    // Random UDP errors whose rewritten datagram computes to a zero checksum:
    // it must come out as 0xffff.
    let mut rng = Rng(7);
    for _ in 0..1000 {
        let sent = udp(rng.addr(), rng.word(), rng.addr(), rng.word());
        let to = udp(rng.addr(), rng.word(), sent.dst, sent.dport);
        let len = rng.below(40);
        let tail = rng.bytes(len);
        let payload = payload_with_zero_udp_checksum(to, &tail);
        let err = IcmpError::new(
            ICMP_DEST_UNREACH,
            ICMP_CODE_PORT_UNREACH,
            Packet::udp(sent, &payload),
        );
        let out = check_rewrite(&err, to, false);
        assert_eq!(word(&out, INNER_L4 + 6), 0xffff);
    }
}

#[test]
fn random_errors_with_all_ones_udp_checksum_before_the_rewrite() {
    let mut rng = Rng(11);
    for _ in 0..1000 {
        let sent = udp(rng.addr(), rng.word(), rng.addr(), rng.word());
        let to = udp(sent.src, sent.sport, rng.addr(), rng.word());
        let len = rng.below(40);
        let tail = rng.bytes(len);
        let payload = payload_with_zero_udp_checksum(sent, &tail);
        let err = IcmpError::new(
            ICMP_DEST_UNREACH,
            ICMP_CODE_PORT_UNREACH,
            Packet::udp(sent, &payload),
        );
        assert_eq!(word(&err.bytes(), INNER_L4 + 6), 0xffff);
        check_rewrite(&err, to, false);
    }
}

#[test]
fn random_bytes_never_panic_and_only_translatable_errors_change() {
    // Whatever the 36 bytes hold, the rewrite does not panic, and it changes
    // nothing unless `quoted` recognises the quoted packet.
    let mut rng = Rng(99);
    for _ in 0..20_000 {
        let mut bytes: [u8; ICMP_ERROR_LEN] = rng.bytes(ICMP_ERROR_LEN).try_into().unwrap();
        if rng.chance(2) {
            bytes[INNER_IP] = 0x45;
            bytes[INNER_IP + 9] = [IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP][rng.below(3)];
        }
        let before = bytes;
        let to = Quoted {
            proto: bytes[INNER_IP + 9],
            src: rng.addr(),
            dst: rng.addr(),
            sport: rng.u16(),
            dport: rng.u16(),
        };
        let mut slot = [rng.u8(), rng.u8()];
        rewrite_icmp_error(&mut bytes, Some(&mut slot), &to);
        if quoted(&before).is_none() {
            assert_eq!(bytes, before);
        }
    }
}

#[test]
fn frag_needed_is_a_valid_error_that_quotes_the_packet_for_its_sender() {
    use netd_common::csum::{FRAG_NEEDED_LEN, frag_needed, quoted};
    // A guest's TCP segment, as it sent it: 172.18.0.1:40000 -> 203.0.113.10:80.
    let mut quote = [0u8; 28];
    quote[0] = 0x45;
    quote[2..4].copy_from_slice(&1500u16.to_be_bytes());
    quote[6] = 0x40; // DF
    quote[8] = 63;
    quote[9] = 6;
    quote[12..16].copy_from_slice(&[172, 18, 0, 1]);
    quote[16..20].copy_from_slice(&[203, 0, 113, 10]);
    quote[20..22].copy_from_slice(&40000u16.to_be_bytes());
    quote[22..24].copy_from_slice(&80u16.to_be_bytes());
    let header = frag_needed(&quote, [172, 18, 255, 1], 1200);
    let packet = [&header[..], &quote[..]].concat();
    assert_eq!(packet.len(), FRAG_NEEDED_LEN);
    assert_eq!(
        u16::from_be_bytes([packet[2], packet[3]]) as usize,
        FRAG_NEEDED_LEN
    );
    assert_eq!(checksum(&packet[..20]), 0, "IPv4 header checksum");
    assert_eq!(checksum(&packet[20..]), 0, "ICMP checksum");
    assert_eq!(&packet[12..16], &[172, 18, 255, 1], "from the router");
    assert_eq!(&packet[16..20], &[172, 18, 0, 1], "to the packet's sender");
    assert_eq!(
        (packet[20], packet[21]),
        (3, 4),
        "dest unreachable, frag needed"
    );
    assert_eq!(u16::from_be_bytes([packet[26], packet[27]]), 1200);
    let error: [u8; 36] = packet[20..].try_into().unwrap();
    let q = quoted(&error).expect("the quote parses");
    assert_eq!(
        (q.src, q.dst, q.sport, q.dport),
        ([172, 18, 0, 1], [203, 0, 113, 10], 40000, 80)
    );
}
