//! The dataplane: what happens to packets once the topology exists. One trait,
//! one implementation per backend (`ebpf`, and `nftables`: the fallback),
//! chosen per daemon with `--dataplane`.
//!
//! The topology module builds namespaces and links; the dataplane only
//! programs them, from the `topology::*Plumbing` descriptions. The host
//! side (masquerading out of the host, publishing ports on host addresses)
//! is part of the dataplane too: each backend owns a [`HostSide`] and
//! programs it with the rest, so the service talks to one trait. Both
//! backends hold the nftables host table today (`hostnat`); a backend may
//! bring its own.

pub mod ebpf;
pub mod hostnat;
pub mod nftables;

use std::{collections::BTreeSet, net::Ipv4Addr};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::{
    partition::PartitionRules,
    ports::PortMapping,
    topology::{GatewayPlumbing, GuestPlumbing, HostPlumbing, NetworkPlumbing, OverlayPlumbing},
};

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

/// A backend's drift check and figures for `netd status`, made when the
/// service lock is already released: either made already (map reads, which
/// are quick) or what the kernel is to be asked, captured while the lock
/// was held (`nft list` per namespace, which is not).
pub struct StatusRead(Box<dyn FnOnce() -> StatusFound + Send>);

/// The drift lines, and the figures or why they are unreadable.
pub type StatusFound = (Vec<String>, Result<DataplaneStatus, String>);

impl StatusRead {
    /// A check and figures made already.
    pub fn ready(drift: Vec<String>, figures: Result<DataplaneStatus, String>) -> StatusRead {
        StatusRead(Box::new(move || (drift, figures)))
    }

    /// A check and figures made by `read`, later.
    pub fn later(read: impl FnOnce() -> StatusFound + Send + 'static) -> StatusRead {
        StatusRead(Box::new(read))
    }

    /// What was found. Blocking: run off the async runtime.
    pub fn read(self) -> StatusFound {
        (self.0)()
    }
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

    /// A spanned network's other nodes' guests (their partition slots) and
    /// the check of its partition's cuts where packets arrive from the
    /// overlay. A dataplane that cannot returns why from
    /// [`Dataplane::cannot_partition_across_nodes`] and does nothing here.
    fn attach_overlay(&mut self, _overlay: &OverlayPlumbing) -> Result<()> {
        Ok(())
    }

    /// Only the other nodes' guests of an attached overlay, when they
    /// change (the check on the device stays as it is).
    fn sync_remote_guests(&mut self, _overlay: &OverlayPlumbing) -> Result<()> {
        Ok(())
    }

    /// Undoes [`Dataplane::attach_overlay`] (the device goes with its
    /// namespace).
    fn detach_overlay(&mut self, _overlay: &OverlayPlumbing) {}

    /// Why partitions of a spanned network cannot be enforced here, if they
    /// cannot.
    fn cannot_partition_across_nodes(&self) -> Option<String> {
        Some(
            "the nftables dataplane does not enforce partitions of spanned networks yet (no \
             check where packets arrive from other nodes): run the nodes' daemons with \
             --dataplane ebpf"
                .to_owned(),
        )
    }
    /// Why this backend cannot enforce `rules` (an impairment it lacks), in
    /// one line that names the option and what to do; None if it can.
    /// Asked before anything is applied.
    fn cannot_enforce(&self, rules: &PartitionRules) -> Option<String> {
        let _ = rules;
        None
    }
    /// Makes the host side match `host`: masquerading out of the host and
    /// every published port on the host's addresses. None (no network is
    /// left): the host side is removed.
    fn sync_host(&mut self, host: Option<&HostPlumbing>) -> Result<()>;
    /// Publishes ports, at the gateway and on the host side: all of them, or
    /// none on error.
    fn publish(&mut self, ports: &[PortMapping]) -> Result<()>;
    /// Withdraws ports from the gateway and the host side; ports not
    /// published are ignored.
    fn unpublish(&mut self, ports: &[PortMapping]);
    /// Makes the ports published at the gateway exactly `ports` (at
    /// start-up; the host side gets them from [`Dataplane::sync_host`]).
    fn sync_published(&mut self, ports: &[PortMapping]) -> Result<()>;
    /// Removes everything this backend keeps outside netd's namespaces
    /// (pins, the host side).
    fn forget_all(&mut self);
    /// Drops what it keeps for networks and guests the state no longer
    /// has (left by a crash between a kernel change and its undo): `zones`
    /// are the networks, `guests` each guest's (zone, address). Returns how
    /// many entries went. Called at the end of the start-up reconcile.
    fn forget_stale(&mut self, zones: &BTreeSet<u32>, guests: &BTreeSet<(u32, Ipv4Addr)>) -> usize {
        let _ = (zones, guests);
        0
    }
    /// Drops expired connection-tracking entries.
    fn collect_garbage(&mut self) -> Result<GcReport>;
    /// Live figures, with zone numbers mapped to names by `zone_name`.
    fn status(&self, zone_name: &dyn Fn(u32) -> String) -> Result<DataplaneStatus>;
    /// Where the kernel differs from what this backend put there (a table
    /// deleted by hand, say), host side first, one line each; empty when all
    /// is well. Shown by `netd status` as drift.
    fn check(&self) -> Vec<String> {
        Vec::new()
    }
    /// [`Dataplane::check`] and [`Dataplane::status`] for `netd status`,
    /// called under the service lock: a backend whose check is slow
    /// captures what it needs here and asks the kernel in
    /// [`StatusRead::read`], after the lock is released.
    fn status_read(&self, zone_name: &dyn Fn(u32) -> String) -> StatusRead {
        StatusRead::ready(
            self.check(),
            self.status(zone_name).map_err(|err| format!("{err:#}")),
        )
    }
    /// Puts back what [`Dataplane::check`] finds missing or altered, host
    /// side first. Called by the daemon every few seconds.
    fn repair(&mut self) {}
}

/// The host namespace's part of a backend: masquerading what leaves the
/// host, and published ports on the host's addresses sent on to the gateway.
/// A backend owns one and drives it from its `Dataplane` methods; it is the
/// seam where a backend swaps the shared nftables host table
/// ([`hostnat::NftHostSide`]) for one of its own.
pub trait HostSide: Send + Sync + std::fmt::Debug {
    /// Makes the host side match `host`; None: removes it.
    fn sync(&mut self, host: Option<&HostPlumbing>) -> Result<()>;
    /// Publishes ports on the host's addresses: all of them, or none.
    fn publish(&mut self, ports: &[PortMapping]) -> Result<()>;
    /// Withdraws ports; failures are logged (the next sync or repair puts
    /// the host side right).
    fn unpublish(&mut self, ports: &[PortMapping]);
    /// Drift, one line each; empty when all is well or nothing is wanted.
    fn check(&self) -> Vec<String>;
    /// Puts back what [`HostSide::check`] finds missing or altered.
    fn repair(&mut self);
    /// Removes the host side (cleanup); failures are logged.
    fn remove(&mut self);
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
        fn sync_host(&mut self, _: Option<&HostPlumbing>) -> Result<()> {
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
