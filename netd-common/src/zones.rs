//! What the gateway programs know about the gateway and its networks.

/// The gateway namespace's facts, in slot 0 of a one-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GatewayInfo {
    /// The gateway's address on the host link: guests are mapped to it.
    pub gateway_ip: [u8; 4],
    /// The host's end of the host link.
    pub host_ip: [u8; 4],
    /// Ifindex of the gateway's veth to the host (in the gateway namespace).
    pub host_side_ifindex: u32,
    /// Zero until user space has filled this in; the programs pass every
    /// packet untouched until then.
    pub ready: u32,
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
}

pub mod network_flags {
    /// The host routes to this network's subnet: no translation outbound.
    pub const ROUTABLE: u32 = 1;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` plain data without padding or pointers.
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
