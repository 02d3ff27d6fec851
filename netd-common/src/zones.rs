//! What the gateway programs know about the gateway and its networks.

use crate::nat::PortRange;

/// The gateway namespace's facts, in slot 0 of a one-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GatewayInfo {
    /// The gateway's address on the host link: guests are mapped to it when
    /// the host side is nftables, and for connections to the host itself.
    pub gateway_ip: [u8; 4],
    /// The host's end of the host link.
    pub host_ip: [u8; 4],
    /// Ifindex of the gateway's veth to the host (in the gateway namespace).
    pub host_side_ifindex: u32,
    /// Zero until user space has filled this in; the programs pass every
    /// packet untouched until then.
    pub ready: u32,
    /// Ifindex of the host's end of the host link (`netd0`, in the host
    /// namespace): where the host programs hand packets to the gateway.
    pub host_link_ifindex: u32,
    /// [`gateway_flags`] bits.
    pub flags: u32,
    /// Source ports the host side hands out on host addresses (host byte
    /// order, inclusive): reserved from the host's own sockets.
    pub host_port_min: u16,
    pub host_port_max: u16,
    /// The host's own ephemeral ports (`ip_local_port_range`): outside
    /// netd's range, guests' ports are not kept there.
    pub host_ephemeral_min: u16,
    pub host_ephemeral_max: u16,
}

impl GatewayInfo {
    /// The ports a guest's connection may take on a host address.
    pub const fn host_ports(&self) -> PortRange {
        PortRange::host(
            self.host_port_min,
            self.host_port_max,
            self.host_ephemeral_min,
            self.host_ephemeral_max,
        )
    }
}

pub mod gateway_flags {
    /// The host side is eBPF: guests' connections out are translated once,
    /// to the host's address, by the host programs, and the gateway only
    /// passes them on.
    pub const HOST_EBPF: u32 = 1;
}

/// Packets the host and gateway programs hand each other carry their zone in
/// `skb->mark` (which `bpf_redirect_peer` keeps): these high bits say the
/// mark is netd's, the low 16 bits are the zone. The receiving program
/// clears it before the packet goes anywhere else.
pub const MARK_MAGIC: u32 = 0x6e64_0000;
pub const MARK_MAGIC_MASK: u32 = 0xffff_0000;
pub const MARK_ZONE_MASK: u32 = 0x0000_ffff;

/// The mark carrying `zone` from one netd program to the next.
pub const fn zone_mark(zone: u32) -> u32 {
    MARK_MAGIC | (zone & MARK_ZONE_MASK)
}

/// The zone a mark carries, if it is netd's.
pub const fn zone_of_mark(mark: u32) -> Option<u32> {
    if mark & MARK_MAGIC_MASK == MARK_MAGIC {
        Some(mark & MARK_ZONE_MASK)
    } else {
        None
    }
}

/// One network, keyed by zone (uplink slot + 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetworkInfo {
    /// Ifindex of the gateway's veth to this network (`nu<slot>`).
    pub gateway_port_ifindex: u32,
    /// The network's end of its /30 to the gateway: the next hop.
    pub uplink_ip: [u8; 4],
    /// [`network_flags`] bits.
    pub flags: u32,
    /// Ifindex of the network's uplink (in the network namespace): guests'
    /// packets for the outside are put into its peer, the gateway port.
    pub uplink_ifindex: u32,
    /// The guests' subnet and its mask (as on the wire): what is inside the
    /// network and stays on it.
    pub subnet: [u8; 4],
    pub subnet_mask: [u8; 4],
    /// The uplink's MAC and the gateway port's: the two ends of the /30, so
    /// that neither side needs a neighbour lookup per packet.
    pub uplink_mac: [u8; 6],
    pub gateway_port_mac: [u8; 6],
    /// The bridge's MAC: guests send packets for the outside to it.
    pub bridge_mac: [u8; 6],
    /// The guests' MTU; 0: not set (1500). Packets from outside larger than
    /// it take the network namespace's stack, which fragments them or
    /// answers "fragmentation needed" (DF set) as a router does.
    pub mtu: u16,
}

impl NetworkInfo {
    /// Whether `addr` is in the network's subnet.
    pub const fn contains(&self, addr: [u8; 4]) -> bool {
        let a = u32::from_ne_bytes(addr);
        let net = u32::from_ne_bytes(self.subnet);
        let mask = u32::from_ne_bytes(self.subnet_mask);
        a & mask == net & mask
    }
}

pub mod network_flags {
    /// The host routes to this network's subnet: no translation outbound.
    pub const ROUTABLE: u32 = 1;
    /// An internal network: nothing crosses between its guests and the
    /// outside, either way.
    pub const INTERNAL: u32 = 2;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` plain data with explicit padding, no pointers.
    unsafe impl aya::Pod for super::GatewayInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetworkInfo {}
}

/// A guest as the network's uplink program needs it to deliver straight to
/// the guest's veth, past the bridge. Keyed by [`GuestKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestPort {
    /// Ifindex of the guest's bridge port (in the network namespace).
    pub port_ifindex: u32,
    /// The guest's `eth0` MAC: the frame's new destination.
    pub guest_mac: [u8; 6],
    /// The bridge's MAC: the frame's new source, as if the bridge had routed it.
    pub bridge_mac: [u8; 6],
    /// The guest's slot in the network's partition matrix.
    pub slot: u8,
    pub _pad: [u8; 3],
}

/// A guest as its own bridge port's program checks it: the only source MAC
/// and IP that port accepts. Keyed by the guest's MAC ([`mac_key`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestIdentity {
    pub zone: u32,
    pub ip: [u8; 4],
    /// Ifindex of the guest's bridge port (in the network namespace): the
    /// MAC is accepted on this port only.
    pub port_ifindex: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
}

/// A guest by network zone and address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GuestKey {
    pub zone: u32,
    pub ip: [u8; 4],
}

#[cfg(feature = "user")]
mod guest_pod {
    // SAFETY: `#[repr(C)]` plain data without padding or pointers.
    unsafe impl aya::Pod for super::GuestPort {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GuestKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GuestIdentity {}
}

/// The key of a MAC address in a u64 map: its six bytes, then two zeros.
pub const fn mac_key(mac: [u8; 6]) -> u64 {
    u64::from_ne_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<GatewayInfo>(), 32);
        assert_eq!(core::mem::size_of::<NetworkInfo>(), 44);
    }

    #[test]
    fn marks_carry_zones_and_are_told_from_others() {
        assert_eq!(zone_of_mark(zone_mark(0)), Some(0));
        assert_eq!(zone_of_mark(zone_mark(2048)), Some(2048));
        assert_eq!(zone_of_mark(0), None);
        assert_eq!(zone_of_mark(0x6e65_0001), None);
        assert_eq!(zone_of_mark(7), None);
    }

    #[test]
    fn a_network_contains_its_subnet_only() {
        let net = NetworkInfo {
            subnet: [172, 18, 0, 0],
            subnet_mask: [255, 255, 255, 0],
            ..Default::default()
        };
        assert!(net.contains([172, 18, 0, 1]));
        assert!(net.contains([172, 18, 0, 254]));
        assert!(!net.contains([172, 18, 1, 1]));
        assert!(!net.contains([203, 0, 113, 10]));
    }
}
