//! Connection tracking and NAT entries, and published ports.
//!
//! A connection is two entries in one LRU map, one per direction. Each entry
//! is keyed by the packet as it *arrives* in a zone and says how to rewrite it
//! and where to send it. Zone 0 is the gateway's host side; zone N is the
//! network with uplink slot N-1. The reverse entry of `(Z1, t) -> (t', Z2)` is
//! `(Z2, reverse(t')) -> (reverse(t), Z1)`, so either entry finds the other
//! (garbage collection relies on that).
//!
//! Addresses are stored as on the wire; ports (and ICMP identifiers) as
//! numbers, as `u16::from_be_bytes` reads them off the wire.

/// The gateway's host side.
pub const ZONE_HOST: u32 = 0;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A packet's identity as it arrives in a zone. For ICMP echo, the
/// identifier stands in for a port: a request carries it as `sport` (with
/// `dport` 0), a reply as `dport` (with `sport` 0), so that a reply's key is
/// the reverse of its request's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtKey {
    pub zone: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The key of a packet going the other way.
    pub const fn reversed(&self, zone: u32) -> CtKey {
        CtKey {
            zone,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Which side started the connection and how it was translated. Stored in
/// both entries; `ORIGINAL` marks the entry of the initiator's direction.
pub mod kind {
    /// A guest's connection to the outside: source mapped to the gateway.
    pub const SNAT: u8 = 1;
    /// A connection to a published port: destination mapped to the guest.
    pub const DNAT: u8 = 2;
    /// A guest's connection to a published port: both mapped.
    pub const HAIRPIN: u8 = 3;
    /// Set on the entry of the initiator's direction.
    pub const ORIGINAL: u8 = 0x80;
    pub const MASK: u8 = 0x7f;
}

/// How to rewrite a packet that matched, and where to send it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtEntry {
    pub new_src: [u8; 4],
    pub new_dst: [u8; 4],
    pub new_sport: u16,
    pub new_dport: u16,
    /// Where the rewritten packet goes: [`ZONE_HOST`] or a network.
    pub out_zone: u32,
    /// [`kind`] bits.
    pub kind: u8,
    /// TCP flags seen in this entry's direction, OR-ed together.
    pub tcp_flags: u8,
    pub _pad: [u8; 6],
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet, refreshed
    /// at most every [`LAST_SEEN_GRANULARITY_NS`] to spare cache lines.
    pub last_seen_ns: u64,
}

pub const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

impl CtEntry {
    /// The key the reply direction's packets arrive with.
    pub const fn reply_key(&self, proto: u8) -> CtKey {
        CtKey {
            zone: self.out_zone,
            src: self.new_dst,
            dst: self.new_src,
            sport: self.new_dport,
            dport: self.new_sport,
            proto,
            _pad: [0; 3],
        }
    }
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A published port on the gateway address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ForwardKey {
    pub proto: u8,
    pub _pad: u8,
    pub port: u16,
}

/// Where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ForwardTarget {
    pub zone: u32,
    pub guest_ip: [u8; 4],
    pub guest_port: u16,
    pub _pad: u16,
    /// Only connections to this host address match; zero: any. Only guests'
    /// (hairpin) connections are checked here, since the host's nftables
    /// table filters the rest before they reach the gateway.
    pub host_ip: [u8; 4],
}

/// Source ports the gateway hands out when a guest's own port is taken
/// (host byte order, inclusive).
pub const NAT_PORT_MIN: u16 = 32768;
pub const NAT_PORT_MAX: u16 = 60999;
/// Ports below this are never kept as they are: they would look like a
/// privileged service on the gateway address.
pub const NAT_KEEP_PORT_MIN: u16 = 1024;
/// Random probes for a free port after the guest's own port was taken.
pub const NAT_PORT_PROBES: u32 = 16;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` plain data with explicit padding, no pointers.
    unsafe impl aya::Pod for super::CtKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ForwardKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ForwardTarget {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<CtKey>(), 20);
        assert_eq!(core::mem::size_of::<CtEntry>(), 32);
        assert_eq!(core::mem::size_of::<ForwardKey>(), 4);
        assert_eq!(core::mem::size_of::<ForwardTarget>(), 16);
    }

    #[test]
    fn an_entrys_reply_key_is_the_reverse_of_its_rewrite() {
        let entry = CtEntry {
            new_src: [172, 18, 255, 2],
            new_dst: [203, 0, 113, 10],
            new_sport: 40000,
            new_dport: 80,
            out_zone: ZONE_HOST,
            ..Default::default()
        };
        let reply = entry.reply_key(IPPROTO_TCP);
        assert_eq!(reply.src, [203, 0, 113, 10]);
        assert_eq!(reply.dst, [172, 18, 255, 2]);
        assert_eq!(reply.sport, 80);
        assert_eq!(reply.dport, 40000);
        assert_eq!(reply.zone, ZONE_HOST);
        assert_eq!(reply.reversed(7).reversed(0), reply);
    }
}
