//! Header parsing. Reads through `bpf_skb_load_bytes`, which the verifier
//! accepts without bounds proofs and which handles non-linear skbs.

use aya_ebpf::programs::TcContext;
use netd_common::{
    csum::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST},
    nat::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
/// Offsets of IPv4 header fields from the start of the frame.
pub const IP_CSUM_OFF: usize = ETH_HDR_LEN + 10;
pub const IP_SRC_OFF: usize = ETH_HDR_LEN + 12;
pub const IP_DST_OFF: usize = ETH_HDR_LEN + 16;
/// Offsets in the Ethernet header.
pub const ETH_DST_OFF: usize = 0;
pub const ETH_SRC_OFF: usize = 6;
pub const ETH_TYPE_OFF: usize = 12;
/// The ARP sender's MAC and IPv4 address, from the start of the frame.
pub const ARP_SENDER_MAC_OFF: usize = ETH_HDR_LEN + 8;
pub const ARP_SENDER_IP_OFF: usize = ETH_HDR_LEN + 14;
/// The ARP target's IPv4 address, from the start of the frame.
pub const ARP_TARGET_IP_OFF: usize = ETH_HDR_LEN + 24;

/// The IPv4 fields the programs decide on.
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    /// Offset of the transport header from the start of the frame.
    pub l4: usize,
    /// More fragments follow, or this is not the first: no ports to read.
    pub fragment: bool,
}

pub enum Parsed {
    Ipv4(Ipv4),
    NotIpv4,
    Malformed,
}

pub fn ipv4(ctx: &TcContext) -> Parsed {
    let Ok(ethertype) = ctx.load::<[u8; 2]>(ETH_TYPE_OFF) else {
        return Parsed::Malformed;
    };
    if u16::from_be_bytes(ethertype) != ETH_P_IP {
        return Parsed::NotIpv4;
    }
    let Ok(header) = ctx.load::<[u8; 20]>(ETH_HDR_LEN) else {
        return Parsed::Malformed;
    };
    let ihl = (header[0] & 0x0f) as usize * 4;
    if header[0] >> 4 != 4 || ihl < 20 {
        return Parsed::Malformed;
    }
    Parsed::Ipv4(Ipv4 {
        src: [header[12], header[13], header[14], header[15]],
        dst: [header[16], header[17], header[18], header[19]],
        proto: header[9],
        l4: ETH_HDR_LEN + ihl,
        // MF set, or a fragment offset: both mean "not a whole datagram".
        fragment: u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0,
    })
}

/// The transport fields conntrack keys on.
#[derive(Clone, Copy)]
pub struct Transport {
    /// Source port, or an echo request's identifier.
    pub sport: u16,
    /// Destination port, or an echo reply's identifier.
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
}

/// Reads the transport header. None if the packet is too short for it.
/// Protocols without ports come back with zero ports.
pub fn transport(ctx: &TcContext, ip: &Ipv4) -> Option<Transport> {
    let mut t = Transport {
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
    };
    match ip.proto {
        IPPROTO_TCP => {
            let h = ctx.load::<[u8; 14]>(ip.l4).ok()?;
            t.sport = u16::from_be_bytes([h[0], h[1]]);
            t.dport = u16::from_be_bytes([h[2], h[3]]);
            t.tcp_flags = h[13];
        }
        IPPROTO_UDP => {
            let h = ctx.load::<[u8; 4]>(ip.l4).ok()?;
            t.sport = u16::from_be_bytes([h[0], h[1]]);
            t.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        IPPROTO_ICMP => {
            let h = ctx.load::<[u8; 8]>(ip.l4).ok()?;
            t.icmp_type = h[0];
            let id = u16::from_be_bytes([h[4], h[5]]);
            match h[0] {
                ICMP_ECHO_REQUEST => t.sport = id,
                ICMP_ECHO_REPLY => t.dport = id,
                _ => {}
            }
        }
        _ => {}
    }
    Some(t)
}
