//! netd across hosts: nodes share spanned networks through etcd and the
//! kernel's VXLAN. Without cluster settings none of this runs and no etcd
//! is needed.
//!
//! - `config`: the three settings, all or none;
//! - `keys` and `records`: what is stored in etcd, where;
//! - `alloc`: VNIs, guest addresses and partition slots, pure;
//! - `fdb`: a node's VXLAN forwarding entries, pure;
//! - `etcd`: the client side (registration under a lease, transactions);
//! - `vxlan`: the device and its entries, over netlink;
//! - `probe`: the underlay probe every node answers and `status` sends;
//! - here: the node's membership loop and the errors.

pub mod alloc;
pub mod config;
pub mod etcd;
pub mod fdb;
pub mod keys;
pub mod probe;
pub mod records;
pub mod vxlan;

use std::sync::{Arc, Mutex};

pub use config::ClusterConfig;
pub use etcd::Etcd;

/// What a change that needs the cluster can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer: nothing was changed.
    #[error("{0}")]
    Unreachable(String),
    /// What etcd holds contradicts the request.
    #[error("{0}")]
    Conflict(String),
}

/// This node's membership as the membership loop last saw it.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// The lease the node's registration lives under, while it does.
    pub lease: Option<i64>,
    /// Why the node is not registered, when it is not.
    pub problem: Option<String>,
}

/// A node of a cluster: its etcd connection and its membership.
#[derive(Clone)]
pub struct Cluster {
    pub etcd: Etcd,
    membership: Arc<Mutex<Membership>>,
}

impl Cluster {
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        Ok(Cluster {
            etcd: Etcd::connect(config).await?,
            membership: Arc::new(Mutex::new(Membership {
                lease: None,
                problem: Some("not registered yet".to_owned()),
            })),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.etcd.config
    }

    pub fn membership(&self) -> Membership {
        self.membership.lock().expect("membership lock").clone()
    }

    /// Registers the node and keeps its lease alive, for as long as the
    /// daemon runs: when etcd goes away, it registers again once it is
    /// back (a fresh lease: the old one may have expired meanwhile).
    pub async fn keep_membership(self, joined_at: u64) {
        loop {
            match self.etcd.register(joined_at).await {
                Ok(lease) => {
                    tracing::info!(node = %self.config().node, lease = format!("{lease:x}"), "registered in the cluster");
                    self.set(Membership {
                        lease: Some(lease),
                        problem: None,
                    });
                    let problem = self.etcd.keep_alive(lease).await;
                    tracing::warn!("cluster membership: {problem}");
                    self.set(Membership {
                        lease: None,
                        problem: Some(problem.to_string()),
                    });
                }
                Err(problem) => {
                    self.set(Membership {
                        lease: None,
                        problem: Some(problem.to_string()),
                    });
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    fn set(&self, membership: Membership) {
        *self.membership.lock().expect("membership lock") = membership;
    }
}
