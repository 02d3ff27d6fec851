//! The host side's next hops: where the host's FIB last sent a
//! destination, remembered so that an established connection's packets
//! skip the lookup (a third of the host link program's time), and the rule
//! for when a remembered hop still holds.

/// Where the host's FIB last sent a destination: the device and both MACs
/// the lookup found, and what says whether that still holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NextHop {
    pub ifindex: u32,
    /// The routing epoch the lookup began in.
    pub epoch: u32,
    /// When it was looked up (the programs' coarse clock).
    pub since_ns: u64,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// The device's MTU (0: unknown).
    pub mtu: u32,
}

/// How long a next hop is trusted without a lookup even while the epoch
/// stands still: the bound for a host whose daemon is not running (killed,
/// restarting), when nobody bumps the epoch.
pub const NEXT_HOP_MAX_AGE_NS: u64 = 1_000_000_000;

/// Ethernet's header and a VLAN tag: what a device carries beyond its MTU
/// (the kernel's own forwarding check, `is_skb_forwardable`).
const LINK_OVERHEAD: u32 = 14 + 4;

impl NextHop {
    /// Whether a packet of `len` bytes (GSO: cut by the device later) may
    /// go by this hop without a FIB lookup: the epoch is the current one
    /// (no route, neighbour, link or address changed since), the entry is
    /// young, and the packet fits the device as the lookup's own check
    /// would let it (else the lookup runs and answers "fragmentation
    /// needed").
    #[inline(always)]
    pub fn usable(&self, epoch: u32, now_ns: u64, len: u32, gso: bool) -> bool {
        epoch != 0
            && self.epoch == epoch
            && now_ns >= self.since_ns
            && now_ns - self.since_ns < NEXT_HOP_MAX_AGE_NS
            && (gso || len <= self.mtu.saturating_add(LINK_OVERHEAD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop() -> NextHop {
        NextHop {
            ifindex: 3,
            epoch: 7,
            since_ns: 10_000,
            mtu: 1500,
            ..NextHop::default()
        }
    }

    #[test]
    fn a_next_hop_serves_in_its_epoch_while_young() {
        assert!(hop().usable(7, 10_000 + NEXT_HOP_MAX_AGE_NS - 1, 1514, false));
        assert!(
            !hop().usable(8, 10_001, 1514, false),
            "the host's routing changed"
        );
        assert!(
            !hop().usable(0, 10_001, 1514, false),
            "nobody watches the host"
        );
        assert!(
            !hop().usable(7, 10_000 + NEXT_HOP_MAX_AGE_NS, 1514, false),
            "too old"
        );
        assert!(!hop().usable(7, 9_999, 1514, false), "from the future");
    }

    #[test]
    fn a_packet_too_big_for_the_device_goes_to_the_lookup_unless_it_is_gso() {
        assert!(hop().usable(7, 10_001, 1500 + 18, false));
        assert!(!hop().usable(7, 10_001, 1500 + 19, false));
        assert!(hop().usable(7, 10_001, 65_000, true));
        let unknown_mtu = NextHop { mtu: 0, ..hop() };
        assert!(!unknown_mtu.usable(7, 10_001, 60, false));
    }
}
