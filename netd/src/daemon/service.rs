//! The daemon's request logic: validate everything, then apply to the kernel,
//! then persist; roll back what was applied if a later step fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{info, warn};

use super::{
    error::{ServiceError, ServiceResult},
    events::Event,
    requests::{AddGuest, CleanupReport, CreateNetwork, GuestView, NetworkView},
};
use crate::{
    dataplane::Dataplane,
    hostnat::{HostNat, HostNatPlan},
    ifname, ipam,
    model::{self, Guest, GuestNetns, NameKind, Network, State},
    netlink::Netlink,
    netns::Netns,
    store::Store,
    topology::Topology,
};

pub struct Service {
    pub topology: Topology,
    pub(super) store: Store,
    pub state: State,
    pub dataplane: Box<dyn Dataplane>,
    /// netd's own nftables table in the host namespace: masquerading out of
    /// the host and publishing ports on host addresses, for every backend.
    pub hostnat: HostNat,
    /// Events and the daemon's own metrics (`events`, `metrics`).
    pub telemetry: std::sync::Arc<super::metrics::Telemetry>,
}

impl Service {
    pub fn new(
        topology: Topology,
        store: Store,
        state: State,
        dataplane: Box<dyn Dataplane>,
    ) -> Service {
        Service {
            topology,
            store,
            state,
            dataplane,
            hostnat: HostNat::new(None),
            telemetry: super::metrics::Telemetry::started(now()),
        }
    }

    /// Tells every `netd events` consumer.
    pub fn emit(&self, event: Event) {
        self.telemetry.events.emit(event);
    }

    /// What the host's nftables table should hold for the current state.
    fn host_nat_plan(&self) -> HostNatPlan {
        HostNatPlan::from_config(
            &self.topology.config,
            self.state
                .networks
                .values()
                .filter(|net| net.routable)
                .map(|net| net.subnet),
            self.all_port_mappings(),
        )
    }

    /// Makes the host's nftables table match the state: present while some
    /// network exists, gone otherwise.
    pub fn sync_host_nat(&mut self) -> anyhow::Result<()> {
        if self.state.networks.is_empty() {
            return self.hostnat.remove();
        }
        if self.hostnat.enable_forwarding()? {
            info!("enabled IPv4 forwarding in the host namespace (net.ipv4.ip_forward)");
        }
        let plan = self.host_nat_plan();
        self.hostnat.sync(&plan)
    }

    /// Restores the host table if something (a firewall reload, a hand-run
    /// `nft flush ruleset`) removed or changed it.
    pub fn repair_host_nat(&mut self) {
        if self.state.networks.is_empty() || self.hostnat.present().unwrap_or(false) {
            return;
        }
        warn!("netd's host nftables table is missing or altered: restoring it");
        if let Err(err) = self.sync_host_nat() {
            warn!("restoring the host nftables table: {err:#}");
        }
    }

    /// The gateway namespace, built if missing, with its dataplane attached.
    async fn ensure_gateway(&mut self) -> anyhow::Result<()> {
        self.topology.ensure_gateway().await?;
        let host_addrs = self.host_addresses().await?;
        let plumbing = self.topology.gateway_plumbing(host_addrs);
        self.dataplane.attach_gateway(&plumbing)
    }

    /// Every IPv4 address of the host namespace (for hairpin through them).
    async fn host_addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        let host = Netlink::connect(None).await?;
        Ok(host
            .addresses()
            .await?
            .into_iter()
            .map(|(_, net)| net.ip())
            .filter(|ip| !ip.is_loopback())
            .collect())
    }

    /// Builds a network's namespaces and links, then programs its dataplane;
    /// all or nothing.
    async fn build_network(&mut self, network: &Network) -> anyhow::Result<()> {
        self.topology.build_network(network).await?;
        let attached = self
            .topology
            .network_plumbing(network)
            .and_then(|plumbing| self.dataplane.attach_network(&plumbing));
        if let Err(err) = attached {
            self.teardown_network(network).await;
            return Err(err);
        }
        Ok(())
    }

    /// Plugs a guest in and programs its port; all or nothing.
    async fn build_guest(
        &mut self,
        net: &Network,
        guest: &Guest,
        port: &str,
    ) -> anyhow::Result<()> {
        self.topology.build_guest(net, guest, port).await?;
        let plumbing = self.topology.guest_plumbing(net, guest, port);
        if let Err(err) = self.dataplane.attach_guest(&plumbing) {
            self.teardown_guest(net, guest, port).await;
            return Err(err);
        }
        Ok(())
    }

    async fn teardown_guest(&mut self, net: &Network, guest: &Guest, port: &str) {
        let plumbing = self.topology.guest_plumbing(net, guest, port);
        self.dataplane.detach_guest(&plumbing);
        self.topology.teardown_guest(net, guest, port).await;
    }

    async fn teardown_network(&mut self, network: &Network) {
        if let Ok(plumbing) = self.topology.network_plumbing(network) {
            self.dataplane.detach_network(&plumbing);
        }
        self.topology.teardown_network(network).await;
    }

    pub fn network(&self, name: &str) -> ServiceResult<&Network> {
        self.state.networks.get(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no network named {name:?}: `netd network ls` lists them"
            ))
        })
    }

    pub async fn create_network(&mut self, request: CreateNetwork) -> ServiceResult<NetworkView> {
        model::validate_name(NameKind::Network, &request.name)?;
        if let Some(existing) = self.state.networks.get(&request.name) {
            return if same_network_request(existing, request.subnet.as_deref()) {
                Ok(self.network_view(existing))
            } else {
                Err(ServiceError::Conflict(format!(
                    "network {:?} exists with subnet {}{}: remove it first to change it",
                    existing.name,
                    existing.subnet,
                    if existing.routable { " (routable)" } else { "" }
                )))
            };
        }
        let (subnet, routable) = match request.subnet.as_deref() {
            None => (self.topology.config.default_subnet, false),
            Some("auto") => {
                // Skip the default subnet too: it may be routed from the host
                // legally, but an auto pick equal to it would confuse readers.
                let mut occupied = self.occupied().await?;
                occupied.push(ipam::Occupied {
                    net: self.topology.config.default_subnet,
                    what: "the default subnet (default_subnet)".to_string(),
                });
                let pool = self.topology.config.auto_subnet_pool;
                (ipam::pick_auto_subnet(pool, &occupied)?, true)
            }
            Some(cidr) => {
                let subnet = ipam::parse_subnet(cidr)?;
                ipam::validate_subnet(subnet)?;
                ipam::check_subnet_free(subnet, &self.occupied().await?)?;
                (subnet, true)
            }
        };
        let slot = ipam::UplinkPool::new(self.topology.config.uplink_pool)
            .map_err(ServiceError::from)?
            .allocate(&self.state.used_uplink_slots(), self.state.uplink_cursor)?;
        let network = Network {
            name: request.name.clone(),
            subnet,
            routable,
            uplink_slot: slot,
            guests: BTreeMap::new(),
            guest_cursor: None,
            created_at: now(),
            partition: None,
        };

        if let Err(err) = self.ensure_gateway().await {
            self.drop_gateway_if_unused().await;
            return Err(err.into());
        }
        if let Err(err) = self.build_network(&network).await {
            self.drop_gateway_if_unused().await;
            return Err(err.into());
        }
        let previous_cursor = self.state.uplink_cursor;
        self.state
            .networks
            .insert(network.name.clone(), network.clone());
        self.state.uplink_cursor = Some(slot);
        let saved = self
            .sync_host_nat()
            .and_then(|()| Ok(self.store.save(&self.state)?));
        if let Err(err) = saved {
            self.state.networks.remove(&network.name);
            self.state.uplink_cursor = previous_cursor;
            self.teardown_network(&network).await;
            self.drop_gateway_if_unused().await;
            return Err(err.into());
        }
        info!(network = %network.name, %subnet, routable, slot, "network created");
        self.emit(
            Event::new("network.added")
                .network(&network.name)
                .detail(subnet.to_string()),
        );
        Ok(self.network_view(&network))
    }

    pub async fn remove_network(&mut self, name: &str) -> ServiceResult<()> {
        let network = self.network(name)?.clone();
        let ports = bridge_ports(&network);
        for guest in network.guests.values() {
            self.unpublish_mappings(&Self::guest_port_mappings(&network, guest))
                .await;
            self.teardown_guest(&network, guest, &ports[&guest.name])
                .await;
        }
        self.teardown_network(&network).await;
        self.state.networks.remove(name);
        self.store.save(&self.state)?;
        if let Err(err) = self.sync_host_nat() {
            warn!("updating the host nftables table: {err:#}");
        }
        self.drop_gateway_if_unused().await;
        info!(network = %name, "network removed");
        self.emit(Event::new("network.removed").network(name));
        Ok(())
    }

    /// The gateway exists exactly while some network does.
    async fn drop_gateway_if_unused(&mut self) {
        if self.state.networks.is_empty() {
            self.dataplane.detach_gateway();
            self.topology.teardown_gateway().await;
        }
    }

    pub async fn add_guest(
        &mut self,
        network: &str,
        request: AddGuest,
    ) -> ServiceResult<GuestView> {
        let net = self.network(network)?.clone();
        model::validate_name(NameKind::Guest, &request.name)?;
        crate::labels::validate(&request.labels)
            .map_err(|err| ServiceError::Invalid(err.to_string()))?;
        let requested_ip = request
            .ip
            .as_deref()
            .map(|text| {
                text.parse::<Ipv4Addr>().map_err(|_| {
                    ServiceError::Invalid(format!(
                        "bad IP address {text:?}: write it as A.B.C.D, e.g. 172.18.0.10"
                    ))
                })
            })
            .transpose()?;
        let netns = match &request.netns {
            None => GuestNetns::Owned,
            Some(path) => GuestNetns::External {
                path: self.check_external_netns(path)?,
            },
        };
        if let Some(existing) = net.guests.get(&request.name) {
            let same = requested_ip.is_none_or(|ip| ip == existing.ip) && netns == existing.netns;
            return if same {
                Ok(self.guest_view(&net, existing))
            } else {
                Err(ServiceError::Conflict(format!(
                    "guest {:?} exists in network {network:?} with address {}: remove it first to change it",
                    existing.name, existing.ip
                )))
            };
        }
        let ip = match requested_ip {
            Some(ip) => {
                let holder = net.guest_with_ip(ip).map(|g| g.name.as_str());
                ipam::check_guest_ip(net.subnet, ip, holder)?;
                ip
            }
            None => {
                ipam::allocate_guest_ip(&net.name, net.subnet, &net.used_ips(), net.guest_cursor)?
            }
        };
        let guest = Guest {
            name: request.name.clone(),
            ip,
            netns,
            created_at: now(),
            ports: Vec::new(),
            slot: net.free_slot(),
            labels: request.labels.clone(),
        };
        let taken: BTreeSet<String> = bridge_ports(&net).into_values().collect();
        let port = ifname::bridge_port(&guest.name, &taken);

        self.build_guest(&net, &guest, &port).await?;
        let stored = self.state.networks.get_mut(network).expect("checked above");
        let previous_cursor = stored.guest_cursor;
        stored.guests.insert(guest.name.clone(), guest.clone());
        if requested_ip.is_none() {
            stored.guest_cursor = Some(ip);
        }
        if let Err(err) = self.store.save(&self.state) {
            let stored = self.state.networks.get_mut(network).expect("checked above");
            stored.guests.remove(&guest.name);
            stored.guest_cursor = previous_cursor;
            self.teardown_guest(&net, &guest, &port).await;
            return Err(err.into());
        }
        info!(network, guest = %guest.name, %ip, "guest added");
        self.emit(
            Event::new("guest.added")
                .network(network)
                .guest(&guest.name)
                .detail(ip.to_string()),
        );
        let net = self.network(network)?;
        Ok(self.guest_view(net, &guest))
    }

    pub async fn remove_guest(&mut self, network: &str, name: &str) -> ServiceResult<()> {
        let net = self.network(network)?.clone();
        let guest = net.guests.get(name).cloned().ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guest named {name:?} in network {network:?}: `netd guest ls {network}` lists them"
            ))
        })?;
        let port = bridge_ports(&net)
            .remove(name)
            .expect("guest is in the network");
        self.unpublish_mappings(&Self::guest_port_mappings(&net, &guest))
            .await;
        self.teardown_guest(&net, &guest, &port).await;
        self.state
            .networks
            .get_mut(network)
            .expect("checked above")
            .guests
            .remove(name);
        self.store.save(&self.state)?;
        info!(network, guest = name, "guest removed");
        self.emit(Event::new("guest.removed").network(network).guest(name));
        Ok(())
    }

    /// Removes everything this instance owns: its networks, guests, gateway,
    /// and any namespace carrying its prefix. Nothing else.
    pub async fn cleanup(&mut self) -> ServiceResult<CleanupReport> {
        let mut report = CleanupReport::default();
        let names: Vec<String> = self.state.networks.keys().cloned().collect();
        for name in names {
            self.remove_network(&name).await?;
            report.removed.push(format!("network {name}"));
        }
        self.dataplane.detach_gateway();
        self.topology.teardown_gateway().await;
        self.dataplane.forget_all();
        if let Err(err) = self.hostnat.remove() {
            warn!("removing the host nftables table: {err:#}");
        }
        for orphan in Netns::list_with_prefix(self.topology.names.prefix()) {
            if let Err(err) = Netns::delete(&orphan) {
                warn!("removing namespace {orphan}: {err:#}");
            } else {
                report.removed.push(format!("namespace {orphan}"));
            }
        }
        self.state = State::default();
        self.store.save(&self.state)?;
        Ok(report)
    }

    /// Makes the kernel match the desired state: rebuilds what is missing or
    /// damaged, removes namespaces that carry this instance's prefix but are
    /// not wanted. Touches nothing else. Failures are logged, not fatal.
    pub async fn reconcile(&mut self) {
        if !self.state.networks.is_empty()
            && let Err(err) = self.ensure_gateway().await
        {
            warn!("reconcile: gateway: {err:#}");
        }
        let networks: Vec<Network> = self.state.networks.values().cloned().collect();
        for net in &networks {
            let ports = bridge_ports(net);
            if !self.topology.network_intact(net).await {
                info!(network = %net.name, "reconcile: rebuilding network");
                for guest in net.guests.values() {
                    self.teardown_guest(net, guest, &ports[&guest.name]).await;
                }
                self.teardown_network(net).await;
                if let Err(err) = self.build_network(net).await {
                    warn!(network = %net.name, "reconcile: {err:#}");
                    continue;
                }
            } else if let Err(err) = self
                .topology
                .network_plumbing(net)
                .and_then(|plumbing| self.dataplane.attach_network(&plumbing))
            {
                warn!(network = %net.name, "reconcile: dataplane: {err:#}");
            }
            for guest in net.guests.values() {
                let port = &ports[&guest.name];
                if self.topology.guest_intact(net, guest, port).await {
                    let plumbing = self.topology.guest_plumbing(net, guest, port);
                    if let Err(err) = self.dataplane.attach_guest(&plumbing) {
                        warn!(network = %net.name, guest = %guest.name, "reconcile: dataplane: {err:#}");
                    }
                    continue;
                }
                info!(network = %net.name, guest = %guest.name, "reconcile: rebuilding guest");
                self.teardown_guest(net, guest, port).await;
                if let Err(err) = self.build_guest(net, guest, port).await {
                    warn!(network = %net.name, guest = %guest.name, "reconcile: {err:#}");
                }
            }
            // The persisted partition, or none: a rebuilt dataplane gets it
            // back, and one changed behind the state's back is put right.
            let rules = net
                .partition
                .as_ref()
                .map(|partition| partition.rules.clone())
                .unwrap_or_default();
            if let Err(err) = self.dataplane.apply_partition(net.zone(), &rules) {
                warn!(network = %net.name, "reconcile: partition: {err:#}");
            }
        }
        let wanted = self.wanted_namespaces();
        for name in Netns::list_with_prefix(self.topology.names.prefix()) {
            if !wanted.contains(&name) {
                info!(namespace = %name, "reconcile: removing orphan");
                if let Err(err) = Netns::delete(&name) {
                    warn!("reconcile: removing {name}: {err:#}");
                }
            }
        }
        self.remove_orphan_gateway_ports().await;
        let published = self.all_port_mappings();
        if let Err(err) = self.dataplane.sync_published(&published) {
            warn!("reconcile: published ports: {err:#}");
        }
        if let Err(err) = self.sync_host_nat() {
            warn!("reconcile: host nftables table: {err:#}");
        }
        // Partitions that expired while the daemon was down.
        self.heal_expired(now()).await;
    }

    /// Namespaces this instance should have, by name.
    pub fn wanted_namespaces(&self) -> BTreeSet<String> {
        let names = &self.topology.names;
        let mut wanted = BTreeSet::new();
        if !self.state.networks.is_empty() {
            wanted.insert(names.gateway_ns());
        }
        for net in self.state.networks.values() {
            wanted.insert(names.network_ns(&net.name));
            for guest in net.guests.values() {
                if guest.netns == GuestNetns::Owned {
                    wanted.insert(names.guest_ns(&net.name, &guest.name));
                }
            }
        }
        wanted
    }

    async fn remove_orphan_gateway_ports(&self) {
        let Ok(gw) = Netns::open(&self.topology.names.gateway_ns()) else {
            return;
        };
        let Ok(nl) = Netlink::connect(Some(&gw)).await else {
            return;
        };
        let wanted: BTreeSet<String> = self
            .state
            .networks
            .values()
            .map(|n| ifname::gateway_port(n.uplink_slot))
            .collect();
        for link in nl.links().await.unwrap_or_default() {
            if ifname::is_gateway_port(&link.name) && !wanted.contains(&link.name) {
                info!(link = %link.name, "reconcile: removing orphan gateway port");
                let _ = nl.delete_link(&link.name).await;
            }
        }
    }

    /// Host addresses and routes a routable subnet must avoid, plus the
    /// routable networks netd already has.
    async fn occupied(&self) -> anyhow::Result<Vec<ipam::Occupied>> {
        let host = Netlink::connect(None).await?;
        let links = host.links().await?;
        let link_name = |index: u32| crate::netlink::link_name(&links, index);
        let own = &self.topology.config.host_link;
        let mut occupied = Vec::new();
        for (index, net) in host.addresses().await? {
            let link = link_name(index);
            if &link != own {
                occupied.push(ipam::Occupied {
                    net,
                    what: format!("host address {net} on {link}"),
                });
            }
        }
        for route in host.routes().await? {
            let link = route.output_index.map(link_name).unwrap_or_default();
            if &link != own {
                occupied.push(ipam::Occupied {
                    net: route.destination,
                    what: format!("host route {} via {link}", route.destination),
                });
            }
        }
        for net in self.state.networks.values().filter(|n| n.routable) {
            occupied.push(ipam::Occupied {
                net: net.subnet,
                what: format!("network {}", net.name),
            });
        }
        occupied.push(ipam::Occupied {
            net: self.topology.config.host_link_net,
            what: "netd's host link (host_link_net)".to_string(),
        });
        occupied.push(ipam::Occupied {
            net: self.topology.config.uplink_pool,
            what: "netd's uplink pool (uplink_pool)".to_string(),
        });
        Ok(occupied)
    }

    fn check_external_netns(&self, path: &std::path::Path) -> ServiceResult<PathBuf> {
        if !path.is_absolute() {
            return Err(ServiceError::Invalid(format!(
                "--netns {} is not an absolute path: give the namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net",
                path.display()
            )));
        }
        Netns::open_path("external", path).map_err(|err| {
            ServiceError::Invalid(format!(
                "--netns {}: {err:#}: give an existing network namespace file",
                path.display()
            ))
        })?;
        let in_use = self
            .state
            .networks
            .values()
            .flat_map(|n| n.guests.values())
            .find(|g| matches!(&g.netns, GuestNetns::External { path: p } if p == path));
        if let Some(guest) = in_use {
            return Err(ServiceError::Conflict(format!(
                "--netns {} is already guest {:?}: one namespace, one guest",
                path.display(),
                guest.name
            )));
        }
        Ok(path.to_path_buf())
    }

    pub fn network_view(&self, net: &Network) -> NetworkView {
        let uplinks = ipam::UplinkPool::new(self.topology.config.uplink_pool).ok();
        NetworkView {
            name: net.name.clone(),
            subnet: net.subnet.to_string(),
            routable: net.routable,
            bridge_ip: net.bridge_ip().to_string(),
            uplink: uplinks
                .and_then(|u| u.addresses(net.uplink_slot).ok())
                .map(|a| format!("{} <-> {}", a.gateway_side, a.network_side))
                .unwrap_or_default(),
            netns: self.topology.names.network_ns(&net.name),
            guests: net
                .guests
                .values()
                .map(|g| self.guest_view(net, g))
                .collect(),
        }
    }

    pub fn guest_view(&self, net: &Network, guest: &Guest) -> GuestView {
        GuestView {
            network: net.name.clone(),
            name: guest.name.clone(),
            ip: format!("{}/{}", guest.ip, net.subnet.prefix()),
            netns: self.topology.guest_netns_path(net, guest),
            owned_netns: guest.netns == GuestNetns::Owned,
            bridge_port: bridge_ports(net).remove(&guest.name).unwrap_or_default(),
            labels: guest.labels.clone(),
        }
    }
}

/// Bridge port names of a network's guests, assigned in name order so the
/// assignment is the same every time it is computed.
pub fn bridge_ports(net: &Network) -> BTreeMap<String, String> {
    let mut taken = BTreeSet::new();
    let mut ports = BTreeMap::new();
    for name in net.guests.keys() {
        let port = ifname::bridge_port(name, &taken);
        taken.insert(port.clone());
        ports.insert(name.clone(), port);
    }
    ports
}

/// Whether a create request asks for what `existing` already is.
fn same_network_request(existing: &Network, subnet: Option<&str>) -> bool {
    match subnet {
        None => !existing.routable,
        Some("auto") => existing.routable,
        Some(cidr) => {
            existing.routable && ipam::parse_subnet(cidr).is_ok_and(|s| s == existing.subnet)
        }
    }
}

/// Unix seconds.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
