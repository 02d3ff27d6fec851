//! The etcd side of a node: its registration under a lease, spanned
//! networks' definitions, and their allocation tables changed by
//! compare-and-swap. Thin: what to write is decided by `alloc`.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use ipnetwork::Ipv4Network;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    ClusterConfig, ClusterError, alloc, keys,
    records::{Applied, NodeRecord, SpanGuest, SpanGuests, SpanNetwork, SpanPartition},
};

/// A node's lease: it expires this long after the node's last renewal, and
/// then the other nodes withdraw what they programmed for it.
pub const LEASE_TTL_SECS: i64 = 10;

/// How often the lease is renewed: a third of its life, so that two lost
/// renewals in a row do not expire it.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(3);

/// How long one etcd request may take before it counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a compare-and-swap is retried when another node changed the
/// key in between; far more than nodes ever race for one network.
const CAS_ATTEMPTS: usize = 64;

/// A connection to the cluster's etcd (cheap to clone: one gRPC channel
/// per endpoint).
#[derive(Clone)]
pub struct Etcd {
    /// One client per endpoint: a request that fails on one is sent to the
    /// next, so a member that is down costs one connection attempt (the
    /// crate's balanced channel keeps picking a dead endpoint).
    clients: Arc<Vec<Client>>,
    /// The endpoint that answered last, tried first.
    current: Arc<AtomicUsize>,
    pub config: ClusterConfig,
}

impl Etcd {
    /// Sets up the channels; they connect lazily, so a daemon starts while
    /// etcd is down and joins when it is back.
    pub async fn connect(config: &ClusterConfig) -> Result<Etcd, ClusterError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(REQUEST_TIMEOUT);
        let mut clients = Vec::new();
        for endpoint in &config.endpoints {
            clients.push(
                Client::connect([endpoint], Some(options.clone()))
                    .await
                    .map_err(|err| unreachable_error(config, err))?,
            );
        }
        Ok(Etcd {
            clients: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
            config: config.clone(),
        })
    }

    fn unreachable(&self, err: etcd_client::Error) -> ClusterError {
        unreachable_error(&self.config, err)
    }

    /// Runs `request` on the endpoint that answered last, then on each
    /// other in turn until one answers. A compare-and-swap retried on
    /// another endpoint after a lost answer is safe: its compare fails if
    /// the first attempt went through, and the caller reads again.
    async fn call<T, F, Fut>(&self, mut request: F) -> Result<T, ClusterError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.clients.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..count {
            let i = (first + k) % count;
            match request(self.clients[i].clone()).await {
                Ok(answer) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(self.unreachable(last.expect("at least one endpoint")))
    }

    /// Registers this node under a fresh lease; returns the lease.
    pub async fn register(&self, joined_at: u64) -> Result<i64, ClusterError> {
        let lease = self
            .call(|mut c| async move { c.lease_grant(LEASE_TTL_SECS, None).await })
            .await?
            .id();
        let record = NodeRecord {
            name: self.config.node.clone(),
            underlay: self.config.underlay,
            lease,
            joined_at,
            probe_port: Some(self.config.probe_port),
        };
        let value = to_json(&record);
        let key = keys::node(&record.name);
        self.call(|mut c| {
            let value = value.clone();
            let key = key.clone();
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        Ok(lease)
    }

    /// Renews `lease` every [`RENEW_INTERVAL`] until a renewal fails
    /// (etcd unreachable, or the lease gone); returns that failure.
    pub async fn keep_alive(&self, lease: i64) -> ClusterError {
        let stream = self
            .call(|mut c| async move { c.lease_keep_alive(lease).await })
            .await;
        let (mut keeper, mut responses) = match stream {
            Ok(pair) => pair,
            Err(err) => return err,
        };
        let mut ticks = tokio::time::interval(RENEW_INTERVAL);
        loop {
            ticks.tick().await;
            if let Err(err) = keeper.keep_alive().await {
                return self.unreachable(err);
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, responses.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                Ok(Ok(_)) => {
                    return ClusterError::Unreachable(format!(
                        "node {}'s lease {lease:x} expired",
                        self.config.node
                    ));
                }
                Ok(Err(err)) => return self.unreachable(err),
                Err(_) => {
                    return ClusterError::Unreachable(format!(
                        "etcd did not answer a lease renewal in {} s",
                        REQUEST_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    }

    /// Every registered node, with how many seconds ago it last renewed its
    /// lease (None if etcd would not say).
    pub async fn nodes(&self) -> Result<Vec<(NodeRecord, Option<i64>)>, ClusterError> {
        let records: Vec<NodeRecord> = self.list(keys::NODES).await?.into_values().collect();
        let mut out = Vec::new();
        for record in records {
            let lease = record.lease;
            let seen = match self
                .call(|mut c| async move { c.lease_time_to_live(lease, None).await })
                .await
            {
                Ok(ttl) if ttl.ttl() >= 0 => Some((ttl.granted_ttl() - ttl.ttl()).max(0)),
                _ => None,
            };
            out.push((record, seen));
        }
        Ok(out)
    }

    /// The live nodes' underlay addresses, by name.
    pub async fn live_nodes(&self) -> Result<BTreeMap<String, std::net::Ipv4Addr>, ClusterError> {
        Ok(self
            .list::<NodeRecord>(keys::NODES)
            .await?
            .into_values()
            .map(|n| (n.name, n.underlay))
            .collect())
    }

    /// Spanned network `name`'s definition, if it exists.
    pub async fn network(&self, name: &str) -> Result<Option<SpanNetwork>, ClusterError> {
        Ok(self
            .get::<SpanNetwork>(&keys::network(name))
            .await?
            .map(|(n, _)| n))
    }

    /// Every spanned network, by name.
    pub async fn networks(&self) -> Result<BTreeMap<String, SpanNetwork>, ClusterError> {
        self.list(keys::NETWORKS).await
    }

    /// Creates spanned network `name` with a VNI no other holds, in one
    /// transaction: the definition and the VNI's key are written only if
    /// neither exists. Returns the existing definition if `name` exists.
    pub async fn create_network(
        &self,
        name: &str,
        subnet: Ipv4Network,
        mtu: u32,
        created_at: u64,
    ) -> Result<(SpanNetwork, bool), ClusterError> {
        for _ in 0..CAS_ATTEMPTS {
            if let Some(existing) = self.network(name).await? {
                return Ok((existing, false));
            }
            let taken: BTreeSet<u32> = self
                .list_keys(keys::VNIS)
                .await?
                .iter()
                .filter_map(|key| keys::name_under(keys::VNIS, key)?.parse().ok())
                .collect();
            let vni = alloc::pick_vni(&taken).map_err(ClusterError::Conflict)?;
            let network = SpanNetwork {
                name: name.to_owned(),
                subnet,
                vni,
                mtu,
                created_by: self.config.node.clone(),
                created_at,
            };
            let txn = Txn::new()
                .when([
                    Compare::create_revision(keys::network(name), CompareOp::Equal, 0),
                    Compare::create_revision(keys::vni(vni), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(keys::network(name), to_json(&network), None),
                    TxnOp::put(keys::vni(vni), name, None),
                    TxnOp::put(keys::guests(name), to_json(&SpanGuests::default()), None),
                ]);
            if self.txn(txn).await? {
                return Ok((network, true));
            }
        }
        Err(self.contended(name))
    }

    /// Removes spanned network `name` everywhere: its definition, VNI and
    /// table, in one transaction.
    pub async fn delete_network(&self, network: &SpanNetwork) -> Result<(), ClusterError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(keys::network(&network.name), None),
            TxnOp::delete(keys::vni(network.vni), None),
            TxnOp::delete(keys::guests(&network.name), None),
            TxnOp::delete(keys::partition(&network.name), None),
            TxnOp::delete(
                keys::applied_of(&network.name),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
        ]);
        self.txn(txn).await?;
        Ok(())
    }

    /// Network `name`'s allocation table and its revision.
    pub async fn guests(&self, network: &str) -> Result<(SpanGuests, i64), ClusterError> {
        Ok(self
            .get::<SpanGuests>(&keys::guests(network))
            .await?
            .unwrap_or_default())
    }

    /// Every spanned network's allocation table, by network.
    pub async fn all_guests(&self) -> Result<BTreeMap<String, SpanGuests>, ClusterError> {
        self.list(keys::GUESTS).await
    }

    /// Changes network `name`'s allocation table by `change` (a pure
    /// function of the table), written only if no other node wrote it in
    /// between; retried on the new table otherwise.
    pub async fn update_guests<T>(
        &self,
        network: &str,
        mut change: impl FnMut(&SpanGuests) -> Result<(SpanGuests, T), String>,
    ) -> Result<T, ClusterError> {
        let key = keys::guests(network);
        for _ in 0..CAS_ATTEMPTS {
            let (table, revision) = self.guests(network).await?;
            let (next, result) = change(&table).map_err(ClusterError::Conflict)?;
            if next == table {
                return Ok(result);
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.clone(), to_json(&next), None)]);
            if self.txn(txn).await? {
                return Ok(result);
            }
        }
        Err(self.contended(network))
    }

    /// Allocates an address and slot for a guest of `network` on this node.
    pub async fn add_guest(
        &self,
        network: &SpanNetwork,
        name: &str,
        ip: Option<std::net::Ipv4Addr>,
        mac: Option<crate::mac::Mac>,
    ) -> Result<SpanGuest, ClusterError> {
        let request = alloc::GuestRequest {
            name,
            node: &self.config.node,
            ip,
            mac,
        };
        self.update_guests(&network.name, |table| {
            alloc::add_guest(network, table, &request)
        })
        .await
    }

    /// Frees this node's guest `name` of `network`.
    pub async fn remove_guest(&self, network: &str, name: &str) -> Result<(), ClusterError> {
        let node = self.config.node.clone();
        self.update_guests(network, |table| {
            Ok((alloc::remove_guest(table, name, &node), ()))
        })
        .await
    }

    /// Sets spanned network `network`'s partition for every node: one
    /// write; returns its revision.
    pub async fn put_partition(
        &self,
        network: &str,
        partition: &SpanPartition,
    ) -> Result<i64, ClusterError> {
        let key = keys::partition(network);
        let value = to_json(partition);
        let answer = self
            .call(|mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move { c.put(key, value, None).await }
            })
            .await?;
        Ok(answer.header().map_or(0, |h| h.revision()))
    }

    /// Spanned network `network`'s partition and its revision, if one was
    /// ever set.
    pub async fn partition(
        &self,
        network: &str,
    ) -> Result<Option<(SpanPartition, i64)>, ClusterError> {
        self.get(&keys::partition(network)).await
    }

    /// Records that this node applied `network`'s partition of `revision`.
    pub async fn put_applied(&self, network: &str, applied: &Applied) -> Result<(), ClusterError> {
        let key = keys::applied(network, &self.config.node);
        let value = to_json(applied);
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .await?;
        Ok(())
    }

    /// Every node's applied revision of `network`'s partition.
    pub async fn applied(&self, network: &str) -> Result<BTreeMap<String, Applied>, ClusterError> {
        self.list(&keys::applied_of(network)).await
    }

    /// Writes `value` at `key` under a lease of its own of `ttl_secs`: gone
    /// by itself (verify rounds and their answers).
    pub async fn put_leased<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl_secs: i64,
    ) -> Result<(), ClusterError> {
        let lease = self
            .call(|mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?
            .id();
        let value = to_json(value);
        self.call(|mut c| {
            let (key, value) = (key.to_owned(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        Ok(())
    }

    /// Removes every key under `prefix` (and `prefix` itself).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), ClusterError> {
        self.call(|mut c| async move {
            c.delete(
                prefix,
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
        })
        .await?;
        Ok(())
    }

    /// The answers written so far to `network`'s verify round `token`, by
    /// node.
    pub async fn verify_answers(
        &self,
        network: &str,
        token: u64,
    ) -> Result<BTreeMap<String, super::records::VerifyAnswer>, ClusterError> {
        self.list(&keys::verify_answers(network, token)).await
    }

    /// A watch of every key of netd's, from `revision` on.
    pub async fn watch(&self, revision: i64) -> Result<WatchStream, ClusterError> {
        self.call(|mut c| async move {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision);
            c.watch(keys::ROOT, Some(options)).await
        })
        .await
    }

    /// Runs `txn`; whether its compares held.
    async fn txn(&self, txn: Txn) -> Result<bool, ClusterError> {
        let answer = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(answer.succeeded())
    }

    /// The cluster's current revision.
    pub async fn revision(&self) -> Result<i64, ClusterError> {
        let answer = self
            .call(|mut c| async move {
                c.get(keys::ROOT, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await?;
        Ok(answer.header().map_or(0, |h| h.revision()))
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>, ClusterError> {
        let answer = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        match answer.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((from_json(key, kv.value())?, kv.mod_revision()))),
        }
    }

    async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, T>, ClusterError> {
        let answer = self
            .call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await })
            .await?;
        let mut out = BTreeMap::new();
        for kv in answer.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some(name) = keys::name_under(prefix, &key) {
                out.insert(name.to_owned(), from_json(&key, kv.value())?);
            }
        }
        Ok(out)
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ClusterError> {
        let answer = self
            .call(|mut c| async move {
                let options = GetOptions::new().with_prefix().with_keys_only();
                c.get(prefix, Some(options)).await
            })
            .await?;
        Ok(answer
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    fn contended(&self, what: &str) -> ClusterError {
        ClusterError::Conflict(format!(
            "{what}: other nodes kept changing it during {CAS_ATTEMPTS} attempts: try again"
        ))
    }
}

fn unreachable_error(config: &ClusterConfig, err: etcd_client::Error) -> ClusterError {
    ClusterError::Unreachable(format!(
        "etcd at {} did not answer ({err}): changes that need the cluster are refused until \
         it does; local traffic and partitions in force go on",
        config.endpoints.join(",")
    ))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}

pub(super) fn from_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(bytes).map_err(|err| {
        ClusterError::Conflict(format!(
            "etcd key {key} holds what this netd cannot read ({err}): is a newer netd writing it?"
        ))
    })
}
