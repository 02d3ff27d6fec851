//! `netd daemon`: reconciles the kernel to the persisted desired state, then
//! serves the API on a unix socket until SIGTERM/SIGINT. The kernel state
//! outlives the daemon: stopping it removes nothing.

pub mod api;
pub mod caller;
pub mod error;
pub mod events;
pub mod limit;
pub mod metrics;
pub mod probe;
pub mod rate_probe;
pub mod requests;
pub mod service;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use tokio::net::UnixListener;
use tracing::info;

use crate::{
    bpffs,
    config::{Config, Dataplane as DataplaneKind},
    dataplane::{Dataplane, ebpf::EbpfDataplane, nftables::NftDataplane},
    model::State,
    netlink::HostView,
    store::{Store, StoreLock},
    topology::Topology,
};

/// Command-line overrides of the configuration file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub bpffs_dir: Option<PathBuf>,
    pub netns_prefix: Option<String>,
    pub dataplane: Option<DataplaneKind>,
    /// The cluster settings, each replacing the file's when given.
    pub cluster_endpoints: Vec<String>,
    pub node: Option<String>,
    pub underlay_address: Option<std::net::Ipv4Addr>,
}

pub fn effective_config(config_file: &Path, overrides: &Overrides) -> Result<Config> {
    let mut config = Config::load(config_file)?;
    if let Some(v) = &overrides.socket {
        config.socket = v.clone();
    }
    if let Some(v) = &overrides.state_dir {
        config.state_dir = v.clone();
    }
    if let Some(v) = &overrides.run_dir {
        config.run_dir = v.clone();
    }
    if let Some(v) = &overrides.bpffs_dir {
        config.bpffs_dir = v.clone();
    }
    if let Some(v) = &overrides.netns_prefix {
        config.netns_prefix = v.clone();
    }
    if let Some(v) = overrides.dataplane {
        config.dataplane = v;
    }
    if !overrides.cluster_endpoints.is_empty() {
        config.cluster_endpoints = overrides.cluster_endpoints.clone();
    }
    if let Some(v) = &overrides.node {
        config.node = Some(v.clone());
    }
    if let Some(v) = overrides.underlay_address {
        config.underlay_address = Some(v);
    }
    config.validate()?;
    Ok(config)
}

/// How the daemon treats what it finds at start.
#[derive(Debug, Default, Clone, Copy)]
pub struct StartOptions {
    /// Start on an empty or missing state even though the kernel holds
    /// networks or guests netd made, and so remove them.
    pub adopt_empty_state: bool,
}

/// How many fresh namespaces the daemon keeps ready (`netns::keep_spares`):
/// enough for a burst of guest adds to find one each while the pool refills
/// behind them; an empty namespace costs the kernel some tens of KiB.
const SPARE_NAMESPACES: usize = 8;

pub async fn run(config: Config, options: StartOptions) -> Result<()> {
    raise_fd_limit();
    check_host(&config).await?;
    let _lock = StoreLock::take(&config.state_dir)?;
    let store = Store::open(&config.state_dir)?;
    bpffs::ensure_mounted(&config.bpffs_dir)?;
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating run dir {}", config.run_dir.display()))?;
    let state = load_state(&store, &config, options)?;
    let socket = config.socket.clone();
    let dataplane = open_dataplane(&config)?;
    let cluster = match config.cluster()? {
        Some(settings) => Some(crate::cluster::Cluster::connect(&settings).await?),
        None => None,
    };
    // The underlay probe's socket, in the daemon's namespace on the
    // underlay address: bound before anything else is built, so a taken
    // port stops the start naming the setting.
    let probe_socket = match &cluster {
        Some(cluster) => {
            let at =
                std::net::SocketAddrV4::new(cluster.config().underlay, cluster.config().probe_port);
            Some(tokio::net::UdpSocket::bind(at).await.with_context(|| {
                format!(
                    "binding the underlay probe's UDP socket on {at}: free the port or set                      another underlay_probe_port in netd.toml"
                )
            })?)
        }
        None => None,
    };
    crate::netns::keep_spares(SPARE_NAMESPACES);
    let mut service = service::Service::new(Topology::new(config)?, store, state, dataplane);
    if let Some(cluster) = &cluster {
        service.set_cluster(cluster.clone());
    }
    service.reconcile().await;
    info!(
        networks = service.network_count(),
        "reconciled the kernel to the desired state"
    );

    let listener = bind(&socket)?;
    let telemetry = service.telemetry();
    let metrics_listen = service.metrics_listen();
    service.emit(
        events::Event::new("daemon.started")
            .detail(format!("{} networks", service.network_count())),
    );
    let shared = service::Shared::new(service);
    let metrics_server = match metrics_listen {
        Some(addr) => Some(metrics::serve_tcp(addr, shared.clone()).await?),
        None => None,
    };
    let gc = tokio::spawn(collect_garbage(shared.clone()));
    let steps = tokio::spawn(advance_schedules(shared.clone()));
    // A node's membership and the overlay's entries follow etcd on their
    // own: the API answers whether etcd does or not.
    let cluster_tasks = cluster.map(|cluster| {
        [
            tokio::spawn(crate::cluster::probe::serve(
                probe_socket.expect("bound with the cluster"),
                cluster.config().node.clone(),
            )),
            tokio::spawn(cluster.clone().keep_membership(service::now())),
            tokio::spawn(service::span_requests::follow_cluster(
                shared.clone(),
                cluster,
            )),
        ]
    });
    notify_ready();
    info!(socket = %socket.display(), "serving the API");
    // Peer credentials tell the host from a guest (see `caller`).
    let app = api::router(shared.clone(), telemetry.clone())
        .into_make_service_with_connect_info::<caller::PeerCred>();
    let listener = limit::LimitedListener::new(listener, limit::CONNECTIONS_PER_CALLER);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Open `netd events` streams end, so they do not hold this up.
            telemetry.events.close();
        })
        .await;
    gc.abort();
    steps.abort();
    for task in cluster_tasks.into_iter().flatten() {
        task.abort();
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    let _ = std::fs::remove_file(&socket);
    // The state the daemon stops on is a good one to roll back to as well.
    if let Err(err) = shared.lock().await.keep_backup() {
        tracing::warn!("keeping a backup of the state: {err}");
    }
    served.context("serving the API")?;
    info!("stopped; the networks stay in place");
    Ok(())
}

/// The persisted state, checked as strictly as a request, and refused if it
/// is empty (or missing) while the kernel still holds networks or guests
/// netd made: reconciling to it would remove them all. A state that passes
/// is kept as the newest backup.
fn load_state(store: &Store, config: &Config, options: StartOptions) -> Result<State> {
    let path = store.db_path();
    let rollback = rollback_hint(store);
    let loaded: Option<State> = store.load()?;
    let missing = loaded.is_none();
    let state = loaded.unwrap_or_default();
    let uplinks = crate::ipam::UplinkPool::new(config.uplink_pool)?;
    if let Err(problem) = crate::state_check::check_state(&state, &uplinks) {
        anyhow::bail!(
            "state database {} is inconsistent: {problem}: netd does not start on it, as \
             reconciling to it could tear down live networks; {rollback}",
            path.display()
        );
    }
    if state.networks.is_empty() {
        let names = crate::topology::Names::new(&config.netns_prefix);
        let owned: Vec<String> = crate::netns::Netns::list_with_prefix(names.prefix())
            .into_iter()
            .filter(|name| *name != names.gateway_ns())
            .collect();
        if !owned.is_empty() {
            let what = if missing {
                "is missing"
            } else {
                "holds no network"
            };
            if !options.adopt_empty_state {
                anyhow::bail!(
                    "state database {} {what}, but netd's namespaces {} exist: starting on it \
                     would remove them; {rollback}, or start with `netd daemon \
                     --adopt-empty-state` to remove them",
                    path.display(),
                    owned.join(", ")
                );
            }
            tracing::warn!(
                namespaces = %owned.join(", "),
                "state database {} {what}: removing the networks netd had (--adopt-empty-state)",
                path.display()
            );
        }
    }
    if !state.networks.is_empty() {
        store.keep_backup()?;
    }
    Ok(state)
}

/// How to roll back to an earlier state, naming the ones kept.
fn rollback_hint(store: &Store) -> String {
    let dir = store.dir().display();
    match store.backups().first() {
        Some(newest) => format!(
            "roll back to the state of the last start (`netd state restore {} --state-dir \
             {dir}`; kept: {})",
            newest.display(),
            store
                .backups()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!(
            "restore a state you have (`netd state restore FILE --state-dir {dir}`, FILE a \
             state database or JSON state); netd kept no earlier state there"
        ),
    }
}

/// The dataplane backend the configuration asks for, loaded and adopting
/// whatever a previous daemon pinned.
fn open_dataplane(config: &Config) -> Result<Box<dyn Dataplane>> {
    match config.dataplane {
        DataplaneKind::Ebpf => {
            let dataplane = EbpfDataplane::open(&config.bpffs_dir)?;
            dataplane.log_start();
            Ok(Box::new(dataplane))
        }
        DataplaneKind::Nftables => Ok(Box::new(NftDataplane::new())),
    }
}

/// How often expired connections are removed from the conntrack table, the
/// dataplane's kernel state (its host side included) is checked and
/// repaired, and due timed partitions are healed (`Service::housekeeping`).
const GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the steps of flapping and scheduled partitions are looked at.
const STEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Puts the next step of flapping and scheduled partitions in force on
/// time (`Service::advance_schedules`).
async fn advance_schedules(service: service::Shared) {
    let mut ticks = tokio::time::interval(STEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        service
            .lock()
            .await
            .advance_schedules(service::partition_requests::now_ms());
    }
}

async fn collect_garbage(service: service::Shared) {
    let mut ticks = tokio::time::interval(GC_INTERVAL);
    loop {
        ticks.tick().await;
        service.lock().await.housekeeping(service::now());
    }
}

/// Raises the soft limit of open files to the hard one: every API
/// connection, namespace handle and nft run takes descriptors, and the
/// default 1024 is soon reached by a guest opening thousands of
/// connections (which the per-caller limit of `api` also bounds).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "reading the open files limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!(
                "raising the open files limit from {soft} to {}: {}",
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Fails early, naming the setting, if the host already uses netd's ranges.
async fn check_host(config: &Config) -> Result<()> {
    let host = HostView::read().await?;
    config.check_host_conflicts(&host.addresses, &host.routes, &config.host_link)?;
    Ok(())
}

fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket file left by a daemon that was killed: the state lock (held
    // above) proves no live daemon uses it.
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", socket.display()))?;
    Ok(listener)
}

/// systemd `Type=notify`: READY=1 once the start-up reconcile is done.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| socket.send_to_addr(b"READY=1", &addr))
    } else {
        socket.send_to(b"READY=1", &path)
    };
    if let Err(err) = sent {
        tracing::warn!("sd_notify READY=1: {err}");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
