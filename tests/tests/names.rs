//! Each network's resolver, driven through netd's CLI against a real daemon
//! in a sandbox and asked real questions with `dig` and `getent` from the
//! guests: guests' names (`GUEST`, `GUEST.NETWORK`) over UDP and TCP, names
//! that follow guests at once, other names relayed to a fake upstream on a
//! 127.x address of the host's namespace (`dns_upstreams`), internal
//! networks and partitions, `netd resolve` from the host.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    sync::atomic::Ordering,
};

use netd::netns::Netns;
use netd_tests::{Sandbox, fake_dns, netd::Netd};

/// The resolver of a network with the default subnet: its bridge address.
const RESOLVER: &str = "172.18.0.254";
/// What the fake upstream answers every question with.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// The fake upstream: on the host namespace's loopback, as a
/// systemd-resolved would be, which guests could never reach themselves.
const UPSTREAM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 5353);

fn start<'a>(sandbox: &'a Sandbox, dataplane: &str) -> Netd<'a> {
    Netd::start_with_settings(
        sandbox,
        dataplane,
        &format!("dns_upstreams = [\"{UPSTREAM}\"]"),
    )
}

fn guest_path(netd: &Netd, network: &str, guest: &str) -> String {
    format!("/run/netns/{}g-{network}.{guest}", netd.prefix())
}

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    Netns::open(&format!("{}g-{network}.{guest}", netd.prefix())).expect("guest namespace")
}

/// `dig` from inside a guest: (status, answers). One try, as a failure guard.
fn dig(ns: &Netns, args: &[&str]) -> (String, Vec<String>) {
    let out = ns
        .command("dig")
        .arg(format!("@{RESOLVER}"))
        .args(["+time=2", "+tries=1", "+noall", "+comments", "+answer"])
        .args(args)
        .output()
        .expect("running dig (dnsutils: `cargo xtask setup`)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_owned();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    (status, answers)
}

fn ip(netd: &Netd, network: &str, name: &str) -> String {
    let view = netd.json(&["guest", "inspect", network, name]);
    view["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

fn guests_resolve_each_other_by_name_over_udp_and_tcp(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = start(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    let added = netd.ok(&["guest", "add", "web", "a"]);
    assert!(added.contains(&format!("nameserver {RESOLVER}")), "{added}");
    netd.ok(&["guest", "add", "web", "b"]);
    let a = guest(&netd, "web", "a");
    let b_ip = ip(&netd, "web", "b");

    assert_eq!(dig(&a, &["b"]), ("NOERROR".into(), vec![b_ip.clone()]));
    assert_eq!(dig(&a, &["B.web."]), ("NOERROR".into(), vec![b_ip.clone()]));
    assert_eq!(
        dig(&a, &["+tcp", "b.web"]),
        ("NOERROR".into(), vec![b_ip.clone()])
    );
    assert_eq!(
        dig(&a, &["b", "AAAA"]),
        ("NOERROR".into(), vec![]),
        "no data"
    );
    assert_eq!(dig(&a, &["nobody.web"]).0, "NXDOMAIN");

    // getent, through the C library's resolver, with the guest's
    // resolv.conf naming the resolver (netd writes no guest file: the
    // runtime does; here a private mount namespace stands in for it).
    let conf = sandbox.root.join("guest-resolv.conf");
    std::fs::write(&conf, format!("nameserver {RESOLVER}\n")).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && exec nsenter --net={} getent hosts b.web",
            conf.display(),
            guest_path(&netd, "web", "a")
        ))
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{b_ip} ")),
        "getent: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `netd exec --resolver` does the same for one command.
    let host_conf = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let out = netd.ok(&[
        "exec",
        "web",
        "a",
        "--resolver",
        "--",
        "getent",
        "hosts",
        "b",
    ]);
    assert!(
        out.starts_with(&format!("{b_ip} ")),
        "exec --resolver: {out}"
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_conf,
        "the host's resolv.conf is untouched"
    );

    let shown = netd.json(&["guest", "inspect", "web", "a"]);
    assert_eq!(shown["nameserver"], RESOLVER, "{shown}");
    let resolved = netd.json(&["resolve", "b.web"]);
    assert_eq!(resolved[0]["ip"], b_ip.as_str(), "{resolved}");
    let err = netd.err(&["resolve", "nobody"]);
    assert!(err.contains("no guest is named \"nobody\""), "{err}");
}

fn names_follow_guests_as_they_come_and_go(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = start(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    assert_eq!(dig(&a, &["c.web"]).0, "NXDOMAIN");
    netd.ok(&["guest", "add", "web", "c", "--ip", "172.18.0.42"]);
    assert_eq!(
        dig(&a, &["c.web"]),
        ("NOERROR".into(), vec!["172.18.0.42".into()]),
        "at once"
    );
    netd.ok(&["guest", "rm", "web", "c"]);
    assert_eq!(dig(&a, &["c.web"]).0, "NXDOMAIN", "gone at once");
    netd.ok(&["guest", "add", "web", "c", "--ip", "172.18.0.43"]);
    assert_eq!(
        dig(&a, &["c"]).1,
        ["172.18.0.43"],
        "back with its new address"
    );
    // The same name in another network is that network's guest.
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "db", "c", "--ip", "172.18.0.77"]);
    let db_c = guest(&netd, "db", "c");
    assert_eq!(dig(&db_c, &["c"]).1, ["172.18.0.77"]);
    assert_eq!(
        dig(&a, &["c.db"]).0,
        "NXDOMAIN",
        "another network's guest is not reachable here"
    );
    let both = netd.json(&["resolve", "c"]);
    assert_eq!(both.as_array().unwrap().len(), 2, "{both}");
    // A daemon restart serves the same names.
    let mut netd = netd;
    netd.restart();
    assert_eq!(dig(&a, &["c"]).1, ["172.18.0.43"], "after a restart");
}

fn other_names_are_relayed_from_the_hosts_namespace(dataplane: &str) {
    let sandbox = Sandbox::new();
    let asked = fake_dns::serve(&sandbox.host, UPSTREAM, UPSTREAM_ANSWER);
    let netd = start(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    let want = ("NOERROR".to_owned(), vec![UPSTREAM_ANSWER.to_string()]);
    assert_eq!(dig(&a, &["example.org"]), want, "over UDP");
    assert_eq!(dig(&a, &["+tcp", "example.org"]), want, "over TCP");
    assert!(asked.load(Ordering::SeqCst) >= 2);
}

fn internal_networks_and_guests_cut_from_the_outside_resolve_no_outside_names(dataplane: &str) {
    let sandbox = Sandbox::new();
    let asked = fake_dns::serve(&sandbox.host, UPSTREAM, UPSTREAM_ANSWER);
    let netd = start(&sandbox, dataplane);
    netd.ok(&["network", "create", "vault", "--internal"]);
    netd.ok(&["guest", "add", "vault", "a"]);
    netd.ok(&["guest", "add", "vault", "b"]);
    let a = guest(&netd, "vault", "a");
    assert_eq!(
        dig(&a, &["b"]).1,
        [ip(&netd, "vault", "b")],
        "peers resolve"
    );
    assert_eq!(dig(&a, &["example.org"]), ("REFUSED".into(), vec![]));

    netd.ok(&["network", "create", "web"]);
    for name in ["x", "y", "z"] {
        netd.ok(&["guest", "add", "web", name]);
    }
    let (x, z) = (guest(&netd, "web", "x"), guest(&netd, "web", "z"));
    // x cut from y (one way): x still resolves y, as a real partition lets
    // the network's DNS servers answer.
    netd.ok(&["partition", "web", "cut", "--from", "x", "--to", "y"]);
    assert_eq!(dig(&x, &["y"]).1, [ip(&netd, "web", "y")]);
    assert_eq!(dig(&x, &["example.org"]).1, [UPSTREAM_ANSWER.to_string()]);
    // z cut from everyone and the outside: no outside name.
    netd.ok(&["partition", "web", "isolate", "z"]);
    let (status, answers) = dig(&z, &["example.org"]);
    assert!(answers.is_empty(), "{status} {answers:?}");
    // With the outside kept, its peers' names still resolve from the
    // network's resolver.
    netd.ok(&["partition", "web", "isolate", "z", "--keep-outside"]);
    assert_eq!(dig(&z, &["x"]).1, [ip(&netd, "web", "x")]);
    netd.ok(&["partition", "web", "heal"]);
    assert_eq!(
        dig(&z, &["example.org"]).1,
        [UPSTREAM_ANSWER.to_string()],
        "healed"
    );
    assert!(asked.load(Ordering::SeqCst) >= 2);
}

netd_tests::conformance!(
    guests_resolve_each_other_by_name_over_udp_and_tcp,
    names_follow_guests_as_they_come_and_go,
    other_names_are_relayed_from_the_hosts_namespace,
    internal_networks_and_guests_cut_from_the_outside_resolve_no_outside_names,
);
