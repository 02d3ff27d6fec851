//! The eBPF host side: guests' connections are translated once, to the
//! host's address, by TC programs on the host's devices, and cross the host
//! without its stack or netfilter; the host keeps control (new devices get
//! the program, new addresses are followed, a detached program is drift
//! and is put back, `cleanup` removes it all). The nftables host side
//! (`host_datapath = "nftables"`) is the yardstick for what the host's
//! connection tracker would otherwise see.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    thread,
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::{EBPF_NFT_HOST, Netd},
    sandbox::{HOST_UPLINK, INTERNET_SERVER, UPLINK},
    sockets::{
        serve_tcp_echo, serve_udp_echo, tcp_ask, tcp_connect, tcp_listener, udp_ask, udp_socket,
    },
    status::{counter, drift, status},
    traffic::{ping, run_ok},
};

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn server(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(INTERNET_SERVER, port)
}

/// The host namespace's connection-tracking entries that involve the
/// internet side (the sandbox's "server" or its router).
fn host_conntrack_entries(sandbox: &Sandbox) -> Vec<String> {
    let out = sandbox
        .host_command("conntrack")
        .arg("-L")
        .output()
        .expect("running conntrack -L (package conntrack)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains("203.0.113.") || line.contains("198.51.100."))
        .map(str::to_owned)
        .collect()
}

/// Names of the TCX ingress programs on a device of the sandbox's host.
fn host_programs(sandbox: &Sandbox, device: &str) -> Vec<String> {
    netd::dataplane::ebpf::host::ingress_programs(&sandbox.host, device)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Traffic out (TCP, UDP, ping) and in through a published port.
fn exercise(sandbox: &Sandbox, netd: &Netd) {
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    let a = guest(netd, "web", "a");
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(7000)));
    serve_udp_echo(udp_socket(&sandbox.internet, server(7001)));
    serve_tcp_echo(tcp_listener(
        &a,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));

    assert_eq!(ping(&a, INTERNET_SERVER, 2), 2);
    let mut out = tcp_connect(&a, server(7000), None).expect("TCP out");
    let answer = tcp_ask(&mut out, "out");
    assert!(
        answer.starts_with(&HOST_UPLINK.to_string()),
        "translated to the host's address: {answer}"
    );
    let udp = udp_socket(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    assert!(udp_ask(&udp, server(7001), "udp").is_some(), "UDP out");
    let mut inbound = tcp_connect(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        None,
    )
    .expect("connecting to the published port from the internet");
    let answer = tcp_ask(&mut inbound, "in");
    assert!(
        answer.ends_with("in"),
        "the published port answers: {answer}"
    );
}

#[test]
fn guests_traffic_crosses_the_host_without_a_host_conntrack_entry() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    exercise(&sandbox, &netd);
    let entries = host_conntrack_entries(&sandbox);
    assert!(
        entries.is_empty(),
        "the host's connection tracker saw guests' traffic: {entries:#?}"
    );
    let (_, status) = status(&netd);
    assert_eq!(status["figures"]["host_datapath"], "ebpf", "{status}");
    assert!(counter(&status, "web", "new_snat") >= 3, "{status}");
    assert!(counter(&status, "web", "new_dnat") >= 1, "{status}");
    // Out of the host by a FIB lookup, not through its stack.
    assert!(counter(&status, "web", "forwarded") > 0, "{status}");
    assert_eq!(counter(&status, "web", "to_stack"), 0, "{status}");
}

#[test]
fn with_the_nftables_host_side_the_hosts_tracker_translates_again() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, EBPF_NFT_HOST);
    exercise(&sandbox, &netd);
    let entries = host_conntrack_entries(&sandbox);
    assert!(
        !entries.is_empty(),
        "with host_datapath = \"nftables\" the host masquerades (and tracks) guests' connections"
    );
    let (_, status) = status(&netd);
    assert_eq!(status["figures"]["host_datapath"], "nftables", "{status}");
}

#[test]
fn the_host_sides_ports_are_reserved_from_the_hosts_sockets_until_cleanup() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    let reserved = || {
        run_ok({
            let mut c = sandbox.host_command("sysctl");
            c.args(["-n", "net.ipv4.ip_local_reserved_ports"]);
            c
        })
    };
    assert_eq!(reserved().trim(), "", "nothing reserved before a network");
    netd.ok(&["network", "create", "web"]);
    assert_eq!(reserved().trim(), "40000-65535");
    netd.ok(&["cleanup"]);
    assert_eq!(reserved().trim(), "", "cleanup gives the ports back");
    assert!(
        host_programs(&sandbox, UPLINK).is_empty(),
        "cleanup detaches the host programs"
    );
}

#[test]
fn the_host_side_follows_new_devices_and_addresses_and_puts_back_a_detached_program() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    assert!(
        host_programs(&sandbox, UPLINK).contains(&"netd_host_world".to_owned()),
        "the egress device has the program"
    );

    // A device that appears later (hotplug, a VPN coming up).
    run_ok({
        let mut c = sandbox.host_command("ip");
        c.args([
            "link", "add", "late0", "type", "veth", "peer", "name", "late1",
        ]);
        c
    });
    wait_for(
        "the new device gets the program",
        Duration::from_secs(12),
        || host_programs(&sandbox, "late0").contains(&"netd_host_world".to_owned()),
    );

    // A new address (a DHCP renew): published ports answer on it too.
    run_ok({
        let mut c = sandbox.host_command("ip");
        c.args(["addr", "add", "198.51.100.3/24", "dev", UPLINK]);
        c
    });
    netd.ok(&["port", "add", "web", "a", "9090:90"]);
    serve_tcp_echo(tcp_listener(
        &a,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 90),
    ));
    let new_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 3), 9090);
    wait_for(
        "the new address is followed",
        Duration::from_secs(12),
        || {
            tcp_connect(&sandbox.internet, new_addr, None)
                .map(|mut s| tcp_ask(&mut s, "hi").ends_with("hi"))
                .unwrap_or(false)
        },
    );

    // Detached behind netd's back: drift, then put back.
    let pin = sandbox
        .bpffs_dir
        .join("netd")
        .join(netd_common::maps::PIN_LAYOUT_VERSION)
        .join("links")
        .join(format!("host-world@{UPLINK}"));
    // The daemon repairs every few seconds: try again if it was quicker
    // than the look.
    let mut seen = None;
    for _ in 0..5 {
        std::fs::remove_file(&pin)
            .unwrap_or_else(|err| panic!("removing {}: {err}", pin.display()));
        let (code, report) = status(&netd);
        if code == 3 {
            seen = Some(report);
            break;
        }
        wait_for("the pin is back", Duration::from_secs(12), || pin.exists());
    }
    let report = seen.expect("a detached host program is drift (status exit code 3)");
    assert!(
        drift(&report)
            .iter()
            .any(|line| line.contains("netd_host_world") && line.contains(UPLINK)),
        "{report}"
    );
    wait_for("the program is put back", Duration::from_secs(12), || {
        status(&netd).0 == 0
    });
    assert_eq!(ping(&a, INTERNET_SERVER, 2), 2, "traffic flows again");
}

/// A routable network's subnet is the host's route: a client outside that
/// routes to it reaches its guests by their own addresses, and the answers
/// go back untranslated (they take the host's stack, not the one
/// translation of netd's own subnets).
#[test]
fn a_routable_network_answers_connections_from_outside_untranslated() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "routed", "--subnet", "172.18.7.0/24"]);
    netd.ok(&["guest", "add", "routed", "a"]);
    let a = guest(&netd, "routed", "a");
    serve_tcp_echo(tcp_listener(
        &a,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    run_ok({
        let mut c = sandbox.internet_command("ip");
        c.args(["route", "add", "172.18.7.0/24", "via"])
            .arg(HOST_UPLINK.to_string());
        c
    });
    let guest_ip = Ipv4Addr::new(172, 18, 7, 1);
    let mut stream = tcp_connect(
        &sandbox.internet,
        SocketAddrV4::new(guest_ip, 80),
        Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
    )
    .expect("connecting from outside to the routable guest");
    let answer = tcp_ask(&mut stream, "direct");
    assert!(
        answer.starts_with(&INTERNET_SERVER.to_string()),
        "the guest saw the client's own address: {answer}"
    );
    assert!(answer.ends_with("direct"), "{answer}");
    // And out: the host masquerades it, as ever.
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(7002)));
    let mut out = tcp_connect(&a, server(7002), None).expect("TCP out of a routable network");
    let answer = tcp_ask(&mut out, "out");
    assert!(
        answer.starts_with(&HOST_UPLINK.to_string()),
        "masqueraded to the host's address: {answer}"
    );
}

/// A port range that would leave the host no ephemeral port of its own is
/// refused: the nftables host side serves, and status says why.
#[test]
fn a_port_range_that_leaves_the_host_no_ephemeral_port_is_refused() {
    let sandbox = Sandbox::new();
    std::fs::write(
        sandbox.root.join("netd.toml"),
        "host_nat_ports = \"30000-65535\"\n",
    )
    .expect("writing netd.toml");
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let (_, report) = status(&netd);
    let side = report["figures"]["host_datapath"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(side.starts_with("nftables"), "{side}");
    assert!(
        side.contains("host_nat_ports 30000-65535 would leave the host no ephemeral port")
            && side.contains("40000-65535"),
        "the reason and the fix: {side}"
    );
    assert_eq!(
        ping(&guest(&netd, "web", "a"), INTERNET_SERVER, 1),
        1,
        "guests still reach the outside, through the nftables host side"
    );
}

/// The port the internet server saw a connection from `port` of the guest
/// come from (the echo server names its peer).
fn translated_port(a: &Netns, to: SocketAddrV4, port: u16) -> u16 {
    let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let mut stream = tcp_connect(a, to, Some(local))
        .unwrap_or_else(|err| panic!("connecting from port {port} to {to}: {err}"));
    let answer = tcp_ask(&mut stream, "who");
    let peer = answer.split_whitespace().next().unwrap_or_default();
    let (ip, seen) = peer.rsplit_once(':').expect("peer address:port");
    assert_eq!(ip, HOST_UPLINK.to_string(), "{answer}");
    seen.parse().expect("a port")
}

/// A guest keeps its source port on the host's address where the host's own
/// sockets never pick one (outside its ephemeral range); a port they might
/// pick becomes the same odd port of netd's range every time, so that a
/// peer's TIME_WAIT left by the last connection of that tuple accepts the
/// next one (random substitutes met other tuples' TIME_WAIT: a reset and a
/// retry per connection, half the new-connection rate in the bench).
#[test]
fn a_guest_keeps_its_port_or_gets_the_same_substitute_every_time() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(7000)));
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(7002)));

    assert_eq!(translated_port(&a, server(7000), 20000), 20000, "kept");
    assert_eq!(
        translated_port(&a, server(7000), 45000),
        45000,
        "netd's own"
    );
    // 35000 is in the host's ephemeral range (32768-60999) but not netd's.
    let first = translated_port(&a, server(7000), 35000);
    assert!(
        (40000..=65535).contains(&first) && first % 2 == 1,
        "an odd port of netd's range: {first}"
    );
    let again = translated_port(&a, server(7002), 35000);
    assert_eq!(first, again, "the same substitute for the same guest port");
    // Privileged ports are never kept: they would look like the host's
    // own services.
    let privileged = translated_port(&a, server(7000), 999);
    assert!((40000..=65535).contains(&privileged), "{privileged}");
}

/// Packets the host's uplink has sent, as its own counters say.
fn uplink_tx_packets(sandbox: &Sandbox) -> u64 {
    let out = sandbox
        .host_command("ip")
        .args(["-j", "-s", "link", "show", "dev", UPLINK])
        .output()
        .expect("running ip -s link");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    links[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets in ip -j -s link")
}

/// How many of `count` datagrams from `from` to the internet server went
/// through the uplink's own transmit (its queue), rather than straight into
/// its peer.
fn sent_through_the_uplinks_queue(sandbox: &Sandbox, from: &Netns, count: u64) -> u64 {
    let socket = udp_socket(from, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let before = uplink_tx_packets(sandbox);
    for _ in 0..count {
        socket
            .send_to(b"x", server(7009))
            .expect("sending a datagram");
    }
    thread::sleep(Duration::from_millis(200));
    uplink_tx_packets(sandbox) - before
}

/// The sandbox's uplink is a veth into the internet namespace: with nothing
/// on its egress, guests' packets go straight into its peer (past its
/// queue, so its transmit counter stays still); a qdisc put on it later is
/// honoured within a repair tick, and removed, the shortcut comes back.
#[test]
fn a_bare_veth_uplink_is_skipped_and_a_qdisc_on_it_is_honoured() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    // The neighbour known, so the program completes the frame itself.
    assert_eq!(ping(&a, INTERNET_SERVER, 1), 1);
    let through_queue = sent_through_the_uplinks_queue(&sandbox, &a, 200);
    assert!(
        through_queue < 20,
        "{through_queue} of 200 datagrams went through the uplink's queue"
    );

    let tc = |args: &[&str]| {
        run_ok({
            let mut c = sandbox.host_command("tc");
            c.args(args);
            c
        })
    };
    tc(&[
        "qdisc", "add", "dev", UPLINK, "root", "tbf", "rate", "1gbit", "burst", "64k", "latency",
        "50ms",
    ]);
    wait_for(
        "the shaped uplink's queue is used",
        Duration::from_secs(12),
        || sent_through_the_uplinks_queue(&sandbox, &a, 50) >= 50,
    );
    tc(&["qdisc", "del", "dev", UPLINK, "root"]);
    wait_for(
        "the bare uplink is skipped again",
        Duration::from_secs(12),
        || sent_through_the_uplinks_queue(&sandbox, &a, 50) < 10,
    );
    assert_eq!(ping(&a, INTERNET_SERVER, 2), 2, "traffic flows throughout");
}

/// Packets a device of a namespace has received, as its own counters say.
fn rx_packets(netns: &Netns, device: &str) -> u64 {
    let out = netns
        .command("ip")
        .args(["-j", "-s", "link", "show", "dev", device])
        .output()
        .expect("running ip -s link");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    links[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets in ip -j -s link")
}

/// An established connection's packets skip the host's FIB lookup (the
/// program remembers the next hop), yet follow a route change: the
/// daemon's route watcher moves the host's routing epoch on, and the next
/// packets are looked up again and leave by the new way.
#[test]
fn an_established_flow_follows_a_route_change_of_the_host() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    assert_eq!(ping(&a, INTERNET_SERVER, 1), 1);
    let socket = udp_socket(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let send = |count: usize| {
        for _ in 0..count {
            socket
                .send_to(b"x", server(7010))
                .expect("sending a datagram");
        }
        thread::sleep(Duration::from_millis(200));
    };
    // Established, and its next hop remembered.
    send(20);

    // A second way to the internet namespace, and the server's route moved
    // onto it while the flow goes on.
    let host_ip = |args: &[&str]| {
        run_ok({
            let mut c = sandbox.host_command("ip");
            c.args(args);
            c
        })
    };
    let internet_ip = |args: &[&str]| {
        run_ok({
            let mut c = sandbox.internet.command("ip");
            c.args(args);
            c
        })
    };
    host_ip(&[
        "link", "add", "alt0", "type", "veth", "peer", "name", "alt1",
    ]);
    host_ip(&["link", "set", "alt1", "netns", sandbox.internet.name()]);
    host_ip(&["addr", "add", "192.0.2.1/30", "dev", "alt0"]);
    host_ip(&["link", "set", "alt0", "up"]);
    internet_ip(&["addr", "add", "192.0.2.2/30", "dev", "alt1"]);
    internet_ip(&["link", "set", "alt1", "up"]);
    let before = rx_packets(&sandbox.internet, "alt1");
    host_ip(&[
        "route",
        "replace",
        &format!("{INTERNET_SERVER}/32"),
        "via",
        "192.0.2.2",
        "dev",
        "alt0",
    ]);
    // The watcher's notification is asynchronous: a moment for it, far
    // below the second a remembered hop may otherwise live.
    thread::sleep(Duration::from_millis(100));
    send(50);
    let arrived = rx_packets(&sandbox.internet, "alt1") - before;
    assert!(
        arrived >= 50,
        "{arrived} of 50 datagrams after the route change came by the new way"
    );
}

/// A guest reconnecting from the port of a connection that has ended (the
/// server closed first, so the tuple waits in its TIME_WAIT) meets that
/// connection's conntrack entries: the new connection keeps the translation
/// and starts their state over. Else they stay marked as closing, and the
/// collector removes them after 10 s idle under the live connection: the
/// server's next packet then meets no entry, and the host's reset.
#[test]
fn a_connection_reopened_on_an_ended_ones_tuple_survives_an_idle_spell() {
    use std::io::{Read, Write};
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    let listener = tcp_listener(&sandbox.internet, server(7011));
    // Past the closing timeout (10 s) and one collector tick (5 s).
    let idle = Duration::from_secs(17);
    thread::spawn(move || {
        let mut byte = [0u8; 1];
        // The first connection: one byte each way, and the server closes.
        if let Ok((mut first, _)) = listener.accept()
            && first.read_exact(&mut byte).is_ok()
        {
            let _ = first.write_all(&byte);
        }
        // The second, on the same tuple: quiet, then the server speaks.
        if let Ok((mut second, _)) = listener.accept()
            && second.read_exact(&mut byte).is_ok()
        {
            thread::sleep(idle);
            let _ = second.write_all(b"late");
            thread::sleep(Duration::from_secs(2));
        }
    });
    let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 45_000);
    let mut first = tcp_connect(&a, server(7011), Some(local)).expect("the first connection");
    first.write_all(&[1]).expect("writing");
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).expect("the server's byte");
    assert_eq!(first.read(&mut byte).expect("the server's close"), 0);
    drop(first);
    // The guest's own socket may still be closing: a moment, then again.
    let mut second = None;
    for _ in 0..50 {
        match tcp_connect(&a, server(7011), Some(local)) {
            Ok(stream) => {
                second = Some(stream);
                break;
            }
            Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("the second connection: {err}"),
        }
    }
    let mut second = second.expect("the second connection from the same port");
    second.write_all(&[2]).expect("writing");
    second
        .set_read_timeout(Some(idle + Duration::from_secs(8)))
        .expect("read timeout");
    let mut late = [0u8; 4];
    second
        .read_exact(&mut late)
        .expect("the server's bytes after the idle spell");
    assert_eq!(&late, b"late");
}
