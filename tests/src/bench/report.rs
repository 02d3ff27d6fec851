//! The report: `report.md`, one SVG chart per metric, and the raw samples
//! (`results.json`), under the output directory.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::bench::{
    Metric, Results, Settings,
    cases::{CaseKey, PathKind},
    control::Timing,
    load, progcost, scale,
    stats::Summary,
    svg::{self, Bar, Chart, Group},
};

/// Control-plane tables, in the order the report shows them.
const GROUPS: [(&str, &str); 13] = [
    (
        "guest add",
        "`POST /v1/networks/NET/guests` through `netd::client::Client` (the API helper in the \
         daemon's namespace times the call alone, no process spawn), guests added one after \
         another to one network.",
    ),
    (
        "network create",
        "`POST /v1/networks` (API), networks created one after another.",
    ),
    (
        "network rm",
        "`DELETE /v1/networks/NAME` (API) of those networks.",
    ),
    (
        "port add",
        "`POST /v1/networks/NET/guests/G/ports` (API, no process spawn) with N forwards already \
         published (\"N existing\", all on one guest); each sample is withdrawn again after \
         the level is measured.",
    ),
    (
        "port add (filling)",
        "Every `port add` made to reach those levels, for the record.",
    ),
    (
        "partition apply",
        "`disjoint` of every guest of a network in two groups, alternating halves and odd/even \
         so each request changes the policy. `in_force_after_us` is the daemon's own figure (from \
         the request reaching the service to the policy in force); the round trips are the API \
         call (helper) and `netd partition NET disjoint ... --json` (a process per call).",
    ),
    (
        "guests through the CLI",
        "A network filled to its 253 guests by one `netd guest add NET NAME...` process (the \
         batch form: one request per guest; spawn to exit, the label gives the total and the \
         sample is the process's wall time).",
    ),
    (
        "fault policy apply",
        "A fault policy of several clauses replaced in one step on a network of 253 guests \
         (`netd partition NET ... --json`, alternating two policies so each request changes \
         it; on eBPF a delay on one port, a duplication and an isolated guest, on nftables \
         two loss shares). `in_force_after_us` is the daemon's own figure; the round trip is \
         the CLI's.",
    ),
    (
        "delay line timing error",
        "Datagrams from one guest to another through `--delay 10ms`, each carrying its send \
         time (CLOCK_MONOTONIC, which every namespace shares); a sample is the arrival time \
         less the send time less the 10 ms intended: the delay line's lateness plus the \
         veths'. eBPF only.",
    ),
    (
        "delay line throughput",
        "64-byte datagrams offered as fast as one sender can through `--delay 1ms` for two \
         seconds; the label gives the packets per second that arrived (and the drops for a \
         full queue), the sample the time per packet. eBPF only.",
    ),
    (
        "store commit",
        "One guest added to a network holding up to 253, committed by the daemon's store \
         (`Store::save_network`: the changed rows in one SQLite transaction, WAL, \
         `synchronous = FULL`, durable at return) to a file on this machine's disk, \
         in-process.",
    ),
    (
        "container setup",
        "One container attached by each system in turn (the order rotating), each given an \
         existing empty network namespace and one published TCP port; spawn to exit for the \
         CLIs, call alone for netd's API.",
    ),
    (
        "container teardown",
        "Undoing those: `netd guest rm`, `netavark teardown`, CNI DEL (portmap, then bridge).",
    ),
];

pub fn write(settings: &Settings, results: &Results) -> Result<PathBuf> {
    let dir = &settings.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut md = String::new();
    header(&mut md, settings, results);
    load_section(&mut md, settings, results);
    ratio_table(&mut md, results);
    targets_section(&mut md, results);
    summary(&mut md, results);
    prog_cost_section(&mut md, results);
    for metric in Metric::ALL {
        dataplane_section(&mut md, metric, results);
        let chart = svg::render(&dataplane_chart(metric, results));
        std::fs::write(dir.join(format!("{}.svg", metric.file())), chart)?;
    }
    control_sections(&mut md, results, dir)?;
    scale_section(&mut md, results, dir)?;
    footer(&mut md, results);
    let report = dir.join("report.md");
    std::fs::write(&report, md).with_context(|| format!("writing {}", report.display()))?;
    std::fs::write(dir.join("results.json"), raw(settings, results))?;
    Ok(report)
}

/// The load at each round's start, and which rounds ran on a busy machine.
fn load_section(md: &mut String, settings: &Settings, results: &Results) {
    if results.round_loads.is_empty() {
        return;
    }
    let busy = results.busy_rounds(settings.busy_load);
    let _ = writeln!(md, "## Load during the run\n");
    if busy.is_empty() {
        let _ = writeln!(
            md,
            "No round began with the 1-minute load average above {:.1}.\n",
            settings.busy_load
        );
    } else {
        let _ = writeln!(
            md,
            "**Busy machine**: {} of {} rounds began with the 1-minute load average above {:.1} \
             (on a machine of {} CPUs): other work (builds, tests of other people) ran beside \
             the benchmark and took CPU time from client, server and the systems under test \
             alike. The rounds are interleaved and the ratios paired by round, so the \
             comparison between cases holds better than the absolute figures do.\n",
            busy.len(),
            results.round_loads.len(),
            settings.busy_load,
            load::cpu_count()
        );
    }
    let _ = writeln!(
        md,
        "| round | load 1 min | 5 min | 15 min | |\n|---:|---:|---:|---:|---|"
    );
    for (i, l) in results.round_loads.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {} |",
            i + 1,
            l[0],
            l[1],
            l[2],
            if busy.contains(&i) {
                "busy machine"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(md);
}

/// The ratios to the limit of every peer on every metric and path, in one
/// table (the closing figures of issue 12).
fn ratio_table(md: &mut String, results: &Results) {
    let peers: Vec<CaseKey> = results
        .cases
        .iter()
        .copied()
        .filter(|k| *k != CaseKey::Limit)
        .collect();
    if peers.is_empty() || !results.cases.contains(&CaseKey::Limit) {
        return;
    }
    let _ = writeln!(
        md,
        "## Ratios to the limit\n\nEach cell: the median over rounds of the case's figure \
         divided by the limit's of the same round. Rates: higher is better (1.00× is the limit); \
         latencies: lower is better.\n"
    );
    let _ = write!(md, "| path | metric |");
    for k in &peers {
        let _ = write!(md, " {} |", k.short());
    }
    let _ = write!(md, "\n|---|---|");
    for _ in &peers {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for path in PathKind::ALL {
        for metric in Metric::ALL {
            if metric == Metric::UdpSent || metric == Metric::SockperfLatencyAvg {
                continue;
            }
            let _ = write!(md, "| {} | {} |", path.title(), short_title(metric));
            for &k in &peers {
                match results.paired_ratio(metric, path, k, CaseKey::Limit) {
                    Some(r) => {
                        let _ = write!(md, " {r:.2}× |");
                    }
                    None => {
                        let _ = write!(md, " — |");
                    }
                }
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(md);
}

/// Issue 12's targets for the full run, against this run's paired ratios.
/// A statement of where the figures stand, not a pass/fail check: the
/// bench never fails on a figure.
fn targets_section(md: &mut String, results: &Results) {
    if !results.cases.contains(&CaseKey::Limit) || !results.cases.contains(&CaseKey::NetdEbpf) {
        return;
    }
    let _ = writeln!(
        md,
        "## Issue 12's targets\n\nThe targets of the fast path (issue 12) beside this run's \
         paired ratios to the limit, for netd eBPF; \"×peer\" is netd eBPF's figure over the \
         peer's, paired by round.\n"
    );
    let _ = writeln!(
        md,
        "| path | metric | target | netd eBPF | where it stands | × netavark | × CNI |\n\
         |---|---|---|---:|---|---:|---:|"
    );
    let outside: [(Metric, f64, bool); 4] = [
        (Metric::RrP50, 1.10, false),
        (Metric::CrrRate, 0.85, true),
        (Metric::UdpReceived, 0.80, true),
        (Metric::Throughput, 0.90, true),
    ];
    let fmt = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{r:.2}×"));
    for path in PathKind::ALL {
        let wanted: Vec<(Metric, f64, bool)> = match path {
            PathKind::Guest => [
                Metric::RrTps,
                Metric::BusyTps,
                Metric::CrrRate,
                Metric::UdpReceived,
                Metric::Throughput,
            ]
            .into_iter()
            .map(|m| (m, 0.95, true))
            .collect(),
            _ => outside.to_vec(),
        };
        for (metric, target, at_least) in wanted {
            let ratio = results.paired_ratio(metric, path, CaseKey::NetdEbpf, CaseKey::Limit);
            let stands = match ratio {
                None => "not measured".to_owned(),
                Some(r) if (at_least && r >= target) || (!at_least && r <= target) => {
                    "met".to_owned()
                }
                Some(_) => "not met".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} {target:.2}× | {} | {stands} | {} | {} |",
                path.title(),
                short_title(metric),
                if at_least { "≥" } else { "≤" },
                fmt(ratio),
                fmt(results.paired_ratio(metric, path, CaseKey::NetdEbpf, CaseKey::Netavark)),
                fmt(results.paired_ratio(metric, path, CaseKey::NetdEbpf, CaseKey::Cni)),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nnftables dataplane against netavark (target: at least on par on every metric and \
         path): netd nftables' figure over netavark's, paired by round (rates: ≥ 1.00× is on \
         par; latencies: ≤ 1.00×).\n"
    );
    if !results.cases.contains(&CaseKey::NetdNft) || !results.cases.contains(&CaseKey::Netavark) {
        return;
    }
    let _ = write!(md, "| metric |");
    for path in PathKind::ALL {
        let _ = write!(md, " {} |", path.title());
    }
    let _ = writeln!(md, "\n|---|---:|---:|---:|");
    for metric in Metric::ALL {
        if metric == Metric::UdpSent || metric == Metric::SockperfLatencyAvg {
            continue;
        }
        let _ = write!(md, "| {} |", short_title(metric));
        for path in PathKind::ALL {
            let r = results.paired_ratio(metric, path, CaseKey::NetdNft, CaseKey::Netavark);
            let on_par = r.map(|r| {
                if metric.higher_is_better() {
                    r >= 1.0
                } else {
                    r <= 1.0
                }
            });
            let _ = write!(
                md,
                " {}{} |",
                fmt(r),
                match on_par {
                    Some(false) => " (behind)",
                    _ => "",
                }
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
}

/// The programs' costs by BPF_PROG_TEST_RUN, this build's and (if given)
/// those of the commit before the fast path.
fn prog_cost_section(md: &mut String, results: &Results) {
    let _ = writeln!(md, "## eBPF programs: cost per packet\n");
    if results.prog_costs.is_empty() {
        let _ = writeln!(md, "Not measured in this run (see the notes).\n");
        return;
    }
    let _ = writeln!(
        md,
        "`BPF_PROG_TEST_RUN` on the programs of the running netd eBPF case (found through the \
         link pins in its bpffs), with their real maps: the frames carry the topology's \
         addresses and MACs and the 5-tuple of a live TCP connection from the guest to the \
         internet server, so they meet its conntrack entries; where a program redirects, its \
         output frame is the next program's input, as on the path. Each program runs in the \
         namespace of its device, the skb's `ifindex` that device. A program rewrites its frame \
         (MACs, TTL, addresses) and the kernel's `repeat` re-runs it on the same skb, so the \
         figure is the median of the kernel's `duration` over single runs on fresh copies of \
         the frame, less the median of an empty program's (the timer's own cost, given \
         below); `repeat` is the kernel's average over that many repeats on one skb, for the \
         record (from the second run on the program sees its own output). New flows: UDP \
         packets from fresh source ports through the outbound programs, one timed run each. \
         Client CPU, nothing else pinned there but the load of the machine.\n"
    );
    let labels: Vec<&str> = results
        .prog_costs
        .iter()
        .map(|c| c.label.as_str())
        .collect();
    let _ = write!(md, "| program | packet |");
    for c in &results.prog_costs {
        let _ = write!(md, " {} ({}) ns | verdict |", c.label, c.commit);
    }
    let _ = write!(
        md,
        " mean ns ({}) | repeat ns ({}) |\n|---|---|",
        labels[0], labels[0]
    );
    for _ in &results.prog_costs {
        let _ = write!(md, "---:|---|");
    }
    let _ = writeln!(md, "---:|---:|");
    let first = &results.prog_costs[0];
    let mut keys: Vec<(String, String)> = Vec::new();
    for c in &results.prog_costs {
        for r in &c.rows {
            let key = (r.program.clone(), r.frame.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.sort_by_key(|(p, _)| progcost::PROGRAMS.iter().position(|q| q == p));
    for (program, frame) in &keys {
        let _ = write!(md, "| `{program}` | {frame} |");
        for c in &results.prog_costs {
            match c
                .rows
                .iter()
                .find(|r| &r.program == program && &r.frame == frame)
            {
                Some(r) => {
                    let _ = write!(
                        md,
                        " {:.0} | {} |",
                        r.median_ns,
                        progcost::verdict_name(r.verdict)
                    );
                }
                None => {
                    let _ = write!(md, " — | |");
                }
            }
        }
        match first
            .rows
            .iter()
            .find(|r| &r.program == program && &r.frame == frame)
        {
            Some(r) => {
                let repeat = if r.repeat_ns.is_finite() {
                    format!("{:.0}", r.repeat_ns)
                } else {
                    "—".into()
                };
                let _ = writeln!(md, " {:.0} | {repeat} |", r.mean_ns);
            }
            None => {
                let _ = writeln!(md, " — | — |");
            }
        }
    }
    let _ = writeln!(md);
    for c in &results.prog_costs {
        let _ = writeln!(
            md,
            "- {} ({}): empty program {:.0} ns per single run (subtracted); {} runs per figure.",
            c.label,
            c.commit,
            c.baseline_ns,
            c.rows.first().map_or(0, |r| r.runs)
        );
        for n in &c.notes {
            let _ = writeln!(md, "- {} ({}): {}", c.label, c.commit, cell(n));
        }
    }
    let _ = writeln!(md);
}

fn header(md: &mut String, settings: &Settings, results: &Results) {
    let _ = writeln!(md, "# netd benchmark report\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}` in {:.1} minutes. {} rounds (sockperf in the first {} \
         of them); each request/response, connection-rate, UDP and sockperf measurement lasts \
         {} s, each iperf3 run {} s. Every figure is \
         the **median over the rounds** (min–max beside it); within a round every case is \
         measured in turn for each test and path, the order rotating from round to round, so the \
         machine's drift hits every case alike. Nothing here is a pass/fail threshold.\n",
        if settings.quick { " --quick" } else { "" },
        results.elapsed.as_secs_f64() / 60.0,
        settings.rounds,
        settings.sockperf_rounds.min(settings.rounds),
        settings.secs.as_secs_f64(),
        settings.iperf_secs
    );
    if settings.quick {
        let _ = writeln!(
            md,
            "**This is a quick run**: few, short rounds and fewer guests, networks and forwards; \
             take its figures as indications. `cargo xtask bench` measures longer.\n"
        );
    }
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &results.facts {
        let _ = writeln!(md, "| {k} | {} |", cell(v));
    }
    let _ = writeln!(
        md,
        "\nClient and server are pinned to fixed, different CPUs (see CPU pinning above), the \
         same for every case; the systems under test (softirq work, daemons) run where the \
         kernel puts them, and so does whatever else runs on the machine (see the load \
         averages): the figures compare the systems with each other, on this machine, and the \
         interleaving spreads the noise over every case alike. The limit's guest → guest \
         figures are its guest → internet ones (the same client, server and veth, measured \
         once per round).\n"
    );
    let _ = writeln!(md, "## Cases\n");
    let _ = writeln!(
        md,
        "Each case is built in its own sandbox (fresh \"host\" and \"internet\" namespaces, \
         documentation addresses; the server is 203.0.113.10 in the internet namespace). The \
         client runs in a guest; \"guest → internet\" goes to the server through the whole \
         host-gateway-network path, \"guest → guest\" to a peer guest of the same network. \
         The load tool is `netd-bench` (tests/src/bench), the same code for every case.\n"
    );
    let _ = writeln!(
        md,
        "| case | guest → internet | guest → guest | internet → published port |\n|---|---|---|---|"
    );
    for key in CaseKey::ALL {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            key.title(),
            key.route(PathKind::Internet),
            key.route(PathKind::Guest),
            key.route(PathKind::Published)
        );
    }
    let _ = writeln!(md);
    for (key, why) in &results.unavailable {
        let _ = writeln!(md, "- **{}: not available** — {}", key.title(), cell(why));
    }
    if !results.unavailable.is_empty() {
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "netavark runs with its iptables firewall driver (iptables-nft here), network `bench` \
         10.89.0.0/16 on bridge `nvbr0`, containers with one published port each. The CNI \
         chain is bridge (`cnibr0`, `isGateway`, `ipMasq`, `hairpinMode`, host-local IPAM on \
         10.90.0.0/16) then portmap, run by hand as the CNI spec says (env `CNI_COMMAND` \
         etc., config on stdin, the bridge's result as portmap's `prevResult`). Both run in \
         their sandbox's host namespace. netd's network has the default subnet; the limit is \
         the sandbox's own host↔internet veth pair, for every path (the published path's \
         client in the internet namespace, its server in the host namespace). The published \
         path: netd's `netd port add bench g2 HOSTPORT:PORT[/udp]`, netavark's `port_mappings`, \
         the portmap plugin's `portMappings`, host ports 8101-8106 and 6201 onto the peer \
         guest's servers.\n"
    );
    let _ = writeln!(
        md,
        "Ratios: `× X` is the median over rounds of this row's figure divided by X's figure \
         of the same round (the cases of a round ran back to back, so a ratio compares figures \
         that met the same machine state; a ratio of the medians would mix rounds). For rates \
         higher is better; for latencies lower is better. Request/response and connection-rate figures show \
         per-packet and per-connection costs; bulk throughput hides them (Cilium's note).\n"
    );
}

/// Every metric's median per case, with its ratio to the limit.
fn summary(md: &mut String, results: &Results) {
    let _ = writeln!(
        md,
        "## Summary\n\nMedians over the rounds; in brackets, the ratio to the limit (a), \
         paired by round (see Ratios above). The sections below give the spread and the ratio \
         to every peer.\n"
    );
    for path in PathKind::ALL {
        let _ = write!(md, "**{}**\n\n| metric |", path.title());
        for key in &results.cases {
            let _ = write!(md, " {} |", key.title());
        }
        let _ = write!(md, "\n|---|");
        for _ in &results.cases {
            let _ = write!(md, "---:|");
        }
        let _ = writeln!(md);
        for metric in Metric::ALL {
            let _ = write!(md, "| {} ({}) |", short_title(metric), metric.unit());
            for &key in &results.cases {
                let ratio = (key != CaseKey::Limit)
                    .then(|| results.paired_ratio(metric, path, key, CaseKey::Limit))
                    .flatten();
                let text = match (median(results, metric, path, key), ratio) {
                    (None, _) => "failed".to_owned(),
                    (Some(s), Some(r)) => format!("{} ({r:.2}×)", metric.format(s.median)),
                    (Some(s), None) => metric.format(s.median),
                };
                let _ = write!(md, " {text} |");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }
}

fn short_title(metric: Metric) -> &'static str {
    match metric {
        Metric::RrTps => "TCP request/response rate",
        Metric::RrP50 => "TCP request/response p50",
        Metric::RrP99 => "TCP request/response p99",
        Metric::BusyTps => "TCP request/response rate, busy-poll",
        Metric::BusyP50 => "TCP request/response p50, busy-poll",
        Metric::BusyP99 => "TCP request/response p99, busy-poll",
        Metric::CrrRate => "new TCP connections",
        Metric::UdpReceived => "UDP 64 B received",
        Metric::UdpSent => "UDP 64 B sent",
        Metric::Throughput => "iperf3 TCP",
        Metric::SockperfLatencyP50 => "sockperf TCP ping-pong half RTT p50",
        Metric::SockperfLatencyAvg => "sockperf TCP ping-pong half RTT mean",
        Metric::SockperfUdpRate => "sockperf UDP 64 B sent",
    }
}

fn median(results: &Results, metric: Metric, path: PathKind, key: CaseKey) -> Option<Summary> {
    results
        .traffic
        .get(&(metric, path, key))
        .and_then(|s| Summary::of(s))
}

fn dataplane_section(md: &mut String, metric: Metric, results: &Results) {
    let _ = writeln!(md, "## {} ({})\n", metric.title(), metric.unit());
    let _ = writeln!(
        md,
        "{} {}.\n\n![{}]({}.svg)\n",
        metric.describe(),
        if metric.higher_is_better() {
            "Higher is better"
        } else {
            "Lower is better"
        },
        metric.title(),
        metric.file()
    );
    let measured = &results.cases;
    for path in PathKind::ALL {
        let _ = write!(
            md,
            "**{}**\n\n| case | median | min–max | rounds |",
            path.title()
        );
        for peer in measured {
            let _ = write!(md, " × {} |", peer.short());
        }
        if metric == Metric::CrrRate {
            let _ = write!(md, " failed connects | slow (≥ 0.5 s) |");
        }
        let _ = write!(md, "\n|---|---:|---:|---:|");
        for _ in measured {
            let _ = write!(md, "---:|");
        }
        if metric == Metric::CrrRate {
            let _ = write!(md, "---:|---:|");
        }
        let _ = writeln!(md);
        for &key in measured {
            let summary = median(results, metric, path, key);
            let _ = write!(md, "| {} |", key.title());
            match summary {
                Some(s) => {
                    let _ = write!(
                        md,
                        " {} | {}–{} | {} |",
                        metric.format(s.median),
                        metric.format(s.min),
                        metric.format(s.max),
                        s.n
                    );
                }
                None => {
                    let _ = write!(md, " failed | | 0 |");
                }
            }
            for &peer in measured {
                let ratio = match results.paired_ratio(metric, path, key, peer) {
                    _ if peer == key => "—".to_owned(),
                    Some(r) => format!("{r:.2}"),
                    None => "".to_owned(),
                };
                let _ = write!(md, " {ratio} |");
            }
            if metric == Metric::CrrRate {
                let failures = results.crr_failures.get(&(path, key)).copied().unwrap_or(0);
                let slow = results.crr_slow.get(&(path, key)).copied().unwrap_or(0);
                let _ = write!(md, " {failures} | {slow} |");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
        if first_of_test(metric) {
            for &key in measured {
                if let Some(errors) = results.errors.get(&(metric.test(), path, key)) {
                    for e in errors {
                        let _ = writeln!(
                            md,
                            "- {} failed for {}: {}",
                            metric.test().title(),
                            key.short(),
                            cell(e)
                        );
                    }
                    let _ = writeln!(md);
                }
            }
        }
    }
}

/// Whether `metric` is the first of its test (errors are listed once).
fn first_of_test(metric: Metric) -> bool {
    Metric::ALL.iter().find(|m| m.test() == metric.test()) == Some(&metric)
}

fn dataplane_chart(metric: Metric, results: &Results) -> Chart {
    Chart {
        title: metric.title().to_owned(),
        subtitle: format!(
            "{}, median over rounds, whisker min–max; {} is better",
            metric.unit(),
            if metric.higher_is_better() {
                "higher"
            } else {
                "lower"
            }
        ),
        groups: PathKind::ALL
            .into_iter()
            .map(|path| Group {
                title: path.title().to_owned(),
                bars: CaseKey::ALL
                    .into_iter()
                    .map(|key| {
                        let summary = median(results, metric, path, key);
                        let text = match summary {
                            Some(s) => {
                                let mut t =
                                    format!("{} {}", metric.format(s.median), metric.unit());
                                if key != CaseKey::Limit
                                    && let Some(r) =
                                        results.paired_ratio(metric, path, key, CaseKey::Limit)
                                {
                                    let _ = write!(t, " ({r:.2} × limit)");
                                }
                                t
                            }
                            None if results.unavailable.iter().any(|(k, _)| *k == key) => {
                                "not available".to_owned()
                            }
                            None => "failed".to_owned(),
                        };
                        Bar {
                            label: key.title().to_owned(),
                            colour: key.colour().to_owned(),
                            value: summary.map(|s| s.median),
                            spread: summary.map(|s| (s.min, s.max)),
                            text,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn control_sections(md: &mut String, results: &Results, dir: &std::path::Path) -> Result<()> {
    let _ = writeln!(md, "## Control plane\n");
    let _ = writeln!(
        md,
        "Measured in the cases' sandboxes after the traffic rounds: first the container \
         setup comparison (while every system's state is small), then netd's own figures, \
         through the API (`netd::client::Client` in a helper process in the daemon's namespace, \
         which times each call alone: no process spawn) unless a row says CLI. Times in \
         milliseconds.\n"
    );
    for (group, describe) in GROUPS {
        let rows: Vec<&Timing> = results
            .control
            .iter()
            .filter(|t| t.group == group)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let file = format!("cp_{}", group.replace(['(', ')'], "").replace(' ', "_"));
        let _ = writeln!(md, "### {group}\n\n{describe}\n\n![{group}]({file}.svg)\n");
        let _ = writeln!(
            md,
            "| system, how | n | p50 | p99 | mean | min | max |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for t in &rows {
            match Summary::of(&t.samples_us) {
                Some(s) => {
                    let q = percentiles(&t.samples_us);
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        cell(&t.label),
                        s.n,
                        ms(q.0),
                        ms(q.1),
                        ms(s.mean),
                        ms(s.min),
                        ms(s.max)
                    );
                }
                None => {
                    let _ = writeln!(md, "| {} | 0 | | | | | |", cell(&t.label));
                }
            }
        }
        let _ = writeln!(md);
        for t in &rows {
            if let Some(error) = &t.error {
                let _ = writeln!(md, "- {}: {}", t.label, cell(error));
            }
        }
        if rows.iter().any(|t| t.error.is_some()) {
            let _ = writeln!(md);
        }
        let chart = Chart {
            title: format!("Control plane: {group}"),
            subtitle: "milliseconds; bar p50, whisker p50–p99; lower is better".to_owned(),
            groups: vec![Group {
                title: group.to_owned(),
                bars: rows
                    .iter()
                    .map(|t| {
                        let summary = Summary::of(&t.samples_us);
                        let q = percentiles(&t.samples_us);
                        Bar {
                            label: chart_label(&t.label),
                            colour: colour_of(&t.label).to_owned(),
                            value: summary.map(|_| q.0 / 1000.0),
                            spread: summary.map(|_| (q.0 / 1000.0, q.1 / 1000.0)),
                            text: match summary {
                                Some(_) => format!("p50 {} ms, p99 {} ms", ms(q.0), ms(q.1)),
                                None => "failed".to_owned(),
                            },
                        }
                    })
                    .collect(),
            }],
        };
        std::fs::write(dir.join(format!("{file}.svg")), svg::render(&chart))?;
    }
    Ok(())
}

/// Issue 14's scale: guest add against the number of networks, the reads
/// that walk them, the daemon's RSS; a table and two charts per run.
fn scale_section(md: &mut String, results: &Results, dir: &std::path::Path) -> Result<()> {
    if results.scale.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        md,
        "## Scale: guest add against the number of networks\n\n\
         One daemon of its own (a fresh sandbox), filled through the API by {} clients at \
         once to each level of networks with {} guests in each (2,000 networks: 20,000 \
         guests). At each level, through the API helper (calls alone): {} guest adds into \
         fresh guests of existing networks, spread over them (removed again afterwards), \
         then `GET /v1/status` and `GET /v1/networks` in turn; the daemon's VmRSS after \
         them. \"× 1\" is the guest add p50 over the 1-network level's. Targets: status \
         and network ls < 1 s, guest add at 2,000 networks ≤ 1.2× its figure at 1.\n",
        scale::FILL_CLIENTS,
        scale::GUESTS_PER_NETWORK,
        results
            .scale
            .iter()
            .flat_map(|r| &r.levels)
            .map(|l| l.guest_add_us.len())
            .max()
            .unwrap_or(0),
    );
    let mut add_bars = Vec::new();
    let mut read_bars = Vec::new();
    for run in &results.scale {
        let _ = writeln!(
            md,
            "### {}\n\n![guest add at scale](cp_scale_guest_add.svg)\n\n\
             ![status and network ls at scale](cp_scale_reads.svg)\n\n\
             | networks | guests | guest add p50 | p99 | × 1 | status p50 | status max | \
             network ls p50 | network ls max | RSS (MiB) | load | filling (s) |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            run.system
        );
        let base = run
            .levels
            .first()
            .map(|l| scale::quantile(&l.guest_add_us, 0.5))
            .filter(|v| v.is_finite() && *v > 0.0);
        for level in &run.levels {
            let (p50, p99) = percentiles(&level.guest_add_us);
            let (s50, _) = percentiles(&level.status_us);
            let (l50, _) = percentiles(&level.network_ls_us);
            let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} |",
                super::group_thousands(level.networks as u64),
                super::group_thousands(level.guests as u64),
                ms(p50),
                ms(p99),
                base.map_or("—".to_owned(), |b| format!("{:.2}×", p50 / b)),
                ms(s50),
                ms(max(&level.status_us)),
                ms(l50),
                ms(max(&level.network_ls_us)),
                level
                    .rss_kb
                    .map_or("—".to_owned(), |kb| format!("{:.0}", kb as f64 / 1024.0)),
                level.load,
                level.fill_secs,
            );
            let label = format!(
                "{}, {} networks",
                run.system,
                super::group_thousands(level.networks as u64)
            );
            let colour = if run.system.contains("nftables") {
                CaseKey::NetdNft.colour()
            } else {
                CaseKey::NetdEbpf.colour()
            };
            add_bars.push(Bar {
                label: label.clone(),
                colour: colour.to_owned(),
                value: Some(p50 / 1000.0).filter(|v| v.is_finite()),
                spread: Some((p50 / 1000.0, p99 / 1000.0)).filter(|s| s.1.is_finite()),
                text: format!("p50 {} ms, p99 {} ms", ms(p50), ms(p99)),
            });
            for (what, samples) in [
                ("status", &level.status_us),
                ("network ls", &level.network_ls_us),
            ] {
                let (p50, _) = percentiles(samples);
                let top = max(samples);
                read_bars.push(Bar {
                    label: format!("{label}: {what}"),
                    colour: colour.to_owned(),
                    value: Some(p50 / 1000.0).filter(|v| v.is_finite()),
                    spread: Some((p50 / 1000.0, top / 1000.0)).filter(|s| s.1.is_finite()),
                    text: format!("p50 {} ms, max {} ms", ms(p50), ms(top)),
                });
            }
        }
        let _ = writeln!(md);
        match &run.refusal {
            Some(Ok(message)) => {
                let _ = writeln!(md, "- the 2,049th network is refused: {}", cell(message));
            }
            Some(Err(err)) => {
                let _ = writeln!(md, "- the 2,049th network's refusal: FAILED: {}", cell(err));
            }
            None => {}
        }
        if let Some(err) = &run.error {
            let _ = writeln!(md, "- {}: {}", run.system, cell(err));
        }
        let _ = writeln!(md);
    }
    let chart = |title: &str, subtitle: &str, bars| Chart {
        title: title.to_owned(),
        subtitle: subtitle.to_owned(),
        groups: vec![Group {
            title: "by the number of networks (10 guests each)".to_owned(),
            bars,
        }],
    };
    std::fs::write(
        dir.join("cp_scale_guest_add.svg"),
        svg::render(&chart(
            "Control plane at scale: guest add",
            "milliseconds; bar p50, whisker p50–p99; lower is better",
            add_bars,
        )),
    )?;
    std::fs::write(
        dir.join("cp_scale_reads.svg"),
        svg::render(&chart(
            "Control plane at scale: GET /v1/status and GET /v1/networks",
            "milliseconds; bar p50, whisker p50–max; lower is better",
            read_bars,
        )),
    )?;
    Ok(())
}

/// p50 and p99 of samples.
fn percentiles(samples: &[f64]) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        super::stats::quantile_sorted(&sorted, 0.5),
        super::stats::quantile_sorted(&sorted, 0.99),
    )
}

/// Chart labels are kept to a readable length (the table has them whole).
fn chart_label(label: &str) -> String {
    let label = label.replace('`', "");
    let short: String = label.chars().take(52).collect();
    if short.len() < label.len() {
        format!("{short}…")
    } else {
        short
    }
}

fn colour_of(label: &str) -> &'static str {
    for key in CaseKey::ALL {
        if label.starts_with(key.short()) {
            return key.colour();
        }
    }
    "#555"
}

/// Microseconds as milliseconds with sensible digits.
fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if !v.is_finite() {
        "—".to_owned()
    } else if v < 0.1 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn footer(md: &mut String, results: &Results) {
    let _ = writeln!(md, "## Notes\n");
    let mut any = false;
    for (key, why) in &results.unavailable {
        any = true;
        let _ = writeln!(md, "- {}: not available: {}", key.title(), cell(why));
    }
    for note in &results.notes {
        any = true;
        let _ = writeln!(md, "- {}", cell(note));
    }
    let failed: Vec<String> = results
        .errors
        .iter()
        .map(|((test, path, key), errors)| {
            format!(
                "{} {} for {}: {}",
                test.title(),
                path.title(),
                key.short(),
                errors.join("; ")
            )
        })
        .collect();
    for f in &failed {
        any = true;
        let _ = writeln!(md, "- failed: {}", cell(f));
    }
    if !any {
        let _ = writeln!(md, "- every case was built and every measurement ran.");
    }
    let _ = writeln!(
        md,
        "\nRaw samples (one per round, and every control-plane call): `results.json`.\n\
         Reproduce: `cargo xtask bench` (or `--quick`) as root on a Debian machine; see \
         `bench/results/README.md`."
    );
}

/// Text safe inside a markdown table cell, on one line.
fn cell(text: &str) -> String {
    let one_line: String = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let clipped: String = one_line.chars().take(400).collect();
    clipped.replace('|', "\\|")
}

fn raw(settings: &Settings, results: &Results) -> String {
    let traffic: Vec<_> = results
        .traffic
        .iter()
        .map(|((metric, path, key), samples)| {
            json!({
                "metric": metric.file(), "unit": metric.unit(), "path": path.title(),
                "case": key.short(), "samples": samples
            })
        })
        .collect();
    let control: Vec<_> = results
        .control
        .iter()
        .map(|t| {
            json!({
                "group": t.group, "label": t.label, "samples_us": t.samples_us, "error": t.error
            })
        })
        .collect();
    let value = json!({
        "quick": settings.quick,
        "rounds": settings.rounds,
        "secs": settings.secs.as_secs_f64(),
        "facts": results.facts.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "unavailable": results.unavailable.iter().map(|(k, why)| json!({"case": k.short(), "why": why})).collect::<Vec<_>>(),
        "traffic": traffic,
        "control": control,
        "scale": results.scale.iter().map(|r| json!({
            "system": r.system, "error": r.error,
            "refusal": r.refusal.as_ref().map(|r| match r { Ok(m) => json!({"refused": m}), Err(e) => json!({"failed": e}) }),
            "levels": r.levels.iter().map(|l| json!({
                "networks": l.networks, "guests": l.guests, "guest_add_us": l.guest_add_us,
                "status_us": l.status_us, "network_ls_us": l.network_ls_us, "rss_kb": l.rss_kb,
                "load": l.load, "fill_secs": l.fill_secs,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "round_loads": results.round_loads,
        "crr_slow": results.crr_slow.iter().map(|((p, k), n)| json!({"path": p.title(), "case": k.short(), "slow": n})).collect::<Vec<_>>(),
        "prog_costs": results.prog_costs.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        "errors": results.errors.iter().map(|((t, p, k), e)| json!({"test": t.title(), "path": p.title(), "case": k.short(), "errors": e})).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with holes (a failed case, a metric with no figure) still
    /// gives a whole report.
    #[test]
    fn a_report_with_missing_figures_is_written() {
        let dir = std::env::temp_dir().join(format!("netd-report-test-{}", std::process::id()));
        let mut settings = Settings::new(true, dir.clone());
        settings.busy_load = 1.5;
        let mut results = Results {
            cases: CaseKey::ALL.to_vec(),
            round_loads: vec![[0.5, 0.4, 0.3], [2.0, 1.0, 0.5]],
            ..Results::default()
        };
        for round in 0..2 {
            for key in [CaseKey::Limit, CaseKey::NetdEbpf, CaseKey::Netavark] {
                for path in PathKind::ALL {
                    let v = 100.0 + round as f64 + key as usize as f64;
                    results
                        .per_round
                        .insert((Metric::RrTps, path, key, round), v);
                    results
                        .traffic
                        .entry((Metric::RrTps, path, key))
                        .or_default()
                        .push(v);
                }
            }
        }
        let report = write(&settings, &results).expect("the report is written");
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.contains("## Issue 12's targets"));
        assert!(text.contains("busy machine"), "round 2 is flagged");
        assert!(text.contains("not measured"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
