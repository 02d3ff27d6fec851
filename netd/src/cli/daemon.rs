//! `netd daemon`

use std::path::PathBuf;

use anyhow::Result;
use netd::{
    config::{DEFAULT_CONFIG_PATH, Dataplane},
    daemon::{self, Overrides},
};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Directory of the persisted desired state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Directory for runtime files.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// bpffs directory for pins (mounted as bpffs if it is not one).
    #[arg(long)]
    bpffs_dir: Option<PathBuf>,
    /// Prefix of every namespace this instance creates.
    #[arg(long)]
    netns_prefix: Option<String>,
    /// ebpf or nftables.
    #[arg(long)]
    dataplane: Option<Dataplane>,
    /// Start even if the state is empty or missing while netd's networks
    /// still exist, and remove them (without it the daemon refuses).
    #[arg(long)]
    adopt_empty_state: bool,
    /// Join the cluster whose etcd answers at these client URLs
    /// (`http://IP:PORT,...`); needs --node and --underlay-address.
    #[arg(long, value_delimiter = ',')]
    cluster_endpoints: Vec<String>,
    /// This node's name in the cluster.
    #[arg(long)]
    node: Option<String>,
    /// This host's address that the other nodes reach (VXLAN's underlay).
    #[arg(long)]
    underlay_address: Option<std::net::Ipv4Addr>,
}

/// `socket` is the global `--socket`: it overrides the file's setting only
/// when given.
pub fn run(args: Args, socket: Option<PathBuf>) -> Result<i32> {
    let adopt_empty_state = args.adopt_empty_state;
    let overrides = Overrides {
        socket,
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        bpffs_dir: args.bpffs_dir,
        netns_prefix: args.netns_prefix,
        dataplane: args.dataplane,
        cluster_endpoints: args.cluster_endpoints,
        node: args.node,
        underlay_address: args.underlay_address,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = daemon::effective_config(&args.config, &overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon::run(
        config,
        daemon::StartOptions { adopt_empty_state },
    ))?;
    Ok(0)
}
