//! A cluster of netd nodes for one root test: `NODES` sandboxes (each a
//! host namespace with its own daemon, state, run and bpffs directories and
//! name prefix, see `sandbox`), joined by an "underlay" bridge in a fabric
//! sandbox of their own, and a 3-member etcd cluster started from Debian's
//! `/usr/bin/etcd`, each member in its own namespace on that bridge, its
//! data directory inside the fabric sandbox. Dropping it tears down the
//! nodes, then the fabric (the etcd members are its children and its
//! namespaces), each sandbox checking that nothing of it is left.
//!
//! ```text
//!   node i host ns                 fabric host ns              etcd j ns
//!   underlay 10.A.B.(11+i)/24 --- [bridge underlay  ] --- eth0 10.A.B.(101+j)/24
//!                                  10.A.B.1/24
//! ```
//!
//! The underlay subnet 10.A.B.0/24 is derived from the fabric's prefix: it
//! exists only inside these namespaces, so no packet can leave them.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ipnetwork::Ipv4Network;
use netd::{netlink::Netlink, netns::Netns};

use crate::{Sandbox, netd::Netd, sandbox::block_on};

/// How many netd nodes a cluster has.
pub const NODES: usize = 3;
/// How many etcd members it has.
pub const ETCD_MEMBERS: usize = 3;
/// etcd's client and peer ports.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// The bridge in the fabric namespace, and each node's link to it.
pub const UNDERLAY: &str = "underlay";
/// Where etcd's binary is (Debian's `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";

pub struct Cluster {
    /// The nodes' sandboxes, node i is `node{i+1}`. Declared first: they
    /// are dropped (their daemons killed) before the fabric and its etcd.
    pub nodes: Vec<Sandbox>,
    /// The underlay bridge (in its host namespace) and the etcd members.
    pub fabric: Sandbox,
    /// The underlay's /24.
    pub underlay: Ipv4Network,
    /// Each etcd member's pid, killable on purpose.
    etcd_pids: std::sync::Mutex<Vec<u32>>,
}

impl Cluster {
    /// Builds the fabric, the nodes' links and a running etcd cluster; panics
    /// (after tearing down what it made) if the machine cannot.
    pub fn new() -> Cluster {
        let fabric = Sandbox::new();
        let nodes: Vec<Sandbox> = (0..NODES).map(|_| Sandbox::new()).collect();
        let underlay = underlay_of(&fabric.prefix);
        let mut cluster = Cluster {
            nodes,
            fabric,
            underlay,
            etcd_pids: std::sync::Mutex::new(Vec::new()),
        };
        if let Err(err) = cluster.build() {
            panic!(
                "could not build cluster on {}: {err:#}\netcd logs:\n{}",
                cluster.fabric.prefix,
                cluster.etcd_logs()
            );
        }
        cluster
    }

    fn build(&mut self) -> Result<()> {
        block_on(self.wire_underlay())?;
        for member in 0..ETCD_MEMBERS {
            let pid = self.start_etcd(member)?;
            self.etcd_pids.lock().unwrap().push(pid);
        }
        self.wait_etcd_healthy(Duration::from_secs(60))
    }

    /// Node `i`'s underlay address (i from 0).
    pub fn node_address(&self, i: usize) -> Ipv4Addr {
        host_in(self.underlay, 11 + i as u8)
    }

    /// etcd member `j`'s address (j from 0).
    pub fn etcd_address(&self, j: usize) -> Ipv4Addr {
        host_in(self.underlay, 101 + j as u8)
    }

    /// Node `i`'s name in the cluster.
    pub fn node_name(i: usize) -> String {
        format!("node{}", i + 1)
    }

    /// The etcd client URLs, comma-separated, as `--cluster-endpoints`
    /// takes them.
    pub fn endpoints(&self) -> String {
        (0..ETCD_MEMBERS)
            .map(|j| format!("http://{}:{CLIENT_PORT}", self.etcd_address(j)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `netd daemon` arguments that make node `i` a member.
    pub fn daemon_args(&self, i: usize) -> Vec<String> {
        vec![
            "--cluster-endpoints".into(),
            self.endpoints(),
            "--node".into(),
            Self::node_name(i),
            "--underlay-address".into(),
            self.node_address(i).to_string(),
        ]
    }

    /// Starts a daemon on every node, with `dataplane`.
    pub fn start_daemons(&self, dataplane: &str) -> Vec<Netd<'_>> {
        (0..NODES)
            .map(|i| Netd::start_with_args(&self.nodes[i], dataplane, &self.daemon_args(i)))
            .collect()
    }

    /// etcd member `j`'s namespace.
    pub fn etcd_netns(&self, j: usize) -> Netns {
        Netns::open(&etcd_ns_name(&self.fabric.prefix, j)).expect("etcd member namespace")
    }

    /// Kills etcd member `j` with SIGKILL and waits until it is gone.
    pub fn kill_etcd(&self, j: usize) {
        let pid = self.etcd_pids.lock().unwrap()[j];
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let start = Instant::now();
        while !gone(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts etcd member `j` again on its data directory (after
    /// `kill_etcd`).
    pub fn restart_etcd(&self, j: usize) {
        let pid = self.start_etcd(j).expect("restarting an etcd member");
        self.etcd_pids.lock().unwrap()[j] = pid;
    }

    fn etcd_dir(&self, j: usize) -> PathBuf {
        self.fabric.root.join(format!("etcd{j}"))
    }

    /// Every member's log, for failure messages.
    pub fn etcd_logs(&self) -> String {
        (0..ETCD_MEMBERS)
            .map(|j| {
                let log = std::fs::read_to_string(self.etcd_dir(j).with_extension("log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                format!(
                    "--- etcd{j}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wire_underlay(&self) -> Result<()> {
        let fabric = Netlink::connect(Some(&self.fabric.host))?;
        fabric.add_bridge(UNDERLAY).await?;
        let prefix = self.underlay.prefix();
        // The fabric's own address: where the harness asks etcd's health.
        fabric
            .add_address(
                UNDERLAY,
                Ipv4Network::new(host_in(self.underlay, 1), prefix)?,
            )
            .await?;
        fabric.set_up(UNDERLAY).await?;
        for (i, node) in self.nodes.iter().enumerate() {
            let port = format!("n{i}");
            let address = Ipv4Network::new(self.node_address(i), prefix)?;
            plug(&fabric, &port, &node.host, UNDERLAY, address).await?;
        }
        for j in 0..ETCD_MEMBERS {
            let ns = Netns::create(&etcd_ns_name(&self.fabric.prefix, j))?;
            Netlink::connect(Some(&ns))?.set_up("lo").await?;
            let address = Ipv4Network::new(self.etcd_address(j), prefix)?;
            plug(&fabric, &format!("e{j}"), &ns, "eth0", address).await?;
        }
        Ok(())
    }

    fn start_etcd(&self, j: usize) -> Result<u32> {
        let initial: Vec<String> = (0..ETCD_MEMBERS)
            .map(|m| format!("etcd{m}=http://{}:{PEER_PORT}", self.etcd_address(m)))
            .collect();
        let ip = self.etcd_address(j);
        let ns = self.etcd_netns(j);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.etcd_dir(j).with_extension("log"))
            .context("creating etcd's log")?;
        let mut cmd: Command = ns.command(ETCD);
        cmd.arg("--name")
            .arg(format!("etcd{j}"))
            .arg("--data-dir")
            .arg(self.etcd_dir(j))
            .arg("--listen-client-urls")
            .arg(format!("http://{ip}:{CLIENT_PORT}"))
            .arg("--advertise-client-urls")
            .arg(format!("http://{ip}:{CLIENT_PORT}"))
            .arg("--listen-peer-urls")
            .arg(format!("http://{ip}:{PEER_PORT}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{ip}:{PEER_PORT}"))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.fabric.prefix)
            .arg("--initial-cluster-state")
            .arg("new")
            // Fast elections: the members share one machine.
            .arg("--heartbeat-interval")
            .arg("100")
            .arg("--election-timeout")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.fabric.spawn(cmd)
    }

    /// Waits until every member answers `/health` with true.
    pub fn wait_etcd_healthy(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let healthy = (0..ETCD_MEMBERS).filter(|&j| self.etcd_healthy(j)).count();
            if healthy == ETCD_MEMBERS {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{healthy} of {ETCD_MEMBERS} etcd members healthy after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether member `j` answers `GET /health` with `"health":"true"`
    /// (asked from the fabric namespace, over the underlay).
    pub fn etcd_healthy(&self, j: usize) -> bool {
        let addr = SocketAddrV4::new(self.etcd_address(j), CLIENT_PORT);
        self.fabric
            .host
            .run_in(move || -> std::io::Result<String> {
                let mut stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                stream.write_all(b"GET /health HTTP/1.0\r\n\r\n")?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok(answer)
            })
            .ok()
            .and_then(Result::ok)
            .is_some_and(|answer| answer.contains("\"health\":\"true\""))
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// A veth from the fabric's bridge to `ns`, named `inside` there, with
/// `address`.
async fn plug(
    fabric: &Netlink,
    port: &str,
    ns: &Netns,
    inside: &str,
    address: Ipv4Network,
) -> Result<()> {
    fabric.add_veth_into(port, ns, inside).await?;
    fabric.set_controller(port, UNDERLAY).await?;
    fabric.set_up(port).await?;
    let nl = Netlink::connect(Some(ns))?;
    nl.add_address(inside, address).await?;
    nl.set_up(inside).await
}

/// Whether `pid` has exited (a zombie the sandbox will reap counts).
fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
}

fn etcd_ns_name(prefix: &str, j: usize) -> String {
    format!("{prefix}etcd{j}")
}

/// 10.A.B.0/24 from the prefix's four hex digits.
fn underlay_of(prefix: &str) -> Ipv4Network {
    let digits = u16::from_str_radix(&prefix[prefix.len() - 4..], 16).unwrap_or(0);
    let [a, b] = digits.to_be_bytes();
    Ipv4Network::new(Ipv4Addr::new(10, a, b, 0), 24).expect("a /24")
}

fn host_in(net: Ipv4Network, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = net.network().octets();
    Ipv4Addr::new(a, b, c, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_underlay_comes_from_the_prefix() {
        assert_eq!(underlay_of("ndt12ab").to_string(), "10.18.171.0/24");
    }
}
