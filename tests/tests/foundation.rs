//! The foundation: the sandbox itself, and netd's first TC program acting on
//! real traffic between sandbox namespaces.

use std::{net::Ipv4Addr, process::Command};

use netd_common::counters::Counter;
use netd_tests::{
    Sandbox,
    filter::{DestinationFilter, Direction},
    sandbox::{self, INTERNET_GATEWAY, INTERNET_SERVER, UPLINK},
    traffic::{ping, reachable},
};

#[test]
fn sandbox_host_reaches_the_internet_through_its_default_route() {
    let sb = Sandbox::new();
    assert!(reachable(&sb.host, INTERNET_GATEWAY));
    assert!(reachable(&sb.host, INTERNET_SERVER));
    // The internet namespace has no route back beyond the shared /24, so it
    // cannot reach anything else: the sandbox is closed.
    assert!(!reachable(&sb.internet, Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn filter_drops_packets_to_a_blocked_destination_and_counts_each_verdict() {
    let sb = Sandbox::new();
    sandbox::block_on(async {
        let mut filter = DestinationFilter::load().expect("load netd_filter");
        // On the internet side's ingress, so a drop is silent to the sender
        // (an egress drop makes ping see ENOBUFS and resend).
        filter
            .attach(&sb.internet, UPLINK, Direction::Ingress)
            .expect("attach to the internet uplink");

        assert_eq!(ping(&sb.host, INTERNET_SERVER, 3), 3, "nothing blocked yet");
        let passed_before = filter.counter(Counter::Passed).unwrap();
        assert!(
            passed_before >= 3,
            "3 echo requests passed, counted {passed_before}"
        );

        filter.block(INTERNET_SERVER).unwrap();
        assert_eq!(
            ping(&sb.host, INTERNET_SERVER, 3),
            0,
            "blocked destination answers"
        );
        assert_eq!(filter.counter(Counter::DroppedBlockedDst).unwrap(), 3);
        assert!(
            reachable(&sb.host, INTERNET_GATEWAY),
            "other destinations still pass"
        );

        filter.unblock(INTERNET_SERVER).unwrap();
        assert_eq!(ping(&sb.host, INTERNET_SERVER, 2), 2, "unblocked again");
        assert_eq!(filter.counter(Counter::DroppedBlockedDst).unwrap(), 3);
    });
}

#[test]
fn a_sandbox_that_panics_leaves_nothing_behind() {
    let mut seen = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = Sandbox::new();
        seen = Some((sb.prefix.clone(), sb.root.clone()));
        // Leave things a careless test would leak: a process in the host
        // namespace, a pinned map in the private bpffs, an extra namespace.
        let mut sleeper = sb.host_command("sleep");
        sleeper.arg("600");
        sb.spawn(sleeper).unwrap();
        sandbox::block_on(async {
            DestinationFilter::load_pinned(Some(&sb.bpffs_dir)).unwrap();
            assert!(sb.bpffs_dir.join(netd_common::maps::COUNTERS).exists());
        });
        netd::netns::Netns::create(&format!("{}extra", sb.prefix)).unwrap();
        let status = Command::new("nft")
            .args(["--version"])
            .status()
            .expect("nft installed");
        assert!(status.success());
        panic!("deliberate panic inside a sandbox");
    }));
    assert!(outcome.is_err(), "the closure panicked on purpose");
    let (prefix, root) = seen.expect("sandbox was built");
    let left = sandbox::leftovers(&prefix, &root);
    assert!(left.is_empty(), "left behind: {left:?}");
}
