//! `cargo xtask demo`: shows netd's main job working, inside a sandbox that
//! is torn down (and checked clean) at the end.

use netd::ebpf::filter::{DestinationFilter, Direction};
use netd_common::counters::Counter;
use netd_tests::{
    Sandbox,
    sandbox::{self, INTERNET_SERVER, UPLINK},
    traffic::ping,
};

fn main() {
    let sb = Sandbox::new();
    println!("== netd demo in sandbox {} ==", sb.prefix);
    println!(
        "namespaces {} (\"host\") and {} (\"internet\", server {INTERNET_SERVER})",
        sb.host.name(),
        sb.internet.name()
    );
    sandbox::block_on(async { ebpf_filter(&sb) });
    let prefix = sb.prefix.clone();
    let root = sb.root.clone();
    drop(sb);
    let left = sandbox::leftovers(&prefix, &root);
    assert!(left.is_empty(), "demo left behind: {left:?}");
    println!("\nsandbox torn down; nothing left behind");
}

/// The eBPF program in the kernel, configured through a map, on real traffic.
fn ebpf_filter(sb: &Sandbox) {
    println!("\n-- 1. a TC eBPF program on real traffic --");
    let mut filter = DestinationFilter::load().expect("loading netd_filter");
    filter
        .attach(&sb.internet, UPLINK, Direction::Ingress)
        .expect("attaching netd_filter");
    println!("loaded netd_filter and attached it to {UPLINK} ingress in the internet namespace");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    filter.block(INTERNET_SERVER).expect("map update");
    println!("map update: block {INTERNET_SERVER}");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    filter.unblock(INTERNET_SERVER).expect("map update");
    println!("map update: unblock {INTERNET_SERVER}");
    println!(
        "ping host -> {INTERNET_SERVER}: {}/3 replies",
        ping(&sb.host, INTERNET_SERVER, 3)
    );
    println!("per-CPU counters, summed:");
    for (name, value) in filter.counters().expect("reading counters") {
        println!("  {name:<22} {value}");
    }
    assert_eq!(filter.counter(Counter::DroppedBlockedDst).unwrap(), 3);
}
