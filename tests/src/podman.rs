//! podman, from Debian, with its CNI backend and netd's plugin, inside a
//! sandbox: all its state in the sandbox's directories, run in the
//! sandbox's host namespace, containers from a busybox-static root
//! filesystem made here (no image registry is reachable).
//!
//! What this machine needs of podman (found by running it): `runc`, since
//! crun refuses the host's hybrid cgroup v1/v2 layout; the cgroupfs manager
//! (no systemd); ulimits no higher than the caller's hard limits (podman's
//! default `nofile=1048576` is refused); and `nsenter`-style entry into the
//! host namespace (`ip netns exec` remounts /sys and hides the cgroup
//! mounts).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::{Sandbox, netd::Netd};

pub const BUSYBOX: &str = "/bin/busybox";
/// The CNI network name podman knows netd's network by.
pub const NETWORK: &str = "netd-web";

pub struct Podman<'a> {
    sandbox: &'a Sandbox,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    conf: PathBuf,
    /// `--ulimit` flags for `run` (containers.conf's `default_ulimits` do
    /// not replace podman's own defaults here).
    ulimits: Vec<String>,
}

impl<'a> Podman<'a> {
    /// A private podman whose CNI network `netd-web` is netd network
    /// `network` of `netd`. None (with the reason) if podman or busybox is
    /// not installed.
    pub fn new(sandbox: &'a Sandbox, netd: &Netd, network: &str) -> Result<Podman<'a>, String> {
        Self::with_state(sandbox, netd, network, "podman")
    }

    /// Same, with its state in the sandbox's directory `name` (two
    /// podmans, two states).
    pub fn with_state(
        sandbox: &'a Sandbox,
        netd: &Netd,
        network: &str,
        name: &str,
    ) -> Result<Podman<'a>, String> {
        for tool in ["/usr/bin/podman", "/usr/sbin/runc", BUSYBOX] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "{tool} is missing: `cargo xtask setup` installs it"
                ));
            }
        }
        let dir = sandbox.root.join(name);
        let cni_dir = dir.join("cni");
        let rootfs = dir.join("rootfs");
        for d in [
            &cni_dir,
            &dir.join("tmp"),
            &rootfs.join("bin"),
            &rootfs.join("www"),
        ] {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
        for applet in [
            "sh", "sleep", "httpd", "wget", "nc", "ip", "cat", "echo", "ping",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .map_err(|e| e.to_string())?;
        }
        fs::write(
            rootfs.join("www/index.html"),
            "hello from a podman container\n",
        )
        .map_err(|e| e.to_string())?;

        let plugin_dir = crate::cni::plugin_binary()
            .parent()
            .unwrap()
            .display()
            .to_string();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [{
                "type": "netd-cni",
                "network": network,
                "socket": netd.socket,
                "capabilities": {"portMappings": true, "ips": true}
            }]
        });
        fs::write(
            cni_dir.join(format!("{NETWORK}.conflist")),
            conflist.to_string(),
        )
        .map_err(|e| e.to_string())?;
        // At the hard limit, runc is refused nproc here; 4096 is plenty.
        let (nofile, nproc) = (
            hard_limit(libc::RLIMIT_NOFILE),
            hard_limit(libc::RLIMIT_NPROC).min(4096),
        );
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            format!(
                r#"[network]
network_backend = "cni"
network_config_dir = "{cni}"
cni_plugin_dirs = ["{plugin_dir}", "{reference}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "{tmp}"
"#,
                cni = cni_dir.display(),
                reference = crate::cni::REFERENCE_PLUGINS,
                tmp = dir.join("tmp").display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(Podman {
            sandbox,
            dir,
            rootfs,
            conf,
            ulimits: vec![
                format!("--ulimit=nofile={nofile}:{nofile}"),
                format!("--ulimit=nproc={nproc}:{nproc}"),
            ],
        })
    }

    /// `podman ARGS` in the sandbox's host namespace with the private state.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.sandbox.host_command("podman");
        cmd.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"));
        match args.split_first() {
            Some((&"run", rest)) => cmd.arg("run").args(&self.ulimits).args(rest),
            _ => cmd.args(args),
        };
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running podman")
    }

    /// Runs podman, panicking with its stderr if it fails; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The root filesystem, as `podman run --rootfs` wants it.
    pub fn rootfs(&self) -> &str {
        self.rootfs.to_str().expect("utf-8 path")
    }
}

impl Podman<'_> {
    /// This podman dies with its state, as after a crash that took its
    /// run directory: its containers' processes killed with -9, its
    /// mounts and directories gone, no DEL for its attachments.
    pub fn lose_everything(&self) {
        let ids = self.ok(&["ps", "--all", "--quiet", "--no-trunc"]);
        let mut pids = String::new();
        for id in ids.split_whitespace() {
            let format = "{{.State.Pid}} {{.State.ConmonPid}} ";
            pids += &self.ok(&["inspect", "--format", format, id]);
        }
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.unmount_all();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Podman<'_> {
    /// Unmounts whatever podman left mounted under its directory (its
    /// storage driver keeps a mount of its own home, containers their shm),
    /// deepest first.
    fn unmount_all(&self) {
        // A path may be mounted more than once: pass until none is left.
        for _ in 0..5 {
            let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut under: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|m| Path::new(m).starts_with(&self.dir))
                .collect();
            if under.is_empty() {
                return;
            }
            under.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mount in under {
                let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

impl Drop for Podman<'_> {
    /// Removes every container (podman calls the plugin's DEL), so nothing
    /// outside the sandbox (its namespaces in /run/netns) is left, then the
    /// mounts podman keeps under the sandbox.
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        self.unmount_all();
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    unsafe { libc::getrlimit(resource, &mut limit) };
    limit.rlim_max.min(1 << 20)
}
