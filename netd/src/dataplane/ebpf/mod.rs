//! The eBPF dataplane: netd's TC programs on the gateway's veths, configured
//! through pinned maps. Loading adopts what a previous daemon left: pinned
//! maps that fit are reused (connections survive), pinned TCX links and
//! guest ports' cls_bpf filters (`port_filter`) are updated in place to the
//! new programs (no moment without a program).

mod delay_lines;
mod egress_peer;
pub mod gc;
pub mod host;
pub mod loader;
pub mod pins;
mod port_filter;
mod route_watch;
pub mod test_run;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{
        SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
    },
};
use netd_common::{
    counters::{COUNTED_ZONES, Counter},
    filter::Ipv4Key,
    maps,
    nat::{CtEntry, CtKey, ForwardKey, ForwardTarget, ShareKey, kind},
    partition::{MAX_FAULTS, PartitionPolicy},
    zones::{
        GatewayInfo, GuestIdentity, GuestKey, GuestPort, NetworkInfo, REMOTE_GUEST, gateway_flags,
        mac_key, network_flags,
    },
};
use tracing::{debug, info, warn};

use self::{
    host::{HOST_LINK_PIN, HostPrograms},
    loader::Loaded,
    pins::PinDir,
};
use super::{
    Dataplane, DataplaneStatus, GcReport, HostSide, NatSummary, ZoneCounters, hostnat::NftHostSide,
};
use crate::config::HostDatapath;
use crate::{
    ifname::{NETWORK_BRIDGE, NETWORK_UPLINK},
    netns::Netns,
    partition::PartitionRules,
    ports::PortMapping,
    topology::{GatewayPlumbing, GuestPlumbing, HostPlumbing, NetworkPlumbing, OverlayPlumbing},
};

/// The pin name of the link on the gateway's host-side veth.
const GATEWAY_HOST_LINK: &str = "gw-host";

/// The programs on netd's own ports, which take them through cls_bpf
/// filters (see `port_filter`): each network's gateway port and uplink,
/// every guest's port, each delay line's TAP and each spanned network's
/// VXLAN device.
const FILTER_PROGRAMS: [&str; 5] = [
    maps::PROG_GATEWAY_FROM_NETWORK,
    maps::PROG_NETWORK_UPLINK,
    maps::PROG_GUEST_PORT,
    maps::PROG_DELAY_RETURN,
    maps::PROG_OVERLAY,
];

pub struct EbpfDataplane {
    pins: PinDir,
    loaded: Loaded,
    conntrack: HashMap<MapData, CtKey, CtEntry>,
    forwards: HashMap<MapData, ForwardKey, ForwardTarget>,
    gateway: Array<MapData, GatewayInfo>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    zone_by_ifindex: HashMap<MapData, u32, u32>,
    host_addrs: HashMap<MapData, Ipv4Key, u32>,
    /// Host devices whose egress guests' packets skip ([`egress_peer`]).
    egress_peer: Array<MapData, u32>,
    /// The indexes set to 1 in it.
    egress_peers: Vec<u32>,
    /// The host's routing epoch, until the host side starts its watcher.
    route_epoch: Option<Array<MapData, u32>>,
    /// The watcher of the host's routing, while the eBPF host side is in
    /// force ([`route_watch`]).
    route_watch: Option<route_watch::RouteWatch>,
    /// Spanned networks' gateway addresses, to their zone: ARP for them is
    /// dropped where packets arrive from the overlay.
    overlay_gateways: HashMap<MapData, Ipv4Key, u32>,
    /// Each attached overlay's gateway address, by zone.
    overlays_attached: BTreeMap<u32, Ipv4Addr>,
    counters: PerCpuArray<MapData, u64>,
    zone_by_mac: HashMap<MapData, u64, u32>,
    guest_ports: HashMap<MapData, GuestKey, GuestPort>,
    guest_by_mac: HashMap<MapData, u64, GuestIdentity>,
    partitions: HashMap<MapData, u32, PartitionPolicy>,
    /// Bumped for every policy put in force ([`PartitionPolicy::generation`]).
    policy_generation: u32,
    port_shares: HashMap<MapData, ShareKey, u32>,
    /// The eBPF host side's programs, while they are in force.
    host_programs: Option<HostPrograms>,
    /// Why the eBPF host side is not in force although it was asked for.
    host_fallback: Option<String>,
    /// Pinned maps this start replaced because their layout differed.
    pub replaced_maps: Vec<(String, String)>,
    /// The host namespace's part: the shared nftables host table for now.
    host: Box<dyn HostSide>,
    /// Networks as attached, by zone: where a delay line goes.
    networks_attached: BTreeMap<u32, NetworkPlumbing>,
    /// Zones whose guest block this daemon has written its program to
    /// (`port_filter::attach_guest_port`).
    guest_blocks_set: std::collections::HashSet<u32>,
    /// Running delay lines, by zone.
    delay_lines: BTreeMap<u32, crate::delay::DelayLine>,
    /// Zones where an earlier daemon left a delay line this one runs not.
    stale_delay_lines: std::collections::BTreeSet<u32>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    loaded: &mut Loaded,
    name: &str,
) -> Result<T> {
    let map = loaded
        .ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from netd's eBPF object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl EbpfDataplane {
    /// Loads the programs with their maps pinned under `bpffs_dir`, reusing
    /// pins that fit. Must run inside a tokio runtime (the log reader).
    pub fn open(bpffs_dir: &Path) -> Result<EbpfDataplane> {
        let pins = PinDir::new(bpffs_dir);
        pins.create()?;
        let replaced_maps = pins.drop_incompatible_maps();
        let mut loaded = Loaded::with_pinned_maps(&pins.map_paths())?;
        for name in [
            maps::PROG_GATEWAY_FROM_HOST,
            maps::PROG_GATEWAY_FROM_NETWORK,
            maps::PROG_NETWORK_UPLINK,
            maps::PROG_GUEST_PORT,
            maps::PROG_OVERLAY,
            maps::PROG_HOST_LINK,
            maps::PROG_HOST_WORLD,
            maps::PROG_DELAY_RETURN,
        ] {
            program(&mut loaded, name)?
                .load()
                .with_context(|| format!("the verifier rejected {name}"))?;
        }
        // Programs in cls_bpf filters have no link to pin: the programs
        // themselves are pinned, so that they can be found (tests, the
        // bench's program costs) and outlive the daemon like a pinned link.
        for name in FILTER_PROGRAMS {
            let pin = pins.program(name);
            let _ = std::fs::remove_file(&pin);
            program(&mut loaded, name)?
                .pin(&pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
        }
        Ok(EbpfDataplane {
            conntrack: take(&mut loaded, maps::CONNTRACK)?,
            forwards: take(&mut loaded, maps::FORWARDS)?,
            gateway: take(&mut loaded, maps::GATEWAY)?,
            networks: take(&mut loaded, maps::NETWORKS)?,
            zone_by_ifindex: take(&mut loaded, maps::ZONE_BY_IFINDEX)?,
            host_addrs: take(&mut loaded, maps::HOST_ADDRS)?,
            egress_peer: take(&mut loaded, maps::EGRESS_PEER)?,
            egress_peers: Vec::new(),
            route_epoch: Some(take(&mut loaded, maps::ROUTE_EPOCH)?),
            route_watch: None,
            overlay_gateways: take(&mut loaded, maps::OVERLAY_GATEWAYS)?,
            overlays_attached: BTreeMap::new(),
            counters: take(&mut loaded, maps::COUNTERS)?,
            zone_by_mac: take(&mut loaded, maps::ZONE_BY_MAC)?,
            guest_ports: take(&mut loaded, maps::GUEST_PORTS)?,
            guest_by_mac: take(&mut loaded, maps::GUEST_BY_MAC)?,
            partitions: take(&mut loaded, maps::PARTITIONS)?,
            // Differs from the last daemon's, whose buckets may linger.
            policy_generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
            port_shares: take(&mut loaded, maps::PORT_SHARES)?,
            host_programs: None,
            host_fallback: None,
            pins,
            loaded,
            replaced_maps,
            host: Box::new(NftHostSide::new()),
            networks_attached: BTreeMap::new(),
            guest_blocks_set: std::collections::HashSet::new(),
            delay_lines: BTreeMap::new(),
            stale_delay_lines: Default::default(),
        })
    }

    /// Attaches `program` to `iface`'s ingress inside `netns`, adopting the
    /// pinned link `pin` if a previous daemon left one: the link is updated
    /// to this program in place, so packets never meet a gap.
    fn attach(&mut self, netns: &Netns, iface: &str, program_name: &str, pin: &str) -> Result<()> {
        let path = self.pins.link(pin);
        let program = program(&mut self.loaded, program_name)?;
        if path.exists() {
            let adopted = PinnedLink::from_pin(&path)
                .map_err(anyhow::Error::from)
                .and_then(|pinned| {
                    let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
                    Ok(program.attach_to_link(link)?)
                });
            match adopted {
                Ok(id) => {
                    // The pin holds the link; this process needs no handle.
                    drop(program.take_link(id)?);
                    debug!(link = pin, "adopted a pinned link");
                    return Ok(());
                }
                Err(err) => {
                    // Its device is gone (the namespace was rebuilt): start over.
                    debug!(
                        link = pin,
                        "pinned link not adoptable ({err:#}); attaching afresh"
                    );
                    self.pins.remove_link(pin);
                }
            }
        }
        let id = netns
            .run_in(|| program.attach(iface, TcAttachType::Ingress))?
            .with_context(|| format!("attaching {program_name} to {iface} in {}", netns.name()))?;
        let link = FdLink::try_from(program.take_link(id)?)
            .map_err(|err| anyhow!("{program_name} on {iface}: not a TCX link ({err})"))?;
        link.pin(&path)
            .with_context(|| format!("pinning the link of {program_name} at {}", path.display()))?;
        Ok(())
    }

    /// Makes the port shares map exactly `shares`.
    fn recount_port_shares(&mut self, shares: &BTreeMap<ShareKey, u32>) {
        let stale: Vec<ShareKey> = self
            .port_shares
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| !shares.contains_key(key))
            .collect();
        for key in stale {
            let _ = self.port_shares.remove(&key);
        }
        for (key, count) in shares {
            let _ = self.port_shares.insert(key, count, 0);
        }
    }

    /// Makes the host addresses map exactly `addrs`.
    fn set_host_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let wanted: Vec<Ipv4Key> = addrs.iter().map(|a| Ipv4Key::new(a.octets())).collect();
        let stale: Vec<Ipv4Key> = self
            .host_addrs
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| !wanted.contains(key))
            .collect();
        for key in stale {
            let _ = self.host_addrs.remove(&key);
        }
        for key in wanted {
            self.host_addrs
                .insert(key, 1, 0)
                .context("writing the host's addresses")?;
        }
        Ok(())
    }

    /// Attaches the host programs and reserves their ports.
    fn start_host_side(&mut self, host: HostPrograms) -> Result<()> {
        if host.reserve_ports()? {
            info!(ports = %host.ports, "reserved the host side's source ports from the host's sockets (net.ipv4.ip_local_reserved_ports)");
        }
        let host_netns = Netns::open_path("host", std::path::Path::new("/proc/self/ns/net"))?;
        self.attach(
            &host_netns,
            &host.host_link,
            maps::PROG_HOST_LINK,
            HOST_LINK_PIN,
        )?;
        // Every device, adopting what a previous daemon pinned: its links
        // move to this start's programs (and maps) in place.
        for device in host.world_devices()? {
            let pin = host::world_pin(&device);
            if let Err(err) = self.attach(&host_netns, &device, maps::PROG_HOST_WORLD, &pin) {
                debug!(%device, "attaching the host program: {err:#}");
            }
        }
        if let Some(epoch) = self.route_epoch.take() {
            // Without it the host link program looks every packet's next
            // hop up: slower, never wrong.
            match route_watch::start(&host_netns, epoch) {
                Ok(watch) => self.route_watch = Some(watch),
                Err(err) => warn!("not remembering the host's next hops: {err:#}"),
            }
        }
        self.host_programs = Some(host);
        self.follow_host()
    }

    /// Follows the host's devices and addresses: new devices get the world
    /// program, gone ones lose their pins, a detached program is attached
    /// again, and the addresses map is the host's.
    fn follow_host(&mut self) -> Result<()> {
        let Some(host) = &self.host_programs else {
            return Ok(());
        };
        let devices: std::collections::BTreeSet<String> =
            host.world_devices()?.into_iter().collect();
        let addrs = host.addresses()?;
        let host_link = host.host_link.clone();
        let detached_link = !host.has_program(&host_link, maps::PROG_HOST_LINK);
        let missing: Vec<String> = devices
            .iter()
            .filter(|d| !host.has_program(d, maps::PROG_HOST_WORLD))
            .cloned()
            .collect();
        let skippable = egress_peer::skippable(&host.netns, &host_link).unwrap_or_else(|err| {
            debug!("reading the host devices' egress: {err:#}");
            Vec::new()
        });
        let host_netns = Netns::open_path("host", std::path::Path::new("/proc/self/ns/net"))?;
        for pin in host::stale_world_pins(&host::link_pins(&self.pins.link("")), &devices) {
            self.pins.remove_link(&pin);
        }
        if detached_link {
            self.pins.remove_link(HOST_LINK_PIN);
            self.attach(&host_netns, &host_link, maps::PROG_HOST_LINK, HOST_LINK_PIN)?;
        }
        for device in missing {
            let pin = host::world_pin(&device);
            self.pins.remove_link(&pin);
            if let Err(err) = self.attach(&host_netns, &device, maps::PROG_HOST_WORLD, &pin) {
                // A device that vanished between the listing and now.
                debug!(%device, "attaching the host program: {err:#}");
            }
        }
        self.set_egress_peers(&skippable);
        self.set_host_addrs(&addrs)
    }

    /// Makes the egress-peer map 1 at exactly `indexes` (it is this start's
    /// own, not pinned, so what was written is known).
    fn set_egress_peers(&mut self, indexes: &[u32]) {
        let wanted: Vec<u32> = indexes
            .iter()
            .copied()
            .filter(|index| *index < maps::EGRESS_PEER_MAX_ENTRIES)
            .collect();
        let changes: Vec<(u32, u32)> = self
            .egress_peers
            .iter()
            .filter(|index| !wanted.contains(index))
            .map(|index| (*index, 0))
            .chain(
                wanted
                    .iter()
                    .filter(|index| !self.egress_peers.contains(index))
                    .map(|index| (*index, 1)),
            )
            .collect();
        for (index, value) in changes {
            if let Err(err) = self.egress_peer.set(index, value, 0) {
                warn!(index, "writing the egress-peer map: {err:#}");
            }
        }
        self.egress_peers = wanted;
    }

    /// Detaches the host programs: the host's nftables table serves.
    fn stop_host_side(&mut self) {
        if let Some(host) = &self.host_programs
            && let Err(err) = host.release_ports()
        {
            warn!("giving back the host side's reserved ports: {err:#}");
        }
        self.pins.remove_link(HOST_LINK_PIN);
        self.pins.remove_links_with_prefix(host::HOST_WORLD_PINS);
        if let Ok(mut gw) = self.gateway.get(&0, 0)
            && gw.flags & gateway_flags::HOST_EBPF != 0
        {
            gw.flags &= !gateway_flags::HOST_EBPF;
            let _ = self.gateway.set(0, gw, 0);
        }
        self.set_egress_peers(&[]);
        self.route_watch = None;
        self.host_programs = None;
    }

    /// What is missing of the host side, one line each.
    fn host_drift(&self) -> Vec<String> {
        let Some(host) = &self.host_programs else {
            return Vec::new();
        };
        let mut drift = Vec::new();
        if !host.has_program(&host.host_link, maps::PROG_HOST_LINK) {
            drift.push(format!(
                "the host side's program {} is not attached to {}",
                maps::PROG_HOST_LINK,
                host.host_link
            ));
        }
        for device in host.world_devices().unwrap_or_default() {
            if !host.has_program(&device, maps::PROG_HOST_WORLD) {
                drift.push(format!(
                    "the host side's program {} is not attached to {device}",
                    maps::PROG_HOST_WORLD
                ));
            }
        }
        drift
    }

    fn gateway_link_pin(gateway_port: &str) -> String {
        format!("gw-{gateway_port}")
    }

    fn uplink_link_pin(network: &str) -> String {
        format!("net-{network}-uplink")
    }

    /// bpffs refuses '.' in names, and network names may hold '-', so '@'
    /// separates: no name holds one.
    fn guest_port_pins(network: &str) -> String {
        format!("port@{network}@")
    }

    fn guest_port_pin(network: &str, guest: &str) -> String {
        format!("{}{guest}", Self::guest_port_pins(network))
    }

    fn overlay_link_pin(network: &str) -> String {
        format!("net-{network}-overlay")
    }

    /// Every conntrack entry (a snapshot; the programs keep writing).
    ///
    /// Walking a hash map that the programs change meanwhile starts over
    /// whenever the key it stands on is deleted, so the walk may meet an
    /// entry several times (a status once counted 255,467 entries in a
    /// 131,072-entry map): entries are taken once each, and the walk stops
    /// after twice the map's size.
    fn conntrack_entries(&self) -> Vec<(CtKey, CtEntry)> {
        let walk = self
            .conntrack
            .iter()
            .take(2 * netd_common::maps::CONNTRACK_MAX_ENTRIES as usize)
            .filter_map(|entry| entry.ok());
        gc::unique(walk)
    }

    /// Drops the uplink MAC registered for `zone` (a rebuilt uplink has a
    /// new one).
    fn forget_uplink_of_zone(&mut self, zone: u32) {
        remove_where(&mut self.zone_by_mac, |_, z| *z == zone);
    }

    fn zero_counters(&mut self, zone: u32) {
        let cpus = aya::util::nr_cpus().map_or(1, |n| n);
        for counter in Counter::ALL {
            if let Ok(zeros) = PerCpuValues::try_from(vec![0u64; cpus]) {
                let _ = self.counters.set(counter.slot(zone), zeros, 0);
            }
        }
    }

    fn counters_of(&self, zone: u32) -> Vec<(String, u64)> {
        Counter::ALL
            .iter()
            .filter_map(|counter| {
                let total: u64 = self.counters.get(&counter.slot(zone), 0).ok()?.iter().sum();
                (total > 0).then(|| (counter.name().to_owned(), total))
            })
            .collect()
    }
}

fn program<'a>(loaded: &'a mut Loaded, name: &str) -> Result<&'a mut SchedClassifier> {
    loaded
        .ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from netd's eBPF object"))?
        .try_into()
        .with_context(|| format!("{name} is not a TC program"))
}

/// The map value of a fault policy: each class's matching and effects, and
/// its pairs as a bit matrix over slots. `generation` tells this policy's
/// rate buckets from an older one's.
pub fn policy_of(rules: &PartitionRules, generation: u32) -> Box<PartitionPolicy> {
    let mut policy = Box::new(PartitionPolicy::open());
    policy.generation = generation;
    policy.count = rules.faults.len().min(MAX_FAULTS) as u32;
    for (class, fault) in policy.faults.iter_mut().zip(&rules.faults) {
        class.set_loss_percent(fault.loss_percent);
        if let Some(percent) = fault.impair.duplicate_percent {
            class.set_duplicate_percent(percent);
        }
        if let Some(percent) = fault.impair.corrupt_percent {
            class.set_corrupt_percent(percent);
        }
        if let Some(bits) = fault.impair.rate_bits_per_sec {
            class.set_rate_bits(bits);
        }
        if let Some(proto) = fault.traffic.proto {
            class.match_proto(proto.number());
        }
        if let Some(port) = fault.traffic.port {
            class.match_port(port);
        }
        for &(from, to) in &fault.pairs {
            class.set_pair(from, to);
        }
        for &slot in &fault.outside {
            class.set_outside(slot);
        }
    }
    policy
}

/// A network's [`network_flags`] bits.
fn network_flags_of(net: &NetworkPlumbing) -> u32 {
    let mut flags = 0;
    if net.routable {
        flags |= network_flags::ROUTABLE;
    }
    if net.internal {
        flags |= network_flags::INTERNAL;
    }
    flags
}

fn forward_key(port: &PortMapping) -> ForwardKey {
    ForwardKey {
        proto: port.proto.number(),
        _pad: 0,
        port: port.host_port,
    }
}

fn forward_target(port: &PortMapping) -> ForwardTarget {
    ForwardTarget {
        zone: port.zone,
        guest_ip: port.guest_ip.octets(),
        guest_port: port.guest_port,
        _pad: 0,
        host_ip: port.host_ip.map_or([0; 4], |ip| ip.octets()),
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the programs' `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

impl EbpfDataplane {
    /// Publishes ports in the gateway's forwards map: all of them, or none.
    fn publish_at_gateway(&mut self, ports: &[PortMapping]) -> Result<()> {
        for (done, port) in ports.iter().enumerate() {
            if let Err(err) = self
                .forwards
                .insert(forward_key(port), forward_target(port), 0)
            {
                for undo in &ports[..done] {
                    let _ = self.forwards.remove(&forward_key(undo));
                }
                return Err(err)
                    .with_context(|| format!("publishing {}/{}", port.host_port, port.proto));
            }
        }
        Ok(())
    }

    /// Withdraws ports from the gateway's forwards map.
    fn unpublish_at_gateway(&mut self, ports: &[PortMapping]) {
        for port in ports {
            let _ = self.forwards.remove(&forward_key(port));
        }
    }
}

impl Dataplane for EbpfDataplane {
    fn attach_gateway(&mut self, gw: &GatewayPlumbing) -> Result<()> {
        let netns = Netns::open_path("gateway", &gw.netns)?;
        let host_side_ifindex = netns.ifindex(&gw.host_side)?;
        let host = HostPrograms::new(&gw.host_link, gw.host_nat_ports)?;
        let host_link_ifindex = host.netns.ifindex(&gw.host_link)?;
        let (host_ephemeral_min, host_ephemeral_max) = host.ephemeral_ports();
        let mut info = GatewayInfo {
            gateway_ip: gw.gateway_ip.octets(),
            host_ip: gw.host_ip.octets(),
            host_side_ifindex,
            ready: 1,
            host_link_ifindex,
            flags: 0,
            host_port_min: gw.host_nat_ports.min,
            host_port_max: gw.host_nat_ports.max,
            host_ephemeral_min,
            host_ephemeral_max,
        };
        self.set_host_addrs(&gw.host_addrs)?;
        // The host programs before the flag that sends traffic their way, and
        // the flag written once: a restarted daemon never has a moment in
        // which the gateway and the host disagree on who translates.
        if gw.host_datapath == HostDatapath::Ebpf {
            match self.start_host_side(host) {
                Ok(()) => {
                    info.flags |= gateway_flags::HOST_EBPF;
                    self.host_fallback = None;
                }
                Err(err) => {
                    warn!(
                        "the eBPF host side cannot run here, the host's nftables table serves: {err:#}"
                    );
                    self.stop_host_side();
                    self.host_fallback = Some(format!("{err:#}"));
                }
            }
        } else {
            self.stop_host_side();
            self.host_fallback = None;
        }
        self.gateway
            .set(0, info, 0)
            .context("writing the gateway's facts")?;
        self.attach(
            &netns,
            &gw.host_side,
            maps::PROG_GATEWAY_FROM_HOST,
            GATEWAY_HOST_LINK,
        )
    }

    fn detach_gateway(&mut self) {
        self.pins.remove_link(GATEWAY_HOST_LINK);
        self.stop_host_side();
        let _ = self.gateway.set(0, GatewayInfo::default(), 0);
    }

    fn attach_network(&mut self, net: &NetworkPlumbing) -> Result<()> {
        if net.zone >= COUNTED_ZONES {
            bail!(
                "network {} has zone {}, beyond the dataplane's {COUNTED_ZONES}: use a smaller uplink_pool",
                net.name,
                net.zone
            );
        }
        let gw_netns = Netns::open_path("gateway", &net.gateway_netns)?;
        let ifindex = gw_netns.ifindex(&net.gateway_port)?;
        // A rebuilt port has a new ifindex: forget the old one.
        if let Ok(old) = self.networks.get(&net.zone, 0)
            && old.gateway_port_ifindex != ifindex
        {
            let _ = self.zone_by_ifindex.remove(&old.gateway_port_ifindex);
        }
        let netns = Netns::open_path(&net.name, &net.netns)?;
        self.remember_network(net, &netns);
        let uplink_mac = netns.mac(NETWORK_UPLINK)?;
        let info = NetworkInfo {
            gateway_port_ifindex: ifindex,
            uplink_ip: net.uplink_ip.octets(),
            flags: network_flags_of(net),
            uplink_ifindex: netns.ifindex(NETWORK_UPLINK)?,
            subnet: net.subnet.network().octets(),
            subnet_mask: net.subnet.mask().octets(),
            uplink_mac,
            gateway_port_mac: gw_netns.mac(&net.gateway_port)?,
            bridge_mac: netns.mac(NETWORK_BRIDGE)?,
            // At most 65,535 (`mtu::MAX_MTU`).
            mtu: net
                .mtu
                .map_or(0, |mtu| u16::try_from(mtu).unwrap_or(u16::MAX)),
        };
        self.networks
            .insert(net.zone, info, 0)
            .context("registering the network")?;
        self.zone_by_ifindex
            .insert(ifindex, net.zone, 0)
            .context("registering the network's gateway port")?;
        port_filter::attach(
            &gw_netns,
            &net.gateway_port,
            program(&mut self.loaded, maps::PROG_GATEWAY_FROM_NETWORK)?,
        )?;
        self.forget_uplink_of_zone(net.zone);
        self.zone_by_mac
            .insert(netd_common::zones::mac_key(uplink_mac), net.zone, 0)
            .context("registering the network's uplink")?;
        port_filter::attach(
            &netns,
            NETWORK_UPLINK,
            program(&mut self.loaded, maps::PROG_NETWORK_UPLINK)?,
        )?;
        // The TCX links an older netd pinned for these ports go once the
        // filters are in place.
        self.pins
            .remove_link(&Self::gateway_link_pin(&net.gateway_port));
        self.pins.remove_link(&Self::uplink_link_pin(&net.name));
        Ok(())
    }

    fn attach_guest(&mut self, guest: &GuestPlumbing) -> Result<()> {
        let network_netns = Netns::open_path(&guest.network, &guest.network_netns)?;
        let guest_netns = Netns::open_path(&guest.name, &guest.guest_netns)?;
        let port_ifindex = network_netns.ifindex(&guest.port)?;
        let guest_mac = guest_netns.mac(&guest.ifname)?;
        let port = GuestPort {
            port_ifindex,
            guest_mac,
            bridge_mac: network_netns.mac(NETWORK_BRIDGE)?,
            slot: guest.slot,
            _pad: [0; 3],
        };
        let key = GuestKey {
            zone: guest.zone,
            ip: guest.ip.octets(),
        };
        let identity = GuestIdentity {
            zone: guest.zone,
            ip: guest.ip.octets(),
            port_ifindex,
            slot: guest.slot,
            _pad: [0; 3],
        };
        // Identity first: the port program drops what it cannot place.
        self.guest_by_mac
            .insert(mac_key(guest_mac), identity, 0)
            .and_then(|()| self.guest_ports.insert(key, port, 0))
            .with_context(|| format!("registering guest {}/{}", guest.network, guest.name))?;
        // The network's guest block gets this daemon's program with its
        // first guest (over an earlier daemon's, in place); later guests
        // only join the block.
        let replace = self.guest_blocks_set.insert(guest.zone);
        let attached = port_filter::attach_guest_port(
            &network_netns,
            &guest.port,
            program(&mut self.loaded, maps::PROG_GUEST_PORT)?,
            maps::PROG_GUEST_PORT,
            replace,
        );
        if attached.is_err() && replace {
            self.guest_blocks_set.remove(&guest.zone);
        }
        attached?;
        // A TCX link an older netd pinned for this port goes once the
        // filter is in place.
        self.pins
            .remove_link(&Self::guest_port_pin(&guest.network, &guest.name));
        Ok(())
    }

    fn detach_guest(&mut self, guest: &GuestPlumbing) {
        if let Ok(network_netns) = Netns::open_path(&guest.network, &guest.network_netns) {
            port_filter::detach(&network_netns, &guest.port);
        }
        self.pins
            .remove_link(&Self::guest_port_pin(&guest.network, &guest.name));
        let key = GuestKey {
            zone: guest.zone,
            ip: guest.ip.octets(),
        };
        if let Ok(port) = self.guest_ports.get(&key, 0) {
            let _ = self.guest_by_mac.remove(&mac_key(port.guest_mac));
        }
        let _ = self.guest_ports.remove(&key);
    }

    fn attach_overlay(&mut self, overlay: &OverlayPlumbing) -> Result<()> {
        self.sync_remote_guests(overlay)?;
        self.overlay_gateways
            .insert(Ipv4Key::new(overlay.gateway.octets()), overlay.zone, 0)
            .with_context(|| format!("registering the gateway address of {}", overlay.name))?;
        self.overlays_attached.insert(overlay.zone, overlay.gateway);
        let netns = Netns::open_path(&overlay.name, &overlay.netns)?;
        port_filter::attach(
            &netns,
            &overlay.device,
            program(&mut self.loaded, maps::PROG_OVERLAY)?,
        )?;
        // A TCX link an earlier netd pinned for the device goes once the
        // filter is in place.
        self.pins
            .remove_link(&Self::overlay_link_pin(&overlay.name));
        Ok(())
    }

    fn sync_remote_guests(&mut self, overlay: &OverlayPlumbing) -> Result<()> {
        let netns = Netns::open_path(&overlay.name, &overlay.netns)?;
        let bridge_mac = netns.mac(NETWORK_BRIDGE)?;
        let wanted: BTreeSet<[u8; 4]> = overlay
            .remotes
            .iter()
            .map(|(ip, _, _)| ip.octets())
            .collect();
        // Remote guests that left: their entries go (local guests' stay).
        remove_where(&mut self.guest_ports, |key, port| {
            key.zone == overlay.zone
                && port.port_ifindex == REMOTE_GUEST
                && !wanted.contains(&key.ip)
        });
        for (ip, mac, slot) in &overlay.remotes {
            let key = GuestKey {
                zone: overlay.zone,
                ip: ip.octets(),
            };
            let port = GuestPort {
                port_ifindex: REMOTE_GUEST,
                guest_mac: *mac,
                bridge_mac,
                slot: *slot,
                _pad: [0; 3],
            };
            self.guest_ports
                .insert(key, port, 0)
                .with_context(|| format!("registering remote guest {ip} of {}", overlay.name))?;
        }
        Ok(())
    }

    fn detach_overlay(&mut self, overlay: &OverlayPlumbing) {
        if let Ok(netns) = Netns::open_path(&overlay.name, &overlay.netns) {
            port_filter::detach(&netns, &overlay.device);
        }
        self.pins
            .remove_link(&Self::overlay_link_pin(&overlay.name));
        remove_where(&mut self.guest_ports, |key, port| {
            key.zone == overlay.zone && port.port_ifindex == REMOTE_GUEST
        });
        // Another spanned network of the same gateway address keeps it.
        self.overlays_attached.remove(&overlay.zone);
        let key = Ipv4Key::new(overlay.gateway.octets());
        match self
            .overlays_attached
            .iter()
            .find(|(_, gateway)| **gateway == overlay.gateway)
        {
            Some((zone, _)) => {
                let _ = self.overlay_gateways.insert(key, *zone, 0);
            }
            None => {
                let _ = self.overlay_gateways.remove(&key);
            }
        }
    }

    fn cannot_partition_across_nodes(&self) -> Option<String> {
        None
    }

    fn apply_partition(&mut self, zone: u32, rules: &PartitionRules) -> Result<()> {
        let classes = delay_lines::classes_of(rules);
        if rules.is_full_mesh() {
            // Nothing in force is nothing to heal: aya reports a missing key
            // as the syscall's ENOENT, not as KeyNotFound.
            let healed = match self.partitions.remove(&zone) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(aya::maps::MapError::SyscallError(err))
                    if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    Ok(())
                }
                Err(err) => Err(err).context("healing the partition"),
            };
            if healed.is_ok() {
                self.remove_delay_line(zone);
            }
            return healed;
        }
        let had_line = self.delay_lines.contains_key(&zone);
        let delay_ifindex = match classes {
            Some(classes) => Some(self.delay_line_for(zone, classes)?),
            None => None,
        };
        // One update replaces the whole policy: every guest switches at once.
        self.policy_generation = self.policy_generation.wrapping_add(1);
        let mut policy = policy_of(rules, self.policy_generation);
        if let Some(ifindex) = delay_ifindex {
            delay_lines::send_delayed_to(&mut policy, rules, ifindex);
        }
        let applied = self
            .partitions
            .insert(zone, *policy, 0)
            .context("putting the partition in force");
        match (&applied, delay_ifindex) {
            // A line made for this policy goes with it; the old policy's
            // line stays for the old policy.
            (Err(_), Some(_)) if !had_line => self.remove_delay_line(zone),
            // No class delays any more: the line goes once nothing sends to it.
            (Ok(()), None) => self.remove_delay_line(zone),
            _ => {}
        }
        applied
    }

    fn detach_network(&mut self, net: &NetworkPlumbing) {
        self.remove_delay_line(net.zone);
        self.networks_attached.remove(&net.zone);
        self.guest_blocks_set.remove(&net.zone);
        if let Ok(gw_netns) = Netns::open_path("gateway", &net.gateway_netns) {
            port_filter::detach(&gw_netns, &net.gateway_port);
        }
        if let Ok(netns) = Netns::open_path(&net.name, &net.netns) {
            port_filter::detach(&netns, NETWORK_UPLINK);
        }
        self.pins
            .remove_link(&Self::gateway_link_pin(&net.gateway_port));
        self.pins.remove_link(&Self::uplink_link_pin(&net.name));
        self.pins.remove_link(&Self::overlay_link_pin(&net.name));
        self.pins
            .remove_links_with_prefix(&Self::guest_port_pins(&net.name));
        let _ = self.partitions.remove(&net.zone);
        remove_where(&mut self.guest_by_mac, |_, identity| {
            identity.zone == net.zone
        });
        self.forget_uplink_of_zone(net.zone);
        remove_where(&mut self.guest_ports, |key, _| key.zone == net.zone);
        if let Ok(old) = self.networks.get(&net.zone, 0) {
            let _ = self.zone_by_ifindex.remove(&old.gateway_port_ifindex);
        }
        let _ = self.networks.remove(&net.zone);
        let doomed: Vec<CtKey> = self
            .conntrack_entries()
            .into_iter()
            .filter(|(key, entry)| key.zone == net.zone || entry.out_zone == net.zone)
            .map(|(key, _)| key)
            .collect();
        for key in doomed {
            let _ = self.conntrack.remove(&key);
        }
        self.zero_counters(net.zone);
    }

    fn sync_host(&mut self, host: Option<&HostPlumbing>) -> Result<()> {
        self.host.sync(host)
    }

    fn publish(&mut self, ports: &[PortMapping]) -> Result<()> {
        self.publish_at_gateway(ports)?;
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
        let wanted: BTreeMap<(u8, u16), ForwardTarget> = ports
            .iter()
            .map(|p| ((p.proto.number(), p.host_port), forward_target(p)))
            .collect();
        let stale: Vec<ForwardKey> = self
            .forwards
            .keys()
            .filter_map(|key| key.ok())
            .filter(|key| !wanted.contains_key(&(key.proto, key.port)))
            .collect();
        for key in stale {
            let _ = self.forwards.remove(&key);
        }
        self.publish_at_gateway(ports)
    }

    fn forget_stale(&mut self, zones: &BTreeSet<u32>, guests: &BTreeSet<(u32, Ipv4Addr)>) -> usize {
        let gone = |zone: &u32| !zones.contains(zone);
        let guest_gone = |zone: u32, ip: [u8; 4]| !guests.contains(&(zone, Ipv4Addr::from(ip)));
        let removed = remove_where(&mut self.networks, |zone, _| gone(zone))
            + remove_where(&mut self.zone_by_ifindex, |_, zone| gone(zone))
            + remove_where(&mut self.zone_by_mac, |_, zone| gone(zone))
            + remove_where(&mut self.partitions, |zone, _| gone(zone))
            + remove_where(&mut self.guest_ports, |key, _| guest_gone(key.zone, key.ip))
            + remove_where(&mut self.guest_by_mac, |_, id| guest_gone(id.zone, id.ip));
        if removed > 0 {
            info!(
                removed,
                "removed eBPF map entries of networks and guests the state does not have"
            );
        }
        removed
    }

    fn forget_all(&mut self) {
        // Their TAPs go with the networks' namespaces.
        self.delay_lines.clear();
        self.stop_host_side();
        self.pins.remove_all();
        self.host.remove();
    }

    fn check(&self) -> Vec<String> {
        let mut drift = self.host.check();
        drift.extend(self.host_drift());
        drift
    }

    fn repair(&mut self) {
        self.host.repair();
        if let Err(err) = self.follow_host() {
            warn!("following the host's devices and addresses: {err:#}");
        }
    }

    fn collect_garbage(&mut self) -> Result<GcReport> {
        let entries = self.conntrack_entries();
        let doomed = gc::expired(&entries, monotonic_ns());
        for key in &doomed {
            let _ = self.conntrack.remove(key);
        }
        if !doomed.is_empty() {
            debug!(
                scanned = entries.len(),
                removed = doomed.len(),
                "conntrack gc"
            );
        }
        let doomed: std::collections::HashSet<CtKey> = doomed.into_iter().collect();
        let live: Vec<(CtKey, CtEntry)> = entries
            .iter()
            .filter(|(key, _)| !doomed.contains(key))
            .copied()
            .collect();
        self.recount_port_shares(&gc::port_shares(&live));
        Ok(GcReport {
            scanned: entries.len() as u64,
            removed: doomed.len() as u64,
        })
    }

    fn status(&self, zone_name: &dyn Fn(u32) -> String) -> Result<DataplaneStatus> {
        let mut nat = NatSummary::default();
        let mut zones = std::collections::BTreeSet::from([0u32]);
        for (key, entry) in self.conntrack_entries() {
            nat.conntrack_entries += 1;
            zones.insert(key.zone);
            if entry.kind & kind::ORIGINAL == 0 {
                continue;
            }
            match entry.kind & kind::MASK {
                kind::SNAT => nat.snat += 1,
                kind::DNAT => nat.dnat += 1,
                kind::HAIRPIN => nat.hairpin += 1,
                _ => {}
            }
        }
        for zone in self.networks.keys().filter_map(|zone| zone.ok()) {
            zones.insert(zone);
        }
        let counters = zones
            .into_iter()
            .map(|zone| ZoneCounters {
                zone: zone_name(zone),
                counters: [self.counters_of(zone), self.delay_counters(zone)].concat(),
            })
            .collect();
        let host_datapath = match (&self.host_programs, &self.host_fallback) {
            (Some(_), _) if !self.route_watch.as_ref().is_some_and(|w| w.alive()) => format!(
                "{} (next hops looked up for every packet: the host's route watcher is not running, see the daemon's log)",
                HostDatapath::Ebpf
            ),
            (Some(_), _) => HostDatapath::Ebpf.to_string(),
            (None, Some(why)) => format!("nftables (the eBPF host side cannot run: {why})"),
            (None, None) => HostDatapath::Nftables.to_string(),
        };
        Ok(DataplaneStatus {
            host_datapath,
            nat,
            counters,
        })
    }
}

/// Direct access for tests and diagnostics: run a program on a crafted
/// frame, and write the maps it reads.
impl EbpfDataplane {
    pub fn test_run(&mut self, program_name: &str, frame: &[u8]) -> Result<test_run::TestRun> {
        test_run::run(program(&mut self.loaded, program_name)?, frame)
    }

    pub fn set_gateway(&mut self, info: GatewayInfo) -> Result<()> {
        Ok(self.gateway.set(0, info, 0)?)
    }

    pub fn insert_connection(&mut self, key: CtKey, entry: CtEntry) -> Result<()> {
        Ok(self.conntrack.insert(key, entry, 0)?)
    }

    pub fn connection(&self, key: &CtKey) -> Option<CtEntry> {
        self.conntrack.get(key, 0).ok()
    }

    /// Removes every pin (as `cleanup` does), for tests that load the
    /// dataplane on their own.
    pub fn forget_all_pins(&mut self) {
        self.pins.remove_all();
    }
}

/// Removes the entries of `map` that `stale` picks; returns how many went.
fn remove_where<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    stale: impl Fn(&K, &V) -> bool,
) -> usize {
    let doomed: Vec<K> = map
        .iter()
        .filter_map(|entry| entry.ok())
        .filter(|(key, value)| stale(key, value))
        .map(|(key, _)| key)
        .collect();
    doomed.iter().filter(|key| map.remove(key).is_ok()).count()
}

impl EbpfDataplane {
    /// Logs what this start found, once.
    pub fn log_start(&self) {
        for (name, reason) in &self.replaced_maps {
            info!(map = %name, %reason, "pinned map replaced");
        }
        if let Ok(gw) = self.gateway.get(&0, 0)
            && gw.ready != 0
        {
            info!(gateway = %Ipv4Addr::from(gw.gateway_ip), "adopting the pinned dataplane");
        } else {
            warn!("no pinned dataplane state: starting fresh");
        }
    }
}
