//! `cargo xtask bench [--quick]` runs this as root: netd's dataplane against
//! a direct veth, netavark and the CNI plugins, and netd's control plane,
//! in sandboxes; writes `bench/results/report.md` and its charts.
//!
//! `netd-bench [--quick] [--out DIR]`; `netd-bench api-helper SOCKET` is the
//! helper that times API calls from inside a daemon's namespace.

use std::path::PathBuf;

use netd_tests::bench::{self, Settings};

const USAGE: &str = "usage: netd-bench [--quick] [--out DIR] [--only traffic|control|progcost] \
     [--rounds N] [--secs S] [--sockperf-rounds N] [--prog-costs-before FILE] \
     [--prog-costs-out FILE] [--prog-costs-as LABEL[:COMMIT]]";

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
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => match rest.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => usage(),
            },
            "--only" => match rest.next().map(String::as_str) {
                Some(part @ ("traffic" | "control" | "progcost")) => only = Some(part.to_owned()),
                _ => usage(),
            },
            flag @ ("--rounds" | "--secs" | "--sockperf-rounds") => {
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
        settings.prog_costs = part != "control";
        if part == "progcost" {
            settings.only_cases = Some(vec![bench::cases::CaseKey::NetdEbpf]);
        }
    }
    for (flag, n) in numbers {
        match flag.as_str() {
            "--rounds" => settings.rounds = n as usize,
            "--secs" => {
                settings.secs = std::time::Duration::from_secs(n);
                settings.iperf_secs = n as u32;
            }
            _ => settings.sockperf_rounds = n as usize,
        }
    }
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

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}
