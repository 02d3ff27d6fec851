//! Namespaces made ahead of need: the daemon keeps a few fresh, unnamed
//! network namespaces (held by an open handle only), so that a guest add
//! or network create names one (a bind mount) instead of waiting for the
//! kernel to build it (`unshare(CLONE_NEWNET)`, the largest single step of a
//! guest add: about a millisecond here, more under load).
//!
//! One long-lived thread refills the pool whenever a namespace is taken.
//! Spares are nobody's: the kernel frees them when their handles close,
//! at the latest when the daemon exits, so a crash leaves nothing behind.

use std::{
    fs::File,
    sync::{Condvar, Mutex, OnceLock},
};

use tracing::warn;

use super::Inside;

struct Spares {
    keep: usize,
    ready: Mutex<Vec<File>>,
    taken: Condvar,
}

static SPARES: OnceLock<Spares> = OnceLock::new();

/// Keeps `count` spare namespaces ready from now on (the daemon calls it
/// once at start; later calls change nothing). Without it, every namespace
/// is made when asked for.
pub fn keep_spares(count: usize) {
    let mut started = false;
    let spares = SPARES.get_or_init(|| {
        started = true;
        Spares {
            keep: count,
            ready: Mutex::new(Vec::with_capacity(count)),
            taken: Condvar::new(),
        }
    });
    if started && count > 0 {
        let spawned = std::thread::Builder::new()
            .name("netns-spares".to_owned())
            .spawn(move || spares.refill_forever());
        if let Err(err) = spawned {
            warn!("no spare namespaces (every one is made on request): {err}");
        }
    }
}

/// A fresh namespace's handle, if one is ready.
pub(super) fn take() -> Option<File> {
    let spares = SPARES.get()?;
    let spare = lock(&spares.ready).pop();
    spares.taken.notify_one();
    spare
}

impl Spares {
    fn refill_forever(&self) {
        loop {
            {
                let mut ready = lock(&self.ready);
                while ready.len() >= self.keep {
                    ready = self
                        .taken
                        .wait(ready)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
            match fresh_namespace() {
                Ok(spare) => lock(&self.ready).push(spare),
                Err(err) => {
                    // Requests make their own meanwhile; try again later.
                    warn!("making a spare network namespace: {err:#}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

fn fresh_namespace() -> anyhow::Result<File> {
    use anyhow::Context;
    let _inside = Inside::new_namespace()?;
    File::open("/proc/thread-self/ns/net").context("opening the new namespace")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
