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

impl CtEntry {
    /// A new connection from `src:sport` to a published port: its
    /// destination becomes the guest `target` names.
    pub const fn to_published(src: [u8; 4], sport: u16, target: &ForwardTarget) -> CtEntry {
        CtEntry {
            new_src: src,
            new_dst: target.guest_ip,
            new_sport: sport,
            new_dport: target.guest_port,
            out_zone: target.zone,
            kind: kind::DNAT,
            tcp_flags: 0,
            _pad: [0; 6],
            last_seen_ns: 0,
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

/// How long a connection may stay idle (nanoseconds), from the TCP flags
/// each direction has shown (Cilium's defaults). User space's garbage
/// collector and the programs' reclaiming of ports under pressure judge by
/// the same rule.
pub const fn idle_timeout_ns(proto: u8, original_flags: u8, reply_flags: u8) -> u64 {
    const SEC: u64 = 1_000_000_000;
    match proto {
        IPPROTO_TCP => {
            let both = original_flags | reply_flags;
            if both & TCP_RST != 0 || (original_flags & TCP_FIN != 0 && reply_flags & TCP_FIN != 0)
            {
                TCP_CLOSING_SECS * SEC
            } else if reply_flags & (TCP_SYN | TCP_ACK) != 0 && original_flags & TCP_ACK != 0 {
                TCP_ESTABLISHED_SECS * SEC
            } else {
                TCP_OPENING_SECS * SEC
            }
        }
        IPPROTO_UDP => UDP_SECS * SEC,
        _ => ICMP_SECS * SEC,
    }
}

/// Whether a TCP connection has ended (a reset, or a FIN each way): its
/// source port may be handed to a new connection at once, as nf_conntrack
/// reuses a closed connection's tuple.
pub const fn tcp_closed(original_flags: u8, reply_flags: u8) -> bool {
    (original_flags | reply_flags) & TCP_RST != 0
        || (original_flags & TCP_FIN != 0 && reply_flags & TCP_FIN != 0)
}

/// Whether a TCP packet with `packet_flags` opens a new connection on the
/// tuple of an entry whose direction has seen `entry_flags`: a bare SYN
/// where that direction already sent a FIN or a reset. A guest that
/// reconnects from the same port (its own kept port, or its fixed
/// substitute) meets its last connection's entries; the translation is the
/// same, but their state must start over, else the collector takes the new
/// connection for ended and removes its entries under it.
pub const fn tcp_reopens(packet_flags: u8, entry_flags: u8) -> bool {
    packet_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
        && entry_flags & (TCP_FIN | TCP_RST) != 0
}

pub const TCP_ESTABLISHED_SECS: u64 = 6 * 3600;
pub const TCP_OPENING_SECS: u64 = 60;
pub const TCP_CLOSING_SECS: u64 = 10;
pub const UDP_SECS: u64 = 60;
pub const ICMP_SECS: u64 = 30;
/// An entry whose partner is gone (a race between two first packets, or a
/// half-evicted pair) is useless: it goes soon.
pub const ORPHAN_SECS: u64 = 10;

/// Source ports the gateway hands out on its own address when a guest's
/// own port is taken (host byte order, inclusive). The gateway namespace has
/// no sockets of its own, so the whole ephemeral range is netd's.
pub const NAT_PORT_MIN: u16 = 32768;
pub const NAT_PORT_MAX: u16 = 60999;

/// The default source ports the eBPF host side hands out on host addresses,
/// written to `ip_local_reserved_ports` so that no host socket is ever given
/// one and a host socket and a guest's connection never share a 5-tuple.
/// The host keeps 32768-39999 of the kernel's default ephemeral range
/// (32768-60999) for its own connections. Why so many: a peer that closes
/// first holds the tuple in TIME_WAIT for a minute, and a new connection
/// from a tuple in TIME_WAIT costs the peer dearly; measured with one guest
/// opening connections to one server, 61000-65535 (4,536 ports) gave 390-530
/// connections/s where this range gave 1,230-1,840 (the host itself:
/// 890-2,600).
pub const HOST_NAT_PORT_MIN: u16 = 40000;
pub const HOST_NAT_PORT_MAX: u16 = 65535;

/// One guest's translations towards one destination (address, port and
/// protocol): the ports they hold, counted so that no guest takes more than
/// its share of a destination's ports while others may need them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ShareKey {
    pub zone: u32,
    pub guest: [u8; 4],
    pub dst: [u8; 4],
    pub dport: u16,
    pub proto: u8,
    pub _pad: u8,
}

impl ShareKey {
    /// The share a new connection arriving with `key` (from a guest) uses.
    pub const fn of(key: &CtKey) -> ShareKey {
        ShareKey {
            zone: key.zone,
            guest: key.src,
            dst: key.dst,
            dport: key.dport,
            proto: key.proto,
            _pad: 0,
        }
    }
}

/// A guest may hold at most this fraction (1/N) of a range's ports towards
/// one destination: one noisy guest leaves three quarters to the others.
pub const PORT_SHARE_DIVISOR: u32 = 4;

/// Source ports a translation may use: a guest's own port is kept when it
/// is in the range, or outside it where `keep_from` allows (and free); a
/// port that cannot be kept becomes its substitute, else random ones in the
/// range are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
    /// The guest's own port is kept from this port up even outside
    /// `min..=max`; 0: never outside the range.
    pub keep_from: u16,
    /// ... but never in `avoid_min..=avoid_max` (empty when min > max): on
    /// a host address, the host's own ephemeral ports, which its sockets
    /// may be holding at any moment.
    pub avoid_min: u16,
    pub avoid_max: u16,
}

impl PortRange {
    /// The gateway address's range: nothing else binds there, so every
    /// unprivileged port is kept.
    pub const GATEWAY: PortRange = PortRange {
        min: NAT_PORT_MIN,
        max: NAT_PORT_MAX,
        keep_from: NAT_KEEP_PORT_MIN,
        avoid_min: 1,
        avoid_max: 0,
    };

    /// Only `min..=max`.
    pub const fn only(min: u16, max: u16) -> PortRange {
        PortRange {
            min,
            max,
            keep_from: 0,
            avoid_min: 1,
            avoid_max: 0,
        }
    }

    /// A host address's range: netd's reserved `min..=max`, and a guest's
    /// own unprivileged port outside the host's ephemeral range (only
    /// explicit binds use those, and a listening socket never clashes with
    /// an outgoing connection's tuple). Keeping ports is what makes a
    /// peer's TIME_WAIT harmless: see [`PortRange::substitute`].
    pub const fn host(min: u16, max: u16, ephemeral_min: u16, ephemeral_max: u16) -> PortRange {
        PortRange {
            min,
            max,
            keep_from: NAT_KEEP_PORT_MIN,
            avoid_min: ephemeral_min,
            avoid_max: ephemeral_max,
        }
    }

    /// Whether a guest's own port `port` can be kept as it is.
    pub const fn keeps(&self, port: u16) -> bool {
        (port >= self.min && port <= self.max)
            || (self.keep_from != 0
                && port >= self.keep_from
                && !(port >= self.avoid_min && port <= self.avoid_max))
    }

    /// How many ports the range holds.
    pub const fn size(&self) -> u32 {
        (self.max as u32).saturating_sub(self.min as u32) + 1
    }

    /// The most ports one guest may hold towards one destination.
    pub const fn share(&self) -> u32 {
        let share = self.size() / PORT_SHARE_DIVISOR;
        if share == 0 { 1 } else { share }
    }

    /// The port `random` picks in the range.
    pub const fn pick(&self, random: u32) -> u16 {
        let span = (self.max as u32).saturating_sub(self.min as u32) + 1;
        self.min + (random % span) as u16
    }

    /// The port a guest's own port `port` becomes when it cannot be kept:
    /// always the same one for the same guest (`salt`, from its address).
    /// A peer that closed first holds the translated tuple in TIME_WAIT for
    /// a minute and accepts a new SYN on it only if the SYN's timestamp (or
    /// sequence number) is ahead of the last connection's; Linux draws both
    /// per connection tuple, so they are ahead only if the last connection
    /// on that translated tuple came from the same guest tuple. A random
    /// pick meets another tuple's TIME_WAIT, and the SYN is answered with a
    /// challenge ACK, a reset and a retry some milliseconds later.
    /// Substitutes are odd ports, which Linux's connect() never picks (it
    /// takes even ones), so they do not take ports guests keep; consecutive
    /// ports get distinct substitutes.
    pub const fn substitute(&self, port: u16, salt: u32) -> u16 {
        let first_odd = self.min | 1;
        if first_odd > self.max {
            return self.min;
        }
        let odd = ((self.max - first_odd) / 2) as u32 + 1;
        let index = (port as u32).wrapping_add(salt) % odd;
        first_odd + (index * 2) as u16
    }
}

/// A guest's salt for [`PortRange::substitute`]: its address, mixed, so
/// that guests' substitutes start at different places.
pub const fn substitute_salt(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr).wrapping_mul(0x9e37_79b1) >> 8
}

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
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ShareKey {}
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
        assert_eq!(core::mem::size_of::<ShareKey>(), 16);
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

    #[test]
    fn the_host_range_keeps_only_its_own_ports() {
        let host = PortRange::only(HOST_NAT_PORT_MIN, HOST_NAT_PORT_MAX);
        assert!(!host.keeps(39999));
        assert!(!host.keeps(1024));
        assert!(host.keeps(40000));
        assert!(host.keeps(65535));
        assert!(PortRange::GATEWAY.keeps(40000));
        assert!(!PortRange::GATEWAY.keeps(80));
    }

    #[test]
    fn a_host_address_keeps_ports_outside_the_hosts_ephemeral_range() {
        let host = PortRange::host(HOST_NAT_PORT_MIN, HOST_NAT_PORT_MAX, 32768, 60999);
        assert!(host.keeps(1024));
        assert!(host.keeps(32767));
        assert!(!host.keeps(32768), "the host's own sockets may hold it");
        assert!(!host.keeps(39999));
        assert!(host.keeps(40000), "reserved for netd, although ephemeral");
        assert!(host.keeps(60999));
        assert!(!host.keeps(1023), "privileged");
        assert!(!host.keeps(80));
    }

    #[test]
    fn a_bare_syn_on_an_ended_connections_tuple_reopens_it() {
        assert!(tcp_reopens(TCP_SYN, TCP_SYN | TCP_ACK | TCP_FIN));
        assert!(tcp_reopens(TCP_SYN, TCP_RST));
        assert!(!tcp_reopens(TCP_SYN, TCP_SYN), "a retransmitted SYN");
        assert!(!tcp_reopens(TCP_SYN | TCP_ACK, TCP_FIN), "a SYN-ACK");
        assert!(!tcp_reopens(TCP_ACK, TCP_FIN), "the last ACK of a close");
    }

    #[test]
    fn substitutes_are_odd_fixed_and_distinct_for_consecutive_ports() {
        let host = PortRange::host(HOST_NAT_PORT_MIN, HOST_NAT_PORT_MAX, 32768, 60999);
        let salt = substitute_salt([10, 88, 0, 2]);
        let mut seen = [false; 65536];
        for port in 32768..=39999u16 {
            let sub = host.substitute(port, salt);
            assert!(host.keeps(sub) && sub >= host.min, "{port} -> {sub}");
            assert_eq!(sub % 2, 1, "{port} -> {sub}");
            assert_eq!(sub, host.substitute(port, salt), "the same every time");
            assert!(!seen[sub as usize], "{port} -> {sub} twice");
            seen[sub as usize] = true;
        }
        assert_ne!(
            host.substitute(33000, salt),
            host.substitute(33000, substitute_salt([10, 88, 0, 3])),
            "another guest starts elsewhere"
        );
        let one = PortRange::only(7, 7);
        assert_eq!(one.substitute(1, 5), 7);
        let two = PortRange::only(8, 9);
        assert_eq!(two.substitute(u16::MAX, u32::MAX), 9);
    }

    #[test]
    fn a_guests_share_is_a_quarter_of_the_range() {
        let host = PortRange::only(HOST_NAT_PORT_MIN, HOST_NAT_PORT_MAX);
        assert_eq!(host.size(), 25536);
        assert_eq!(host.share(), 6384);
        assert_eq!(PortRange::GATEWAY.share(), 28232 / 4);
        let tiny = PortRange::only(7, 8);
        assert_eq!(tiny.share(), 1, "never zero");
    }

    #[test]
    fn picks_stay_in_the_range() {
        let host = PortRange::only(61000, 65535);
        for random in [0, 1, 4535, 4536, u32::MAX, 123_456_789] {
            let port = host.pick(random);
            assert!((61000..=65535).contains(&port), "{random} -> {port}");
        }
        let one = PortRange::only(7, 7);
        assert_eq!(one.pick(u32::MAX), 7);
    }
}
