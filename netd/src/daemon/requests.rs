//! Request and response bodies of the HTTP/JSON API, shared by the daemon and
//! the CLI.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::partition::VerifyReport;
use crate::{
    dataplane::DataplaneStatus,
    partition::{PartitionRules, PartitionState},
    ports::Proto,
};

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    pub name: String,
    /// None: the default (overlapping, not routable) subnet; "auto": the first
    /// free /24 of the auto pool; else a CIDR.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Guests talk to each other and to nothing outside the network.
    #[serde(default)]
    pub internal: bool,
    /// The MTU of the network's bridge, ports and guests' interfaces.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// A network of the whole cluster, defined in etcd (`--span`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub span: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AddGuest {
    pub name: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// What the guest is for, e.g. `{"cni.container_id": "..."}` (`labels`).
    #[serde(default)]
    pub labels: crate::labels::Labels,
    /// The MAC of its interface (`02:42:ac:11:00:02`); None: derived from
    /// the network and the address.
    #[serde(default)]
    pub mac: Option<String>,
}

/// The answer to `PUT /v1/networks/NAME` (a declarative resource).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ResourceView {
    pub name: String,
    /// Whether anything changed: false for the same resource applied again.
    pub changed: bool,
    /// What was done, in order (`guest c added`, ...).
    pub steps: Vec<String>,
    /// The network's namespace name (zos's `Namespace`).
    pub namespace: String,
    /// Each guest's namespace name.
    pub namespaces: BTreeMap<String, String>,
    pub network: NetworkView,
}

/// A guest as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GuestView {
    pub network: String,
    pub name: String,
    pub ip: String,
    /// The namespace path `ip netns`/`nsenter` can use.
    pub netns: PathBuf,
    pub owned_netns: bool,
    pub bridge_port: String,
    #[serde(default)]
    pub labels: crate::labels::Labels,
    /// Its interface's MAC.
    #[serde(default)]
    pub mac: String,
    /// Its interface on this network (`eth0`; `eth1`... when connected).
    #[serde(default)]
    pub interface: String,
    /// The network it was added to, when this is a connection to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_from: Option<String>,
    /// Its network's resolver (the bridge address, port 53): netd writes
    /// nothing into a guest's files, so its runtime puts this in its
    /// resolv.conf.
    #[serde(default)]
    pub nameserver: String,
}

/// The body of `POST /v1/networks/NAME/connections`: guest `guest` of
/// network `network_of` gets an interface on NAME too.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConnectGuest {
    pub guest: String,
    pub network_of: String,
    /// Its address on NAME; the next free one if omitted.
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AddPort {
    /// `[HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp]`: see `ports`.
    pub spec: String,
}

/// A published port as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PortView {
    pub network: String,
    pub guest: String,
    /// Where the traffic goes (the address alone, no prefix).
    pub guest_ip: String,
    /// The canonical spec: what `netd port rm` takes back.
    pub spec: String,
    /// None: any host address.
    pub host_ip: Option<String>,
    /// `8080` or `8000-8010`.
    pub host_ports: String,
    pub guest_ports: String,
    pub proto: Proto,
}

/// A network as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NetworkView {
    pub name: String,
    pub subnet: String,
    pub routable: bool,
    pub bridge_ip: String,
    pub uplink: String,
    pub netns: String,
    pub guests: Vec<GuestView>,
    #[serde(default)]
    pub internal: bool,
    /// None: the kernel's default (1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// A spanned network's VNI (`--span`); None: this host's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// A node of the cluster as `netd node ls` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub underlay: String,
    /// Seconds since it last renewed its lease (None: etcd did not say).
    pub last_seen_secs: Option<i64>,
    /// Its guests in each spanned network that has some there.
    pub networks: BTreeMap<String, Vec<NodeGuestView>>,
    /// Whether this is the node that answered.
    pub this_node: bool,
    /// For the node that answered, when etcd does not have it registered:
    /// why (its lease expired, etcd did not answer...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A guest of a spanned network, on the node that holds it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeGuestView {
    pub name: String,
    pub ip: String,
    pub mac: String,
}

/// The body of `PUT /v1/networks/NAME/partition` (and `PUT /v1/partition`):
/// a verb and its options, e.g. `{"verb": "isolate", "guests": ["a"],
/// "keep_outside": false, "loss_percent": 30, "duration_secs": 300}`, and
/// more clauses in `and`: `{"verb": "isolate", "guests": ["a"], "and":
/// [{"verb": "all", "delay_ms": 100}]}`.
pub type PartitionRequest = crate::partition::Partition;

/// A network's partition as `netd partition NETWORK show` presents it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PartitionView {
    pub network: String,
    /// The command that sets it again: `netd partition web isolate a --for 5m`
    /// (`... fullmesh` when nothing is cut).
    pub command: String,
    /// The partition in force, as set, with when, by whom and until when;
    /// None: a full mesh.
    pub state: Option<PartitionState>,
    /// Each guest's slot, by name: `rules` are in slots.
    pub slots: BTreeMap<String, u8>,
    /// What the dataplane enforces (no class: a full mesh); only when
    /// asked for (`?matrix=true`; set requests always carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<PartitionRules>,
    /// Senders in rows, receivers in columns, plus the outside: "." allowed,
    /// "X" cut, "~" lossy, "*" impaired, "p" some ports or protocols; only
    /// when asked for, as `rules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<String>,
    /// For a flap or a schedule: the step in force and the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepView>,
    /// For a change: microseconds from the request reaching the service to
    /// the new policy being in force (validation, compiling, the map update
    /// or nft transaction), before it is persisted.
    #[serde(default)]
    pub in_force_after_us: Option<u64>,
    /// A spanned network's partition across the cluster: the etcd revision
    /// that set it and what each node applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterPartitionView>,
}

/// Which partition each node of a spanned network has applied.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClusterPartitionView {
    /// The etcd revision of the partition in force (0: never set).
    pub revision: i64,
    /// Each node's last applied revision and when (Unix milliseconds).
    pub nodes: BTreeMap<String, AppliedView>,
    /// Milliseconds between the first and the last node applying
    /// `revision`, once every node holding guests has.
    pub spread_ms: Option<u64>,
}

/// One node's applied partition.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppliedView {
    pub revision: i64,
    pub applied_at_ms: u64,
}

/// What `cleanup` removed.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct CleanupReport {
    pub removed: Vec<String>,
}

/// What `netd status` shows: the live kernel state of every namespace this
/// instance owns (what is there, not what was asked), and where it drifts
/// from the desired state.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Status {
    pub dataplane: String,
    /// Conntrack/NAT figures and per-network counters from the dataplane.
    #[serde(default)]
    pub figures: Option<DataplaneStatus>,
    /// How many namespaces of this instance exist.
    #[serde(default)]
    pub namespace_count: usize,
    /// Networks and guests in the desired state.
    #[serde(default)]
    pub networks: usize,
    #[serde(default)]
    pub guests: usize,
    /// Each namespace's links, routes and programs: only when asked
    /// (`?namespaces=true`, `netd status --namespaces`).
    #[serde(default)]
    pub namespaces: Vec<NamespaceStatus>,
    /// Differences between desired and live state; empty when all is well.
    pub drift: Vec<String>,
    /// A cluster node's underlay probe of every other node (None on a
    /// single host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<UnderlayStatus>,
}

/// What the underlay probe found (`netd status` on a cluster node).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UnderlayStatus {
    /// Every other registered node.
    pub peers: Vec<UnderlayPeer>,
    /// Why nothing was probed (etcd did not answer, no socket), if so.
    #[serde(default)]
    pub problem: Option<String>,
}

impl UnderlayStatus {
    /// The nodes that did not answer.
    pub fn unreachable(&self) -> impl Iterator<Item = &UnderlayPeer> {
        self.peers.iter().filter(|p| p.reachable == Some(false))
    }
}

/// One node as the underlay probe found it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UnderlayPeer {
    pub node: String,
    /// Its probe address (`IP:PORT`); empty for a node not probed.
    pub address: String,
    /// Whether it answered within the probe's second; None: not probed (a
    /// node of a netd without the probe).
    pub reachable: Option<bool>,
    /// The round trip, when it answered.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NamespaceStatus {
    pub name: String,
    pub links: Vec<LinkStatus>,
    pub routes: Vec<String>,
    pub nft_tables: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LinkStatus {
    pub name: String,
    pub up: bool,
    pub bridge: Option<String>,
    pub addresses: Vec<String>,
    /// TC programs attached through TCX, by direction.
    pub tc_programs: Vec<String>,
}

/// The query of the partition routes: `?matrix=true` adds the compiled
/// rules and the matrix to the answer.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PartitionQuery {
    #[serde(default)]
    pub matrix: bool,
}

/// Where a flapping or scheduled partition stands.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    /// 0-based; `count` once a schedule has ended.
    pub index: usize,
    pub count: usize,
    /// The policy of the step in force.
    pub in_force: String,
    /// The policy of the next step; None when nothing follows.
    pub next: Option<String>,
    pub next_in_ms: Option<u64>,
}
