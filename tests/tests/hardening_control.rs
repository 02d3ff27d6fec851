//! What an adversarial run broke in the control plane (issue 13, items 4-10),
//! each with the test that shows it fixed.

use std::path::Path;

use netd::store::{STATE_DB, Store};
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
    netd.stop();

    Store::replace(&sandbox.state_dir, &netd::model::State::default()).unwrap();
    let log = refused(&mut netd);
    assert!(log.contains("holds no network"), "{log}");
    assert!(log.contains("--adopt-empty-state"), "{log}");
    assert!(
        log.contains("state.db.1") && log.contains("netd state restore"),
        "the state kept at the last stop is named, with the way back: {log}"
    );
    assert!(namespace_exists(&network_ns), "{network_ns} was removed");

    std::fs::remove_file(sandbox.state_dir.join(STATE_DB)).unwrap();
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

/// `netd state dump` prints the desired state; `netd state restore` puts
/// the state kept at the last stop back (refused while the daemon runs, and
/// for a state the daemon would refuse), and the next start rebuilds it.
#[test]
fn a_state_is_dumped_and_an_earlier_one_restored() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a", "--ip", "172.18.0.9"]);
    let dumped = netd.json(&["state", "dump"]);
    assert_eq!(dumped["networks"]["web"]["guests"]["a"]["ip"], "172.18.0.9");
    let dir = sandbox.state_dir.to_str().unwrap().to_owned();
    let err = netd.err(&["state", "restore", "/nonexistent", "--state-dir", &dir]);
    assert!(err.contains("needs the daemon stopped"), "{err}");
    netd.stop();
    // The stop kept the state it ran on as state.db.1.
    let kept = sandbox.root.join("kept.db");
    std::fs::copy(sandbox.state_dir.join(format!("{STATE_DB}.1")), &kept).unwrap();
    let backup = kept.to_str().unwrap();
    netd.restart();
    netd.ok(&["guest", "rm", "web", "a"]);
    netd.stop();

    let bad = sandbox.root.join("bad.json");
    let mut spoiled = dumped.clone();
    spoiled["networks"]["web"]["guests"]["a"]["ip"] = "10.9.9.9".into();
    std::fs::write(&bad, spoiled.to_string()).unwrap();
    let err = netd.err(&[
        "state",
        "restore",
        bad.to_str().unwrap(),
        "--state-dir",
        &dir,
    ]);
    assert!(
        err.contains("is inconsistent") && err.contains("nothing was changed"),
        "{err}"
    );

    let out = netd.ok(&["state", "restore", backup, "--state-dir", &dir]);
    assert!(out.contains("restored 1 networks"), "{out}");
    netd.restart();
    assert_eq!(netd.json(&["state", "dump"]), dumped);
    netd.ok(&["exec", "web", "a", "--", "true"]);
}

/// The JSON state file of an older netd is imported into the database at
/// start, once, and kept beside it.
#[test]
fn a_json_state_of_an_older_netd_is_imported_once() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let dumped = netd.json(&["state", "dump"]);
    netd.stop();
    for file in std::fs::read_dir(&sandbox.state_dir).unwrap() {
        let path = file.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(STATE_DB)
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(sandbox.state_dir.join("state.json"), dumped.to_string()).unwrap();

    netd.restart();
    assert_eq!(netd.json(&["state", "dump"]), dumped);
    assert!(sandbox.state_dir.join("state.json.imported").exists());
    assert!(!sandbox.state_dir.join("state.json").exists());
    assert!(netd.log().contains("imported"), "{}", netd.log());
    netd.ok(&["exec", "web", "a", "--", "true"]);
}

/// Puts `state` into the database, as an operator editing it would.
fn write_state(dir: &Path, state: &serde_json::Value) {
    let state: netd::model::State = serde_json::from_value(state.clone()).unwrap();
    Store::replace(dir, &state).unwrap();
}

/// A change that makes a good state bad.
type Spoil = Box<dyn Fn(&mut serde_json::Value)>;

/// A state no request could have made is refused at start, naming the
/// problem and the fix, and nothing is touched.
#[test]
fn a_state_no_request_could_make_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.stop();
    let good =
        serde_json::to_value(Store::read_file(&sandbox.state_dir.join(STATE_DB)).unwrap()).unwrap();

    let cases: Vec<(Spoil, &str)> = vec![
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
        write_state(&sandbox.state_dir, &bad);
        let log = refused(&mut netd);
        assert!(log.contains("is inconsistent"), "{log}");
        assert!(log.contains(expected), "{expected:?} not in {log}");
        assert!(log.contains("roll back"), "{log}");
        for net in ["web", "db"] {
            let ns = format!("{}n-{net}", netd.prefix());
            assert!(namespace_exists(&ns), "{ns} was removed");
        }
    }
    write_state(&sandbox.state_dir, &good);
    netd.try_restart().unwrap();
    assert_eq!(netd.json(&["network", "ls"]).as_array().unwrap().len(), 2);
}

/// Crash points (`NETD_CRASH_AT`) in every change a user can make.
const CRASH_POINTS: [&str; 12] = [
    "network-saved",
    "network-after-uplink-veth",
    "network-built",
    "guest-after-veth",
    "guest-built",
    "port-published",
    "port-withdrawn",
    "guest-torn-down",
    "network-rm-guest",
    "network-torn-down",
    "network-rm-saved",
    "network-saved#2",
];

/// The churn: round `r` makes a routable and a plain network with guests
/// and a port, then takes half of it down again, and the previous round's
/// networks.
fn churn_op(step: usize) -> Vec<String> {
    let r = step / 9;
    let ops: [String; 9] = [
        format!("network create r{r} --subnet auto"),
        format!("network create p{r}"),
        format!("guest add r{r} a"),
        format!("guest add r{r} b"),
        format!("guest add p{r} c"),
        format!("port add r{r} a {}:80", 8000 + r),
        format!("port rm r{r} a {}:80", 8000 + r),
        format!("guest rm r{r} b"),
        if r == 0 {
            "network ls".to_owned()
        } else {
            format!("network rm r{}", r - 1)
        },
    ];
    let mut op: Vec<String> = ops[step % 9].split(' ').map(str::to_owned).collect();
    if step % 9 == 8 && r > 0 {
        // And the previous round's plain network, in the same step.
        op.push(format!("p{}", r - 1));
    }
    op
}

/// Runs one churn step; a step that the last crash may have half done is
/// done again, and "already gone" counts as done for removals.
fn run_step(netd: &Netd, op: &[String]) -> Result<(), String> {
    let names: Vec<&str> = op.iter().map(String::as_str).collect();
    // `network rm` takes one name: the second one is a second command.
    let commands: Vec<Vec<&str>> = if names[..2] == ["network", "rm"] && names.len() == 4 {
        vec![names[..3].to_vec(), vec!["network", "rm", names[3]]]
    } else {
        vec![names]
    };
    for command in commands {
        let out = netd.cli(&command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let gone = stderr.contains("no network named")
            || stderr.contains("no guest named")
            || stderr.contains("does not publish");
        if !out.status.success() && !gone {
            return Err(format!("netd {}: {stderr}", command.join(" ")));
        }
    }
    Ok(())
}

/// Every link pin names a network or guest of the state (or the host side).
fn orphan_pins(sandbox: &Sandbox, netd: &Netd) -> Vec<String> {
    let dir = sandbox.bpffs_dir.join("netd/v1/links");
    let networks = netd.json(&["network", "ls"]);
    let networks = networks.as_array().unwrap();
    let mut wanted = std::collections::BTreeSet::new();
    for net in networks {
        let name = net["name"].as_str().unwrap();
        wanted.insert(format!("net-{name}-uplink"));
        for guest in net["guests"].as_array().unwrap() {
            wanted.insert(format!("port@{name}@{}", guest["name"].as_str().unwrap()));
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pin| {
            (pin.starts_with("net-") || pin.starts_with("port@")) && !wanted.contains(pin)
        })
        .collect()
}

/// `kill -9` at many points of a churn of networks (routable too), guests and
/// ports; after each restart: no drift (no orphan namespace, link, host
/// route, nft table), and at the end no orphan pin and traffic passes.
fn a_crash_at_any_step_leaves_no_drift_and_no_orphan(
    dataplane: &str,
    points: std::ops::Range<usize>,
) {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sandbox, dataplane);
    let mut step = 0;
    let mut crashes = 0;
    // Each point once or more, each time at its next occurrence in the
    // churn: crashes at different steps and objects.
    let specs: Vec<&str> = (0..3)
        .flat_map(|_| CRASH_POINTS)
        .skip(points.start)
        .take(points.len())
        .collect();
    let started = std::time::Instant::now();
    for spec in &specs {
        eprintln!("{:?} {spec} at step {step}", started.elapsed());
        netd.set_env(&[("NETD_CRASH_AT", spec)]);
        if netd.try_restart().is_err() {
            // Crashed in the start-up reconcile (itself a crash point).
            crashes += 1;
            netd.set_env(&[]);
            netd.try_restart().unwrap();
            let (code, status) = netd_tests::status::status(&netd);
            let drift = netd_tests::status::drift(&status);
            assert!(
                code == 0 && drift.is_empty(),
                "after a crash at start, at {spec}: {drift:?}"
            );
            continue;
        }
        eprintln!("{:?} restarted", started.elapsed());
        let (code, status) = netd_tests::status::status(&netd);
        let drift = netd_tests::status::drift(&status);
        eprintln!("{:?} status", started.elapsed());
        assert!(
            code == 0 && drift.is_empty(),
            "after {crashes} crashes, at {spec}: {drift:?}"
        );
        // Churn until the daemon dies at its crash point (or 40 steps).
        for _ in 0..40 {
            match run_step(&netd, &churn_op(step)) {
                Ok(()) => step += 1,
                Err(err) => {
                    // A killed process takes a moment to go (longer under load).
                    let dying = std::time::Instant::now();
                    while netd.alive() && dying.elapsed() < std::time::Duration::from_secs(20) {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    if netd.alive() {
                        let pid = netd.pid().unwrap();
                        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .unwrap_or_default();
                        let log = netd.log();
                        let tail: Vec<&str> = log.lines().rev().take(15).collect();
                        panic!(
                            "step {step} failed with the daemon alive: {err}\nstat: {stat}\n\
                             log: {tail:#?}"
                        );
                    }
                    crashes += 1;
                    break;
                }
            }
        }
    }
    assert!(crashes >= specs.len(), "only {crashes} crashes");
    netd.set_env(&[]);
    netd.try_restart().unwrap();
    let (code, status) = netd_tests::status::status(&netd);
    assert_eq!(code, 0, "{:?}", netd_tests::status::drift(&status));
    let orphans = orphan_pins(&sandbox, &netd);
    assert!(orphans.is_empty(), "orphan link pins: {orphans:?}");
    // Every guest still reaches its peers and the outside.
    let networks = netd.json(&["network", "ls"]);
    for net in networks.as_array().unwrap() {
        let guests = net["guests"].as_array().unwrap();
        for guest in guests {
            let path = guest["netns"].as_str().unwrap();
            let ns = netd::netns::Netns::open_path("guest", Path::new(path)).unwrap();
            let name = guest["name"].as_str().unwrap();
            assert!(
                netd_tests::traffic::reachable(&ns, netd_tests::sandbox::INTERNET_SERVER),
                "{name} cannot reach the outside"
            );
            for peer in guests {
                let ip: std::net::Ipv4Addr = peer["ip"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    netd_tests::traffic::reachable(&ns, ip),
                    "{name} cannot reach {ip}"
                );
            }
        }
    }
    eprintln!("{crashes} crashes over {step} steps on {dataplane}");
}

/// 36 crashes on each dataplane (every crash point three times). eBPF's
/// restart (loading and attaching its programs) takes some 3 s, so its 36
/// run as two tests of 18, in parallel sandboxes.
mod crash_points {
    #[test]
    fn ebpf_first_half() {
        super::a_crash_at_any_step_leaves_no_drift_and_no_orphan("ebpf", 0..18)
    }
    #[test]
    fn ebpf_second_half() {
        super::a_crash_at_any_step_leaves_no_drift_and_no_orphan("ebpf", 18..36)
    }
    #[test]
    fn nftables() {
        super::a_crash_at_any_step_leaves_no_drift_and_no_orphan("nftables", 0..36)
    }
}

/// One raw HTTP request to the daemon's API from the sandbox's host
/// namespace (curl, so that the caller is a process there): the status
/// code and the body.
fn http(netd: &Netd, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut curl = netd.sandbox.host_command("curl");
    curl.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--unix-socket")
        .arg(&netd.socket)
        .args(["-H", "Content-Type: application/json", "--data", body])
        .arg(format!("http://netd{path}"));
    let out = curl.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Reserved ranges, unknown fields, `--netns` at something that is no
/// container's namespace, a host address the host does not have: each a
/// 400 that names the problem, with nothing made.
#[test]
fn bad_requests_are_400s_that_name_the_problem() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    for (subnet, what) in [
        ("0.0.0.0/16", "this network"),
        ("127.0.0.0/16", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/24", "multicast"),
        ("240.0.0.0/24", "reserved range"),
        ("255.255.255.0/24", "255.255.255.255"),
    ] {
        let body = format!(r#"{{"name":"r","subnet":"{subnet}"}}"#);
        let (code, text) = http(&netd, "POST", "/v1/networks", &body);
        assert_eq!(code, 400, "{subnet}: {text}");
        assert!(text.contains(what), "{subnet}: {text}");
    }
    let (code, text) = http(
        &netd,
        "POST",
        "/v1/networks",
        r#"{"name":"typo","subnett":"auto"}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("unknown field `subnett`"), "{text}");
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));

    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let prefix = netd.prefix();
    let not_a_namespace = sandbox.root.join("netd.toml");
    for (netns, what) in [
        (format!("/run/netns/{prefix}gw"), "netd's own namespace"),
        (format!("/run/netns/{prefix}n-web"), "netd's own namespace"),
        (
            format!("/run/netns/{prefix}g-web.a"),
            "netd's own namespace",
        ),
        (
            "/proc/self/ns/net".to_owned(),
            "the daemon's own network namespace",
        ),
        (
            format!("/run/netns/{}host", sandbox.prefix),
            "the daemon's own",
        ),
        (
            not_a_namespace.display().to_string(),
            "is no network namespace file",
        ),
        (
            "/proc/self/ns/mnt".to_owned(),
            "is no network namespace file",
        ),
    ] {
        let body = format!(r#"{{"name":"x","netns":"{netns}"}}"#);
        let (code, text) = http(&netd, "POST", "/v1/networks/web/guests", &body);
        assert_eq!(code, 400, "{netns}: {text}");
        assert!(text.contains(what), "{netns}: {text}");
    }
    let (code, text) = http(
        &netd,
        "POST",
        "/v1/networks/web/guests",
        r#"{"name":"x","ipp":"172.18.0.9"}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("unknown field `ipp`"), "{text}");

    let (code, text) = http(
        &netd,
        "POST",
        "/v1/networks/web/guests/a/ports",
        r#"{"spec":"192.0.2.77:8080:80"}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("192.0.2.77"), "{text}");
    assert!(
        text.contains("198.51.100.2"),
        "the host's addresses are named: {text}"
    );
    netd.ok(&["port", "add", "web", "a", "198.51.100.2:8080:80"]);
    let names: Vec<String> = netd
        .json(&["guest", "ls", "web"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a"]);
}

/// An external namespace is known by its identity, not its path: one
/// deleted and made again at the same path is never plugged into after a
/// restart, and a gone or replaced one is drift in `status`.
#[test]
fn a_replaced_external_namespace_is_never_plugged_into() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start(&sandbox);
    let name = format!("{}ext", sandbox.prefix);
    let path = format!("/run/netns/{name}");
    let first = netd::netns::Netns::create(&name).unwrap();
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "c", "--netns", &path]);
    drop(first);
    netd.stop();

    netd::netns::Netns::delete(&name).unwrap();
    let (code, _) = {
        netd.try_restart().unwrap();
        netd_tests::status::status(&netd)
    };
    assert_eq!(code, 3, "a gone namespace is drift");
    let (_, status) = netd_tests::status::status(&netd);
    let drift = netd_tests::status::drift(&status);
    assert!(drift.iter().any(|d| d.contains("is gone")), "{drift:?}");

    netd.stop();
    let second = netd::netns::Netns::create(&name).unwrap();
    netd.try_restart().unwrap();
    let eth0 = std::process::Command::new("ip")
        .args(["-n", &name, "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(
        !eth0.status.success(),
        "netd plugged the guest into another namespace"
    );
    drop(second);
    let (code, status) = netd_tests::status::status(&netd);
    let drift = netd_tests::status::drift(&status);
    assert_eq!(code, 3, "{drift:?}");
    assert!(
        drift.iter().any(|d| d.contains("is another namespace")),
        "{drift:?}"
    );
    netd.ok(&["guest", "rm", "web", "c"]);
    netd::netns::Netns::delete(&name).unwrap();
}

/// `status` holds the service lock only for its snapshot: a change sent
/// while a status of many networks runs is not held up for the status's
/// whole run. And `in_force_after_us` counts from the request's arrival.
fn status_does_not_stop_the_world(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    // Enough that a status (one netlink round per namespace, and on
    // nftables one `nft list` per table) takes many guest adds' time.
    const NETWORKS: usize = 50;
    for n in 0..NETWORKS {
        netd.ok(&["network", "create", &format!("n{n}")]);
        netd.ok(&["guest", "add", &format!("n{n}"), "a"]);
    }
    // A status that runs during a change may see it half done (exit 3).
    let timed = |args: &[&str]| {
        let start = std::time::Instant::now();
        let out = netd.cli(args);
        assert!(
            out.status.code().is_some_and(|c| c == 0 || c == 3),
            "{args:?}: {out:?}"
        );
        start.elapsed()
    };
    // With every namespace listed: the longest read status does (its
    // brief form, one link dump per network, is over before a guest add).
    let alone = timed(&["status", "--namespaces", "--json"]);
    let add_alone = timed(&["guest", "add", "n0", "warm"]);
    let (during, status_run, add_first) = std::thread::scope(|scope| {
        let status = scope.spawn(|| {
            let run = timed(&["status", "--namespaces", "--json"]);
            (run, std::time::Instant::now())
        });
        std::thread::sleep(alone / 5);
        let during = timed(&["guest", "add", "n0", "b"]);
        let added = std::time::Instant::now();
        let (status_run, status_done) = status.join().unwrap();
        (during, status_run, added < status_done)
    });
    eprintln!(
        "{dataplane}: status of {NETWORKS} networks {alone:?} ({status_run:?} under load); \
         guest add {add_alone:?} alone, {during:?} during a status"
    );
    // Against the status's own run, not a clock: the guest add was
    // answered while the status was still reading the kernel.
    assert!(
        add_first,
        "guest add waited for the status: {during:?} (alone {add_alone:?}, status {status_run:?})"
    );
}

mod status_lock {
    #[test]
    fn ebpf() {
        super::status_does_not_stop_the_world("ebpf")
    }
    #[test]
    fn nftables() {
        super::status_does_not_stop_the_world("nftables")
    }
}

/// The daemon raises its own open files limit to the hard limit, and an nft
/// that cannot run for want of descriptors (EMFILE) is "could not check",
/// never a missing table to "restore".
#[test]
fn running_out_of_descriptors_is_not_drift() {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, "nftables");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let pid = netd.pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {files}");

    let before = netd.log().matches("restoring").count();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // Only the soft limit: the hard one, and so the way back, stays.
    let tight = format!("--nofile={}:", open + 1);
    let run = |limit: &str| {
        let out = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), limit])
            .output()
            .unwrap();
        assert!(out.status.success(), "prlimit {limit}: {out:?}");
    };
    run(&tight);
    // Two rounds of the drift checker (every 5 s).
    std::thread::sleep(std::time::Duration::from_secs(11));
    run(&format!("--nofile={}:", numbers[1]));
    let log = netd.log();
    assert!(
        log.matches("restoring").count() == before,
        "EMFILE taken for drift: {log}"
    );
    let (code, status) = netd_tests::status::status(&netd);
    assert_eq!(code, 0, "{:?}", netd_tests::status::drift(&status));
}

/// A guest that opens hundreds of idle API connections holds at most its
/// own share of them: the daemon's descriptors stay, and the host's CLI
/// answers at once.
#[test]
fn a_guest_cannot_stall_the_api_with_idle_connections() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let pid = netd.pid().unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    let script = format!(
        "import socket, time\n\
         held = []\n\
         for _ in range(400):\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   s.connect({:?})\n\
         \x20   held.append(s)\n\
         print('ready', flush=True)\n\
         time.sleep(20)\n",
        netd.socket.display().to_string()
    );
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{}g-web.a", netd.prefix())])
        .args(["/usr/bin/python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let held = fds();
    let start = std::time::Instant::now();
    netd.ok(&["network", "ls"]);
    let answered = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "daemon fds: {before} before, {held} with 400 connections from a guest; network ls in {answered:?}"
    );
    assert!(
        held < before + netd::daemon::limit::CONNECTIONS_PER_CALLER + 20,
        "the guest's connections took {} descriptors",
        held - before
    );
    assert!(answered < std::time::Duration::from_secs(2), "{answered:?}");
}

/// Healing a network that has no partition is a no-op: no warning at
/// every start for every such network.
#[test]
fn a_start_warns_of_nothing_for_networks_without_a_partition() {
    let sandbox = Sandbox::new();
    let mut netd = Netd::start_with_dataplane(&sandbox, "ebpf");
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["partition", "web", "heal"]);
    netd.restart();
    let log = netd.log();
    assert!(!log.contains("bpf_map_delete_elem"), "{log}");
    assert!(!log.contains("healing the partition"), "{log}");
}
