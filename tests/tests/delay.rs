//! The delay line (`netd partition ... --delay/--jitter/--correlation`),
//! checked with real traffic between guests: ping's round trip with a
//! delay in force, jitter's spread, a delay on one port only, the TAP
//! device made and removed with the policy, kept across a restart, and
//! nothing left after cleanup. The nftables dataplane refuses delays
//! (tests/tests/faults.rs).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sockets::{serve_udp_echo, udp_ask, udp_socket},
    status::counter,
    traffic::{median, ping_rtts},
};

const GUESTS: [&str; 3] = ["a", "b", "c"];

fn guest(netd: &Netd, name: &str) -> Netns {
    let netns = format!("{}g-web.{name}", netd.prefix());
    Netns::open(&netns).unwrap_or_else(|err| panic!("opening namespace {netns}: {err:#}"))
}

fn network(netd: &Netd) -> Netns {
    Netns::open(&format!("{}n-web", netd.prefix())).expect("the network's namespace")
}

/// Guests a, b, c get 172.18.0.1-3 in that order.
fn ip_of(name: &str) -> Ipv4Addr {
    let index = GUESTS.iter().position(|g| *g == name).expect("a guest") as u8;
    Ipv4Addr::new(172, 18, 0, index + 1)
}

/// A network "web" with guests a, b, c, on the eBPF dataplane.
fn web(sandbox: &Sandbox) -> Netd<'_> {
    let netd = Netd::start_with_dataplane(sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    for g in GUESTS {
        netd.ok(&["guest", "add", "web", g]);
    }
    netd
}

fn partition(netd: &Netd, words: &str) -> String {
    let mut args = vec!["partition", "web"];
    args.extend(words.split_whitespace());
    netd.ok(&args)
}

/// Round trips from `from` to `to`, milliseconds (20 pings).
fn rtts(netd: &Netd, from: &str, to: &str) -> Vec<f64> {
    let rtts = ping_rtts(&guest(netd, from), ip_of(to), 20);
    assert!(rtts.len() >= 18, "{from} -> {to}: {} of 20 answered", rtts.len());
    rtts
}

/// The delay line's TAP in the network's namespace: its ifindex, if any.
fn delay_line(netd: &Netd) -> Option<u32> {
    network(netd)
        .run_in(|| nix::net::if_::if_nametoindex("delay0").ok())
        .unwrap()
}

#[test]
fn ping_round_trips_take_the_delay_of_50ms() {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox);
    partition(&netd, "cut --from a --to b --delay 50ms");
    let mut there = rtts(&netd, "a", "b");
    let mut back = rtts(&netd, "b", "a");
    let (p50_there, p50_back) = (median(&mut there), median(&mut back));
    eprintln!("--delay 50ms a -> b: ping p50 {p50_there:.2} ms (a's echoes delayed), b -> a: {p50_back:.2} ms (the replies)");
    assert!((50.0..=55.0).contains(&p50_there), "{there:?}");
    assert!((50.0..=55.0).contains(&p50_back), "{back:?}");
    let mut other = rtts(&netd, "a", "c");
    assert!(median(&mut other) < 20.0, "a -> c is not delayed: {other:?}");
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "delayed") >= 36, "{status}");
    assert_eq!(counter(&status, "web", "dropped_delay_queue"), 0, "{status}");
}
