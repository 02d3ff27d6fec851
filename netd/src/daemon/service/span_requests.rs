//! The service's side of a cluster (see `crate::cluster`): spanned
//! networks created in etcd and built on each node that has guests in
//! them, guests' addresses and slots allocated cluster-wide, the VXLAN
//! forwarding entries kept to what etcd says, and `netd node ls`. A service
//! without a cluster refuses these requests, naming the fix, and changes
//! nothing else.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::{Service, Shared, now};
use crate::{
    cluster::{
        Cluster, fdb,
        records::{Applied, SpanNetwork, SpanPartition},
        vxlan,
    },
    daemon::{
        error::{ServiceError, ServiceResult},
        requests::{
            AppliedView, ClusterPartitionView, CreateNetwork, NetworkView, NodeGuestView, NodeView,
        },
    },
    ipam,
    model::{self, NameKind, Network, RemoteGuest, Span},
    netlink::HostView,
    netns::Netns,
};

impl Service {
    /// Makes this service a node of `cluster`.
    pub fn set_cluster(&mut self, cluster: Cluster) {
        self.cluster = Some(cluster);
    }

    /// The cluster, or an error saying how `what` gets one.
    fn require_cluster(&self, what: &str) -> ServiceResult<Cluster> {
        self.cluster.clone().ok_or_else(|| {
            ServiceError::Invalid(format!(
                "{what} needs a cluster, and this daemon runs a single host: start it with \
                 `netd daemon --cluster-endpoints URL,... --node NAME --underlay-address IP` \
                 (or cluster_endpoints, node and underlay_address in netd.toml)"
            ))
        })
    }

    /// `netd network create NAME --span`: the definition in etcd (its VNI
    /// allocated there), then this node's part of it.
    pub async fn create_spanned_network(
        &mut self,
        request: CreateNetwork,
    ) -> ServiceResult<NetworkView> {
        let cluster = self.require_cluster("a spanned network (--span)")?;
        model::validate_name(NameKind::Network, &request.name)?;
        if request.internal {
            return Err(ServiceError::Invalid(
                "--internal with --span is not supported yet: create the spanned network \
                 without --internal"
                    .to_owned(),
            ));
        }
        let subnet = match request.subnet.as_deref() {
            None => self.topology.config.default_subnet,
            Some("auto") => {
                return Err(ServiceError::Invalid(
                    "a spanned network's subnet is the same on every node and routed from no \
                     host: give --subnet CIDR or leave it out (the default subnet), not auto"
                        .to_owned(),
                ));
            }
            Some(cidr) => {
                let subnet = ipam::parse_subnet(cidr)?;
                ipam::validate_subnet(subnet)?;
                ipam::check_not_reserved(subnet)?;
                subnet
            }
        };
        let host = HostView::read().await?;
        let most = vxlan::overlay_mtu(&host.addresses, &host.mtus, cluster.config().underlay)
            .map_err(ServiceError::Invalid)?;
        let mtu = match request.mtu {
            Some(mtu) if mtu > most => {
                return Err(ServiceError::Invalid(format!(
                    "--mtu {mtu} does not fit the overlay: the underlay link carries at most \
                     {most} bytes of a guest's frame after VXLAN's {} bytes; give --mtu {most} \
                     or less",
                    vxlan::VXLAN_OVERHEAD
                )));
            }
            Some(mtu) => crate::mtu::check_network_mtu(mtu, true, None)
                .map_err(|err| ServiceError::Invalid(err.to_string()))?,
            None => most,
        };
        if let Some(existing) = self.state.networks.get(&request.name) {
            return match existing.span {
                Some(_) if existing.subnet == subnet => Ok(self.network_view(existing)),
                _ => Err(ServiceError::Conflict(format!(
                    "network {:?} exists on this node with subnet {}{}: remove it first to \
                     change it",
                    existing.name,
                    existing.subnet,
                    if existing.span.is_some() {
                        " (spanned)"
                    } else {
                        " (this host's alone)"
                    },
                ))),
            };
        }
        let (span, created) = cluster
            .etcd
            .create_network(&request.name, subnet, mtu, now())
            .await?;
        if !created && span.subnet != subnet {
            return Err(ServiceError::Conflict(format!(
                "spanned network {:?} exists in the cluster with subnet {} (created by node \
                 {}): leave out --subnet, or pick another name",
                span.name, span.subnet, span.created_by
            )));
        }
        if created {
            info!(network = %span.name, vni = span.vni, "spanned network defined in etcd");
        }
        self.install_spanned(span).await
    }

    /// This node's part of spanned network `name`, built from its
    /// definition in etcd when the node has none yet (its first guest here).
    /// Ok(true): built now; Ok(false): there already, or the cluster has no
    /// such network either.
    pub(super) async fn adopt_spanned(&mut self, name: &str) -> ServiceResult<bool> {
        if self.state.networks.contains_key(name) {
            return Ok(false);
        }
        let Some(cluster) = self.cluster.clone() else {
            return Ok(false);
        };
        match cluster.etcd.network(name).await? {
            Some(span) => self.install_spanned(span).await.map(|_| true),
            None => Ok(false),
        }
    }

    /// Removes this node's part of spanned network `name` that a refused
    /// guest add had just built (it holds no guest), and nothing in etcd.
    pub(super) async fn drop_spanned_part(&mut self, name: &str) {
        let Some(network) = self.state.networks.remove(name) else {
            return;
        };
        self.network_names_changed(name);
        self.teardown_network(&network).await;
        if let Err(err) = self.store.save_network(&self.state, name) {
            warn!(network = name, "removing this node's part again: {err}");
        }
        if let Err(err) = self.sync_host() {
            warn!(network = name, "removing this node's part again: {err:#}");
        }
        self.drop_gateway_if_unused().await;
    }

    /// Builds this node's part of `span`: namespace, bridge and uplink (as
    /// any network) and the VXLAN device, then its forwarding entries.
    async fn install_spanned(&mut self, span: SpanNetwork) -> ServiceResult<NetworkView> {
        let host = HostView::read().await?;
        let slot = ipam::UplinkPool::new(self.topology.config.uplink_pool)
            .map_err(ServiceError::from)?
            .allocate(&self.state.used_uplink_slots(), self.state.uplink_cursor)?;
        let network = Network {
            name: span.name.clone(),
            subnet: span.subnet,
            routable: false,
            uplink_slot: slot,
            guests: BTreeMap::new(),
            guest_cursor: None,
            created_at: now(),
            partition: None,
            internal: false,
            mtu: Some(span.mtu),
            span: Some(Span {
                vni: span.vni,
                remote: BTreeMap::new(),
            }),
        };
        let view = self.install_network(network, &host).await?;
        self.sync_overlay().await;
        Ok(view)
    }

    /// The VXLAN device of a spanned network's namespace (nothing for
    /// another network). Part of building a network, so reconcile restores
    /// it too.
    pub(super) async fn ensure_overlay(&mut self, network: &Network) -> anyhow::Result<()> {
        let Some(span) = &network.span else {
            return Ok(());
        };
        let Some(cluster) = &self.cluster else {
            warn!(
                network = %network.name,
                "a spanned network on a daemon without cluster settings: its guests reach only \
                 this node's guests"
            );
            return Ok(());
        };
        let ns = Netns::open(&self.topology.names.network_ns(&network.name))?;
        let mtu = network.mtu.unwrap_or(1500 - vxlan::VXLAN_OVERHEAD);
        vxlan::ensure(&ns, span.vni, cluster.config().underlay, mtu).await?;
        self.attach_overlay(network)
    }

    /// The dataplane's part of the overlay: the other nodes' guests and the
    /// check on what arrives from them.
    fn attach_overlay(&mut self, network: &Network) -> anyhow::Result<()> {
        match self.topology.overlay_plumbing(network) {
            Some(plumbing) => self.dataplane.attach_overlay(&plumbing),
            None => Ok(()),
        }
    }

    /// Takes the other nodes' guests of spanned network `name` from its
    /// allocation `table`: persisted, given to the dataplane, and the
    /// partition in force compiled again against them (a newcomer stays
    /// outside it, as on one host). Nothing happens if they did not change.
    fn take_remote_guests(
        &mut self,
        name: &str,
        table: &crate::cluster::records::SpanGuests,
        me: &str,
    ) -> anyhow::Result<()> {
        let remote: BTreeMap<String, RemoteGuest> = table
            .guests
            .iter()
            .filter(|(_, g)| g.node != me)
            .map(|(guest, g)| {
                let remote = RemoteGuest {
                    node: g.node.clone(),
                    ip: g.ip,
                    mac: g.mac,
                    slot: g.slot,
                };
                (guest.clone(), remote)
            })
            .collect();
        let Some(net) = self.state.networks.get_mut(name) else {
            return Ok(());
        };
        let Some(span) = net.span.as_mut() else {
            return Ok(());
        };
        if span.remote == remote {
            return Ok(());
        }
        span.remote = remote;
        let net = net.clone();
        self.store.save_network(&self.state, name)?;
        self.network_names_changed(name);
        if let Some(plumbing) = self.topology.overlay_plumbing(&net) {
            self.dataplane.sync_remote_guests(&plumbing)?;
        }
        let rules = super::partition_requests::rules_in_force(&net);
        self.dataplane.apply_partition(net.zone(), &rules)
    }

    /// An address and slot for guest `name` of spanned network `net` from
    /// the cluster's allocation table, in one compare-and-swap.
    pub(super) async fn allocate_span_guest(
        &self,
        net: &Network,
        name: &str,
        ip: Option<std::net::Ipv4Addr>,
        mac: Option<crate::mac::Mac>,
    ) -> ServiceResult<crate::cluster::records::SpanGuest> {
        let cluster = self.require_cluster("a guest of a spanned network")?;
        let span = cluster.etcd.network(&net.name).await?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "spanned network {:?} is gone from the cluster: `netd network rm {}` removes \
                 this node's part",
                net.name, net.name
            ))
        })?;
        Ok(cluster.etcd.add_guest(&span, name, ip, mac).await?)
    }

    /// Frees guest `name` of spanned network `network` in the cluster.
    pub(super) async fn release_span_guest(&self, network: &str, name: &str) -> ServiceResult<()> {
        let cluster = self.require_cluster("a guest of a spanned network")?;
        Ok(cluster.etcd.remove_guest(network, name).await?)
    }

    /// Before this node's part of a spanned network goes: its guests freed
    /// in the cluster, and the definition removed when no node has guests
    /// in it any more.
    pub(super) async fn leave_spanned(&self, network: &Network) -> ServiceResult<()> {
        let cluster = self.require_cluster("removing a spanned network")?;
        for name in network.guests.keys() {
            cluster.etcd.remove_guest(&network.name, name).await?;
        }
        let (table, _) = cluster.etcd.guests(&network.name).await?;
        if table.guests.is_empty()
            && let Some(span) = cluster.etcd.network(&network.name).await?
        {
            cluster.etcd.delete_network(&span).await?;
            info!(network = %network.name, "spanned network removed from etcd: no node has guests in it");
        }
        Ok(())
    }

    /// Makes every spanned network's VXLAN forwarding entries what etcd
    /// says: each live remote node's guests, and one flood entry per such
    /// node; and its bridge's neighbour entries for those guests (answered
    /// here, not flooded). Called on every change etcd reports, and after etcd returns.
    pub async fn sync_overlay(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let spanned: Vec<Network> = self
            .state
            .networks
            .values()
            .filter(|net| net.span.is_some())
            .cloned()
            .collect();
        if spanned.is_empty() {
            return;
        }
        let live = match cluster.etcd.live_nodes().await {
            Ok(live) => live,
            Err(err) => {
                warn!("overlay: {err}");
                return;
            }
        };
        for net in spanned {
            let me = cluster.config().node.clone();
            let synced = async {
                let (table, _) = cluster.etcd.guests(&net.name).await?;
                self.take_remote_guests(&net.name, &table, &me)?;
                self.follow_partition(&cluster, &net.name).await?;
                let desired = fdb::desired(&me, &live, &table);
                let ns = Netns::open(&self.topology.names.network_ns(&net.name))?;
                vxlan::sync_fdb(&ns, &desired).await?;
                vxlan::sync_neighbours(&ns, &fdb::neighbours(&me, &live, &table)).await?;
                anyhow::Ok(())
            };
            if let Err(err) = synced.await {
                warn!(network = %net.name, "overlay: {err:#}");
            }
        }
    }

    /// `netd partition NETWORK ...` for any network: a spanned network's
    /// partition is put in force here, then written to etcd in one write
    /// that every other node applies when it sees it (`follow_partition`);
    /// if the write fails, the previous partition is put back and nothing
    /// changed. Any other network's is this host's alone.
    pub async fn set_partition_anywhere(
        &mut self,
        network: &str,
        request: crate::daemon::requests::PartitionRequest,
        caller: crate::daemon::caller::Caller,
        started: std::time::Instant,
    ) -> ServiceResult<crate::daemon::requests::PartitionView> {
        let spanned = self.network(network).is_ok_and(|net| net.span.is_some());
        if !spanned {
            return self.set_partition_since(network, request, caller, started);
        }
        if let Some(why) = self.dataplane.cannot_partition_across_nodes() {
            return Err(ServiceError::Invalid(why));
        }
        let cluster = self.require_cluster("a partition of a spanned network")?;
        let previous = self.network(network)?.partition.clone();
        let mut view = self.set_partition_since(network, request, caller, started)?;
        let record = SpanPartition {
            state: self.network(network)?.partition.clone(),
            set_by_node: cluster.config().node.clone(),
        };
        let revision = match cluster.etcd.put_partition(network, &record).await {
            Ok(revision) => revision,
            Err(err) => {
                let net = self.network(network)?;
                let rules = match &previous {
                    Some(state) => state
                        .compile(network, &net.slots(), super::partition_requests::now_ms())
                        .unwrap_or_default(),
                    None => crate::partition::PartitionRules::default(),
                };
                if let Err(undo) =
                    self.replace_partition(network, previous, rules, std::time::Instant::now())
                {
                    warn!(network, "restoring the previous partition: {undo}");
                }
                return Err(err.into());
            }
        };
        self.span_applied.insert(network.to_owned(), revision);
        let applied = Applied {
            revision,
            applied_at_ms: super::partition_requests::now_ms(),
        };
        if let Err(err) = cluster.etcd.put_applied(network, &applied).await {
            warn!(network, "recording the applied partition: {err}");
        }
        view.cluster = self.cluster_partition(network).await?;
        Ok(view)
    }

    /// Puts spanned network `name`'s partition from etcd in force here, if
    /// this node has not applied that revision yet, and records that it has.
    async fn follow_partition(&mut self, cluster: &Cluster, name: &str) -> anyhow::Result<()> {
        let Some((record, revision)) = cluster.etcd.partition(name).await? else {
            return Ok(());
        };
        if self.span_applied.get(name) == Some(&revision) {
            return Ok(());
        }
        let net = self.network(name)?.clone();
        // A timed partition that expired meanwhile is healed here as on
        // every node (`heal_expired`), not put back in force for a moment.
        let mut record = record;
        if record
            .state
            .as_ref()
            .is_some_and(|state| state.expired(super::now()))
        {
            record.state = None;
        }
        if net.partition != record.state {
            let rules = match &record.state {
                Some(state) => {
                    state.compile(name, &net.slots(), super::partition_requests::now_ms())?
                }
                None => crate::partition::PartitionRules::default(),
            };
            self.replace_partition(name, record.state.clone(), rules, std::time::Instant::now())?;
            let kind = if record.state.is_some() {
                "partition.set"
            } else {
                "partition.healed"
            };
            info!(network = name, revision, from = %record.set_by_node, "partition applied from the cluster");
            self.emit(
                crate::daemon::events::Event::new(kind)
                    .network(name)
                    .detail(format!(
                        "from node {} (etcd revision {revision})",
                        record.set_by_node
                    )),
            );
        }
        self.span_applied.insert(name.to_owned(), revision);
        let applied = Applied {
            revision,
            applied_at_ms: super::partition_requests::now_ms(),
        };
        cluster.etcd.put_applied(name, &applied).await?;
        Ok(())
    }

    /// What each node applied of spanned network `network`'s partition
    /// (None for another network).
    pub async fn cluster_partition(
        &self,
        network: &str,
    ) -> ServiceResult<Option<ClusterPartitionView>> {
        let spanned = self.network(network)?.span.is_some();
        let Some(cluster) = self.cluster.clone().filter(|_| spanned) else {
            return Ok(None);
        };
        let revision = cluster
            .etcd
            .partition(network)
            .await?
            .map_or(0, |(_, revision)| revision);
        let applied = cluster.etcd.applied(network).await?;
        let (table, _) = cluster.etcd.guests(network).await?;
        let spread_ms = crate::cluster::alloc::spread_ms(&table, &applied, revision);
        Ok(Some(ClusterPartitionView {
            revision,
            nodes: applied
                .into_iter()
                .map(|(node, a)| {
                    let view = AppliedView {
                        revision: a.revision,
                        applied_at_ms: a.applied_at_ms,
                    };
                    (node, view)
                })
                .collect(),
            spread_ms,
        }))
    }

    /// `netd node ls`: every registered node, its underlay address, when it
    /// last renewed its lease, and its guests in spanned networks.
    pub async fn nodes(&self) -> ServiceResult<Vec<NodeView>> {
        let cluster = self.require_cluster("`netd node ls`")?;
        let nodes = cluster.etcd.nodes().await?;
        let tables = cluster.etcd.all_guests().await?;
        let me = cluster.config();
        let mut views: Vec<NodeView> = nodes
            .into_iter()
            .map(|(node, seen)| NodeView {
                networks: tables
                    .iter()
                    .filter_map(|(network, table)| {
                        let guests: Vec<NodeGuestView> = table
                            .on_node(&node.name)
                            .map(|(name, g)| NodeGuestView {
                                name: name.clone(),
                                ip: g.ip.to_string(),
                                mac: g.mac.to_string(),
                            })
                            .collect();
                        (!guests.is_empty()).then(|| (network.clone(), guests))
                    })
                    .collect(),
                this_node: node.name == cluster.config().node,
                underlay: node.underlay.to_string(),
                last_seen_secs: seen,
                name: node.name,
                problem: None,
            })
            .collect();
        // This node, not registered at the moment: shown with the reason.
        if !views.iter().any(|view| view.this_node) {
            views.push(NodeView {
                name: me.node.clone(),
                underlay: me.underlay.to_string(),
                last_seen_secs: None,
                networks: BTreeMap::new(),
                this_node: true,
                problem: Some(
                    cluster
                        .membership()
                        .problem
                        .unwrap_or_else(|| "not registered in etcd".to_owned()),
                ),
            });
        }
        Ok(views)
    }
}

/// Keeps every spanned network's forwarding entries in step with etcd for
/// as long as the daemon runs: a watch of netd's keys, and a full resync
/// whenever the watch (re)starts, so nothing missed while etcd was away
/// stays missed.
pub async fn follow_cluster(service: Shared, cluster: Cluster) {
    loop {
        // Nothing is synced while etcd is away: the service lock stays free
        // for local requests, and the entries in force stay as they are.
        let watched = async {
            let revision = cluster.etcd.revision().await?;
            let mut stream = cluster.etcd.watch(revision + 1).await?;
            service.lock().await.sync_overlay().await;
            while let Some(answer) = stream
                .message()
                .await
                .map_err(|err| crate::cluster::ClusterError::Unreachable(err.to_string()))?
            {
                let rounds = verify_rounds(answer.events(), &cluster.config().node);
                for (network, round) in rounds {
                    // Not under the watch: a round takes a second or two.
                    tokio::spawn(answer_verify_round(
                        service.clone(),
                        cluster.clone(),
                        round,
                        network,
                    ));
                }
                let only_verify = answer.events().iter().all(|event| {
                    event.kv().is_some_and(|kv| {
                        kv.key()
                            .starts_with(crate::cluster::keys::VERIFY.as_bytes())
                    })
                });
                if !answer.events().is_empty() && !only_verify {
                    service.lock().await.sync_overlay().await;
                }
            }
            Ok::<(), crate::cluster::ClusterError>(())
        };
        if let Err(err) = watched.await {
            warn!("following the cluster: {err}");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// How long a verify round's key and answers live in etcd.
const VERIFY_TTL_SECS: i64 = 30;
/// How far ahead of its writing a round's datagrams are sent: time for
/// every node to see the round and open its receivers.
const VERIFY_LEAD_MS: u64 = 1_000;
/// How long after the round's settling the asker waits for the answers.
const VERIFY_ANSWER_WAIT_MS: u64 = 3_000;

/// A verify of a spanned network whose guests live on several nodes: one
/// round through etcd (see `records::VerifyRound`). Planned under the
/// service lock, run without it.
pub struct VerifyAcross {
    cluster: Cluster,
    network: String,
    /// Every guest, on any node: name -> (address, slot).
    guests: BTreeMap<String, (std::net::Ipv4Addr, u8)>,
    /// The other nodes holding guests, and their guests.
    nodes: BTreeMap<String, Vec<String>>,
}

/// What a round across nodes found.
pub struct Crossed {
    /// (sender, receiver) -> datagrams arrived, for every receiver on a
    /// node that answered.
    pub received: BTreeMap<(String, String), u32>,
    /// The nodes that did not answer (or could not take part), why, and
    /// their guests.
    pub silent: Vec<(String, String, Vec<String>)>,
}

impl Service {
    /// A verify across nodes of `net`, if it is a spanned network with
    /// guests on other nodes.
    pub(super) fn verify_across(&self, net: &Network) -> Option<VerifyAcross> {
        let span = net.span.as_ref().filter(|span| !span.remote.is_empty())?;
        let cluster = self.cluster.clone()?;
        let mut guests: BTreeMap<String, (std::net::Ipv4Addr, u8)> = net
            .guests
            .values()
            .map(|g| (g.name.clone(), (g.ip, g.slot)))
            .collect();
        let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, remote) in &span.remote {
            guests.insert(name.clone(), (remote.ip, remote.slot));
            nodes
                .entry(remote.node.clone())
                .or_default()
                .push(name.clone());
        }
        Some(VerifyAcross {
            cluster,
            network: net.name.clone(),
            guests,
            nodes,
        })
    }
}

impl VerifyAcross {
    /// Every guest's slot, on any node: what the round is judged over.
    pub fn all_slots(&self) -> BTreeMap<String, u8> {
        self.guests
            .iter()
            .map(|(name, (_, slot))| (name.clone(), *slot))
            .collect()
    }

    /// Writes the round, takes this node's part in it, and waits (bounded)
    /// for every other node's answer.
    pub async fn run(
        self,
        local: &[crate::daemon::probe::Probe],
        per_pair: u32,
        held: std::time::Duration,
    ) -> ServiceResult<Crossed> {
        let token = crate::daemon::probe::token();
        let settle = crate::daemon::probe::SETTLE + held;
        let round = crate::cluster::records::VerifyRound {
            asker: self.cluster.config().node.clone(),
            token,
            port: verify_port(token),
            per_pair,
            send_at_ms: super::partition_requests::now_ms() + VERIFY_LEAD_MS,
            settle_ms: settle.as_millis() as u64,
            guests: self.guests.clone(),
        };
        let key = crate::cluster::keys::verify_round(&self.network, token);
        self.cluster
            .etcd
            .put_leased(&key, &round, VERIFY_TTL_SECS)
            .await?;
        let mut received = take_part(local.to_vec(), round.clone()).await?;
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(VERIFY_ANSWER_WAIT_MS);
        let mut answers = BTreeMap::new();
        loop {
            answers = match self.cluster.etcd.verify_answers(&self.network, token).await {
                Ok(answers) => answers,
                Err(err) => {
                    warn!(network = %self.network, "verify's answers: {err}");
                    answers
                }
            };
            let all_in = self.nodes.keys().all(|node| answers.contains_key(node));
            if all_in || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut silent = Vec::new();
        for (node, guests) in &self.nodes {
            match answers.get(node) {
                Some(answer) if answer.problem.is_none() => {
                    for (from, to, count) in &answer.received {
                        if guests.contains(to) {
                            received.insert((from.clone(), to.clone()), *count);
                        }
                    }
                }
                Some(answer) => silent.push((
                    node.clone(),
                    answer.problem.clone().unwrap_or_default(),
                    guests.clone(),
                )),
                None => silent.push((
                    node.clone(),
                    format!(
                        "did not answer verify's round within {} ms",
                        VERIFY_LEAD_MS + round.settle_ms + VERIFY_ANSWER_WAIT_MS
                    ),
                    guests.clone(),
                )),
            }
        }
        if let Err(err) = self.cluster.etcd.delete_prefix(&key).await {
            warn!(network = %self.network, "removing verify's round: {err}");
        }
        Ok(Crossed { received, silent })
    }
}

/// A round's UDP port, from its token: the same on every node, and apart
/// from the ephemeral ports guests' own sockets take.
fn verify_port(token: u64) -> u16 {
    20_000 + (token % 10_000) as u16
}

/// This node's guests' part of `round` (off the async runtime).
async fn take_part(
    local: Vec<crate::daemon::probe::Probe>,
    round: crate::cluster::records::VerifyRound,
) -> ServiceResult<BTreeMap<(String, String), u32>> {
    let send_at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(round.send_at_ms);
    let settle = std::time::Duration::from_millis(round.settle_ms);
    Ok(tokio::task::spawn_blocking(move || {
        crate::daemon::probe::exchange_across(
            &local,
            &round.guests,
            round.port,
            round.per_pair,
            round.token,
            send_at,
            settle,
        )
    })
    .await
    .map_err(|err| anyhow::anyhow!("the verify thread failed: {err}"))??)
}

/// A node that did not take part makes the verify fail, naming it: the
/// pairs to its guests were not probed, and are not passed.
pub fn report_silent_nodes(
    report: &mut crate::partition::VerifyReport,
    silent: &[(String, String, Vec<String>)],
) {
    for (node, why, guests) in silent {
        let guests: BTreeSet<&String> = guests.iter().collect();
        report.pairs.retain(|pair| !guests.contains(&pair.to));
        report
            .mismatches
            .retain(|line| !guests.iter().any(|g| line.contains(&format!("-> {g}:"))));
        report.mismatches.push(format!(
            "node {node} {why}: the pairs to its guests {} are not judged",
            guests
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        report.ok = false;
    }
}

/// Another node's verify round of a spanned network this node holds
/// guests of: this node's guests take part, and the counts go back to
/// etcd (or why they could not).
async fn answer_verify_round(
    service: Shared,
    cluster: Cluster,
    round: crate::cluster::records::VerifyRound,
    network: String,
) {
    let me = cluster.config().node.clone();
    let probes = {
        let svc = service.lock().await;
        let Ok(plan) = svc.plan_verify(&network) else {
            return;
        };
        plan.local_probes()
    };
    if probes.is_empty() {
        return;
    }
    let token = round.token;
    let answer = match take_part(probes, round).await {
        Ok(received) => crate::cluster::records::VerifyAnswer {
            node: me.clone(),
            received: received
                .into_iter()
                .map(|((from, to), count)| (from, to, count))
                .collect(),
            problem: None,
        },
        Err(err) => crate::cluster::records::VerifyAnswer {
            node: me.clone(),
            received: Vec::new(),
            problem: Some(format!("could not take part: {err}")),
        },
    };
    let key = format!(
        "{}{me}",
        crate::cluster::keys::verify_answers(&network, token)
    );
    if let Err(err) = cluster
        .etcd
        .put_leased(&key, &answer, VERIFY_TTL_SECS)
        .await
    {
        warn!(network, "answering a verify round: {err}");
    }
}

/// The verify rounds of other nodes among a watch answer's events.
fn verify_rounds(
    events: &[etcd_client::Event],
    me: &str,
) -> Vec<(String, crate::cluster::records::VerifyRound)> {
    events
        .iter()
        .filter(|event| event.event_type() == etcd_client::EventType::Put)
        .filter_map(|event| {
            let kv = event.kv()?;
            let key = std::str::from_utf8(kv.key()).ok()?;
            let network = crate::cluster::keys::round_network(key)?;
            let round: crate::cluster::records::VerifyRound =
                serde_json::from_slice(kv.value()).ok()?;
            (round.asker != me).then(|| (network.to_owned(), round))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_fails_the_verify_naming_it_and_its_pairs_are_not_passed() {
        let slots: BTreeMap<String, u8> = [("a".to_owned(), 0), ("c".to_owned(), 2)].into();
        // Nothing arrived at c: its node did not answer.
        let received: BTreeMap<(String, String), u32> = [
            (("a".to_owned(), "c".to_owned()), 0),
            (("c".to_owned(), "a".to_owned()), 3),
        ]
        .into();
        let rules = crate::partition::PartitionRules::default();
        let mut report = crate::partition::judge("web", &rules, &slots, &received, 3);
        assert!(!report.ok, "a -> c looks cut: {report:?}");
        report_silent_nodes(
            &mut report,
            &[(
                "node3".to_owned(),
                "did not answer verify's round within 4300 ms".to_owned(),
                vec!["c".to_owned()],
            )],
        );
        assert!(!report.ok);
        assert!(report.pairs.iter().all(|pair| pair.to != "c"), "{report:?}");
        assert_eq!(
            report.mismatches,
            [
                "node node3 did not answer verify's round within 4300 ms: the pairs to its \
              guests c are not judged"
            ]
        );
    }

    #[test]
    fn the_rounds_port_is_the_same_everywhere_and_apart_from_ephemeral_ones() {
        for token in [0, 1, 9_999, 10_000, u64::MAX] {
            let port = verify_port(token);
            assert!((20_000..30_000).contains(&port), "{port}");
            assert_eq!(port, verify_port(token));
        }
    }
}
