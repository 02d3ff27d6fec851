//! The delay line (`netd partition ... --delay/--jitter/--correlation`),
//! checked with real traffic between guests: ping's round trip with a
//! delay in force, jitter's spread, a delay on one port only, the TAP
//! device made and removed with the policy, kept across a restart, and
//! nothing left after cleanup; on each dataplane (nftables: a TAP per
//! delaying clause, between guests only; tests/tests/faults.rs has its
//! refusals).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sockets::{serve_udp_echo, tcp_connect, tcp_listener, udp_ask, udp_socket},
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

/// A network "web" with guests a, b, c.
fn web<'a>(sandbox: &'a Sandbox, dataplane: &str) -> Netd<'a> {
    let netd = Netd::start_with_dataplane(sandbox, dataplane);
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
    assert!(
        rtts.len() >= 18,
        "{from} -> {to}: {} of 20 answered",
        rtts.len()
    );
    rtts
}

/// The delay line's TAP in the network's namespace: its ifindex, if any
/// (eBPF: `delay0`; nftables: `delay<clause>`, one per delaying clause).
fn delay_line(netd: &Netd) -> Option<u32> {
    network(netd)
        .run_in(|| {
            (0..4).find_map(|class| {
                nix::net::if_::if_nametoindex(format!("delay{class}").as_str()).ok()
            })
        })
        .unwrap()
}

fn ping_round_trips_take_the_delay_of_50ms(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --delay 50ms");
    let mut there = rtts(&netd, "a", "b");
    let mut back = rtts(&netd, "b", "a");
    let (p50_there, p50_back) = (median(&mut there), median(&mut back));
    eprintln!(
        "--delay 50ms a -> b: ping p50 {p50_there:.2} ms (a's echoes delayed), b -> a: {p50_back:.2} ms (the replies)"
    );
    assert!((50.0..=55.0).contains(&p50_there), "{there:?}");
    assert!((50.0..=55.0).contains(&p50_back), "{back:?}");
    let mut other = rtts(&netd, "a", "c");
    assert!(
        median(&mut other) < 20.0,
        "a -> c is not delayed: {other:?}"
    );
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "delayed") >= 36, "{status}");
    assert_eq!(
        counter(&status, "web", "dropped_delay_queue"),
        0,
        "{status}"
    );
}

fn jitter_spreads_the_round_trips(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --delay 50ms --jitter 20ms");
    // The median step between neighbours: a stall of the machine (a few
    // echoes 100 ms late under load) moves a mean, not the median.
    let steps = |rtts: &[f64]| {
        let mut steps: Vec<f64> = rtts.windows(2).map(|w| (w[0] - w[1]).abs()).collect();
        median(&mut steps)
    };
    let mut there = ping_rtts(&guest(&netd, "a"), ip_of("b"), 40);
    assert!(there.len() >= 36, "{there:?}");
    let free_step = steps(&there);
    let p50 = median(&mut there);
    let (low, high) = (there[0], there[there.len() - 1]);
    eprintln!(
        "--delay 50ms --jitter 20ms: ping p50 {p50:.2} ms, {low:.2} to {high:.2} ms over {} echoes, median step {free_step:.2} ms",
        there.len()
    );
    // Never earlier than delay - jitter; how much later depends on the
    // machine's load (real timing), so only a guard above.
    assert!(
        low >= 30.0 && high < 1_000.0,
        "from 50 - 20 ms on: {there:?}"
    );
    assert!(high - low >= 10.0, "jitter spreads them: {there:?}");
    // With every draw leaning on the last, neighbours are closer.
    partition(
        &netd,
        "cut --from a --to b --delay 50ms --jitter 20ms --correlation 90",
    );
    let correlated = ping_rtts(&guest(&netd, "a"), ip_of("b"), 40);
    assert!(correlated.len() >= 36, "{correlated:?}");
    let leaning_step = steps(&correlated);
    eprintln!("--correlation 90: median step between neighbours {leaning_step:.2} ms");
    assert!(
        leaning_step < free_step / 2.0,
        "correlated {correlated:?} vs free steps {free_step:.2}"
    );
}

fn a_delay_on_one_port_leaves_another_port_undelayed(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let b = guest(&netd, "b");
    for port in [7000, 7001] {
        serve_udp_echo(udp_socket(&b, SocketAddrV4::new(ip_of("b"), port)));
    }
    partition(&netd, "cut --from a --to b --delay 100ms --port 7000/udp");
    let client = udp_socket(&guest(&netd, "a"), SocketAddrV4::new(ip_of("a"), 0));
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let round_trip = |port: u16| {
        let mut times: Vec<f64> = (0..10)
            .map(|i| {
                let start = Instant::now();
                let answer = udp_ask(
                    &client,
                    SocketAddrV4::new(ip_of("b"), port),
                    &format!("{i}"),
                );
                assert!(answer.is_some(), "port {port}: echo {i} unanswered");
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(&mut times)
    };
    let (slow, fast) = (round_trip(7000), round_trip(7001));
    eprintln!(
        "--delay 100ms --port 7000/udp: port 7000 p50 {slow:.2} ms, port 7001 p50 {fast:.2} ms"
    );
    assert!(slow >= 100.0, "port 7000 is delayed: {slow}");
    assert!(fast < 50.0, "port 7001 is not: {fast}");
    let mut icmp = rtts(&netd, "a", "b");
    assert!(median(&mut icmp) < 50.0, "nor is ICMP: {icmp:?}");
}

fn the_delay_line_comes_and_goes_with_the_policy(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    assert_eq!(delay_line(&netd), None, "no delay, no TAP");
    partition(&netd, "isolate c + cut --from a --to b --delay 20ms");
    let tap = delay_line(&netd).expect("a TAP while a delay is in force");
    // Another delay of the same clause, the same TAP.
    partition(&netd, "isolate c + all --delay 30ms");
    assert_eq!(
        delay_line(&netd),
        Some(tap),
        "kept while a delay is in force"
    );
    let mut both_ways = rtts(&netd, "a", "b");
    assert!(
        median(&mut both_ways) >= 60.0,
        "30 ms each way: {both_ways:?}"
    );
    partition(&netd, "isolate c");
    assert_eq!(
        delay_line(&netd),
        None,
        "a policy without delay drops the TAP"
    );
    let mut plain = rtts(&netd, "a", "b");
    assert!(median(&mut plain) < 20.0, "{plain:?}");
    partition(&netd, "all --delay 10ms");
    assert!(delay_line(&netd).is_some());
    partition(&netd, "heal");
    assert_eq!(delay_line(&netd), None, "a heal drops the TAP");
}

fn a_restart_keeps_the_delay_in_force(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --delay 50ms");
    let tap = delay_line(&netd).expect("a TAP");
    netd.restart();
    assert_eq!(
        delay_line(&netd),
        Some(tap),
        "the TAP is adopted, not remade"
    );
    let mut there = rtts(&netd, "a", "b");
    let p50 = median(&mut there);
    eprintln!("after a restart, --delay 50ms: ping p50 {p50:.2} ms");
    assert!((50.0..=55.0).contains(&p50), "{there:?}");
}

fn cleanup_leaves_no_delay_line(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "all --delay 20ms");
    assert!(delay_line(&netd).is_some());
    netd.ok(&["cleanup"]);
    assert_eq!(
        Netns::list_with_prefix(&netd.prefix()),
        Vec::<String>::new(),
        "namespaces left after cleanup"
    );
    assert!(
        !sandbox.bpffs_dir.join("netd").exists(),
        "pins left after cleanup"
    );
}

fn a_policy_that_cannot_be_applied_leaves_no_delay_line(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let err = netd.err(&[
        "partition",
        "web",
        "all",
        "--delay",
        "50ms",
        "--jitter",
        "60ms",
    ]);
    assert!(
        err.contains("--jitter 60ms is more than --delay 50ms"),
        "{err}"
    );
    assert_eq!(delay_line(&netd), None);
}

fn verify_times_the_round_trip_against_the_delay(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(
        &netd,
        "cut --from a --to b --delay 50ms + cut --from b --to c --delay 20ms --jitter 10ms",
    );
    let out = netd.ok(&["partition", "web", "verify"]);
    eprintln!("{out}");
    assert!(out.contains("verify: OK"), "{out}");
    assert!(
        out.contains("a <-> b: round trip p50 ") && out.contains("the policy means 50 ms"),
        "{out}"
    );
    assert!(out.contains("the policy means 20 ms ± 10 ms"), "{out}");
    let report = netd.json(&["partition", "web", "verify"]);
    let rtt = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == "a" && p["to"] == "b")
        .map(|p| p["rtt"].clone())
        .unwrap();
    assert_eq!(rtt["samples"], 20, "{rtt}");
    assert_eq!(rtt["ok"], true, "{rtt}");
    let untimed = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == "a" && p["to"] == "c")
        .unwrap()
        .clone();
    assert!(
        untimed.get("rtt").is_none(),
        "a <-> c has no delay: {untimed}"
    );
    // b stops answering a behind the policy's back: nothing to time.
    let b = guest(&netd, "b");
    let blackhole = b
        .command("ip")
        .args(["route", "add", "blackhole", "172.18.0.1/32"])
        .status()
        .unwrap();
    assert!(blackhole.success());
    let failed = netd.cli(&["partition", "web", "verify"]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "verify exits 1 on a mismatch"
    );
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(
        text.contains("a <-> b: none of 20 echoes came back"),
        "{text}"
    );
}

fn a_tcp_stream_crosses_a_jittery_delay_whole(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "all --delay 5ms --jitter 3ms");
    let listener = tcp_listener(&guest(&netd, "b"), SocketAddrV4::new(ip_of("b"), 7100));
    let receiving = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepting");
        let mut data = Vec::new();
        stream.read_to_end(&mut data).expect("reading");
        data
    });
    let sent: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream = tcp_connect(
        &guest(&netd, "a"),
        SocketAddrV4::new(ip_of("b"), 7100),
        Some(SocketAddrV4::new(ip_of("a"), 0)),
    )
    .expect("connecting through the delay");
    stream.write_all(&sent).expect("sending");
    drop(stream);
    let received = receiving.join().expect("the receiver");
    assert!(
        received == sent,
        "{} of {} bytes, in order",
        received.len(),
        sent.len()
    );
    let status = netd.json(&["status"]);
    // Big segments are cut to the MTU on the way into the TAP.
    assert!(counter(&status, "web", "delayed") > 2_000, "{status}");
}

fn a_delay_line_left_behind_is_removed_at_start(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    netd.stop();
    // As a daemon killed between a policy's change and its store would leave it.
    let made = network(&netd)
        .command("ip")
        .args(["tuntap", "add", "dev", "delay0", "mode", "tap"])
        .status()
        .unwrap();
    assert!(made.success());
    assert!(delay_line(&netd).is_some());
    netd.restart();
    assert_eq!(delay_line(&netd), None, "no policy delays: the TAP goes");
    let mut plain = rtts(&netd, "a", "b");
    assert!(median(&mut plain) < 20.0, "{plain:?}");
}

fn a_delayed_duplicate_arrives_twice(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --delay 20ms --duplicate 100");
    let receiver = udp_socket(&guest(&netd, "b"), SocketAddrV4::new(ip_of("b"), 7200));
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let sender = udp_socket(&guest(&netd, "a"), SocketAddrV4::new(ip_of("a"), 0));
    for i in 0..50u8 {
        sender
            .send_to(&[i; 16], SocketAddrV4::new(ip_of("b"), 7200))
            .unwrap();
    }
    let mut arrivals = [0u32; 50];
    let mut buf = [0u8; 64];
    while let Ok(len) = receiver.recv(&mut buf) {
        assert_eq!(len, 16);
        arrivals[buf[0] as usize] += 1;
    }
    assert!(arrivals.iter().all(|&n| n == 2), "each twice: {arrivals:?}");
    let status = netd.json(&["status"]);
    assert_eq!(counter(&status, "web", "delayed"), 100, "{status}");
}

/// nftables: the delay table deleted by hand is drift (`netd status`
/// exit code 3, naming it), and the daemon puts it back.
fn a_deleted_delay_table_is_drift_and_restored(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --delay 50ms");
    let delete = || {
        let deleted = network(&netd)
            .command("nft")
            .args(["delete", "table", "netdev", "netd_delay"])
            .status()
            .unwrap();
        assert!(deleted.success(), "nft delete table");
    };
    // The daemon repairs every few seconds: again if it was quicker than
    // the look.
    let mut seen = None;
    for _ in 0..5 {
        delete();
        let out = netd.cli(&["status"]);
        if out.status.code() == Some(3) {
            seen = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
    }
    let report = seen.expect("a deleted delay table is drift (status exit code 3)");
    assert!(report.contains("netdev netd_delay is missing"), "{report}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while netd.cli(&["status"]).status.code() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the delay table was not restored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut there = rtts(&netd, "a", "b");
    assert!(median(&mut there) >= 50.0, "delayed again: {there:?}");
}

/// The nftables dataplane's rate shaper in the network's namespace
/// (`shape<clause>`, a veth with a tbf qdisc; its peer `shape<clause>-out`):
/// its ifindex, if any.
fn rate_shaper(netd: &Netd) -> Option<u32> {
    network(netd)
        .run_in(|| {
            (0..4).find_map(|class| {
                let into = nix::net::if_::if_nametoindex(format!("shape{class}").as_str()).ok()?;
                nix::net::if_::if_nametoindex(format!("shape{class}-out").as_str()).ok()?;
                Some(into)
            })
        })
        .unwrap()
}

/// nftables: a rate clause's packets go through a real shaper, made with
/// the policy, kept with a new rate and across a restart, drift when
/// deleted by hand and put back, removed by a policy without rates, a heal
/// and cleanup. A clause with a rate and a delay is shaped, then delayed.
fn a_rate_shaper_comes_and_goes_with_the_policy(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    assert_eq!(rate_shaper(&netd), None, "no rate, no shaper");
    partition(
        &netd,
        "isolate c + cut --from a --to b --rate 1mbit --delay 20ms",
    );
    let made = rate_shaper(&netd).expect("a shaper while a rate is in force");
    let mut there = rtts(&netd, "a", "b");
    let p50 = median(&mut there);
    eprintln!("--rate 1mbit --delay 20ms (nftables): ping p50 {p50:.2} ms");
    assert!(
        (20.0..=30.0).contains(&p50),
        "shaped, then delayed: {there:?}"
    );
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "delayed") >= 18, "{status}");

    partition(&netd, "isolate c + cut --from a --to b --rate 2mbit");
    assert_eq!(rate_shaper(&netd), Some(made), "kept with a new rate");
    netd.restart();
    assert_eq!(rate_shaper(&netd), Some(made), "adopted at a restart");

    // Deleted by hand: drift, and put back (again if the daemon's repair
    // was quicker than the look).
    let mut seen = None;
    for _ in 0..5 {
        if rate_shaper(&netd).is_some() {
            let deleted = network(&netd)
                .command("ip")
                .args(["link", "del", "shape1"])
                .status()
                .unwrap();
            assert!(deleted.success(), "ip link del shape1");
        }
        let out = netd.cli(&["status"]);
        if out.status.code() == Some(3) {
            seen = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
    }
    let report = seen.expect("a deleted shaper is drift (status exit code 3)");
    assert!(report.contains("rate shaper shape1 is missing"), "{report}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while netd.cli(&["status"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the shaper was not restored");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rate_shaper(&netd).is_some(), "restored");
    let mut plain = rtts(&netd, "a", "b");
    assert!(median(&mut plain) < 20.0, "through the shaper: {plain:?}");

    partition(&netd, "isolate c");
    assert_eq!(rate_shaper(&netd), None, "a policy without rates drops it");
    partition(&netd, "all --rate 1mbit");
    assert!(rate_shaper(&netd).is_some());
    partition(&netd, "heal");
    assert_eq!(rate_shaper(&netd), None, "a heal drops it");
    partition(&netd, "all --rate 1mbit");
    assert!(rate_shaper(&netd).is_some());
    netd.ok(&["cleanup"]);
    assert_eq!(
        Netns::list_with_prefix(&netd.prefix()),
        Vec::<String>::new(),
        "namespaces left after cleanup"
    );
    assert!(
        !std::path::Path::new("/sys/class/net/shape0").exists(),
        "no shaper escaped to the root namespace"
    );
}

netd_tests::conformance!(
    ping_round_trips_take_the_delay_of_50ms,
    jitter_spreads_the_round_trips,
    a_delay_on_one_port_leaves_another_port_undelayed,
    the_delay_line_comes_and_goes_with_the_policy,
    a_restart_keeps_the_delay_in_force,
    cleanup_leaves_no_delay_line,
    a_policy_that_cannot_be_applied_leaves_no_delay_line,
    verify_times_the_round_trip_against_the_delay,
    a_tcp_stream_crosses_a_jittery_delay_whole,
    a_delay_line_left_behind_is_removed_at_start,
);

/// Duplication is the eBPF dataplane's (tests/tests/faults.rs).
mod nftables_only {
    #[test]
    fn a_deleted_delay_table_is_drift_and_restored() {
        super::a_deleted_delay_table_is_drift_and_restored("nftables")
    }

    #[test]
    fn a_rate_shaper_comes_and_goes_with_the_policy() {
        super::a_rate_shaper_comes_and_goes_with_the_policy("nftables")
    }
}

mod ebpf_only {
    #[test]
    fn a_delayed_duplicate_arrives_twice() {
        super::a_delayed_duplicate_arrives_twice("ebpf")
    }
}
