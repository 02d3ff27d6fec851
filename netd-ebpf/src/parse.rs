//! Header parsing. Reads through `bpf_skb_load_bytes`, which the verifier
//! accepts without bounds proofs and which handles non-linear skbs.

use aya_ebpf::programs::TcContext;

pub const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;

/// The IPv4 fields the programs decide on.
pub struct Ipv4Summary {
    pub dst: [u8; 4],
}

pub enum Parsed {
    Ipv4(Ipv4Summary),
    NotIpv4,
    Malformed,
}

pub fn ipv4(ctx: &TcContext) -> Parsed {
    let Ok(ethertype) = ctx.load::<[u8; 2]>(12) else {
        return Parsed::Malformed;
    };
    if u16::from_be_bytes(ethertype) != ETH_P_IP {
        return Parsed::NotIpv4;
    }
    // Destination address sits at byte 16 of the IPv4 header.
    match ctx.load::<[u8; 4]>(ETH_HDR_LEN + 16) {
        Ok(dst) => Parsed::Ipv4(Ipv4Summary { dst }),
        Err(_) => Parsed::Malformed,
    }
}
