//! The dataplane: what happens to packets once the topology exists. One trait,
//! one implementation per backend (`ebpf`, and `nft`: the nftables fallback),
//! chosen per daemon with `--dataplane`.
//!
//! The topology module builds namespaces and links; the dataplane only
//! programs them. The host side (masquerading out of the host, publishing
//! ports on host addresses) is shared by every backend: see `hostnat`.

pub mod ebpf;
pub mod nft;

use std::{collections::BTreeSet, fmt, net::Ipv4Addr, path::PathBuf};

use anyhow::Result;
use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// The transport protocol of a published port.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (IPPROTO_TCP, IPPROTO_UDP).
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port, ranges already expanded: traffic to the gateway (or
/// host) address on `host_port` goes to `guest_ip:guest_port` in network
/// `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    pub proto: Proto,
    /// Only connections to this host address are forwarded; None: any.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub zone: u32,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
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
}

/// One guest as the dataplane needs to know it.
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
    /// The guest's namespace, where its `eth0` lives.
    pub guest_netns: PathBuf,
}

/// A network's partition as a dataplane enforces it, in guest slots
/// (`Guest::slot`). The default (nothing cut) is a full mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRules {
    /// Directed pairs (from slot, to slot) whose packets are cut.
    pub cut: BTreeSet<(u8, u8)>,
    /// Guests cut from everything outside their network, both ways.
    pub outside_cut: BTreeSet<u8>,
    /// The share of affected packets dropped, 1-100 (100: all of them).
    pub loss_percent: u8,
}

impl PartitionRules {
    pub fn is_full_mesh(&self) -> bool {
        self.cut.is_empty() && self.outside_cut.is_empty()
    }

    /// The share of affected packets to drop, 1-100; 0 (unset) means all.
    pub fn effective_loss_percent(&self) -> u8 {
        match self.loss_percent {
            0 | 100.. => 100,
            percent => percent,
        }
    }
}

/// Connection tracking and NAT figures for `netd status`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct NatSummary {
    /// Conntrack entries (one per direction of each connection).
    pub conntrack_entries: u64,
    /// Connections translated outbound (guest to outside).
    pub snat: u64,
    /// Connections through a published port.
    pub dnat: u64,
    /// Connections from a guest to a port published by a network.
    pub hairpin: u64,
}

/// Per-network packet counters, by reason, for `netd status`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct ZoneCounters {
    /// The network's name, or "host" for the gateway's host side.
    pub zone: String,
    pub counters: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct DataplaneStatus {
    /// How guests' traffic crosses the host: "ebpf" (the host programs) or
    /// "nftables" (the host's table masquerades it).
    #[serde(default)]
    pub host_datapath: String,
    pub nat: NatSummary,
    pub counters: Vec<ZoneCounters>,
}

/// What one garbage-collection pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub scanned: u64,
    pub removed: u64,
}

/// A dataplane backend. Methods are synchronous: they program the kernel
/// through map updates and netlink/nft calls that do not wait on the network.
pub trait Dataplane: Send + Sync {
    /// Programs the gateway namespace (after the topology built it).
    fn attach_gateway(&mut self, gateway: &GatewayPlumbing) -> Result<()>;
    /// Forgets the gateway (the topology removes its namespace).
    fn detach_gateway(&mut self);
    /// Programs one network's links and registers it. Idempotent.
    fn attach_network(&mut self, network: &NetworkPlumbing) -> Result<()>;
    /// Forgets a network, its connections and its counters.
    fn detach_network(&mut self, network: &NetworkPlumbing);
    /// Programs one guest's port. Idempotent.
    fn attach_guest(&mut self, guest: &GuestPlumbing) -> Result<()>;
    /// Forgets a guest.
    fn detach_guest(&mut self, guest: &GuestPlumbing);
    /// Puts a network's partition in force, replacing the previous one in
    /// one step: no packet sees half of each. Empty rules heal.
    fn apply_partition(&mut self, zone: u32, rules: &PartitionRules) -> Result<()>;
    /// Publishes ports: all of them, or none on error.
    fn publish(&mut self, ports: &[PortMapping]) -> Result<()>;
    /// Withdraws ports; ports not published are ignored.
    fn unpublish(&mut self, ports: &[PortMapping]);
    /// Makes the published ports exactly `ports` (at start-up).
    fn sync_published(&mut self, ports: &[PortMapping]) -> Result<()>;
    /// Removes everything this backend keeps outside the namespaces (pins).
    fn forget_all(&mut self);
    /// Drops expired connection-tracking entries.
    fn collect_garbage(&mut self) -> Result<GcReport>;
    /// Live figures, with zone numbers mapped to names by `zone_name`.
    fn status(&self, zone_name: &dyn Fn(u32) -> String) -> Result<DataplaneStatus>;
    /// Where the kernel differs from what this backend put there (a table
    /// deleted by hand, say), one line each; empty when all is well. Shown
    /// by `netd status` as drift.
    fn check(&self) -> Vec<String> {
        Vec::new()
    }
    /// Puts back what [`Dataplane::check`] finds missing or altered. Called
    /// by the daemon every few seconds.
    fn repair(&mut self) {}
}

/// A stand-in for unit tests of the service's own logic (validation,
/// persistence, rollback), which run without root. It records what it was
/// asked to publish; the real backends are exercised by the root tests in
/// `tests/`.
#[cfg(test)]
pub mod testing {
    use std::{
        collections::{BTreeMap, BTreeSet},
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, Ordering},
        },
    };

    use super::*;

    #[derive(Default)]
    pub struct Recorder {
        pub published: BTreeSet<PortMapping>,
        /// The last partition rules applied, per zone. Shared, so that a test
        /// keeps a view of it after handing the recorder to a service.
        pub partitions: Arc<Mutex<BTreeMap<u32, PartitionRules>>>,
        /// While set, `apply_partition` fails (shared, as above).
        pub refuse_partitions: Arc<AtomicBool>,
    }

    impl Dataplane for Recorder {
        fn attach_gateway(&mut self, _: &GatewayPlumbing) -> Result<()> {
            Ok(())
        }
        fn detach_gateway(&mut self) {}
        fn attach_network(&mut self, _: &NetworkPlumbing) -> Result<()> {
            Ok(())
        }
        fn detach_network(&mut self, _: &NetworkPlumbing) {}
        fn attach_guest(&mut self, _: &GuestPlumbing) -> Result<()> {
            Ok(())
        }
        fn detach_guest(&mut self, _: &GuestPlumbing) {}
        fn apply_partition(&mut self, zone: u32, rules: &PartitionRules) -> Result<()> {
            if self.refuse_partitions.load(Ordering::SeqCst) {
                anyhow::bail!("the test dataplane refuses partitions");
            }
            self.partitions.lock().unwrap().insert(zone, rules.clone());
            Ok(())
        }
        fn publish(&mut self, ports: &[PortMapping]) -> Result<()> {
            self.published.extend(ports.iter().copied());
            Ok(())
        }
        fn unpublish(&mut self, ports: &[PortMapping]) {
            for port in ports {
                self.published.remove(port);
            }
        }
        fn sync_published(&mut self, ports: &[PortMapping]) -> Result<()> {
            self.published = ports.iter().copied().collect();
            Ok(())
        }
        fn forget_all(&mut self) {}
        fn collect_garbage(&mut self) -> Result<GcReport> {
            Ok(GcReport::default())
        }
        fn status(&self, _: &dyn Fn(u32) -> String) -> Result<DataplaneStatus> {
            Ok(DataplaneStatus::default())
        }
    }
}
