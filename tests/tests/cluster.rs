//! netd across hosts: three nodes, each a sandbox with its own daemon,
//! joined by an underlay bridge and sharing a 3-member etcd cluster (see
//! `netd_tests::cluster`). Nodes register under leases and list each other;
//! a spanned network's guests on different nodes talk over VXLAN (ping,
//! TCP, UDP) on both dataplanes; addresses asked for at once on two nodes
//! never collide; a node killed with -9 is withdrawn from the others; an
//! etcd member killed leaves the cluster working. Without cluster options,
//! cluster requests are refused naming the fix.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    cluster::{Cluster, NODES},
    netd::Netd,
    sockets::{
        serve_tcp_echo, serve_udp_echo, tcp_ask, tcp_connect, tcp_listener, udp_ask, udp_socket,
    },
    traffic::{ping, run_ok},
};
use serde_json::Value;

/// Waits (a failure guard, not a timing claim) until `done` holds.
fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "{what}: not so after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const GUARD: Duration = Duration::from_secs(60);

fn node_names(netd: &Netd) -> BTreeSet<String> {
    netd.json(&["node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

fn all_joined(daemons: &[Netd]) {
    let all: BTreeSet<String> = (0..NODES).map(Cluster::node_name).collect();
    for netd in daemons {
        eventually("every node registered", GUARD, || node_names(netd) == all);
    }
}

fn guest_ns(netd: &Netd, network: &str, guest: &str) -> Netns {
    Netns::open(&format!("{}g-{network}.{guest}", netd.prefix())).expect("guest namespace")
}

fn ip_of(view: &Value) -> Ipv4Addr {
    view["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The VXLAN device's FDB entries with a remote address on `netd`'s node,
/// as `bridge fdb` shows them: (MAC, remote).
fn fdb(netd: &Netd, network: &str) -> BTreeSet<(String, String)> {
    let ns = Netns::open(&format!("{}n-{network}", netd.prefix())).expect("network namespace");
    let out = run_ok({
        let mut c = ns.command("bridge");
        c.args(["-j", "fdb", "show", "dev", "vxlan0"]);
        c
    });
    let entries: Value = serde_json::from_str(&out).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["mac"].as_str()?.to_owned(), e["dst"].as_str()?.to_owned())))
        .collect()
}

#[test]
fn nodes_register_and_list_each_other_with_their_underlay_addresses() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    all_joined(&daemons);
    let nodes = daemons[0].json(&["node", "ls"]);
    for (i, node) in nodes.as_array().unwrap().iter().enumerate() {
        assert_eq!(node["name"], Cluster::node_name(i));
        assert_eq!(node["underlay"], cluster.node_address(i).to_string());
        assert_eq!(node["this_node"], i == 0);
        assert!(node["last_seen_secs"].as_i64().unwrap() <= 10, "{node}");
    }
    let human = daemons[1].ok(&["node", "ls"]);
    assert!(human.contains("node2 *"), "{human}");
    assert!(
        human.contains(&cluster.node_address(2).to_string()),
        "{human}"
    );
}
