//! The daemon's request logic: validate everything, then apply to the kernel,
//! then persist; roll back what was applied if a later step fails.
//!
//! One `Service` owns the desired state, the topology, the dataplane and the
//! store; its fields are private, and the API, the caller check and the
//! daemon's loop use its methods. Its methods are split by concern into
//! extension modules, each a child of this one so that it reaches the
//! fields without making them public:
//!
//! - here: networks, guests, start-up reconcile, cleanup, listings;
//! - `port_requests`: the service's handling of `netd port` (what a spec
//!   means is `crate::ports`);
//! - `partition_requests`: the service's handling of `netd partition` (what
//!   a verb means is `crate::partition`);
//! - `status`: what `netd status` reports (the live kernel state and drift);
//! - `telemetry`: events, the metrics scrape, drift counted as repaired.

mod connect_requests;
pub mod guest_add;
pub mod partition_requests;
mod port_requests;
mod resource_requests;
mod shared;
pub mod span_requests;
mod status;
mod telemetry;

pub use shared::{NetworkGuard, Shared};
pub use status::StatusSnapshot;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{info, warn};

use super::{
    error::{ServiceError, ServiceResult},
    events::Event,
    metrics::Telemetry,
    requests::{CleanupReport, CreateNetwork, GuestView, NetworkView},
};
use crate::{
    dataplane::Dataplane,
    dns::{Resolvers, upstream::Upstreams},
    ifname, ipam,
    model::{self, Guest, GuestNetns, NameKind, Network, State},
    netlink::{HostView, Netlink},
    netns::Netns,
    store::Store,
    topology::Topology,
};

pub struct Service {
    /// Shared with the steps of a request that run without the service
    /// lock (`guest_add`).
    topology: Arc<Topology>,
    store: Store,
    state: State,
    dataplane: Box<dyn Dataplane>,
    /// Events and the daemon's own metrics; shared with the API layer,
    /// which never waits for the service lock to use it.
    telemetry: Arc<Telemetry>,
    /// Each network's resolver, and the names they answer.
    resolvers: Resolvers,
    /// The cluster this node belongs to; None: a single host
    /// (`span_requests`).
    cluster: Option<crate::cluster::Cluster>,
    /// Each spanned network's partition revision this node has applied.
    span_applied: BTreeMap<String, i64>,
}

impl Service {
    pub fn new(
        topology: Topology,
        store: Store,
        mut state: State,
        dataplane: Box<dyn Dataplane>,
    ) -> Service {
        for net in state.networks.values_mut() {
            assign_missing_bridge_ports(net);
        }
        // Checked when the configuration was loaded.
        let upstreams = topology.config.dns_upstream_addrs().unwrap_or_default();
        let resolvers = Resolvers::new(Upstreams::from_config(&upstreams));
        resolvers.update(&state);
        Service {
            topology: Arc::new(topology),
            store,
            state,
            dataplane,
            telemetry: Telemetry::started(now()),
            resolvers,
            cluster: None,
            span_applied: BTreeMap::new(),
        }
    }

    /// The resolvers take the names of the state as it is now: called after
    /// every change of guests, networks or partitions, so names follow at
    /// once.
    fn names_changed(&self) {
        self.resolvers.update(&self.state);
    }

    /// The same for a change to one network (most requests): its names
    /// only, whatever the number of networks and guests.
    fn network_names_changed(&self, network: &str) {
        self.resolvers.update_network(&self.state, network);
    }

    /// Serves `network`'s resolver on its bridge address, in its namespace
    /// (a no-op while it runs there already).
    fn start_resolver(&mut self, network: &Network) -> anyhow::Result<()> {
        let netns = Netns::open(&self.topology.names.network_ns(&network.name))?;
        self.resolvers
            .ensure(&network.name, &netns, network.bridge_ip())
    }

    /// `netd resolve NAME[.NETWORK]`: guests' addresses by name.
    pub fn resolve(&self, name: &str) -> Vec<crate::dns::directory::Resolved> {
        self.resolvers.resolve_from_host(name)
    }

    /// The desired state.
    pub fn desired_state(&self) -> &State {
        &self.state
    }

    /// Keeps a copy of the saved state to roll back to, unless it holds no
    /// network (which would push good copies out).
    pub fn keep_backup(&self) -> Result<(), crate::store::StoreError> {
        if self.state.networks.is_empty() {
            return Ok(());
        }
        self.store.keep_backup()
    }

    /// How many networks the desired state holds.
    pub fn network_count(&self) -> usize {
        self.state.networks.len()
    }

    /// The daemon's periodic work: expired connections removed, the
    /// dataplane (host side included) checked and repaired, due timed
    /// partitions healed.
    pub fn housekeeping(&mut self, now: u64) {
        if let Err(err) = self.dataplane.collect_garbage() {
            warn!("conntrack garbage collection: {err:#}");
        }
        self.repair_counted();
        self.heal_expired(now);
    }

    /// Every guest's network, name and namespace path (for telling who calls
    /// the API).
    pub fn guest_namespaces(&self) -> Vec<(&str, &str, PathBuf)> {
        self.state
            .networks
            .values()
            .flat_map(|net| {
                net.guests.values().map(move |guest| {
                    (
                        net.name.as_str(),
                        guest.name.as_str(),
                        self.topology.guest_netns_path(net, guest),
                    )
                })
            })
            .collect()
    }

    /// Makes the dataplane's host side match the state: present while some
    /// network exists, gone otherwise.
    fn sync_host(&mut self) -> anyhow::Result<()> {
        let host = (!self.state.networks.is_empty()).then(|| {
            let routable = self.state.routable_subnets().into_iter().collect();
            self.topology
                .host_plumbing(routable, self.all_port_mappings())
        });
        self.dataplane.sync_host(host.as_ref())
    }

    /// The gateway namespace, built if missing, with its dataplane attached
    /// (hairpin through every address of `host`).
    async fn ensure_gateway(&mut self, host: &HostView) -> anyhow::Result<()> {
        self.topology.ensure_gateway().await?;
        let plumbing = self.topology.gateway_plumbing(host.reachable_ips());
        self.dataplane.attach_gateway(&plumbing)
    }

    /// Builds a network's namespaces and links, then programs its dataplane;
    /// all or nothing.
    async fn build_network(&mut self, network: &Network) -> anyhow::Result<()> {
        self.topology.build_network(network).await?;
        let attached = self
            .topology
            .network_plumbing(network)
            .and_then(|plumbing| self.dataplane.attach_network(&plumbing))
            .and_then(|()| self.start_resolver(network));
        let attached = match attached {
            Ok(()) => self.ensure_overlay(network).await,
            Err(err) => Err(err),
        };
        if let Err(err) = attached {
            self.teardown_network(network).await;
            return Err(err);
        }
        Ok(())
    }

    /// Plugs a guest in and programs its port; all or nothing.
    async fn build_guest(&mut self, net: &Network, guest: &Guest) -> anyhow::Result<()> {
        self.topology.build_guest(net, guest).await?;
        let plumbing = self.topology.guest_plumbing(net, guest);
        if let Err(err) = self.dataplane.attach_guest(&plumbing) {
            self.teardown_guest(net, guest).await;
            return Err(err);
        }
        if let Err(err) = self.topology.announce_guest(net, guest) {
            // Peers learn the guest by ARP as usual; only a stale entry of
            // an earlier guest at its address waits to go stale.
            tracing::warn!("announcing guest {}/{}: {err:#}", net.name, guest.name);
        }
        Ok(())
    }

    async fn teardown_guest(&mut self, net: &Network, guest: &Guest) {
        let plumbing = self.topology.guest_plumbing(net, guest);
        self.dataplane.detach_guest(&plumbing);
        self.topology
            .teardown_guest(net, guest)
            .await
            .log(&format!("removing guest {}/{}", net.name, guest.name));
    }

    async fn teardown_network(&mut self, network: &Network) {
        self.resolvers.stop(&network.name);
        if let Some(overlay) = self.topology.overlay_plumbing(network) {
            self.dataplane.detach_overlay(&overlay);
        }
        if let Ok(plumbing) = self.topology.network_plumbing(network) {
            self.dataplane.detach_network(&plumbing);
        }
        self.topology
            .teardown_network(network)
            .await
            .log(&format!("removing network {}", network.name));
    }

    pub fn network(&self, name: &str) -> ServiceResult<&Network> {
        self.state.networks.get(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no network named {name:?}: `netd network ls` lists them"
            ))
        })
    }

    pub async fn create_network(&mut self, request: CreateNetwork) -> ServiceResult<NetworkView> {
        if request.span {
            return self.create_spanned_network(request).await;
        }
        model::validate_name(NameKind::Network, &request.name)?;
        if let Some(existing) = self.state.networks.get(&request.name) {
            return if same_network_request(existing, &request) {
                Ok(self.network_view(existing))
            } else {
                Err(ServiceError::Conflict(format!(
                    "network {:?} exists with subnet {}{}{}{}: remove it first to change it",
                    existing.name,
                    existing.subnet,
                    if existing.routable { " (routable)" } else { "" },
                    if existing.internal { ", internal" } else { "" },
                    existing
                        .mtu
                        .map(|mtu| format!(", MTU {mtu}"))
                        .unwrap_or_default(),
                )))
            };
        }
        let host = HostView::read().await?;
        if let Some(mtu) = request.mtu {
            let uplink = host.uplink_mtu();
            crate::mtu::check_network_mtu(
                mtu,
                request.internal,
                uplink.as_ref().map(|(link, mtu)| (link.as_str(), *mtu)),
            )
            .map_err(|err| ServiceError::Invalid(err.to_string()))?;
        }
        let (subnet, routable) = match request.subnet.as_deref() {
            None => (self.topology.config.default_subnet, false),
            Some("auto") => {
                // Skip the default subnet too: it may be routed from the host
                // legally, but an auto pick equal to it would confuse readers.
                let mut occupied = self.occupied(&host);
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
                ipam::check_not_reserved(subnet)?;
                ipam::check_subnet_free(subnet, &self.occupied(&host))?;
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
            internal: request.internal,
            mtu: request.mtu,
            span: None,
        };
        self.install_network(network, &host).await
    }

    /// Puts a new network in the desired state, then builds it; all or
    /// nothing.
    async fn install_network(
        &mut self,
        network: Network,
        host: &HostView,
    ) -> ServiceResult<NetworkView> {
        let slot = network.uplink_slot;
        let subnet = network.subnet;
        let routable = network.routable;
        // The desired state first, then the kernel: a daemon killed half-way
        // finds the network in its state and finishes it at restart, instead
        // of an unowned half-built network beside a state that knows nothing
        // of it (see `daemon::load_state`). A create repeated after such a
        // crash gets the network.
        let previous_cursor = self.state.uplink_cursor;
        self.state
            .networks
            .insert(network.name.clone(), network.clone());
        self.state.uplink_cursor = Some(slot);
        self.network_names_changed(&network.name);
        if let Err(err) = self.store.save_network(&self.state, &network.name) {
            self.network_names_changed(&network.name);
            self.state.networks.remove(&network.name);
            self.state.uplink_cursor = previous_cursor;
            self.network_names_changed(&network.name);
            return Err(err.into());
        }
        crash_point("network-saved");
        let built = match self.ensure_gateway(host).await {
            Ok(()) => self.build_network(&network).await,
            Err(err) => Err(err),
        };
        let built = built.and_then(|()| {
            crash_point("network-built");
            self.sync_host()
        });
        if let Err(err) = built {
            self.state.networks.remove(&network.name);
            self.state.uplink_cursor = previous_cursor;
            self.network_names_changed(&network.name);
            self.teardown_network(&network).await;
            self.drop_gateway_if_unused().await;
            if let Err(save) = self.store.save_network(&self.state, &network.name) {
                warn!("rolling back network {}: {save}", network.name);
            }
            if let Err(sync) = self.sync_host() {
                warn!("rolling back network {}: {sync:#}", network.name);
            }
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
        if network.span.is_some() {
            self.leave_spanned(&network).await?;
        }
        // Its guests' interfaces on other networks go first, while their
        // namespaces still exist.
        for guest in network.guests.values().filter(|g| g.home().is_none()) {
            self.drop_connections_of(name, &guest.name).await?;
        }
        for guest in network.guests.values() {
            self.dataplane
                .unpublish(&Self::guest_port_mappings(&network, guest));
            self.teardown_guest(&network, guest).await;
            crash_point("network-rm-guest");
        }
        self.teardown_network(&network).await;
        crash_point("network-torn-down");
        self.state.networks.remove(name);
        self.network_names_changed(name);
        self.store.save_network(&self.state, name)?;
        crash_point("network-rm-saved");
        if let Err(err) = self.sync_host() {
            warn!("updating the dataplane's host side: {err:#}");
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
            self.topology
                .teardown_gateway()
                .await
                .log("removing the gateway");
        }
    }

    pub async fn remove_guest(&mut self, network: &str, name: &str) -> ServiceResult<()> {
        let net = self.network(network)?.clone();
        let guest = net.guests.get(name).cloned().ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guest named {name:?} in network {network:?}: `netd guest ls {network}` lists them"
            ))
        })?;
        if let Some(home) = guest.home() {
            return Err(ServiceError::Invalid(format!(
                "guest {name:?} is in network {network:?} by a connection from network \
                 {home:?}: `netd network disconnect {network} {name}` removes it here, `netd \
                 guest rm {home} {name}` everywhere"
            )));
        }
        // The cluster first: with etcd away the guest stays, whole.
        if net.span.is_some() {
            self.release_span_guest(network, name).await?;
        }
        self.drop_connections_of(network, name).await?;
        let net = self.network(network)?.clone();
        self.dataplane
            .unpublish(&Self::guest_port_mappings(&net, &guest));
        let plumbing = self.topology.guest_plumbing(&net, &guest);
        self.dataplane.detach_guest(&plumbing);
        self.topology
            .remove_guest(&net, &guest)
            .await
            .log(&format!("removing guest {}/{}", net.name, guest.name));
        crash_point("guest-torn-down");
        self.state
            .networks
            .get_mut(network)
            .expect("checked above")
            .guests
            .remove(name);
        self.network_names_changed(network);
        self.store.save_network(&self.state, network)?;
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
        self.topology
            .teardown_gateway()
            .await
            .log("removing the gateway");
        self.dataplane.forget_all();
        for orphan in Netns::list_with_prefix(self.topology.names.prefix()) {
            if let Err(err) = Netns::delete(&orphan) {
                warn!("removing namespace {orphan}: {err:#}");
            } else {
                report.removed.push(format!("namespace {orphan}"));
            }
        }
        self.state = State::default();
        self.names_changed();
        self.resolvers.stop_all();
        self.store.save(&self.state)?;
        Ok(report)
    }

    /// Makes the kernel match the desired state: rebuilds what is missing or
    /// damaged, removes namespaces that carry this instance's prefix but are
    /// not wanted. Touches nothing else. Failures are logged, not fatal.
    pub async fn reconcile(&mut self) {
        if !self.state.networks.is_empty() {
            let gateway = match HostView::read().await {
                Ok(host) => self.ensure_gateway(&host).await,
                Err(err) => Err(err),
            };
            if let Err(err) = gateway {
                warn!("reconcile: gateway: {err:#}");
            }
        }
        let networks: Vec<Network> = self.state.networks.values().cloned().collect();
        for net in &networks {
            if !self.topology.network_intact(net).await {
                info!(network = %net.name, "reconcile: rebuilding network");
                for guest in net.guests.values() {
                    self.teardown_guest(net, guest).await;
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
            if let Err(err) = self.start_resolver(net) {
                warn!(network = %net.name, "reconcile: resolver: {err:#}");
            }
            if let Err(err) = self.ensure_overlay(net).await {
                warn!(network = %net.name, "reconcile: overlay: {err:#}");
            }
            self.topology.remove_orphan_network_links(net).await;
            // Connections live in other networks' guests' namespaces: they
            // come after every network's own guests (below).
            for guest in net.guests.values().filter(|g| g.home().is_none()) {
                self.reconcile_guest(net, guest).await;
            }
            // The persisted partition, or none: a rebuilt dataplane gets it
            // back, and one changed behind the state's back is put right.
            let rules = partition_requests::rules_in_force(net);
            if let Err(err) = self.dataplane.apply_partition(net.zone(), &rules) {
                warn!(network = %net.name, "reconcile: partition: {err:#}");
            }
        }
        for net in &networks {
            for guest in net.guests.values().filter(|g| g.home().is_some()) {
                self.reconcile_guest(net, guest).await;
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
        self.remove_orphan_host_routes().await;
        let published = self.all_port_mappings();
        if let Err(err) = self.dataplane.sync_published(&published) {
            warn!("reconcile: published ports: {err:#}");
        }
        // What a crash left in the dataplane for networks and guests gone.
        let zones = networks.iter().map(Network::zone).collect();
        // Remote guests of spanned networks have entries too (their slots).
        let guests = networks
            .iter()
            .flat_map(|net| {
                let remote = net.span.iter().flat_map(|span| span.remote.values());
                net.guests
                    .values()
                    .map(|g| g.ip)
                    .chain(remote.map(|r| r.ip))
                    .map(move |ip| (net.zone(), ip))
            })
            .collect();
        self.dataplane.forget_stale(&zones, &guests);
        if let Err(err) = self.sync_host() {
            warn!("reconcile: the dataplane's host side: {err:#}");
        }
        // Partitions that expired while the daemon was down.
        self.heal_expired(now());
    }

    /// Re-attaches an intact guest's port, rebuilds a broken one.
    async fn reconcile_guest(&mut self, net: &Network, guest: &Guest) {
        if self.topology.guest_intact(net, guest).await {
            let plumbing = self.topology.guest_plumbing(net, guest);
            if let Err(err) = self.dataplane.attach_guest(&plumbing) {
                warn!(network = %net.name, guest = %guest.name, "reconcile: dataplane: {err:#}");
            }
            return;
        }
        info!(network = %net.name, guest = %guest.name, "reconcile: rebuilding guest");
        self.teardown_guest(net, guest).await;
        if let Err(err) = self.build_guest(net, guest).await {
            warn!(network = %net.name, guest = %guest.name, "reconcile: {err:#}");
        }
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

    /// Host routes through netd's host link that no routable network wants
    /// (a daemon killed between adding a network's route and saving, or a
    /// state rolled back): see [`orphan_host_routes`].
    fn orphan_host_routes(&self, host: &HostView) -> Vec<ipnetwork::Ipv4Network> {
        let wanted = self.state.routable_subnets();
        orphan_host_routes(
            host,
            &self.topology.config.host_link,
            self.topology.config.host_link_net,
            &wanted,
        )
    }

    async fn remove_orphan_host_routes(&self) {
        let (Ok(host), Ok(nl)) = (HostView::read().await, Netlink::connect(None)) else {
            return;
        };
        for route in self.orphan_host_routes(&host) {
            info!(%route, "reconcile: removing orphan host route");
            if let Err(err) = nl.delete_route(route).await {
                warn!("reconcile: removing host route {route}: {err:#}");
            }
        }
    }

    async fn remove_orphan_gateway_ports(&self) {
        let Ok(gw) = Netns::open(&self.topology.names.gateway_ns()) else {
            return;
        };
        let Ok(nl) = Netlink::connect(Some(&gw)) else {
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
                if let Err(err) = nl.delete_link(&link.name).await {
                    warn!("reconcile: removing {}: {err:#}", link.name);
                }
            }
        }
    }

    /// Host addresses and routes a routable subnet must avoid, plus the
    /// routable networks netd already has.
    fn occupied(&self, host: &HostView) -> Vec<ipam::Occupied> {
        let own = &self.topology.config.host_link;
        let mut occupied = Vec::new();
        for (net, link) in &host.addresses {
            if link != own {
                occupied.push(ipam::Occupied {
                    net: *net,
                    what: format!("host address {net} on {link}"),
                });
            }
        }
        for (destination, link) in &host.routes {
            if link != own {
                occupied.push(ipam::Occupied {
                    net: *destination,
                    what: format!("host route {destination} via {link}"),
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
        occupied
    }

    /// Checks a `--netns` for a new guest and returns it with its identity:
    /// an absolute path to a network namespace that is neither the daemon's
    /// own nor one netd made (the gateway's, a network's, a guest's), and
    /// that no other guest lives in.
    fn check_external_netns(&self, path: &std::path::Path) -> ServiceResult<GuestNetns> {
        let shown = path.display();
        if !path.is_absolute() {
            return Err(ServiceError::Invalid(format!(
                "--netns {shown} is not an absolute path: give the namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net"
            )));
        }
        let identity = Netns::open_path("external", path)
            .and_then(|ns| ns.identity())
            .map_err(|err| {
                ServiceError::Invalid(format!(
                    "--netns {shown}: {err:#}: give an existing network namespace file, e.g. \
                     /run/netns/NAME or /proc/PID/ns/net"
                ))
            })?;
        let id_of = |path: &std::path::Path| {
            Netns::open_path("check", path)
                .and_then(|ns| ns.identity())
                .ok()
        };
        if id_of(std::path::Path::new("/proc/self/ns/net")) == Some(identity) {
            return Err(ServiceError::Invalid(format!(
                "--netns {shown} is the daemon's own network namespace (the host's): give the \
                 container's namespace, or leave --netns out to get a new one"
            )));
        }
        for name in Netns::list_with_prefix(self.topology.names.prefix()) {
            let own = std::path::Path::new(crate::netns::NETNS_RUN_DIR).join(&name);
            if id_of(&own) == Some(identity) {
                return Err(ServiceError::Invalid(format!(
                    "--netns {shown} is netd's own namespace {name} (the gateway's, a \
                     network's or a guest's): give the container's namespace, or leave \
                     --netns out to get a new one"
                )));
            }
        }
        let id = crate::model::NetnsId {
            dev: identity.0,
            ino: identity.1,
        };
        let in_use = self
            .state
            .networks
            .values()
            .flat_map(|n| n.guests.values())
            .find(|g| match &g.netns {
                GuestNetns::External { path: p, id: held } => {
                    p == path || *held == Some(id) || id_of(p) == Some(identity)
                }
                GuestNetns::Owned | GuestNetns::Connected { .. } => false,
            });
        if let Some(guest) = in_use {
            return Err(ServiceError::Conflict(format!(
                "--netns {shown} is already guest {:?}: one namespace, one guest",
                guest.name
            )));
        }
        Ok(GuestNetns::External {
            path: path.to_path_buf(),
            id: Some(id),
        })
    }

    /// The namespace of guest `name` of `network` if it already lives at
    /// `path`: a repeated identical `guest add` answers the same.
    fn existing_guest_netns(
        &self,
        network: &str,
        name: &str,
        path: &std::path::Path,
    ) -> Option<GuestNetns> {
        let guest = self.state.networks.get(network)?.guests.get(name)?;
        match &guest.netns {
            GuestNetns::External { path: held, .. } if held == path => Some(guest.netns.clone()),
            _ => None,
        }
    }

    /// Every network, as listings show them.
    pub fn network_views(&self) -> Vec<NetworkView> {
        self.state
            .networks
            .values()
            .map(|net| self.network_view(net))
            .collect()
    }

    /// A network's guests, as listings show them.
    pub fn guest_views(&self, network: &str) -> ServiceResult<Vec<GuestView>> {
        let net = self.network(network)?;
        Ok(net
            .guests
            .values()
            .map(|guest| self.guest_view(net, guest))
            .collect())
    }

    /// One guest, as listings show it.
    pub fn inspect_guest(&self, network: &str, guest: &str) -> ServiceResult<GuestView> {
        let net = self.network(network)?;
        let found = net.guests.get(guest).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guest named {guest:?} in network {network:?}: `netd guest ls {network}` lists them"
            ))
        })?;
        Ok(self.guest_view(net, found))
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
            internal: net.internal,
            mtu: net.mtu,
            vni: net.span.as_ref().map(|span| span.vni),
        }
    }

    pub fn guest_view(&self, net: &Network, guest: &Guest) -> GuestView {
        GuestView {
            network: net.name.clone(),
            name: guest.name.clone(),
            ip: format!("{}/{}", guest.ip, net.subnet.prefix()),
            netns: self.topology.guest_netns_path(net, guest),
            owned_netns: guest.netns == GuestNetns::Owned,
            bridge_port: guest.bridge_port.clone(),
            labels: guest.labels.clone(),
            mac: crate::mac::Mac(net.mac_of(guest)).to_string(),
            nameserver: net.bridge_ip().to_string(),
            interface: guest.ifname().to_owned(),
            connected_from: guest.home().map(str::to_owned),
        }
    }
}

/// Gives every guest of a state file older than `Guest::bridge_port` the
/// bridge port it had then: assigned in name order, each avoiding the ones
/// before it.
fn assign_missing_bridge_ports(net: &mut Network) {
    let mut taken = BTreeSet::new();
    for guest in net.guests.values_mut() {
        if guest.bridge_port.is_empty() {
            guest.bridge_port = ifname::bridge_port(&guest.name, &taken);
        }
        taken.insert(guest.bridge_port.clone());
    }
}

/// The routes of `host` through `host_link` whose destination is neither the
/// link's own subnet nor one of the `wanted` routable subnets: netd made
/// them (nothing else routes through its link) and no network wants them.
fn orphan_host_routes(
    host: &HostView,
    host_link: &str,
    host_link_net: ipnetwork::Ipv4Network,
    wanted: &BTreeSet<ipnetwork::Ipv4Network>,
) -> Vec<ipnetwork::Ipv4Network> {
    host.routes
        .iter()
        .filter(|(destination, link)| {
            link == host_link
                && destination.network() != host_link_net.network()
                && !wanted.contains(destination)
        })
        .map(|(destination, _)| *destination)
        .collect()
}

/// Whether a create request asks for what `existing` already is.
fn same_network_request(existing: &Network, request: &CreateNetwork) -> bool {
    if existing.internal != request.internal || existing.mtu != request.mtu {
        return false;
    }
    match request.subnet.as_deref() {
        None => !existing.routable,
        Some("auto") => existing.routable,
        Some(cidr) => {
            existing.routable && ipam::parse_subnet(cidr).is_ok_and(|s| s == existing.subnet)
        }
    }
}

/// Test hook: `NETD_CRASH_AT=<point>` (or `<point>#<n>`, the n-th time it
/// is reached) kills the daemon with SIGKILL at the named step, so that a
/// test can show that a restart after a crash at any step leaves no drift
/// and no orphan.
pub fn crash_point(point: &str) {
    crate::topology::crash_point(point);
}

/// A guest address as asked (`--ip`), parsed.
fn parse_guest_ip(text: Option<&str>) -> ServiceResult<Option<Ipv4Addr>> {
    text.map(|text| {
        text.parse::<Ipv4Addr>().map_err(|_| {
            ServiceError::Invalid(format!(
                "bad IP address {text:?}: write it as A.B.C.D, e.g. 172.18.0.10"
            ))
        })
    })
    .transpose()
}

/// The address a new interface on `net` gets: the one asked for, if it is
/// inside the subnet and free, or else the next free one.
fn guest_address(net: &Network, requested: Option<Ipv4Addr>) -> ServiceResult<Ipv4Addr> {
    Ok(match requested {
        Some(ip) => {
            let holder = net.guest_with_ip(ip).map(|g| g.name.as_str());
            ipam::check_guest_ip(net.subnet, ip, holder)?;
            ip
        }
        None => ipam::allocate_guest_ip(&net.name, net.subnet, &net.used_ips(), net.guest_cursor)?,
    })
}

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::Config;

    fn guest(name: &str, bridge_port: &str) -> Guest {
        Guest {
            mac: None,
            interface: None,
            name: name.to_owned(),
            ip: Ipv4Addr::new(172, 18, 0, 1),
            netns: GuestNetns::Owned,
            created_at: 0,
            ports: Vec::new(),
            slot: 0,
            bridge_port: bridge_port.to_owned(),
            labels: Default::default(),
        }
    }

    fn service_with(guests: Vec<Guest>, dir: &std::path::Path) -> Service {
        let web = Network {
            internal: false,
            mtu: None,
            span: None,
            name: "web".to_owned(),
            subnet: crate::config::DEFAULT_SUBNET,
            routable: false,
            uplink_slot: 0,
            guests: guests.into_iter().map(|g| (g.name.clone(), g)).collect(),
            guest_cursor: None,
            created_at: 0,
            partition: None,
        };
        let state = State {
            networks: BTreeMap::from([("web".to_owned(), web)]),
            uplink_cursor: Some(0),
        };
        Service::new(
            Topology::new(Config::default()).unwrap(),
            Store::open(dir).unwrap(),
            state,
            Box::new(crate::dataplane::testing::Recorder::default()),
        )
    }

    fn bridge_ports(service: &Service) -> Vec<String> {
        let views = service.guest_views("web").unwrap();
        views.into_iter().map(|view| view.bridge_port).collect()
    }

    #[test]
    fn guests_of_an_older_state_file_get_the_bridge_ports_they_had() {
        let dir = tempfile::tempdir().unwrap();
        // Too long for "g-NAME": hashed, the second one rehashed if needed.
        let long = ["a-guest-name-too-long-1", "a-guest-name-too-long-2"];
        let svc = service_with(
            vec![guest("web1", ""), guest(long[0], ""), guest(long[1], "")],
            dir.path(),
        );
        let first = ifname::bridge_port(long[0], &BTreeSet::new());
        let second = ifname::bridge_port(long[1], &BTreeSet::from([first.clone()]));
        assert_eq!(bridge_ports(&svc), [first, second, "g-web1".to_owned()]);
    }

    #[test]
    fn routes_through_the_host_link_that_no_network_wants_are_orphans() {
        let net = |cidr: &str| cidr.parse::<ipnetwork::Ipv4Network>().unwrap();
        let host = HostView {
            addresses: vec![],
            routes: vec![
                (net("172.18.255.0/30"), "netd0".to_owned()),
                (net("172.18.1.0/24"), "netd0".to_owned()),
                (net("172.18.2.0/24"), "netd0".to_owned()),
                (net("172.18.3.0/24"), "eth0".to_owned()),
                (net("0.0.0.0/0"), "eth0".to_owned()),
            ],
            mtus: vec![],
        };
        let wanted = BTreeSet::from([net("172.18.1.0/24")]);
        assert_eq!(
            orphan_host_routes(&host, "netd0", net("172.18.255.0/30"), &wanted),
            [net("172.18.2.0/24")]
        );
    }

    #[test]
    fn stored_bridge_ports_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service_with(vec![guest("web1", "g-kept")], dir.path());
        assert_eq!(bridge_ports(&svc), ["g-kept"]);
    }
}
