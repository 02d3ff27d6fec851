//! `netd partition`, checked with real traffic between guests: every verb,
//! one-way cuts in both directions, random loss, established connections,
//! timed heals, requests from inside a guest, and a daemon killed while a
//! partition is in force.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::{Netd, netd_binary},
    sandbox::INTERNET_SERVER,
    sockets::{serve_tcp_echo, tcp_connect, tcp_listener, udp_socket},
    status::counter,
    traffic::{ping, run_ok},
};

const GUESTS: [&str; 4] = ["a", "b", "c", "d"];

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

/// Guests a, b, c, d get 172.18.0.1-4 in that order.
fn ip_of(name: &str) -> Ipv4Addr {
    let index = GUESTS
        .iter()
        .position(|g| *g == name)
        .expect("a known guest") as u8;
    Ipv4Addr::new(172, 18, 0, index + 1)
}

/// A network "web" with guests a, b, c, d.
fn web<'a>(sandbox: &'a Sandbox, dataplane: &str) -> Netd<'a> {
    let netd = Netd::start_with_dataplane(sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    for g in GUESTS {
        netd.ok(&["guest", "add", "web", g]);
    }
    netd
}

/// How many of `count` UDP datagrams sent from guest `from` reach guest `to`.
/// A receiving thread counts until the line has been quiet for 300 ms.
fn udp_delivered(netd: &Netd, from: &str, to: &str, count: usize) -> usize {
    let receiver = udp_socket(&guest(netd, "web", to), SocketAddrV4::new(ip_of(to), 0));
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let target = match receiver.local_addr().unwrap() {
        std::net::SocketAddr::V4(addr) => addr,
        other => panic!("{other}"),
    };
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut got = 0;
        while receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    let sender: UdpSocket =
        udp_socket(&guest(netd, "web", from), SocketAddrV4::new(ip_of(from), 0));
    for i in 0..count {
        sender
            .send_to(&(i as u32).to_be_bytes(), target)
            .expect("send");
        if i % 50 == 49 {
            // Pace the burst so no socket buffer overflows on the way.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    counter.join().expect("the counting thread")
}

/// Whether one UDP datagram (of three tries) gets from `from` to `to`.
fn talks(netd: &Netd, from: &str, to: &str) -> bool {
    udp_delivered(netd, from, to, 3) > 0
}

/// The talk matrix over all ordered pairs, as "a->b" strings that can talk.
fn matrix(netd: &Netd) -> Vec<String> {
    let mut open = Vec::new();
    for from in GUESTS {
        for to in GUESTS {
            if from != to && talks(netd, from, to) {
                open.push(format!("{from}->{to}"));
            }
        }
    }
    open
}

fn all_pairs_except(cut: &[&str]) -> Vec<String> {
    let mut open = Vec::new();
    for from in GUESTS {
        for to in GUESTS {
            let pair = format!("{from}->{to}");
            if from != to && !cut.contains(&pair.as_str()) {
                open.push(pair);
            }
        }
    }
    open
}

fn reaches_internet(netd: &Netd, name: &str) -> bool {
    ping(&guest(netd, "web", name), INTERNET_SERVER, 1) == 1
}

fn isolate_cuts_a_guest_from_everyone_and_heal_restores_everything(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    assert_eq!(matrix(&netd), all_pairs_except(&[]));
    netd.ok(&["partition", "web", "isolate", "a"]);
    assert_eq!(
        matrix(&netd),
        all_pairs_except(&["a->b", "a->c", "a->d", "b->a", "c->a", "d->a"])
    );
    assert!(
        !reaches_internet(&netd, "a"),
        "isolate cuts the outside too"
    );
    assert!(reaches_internet(&netd, "b"));
    let shown = netd.ok(&["partition", "web", "show"]);
    assert!(shown.contains("isolate"), "{shown}");
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "dropped_partition") > 0, "{status}");

    netd.ok(&["partition", "web", "heal"]);
    assert_eq!(matrix(&netd), all_pairs_except(&[]));
    assert!(reaches_internet(&netd, "a"));
}

fn isolate_keep_outside_leaves_the_internet_reachable(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "isolate", "a", "b", "--keep-outside"]);
    assert!(reaches_internet(&netd, "a"));
    assert!(
        !talks(&netd, "a", "b"),
        "isolated guests are cut from each other too"
    );
    assert!(!talks(&netd, "c", "a"));
    assert!(talks(&netd, "c", "d"));
}

fn disjoint_splits_into_groups_and_refuses_duplicates_and_missing_guests(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "disjoint", "a", "b", "--", "c", "d"]);
    assert_eq!(
        matrix(&netd),
        all_pairs_except(&[
            "a->c", "a->d", "b->c", "b->d", "c->a", "c->b", "d->a", "d->b"
        ])
    );
    let err = netd.err(&[
        "partition",
        "web",
        "disjoint",
        "a",
        "b",
        "--",
        "b",
        "c",
        "d",
    ]);
    assert!(err.contains("b") && err.contains("two groups"), "{err}");
    let err = netd.err(&["partition", "web", "disjoint", "a", "b", "--", "c"]);
    assert!(err.contains("d") && err.contains("no group"), "{err}");
    let err = netd.err(&[
        "partition",
        "web",
        "disjoint",
        "a",
        "zed",
        "--",
        "b",
        "c",
        "d",
    ]);
    assert!(err.contains("zed"), "{err}");
    // A refused request changes nothing.
    assert!(!talks(&netd, "a", "c") && talks(&netd, "a", "b"));
}

fn split_lets_a_bridge_guest_talk_to_both_sides_and_isolates_the_unlisted(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "split", "a", "b", "--", "b", "c"]);
    assert_eq!(
        matrix(&netd),
        vec!["a->b", "b->a", "b->c", "c->b"],
        "b bridges a and c; d, not listed, talks to no guest"
    );
}

fn cut_is_one_way(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "cut", "--from", "a,b", "--to", "c"]);
    assert_eq!(udp_delivered(&netd, "a", "c", 5), 0, "a->c is cut");
    assert_eq!(udp_delivered(&netd, "b", "c", 5), 0, "b->c is cut");
    assert_eq!(udp_delivered(&netd, "c", "a", 5), 5, "c->a is untouched");
    assert_eq!(udp_delivered(&netd, "c", "b", 5), 5, "c->b is untouched");
    assert_eq!(udp_delivered(&netd, "a", "b", 5), 5, "a->b is untouched");
}

fn loss_30_drops_about_a_third_of_the_affected_packets(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&[
        "partition",
        "web",
        "cut",
        "--from",
        "a",
        "--to",
        "b",
        "--loss",
        "30",
    ]);
    let delivered = udp_delivered(&netd, "a", "b", 1000);
    assert!(
        (600..=800).contains(&delivered),
        "{delivered} of 1000 delivered with --loss 30"
    );
    assert_eq!(
        udp_delivered(&netd, "b", "a", 100),
        100,
        "the other way is untouched"
    );
}

fn an_established_tcp_connection_stops_at_the_cut_and_resumes_after_heal(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    serve_tcp_echo(tcp_listener(
        &guest(&netd, "web", "b"),
        SocketAddrV4::new(ip_of("b"), 7000),
    ));
    let mut stream = tcp_connect(
        &guest(&netd, "web", "a"),
        SocketAddrV4::new(ip_of("b"), 7000),
        None,
    )
    .expect("connect");
    let mut buf = [0u8; 256];
    stream.write_all(b"before").unwrap();
    assert!(stream.read(&mut buf).unwrap() > 0);

    netd.ok(&["partition", "web", "disjoint", "a", "--", "b", "c", "d"]);
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    stream.write_all(b"during").unwrap();
    assert!(
        stream.read(&mut buf).is_err(),
        "the established connection still delivered across the cut"
    );

    netd.ok(&["partition", "web", "fullmesh"]);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = stream
        .read(&mut buf)
        .expect("the connection resumes after heal");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("during"));
}

fn a_timed_partition_heals_by_itself_even_across_a_restart(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    // Long enough to outlast a restart on a loaded machine.
    netd.ok(&["partition", "web", "isolate", "a", "--for", "8s"]);
    assert!(!talks(&netd, "b", "a"));
    netd.restart();
    assert!(!talks(&netd, "b", "a"), "still in force after the restart");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !talks(&netd, "b", "a") {
        assert!(Instant::now() < deadline, "the partition never healed");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn a_partition_outlives_a_killed_daemon_and_heals_after_the_restart(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "isolate", "c"]);
    netd.kill9();
    assert!(!talks(&netd, "a", "c"), "no daemon, still cut");
    assert!(talks(&netd, "a", "b"));
    netd.restart();
    let shown = netd.ok(&["partition", "web", "show"]);
    assert!(shown.contains("isolate"), "{shown}");
    assert!(!talks(&netd, "a", "c"));
    netd.ok(&["partition", "web", "heal"]);
    assert!(talks(&netd, "a", "c"));
}

fn verify_reports_the_observed_matrix(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "disjoint", "a", "b", "--", "c", "d"]);
    let out = netd.ok(&["partition", "web", "verify"]);
    assert!(out.contains("OK"), "{out}");
    // What it observed, pair by pair: real datagrams, not the intent echoed.
    let report = netd.json(&["partition", "web", "verify", "--json"]);
    let delivered = |from: &str, to: &str| {
        report["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .find(|p| p["from"] == from && p["to"] == to)
            .and_then(|p| p["received"].as_u64())
            .unwrap_or_else(|| panic!("no pair {from}->{to}: {report}"))
    };
    assert!(delivered("a", "b") > 0, "{report}");
    assert_eq!(delivered("a", "c"), 0, "{report}");
    assert_eq!(delivered("d", "b"), 0, "{report}");
    assert!(delivered("d", "c") > 0, "{report}");
    // And a pair that should talk but cannot is reported as a mismatch:
    // cut c->d behind the policy's back (only for the pair's real traffic).
    let c = guest(&netd, "web", "c");
    run_ok({
        let mut cmd = c.command("ip");
        cmd.args(["route", "add", "blackhole", "172.18.0.4/32"]);
        cmd
    });
    let failed = netd.cli(&["partition", "web", "verify"]);
    assert!(!failed.status.success(), "verify missed a broken pair");
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(text.contains("c -> d"), "{text}");
}

fn a_guest_partitions_its_own_network_but_no_other(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "db", "x"]);
    let binary = netd_binary();
    let socket = netd.socket.to_str().unwrap().to_owned();
    let inside = |args: &[&str]| {
        let mut full = vec![
            "exec",
            "web",
            "a",
            "--",
            binary.to_str().unwrap(),
            "--socket",
            &socket,
        ];
        full.extend_from_slice(args);
        netd.cli(&full)
    };
    let own = inside(&["partition", "isolate", "b"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert!(!talks(&netd, "a", "b"), "the guest's request took effect");
    let other = inside(&["partition", "db", "isolate", "x"]);
    assert!(
        !other.status.success(),
        "a guest partitioned another network"
    );
    let text = String::from_utf8_lossy(&other.stderr);
    assert!(text.contains("own network"), "{text}");
    let named_own = inside(&["partition", "web", "heal"]);
    assert!(
        named_own.status.success(),
        "{}",
        String::from_utf8_lossy(&named_own.stderr)
    );
    assert!(talks(&netd, "a", "b"));
}

fn a_guest_added_during_a_partition_does_not_inherit_a_removed_guests_cuts(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["partition", "web", "isolate", "d"]);
    netd.ok(&["guest", "rm", "web", "d"]);
    // The newcomer takes d's address, but not d's place in the partition.
    netd.ok(&["guest", "add", "web", "e", "--ip", "172.18.0.4"]);
    let e = guest(&netd, "web", "e");
    assert_eq!(ping(&e, ip_of("a"), 1), 1, "the newcomer was cut like d");
    assert!(talks(&netd, "a", "b"));
}

netd_tests::conformance!(
    isolate_cuts_a_guest_from_everyone_and_heal_restores_everything,
    isolate_keep_outside_leaves_the_internet_reachable,
    disjoint_splits_into_groups_and_refuses_duplicates_and_missing_guests,
    split_lets_a_bridge_guest_talk_to_both_sides_and_isolates_the_unlisted,
    cut_is_one_way,
    loss_30_drops_about_a_third_of_the_affected_packets,
    an_established_tcp_connection_stops_at_the_cut_and_resumes_after_heal,
    a_timed_partition_heals_by_itself_even_across_a_restart,
    a_partition_outlives_a_killed_daemon_and_heals_after_the_restart,
    verify_reports_the_observed_matrix,
    a_guest_partitions_its_own_network_but_no_other,
    a_guest_added_during_a_partition_does_not_inherit_a_removed_guests_cuts,
);
