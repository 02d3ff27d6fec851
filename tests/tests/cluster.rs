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

/// Adds guest `name` to `network` on `netd`'s node; returns its address.
fn add_guest(netd: &Netd, network: &str, name: &str) -> Ipv4Addr {
    netd.ok(&["guest", "add", network, name]);
    ip_of(&netd.json(&["guest", "inspect", network, name]))
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

/// One spanned network over the three nodes, a guest on each: every pair
/// across nodes pings, holds a TCP conversation and trades UDP datagrams,
/// with the peer seeing the sender's own address (one L2 segment, no NAT);
/// each node's VXLAN device holds the other nodes' guests and a flood
/// entry per other node, and nothing for its own.
fn guests_on_different_nodes_talk_over_the_spanned_network(dataplane: &str) {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons(dataplane);
    all_joined(&daemons);
    let created = daemons[0].ok(&["network", "create", "web", "--span"]);
    assert!(created.contains("spanned vni"), "{created}");
    let names = ["a", "b", "c"];
    let ips: Vec<Ipv4Addr> = daemons
        .iter()
        .zip(names)
        .map(|(netd, name)| add_guest(netd, "web", name))
        .collect();
    let unique: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(unique.len(), NODES, "{ips:?}");

    // Each node programs what etcd says about the others.
    for (i, netd) in daemons.iter().enumerate() {
        let others: BTreeSet<String> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| cluster.node_address(j).to_string())
            .collect();
        eventually("every remote guest in the FDB", GUARD, || {
            let entries = fdb(netd, "web");
            let flood: BTreeSet<String> = entries
                .iter()
                .filter(|(mac, _)| mac == "00:00:00:00:00:00")
                .map(|(_, dst)| dst.clone())
                .collect();
            flood == others && entries.len() == 2 * (NODES - 1)
        });
    }

    for i in 0..NODES {
        let from = guest_ns(&daemons[i], "web", names[i]);
        for j in (0..NODES).filter(|&j| j != i) {
            assert_eq!(
                ping(&from, ips[j], 3),
                3,
                "{} -> {} ping",
                names[i],
                names[j]
            );
        }
    }
    let server_ns = guest_ns(&daemons[2], "web", "c");
    let _tcp = serve_tcp_echo(tcp_listener(&server_ns, SocketAddrV4::new(ips[2], 7000)));
    let _udp = serve_udp_echo(udp_socket(&server_ns, SocketAddrV4::new(ips[2], 7001)));
    for i in 0..2 {
        let client = guest_ns(&daemons[i], "web", names[i]);
        let mut stream = tcp_connect(&client, SocketAddrV4::new(ips[2], 7000), None)
            .unwrap_or_else(|err| panic!("{} -> c tcp: {err}", names[i]));
        let answer = tcp_ask(&mut stream, "hello");
        assert!(answer.starts_with(&format!("{}:", ips[i])), "{answer}");
        // A payload bigger than one frame: the network's MTU fits the overlay.
        let big = "x".repeat(3000);
        stream.set_nodelay(true).unwrap();
        std::io::Write::write_all(&mut stream, big.as_bytes()).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 8192];
        while got < big.len() {
            let n = std::io::Read::read(&mut stream, &mut buf).expect("the echo of a big payload");
            assert!(n > 0, "connection closed after {got} bytes");
            got += n;
        }
        let socket = udp_socket(&client, SocketAddrV4::new(ips[i], 0));
        let answer = udp_ask(&socket, SocketAddrV4::new(ips[2], 7001), "ping")
            .unwrap_or_else(|| panic!("{} -> c udp: no answer", names[i]));
        assert!(answer.starts_with(&format!("{}:", ips[i])), "{answer}");
    }

    // The overlay is netd's own: no node's status sees drift in it.
    for netd in &daemons {
        let status = netd.cli(&["status"]);
        assert!(
            status.status.success(),
            "netd status: {}",
            String::from_utf8_lossy(&status.stdout)
        );
    }

    // Every node lists every node's guest.
    let nodes = daemons[1].json(&["node", "ls"]);
    for (i, node) in nodes.as_array().unwrap().iter().enumerate() {
        let guests = node["networks"]["web"].as_array().expect("guests in web");
        assert_eq!(guests[0]["name"], names[i]);
        assert_eq!(guests[0]["ip"], ips[i].to_string());
    }
}

/// The permanent neighbour entries on `netd`'s bridge of `network`:
/// (address, MAC).
fn bridge_neighbours(netd: &Netd, network: &str) -> BTreeSet<(String, String)> {
    let ns = network_ns(netd, network);
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["-j", "neigh", "show", "dev", "br0", "nud", "permanent"]);
        c
    });
    let entries: Value = serde_json::from_str(&out).unwrap_or(Value::Array(vec![]));
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["dst"].as_str()?.to_owned(),
                e["lladdr"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn network_ns(netd: &Netd, network: &str) -> Netns {
    Netns::open(&format!("{}n-{network}", netd.prefix())).expect("network namespace")
}

/// The MAC of `link` in `ns`.
fn mac_of(ns: &Netns, link: &str) -> String {
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["-j", "link", "show", link]);
        c
    });
    let links: Value = serde_json::from_str(&out).unwrap();
    links[0]["address"].as_str().unwrap().to_owned()
}

/// The MAC a guest's neighbour entry holds for `ip` (None: no entry, or
/// one without an address).
fn neighbour_mac(guest: &Netns, ip: Ipv4Addr) -> Option<String> {
    let out = run_ok({
        let mut c = guest.command("ip");
        c.args(["-j", "neigh", "show", &ip.to_string(), "dev", "eth0"]);
        c
    });
    let entries: Value = serde_json::from_str(&out).ok()?;
    Some(entries.as_array()?.first()?["lladdr"].as_str()?.to_owned())
}

fn flush_neighbours(guest: &Netns) {
    run_ok({
        let mut c = guest.command("ip");
        c.args(["neigh", "flush", "dev", "eth0"]);
        c
    });
}

/// ARP across the overlay. Every node's bridge holds the gateway address:
/// a guest's neighbour entry for it holds its own node's bridge MAC, every
/// time, even while the other nodes' bridges keep sending ARP requests
/// from that address over the overlay (for an address nobody has). And a
/// guest resolves a remote guest with the overlay's broadcast path gone
/// (the flood entries deleted behind netd's back): its own bridge answers
/// from the neighbour entries netd programs from etcd.
fn arp_for_the_gateway_stays_on_each_node_and_remote_guests_are_answered_locally(dataplane: &str) {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons(dataplane);
    let ips = three_guests(&cluster, &daemons);
    let gateway = Ipv4Addr::new(172, 18, 0, 254);
    let macs: Vec<String> = daemons
        .iter()
        .zip(["a", "b", "c"])
        .map(|(netd, name)| mac_of(&guest_ns(netd, "web", name), "eth0"))
        .collect();
    // Each bridge holds the other nodes' guests, and nothing of its own.
    for (i, netd) in daemons.iter().enumerate() {
        let expected: BTreeSet<(String, String)> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| (ips[j].to_string(), macs[j].clone()))
            .collect();
        eventually("the remote guests' neighbour entries", GUARD, || {
            bridge_neighbours(netd, "web") == expected
        });
    }

    // node2's and node3's bridges ARP from the gateway address meanwhile.
    let mut askers: Vec<std::process::Child> = daemons[1..]
        .iter()
        .map(|netd| {
            network_ns(netd, "web")
                .command("ping")
                .args(["-n", "-q", "-i", "0.3", "-c", "40", "172.18.0.200"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("ping from a bridge")
        })
        .collect();
    let a = guest_ns(&daemons[0], "web", "a");
    let own_bridge = mac_of(&network_ns(&daemons[0], "web"), "br0");
    for round in 0..4 {
        flush_neighbours(&a);
        assert_eq!(ping(&a, gateway, 1), 1, "round {round}: a -> gateway");
        // Past the neighbour table's lock time (1 s): a request from
        // another bridge arriving now would take over the entry.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            neighbour_mac(&a, gateway).as_deref(),
            Some(own_bridge.as_str()),
            "round {round}: a's neighbour entry for the gateway"
        );
    }
    for asker in &mut askers {
        let _ = asker.kill();
        let _ = asker.wait();
    }
    if dataplane != "nftables" {
        let (_, status) = netd_tests::status::status(&daemons[0]);
        assert!(
            netd_tests::status::counter(&status, "web", "dropped_overlay_arp") > 0,
            "{status}"
        );
    }

    // The broadcast path over the overlay cut on node1: a still resolves b.
    let vxlan = network_ns(&daemons[0], "web");
    for j in 1..NODES {
        run_ok({
            let mut c = vxlan.command("bridge");
            c.args(["fdb", "del", "00:00:00:00:00:00", "dev", "vxlan0", "dst"]);
            c.arg(cluster.node_address(j).to_string());
            c
        });
    }
    flush_neighbours(&a);
    assert_eq!(ping(&a, ips[1], 3), 3, "a -> b with no flood entries");
    assert_eq!(neighbour_mac(&a, ips[1]), Some(macs[1].clone()));

    // A guest removed is withdrawn from the other bridges' neighbours.
    daemons[2].ok(&["guest", "rm", "web", "c"]);
    for netd in &daemons[..2] {
        eventually("c's neighbour entry withdrawn", GUARD, || {
            !bridge_neighbours(netd, "web")
                .iter()
                .any(|(ip, _)| *ip == ips[2].to_string())
        });
    }
}

netd_tests::conformance!(
    guests_on_different_nodes_talk_over_the_spanned_network,
    arp_for_the_gateway_stays_on_each_node_and_remote_guests_are_answered_locally
);

/// Two nodes adding guests to one spanned network at the same moment, and
/// asking for the same address at once: every guest gets its own address
/// and slot, and of the two that asked for one address exactly one gets
/// it, the other is refused naming the holder.
#[test]
fn guests_added_at_once_on_two_nodes_never_share_an_address() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    all_joined(&daemons);
    daemons[0].ok(&["network", "create", "web", "--span"]);
    let added: Vec<Vec<Ipv4Addr>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let netd = &daemons[i];
                scope.spawn(move || {
                    (0..4)
                        .map(|k| add_guest(netd, "web", &format!("g{i}x{k}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: BTreeSet<Ipv4Addr> = added.iter().flatten().copied().collect();
    assert_eq!(all.len(), 8, "{added:?}");

    let wanted = "172.18.0.200";
    let outcomes: Vec<std::process::Output> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let netd = &daemons[i];
                scope.spawn(move || {
                    netd.cli(&["guest", "add", "web", &format!("same{i}"), "--ip", wanted])
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let won: Vec<usize> = (0..2).filter(|&i| outcomes[i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one of two asking for {wanted} gets it"
    );
    let lost = 1 - won[0];
    let err = String::from_utf8_lossy(&outcomes[lost].stderr);
    assert!(
        err.contains(&format!(
            "same{} (on node {})",
            won[0],
            Cluster::node_name(won[0])
        )),
        "{err}"
    );
    // The loser changed nothing: no guest of that name on its node.
    let guests = daemons[lost].json(&["guest", "ls", "web"]);
    assert!(
        guests
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["name"] != format!("same{lost}")),
        "{guests}"
    );
}

/// A daemon without cluster options refuses `--span` and `node ls`,
/// naming the options that make it a node, and creates nothing.
#[test]
fn cluster_requests_on_a_single_host_are_refused_naming_the_fix() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    let err = netd.err(&["network", "create", "web", "--span"]);
    assert!(
        err.contains("--cluster-endpoints URL,... --node NAME --underlay-address IP"),
        "{err}"
    );
    let err = netd.err(&["node", "ls"]);
    assert!(err.contains("--cluster-endpoints"), "{err}");
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
}

/// Half the cluster settings: the daemon refuses to start, naming the
/// missing one and its flag.
#[test]
fn a_daemon_with_some_cluster_options_refuses_to_start_naming_the_missing_one() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::try_start(&sandbox, "ebpf").expect("a plain start");
    netd.stop();
    netd.daemon_args = vec!["--node".into(), "n1".into()];
    let err = netd.try_restart().unwrap_err();
    assert!(err.contains("cluster_endpoints"), "{err}");
    assert!(err.contains("--cluster-endpoints"), "{err}");
}

/// Three nodes with a guest each on spanned network `web`, every FDB
/// complete; returns the guests' addresses.
fn three_guests(cluster: &Cluster, daemons: &[Netd]) -> Vec<Ipv4Addr> {
    all_joined(daemons);
    daemons[0].ok(&["network", "create", "web", "--span"]);
    let ips: Vec<Ipv4Addr> = daemons
        .iter()
        .zip(["a", "b", "c"])
        .map(|(netd, name)| add_guest(netd, "web", name))
        .collect();
    for netd in daemons {
        eventually("every remote guest in the FDB", GUARD, || {
            fdb(netd, "web").len() == 2 * (NODES - 1)
        });
    }
    let _ = cluster;
    ips
}

/// Whether `netd`'s VXLAN device of `web` holds any entry for `remote`.
fn fdb_has(netd: &Netd, remote: Ipv4Addr) -> bool {
    fdb(netd, "web")
        .iter()
        .any(|(_, dst)| *dst == remote.to_string())
}

/// A node killed with -9: its lease expires, the others withdraw its
/// entries (and go on talking to each other); started again, it registers
/// anew, the others program it back, and its guest is reachable again.
#[test]
fn a_node_killed_is_withdrawn_by_the_others_and_rejoins_when_back() {
    let cluster = Cluster::new();
    let mut daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    let a = guest_ns(&daemons[0], "web", "a");
    assert_eq!(ping(&a, ips[2], 1), 1);

    daemons[2].kill9();
    let node3 = cluster.node_address(2);
    eventually("node3's lease expired", GUARD, || {
        !node_names(&daemons[0]).contains("node3")
    });
    for netd in &daemons[..2] {
        eventually("node3's entries withdrawn", GUARD, || !fdb_has(netd, node3));
        eventually("c's neighbour entry withdrawn", GUARD, || {
            !bridge_neighbours(netd, "web")
                .iter()
                .any(|(ip, _)| *ip == ips[2].to_string())
        });
    }
    assert_eq!(ping(&a, ips[1], 3), 3, "a -> b with node3 gone");
    assert_eq!(ping(&a, ips[2], 2), 0, "a -> c with node3 withdrawn");

    daemons[2].restart();
    for netd in &daemons[..2] {
        eventually("node3's entries back", GUARD, || fdb_has(netd, node3));
    }
    assert_eq!(ping(&a, ips[2], 3), 3, "a -> c with node3 back");
}

/// One etcd member killed: the two others are a majority and the cluster
/// goes on (a guest added, its address allocated, traffic to it).
#[test]
fn the_cluster_goes_on_with_one_etcd_member_killed() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    cluster.kill_etcd(0);
    let d = add_guest(&daemons[1], "web", "d");
    assert!(!ips.contains(&d), "{d} in {ips:?}");
    eventually("d in node1's FDB", GUARD, || {
        fdb(&daemons[0], "web").len() == 2 * (NODES - 1) + 1
    });
    let a = guest_ns(&daemons[0], "web", "a");
    assert_eq!(ping(&a, d, 3), 3);
    assert_eq!(node_names(&daemons[2]).len(), NODES);
}

/// etcd gone entirely: local and cross-node traffic in force goes on;
/// changes that need the cluster are refused saying so and change
/// nothing; when etcd is back, they work again.
#[test]
fn with_etcd_unreachable_traffic_goes_on_and_cluster_changes_are_refused() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    for j in 0..netd_tests::cluster::ETCD_MEMBERS {
        cluster.kill_etcd(j);
    }
    let a = guest_ns(&daemons[0], "web", "a");
    assert_eq!(ping(&a, ips[1], 3), 3, "a -> b with etcd away");
    let err = daemons[0].err(&["guest", "add", "web", "d"]);
    assert!(
        err.contains("did not answer") && err.contains("refused until"),
        "{err}"
    );
    let err = daemons[1].err(&["network", "create", "db", "--span"]);
    assert!(err.contains("did not answer"), "{err}");
    let err = daemons[2].err(&["guest", "rm", "web", "c"]);
    assert!(err.contains("did not answer"), "{err}");
    // Nothing changed: c is still there, d is not.
    let guests = daemons[2].json(&["guest", "ls", "web"]);
    assert_eq!(guests.as_array().unwrap().len(), 1, "{guests}");
    assert!(
        daemons[0]
            .json(&["guest", "ls", "web"])
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    // A plain network needs no etcd.
    daemons[0].ok(&["network", "create", "local"]);

    for j in 0..netd_tests::cluster::ETCD_MEMBERS {
        cluster.restart_etcd(j);
    }
    cluster.wait_etcd_healthy(GUARD).expect("etcd back");
    let d = add_guest(&daemons[0], "web", "d");
    let c = guest_ns(&daemons[2], "web", "c");
    eventually("d reachable from node3", GUARD, || ping(&c, d, 1) == 1);
}

/// A datagram from `from` (in its namespace) to `to`'s port: whether it
/// arrived (one try of a few datagrams; a cut lets none through).
fn datagram_arrives(
    from: &Netns,
    from_ip: Ipv4Addr,
    to: &Netns,
    to_ip: Ipv4Addr,
    port: u16,
) -> bool {
    let receiver = udp_socket(to, SocketAddrV4::new(to_ip, port));
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let sender = udp_socket(from, SocketAddrV4::new(from_ip, 0));
    for _ in 0..3 {
        sender
            .send_to(b"probe", SocketAddrV4::new(to_ip, port))
            .expect("sending");
        let mut buf = [0u8; 64];
        if receiver.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// A partition of a spanned network is one write in etcd: set on node1,
/// every node applies it (the guests on node2 and node3 are cut from node1's
/// as asked, the rest talks), `partition show` reports each node's applied
/// revision and the spread; healed, all talk again.
#[test]
fn a_partition_set_on_one_node_is_applied_by_every_node() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    let ns: Vec<Netns> = (0..NODES)
        .map(|i| guest_ns(&daemons[i], "web", ["a", "b", "c"][i]))
        .collect();
    // Every node knows the others' guests by name (the partition names them).
    for netd in &daemons {
        eventually("remote guests' slots known", GUARD, || {
            netd.json(&["partition", "web", "show"])["slots"]
                .as_object()
                .unwrap()
                .len()
                == NODES
        });
    }
    let set = daemons[0].ok(&["partition", "web", "isolate", "c", "--keep-outside"]);
    assert!(set.contains("spanned: etcd revision"), "{set}");
    for netd in &daemons {
        eventually("every node applied the partition", GUARD, || {
            let cluster = &netd.json(&["partition", "web", "show"])["cluster"];
            cluster["spread_ms"].is_u64()
        });
    }
    let view = daemons[2].json(&["partition", "web", "show"]);
    let revision = view["cluster"]["revision"].as_i64().unwrap();
    for i in 0..NODES {
        assert_eq!(
            view["cluster"]["nodes"][Cluster::node_name(i)]["revision"],
            revision,
            "{view}"
        );
    }
    assert_eq!(view["state"]["partition"]["verb"], "isolate", "{view}");
    assert_eq!(ping(&ns[0], ips[1], 2), 2, "a -> b stays");
    assert_eq!(ping(&ns[0], ips[2], 2), 0, "a -> c is cut");
    assert_eq!(ping(&ns[1], ips[2], 2), 0, "b -> c is cut");
    assert!(
        !datagram_arrives(&ns[2], ips[2], &ns[1], ips[1], 7100),
        "c -> b is cut"
    );

    daemons[1].ok(&["partition", "web", "heal"]);
    for netd in &daemons {
        eventually("every node healed", GUARD, || {
            netd.json(&["partition", "web", "show"])["state"].is_null()
        });
    }
    eventually("a -> c again", GUARD, || ping(&ns[0], ips[2], 1) == 1);
    assert_eq!(ping(&ns[1], ips[2], 2), 2, "b -> c again");
}

/// The node that receives enforces the cuts too: with node3's daemon
/// killed (its guest c keeps running, its dataplane never hears of the
/// partition), a one-way cut of c -> a set on node1 still stops c's
/// datagrams where they arrive from the overlay, while a -> c (not cut)
/// still flows.
#[test]
fn a_late_node_cannot_let_cut_traffic_through() {
    let cluster = Cluster::new();
    let mut daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    let a = guest_ns(&daemons[0], "web", "a");
    let c = guest_ns(&daemons[2], "web", "c");
    for netd in &daemons {
        eventually("remote guests' slots known", GUARD, || {
            netd.json(&["partition", "web", "show"])["slots"]
                .as_object()
                .unwrap()
                .len()
                == NODES
        });
    }
    assert!(
        datagram_arrives(&c, ips[2], &a, ips[0], 7200),
        "c -> a before the cut"
    );
    daemons[2].kill9();
    daemons[0].ok(&["partition", "web", "cut", "--from", "c", "--to", "a"]);
    assert!(
        !datagram_arrives(&c, ips[2], &a, ips[0], 7201),
        "c -> a with node3 late"
    );
    assert!(
        datagram_arrives(&a, ips[0], &c, ips[2], 7202),
        "a -> c is not cut"
    );
    let view = daemons[0].json(&["partition", "web", "show"]);
    assert!(
        view["cluster"]["spread_ms"].is_null(),
        "node3 has not applied it: {view}"
    );
}

/// The nftables dataplane carries spanned networks but does not enforce
/// their partitions across nodes: refused, naming the fix, nothing set.
#[test]
fn a_spanned_partition_on_nftables_is_refused_naming_the_fix() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("nftables");
    three_guests(&cluster, &daemons);
    let err = daemons[0].err(&["partition", "web", "isolate", "a"]);
    assert!(err.contains("--dataplane ebpf"), "{err}");
    assert!(daemons[0].json(&["partition", "web", "show"])["state"].is_null());
}

/// A guest removed on its node is freed in etcd and withdrawn from the
/// others' forwarding entries; its address is free again. Each node's
/// `network rm` removes its part, and the last one the definition: the
/// same name can then be created again.
#[test]
fn guests_and_networks_removed_are_withdrawn_from_every_node() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    let ips = three_guests(&cluster, &daemons);
    let node2 = cluster.node_address(1).to_string();
    daemons[1].ok(&["guest", "rm", "web", "b"]);
    eventually("b withdrawn from node1", GUARD, || {
        !fdb(&daemons[0], "web").iter().any(|(_, dst)| *dst == node2)
    });
    let nodes = daemons[0].json(&["node", "ls"]);
    assert!(nodes[1]["networks"].get("web").is_none(), "{nodes}");
    // Its address is free for a guest on another node.
    daemons[2].ok(&["guest", "add", "web", "b2", "--ip", &ips[1].to_string()]);

    for netd in &daemons {
        netd.ok(&["network", "rm", "web"]);
    }
    let err = daemons[0].err(&["guest", "add", "web", "x"]);
    assert!(err.contains("no network named \"web\""), "{err}");
    let created = daemons[2].ok(&["network", "create", "web", "--span"]);
    assert!(created.contains("spanned vni 1"), "{created}");
}

/// Spanned-network requests that contradict the cluster or cannot work are
/// refused, each naming the problem and the fix, and change nothing.
#[test]
fn contradicting_spanned_requests_are_refused_naming_the_fix() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    all_joined(&daemons);
    let err = daemons[0].err(&["network", "create", "web", "--span", "--subnet", "auto"]);
    assert!(err.contains("give --subnet CIDR or leave it out"), "{err}");
    let err = daemons[0].err(&["network", "create", "web", "--span", "--internal"]);
    assert!(err.contains("without --internal"), "{err}");
    let err = daemons[0].err(&["network", "create", "web", "--span", "--mtu", "1500"]);
    assert!(err.contains("give --mtu 1450 or less"), "{err}");
    daemons[1].ok(&["network", "create", "local"]);
    let err = daemons[1].err(&["network", "create", "local", "--span"]);
    assert!(
        err.contains("this host's alone") && err.contains("remove it first"),
        "{err}"
    );
    assert_eq!(daemons[0].json(&["network", "ls"]), serde_json::json!([]));

    daemons[0].ok(&[
        "network",
        "create",
        "web",
        "--span",
        "--subnet",
        "10.77.0.0/24",
    ]);
    let err = daemons[2].err(&[
        "network",
        "create",
        "web",
        "--span",
        "--subnet",
        "10.78.0.0/24",
    ]);
    assert!(
        err.contains("exists in the cluster with subnet 10.77.0.0/24"),
        "{err}"
    );
    assert!(err.contains("leave out --subnet"), "{err}");
    add_guest(&daemons[0], "web", "a");
    let err = daemons[1].err(&["guest", "add", "web", "a"]);
    assert!(
        err.contains("on node \"node1\"") && err.contains("remove it there first"),
        "{err}"
    );
    let err = daemons[1].err(&["guest", "add", "web", "b", "--ip", "10.78.0.5"]);
    assert!(err.contains("10.78.0.5"), "{err}");
    // The refused guests left nothing on node2 (not even web's part) nor
    // in the cluster.
    let networks = daemons[1].json(&["network", "ls"]);
    let names: Vec<&str> = networks
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local"], "{networks}");
    let nodes = daemons[2].json(&["node", "ls"]);
    assert_eq!(
        nodes[0]["networks"]["web"].as_array().unwrap().len(),
        1,
        "{nodes}"
    );
    assert!(nodes[1]["networks"].get("web").is_none(), "{nodes}");
}

/// The underlay probe in `netd status` of node `netd`: each other node's
/// (reachable, round trip in ms), and the exit code.
/// Each other node as the underlay probe found it: (reachable, round trip
/// in ms).
type UnderlayPeers = std::collections::BTreeMap<String, (Option<bool>, Option<f64>)>;

fn underlay_of(netd: &Netd) -> (i32, UnderlayPeers) {
    let out = netd.cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let peers = status["underlay"]["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no underlay peers: {status}"))
        .iter()
        .map(|p| {
            (
                p["node"].as_str().unwrap().to_owned(),
                (p["reachable"].as_bool(), p["rtt_ms"].as_f64()),
            )
        })
        .collect();
    (out.status.code().unwrap(), peers)
}

/// Cuts (or heals) the underlay between node1 and the node at `peer`, in
/// node1's host namespace: its datagrams to and from that address dropped.
fn cut_underlay(cluster: &Cluster, peer: Ipv4Addr, cut: bool) {
    let script = if cut {
        format!(
            "table inet netdtest_cut {{\n\
             chain in {{ type filter hook input priority -300; ip saddr {peer} drop; }}\n\
             chain out {{ type filter hook output priority -300; ip daddr {peer} drop; }}\n\
             }}\n"
        )
    } else {
        "delete table inet netdtest_cut\n".to_owned()
    };
    let mut nft = cluster.nodes[0].host_command("nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().expect("nft");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft {script}");
}

/// The underlay probe: every node's status lists every other node as
/// reachable with a round trip; the underlay cut between node1 and node2
/// shows on both (UNREACHABLE in the text, exit code 4) while node3 stays
/// reachable; healed, it clears.
#[test]
fn status_shows_which_nodes_the_underlay_reaches() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    all_joined(&daemons);
    for netd in &daemons {
        let (code, peers) = underlay_of(netd);
        assert_eq!(code, 0, "{peers:?}");
        assert_eq!(peers.len(), NODES - 1, "{peers:?}");
        for (node, (reachable, rtt)) in &peers {
            assert_eq!(*reachable, Some(true), "{node}");
            assert!(rtt.is_some_and(|ms| ms < 500.0), "{node}: {rtt:?}");
        }
    }

    cut_underlay(&cluster, cluster.node_address(1), true);
    let (code, peers) = underlay_of(&daemons[0]);
    assert_eq!(code, 4, "{peers:?}");
    assert_eq!(peers["node2"], (Some(false), None));
    assert_eq!(peers["node3"].0, Some(true));
    let (code, peers) = underlay_of(&daemons[1]);
    assert_eq!(code, 4, "{peers:?}");
    assert_eq!(peers["node1"], (Some(false), None));
    assert_eq!(peers["node3"].0, Some(true));
    let text = String::from_utf8_lossy(&daemons[0].cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "underlay node2 {}:4790 UNREACHABLE",
            cluster.node_address(1)
        )),
        "{text}"
    );
    assert!(text.contains("underlay node3"), "{text}");

    cut_underlay(&cluster, cluster.node_address(1), false);
    let (code, peers) = underlay_of(&daemons[0]);
    assert_eq!(code, 0, "{peers:?}");
    assert_eq!(peers["node2"].0, Some(true));
}

/// A probe port that cannot be (0, or VXLAN's own) stops the start,
/// naming the setting.
#[test]
fn a_bad_underlay_probe_port_is_refused_naming_the_setting() {
    let cluster = Cluster::new();
    let mut netd = Netd::start_with_args(&cluster.nodes[0], "ebpf", &cluster.daemon_args(0));
    netd.stop();
    let config = cluster.nodes[0].root.join("netd.toml");
    let mut settings = std::fs::read_to_string(&config).unwrap();
    settings.push_str("underlay_probe_port = 4789\n");
    std::fs::write(&config, settings).unwrap();
    let err = netd.try_restart().unwrap_err();
    assert!(err.contains("underlay_probe_port"), "{err}");
    assert!(err.contains("4790"), "{err}");
}

/// The pairs of a verify report: (from, to) -> delivered.
fn verified_pairs(report: &Value) -> std::collections::BTreeMap<(String, String), bool> {
    report["pairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no pairs: {report}"))
        .iter()
        .map(|p| {
            (
                (
                    p["from"].as_str().unwrap().to_owned(),
                    p["to"].as_str().unwrap().to_owned(),
                ),
                p["delivered"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `verify` of a spanned network probes every pair across the nodes, in
/// one round through etcd: with c (node3) isolated, the cut pairs to and
/// from c show as cut and a <-> b as open, whichever node asks; a node
/// whose daemon does not answer makes verify fail naming it, its guests'
/// pairs not passed.
#[test]
fn verify_probes_every_pair_across_nodes_and_names_a_node_that_does_not_answer() {
    let cluster = Cluster::new();
    let mut daemons = cluster.start_daemons("ebpf");
    three_guests(&cluster, &daemons);
    for netd in &daemons {
        eventually("every node knows every guest", GUARD, || {
            netd.json(&["partition", "web", "show"])["slots"]
                .as_object()
                .is_some_and(|slots| slots.len() == 3)
        });
    }
    let healed = daemons[1].json(&["partition", "web", "verify", "--json"]);
    assert_eq!(healed["ok"], true, "{healed}");
    let pairs = verified_pairs(&healed);
    assert_eq!(pairs.len(), 6, "{healed}");
    assert!(pairs.values().all(|d| *d), "{healed}");

    daemons[0].ok(&["partition", "web", "isolate", "c", "--keep-outside"]);
    for netd in &daemons {
        eventually("every node applied the partition", GUARD, || {
            let cluster = &netd.json(&["partition", "web", "show"])["cluster"];
            cluster["nodes"]
                .as_object()
                .is_some_and(|nodes| nodes.len() == 3)
                && cluster["spread_ms"].is_u64()
        });
    }
    for asker in [0, 2] {
        let report = daemons[asker].json(&["partition", "web", "verify", "--json"]);
        assert_eq!(report["ok"], true, "node{}: {report}", asker + 1);
        let pairs = verified_pairs(&report);
        let pair = |a: &str, b: &str| pairs[&(a.to_owned(), b.to_owned())];
        assert!(pair("a", "b") && pair("b", "a"), "{report}");
        for other in ["a", "b"] {
            assert!(!pair(other, "c") && !pair("c", other), "{report}");
        }
    }
    let text = daemons[0].ok(&["partition", "web", "verify"]);
    assert!(!text.contains("node node"), "{text}");

    daemons[2].kill9();
    let failed = daemons[0].cli(&["partition", "web", "verify"]);
    let out = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(
        out.contains("node node3 did not answer verify's round"),
        "{out}"
    );
    assert!(
        out.contains("the pairs to its guests c are not judged"),
        "{out}"
    );
}

/// The declarative API on spanned networks: each node applies its part of
/// one spanned network (its own guests); the guests talk across nodes, and
/// the same resource again changes nothing.
#[test]
fn a_spanned_network_resource_is_applied_per_node() {
    let cluster = Cluster::new();
    let daemons = cluster.start_daemons("ebpf");
    all_joined(&daemons);
    let put = |netd: &Netd, guest: &str| -> Value {
        let body = serde_json::json!({"span": true, "guests": [{"name": guest}]});
        let file = netd.sandbox.root.join("web.json");
        std::fs::write(&file, body.to_string()).unwrap();
        netd.json(&["network", "apply", "web", file.to_str().unwrap()])
    };
    let first = put(&daemons[0], "a");
    assert_eq!(first["changed"], true, "{first}");
    assert!(first["network"]["vni"].is_u64(), "{first}");
    put(&daemons[1], "b");
    let again = put(&daemons[1], "b");
    assert_eq!(again["changed"], false, "{again}");
    let b = ip_of(&daemons[1].json(&["guest", "inspect", "web", "b"]));
    let a = guest_ns(&daemons[0], "web", "a");
    eventually("a reaches b across nodes", GUARD, || ping(&a, b, 1) == 1);
}
