//! A netd daemon running inside a sandbox's host namespace, with the
//! sandbox's private directories and name prefix, and its CLI.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::Sandbox;

pub struct Netd<'a> {
    pub sandbox: &'a Sandbox,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// The `--dataplane` this daemon runs with.
    pub dataplane: String,
    pid: Option<u32>,
    env: Vec<(String, String)>,
    /// Extra `netd daemon` arguments of the next start.
    pub daemon_args: Vec<String>,
}

/// The environment variable that picks the dataplane of daemons started with
/// [`Netd::start`] and [`Netd::start_with_env`] (`ebpf` when unset), so that
/// the same tests run against either backend.
pub const DATAPLANE_ENV: &str = "NETD_TEST_DATAPLANE";

/// The conformance suite's name for the eBPF dataplane with the nftables
/// host side (`host_datapath = "nftables"`).
pub const EBPF_NFT_HOST: &str = "ebpf-nft-host";

/// The dataplane `NETD_TEST_DATAPLANE` asks for, `ebpf` by default.
pub fn default_dataplane() -> String {
    std::env::var(DATAPLANE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "ebpf".to_owned())
}

/// The `netd` binary next to the running test or demo binary.
pub fn netd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("netd");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p netd; cargo xtask test does)",
        bin.display()
    );
    bin
}

impl<'a> Netd<'a> {
    /// Starts a daemon and waits until its API answers. Its dataplane is
    /// `NETD_TEST_DATAPLANE` (default `ebpf`).
    pub fn start(sandbox: &'a Sandbox) -> Netd<'a> {
        Self::start_with_env(sandbox, &[])
    }

    /// Same, with the given `--dataplane` (`ebpf` or `nftables`) whatever
    /// the environment says.
    pub fn start_with_dataplane(sandbox: &'a Sandbox, dataplane: &str) -> Netd<'a> {
        Self::start_with(sandbox, dataplane, &[])
    }

    /// Same as [`Netd::start`], with extra environment variables (e.g.
    /// failure injection).
    pub fn start_with_env(sandbox: &'a Sandbox, env: &[(&str, &str)]) -> Netd<'a> {
        Self::start_with(sandbox, &default_dataplane(), env)
    }

    /// With both: the given `--dataplane` and extra environment variables.
    pub fn start_with(sandbox: &'a Sandbox, dataplane: &str, env: &[(&str, &str)]) -> Netd<'a> {
        let mut netd = Self::new(sandbox, dataplane, env);
        netd.spawn();
        netd
    }

    /// With the given `--dataplane` and extra `netd daemon` arguments (a
    /// cluster node's `--cluster-endpoints`, `--node`, ...).
    pub fn start_with_args(sandbox: &'a Sandbox, dataplane: &str, args: &[String]) -> Netd<'a> {
        let mut netd = Self::new(sandbox, dataplane, &[]);
        netd.daemon_args = args.to_vec();
        netd.spawn();
        netd
    }

    /// With the given `--dataplane` and `settings` added to its netd.toml
    /// (e.g. `dns_upstreams = [...]`).
    pub fn start_with_settings(sandbox: &'a Sandbox, dataplane: &str, settings: &str) -> Netd<'a> {
        let (_, base) = dataplane_settings(dataplane);
        std::fs::write(
            sandbox.root.join("netd.toml"),
            format!("{base}{settings}\n"),
        )
        .expect("writing netd.toml");
        Self::start_with(sandbox, dataplane, &[])
    }

    /// Starts a daemon with the given `--dataplane`; unlike `start`, a
    /// daemon that refuses to start (or does not answer in 30 s) is an error
    /// carrying its log, not a panic.
    pub fn try_start(sandbox: &'a Sandbox, dataplane: &str) -> Result<Netd<'a>, String> {
        let mut netd = Self::new(sandbox, dataplane, &[]);
        netd.launch();
        netd.try_wait_ready()?;
        Ok(netd)
    }

    fn new(sandbox: &'a Sandbox, dataplane: &str, env: &[(&str, &str)]) -> Netd<'a> {
        let config = sandbox.root.join("netd.toml");
        let (dataplane, settings) = dataplane_settings(dataplane);
        if !config.exists() {
            std::fs::write(&config, settings).expect("writing netd.toml");
        }
        Netd {
            sandbox,
            socket: sandbox.run_dir.join("netd.sock"),
            config,
            dataplane: dataplane.to_owned(),
            pid: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            daemon_args: Vec::new(),
        }
    }

    /// Replaces the extra environment of the next start.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the daemon process is alive.
    pub fn alive(&self) -> bool {
        self.pid.is_some_and(running)
    }

    /// The `--netns-prefix` this instance runs with.
    pub fn prefix(&self) -> String {
        format!("{}-", self.sandbox.prefix)
    }

    fn spawn(&mut self) {
        self.launch();
        if let Err(err) = self.try_wait_ready() {
            panic!("{err}");
        }
    }

    fn launch(&mut self) {
        let mut cmd = self.sandbox.host_command(netd_binary().to_str().unwrap());
        cmd.arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.sandbox.state_dir)
            .arg("--run-dir")
            .arg(&self.sandbox.run_dir)
            .arg("--bpffs-dir")
            .arg(&self.sandbox.bpffs_dir)
            .arg("--netns-prefix")
            .arg(self.prefix())
            .arg("--dataplane")
            .arg(&self.dataplane)
            .args(&self.daemon_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.sandbox.root.join("netd.log"))
                    .expect("daemon log"),
            ));
        let _ = std::fs::remove_file(&self.socket);
        self.pid = Some(self.sandbox.spawn(cmd).expect("spawning netd daemon"));
    }

    fn try_wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.socket.exists() && self.cli(&["network", "ls"]).status.success() {
                return Ok(());
            }
            if self.pid.is_some_and(|pid| !running(pid)) {
                return Err(format!("netd daemon exited at start; log:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "netd daemon did not come up in 30 s; log:\n{}",
            self.log()
        ))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.sandbox.root.join("netd.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL: no chance to clean anything up.
    pub fn kill9(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    }

    /// Stops the daemon with SIGTERM, the way systemd does.
    pub fn stop(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    }

    fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
            wait_gone(pid);
        }
    }

    /// Starts the daemon again (after `kill9` or `stop`); a daemon that
    /// refuses to start is an error carrying its log, not a panic.
    pub fn try_restart(&mut self) -> Result<(), String> {
        self.stop();
        self.launch();
        self.try_wait_ready()
    }

    /// Starts the daemon again (after `kill9` or `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs the CLI against this daemon (from the host namespace).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running netd CLI")
    }

    /// Runs the CLI and returns its stdout, panicking with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "netd {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI expecting failure; returns its stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "netd {} succeeded but should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A CLI command, to add stdin or environment before running it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.sandbox.host_command(netd_binary().to_str().unwrap());
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    /// Parses `--json` output of a CLI command.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).expect("JSON output")
    }
}

/// The `--dataplane` a conformance name runs and the netd.toml it needs:
/// the eBPF dataplane with the host's nftables table as its host side for
/// [`EBPF_NFT_HOST`].
fn dataplane_settings(dataplane: &str) -> (&str, &'static str) {
    match dataplane {
        EBPF_NFT_HOST => ("ebpf", "host_datapath = \"nftables\"\n"),
        other => (other, "# sandbox: all defaults\n"),
    }
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
}

fn wait_gone(pid: u32) {
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < Duration::from_secs(10)
    {
        // The sandbox owns the Child and reaps it; a zombie counts as gone
        // once its other threads are gone too (until then they hold its
        // files, the state lock among them).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |dir| dir.count());
        if stat.split_whitespace().nth(2) == Some("Z") && threads <= 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
