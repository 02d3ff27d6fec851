//! `cargo xtask bench`: netd's dataplane against the limit and its peers,
//! and its control plane, in one run with the cases interleaved. See
//! `bench/results/README.md` for what is measured and how to reproduce.

pub mod api;
pub mod cases;
pub mod control;
pub mod load;
pub mod report;
pub mod stats;
pub mod svg;

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    Sandbox,
    bench::{
        cases::{Case, CaseKey, PathKind},
        control::Timing,
    },
};

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    /// Rounds over every (test, path, case).
    pub rounds: usize,
    /// Length of each request/response, connection and UDP measurement.
    pub secs: Duration,
    pub iperf_secs: u32,
    /// Guests added (and partitioned) in one network.
    pub guests: usize,
    pub networks: usize,
    /// Existing port forwards at which `port add` is timed.
    pub forward_levels: Vec<usize>,
    pub forward_samples: usize,
    pub partition_reps: usize,
    /// Containers set up by each system in the setup comparison.
    pub setup_containers: usize,
    pub out_dir: PathBuf,
    /// Run the traffic rounds (off with `--only control`).
    pub traffic: bool,
    /// Run the control-plane figures (off with `--only traffic`).
    pub control: bool,
}

impl Settings {
    pub fn new(quick: bool, out_dir: PathBuf) -> Settings {
        if quick {
            Settings {
                quick,
                rounds: 3,
                secs: Duration::from_secs(1),
                iperf_secs: 1,
                guests: 25,
                networks: 20,
                forward_levels: vec![1, 1_000],
                forward_samples: 10,
                partition_reps: 5,
                setup_containers: 10,
                out_dir,
                traffic: true,
                control: true,
            }
        } else {
            Settings {
                quick,
                rounds: 5,
                secs: Duration::from_secs(3),
                iperf_secs: 3,
                guests: 253,
                networks: 100,
                forward_levels: vec![1, 1_000, 10_000],
                forward_samples: 20,
                partition_reps: 10,
                setup_containers: 30,
                out_dir,
                traffic: true,
                control: true,
            }
        }
    }
}

/// One kind of traffic measurement, giving one or more metrics.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Test {
    Rr,
    Crr,
    Udp,
    Iperf,
}

impl Test {
    pub const ALL: [Test; 4] = [Test::Rr, Test::Crr, Test::Udp, Test::Iperf];

    pub fn title(self) -> &'static str {
        match self {
            Test::Rr => "TCP request/response",
            Test::Crr => "TCP connect/request/response/close",
            Test::Udp => "UDP 64-byte blast",
            Test::Iperf => "iperf3 TCP throughput",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Metric {
    RrTps,
    RrP50,
    RrP99,
    CrrRate,
    UdpReceived,
    UdpSent,
    Throughput,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::RrTps,
        Metric::RrP50,
        Metric::RrP99,
        Metric::CrrRate,
        Metric::UdpReceived,
        Metric::UdpSent,
        Metric::Throughput,
    ];

    pub fn test(self) -> Test {
        match self {
            Metric::RrTps | Metric::RrP50 | Metric::RrP99 => Test::Rr,
            Metric::CrrRate => Test::Crr,
            Metric::UdpReceived | Metric::UdpSent => Test::Udp,
            Metric::Throughput => Test::Iperf,
        }
    }

    /// The chart's file name, without `.svg`.
    pub fn file(self) -> &'static str {
        match self {
            Metric::RrTps => "tcp_rr_tps",
            Metric::RrP50 => "tcp_rr_p50",
            Metric::RrP99 => "tcp_rr_p99",
            Metric::CrrRate => "tcp_crr",
            Metric::UdpReceived => "udp_pps",
            Metric::UdpSent => "udp_sent_pps",
            Metric::Throughput => "tcp_throughput",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Metric::RrTps => "TCP request/response: transactions per second",
            Metric::RrP50 => "TCP request/response: latency p50",
            Metric::RrP99 => "TCP request/response: latency p99",
            Metric::CrrRate => "New TCP connections per second",
            Metric::UdpReceived => "UDP 64-byte packets per second, received",
            Metric::UdpSent => "UDP 64-byte packets per second, sent",
            Metric::Throughput => "TCP throughput (iperf3, one stream)",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::RrTps => "transactions/s",
            Metric::RrP50 | Metric::RrP99 => "µs",
            Metric::CrrRate => "connections/s",
            Metric::UdpReceived | Metric::UdpSent => "packets/s",
            Metric::Throughput => "Gbit/s",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::RrP50 | Metric::RrP99)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::RrTps | Metric::RrP50 | Metric::RrP99 => {
                "One TCP connection (TCP_NODELAY), a 64-byte request answered with 64 bytes, \
                 back to back; latency is each transaction's time from send to full answer."
            }
            Metric::CrrRate => {
                "One connection at a time: connect, 1 byte each way, the server closes, the \
                 client sees the close and closes: a new connection (and conntrack entry, and \
                 NAT mapping) per transaction."
            }
            Metric::UdpReceived => {
                "One sender blasts 64-byte datagrams on one flow for the whole measurement; the \
                 receiver counts those of this run (200 ms grace after the sender stops)."
            }
            Metric::UdpSent => {
                "What the sender of the UDP blast got out of its socket; what the path dropped is \
                 the difference from the received figure. Equal figures mean nothing was \
                 dropped: the sender, whose system calls carry each datagram through the whole \
                 path on its own CPU, was the bottleneck, so the rate measures the path's \
                 per-packet cost."
            }
            Metric::Throughput => {
                "`iperf3 -c SERVER -t N -J`, one TCP stream; the receiver's bits per second. \
                 Bulk moves large GSO segments, so per-packet costs hide here."
            }
        }
    }

    /// A value as the report writes it.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "—".to_owned();
        }
        match self {
            Metric::RrP50 | Metric::RrP99 => format!("{v:.1}"),
            Metric::Throughput => format!("{v:.2}"),
            _ => group_thousands(v.round() as u64),
        }
    }
}

/// 1234567 -> "1,234,567".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything a run measured.
#[derive(Default)]
pub struct Results {
    /// Per (metric, path, case): one sample per round.
    pub traffic: BTreeMap<(Metric, PathKind, CaseKey), Vec<f64>>,
    /// The same samples by round, for ratios within a round.
    pub per_round: BTreeMap<(Metric, PathKind, CaseKey, usize), f64>,
    /// Per (test, path, case): what went wrong, once per distinct message.
    pub errors: BTreeMap<(Test, PathKind, CaseKey), Vec<String>>,
    /// Failed connection attempts during the connection-rate test.
    pub crr_failures: BTreeMap<(PathKind, CaseKey), u64>,
    /// Cases measured, in order.
    pub cases: Vec<CaseKey>,
    /// Cases that could not be built, and why.
    pub unavailable: Vec<(CaseKey, String)>,
    pub control: Vec<Timing>,
    /// Anything else worth a line in the report.
    pub notes: Vec<String>,
    pub facts: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl Results {
    /// The median over rounds of `a`'s figure divided by `b`'s in the same
    /// round: the cases of a round ran back to back, so this pairs figures
    /// that met the same machine state. None without a common round.
    pub fn paired_ratio(
        &self,
        metric: Metric,
        path: PathKind,
        a: CaseKey,
        b: CaseKey,
    ) -> Option<f64> {
        let ratios: Vec<f64> = self
            .per_round
            .range((metric, path, a, 0)..=(metric, path, a, usize::MAX))
            .filter_map(|(&(_, _, _, round), &va)| {
                let vb = *self.per_round.get(&(metric, path, b, round))?;
                (vb > 0.0 && vb.is_finite() && va.is_finite()).then(|| va / vb)
            })
            .collect();
        stats::Summary::of(&ratios).map(|s| s.median)
    }
}

/// Runs the whole benchmark and writes the report; returns its path.
pub fn run(settings: &Settings) -> Result<PathBuf> {
    let started = Instant::now();
    let log = |message: &str| {
        println!("[{:6.1} s] {message}", started.elapsed().as_secs_f64());
    };
    let mut results = Results {
        facts: machine_facts(),
        ..Results::default()
    };
    log(&format!(
        "netd-bench{}: {} rounds of {:?} per measurement",
        if settings.quick { " --quick" } else { "" },
        settings.rounds,
        settings.secs
    ));

    let mut sandboxes: Vec<(CaseKey, Sandbox)> = Vec::new();
    for key in CaseKey::ALL {
        match catch_unwind(Sandbox::new) {
            Ok(sb) => sandboxes.push((key, sb)),
            Err(panic) => {
                let why = panic_message(&panic);
                log(&format!("{}: no sandbox: {why}", key.title()));
                results.unavailable.push((key, why));
            }
        }
    }
    let mut cases: Vec<Case> = Vec::new();
    for (key, sb) in &sandboxes {
        let key = *key;
        log(&format!(
            "building {} in sandbox {}",
            key.title(),
            sb.prefix
        ));
        match catch_unwind(AssertUnwindSafe(|| Case::build(key, sb))) {
            Ok(Ok(case)) => {
                results.cases.push(key);
                cases.push(case);
            }
            Ok(Err(err)) => {
                log(&format!("  not available: {err:#}"));
                results.unavailable.push((key, format!("{err:#}")));
            }
            Err(panic) => {
                let why = panic_message(&panic);
                log(&format!("  not available: {why}"));
                results.unavailable.push((key, why));
            }
        }
    }

    if settings.traffic {
        traffic(&cases, settings, &mut results, &log);
    }
    if settings.control {
        // The setup comparison first, while netd's state is as small as
        // the others': the netd-only figures leave hundreds of guests and
        // thousands of forwards behind.
        results.control.extend(control::setup_comparison(
            &cases,
            settings.setup_containers,
            &log,
        ));
        for case in &cases {
            if case.netd().is_some() {
                results
                    .control
                    .extend(control::netd_figures(case, settings, &log));
            }
        }
    }

    log("tearing down");
    for case in cases {
        results.notes.extend(case.teardown());
    }
    for (_, sb) in sandboxes {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(sb))) {
            results
                .notes
                .push(format!("sandbox teardown: {}", panic_message(&panic)));
        }
    }
    results.elapsed = started.elapsed();
    results
        .facts
        .push(("load average at the end".into(), load_average()));
    let report = report::write(settings, &results)?;
    log(&format!("report written to {}", report.display()));
    Ok(report)
}

/// The traffic rounds: for each round, test and path, every case in turn,
/// the order rotating from round to round so that no case always goes first.
fn traffic(cases: &[Case], settings: &Settings, results: &mut Results, log: &dyn Fn(&str)) {
    let mut tag = 0u64;
    for round in 0..settings.rounds {
        log(&format!("round {}/{}", round + 1, settings.rounds));
        for (t, test) in Test::ALL.into_iter().enumerate() {
            for path in PathKind::ALL {
                let mut line = format!("  {} {}:", test.title(), path.title());
                for k in 0..cases.len() {
                    let case = &cases[(k + round + t) % cases.len()];
                    tag += 1;
                    match measure(case, path, test, settings, tag) {
                        Ok((figures, failures)) => {
                            for (metric, value) in &figures {
                                results
                                    .traffic
                                    .entry((*metric, path, case.key))
                                    .or_default()
                                    .push(*value);
                                results
                                    .per_round
                                    .insert((*metric, path, case.key, round), *value);
                            }
                            *results.crr_failures.entry((path, case.key)).or_default() += failures;
                            let (metric, value) = figures[0];
                            line.push_str(&format!(
                                " {} {}",
                                case.key.short(),
                                metric.format(value)
                            ));
                        }
                        Err(err) => {
                            line.push_str(&format!(" {} FAILED", case.key.short()));
                            let errors = results.errors.entry((test, path, case.key)).or_default();
                            let message = format!("{err:#}");
                            if !errors.contains(&message) {
                                errors.push(message);
                            }
                        }
                    }
                }
                log(&line);
            }
        }
    }
}

/// One measurement of `test` on one path of one case: its figures, and
/// the connection attempts that failed (connection-rate test only).
fn measure(
    case: &Case,
    path: PathKind,
    test: Test,
    settings: &Settings,
    tag: u64,
) -> Result<(Vec<(Metric, f64)>, u64)> {
    let target = case.target(path);
    let to = |port| SocketAddrV4::new(target.server, port);
    if test == Test::Crr {
        let r = load::tcp_crr(&target.client, to(load::CRR_PORT), settings.secs)?;
        return Ok((
            vec![(Metric::CrrRate, r.connections as f64 / r.secs)],
            r.failures,
        ));
    }
    Ok((
        match test {
            Test::Rr => {
                let r = load::tcp_rr(&target.client, to(load::RR_PORT), settings.secs)?;
                vec![
                    (Metric::RrTps, r.per_sec()),
                    (Metric::RrP50, r.latency_us(0.5)),
                    (Metric::RrP99, r.latency_us(0.99)),
                ]
            }
            Test::Crr => unreachable!("measured above"),
            Test::Udp => {
                let r = load::udp_blast(
                    &target.client,
                    to(load::UDP_PORT),
                    &target.sink,
                    tag,
                    settings.secs,
                )?;
                vec![
                    (Metric::UdpReceived, r.received as f64 / r.secs),
                    (Metric::UdpSent, r.sent as f64 / r.secs),
                ]
            }
            Test::Iperf => {
                let bps = load::iperf3(&target.client, target.server, settings.iperf_secs)?;
                vec![(Metric::Throughput, bps / 1e9)]
            }
        },
        0,
    ))
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// Kernel, CPUs, memory, date, git commit, versions of the peers.
fn machine_facts() -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let commit = run("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    vec![
        ("date".into(), run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        (
            "git commit".into(),
            format!(
                "{commit} ({}){}",
                run("git", &["rev-parse", "--abbrev-ref", "HEAD"]),
                if dirty {
                    ", with uncommitted changes"
                } else {
                    ""
                }
            ),
        ),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("CPUs".into(), format!("{cpus} × {cpu_model}")),
        ("memory".into(), memory),
        ("load average at the start".into(), load_average()),
        (
            "netd build".into(),
            "release (`cargo build --release`)".into(),
        ),
        ("netavark".into(), run(cases::NETAVARK, &["--version"])),
        (
            "CNI plugins".into(),
            format!(
                "containernetworking-plugins {}",
                run(
                    "dpkg-query",
                    &["-W", "-f=${Version}", "containernetworking-plugins"]
                )
            ),
        ),
        ("iptables".into(), run("iptables", &["--version"])),
        (
            "iperf3".into(),
            run("iperf3", &["--version"])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn every_metric_has_its_own_chart_file() {
        let mut files: Vec<_> = Metric::ALL.iter().map(|m| m.file()).collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), Metric::ALL.len());
    }

    #[test]
    fn ratios_pair_figures_of_the_same_round() {
        let mut results = Results::default();
        let (m, p) = (Metric::RrTps, PathKind::Internet);
        for (round, limit, netd) in [(0, 100.0, 50.0), (1, 10.0, 9.0), (2, 40.0, 30.0)] {
            results
                .per_round
                .insert((m, p, CaseKey::Limit, round), limit);
            results
                .per_round
                .insert((m, p, CaseKey::NetdEbpf, round), netd);
        }
        // Round 3 has no limit figure: it is left out.
        results.per_round.insert((m, p, CaseKey::NetdEbpf, 3), 1.0);
        let ratio = results.paired_ratio(m, p, CaseKey::NetdEbpf, CaseKey::Limit);
        assert_eq!(ratio, Some(0.75), "median of 0.5, 0.9, 0.75");
        assert_eq!(
            results.paired_ratio(m, p, CaseKey::Cni, CaseKey::Limit),
            None
        );
    }

    #[test]
    fn quick_runs_are_smaller() {
        let quick = Settings::new(true, PathBuf::new());
        let full = Settings::new(false, PathBuf::new());
        assert!(quick.rounds < full.rounds && quick.guests < full.guests);
        assert_eq!(full.guests, 253);
        assert_eq!(full.forward_levels, vec![1, 1_000, 10_000]);
    }
}
