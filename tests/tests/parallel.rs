//! Requests for different networks do not wait for each other: a request
//! holds its own network's lock throughout and the service's only for its
//! short steps (netd/src/daemon/service/shared.rs).

use std::{process::Stdio, time::Duration};

use netd_tests::{Sandbox, netd::Netd, status};

/// A verify that takes seconds (it times 20 echoes each way through a
/// 250 ms delay: about 10 s) holds up no request for another network: a
/// guest add there, and reads, answer while it runs. Before networks had
/// locks of their own, the guest add waited for the whole verify. (eBPF:
/// the nftables dataplane cannot delay, see tests/tests/faults.rs.)
#[test]
fn a_long_verify_holds_up_no_other_network() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&[
        "partition",
        "web",
        "cut",
        "--from",
        "a",
        "--to",
        "b",
        "--delay",
        "250ms",
    ]);
    let mut verify = netd
        .command(&["partition", "web", "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting verify");
    // A head start for the verify to reach its probes (it plans in
    // microseconds, then probes for seconds).
    std::thread::sleep(Duration::from_millis(500));
    netd.ok(&["guest", "add", "db", "d1"]);
    netd.ok(&["network", "ls"]);
    netd.ok(&["status"]);
    assert!(
        verify.try_wait().expect("polling verify").is_none(),
        "the verify of web ended before a guest add in db and two reads answered: either \
         they waited for it, or it did not run long"
    );
    let out = verify.wait_with_output().expect("verify's output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verify: OK"), "{text}");
    assert!(text.contains("the policy means 250 ms"), "{text}");
    // And the guest added meanwhile works.
    let guests = netd.ok(&["guest", "ls", "db"]);
    assert!(guests.contains("d1"), "{guests}");
}

/// Guests added to eight networks by eight clients at once all arrive,
/// each network all or nothing: every guest listed once, with its own
/// address, and a second round of the same requests changes nothing
/// (idempotent) on every dataplane.
fn eight_clients_on_eight_networks(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    let networks: Vec<String> = (0..8).map(|n| format!("n{n}")).collect();
    for round in 0..2 {
        std::thread::scope(|scope| {
            for network in &networks {
                let netd = &netd;
                scope.spawn(move || {
                    netd.ok(&["network", "create", network]);
                    for g in 0..6 {
                        netd.ok(&["guest", "add", network, &format!("g{g}")]);
                    }
                });
            }
        });
        for network in &networks {
            let listed = netd.json(&["guest", "ls", network]);
            let guests = listed.as_array().expect("a list of guests");
            assert_eq!(guests.len(), 6, "round {round}, {network}: {listed}");
            let mut ips: Vec<&str> = guests.iter().filter_map(|g| g["ip"].as_str()).collect();
            ips.sort();
            ips.dedup();
            assert_eq!(
                ips.len(),
                6,
                "round {round}, {network}: addresses repeat: {listed}"
            );
        }
    }
    let (code, status) = status::status(&netd);
    assert_eq!(code, 0, "{status}");
    assert!(status::drift(&status).is_empty(), "{status}");
}

netd_tests::conformance!(eight_clients_on_eight_networks);
