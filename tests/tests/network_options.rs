//! Network and guest options, driven through netd's CLI against a real
//! daemon in a sandbox and checked with real traffic and `ip link`:
//! internal networks (guests talk to each other and to nothing outside,
//! enforced by the dataplane although the routes are there), `--mtu` on the
//! bridge, its ports and the guests, `--mac` per guest, and the refusals of
//! bad values, each leaving nothing behind.

use std::net::{Ipv4Addr, SocketAddrV4};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, tcp_connect, tcp_listener, udp_ask, udp_socket},
    status::counter,
    traffic::{ping, reachable, run_ok},
};
use serde_json::Value;

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    open(&format!("{}g-{network}.{guest}", netd.prefix()))
}

fn network_ns(netd: &Netd, network: &str) -> Netns {
    open(&format!("{}n-{network}", netd.prefix()))
}

/// `ip -j link show DEV` inside `ns`: the link's JSON object.
fn link(ns: &Netns, dev: &str) -> Value {
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["-j", "link", "show", "dev", dev]);
        c
    });
    let links: Value = serde_json::from_str(&out).expect("ip -j link");
    links[0].clone()
}

fn ip_of(view: &Value) -> Ipv4Addr {
    let text = view["ip"].as_str().expect("an address");
    text.split('/')
        .next()
        .unwrap()
        .parse()
        .expect("an IPv4 address")
}

fn internal_guests_talk_to_each_other_and_to_nothing_outside(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    let created = netd.ok(&["network", "create", "vault", "--internal"]);
    assert!(created.contains("internal"), "{created}");
    netd.ok(&["guest", "add", "vault", "a"]);
    netd.ok(&["guest", "add", "vault", "b"]);
    let a = guest(&netd, "vault", "a");
    let b_ip = ip_of(&netd.json(&["guest", "inspect", "vault", "b"]));
    serve_tcp_echo(tcp_listener(
        &sandbox.internet,
        SocketAddrV4::new(INTERNET_SERVER, 8080),
    ));

    assert_eq!(ping(&a, b_ip, 3), 3, "guests of an internal network talk");
    // The routes are all there (the guest's default route, the network's
    // uplink): the dataplane is what stops the packets.
    let route = run_ok({
        let mut c = a.command("ip");
        c.args(["route", "get"]).arg(INTERNET_SERVER.to_string());
        c
    });
    assert!(route.contains("via 172.18.0.254"), "{route}");
    assert!(!reachable(&a, INTERNET_SERVER), "no ICMP to the outside");
    assert!(
        tcp_connect(&a, SocketAddrV4::new(INTERNET_SERVER, 8080), None).is_err(),
        "no TCP to the outside"
    );
    // Not the gateway nor the host either.
    assert!(!reachable(&a, Ipv4Addr::new(172, 18, 255, 2)), "gateway");
    assert!(!reachable(&a, Ipv4Addr::new(172, 18, 255, 1)), "host link");

    let err = netd.err(&["port", "add", "vault", "a", "8080:80"]);
    assert!(
        err.contains("network \"vault\" is internal") && err.contains("without --internal"),
        "{err}"
    );
    assert_eq!(netd.json(&["port", "ls"]), serde_json::json!([]));

    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "vault", "dropped_internal") > 0,
        "drops are counted: {status}"
    );
    assert!(status["drift"].as_array().unwrap().is_empty(), "{status}");
    let shown = netd.json(&["network", "inspect", "vault"]);
    assert_eq!(shown["internal"], true, "{shown}");
}

fn a_routable_internal_network_is_unreachable_from_the_host_although_routed(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&[
        "network",
        "create",
        "vault",
        "--internal",
        "--subnet",
        "auto",
    ]);
    netd.ok(&["guest", "add", "vault", "a"]);
    netd.ok(&["guest", "add", "vault", "b"]);
    let a_ip = ip_of(&netd.json(&["guest", "inspect", "vault", "a"]));
    let b_ip = ip_of(&netd.json(&["guest", "inspect", "vault", "b"]));
    let route = run_ok({
        let mut c = sandbox.host_command("ip");
        c.args(["route", "get"]).arg(a_ip.to_string());
        c
    });
    assert!(route.contains("netd0"), "the host routes to it: {route}");
    assert!(
        !reachable(&sandbox.host, a_ip),
        "the host cannot reach a guest"
    );
    assert!(
        !reachable(&guest(&netd, "vault", "a"), Ipv4Addr::new(172, 18, 255, 1)),
        "a guest cannot reach the host"
    );
    assert_eq!(
        ping(&guest(&netd, "vault", "a"), b_ip, 2),
        2,
        "guests still talk"
    );
}

fn a_networks_mtu_is_on_its_bridge_ports_and_guests_and_packets_keep_to_it(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "small", "--mtu", "1280"]);
    netd.ok(&["guest", "add", "small", "a"]);
    netd.ok(&["guest", "add", "small", "b"]);
    let a = guest(&netd, "small", "a");
    let net = network_ns(&netd, "small");
    let port = netd.json(&["guest", "inspect", "small", "a"])["bridge_port"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(link(&a, "eth0")["mtu"], 1280);
    assert_eq!(link(&net, "br0")["mtu"], 1280);
    assert_eq!(link(&net, &port)["mtu"], 1280);
    assert_eq!(netd.json(&["network", "inspect", "small"])["mtu"], 1280);

    let b_ip = ip_of(&netd.json(&["guest", "inspect", "small", "b"]));
    // 1252 bytes of payload + 28 of headers: exactly 1280, DF set.
    let fits = |to: Ipv4Addr, size: &str| {
        a.command("ping")
            .args(["-n", "-c1", "-W2", "-M", "do", "-s", size])
            .arg(to.to_string())
            .status()
            .expect("ping")
            .success()
    };
    assert!(fits(b_ip, "1252"), "a full-size packet to a peer");
    assert!(
        fits(INTERNET_SERVER, "1252"),
        "a full-size packet out through NAT"
    );
    assert!(
        !fits(b_ip, "1253"),
        "one byte more does not leave the guest"
    );
}

/// A datagram from the outside larger than the network's MTU, DF set,
/// is answered with "fragmentation needed" carrying that MTU, as any router
/// in front of a narrower link does: the server's path MTU towards the
/// host drops to it, and the guest is never handed an oversized frame.
fn a_packet_from_outside_too_big_for_the_network_gets_fragmentation_needed(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "small", "--mtu", "1280"]);
    netd.ok(&["guest", "add", "small", "a"]);
    let a = guest(&netd, "small", "a");
    // The server answers every datagram with 1400 bytes, DF set.
    let server = udp_socket(&sandbox.internet, SocketAddrV4::new(INTERNET_SERVER, 6000));
    let dont_fragment: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid socket and option of the right size.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&server),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const dont_fragment).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "IP_MTU_DISCOVER");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((_, peer)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&[0x55; 1400], peer);
        }
    });
    let socket = udp_socket(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut got = Vec::new();
    for _ in 0..3 {
        if let Some(answer) = udp_ask(&socket, SocketAddrV4::new(INTERNET_SERVER, 6000), "big?") {
            got.push(answer.len());
        }
    }
    assert!(
        got.is_empty(),
        "no 1400-byte datagram reached the guest: {got:?}"
    );
    let route = run_ok({
        let mut c = sandbox.internet_command("ip");
        c.args(["route", "get"]).arg(HOST_UPLINK.to_string());
        c
    });
    assert!(
        route.contains("mtu 1280"),
        "the server learnt the network's MTU: {route}"
    );
}

fn mtu_values_are_checked_against_the_host_and_a_minimum(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    let err = netd.err(&["network", "create", "tiny", "--mtu", "500"]);
    assert!(
        err.contains("below 576") && err.contains("give 576 or more"),
        "{err}"
    );
    // The sandbox host's way out is its 1500-byte `uplink`.
    let err = netd.err(&["network", "create", "jumbo", "--mtu", "9000"]);
    assert!(
        err.contains("larger than uplink's MTU 1500") && err.contains("give 1500 or less"),
        "{err}"
    );
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
    // Nothing leaves an internal network: the veth's limit is the bound.
    netd.ok(&["network", "create", "jumbo", "--mtu", "9000", "--internal"]);
    netd.ok(&["guest", "add", "jumbo", "a"]);
    netd.ok(&["guest", "add", "jumbo", "b"]);
    let b_ip = ip_of(&netd.json(&["guest", "inspect", "jumbo", "b"]));
    let a = guest(&netd, "jumbo", "a");
    assert_eq!(link(&a, "eth0")["mtu"], 9000);
    let jumbo = a
        .command("ping")
        .args(["-n", "-c1", "-W2", "-M", "do", "-s", "8972"])
        .arg(b_ip.to_string())
        .status()
        .expect("ping");
    assert!(jumbo.success(), "a 9000-byte packet between guests");
    // A different MTU for an existing network is a conflict, not a change.
    let err = netd.err(&["network", "create", "jumbo", "--mtu", "1400", "--internal"]);
    assert!(
        err.contains("MTU 9000") && err.contains("remove it first"),
        "{err}"
    );
}

fn a_guest_gets_the_mac_it_asks_for_and_bad_or_taken_macs_are_refused(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    let added = netd.ok(&["guest", "add", "web", "a", "--mac", "02:AA:BB:CC:DD:01"]);
    assert!(added.contains("mac 02:aa:bb:cc:dd:01"), "{added}");
    netd.ok(&["guest", "add", "web", "b"]);
    let a = guest(&netd, "web", "a");
    assert_eq!(link(&a, "eth0")["address"], "02:aa:bb:cc:dd:01");
    let shown = netd.json(&["guest", "inspect", "web", "a"]);
    assert_eq!(shown["mac"], "02:aa:bb:cc:dd:01", "{shown}");
    // The dataplane knows the guest by that MAC: it talks to its peer and
    // the outside.
    let b_ip = ip_of(&netd.json(&["guest", "inspect", "web", "b"]));
    assert_eq!(ping(&a, b_ip, 2), 2, "to a peer");
    assert_eq!(ping(&a, INTERNET_SERVER, 2), 2, "out through NAT");

    let before = netd.json(&["guest", "ls", "web"]);
    for (mac, says) in [
        ("01:00:5e:00:00:01", "is multicast"),
        ("ff:ff:ff:ff:ff:ff", "is multicast"),
        ("00:00:00:00:00:00", "is no one's"),
        ("02:aa:bb:cc:dd", "write six hex pairs"),
        ("02:aa:bb:cc:dd:01", "is guest \"a\"'s"),
    ] {
        let err = netd.err(&["guest", "add", "web", "c", "--mac", mac]);
        assert!(err.contains(says), "{mac}: {err}");
    }
    assert_eq!(netd.json(&["guest", "ls", "web"]), before, "nothing added");
    assert!(
        Netns::open(&format!("{}g-web.c", netd.prefix())).is_err(),
        "no namespace left by a refused guest"
    );
    // A MAC taken in another network is free here.
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "db", "c", "--mac", "02:aa:bb:cc:dd:01"]);
}

/// A full uplink pool refuses the next network with an error that names
/// the pool and the fix, and leaves nothing behind. The default /19 links
/// 2,048 networks (the scale bench fills it: `netd-bench --only scale`);
/// here a /28 of 4 keeps the test short.
fn the_network_after_a_full_uplink_pool_is_refused_with_the_fix(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_settings(&sandbox, dataplane, "uplink_pool = \"172.18.192.0/28\"");
    for n in 0..4 {
        netd.ok(&["network", "create", &format!("n{n}")]);
    }
    let before = netd.json(&["network", "ls"]);
    let err = netd.err(&["network", "create", "n4"]);
    for says in [
        "all 4 network uplinks of 172.18.192.0/28 are in use",
        "remove a network",
        "`uplink_pool` in netd.toml",
    ] {
        assert!(err.contains(says), "{says:?}: {err}");
    }
    assert_eq!(netd.json(&["network", "ls"]), before, "nothing added");
    assert!(
        Netns::open(&format!("{}n-n4", netd.prefix())).is_err(),
        "no namespace left by a refused network"
    );
    // A removed network gives its uplink back.
    netd.ok(&["network", "rm", "n1"]);
    netd.ok(&["network", "create", "n4"]);
}

netd_tests::conformance!(
    the_network_after_a_full_uplink_pool_is_refused_with_the_fix,
    internal_guests_talk_to_each_other_and_to_nothing_outside,
    a_routable_internal_network_is_unreachable_from_the_host_although_routed,
    a_networks_mtu_is_on_its_bridge_ports_and_guests_and_packets_keep_to_it,
    a_packet_from_outside_too_big_for_the_network_gets_fragmentation_needed,
    mtu_values_are_checked_against_the_host_and_a_minimum,
    a_guest_gets_the_mac_it_asks_for_and_bad_or_taken_macs_are_refused,
);
