//! What the runtime hands the plugin: the `CNI_*` environment and the
//! network configuration on stdin. Pure: parsed from a variable lookup and
//! bytes, unit-tested without root.

use std::{net::Ipv4Addr, path::PathBuf};

use serde::Deserialize;

use crate::{
    error::{CniError, CniResult, code},
    result::{Dns, Result as CniOutput},
};

/// The spec versions this plugin speaks. Results have one format for all
/// of them; GC and STATUS are 1.1.0's.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The version errors are reported in when the configuration names none
/// this plugin speaks.
pub const LATEST_VERSION: &str = "1.1.0";
/// The daemon's socket when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";
/// The only interface name netd gives a guest.
pub const GUEST_IFNAME: &str = "eth0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    fn parse(text: &str) -> Option<Command> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

/// The `CNI_*` variables, checked as far as the command needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `KEY=VALUE;KEY=VALUE`.
    pub args: Vec<(String, String)>,
}

impl Env {
    /// Reads and checks the variables `command` needs (ADD and CHECK: the
    /// container ID, the namespace and the interface name; DEL: all but
    /// the namespace). Errors are code 4 and name the variable.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> CniResult<Env> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let command_text = get("CNI_COMMAND").ok_or_else(|| {
            invalid_env(
                "CNI_COMMAND is not set: netd-cni is a CNI plugin, run by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|GC|STATUS|VERSION and the network configuration on stdin",
            )
        })?;
        let command = Command::parse(&command_text).ok_or_else(|| {
            invalid_env(format!(
                "CNI_COMMAND={command_text:?} is not a CNI command: use ADD, DEL, CHECK, GC, STATUS or VERSION"
            ))
        })?;
        let env = Env {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS").map(PathBuf::from),
            ifname: get("CNI_IFNAME"),
            args: parse_cni_args(&get("CNI_ARGS").unwrap_or_default())?,
        };
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        if needs_attachment {
            let id = env.container_id()?;
            check_container_id(id)?;
            check_ifname(env.ifname()?)?;
        }
        if matches!(command, Command::Add | Command::Check) {
            env.netns()?;
        }
        Ok(env)
    }

    pub fn container_id(&self) -> CniResult<&str> {
        self.container_id.as_deref().ok_or_else(|| {
            invalid_env("CNI_CONTAINERID is not set: the runtime must name the container")
        })
    }

    pub fn ifname(&self) -> CniResult<&str> {
        self.ifname.as_deref().ok_or_else(|| {
            invalid_env(
                "CNI_IFNAME is not set: the runtime must name the container's interface (eth0)",
            )
        })
    }

    pub fn netns(&self) -> CniResult<&std::path::Path> {
        let netns = self.netns.as_deref().ok_or_else(|| {
            invalid_env("CNI_NETNS is not set: the runtime must give the container's network namespace, e.g. /run/netns/NAME")
        })?;
        if !netns.is_absolute() {
            return Err(invalid_env(format!(
                "CNI_NETNS={} is not an absolute path: give the namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net",
                netns.display()
            )));
        }
        Ok(netns)
    }

    /// `IP=` of `CNI_ARGS`, the address podman and others ask for that way.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn invalid_env(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg)
}

fn parse_cni_args(text: &str) -> CniResult<Vec<(String, String)>> {
    text.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    invalid_env(format!(
                        "CNI_ARGS has {pair:?}, not KEY=VALUE: write CNI_ARGS as KEY=VALUE;KEY=VALUE"
                    ))
                })
        })
        .collect()
}

/// The spec: alphanumerics, '_', '.', '-', starting with an alphanumeric.
fn check_container_id(id: &str) -> CniResult<()> {
    let ok = id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid_env(format!(
            "CNI_CONTAINERID={id:?} is not a container ID: use letters, digits, '_', '.' and '-'"
        )))
    }
}

/// Linux interface names, as the spec restricts them.
fn check_ifname(name: &str) -> CniResult<()> {
    let ok = name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid_env(format!(
            "CNI_IFNAME={name:?} is not an interface name: at most 15 bytes, no '/', ':' or spaces"
        )))
    }
}

/// One port a runtime asks to publish (`runtimeConfig.portMappings`, the
/// `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

impl PortMapping {
    /// The netd port spec, `[HOSTIP:]HOSTPORT:GUESTPORT/PROTO`.
    pub fn netd_spec(&self) -> CniResult<String> {
        let port = |what: &str, value: u32| {
            u16::try_from(value)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    unsupported(format!("portMappings {what}={value}: give a port 1-65535"))
                })
        };
        let host_port = port("hostPort", self.host_port)?;
        let container_port = port("containerPort", self.container_port)?;
        let proto = match self
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("tcp") => "tcp",
            Some("udp") => "udp",
            Some(other) => {
                return Err(unsupported(format!(
                    "portMappings protocol={other:?}: netd publishes tcp and udp only"
                )));
            }
        };
        let host_ip = match self.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") => String::new(),
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) => format!("{ip}:"),
                Err(_) => {
                    return Err(unsupported(format!(
                        "portMappings hostIP={text:?}: netd publishes on IPv4 host addresses only; leave hostIP empty for all of them"
                    )));
                }
            },
        };
        Ok(format!("{host_ip}{host_port}:{container_port}/{proto}"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The `ips` capability: `["172.18.0.5/24"]`.
    #[serde(default)]
    pub ips: Vec<String>,
}

/// One attachment the runtime still has (GC's `cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration on stdin: the spec's fields, and netd's
/// `network` (the netd network to plug into; default: `name`) and `socket`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// `args.cni.ips`, the conventional place for requested addresses.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    #[serde(default)]
    pub prev_result: Option<CniOutput>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parses and checks the configuration: a version this plugin speaks,
    /// no `ipam` (netd allocates addresses itself).
    pub fn parse(bytes: &[u8]) -> CniResult<NetConf> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|err| {
            CniError::new(
                code::DECODE,
                format!("the network configuration on stdin is not valid: {err}"),
            )
        })?;
        check_version(&conf.cni_version)?;
        if let Some(ipam) = &conf.ipam {
            return Err(unsupported(format!(
                "ipam={ipam}: netd allocates addresses itself; remove \"ipam\" and ask for an address with runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=A.B.C.D"
            )));
        }
        if conf.name.is_empty() {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "the network configuration has no \"name\"",
            ));
        }
        Ok(conf)
    }

    /// The netd network this configuration plugs into.
    pub fn netd_network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }

    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }

    /// The one IPv4 address asked for, if any: `runtimeConfig.ips`, then
    /// `args.cni.ips`, then `CNI_ARGS` `IP=`.
    pub fn requested_ip(&self, env: &Env) -> CniResult<Option<Ipv4Addr>> {
        let mut texts: Vec<String> = self.runtime_config.ips.clone();
        if texts.is_empty()
            && let Some(ips) = self
                .args
                .as_ref()
                .and_then(|a| a.get("cni")?.get("ips")?.as_array().cloned())
        {
            texts = ips
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        if texts.is_empty()
            && let Some(ip) = env.arg("IP")
        {
            texts = ip.split(',').map(str::to_owned).collect();
        }
        let ips = texts
            .iter()
            .map(|text| {
                let address = text.split('/').next().unwrap_or_default();
                address.parse::<Ipv4Addr>().map_err(|_| {
                    unsupported(format!(
                        "ips={text:?}: netd gives a guest one IPv4 address; ask for it as A.B.C.D or A.B.C.D/NN"
                    ))
                })
            })
            .collect::<CniResult<Vec<_>>>()?;
        match ips.as_slice() {
            [] => Ok(None),
            [ip] => Ok(Some(*ip)),
            _ => Err(unsupported(format!(
                "ips={texts:?}: netd gives a guest one IPv4 address; ask for one"
            ))),
        }
    }
}

/// The configuration's `cniVersion` must be one this plugin speaks.
pub fn check_version(version: &str) -> CniResult<()> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {version:?} is not one netd-cni speaks ({}): set \"cniVersion\": \"{LATEST_VERSION}\" (or \"1.0.0\" for older runtimes) in the network configuration",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The version to answer in: the configuration's, if it parses to one this
/// plugin speaks, else the latest.
pub fn answer_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_owned())
}

fn unsupported(msg: String) -> CniError {
    CniError::new(code::UNSUPPORTED_FIELD, msg)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> CniResult<Env> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|name| vars.get(name).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr-1"),
        ("CNI_NETNS", "/run/netns/ctr"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;IP=172.18.0.9"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn add_reads_every_variable() {
        let env = env(ADD).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id().unwrap(), "ctr-1");
        assert_eq!(env.netns().unwrap(), std::path::Path::new("/run/netns/ctr"));
        assert_eq!(env.arg("IP"), Some("172.18.0.9"));
    }

    #[test]
    fn a_missing_variable_is_code_4_and_named() {
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let vars: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != missing).collect();
            let err = env(&vars).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV);
            assert!(err.msg.starts_with(missing), "{err}");
        }
        let err = env(&[("CNI_COMMAND", "ATTACH")]).unwrap_err();
        assert!(err.msg.contains("ADD, DEL, CHECK"), "{err}");
        let err = env(&[]).unwrap_err();
        assert!(err.msg.contains("run by a container runtime"), "{err}");
    }

    #[test]
    fn del_needs_no_namespace_and_gc_no_container() {
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(del.netns, None);
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
        assert_eq!(
            env(&[("CNI_COMMAND", "STATUS")]).unwrap().command,
            Command::Status
        );
    }

    #[test]
    fn bad_ids_names_and_paths_are_refused() {
        let with = |key: &str, value: &str| {
            let vars: Vec<_> = ADD
                .iter()
                .map(|(k, v)| if *k == key { (*k, value) } else { (*k, *v) })
                .collect();
            env(&vars).unwrap_err().msg
        };
        assert!(with("CNI_CONTAINERID", "a/b").contains("not a container ID"));
        assert!(with("CNI_IFNAME", "a-very-long-ifname").contains("at most 15 bytes"));
        assert!(with("CNI_NETNS", "netns").contains("not an absolute path"));
        assert!(with("CNI_ARGS", "IP").contains("not KEY=VALUE"));
    }

    fn conf(json: serde_json::Value) -> CniResult<NetConf> {
        NetConf::parse(json.to_string().as_bytes())
    }

    #[test]
    fn a_plain_config_plugs_into_the_network_of_its_name() {
        let c = conf(serde_json::json!({
            "cniVersion": "1.1.0", "name": "web", "type": "netd-cni"
        }))
        .unwrap();
        assert_eq!(c.netd_network(), "web");
        assert_eq!(c.socket(), PathBuf::from(DEFAULT_SOCKET));
        let c = conf(serde_json::json!({
            "cniVersion": "1.0.0", "name": "podman-web", "type": "netd-cni",
            "network": "web", "socket": "/tmp/s.sock"
        }))
        .unwrap();
        assert_eq!(c.netd_network(), "web");
        assert_eq!(c.socket(), PathBuf::from("/tmp/s.sock"));
    }

    #[test]
    fn version_ipam_and_garbage_are_refused_with_their_codes() {
        let err = conf(serde_json::json!({"cniVersion": "0.3.1", "name": "w", "type": "netd-cni"}))
            .unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(err.msg.contains("set \"cniVersion\": \"1.1.0\""), "{err}");
        let err = conf(serde_json::json!({
            "cniVersion": "1.1.0", "name": "w", "type": "netd-cni",
            "ipam": {"type": "host-local"}
        }))
        .unwrap_err();
        assert_eq!(err.code, code::UNSUPPORTED_FIELD);
        assert!(
            err.msg.starts_with("ipam={\"type\":\"host-local\"}"),
            "{err}"
        );
        let err = NetConf::parse(b"{not json").unwrap_err();
        assert_eq!(err.code, code::DECODE);
    }

    #[test]
    fn the_requested_address_comes_from_capability_args_or_cni_args() {
        let env = env(ADD).unwrap();
        let base = serde_json::json!({"cniVersion": "1.1.0", "name": "w", "type": "netd-cni"});
        let mut with_caps = base.clone();
        with_caps["runtimeConfig"] = serde_json::json!({"ips": ["172.18.0.5/24"]});
        assert_eq!(
            conf(with_caps).unwrap().requested_ip(&env).unwrap(),
            Some(Ipv4Addr::new(172, 18, 0, 5))
        );
        let mut with_args = base.clone();
        with_args["args"] = serde_json::json!({"cni": {"ips": ["172.18.0.6"]}});
        assert_eq!(
            conf(with_args).unwrap().requested_ip(&env).unwrap(),
            Some(Ipv4Addr::new(172, 18, 0, 6))
        );
        assert_eq!(
            conf(base.clone()).unwrap().requested_ip(&env).unwrap(),
            Some(Ipv4Addr::new(172, 18, 0, 9))
        );
        let mut two = base.clone();
        two["runtimeConfig"] = serde_json::json!({"ips": ["172.18.0.5", "172.18.0.6"]});
        assert!(
            conf(two)
                .unwrap()
                .requested_ip(&env)
                .unwrap_err()
                .msg
                .contains("ask for one")
        );
        let mut v6 = base;
        v6["runtimeConfig"] = serde_json::json!({"ips": ["fd00::5/64"]});
        assert_eq!(
            conf(v6).unwrap().requested_ip(&env).unwrap_err().code,
            code::UNSUPPORTED_FIELD
        );
    }

    #[test]
    fn port_mappings_become_netd_specs() {
        let pm = |json: serde_json::Value| -> PortMapping { serde_json::from_value(json).unwrap() };
        assert_eq!(
            pm(serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}))
                .netd_spec()
                .unwrap(),
            "8080:80/tcp"
        );
        assert_eq!(
            pm(serde_json::json!({"hostPort": 53, "containerPort": 5353, "protocol": "UDP", "hostIP": "198.51.100.2"}))
                .netd_spec()
                .unwrap(),
            "198.51.100.2:53:5353/udp"
        );
        assert_eq!(
            pm(serde_json::json!({"hostPort": 1, "containerPort": 1, "hostIP": ""}))
                .netd_spec()
                .unwrap(),
            "1:1/tcp"
        );
        let err = pm(serde_json::json!({"hostPort": 1, "containerPort": 1, "protocol": "sctp"}))
            .netd_spec()
            .unwrap_err();
        assert!(err.msg.contains("tcp and udp only"), "{err}");
        let err = pm(serde_json::json!({"hostPort": 1, "containerPort": 1, "hostIP": "::"}))
            .netd_spec()
            .unwrap_err();
        assert!(err.msg.contains("IPv4 host addresses only"), "{err}");
        let err = pm(serde_json::json!({"hostPort": 0, "containerPort": 80}))
            .netd_spec()
            .unwrap_err();
        assert!(err.msg.contains("hostPort=0"), "{err}");
    }

    #[test]
    fn gc_reads_the_valid_attachments() {
        let c = conf(serde_json::json!({
            "cniVersion": "1.1.0", "name": "w", "type": "netd-cni",
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]
        }))
        .unwrap();
        assert_eq!(
            c.valid_attachments.unwrap(),
            vec![Attachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }]
        );
    }

    #[test]
    fn errors_are_answered_in_the_configs_version_when_it_is_spoken() {
        assert_eq!(answer_version(br#"{"cniVersion":"1.0.0"}"#), "1.0.0");
        assert_eq!(answer_version(br#"{"cniVersion":"0.2.0"}"#), "1.1.0");
        assert_eq!(answer_version(b""), "1.1.0");
    }
}
