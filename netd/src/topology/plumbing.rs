//! The topology as the dataplane needs to know it: what was built, where
//! (namespace handles, interface names, addresses). The topology hands these
//! out; the dataplane programs what they name.

use std::{net::Ipv4Addr, path::PathBuf};

use ipnetwork::Ipv4Network;

use crate::ports::PortMapping;

/// The host namespace as the dataplane's host side needs to know it: what
/// leaves the host is masqueraded, published ports on host addresses are
/// sent to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlumbing {
    /// The host's veth to the gateway: traffic leaving through it goes to
    /// the gateway, not out of the host.
    pub host_link: String,
    /// The host link's network (its two ends).
    pub host_link_net: Ipv4Network,
    /// The gateway's end of the host link, where published ports go.
    pub gateway_ip: Ipv4Addr,
    /// Subnets of routable networks, which the gateway does not translate.
    pub routable_subnets: Vec<Ipv4Network>,
    /// Every published port.
    pub ports: Vec<PortMapping>,
    /// The `guests_reach_host` setting: false refuses connections from the
    /// host link to the host itself.
    pub guests_reach_host: bool,
}

/// The gateway namespace as the dataplane needs to know it.
#[derive(Debug, Clone)]
pub struct GatewayPlumbing {
    /// The gateway namespace's handle (under /run/netns).
    pub netns: PathBuf,
    /// The gateway's veth towards the host.
    pub host_side: String,
    /// The gateway's address on the host link: the address NAT maps guests to.
    pub gateway_ip: Ipv4Addr,
    /// The host's address on the host link.
    pub host_ip: Ipv4Addr,
    /// Every address of the host, so that a guest reaching a published port
    /// through one of them is turned around at the gateway (hairpin).
    pub host_addrs: Vec<Ipv4Addr>,
    /// The host's end of the host link (in the namespace the daemon runs in).
    pub host_link: String,
    /// How the eBPF dataplane crosses the host (the nftables one always
    /// uses the host's nftables table).
    pub host_datapath: crate::config::HostDatapath,
    /// Source ports the eBPF host side uses on host addresses.
    pub host_nat_ports: crate::config::PortSpan,
}

/// One network as the dataplane needs to know it.
#[derive(Debug, Clone)]
pub struct NetworkPlumbing {
    pub name: String,
    /// The gateway namespace's handle, where `gateway_port` lives.
    pub gateway_netns: PathBuf,
    /// The network's number in the dataplane (uplink slot + 1; 0 is the
    /// host side).
    pub zone: u32,
    /// The network namespace's handle (under /run/netns).
    pub netns: PathBuf,
    /// The gateway's veth towards this network (`nu<slot>`).
    pub gateway_port: String,
    /// The network's end of its /30 to the gateway.
    pub uplink_ip: Ipv4Addr,
    pub subnet: Ipv4Network,
    /// Routable networks are reached from the host by their own addresses,
    /// so the gateway does not translate them.
    pub routable: bool,
    /// Its guests reach nothing outside it, and nothing outside reaches
    /// them: the dataplane drops it (`dropped_internal`).
    pub internal: bool,
    /// The guests' MTU (None: 1500): packets from outside that do not fit
    /// take the network namespace's stack, which answers "fragmentation
    /// needed".
    pub mtu: Option<u32>,
}

/// One guest as the dataplane needs to know it.
/// A spanned network's overlay as the dataplane programs it: the device
/// whose ingress checks what other nodes' guests send, and those guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlumbing {
    pub name: String,
    pub zone: u32,
    /// The network namespace's handle, where `device` and the bridge live.
    pub netns: PathBuf,
    /// The VXLAN device.
    pub device: String,
    /// The network's gateway address (its bridge's, the same on every
    /// node): never resolved over the overlay.
    pub gateway: Ipv4Addr,
    /// The other nodes' guests: address, MAC, slot.
    pub remotes: Vec<(Ipv4Addr, [u8; 6], u8)>,
}

#[derive(Debug, Clone)]
pub struct GuestPlumbing {
    pub network: String,
    pub name: String,
    pub zone: u32,
    pub ip: Ipv4Addr,
    /// The guest's index in its network's partition matrix.
    pub slot: u8,
    /// The network namespace, where the bridge and `port` live.
    pub network_netns: PathBuf,
    /// The guest's bridge port (the network's end of its veth).
    pub port: String,
    /// Its interface in the guest's namespace (`eth0`, or `eth1`... on a
    /// network it is connected to).
    pub ifname: String,
    /// The guest's namespace, where its `eth0` lives.
    pub guest_netns: PathBuf,
}
