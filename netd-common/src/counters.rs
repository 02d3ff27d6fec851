//! Per-reason packet counters. Every verdict a program reaches has one.

/// Index into the per-CPU counters map.
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
}

impl Counter {
    pub const ALL: [Counter; 4] = [
        Counter::Passed,
        Counter::DroppedBlockedDst,
        Counter::NotIpv4,
        Counter::Malformed,
    ];

    /// Name shown to users (`netd status`, the demo).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Passed => "passed",
            Counter::DroppedBlockedDst => "dropped_blocked_dst",
            Counter::NotIpv4 => "not_ipv4",
            Counter::Malformed => "malformed",
        }
    }
}

/// Number of slots in the counters map.
pub const COUNTER_SLOTS: u32 = Counter::ALL.len() as u32;
