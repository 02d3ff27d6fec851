//! `netd status`: the live kernel state of every namespace this instance
//! owns (what is there, not what was asked), and where it drifts from the
//! desired state.

use std::collections::BTreeSet;

use futures::StreamExt;

use super::Service;
use crate::{
    daemon::requests::{LinkStatus, NamespaceStatus, Status, UnderlayPeer, UnderlayStatus},
    model::State,
    netlink::Netlink,
    netns::Netns,
    nft::Nft,
    topology::Topology,
};

/// What `status` needs from the service, taken under its lock (the state,
/// and what the dataplane's check and figures need: eBPF map reads, or the
/// nftables tables to list); the rest, one netlink round and `nft list`
/// per namespace, runs after the lock is released
/// (`StatusSnapshot::finish`), so that a status of hundreds of networks
/// never holds up a change.
pub struct StatusSnapshot {
    /// The service's own: its long-lived netlink socket per network is
    /// reused, not opened again per network per status.
    topology: std::sync::Arc<Topology>,
    state: State,
    wanted: BTreeSet<String>,
    dataplane: String,
    dataplane_read: crate::dataplane::StatusRead,
    /// A cluster node's connection, for the underlay probe.
    cluster: Option<crate::cluster::Cluster>,
}

/// Networks whose links `status` reads at once.
const HEALTH_READS_AT_ONCE: usize = 16;

impl Service {
    /// The live kernel state of every namespace this instance owns, the
    /// dataplane's figures, and every drift from the desired state.
    pub async fn status(&self) -> Status {
        self.status_snapshot().finish(true).await
    }

    /// The part of `status` that needs the service (see [`StatusSnapshot`]).
    pub fn status_snapshot(&self) -> StatusSnapshot {
        // Looked up once per zone: a map, not a walk of every network.
        let zones: std::collections::HashMap<u32, &str> = self
            .state
            .networks
            .values()
            .map(|net| (net.zone(), net.name.as_str()))
            .collect();
        let zone_name = |zone: u32| {
            if zone == 0 {
                return "host side".to_owned();
            }
            zones.get(&zone).map_or_else(
                || format!("zone {zone} (removed)"),
                |name| (*name).to_owned(),
            )
        };
        let dataplane_read = self.dataplane.status_read(&zone_name);
        StatusSnapshot {
            topology: self.topology.clone(),
            state: self.state.clone(),
            wanted: self.wanted_namespaces(),
            dataplane: self.topology.config.dataplane.to_string(),
            dataplane_read,
            cluster: self.cluster.clone(),
        }
    }
}

/// The underlay probe of `status` (see `cluster::probe`): every other
/// registered node, whether it answered and the round trip.
async fn underlay_status(cluster: crate::cluster::Cluster) -> UnderlayStatus {
    use std::{collections::BTreeMap, net::SocketAddrV4};
    let me = cluster.config().clone();
    let nodes = match cluster.etcd.nodes().await {
        Ok(nodes) => nodes,
        Err(err) => {
            return UnderlayStatus {
                peers: Vec::new(),
                problem: Some(format!("not probed: {err}")),
            };
        }
    };
    let mut targets = BTreeMap::new();
    let mut unprobed = Vec::new();
    for (node, _) in nodes.into_iter().filter(|(node, _)| node.name != me.node) {
        match node.probe_port {
            Some(port) => {
                targets.insert(node.name, SocketAddrV4::new(node.underlay, port));
            }
            None => unprobed.push(node.name),
        }
    }
    let probed =
        crate::cluster::probe::probe(me.underlay, &targets, crate::cluster::probe::PROBE_TIMEOUT)
            .await;
    let mut peers: Vec<UnderlayPeer> = match probed {
        Ok(results) => results
            .into_iter()
            .map(|result| UnderlayPeer {
                node: result.node,
                address: result.address.to_string(),
                reachable: Some(result.rtt.is_some()),
                rtt_ms: result.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
            })
            .collect(),
        Err(err) => {
            return UnderlayStatus {
                peers: Vec::new(),
                problem: Some(format!(
                    "not probed: no socket on underlay address {}: {err}",
                    me.underlay
                )),
            };
        }
    };
    // A node of a netd without the probe: listed, neither way judged.
    peers.extend(unprobed.into_iter().map(|node| UnderlayPeer {
        node,
        address: String::new(),
        reachable: None,
        rtt_ms: None,
    }));
    peers.sort_by(|a, b| a.node.cmp(&b.node));
    UnderlayStatus {
        peers,
        problem: None,
    }
}

impl StatusSnapshot {
    /// The rest of `status`: drift found in the kernel (one dump per
    /// network namespace) and, if `namespaces`, every namespace's links,
    /// addresses, routes and programs as they are (a netlink round per
    /// namespace: seconds at 20,000 guests, so only when asked).
    pub async fn finish(self, namespaces_too: bool) -> Status {
        // The probe waits on other nodes: it runs meanwhile.
        let underlay = self
            .cluster
            .clone()
            .map(|c| tokio::spawn(underlay_status(c)));
        let prefix = self.topology.names.prefix();
        let mut namespaces = Vec::new();
        let live: BTreeSet<String> = Netns::list_with_prefix(prefix).into_iter().collect();
        for name in live.iter().filter(|_| namespaces_too) {
            match namespace_status(name).await {
                Ok(status) => namespaces.push(status),
                Err(err) => namespaces.push(NamespaceStatus {
                    name: format!("{name} (unreadable: {err:#})"),
                    links: vec![],
                    routes: vec![],
                    nft_tables: vec![],
                }),
            }
        }
        let mut drift = Vec::new();
        let wanted = &self.wanted;
        for missing in wanted.difference(&live) {
            drift.push(format!("namespace {missing} is missing"));
        }
        for orphan in live.difference(wanted) {
            drift.push(format!(
                "namespace {orphan} is not in the desired state (orphan)"
            ));
        }
        // One link dump per network, a few at once (each waits on the
        // kernel), in the networks' order.
        let present: Vec<&crate::model::Network> = self
            .state
            .networks
            .values()
            .filter(|net| live.contains(&self.topology.names.network_ns(&net.name)))
            .collect();
        let reads: Vec<_> = present
            .iter()
            .map(|net| self.topology.network_health(net))
            .collect();
        let healths: Vec<_> = futures::stream::iter(reads)
            .buffered(HEALTH_READS_AT_ONCE)
            .collect()
            .await;
        for (net, health) in present.into_iter().zip(healths) {
            let Some(health) = health else {
                drift.push(format!("network {}: its namespace is unreadable", net.name));
                continue;
            };
            if !health.intact {
                drift.push(format!(
                    "network {}: bridge or uplink missing or down",
                    net.name
                ));
            }
            for link in health.orphan_links {
                drift.push(format!(
                    "network {}: link {link} belongs to no guest (orphan)",
                    net.name
                ));
            }
            for guest in net.guests.values() {
                if let Some(problem) = crate::topology::external_netns_problem(guest) {
                    drift.push(format!("network {}: {problem}", net.name));
                } else if health.broken_guests.contains(&guest.name)
                    || (guest.netns == crate::model::GuestNetns::Owned
                        && !live.contains(&self.topology.names.guest_ns(&net.name, &guest.name)))
                {
                    drift.push(format!(
                        "guest {}/{}: eth0 or bridge port {} missing or down",
                        net.name, guest.name, guest.bridge_port
                    ));
                }
            }
        }
        match crate::netlink::HostView::read().await {
            Ok(host) => {
                let routable = self.state.routable_subnets();
                let config = &self.topology.config;
                for route in super::orphan_host_routes(
                    &host,
                    &config.host_link,
                    config.host_link_net,
                    &routable,
                ) {
                    drift.push(format!(
                        "host route {route} dev {} belongs to no routable network (orphan)",
                        config.host_link
                    ));
                }
            }
            Err(err) => drift.push(format!("host routes unreadable: {err:#}")),
        }
        let read = self.dataplane_read;
        let (dataplane_drift, figures) = tokio::task::spawn_blocking(move || read.read())
            .await
            .unwrap_or_else(|err| {
                (
                    Vec::new(),
                    Err(format!("the dataplane's check failed: {err}")),
                )
            });
        drift.extend(dataplane_drift);
        let figures = match figures {
            Ok(figures) => Some(figures),
            Err(err) => {
                drift.push(format!("dataplane unreadable: {err}"));
                None
            }
        };
        Status {
            dataplane: self.dataplane,
            figures,
            namespace_count: live.len(),
            networks: self.state.networks.len(),
            guests: self
                .state
                .networks
                .values()
                .map(|net| net.guests.len())
                .sum(),
            namespaces,
            drift,
            underlay: match underlay {
                Some(probe) => Some(probe.await.unwrap_or_else(|err| UnderlayStatus {
                    peers: Vec::new(),
                    problem: Some(format!("not probed: {err}")),
                })),
                None => None,
            },
        }
    }
}

async fn namespace_status(name: &str) -> anyhow::Result<NamespaceStatus> {
    let ns = Netns::open(name)?;
    let nl = Netlink::connect(Some(&ns))?;
    let links = nl.links().await?;
    let addresses = nl.addresses().await?;
    let routes = nl.routes().await?;
    let link_name = |index: u32| crate::netlink::link_name(&links, index);
    let mut link_statuses = Vec::new();
    for link in &links {
        let mut tc_programs = ns
            .run_in(|| attached_programs(&link.name))
            .unwrap_or_default();
        tc_programs.extend(nl.bpf_filters(link.index).await.unwrap_or_default());
        link_statuses.push(LinkStatus {
            name: link.name.clone(),
            up: link.up,
            bridge: link.controller.map(link_name),
            addresses: addresses
                .iter()
                .filter(|(index, _)| *index == link.index)
                .map(|(_, net)| net.to_string())
                .collect(),
            tc_programs,
        });
    }
    let routes = routes
        .iter()
        .map(|r| {
            let mut text = if r.destination.prefix() == 0 {
                "default".to_string()
            } else {
                r.destination.to_string()
            };
            if let Some(gw) = r.gateway {
                text.push_str(&format!(" via {gw}"));
            }
            if let Some(index) = r.output_index {
                text.push_str(&format!(" dev {}", link_name(index)));
            }
            text
        })
        .collect();
    let nft_tables = Netns::open(name)
        .ok()
        .and_then(|ns| Nft::new(Some(ns)).tables().ok())
        .unwrap_or_default();
    Ok(NamespaceStatus {
        name: name.to_string(),
        links: link_statuses,
        routes,
        nft_tables,
    })
}

/// Names of the programs attached to `link` through TCX (current namespace).
fn attached_programs(link: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let mut out = Vec::new();
    for (direction, attach) in [
        ("ingress", TcAttachType::Ingress),
        ("egress", TcAttachType::Egress),
    ] {
        if let Ok((_, programs)) = SchedClassifier::query_tcx(link, attach) {
            for program in programs {
                let name = program.name_as_str().unwrap_or("?").to_string();
                out.push(format!("{direction}:{name}"));
            }
        }
    }
    out
}
