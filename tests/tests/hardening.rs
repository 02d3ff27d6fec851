//! What an adversarial run broke, each with the test that shows it fixed.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket},
    time::Duration,
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, serve_udp_echo, tcp_listener, udp_socket},
    status::counter,
    traffic::{ping, run_ok},
};

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

/// One exchange through `to` from `ns`, with short timeouts: whether the
/// echo came back.
fn reaches(ns: &Netns, to: SocketAddrV4) -> bool {
    let timeout = Duration::from_millis(700);
    ns.run_in(|| -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&to.into(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"x")?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf)?;
        Ok(buf[..n].ends_with(b"x"))
    })
    .expect("entering the namespace")
    .unwrap_or(false)
}

/// A cut between two guests holds whatever way their packets take: through
/// a published port (at the host link's address or the host's own) as well
/// as directly. Every dataplane.
fn a_cut_holds_through_published_ports(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    for g in ["a1", "a2", "a3"] {
        netd.ok(&["guest", "add", "web", g]);
    }
    netd.ok(&["port", "add", "web", "a2", "8080:80"]);
    let a1 = guest(&netd, "web", "a1");
    let a2 = guest(&netd, "web", "a2");
    let a3 = guest(&netd, "web", "a3");
    serve_tcp_echo(tcp_listener(
        &a2,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    let published = [
        SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 2), 8080),
        SocketAddrV4::new(HOST_UPLINK, 8080),
    ];
    for to in published {
        assert!(reaches(&a1, to), "before the cut, a1 reaches a2 at {to}");
    }
    for verb in [
        vec!["disjoint", "a1", "--", "a2", "a3"],
        vec!["split", "a1", "a3", "--", "a2", "a3"],
        vec!["cut", "--from", "a1", "--to", "a2"],
        vec!["isolate", "a1", "--keep-outside"],
    ] {
        let mut args = vec!["partition", "web"];
        args.extend(verb.iter().copied());
        netd.ok(&args);
        for to in published {
            assert!(
                !reaches(&a1, to),
                "{verb:?}: a1 must not reach a2 through its published port at {to}"
            );
        }
        if verb[0] != "isolate" {
            assert!(
                reaches(&a3, published[1]),
                "{verb:?}: a3 is not cut from a2 and still reaches it"
            );
        }
        netd.ok(&["partition", "web", "heal"]);
        assert!(reaches(&a1, published[1]), "healed: a1 reaches a2 again");
    }
    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "web", "dropped_partition") > 0,
        "the cut packets are counted: {status}"
    );
    // A restarted daemon keeps the cut on that path too.
    netd.ok(&["partition", "web", "cut", "--from", "a1", "--to", "a2"]);
    netd.kill9();
    netd.restart();
    for to in published {
        assert!(
            !reaches(&a1, to),
            "after a restart: a1 must not reach a2 at {to}"
        );
    }
    assert!(reaches(&a3, published[1]), "after a restart: a3 reaches a2");
}

/// `verify` also tries a cut pair's sender against the receiver's published
/// port, at the gateway's address and the host's, each a probe of its own;
/// one that gets through is a mismatch (exit 1).
fn verify_probes_cut_pairs_through_published_ports(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    for g in ["a1", "a2", "a3"] {
        netd.ok(&["guest", "add", "web", g]);
    }
    netd.ok(&["port", "add", "web", "a2", "8080:80"]);
    // Nothing listens on a2's UDP port: verify binds it for its probe.
    netd.ok(&["port", "add", "web", "a2", "5353:53/udp"]);
    serve_tcp_echo(tcp_listener(
        &guest(&netd, "web", "a2"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    netd.ok(&["partition", "web", "cut", "--from", "a1", "--to", "a2"]);
    let report = netd.json(&["partition", "web", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    let probed: Vec<String> = report["published"]
        .as_array()
        .unwrap_or_else(|| panic!("no published-port probes: {report}"))
        .iter()
        .map(|p| {
            format!(
                "{} -> {} {}/{} reached={}",
                p["from"].as_str().unwrap(),
                p["to"].as_str().unwrap(),
                p["via"].as_str().unwrap(),
                p["proto"].as_str().unwrap(),
                p["reached"],
            )
        })
        .collect();
    // Only the cut pair, only towards the guest that publishes: its TCP
    // and its UDP port, at the gateway's address and the host's.
    assert_eq!(
        probed,
        [
            "a1 -> a2 172.18.255.2:8080/tcp reached=false".to_owned(),
            format!("a1 -> a2 {HOST_UPLINK}:8080/tcp reached=false"),
            "a1 -> a2 172.18.255.2:5353/udp reached=false".to_owned(),
            format!("a1 -> a2 {HOST_UPLINK}:5353/udp reached=false"),
        ],
        "{report}"
    );
    let text = netd.ok(&["partition", "web", "verify"]);
    assert!(
        text.contains("a1 -> a2 through 172.18.255.2:8080/tcp: held"),
        "{text}"
    );

    // Behind netd's back, the gateway forgets the cut on that path
    // (nftables: its copy of the network's cut): verify sees it, on both
    // protocols.
    if dataplane == "nftables" {
        let gw = Netns::open(&format!("{}gw", netd.prefix())).expect("the gateway namespace");
        run_ok({
            let mut cmd = gw.command("nft");
            cmd.args(["flush", "set", "inet", "netd", "hairpin_cut"]);
            cmd
        });
        let failed = netd.cli(&["partition", "web", "verify"]);
        let text = String::from_utf8_lossy(&failed.stdout);
        assert!(
            !failed.status.success(),
            "verify missed the open path: {text}"
        );
        for via in ["172.18.255.2:8080/tcp", "172.18.255.2:5353/udp"] {
            assert!(
                text.contains(&format!(
                    "a1 -> a2 through its published port at {via}: cut, but it got through"
                )),
                "{text}"
            );
        }
    }
}

/// Guests reach services on the host's own addresses by default; with
/// `guests_reach_host = false` they reach published ports (at the host's
/// address too), the outside and their network's resolver, and nothing on
/// the host itself.
fn guests_reach_host_only_when_allowed(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    netd.ok(&["port", "add", "web", "b", "8080:80"]);
    serve_tcp_echo(tcp_listener(
        &guest(&netd, "web", "b"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    // A service of the host's, on every address of its namespace.
    serve_tcp_echo(tcp_listener(
        &sandbox.host,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9999),
    ));
    serve_tcp_echo(tcp_listener(
        &sandbox.internet,
        SocketAddrV4::new(INTERNET_SERVER, 443),
    ));
    let host_service = [
        SocketAddrV4::new(HOST_UPLINK, 9999),
        SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 1), 9999),
    ];
    let outside = SocketAddrV4::new(INTERNET_SERVER, 443);
    let published = SocketAddrV4::new(HOST_UPLINK, 8080);
    let a = guest(&netd, "web", "a");
    for to in host_service {
        assert!(
            reaches(&a, to),
            "by default a guest reaches the host's {to}"
        );
    }

    let config = sandbox.root.join("netd.toml");
    let settings = std::fs::read_to_string(&config).expect("reading netd.toml");
    std::fs::write(&config, format!("{settings}guests_reach_host = false\n"))
        .expect("writing netd.toml");
    netd.kill9();
    netd.restart();
    let a = guest(&netd, "web", "a");
    for to in host_service {
        assert!(
            !reaches(&a, to),
            "guests_reach_host = false: {to} is refused"
        );
    }
    assert!(
        reaches(&a, published),
        "b's published port at the host address"
    );
    assert!(reaches(&a, outside), "the outside");
    assert!(
        reaches(&sandbox.internet, published),
        "the outside still reaches the published port"
    );
    assert!(
        reaches(&sandbox.host, host_service[0]),
        "the host's own processes still reach it"
    );
    let dig = a
        .command("dig")
        .args(["@172.18.0.254", "+time=2", "+tries=1", "+short", "b"])
        .output()
        .expect("running dig");
    let answer = String::from_utf8_lossy(&dig.stdout);
    assert!(
        answer.trim().starts_with("172.18.0."),
        "the network's resolver still answers: {answer:?}"
    );
}

/// Sends one datagram from each source port in `ports` to `to`, each its
/// own flow, and counts the answers.
fn udp_flows(
    ns: &Netns,
    to: SocketAddrV4,
    ports: std::ops::Range<u16>,
    wait_answers: bool,
) -> usize {
    ns.run_in(|| {
        let mut answered = 0;
        for port in ports {
            let Ok(socket) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) else {
                continue;
            };
            let _ = socket.send_to(b"flow", to);
            // Paced, so that no burst overflows a receive queue on the way:
            // every flow reaches the translation.
            std::thread::sleep(Duration::from_micros(100));
            if wait_answers {
                let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                if socket.recv_from(&mut buf).is_ok() {
                    answered += 1;
                }
            }
        }
        answered
    })
    .expect("entering the namespace")
}

/// One guest sending from more source ports to one server than the host
/// side has cannot starve another network's guest of ports to that server
/// (a shared DNS server, say): it gets a quarter of them, the rest stay for
/// others. The eBPF host side and the nftables gateway, which translate to
/// `host_nat_ports` (with the eBPF gateway and the host's nftables table,
/// the host masquerades into its whole range: the narrow range of this
/// test does not apply there).
fn a_noisy_guest_cannot_starve_others_of_nat_ports(dataplane: &str) {
    let sandbox = Sandbox::new();
    // A narrow range (4,536 ports), so that a few seconds of flows fill it.
    let netd = Netd::start_with_settings(&sandbox, dataplane, "host_nat_ports = \"61000-65535\"");
    for network in ["noisy", "quiet"] {
        netd.ok(&["network", "create", network]);
        netd.ok(&["guest", "add", network, "g"]);
    }
    let dns = SocketAddrV4::new(INTERNET_SERVER, 5353);
    serve_udp_echo(udp_socket(&sandbox.internet, dns));
    // More flows than the host side's ports (a narrow range, for speed),
    // from ports in the host's ephemeral range (32768-60999), which the
    // host address cannot keep: each needs one of netd's.
    udp_flows(&guest(&netd, "noisy", "g"), dns, 33_000..38_000, false);
    let answered = udp_flows(&guest(&netd, "quiet", "g"), dns, 40_000..40_050, true);
    assert!(
        answered >= 48,
        "the quiet guest got {answered} of 50 flows through"
    );
    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "noisy", "dropped_port_share") > 0,
        "the noisy guest met its share: {status}"
    );
    assert_eq!(counter(&status, "quiet", "dropped_no_port"), 0, "{status}");
}

#[test]
fn ebpf_a_noisy_guest_cannot_starve_others_of_nat_ports() {
    a_noisy_guest_cannot_starve_others_of_nat_ports("ebpf");
}

#[test]
fn nftables_a_noisy_guest_cannot_starve_others_of_nat_ports() {
    a_noisy_guest_cannot_starve_others_of_nat_ports("nftables");
}

/// A guest removed and added again with the same address (or rebuilt by
/// reconcile) keeps its MAC, so its peers' ARP caches stay right and it is
/// reachable at once, directly and through its published port.
fn a_recreated_guest_is_reachable_at_once(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a", "--ip", "172.18.0.10"]);
    netd.ok(&["guest", "add", "web", "b", "--ip", "172.18.0.11"]);
    let a_ip = Ipv4Addr::new(172, 18, 0, 10);
    let b = guest(&netd, "web", "b");
    let published = SocketAddrV4::new(HOST_UPLINK, 8080);
    let serve = |netd: &Netd| {
        let a = guest(netd, "web", "a");
        serve_tcp_echo(tcp_listener(
            &a,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
        ));
    };
    serve(&netd);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    assert_eq!(ping(&b, a_ip, 1), 1, "b reaches a");
    assert!(reaches(&sandbox.internet, published), "a's port answers");
    let mac_before = guest(&netd, "web", "a").mac("eth0").unwrap();

    netd.ok(&["guest", "rm", "web", "a"]);
    netd.ok(&["guest", "add", "web", "a", "--ip", "172.18.0.10"]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    serve(&netd);
    assert_eq!(
        guest(&netd, "web", "a").mac("eth0").unwrap(),
        mac_before,
        "the same guest gets the same MAC"
    );
    // "At once": one ping (1 s to answer) and one connection (700 ms), no
    // retries; with a stale ARP entry both fail for tens of seconds.
    assert_eq!(ping(&b, a_ip, 1), 1, "b reaches the re-created a at once");
    assert!(
        reaches(&sandbox.internet, published),
        "the re-created a's port answers at once"
    );

    // Rebuilt by reconcile after its namespace was deleted by hand.
    netd.kill9();
    run_ok({
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "delete", &format!("{}g-web.a", netd.prefix())]);
        c
    });
    netd.restart();
    serve(&netd);
    assert_eq!(
        guest(&netd, "web", "a").mac("eth0").unwrap(),
        mac_before,
        "reconcile rebuilds a with its MAC"
    );
    assert_eq!(ping(&b, a_ip, 1), 1, "b reaches the rebuilt a at once");

    // Added again with another MAC: b's entry for a's address is stale;
    // the gratuitous ARP a sends when its eth0 comes up replaces it.
    netd.ok(&["guest", "rm", "web", "a"]);
    netd.ok(&[
        "guest",
        "add",
        "web",
        "a",
        "--ip",
        "172.18.0.10",
        "--mac",
        "02:00:5e:00:aa:01",
    ]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    serve(&netd);
    assert_ne!(guest(&netd, "web", "a").mac("eth0").unwrap(), mac_before);
    assert_eq!(ping(&b, a_ip, 1), 1, "b reaches a with its new MAC at once");
    assert!(
        reaches(&sandbox.internet, published),
        "a's port answers at once with its new MAC"
    );
}

netd_tests::conformance!(
    a_cut_holds_through_published_ports,
    guests_reach_host_only_when_allowed,
    verify_probes_cut_pairs_through_published_ports,
    a_recreated_guest_is_reachable_at_once,
);
