//! A private world for one root test: a "host" and an "internet" namespace
//! joined by a veth, private state/run/bpffs directories and a unique name
//! prefix. Dropping it tears everything down, panics included, and then
//! checks that nothing of it is left.
//!
//! Addresses are documentation ranges (RFC 5737), so no packet can leave:
//!
//! ```text
//!   host ns                         internet ns
//!   uplink 198.51.100.2/24  <--->   uplink 198.51.100.1/24
//!   default via 198.51.100.1        lo 203.0.113.10/32 (a "server")
//! ```

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ipnetwork::Ipv4Network;
use netd::{bpffs, netlink::Netlink, netns::Netns};

pub const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const INTERNET_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// A host "on the internet", reachable only through the host namespace's
/// default route.
pub const INTERNET_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Name of the veth end in each of the two namespaces.
pub const UPLINK: &str = "uplink";

/// Every sandbox name starts with this, so leftovers are easy to attribute.
pub const SANDBOX_NAME_PREFIX: &str = "ndt";

pub struct Sandbox {
    /// Unique, short (7 bytes) prefix for every name this sandbox makes; netd
    /// instances under test get it as `--netns-prefix`.
    pub prefix: String,
    pub host: Netns,
    pub internet: Netns,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub bpffs_dir: PathBuf,
    children: Mutex<Vec<Child>>,
}

impl Sandbox {
    /// Builds a fresh sandbox; panics (after cleaning up what it made) if the
    /// machine cannot provide one.
    pub fn new() -> Sandbox {
        let prefix = unique_prefix();
        match Self::build(&prefix) {
            Ok(sandbox) => sandbox,
            Err(err) => {
                let root = root_dir(&prefix);
                let _ = teardown(&prefix, &root, &mut Vec::new());
                panic!("could not build sandbox {prefix}: {err:#}");
            }
        }
    }

    fn build(prefix: &str) -> Result<Sandbox> {
        let root = root_dir(prefix);
        let state_dir = root.join("state");
        let run_dir = root.join("run");
        let bpffs_dir = root.join("bpffs");
        for dir in [&state_dir, &run_dir] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        bpffs::ensure_mounted(&bpffs_dir)?;

        let host = Netns::create(&format!("{prefix}host"))?;
        let internet = Netns::create(&format!("{prefix}inet"))?;
        block_on(wire_up(&host, &internet))?;
        Ok(Sandbox {
            prefix: prefix.to_string(),
            host,
            internet,
            root,
            state_dir,
            run_dir,
            bpffs_dir,
            children: Mutex::new(Vec::new()),
        })
    }

    /// A command that runs in the host namespace.
    pub fn host_command(&self, program: &str) -> Command {
        self.host.command(program)
    }

    /// A command that runs in the internet namespace.
    pub fn internet_command(&self, program: &str) -> Command {
        self.internet.command(program)
    }

    /// Starts a long-running process whose lifetime the sandbox owns: it is
    /// killed and reaped on teardown. Returns its pid.
    pub fn spawn(&self, mut command: Command) -> Result<u32> {
        let child = command
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        Ok(pid)
    }

    /// What of this sandbox still exists on the machine (empty when clean).
    pub fn leftovers(&self) -> Vec<String> {
        leftovers(&self.prefix, &self.root)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let mut children = std::mem::take(&mut *self.children.lock().unwrap());
        let errors = teardown(&self.prefix, &self.root, &mut children);
        let left = leftovers(&self.prefix, &self.root);
        if errors.is_empty() && left.is_empty() {
            return;
        }
        let report = format!(
            "sandbox {} teardown: errors {errors:?}, left behind {left:?}",
            self.prefix
        );
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

/// Removes everything a sandbox may have made, going on past failures.
/// Returns the failures.
pub fn teardown(prefix: &str, root: &Path, children: &mut Vec<Child>) -> Vec<String> {
    let mut errors = Vec::new();
    for child in children.iter_mut() {
        let _ = child.kill();
        if let Err(err) = child.wait() {
            errors.push(format!("reaping pid {}: {err}", child.id()));
        }
    }
    children.clear();
    // Processes started by netd under test (guests' commands, daemons that
    // were not spawned through `spawn`) are found by their namespace names
    // or directories on the command line.
    for pid in processes_mentioning(prefix, root) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_until(Duration::from_secs(5), || {
        processes_mentioning(prefix, root).is_empty()
    });
    for name in Netns::list_with_prefix(prefix) {
        if let Err(err) = Netns::delete(&name) {
            errors.push(format!("{err:#}"));
        }
    }
    let bpffs_dir = root.join("bpffs");
    if let Err(err) = bpffs::unmount(&bpffs_dir) {
        errors.push(format!("{err:#}"));
    }
    if root.exists()
        && let Err(err) = fs::remove_dir_all(root)
    {
        errors.push(format!("removing {}: {err}", root.display()));
    }
    errors
}

/// Everything of the sandbox `prefix` that is still on the machine:
/// namespaces, processes, its bpffs mount and directories, links in the root
/// namespace carrying its prefix.
pub fn leftovers(prefix: &str, root: &Path) -> Vec<String> {
    let mut left: Vec<String> = Netns::list_with_prefix(prefix)
        .into_iter()
        .map(|name| format!("namespace {name}"))
        .collect();
    left.extend(
        processes_mentioning(prefix, root)
            .into_iter()
            .map(|pid| format!("process {pid}")),
    );
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root_str = root.to_string_lossy();
    left.extend(
        mounts
            .lines()
            .filter(|line| {
                line.split(' ')
                    .nth(1)
                    .is_some_and(|m| m.starts_with(&*root_str))
            })
            .map(|line| format!("mount {line}")),
    );
    if root.exists() {
        left.push(format!("directory {}", root.display()));
    }
    left.extend(
        fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with(prefix))
            .map(|name| format!("root-namespace link {name}")),
    );
    left
}

fn processes_mentioning(prefix: &str, root: &Path) -> Vec<u32> {
    let me = std::process::id();
    let root = root.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(&root)
                || cmdline
                    .split('\0')
                    .any(|arg| arg.starts_with(prefix) && arg.len() > prefix.len())
        })
        .collect()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wire_up(host: &Netns, internet: &Netns) -> Result<()> {
    let host_nl = Netlink::connect(Some(host))?;
    let inet_nl = Netlink::connect(Some(internet))?;
    host_nl.add_veth_into(UPLINK, internet, UPLINK).await?;
    for (nl, addr) in [(&host_nl, HOST_UPLINK), (&inet_nl, INTERNET_GATEWAY)] {
        nl.set_up("lo").await?;
        nl.add_address(UPLINK, Ipv4Network::new(addr, 24)?).await?;
        nl.set_up(UPLINK).await?;
    }
    inet_nl
        .add_address("lo", Ipv4Network::new(INTERNET_SERVER, 32)?)
        .await?;
    host_nl
        .add_route(
            Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0)?,
            Some(INTERNET_GATEWAY),
            None,
        )
        .await?;
    Ok(())
}

/// Runs a future on a private current-thread runtime (sandbox code is sync).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

fn root_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netd-sandbox-{prefix}"))
}

/// `ndt` + 4 hex digits: unique among the sandboxes of this machine (checked
/// against existing namespaces and directories) and short enough that netd's
/// interface names built from it stay within 15 bytes.
fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    loop {
        let seed = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503))
            .wrapping_add(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos(),
            );
        let prefix = format!("{SANDBOX_NAME_PREFIX}{:04x}", seed & 0xffff);
        if Netns::list_with_prefix(&prefix).is_empty() && !root_dir(&prefix).exists() {
            return prefix;
        }
    }
}
