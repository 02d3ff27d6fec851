//! A guest's bridge port accepts only the guest's own MAC and IPv4 address:
//! a guest cannot forge its way around a partition or pose as another guest.

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::INTERNET_SERVER,
    status::counter,
    traffic::{ping, run_ok},
};

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn ip(ns: &Netns, args: &[&str]) {
    run_ok({
        let mut c = ns.command("ip");
        c.args(args);
        c
    });
}

fn a_guest_sending_from_an_address_not_its_own_is_dropped(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    let a = guest(&netd, "web", "a");
    let b_ip = "172.18.0.2".parse().unwrap();
    assert_eq!(ping(&a, b_ip, 1), 1, "a reaches b as itself");
    // a claims b's neighbour's address as a second one and sends from it.
    ip(&a, &["addr", "add", "172.18.0.77/24", "dev", "eth0"]);
    let forged = a
        .command("ping")
        .args([
            "-n",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "172.18.0.77",
            "172.18.0.2",
        ])
        .output()
        .expect("ping");
    assert!(
        !forged.status.success(),
        "a forged source address got through"
    );
    let out = a
        .command("ping")
        .args(["-n", "-c", "1", "-W", "1", "-I", "172.18.0.77"])
        .arg(INTERNET_SERVER.to_string())
        .output()
        .expect("ping");
    assert!(
        !out.status.success(),
        "a forged source address reached the internet"
    );
    let status = netd.json(&["status"]);
    assert!(counter(&status, "web", "dropped_spoofed") >= 1, "{status}");
    assert_eq!(ping(&a, b_ip, 1), 1, "a's own address still works");
}

fn a_guest_with_a_forged_mac_is_cut_off(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    let a = guest(&netd, "web", "a");
    let b_ip = "172.18.0.2".parse().unwrap();
    assert_eq!(ping(&a, b_ip, 1), 1);
    ip(&a, &["link", "set", "eth0", "address", "02:00:00:00:00:99"]);
    ip(&a, &["neigh", "flush", "dev", "eth0"]);
    assert_eq!(ping(&a, b_ip, 2), 0, "a forged MAC got through");
    let status = netd.json(&["status"]);
    assert!(
        // eBPF cannot tell which network an unknown MAC is in; nft can.
        counter(&status, "host side", "dropped_spoofed")
            + counter(&status, "web", "dropped_spoofed")
            >= 1,
        "{status}"
    );
}

netd_tests::conformance!(
    a_guest_sending_from_an_address_not_its_own_is_dropped,
    a_guest_with_a_forged_mac_is_cut_off,
);
