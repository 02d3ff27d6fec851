//! `netd exec NETWORK GUEST [--resolver] -- CMD [ARGS...]`: enters the
//! guest's network namespace and replaces this process with CMD, so its
//! output and exit code are CMD's own. With `--resolver`, CMD also sees a
//! resolv.conf naming the network's resolver, in a mount namespace of its
//! own: nothing of the guest's or the host's files changes.

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
    /// Point CMD at the network's resolver: /etc/resolv.conf is replaced,
    /// for CMD alone, by one naming it (search: the network).
    #[arg(long)]
    resolver: bool,
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
    if args.resolver {
        point_at_resolver(&guest)?;
    }
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

/// Gives this process a mount namespace of its own in which
/// /etc/resolv.conf names the guest's network's resolver.
fn point_at_resolver(guest: &GuestView) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).context("making a mount namespace for CMD")?;
    // Nothing mounted here may reach the host's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making CMD's mounts private")?;
    // Written inside the private mount namespace, then bound over
    // /etc/resolv.conf; the bind mount holds the file, so its name goes.
    let conf = std::env::temp_dir().join(format!("netd-exec-resolv.conf.{}", std::process::id()));
    std::fs::write(
        &conf,
        format!(
            "nameserver {}\nsearch {}\n",
            guest.nameserver, guest.network
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let bound = mount(
        Some(&conf),
        "/etc/resolv.conf",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    let _ = std::fs::remove_file(&conf);
    bound.context("putting CMD's resolv.conf over /etc/resolv.conf")?;
    Ok(())
}
