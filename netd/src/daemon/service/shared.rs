//! The service as concurrent requests share it.
//!
//! Two kinds of lock, always taken in this order:
//!
//! - one per network, held by a request for that network from its start to
//!   its answer: a request stays all or nothing for its network, and
//!   requests for different networks never wait for each other's kernel
//!   work;
//! - the service lock, around the desired state, the dataplane's maps and
//!   the store, held only for the short steps that read or change them
//!   (validating and allocating; committing).
//!
//! The slow steps of a guest add (building its namespace and veth pair)
//! and of a verify (the probes' traffic) run holding their network's lock
//! alone. Requests that touch every network (`cleanup`) take every
//! network's lock, in name order. Nothing waits for a network lock while
//! holding the service lock, so the two kinds cannot deadlock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard, OwnedMutexGuard};

use super::Service;
use crate::daemon::error::{ServiceError, ServiceResult};

/// A network's lock, held (see the module's comment).
pub type NetworkGuard = OwnedMutexGuard<()>;

#[derive(Clone)]
pub struct Shared(Arc<Inner>);

struct Inner {
    service: AsyncMutex<Service>,
    networks: NetworkLocks,
}

impl Shared {
    pub fn new(service: Service) -> Shared {
        Shared(Arc::new(Inner {
            service: AsyncMutex::new(service),
            networks: NetworkLocks::default(),
        }))
    }

    /// The service lock, for one short step.
    pub async fn lock(&self) -> MutexGuard<'_, Service> {
        self.0.service.lock().await
    }

    /// `network`'s lock (any name: the network need not exist yet, as for
    /// a create).
    pub async fn network(&self, network: &str) -> NetworkGuard {
        self.0.networks.lock(network).await
    }

    /// Every network's lock, in name order, for a request that changes
    /// them all.
    pub async fn every_network(&self) -> Vec<NetworkGuard> {
        let names: Vec<String> = self.lock().await.state.networks.keys().cloned().collect();
        let mut guards = Vec::with_capacity(names.len());
        for name in names {
            guards.push(self.network(&name).await);
        }
        guards
    }

    /// Runs `work` as a task of its own and waits for it: a client that
    /// hangs up cannot cancel a request between its steps (a guest built
    /// but not committed would be left behind).
    pub async fn run_whole<T: Send + 'static>(
        &self,
        work: impl Future<Output = ServiceResult<T>> + Send + 'static,
    ) -> ServiceResult<T> {
        tokio::spawn(work).await.map_err(|err| {
            ServiceError::Internal(anyhow::anyhow!("the request's task failed: {err}"))
        })?
    }
}

impl Shared {
    /// A change of one network: `change` runs holding the network's lock,
    /// in a task of its own (see [`Shared::run_whole`]); it takes the
    /// service lock itself, for as long as it needs.
    pub async fn change<T, F, Fut>(&self, network: String, change: F) -> ServiceResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Shared, String) -> Fut + Send + 'static,
        Fut: Future<Output = ServiceResult<T>> + Send,
    {
        let shared = self.clone();
        self.run_whole(async move {
            let _network = shared.network(&network).await;
            change(shared, network).await
        })
        .await
    }
}

/// Each network's lock, while some request holds or waits for it (an entry
/// whose lock nobody holds any more is dropped as new ones come).
#[derive(Default)]
struct NetworkLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl NetworkLocks {
    async fn lock(&self, network: &str) -> NetworkGuard {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match locks.get(network).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if locks.len() >= 64 {
                        locks.retain(|_, lock| lock.strong_count() > 0);
                    }
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(network.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn one_network_at_a_time_and_others_meanwhile() {
        runtime().block_on(async {
            let locks = NetworkLocks::default();
            let web = locks.lock("web").await;
            // Another network's lock is free.
            let db = tokio::time::timeout(Duration::from_secs(5), locks.lock("db")).await;
            assert!(db.is_ok(), "another network's lock must not wait");
            // The same network's waits until the holder lets go.
            let again = tokio::time::timeout(Duration::from_millis(50), locks.lock("web")).await;
            assert!(again.is_err(), "the same network's lock must wait");
            drop(web);
            let again = tokio::time::timeout(Duration::from_secs(5), locks.lock("web")).await;
            assert!(again.is_ok(), "free again once its holder let go");
        });
    }

    #[test]
    fn locks_nobody_holds_are_dropped() {
        runtime().block_on(async {
            let locks = NetworkLocks::default();
            let held = locks.lock("kept").await;
            for n in 0..200 {
                drop(locks.lock(&format!("net{n}")).await);
            }
            assert!(locks.entries() <= 65, "{} entries", locks.entries());
            // The held one survived the sweeps: its holder still excludes.
            let again = tokio::time::timeout(Duration::from_millis(50), locks.lock("kept")).await;
            assert!(again.is_err());
            drop(held);
        });
    }
}
