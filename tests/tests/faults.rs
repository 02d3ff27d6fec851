//! Faults beyond cuts (`netd partition ... --duplicate/--corrupt/--rate/
//! --port/--proto`, clauses joined by `+`), checked with real traffic
//! between guests: duplicates counted at the receiver, corrupt datagrams
//! never delivered to the application, a port fault that leaves the pair's
//! other ports alone, a rate measured by iperf3, faults set from inside a
//! guest (its own network only), and what each dataplane refuses.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::{Netd, netd_binary},
    sockets::{serve_tcp_echo, tcp_ask, tcp_connect, tcp_listener, udp_socket},
    status::counter,
};

const GUESTS: [&str; 3] = ["a", "b", "c"];

fn guest(netd: &Netd, name: &str) -> Netns {
    let netns = format!("{}g-web.{name}", netd.prefix());
    Netns::open(&netns).unwrap_or_else(|err| panic!("opening namespace {netns}: {err:#}"))
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

fn refused(netd: &Netd, words: &str) -> String {
    let mut args = vec!["partition", "web"];
    args.extend(words.split_whitespace());
    netd.err(&args)
}

/// Sends datagrams numbered 0..count from guest `from` to guest `to` on
/// UDP port `port`, and returns how often each number arrived at the
/// receiving socket. The receiver counts until the line has been quiet for
/// 500 ms.
fn udp_arrivals(netd: &Netd, from: &str, to: &str, port: u16, count: u32) -> BTreeMap<u32, u32> {
    let receiver = udp_socket(&guest(netd, to), SocketAddrV4::new(ip_of(to), port));
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let counting = std::thread::spawn(move || {
        let mut arrivals: BTreeMap<u32, u32> = BTreeMap::new();
        let mut buf = [0u8; 2048];
        while let Ok(len) = receiver.recv(&mut buf) {
            assert_eq!(len, 64, "a datagram arrived with another length");
            let number = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert!(
                buf[4..64].iter().all(|&b| b == 0x5a),
                "datagram {number} arrived damaged"
            );
            *arrivals.entry(number).or_default() += 1;
        }
        arrivals
    });
    let sender = udp_socket(&guest(netd, from), SocketAddrV4::new(ip_of(from), 0));
    let target = SocketAddrV4::new(ip_of(to), port);
    for number in 0..count {
        let mut datagram = [0x5a_u8; 64];
        datagram[..4].copy_from_slice(&number.to_be_bytes());
        sender.send_to(&datagram, target).expect("send");
        if number % 50 == 49 {
            // Pace the burst so no socket buffer overflows on the way.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    counting.join().expect("the counting thread")
}

fn total(arrivals: &BTreeMap<u32, u32>) -> u32 {
    arrivals.values().sum()
}

/// A guest's IP checksum errors, from its own namespace's counters.
fn ip_checksum_errors(netd: &Netd, name: &str) -> u64 {
    let output = guest(netd, name)
        .command("cat")
        .arg("/proc/net/netstat")
        .output()
        .expect("reading /proc/net/netstat");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().filter(|line| line.starts_with("IpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .map(|(_, value)| value.parse().unwrap())
        .expect("IpExt InCsumErrors")
}

fn duplicates_are_counted_at_the_receiver(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --duplicate 100");
    let arrivals = udp_arrivals(&netd, "a", "b", 6000, 300);
    assert_eq!(arrivals.len(), 300, "every datagram arrived");
    assert!(
        arrivals.values().all(|&n| n == 2),
        "each datagram arrives twice: {:?}",
        arrivals
            .iter()
            .filter(|(_, n)| **n != 2)
            .collect::<Vec<_>>()
    );
    let reverse = udp_arrivals(&netd, "b", "a", 6000, 100);
    assert_eq!(total(&reverse), 100, "the other way is untouched");

    partition(&netd, "cut --from a --to b --duplicate 30");
    let arrivals = udp_arrivals(&netd, "a", "b", 6001, 1000);
    let copies = total(&arrivals) - arrivals.len() as u32;
    eprintln!("--duplicate 30: {copies} duplicates of 1000 datagrams");
    assert_eq!(arrivals.len(), 1000);
    assert!((220..=380).contains(&copies), "{copies} duplicates of 1000");
    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "web", "duplicated") >= 300 + copies as u64,
        "{status}"
    );
}

fn corrupt_datagrams_never_reach_the_application(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let before = ip_checksum_errors(&netd, "b");
    partition(&netd, "cut --from a --to b --corrupt 100");
    let arrivals = udp_arrivals(&netd, "a", "b", 6000, 200);
    assert!(
        arrivals.is_empty(),
        "corrupt datagrams arrived: {arrivals:?}"
    );
    let errors = ip_checksum_errors(&netd, "b") - before;
    assert!(
        errors >= 200,
        "b's stack dropped {errors} of 200 for their checksum"
    );

    // Half damaged: the rest arrive whole (udp_arrivals checks every byte).
    partition(&netd, "cut --from a --to b --corrupt 50");
    let arrivals = udp_arrivals(&netd, "a", "b", 6001, 1000);
    eprintln!("--corrupt 50: {} of 1000 delivered", arrivals.len());
    assert!((400..=600).contains(&arrivals.len()), "{}", arrivals.len());
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "corrupted") >= 600, "{status}");
}

fn a_port_fault_leaves_the_pairs_other_ports_alone(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --port 6000/udp");
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6000, 100)), 0);
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6001, 100)), 100);
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6000, 100)), 100);

    // TCP: a connection to the cut port fails, one to the next port works.
    for port in [7000, 7001] {
        serve_tcp_echo(tcp_listener(
            &guest(&netd, "b"),
            SocketAddrV4::new(ip_of("b"), port),
        ));
    }
    partition(&netd, "cut --from a --to b --both-ways --port 7000/tcp");
    let connect = |port| -> Option<TcpStream> {
        tcp_connect(
            &guest(&netd, "a"),
            SocketAddrV4::new(ip_of("b"), port),
            None,
        )
        .ok()
    };
    assert!(connect(7000).is_none(), "the cut port answered");
    let mut stream = connect(7001).expect("the other port answers");
    assert!(tcp_ask(&mut stream, "hello").contains("hello"));
    assert_eq!(
        total(&udp_arrivals(&netd, "a", "b", 7000, 50)),
        50,
        "UDP on the same port number is not TCP"
    );
}

/// A guest damages its own network's traffic from inside (`netd exec ...
/// -- netd partition ...`, the rule for cuts), and no other network's.
fn a_guest_applies_faults_to_its_own_network_from_inside(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "db", "x"]);
    let binary = netd_binary();
    let socket = netd.socket.to_str().unwrap().to_owned();
    let inside = |words: &str| {
        let mut args = vec!["exec", "web", "a", "--", binary.to_str().unwrap()];
        args.extend(["--socket", &socket, "partition"]);
        args.extend(words.split_whitespace());
        netd.cli(&args)
    };
    let own = inside("cut --from a --to b --port 6200/udp + cut --from a --to c --loss 100");
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6200, 100)), 0);
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6201, 100)), 100);
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6202, 100)), 0);
    let other = inside("db all --loss 50");
    assert!(!other.status.success(), "a guest damaged another network");
    let text = String::from_utf8_lossy(&other.stderr);
    assert!(text.contains("own network"), "{text}");
    let healed = inside("heal");
    assert!(
        healed.status.success(),
        "{}",
        String::from_utf8_lossy(&healed.stderr)
    );
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6203, 100)), 100);
}

fn clauses_apply_together_and_show_says_which(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let shown = partition(
        &netd,
        "isolate c + cut --from a --to b --loss 100 --port 6000",
    );
    assert!(
        shown.contains("isolate c + cut --from a --to b --loss 100 --port 6000"),
        "{shown}"
    );
    assert!(shown.contains("p some ports or protocols"), "{shown}");
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6001, 20)), 0);
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6000, 20)), 0);
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6001, 20)), 20);
    let json = netd.json(&["partition", "web", "show"]);
    assert_eq!(json["state"]["partition"]["and"][0]["port"], 6000, "{json}");
    assert_eq!(
        json["rules"]["faults"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    // A new policy replaces the whole of the old one.
    partition(&netd, "cut --from b --to a");
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6001, 20)), 20);
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6000, 20)), 20);
}

/// iperf3's UDP test from a to b at `offered` for `seconds`: the rate b
/// received in each second (the server's intervals) and over the whole
/// run (the receiver's sum), bits per second.
fn iperf3_udp_received(
    sandbox: &Sandbox,
    netd: &Netd,
    offered: &str,
    seconds: u32,
) -> (Vec<f64>, f64) {
    // The namespace's file must stay open until the server is spawned.
    let b = guest(netd, "b");
    let mut server = b.command("iperf3");
    server
        .args(["-s", "-1", "-J", "-B"])
        .arg(ip_of("b").to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sandbox.spawn(server).expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let output = guest(netd, "a")
        .command("iperf3")
        .args([
            "-c",
            &ip_of("b").to_string(),
            "-u",
            "-b",
            offered,
            "-t",
            &seconds.to_string(),
            "-i",
            "1",
            "--get-server-output",
            "-J",
        ])
        .output()
        .expect("running iperf3 (`cargo xtask setup` installs it)");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "iperf3's JSON: {err}: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let intervals = report["server_output_json"]["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("no server intervals in {report}"));
    // What iperf3 reports for the whole run: the receiver's sum.
    let whole = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no sum received in {report}"));
    // Whole seconds: the server may close with a last sliver of one.
    let each = intervals
        .iter()
        .filter(|interval| interval["sum"]["seconds"].as_f64().unwrap_or(0.0) > 0.9)
        .filter_map(|interval| interval["sum"]["bits_per_second"].as_f64())
        .collect();
    (each, whole)
}

fn rate_1mbit_is_what_iperf3_measures(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --rate 1mbit");
    let (seconds, whole) = iperf3_udp_received(&sandbox, &netd, "4M", 5);
    let shown: Vec<String> = seconds
        .iter()
        .map(|bits| format!("{:.0}", bits / 1e3))
        .collect();
    eprintln!(
        "--rate 1mbit ({dataplane}): iperf3 UDP at 4 Mbit/s offered for 5 s, kbit/s received in each second: {}; over the whole run: {:.0}",
        shown.join(" "),
        whole / 1e3
    );
    assert!(seconds.len() >= 4, "{seconds:?}");
    // The rate: every second after the first, within 10 % (iperf3 counts
    // payload, 1448 of every 1476 IP bytes: about 2 % under).
    for (index, bits) in seconds.iter().enumerate().skip(1) {
        assert!(
            (900_000.0..=1_100_000.0).contains(bits),
            "second {index}: {bits:.0} bit/s through --rate 1mbit ({seconds:?})"
        );
    }
    // The first second holds the burst (50 ms of the rate) and no more,
    // on nftables too: its rate is a tbf shaper, not `limit` (whose
    // bucket held a second of the rate on top; README).
    assert!(
        (900_000.0..=1_100_000.0).contains(&seconds[0]),
        "first second: {:.0} bit/s ({seconds:?})",
        seconds[0]
    );
    // And so the whole run, as iperf3 reports it, within 10 %.
    assert!(
        (900_000.0..=1_100_000.0).contains(&whole),
        "the whole run: {whole:.0} bit/s ({seconds:?})"
    );
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "dropped_rate") > 0, "{status}");
}

fn bad_values_are_refused_before_anything_changes(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    for (words, part) in [
        ("isolate a --loss 150", "--loss 150 is out of range"),
        ("all --rate 1xbit", "kbit, mbit or gbit"),
        ("all --port 70000", "1 to 65535"),
        ("isolate a + heal", "stands alone"),
    ] {
        let err = refused(&netd, words);
        assert!(err.contains(part), "{words}: {err}");
    }
    assert_eq!(total(&udp_arrivals(&netd, "a", "b", 6000, 10)), 10);
}

/// Whether one of three datagrams gets from `from` to `to`.
fn talks(netd: &Netd, from: &str, to: &str) -> bool {
    total(&udp_arrivals(netd, from, to, 6100, 3)) > 0
}

fn presets_cut_what_their_definitions_say(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    // Halves a | b c, b the bridge: only a and c are cut apart.
    partition(&netd, "bridge");
    for (from, to, open) in [
        ("a", "b", true),
        ("b", "a", true),
        ("b", "c", true),
        ("c", "b", true),
        ("a", "c", false),
        ("c", "a", false),
    ] {
        assert_eq!(talks(&netd, from, to), open, "bridge: {from} -> {to}");
    }
    // A ring of three: each hears the one before it and itself.
    partition(&netd, "majorities-ring");
    for (from, to, open) in [
        ("c", "a", true),
        ("a", "b", true),
        ("b", "c", true),
        ("b", "a", false),
        ("c", "b", false),
        ("a", "c", false),
    ] {
        assert_eq!(
            talks(&netd, from, to),
            open,
            "majorities-ring: {from} -> {to}"
        );
    }
    let shown = partition(&netd, "random-halves");
    let seed = shown
        .split("--seed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed printed: {shown}"))
        .to_owned();
    let replay = partition(&netd, &format!("random-halves --seed {seed}"));
    let matrix = |text: &str| {
        text.lines()
            .skip_while(|l| !l.starts_with("from"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        matrix(&shown),
        matrix(&replay),
        "the seed replays the split"
    );
}

/// Polls until `check` holds (a failure guard of 30 s, no timing asserted).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn a_flap_is_observed_in_both_states(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    let shown = partition(&netd, "isolate a --flap 2s");
    assert!(shown.contains("step 1 of 2 in force: isolate a"), "{shown}");
    assert!(shown.contains("s: fullmesh"), "{shown}");
    for round in 0..2 {
        eventually(&format!("cut, round {round}"), || !talks(&netd, "b", "a"));
        eventually(&format!("healed, round {round}"), || talks(&netd, "b", "a"));
    }
    let events = netd.ok(&["partition", "web", "show"]);
    assert!(events.contains("--flap 2s"), "{events}");
}

fn a_schedule_carries_on_across_a_restart(dataplane: &str) {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox, dataplane);
    partition(
        &netd,
        "schedule 6s cut --from a --to b then 1h cut --from b --to a",
    );
    assert!(!talks(&netd, "a", "b"), "step 1: a -> b cut");
    assert!(talks(&netd, "b", "a"));
    netd.restart();
    eventually("step 2 after the restart", || {
        !talks(&netd, "b", "a") && talks(&netd, "a", "b")
    });
    let shown = partition(&netd, "show");
    assert!(
        shown.contains("step 2 of 2 in force: cut --from b --to a"),
        "{shown}"
    );
    assert!(shown.contains(": fullmesh"), "the heal comes next: {shown}");
}

fn verify_measures_loss_shares_against_the_policy(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --loss 30");
    let out = netd.ok(&["partition", "web", "verify"]);
    assert!(out.contains("verify: OK"), "{out}");
    assert!(
        out.contains("a -> b: ") && out.contains("the policy means 140"),
        "{out}"
    );
    let report = netd.json(&["partition", "web", "verify"]);
    let pair = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == "a" && p["to"] == "b")
        .unwrap()
        .clone();
    assert_eq!(pair["sent"], 200, "{pair}");
    eprintln!("verify --loss 30: {} of 200 arrived", pair["received"]);
}

/// The pair a -> b's rate check in `verify --json`'s report.
fn rate_check(report: &serde_json::Value, from: &str, to: &str) -> serde_json::Value {
    report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == from && p["to"] == to)
        .map(|p| p["rate"].clone())
        .unwrap()
}

/// Raises the rate a -> b is held to, behind the daemon's back: in the
/// eBPF policy map, or in the nftables dataplane's shaper.
fn raise_the_rate_secretly(sandbox: &Sandbox, netd: &Netd, dataplane: &str, times: u64) {
    if dataplane == "nftables" {
        // The clause's shaper.
        let router = Netns::open(&format!("{}n-web", netd.prefix())).unwrap();
        let tbf = format!(
            "qdisc change dev shape0 root tbf rate {}bit burst {} limit {}",
            1_000_000 * times,
            6_250 * times,
            12_500 * times
        );
        let status = router
            .command("tc")
            .args(tbf.split_whitespace())
            .status()
            .unwrap();
        assert!(status.success(), "tc {tbf}");
        return;
    }
    use aya::maps::{HashMap, Map, MapData};
    use netd_common::{maps, partition::PartitionPolicy};
    let pin = sandbox
        .bpffs_dir
        .join("netd")
        .join(maps::PIN_LAYOUT_VERSION)
        .join("maps")
        .join(maps::PARTITIONS);
    let data = MapData::from_pin(&pin).unwrap_or_else(|err| panic!("{}: {err}", pin.display()));
    let mut policies: HashMap<MapData, u32, PartitionPolicy> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    let zones: Vec<u32> = policies.keys().map(Result::unwrap).collect();
    let mut raised = 0;
    for zone in zones {
        let mut policy = policies.get(&zone, 0).unwrap();
        for class in policy.faults.iter_mut().take(policy.count as usize) {
            if class.rate_bytes_per_sec > 0 {
                class.rate_bytes_per_sec *= times;
                class.burst_bytes *= times;
                raised += 1;
            }
        }
        policies.insert(zone, policy, 0).unwrap();
    }
    assert_eq!(raised, 1, "one class with a rate");
}

fn verify_measures_the_rate_in_force(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "cut --from a --to b --rate 1mbit");
    let out = netd.ok(&["partition", "web", "verify"]);
    eprintln!("{out}");
    assert!(out.contains("verify: OK"), "{out}");
    assert!(
        out.contains("a -> b: ") && out.contains("the policy means 1.00 Mbit/s (± 15 %)"),
        "{out}"
    );
    let report = netd.json(&["partition", "web", "verify"]);
    let check = rate_check(&report, "a", "b");
    let delivered = check["delivered_bits_per_sec"].as_f64().unwrap();
    eprintln!("verify --rate 1mbit ({dataplane}): {delivered:.0} bit/s delivered");
    assert_eq!(check["ok"], true, "{check}");
    assert!((850_000.0..=1_150_000.0).contains(&delivered), "{check}");
    assert!(
        rate_check(&report, "b", "a").is_null(),
        "b -> a has no rate"
    );

    // Four times the rate, behind the daemon's back: verify sees it.
    // The daemon repairs a drifted nftables table every few seconds: when
    // its repair comes first, verify rightly finds the rate again, and the
    // rule is changed once more.
    let mut tries = 0;
    let (failed, text) = loop {
        tries += 1;
        raise_the_rate_secretly(&sandbox, &netd, dataplane, 4);
        let failed = netd.cli(&["partition", "web", "verify"]);
        let text = String::from_utf8_lossy(&failed.stdout).into_owned();
        eprintln!("{text}");
        if failed.status.success() && dataplane == "nftables" && tries < 4 {
            assert!(text.contains("verify: OK"), "{text}");
            continue;
        }
        break (failed, text);
    };
    assert_eq!(failed.status.code(), Some(1), "verify exits 1: {text}");
    assert!(
        text.contains("a -> b: ")
            && text.contains("delivered of")
            && text.contains("but the policy means 1.00 Mbit/s (850.0 kbit/s to 1.15 Mbit/s)"),
        "{text}"
    );
    let delivered: f64 = text
        .split("a -> b: ")
        .nth(1)
        .and_then(|rest| rest.split(" Mbit/s delivered").next())
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no delivered Mbit/s for a -> b in {text}"));
    eprintln!("verify, the rate secretly raised to 4mbit ({dataplane}): {delivered} Mbit/s");
    assert!(delivered > 2.0, "{delivered}");
}

fn verify_counts_duplicates(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "all --duplicate 50");
    let out = netd.ok(&["partition", "web", "verify"]);
    assert!(out.contains("verify: OK"), "{out}");
    assert!(out.contains("the policy means 300"), "{out}");
}

fn the_nftables_dataplane_refuses_what_it_cannot_do(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox, dataplane);
    partition(&netd, "isolate c");
    for (words, part) in [
        ("all --duplicate 5", "cannot duplicate packets"),
        ("all --corrupt 5", "cannot corrupt packets"),
        (
            "isolate a --delay 50ms",
            "cannot delay traffic with the outside",
        ),
        (
            "all --rate 1mbit --port 80",
            "cannot limit the rate of one port",
        ),
        ("isolate a --port 80", "traffic with the outside"),
        ("isolate a + all --loss 30", "different --loss shares"),
    ] {
        let err = refused(&netd, words);
        assert!(
            err.contains(part) && err.contains("--dataplane ebpf"),
            "{words}: {err}"
        );
    }
    let shown = partition(&netd, "show");
    assert!(shown.contains("isolate c"), "nothing changed: {shown}");
    assert_eq!(total(&udp_arrivals(&netd, "a", "c", 6000, 10)), 0);
}

mod nftables_only {
    #[test]
    fn the_nftables_dataplane_refuses_what_it_cannot_do() {
        super::the_nftables_dataplane_refuses_what_it_cannot_do("nftables")
    }
}

netd_tests::conformance!(
    a_port_fault_leaves_the_pairs_other_ports_alone,
    a_guest_applies_faults_to_its_own_network_from_inside,
    verify_measures_loss_shares_against_the_policy,
    a_flap_is_observed_in_both_states,
    a_schedule_carries_on_across_a_restart,
    presets_cut_what_their_definitions_say,
    rate_1mbit_is_what_iperf3_measures,
    verify_measures_the_rate_in_force,
    clauses_apply_together_and_show_says_which,
    bad_values_are_refused_before_anything_changes,
);

/// What only the eBPF dataplane does: duplication, corruption (and delays:
/// tests/tests/delay.rs).
mod ebpf_only {
    #[test]
    fn duplicates_are_counted_at_the_receiver() {
        super::duplicates_are_counted_at_the_receiver("ebpf")
    }

    #[test]
    fn corrupt_datagrams_never_reach_the_application() {
        super::corrupt_datagrams_never_reach_the_application("ebpf")
    }

    #[test]
    fn verify_counts_duplicates() {
        super::verify_counts_duplicates("ebpf")
    }
}
