//! Scale (issue 14): one daemon of its own, filled through the API to each
//! level of networks (10 guests in each), and at each level: guest add into
//! fresh guests of existing networks, `GET /v1/status` and `GET
//! /v1/networks` wall time, and the daemon's RSS. At 2,000 networks the
//! uplink pool is filled to its 2,048 and the 2,049th must be refused with
//! an error that names the /19 and the fix.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use crate::{
    Sandbox,
    bench::{Settings, api::ApiHelper},
    netd::Netd,
};

/// Guests in every network of a level.
pub const GUESTS_PER_NETWORK: usize = 10;
/// Clients filling networks at once (untimed; the daemon locks per network).
pub const FILL_CLIENTS: usize = 4;
/// The default uplink pool's size.
const UPLINKS: usize = 2048;

/// What one level measured.
#[derive(Debug, Clone, Default)]
pub struct Level {
    pub networks: usize,
    pub guests: usize,
    /// Guest adds into existing networks, µs.
    pub guest_add_us: Vec<f64>,
    /// `GET /v1/status`, µs.
    pub status_us: Vec<f64>,
    /// `GET /v1/networks`, µs.
    pub network_ls_us: Vec<f64>,
    /// The daemon's VmRSS after the level was filled, kB.
    pub rss_kb: Option<u64>,
    /// The 1-minute load average when the level's samples were taken.
    pub load: f64,
    /// Seconds it took to fill the level (untimed clients, in parallel).
    pub fill_secs: f64,
}

/// One daemon's run over the levels.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// "netd eBPF" or "netd nftables".
    pub system: String,
    pub levels: Vec<Level>,
    /// The 2,049th network's refusal: its message, or what went wrong.
    pub refusal: Option<std::result::Result<String, String>>,
    pub error: Option<String>,
}

/// Runs the scale section for every dataplane asked for.
pub fn run(settings: &Settings, log: &dyn Fn(&str)) -> Vec<Run> {
    settings
        .scale_dataplanes
        .iter()
        .map(|dataplane| {
            let system = match dataplane.as_str() {
                "nftables" => "netd nftables",
                _ => "netd eBPF",
            };
            let mut run = Run {
                system: system.to_owned(),
                ..Run::default()
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let sb = Sandbox::new();
                let netd = Netd::try_start(&sb, dataplane).map_err(|e| anyhow!(e))?;
                let result = fill_and_measure(&netd, settings, &mut run, log);
                drop(netd);
                log(&format!("{system}: tearing the scale sandbox down"));
                drop(sb);
                result
            }));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(err)) => run.error = Some(format!("{err:#}")),
                Err(panic) => run.error = Some(super::panic_message(&panic)),
            }
            run
        })
        .collect()
}

fn fill_and_measure(
    netd: &Netd,
    settings: &Settings,
    run: &mut Run,
    log: &dyn Fn(&str),
) -> Result<()> {
    let pid = netd.pid().ok_or_else(|| anyhow!("the daemon has no pid"))?;
    let mut helper = ApiHelper::start(netd.sandbox, &netd.socket)?;
    let mut made = 0usize;
    for &level in &settings.scale_levels {
        let filling = Instant::now();
        fill(netd, made, level)?;
        made = made.max(level);
        let fill_secs = filling.elapsed().as_secs_f64();
        let load = super::load_figures()[0];
        let mut row = Level {
            networks: level,
            guests: level * GUESTS_PER_NETWORK,
            load,
            fill_secs,
            ..Level::default()
        };
        log(&format!(
            "{}: {level} networks, {} guests in place ({fill_secs:.1} s of filling, load {load:.2})",
            run.system, row.guests
        ));
        // Fresh guests into existing networks, spread over them; removed
        // again so that every level holds 10 guests per network.
        let mut added = Vec::new();
        for k in 0..settings.scale_samples {
            let network = format!("s{}", (k * level.max(1)) / settings.scale_samples.max(1));
            let path = format!("/v1/networks/{network}/guests");
            let (took, _) = helper.call("POST", &path, json!({ "name": format!("t{k}") }))?;
            row.guest_add_us.push(took);
            added.push(format!("{path}/t{k}"));
        }
        for path in added {
            helper.call("DELETE", &path, Value::Null)?;
        }
        for _ in 0..settings.scale_reads {
            let (took, status) = helper.call("GET", "/v1/status", Value::Null)?;
            row.status_us.push(took);
            let counted = status["networks"].as_u64().unwrap_or(0) as usize;
            if counted != level {
                bail!("GET /v1/status counts {counted} networks, {level} were made");
            }
            let (took, list) = helper.call("GET", "/v1/networks", Value::Null)?;
            row.network_ls_us.push(took);
            let listed = list.as_array().map_or(0, Vec::len);
            if listed != level {
                bail!("GET /v1/networks lists {listed} networks, {level} were made");
            }
        }
        row.rss_kb = rss_kb(pid);
        let q = |s: &[f64], p: f64| quantile(s, p) / 1000.0;
        log(&format!(
            "  guest add p50 {:.1} ms p99 {:.1} ms; status {:.0} ms; network ls {:.0} ms; RSS {} MiB",
            q(&row.guest_add_us, 0.5),
            q(&row.guest_add_us, 0.99),
            q(&row.status_us, 0.5),
            q(&row.network_ls_us, 0.5),
            row.rss_kb
                .map_or("?".to_owned(), |kb| (kb / 1024).to_string()),
        ));
        run.levels.push(row);
    }
    if made >= 2000 {
        log(&format!(
            "{}: networks up to the pool's {UPLINKS}, then the {}th",
            run.system,
            UPLINKS + 1
        ));
        run.refusal = Some(refusal(&mut helper, made).map_err(|e| format!("{e:#}")));
    }
    Ok(())
}

/// Networks `s{from}`..`s{to}` with their guests, by several clients at
/// once (untimed).
fn fill(netd: &Netd, from: usize, to: usize) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let mut helpers = (0..FILL_CLIENTS.min(to - from))
        .map(|_| ApiHelper::start(netd.sandbox, &netd.socket))
        .collect::<Result<Vec<_>>>()?;
    let clients = helpers.len();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let running: Vec<_> = helpers
            .iter_mut()
            .enumerate()
            .map(|(c, helper)| {
                scope.spawn(move || -> Result<()> {
                    for n in (from + c..to).step_by(clients) {
                        let name = format!("s{n}");
                        helper.call("POST", "/v1/networks", json!({ "name": name }))?;
                        let path = format!("/v1/networks/{name}/guests");
                        for g in 0..GUESTS_PER_NETWORK {
                            helper.call("POST", &path, json!({ "name": format!("g{g}") }))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| bail!("a filling client panicked"))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Fills the uplink pool to its 2,048 networks, asks for one more, and
/// checks the refusal names the full /19 and the fix. Returns its message.
fn refusal(helper: &mut ApiHelper, made: usize) -> Result<String> {
    for n in made..UPLINKS {
        helper.call("POST", "/v1/networks", json!({ "name": format!("s{n}") }))?;
    }
    match helper.call("POST", "/v1/networks", json!({ "name": "one-too-many" })) {
        Ok(_) => bail!("the {}th network was created", UPLINKS + 1),
        Err(err) => {
            let message = format!("{err:#}");
            for wanted in ["2048", "172.18.192.0/19", "uplink_pool", "remove a network"] {
                if !message.contains(wanted) {
                    bail!("the refusal does not say {wanted:?}: {message}");
                }
            }
            Ok(message)
        }
    }
}

/// A process's resident set (VmRSS), kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The `q` quantile of unsorted samples (NaN when there are none).
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    super::stats::quantile_sorted(&sorted, q)
}
