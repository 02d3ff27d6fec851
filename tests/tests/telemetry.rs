//! What netd tells about itself: `netd events` streams what happens as it
//! happens, `GET /metrics` is valid Prometheus exposition (promtool says
//! so) that counts what netd has and does, on the API socket and on
//! `metrics_listen`, and a real Prometheus server scrapes it.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddrV4},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use netd_tests::{Sandbox, netd::Netd, sockets::tcp_connect, traffic::ping};
use serde_json::Value;

/// `netd events ARGS` running, its lines arriving on a channel.
struct Events {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Events {
    fn start(netd: &Netd, args: &[&str]) -> Events {
        let mut all = vec!["events"];
        all.extend_from_slice(args);
        let mut child = netd
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("netd events");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        // Subscribed once the daemon has answered; give it a moment.
        std::thread::sleep(Duration::from_millis(400));
        Events { child, lines }
    }

    /// Lines until one satisfies `last` (included), or panics after `within`.
    fn until(&self, within: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = last(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no such event within {within:?}; saw {seen:#?}"),
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kinds(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn events_stream_what_happens_as_it_happens() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    let all = Events::start(&netd, &["--json"]);
    let human = Events::start(&netd, &[]);

    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    let web_only = Events::start(&netd, &["--json", "--network", "web"]);
    netd.ok(&["guest", "add", "db", "pg"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    netd.ok(&["port", "rm", "web", "a", "8080:80"]);
    netd.ok(&["partition", "web", "isolate", "a"]);
    netd.ok(&["partition", "web", "heal"]);
    netd.ok(&["partition", "web", "isolate", "b", "--for", "1s"]);
    let seen = all.until(Duration::from_secs(12), |l| l.contains("partition.expired"));
    assert_eq!(
        kinds(&seen),
        [
            "network.added",
            "network.added",
            "guest.added",
            "guest.added",
            "guest.added",
            "port.published",
            "port.withdrawn",
            "partition.set",
            "partition.healed",
            "partition.set",
            "partition.expired",
        ]
    );
    let published: Value = serde_json::from_str(&seen[5]).unwrap();
    assert_eq!(published["network"], "web");
    assert_eq!(published["guest"], "a");
    assert_eq!(published["detail"], "8080:80/tcp");

    let web = web_only.until(Duration::from_secs(5), |l| l.contains("partition.expired"));
    assert!(
        !web.iter().any(|l| l.contains("\"db\"")),
        "--network web shows nothing of db: {web:#?}"
    );
    assert_eq!(
        kinds(&web).iter().filter(|k| *k == "guest.added").count(),
        2
    );

    let line = human.until(Duration::from_secs(2), |l| l.contains("port.published"));
    let line = line.last().unwrap();
    assert!(
        line.ends_with("port.published     web/a 8080:80/tcp"),
        "one line for people: {line}"
    );

    // Drift: the host's table removed by hand is found and repaired.
    let nft = sandbox
        .host_command("nft")
        .args(["delete", "table", "inet", "netd"])
        .status()
        .unwrap();
    assert!(nft.success());
    let seen = all.until(Duration::from_secs(12), |l| l.contains("drift.repaired"));
    assert!(
        kinds(&seen).contains(&"drift.found".to_owned()),
        "{seen:#?}"
    );

    netd.ok(&["guest", "rm", "web", "b"]);
    netd.ok(&["network", "rm", "web"]);
    let seen = all.until(Duration::from_secs(5), |l| l.contains("network.removed"));
    // Removing a network removes its guests without an event each.
    assert_eq!(kinds(&seen), ["guest.removed", "network.removed"]);

    let err = netd.err(&["events", "--network", "nope"]);
    assert!(err.contains("no network named \"nope\""), "{err}");
}

#[test]
fn a_consumer_that_does_not_read_never_slows_the_daemon() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    // A consumer that subscribes and never reads a byte.
    let stuck = sandbox
        .host
        .run_in(|| std::os::unix::net::UnixStream::connect(&netd.socket))
        .unwrap()
        .unwrap();
    (&stuck)
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: netd\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    netd.ok(&["network", "create", "web"]);
    for i in 0..40 {
        netd.ok(&["guest", "add", "web", &format!("g{i}")]);
    }
    netd.ok(&["network", "rm", "web"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    drop(stuck);
    // The daemon stops even with a stream open.
    let mut netd = netd;
    let _reader = Events::start(&netd, &[]);
    let stopping = Instant::now();
    netd.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

/// `name{labels} value` lines of an exposition, as (series, value).
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .1
}

fn http_get(sandbox: &Sandbox, to: SocketAddrV4, path: &str) -> Result<String, String> {
    let mut stream = tcp_connect(&sandbox.host, to, None).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: netd\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no body")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.to_owned());
    }
    Ok(body.to_owned())
}

const METRICS_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9617);

fn metrics_count_what_netd_has_and_pass_promtool(dataplane: &str) {
    let sandbox = Sandbox::new();
    std::fs::write(
        sandbox.root.join("netd.toml"),
        format!("metrics_listen = \"{METRICS_ADDR}\"\n"),
    )
    .unwrap();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["network", "create", "db"]);
    netd.ok(&["guest", "add", "web", "a"]);
    netd.ok(&["guest", "add", "web", "b"]);
    netd.ok(&["port", "add", "web", "a", "8080:80"]);
    netd.ok(&["partition", "web", "isolate", "b"]);
    let a = netd::netns::Netns::open(&format!("{}g-web.a", netd.prefix())).unwrap();
    assert_eq!(ping(&a, netd_tests::sandbox::INTERNET_SERVER, 2), 2);

    let text = netd.ok(&["metrics"]);
    assert_eq!(value(&text, "netd_networks"), 2.0);
    assert_eq!(value(&text, "netd_guests{network=\"web\"}"), 2.0);
    assert_eq!(value(&text, "netd_guests{network=\"db\"}"), 0.0);
    assert_eq!(value(&text, "netd_port_forwards{network=\"web\"}"), 1.0);
    assert_eq!(
        value(&text, "netd_partition_in_force{network=\"web\"}"),
        1.0
    );
    assert_eq!(value(&text, "netd_partition_in_force{network=\"db\"}"), 0.0);
    assert_eq!(value(&text, "netd_dataplane_up"), 1.0);
    assert!(value(&text, "netd_conntrack_capacity") > 0.0, "{text}");
    let web_packets: f64 = samples(&text)
        .iter()
        .filter(|(s, _)| s.starts_with("netd_packets_total{network=\"web\""))
        .map(|(_, v)| v)
        .sum();
    assert!(web_packets > 0.0, "the pings were counted:\n{text}");
    assert!(
        value(
            &text,
            "netd_api_request_duration_seconds_count{method=\"POST\",route=\"/v1/networks/{network}/guests\"}"
        ) >= 2.0,
        "{text}"
    );

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let over_tcp = http_get(&sandbox, METRICS_ADDR, "/metrics").expect("metrics_listen serves");
    assert_eq!(value(&over_tcp, "netd_networks"), 2.0);
    assert!(
        http_get(&sandbox, METRICS_ADDR, "/v1/networks").is_err(),
        "metrics_listen serves metrics only"
    );
}

fn a_prometheus_server_scrapes_netd(dataplane: &str) {
    let sandbox = Sandbox::new();
    std::fs::write(
        sandbox.root.join("netd.toml"),
        format!("metrics_listen = \"{METRICS_ADDR}\"\n"),
    )
    .unwrap();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    let dir = sandbox.root.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: netd\n    static_configs:\n      - targets: ['{METRICS_ADDR}']\n"
        ),
    )
    .unwrap();
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9090);
    let mut prometheus = sandbox.host_command("prometheus");
    prometheus
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={server}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()));
    sandbox
        .spawn(prometheus)
        .expect("prometheus (Debian package; `cargo xtask setup`)");

    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = http_get(&sandbox, server, "/api/v1/query?query=netd_guests");
        if let Ok(body) = &answer
            && let Ok(json) = serde_json::from_str::<Value>(body)
            && let Some(first) = json["data"]["result"].get(0)
        {
            assert_eq!(first["metric"]["network"], "web", "{json}");
            assert_eq!(first["value"][1], "1", "{json}");
            assert_eq!(first["metric"]["job"], "netd");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never had netd_guests: {answer:?}; log:\n{}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let targets = http_get(&sandbox, server, "/api/v1/targets").unwrap();
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
}

netd_tests::conformance!(
    metrics_count_what_netd_has_and_pass_promtool,
    a_prometheus_server_scrapes_netd
);
