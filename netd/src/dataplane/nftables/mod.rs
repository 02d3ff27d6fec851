//! The nftables dataplane: the eBPF dataplane's behaviour from the kernel's
//! own conntrack, NAT and bridge filtering, configured with nft.
//!
//! - Gateway namespace: `table inet netd` (see [`script::gateway_layout`]):
//!   per-network conntrack zones on the original direction, SNAT to the
//!   gateway address, published ports (DNAT) from the host side and from
//!   guests (hairpin, SNAT to the gateway address too), no traffic from one
//!   network to another except through a published port; plus policy
//!   routing ([`routing`]), since guest subnets overlap. ICMP errors follow
//!   their connection through conntrack (RFC 5508 comes with it).
//! - Each network namespace: `table bridge netd`
//!   (see [`script::network_layout`]): guest ports accept only the guest's
//!   own MAC and address, and the partition.
//!
//! The desired content of every table is kept here, rendered from what the
//! attach, publish and partition calls said. Changes go to the kernel as
//! element diffs against what this process last applied; a whole table is
//! synced (in one transaction) when it is new, when its namespace was
//! rebuilt, when a diff fails, and when [`Dataplane::repair`] finds it
//! missing or altered. Tables die with their namespaces: nothing is kept
//! outside them. Scripts run, render and are checked through `crate::nft`;
//! `script` lays out this backend's two tables.

pub mod conntrack;
pub mod delay;
pub mod delay_lines;
pub mod routing;
pub mod script;
pub mod shapers;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use tracing::{info, warn};

use self::script::{
    GATEWAY_TABLE, GatewaySpec, GuestSpec, NETWORK_TABLE, NetworkPort, NetworkSpec,
};
use super::{
    Dataplane, DataplaneStatus, GcReport, HostSide, NatSummary, ZoneCounters, hostnat::NftHostSide,
};
use crate::{
    netns::Netns,
    nft::{
        Nft,
        render::{Content, Layout, diff_script},
    },
    partition::PartitionRules,
    ports::{PortMapping, Proto},
    topology::{GatewayPlumbing, GuestPlumbing, HostPlumbing, NetworkPlumbing},
};

/// What this process last put into a table, and in which namespace (its
/// inode: a rebuilt namespace has a new one and an empty table).
#[derive(Debug, Clone)]
struct Applied {
    inode: u64,
    content: Content,
}

#[derive(Debug)]
struct Gateway {
    netns: PathBuf,
    host_side: String,
    gateway_ip: Ipv4Addr,
    host_addrs: BTreeSet<Ipv4Addr>,
    nat_ports: crate::config::PortSpan,
    applied: Option<Applied>,
    /// A previous daemon's table is in place and the start-up reconcile is
    /// still telling this one what it should hold: the table is left as it
    /// is (traffic keeps flowing) until `sync_published` ends the
    /// reconcile, then synced whole, in one transaction.
    adopting: bool,
}

#[derive(Debug)]
struct Network {
    /// As for the gateway: a previous daemon's table, left alone until the
    /// start-up reconcile has told this process about every guest (a sync
    /// before would drop the guests not attached yet from the guest port
    /// checks for a moment).
    adopting: bool,
    plumbing: NetworkPlumbing,
    /// Guests by name: (bridge port, what the table knows).
    guests: BTreeMap<String, (String, GuestSpec)>,
    /// None until `apply_partition`: a sync leaves the table's partition
    /// sets as they are (a restarted daemon keeps the partition in force).
    partition: Option<PartitionRules>,
    applied: Option<Applied>,
    /// The lines of the partition's delaying clauses (`delay`).
    delay_lines: delay_lines::DelayLines,
}

impl Network {
    fn spec(&self) -> NetworkSpec {
        NetworkSpec {
            guests: self
                .guests
                .values()
                .map(|(port, guest)| (port.clone(), *guest))
                .collect(),
            partition: self.partition.clone(),
            internal_subnet: self.plumbing.internal.then_some(self.plumbing.subnet),
        }
    }

    fn nft(&self) -> Result<Nft> {
        Nft::open(&self.plumbing.name, &self.plumbing.netns)
    }

    /// The rate shapers the partition in force needs, by class.
    fn shapers(&self) -> BTreeMap<usize, shapers::Tbf> {
        self.partition
            .as_ref()
            .map(|rules| shapers::shaped_classes(rules, self.plumbing.mtu.unwrap_or(1500)))
            .unwrap_or_default()
    }

    /// The partition in force as set elements (none before one is known),
    /// for the gateway's copy of it.
    fn partition_elements(&self) -> BTreeMap<&'static str, BTreeSet<String>> {
        let spec = self.spec();
        spec.partition
            .as_ref()
            .map(|rules| script::partition_elements(&spec.guests, rules))
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct NftDataplane {
    /// Until the start-up reconcile ends (`sync_published`): tables found in
    /// the kernel are adopted, not synced.
    starting: bool,
    gateway: Option<Gateway>,
    /// Networks by zone.
    networks: BTreeMap<u32, Network>,
    /// Published ports by protocol and host port.
    forwards: BTreeMap<(Proto, u16), PortMapping>,
    /// The host namespace's part: the nftables host table.
    host: Box<dyn HostSide>,
}

impl Default for NftDataplane {
    fn default() -> NftDataplane {
        NftDataplane::new()
    }
}

impl NftDataplane {
    pub fn new() -> NftDataplane {
        NftDataplane {
            starting: true,
            gateway: None,
            networks: BTreeMap::new(),
            forwards: BTreeMap::new(),
            host: Box::new(NftHostSide::new()),
        }
    }

    fn gateway_spec(&self) -> Option<GatewaySpec> {
        let gw = self.gateway.as_ref()?;
        Some(GatewaySpec {
            host_side: gw.host_side.clone(),
            gateway_ip: gw.gateway_ip,
            host_addrs: gw.host_addrs.clone(),
            networks: self
                .networks
                .iter()
                .map(|(zone, net)| {
                    let port = NetworkPort {
                        port: net.plumbing.gateway_port.clone(),
                        routable: net.plumbing.routable,
                        partition: net.partition_elements(),
                    };
                    (*zone, port)
                })
                .collect(),
            forwards: self.forwards.values().copied().collect(),
            nat_ports: gw.nat_ports,
        })
    }

    /// Brings the gateway table to the desired content: by elements when
    /// this process knows what is there, whole otherwise.
    fn sync_gateway(&mut self) -> Result<()> {
        let Some(spec) = self.gateway_spec() else {
            return Ok(());
        };
        let gw = self.gateway.as_mut().expect("a spec means a gateway");
        if gw.adopting {
            return Ok(());
        }
        script::validate_gateway(&spec).context("checking the gateway's nftables table")?;
        let nft = Nft::open("gateway", &gw.netns)?;
        let inode = nft.netns().expect("opened in a namespace").inode()?;
        let content = script::gateway_content(&spec);
        if let Some(applied) = gw.applied.as_ref().filter(|a| a.inode == inode) {
            let diff = diff_script(GATEWAY_TABLE, &applied.content, &content);
            match nft.apply(&diff) {
                Ok(()) => {
                    gw.applied = Some(Applied { inode, content });
                    return Ok(());
                }
                Err(err) => warn!("changing {GATEWAY_TABLE} failed ({err:#}): syncing all of it"),
            }
        }
        gw.applied = None;
        nft.apply(&script::gateway_sync_script(&spec)?)
            .with_context(|| format!("syncing nftables table {GATEWAY_TABLE} in the gateway"))?;
        gw.applied = Some(Applied { inode, content });
        Ok(())
    }

    /// Brings a network's table to the desired content.
    /// Syncs a network's table, then its delays.
    fn sync_network(&mut self, zone: u32) -> Result<()> {
        self.sync_network_table(zone)?;
        self.sync_delays(zone)
    }

    /// Puts the known partition's delays in force (guests and their ports
    /// may have changed); a partition not known yet is left as it is.
    fn sync_delays(&mut self, zone: u32) -> Result<()> {
        let net = self
            .networks
            .get_mut(&zone)
            .ok_or_else(|| anyhow!("no network with zone {zone} is attached"))?;
        let Some(rules) = net.partition.clone() else {
            return Ok(());
        };
        if net.adopting {
            return Ok(());
        }
        let nft = net.nft()?;
        let guests = net.spec().guests;
        net.delay_lines.sync(&net.plumbing, &nft, &guests, &rules)
    }

    fn sync_network_table(&mut self, zone: u32) -> Result<()> {
        let net = self
            .networks
            .get_mut(&zone)
            .ok_or_else(|| anyhow!("no network with zone {zone} is attached"))?;
        if net.adopting {
            return Ok(());
        }
        let spec = net.spec();
        script::validate_network(&spec)
            .with_context(|| format!("checking network {}'s nftables table", net.plumbing.name))?;
        let nft = net.nft()?;
        let inode = nft.netns().expect("opened in a namespace").inode()?;
        let content = script::network_content(&spec);
        if let Some(applied) = net.applied.as_ref().filter(|a| a.inode == inode) {
            let diff = diff_script(NETWORK_TABLE, &applied.content, &content);
            match nft.apply(&diff) {
                Ok(()) => {
                    net.applied = Some(Applied { inode, content });
                    return Ok(());
                }
                Err(err) => warn!(
                    network = %net.plumbing.name,
                    "changing {NETWORK_TABLE} failed ({err:#}): syncing all of it"
                ),
            }
        }
        net.applied = None;
        let synced = nft
            .apply(&script::network_sync_script(&spec)?)
            .or_else(|err| {
                // A table of another layout (an older netd's): replace it.
                warn!(
                    network = %net.plumbing.name,
                    "syncing {NETWORK_TABLE} in place failed ({err:#}): replacing it"
                );
                nft.apply(&script::network_replace_script(&spec)?)
            });
        synced.with_context(|| {
            format!(
                "syncing nftables table {NETWORK_TABLE} of network {}",
                net.plumbing.name
            )
        })?;
        net.applied = Some(Applied { inode, content });
        Ok(())
    }

    /// What the gateway's drift check reads: its table's shape and the
    /// policy routing rules.
    fn gateway_check(&self) -> Option<GatewayCheck> {
        let (gw, spec) = (self.gateway.as_ref()?, self.gateway_spec()?);
        Some(GatewayCheck {
            table: TableCheck {
                place: "gateway".to_owned(),
                netns: gw.netns.clone(),
                layout: script::gateway_layout(&spec),
                counters: script::gateway_content(&spec).counters,
                delay_table: false,
                shapers: BTreeMap::new(),
            },
            zones: self
                .networks
                .iter()
                .map(|(zone, net)| (*zone, net.plumbing.name.clone()))
                .collect(),
        })
    }

    /// Drift of the gateway: its table's shape and the policy routing rules.
    fn gateway_problems(&self) -> Vec<String> {
        self.gateway_check()
            .map(|check| check.problems())
            .unwrap_or_default()
    }

    fn network_check(net: &Network) -> TableCheck {
        let spec = net.spec();
        let needed = net.partition.as_ref().is_some_and(delay::needed);
        TableCheck {
            place: format!("network {}", net.plumbing.name),
            netns: net.plumbing.netns.clone(),
            layout: script::network_layout_for(&spec),
            counters: script::network_content(&spec).counters,
            delay_table: needed && !net.adopting,
            shapers: if net.adopting {
                BTreeMap::new()
            } else {
                net.shapers()
            },
        }
    }

    fn network_problems(&self, net: &Network) -> Vec<String> {
        Self::network_check(net).problems()
    }

    /// Where `status` reads the tables' counters, with the networks' names.
    fn counters_read(&self, zone_name: &dyn Fn(u32) -> String) -> CountersRead {
        CountersRead {
            gateway: self.gateway.as_ref().map(|gw| gw.netns.clone()),
            networks: self
                .networks
                .iter()
                .map(|(zone, net)| (*zone, net.plumbing.name.clone(), net.plumbing.netns.clone()))
                .collect(),
            delay_lines: self
                .networks
                .iter()
                .map(|(zone, net)| (*zone, net.delay_lines.counters()))
                .collect(),
            shaped: self
                .networks
                .iter()
                .filter(|(_, net)| !net.shapers().is_empty())
                .map(|(zone, net)| (*zone, net.plumbing.name.clone(), net.plumbing.netns.clone()))
                .collect(),
            names: std::iter::once(0)
                .chain(self.networks.keys().copied())
                .map(|zone| (zone, zone_name(zone)))
                .collect(),
        }
    }
}

/// One table's drift check, captured from the dataplane so that it can run
/// without it (after the service lock is released).
#[derive(Debug, Clone)]
struct TableCheck {
    place: String,
    netns: PathBuf,
    layout: Layout,
    counters: BTreeSet<String>,
    /// The delay table is expected too: the policy delays or has a rate.
    /// Its rules are replaced whole with each change, so only its presence
    /// is checked.
    delay_table: bool,
    /// The rate shapers expected, each with its tbf.
    shapers: BTreeMap<usize, shapers::Tbf>,
}

impl TableCheck {
    fn problems(&self) -> Vec<String> {
        if !self.netns.exists() {
            // The topology reports a missing namespace.
            return Vec::new();
        }
        let mut problems = table_problems(&self.place, &self.netns, &self.layout, &self.counters);
        if self.delay_table {
            let place = &self.place;
            let listing =
                Nft::open(place, &self.netns).and_then(|nft| nft.table(delay::DELAY_TABLE));
            match listing {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(format!(
                    "{place}: nftables table {} is missing (the daemon restores it)",
                    delay::DELAY_TABLE
                )),
                Err(err) => problems.push(format!(
                    "{place}: {COULD_NOT_CHECK} nftables table {}: {err:#}",
                    delay::DELAY_TABLE
                )),
            }
        }
        if !self.shapers.is_empty() {
            let place = &self.place;
            match Netns::open_path(place, &self.netns).and_then(|netns| shapers::read(&netns)) {
                Ok(found) => problems.extend(shapers::problems(place, &self.shapers, &found)),
                Err(err) => problems.push(format!(
                    "{place}: {COULD_NOT_CHECK} the rate shapers: {err:#}"
                )),
            }
        }
        problems
    }
}

/// The gateway's: its table, and each network's routing rule there.
#[derive(Debug, Clone)]
struct GatewayCheck {
    table: TableCheck,
    /// Networks by zone.
    zones: Vec<(u32, String)>,
}

impl GatewayCheck {
    fn problems(&self) -> Vec<String> {
        if !self.table.netns.exists() {
            return Vec::new();
        }
        let mut problems = self.table.problems();
        match routing::zones_routed(&self.table.netns) {
            Ok(routed) => {
                for (zone, name) in &self.zones {
                    if !routed.contains(zone) {
                        problems.push(format!(
                            "gateway: routing rule fwmark {zone} lookup {} of network {name} is missing",
                            script::route_table(*zone),
                        ));
                    }
                }
            }
            Err(err) => problems.push(format!("gateway: {COULD_NOT_CHECK} routing rules: {err:#}")),
        }
        problems
    }
}

/// Where `status` reads counters and conntrack figures: the gateway's
/// namespace and each network's, and the names zones are shown by.
#[derive(Debug, Clone)]
struct CountersRead {
    gateway: Option<PathBuf>,
    /// (zone, name, namespace).
    networks: Vec<(u32, String, PathBuf)>,
    /// The delay lines' own counters (held by the daemon, not the kernel).
    delay_lines: Vec<(u32, Vec<(String, u64)>)>,
    /// The networks with rate shapers, whose drops are `dropped_rate`.
    shaped: Vec<(u32, String, PathBuf)>,
    names: BTreeMap<u32, String>,
}

impl CountersRead {
    /// The figures, from one `nft list` per table and the gateway's
    /// conntrack table.
    fn read(&self) -> DataplaneStatus {
        let mut counters: BTreeMap<u32, Vec<(String, u64)>> =
            std::iter::once((0, Vec::new())).collect();
        for (zone, _, _) in &self.networks {
            counters.insert(*zone, Vec::new());
        }
        if let Some(netns) = &self.gateway {
            for (name, packets) in table_counters("gateway", netns, GATEWAY_TABLE) {
                let (zone, name) = match gateway_counter_zone(&name) {
                    Some(Ok(zoned)) => zoned,
                    Some(Err(())) => continue,
                    None => (0, name),
                };
                counters.entry(zone).or_default().push((name, packets));
            }
        }
        for (zone, name, netns) in &self.networks {
            let found = table_counters(name, netns, NETWORK_TABLE);
            counters.entry(*zone).or_default().extend(found);
        }
        for (zone, found) in &self.delay_lines {
            counters
                .entry(*zone)
                .or_default()
                .extend(found.iter().cloned());
        }
        for (zone, name, netns) in &self.shaped {
            if let Ok(found) = Netns::open_path(name, netns).and_then(|netns| shapers::read(&netns))
            {
                let dropped = ("dropped_rate".to_owned(), shapers::drops(&found));
                counters.entry(*zone).or_default().push(dropped);
            }
        }
        // A partition's drops in the network's table and at the gateway
        // (through published ports) are one counter.
        for zoned in counters.values_mut() {
            let mut merged: BTreeMap<String, u64> = BTreeMap::new();
            for (name, packets) in zoned.drain(..) {
                *merged.entry(name).or_default() += packets;
            }
            zoned.extend(merged);
        }
        DataplaneStatus {
            host_datapath: crate::config::HostDatapath::Nftables.to_string(),
            nat: nat_summary(self.gateway.as_deref()),
            counters: counters
                .into_iter()
                .map(|(zone, mut counters)| {
                    counters.retain(|(_, packets)| *packets > 0);
                    counters.sort();
                    ZoneCounters {
                        zone: self
                            .names
                            .get(&zone)
                            .cloned()
                            .unwrap_or_else(|| format!("zone {zone} (removed)")),
                        counters,
                    }
                })
                .collect(),
        }
    }
}

/// The gateway's conntrack table, counted.
fn nat_summary(gateway: Option<&Path>) -> NatSummary {
    let Some(netns) = gateway else {
        return NatSummary::default();
    };
    let table = Netns::open_path("gateway", netns).and_then(|netns| {
        // /proc/net follows the process's namespace, thread-self the
        // thread's (the one run_in moved).
        netns.run_in(|| std::fs::read_to_string("/proc/thread-self/net/nf_conntrack"))
    });
    match table {
        Ok(Ok(text)) => conntrack::summarize(&text),
        // No conntrack yet, or no procfs support: nothing to count.
        _ => NatSummary::default(),
    }
}

/// The problems of one table, each line naming where it is.
fn table_problems(
    place: &str,
    netns: &Path,
    layout: &Layout,
    counters: &BTreeSet<String>,
) -> Vec<String> {
    let listing = Nft::open(place, netns).and_then(|nft| nft.table(layout.table));
    match listing {
        Ok(None) => vec![format!(
            "{place}: nftables table {} is missing (the daemon restores it)",
            layout.table
        )],
        Ok(Some(listing)) => crate::nft::check::problems(&listing, layout, counters)
            .into_iter()
            .map(|problem| {
                format!(
                    "{place}: nftables table {}: {problem} (the daemon restores it)",
                    layout.table
                )
            })
            .collect(),
        // Could not check (nft could not run: EMFILE, ENOMEM...): not a
        // sign that the table is gone, so nothing to restore.
        Err(err) => vec![format!(
            "{place}: {COULD_NOT_CHECK} nftables table {}: {err:#}",
            layout.table
        )],
    }
}

/// How a problem that is no drift begins: the check itself failed.
const COULD_NOT_CHECK: &str = "could not check";

/// Whether `problems` show drift to repair, rather than a check that failed.
fn drifted(problems: &[String]) -> bool {
    problems.iter().any(|p| !p.contains(COULD_NOT_CHECK))
}

/// Named counters of a table (packets), or none if it cannot be read.
fn table_counters(name: &str, netns: &Path, table: &str) -> Vec<(String, u64)> {
    Nft::open(name, netns)
        .and_then(|nft| nft.table(table))
        .ok()
        .flatten()
        .map(|listing| crate::nft::counters(&listing))
        .unwrap_or_default()
}

/// A per-zone gateway counter's zone and the name `status` gives it; None
/// for the gateway's own counters, Err for a zone that does not parse.
fn gateway_counter_zone(name: &str) -> Option<Result<(u32, String), ()>> {
    [
        (script::CROSS_NETWORK_PREFIX, "dropped_cross_network"),
        (script::HAIRPIN_PARTITION_PREFIX, "dropped_partition"),
        (script::PORT_SHARE_PREFIX, "dropped_port_share"),
    ]
    .into_iter()
    .find_map(|(prefix, shown)| {
        let zone = name.strip_prefix(prefix)?;
        Some(
            zone.parse()
                .map(|zone| (zone, shown.to_owned()))
                .map_err(drop),
        )
    })
}

fn key(port: &PortMapping) -> (Proto, u16) {
    (port.proto, port.host_port)
}

impl NftDataplane {
    /// Withdraws ports from the gateway table; failures are logged.
    fn unpublish_at_gateway(&mut self, ports: &[PortMapping]) {
        for port in ports {
            self.forwards.remove(&key(port));
        }
        if let Err(err) = self.sync_gateway() {
            warn!("withdrawing {} port(s): {err:#}", ports.len());
        }
    }
}

impl Dataplane for NftDataplane {
    fn attach_gateway(&mut self, plumbing: &GatewayPlumbing) -> Result<()> {
        script::validate_ifname(&plumbing.host_side)?;
        let host_addrs = plumbing.host_addrs.iter().copied().collect();
        match &mut self.gateway {
            Some(gw) if gw.netns == plumbing.netns => {
                gw.host_side = plumbing.host_side.clone();
                gw.gateway_ip = plumbing.gateway_ip;
                gw.host_addrs = host_addrs;
                gw.nat_ports = plumbing.host_nat_ports;
            }
            _ => {
                let nft = Nft::open("gateway", &plumbing.netns)?;
                let adopting = self.starting && nft.table(GATEWAY_TABLE)?.is_some();
                if adopting {
                    info!("adopting the gateway's nftables table until the reconcile is done");
                }
                self.gateway = Some(Gateway {
                    netns: plumbing.netns.clone(),
                    host_side: plumbing.host_side.clone(),
                    gateway_ip: plumbing.gateway_ip,
                    host_addrs,
                    nat_ports: plumbing.host_nat_ports,
                    applied: None,
                    adopting,
                });
            }
        }
        self.sync_gateway()
    }

    fn detach_gateway(&mut self) {
        self.gateway = None;
    }

    /// ARP for or from the gateway address dropped where packets arrive
    /// from the overlay (every node's bridge holds that address): a table of
    /// its own on `vxlan0`'s ingress, replaced whole in one transaction.
    /// Partitions across nodes stay refused
    /// ([`Dataplane::cannot_partition_across_nodes`]).
    fn attach_overlay(&mut self, overlay: &super::OverlayPlumbing) -> Result<()> {
        script::validate_ifname(&overlay.device)?;
        Nft::open(&overlay.name, &overlay.netns)?
            .apply(&script::overlay_table(&overlay.device, overlay.gateway))
            .with_context(|| format!("the overlay's ARP filter of network {}", overlay.name))
    }

    fn attach_network(&mut self, plumbing: &NetworkPlumbing) -> Result<()> {
        script::validate_ifname(&plumbing.gateway_port)?;
        match self.networks.get_mut(&plumbing.zone) {
            Some(net) if net.plumbing.netns == plumbing.netns => net.plumbing = plumbing.clone(),
            _ => {
                let adopting = self.starting
                    && Nft::open(&plumbing.name, &plumbing.netns)?
                        .table(NETWORK_TABLE)?
                        .is_some();
                self.networks.insert(
                    plumbing.zone,
                    Network {
                        adopting,
                        plumbing: plumbing.clone(),
                        guests: BTreeMap::new(),
                        partition: None,
                        applied: None,
                        delay_lines: Default::default(),
                    },
                );
            }
        }
        routing::ensure(
            &plumbing.gateway_netns,
            plumbing.zone,
            &plumbing.gateway_port,
            plumbing.uplink_ip,
        )?;
        self.sync_gateway()?;
        self.sync_network(plumbing.zone)
    }

    fn detach_network(&mut self, plumbing: &NetworkPlumbing) {
        if plumbing.gateway_netns.exists()
            && let Err(err) = routing::remove(&plumbing.gateway_netns, plumbing.zone)
        {
            warn!(network = %plumbing.name, "{err:#}");
        }
        let Some(mut net) = self.networks.remove(&plumbing.zone) else {
            return;
        };
        net.delay_lines.remove_all();
        if let Err(err) = self.sync_gateway() {
            warn!(network = %plumbing.name, "forgetting the network in the gateway: {err:#}");
        }
    }

    fn attach_guest(&mut self, plumbing: &GuestPlumbing) -> Result<()> {
        script::validate_ifname(&plumbing.port)?;
        let guest_netns = Netns::open_path(&plumbing.name, &plumbing.guest_netns)?;
        let guest = GuestSpec {
            mac: guest_netns.mac(&plumbing.ifname)?,
            ip: plumbing.ip,
            slot: plumbing.slot,
        };
        let net = self.networks.get_mut(&plumbing.zone).ok_or_else(|| {
            anyhow!(
                "guest {}/{}: its network is not attached",
                plumbing.network,
                plumbing.name
            )
        })?;
        let cut_before = net.partition_elements();
        let previous = net
            .guests
            .insert(plumbing.name.clone(), (plumbing.port.clone(), guest));
        let cut_changed = net.partition_elements() != cut_before;
        if let Err(err) = self.sync_network(plumbing.zone) {
            let net = self
                .networks
                .get_mut(&plumbing.zone)
                .expect("looked up above");
            match previous {
                Some(previous) => net.guests.insert(plumbing.name.clone(), previous),
                None => net.guests.remove(&plumbing.name),
            };
            return Err(err).with_context(|| {
                format!("registering guest {}/{}", plumbing.network, plumbing.name)
            });
        }
        // The gateway's copy of the partition names guests by address: a
        // guest that takes a cut slot brings its address there (the
        // gateway's content is not even rendered otherwise).
        if cut_changed && let Err(err) = self.sync_gateway() {
            warn!(network = %plumbing.network, guest = %plumbing.name, "updating the gateway's partition: {err:#}");
        }
        Ok(())
    }

    fn detach_guest(&mut self, plumbing: &GuestPlumbing) {
        let Some(net) = self.networks.get_mut(&plumbing.zone) else {
            return;
        };
        let cut_before = net.partition_elements();
        if net.guests.remove(&plumbing.name).is_some() {
            let cut_changed = net.partition_elements() != cut_before;
            if plumbing.network_netns.exists()
                && let Err(err) = self.sync_network(plumbing.zone)
            {
                warn!(network = %plumbing.network, guest = %plumbing.name, "forgetting the guest: {err:#}");
            }
            if cut_changed && let Err(err) = self.sync_gateway() {
                warn!(network = %plumbing.network, guest = %plumbing.name, "forgetting the guest in the gateway: {err:#}");
            }
        }
    }

    fn cannot_enforce(&self, rules: &PartitionRules) -> Option<String> {
        script::cannot_enforce(rules)
    }

    fn apply_partition(&mut self, zone: u32, rules: &PartitionRules) -> Result<()> {
        let net = self
            .networks
            .get_mut(&zone)
            .ok_or_else(|| anyhow!("no network with zone {zone} is attached"))?;
        let previous = net.partition.replace(rules.clone());
        let nft = net.nft()?;
        let inode = nft.netns().expect("opened in a namespace").inode()?;
        let spec = net.spec();
        let known = net.applied.as_ref().is_some_and(|a| a.inode == inode);
        // One transaction replaces the whole partition.
        let applied = if known {
            nft.apply(&script::partition_script(&spec.guests, rules))
        } else {
            Err(anyhow!("the table is not synced yet"))
        };
        let result = match applied {
            Ok(()) => {
                net.applied = Some(Applied {
                    inode,
                    content: script::network_content(&spec),
                });
                self.sync_delays(zone)
            }
            Err(_) => self.sync_network(zone),
        };
        // The gateway's copy, for packets through published ports.
        let result = result.and_then(|()| {
            self.sync_gateway()
                .context("putting the partition in force at the gateway")
        });
        if let Err(err) = result {
            if let Some(net) = self.networks.get_mut(&zone) {
                net.partition = previous;
            }
            // Both tables back to the previous policy, delays and all, as
            // far as they go.
            if let Err(undo) = self.sync_network(zone).and_then(|()| self.sync_gateway()) {
                warn!("restoring the previous partition: {undo:#}");
            }
            return Err(err).context("putting the partition in force");
        }
        Ok(())
    }

    fn sync_host(&mut self, host: Option<&HostPlumbing>) -> Result<()> {
        self.host.sync(host)
    }

    fn publish(&mut self, ports: &[PortMapping]) -> Result<()> {
        let before = self.forwards.clone();
        for port in ports {
            self.forwards.insert(key(port), *port);
        }
        if let Err(err) = self.sync_gateway() {
            self.forwards = before;
            return Err(err).with_context(|| format!("publishing {} port(s)", ports.len()));
        }
        if let Err(err) = self.host.publish(ports) {
            self.unpublish_at_gateway(ports);
            return Err(err);
        }
        Ok(())
    }

    fn unpublish(&mut self, ports: &[PortMapping]) {
        self.unpublish_at_gateway(ports);
        self.host.unpublish(ports);
    }

    fn sync_published(&mut self, ports: &[PortMapping]) -> Result<()> {
        self.forwards = ports.iter().map(|port| (key(port), *port)).collect();
        // The end of the start-up reconcile: everything is known now, and
        // adopted tables are synced whole.
        self.starting = false;
        if let Some(gw) = &mut self.gateway {
            gw.adopting = false;
        }
        let adopted: Vec<u32> = self
            .networks
            .iter_mut()
            .filter(|(_, net)| net.adopting)
            .map(|(zone, net)| {
                net.adopting = false;
                *zone
            })
            .collect();
        for zone in adopted {
            if let Err(err) = self.sync_network(zone) {
                warn!("{err:#}");
            }
        }
        self.sync_gateway()
    }

    fn forget_all(&mut self) {
        // Tables, rules and routes live in netd's namespaces and go with
        // them; nothing is kept anywhere else.
        self.gateway = None;
        for net in self.networks.values_mut() {
            net.delay_lines.remove_all();
        }
        self.networks.clear();
        self.forwards.clear();
        self.host.remove();
    }

    fn collect_garbage(&mut self) -> Result<GcReport> {
        // The kernel's conntrack expires its own entries.
        Ok(GcReport::default())
    }

    fn status(&self, zone_name: &dyn Fn(u32) -> String) -> Result<DataplaneStatus> {
        Ok(self.counters_read(zone_name).read())
    }

    fn status_read(&self, zone_name: &dyn Fn(u32) -> String) -> super::StatusRead {
        // Under the service lock: only what the reads need is copied (the
        // host table's check is two nft runs whatever the networks, and
        // stays here). Every network's `nft list` runs after.
        let host_drift = self.host.check();
        let gateway = self.gateway_check();
        let networks: Vec<TableCheck> = self.networks.values().map(Self::network_check).collect();
        let counters = self.counters_read(zone_name);
        super::StatusRead::later(move || {
            let mut drift = host_drift;
            drift.extend(gateway.iter().flat_map(GatewayCheck::problems));
            drift.extend(networks.iter().flat_map(TableCheck::problems));
            (drift, Ok(counters.read()))
        })
    }

    fn check(&self) -> Vec<String> {
        let mut drift = self.host.check();
        drift.extend(self.gateway_problems());
        for net in self.networks.values() {
            drift.extend(self.network_problems(net));
        }
        drift
    }

    fn repair(&mut self) {
        self.host.repair();
        if self.gateway.as_ref().is_some_and(|gw| !gw.adopting) && drifted(&self.gateway_problems())
        {
            warn!(
                "the gateway's nftables table or routing rules are missing or altered: restoring them"
            );
            for net in self.networks.values() {
                let p = &net.plumbing;
                if let Err(err) =
                    routing::ensure(&p.gateway_netns, p.zone, &p.gateway_port, p.uplink_ip)
                {
                    warn!(network = %p.name, "restoring policy routing: {err:#}");
                }
            }
            if let Some(gw) = &mut self.gateway {
                gw.applied = None;
            }
            if let Err(err) = self.sync_gateway() {
                warn!("restoring the gateway's nftables table: {err:#}");
            }
        }
        let drifted: Vec<u32> = self
            .networks
            .iter()
            .filter(|(_, net)| drifted(&self.network_problems(net)))
            .map(|(zone, _)| *zone)
            .collect();
        for zone in drifted {
            let net = self.networks.get_mut(&zone).expect("listed above");
            warn!(network = %net.plumbing.name, "the network's nftables table is missing or altered: restoring it");
            net.applied = None;
            if let Err(err) = self.sync_network(zone) {
                warn!("{err:#}");
            }
        }
    }
}
