//! Port forwarding through the eBPF gateway and the host's nftables table:
//! published ports are reachable from the host at the gateway address, from
//! the sandbox internet at the host's address, and from guests (hairpin);
//! conflicts are refused; forwards go with their guest.

use std::net::{Ipv4Addr, SocketAddrV4};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{
        serve_tcp_echo, serve_udp_echo, tcp_ask, tcp_connect, tcp_listener, udp_ask, udp_socket,
    },
};

const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 2);
const HOST_LINK_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 1);

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

/// Who the echo server says called: "<peer> <line>".
fn caller(answer: &str) -> Ipv4Addr {
    let peer = answer.split_whitespace().next().expect("an answer");
    *peer.parse::<SocketAddrV4>().expect("a peer address").ip()
}

/// One exchange with a TCP echo server from `ns`, or the connect error.
fn ask(ns: &Netns, to: SocketAddrV4, line: &str) -> Result<String, std::io::Error> {
    let mut stream = tcp_connect(ns, to, None)?;
    Ok(tcp_ask(&mut stream, line))
}

/// A network "web" with guests a (serving TCP echo on 80) and b.
fn web<'a>(sandbox: &'a Sandbox, dataplane: &str) -> Netd<'a> {
    let netd = Netd::start_with_dataplane(sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    serve_tcp_echo(tcp_listener(&guest(&netd, "web", "a"), any(80)));
    netd
}

fn a_published_port_is_reachable_from_the_host_and_from_the_internet(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let out = netd.ok(&["port", "add", "web", "a", "8080:80"]);
    assert!(out.contains("8080:80/tcp"), "{out}");

    let answer = ask(
        &sandbox.host,
        SocketAddrV4::new(GATEWAY_IP, 8080),
        "from host",
    )
    .expect("the host reaches the gateway address");
    assert_eq!(caller(&answer), HOST_LINK_IP, "{answer}");

    let mut stream = tcp_connect(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
    )
    .expect("the internet reaches the host's address");
    let answer = tcp_ask(&mut stream, "from outside");
    assert_eq!(
        caller(&answer),
        INTERNET_SERVER,
        "the guest sees the real client: {answer}"
    );

    let answer = ask(
        &sandbox.host,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        "host to itself",
    )
    .expect("the host reaches its own address");
    assert!(answer.ends_with("host to itself"), "{answer}");

    let listed = netd.json(&["port", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let status = netd.json(&["status"]);
    assert!(
        status["figures"]["nat"]["dnat"].as_u64().unwrap() >= 2,
        "{status}"
    );
}

fn a_udp_port_range_maps_port_by_port(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let a = guest(&netd, "web", "a");
    for port in 6000..=6002 {
        serve_udp_echo(udp_socket(&a, any(port)));
    }
    netd.ok(&["port", "add", "web", "a", "5000-5002:6000-6002/udp"]);
    let client = udp_socket(&sandbox.internet, SocketAddrV4::new(INTERNET_SERVER, 0));
    for (offset, line) in ["zero", "one", "two"].iter().enumerate() {
        let to = SocketAddrV4::new(HOST_UPLINK, 5000 + offset as u16);
        let answer = udp_ask(&client, to, line).unwrap_or_else(|| panic!("no answer on {to}"));
        assert!(answer.ends_with(line), "{answer}");
    }
}

fn guests_reach_a_port_their_network_publishes_hairpin(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    let b = guest(&netd, "web", "b");
    let a = guest(&netd, "web", "a");
    for target in [GATEWAY_IP, HOST_UPLINK] {
        let to = SocketAddrV4::new(target, 8080);
        let answer = ask(&b, to, "from b").unwrap_or_else(|err| panic!("b to {to}: {err}"));
        assert_eq!(
            caller(&answer),
            GATEWAY_IP,
            "hairpinned through the gateway: {answer}"
        );
        let answer =
            ask(&a, to, "from a").unwrap_or_else(|err| panic!("a to itself via {to}: {err}"));
        assert!(answer.ends_with("from a"), "{answer}");
    }
    // Another network's guest reaches it too (through the published port only).
    netd.ok(&["network", "create", "other"]);
    netd.ok(&["guest", "add", "other", "c"]);
    let c = guest(&netd, "other", "c");
    let answer =
        ask(&c, SocketAddrV4::new(GATEWAY_IP, 8080), "from c").expect("c reaches web's port");
    assert!(answer.ends_with("from c"), "{answer}");
    let status = netd.json(&["status"]);
    assert!(
        status["figures"]["nat"]["hairpin"].as_u64().unwrap() >= 5,
        "{status}"
    );
}

fn a_conflicting_forward_is_refused_and_changes_nothing(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["port", "add", "web", "a", "8000-8010:80-90"]);
    let err = netd.err(&["port", "add", "web", "b", "8005:22"]);
    assert!(err.contains("8005/tcp") && err.contains("guest a"), "{err}");
    assert!(
        err.contains("netd port rm"),
        "the error says how to fix it: {err}"
    );
    // Same port, other protocol: fine.
    netd.ok(&["port", "add", "web", "b", "8005:53/udp"]);
    let listed = netd.json(&["port", "ls", "web"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    for bad in [
        "80:80:80",
        "0:80",
        "70000:80",
        "8000-8002:80-81",
        "127.0.0.1:9000:80",
        "9000:80/sctp",
    ] {
        let err = netd.err(&["port", "add", "web", "b", bad]);
        assert!(!err.is_empty(), "{bad} was accepted");
    }
    assert_eq!(netd.json(&["port", "ls"]).as_array().unwrap().len(), 2);
}

fn forwards_go_when_their_guest_goes(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    let to = SocketAddrV4::new(HOST_UPLINK, 8080);
    assert!(ask(&sandbox.internet, to, "before").is_ok());
    netd.ok(&["guest", "rm", "web", "a"]);
    assert_eq!(netd.json(&["port", "ls"]).as_array().unwrap().len(), 0);
    assert!(
        ask(&sandbox.internet, to, "after").is_err(),
        "the forward outlived its guest"
    );
    // The port is free again for another guest.
    netd.ok(&["port", "add", "web", "b", "8080:80"]);
    serve_tcp_echo(tcp_listener(&guest(&netd, "web", "b"), any(80)));
    let answer = ask(&sandbox.internet, to, "to b").expect("b now serves 8080");
    assert!(answer.ends_with("to b"), "{answer}");
    // `port rm` withdraws it.
    netd.ok(&["port", "rm", "web", "b", "8080:80"]);
    assert!(ask(&sandbox.internet, to, "gone").is_err());
}

fn published_ports_survive_a_daemon_restart(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    netd.restart();
    let answer = ask(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        "after restart",
    )
    .expect("still published");
    assert!(answer.ends_with("after restart"), "{answer}");
    assert_eq!(netd.json(&["port", "ls"]).as_array().unwrap().len(), 1);
}

netd_tests::conformance!(
    a_published_port_is_reachable_from_the_host_and_from_the_internet,
    a_udp_port_range_maps_port_by_port,
    guests_reach_a_port_their_network_publishes_hairpin,
    a_conflicting_forward_is_refused_and_changes_nothing,
    forwards_go_when_their_guest_goes,
    published_ports_survive_a_daemon_restart,
);
