//! Drives the `netd-cni` plugin the way the CNI spec's runtime does: the
//! `CNI_*` environment, the network configuration on stdin, the result or
//! error object on stdout; from the sandbox's host namespace.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::{Sandbox, netd::Netd};

/// Where Debian's reference plugins are.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `netd-cni` binary next to `netd`.
pub fn plugin_binary() -> PathBuf {
    let netd = crate::netd::netd_binary();
    let bin = netd.with_file_name("netd-cni");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --workspace --bins; cargo xtask test does)",
        bin.display()
    );
    bin
}

/// A plugin configuration for netd network `network` of `netd`, as a
/// runtime passes it from a conflist: the list's `name` and `cniVersion`
/// injected, plus `extra` keys (runtimeConfig, prevResult, ...).
pub fn conf(netd: &Netd, name: &str, network: &str, version: &str, extra: Value) -> Value {
    let mut conf = json!({
        "cniVersion": version,
        "name": name,
        "type": "netd-cni",
        "network": network,
        "socket": netd.socket,
    });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            conf[key] = value;
        }
    }
    conf
}

/// One plugin run.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    /// stdout as JSON (Null when empty).
    pub output: Value,
    pub stderr: String,
    pub elapsed: std::time::Duration,
}

impl Outcome {
    /// The output of a run that must have succeeded.
    pub fn ok(self) -> Value {
        assert!(self.success, "plugin failed: {self:?}");
        self.output
    }

    /// The error object of a run that must have failed: (code, msg).
    pub fn err(self) -> (u64, String) {
        assert!(
            !self.success,
            "plugin succeeded but should have failed: {self:?}"
        );
        let code = self.output["code"].as_u64().expect("an error code");
        let msg = self.output["msg"]
            .as_str()
            .expect("an error msg")
            .to_owned();
        (code, msg)
    }
}

/// The attachment the runtime is acting on.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
}

/// Runs `plugin` (a path) with `command` for `attachment` and `conf` on
/// stdin, in the sandbox's host namespace, with nothing but the CNI
/// variables and PATH in its environment.
pub fn run_plugin(
    sandbox: &Sandbox,
    plugin: &Path,
    command: &str,
    attachment: Option<&Attachment>,
    conf: &Value,
) -> Outcome {
    let mut cmd: Command = sandbox.host_command(plugin.to_str().expect("utf-8 path"));
    let cni_path = format!(
        "{}:{REFERENCE_PLUGINS}",
        plugin_binary().parent().unwrap().display()
    );
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", cni_path);
    if let Some(a) = attachment {
        cmd.env("CNI_CONTAINERID", a.container_id)
            .env("CNI_IFNAME", a.ifname);
        if let Some(netns) = a.netns {
            cmd.env("CNI_NETNS", netns);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = std::time::Instant::now();
    let mut child = cmd.spawn().expect("spawning the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .expect("writing the configuration");
    let out = child.wait_with_output().expect("running the plugin");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    Outcome {
        success: out.status.success(),
        output: if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .unwrap_or_else(|err| panic!("plugin output is not JSON ({err}): {stdout}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}

/// [`run_plugin`] for netd-cni.
pub fn run(
    sandbox: &Sandbox,
    command: &str,
    attachment: Option<&Attachment>,
    conf: &Value,
) -> Outcome {
    run_plugin(sandbox, &plugin_binary(), command, attachment, conf)
}
