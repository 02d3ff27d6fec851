//! `netd exec NETWORK GUEST -- CMD [ARGS...]`: enters the guest's network
//! namespace and replaces this process with CMD, so its output and exit code
//! are CMD's own.

use std::{fs::File, os::unix::process::CommandExt, process::Command};

use anyhow::{Context, Result};
use netd::{
    client::{Client, segment},
    daemon::requests::GuestView,
};
use nix::sched::{CloneFlags, setns};

#[derive(clap::Args)]
pub struct Args {
    #[arg(add = super::names::network())]
    network: String,
    #[arg(add = super::names::guest())]
    guest: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(client: &Client, args: Args) -> Result<i32> {
    let guest: GuestView = client.get(&format!(
        "/v1/networks/{}/guests/{}",
        segment(&args.network),
        segment(&args.guest)
    ))?;
    let ns = File::open(&guest.netns)
        .with_context(|| format!("opening the guest's namespace {}", guest.netns.display()))?;
    setns(&ns, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering {} (are you root?)", guest.netns.display()))?;
    let err = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    eprintln!("netd: cannot run {}: {err}", args.command[0]);
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}
