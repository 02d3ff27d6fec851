//! The systems under test, each built in its own sandbox: the limit (a
//! direct veth), netd with either dataplane, netavark and the CNI reference
//! plugins. Each offers a client namespace (a guest) and two servers: one in
//! the sandbox internet, through the whole host-gateway-network path, and
//! one in a peer guest of the same network.

use std::{
    fmt,
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use netd::{daemon::requests::GuestView, netns::Netns};
use serde_json::{Value, json};

use crate::{
    Sandbox,
    bench::load::{self, Ports, UdpSink},
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
};

/// Where netavark's binary is (Debian's package puts it beside podman's).
pub const NETAVARK: &str = "/usr/lib/podman/netavark";
/// Where Debian's containernetworking-plugins are.
pub const CNI_PATH: &str = "/usr/lib/cni";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum CaseKey {
    Limit,
    NetdEbpf,
    NetdNft,
    Netavark,
    Cni,
}

impl CaseKey {
    pub const ALL: [CaseKey; 5] = [
        CaseKey::Limit,
        CaseKey::NetdEbpf,
        CaseKey::NetdNft,
        CaseKey::Netavark,
        CaseKey::Cni,
    ];

    /// The report's row name.
    pub fn title(self) -> &'static str {
        match self {
            CaseKey::Limit => "(a) limit: direct veth",
            CaseKey::NetdEbpf => "(b) netd, eBPF",
            CaseKey::NetdNft => "(c) netd, nftables",
            CaseKey::Netavark => "(d) netavark 1.4",
            CaseKey::Cni => "(e) CNI plugins",
        }
    }

    /// A short name for column heads and charts.
    pub fn short(self) -> &'static str {
        match self {
            CaseKey::Limit => "limit",
            CaseKey::NetdEbpf => "netd eBPF",
            CaseKey::NetdNft => "netd nft",
            CaseKey::Netavark => "netavark",
            CaseKey::Cni => "CNI",
        }
    }

    /// The name `--cases` takes.
    pub fn key(self) -> &'static str {
        match self {
            CaseKey::Limit => "limit",
            CaseKey::NetdEbpf => "netd-ebpf",
            CaseKey::NetdNft => "netd-nft",
            CaseKey::Netavark => "netavark",
            CaseKey::Cni => "cni",
        }
    }

    /// Bar colour in the charts.
    pub fn colour(self) -> &'static str {
        match self {
            CaseKey::Limit => "#7f7f7f",
            CaseKey::NetdEbpf => "#1f77b4",
            CaseKey::NetdNft => "#17becf",
            CaseKey::Netavark => "#d62728",
            CaseKey::Cni => "#ff7f0e",
        }
    }

    /// What traffic crosses, for each path.
    pub fn route(self, path: PathKind) -> &'static str {
        match (self, path) {
            (CaseKey::Limit, PathKind::Published) => {
                "the same veth pair, the other way: a client in the internet namespace to a \
                 server in the host namespace, on the host's address"
            }
            (CaseKey::Limit, _) => "one veth pair between two namespaces: no bridge, no NAT",
            (CaseKey::NetdEbpf, PathKind::Published) => {
                "uplink, eBPF DNAT in the host program on the uplink's ingress \
                 (`netd port add`), gateway, peer guest (the nft host side where the eBPF one \
                 does not run)"
            }
            (CaseKey::NetdNft, PathKind::Published) => {
                "uplink, host namespace (netd's nftables DNAT), gateway, network, peer guest"
            }
            (CaseKey::Netavark, PathKind::Published) => {
                "uplink, iptables(-nft) DNAT of netavark's port mapping, host bridge, container"
            }
            (CaseKey::Cni, PathKind::Published) => {
                "uplink, iptables(-nft) DNAT of the portmap plugin, host bridge, container"
            }
            (CaseKey::NetdEbpf, PathKind::Internet) => {
                "guest veth; the guest's port program redirects into the gateway, one eBPF \
                 translation to the host's address in the host program on `netd0`, FIB lookup \
                 and redirect to the uplink (the fast path; replies by the host program on the \
                 uplink's ingress)"
            }
            (CaseKey::NetdNft, PathKind::Internet) => {
                "guest veth, bridge in the network namespace, nftables NAT in the gateway \
                 namespace, host namespace, uplink"
            }
            (CaseKey::NetdEbpf, PathKind::Guest) => {
                "guest veth; the guest's port program (partition check) redirects straight into \
                 the peer's veth"
            }
            (CaseKey::NetdNft, PathKind::Guest) => {
                "guest veth, the network namespace's bridge (partition check on the guest's port), \
                 peer veth"
            }
            (CaseKey::Netavark | CaseKey::Cni, PathKind::Internet) => {
                "container veth, bridge in the host namespace, iptables(-nft) MASQUERADE, uplink"
            }
            (CaseKey::Netavark | CaseKey::Cni, PathKind::Guest) => {
                "container veth, the host namespace's bridge, peer veth"
            }
        }
    }
}

impl fmt::Display for CaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum PathKind {
    /// Guest to a server in the sandbox internet.
    Internet,
    /// Guest to a peer guest of the same network.
    Guest,
    /// A client in the sandbox internet to a guest's port published on the
    /// host's address.
    Published,
}

impl PathKind {
    pub const ALL: [PathKind; 3] = [PathKind::Internet, PathKind::Guest, PathKind::Published];

    pub fn title(self) -> &'static str {
        match self {
            PathKind::Internet => "guest → internet",
            PathKind::Guest => "guest → guest",
            PathKind::Published => "internet → published port",
        }
    }

    /// A key for file names and JSON.
    pub fn key(self) -> &'static str {
        match self {
            PathKind::Internet => "internet",
            PathKind::Guest => "guest",
            PathKind::Published => "published",
        }
    }
}

/// A client namespace and the server it talks to.
pub struct Target {
    pub client: Netns,
    pub server: Ipv4Addr,
    pub sink: Arc<UdpSink>,
    /// The ports the client connects to.
    pub ports: Ports,
}

/// One system under test, ready for traffic.
pub struct Case<'a> {
    pub key: CaseKey,
    pub sandbox: &'a Sandbox,
    pub internet: Target,
    pub peer: Target,
    pub published: Target,
    system: System<'a>,
}

enum System<'a> {
    Limit,
    Netd(Netd<'a>),
    Netavark(NetavarkNet<'a>, Vec<(Netns, Value)>),
    Cni(CniNet<'a>, Vec<(Netns, String, CniAttachment)>),
}

impl<'a> Case<'a> {
    pub fn target(&self, path: PathKind) -> &Target {
        match path {
            PathKind::Internet => &self.internet,
            PathKind::Guest => &self.peer,
            PathKind::Published => &self.published,
        }
    }

    /// The netd daemon of a netd case.
    pub fn netd(&self) -> Option<&Netd<'a>> {
        match &self.system {
            System::Netd(netd) => Some(netd),
            _ => None,
        }
    }

    pub fn netavark(&self) -> Option<&NetavarkNet<'a>> {
        match &self.system {
            System::Netavark(net, _) => Some(net),
            _ => None,
        }
    }

    pub fn cni(&self) -> Option<&CniNet<'a>> {
        match &self.system {
            System::Cni(net, _) => Some(net),
            _ => None,
        }
    }

    /// Builds the case `key` in `sb`: a guest, a peer guest, and the servers.
    pub fn build(key: CaseKey, sb: &'a Sandbox) -> Result<Case<'a>> {
        let internet_servers = serve(sb, &sb.internet)?;
        let internet = |client: Netns| Target {
            client,
            server: INTERNET_SERVER,
            sink: internet_servers.clone(),
            ports: Ports::DIRECT,
        };
        // The published path's client is in the sandbox internet, towards
        // the host's uplink address.
        let published = |sink: Arc<UdpSink>, ports: Ports| -> Result<Target> {
            Ok(Target {
                client: Netns::open_path(sb.internet.name(), sb.internet.path())?,
                server: HOST_UPLINK,
                sink,
                ports,
            })
        };
        match key {
            CaseKey::Limit => {
                // The sandbox's own host and internet namespaces are joined
                // by one veth pair: the limit for both paths.
                let client = || Netns::open(sb.host.name());
                widen_ports(&sb.host)?;
                widen_ports(&sb.internet)?;
                let host_servers = serve(sb, &sb.host)?;
                Ok(Case {
                    key,
                    sandbox: sb,
                    internet: internet(client()?),
                    peer: internet(client()?),
                    published: published(host_servers, Ports::DIRECT)?,
                    system: System::Limit,
                })
            }
            CaseKey::NetdEbpf | CaseKey::NetdNft => {
                let dataplane = if key == CaseKey::NetdEbpf {
                    "ebpf"
                } else {
                    "nftables"
                };
                let netd = Netd::try_start(sb, dataplane)
                    .map_err(|log| anyhow!("{}", first_error_line(&log)))?;
                cli(&netd, &["network", "create", "bench"])?;
                for guest in ["g1", "g2"] {
                    cli(&netd, &["guest", "add", "bench", guest])?;
                }
                let guests: Vec<GuestView> =
                    serde_json::from_str(&cli(&netd, &["guest", "ls", "bench", "--json"])?)?;
                let open = |name: &str| -> Result<(Netns, Ipv4Addr)> {
                    let g = guests
                        .iter()
                        .find(|g| g.name == name)
                        .ok_or_else(|| anyhow!("guest {name} is not listed"))?;
                    let ip: Ipv4Addr = g.ip.split('/').next().unwrap_or("").parse()?;
                    Ok((Netns::open_path(&g.name, &g.netns)?, ip))
                };
                let (g1, _) = open("g1")?;
                let (g2, g2_ip) = open("g2")?;
                widen_ports(&g1)?;
                widen_ports(&sb.internet)?;
                let peer = Target {
                    server: g2_ip,
                    sink: serve(sb, &g2)?,
                    client: Netns::open_path("g1", g1.path())?,
                    ports: Ports::DIRECT,
                };
                for (host, guest, proto) in Ports::PUBLISHED.mappings() {
                    cli(
                        &netd,
                        &[
                            "port",
                            "add",
                            "bench",
                            "g2",
                            &format!("{host}:{guest}/{proto}"),
                        ],
                    )?;
                }
                Ok(Case {
                    key,
                    sandbox: sb,
                    internet: internet(g1),
                    published: published(peer.sink.clone(), Ports::PUBLISHED)?,
                    peer,
                    system: System::Netd(netd),
                })
            }
            CaseKey::Netavark => {
                let net = NetavarkNet::new(sb)?;
                let mut attached = Vec::new();
                for (i, name) in ["c1", "c2"].into_iter().enumerate() {
                    let ns = container_netns(sb, name)?;
                    let mut options = net.options(i as u32, 8080 + i as u16);
                    if i == 1 {
                        NetavarkNet::publish(&mut options, &Ports::PUBLISHED.mappings());
                    }
                    net.setup(ns.path(), &options)?;
                    attached.push((ns, options));
                }
                widen_ports(&sb.internet)?;
                let (internet, peer) =
                    build_bridged(sb, &attached[0].0, &attached[1].0, net.ip(1), internet)?;
                Ok(Case {
                    key,
                    sandbox: sb,
                    published: published(peer.sink.clone(), Ports::PUBLISHED)?,
                    internet,
                    peer,
                    system: System::Netavark(net, attached),
                })
            }
            CaseKey::Cni => {
                let net = CniNet::new(sb)?;
                let mut attached = Vec::new();
                for (i, name) in ["c1", "c2"].into_iter().enumerate() {
                    let ns = container_netns(sb, name)?;
                    let extra = if i == 1 {
                        Ports::PUBLISHED.mappings()
                    } else {
                        Vec::new()
                    };
                    let (attachment, _) = net.add_with(name, ns.path(), 8080 + i as u16, &extra)?;
                    attached.push((ns, name.to_owned(), attachment));
                }
                let peer_ip = attached[1].2.ip;
                widen_ports(&sb.internet)?;
                let (internet, peer) =
                    build_bridged(sb, &attached[0].0, &attached[1].0, peer_ip, internet)?;
                Ok(Case {
                    key,
                    sandbox: sb,
                    published: published(peer.sink.clone(), Ports::PUBLISHED)?,
                    internet,
                    peer,
                    system: System::Cni(net, attached),
                })
            }
        }
    }

    /// Undoes what the case set up the way its system does (netd cleanup,
    /// netavark teardown, CNI DEL); the sandbox removes the rest.
    pub fn teardown(self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.system {
            System::Limit => {}
            System::Netd(mut netd) => {
                if let Err(err) = cli(&netd, &["cleanup"]) {
                    errors.push(format!("{}: netd cleanup: {err:#}", self.key));
                }
                netd.stop();
            }
            System::Netavark(net, attached) => {
                for (ns, options) in attached {
                    if let Err(err) = net.teardown(ns.path(), &options) {
                        errors.push(format!("netavark teardown: {err:#}"));
                    }
                }
            }
            System::Cni(net, attached) => {
                for (ns, id, attachment) in attached {
                    if let Err(err) = net.del(&id, ns.path(), &attachment) {
                        errors.push(format!("CNI DEL: {err:#}"));
                    }
                }
            }
        }
        errors
    }
}

/// The two targets of a bridged container system (netavark, CNI).
fn build_bridged(
    sb: &Sandbox,
    c1: &Netns,
    c2: &Netns,
    c2_ip: Ipv4Addr,
    internet: impl Fn(Netns) -> Target,
) -> Result<(Target, Target)> {
    widen_ports(c1)?;
    let peer = Target {
        client: Netns::open_path(c1.name(), c1.path())?,
        server: c2_ip,
        sink: serve(sb, c2)?,
        ports: Ports::DIRECT,
    };
    Ok((internet(Netns::open_path(c1.name(), c1.path())?), peer))
}

/// Starts the load servers and an iperf3 server (owned by the sandbox) in `ns`.
fn serve(sb: &Sandbox, ns: &Netns) -> Result<Arc<UdpSink>> {
    let servers = load::start_servers(ns)?;
    sb.spawn(load::iperf3_server(ns))?;
    for server in load::sockperf_servers(ns) {
        sb.spawn(server)?;
    }
    Ok(servers.sink)
}

/// A fresh, empty namespace for a container, named with the sandbox's
/// prefix (so the sandbox removes it), loopback up.
pub fn container_netns(sb: &Sandbox, name: &str) -> Result<Netns> {
    let ns = Netns::create(&format!("{}{name}", sb.prefix))?;
    run(ns.command("ip").args(["link", "set", "lo", "up"]))?;
    Ok(ns)
}

/// A client opens many connections: give it most of the port range. (A
/// thread inside the namespace sees that namespace's /proc/sys/net.)
fn widen_ports(ns: &Netns) -> Result<()> {
    const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    ns.run_in(|| std::fs::write(RANGE, "1024 65000"))?
        .with_context(|| format!("writing {RANGE} in {}", ns.name()))
}

/// Runs a netd CLI command; its stdout, or its stderr as the error.
pub fn cli(netd: &Netd, args: &[&str]) -> Result<String> {
    let out = netd.cli(args);
    checked(&format!("netd {}", args.join(" ")), out)
}

fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    checked(&shown, out)
}

fn checked(shown: &str, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The line of a daemon log that says why it stopped.
fn first_error_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("Error") || l.contains("ERROR") || l.contains("error"))
        .or_else(|| log.lines().last())
        .unwrap_or("the daemon did not start")
        .trim()
        .to_owned()
}

/// Runs `command` with `input` on stdin; its output and how long it took
/// from spawn to exit.
fn timed_with_stdin(command: &mut Command, input: &[u8]) -> Result<(Output, Duration)> {
    let shown = format!("{:?}", command.get_program());
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .with_context(|| format!("writing {shown}'s stdin"))?;
    let out = child.wait_with_output()?;
    Ok((out, start.elapsed()))
}

/// netavark's bridge network "bench" (10.89.0.0/24, bridge `nvbr0`), driven
/// through its CLI in the sandbox's host namespace, with its iptables
/// firewall driver.
pub struct NetavarkNet<'a> {
    sb: &'a Sandbox,
    config_dir: PathBuf,
}

impl<'a> NetavarkNet<'a> {
    pub fn new(sb: &'a Sandbox) -> Result<NetavarkNet<'a>> {
        let config_dir = sb.root.join("netavark");
        std::fs::create_dir_all(&config_dir)?;
        Ok(NetavarkNet { sb, config_dir })
    }

    /// Container `index`'s static address: 10.89.0.2 and up.
    pub fn ip(&self, index: u32) -> Ipv4Addr {
        let host = 2 + index;
        Ipv4Addr::new(10, 89, (host / 256) as u8, (host % 256) as u8)
    }

    /// The network and options netavark reads on stdin for container
    /// `index`: one interface on the network, one published TCP port.
    pub fn options(&self, index: u32, host_port: u16) -> Value {
        json!({
            "container_id": format!("{:064x}", 0xbe_0000 + index),
            "container_name": format!("bench{index}"),
            "port_mappings": [{
                "host_ip": "", "container_port": 80, "host_port": host_port,
                "range": 1, "protocol": "tcp"
            }],
            "networks": {
                "bench": {"static_ips": [self.ip(index).to_string()], "interface_name": "eth0"}
            },
            "network_info": {
                "bench": {
                    "name": "bench",
                    "id": "be0c4b1e0e4ac1f0b2d9a7c3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718",
                    "driver": "bridge",
                    "network_interface": "nvbr0",
                    "subnets": [{"subnet": "10.89.0.0/16", "gateway": "10.89.0.1"}],
                    "ipv6_enabled": false,
                    "internal": false,
                    "dns_enabled": false,
                    "ipam_options": {"driver": "host-local"}
                }
            }
        })
    }

    /// Adds port mappings (host port, container port, protocol) to options.
    pub fn publish(options: &mut Value, mappings: &[(u16, u16, &str)]) {
        if let Some(list) = options["port_mappings"].as_array_mut() {
            for &(host, container, proto) in mappings {
                list.push(json!({
                    "host_ip": "", "container_port": container, "host_port": host,
                    "range": 1, "protocol": proto
                }));
            }
        }
    }

    fn call(&self, verb: &str, netns: &Path, options: &Value) -> Result<Duration> {
        let mut cmd = self.sb.host_command(NETAVARK);
        cmd.arg("--config")
            .arg(&self.config_dir)
            .arg(verb)
            .arg(netns);
        let (out, took) = timed_with_stdin(&mut cmd, &serde_json::to_vec(options)?)?;
        checked(&format!("netavark {verb} {}", netns.display()), out)?;
        Ok(took)
    }

    /// `netavark setup`: how long the call took, spawn to exit.
    pub fn setup(&self, netns: &Path, options: &Value) -> Result<Duration> {
        self.call("setup", netns, options)
    }

    pub fn teardown(&self, netns: &Path, options: &Value) -> Result<Duration> {
        self.call("teardown", netns, options)
    }
}

/// What CNI ADD returned, kept for DEL (which gets the prevResult too).
pub struct CniAttachment {
    /// The chain's final result: every plugin's prevResult on DEL, as a
    /// runtime's cached result is.
    result: Value,
    pub ip: Ipv4Addr,
    host_port: u16,
    /// Further mappings (host port, container port, protocol).
    extra: Vec<(u16, u16, &'static str)>,
}

/// The CNI reference plugins as a chain (a conflist, run by hand as the
/// spec says): bridge (`cnibr0`, host-local IPAM on 10.90.0.0/16, IP
/// masquerade) then portmap, in the sandbox's host namespace.
pub struct CniNet<'a> {
    sb: &'a Sandbox,
    data_dir: PathBuf,
}

impl<'a> CniNet<'a> {
    pub fn new(sb: &'a Sandbox) -> Result<CniNet<'a>> {
        let data_dir = sb.root.join("cni-ipam");
        std::fs::create_dir_all(&data_dir)?;
        Ok(CniNet { sb, data_dir })
    }

    fn bridge_config(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "bridge",
            "bridge": "cnibr0",
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir,
                "ranges": [[{"subnet": "10.90.0.0/16", "gateway": "10.90.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        })
    }

    fn portmap_config(
        &self,
        host_port: u16,
        extra: &[(u16, u16, &'static str)],
        prev: &Value,
    ) -> Value {
        let mut mappings =
            vec![json!({"hostPort": host_port, "containerPort": 80, "protocol": "tcp"})];
        for &(host, container, proto) in extra {
            mappings.push(json!({"hostPort": host, "containerPort": container, "protocol": proto}));
        }
        json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
            "runtimeConfig": {"portMappings": mappings},
            "prevResult": prev
        })
    }

    fn exec(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        netns: &Path,
        config: &Value,
    ) -> Result<(Value, Duration)> {
        let mut cmd = self.sb.host.command(Path::new(CNI_PATH).join(plugin));
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH);
        let (out, took) = timed_with_stdin(&mut cmd, &serde_json::to_vec(config)?)?;
        let stdout = checked(&format!("CNI {plugin} {command} {id}"), out)?;
        let result = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .with_context(|| format!("CNI {plugin} {command}: its result"))?
        };
        Ok((result, took))
    }

    /// ADD through the chain; the attachment and the time of both calls.
    pub fn add(&self, id: &str, netns: &Path, host_port: u16) -> Result<(CniAttachment, Duration)> {
        self.add_with(id, netns, host_port, &[])
    }

    /// Same, with further port mappings (host port, container port, protocol).
    pub fn add_with(
        &self,
        id: &str,
        netns: &Path,
        host_port: u16,
        extra: &[(u16, u16, &'static str)],
    ) -> Result<(CniAttachment, Duration)> {
        let (bridge_result, t1) = self.exec("bridge", "ADD", id, netns, &self.bridge_config())?;
        let (portmap_result, t2) = self.exec(
            "portmap",
            "ADD",
            id,
            netns,
            &self.portmap_config(host_port, extra, &bridge_result),
        )?;
        let ip = portmap_result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next()?.parse().ok())
            .ok_or_else(|| anyhow!("CNI ADD {id}: no address in the result"))?;
        Ok((
            CniAttachment {
                result: portmap_result,
                ip,
                host_port,
                extra: extra.to_vec(),
            },
            t1 + t2,
        ))
    }

    /// DEL through the chain in reverse, each plugin given the prevResult.
    pub fn del(&self, id: &str, netns: &Path, attachment: &CniAttachment) -> Result<Duration> {
        let (_, t1) = self.exec(
            "portmap",
            "DEL",
            id,
            netns,
            &self.portmap_config(attachment.host_port, &attachment.extra, &attachment.result),
        )?;
        let mut bridge = self.bridge_config();
        bridge["prevResult"] = attachment.result.clone();
        let (_, t2) = self.exec("bridge", "DEL", id, netns, &bridge)?;
        Ok(t1 + t2)
    }
}
