//! `netd state`: the desired state, as the store holds it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use netd::{
    client::Client,
    config::{Config, DEFAULT_CONFIG_PATH},
    ipam::UplinkPool,
    model::State,
    store::{Store, StoreLock},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the whole desired state (networks, guests, ports, partitions)
    /// from the running daemon.
    Dump {
        /// JSON, for scripts (the only format; accepted for symmetry).
        #[arg(long)]
        json: bool,
    },
    /// Replace the desired state with the one in FILE (a `state.db.N`
    /// backup, another state database, or a JSON state), with the daemon
    /// stopped. The state is checked as the daemon checks it at start;
    /// the next start reconciles the kernel to it.
    Restore {
        /// The state to restore.
        file: PathBuf,
        /// The state directory [default: the config's `state_dir`].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Configuration file (for `state_dir` and the uplink pool).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

pub fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Dump { json: _ } => {
            let state: serde_json::Value = client.get("/v1/state")?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Restore {
            file,
            state_dir,
            config,
        } => restore(&file, state_dir, &config),
    }
}

fn restore(
    file: &std::path::Path,
    state_dir: Option<PathBuf>,
    config: &std::path::Path,
) -> Result<i32> {
    let config = Config::load(config)?;
    let dir = state_dir.unwrap_or(config.state_dir.clone());
    let _lock = StoreLock::take(&dir).context("netd state restore needs the daemon stopped")?;
    let state: State = Store::read_file(file)?;
    let uplinks = UplinkPool::new(config.uplink_pool)?;
    if let Err(problem) = netd::state_check::check_state(&state, &uplinks) {
        bail!(
            "{} is inconsistent: {problem}: netd would refuse to start on it; nothing was changed",
            file.display()
        );
    }
    Store::replace(&dir, &state)?;
    println!(
        "restored {} networks from {} into {}; start the daemon to reconcile the kernel to them",
        state.networks.len(),
        file.display(),
        dir.display()
    );
    Ok(0)
}
