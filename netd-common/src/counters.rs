//! Per-reason packet counters. Every verdict a program reaches has one, and
//! the gateway's counters are kept per zone (network), so `netd status` can
//! say which network dropped what and why.

/// Index of a reason within a zone's block of the per-CPU counters map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// An IPv4 packet the program let through.
    Passed = 0,
    /// Dropped: its destination is in the blocked-destination map.
    DroppedBlockedDst = 1,
    /// Not IPv4 (ARP, IPv6, ...): let through untouched.
    NotIpv4 = 2,
    /// Too short to hold the headers it claims: let through untouched, since
    /// the kernel stack drops what it cannot parse and counts it itself.
    Malformed = 3,
    /// Sent on by the program itself, past the gateway's kernel stack.
    Forwarded = 4,
    /// Handed to the gateway's kernel stack: addressed to the gateway, or no
    /// fast path was possible (no route or neighbour known yet).
    ToStack = 5,
    /// Rewritten by an existing connection's entry.
    Translated = 6,
    /// A new connection from a guest to the outside.
    NewSnat = 7,
    /// A new connection to a published port.
    NewDnat = 8,
    /// A new connection from a guest to a published port.
    NewHairpin = 9,
    /// An ICMP error about a translated connection, translated back.
    IcmpErrorTranslated = 10,
    /// Dropped: an IPv4 fragment. The gateway cannot find a fragment's ports,
    /// so fragments never cross it (see the README's NAT notes).
    DroppedFragment = 11,
    /// Dropped: no free source port on the gateway address for a new flow.
    DroppedNoPort = 12,
    /// Dropped: one network addressing another directly (only published
    /// ports connect networks).
    DroppedCrossNetwork = 13,
    /// Dropped: a protocol the gateway cannot translate (not TCP, UDP or ICMP
    /// echo), or an IPv4 header with options.
    DroppedUnsupported = 14,
    /// Dropped: the kernel has no route for it.
    DroppedNoRoute = 15,
    /// Dropped: the connection table refused a new entry.
    DroppedTableFull = 16,
    /// Dropped: an ICMP error that matches no connection.
    DroppedIcmpErrorUnknown = 17,
    /// Dropped: a guest sent with a source address or MAC not its own.
    DroppedSpoofed = 18,
    /// Dropped: the network's partition policy cuts this pair of guests.
    DroppedPartition = 19,
    /// Put straight into a guest's veth by the network's uplink program,
    /// past the network namespace's routing and bridge.
    Delivered = 20,
    /// A guest's packet too big for the host's egress device (DF set),
    /// turned into "fragmentation needed" back to the guest by the eBPF
    /// host side, as a router's stack would answer it.
    FragNeededSent = 21,
    /// Dropped: the guest already holds its share of the source ports
    /// towards this destination (a quarter of the range), so others are not
    /// starved.
    DroppedPortShare = 22,
    /// Dropped: over the rate a fault policy allows this sender.
    DroppedRate = 23,
    /// Sent twice by a fault policy (counted once per copy made).
    Duplicated = 24,
    /// Damaged on purpose by a fault policy (its receiver drops it).
    Corrupted = 25,
    /// Dropped: a guest of an internal network addressing the outside, or
    /// the outside addressing one of its guests.
    DroppedInternal = 26,
    /// Dropped where packets arrive from the overlay: ARP for or from the
    /// network's gateway address, which every node's bridge holds (each
    /// node's guests resolve their own node's bridge).
    DroppedOverlayArp = 27,
}

impl Counter {
    pub const ALL: [Counter; 28] = [
        Counter::Passed,
        Counter::DroppedBlockedDst,
        Counter::NotIpv4,
        Counter::Malformed,
        Counter::Forwarded,
        Counter::ToStack,
        Counter::Translated,
        Counter::NewSnat,
        Counter::NewDnat,
        Counter::NewHairpin,
        Counter::IcmpErrorTranslated,
        Counter::DroppedFragment,
        Counter::DroppedNoPort,
        Counter::DroppedCrossNetwork,
        Counter::DroppedUnsupported,
        Counter::DroppedNoRoute,
        Counter::DroppedTableFull,
        Counter::DroppedIcmpErrorUnknown,
        Counter::DroppedSpoofed,
        Counter::DroppedPartition,
        Counter::Delivered,
        Counter::FragNeededSent,
        Counter::DroppedPortShare,
        Counter::DroppedRate,
        Counter::Duplicated,
        Counter::Corrupted,
        Counter::DroppedInternal,
        Counter::DroppedOverlayArp,
    ];

    /// Name shown to users (`netd status`, the demo).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Passed => "passed",
            Counter::DroppedBlockedDst => "dropped_blocked_dst",
            Counter::NotIpv4 => "not_ipv4",
            Counter::Malformed => "malformed",
            Counter::Forwarded => "forwarded",
            Counter::ToStack => "to_stack",
            Counter::Translated => "translated",
            Counter::NewSnat => "new_snat",
            Counter::NewDnat => "new_dnat",
            Counter::NewHairpin => "new_hairpin",
            Counter::IcmpErrorTranslated => "icmp_error_translated",
            Counter::DroppedFragment => "dropped_fragment",
            Counter::DroppedNoPort => "dropped_no_port",
            Counter::DroppedCrossNetwork => "dropped_cross_network",
            Counter::DroppedUnsupported => "dropped_unsupported",
            Counter::DroppedNoRoute => "dropped_no_route",
            Counter::DroppedTableFull => "dropped_table_full",
            Counter::DroppedIcmpErrorUnknown => "dropped_icmp_error_unknown",
            Counter::DroppedSpoofed => "dropped_spoofed",
            Counter::DroppedPartition => "dropped_partition",
            Counter::Delivered => "delivered",
            Counter::FragNeededSent => "frag_needed_sent",
            Counter::DroppedPortShare => "dropped_port_share",
            Counter::DroppedRate => "dropped_rate",
            Counter::Duplicated => "duplicated",
            Counter::Corrupted => "corrupted",
            Counter::DroppedInternal => "dropped_internal",
            Counter::DroppedOverlayArp => "dropped_overlay_arp",
        }
    }

    /// The slot of this reason for `zone` in the counters map.
    pub const fn slot(self, zone: u32) -> u32 {
        zone * COUNTER_SLOTS + self as u32
    }
}

/// Reasons per zone.
pub const COUNTER_SLOTS: u32 = Counter::ALL.len() as u32;

/// Zones with counters of their own: the host side and every network.
pub const COUNTED_ZONES: u32 = 2049;

/// Entries of the counters map.
pub const COUNTERS_MAX_ENTRIES: u32 = COUNTED_ZONES * COUNTER_SLOTS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_in_index_order() {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, index, "{}", counter.name());
        }
        assert_eq!(Counter::Forwarded.slot(2), 2 * COUNTER_SLOTS + 4);
    }
}
