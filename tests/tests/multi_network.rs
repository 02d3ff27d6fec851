//! A guest on several networks (`netd network connect --network-of`),
//! driven through netd's CLI against a real daemon in a sandbox and checked
//! with real traffic, `ip` in the guest and real DNS questions: a second
//! interface with its own address and one default route, partitions per
//! network, names in each network, disconnect, what removing a network or
//! the guest takes with it, and bad requests refused without a change.

use std::net::Ipv4Addr;

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::INTERNET_SERVER,
    traffic::{ping, reachable, run_ok},
};
use serde_json::Value;

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    Netns::open(&format!("{}g-{network}.{guest}", netd.prefix())).expect("guest namespace")
}

fn ip_of(view: &Value) -> Ipv4Addr {
    view["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn links(ns: &Netns) -> Vec<String> {
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["-j", "link", "show"]);
        c
    });
    let links: Value = serde_json::from_str(&out).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

fn default_routes(ns: &Netns) -> Vec<String> {
    let out = run_ok({
        let mut c = ns.command("ip");
        c.args(["route", "show", "default"]);
        c
    });
    out.lines().map(str::to_owned).collect()
}

fn dig(ns: &Netns, resolver: &str, name: &str) -> String {
    let out = ns
        .command("dig")
        .args(["+short", "+time=2", "+tries=1"])
        .arg(format!("@{resolver}"))
        // -q: a name such as "a" is not read as a record type.
        .args(["-q", name])
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// front (the default subnet) with guests a and f, back (a routable /24)
/// with guest b.
fn two_networks(netd: &Netd) {
    netd.ok(&["network", "create", "front"]);
    netd.ok(&["network", "create", "back", "--subnet", "auto"]);
    netd.ok(&["guest", "add", "front", "a"]);
    netd.ok(&["guest", "add", "front", "f"]);
    netd.ok(&["guest", "add", "back", "b"]);
}

fn a_connected_guest_talks_on_both_networks_with_one_default_route(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    two_networks(&netd);
    let said = netd.ok(&["network", "connect", "back", "a", "--network-of", "front"]);
    assert!(said.contains("on eth1 (from network front)"), "{said}");
    let a = guest(&netd, "front", "a");
    let b = guest(&netd, "back", "b");
    let view = netd.json(&["guest", "inspect", "back", "a"]);
    assert_eq!(view["interface"], "eth1", "{view}");
    assert_eq!(view["connected_from"], "front", "{view}");
    let a_back = ip_of(&view);
    let a_front = ip_of(&netd.json(&["guest", "inspect", "front", "a"]));
    let b_ip = ip_of(&netd.json(&["guest", "inspect", "back", "b"]));
    let f_ip = ip_of(&netd.json(&["guest", "inspect", "front", "f"]));
    let back_view = netd.json(&["network", "inspect", "back"]);
    let back: ipnetwork::Ipv4Network = back_view["subnet"].as_str().unwrap().parse().unwrap();
    let back_resolver = back_view["bridge_ip"].as_str().unwrap().to_owned();
    assert!(back.contains(a_back), "{a_back} in {back}");

    assert!(links(&a).contains(&"eth1".to_owned()));
    let defaults = default_routes(&a);
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert!(defaults[0].contains("dev eth0"), "{defaults:?}");

    assert_eq!(ping(&a, b_ip, 2), 2, "a -> b on back");
    assert_eq!(ping(&b, a_back, 2), 2, "b -> a's back address");
    assert_eq!(ping(&a, f_ip, 2), 2, "a -> f on front");
    assert_eq!(
        ping(&a, INTERNET_SERVER, 2),
        2,
        "out through its own network"
    );

    // Names in every network the guest is on.
    assert_eq!(dig(&b, &back_resolver, "a.back"), a_back.to_string());
    assert_eq!(dig(&a, "172.18.0.254", "a.front"), a_front.to_string());

    // Partitions of each network apply to that network's interface.
    netd.ok(&["partition", "back", "isolate", "a", "--keep-outside"]);
    assert!(!reachable(&a, b_ip), "cut on back");
    assert_eq!(ping(&a, f_ip, 2), 2, "front is untouched");
    netd.ok(&["partition", "back", "heal"]);
    assert_eq!(ping(&a, b_ip, 2), 2, "healed");

    // A restart keeps the connection.
    let mut netd = netd;
    netd.restart();
    assert_eq!(ping(&a, b_ip, 2), 2, "after a restart");
    assert!(
        netd.json(&["status"])["drift"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    netd.ok(&["network", "disconnect", "back", "a"]);
    assert!(!links(&a).contains(&"eth1".to_owned()), "eth1 is gone");
    assert!(!reachable(&a, b_ip), "nothing on back any more");
    assert_eq!(dig(&b, &back_resolver, "a.back"), "", "nor its name there");
    assert_eq!(ping(&a, f_ip, 2), 2, "front carries on");
}

fn removing_a_network_removes_its_interfaces_from_other_networks_guests_and_nothing_else(
    dataplane: &str,
) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    two_networks(&netd);
    netd.ok(&["network", "connect", "back", "a", "--network-of", "front"]);
    let a = guest(&netd, "front", "a");
    let f_ip = ip_of(&netd.json(&["guest", "inspect", "front", "f"]));
    netd.ok(&["network", "rm", "back"]);
    assert!(!links(&a).contains(&"eth1".to_owned()));
    assert_eq!(ping(&a, f_ip, 2), 2, "a keeps its own network");
    let front = netd.json(&["guest", "ls", "front"]);
    assert_eq!(front.as_array().unwrap().len(), 2, "{front}");

    // The other way: the guest's own network goes, and its connection too.
    netd.ok(&["network", "create", "back", "--subnet", "auto"]);
    netd.ok(&["guest", "add", "back", "b"]);
    netd.ok(&["network", "connect", "back", "a", "--network-of", "front"]);
    netd.ok(&["network", "rm", "front"]);
    let left = netd.json(&["guest", "ls", "back"]);
    let names: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"], "{left}");
    assert!(
        netd.json(&["status"])["drift"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn bad_connections_are_refused_and_change_nothing(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    two_networks(&netd);
    netd.ok(&["network", "create", "side"]);
    netd.ok(&["guest", "add", "back", "f"]);
    netd.ok(&["network", "connect", "back", "a", "--network-of", "front"]);
    let before = (
        netd.json(&["guest", "ls", "front"]),
        netd.json(&["guest", "ls", "back"]),
        netd.json(&["guest", "ls", "side"]),
    );
    let a = guest(&netd, "front", "a");
    let links_before = links(&a);
    for (args, says) in [
        (
            vec!["back", "a", "--network-of", "front"],
            "is already on network \"back\" (as eth1)",
        ),
        (
            vec!["front", "a", "--network-of", "front"],
            "is already on network \"front\"",
        ),
        (
            vec!["back", "f", "--network-of", "front"],
            "has a guest named \"f\" already",
        ),
        (
            vec!["side", "a", "--network-of", "front"],
            "overlaps network \"front\"",
        ),
        (
            vec!["side", "a", "--network-of", "back"],
            "give its own network, --network-of front",
        ),
        (
            vec!["back", "nobody", "--network-of", "front"],
            "no guest named \"nobody\"",
        ),
        (
            vec!["nowhere", "a", "--network-of", "front"],
            "no network named \"nowhere\"",
        ),
        (
            vec!["back", "a", "--network-of", "nowhere"],
            "no network named \"nowhere\"",
        ),
    ] {
        let mut full = vec!["network", "connect"];
        full.extend(args.iter().copied());
        let err = netd.err(&full);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let err = netd.err(&["network", "disconnect", "front", "a"]);
    assert!(err.contains("own guest, not a connection"), "{err}");
    let err = netd.err(&["network", "disconnect", "side", "a"]);
    assert!(
        err.contains("no guest named \"a\" is on network \"side\""),
        "{err}"
    );
    let err = netd.err(&["guest", "rm", "back", "a"]);
    assert!(err.contains("netd network disconnect back a"), "{err}");
    let after = (
        netd.json(&["guest", "ls", "front"]),
        netd.json(&["guest", "ls", "back"]),
        netd.json(&["guest", "ls", "side"]),
    );
    assert_eq!(after, before, "nothing changed");
    assert_eq!(links(&a), links_before, "no interface added or lost");
    // Removing the guest removes its connection too.
    netd.ok(&["guest", "rm", "front", "a"]);
    let back = netd.json(&["guest", "ls", "back"]);
    assert_eq!(back.as_array().unwrap().len(), 2, "b and f stay: {back}");
}

netd_tests::conformance!(
    a_connected_guest_talks_on_both_networks_with_one_default_route,
    removing_a_network_removes_its_interfaces_from_other_networks_guests_and_nothing_else,
    bad_connections_are_refused_and_change_nothing,
);
