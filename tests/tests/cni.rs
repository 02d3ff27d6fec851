//! The CNI plugin, driven as the CNI spec's runtime drives it (environment,
//! configuration on stdin, result on stdout) against a real daemon: ADD
//! gives a runtime's namespace a working network, ports published from
//! `runtimeConfig.portMappings`, DEL is idempotent, CHECK finds what changed
//! behind its back, GC removes what the runtime no longer has, and every
//! failure is a CNI error object with the spec's code.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    cni::{Attachment, REFERENCE_PLUGINS, conf, run, run_plugin},
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, tcp_ask, tcp_connect, tcp_listener},
    traffic::ping,
};
use serde_json::{Value, json};

/// A container's namespace, as a runtime makes it (the sandbox removes it).
fn container_ns(sandbox: &Sandbox, name: &str) -> (Netns, PathBuf) {
    let ns = Netns::create(&format!("{}{name}", sandbox.prefix)).expect("container namespace");
    let path = ns.path().to_path_buf();
    (ns, path)
}

fn attachment<'a>(id: &'a str, netns: &'a Path) -> Attachment<'a> {
    Attachment {
        container_id: id,
        netns: Some(netns),
        ifname: "eth0",
    }
}

fn daemon_with_network(sandbox: &Sandbox) -> Netd<'_> {
    let netd = Netd::start(sandbox);
    netd.ok(&["network", "create", "web"]);
    netd
}

fn address(result: &Value, index: usize) -> Ipv4Addr {
    let cidr = result["ips"][index]["address"]
        .as_str()
        .expect("an address");
    cidr.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn without_dns_of_its_own_the_result_names_the_networks_resolver_which_knows_the_containers() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let conf = conf(&netd, "netd-web", "web", "1.1.0", json!({}));
    let (c1, p1) = container_ns(&sandbox, "c1");
    let (_c2, p2) = container_ns(&sandbox, "c2");
    let r1 = run(&sandbox, "ADD", Some(&attachment("ctr1", &p1)), &conf).ok();
    let r2 = run(&sandbox, "ADD", Some(&attachment("ctr2", &p2)), &conf).ok();
    assert_eq!(
        r1["dns"],
        json!({"nameservers": ["172.18.0.254"], "search": ["web"]}),
        "{r1}"
    );
    // The other container, by its guest name, from the resolver the
    // result names.
    let guests = netd.json(&["guest", "ls", "web"]);
    let second = guests
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["cni.container_id"] == "ctr2")
        .expect("the second attachment");
    let name = second["name"].as_str().unwrap();
    let out = c1
        .command("dig")
        .args(["@172.18.0.254", "+short", "+time=2", "+tries=1"])
        .arg(format!("{name}.web"))
        .output()
        .expect("dig");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        address(&r2, 0).to_string()
    );
}

#[test]
fn add_gives_traffic_to_another_attachment_and_to_the_internet() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let conf = conf(
        &netd,
        "netd-web",
        "web",
        "1.1.0",
        json!({"dns": {"nameservers": ["203.0.113.53"], "search": ["example.test"]}}),
    );
    let (c1, p1) = container_ns(&sandbox, "c1");
    let (c2, p2) = container_ns(&sandbox, "c2");

    let first = run(&sandbox, "ADD", Some(&attachment("ctr1", &p1)), &conf);
    let elapsed = first.elapsed;
    let r1 = first.ok();
    eprintln!("ADD took {elapsed:?}");
    assert_eq!(r1["cniVersion"], "1.1.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], p1.to_str().unwrap());
    let mac = r1["interfaces"][0]["mac"].as_str().unwrap();
    assert_eq!(mac.len(), 17, "{r1}");
    let kernel: Vec<String> = c1
        .mac("eth0")
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(mac, kernel.join(":"), "the result's MAC is the kernel's");
    assert_eq!(r1["ips"][0]["gateway"], "172.18.0.254");
    assert_eq!(r1["ips"][0]["interface"], 0);
    assert_eq!(
        r1["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "172.18.0.254"})
    );
    assert_eq!(r1["dns"]["nameservers"][0], "203.0.113.53");

    let r2 = run(&sandbox, "ADD", Some(&attachment("ctr2", &p2)), &conf).ok();
    let (ip1, ip2) = (address(&r1, 0), address(&r2, 0));
    assert_ne!(ip1, ip2);
    assert_eq!(ping(&c1, ip2, 2), 2, "attachment to attachment");

    serve_tcp_echo(tcp_listener(
        &sandbox.internet,
        SocketAddrV4::new(INTERNET_SERVER, 7),
    ));
    let mut stream = tcp_connect(&c2, SocketAddrV4::new(INTERNET_SERVER, 7), None)
        .expect("the container reaches the internet through netd's NAT");
    let answer = tcp_ask(&mut stream, "hello");
    assert!(
        answer.starts_with(&format!("{HOST_UPLINK}:")),
        "the server sees the host's address: {answer}"
    );

    let listed = netd.json(&["guest", "ls", "web"]);
    let guest = &listed.as_array().unwrap()[0];
    assert!(
        guest["name"].as_str().unwrap().starts_with("cni-ctr1-"),
        "{listed}"
    );
    assert_eq!(guest["labels"]["cni.container_id"], "ctr1");
    assert_eq!(guest["labels"]["cni.config"], "netd-web");
}

#[test]
fn a_requested_address_and_port_mapping_are_honoured_and_del_twice_is_success() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let conf = conf(
        &netd,
        "netd-web",
        "web",
        "1.1.0",
        json!({"runtimeConfig": {
            "ips": ["172.18.0.42/24"],
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
        }}),
    );
    let (c1, p1) = container_ns(&sandbox, "c1");
    let result = run(&sandbox, "ADD", Some(&attachment("web-1", &p1)), &conf).ok();
    assert_eq!(result["ips"][0]["address"], "172.18.0.42/24");
    serve_tcp_echo(tcp_listener(
        &c1,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));

    let mut stream = tcp_connect(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
    )
    .expect("the mapping is reachable at the host's address");
    assert!(tcp_ask(&mut stream, "in").ends_with(" in"));
    let ports = netd.json(&["port", "ls"]);
    assert_eq!(ports[0]["spec"], "8080:80/tcp", "{ports}");

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result;
    run(&sandbox, "DEL", Some(&attachment("web-1", &p1)), &with_prev).ok();
    assert_eq!(netd.json(&["guest", "ls", "web"]), json!([]));
    assert_eq!(
        netd.json(&["port", "ls"]),
        json!([]),
        "its ports went with it"
    );
    let again = Attachment {
        container_id: "web-1",
        netns: None,
        ifname: "eth0",
    };
    run(&sandbox, "DEL", Some(&again), &conf).ok();
    assert!(
        Netns::open_path("c1", &p1).is_ok(),
        "the runtime's namespace is the runtime's: DEL leaves it"
    );
}

#[test]
fn check_passes_then_detects_a_removed_guest_and_a_changed_interface() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let conf = conf(&netd, "netd-web", "web", "1.1.0", json!({}));
    let (c1, p1) = container_ns(&sandbox, "c1");
    let (_c2, p2) = container_ns(&sandbox, "c2");
    let a1 = attachment("ctr1", &p1);
    let r1 = run(&sandbox, "ADD", Some(&a1), &conf).ok();
    let mut checked = conf.clone();
    checked["prevResult"] = r1.clone();
    run(&sandbox, "CHECK", Some(&a1), &checked).ok();

    let mut wrong = checked.clone();
    wrong["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    let (code, msg) = run(&sandbox, "CHECK", Some(&a1), &wrong).err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("prevResult says 02:00:00:00:00:99"), "{msg}");

    c1.command("ip")
        .args(["link", "set", "eth0", "down"])
        .status()
        .expect("ip link");
    let (code, msg) = run(&sandbox, "CHECK", Some(&a1), &checked).err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("eth0 is down"), "{msg}");

    let a2 = attachment("ctr2", &p2);
    let r2 = run(&sandbox, "ADD", Some(&a2), &conf).ok();
    let name = netd
        .json(&["guest", "ls", "web"])
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["cni.container_id"] == "ctr2")
        .expect("ctr2's guest")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    netd.ok(&["guest", "rm", "web", &name]);
    let mut checked = conf.clone();
    checked["prevResult"] = r2;
    let (code, msg) = run(&sandbox, "CHECK", Some(&a2), &checked).err();
    assert_eq!(code, 101, "{msg}");
    assert!(
        msg.contains("it was removed; DEL and ADD the container again"),
        "{msg}"
    );
}

#[test]
fn gc_removes_stale_attachments_and_nothing_else() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let conf_web = conf(&netd, "netd-web", "web", "1.1.0", json!({}));
    let conf_other = conf(&netd, "other", "web", "1.1.0", json!({}));
    let (_c1, p1) = container_ns(&sandbox, "c1");
    let (_c2, p2) = container_ns(&sandbox, "c2");
    let (_c3, p3) = container_ns(&sandbox, "c3");
    run(&sandbox, "ADD", Some(&attachment("keep", &p1)), &conf_web).ok();
    run(&sandbox, "ADD", Some(&attachment("stale", &p2)), &conf_web).ok();
    run(
        &sandbox,
        "ADD",
        Some(&attachment("theirs", &p3)),
        &conf_other,
    )
    .ok();
    netd.ok(&["guest", "add", "web", "cni-by-hand"]);

    let mut gc = conf_web.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    run(&sandbox, "GC", None, &gc).ok();
    let mut left: Vec<String> = netd
        .json(&["guest", "ls", "web"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["labels"]["cni.container_id"]
                .as_str()
                .unwrap_or(g["name"].as_str().unwrap())
                .to_owned()
        })
        .collect();
    left.sort();
    assert_eq!(left, ["cni-by-hand", "keep", "theirs"]);

    let (code, msg) = run(&sandbox, "GC", None, &conf_web).err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("cni.dev/valid-attachments"), "{msg}");
}

#[test]
fn chained_before_a_reference_plugin_the_result_is_passed_on() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    // Debian's reference plugins speak CNI up to 1.0.0.
    let list_conf = conf(&netd, "netd-web", "web", "1.0.0", json!({}));
    let (c1, p1) = container_ns(&sandbox, "c1");
    let a1 = attachment("ctr1", &p1);
    let ours = run(&sandbox, "ADD", Some(&a1), &list_conf).ok();
    assert_eq!(ours["cniVersion"], "1.0.0");

    let tuning = Path::new(REFERENCE_PLUGINS).join("tuning");
    let tuning_conf = json!({
        "cniVersion": "1.0.0", "name": "netd-web", "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"},
        "prevResult": ours,
    });
    let passed = run_plugin(&sandbox, &tuning, "ADD", Some(&a1), &tuning_conf).ok();
    assert_eq!(passed["interfaces"], ours["interfaces"], "{passed}");
    assert_eq!(passed["ips"], ours["ips"]);
    let rp = c1
        .run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/rp_filter"))
        .unwrap()
        .unwrap();
    assert_eq!(rp.trim(), "2");

    let mut check = list_conf.clone();
    check["prevResult"] = passed.clone();
    run(&sandbox, "CHECK", Some(&a1), &check).ok();

    // netd-cni after another plugin: its attachment is appended.
    let (_c2, p2) = container_ns(&sandbox, "c2");
    let mut after = list_conf.clone();
    after["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": p2}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}]
    });
    let appended = run(&sandbox, "ADD", Some(&attachment("ctr2", &p2)), &after).ok();
    assert_eq!(appended["interfaces"][0]["name"], "lo");
    assert_eq!(appended["interfaces"][1]["name"], "eth0");
    assert_eq!(appended["ips"][1]["interface"], 1);
}

#[test]
fn failures_are_cni_error_objects_with_the_specs_codes() {
    let sandbox = Sandbox::new();
    let mut netd = daemon_with_network(&sandbox);
    let good = conf(&netd, "netd-web", "web", "1.1.0", json!({}));
    let (_c1, p1) = container_ns(&sandbox, "c1");
    let a1 = attachment("ctr1", &p1);

    let version = run(&sandbox, "VERSION", None, &json!({"cniVersion": "1.1.0"})).ok();
    assert_eq!(version["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    run(&sandbox, "STATUS", None, &good).ok();

    let mut old = good.clone();
    old["cniVersion"] = json!("0.3.1");
    assert_eq!(run(&sandbox, "ADD", Some(&a1), &old).err().0, 1);

    let mut ipam = good.clone();
    ipam["ipam"] = json!({"type": "host-local"});
    let (code, msg) = run(&sandbox, "ADD", Some(&a1), &ipam).err();
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("remove \"ipam\""), "{msg}");

    let no_netns = Attachment {
        container_id: "ctr1",
        netns: None,
        ifname: "eth0",
    };
    let (code, msg) = run(&sandbox, "ADD", Some(&no_netns), &good).err();
    assert_eq!(
        (code, msg.starts_with("CNI_NETNS is not set")),
        (4, true),
        "{msg}"
    );

    let eth1 = Attachment {
        container_id: "ctr1",
        netns: Some(&p1),
        ifname: "eth1",
    };
    let (code, msg) = run(&sandbox, "ADD", Some(&eth1), &good).err();
    assert_eq!(code, 4, "{msg}");
    assert!(msg.contains("one interface, eth0"), "{msg}");

    let mut elsewhere = good.clone();
    elsewhere["network"] = json!("nope");
    let (code, msg) = run(&sandbox, "ADD", Some(&a1), &elsewhere).err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("`netd network create nope`"), "{msg}");
    let (code, _) = run(&sandbox, "STATUS", None, &elsewhere).err();
    assert_eq!(code, 50);
    run(&sandbox, "DEL", Some(&a1), &elsewhere).ok();

    let mut taken = good.clone();
    taken["runtimeConfig"] = json!({"ips": ["172.18.0.254"]});
    let (code, msg) = run(&sandbox, "ADD", Some(&a1), &taken).err();
    assert_eq!(code, 100, "the daemon's refusal passes through: {msg}");
    assert_eq!(netd.json(&["guest", "ls", "web"]), json!([]));

    // A port that cannot be published takes the guest back with it.
    netd.ok(&["guest", "add", "web", "holder"]);
    netd.ok(&["port", "add", "web", "holder", "8080:80"]);
    let mut clash = good.clone();
    clash["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let (code, msg) = run(&sandbox, "ADD", Some(&a1), &clash).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("publishing port 8080:80/tcp"), "{msg}");
    assert_eq!(
        netd.json(&["guest", "ls", "web"]).as_array().unwrap().len(),
        1
    );

    netd.stop();
    let (code, msg) = run(&sandbox, "STATUS", None, &good).err();
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains("start it (`systemctl start netd`)"), "{msg}");
    assert_eq!(run(&sandbox, "ADD", Some(&a1), &good).err().0, 11);
}

#[test]
fn guests_carry_labels_and_bad_labels_are_refused() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    netd.ok(&[
        "guest", "add", "web", "a", "--label", "app=shop", "--label", "tier=db",
    ]);
    let listed = netd.json(&["guest", "ls", "web"]);
    assert_eq!(listed[0]["labels"], json!({"app": "shop", "tier": "db"}));
    let err = netd.err(&["guest", "add", "web", "b", "--label", "Bad=1"]);
    assert!(err.contains("invalid label key \"Bad\""), "{err}");
    let err = netd.err(&["guest", "add", "web", "b", "--label", "novalue"]);
    assert!(err.contains("a label is KEY=VALUE"), "{err}");
}

/// Not a pass/fail figure: ADD and DEL times of netd-cni and of the
/// reference bridge plugin (with host-local IPAM), printed for the record.
#[test]
fn add_time_against_the_reference_bridge_plugin() {
    let sandbox = Sandbox::new();
    let netd = daemon_with_network(&sandbox);
    let ours = conf(&netd, "netd-web", "web", "1.0.0", json!({}));
    let bridge_conf = json!({
        "cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "ndtbr0",
        "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24",
                 "dataDir": sandbox.root.join("host-local")}
    });
    let bridge = Path::new(REFERENCE_PLUGINS).join("bridge");
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut netd_add, mut netd_del, mut ref_add, mut ref_del) = (vec![], vec![], vec![], vec![]);
    for i in 0..7 {
        let (_n, p) = container_ns(&sandbox, &format!("n{i}"));
        let (_r, q) = container_ns(&sandbox, &format!("r{i}"));
        let a = attachment("timed", &p);
        let b = attachment("timed", &q);
        let out = run(&sandbox, "ADD", Some(&a), &ours);
        netd_add.push(out.elapsed);
        out.ok();
        let out = run_plugin(&sandbox, &bridge, "ADD", Some(&b), &bridge_conf);
        ref_add.push(out.elapsed);
        out.ok();
        let out = run(&sandbox, "DEL", Some(&a), &ours);
        netd_del.push(out.elapsed);
        out.ok();
        let out = run_plugin(&sandbox, &bridge, "DEL", Some(&b), &bridge_conf);
        ref_del.push(out.elapsed);
        out.ok();
    }
    eprintln!(
        "median of 7: netd-cni ADD {:?} DEL {:?}; bridge+host-local ADD {:?} DEL {:?}",
        median(netd_add),
        median(netd_del),
        median(ref_add),
        median(ref_del)
    );
    let _ = sandbox
        .host_command("ip")
        .args(["link", "del", "ndtbr0"])
        .status();
}
