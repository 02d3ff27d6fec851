//! The JSON documents netd stores in etcd (see `keys`). New fields take
//! `#[serde(default)]`, so that nodes of an older netd still read them.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::mac::Mac;

/// A node's registration, kept under its lease: it vanishes when the node
/// stops renewing it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub underlay: Ipv4Addr,
    /// The lease it lives under (its time to live says when it was last
    /// seen).
    pub lease: i64,
    /// Unix seconds of its registration.
    pub joined_at: u64,
    /// The UDP port it answers the underlay probe on (None: a node of a
    /// netd without the probe, not probed).
    #[serde(default)]
    pub probe_port: Option<u16>,
}

/// A spanned network's definition, the same for every node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SpanNetwork {
    pub name: String,
    pub subnet: Ipv4Network,
    /// Its VXLAN network identifier, unique in the cluster.
    pub vni: u32,
    /// The MTU of its bridges and guests: the underlay's less VXLAN's
    /// overhead, so that no guest sends what the overlay cannot carry.
    pub mtu: u32,
    /// The node that created it, and when (Unix seconds).
    pub created_by: String,
    pub created_at: u64,
}

/// A guest of a spanned network as every node sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SpanGuest {
    /// The node that holds it.
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// Its partition slot, unique in the network across nodes.
    pub slot: u8,
}

/// A spanned network's partition as etcd holds it: the state every node
/// puts in force (None: healed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SpanPartition {
    pub state: Option<crate::partition::PartitionState>,
    /// The node that set it.
    pub set_by_node: String,
}

/// What a node applied of a spanned network's partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The etcd revision of the partition it put in force.
    pub revision: i64,
    /// Unix milliseconds.
    pub applied_at_ms: u64,
}

/// A spanned network's allocation table: its guests on every node and the
/// last address handed out. Replaced whole by compare-and-swap, so two
/// nodes never hand out one address or slot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SpanGuests {
    #[serde(default)]
    pub guests: BTreeMap<String, SpanGuest>,
    #[serde(default)]
    pub cursor: Option<Ipv4Addr>,
}

impl SpanGuests {
    /// The guests `node` holds, by name.
    pub fn on_node<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a SpanGuest)> {
        self.guests.iter().filter(move |(_, g)| g.node == node)
    }
}

/// A verify round of a spanned network, written by the node asking: every
/// node holding guests in it opens a receiver in each of its guests on
/// `port`, sends `per_pair` datagrams (marked with `token`) from each to
/// every guest of `guests` at `send_at_ms`, counts what arrived until
/// `settle_ms` later, and writes its [`VerifyAnswer`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifyRound {
    pub asker: String,
    pub token: u64,
    pub port: u16,
    pub per_pair: u32,
    /// Unix milliseconds (nodes' clocks should agree, as for timed heals).
    pub send_at_ms: u64,
    pub settle_ms: u64,
    /// Every guest of the network: name -> (address, slot).
    pub guests: BTreeMap<String, (Ipv4Addr, u8)>,
}

/// What one node's guests received in a verify round: (sender, receiver,
/// count) for each pair whose receiver is on that node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifyAnswer {
    pub node: String,
    pub received: Vec<(String, String, u32)>,
    /// Why the node could not take part, if it could not.
    #[serde(default)]
    pub problem: Option<String>,
}
