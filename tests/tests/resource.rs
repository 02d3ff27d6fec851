//! The declarative API (`PUT /v1/networks/NAME`, zos's ApplyNetResource):
//! the whole desired network in one body against a real daemon in a
//! sandbox. Applied again it changes nothing and says so; a changed one is
//! reconciled (guests and ports added and removed); an immutable field
//! changed, or a bad body, is refused naming it and changing nothing;
//! `DELETE` removes the network.

use netd::netns::Netns;
use netd_tests::{Sandbox, netd::Netd, traffic::ping};
use serde_json::{Value, json};

/// `netd network apply web -` (`PUT /v1/networks/web`) with `body`: the
/// answer, or the error line.
fn put(netd: &Netd, body: &Value) -> Result<Value, String> {
    let mut command = netd.command(&["network", "apply", "web", "-", "--json"]);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("netd network apply");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("apply --json"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn names(netd: &Netd, args: &[&str]) -> Vec<String> {
    netd.json(args)
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_network_resource_is_applied_idempotently_and_reconciled() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    let body = json!({
        "guests": [{"name": "a"}, {"name": "b", "ip": "172.18.0.20"}],
        "ports": [{"guest": "a", "spec": "8080:80"}],
    });
    let first = put(&netd, &body).unwrap();
    assert_eq!(first["changed"], true, "{first}");
    assert_eq!(
        first["steps"],
        json!([
            "network created",
            "guest a added",
            "guest b added",
            "port 8080:80/tcp of a published"
        ])
    );
    assert_eq!(
        first["namespace"],
        format!("{}n-web", netd.prefix()),
        "{first}"
    );
    for guest in ["a", "b"] {
        let ns = first["namespaces"][guest].as_str().unwrap();
        assert_eq!(ns, format!("{}g-web.{guest}", netd.prefix()));
        Netns::open(ns).expect("the answer's namespace exists");
    }
    let a = Netns::open(&format!("{}g-web.a", netd.prefix())).unwrap();
    assert_eq!(ping(&a, "172.18.0.20".parse().unwrap(), 2), 2);

    let again = put(&netd, &body).unwrap();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["steps"], json!([]));

    let changed = put(
        &netd,
        &json!({"guests": [{"name": "a"}, {"name": "c"}], "ports": []}),
    )
    .unwrap();
    assert_eq!(
        changed["steps"],
        json!([
            "port 8080:80/tcp of a withdrawn",
            "guest b removed",
            "guest c added"
        ]),
        "{changed}"
    );
    assert_eq!(names(&netd, &["guest", "ls", "web"]), ["a", "c"]);
    assert_eq!(netd.json(&["port", "ls", "web"]), json!([]));

    // Refused, naming the field, and nothing changed.
    let err = put(
        &netd,
        &json!({"subnet": "10.9.0.0/24", "guests": [{"name": "a"}]}),
    )
    .unwrap_err();
    assert!(err.contains("\"subnet\" cannot change"), "{err}");
    let err = put(&netd, &json!({"guests": [{"name": "a", "ipp": "1"}]})).unwrap_err();
    assert!(err.contains("ipp"), "{err}");
    let err = put(
        &netd,
        &json!({"guests": [{"name": "a"}], "ports": [{"guest": "x", "spec": "1:1"}]}),
    )
    .unwrap_err();
    assert!(err.contains("not in \"guests\""), "{err}");
    assert_eq!(names(&netd, &["guest", "ls", "web"]), ["a", "c"]);

    netd.ok(&["network", "rm", "web"]);
    assert_eq!(names(&netd, &["network", "ls"]), Vec::<String>::new());
}
