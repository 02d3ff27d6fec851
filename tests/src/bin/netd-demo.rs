//! `cargo xtask demo`: shows netd's main job working, inside a sandbox that
//! is torn down (and checked clean) at the end.

use std::net::{Ipv4Addr, SocketAddrV4};

use netd::netns::Netns;
use netd_common::counters::Counter;
use netd_tests::{
    Sandbox,
    cluster::Cluster,
    filter::{DestinationFilter, Direction},
    netd::Netd,
    sandbox::{self, HOST_UPLINK, INTERNET_SERVER, UPLINK},
    sockets::{serve_tcp_echo, tcp_ask, tcp_connect, tcp_listener},
    traffic::{ping, reachable},
};

fn main() {
    let sb = Sandbox::new();
    println!("== netd demo in sandbox {} ==", sb.prefix);
    println!(
        "namespaces {} (\"host\") and {} (\"internet\", server {INTERNET_SERVER})",
        sb.host.name(),
        sb.internet.name()
    );
    sandbox::block_on(async { ebpf_filter(&sb) });
    topology(&sb);
    let prefix = sb.prefix.clone();
    let root = sb.root.clone();
    drop(sb);
    let left = sandbox::leftovers(&prefix, &root);
    assert!(left.is_empty(), "demo left behind: {left:?}");

    let sb = Sandbox::new();
    nftables_dataplane(&sb);
    let (prefix, root) = (sb.prefix.clone(), sb.root.clone());
    drop(sb);
    let left = sandbox::leftovers(&prefix, &root);
    assert!(left.is_empty(), "demo left behind: {left:?}");

    let sb = Sandbox::new();
    containers(&sb);
    let (prefix, root) = (sb.prefix.clone(), sb.root.clone());
    drop(sb);
    let left = sandbox::leftovers(&prefix, &root);
    assert!(left.is_empty(), "demo left behind: {left:?}");

    let cluster = Cluster::new();
    let sandboxes: Vec<(String, std::path::PathBuf)> = std::iter::once(&cluster.fabric)
        .chain(&cluster.nodes)
        .map(|sb| (sb.prefix.clone(), sb.root.clone()))
        .collect();
    three_nodes(&cluster);
    drop(cluster);
    for (prefix, root) in sandboxes {
        let left = sandbox::leftovers(&prefix, &root);
        assert!(left.is_empty(), "demo left behind: {left:?}");
    }
    println!("\nsandbox torn down; nothing left behind");
}

/// The eBPF program in the kernel, configured through a map, on real traffic.
fn ebpf_filter(sb: &Sandbox) {
    println!("\n-- 1. a TC eBPF program on real traffic --");
    let mut filter = DestinationFilter::load().expect("loading netd_filter");
    filter
        .attach(&sb.internet, UPLINK, Direction::Ingress)
        .expect("attaching netd_filter");
    println!("loaded netd_filter and attached it to {UPLINK} ingress in the internet namespace");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    filter.block(INTERNET_SERVER).expect("map update");
    println!("map update: block {INTERNET_SERVER}");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    filter.unblock(INTERNET_SERVER).expect("map update");
    println!("map update: unblock {INTERNET_SERVER}");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    println!("per-CPU counters, summed:");
    for (name, value) in filter.counters().expect("reading counters") {
        println!("  {name:<22} {value}");
    }
    assert_eq!(filter.counter(Counter::DroppedBlockedDst).unwrap(), 3);
}

/// The daemon and its CLI: networks with overlapping subnets, guests, real
/// pings, live status, a restart that keeps everything, cleanup.
fn topology(sb: &Sandbox) {
    println!("\n-- 2. the daemon: networks and guests over netlink --");
    // Names that are not guests' go to a resolver in the sandbox's
    // internet, never to a real one.
    netd_tests::fake_dns::serve(&sb.internet, DEMO_UPSTREAM, Ipv4Addr::new(192, 0, 2, 80));
    let mut netd = Netd::start_with_settings(
        sb,
        &netd_tests::netd::default_dataplane(),
        &format!("dns_upstreams = [\"{DEMO_UPSTREAM}\"]"),
    );
    println!(
        "netd daemon running in the host namespace, API on {}",
        netd.socket.display()
    );
    for net in ["blue", "green"] {
        show(&netd, &["network", "create", net]);
        for guest in ["web", "db"] {
            show(&netd, &["guest", "add", net, guest]);
        }
    }
    show(&netd, &["network", "create", "routed", "--subnet", "auto"]);
    show(&netd, &["network", "ls"]);
    let prefix = netd.prefix();
    let guest_ns = |net: &str, guest: &str| {
        Netns::open(&format!("{prefix}g-{net}.{guest}")).expect("guest namespace")
    };
    let web = guest_ns("blue", "web");
    let peer = "172.18.0.2".parse().unwrap();
    println!(
        "blue/web -> 172.18.0.2 (blue/db): {}",
        if reachable(&web, peer) {
            "reachable"
        } else {
            "UNREACHABLE"
        }
    );
    let mac = |ns: &Netns| {
        let out = ns
            .command("ip")
            .args(["-o", "link", "show", "eth0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split("link/ether ")
            .nth(1)
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let neigh = String::from_utf8_lossy(
        &web.command("ip")
            .args(["neigh", "show", "172.18.0.2"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    println!(
        "172.18.0.2 answered from MAC {} — blue/db has {}, green/db (same IP) has {}: the networks never meet",
        neigh
            .split("lladdr ")
            .nth(1)
            .unwrap_or("?")
            .split(' ')
            .next()
            .unwrap_or("?"),
        mac(&guest_ns("blue", "db")),
        mac(&guest_ns("green", "db")),
    );
    show(
        &netd,
        &[
            "exec",
            "green",
            "web",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "172.18.0.254",
        ],
    );
    println!("$ netd status   (live kernel state, drift flagged)");
    print!("{}", netd.ok(&["status"]));

    let state = netd.json(&["state", "dump"]);
    println!(
        "$ netd state dump   (the desired state, from the SQLite store {}): {} networks, {} guests",
        sb.state_dir.join("state.db").display(),
        state["networks"].as_object().map_or(0, |n| n.len()),
        state["networks"].as_object().map_or(0, |n| n
            .values()
            .map(|net| net["guests"].as_object().map_or(0, |g| g.len()))
            .sum())
    );

    println!("\nkill -9 the daemon, delete green/db's namespace by hand, start it again:");
    netd.kill9();
    Netns::delete(&format!("{}g-green.db", netd.prefix())).unwrap();
    netd.restart();
    println!(
        "green/web -> green/db after reconcile: {}",
        if reachable(&guest_ns("green", "web"), peer) {
            "reachable"
        } else {
            "UNREACHABLE"
        }
    );
    nat_and_ports(sb, &mut netd);
    partitions(&netd);
    faults(&netd);
    names(&netd);

    show(&netd, &["cleanup"]);
    let left = Netns::list_with_prefix(&netd.prefix());
    println!("namespaces of this instance after cleanup: {left:?}");
    netd.stop();
}

/// The eBPF gateway: NAT out to the internet, port forwards in, hairpin, and
/// connections that outlive a kill -9 of the daemon.
fn nat_and_ports(sb: &Sandbox, netd: &mut Netd) {
    println!("\n-- 3. the eBPF fast path: NAT out once, published ports in --");
    let prefix = netd.prefix();
    let guest_ns = |net: &str, guest: &str| {
        Netns::open(&format!("{prefix}g-{net}.{guest}")).expect("guest namespace")
    };
    let echo = SocketAddrV4::new(INTERNET_SERVER, 7);
    serve_tcp_echo(tcp_listener(&sb.internet, echo));
    println!("an echo server in the internet namespace on {echo} answers \"<caller> <line>\"");
    let mut streams = Vec::new();
    for net in ["blue", "green"] {
        let web = guest_ns(net, "web");
        let twin = SocketAddrV4::new(Ipv4Addr::new(172, 18, 0, 1), 40000);
        let mut stream = tcp_connect(&web, echo, Some(twin)).unwrap_or_else(|err| {
            println!("{}", netd.ok(&["status"]));
            panic!("{net}/web: TCP through NAT: {err}")
        });
        println!(
            "{net}/web from {twin} (the same address and port in both networks) -> {echo}: {}",
            tcp_ask(&mut stream, "hello")
        );
        streams.push((net, stream));
    }
    println!(
        "both arrive as the host's address, translated once by netd_host_link on netd0; the \
         second got another port (from host_nat_ports, reserved from the host's sockets)"
    );
    println!(
        "ping blue/web -> {INTERNET_SERVER}: {}/2 replies",
        ping(&guest_ns("blue", "web"), INTERNET_SERVER, 2)
    );

    serve_tcp_echo(tcp_listener(
        &guest_ns("blue", "web"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    println!("blue/web serves on port 80");
    show(netd, &["port", "add", "blue", "web", "8080:80"]);
    show(netd, &["port", "ls"]);
    let ask = |ns: &Netns, to: SocketAddrV4, local: Option<SocketAddrV4>| {
        tcp_connect(ns, to, local)
            .map(|mut s| tcp_ask(&mut s, "hi"))
            .unwrap_or_else(|err| format!("FAILED: {err}"))
    };
    println!(
        "internet -> {HOST_UPLINK}:8080 (the host's address): {}",
        ask(
            &sb.internet,
            SocketAddrV4::new(HOST_UPLINK, 8080),
            Some(SocketAddrV4::new(INTERNET_SERVER, 0))
        )
    );
    println!(
        "host -> 172.18.255.2:8080 (the gateway's address): {}",
        ask(
            &sb.host,
            SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 2), 8080),
            None
        )
    );
    println!(
        "blue/db -> {HOST_UPLINK}:8080 (hairpin, turned around at the gateway): {}",
        ask(
            &guest_ns("blue", "db"),
            SocketAddrV4::new(HOST_UPLINK, 8080),
            None
        )
    );
    println!("$ netd status   (the dataplane's figures)");
    for line in netd.ok(&["status"]).lines() {
        if line.starts_with("conntrack")
            || line.starts_with("host side")
            || line.trim_start().starts_with("counters")
        {
            println!("{line}");
        }
    }
    let tracked = sb
        .host_command("conntrack")
        .arg("-L")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("203.0.113.") || l.contains("198.51.100."))
                .count()
        })
        .unwrap_or(0);
    println!(
        "host namespace: conntrack -L lists {tracked} entries for the guests' traffic \
         (it crossed the host past its stack and netfilter)"
    );
    // The sandbox's uplink is a veth into the internet namespace with
    // nothing on its egress: the host program puts guests' packets straight
    // into its peer, so the uplink's own transmit counter stays still.
    let uplink_sent = || {
        sb.host_command("ip")
            .args(["-j", "-s", "link", "show", "dev", UPLINK])
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .and_then(|links| links[0]["stats64"]["tx"]["packets"].as_u64())
            .unwrap_or(0)
    };
    let before = uplink_sent();
    let sent = guest_ns("blue", "web")
        .run_in(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..100 {
                socket.send_to(b"x", SocketAddrV4::new(INTERNET_SERVER, 7009))?;
            }
            Ok::<_, std::io::Error>(100)
        })
        .ok()
        .and_then(|sent| sent.ok())
        .unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    println!(
        "blue/web sent {sent} datagrams out; the host's uplink {UPLINK} (a bare veth) transmitted \
         {} packets itself: the host program put them straight into its peer (one veth queue \
         out, as on a direct veth)",
        uplink_sent() - before
    );

    println!("\nkill -9 the daemon while connections are open:");
    netd.kill9();
    for (net, stream) in &mut streams {
        println!(
            "  {net}/web, no daemon running: {}",
            tcp_ask(stream, "still here")
        );
    }
    netd.restart();
    println!("daemon restarted; it adopted the pinned maps and links:");
    for (net, stream) in &mut streams {
        println!("  {net}/web: {}", tcp_ask(stream, "after restart"));
    }
}

/// `netd partition`: atomic splits of a whole network, checked with real
/// packets by `verify`, one-way cuts, and a request from inside a guest.
fn partitions(netd: &Netd) {
    println!("\n-- 4. partitions --");
    show(netd, &["network", "create", "cluster"]);
    for node in ["n1", "n2", "n3", "n4"] {
        netd.ok(&["guest", "add", "cluster", node]);
    }
    println!("(guests n1..n4 added)");
    show(
        netd,
        &[
            "partition",
            "cluster",
            "disjoint",
            "n1",
            "n2",
            "--",
            "n3",
            "n4",
        ],
    );
    show(netd, &["partition", "cluster", "verify"]);
    show(
        netd,
        &[
            "partition",
            "cluster",
            "cut",
            "--from",
            "n1",
            "--to",
            "n2",
            "--for",
            "1h",
        ],
    );
    show(netd, &["partition", "cluster", "verify"]);
    let binary = netd_tests::netd::netd_binary();
    let socket = netd.socket.to_string_lossy().into_owned();
    let inside = [
        "exec",
        "cluster",
        "n3",
        "--",
        binary.to_str().unwrap(),
        "--socket",
        &socket,
        "partition",
        "isolate",
        "n4",
    ];
    println!("from inside guest n3: netd partition isolate n4");
    print!("{}", netd.ok(&inside));
    show(netd, &["partition", "cluster", "heal"]);
    show(netd, &["partition", "cluster", "verify"]);
}

/// Faults beyond cuts: loss and duplication in one policy with a port-only
/// cut, measured by `verify`; a delay through the delay line, timed by
/// `verify`; a rate, measured by `verify`; a Jepsen preset; a schedule's
/// step.
fn faults(netd: &Netd) {
    println!("\n-- 4b. faults beyond cuts --");
    let policy = "cut --from n1 --to n2 --loss 30 + all --duplicate 20 + cut --from n3 --to n4 --port 5432/tcp";
    let mut args = vec!["partition", "cluster"];
    args.extend(policy.split_whitespace());
    show(netd, &args);
    show(netd, &["partition", "cluster", "verify"]);
    // Delays: packets held by the daemon's delay line (a TAP device in the
    // network's namespace), then sent on; verify times each round trip.
    let delays =
        "cut --from n1 --to n2 --delay 50ms + cut --from n3 --to n4 --delay 20ms --jitter 5ms";
    let mut args = vec!["partition", "cluster"];
    args.extend(delays.split_whitespace());
    show(netd, &args);
    show(netd, &["partition", "cluster", "verify"]);
    // A rate: verify offers four times it from n1 to n2 and measures what
    // the dataplane's bucket delivers.
    show(
        netd,
        &[
            "partition",
            "cluster",
            "cut",
            "--from",
            "n1",
            "--to",
            "n2",
            "--rate",
            "2mbit",
        ],
    );
    show(netd, &["partition", "cluster", "verify"]);
    show(netd, &["partition", "cluster", "bridge"]);
    show(
        netd,
        &[
            "partition",
            "cluster",
            "schedule",
            "1h",
            "isolate",
            "n1",
            "then",
            "1h",
            "heal",
        ],
    );
    show(netd, &["partition", "cluster", "heal"]);
}

/// The same jobs on the nftables dataplane, in a second sandbox.
fn nftables_dataplane(sb: &Sandbox) {
    println!(
        "\n-- 6. the nftables dataplane (a second sandbox: {}) --",
        sb.prefix
    );
    let mut netd = Netd::start_with_dataplane(sb, "nftables");
    println!("netd daemon --dataplane nftables");
    show(&netd, &["network", "create", "web"]);
    for guest in ["a", "b"] {
        netd.ok(&["guest", "add", "web", guest]);
    }
    let prefix = netd.prefix();
    let a = Netns::open(&format!("{prefix}g-web.a")).expect("guest namespace");
    serve_tcp_echo(tcp_listener(
        &a,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    show(&netd, &["port", "add", "web", "a", "8080:80"]);
    let answer = tcp_connect(
        &sb.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
    )
    .map(|mut s| tcp_ask(&mut s, "hi"))
    .unwrap_or_else(|err| format!("FAILED: {err}"));
    println!("internet -> {HOST_UPLINK}:8080: {answer}");
    println!(
        "ping web/a -> {INTERNET_SERVER}: {}/2 replies",
        ping(&a, INTERNET_SERVER, 2)
    );
    // The cut holds through a's published port too: the gateway checks
    // the hairpin against the network's cut, and verify probes that path.
    show(
        &netd,
        &["partition", "web", "isolate", "b", "--keep-outside"],
    );
    let b = Netns::open(&format!("{prefix}g-web.b")).expect("guest namespace");
    let through_port = tcp_connect(&b, SocketAddrV4::new(HOST_UPLINK, 8080), None)
        .map(|mut s| tcp_ask(&mut s, "hi"))
        .unwrap_or_else(|err| format!("no answer ({err})"));
    println!("web/b -> a's published port {HOST_UPLINK}:8080: {through_port}");
    show(&netd, &["partition", "web", "verify"]);
    // A delay (netdev hooks to the delay line's TAP) and a rate, measured.
    show(
        &netd,
        &[
            "partition",
            "web",
            "all",
            "--delay",
            "20ms",
            "+",
            "cut",
            "--from",
            "a",
            "--to",
            "b",
            "--rate",
            "1mbit",
        ],
    );
    show(&netd, &["partition", "web", "verify"]);
    let gw = Netns::open(&format!("{prefix}gw")).expect("gateway namespace");
    let tables = gw.command("nft").args(["list", "tables"]).output().unwrap();
    print!(
        "nft list tables (gateway): {}",
        String::from_utf8_lossy(&tables.stdout)
    );
    show(&netd, &["cleanup"]);
    netd.stop();
}

/// A fake upstream resolver in the sandbox's internet namespace.
const DEMO_UPSTREAM: SocketAddrV4 = SocketAddrV4::new(INTERNET_SERVER, 53);

/// Each network's resolver, internal networks, MTU and MAC.
fn names(netd: &Netd) {
    println!("\n-- 5. names, internal networks, MTU and MAC --");
    show(netd, &["network", "create", "shop", "--mtu", "1400"]);
    show(netd, &["guest", "add", "shop", "api"]);
    show(
        netd,
        &["guest", "add", "shop", "db", "--mac", "02:00:00:00:be:ef"],
    );
    let dig = |network: &str, guest: &str, name: &str| {
        println!("$ netd exec {network} {guest} -- dig +short @172.18.0.254 {name}");
        print!(
            "{}",
            netd.ok(&[
                "exec",
                network,
                guest,
                "--",
                "dig",
                "+short",
                "+time=2",
                "+tries=1",
                "@172.18.0.254",
                name
            ])
        );
    };
    dig("shop", "api", "db");
    dig("shop", "api", "db.shop");
    println!(
        "(example.org: relayed from the host's namespace to the sandbox's fake upstream {DEMO_UPSTREAM})"
    );
    dig("shop", "api", "example.org");
    show(netd, &["resolve", "db"]);
    show(
        netd,
        &[
            "exec", "shop", "db", "--", "ip", "-br", "link", "show", "eth0",
        ],
    );
    show(netd, &["network", "create", "vault", "--internal"]);
    show(netd, &["guest", "add", "vault", "safe"]);
    show(netd, &["guest", "add", "vault", "key"]);
    let vault = |guest: &str, to: &str| {
        netd.cli(&["exec", "vault", guest, "--", "ping", "-c1", "-W1", to])
            .status
            .success()
    };
    let key = netd.json(&["guest", "inspect", "vault", "key"])["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    println!(
        "vault/safe -> vault/key ({key}): {}",
        if vault("safe", &key) {
            "reachable"
        } else {
            "UNREACHABLE"
        }
    );
    println!(
        "vault/safe -> the internet server {INTERNET_SERVER}: {}",
        if vault("safe", &INTERNET_SERVER.to_string()) {
            "REACHABLE (wrong)"
        } else {
            "dropped by the dataplane"
        }
    );
    println!("$ netd port add vault safe 8443:443");
    println!(
        "{}",
        netd.err(&["port", "add", "vault", "safe", "8443:443"])
            .trim()
    );
    println!("$ netd exec vault safe -- dig @172.18.0.254 example.org   (status line)");
    let answer = netd.ok(&[
        "exec",
        "vault",
        "safe",
        "--",
        "dig",
        "+time=2",
        "+tries=1",
        "@172.18.0.254",
        "example.org",
    ]);
    for line in answer.lines().filter(|l| l.contains("status:")) {
        println!("{line}");
    }

    println!("\na guest on two networks: shop/api joins a routable network too");
    show(netd, &["network", "create", "back", "--subnet", "auto"]);
    show(netd, &["guest", "add", "back", "store"]);
    show(
        netd,
        &["network", "connect", "back", "api", "--network-of", "shop"],
    );
    show(
        netd,
        &["exec", "shop", "api", "--", "ip", "-br", "-4", "address"],
    );
    show(
        netd,
        &[
            "exec", "shop", "api", "--", "ip", "route", "show", "default",
        ],
    );
    let back_resolver = netd.json(&["network", "inspect", "back"])["bridge_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    println!("$ netd exec back store -- dig +short @{back_resolver} -q api");
    print!(
        "{}",
        netd.ok(&[
            "exec",
            "back",
            "store",
            "--",
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            &format!("@{back_resolver}"),
            "-q",
            "api"
        ])
    );
    show(netd, &["resolve", "api"]);
    show(netd, &["network", "disconnect", "back", "api"]);
}

/// Three nodes sharing a spanned network through etcd and VXLAN.
fn three_nodes(cluster: &Cluster) {
    println!(
        "\n-- 8. a cluster: 3 nodes (sandboxes {}), an underlay bridge {} and 3 etcd members --",
        cluster
            .nodes
            .iter()
            .map(|sb| sb.prefix.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cluster.underlay
    );
    let daemons = cluster.start_daemons("ebpf");
    println!(
        "netd daemon --cluster-endpoints {} --node node1 --underlay-address {} (and node2, node3)",
        cluster.endpoints(),
        cluster.node_address(0)
    );
    let wait_start = std::time::Instant::now();
    while daemons[0]
        .json(&["node", "ls"])
        .as_array()
        .map_or(0, Vec::len)
        < 3
        && wait_start.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    show(&daemons[0], &["network", "create", "web", "--span"]);
    let mut ips = Vec::new();
    for (i, (netd, guest)) in daemons.iter().zip(["a", "b", "c"]).enumerate() {
        println!("[{}] $ netd guest add web {guest}", Cluster::node_name(i));
        print!("{}", netd.ok(&["guest", "add", "web", guest]));
        let view = netd.json(&["guest", "inspect", "web", guest]);
        let ip: Ipv4Addr = view["ip"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        ips.push(ip);
    }
    println!("[node2] $ netd node ls");
    print!("{}", daemons[1].ok(&["node", "ls"]));
    let a = Netns::open(&format!("{}g-web.a", daemons[0].prefix())).expect("guest namespace");
    let start = std::time::Instant::now();
    while ping(&a, ips[2], 1) == 0 && start.elapsed() < std::time::Duration::from_secs(10) {}
    for (peer, ip) in [("b", ips[1]), ("c", ips[2])] {
        println!(
            "ping web/a (node1) -> web/{peer} {ip}: {}/3 replies",
            ping(&a, ip, 3)
        );
    }
    let ns = Netns::open(&format!("{}n-web", daemons[0].prefix())).expect("network namespace");
    let fdb = ns
        .command("bridge")
        .args(["fdb", "show", "dev", "vxlan0"])
        .output()
        .unwrap();
    println!("node1's VXLAN forwarding entries (from etcd, no learning, no multicast):");
    for line in String::from_utf8_lossy(&fdb.stdout)
        .lines()
        .filter(|l| l.contains("dst"))
    {
        println!("  {line}");
    }
    let neigh = ns
        .command("ip")
        .args(["neigh", "show", "dev", "br0", "nud", "permanent"])
        .output()
        .unwrap();
    println!(
        "node1's bridge answers ARP for the remote guests itself (neigh_suppress on vxlan0; \
         ARP for the gateway never crosses the overlay):"
    );
    for line in String::from_utf8_lossy(&neigh.stdout).lines() {
        println!("  {line}");
    }
    let status = daemons[0].cli(&["status"]);
    println!("[node1] $ netd status   (the underlay probe's lines)");
    for line in String::from_utf8_lossy(&status.stdout)
        .lines()
        .filter(|l| l.starts_with("underlay"))
    {
        println!("  {line}");
    }
    println!("[node1] $ netd partition web isolate c --keep-outside");
    print!(
        "{}",
        daemons[0].ok(&["partition", "web", "isolate", "c", "--keep-outside"])
    );
    let start = std::time::Instant::now();
    while !daemons[1].json(&["partition", "web", "show"])["cluster"]["spread_ms"].is_u64()
        && start.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("[node2] $ netd partition web show");
    print!("{}", daemons[1].ok(&["partition", "web", "show"]));
    println!(
        "[node2] $ netd partition web verify   (every pair, on every node, one round through etcd)"
    );
    print!("{}", daemons[1].ok(&["partition", "web", "verify"]));
    for (peer, ip) in [("b", ips[1]), ("c", ips[2])] {
        println!(
            "ping web/a (node1) -> web/{peer} {ip}: {}/2 replies",
            ping(&a, ip, 2)
        );
    }
    println!("[node3] $ netd partition web heal");
    print!("{}", daemons[2].ok(&["partition", "web", "heal"]));
    let start = std::time::Instant::now();
    while ping(&a, ips[2], 1) == 0 && start.elapsed() < std::time::Duration::from_secs(10) {}
    println!(
        "ping web/a (node1) -> web/c {}: {}/2 replies",
        ips[2],
        ping(&a, ips[2], 2)
    );
}

fn show(netd: &Netd, args: &[&str]) {
    println!("$ netd {}", args.join(" "));
    print!("{}", netd.ok(args));
}

/// Where container users already are: the CNI plugin driven as a runtime
/// drives it, podman on a netd network, an events stream and a metrics
/// scrape; in a third sandbox.
fn containers(sb: &Sandbox) {
    use std::io::BufRead;

    use netd_tests::{cni, podman::Podman};
    println!(
        "\n-- 7. containers: the CNI plugin, podman, events, metrics (a third sandbox: {}) --",
        sb.prefix
    );
    let netd = Netd::start(sb);
    let mut events = netd
        .command(&["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("netd events");
    let stdout = events.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    println!("$ netd events &   (its lines are shown at the end)");
    show(&netd, &["network", "create", "web"]);

    let conf = cni::conf(&netd, "netd-web", "web", "1.1.0", serde_json::json!({}));
    println!("network configuration on stdin: {conf}");
    let mut addresses = Vec::new();
    let mut namespaces = Vec::new();
    for id in ["ctr1", "ctr2"] {
        let ns = Netns::create(&format!("{}{id}", sb.prefix)).expect("container namespace");
        let at = cni::Attachment {
            container_id: id,
            netns: Some(ns.path()),
            ifname: "eth0",
        };
        let out = cni::run(sb, "ADD", Some(&at), &conf);
        println!(
            "CNI_COMMAND=ADD CNI_CONTAINERID={id} CNI_NETNS={} CNI_IFNAME=eth0 netd-cni  ({:?})",
            ns.path().display(),
            out.elapsed
        );
        let result = out.ok();
        println!("  {result}");
        let ip = result["ips"][0]["address"].as_str().unwrap();
        addresses.push(ip.split('/').next().unwrap().parse::<Ipv4Addr>().unwrap());
        namespaces.push(ns);
    }
    println!(
        "ping ctr1 -> ctr2 ({}): {}/2 replies; ctr1 -> {INTERNET_SERVER}: {}/2",
        addresses[1],
        ping(&namespaces[0], addresses[1], 2),
        ping(&namespaces[0], INTERNET_SERVER, 2)
    );
    for (id, ns) in ["ctr1", "ctr2"].iter().zip(&namespaces) {
        let at = cni::Attachment {
            container_id: id,
            netns: Some(ns.path()),
            ifname: "eth0",
        };
        cni::run(sb, "DEL", Some(&at), &conf).ok();
        println!("CNI_COMMAND=DEL CNI_CONTAINERID={id} netd-cni: done");
    }

    match Podman::new(sb, &netd, "web") {
        Ok(podman) => {
            let rootfs = podman.rootfs().to_owned();
            let args = [
                "run",
                "-d",
                "--name",
                "web1",
                "--network",
                "netd-web",
                "-p",
                "8080:80",
                "--rootfs",
                &rootfs,
                "/bin/httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/www",
            ];
            println!("$ podman {}", args.join(" "));
            podman.ok(&args);
            let page = tcp_connect(
                &sb.internet,
                SocketAddrV4::new(HOST_UPLINK, 8080),
                Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
            )
            .map(|mut s| {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut page = String::new();
                let _ = s.read_to_string(&mut page);
                page.lines().last().unwrap_or_default().to_owned()
            })
            .unwrap_or_else(|err| format!("FAILED: {err}"));
            println!("internet -> {HOST_UPLINK}:8080: {page}");
            show(&netd, &["guest", "ls", "web"]);
            println!("$ podman rm -f web1");
            podman.ok(&["rm", "-f", "-t", "0", "web1"]);
            show(&netd, &["guest", "ls", "web"]);
        }
        Err(why) => println!("podman part skipped: {why}"),
    }

    println!("$ netd metrics   (some of it)");
    for line in netd.ok(&["metrics"]).lines().filter(|l| {
        l.starts_with("netd_networks")
            || l.starts_with("netd_guests")
            || l.starts_with("netd_conntrack")
            || (l.starts_with("netd_packets_total") && !l.ends_with(" 0"))
            || l.starts_with("netd_api_request_duration_seconds_count{method=\"POST\"")
    }) {
        println!("  {line}");
    }
    show(&netd, &["network", "rm", "web"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = events.kill();
    let _ = events.wait();
    println!("what netd events printed meanwhile:");
    for line in lines.join().unwrap_or_default() {
        println!("  {line}");
    }
}
