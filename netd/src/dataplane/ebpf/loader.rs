//! Loads the object file built from `netd-ebpf` and wires up aya-log.

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;
use tracing::warn;

/// The compiled TC programs, embedded at build time by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-tc"));

/// A loaded object with its log reader. The logger owns the log ring buffer:
/// dropping it would close the map and make program loads fail, so it lives
/// as long as the object and is polled by a tokio task.
pub struct Loaded {
    pub ebpf: Ebpf,
    log_task: Option<tokio::task::JoinHandle<()>>,
}

impl Loaded {
    /// Parses the object and creates its maps. Must run inside a tokio runtime.
    pub fn new() -> Result<Loaded> {
        Self::with_pinned_maps(&[])
    }

    /// Like [`Loaded::new`], but the named maps are pinned at the given
    /// paths: an existing pin is reused (the caller has checked that it fits),
    /// a missing one is created and pinned.
    pub fn with_pinned_maps(pins: &[(&'static str, std::path::PathBuf)]) -> Result<Loaded> {
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        for (name, path) in pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT).context("loading netd's eBPF object")?;
        let log_task = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(spawn_log_pump(logger)?),
            Err(err) => {
                // Only happens if the programs carry no log statement.
                warn!("eBPF logger not started: {err}");
                None
            }
        };
        Ok(Loaded { ebpf, log_task })
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(task) = self.log_task.take() {
            task.abort();
        }
    }
}

fn spawn_log_pump<T>(logger: aya_log::EbpfLogger<T>) -> Result<tokio::task::JoinHandle<()>>
where
    T: log::Log + Send + Sync + 'static,
{
    // SAFETY: the logger owns the ring buffer's fd and moves into the AsyncFd,
    // so the fd stays open for as long as it is registered.
    let mut logger =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
            .context("registering the eBPF log ring buffer with tokio")?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it so map
/// creation does not fail there. Newer kernels ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
