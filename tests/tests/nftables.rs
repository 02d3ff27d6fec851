//! What only the nftables dataplane has: its tables (every object tagged
//! `comment "netd"`), its manners towards tables it does not own, drift
//! reported and repaired, and forwards that are map elements, not rules.
//! Each test runs a daemon with `--dataplane nftables` whatever
//! `NETD_TEST_DATAPLANE` says.
//!
//! Partitions are not tested here: no CLI drives `apply_partition` yet
//! (`netd partition` is being added elsewhere); the partition scripts are
//! unit-tested in `netd/src/dataplane/nft/script.rs`.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    thread,
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, tcp_ask, tcp_connect, tcp_listener},
    status::{drift, status},
    traffic::{ping, run_ok},
};
use serde_json::Value;

const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 2);

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn gateway(netd: &Netd) -> Netns {
    open(&format!("{}gw", netd.prefix()))
}

fn network(netd: &Netd, name: &str) -> Netns {
    open(&format!("{}n-{name}", netd.prefix()))
}

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    open(&format!("{}g-{network}.{guest}", netd.prefix()))
}

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

fn nft(ns: &Netns, args: &[&str]) -> String {
    run_ok({
        let mut c = ns.command("nft");
        c.args(args);
        c
    })
}

fn nft_json(ns: &Netns, args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    serde_json::from_str(&nft(ns, &all)).expect("nft JSON")
}

fn nft_script(ns: &Netns, script: &str) {
    use std::io::Write;
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "nft -f - failed:\n{script}"
    );
}

/// The objects of one kind in an `nft -j` listing.
fn objects<'a>(listing: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    listing["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(move |object| object.get(kind))
}

fn tables(ns: &Netns) -> Vec<String> {
    nft(ns, &["list", "tables"])
        .lines()
        .map(|l| l.trim().trim_start_matches("table ").to_owned())
        .collect()
}

fn has_table(ns: &Netns, table: &str) -> bool {
    tables(ns).iter().any(|t| t == table)
}

/// Polls `done` every 100 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One exchange with a TCP echo server from `ns`, or the connect error.
fn ask(ns: &Netns, to: SocketAddrV4, line: &str) -> std::io::Result<String> {
    let mut stream = tcp_connect(ns, to, None)?;
    Ok(tcp_ask(&mut stream, line))
}

/// A daemon with the nftables dataplane, network "web", guests a (serving
/// TCP echo on 80, published as 8080) and b.
fn web(sandbox: &Sandbox) -> Netd<'_> {
    let netd = Netd::start_with_dataplane(sandbox, "nftables");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    serve_tcp_echo(tcp_listener(&guest(&netd, "web", "a"), any(80)));
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    netd
}

/// Every object of `family netd` in `ns` carries `comment "netd"`; returns
/// how many objects of each kind there are. Read from nft's text: nft 1.0.6
/// leaves table and chain comments out of its JSON.
fn assert_tagged(ns: &Netns, family: &str) -> BTreeMap<String, usize> {
    let text = nft(ns, &["list", "table", family, "netd"]);
    let tag = "comment \"netd\"";
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("table {family} netd {{").as_str())
    );
    assert_eq!(lines.next().map(str::trim), Some(tag), "{text}");
    let mut kinds = BTreeMap::from([("table".to_owned(), 1)]);
    // Objects open with "\t<kind> <name> {" and close with "\t}".
    let mut open: Option<(String, bool)> = None;
    for line in lines {
        if let Some(header) = line.strip_prefix('\t').filter(|l| !l.starts_with('\t')) {
            if header == "}" {
                let (kind, tagged) = open.take().expect("an object to close");
                assert!(
                    tagged,
                    "a {kind} of {family} netd in {} is untagged:\n{text}",
                    ns.name()
                );
                *kinds.entry(kind).or_insert(0) += 1;
            } else if let Some(kind) = header.split_whitespace().next() {
                open = Some((kind.to_owned(), false));
            }
            continue;
        }
        let Some((kind, tagged)) = open.as_mut() else {
            continue;
        };
        let line = line.trim();
        if line == tag {
            *tagged = true;
        } else if kind == "chain" && !line.starts_with("type ") && !line.is_empty() {
            assert!(
                line.ends_with(tag),
                "untagged rule in {}: {line}",
                ns.name()
            );
            *kinds.entry("rule".to_owned()).or_insert(0) += 1;
        }
    }
    kinds
}

#[test]
fn netds_tables_are_in_the_gateway_and_network_namespaces_every_object_tagged() {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox);
    let gw = gateway(&netd);
    let net = network(&netd, "web");

    assert_eq!(tables(&gw), ["inet netd"]);
    assert_eq!(tables(&net), ["bridge netd"]);
    assert!(tables(&guest(&netd, "web", "a")).is_empty());
    let kinds = assert_tagged(&gw, "inet");
    assert_eq!(kinds["table"], 1);
    assert_eq!(kinds["chain"], 5, "{kinds:?}");
    // zones 1, marks 2, published 3, translate 3 (hairpin, TCP/UDP into
    // host_nat_ports, the rest), between 6 (invalid, the port share, three
    // for cuts through published ports, other networks).
    assert_eq!(kinds["rule"], 15, "{kinds:?}");
    let kinds = assert_tagged(&net, "bridge");
    // The hooks' four chains (rates go through shapers, not this table).
    assert_eq!(kinds["chain"], 4, "{kinds:?}");
    // The first nine, two that drop what crosses an internal network's
    // edge and the port-fault rules.
    assert_eq!(kinds["rule"], 13, "{kinds:?}");

    // The forward is a map element; the network a map element and a route.
    let forwards = nft(&gw, &["list", "map", "inet", "netd", "forwards"]);
    assert!(
        forwards.contains("tcp . 8080 : 172.18.0.1 . 80"),
        "{forwards}"
    );
    let rules = run_ok({
        let mut c = gw.command("ip");
        c.args(["rule", "show"]);
        c
    });
    assert!(rules.contains("fwmark 0x1 lookup 1001"), "{rules}");
    let route = run_ok({
        let mut c = gw.command("ip");
        c.args(["route", "show", "table", "1001"]);
        c
    });
    assert!(
        route.contains("default via 172.18.192.2 dev nu0"),
        "{route}"
    );

    // netd status lists them, and reports no drift.
    let (code, json) = status(&netd);
    assert_eq!(code, 0, "{:?}", drift(&json));
    assert_eq!(json["dataplane"], "nftables");
    let listed: Vec<String> = json["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|ns| ns["nft_tables"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert!(listed.contains(&"inet netd".to_owned()), "{listed:?}");
    assert!(listed.contains(&"bridge netd".to_owned()), "{listed:?}");

    // Removing the network takes its elements, counter and routing rule.
    netd.ok(&["network", "create", "db"]);
    let before = nft(&gw, &["list", "map", "inet", "netd", "zone_of_port"]);
    assert!(before.contains("\"nu1\" : 2"), "{before}");
    netd.ok(&["network", "rm", "db"]);
    let after = nft(&gw, &["list", "table", "inet", "netd"]);
    assert!(
        !after.contains("nu1") && !after.contains("dropped_cross_network_z2"),
        "{after}"
    );
    let rules = run_ok({
        let mut c = gw.command("ip");
        c.args(["rule", "show"]);
        c
    });
    assert!(!rules.contains("lookup 1002"), "{rules}");
}

const OTHER_GATEWAY_TABLE: &str = "table inet other {
	set allowed { type ipv4_addr; elements = { 192.0.2.1 } }
	chain input { type filter hook input priority 10; policy accept;
		tcp dport 9 ip saddr @allowed accept
	}
}
";

const OTHER_NETWORK_TABLE: &str = "table bridge other {
	chain forward { type filter hook forward priority 10; policy accept;
		ether type ip6 accept
	}
}
";

#[test]
fn tables_netd_does_not_own_survive_every_netd_operation() {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox);
    let gw = gateway(&netd);
    let net = network(&netd, "web");
    nft_script(&gw, OTHER_GATEWAY_TABLE);
    nft_script(&net, OTHER_NETWORK_TABLE);
    let gw_before = nft(&gw, &["list", "table", "inet", "other"]);
    let net_before = nft(&net, &["list", "table", "bridge", "other"]);
    let untouched = |after: &str| {
        assert_eq!(
            nft(&gw, &["list", "table", "inet", "other"]),
            gw_before,
            "after {after}"
        );
        assert_eq!(
            nft(&net, &["list", "table", "bridge", "other"]),
            net_before,
            "after {after}"
        );
    };

    let steps: &[&[&str]] = &[
        &["network", "create", "db"],
        &["network", "create", "routed", "--subnet", "10.77.1.0/24"],
        &["guest", "add", "web", "c"],
        &["guest", "add", "db", "x"],
        &["port", "add", "web", "b", "9000-9009:9000-9009/udp"],
        &["port", "add", "db", "x", "7000:70"],
        &["port", "rm", "web", "b", "9000-9009:9000-9009/udp"],
        &["guest", "rm", "web", "c"],
        &["guest", "rm", "db", "x"],
        &["network", "rm", "db"],
        &["network", "rm", "routed"],
    ];
    for step in steps {
        netd.ok(step);
        untouched(&step.join(" "));
    }
    assert_eq!(tables(&gw), ["inet netd", "inet other"]);

    // netd's own table deleted and repaired: still only netd's.
    nft(&gw, &["delete", "table", "inet", "netd"]);
    assert!(
        eventually(Duration::from_secs(15), || has_table(&gw, "inet netd")),
        "not repaired:\n{}",
        netd.log()
    );
    untouched("a repair");

    netd.restart();
    untouched("a restart");
    netd.kill9();
    netd.restart();
    untouched("kill -9 and a start");
    let answer = ask(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        "still here",
    )
    .expect("the published port still works");
    assert!(answer.ends_with("still here"), "{answer}");
    let (code, json) = status(&netd);
    assert_eq!(code, 0, "{:?}", drift(&json));
}

/// Breaks something until `netd status` sees it (the daemon's repair tick
/// may land between the damage and the status), and returns the drift
/// lines.
fn break_until_seen(netd: &Netd, mut damage: impl FnMut()) -> Vec<String> {
    for _ in 0..3 {
        damage();
        let (code, json) = status(netd);
        if code == 0 {
            continue;
        }
        assert_eq!(code, 3, "netd status exits 3 on drift");
        return drift(&json);
    }
    panic!("the daemon repaired the damage before status could see it, three times");
}

fn repaired(netd: &Netd) {
    assert!(
        eventually(Duration::from_secs(12), || status(netd).0 == 0),
        "drift not repaired within 12 s: {:?}\n{}",
        drift(&status(netd).1),
        netd.log()
    );
}

#[test]
fn a_deleted_table_is_drift_and_the_daemon_restores_it_with_traffic() {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox);
    let gw = gateway(&netd);
    let net = network(&netd, "web");
    let a = guest(&netd, "web", "a");
    let b = guest(&netd, "web", "b");
    let to_port = SocketAddrV4::new(HOST_UPLINK, 8080);
    assert_eq!(ping(&a, INTERNET_SERVER, 1), 1);

    // The gateway's table: NAT out and the published port stop until the
    // repair puts it back.
    let lines = break_until_seen(&netd, || {
        nft(&gw, &["delete", "table", "inet", "netd"]);
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("gateway: nftables table inet netd is missing")),
        "{lines:?}"
    );
    repaired(&netd);
    assert!(has_table(&gw, "inet netd"));
    assert_eq!(ping(&a, INTERNET_SERVER, 2), 2, "NAT works again");
    let answer = ask(&sandbox.internet, to_port, "after repair").expect("published again");
    assert!(answer.ends_with("after repair"), "{answer}");
    let answer = ask(&b, SocketAddrV4::new(GATEWAY_IP, 8080), "hairpin").expect("hairpin");
    assert!(answer.starts_with("172.18.255.2:"), "{answer}");

    // A chain emptied by hand is drift too.
    let lines = break_until_seen(&netd, || {
        nft(&gw, &["flush", "chain", "inet", "netd", "translate"]);
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("chain translate has 0 of its 3 rules")),
        "{lines:?}"
    );
    repaired(&netd);
    assert_eq!(ping(&a, INTERNET_SERVER, 1), 1);

    // A network's table: anti-spoofing is back after the repair.
    let lines = break_until_seen(&netd, || {
        nft(&net, &["delete", "table", "bridge", "netd"]);
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("network web: nftables table bridge netd is missing")),
        "{lines:?}"
    );
    repaired(&netd);
    let guests = nft(&net, &["list", "set", "bridge", "netd", "guests"]);
    assert!(
        guests.contains("172.18.0.1") && guests.contains("172.18.0.2"),
        "{guests}"
    );
    assert_eq!(ping(&a, "172.18.0.2".parse().unwrap(), 1), 1);

    // The policy routing rule that takes replies back into the network.
    let lines = break_until_seen(&netd, || {
        let _ = gw
            .command("ip")
            .args(["rule", "del", "fwmark", "1", "lookup", "1001"])
            .output();
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("routing rule fwmark 1 lookup 1001 of network web is missing")),
        "{lines:?}"
    );
    repaired(&netd);
    assert_eq!(ping(&a, INTERNET_SERVER, 1), 1);
}

/// An older netd's network table held its rates as `limit` rules in a
/// `rates` chain (with their counter): a restarted daemon syncs the table
/// in place without them, and nothing is drift.
#[test]
fn an_older_netds_rates_chain_goes_at_a_restart() {
    let sandbox = Sandbox::new();
    let mut netd = web(&sandbox);
    netd.stop();
    let net = network(&netd, "web");
    nft_script(
        &net,
        "add counter bridge netd dropped_rate { comment \"netd\"; }\n\
         add chain bridge netd rates { comment \"netd\"; }\n\
         add rule bridge netd rates ip saddr 172.18.0.1 limit rate over 125000 bytes/second \
         burst 6250 bytes counter name \"dropped_rate\" drop comment \"netd\"\n\
         add rule bridge netd between_guests jump rates comment \"netd\"\n",
    );
    netd.restart();
    let gone = eventually(Duration::from_secs(10), || {
        let listing = nft(&net, &["list", "table", "bridge", "netd"]);
        !listing.contains("rates") && !listing.contains("dropped_rate")
    });
    assert!(gone, "{}", nft(&net, &["list", "table", "bridge", "netd"]));
    assert_eq!(netd.cli(&["status"]).status.code(), Some(0), "no drift");
}

#[test]
fn a_thousand_forwards_are_map_elements_and_rewrite_no_rule() {
    let sandbox = Sandbox::new();
    let netd = web(&sandbox);
    let gw = gateway(&netd);
    let b = guest(&netd, "web", "b");
    serve_tcp_echo(tcp_listener(&b, any(30500)));
    serve_tcp_echo(tcp_listener(&b, any(31000)));

    // Every chain's, set's and rule's handle before...
    let handles = || -> Vec<(String, String, u64)> {
        let listing = nft_json(&gw, &["-a", "list", "table", "inet", "netd"]);
        let mut handles = Vec::new();
        for kind in ["chain", "set", "map", "rule"] {
            for object in objects(&listing, kind) {
                let name = object
                    .get("chain")
                    .or_else(|| object.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                handles.push((kind.to_owned(), name, object["handle"].as_u64().unwrap()));
            }
        }
        handles
    };
    let before = handles();
    assert!(before.iter().filter(|(kind, ..)| kind == "rule").count() >= 10);

    // ...1,000 forwards in one request (one transaction), then one more...
    let started = Instant::now();
    netd.ok(&["port", "add", "web", "b", "20000-20999:30000-30999"]);
    let bulk = started.elapsed();
    let started = Instant::now();
    netd.ok(&["port", "add", "web", "b", "21000:31000"]);
    let one_more = started.elapsed();

    // ...and every handle is the same: no rule was rewritten.
    assert_eq!(handles(), before, "rules or sets were replaced");
    let forwards = nft_json(&gw, &["list", "map", "inet", "netd", "forwards"]);
    let elements = objects(&forwards, "map")
        .flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default())
        .count();
    assert_eq!(elements, 1 + 1000 + 1);
    eprintln!("1,000 forwards in {bulk:?}, the 1,002nd in {one_more:?}");
    assert!(
        one_more < Duration::from_secs(5),
        "the 1,002nd forward took {one_more:?}"
    );

    // The first forward, one of the thousand and the last all work.
    for (port, line) in [(8080, "first"), (20500, "bulk"), (21000, "last")] {
        let answer = ask(
            &sandbox.internet,
            SocketAddrV4::new(HOST_UPLINK, port),
            line,
        )
        .unwrap_or_else(|err| panic!("port {port}: {err}"));
        assert!(answer.ends_with(line), "{answer}");
    }

    // Withdrawing them takes elements only, too.
    netd.ok(&["port", "rm", "web", "b", "20000-20999:30000-30999"]);
    assert_eq!(handles(), before, "rules or sets were replaced");
    assert!(
        ask(
            &sandbox.internet,
            SocketAddrV4::new(HOST_UPLINK, 20500),
            "gone"
        )
        .is_err(),
        "a withdrawn forward still answers"
    );
}
