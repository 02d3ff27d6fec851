//! `cargo xtask bench`: netd's dataplane against the limit and its peers,
//! and its control plane, in one run with the cases interleaved. See
//! `bench/results/README.md` for what is measured and how to reproduce.

pub mod api;
pub mod cases;
pub mod control;
pub mod faults;
pub mod load;
pub mod progcost;
pub mod report;
pub mod scale;
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
    /// Rounds that also run the sockperf cross-check (the first ones).
    pub sockperf_rounds: usize,
    /// A round whose 1-minute load average at its start exceeds this is
    /// flagged as run on a busy machine.
    pub busy_load: f64,
    /// Fresh single runs per program for the BPF_PROG_TEST_RUN costs.
    pub prog_runs: u32,
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
    /// Measure the programs' costs with BPF_PROG_TEST_RUN.
    pub prog_costs: bool,
    /// Program costs measured by another run (the commit before the fast
    /// path), to show beside this run's.
    pub prog_costs_before: Option<PathBuf>,
    /// Where to save this run's program costs (`--only progcost`).
    pub prog_costs_out: Option<PathBuf>,
    /// `LABEL` or `LABEL:COMMIT` of this run's program costs ("after").
    pub prog_costs_as: String,
    /// Build only these cases (all when None).
    pub only_cases: Option<Vec<CaseKey>>,
    /// Run only these tests and paths (all when None): a targeted run for
    /// one figure, still side by side with the limit.
    pub only_tests: Option<Vec<Test>>,
    pub only_paths: Option<Vec<PathKind>>,
    /// Run the scale section (issue 14): a daemon of its own filled to
    /// each of `scale_levels` networks, 10 guests in each.
    pub scale: bool,
    pub scale_levels: Vec<usize>,
    /// Guest adds timed at each level.
    pub scale_samples: usize,
    /// `GET /v1/status` and `GET /v1/networks` calls timed at each level.
    pub scale_reads: usize,
    /// The dataplanes the scale section runs on (`ebpf`, `nftables`).
    pub scale_dataplanes: Vec<String>,
}

impl Settings {
    pub fn new(quick: bool, out_dir: PathBuf) -> Settings {
        if quick {
            Settings {
                quick,
                rounds: 3,
                secs: Duration::from_secs(1),
                iperf_secs: 1,
                sockperf_rounds: 1,
                busy_load: 1.5,
                prog_runs: 10_000,
                guests: 25,
                networks: 20,
                forward_levels: vec![1, 1_000],
                forward_samples: 10,
                partition_reps: 5,
                setup_containers: 10,
                out_dir,
                traffic: true,
                control: true,
                prog_costs: true,
                prog_costs_before: None,
                prog_costs_out: None,
                prog_costs_as: "after".into(),
                only_cases: None,
                only_tests: None,
                only_paths: None,
                scale: true,
                scale_levels: vec![1, 100],
                scale_samples: 20,
                scale_reads: 5,
                scale_dataplanes: vec!["ebpf".into()],
            }
        } else {
            Settings {
                quick,
                rounds: 5,
                secs: Duration::from_secs(5),
                iperf_secs: 5,
                // sockperf costs 2 s more than asked per run (warm-up and
                // drain): in the first rounds only, to keep the full run
                // near 40 minutes.
                sockperf_rounds: 2,
                busy_load: 1.5,
                prog_runs: 100_000,
                // The control plane at the quick levels: the traffic rounds
                // take most of the half hour a full run may last.
                guests: 25,
                networks: 20,
                forward_levels: vec![1, 1_000],
                forward_samples: 10,
                partition_reps: 5,
                setup_containers: 10,
                out_dir,
                traffic: true,
                control: true,
                prog_costs: true,
                prog_costs_before: None,
                prog_costs_out: None,
                prog_costs_as: "after".into(),
                only_cases: None,
                only_tests: None,
                only_paths: None,
                // 2,000 networks of 10 guests: 20,000 guests.
                scale: true,
                scale_levels: vec![1, 100, 1_000, 2_000],
                scale_samples: 20,
                scale_reads: 3,
                scale_dataplanes: vec!["ebpf".into()],
            }
        }
    }
}

/// One kind of traffic measurement, giving one or more metrics.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Test {
    Rr,
    BusyRr,
    Crr,
    Udp,
    Iperf,
    SockperfPingPong,
    SockperfUdp,
}

impl Test {
    pub const ALL: [Test; 7] = [
        Test::Rr,
        Test::BusyRr,
        Test::Crr,
        Test::Udp,
        Test::Iperf,
        Test::SockperfPingPong,
        Test::SockperfUdp,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Test::Rr => "TCP request/response",
            Test::BusyRr => "TCP request/response, busy-poll",
            Test::Crr => "TCP connect/request/response/close",
            Test::Udp => "UDP 64-byte blast",
            Test::Iperf => "iperf3 TCP throughput",
            Test::SockperfPingPong => "sockperf TCP ping-pong",
            Test::SockperfUdp => "sockperf UDP 64-byte throughput",
        }
    }

    /// The name `--tests` takes.
    pub fn key(self) -> &'static str {
        match self {
            Test::Rr => "rr",
            Test::BusyRr => "busy-rr",
            Test::Crr => "crr",
            Test::Udp => "udp",
            Test::Iperf => "iperf",
            Test::SockperfPingPong => "sockperf-pp",
            Test::SockperfUdp => "sockperf-udp",
        }
    }

    pub fn is_sockperf(self) -> bool {
        matches!(self, Test::SockperfPingPong | Test::SockperfUdp)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Metric {
    RrTps,
    RrP50,
    RrP99,
    BusyTps,
    BusyP50,
    BusyP99,
    CrrRate,
    UdpReceived,
    UdpSent,
    Throughput,
    SockperfLatencyP50,
    SockperfLatencyAvg,
    SockperfUdpRate,
}

impl Metric {
    pub const ALL: [Metric; 13] = [
        Metric::RrTps,
        Metric::RrP50,
        Metric::RrP99,
        Metric::BusyTps,
        Metric::BusyP50,
        Metric::BusyP99,
        Metric::CrrRate,
        Metric::UdpReceived,
        Metric::UdpSent,
        Metric::Throughput,
        Metric::SockperfLatencyP50,
        Metric::SockperfLatencyAvg,
        Metric::SockperfUdpRate,
    ];

    pub fn test(self) -> Test {
        match self {
            Metric::RrTps | Metric::RrP50 | Metric::RrP99 => Test::Rr,
            Metric::BusyTps | Metric::BusyP50 | Metric::BusyP99 => Test::BusyRr,
            Metric::CrrRate => Test::Crr,
            Metric::UdpReceived | Metric::UdpSent => Test::Udp,
            Metric::Throughput => Test::Iperf,
            Metric::SockperfLatencyP50 | Metric::SockperfLatencyAvg => Test::SockperfPingPong,
            Metric::SockperfUdpRate => Test::SockperfUdp,
        }
    }

    /// The chart's file name, without `.svg`.
    pub fn file(self) -> &'static str {
        match self {
            Metric::RrTps => "tcp_rr_tps",
            Metric::RrP50 => "tcp_rr_p50",
            Metric::RrP99 => "tcp_rr_p99",
            Metric::BusyTps => "tcp_rr_busy_tps",
            Metric::BusyP50 => "tcp_rr_busy_p50",
            Metric::BusyP99 => "tcp_rr_busy_p99",
            Metric::CrrRate => "tcp_crr",
            Metric::UdpReceived => "udp_pps",
            Metric::UdpSent => "udp_sent_pps",
            Metric::Throughput => "tcp_throughput",
            Metric::SockperfLatencyP50 => "sockperf_tcp_pp_p50",
            Metric::SockperfLatencyAvg => "sockperf_tcp_pp_avg",
            Metric::SockperfUdpRate => "sockperf_udp_pps",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Metric::RrTps => "TCP request/response: transactions per second",
            Metric::RrP50 => "TCP request/response: latency p50",
            Metric::RrP99 => "TCP request/response: latency p99",
            Metric::BusyTps => "TCP request/response, busy-poll: transactions per second",
            Metric::BusyP50 => "TCP request/response, busy-poll: latency p50",
            Metric::BusyP99 => "TCP request/response, busy-poll: latency p99",
            Metric::SockperfLatencyP50 => "sockperf TCP ping-pong: half round trip p50",
            Metric::SockperfLatencyAvg => "sockperf TCP ping-pong: half round trip, mean",
            Metric::SockperfUdpRate => "sockperf UDP 64-byte throughput: messages sent per second",
            Metric::CrrRate => "New TCP connections per second",
            Metric::UdpReceived => "UDP 64-byte packets per second, received",
            Metric::UdpSent => "UDP 64-byte packets per second, sent",
            Metric::Throughput => "TCP throughput (iperf3, one stream)",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::RrTps | Metric::BusyTps => "transactions/s",
            Metric::RrP50
            | Metric::RrP99
            | Metric::BusyP50
            | Metric::BusyP99
            | Metric::SockperfLatencyP50
            | Metric::SockperfLatencyAvg => "µs",
            Metric::CrrRate => "connections/s",
            Metric::UdpReceived | Metric::UdpSent | Metric::SockperfUdpRate => "packets/s",
            Metric::Throughput => "Gbit/s",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !self.is_latency()
    }

    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::RrP50
                | Metric::RrP99
                | Metric::BusyP50
                | Metric::BusyP99
                | Metric::SockperfLatencyP50
                | Metric::SockperfLatencyAvg
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::RrTps | Metric::RrP50 | Metric::RrP99 => {
                "One TCP connection (TCP_NODELAY), a 64-byte request answered with 64 bytes, \
                 back to back; latency is each transaction's time from send to full answer. \
                 Client and server block in their reads: each transaction pays two wake-ups."
            }
            Metric::BusyTps | Metric::BusyP50 | Metric::BusyP99 => {
                "The same request/response, with client and server spinning on non-blocking \
                 reads (each on its own CPU) instead of sleeping in them: no wake-up per \
                 transaction, so what is left is the path itself and the ratios are not \
                 squeezed towards 1 by the scheduler's costs."
            }
            Metric::SockperfLatencyP50 | Metric::SockperfLatencyAvg => {
                "`sockperf ping-pong --tcp -m 64 -t N` (an outside tool, Debian's sockperf 3.7), \
                 client pinned to the client CPU, `sockperf server --tcp` pinned to the server \
                 CPU; sockperf reports half the round trip (its p50, or its mean)."
            }
            Metric::SockperfUdpRate => {
                "`sockperf throughput -m 64 -t N` (UDP): the messages per second the sender got \
                 out, as sockperf reports them; pinned as above."
            }
            Metric::CrrRate => {
                "One connection at a time: connect, 1 byte each way, the server closes, the \
                 client sees the close and closes: a new connection (and conntrack entry, and \
                 NAT mapping) per transaction. \"slow\" counts the connections that took \
                 0.5 s or more over all rounds: a retransmitted SYN or FIN (1 s on Linux), i.e. \
                 a packet the path dropped."
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
            m if m.is_latency() => format!("{v:.1}"),
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
    /// Connections of the connection-rate test that took 0.5 s or more.
    pub crr_slow: BTreeMap<(PathKind, CaseKey), u64>,
    /// Cases measured, in order.
    pub cases: Vec<CaseKey>,
    /// Cases that could not be built, and why.
    pub unavailable: Vec<(CaseKey, String)>,
    pub control: Vec<Timing>,
    /// Anything else worth a line in the report.
    pub notes: Vec<String>,
    pub facts: Vec<(String, String)>,
    /// Per round: the load averages (1, 5, 15 min) at its start.
    pub round_loads: Vec<[f64; 3]>,
    /// BPF_PROG_TEST_RUN costs of this build's programs, and of the
    /// commit before the fast path when they were measured.
    pub prog_costs: Vec<progcost::ProgramCosts>,
    /// The scale section's runs, one per dataplane.
    pub scale: Vec<scale::Run>,
    pub elapsed: Duration,
}

impl Results {
    /// Rounds that began with the 1-minute load above `threshold`.
    pub fn busy_rounds(&self, threshold: f64) -> Vec<usize> {
        self.round_loads
            .iter()
            .enumerate()
            .filter(|(_, l)| l[0] > threshold)
            .map(|(i, _)| i)
            .collect()
    }
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
        if let Some(only) = &settings.only_cases
            && !only.contains(&key)
        {
            continue;
        }
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
    if settings.prog_costs {
        for case in &cases {
            if case.key == CaseKey::NetdEbpf {
                log("BPF_PROG_TEST_RUN costs of the running programs");
                match catch_unwind(AssertUnwindSafe(|| progcost::measure(case, settings))) {
                    Ok(Ok(costs)) => results.prog_costs.push(costs),
                    Ok(Err(err)) => results
                        .notes
                        .push(format!("program costs not measured: {err:#}")),
                    Err(panic) => results.notes.push(format!(
                        "program costs not measured: {}",
                        panic_message(&panic)
                    )),
                }
            }
        }
        if let Some(before) = &settings.prog_costs_before {
            match progcost::ProgramCosts::load(before) {
                Ok(costs) => results.prog_costs.push(costs),
                Err(err) => results.notes.push(format!(
                    "the figures before the fast path ({}): {err:#}",
                    before.display()
                )),
            }
        }
        if let Some(out) = &settings.prog_costs_out {
            for costs in &results.prog_costs {
                if let Err(err) = costs.save(out) {
                    results.notes.push(format!("{}: {err:#}", out.display()));
                }
            }
        }
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
    if settings.scale {
        // Last, in a sandbox of its own: it leaves 20,000 namespaces to
        // the kernel's cleanup, which should not run under other figures.
        results.scale = scale::run(settings, &log);
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
/// The limit's guest → guest figure is its guest → internet one: the same
/// client, server and veth, measured once per round.
fn traffic(cases: &[Case], settings: &Settings, results: &mut Results, log: &dyn Fn(&str)) {
    let mut tag = 0u64;
    for round in 0..settings.rounds {
        let load = load_figures();
        let busy = load[0] > settings.busy_load;
        results.round_loads.push(load);
        log(&format!(
            "round {}/{} (load {:.2} {:.2} {:.2}{})",
            round + 1,
            settings.rounds,
            load[0],
            load[1],
            load[2],
            if busy { ", busy machine" } else { "" }
        ));
        for (t, test) in Test::ALL.into_iter().enumerate() {
            if test.is_sockperf() && round >= settings.sockperf_rounds
                || !selected(&settings.only_tests, test)
            {
                continue;
            }
            for path in PathKind::ALL {
                if !selected(&settings.only_paths, path) {
                    continue;
                }
                let mut line = format!("  {} {}:", test.title(), path.title());
                for k in 0..cases.len() {
                    let case = &cases[(k + round + t) % cases.len()];
                    tag += 1;
                    let measured = if case.key == CaseKey::Limit && path == PathKind::Guest {
                        shared_limit(results, test, round)
                    } else {
                        measure(case, path, test, settings, tag)
                    };
                    match measured {
                        Ok((figures, [failures, slow])) => {
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
                            *results.crr_slow.entry((path, case.key)).or_default() += slow;
                            if let Some((metric, value)) = figures.first() {
                                line.push_str(&format!(
                                    " {} {}",
                                    case.key.short(),
                                    metric.format(*value)
                                ));
                            }
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

fn selected<T: PartialEq>(only: &Option<Vec<T>>, item: T) -> bool {
    only.as_ref().is_none_or(|only| only.contains(&item))
}

/// A measurement's figures, and its failed and slow connections (the
/// connection-rate test's; zeros for the others).
type Measured = (Vec<(Metric, f64)>, [u64; 2]);

/// The limit's guest → internet figures of `test` in `round`.
fn shared_limit(results: &Results, test: Test, round: usize) -> Result<Measured> {
    let figures: Vec<(Metric, f64)> = Metric::ALL
        .into_iter()
        .filter(|m| m.test() == test)
        .filter_map(|m| {
            let v = results
                .per_round
                .get(&(m, PathKind::Internet, CaseKey::Limit, round))?;
            Some((m, *v))
        })
        .collect();
    if figures.is_empty() {
        anyhow::bail!("the limit's guest → internet measurement failed in this round");
    }
    Ok((figures, [0, 0]))
}

/// One measurement of `test` on one path of one case: its figures, and
/// the connection attempts that failed and the connections that were slow
/// (connection-rate test only).
fn measure(
    case: &Case,
    path: PathKind,
    test: Test,
    settings: &Settings,
    tag: u64,
) -> Result<Measured> {
    let target = case.target(path);
    let to = |port| SocketAddrV4::new(target.server, port);
    let ports = target.ports;
    let secs = settings.secs.as_secs().max(1) as u32;
    if test == Test::Crr {
        let r = load::tcp_crr(&target.client, to(ports.crr), settings.secs)?;
        return Ok((
            vec![(Metric::CrrRate, r.connections as f64 / r.secs)],
            [r.failures, r.slow],
        ));
    }
    Ok((
        match test {
            Test::Rr | Test::BusyRr => {
                let busy = test == Test::BusyRr;
                let port = if busy { ports.busy } else { ports.rr };
                let r = load::tcp_rr(&target.client, to(port), settings.secs, busy)?;
                if busy {
                    vec![
                        (Metric::BusyTps, r.per_sec()),
                        (Metric::BusyP50, r.latency_us(0.5)),
                        (Metric::BusyP99, r.latency_us(0.99)),
                    ]
                } else {
                    vec![
                        (Metric::RrTps, r.per_sec()),
                        (Metric::RrP50, r.latency_us(0.5)),
                        (Metric::RrP99, r.latency_us(0.99)),
                    ]
                }
            }
            Test::Crr => unreachable!("measured above"),
            Test::Udp => {
                let r = load::udp_blast(
                    &target.client,
                    to(ports.udp),
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
                let bps = load::iperf3(
                    &target.client,
                    target.server,
                    ports.iperf,
                    settings.iperf_secs,
                )?;
                vec![(Metric::Throughput, bps / 1e9)]
            }
            Test::SockperfPingPong => {
                let r = load::sockperf_ping_pong(&target.client, to(ports.sockperf_tcp), secs)?;
                vec![
                    (Metric::SockperfLatencyP50, r.p50_us),
                    (Metric::SockperfLatencyAvg, r.avg_us),
                ]
            }
            Test::SockperfUdp => {
                let rate = load::sockperf_throughput(&target.client, to(ports.sockperf_udp), secs)?;
                vec![(Metric::SockperfUdpRate, rate)]
            }
        },
        [0, 0],
    ))
}

/// The 1, 5 and 15 minute load averages as numbers.
pub fn load_figures() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut figures = [f64::NAN; 3];
    for (slot, field) in figures.iter_mut().zip(text.split_whitespace()) {
        *slot = field.parse().unwrap_or(f64::NAN);
    }
    figures
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

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
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
            "CPU pinning".into(),
            format!(
                "every client (load threads, iperf3 -c, sockperf clients) on CPU {}, every \
                 server (load servers' threads, iperf3 -s, sockperf servers) on CPU {}, for \
                 every case alike",
                load::CLIENT_CPU,
                load::server_cpu()
            ),
        ),
        (
            "sockperf".into(),
            run("sockperf", &["--version"])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
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
        assert!(quick.rounds < full.rounds && quick.secs < full.secs);
        // The full run: 5 rounds of at least 5 s each (issue 12); its
        // control plane at the quick levels, to keep its wall time down.
        assert_eq!(full.rounds, 5);
        assert!(full.secs >= Duration::from_secs(5) && full.iperf_secs >= 5);
        assert_eq!(full.guests, quick.guests);
    }
}
