//! The eBPF dataplane's NAT, driven through netd's CLI against a real daemon
//! in a sandbox and checked with real traffic: guests reach the sandbox
//! internet over TCP, UDP and ICMP echo and arrive with the host's address;
//! colliding guests get distinct ports; ICMP errors find their way back; the
//! gateway and network namespaces hold no nftables rules.

use std::net::{Ipv4Addr, SocketAddrV4};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{
        serve_tcp_echo, serve_udp_echo, tcp_ask, tcp_connect, tcp_listener, udp_ask, udp_socket,
    },
    status::counter,
    traffic::{ping, run_ok},
};

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    open(&format!("{}g-{network}.{guest}", netd.prefix()))
}

fn server(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(INTERNET_SERVER, port)
}

/// The address part of an echo server's "<peer> <line>" answer.
fn peer_ip(answer: &str) -> Ipv4Addr {
    let peer = answer.split_whitespace().next().expect("an answer");
    peer.parse::<SocketAddrV4>()
        .expect("a peer address")
        .ip()
        .to_owned()
}

fn peer_port(answer: &str) -> u16 {
    let peer = answer.split_whitespace().next().expect("an answer");
    peer.parse::<SocketAddrV4>().expect("a peer address").port()
}

fn a_guest_reaches_the_internet_over_tcp_udp_and_icmp_with_the_hosts_address(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(8080)));
    serve_udp_echo(udp_socket(&sandbox.internet, server(5353)));

    assert_eq!(ping(&a, INTERNET_SERVER, 3), 3, "ICMP echo through NAT");

    let mut stream = tcp_connect(&a, server(8080), None).expect("TCP connect through NAT");
    let answer = tcp_ask(&mut stream, "hello");
    assert_eq!(
        peer_ip(&answer),
        HOST_UPLINK,
        "TCP arrives from the host: {answer}"
    );
    assert!(answer.ends_with("hello"), "{answer}");
    let answer = tcp_ask(&mut stream, "again");
    assert!(
        answer.ends_with("again"),
        "the connection carries on: {answer}"
    );

    let socket = udp_socket(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let answer = udp_ask(&socket, server(5353), "ping").expect("a UDP answer through NAT");
    assert_eq!(
        peer_ip(&answer),
        HOST_UPLINK,
        "UDP arrives from the host: {answer}"
    );

    let status = netd.json(&["status", "--namespaces"]);
    let nat = &status["figures"]["nat"];
    assert!(nat["snat"].as_u64().unwrap() >= 3, "{nat}");
    if dataplane == "ebpf" {
        assert!(counter(&status, "web", "new_snat") >= 3, "{status}");
        assert!(
            counter(&status, "web", "forwarded") > 0,
            "the fast path is used: {status}"
        );
        assert!(counter(&status, "web", "translated") > 0, "{status}");
        assert_eq!(status["figures"]["host_datapath"], "ebpf", "{status}");
        // The guest's port carries its program as a cls_bpf filter.
        let port_programs: Vec<&serde_json::Value> = status["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|ns| ns["links"].as_array().unwrap())
            .filter(|link| link["name"].as_str().unwrap().starts_with("g-"))
            .flat_map(|link| link["tc_programs"].as_array().unwrap())
            .collect();
        assert_eq!(port_programs, vec!["ingress:netd_guest_port"], "{status}");
    }
}

fn two_guests_with_the_same_address_and_port_in_two_networks_talk_to_one_server_at_once(
    dataplane: &str,
) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    let mut streams = Vec::new();
    serve_tcp_echo(tcp_listener(&sandbox.internet, server(8080)));
    for network in ["left", "right"] {
        netd.ok(&["network", "create", network]);
        netd.ok(&["guest", "add", network, "twin", "--ip", "172.18.0.7"]);
        let twin = guest(&netd, network, "twin");
        let local = SocketAddrV4::new(Ipv4Addr::new(172, 18, 0, 7), 40000);
        let stream = tcp_connect(&twin, server(8080), Some(local))
            .unwrap_or_else(|err| panic!("{network}: connect from 172.18.0.7:40000: {err}"));
        streams.push((network, stream));
    }
    let mut ports = Vec::new();
    for (network, stream) in &mut streams {
        let answer = tcp_ask(stream, network);
        assert!(
            answer.ends_with(*network),
            "each answer reaches its own guest: {answer}"
        );
        ports.push(peer_port(&answer));
    }
    assert_ne!(
        ports[0], ports[1],
        "the second flow got another source port"
    );
    // And both still work, interleaved.
    for (network, stream) in streams.iter_mut().rev() {
        assert!(tcp_ask(stream, "more").ends_with("more"), "{network}");
    }
}

fn a_udp_port_unreachable_reaches_the_guests_socket(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    // Nothing listens on 203.0.113.10:9999: the server's stack answers with
    // ICMP port unreachable, which quotes the translated packet. Only if the
    // gateway translates the quote back does the guest's connected socket
    // see ECONNREFUSED.
    let socket = udp_socket(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    socket.connect(server(9999)).expect("connect");
    socket.send(b"anyone?").expect("send");
    let mut buf = [0u8; 64];
    let refused = (0..3).any(|_| {
        let _ = socket.send(b"anyone?");
        matches!(socket.recv(&mut buf), Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(refused, "the guest's socket saw the port unreachable");
    if dataplane == "ebpf" {
        let status = netd.json(&["status"]);
        assert!(
            counter(&status, "host side", "icmp_error_translated") >= 1,
            "{status}"
        );
    }
}

fn fragmentation_needed_lowers_the_guests_path_mtu(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    // A narrow link on the internet side: the host's router must send
    // "fragmentation needed" for full-size packets with DF set.
    run_ok({
        let mut c = sandbox.host_command("ip");
        c.args(["link", "set", "dev", "uplink", "mtu", "1200"]);
        c
    });
    run_ok({
        let mut c = sandbox.internet_command("ip");
        c.args(["link", "set", "dev", "uplink", "mtu", "1200"]);
        c
    });
    // ping -M do: DF set, 1400 bytes. The first gets "frag needed"
    // (ping reports the new MTU); the guest's route cache then holds 1200.
    let out = a
        .command("ping")
        .args(["-n", "-c", "2", "-W", "1", "-M", "do", "-s", "1372"])
        .arg(INTERNET_SERVER.to_string())
        .output()
        .expect("ping");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mtu = 1200") || text.contains("mtu=1200"),
        "ping saw the translated frag-needed: {text}"
    );
    let route = run_ok({
        let mut c = a.command("ip");
        c.args(["route", "get"]).arg(INTERNET_SERVER.to_string());
        c
    });
    assert!(
        route.contains("mtu 1200"),
        "the guest learned the path MTU: {route}"
    );
    if dataplane == "ebpf" {
        // The host's egress device is the narrow one: the eBPF host side
        // answers for the host's router.
        let status = netd.json(&["status"]);
        assert!(counter(&status, "web", "frag_needed_sent") >= 1, "{status}");
    }
}

/// eBPF: no nftables at all in netd's namespaces; nftables: netd's own
/// table only. Either way, the host holds netd's table and nothing else.
fn netds_namespaces_hold_nftables_rules_only_under_the_nftables_dataplane(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    assert_eq!(ping(&guest(&netd, "web", "a"), INTERNET_SERVER, 1), 1);
    for (ns, nft_table) in [
        (format!("{}gw", netd.prefix()), "table inet netd"),
        (format!("{}n-web", netd.prefix()), "table bridge netd"),
    ] {
        let netns = open(&ns);
        let tables = run_ok({
            let mut c = netns.command("nft");
            c.args(["list", "tables"]);
            c
        });
        let expected = if dataplane.starts_with("ebpf") {
            ""
        } else {
            nft_table
        };
        assert_eq!(tables.trim(), expected, "{ns}: {dataplane}");
    }
    let host = run_ok({
        let mut c = sandbox.host_command("nft");
        c.args(["list", "tables"]);
        c
    });
    assert_eq!(
        host.trim(),
        "table inet netd",
        "the host has netd's own table only"
    );
}

fn guests_of_one_network_cannot_address_another_routable_network(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "a", "--subnet", "10.77.1.0/24"]);
    netd.ok(&["network", "create", "b", "--subnet", "10.77.2.0/24"]);
    netd.ok(&["guest", "add", "a", "x"]);
    netd.ok(&["guest", "add", "b", "y"]);
    let x = guest(&netd, "a", "x");
    let y_ip: Ipv4Addr = "10.77.2.1".parse().unwrap();
    // The host routes to routable networks directly...
    assert_eq!(
        ping(&sandbox.host, y_ip, 1),
        1,
        "the host reaches a routable guest"
    );
    // ...but one network may not reach into another.
    assert_eq!(ping(&x, y_ip, 2), 0, "network a reached network b");
    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "a", "dropped_cross_network") >= 1,
        "{status}"
    );
    // Routable networks reach the internet too (masqueraded by the host).
    assert_eq!(ping(&x, INTERNET_SERVER, 1), 1);
}

fn bulk_tcp_crosses_the_gateway_on_the_fast_path_without_a_drop(dataplane: &str) {
    use std::io::{Read, Write};
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    let listener = tcp_listener(&sandbox.internet, server(9000));
    // The server sends 16 MiB back for every 16 MiB it receives: large GSO
    // segments both ways, which the gateway must pass on, not drop.
    const SIZE: usize = 16 << 20;
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut received = vec![0u8; SIZE];
        stream
            .read_exact(&mut received)
            .expect("reading the upload");
        stream.write_all(&received).expect("sending it back");
    });
    let mut stream = tcp_connect(&a, server(9000), None).expect("connect");
    let upload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let upload = upload.clone();
        std::thread::spawn(move || stream.write_all(&upload).expect("uploading"))
    };
    let mut download = vec![0u8; SIZE];
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    stream.read_exact(&mut download).expect("downloading");
    writer.join().unwrap();
    echo.join().unwrap();
    assert!(download == upload, "every byte came back in order");

    let status = netd.json(&["status"]);
    for zone in ["web", "host side"] {
        for reason in ["to_stack", "dropped_no_route", "dropped_fragment"] {
            assert_eq!(
                counter(&status, zone, reason),
                0,
                "{zone} {reason}: {status}"
            );
        }
    }
    if dataplane == "ebpf" {
        assert!(counter(&status, "web", "forwarded") > 0, "{status}");
        assert!(
            counter(&status, "web", "delivered") > 0,
            "the uplink delivers straight to the guest: {status}"
        );
    }
}

netd_tests::conformance!(
    a_guest_reaches_the_internet_over_tcp_udp_and_icmp_with_the_hosts_address,
    two_guests_with_the_same_address_and_port_in_two_networks_talk_to_one_server_at_once,
    a_udp_port_unreachable_reaches_the_guests_socket,
    fragmentation_needed_lowers_the_guests_path_mtu,
    netds_namespaces_hold_nftables_rules_only_under_the_nftables_dataplane,
    guests_of_one_network_cannot_address_another_routable_network,
    bulk_tcp_crosses_the_gateway_on_the_fast_path_without_a_drop,
);
