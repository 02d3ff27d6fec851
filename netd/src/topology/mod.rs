//! Builds and removes the host-gateway-network-guest topology over netlink.
//!
//! ```text
//! host ns        gateway ns            network ns "NAME"          guest ns
//! netd0 <------> host0                 uplink (.4i+2/30)
//!                nu<i> (.4i+1/30) <--> ...  br0 (bridge .254) <--- g-GUEST <--> eth0
//! ```
//!
//! Every build step is undone by the matching teardown, which is idempotent
//! and goes on past failures, so a failed build is rolled back by calling it.
//! A teardown returns every failure it went past ([`TeardownErrors`]), for
//! the caller to report; none is dropped.

pub mod announce;
pub mod names;
pub mod plumbing;

use std::{collections::HashMap, fs, net::Ipv4Addr, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use ipnetwork::Ipv4Network;

use crate::{
    config::Config,
    ifname,
    ipam::UplinkPool,
    model::{Guest, GuestNetns, Network},
    netlink::Netlink,
    netns::Netns,
    ports::PortMapping,
};
pub use names::Names;
pub use plumbing::{
    GatewayPlumbing, GuestPlumbing, HostPlumbing, NetworkPlumbing, OverlayPlumbing,
};

use crate::ifname::{GATEWAY_HOST_SIDE, NETWORK_BRIDGE, NETWORK_DELAY_LINE, NETWORK_UPLINK};

fn default_route() -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0 is valid")
}

pub struct Topology {
    pub config: Config,
    pub names: Names,
    uplinks: UplinkPool,
    /// One netlink socket per network namespace, opened once and reused by
    /// every guest request of that network (opening one costs a thread that
    /// enters the namespace). Keyed by network name, with the namespace's
    /// inode so that a namespace made again gets a new socket.
    network_sockets: std::sync::Mutex<HashMap<String, (u64, Arc<Netlink>)>>,
}

impl Topology {
    pub fn new(config: Config) -> Result<Topology> {
        let uplinks = UplinkPool::new(config.uplink_pool)?;
        Ok(Topology {
            names: Names::new(&config.netns_prefix),
            config,
            uplinks,
            network_sockets: Default::default(),
        })
    }

    /// The network's namespace and the netlink socket inside it.
    fn network_netlink(&self, net: &Network) -> Result<(Netns, Arc<Netlink>)> {
        let ns = Netns::open(&self.names.network_ns(&net.name))?;
        let inode = ns.inode()?;
        let mut sockets = self
            .network_sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((held, nl)) = sockets.get(&net.name)
            && *held == inode
        {
            return Ok((ns, nl.clone()));
        }
        let nl = Arc::new(Netlink::connect(Some(&ns))?);
        sockets.insert(net.name.clone(), (inode, nl.clone()));
        Ok((ns, nl))
    }

    fn forget_network_netlink(&self, net: &Network) {
        self.network_sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&net.name);
    }

    /// The host as the dataplane's host side sees it, with the routable
    /// networks' subnets and every published port.
    pub fn host_plumbing(
        &self,
        routable_subnets: Vec<Ipv4Network>,
        ports: Vec<PortMapping>,
    ) -> HostPlumbing {
        HostPlumbing {
            host_link: self.config.host_link.clone(),
            host_link_net: self.config.host_link_net,
            gateway_ip: self.config.gateway_ip(),
            routable_subnets,
            ports,
            guests_reach_host: self.config.guests_reach_host,
        }
    }

    /// The gateway as the dataplane sees it.
    pub fn gateway_plumbing(&self, host_addrs: Vec<Ipv4Addr>) -> GatewayPlumbing {
        GatewayPlumbing {
            netns: Path::new(crate::netns::NETNS_RUN_DIR).join(self.names.gateway_ns()),
            host_side: GATEWAY_HOST_SIDE.to_owned(),
            gateway_ip: self.config.gateway_ip(),
            host_ip: self.config.host_ip(),
            host_addrs,
            host_link: self.config.host_link.clone(),
            host_datapath: self.config.host_datapath,
            host_nat_ports: self.config.host_nat_ports,
        }
    }

    /// A network as the dataplane sees it.
    /// A spanned network's overlay device and its other nodes' guests
    /// (None for another network).
    pub fn overlay_plumbing(&self, net: &Network) -> Option<OverlayPlumbing> {
        let span = net.span.as_ref()?;
        Some(OverlayPlumbing {
            name: net.name.clone(),
            zone: net.zone(),
            netns: Path::new(crate::netns::NETNS_RUN_DIR).join(self.names.network_ns(&net.name)),
            device: crate::cluster::vxlan::VXLAN_DEVICE.to_owned(),
            gateway: net.bridge_ip(),
            remotes: span
                .remote
                .values()
                .map(|g| (g.ip, g.mac.0, g.slot))
                .collect(),
        })
    }

    pub fn network_plumbing(&self, net: &Network) -> Result<NetworkPlumbing> {
        let run = Path::new(crate::netns::NETNS_RUN_DIR);
        Ok(NetworkPlumbing {
            name: net.name.clone(),
            gateway_netns: run.join(self.names.gateway_ns()),
            zone: net.zone(),
            netns: run.join(self.names.network_ns(&net.name)),
            gateway_port: ifname::gateway_port(net.uplink_slot),
            uplink_ip: self.uplinks.addresses(net.uplink_slot)?.network_side.ip(),
            subnet: net.subnet,
            routable: net.routable,
            internal: net.internal,
            mtu: net.mtu,
        })
    }

    /// A guest as the dataplane sees it.
    pub fn guest_plumbing(&self, net: &Network, guest: &Guest) -> GuestPlumbing {
        GuestPlumbing {
            network: net.name.clone(),
            name: guest.name.clone(),
            zone: net.zone(),
            ip: guest.ip,
            slot: guest.slot,
            network_netns: Path::new(crate::netns::NETNS_RUN_DIR)
                .join(self.names.network_ns(&net.name)),
            port: guest.bridge_port.clone(),
            ifname: guest.ifname().to_owned(),
            guest_netns: self.guest_netns_path(net, guest),
        }
    }

    /// The gateway namespace and the host's veth into it. Idempotent: an
    /// intact gateway is left alone, a damaged one rebuilt.
    pub async fn ensure_gateway(&self) -> Result<()> {
        let gw_name = self.names.gateway_ns();
        let host = Netlink::connect(None)?;
        if Netns::exists(&gw_name) && host.link(&self.config.host_link).await?.is_some() {
            return Ok(());
        }
        self.teardown_gateway()
            .await
            .log("removing a damaged gateway");
        let result = self.build_gateway(&host).await;
        if result.is_err() {
            self.teardown_gateway()
                .await
                .log("rolling back a failed gateway build");
        }
        result
    }

    async fn build_gateway(&self, host: &Netlink) -> Result<()> {
        let gw = Netns::create(&self.names.gateway_ns())?;
        enable_forwarding(&gw)?;
        let gw_nl = Netlink::connect(Some(&gw))?;
        gw_nl.set_up("lo").await?;
        let host_link = &self.config.host_link;
        host.add_veth_into(host_link, &gw, GATEWAY_HOST_SIDE)
            .await?;
        host.add_address(host_link, self.config.host_addr()).await?;
        host.set_up(host_link).await?;
        gw_nl
            .add_address(GATEWAY_HOST_SIDE, self.config.gateway_addr())
            .await?;
        gw_nl.set_up(GATEWAY_HOST_SIDE).await?;
        gw_nl
            .add_route(default_route(), Some(self.config.host_ip()), None)
            .await?;
        Ok(())
    }

    /// Removes the gateway namespace (and with it the host's veth).
    pub async fn teardown_gateway(&self) -> TeardownErrors {
        let mut errors = TeardownErrors::default();
        errors.note(Netns::delete(&self.names.gateway_ns()));
        match Netlink::connect(None) {
            Ok(host) => errors.note(host.delete_link(&self.config.host_link).await),
            Err(err) => errors.push(err.context("removing the host link")),
        }
        errors
    }

    /// Builds a network's namespace, bridge and uplink. On failure, what was
    /// built is removed again.
    pub async fn build_network(&self, net: &Network) -> Result<()> {
        let result = self.try_build_network(net).await;
        if result.is_err() {
            self.teardown_network(net)
                .await
                .log("rolling back a failed network build");
        }
        result
    }

    async fn try_build_network(&self, net: &Network) -> Result<()> {
        let addrs = self.uplinks.addresses(net.uplink_slot)?;
        let gw = Netns::open(&self.names.gateway_ns())?;
        let gw_nl = Netlink::connect(Some(&gw))?;
        let ns = Netns::create(&self.names.network_ns(&net.name))?;
        enable_forwarding(&ns)?;
        let nl = Netlink::connect(Some(&ns))?;
        nl.set_up("lo").await?;

        let gw_port = ifname::gateway_port(net.uplink_slot);
        gw_nl.add_veth_into(&gw_port, &ns, NETWORK_UPLINK).await?;
        fail_point("network-after-uplink-veth")?;
        gw_nl.add_address(&gw_port, addrs.gateway_side).await?;
        gw_nl.set_up(&gw_port).await?;
        nl.add_address(NETWORK_UPLINK, addrs.network_side).await?;
        nl.set_up(NETWORK_UPLINK).await?;
        nl.add_route(default_route(), Some(addrs.gateway_side.ip()), None)
            .await?;

        nl.add_bridge(NETWORK_BRIDGE).await?;
        if let Some(mtu) = net.mtu {
            nl.set_mtu(NETWORK_BRIDGE, mtu).await?;
        }
        nl.add_address(
            NETWORK_BRIDGE,
            Ipv4Network::new(net.bridge_ip(), net.subnet.prefix())?,
        )
        .await?;
        nl.set_up(NETWORK_BRIDGE).await?;

        if net.routable {
            gw_nl
                .add_route(net.subnet, Some(addrs.network_side.ip()), Some(&gw_port))
                .await?;
            Netlink::connect(None)?
                .add_route(
                    net.subnet,
                    Some(self.config.gateway_ip()),
                    Some(&self.config.host_link),
                )
                .await?;
        }
        Ok(())
    }

    /// Removes a network's namespace (its bridge, ports and uplink end go
    /// with it), its gateway port and host route. Guests' own namespaces are
    /// the caller's to remove first. Idempotent.
    pub async fn teardown_network(&self, net: &Network) -> TeardownErrors {
        let mut errors = TeardownErrors::default();
        if net.span.is_some() {
            // Deleted now, not with the namespace: a VXLAN device holds its
            // VNI's socket in the host namespace until the kernel's
            // namespace cleanup destroys it, some time later, and a new
            // device for that VNI (the network back on this node) would be
            // refused meanwhile ("File exists").
            if let Ok((_, nl)) = self.network_netlink(net) {
                errors.note(nl.delete_link(crate::cluster::vxlan::VXLAN_DEVICE).await);
            }
        }
        self.forget_network_netlink(net);
        errors.note(Netns::delete(&self.names.network_ns(&net.name)));
        // No gateway namespace: no gateway port to remove.
        if let Ok(gw) = Netns::open(&self.names.gateway_ns()) {
            let port = ifname::gateway_port(net.uplink_slot);
            match Netlink::connect(Some(&gw)) {
                Ok(gw_nl) => errors.note(gw_nl.delete_link(&port).await),
                Err(err) => errors.push(err.context(format!("removing gateway port {port}"))),
            }
        }
        if net.routable {
            match Netlink::connect(None) {
                Ok(host) => errors.note(host.delete_route(net.subnet).await),
                Err(err) => {
                    errors.push(err.context(format!("removing the host route to {}", net.subnet)))
                }
            }
        }
        errors
    }

    /// Links in the network's namespace that belong to no guest of the
    /// state (a bridge port and its peer left by a daemon killed while
    /// plugging a guest in): the namespace is netd's alone, so anything
    /// but `lo`, the uplink, the bridge, the guests' ports, the delay line
    /// and the rate shapers is an orphan (the dataplane removes a delay
    /// line or a shaper nothing needs when it applies the network's
    /// policy).
    pub async fn orphan_network_links(&self, net: &Network) -> Vec<String> {
        self.network_health(net)
            .await
            .map(|health| health.orphan_links)
            .unwrap_or_default()
    }

    /// What one dump of the network namespace's links tells about the
    /// network and every guest plugged into it (None: the namespace cannot
    /// be read). A guest's bridge port that is up, on the bridge and has a
    /// carrier has its peer, the guest's interface, up as well: one look
    /// per network, not one per guest (`status` of 20,000 guests).
    pub async fn network_health(&self, net: &Network) -> Option<NetworkHealth> {
        let (_, nl) = self.network_netlink(net).ok()?;
        let links = nl.links().await.ok()?;
        let by_name = |name: &str| links.iter().find(|link| link.name == name);
        let bridge = by_name(NETWORK_BRIDGE);
        let intact = bridge.is_some_and(|link| link.up)
            && by_name(NETWORK_UPLINK).is_some_and(|link| link.up);
        let mut wanted: std::collections::BTreeSet<&str> =
            ["lo", NETWORK_UPLINK, NETWORK_BRIDGE, NETWORK_DELAY_LINE].into();
        wanted.extend(net.guests.values().map(|guest| guest.bridge_port.as_str()));
        if net.span.is_some() {
            wanted.insert(crate::cluster::vxlan::VXLAN_DEVICE);
        }
        let orphan_links = links
            .iter()
            .map(|link| &link.name)
            .filter(|name| !wanted.contains(name.as_str()))
            // The nftables dataplane's delay lines (one per delaying
            // clause) and rate shapers: it removes those no policy needs.
            .filter(|name| !ifname::is_delay_line(name) && !ifname::is_rate_shaper(name))
            .cloned()
            .collect();
        let broken_guests = net
            .guests
            .values()
            .filter(|guest| {
                !by_name(&guest.bridge_port).is_some_and(|port| {
                    port.up && port.carrier && port.controller == bridge.map(|b| b.index)
                })
            })
            .map(|guest| guest.name.clone())
            .collect();
        Some(NetworkHealth {
            intact,
            orphan_links,
            broken_guests,
        })
    }

    /// Removes what [`Topology::orphan_network_links`] finds.
    pub async fn remove_orphan_network_links(&self, net: &Network) {
        let orphans = self.orphan_network_links(net).await;
        if orphans.is_empty() {
            return;
        }
        let Ok(ns) = Netns::open(&self.names.network_ns(&net.name)) else {
            return;
        };
        let Ok(nl) = Netlink::connect(Some(&ns)) else {
            return;
        };
        for link in orphans {
            tracing::info!(network = %net.name, %link, "reconcile: removing orphan link");
            if let Err(err) = nl.delete_link(&link).await {
                tracing::warn!(
                    "reconcile: removing {link} in network {}: {err:#}",
                    net.name
                );
            }
        }
    }

    /// Whether the network's namespace, bridge and uplink are all there.
    pub async fn network_intact(&self, net: &Network) -> bool {
        let Ok(ns) = Netns::open(&self.names.network_ns(&net.name)) else {
            return false;
        };
        let Ok(nl) = Netlink::connect(Some(&ns)) else {
            return false;
        };
        for link in [NETWORK_UPLINK, NETWORK_BRIDGE] {
            if !matches!(nl.link(link).await, Ok(Some(l)) if l.up) {
                return false;
            }
        }
        true
    }

    /// The guest's namespace handle: netd's own, or the runtime's.
    pub fn guest_netns_path(&self, net: &Network, guest: &Guest) -> std::path::PathBuf {
        match &guest.netns {
            GuestNetns::Owned => Path::new(crate::netns::NETNS_RUN_DIR)
                .join(self.names.guest_ns(&net.name, &guest.name)),
            GuestNetns::External { path, .. } | GuestNetns::Connected { path, .. } => path.clone(),
        }
    }

    /// Plugs a guest into its network's bridge. On failure, what was built is
    /// removed again.
    pub async fn build_guest(&self, net: &Network, guest: &Guest) -> Result<()> {
        let result = self.try_build_guest(net, guest).await;
        if result.is_err() {
            self.teardown_guest(net, guest)
                .await
                .log("rolling back a failed guest build");
        }
        result
    }

    async fn try_build_guest(&self, net: &Network, guest: &Guest) -> Result<()> {
        let port = guest.bridge_port.as_str();
        let (_net_ns, nl) = self.network_netlink(net)?;
        let guest_ns = match &guest.netns {
            GuestNetns::Owned => Netns::create(&self.names.guest_ns(&net.name, &guest.name))?,
            GuestNetns::External { path, .. } => {
                if let Some(problem) = external_netns_problem(guest) {
                    bail!(
                        "{problem}: netd never plugs a guest into another namespace; remove \
                         the guest (netd guest rm {} {}) and add it again with --netns",
                        net.name,
                        guest.name
                    );
                }
                Netns::open_path(&guest.name, path).context("opening the guest's --netns")?
            }
            GuestNetns::Connected { network, path } => Netns::open_path(&guest.name, path)
                .with_context(|| {
                    format!("opening the namespace of guest {}/{}", network, guest.name)
                })?,
        };
        let eth = guest.ifname();
        let guest_nl = Netlink::connect(Some(&guest_ns))?;
        if guest_nl.link(eth).await?.is_some() {
            bail!(
                "namespace {} already has an {eth}: give netd a namespace without one",
                guest_ns.path().display()
            );
        }
        // A port of that name left by a guest removed a moment ago, which
        // the kernel may still be destroying, belongs to no guest now.
        if nl.link(port).await?.is_some() {
            nl.delete_link(port).await?;
        }
        let bridge = nl.index(NETWORK_BRIDGE).await?;
        nl.add_guest_veth(port, bridge, &guest_ns, eth, net.mac_of(guest), net.mtu)
            .await?;
        fail_point("guest-after-veth")?;
        guest_nl.set_up("lo").await?;
        guest_nl
            .add_address(eth, Ipv4Network::new(guest.ip, net.subnet.prefix())?)
            .await?;
        guest_nl.set_up(eth).await?;
        // One default route: the guest's own network's. A connected
        // network is reached through its subnet's route alone.
        if guest.interface.is_none() {
            guest_nl
                .add_route(default_route(), Some(net.bridge_ip()), None)
                .await?;
        }
        Ok(())
    }

    /// The guest's gratuitous ARP (see [`announce`]), once its port is
    /// programmed (an announcement before that is dropped as spoofed).
    pub fn announce_guest(&self, net: &Network, guest: &Guest) -> Result<()> {
        let netns = Netns::open_path(&guest.name, &self.guest_netns_path(net, guest))?;
        announce::announce(&netns, guest.ifname(), net.mac_of(guest), guest.ip)
    }

    /// Removes a guest as `guest rm` does: a namespace netd made just goes,
    /// and the kernel destroys the veth pair inside it in its namespace
    /// cleanup, off the request's path (deleting a link waits for RCU grace
    /// periods, tens of milliseconds); a port still being destroyed when its
    /// name is reused is removed by `try_build_guest`. Other guests are
    /// unplugged by [`Topology::teardown_guest`].
    pub async fn remove_guest(&self, net: &Network, guest: &Guest) -> TeardownErrors {
        if guest.netns != GuestNetns::Owned {
            return self.teardown_guest(net, guest).await;
        }
        let mut errors = TeardownErrors::default();
        errors.note(Netns::delete(&self.names.guest_ns(&net.name, &guest.name)));
        errors
    }

    /// Unplugs a guest: removes its bridge port (the veth pair, so its `eth0`
    /// goes too) and, if netd made it, its namespace. Idempotent; when it
    /// returns, nothing of the guest is left.
    pub async fn teardown_guest(&self, net: &Network, guest: &Guest) -> TeardownErrors {
        let port = guest.bridge_port.as_str();
        let mut errors = TeardownErrors::default();
        // No network namespace: no bridge port to remove.
        if Netns::exists(&self.names.network_ns(&net.name)) {
            match self.network_netlink(net) {
                Ok((_, nl)) => errors.note(nl.delete_link(port).await),
                Err(err) => errors.push(err.context(format!("removing bridge port {port}"))),
            }
        }
        if guest.netns == GuestNetns::Owned {
            errors.note(Netns::delete(&self.names.guest_ns(&net.name, &guest.name)));
        }
        errors
    }

    /// Whether the guest's namespace holds its `eth0` and its bridge port exists.
    pub async fn guest_intact(&self, net: &Network, guest: &Guest) -> bool {
        if external_netns_problem(guest).is_some() {
            return false;
        }
        let port = guest.bridge_port.as_str();
        let path = self.guest_netns_path(net, guest);
        let Ok(guest_ns) = Netns::open_path(&guest.name, &path) else {
            return false;
        };
        let (Ok(guest_nl), Ok((_, nl))) =
            (Netlink::connect(Some(&guest_ns)), self.network_netlink(net))
        else {
            return false;
        };
        matches!(guest_nl.link(guest.ifname()).await, Ok(Some(l)) if l.up)
            && matches!(nl.link(port).await, Ok(Some(l)) if l.up)
    }
}

/// See [`Topology::network_health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkHealth {
    /// Its bridge and uplink are there and up.
    pub intact: bool,
    /// Links in its namespace that belong to no guest of the state.
    pub orphan_links: Vec<String>,
    /// Guests whose bridge port is missing, down, off the bridge or without
    /// a peer that is up.
    pub broken_guests: Vec<String>,
}

/// What is wrong with an external guest's namespace, if anything: gone
/// from its path, or another namespace than the one the guest was added
/// with (deleted and made again there, or a reused PID).
pub fn external_netns_problem(guest: &Guest) -> Option<String> {
    let GuestNetns::External { path, id } = &guest.netns else {
        return None;
    };
    let found = Netns::open_path(&guest.name, path).and_then(|ns| ns.identity());
    match (found, id) {
        (Err(err), _) => Some(format!(
            "guest {}: its namespace {} is gone ({err:#})",
            guest.name,
            path.display()
        )),
        (Ok((dev, ino)), Some(id)) if (dev, ino) != (id.dev, id.ino) => Some(format!(
            "guest {}: {} is another namespace (device {dev} inode {ino}) than the one it was \
             added with ({id})",
            guest.name,
            path.display()
        )),
        _ => None,
    }
}

/// Every failure one teardown went past, in the order they happened. A
/// teardown never stops at a failure: each step is tried, and each failure
/// is kept here for the caller to report (as netavark's error list does).
#[derive(Debug, Default)]
#[must_use = "a teardown's failures are to be reported"]
pub struct TeardownErrors(Vec<anyhow::Error>);

impl TeardownErrors {
    /// Keeps `result`'s error, if any.
    fn note(&mut self, result: Result<()>) {
        if let Err(err) = result {
            self.0.push(err);
        }
    }

    fn push(&mut self, err: anyhow::Error) {
        self.0.push(err);
    }

    /// Logs every failure, each as a warning that says what was being done.
    pub fn log(self, doing: &str) {
        for err in self.0 {
            tracing::warn!("{doing}: {err:#}");
        }
    }
}

/// Lets netd's own namespaces route between their interfaces. /proc/sys/net
/// belongs to the namespace of the thread that opens it.
fn enable_forwarding(ns: &Netns) -> Result<()> {
    ns.run_in(|| fs::write("/proc/sys/net/ipv4/conf/all/forwarding", "1"))?
        .with_context(|| format!("enabling IPv4 forwarding in {}", ns.name()))
}

/// Test hook: `NETD_FAIL_AT=<point>` makes the named step fail, so tests can
/// show that a failure half-way leaves nothing behind.
fn fail_point(point: &str) -> Result<()> {
    crash_point(point);
    if std::env::var("NETD_FAIL_AT").is_ok_and(|p| p == point) {
        bail!("injected failure at {point} (NETD_FAIL_AT)");
    }
    Ok(())
}

/// Test hook: `NETD_CRASH_AT=<point>` or `<point>#<n>` kills the daemon
/// with SIGKILL the first (or n-th) time it reaches the named step, as a
/// power cut or an OOM kill would. Unset: nothing.
pub fn crash_point(point: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Ok(wanted) = std::env::var("NETD_CRASH_AT") else {
        return;
    };
    let (name, nth) = match wanted.split_once('#') {
        Some((name, n)) => (name, n.parse().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
