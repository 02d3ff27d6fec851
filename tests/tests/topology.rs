//! The topology netd builds, driven through its CLI against a real daemon in
//! a sandbox, and checked with real traffic and the live kernel state:
//! isolation of overlapping networks, `status` and drift, restarts and crash
//! recovery, idempotence, refusal of bad input without side effects, limits,
//! rollback of half-done work, external namespaces and `exec`.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ipnetwork::Ipv4Network;
use netd::{netlink::Netlink, netns::Netns};
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::block_on,
    status::{drift, status},
    traffic::{reachable, run_ok},
};
use serde_json::Value;

/// Where networks created without `--subnet` put their guests.
const DEFAULT_SUBNET: &str = "172.18.0.0/24";
/// The bridge's address in the default subnet.
const DEFAULT_BRIDGE: &str = "172.18.0.254";

// ---------------------------------------------------------------------------
// Helpers

fn guest_ns(netd: &Netd, network: &str, guest: &str) -> String {
    format!("{}g-{network}.{guest}", netd.prefix())
}

fn network_ns(netd: &Netd, network: &str) -> String {
    format!("{}n-{network}", netd.prefix())
}

fn gateway_ns(netd: &Netd) -> String {
    format!("{}gw", netd.prefix())
}

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

/// Namespaces carrying this daemon instance's prefix.
fn owned_namespaces(netd: &Netd) -> Vec<String> {
    Netns::list_with_prefix(&netd.prefix())
}

/// Whether a single echo sent from inside a guest (through `netd exec`) to
/// `ip` is answered.
fn exec_ping(netd: &Netd, network: &str, guest: &str, ip: &str) -> bool {
    netd.cli(&["exec", network, guest, "--", "ping", "-c1", "-W1", ip])
        .status
        .success()
}

fn assert_exec_ping(netd: &Netd, network: &str, guest: &str, ip: &str) {
    assert!(
        exec_ping(netd, network, guest, ip),
        "{network}/{guest} cannot ping {ip}"
    );
}

/// `ip -j ARGS` inside `ns`, parsed.
fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut cmd = ns.command("ip");
    cmd.arg("-j").args(args);
    let out = run_ok(cmd);
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
}

/// The MAC address of `link` in `ns`.
fn mac(ns: &Netns, link: &str) -> String {
    let links = ip_json(ns, &["link", "show", "dev", link]);
    links[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC for {link} in {}: {links}", ns.name()))
        .to_string()
}

/// The resolved neighbours of `ns`: (address, MAC).
fn neighbours(ns: &Netns) -> Vec<(String, String)> {
    ip_json(ns, &["neigh", "show"])
        .as_array()
        .expect("neighbour list")
        .iter()
        .filter_map(|n| {
            Some((
                n["dst"].as_str()?.to_string(),
                n["lladdr"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Interface names in a namespace, read over netlink.
fn link_names(ns: &Netns) -> Vec<String> {
    block_on(async {
        let nl = Netlink::connect(Some(ns)).expect("netlink");
        nl.links()
            .await
            .expect("links")
            .into_iter()
            .map(|l| l.name)
            .collect()
    })
}

/// Asserts `netd status` sees no drift and exits 0 (the human form too).
fn assert_no_drift(netd: &Netd) {
    let (code, json) = status(netd);
    assert!(drift(&json).is_empty(), "drift: {:?}", drift(&json));
    assert_eq!(code, 0, "status --json exit code with no drift");
    let out = netd.cli(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "netd status: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A namespace's entry in `status --json`.
fn status_namespace<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["namespaces"]
        .as_array()
        .expect("namespace list")
        .iter()
        .find(|ns| ns["name"] == name)
        .unwrap_or_else(|| panic!("status does not list namespace {name}: {status:#}"))
}

fn status_link<'a>(namespace: &'a Value, link: &str) -> &'a Value {
    namespace["links"]
        .as_array()
        .expect("link list")
        .iter()
        .find(|l| l["name"] == link)
        .unwrap_or_else(|| panic!("status shows no link {link}: {namespace:#}"))
}

fn guests(netd: &Netd, network: &str) -> Vec<Value> {
    netd.json(&["guest", "ls", network])
        .as_array()
        .expect("guest list")
        .clone()
}

/// A guest's address without its prefix length.
fn guest_ip(guest: &Value) -> Ipv4Addr {
    let cidr = guest["ip"].as_str().expect("guest ip");
    cidr.split('/').next().unwrap().parse().expect("IPv4")
}

/// Everything a refused request must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    networks: Value,
    namespaces: Vec<String>,
}

fn snapshot(netd: &Netd) -> Snapshot {
    Snapshot {
        networks: netd.json(&["network", "ls"]),
        namespaces: owned_namespaces(netd),
    }
}

/// Runs a CLI command that must be refused: exit code 1, one `netd: ` error
/// line on stderr containing every one of `expected`, and no change to the
/// networks, guests or namespaces. Returns the message.
fn assert_refused(netd: &Netd, args: &[&str], expected: &[&str]) -> String {
    let before = snapshot(netd);
    let out = netd.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "netd {} should be refused with exit code 1; stdout {} stderr {stderr}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("netd: "),
        "netd {}: error is not `netd: <message>`: {stderr:?}",
        args.join(" ")
    );
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "netd {}: error {stderr:?} does not contain {fragment:?}",
            args.join(" ")
        );
    }
    assert_eq!(
        snapshot(netd),
        before,
        "netd {} was refused but changed something",
        args.join(" ")
    );
    stderr
}

/// The value at nearest-rank percentile `p` (0-100) of sorted `values`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------
// Tests

fn three_networks_with_the_same_subnet_keep_their_guests_apart(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    let networks = ["a", "b", "c"];
    let guest_names = ["g1", "g2", "g3"];
    for net in networks {
        netd.ok(&["network", "create", net]);
        for guest in guest_names {
            netd.ok(&["guest", "add", net, guest]);
        }
    }

    let listed = netd.json(&["network", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    for net in listed.as_array().unwrap() {
        assert_eq!(net["subnet"], DEFAULT_SUBNET, "{net}");
        assert_eq!(net["routable"], false, "{net}");
        assert_eq!(net["bridge_ip"], DEFAULT_BRIDGE, "{net}");
        let ips: Vec<String> = net["guests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["ip"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            ips,
            ["172.18.0.1/24", "172.18.0.2/24", "172.18.0.3/24"],
            "{net}"
        );
    }

    // Inside each network, every guest reaches every other guest and the
    // bridge.
    for net in networks {
        for (i, from) in guest_names.iter().enumerate() {
            for j in 0..guest_names.len() {
                if i != j {
                    assert_exec_ping(&netd, net, from, &format!("172.18.0.{}", j + 1));
                }
            }
            assert_exec_ping(&netd, net, from, DEFAULT_BRIDGE);
        }
    }

    // The addresses are the same everywhere, so prove where the packets went
    // by MAC: every guest resolved its neighbours to its own network's
    // interfaces, never to another network's.
    let mut macs_of_network = Vec::new();
    for net in networks {
        let mut macs = BTreeSet::new();
        for guest in guest_names {
            macs.insert(mac(&open(&guest_ns(&netd, net, guest)), "eth0"));
        }
        macs.insert(mac(&open(&network_ns(&netd, net)), "br0"));
        macs_of_network.push(macs);
    }
    let all_macs: BTreeSet<&String> = macs_of_network.iter().flatten().collect();
    assert_eq!(all_macs.len(), 12, "every interface has its own MAC");

    for (n, net) in networks.iter().enumerate() {
        for (i, guest) in guest_names.iter().enumerate() {
            let ns = open(&guest_ns(&netd, net, guest));
            let neigh = neighbours(&ns);
            for (j, peer) in guest_names.iter().enumerate() {
                if i == j {
                    continue;
                }
                let ip = format!("172.18.0.{}", j + 1);
                let peer_mac = mac(&open(&guest_ns(&netd, net, peer)), "eth0");
                let resolved = neigh
                    .iter()
                    .find(|(dst, _)| *dst == ip)
                    .map(|(_, m)| m.clone());
                assert_eq!(
                    resolved.as_deref(),
                    Some(peer_mac.as_str()),
                    "{net}/{guest} resolved {ip} to the wrong interface (neighbours {neigh:?})"
                );
            }
            for (dst, lladdr) in &neigh {
                assert!(
                    macs_of_network[n].contains(lladdr),
                    "{net}/{guest} has neighbour {dst} at {lladdr}, which is not in network {net}"
                );
            }
        }
    }

    // Specifically: a/g1 talking to 172.18.0.2 reached a/g2, not b/g2.
    let a_g2 = mac(&open(&guest_ns(&netd, "a", "g2")), "eth0");
    let b_g2 = mac(&open(&guest_ns(&netd, "b", "g2")), "eth0");
    let a_g1_neigh = neighbours(&open(&guest_ns(&netd, "a", "g1")));
    assert!(a_g1_neigh.contains(&("172.18.0.2".to_string(), a_g2.clone())));
    assert!(!a_g1_neigh.iter().any(|(_, m)| *m == b_g2));
    assert_no_drift(&netd);

    // Removing the networks removes every namespace they had.
    for net in networks {
        netd.ok(&["network", "rm", net]);
    }
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
    let left: Vec<String> = owned_namespaces(&netd)
        .into_iter()
        .filter(|name| *name != gateway_ns(&netd))
        .collect();
    assert!(left.is_empty(), "left after network rm: {left:?}");
    assert_no_drift(&netd);
}

fn status_reports_the_live_kernel_state_and_flags_drift(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);

    let (code, json) = status(&netd);
    assert_eq!(code, 0, "no drift yet: {:?}", drift(&json));
    assert!(drift(&json).is_empty());
    assert!(json["dataplane"].is_string());

    let net = status_namespace(&json, &network_ns(&netd, "a"));
    let br0 = status_link(net, "br0");
    assert_eq!(br0["up"], true, "{br0}");
    assert_eq!(br0["addresses"], serde_json::json!(["172.18.0.254/24"]));
    let port = status_link(net, "g-g1");
    assert_eq!(port["up"], true, "{port}");
    assert_eq!(port["bridge"], "br0", "the guest's port is on br0: {port}");
    let uplink = status_link(net, "uplink");
    assert_eq!(uplink["up"], true, "{uplink}");
    assert!(
        net["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("default via")),
        "network namespace has a default route: {net}"
    );

    let guest = status_namespace(&json, &guest_ns(&netd, "a", "g1"));
    let eth0 = status_link(guest, "eth0");
    assert_eq!(eth0["up"], true, "{eth0}");
    assert_eq!(eth0["addresses"], serde_json::json!(["172.18.0.1/24"]));
    status_namespace(&json, &gateway_ns(&netd));
    // Without --namespaces: the counts and the same drift check, no listing
    // (a netlink round per namespace is seconds at 20,000 guests).
    let brief = netd.json(&["status"]);
    assert_eq!(brief["namespaces"], serde_json::json!([]), "{brief}");
    assert_eq!(
        [
            &brief["networks"],
            &brief["guests"],
            &brief["namespace_count"]
        ],
        [1, 1, 3],
        "{brief}"
    );
    let out = netd.ok(&["status"]);
    assert!(out.contains("1 networks, 1 guests, 3 namespaces"), "{out}");

    // A guest's interface set down inside its namespace is drift (seen
    // from its bridge port: no carrier).
    let set = |state: &str| {
        let ok = open(&guest_ns(&netd, "a", "g1"))
            .command("ip")
            .args(["link", "set", "eth0", state])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    set("down");
    let (code, json) = status(&netd);
    assert_eq!(code, 3, "{json}");
    assert!(
        drift(&json).iter().any(|d| d.contains("guest a/g1: eth0")),
        "{:?}",
        drift(&json)
    );
    set("up");
    let (code, json) = status(&netd);
    assert_eq!(code, 0, "{:?}", drift(&json));

    // A guest namespace deleted behind netd's back is drift.
    Netns::delete(&guest_ns(&netd, "a", "g1")).unwrap();
    let out = netd.cli(&["status"]);
    assert_eq!(out.status.code(), Some(3), "netd status exits 3 on drift");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DRIFT"));
    let (code, json) = status(&netd);
    assert_eq!(code, 3);
    let lines = drift(&json);
    let gone = guest_ns(&netd, "a", "g1");
    assert!(
        lines
            .iter()
            .any(|d| d.contains(&gone) && d.contains("missing")),
        "drift names the missing namespace {gone}: {lines:?}"
    );
    assert!(
        lines.iter().any(|d| d.contains("a/g1")),
        "drift names the guest a/g1: {lines:?}"
    );

    // So is a namespace with netd's prefix that netd did not ask for.
    let stray = guest_ns(&netd, "a", "stray");
    Netns::create(&stray).unwrap();
    let (code, json) = status(&netd);
    assert_eq!(code, 3);
    assert!(
        drift(&json)
            .iter()
            .any(|d| d.contains(&stray) && d.contains("orphan")),
        "drift names the orphan {stray}: {:?}",
        drift(&json)
    );
}

fn restarting_the_daemon_keeps_everything(dataplane: &str) {
    let sb = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);
    netd.ok(&["guest", "add", "a", "g2"]);
    assert_exec_ping(&netd, "a", "g1", "172.18.0.2");

    let guests_before = guests(&netd, "a");
    let networks_before = netd.json(&["network", "ls"]);
    let namespaces_before = owned_namespaces(&netd);
    let inodes_before: Vec<u64> = namespaces_before
        .iter()
        .map(|n| open(n).inode().unwrap())
        .collect();

    netd.restart();

    assert_eq!(guests(&netd, "a"), guests_before);
    assert_eq!(netd.json(&["network", "ls"]), networks_before);
    assert_eq!(owned_namespaces(&netd), namespaces_before);
    let inodes_after: Vec<u64> = namespaces_before
        .iter()
        .map(|n| open(n).inode().unwrap())
        .collect();
    assert_eq!(
        inodes_after, inodes_before,
        "a restart must not rebuild intact namespaces"
    );
    assert_exec_ping(&netd, "a", "g1", "172.18.0.2");
    assert_exec_ping(&netd, "a", "g2", "172.18.0.1");
    assert_exec_ping(&netd, "a", "g2", DEFAULT_BRIDGE);
    assert_no_drift(&netd);
}

fn kill_9_then_start_reconciles_missing_and_orphaned_namespaces(dataplane: &str) {
    let sb = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);
    netd.ok(&["guest", "add", "a", "g2"]);
    let kept = guest_ns(&netd, "a", "g1");
    let kept_inode = open(&kept).inode().unwrap();

    netd.kill9();
    let lost = guest_ns(&netd, "a", "g2");
    Netns::delete(&lost).unwrap();
    let orphan = format!("{}g-x.orphan", netd.prefix());
    Netns::create(&orphan).unwrap();
    let foreign = format!("{}zz-foreign", sb.prefix);
    assert!(!foreign.starts_with(&netd.prefix()));
    Netns::create(&foreign).unwrap();

    netd.restart();

    assert!(Netns::exists(&lost), "the deleted guest namespace is back");
    assert!(!Netns::exists(&orphan), "the orphan was removed");
    assert!(
        Netns::exists(&foreign),
        "a namespace without netd's prefix is not netd's to remove"
    );
    assert_eq!(
        open(&kept).inode().unwrap(),
        kept_inode,
        "the intact guest was left alone"
    );
    let g2 = guests(&netd, "a")
        .into_iter()
        .find(|g| g["name"] == "g2")
        .expect("g2 still listed");
    assert_eq!(g2["ip"], "172.18.0.2/24");
    assert_exec_ping(&netd, "a", "g1", "172.18.0.2");
    assert_exec_ping(&netd, "a", "g2", "172.18.0.1");
    assert_exec_ping(&netd, "a", "g2", DEFAULT_BRIDGE);
    assert_no_drift(&netd);
}

fn identical_create_is_idempotent_and_conflicting_create_is_refused(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    let first = netd.json(&["network", "ls"]);
    let namespaces = owned_namespaces(&netd);
    netd.ok(&["network", "create", "a"]);
    assert_eq!(netd.json(&["network", "ls"]), first);
    assert_eq!(owned_namespaces(&netd), namespaces);

    assert_refused(
        &netd,
        &["network", "create", "a", "--subnet", "10.99.0.0/24"],
        &["\"a\"", DEFAULT_SUBNET],
    );
    assert_refused(
        &netd,
        &["network", "create", "a", "--subnet", "auto"],
        &[DEFAULT_SUBNET],
    );

    netd.ok(&["guest", "add", "a", "g1"]);
    let once = guests(&netd, "a");
    let namespaces = owned_namespaces(&netd);
    netd.ok(&["guest", "add", "a", "g1"]);
    netd.ok(&["guest", "add", "a", "g1", "--ip", "172.18.0.1"]);
    assert_eq!(guests(&netd, "a"), once, "same guest, same address");
    assert_eq!(guest_ip(&once[0]), Ipv4Addr::new(172, 18, 0, 1));
    assert_eq!(owned_namespaces(&netd), namespaces);

    assert_refused(
        &netd,
        &["guest", "add", "a", "g1", "--ip", "172.18.0.50"],
        &["\"g1\"", "172.18.0.1"],
    );
    assert_exec_ping(&netd, "a", "g1", DEFAULT_BRIDGE);
    assert_no_drift(&netd);
}

fn bad_input_is_refused_with_a_clear_error_and_changes_nothing(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);
    let long_name = "a".repeat(33);

    // Subnets.
    assert_refused(
        &netd,
        &["network", "create", "x", "--subnet", "10.0.0.0/33"],
        &["bad CIDR", "10.0.0.0/33"],
    );
    assert_refused(
        &netd,
        &["network", "create", "x", "--subnet", "banana"],
        &["bad CIDR", "banana"],
    );
    assert_refused(
        &netd,
        &["network", "create", "x", "--subnet", "10.1.2.3/24"],
        &["did you mean 10.1.2.0/24"],
    );
    assert_refused(
        &netd,
        &["network", "create", "x", "--subnet", "10.0.0.0/8"],
        &["10.0.0.0/8", "too large"],
    );

    // Names.
    assert_refused(
        &netd,
        &["network", "create", &long_name],
        &["invalid network name", &long_name],
    );
    assert_refused(
        &netd,
        &["network", "create", "Web!"],
        &["invalid network name", "Web!"],
    );
    assert_refused(
        &netd,
        &["guest", "add", "a", &long_name],
        &["invalid guest name", &long_name],
    );
    assert_refused(
        &netd,
        &["guest", "add", "a", "Web!"],
        &["invalid guest name", "Web!"],
    );

    // Guest addresses.
    assert_refused(
        &netd,
        &["guest", "add", "a", "g2", "--ip", "172.18.0.1"],
        &["172.18.0.1", "already used by guest g1"],
    );
    assert_refused(
        &netd,
        &["guest", "add", "a", "g2", "--ip", "10.0.0.5"],
        &["10.0.0.5", "outside", DEFAULT_SUBNET],
    );
    assert_refused(
        &netd,
        &["guest", "add", "a", "g2", "--ip", DEFAULT_BRIDGE],
        &[DEFAULT_BRIDGE, "bridge address"],
    );
    assert_refused(
        &netd,
        &["guest", "add", "a", "g2", "--ip", "banana"],
        &["bad IP address", "banana"],
    );

    // Unknown objects.
    assert_refused(
        &netd,
        &["guest", "add", "nope", "g1"],
        &["no network named \"nope\""],
    );
    assert_refused(
        &netd,
        &["network", "rm", "nope"],
        &["no network named \"nope\""],
    );
    assert_refused(
        &netd,
        &["guest", "rm", "a", "nope"],
        &["no guest named \"nope\"", "\"a\""],
    );

    // A routable subnet the host already uses (the sandbox host has
    // 198.51.100.2/24 on its uplink, and a route to that /24).
    let msg = assert_refused(
        &netd,
        &["network", "create", "r", "--subnet", "198.51.100.0/24"],
        &["198.51.100.0/24", "overlaps"],
    );
    assert!(
        msg.contains("host address 198.51.100.2/24") || msg.contains("host route 198.51.100.0/24"),
        "the error names the host address or route: {msg}"
    );
    assert_refused(
        &netd,
        &["network", "create", "r", "--subnet", "198.51.100.128/25"],
        &["198.51.100.128/25", "overlaps", "host"],
    );

    // `auto` finds a free one, routable from the host.
    netd.ok(&["network", "create", "r", "--subnet", "auto"]);
    let r = netd.json(&["network", "inspect", "r"]);
    assert_eq!(r["routable"], true, "{r}");
    let subnet: Ipv4Network = r["subnet"].as_str().unwrap().parse().unwrap();
    let host_net: Ipv4Network = "198.51.100.0/24".parse().unwrap();
    assert!(
        !subnet.contains(host_net.network()) && !host_net.contains(subnet.network()),
        "auto subnet {subnet} overlaps the host's {host_net}"
    );
    netd.ok(&["guest", "add", "r", "w1"]);
    let w1 = guest_ip(&guests(&netd, "r")[0]);
    assert!(subnet.contains(w1));
    assert!(
        reachable(&sb.host, w1),
        "the host reaches guest {w1} of routable network r"
    );
    assert_no_drift(&netd);
}

fn the_254th_guest_is_refused(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);

    let total = Instant::now();
    let mut times = Vec::with_capacity(253);
    for i in 1..=253 {
        let name = format!("g{i}");
        let start = Instant::now();
        netd.ok(&["guest", "add", "a", &name]);
        times.push(start.elapsed());
    }
    let total = total.elapsed();
    let mean = |slice: &[Duration]| slice.iter().sum::<Duration>() / slice.len() as u32;
    let (first, last) = (mean(&times[..25]), mean(&times[times.len() - 25..]));
    times.sort();
    println!(
        "guest add x253: total {:.2?}, p50 {:.2?}, p99 {:.2?}, max {:.2?}; \
         mean of the first 25 {:.2?}, of the last 25 {:.2?}",
        total,
        percentile(&times, 50),
        percentile(&times, 99),
        times[times.len() - 1],
        first,
        last
    );

    let all = guests(&netd, "a");
    assert_eq!(all.len(), 253);
    let ips: BTreeSet<Ipv4Addr> = all.iter().map(guest_ip).collect();
    let expected: BTreeSet<Ipv4Addr> = (1..=253).map(|i| Ipv4Addr::new(172, 18, 0, i)).collect();
    assert_eq!(ips, expected, "253 distinct addresses, .1 to .253");

    assert_refused(
        &netd,
        &["guest", "add", "a", "g254"],
        &["253", "no free address"],
    );
    assert!(exec_ping(&netd, "a", "g253", "172.18.0.1"));
    assert!(exec_ping(&netd, "a", "g1", "172.18.0.253"));
}

fn a_guest_add_failing_half_way_leaves_no_partial_objects(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with(&sb, dataplane, &[("NETD_FAIL_AT", "guest-after-veth")]);
    netd.ok(&["network", "create", "a"]);
    let before = snapshot(&netd);

    let err = netd.err(&["guest", "add", "a", "g1"]);
    assert!(err.starts_with("netd: "), "{err}");
    assert!(err.contains("injected failure"), "{err}");

    assert_eq!(snapshot(&netd), before, "the failed add changed something");
    assert!(guests(&netd, "a").is_empty());
    assert!(!Netns::exists(&guest_ns(&netd, "a", "g1")));
    let guest_prefix = format!("{}g-", netd.prefix());
    assert!(
        !owned_namespaces(&netd)
            .iter()
            .any(|n| n.starts_with(&guest_prefix)),
        "a guest namespace is left: {:?}",
        owned_namespaces(&netd)
    );
    let links = link_names(&open(&network_ns(&netd, "a")));
    assert!(
        !links.iter().any(|l| l.starts_with("g-")),
        "a guest port is left in the network namespace: {links:?}"
    );
    assert_no_drift(&netd);
}

fn a_network_create_failing_half_way_leaves_no_partial_objects(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with(
        &sb,
        dataplane,
        &[("NETD_FAIL_AT", "network-after-uplink-veth")],
    );

    let err = netd.err(&["network", "create", "a"]);
    assert!(err.starts_with("netd: "), "{err}");
    assert!(err.contains("injected failure"), "{err}");

    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
    assert!(!Netns::exists(&network_ns(&netd, "a")));
    let net_prefix = format!("{}n-", netd.prefix());
    assert!(
        !owned_namespaces(&netd)
            .iter()
            .any(|n| n.starts_with(&net_prefix)),
        "a network namespace is left: {:?}",
        owned_namespaces(&netd)
    );
    if Netns::exists(&gateway_ns(&netd)) {
        let links = link_names(&open(&gateway_ns(&netd)));
        assert!(
            !links.iter().any(|l| l.starts_with("nu")),
            "an uplink port is left in the gateway namespace: {links:?}"
        );
    }
    // What is left must be what netd's own status calls consistent.
    assert_no_drift(&netd);
}

fn guest_with_an_existing_netns_is_plugged_in_and_its_namespace_kept(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);
    let ext_name = format!("{}ext", sb.prefix);
    let ext = Netns::create(&ext_name).unwrap();
    let path = format!("/run/netns/{ext_name}");

    netd.ok(&["guest", "add", "a", "ext", "--netns", &path]);
    let view = guests(&netd, "a")
        .into_iter()
        .find(|g| g["name"] == "ext")
        .expect("ext listed");
    assert_eq!(view["owned_netns"], false, "{view}");
    assert_eq!(view["netns"], path.as_str(), "{view}");
    let ip = guest_ip(&view);
    assert_eq!(ip, Ipv4Addr::new(172, 18, 0, 2));

    assert!(reachable(&ext, Ipv4Addr::new(172, 18, 0, 1)), "ext -> g1");
    assert!(
        reachable(&ext, DEFAULT_BRIDGE.parse().unwrap()),
        "ext -> bridge"
    );
    assert_exec_ping(&netd, "a", "g1", "172.18.0.2");
    assert_exec_ping(&netd, "a", "ext", "172.18.0.1");
    assert_no_drift(&netd);

    netd.ok(&["guest", "rm", "a", "ext"]);
    assert!(
        Netns::exists(&ext_name),
        "netd removed a namespace it did not make"
    );
    assert!(
        !link_names(&ext).iter().any(|l| l == "eth0"),
        "eth0 is still in the external namespace"
    );
    assert!(guests(&netd, "a").iter().all(|g| g["name"] != "ext"));
    assert!(!exec_ping(&netd, "a", "g1", "172.18.0.2"));
    assert_no_drift(&netd);
}

fn exec_passes_exit_code_and_output_through(dataplane: &str) {
    let sb = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sb, dataplane);
    netd.ok(&["network", "create", "a"]);
    netd.ok(&["guest", "add", "a", "g1"]);

    let out = netd.cli(&["exec", "a", "g1", "--", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(7));

    // It runs inside the guest's namespace.
    let out = netd.ok(&[
        "exec", "a", "g1", "--", "ip", "-o", "-4", "addr", "show", "eth0",
    ]);
    assert!(out.contains("172.18.0.1/24"), "{out}");

    let out = netd.cli(&["exec", "a", "g1", "--", "no-such-command-netd-test"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-command-netd-test"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = netd.cli(&["exec", "a", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("netd: "));
}

/// The bridge's MAC as `ip link` shows it inside the network namespace.
fn bridge_mac(netd: &Netd, network: &str) -> String {
    let ns = open(&network_ns(netd, network));
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["-o", "link", "show", "br0"]);
        c
    });
    out.split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("br0 has a MAC")
        .to_owned()
}

fn the_bridge_keeps_its_mac_while_guests_come_and_go(dataplane: &str) {
    // A bridge without a MAC of its own takes its lowest port's, so adding or
    // removing a guest could change the gateway MAC every guest has cached.
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    let before = bridge_mac(&netd, "web");
    for i in 0..12 {
        netd.ok(&["guest", "add", "web", &format!("g{i}")]);
    }
    for i in 0..6 {
        netd.ok(&["guest", "rm", "web", &format!("g{i}")]);
    }
    assert_eq!(bridge_mac(&netd, "web"), before);
    assert_exec_ping(&netd, "web", "g7", DEFAULT_BRIDGE);
}

fn one_guest_add_with_several_names_adds_each_in_order(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    let out = netd.ok(&["guest", "add", "web", "w1", "w2", "w3"]);
    for (name, ip) in [
        ("w1", "172.18.0.1"),
        ("w2", "172.18.0.2"),
        ("w3", "172.18.0.3"),
    ] {
        assert!(
            out.contains(&format!("guest web/{name} {ip}/24 ")),
            "{name} at {ip}: {out}"
        );
    }
    assert_exec_ping(&netd, "web", "w3", "172.18.0.1");
    // --ip names one guest's address: refused with several, nothing added.
    let err = netd.err(&["guest", "add", "web", "x1", "x2", "--ip", "172.18.0.50"]);
    assert!(err.contains("one guest name"), "{err}");
    // The first refused name stops the rest.
    let err = netd.err(&["guest", "add", "web", "w4", "bad name", "w5"]);
    assert!(err.contains("bad name"), "{err}");
    let listed = netd.json(&["guest", "ls", "web"]);
    let names: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["w1", "w2", "w3", "w4"]));
    assert_no_drift(&netd);
}

netd_tests::conformance!(
    one_guest_add_with_several_names_adds_each_in_order,
    three_networks_with_the_same_subnet_keep_their_guests_apart,
    status_reports_the_live_kernel_state_and_flags_drift,
    restarting_the_daemon_keeps_everything,
    kill_9_then_start_reconciles_missing_and_orphaned_namespaces,
    identical_create_is_idempotent_and_conflicting_create_is_refused,
    bad_input_is_refused_with_a_clear_error_and_changes_nothing,
    the_254th_guest_is_refused,
    a_guest_add_failing_half_way_leaves_no_partial_objects,
    a_network_create_failing_half_way_leaves_no_partial_objects,
    guest_with_an_existing_netns_is_plugged_in_and_its_namespace_kept,
    exec_passes_exit_code_and_output_through,
    the_bridge_keeps_its_mac_while_guests_come_and_go,
);
