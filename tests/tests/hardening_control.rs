//! What an adversarial run broke in the control plane (issue 13, items 4-10),
//! each with the test that shows it fixed.

use std::path::Path;

use netd_tests::{Sandbox, netd::Netd};

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// A daemon that must refuse to start: its log.
fn refused(netd: &mut Netd) -> String {
    match netd.try_restart() {
        Ok(()) => panic!("netd started on a state it should refuse"),
        Err(log) => log,
    }
}

/// An empty or missing state never removes the networks netd has, unless
/// the operator says so with `--adopt-empty-state`; the daemon refuses to
/// start and names both ways out, the previous states kept among them.
#[test]
fn an_empty_or_missing_state_removes_nothing_unless_told() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let network_ns = format!("{}n-web", netd.prefix());
    let state = sandbox.state_dir.join("state.json");
    netd.stop();

    std::fs::write(&state, "{\"networks\": {}}\n").unwrap();
    let log = refused(&mut netd);
    assert!(log.contains("holds no network"), "{log}");
    assert!(log.contains("--adopt-empty-state"), "{log}");
    assert!(
        log.contains("state.json.1"),
        "the previous state is named: {log}"
    );
    assert!(namespace_exists(&network_ns), "{network_ns} was removed");

    std::fs::remove_file(&state).unwrap();
    let log = refused(&mut netd);
    assert!(log.contains("is missing"), "{log}");
    assert!(namespace_exists(&network_ns), "{network_ns} was removed");

    // Told to: the networks go.
    netd.daemon_args = vec!["--adopt-empty-state".to_owned()];
    netd.try_restart().unwrap();
    assert!(
        !namespace_exists(&network_ns),
        "{network_ns} is still there"
    );
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
}

/// A state no request could have made is refused at start, naming the
/// problem and the fix, and nothing is touched.
#[test]
fn a_state_no_request_could_make_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let state = sandbox.state_dir.join("state.json");
    netd.stop();
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();

    let cases: Vec<(Box<dyn Fn(&mut serde_json::Value)>, &str)> = vec![
        (
            Box::new(|s| {
                let web = s["networks"]["web"].clone();
                let mut evil = web;
                evil["name"] = "../../../tmp/evil".into();
                evil["uplink_slot"] = 9.into();
                evil["guests"] = serde_json::json!({});
                s["networks"]["../../../tmp/evil"] = evil;
            }),
            "invalid network name \"../../../tmp/evil\"",
        ),
        (
            Box::new(|s| s["networks"]["web"]["guests"]["a"]["ip"] = "10.1.2.3".into()),
            "guest web/a: guest address 10.1.2.3 is outside",
        ),
        (
            Box::new(|s| {
                let slot = s["networks"]["web"]["uplink_slot"].clone();
                s["networks"]["db"]["uplink_slot"] = slot;
            }),
            "both hold uplink slot",
        ),
    ];
    for (spoil, expected) in cases {
        let mut bad = good.clone();
        spoil(&mut bad);
        std::fs::write(&state, serde_json::to_string_pretty(&bad).unwrap()).unwrap();
        let log = refused(&mut netd);
        assert!(log.contains("is inconsistent"), "{log}");
        assert!(log.contains(expected), "{expected:?} not in {log}");
        assert!(log.contains("roll back"), "{log}");
        for net in ["web", "db"] {
            let ns = format!("{}n-{net}", netd.prefix());
            assert!(namespace_exists(&ns), "{ns} was removed");
        }
    }
    std::fs::write(&state, serde_json::to_string_pretty(&good).unwrap()).unwrap();
    netd.try_restart().unwrap();
    assert_eq!(netd.json(&["network", "ls"]).as_array().unwrap().len(), 2);
}
