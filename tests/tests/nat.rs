//! The eBPF dataplane's NAT, driven through netd's CLI against a real daemon
//! in a sandbox and checked with real traffic.

use std::net::Ipv4Addr;

use netd::netns::Netns;
use netd_tests::{Sandbox, netd::Netd, traffic::ping};

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    open(&format!("{}g-{network}.{guest}", netd.prefix()))
}

#[test]
fn a_guest_reaches_the_host_through_the_gateway() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let a = guest(&netd, "web", "a");
    let replies = ping(&a, Ipv4Addr::new(172, 18, 255, 1), 3);
    let status = netd.ok(&["status"]);
    println!("{status}");
    println!("{}", netd.log());
    assert_eq!(replies, 3, "{status}");
}
