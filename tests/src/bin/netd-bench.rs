//! `cargo xtask bench [--quick]` runs this as root: netd's dataplane against
//! a direct veth, netavark and the CNI plugins, and netd's control plane,
//! in sandboxes; writes `bench/results/report.md` and its charts.
//!
//! `netd-bench [--quick] [--out DIR]`; `netd-bench api-helper SOCKET` is the
//! helper that times API calls from inside a daemon's namespace.

use std::path::PathBuf;

use netd_tests::bench::{
    self, Settings, Test,
    cases::{CaseKey, PathKind},
};

const USAGE: &str = "usage: netd-bench [--quick] [--out DIR] [--only traffic|control|progcost|scale] [--scale-levels N,N,..] [--scale-dataplanes ebpf,nftables] [--scale-samples N] [--forward-levels N,N,..] \
     [--rounds N] [--secs S] [--sockperf-rounds N] [--prog-costs-before FILE] \
     [--prog-costs-out FILE] [--prog-costs-as LABEL[:COMMIT]] \
     [--cases limit,netd-ebpf,netd-nft,netavark,cni] \
     [--tests rr,busy-rr,crr,udp,iperf,sockperf-pp,sockperf-udp] [--paths internet,guest,published]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("api-helper") {
        let Some(socket) = args.get(1) else {
            eprintln!("usage: netd-bench api-helper SOCKET");
            std::process::exit(2);
        };
        if let Err(err) = bench::api::serve_helper(std::path::Path::new(socket)) {
            eprintln!("netd-bench api-helper: {err:#}");
            std::process::exit(1);
        }
        return;
    }
    let mut quick = false;
    let mut out = PathBuf::from("bench/results");
    let mut only = None;
    let mut numbers: Vec<(String, u64)> = Vec::new();
    let mut before = None;
    let mut costs_out = None;
    let mut costs_as = None;
    let (mut cases, mut tests, mut paths) = (None, None, None);
    let (mut scale_levels, mut scale_dataplanes) = (None, None);
    let mut forward_levels = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => match rest.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => usage(),
            },
            "--only" => match rest.next().map(String::as_str) {
                Some(part @ ("traffic" | "control" | "progcost" | "scale")) => {
                    only = Some(part.to_owned())
                }
                _ => usage(),
            },
            flag @ ("--rounds" | "--secs" | "--sockperf-rounds" | "--scale-samples") => {
                match rest.next().and_then(|n| n.parse().ok()) {
                    Some(n) => numbers.push((flag.to_owned(), n)),
                    None => usage(),
                }
            }
            "--prog-costs-before" => {
                before = Some(PathBuf::from(rest.next().unwrap_or_else(|| usage())))
            }
            "--prog-costs-out" => {
                costs_out = Some(PathBuf::from(rest.next().unwrap_or_else(|| usage())))
            }
            "--prog-costs-as" => costs_as = Some(rest.next().unwrap_or_else(|| usage()).clone()),
            "--scale-levels" => {
                let levels: Option<Vec<usize>> = rest
                    .next()
                    .map(|list| list.split(',').map(|n| n.parse().ok()).collect())
                    .unwrap_or(None);
                match levels {
                    Some(levels) if !levels.is_empty() => scale_levels = Some(levels),
                    _ => usage(),
                }
            }
            "--forward-levels" => {
                let levels: Option<Vec<usize>> = rest
                    .next()
                    .map(|list| list.split(',').map(|n| n.parse().ok()).collect())
                    .unwrap_or(None);
                match levels {
                    Some(levels) if !levels.is_empty() => forward_levels = Some(levels),
                    _ => usage(),
                }
            }
            "--scale-dataplanes" => match rest.next() {
                Some(list) if list.split(',').all(|d| matches!(d, "ebpf" | "nftables")) => {
                    scale_dataplanes = Some(list.split(',').map(str::to_owned).collect())
                }
                _ => usage(),
            },
            "--cases" => cases = Some(pick(rest.next(), &CaseKey::ALL, |c| c.key())),
            "--tests" => tests = Some(pick(rest.next(), &Test::ALL, |t| t.key())),
            "--paths" => paths = Some(pick(rest.next(), &PathKind::ALL, |p| p.key())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => usage(),
        }
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("netd-bench builds network namespaces and loads eBPF programs: run it as root");
        std::process::exit(1);
    }
    let mut settings = Settings::new(quick, out);
    if let Some(part) = only {
        settings.traffic = part == "traffic";
        settings.control = part == "control";
        settings.prog_costs = part == "traffic" || part == "progcost";
        settings.scale = part == "scale";
        if part == "progcost" {
            settings.only_cases = Some(vec![bench::cases::CaseKey::NetdEbpf]);
        }
        if part == "scale" {
            // The scale section builds its own sandbox and daemon.
            settings.only_cases = Some(Vec::new());
        }
    }
    if let Some(levels) = scale_levels {
        settings.scale_levels = levels;
    }
    if let Some(levels) = forward_levels {
        settings.forward_levels = levels;
    }
    if let Some(dataplanes) = scale_dataplanes {
        settings.scale_dataplanes = dataplanes;
    }
    for (flag, n) in numbers {
        match flag.as_str() {
            "--rounds" => settings.rounds = n as usize,
            "--secs" => {
                settings.secs = std::time::Duration::from_secs(n);
                settings.iperf_secs = n as u32;
            }
            "--scale-samples" => settings.scale_samples = (n as usize).max(1),
            _ => settings.sockperf_rounds = n as usize,
        }
    }
    if let Some(mut cases) = cases {
        // Every ratio is to the limit, measured in the same round.
        if !cases.contains(&CaseKey::Limit) {
            cases.insert(0, CaseKey::Limit);
        }
        settings.only_cases = Some(cases);
    }
    if let Some(mut paths) = paths {
        // The limit's guest -> guest figure is its guest -> internet one.
        if paths.contains(&PathKind::Guest) && !paths.contains(&PathKind::Internet) {
            paths.insert(0, PathKind::Internet);
        }
        settings.only_paths = Some(paths);
    }
    if tests.is_some() || settings.only_paths.is_some() {
        // A targeted traffic run: no control-plane figures or program costs.
        settings.control = false;
        settings.prog_costs = false;
        settings.scale = false;
    }
    settings.only_tests = tests;
    settings.prog_costs_before = before;
    settings.prog_costs_out = costs_out;
    if let Some(label) = costs_as {
        settings.prog_costs_as = label;
    }
    match bench::run(&settings) {
        Ok(report) => println!("report: {}", report.display()),
        Err(err) => {
            eprintln!("netd-bench: {err:#}");
            std::process::exit(1);
        }
    }
}

/// The items of a comma-separated list, by the names `key` gives them.
fn pick<T: Copy>(list: Option<&String>, all: &[T], key: impl Fn(T) -> &'static str) -> Vec<T> {
    let Some(list) = list else { usage() };
    list.split(',')
        .map(|name| {
            all.iter()
                .copied()
                .find(|&item| key(item) == name)
                .unwrap_or_else(|| {
                    let known: Vec<&str> = all.iter().map(|&item| key(item)).collect();
                    eprintln!(
                        "netd-bench: unknown name {name:?}; one of {}",
                        known.join(", ")
                    );
                    std::process::exit(2);
                })
        })
        .collect()
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}
