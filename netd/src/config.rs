//! Daemon configuration: `/etc/netd/netd.toml`.
//!
//! Every address range and path netd uses has a default here, so a plain host
//! needs no file at all; a host whose addresses collide with a default sets
//! that one value. `contrib/netd.toml` documents each setting.
//!
//! Pure: reading the host's addresses and routes is the caller's job, so the
//! collision check is unit-tested without root.

use std::{
    fmt, fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    str::FromStr,
};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::ipam;

/// Where the daemon looks for its configuration unless told otherwise. Only
/// this file may be missing (then every default applies).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netd/netd.toml";

/// Longest `netns_prefix`: namespace names are prefix + a network or guest
/// name, and a short prefix keeps them readable in `ip netns`.
pub const MAX_NETNS_PREFIX_LEN: usize = 16;

/// Longest Linux interface name in bytes (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = crate::ifname::IFNAMSIZ_MAX;

/// Which dataplane implementation the daemon runs (`--dataplane`).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    /// TC eBPF programs configured through BPF maps.
    #[default]
    Ebpf,
    /// One nftables table per namespace; the fallback and the yardstick.
    Nftables,
}

impl Dataplane {
    /// Every dataplane, in the order help texts list them.
    pub const ALL: [Dataplane; 2] = [Dataplane::Ebpf, Dataplane::Nftables];

    /// The name used in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Ebpf => "ebpf",
            Dataplane::Nftables => "nftables",
        }
    }
}

/// How guests' traffic crosses the host namespace with the eBPF dataplane
/// (`host_datapath`).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum HostDatapath {
    /// TC programs on the host's devices: one translation, to the host's
    /// address, past the host's stack and netfilter.
    #[default]
    Ebpf,
    /// The host's nftables table masquerades what the gateway translated.
    Nftables,
}

impl HostDatapath {
    pub fn as_str(self) -> &'static str {
        match self {
            HostDatapath::Ebpf => "ebpf",
            HostDatapath::Nftables => "nftables",
        }
    }
}

impl fmt::Display for HostDatapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A range of ports, `MIN-MAX` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpan {
    pub min: u16,
    pub max: u16,
}

impl fmt::Display for PortSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl std::str::FromStr for PortSpan {
    type Err = String;

    fn from_str(text: &str) -> Result<PortSpan, String> {
        let (min, max) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not MIN-MAX, e.g. \"61000-65535\""))?;
        let port = |p: &str| {
            p.trim().parse::<u16>().map_err(|_| {
                format!("{p:?} is not a port (1-65535): write MIN-MAX, e.g. \"61000-65535\"")
            })
        };
        let span = PortSpan {
            min: port(min)?,
            max: port(max)?,
        };
        if span.min < 1024 || span.min > span.max {
            return Err(format!(
                "{text:?} must run upwards from 1024 or above, e.g. \"61000-65535\""
            ));
        }
        Ok(span)
    }
}

impl Serialize for PortSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PortSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortSpan, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dataplane {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Dataplane, ConfigError> {
        Dataplane::ALL
            .into_iter()
            .find(|dataplane| dataplane.as_str() == value)
            .ok_or_else(|| ConfigError::UnknownDataplane {
                value: value.to_owned(),
            })
    }
}

/// The daemon's settings. Missing keys take their defaults (see
/// [`Config::default`]); unknown keys are errors, so a typo never silently
/// falls back to a default.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The host's veth to the gateway namespace.
    pub host_link: String,
    /// The /30 between host and gateway: the host takes .1, the gateway .2.
    pub host_link_net: Ipv4Network,
    /// Where each network's /30 link to the gateway comes from.
    pub uplink_pool: Ipv4Network,
    /// Guest subnet of networks created without `--subnet`; it is not routed
    /// from the host, so it may repeat across networks.
    pub default_subnet: Ipv4Network,
    /// Where `--subnet auto` picks the first free /24.
    pub auto_subnet_pool: Ipv4Network,
    /// Prefix of every namespace netd creates, so that its namespaces are
    /// recognisable and a test sandbox can use its own.
    pub netns_prefix: String,
    /// The API's unix socket.
    pub socket: PathBuf,
    /// Persisted desired state (see `store`).
    pub state_dir: PathBuf,
    /// Runtime files (pid, locks that die with a reboot).
    pub run_dir: PathBuf,
    /// Where the BPF filesystem is (or gets) mounted for netd's pins.
    pub bpffs_dir: PathBuf,
    /// The dataplane implementation.
    pub dataplane: Dataplane,
    /// With the eBPF dataplane: how guests' traffic crosses the host.
    pub host_datapath: HostDatapath,
    /// Source ports the eBPF host side uses on host addresses; reserved from
    /// the host's own sockets (`net.ipv4.ip_local_reserved_ports`).
    pub host_nat_ports: PortSpan,
    /// A TCP address that serves `GET /metrics` (Prometheus) besides the
    /// API socket; None: the socket only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where networks' resolvers send names that are not netd's: `IP` or
    /// `IP:PORT`, tried in order. Empty: the nameservers of the host's
    /// /etc/resolv.conf, read at each query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_upstreams: Vec<String>,
    /// etcd client URLs (`http://IP:PORT`) of the cluster this node joins;
    /// empty: a single host, no etcd (see `cluster`). With them, `node`
    /// and `underlay_address` are required.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_endpoints: Vec<String>,
    /// This node's name in the cluster, unique among its nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The host address other nodes reach this one at: the source and
    /// destination of its VXLAN traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_address: Option<Ipv4Addr>,
    /// The UDP port a cluster node answers the underlay probe on (on its
    /// underlay address, in the daemon's namespace): `netd status` probes
    /// every other node there. Not VXLAN's 4789.
    pub underlay_probe_port: u16,
    /// Whether guests may open connections to the host's own addresses
    /// (the host link's 172.18.255.1 and every other): true, as any routed
    /// client could. False limits guests to published ports and the
    /// outside: the host refuses what comes in from its host link other
    /// than replies (netd's host table, chain `input`).
    pub guests_reach_host: bool,
    /// The file these settings came from, named in every error so that the
    /// user edits the right one. Not a setting: never read from or written
    /// to TOML.
    #[serde(skip)]
    pub file: PathBuf,
}

/// `a.b.c.d/prefix` as a constant; panics at compile time on a bad prefix.
const fn net(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Network {
    Ipv4Network::new_checked(Ipv4Addr::new(a, b, c, d), prefix).unwrap()
}

// The defaults of the address plan, in one place: what a netd.toml that says
// nothing gets (see DESIGN.md's address plan).

/// The host's veth to the gateway.
pub const DEFAULT_HOST_LINK: &str = "netd0";
/// The host link's /30: the host's end .1, the gateway's .2.
pub const DEFAULT_HOST_LINK_NET: Ipv4Network = net(172, 18, 255, 0, 30);
/// The pool that uplink /30s are carved from: as many networks as it has /30s.
pub const DEFAULT_UPLINK_POOL: Ipv4Network = net(172, 18, 192, 0, 19);
/// The subnet of a network made without `--subnet`. Not routable, so every
/// such network may use it: each lives in its own namespace.
pub const DEFAULT_SUBNET: Ipv4Network = net(172, 18, 0, 0, 24);
/// Where `--subnet auto` picks a free /24.
pub const DEFAULT_AUTO_SUBNET_POOL: Ipv4Network = net(172, 18, 0, 0, 17);

impl Default for Config {
    fn default() -> Config {
        Config {
            host_link: DEFAULT_HOST_LINK.to_owned(),
            host_link_net: DEFAULT_HOST_LINK_NET,
            uplink_pool: DEFAULT_UPLINK_POOL,
            default_subnet: DEFAULT_SUBNET,
            auto_subnet_pool: DEFAULT_AUTO_SUBNET_POOL,
            netns_prefix: "netd-".to_owned(),
            socket: PathBuf::from("/run/netd/netd.sock"),
            state_dir: PathBuf::from("/var/lib/netd"),
            run_dir: PathBuf::from("/run/netd"),
            bpffs_dir: PathBuf::from("/sys/fs/bpf"),
            dataplane: Dataplane::Ebpf,
            host_datapath: HostDatapath::Ebpf,
            host_nat_ports: PortSpan {
                min: netd_common::nat::HOST_NAT_PORT_MIN,
                max: netd_common::nat::HOST_NAT_PORT_MAX,
            },
            metrics_listen: None,
            dns_upstreams: Vec::new(),
            guests_reach_host: true,
            cluster_endpoints: Vec::new(),
            node: None,
            underlay_address: None,
            underlay_probe_port: crate::cluster::probe::DEFAULT_PROBE_PORT,
            file: PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }
}

/// What is wrong with the configuration, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {} does not exist: create it (contrib/netd.toml documents every setting) \
         or leave out --config to run with the defaults",
        path.display()
    )]
    Missing { path: PathBuf },

    #[error("cannot read config file {}: {error}: make it a file readable by netd", path.display())]
    Read { path: PathBuf, error: io::Error },

    #[error(
        "cannot parse config file {}: {}\nfix or remove that setting \
         (contrib/netd.toml documents every setting and its default)",
        path.display(),
        message.trim_end()
    )]
    Parse { path: PathBuf, message: String },

    #[error("{setting} {value} in {}: {problem}", path.display())]
    Invalid {
        setting: &'static str,
        value: String,
        path: PathBuf,
        problem: String,
    },

    #[error(
        "{setting} {value} collides with host {kind} {other} on {dev}: \
         set {setting} in {} to a free {wanted}",
        path.display()
    )]
    HostConflict {
        setting: &'static str,
        value: Ipv4Network,
        /// "address" or "route".
        kind: &'static str,
        other: Ipv4Network,
        dev: String,
        path: PathBuf,
        /// What a replacement looks like, e.g. "/30".
        wanted: &'static str,
    },

    #[error("unknown dataplane {value:?}: use \"ebpf\" or \"nftables\"")]
    UnknownDataplane { value: String },
}

impl Config {
    /// Reads, parses and validates `path`. A missing file means "all
    /// defaults" only for [`DEFAULT_CONFIG_PATH`]: a file named explicitly
    /// that is not there is a mistake worth reporting.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load_from(path, path == Path::new(DEFAULT_CONFIG_PATH))
    }

    /// Parses TOML `text` as if read from `file` (named in errors); missing
    /// keys take their defaults. Does not validate.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: file.to_owned(),
            message: err.to_string(),
        })?;
        config.file = file.to_owned();
        Ok(config)
    }

    /// Checks each setting on its own and the ranges against each other.
    /// `default_subnet` may overlap `auto_subnet_pool`: default subnets are
    /// never routed from the host, so they cannot collide with routed ones.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_host_link()?;
        self.validate_host_link_net()?;
        self.validate_pool("uplink_pool", self.uplink_pool, 30, DEFAULT_UPLINK_POOL)?;
        self.validate_pool("default_subnet", self.default_subnet, 30, DEFAULT_SUBNET)?;
        self.validate_pool(
            "auto_subnet_pool",
            self.auto_subnet_pool,
            24,
            DEFAULT_AUTO_SUBNET_POOL,
        )?;
        self.validate_netns_prefix()?;
        self.validate_paths()?;
        self.dns_upstream_addrs()?;
        self.cluster()?;
        self.validate_no_overlaps()
    }

    /// The cluster this node joins, or None for a single host: all three
    /// cluster settings or none of them.
    pub fn cluster(&self) -> Result<Option<crate::cluster::ClusterConfig>, ConfigError> {
        crate::cluster::ClusterConfig::from_settings(
            &self.cluster_endpoints,
            self.node.as_deref(),
            self.underlay_address,
            self.underlay_probe_port,
        )
        .map_err(|(setting, value, problem)| self.invalid(setting, value, problem))
    }

    /// `dns_upstreams` as addresses (port 53 where none is given).
    pub fn dns_upstream_addrs(&self) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
        self.dns_upstreams
            .iter()
            .map(|text| {
                crate::dns::upstream::parse_upstream(text).map_err(|problem| ConfigError::Invalid {
                    setting: "dns_upstreams",
                    value: format!("{text:?}"),
                    path: self.file.clone(),
                    problem,
                })
            })
            .collect()
    }

    /// Fails if `host_link_net` or `uplink_pool` overlaps an address or a
    /// non-default route the host already has. Entries on `own_link` are
    /// netd's own (its host link and the routes through it) and are skipped,
    /// so a restarted daemon does not collide with itself. The default route
    /// is skipped because it overlaps everything by design.
    pub fn check_host_conflicts<'a>(
        &self,
        host_addrs: &'a [(Ipv4Network, String)],
        host_routes: &'a [(Ipv4Network, String)],
        own_link: &str,
    ) -> Result<(), ConfigError> {
        let ranges = [
            ("host_link_net", self.host_link_net, "/30"),
            (
                "uplink_pool",
                self.uplink_pool,
                "range (a /19 holds 2048 networks)",
            ),
        ];
        for (setting, value, wanted) in ranges {
            let not_own = |entries: &'a [(Ipv4Network, String)]| {
                entries.iter().filter(|(_, dev)| dev != own_link)
            };
            let conflict = ipam::first_overlap(value, not_own(host_addrs), |(net, _)| *net)
                .map(|found| ("address", found))
                .or_else(|| {
                    ipam::first_overlap(value, not_own(host_routes), |(net, _)| *net)
                        .map(|found| ("route", found))
                });
            if let Some((kind, (other, dev))) = conflict {
                return Err(ConfigError::HostConflict {
                    setting,
                    value,
                    kind,
                    other: *other,
                    dev: dev.clone(),
                    path: self.file.clone(),
                    wanted,
                });
            }
        }
        Ok(())
    }

    /// The host's address on `host_link`: .1 of `host_link_net`.
    pub fn host_ip(&self) -> Ipv4Addr {
        nth_host(self.host_link_net, 1)
    }

    /// The gateway's address on its end of the host link: .2 of
    /// `host_link_net`; the host routes routable guest subnets through it.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        nth_host(self.host_link_net, 2)
    }

    /// [`Config::host_ip`] with the link's prefix, as assigned to `host_link`.
    pub fn host_addr(&self) -> Ipv4Network {
        with_prefix(self.host_ip(), self.host_link_net.prefix())
    }

    /// [`Config::gateway_ip`] with the link's prefix, as assigned to the
    /// gateway's veth.
    pub fn gateway_addr(&self) -> Ipv4Network {
        with_prefix(self.gateway_ip(), self.host_link_net.prefix())
    }

    fn invalid(
        &self,
        setting: &'static str,
        value: impl fmt::Display,
        problem: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            setting,
            value: value.to_string(),
            path: self.file.clone(),
            problem,
        }
    }

    fn validate_host_link(&self) -> Result<(), ConfigError> {
        let name = &self.host_link;
        if crate::ifname::validate_ifname(name).is_err() {
            return Err(self.invalid(
                "host_link",
                format!("{name:?}"),
                format!(
                    "must be a Linux interface name of 1-{MAX_IFNAME_LEN} bytes without '/', ':' \
                     or spaces: pick another, e.g. \"netd0\""
                ),
            ));
        }
        Ok(())
    }

    fn validate_host_link_net(&self) -> Result<(), ConfigError> {
        let value = self.host_link_net;
        if value.prefix() != 30 || !is_network_address(value) {
            return Err(self.invalid(
                "host_link_net",
                value,
                format!(
                    "must be a /30 written with its network address (e.g. {}/30): the host \
                     takes .1 and the gateway .2",
                    value.network()
                ),
            ));
        }
        Ok(())
    }

    /// A range netd carves subnets out of: written with its network address
    /// (so the file says what it means) and at least `max_prefix` wide.
    fn validate_pool(
        &self,
        setting: &'static str,
        value: Ipv4Network,
        max_prefix: u8,
        example: Ipv4Network,
    ) -> Result<(), ConfigError> {
        if value.prefix() > max_prefix || !is_network_address(value) {
            return Err(self.invalid(
                setting,
                value,
                format!(
                    "must be a network address with a prefix of /{max_prefix} or shorter, \
                     e.g. {example}"
                ),
            ));
        }
        Ok(())
    }

    fn validate_netns_prefix(&self) -> Result<(), ConfigError> {
        let prefix = &self.netns_prefix;
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let len = prefix.chars().count();
        if len == 0 || len > MAX_NETNS_PREFIX_LEN || !prefix.chars().all(allowed) {
            return Err(self.invalid(
                "netns_prefix",
                format!("{prefix:?}"),
                format!(
                    "must be 1-{MAX_NETNS_PREFIX_LEN} characters of a-z, 0-9, '-' and '_', \
                     e.g. \"netd-\""
                ),
            ));
        }
        Ok(())
    }

    /// Relative paths would depend on the daemon's working directory, which
    /// systemd sets to `/`; require what the user means.
    fn validate_paths(&self) -> Result<(), ConfigError> {
        let paths = [
            ("socket", &self.socket),
            ("state_dir", &self.state_dir),
            ("run_dir", &self.run_dir),
            ("bpffs_dir", &self.bpffs_dir),
        ];
        for (setting, path) in paths {
            if !path.is_absolute() {
                return Err(self.invalid(
                    setting,
                    format!("{:?}", path.display().to_string()),
                    "must be an absolute path: write it starting with '/'".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Routed ranges must be disjoint, or a packet's route would be
    /// ambiguous. `default_subnet` only has to stay off the links.
    fn validate_no_overlaps(&self) -> Result<(), ConfigError> {
        let pairs = [
            (
                "uplink_pool",
                self.uplink_pool,
                "host_link_net",
                self.host_link_net,
            ),
            (
                "default_subnet",
                self.default_subnet,
                "host_link_net",
                self.host_link_net,
            ),
            (
                "auto_subnet_pool",
                self.auto_subnet_pool,
                "host_link_net",
                self.host_link_net,
            ),
            (
                "default_subnet",
                self.default_subnet,
                "uplink_pool",
                self.uplink_pool,
            ),
            (
                "auto_subnet_pool",
                self.auto_subnet_pool,
                "uplink_pool",
                self.uplink_pool,
            ),
        ];
        for (setting, value, other_setting, other) in pairs {
            if ipam::overlaps(value, other) {
                return Err(self.invalid(
                    setting,
                    value,
                    format!(
                        "overlaps {other_setting} {other}: change one of them so that they \
                         share no address"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Shared by [`Config::load`] and its tests, which cannot rely on what is (or
/// is not) in the real `/etc`.
fn load_from(path: &Path, missing_means_defaults: bool) -> Result<Config, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if missing_means_defaults {
                let config = Config {
                    file: path.to_owned(),
                    ..Config::default()
                };
                return Ok(config);
            }
            return Err(ConfigError::Missing {
                path: path.to_owned(),
            });
        }
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                error,
            });
        }
    };
    let config = Config::parse(&text, path)?;
    config.validate()?;
    Ok(config)
}

/// The first entry not on `own_link`, with a prefix of at least `min_prefix`,
/// that shares an address with `range`.
fn is_network_address(net: Ipv4Network) -> bool {
    net.ip() == net.network()
}

/// The `n`th address of `net`'s network (0 is the network address itself).
fn nth_host(net: Ipv4Network, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

fn with_prefix(ip: Ipv4Addr, prefix: u8) -> Ipv4Network {
    // Cannot fail: the prefix comes from a valid network.
    Ipv4Network::new(ip, prefix).expect("prefix of a parsed network is at most 32")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    fn entry(net: &str, dev: &str) -> (Ipv4Network, String) {
        (cidr(net), dev.to_owned())
    }

    /// The message of `config.validate()`, which must fail.
    fn invalid(config: Config) -> String {
        config.validate().unwrap_err().to_string()
    }

    fn write_temp(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netd.toml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::default();
        assert_eq!(config.host_link, "netd0");
        assert_eq!(config.host_link_net, cidr("172.18.255.0/30"));
        assert_eq!(config.uplink_pool, cidr("172.18.192.0/19"));
        assert_eq!(config.default_subnet, cidr("172.18.0.0/24"));
        assert_eq!(config.auto_subnet_pool, cidr("172.18.0.0/17"));
        assert_eq!(config.netns_prefix, "netd-");
        assert_eq!(config.socket, Path::new("/run/netd/netd.sock"));
        assert_eq!(config.state_dir, Path::new("/var/lib/netd"));
        assert_eq!(config.run_dir, Path::new("/run/netd"));
        assert_eq!(config.bpffs_dir, Path::new("/sys/fs/bpf"));
        assert_eq!(config.dataplane, Dataplane::Ebpf);
        assert_eq!(config.file, Path::new(DEFAULT_CONFIG_PATH));
        config.validate().unwrap();
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert!(text.contains("dataplane = \"ebpf\""), "{text}");
        assert!(!text.contains("file"), "file is not a setting: {text}");
        let parsed = Config::parse(&text, Path::new(DEFAULT_CONFIG_PATH)).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn dns_upstreams_take_addresses_with_or_without_a_port() {
        let parsed = Config::parse(
            "dns_upstreams = [\"192.0.2.53\", \"127.0.0.53:5353\"]",
            Path::new("/etc/netd/netd.toml"),
        )
        .unwrap();
        let addrs: Vec<String> = parsed
            .dns_upstream_addrs()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, ["192.0.2.53:53", "127.0.0.53:5353"]);
        let bad = Config::parse(
            "dns_upstreams = [\"dns.example\"]",
            Path::new("/etc/netd/netd.toml"),
        )
        .unwrap();
        let err = invalid(bad);
        assert!(
            err.starts_with("dns_upstreams \"dns.example\" in /etc/netd/netd.toml: ")
                && err.contains("write IP or IP:PORT"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        let parsed = Config::parse("", Path::new(DEFAULT_CONFIG_PATH)).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn partial_toml_overrides_only_the_given_fields() {
        let (_dir, path) = write_temp(
            "host_link_net = \"10.99.0.0/30\"\ndataplane = \"nftables\"\nstate_dir = \"/tmp/x\"\n",
        );
        let config = Config::load(&path).unwrap();
        let expected = Config {
            host_link_net: cidr("10.99.0.0/30"),
            dataplane: Dataplane::Nftables,
            state_dir: PathBuf::from("/tmp/x"),
            file: path.clone(),
            ..Config::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn host_datapath_and_host_nat_ports_are_read() {
        let (_dir, path) =
            write_temp("host_datapath = \"nftables\"\nhost_nat_ports = \"50000-50999\"\n");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.host_datapath, HostDatapath::Nftables);
        assert_eq!(
            config.host_nat_ports,
            PortSpan {
                min: 50000,
                max: 50999
            }
        );
        assert_eq!(config.host_nat_ports.to_string(), "50000-50999");
    }

    #[test]
    fn bad_host_nat_ports_name_the_form_expected() {
        for (text, wanted) in [
            ("61000", "is not MIN-MAX"),
            ("61000-70000", "is not a port"),
            ("65000-61000", "must run upwards from 1024"),
            ("80-1000", "must run upwards from 1024"),
        ] {
            let (_dir, path) = write_temp(&format!("host_nat_ports = \"{text}\"\n"));
            let message = Config::load(&path).unwrap_err().to_string();
            assert!(message.contains("host_nat_ports"), "{text}: {message}");
            assert!(message.contains(wanted), "{text}: {message}");
            assert!(message.contains("61000-65535"), "the example: {message}");
        }
    }

    #[test]
    fn unknown_host_datapath_is_refused() {
        let (_dir, path) = write_temp("host_datapath = \"iptables\"\n");
        let message = Config::load(&path).unwrap_err().to_string();
        assert!(message.contains("host_datapath"), "{message}");
        assert!(message.contains("ebpf"), "{message}");
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name_and_position() {
        let (_dir, path) = write_temp("host_link = \"netd0\"\nhost_lnik_net = \"10.0.0.0/30\"\n");
        let message = Config::load(&path).unwrap_err().to_string();
        assert!(message.contains("host_lnik_net"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn bad_value_is_a_parse_error_with_its_position() {
        let (_dir, path) = write_temp("\nuplink_pool = \"172.18.192.0/40\"\n");
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("uplink_pool"), "{message}");
    }

    #[test]
    fn missing_default_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netd.toml");
        let config = load_from(&path, true).unwrap();
        assert_eq!(
            config,
            Config {
                file: path,
                ..Config::default()
            }
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netd.toml");
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn load_validates_and_names_the_file() {
        let (_dir, path) = write_temp("host_link_net = \"172.18.255.0/29\"\n");
        let message = Config::load(&path).unwrap_err().to_string();
        let expected = format!(
            "host_link_net 172.18.255.0/29 in {}: must be a /30",
            path.display()
        );
        assert!(message.starts_with(&expected), "{message}");
    }

    #[test]
    fn dataplane_parses_displays_and_serializes_lowercase() {
        for dataplane in Dataplane::ALL {
            let name = dataplane.to_string();
            assert_eq!(name.parse::<Dataplane>().unwrap(), dataplane);
            assert_eq!(
                serde_json::to_string(&dataplane).unwrap(),
                format!("\"{name}\"")
            );
        }
        let message = "nft".parse::<Dataplane>().unwrap_err().to_string();
        assert!(
            message.contains("\"nft\"") && message.contains("nftables"),
            "{message}"
        );
    }

    #[test]
    fn host_link_net_must_be_a_slash_30() {
        let message = invalid(Config {
            host_link_net: cidr("172.18.255.0/29"),
            ..Config::default()
        });
        assert!(
            message
                .starts_with("host_link_net 172.18.255.0/29 in /etc/netd/netd.toml: must be a /30"),
            "{message}"
        );
    }

    #[test]
    fn host_link_net_must_be_a_network_address() {
        let message = invalid(Config {
            host_link_net: cidr("172.18.255.1/30"),
            ..Config::default()
        });
        assert!(
            message.starts_with("host_link_net 172.18.255.1/30"),
            "{message}"
        );
        assert!(message.contains("e.g. 172.18.255.0/30"), "{message}");
    }

    #[test]
    fn uplink_pool_must_hold_a_slash_30_and_be_a_network_address() {
        for bad in ["172.18.192.0/31", "172.18.192.4/19"] {
            let message = invalid(Config {
                uplink_pool: cidr(bad),
                ..Config::default()
            });
            assert!(
                message.starts_with(&format!("uplink_pool {bad} in ")),
                "{message}"
            );
            assert!(message.contains("/30 or shorter"), "{message}");
        }
    }

    #[test]
    fn auto_subnet_pool_must_hold_a_slash_24() {
        let message = invalid(Config {
            auto_subnet_pool: cidr("172.18.0.0/25"),
            ..Config::default()
        });
        assert!(
            message.starts_with("auto_subnet_pool 172.18.0.0/25"),
            "{message}"
        );
    }

    #[test]
    fn default_subnet_must_be_a_network_address() {
        let message = invalid(Config {
            default_subnet: cidr("172.18.0.1/24"),
            ..Config::default()
        });
        assert!(
            message.starts_with("default_subnet 172.18.0.1/24"),
            "{message}"
        );
    }

    #[test]
    fn netns_prefix_is_short_and_plain() {
        for bad in ["", "Netd-", "netd.", "a-very-long-prefix-", "net d"] {
            let message = invalid(Config {
                netns_prefix: bad.to_owned(),
                ..Config::default()
            });
            assert!(
                message.starts_with(&format!("netns_prefix {bad:?} in ")),
                "{message}"
            );
        }
        for good in ["t", "sandbox_42-", "0123456789abcdef"] {
            let config = Config {
                netns_prefix: good.to_owned(),
                ..Config::default()
            };
            config.validate().unwrap();
        }
    }

    #[test]
    fn host_link_must_be_an_interface_name() {
        for bad in ["", "sixteen-bytes-xx", "a/b", "a b", ".."] {
            let message = invalid(Config {
                host_link: bad.to_owned(),
                ..Config::default()
            });
            assert!(
                message.starts_with(&format!("host_link {bad:?} in ")),
                "{message}"
            );
        }
    }

    #[test]
    fn paths_must_be_absolute() {
        let message = invalid(Config {
            state_dir: PathBuf::from("var/lib/netd"),
            ..Config::default()
        });
        assert!(
            message.starts_with("state_dir \"var/lib/netd\" in "),
            "{message}"
        );
    }

    #[test]
    fn pools_must_not_overlap_each_other_or_the_host_link() {
        let cases = [
            (
                Config {
                    uplink_pool: cidr("172.18.224.0/19"),
                    ..Config::default()
                },
                "uplink_pool 172.18.224.0/19 in /etc/netd/netd.toml: overlaps host_link_net",
            ),
            (
                Config {
                    default_subnet: cidr("172.18.192.0/24"),
                    ..Config::default()
                },
                "default_subnet 172.18.192.0/24 in /etc/netd/netd.toml: overlaps uplink_pool",
            ),
            (
                Config {
                    auto_subnet_pool: cidr("172.18.0.0/16"),
                    ..Config::default()
                },
                "auto_subnet_pool 172.18.0.0/16 in /etc/netd/netd.toml: overlaps host_link_net",
            ),
            (
                Config {
                    host_link_net: cidr("172.18.0.0/30"),
                    ..Config::default()
                },
                "default_subnet 172.18.0.0/24 in /etc/netd/netd.toml: overlaps host_link_net",
            ),
        ];
        for (config, expected) in cases {
            let message = invalid(config);
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn default_subnet_may_overlap_the_auto_pool() {
        let config = Config::default();
        assert!(config.default_subnet.overlaps(config.auto_subnet_pool));
        config.validate().unwrap();
    }

    #[test]
    fn host_and_gateway_addresses() {
        let config = Config::default();
        assert_eq!(config.host_ip(), Ipv4Addr::new(172, 18, 255, 1));
        assert_eq!(config.gateway_ip(), Ipv4Addr::new(172, 18, 255, 2));
        assert_eq!(config.host_addr(), cidr("172.18.255.1/30"));
        assert_eq!(config.gateway_addr(), cidr("172.18.255.2/30"));
    }

    #[test]
    fn host_address_collision_names_the_setting_and_the_fix() {
        let addrs = [
            entry("10.0.0.5/24", "eth0"),
            entry("172.18.255.1/24", "eth1"),
        ];
        let err = Config::default()
            .check_host_conflicts(&addrs, &[], "netd0")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "host_link_net 172.18.255.0/30 collides with host address 172.18.255.1/24 on eth1: \
             set host_link_net in /etc/netd/netd.toml to a free /30"
        );
    }

    #[test]
    fn host_route_collision_with_the_uplink_pool() {
        let routes = [entry("172.18.200.0/24", "wg0")];
        let message = Config::default()
            .check_host_conflicts(&[], &routes, "netd0")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "uplink_pool 172.18.192.0/19 collides with host route 172.18.200.0/24 on wg0: \
                 set uplink_pool in /etc/netd/netd.toml to a free range"
            ),
            "{message}"
        );
    }

    #[test]
    fn host_conflicts_ignore_the_default_route_and_netds_own_link() {
        let addrs = [
            entry("192.168.1.10/24", "eth0"),
            entry("172.18.255.1/30", "netd0"),
        ];
        let routes = [
            entry("0.0.0.0/0", "eth0"),
            entry("192.168.1.0/24", "eth0"),
            entry("172.18.0.0/24", "netd0"),
            entry("172.18.192.0/19", "netd0"),
        ];
        Config::default()
            .check_host_conflicts(&addrs, &routes, "netd0")
            .unwrap();
    }

    #[test]
    fn host_conflicts_name_the_file_the_config_came_from() {
        let config = Config {
            file: PathBuf::from("/tmp/sandbox/netd.toml"),
            ..Config::default()
        };
        let routes = [entry("172.16.0.0/12", "eth0")];
        let message = config
            .check_host_conflicts(&[], &routes, "netd0")
            .unwrap_err()
            .to_string();
        assert!(message.contains("in /tmp/sandbox/netd.toml"), "{message}");
    }
}
