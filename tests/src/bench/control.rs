//! Control-plane figures: how long netd takes to add guests, create
//! networks, publish ports and apply partitions (API calls timed by the
//! helper, and CLI round trips), and one container's setup by netd,
//! netavark and the CNI plugins, interleaved.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use netd::{
    client::segment,
    partition::{Partition, Verb},
};
use serde_json::{Value, json};

use crate::bench::{
    Settings,
    api::ApiHelper,
    cases::{Case, CaseKey, cli, container_netns},
};

/// One control-plane figure: samples in microseconds, or why there are none.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The table it belongs to ("guest add", "port add", ...).
    pub group: String,
    /// The row: the system and how it was timed.
    pub label: String,
    pub samples_us: Vec<f64>,
    pub error: Option<String>,
}

impl Timing {
    pub(crate) fn new(group: &str, label: impl Into<String>) -> Timing {
        Timing {
            group: group.to_owned(),
            label: label.into(),
            samples_us: Vec::new(),
            error: None,
        }
    }

    pub(crate) fn fail(&mut self, err: anyhow::Error) {
        if self.error.is_none() {
            self.error = Some(format!("{err:#}"));
        }
    }
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Every netd-only figure for one netd case.
pub fn netd_figures(case: &Case, settings: &Settings, log: &dyn Fn(&str)) -> Vec<Timing> {
    let system = case.key.short();
    let Some(netd) = case.netd() else {
        return Vec::new();
    };
    let mut helper = match ApiHelper::start(netd.sandbox, &netd.socket) {
        Ok(helper) => helper,
        Err(err) => {
            let mut t = Timing::new("guest add", format!("{system}, API"));
            t.fail(err);
            return vec![t];
        }
    };
    let mut out = Vec::new();
    log(&format!("{system}: guest add x{} (API)", settings.guests));
    let guests = guest_add(&mut helper, system, settings.guests, &mut out);
    log(&format!(
        "{system}: partition disjoint halves of {} guests x{}",
        guests.len(),
        settings.partition_reps
    ));
    partition(
        &mut helper,
        case,
        &guests,
        settings.partition_reps,
        &mut out,
    );
    log(&format!(
        "{system}: network create x{} (API)",
        settings.networks
    ));
    network_create(&mut helper, system, settings.networks, &mut out);
    log(&format!(
        "{system}: port add at {:?} existing forwards (API)",
        settings.forward_levels
    ));
    port_add(&mut helper, system, settings, &mut out, log);
    log(&format!(
        "{system}: 253 guests into one network through the CLI"
    ));
    guests_through_the_cli(netd, case.key, settings.partition_reps, &mut out);
    log(&format!(
        "{system}: {PARALLEL_NETWORKS} clients adding {PARALLEL_GUESTS} guests each to their own network, against one client"
    ));
    out.extend(parallel_against_sequential(netd, system));
    if case.key == CaseKey::NetdEbpf {
        log("delay line: timing error and throughput");
        out.extend(crate::bench::faults::delay_line(netd, system));
    }
    if case.key == CaseKey::NetdEbpf {
        log("store commit (one guest added to a network of 253, in-process)");
        out.push(store_commit(&netd.sandbox.root));
    }
    out
}

const PARALLEL_NETWORKS: usize = 8;
const PARALLEL_GUESTS: usize = 16;

/// The same work (16 guests into each of 8 networks, through the API) done
/// by 8 clients at once, one per network, and by one client in sequence.
/// The labels carry the wall-clock totals; the samples are the calls.
fn parallel_against_sequential(netd: &crate::netd::Netd, system: &str) -> Vec<Timing> {
    let mut sequential = Timing::new(
        "guests into 8 networks",
        format!("{system}, 1 client in sequence"),
    );
    let mut parallel = Timing::new(
        "guests into 8 networks",
        format!("{system}, {PARALLEL_NETWORKS} clients at once"),
    );
    let networks = |prefix: &str| -> Vec<String> {
        (0..PARALLEL_NETWORKS)
            .map(|n| format!("{prefix}{n}"))
            .collect()
    };
    let (seq_names, par_names) = (networks("cpseq"), networks("cppar"));
    let wall = match fill_in_sequence(netd, &seq_names, &mut sequential) {
        Ok(wall) => wall,
        Err(err) => {
            sequential.fail(err);
            return vec![sequential];
        }
    };
    sequential.label = format!("{}: {:.2} s", sequential.label, wall.as_secs_f64());
    match fill_at_once(netd, &par_names, &mut parallel) {
        Ok(wall) => {
            parallel.label = format!("{}: {:.2} s", parallel.label, wall.as_secs_f64());
        }
        Err(err) => parallel.fail(err),
    }
    if let Ok(mut helper) = ApiHelper::start(netd.sandbox, &netd.socket) {
        for name in seq_names.iter().chain(&par_names) {
            let _ = helper.call("DELETE", &format!("/v1/networks/{name}"), Value::Null);
        }
    }
    vec![sequential, parallel]
}

fn fill_in_sequence(
    netd: &crate::netd::Netd,
    networks: &[String],
    t: &mut Timing,
) -> Result<Duration> {
    let mut helper = ApiHelper::start(netd.sandbox, &netd.socket)?;
    for name in networks {
        helper.call("POST", "/v1/networks", json!({ "name": name }))?;
    }
    let started = Instant::now();
    for g in 0..PARALLEL_GUESTS {
        for name in networks {
            let path = format!("/v1/networks/{name}/guests");
            let (took, _) = helper.call("POST", &path, json!({ "name": format!("g{g}") }))?;
            t.samples_us.push(took);
        }
    }
    Ok(started.elapsed())
}

fn fill_at_once(netd: &crate::netd::Netd, networks: &[String], t: &mut Timing) -> Result<Duration> {
    let mut helpers = Vec::new();
    for name in networks {
        let mut helper = ApiHelper::start(netd.sandbox, &netd.socket)?;
        helper.call("POST", "/v1/networks", json!({ "name": name }))?;
        helpers.push((name, helper));
    }
    let started = Instant::now();
    let results: Vec<Result<Vec<f64>>> = std::thread::scope(|scope| {
        let running: Vec<_> = helpers
            .iter_mut()
            .map(|(name, helper)| {
                scope.spawn(move || -> Result<Vec<f64>> {
                    let path = format!("/v1/networks/{name}/guests");
                    (0..PARALLEL_GUESTS)
                        .map(|g| {
                            helper
                                .call("POST", &path, json!({ "name": format!("g{g}") }))
                                .map(|(took, _)| took)
                        })
                        .collect()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().unwrap_or_else(|_| bail!("a client panicked")))
            .collect()
    });
    let wall = started.elapsed();
    for samples in results {
        t.samples_us.extend(samples?);
    }
    Ok(wall)
}

/// A network filled to its 253 guests through the CLI, one `netd guest add
/// cpcli c0 c1 .. c252` (the batch form: one process, one request per
/// guest; a process per guest cost 7 s, mostly process starts). The label
/// carries the total; the one sample is the process's wall time.
fn guests_through_the_cli(
    netd: &crate::netd::Netd,
    key: CaseKey,
    reps: usize,
    out: &mut Vec<Timing>,
) {
    let system = key.short();
    let mut t = Timing::new("guests through the CLI", format!("{system}, CLI"));
    let started = Instant::now();
    match cli(netd, &["network", "create", "cpcli"]) {
        Err(err) => t.fail(err),
        Ok(_) => {
            let names: Vec<String> = (0..253).map(|i| format!("c{i}")).collect();
            let mut args = vec!["guest", "add", "cpcli"];
            args.extend(names.iter().map(String::as_str));
            let call = Instant::now();
            match cli(netd, &args) {
                Ok(_) => t.samples_us.push(us(call.elapsed())),
                Err(err) => t.fail(err),
            }
        }
    }
    let full = !t.samples_us.is_empty();
    t.label = format!(
        "{system}, CLI: {} guests in {:.2} s",
        if full { 253 } else { 0 },
        started.elapsed().as_secs_f64()
    );
    out.push(t);
    if full {
        out.extend(crate::bench::faults::policy_apply(netd, key, "cpcli", reps));
    }
    let _ = cli(netd, &["network", "rm", "cpcli"]);
}

/// What a change costs the store: one guest added to a network of 253
/// guests, committed to a SQLite file on this machine's disk (the daemon's
/// `Store::save_network`, in-process, so only the store is timed).
fn store_commit(dir: &std::path::Path) -> Timing {
    use netd::{model::State, store::Store};
    let mut t = Timing::new("store commit", "SQLite, one guest into a network of 253");
    let run = || -> Result<Vec<f64>> {
        let dir = dir.join("store-bench");
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir)?;
        let mut state: State = serde_json::from_value(json!({
            "networks": {"web": {
                "name": "web", "subnet": "172.18.0.0/24", "routable": false,
                "uplink_slot": 0, "guests": {}, "created_at": 0
            }}
        }))?;
        let guest = |i: usize| -> Result<netd::model::Guest> {
            Ok(serde_json::from_value(json!({
                "name": format!("g{i}"), "ip": format!("172.18.0.{}", i + 1),
                "netns": {"kind": "owned"}, "created_at": 0, "slot": i, "bridge_port": format!("g-g{i}")
            }))?)
        };
        let mut samples = Vec::new();
        for i in 0..253 {
            let g = guest(i)?;
            let net = state.networks.get_mut("web").expect("made above");
            net.guests.insert(g.name.clone(), g);
            let started = Instant::now();
            store.save_network(&state, "web")?;
            samples.push(us(started.elapsed()));
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(samples)
    };
    match run() {
        Ok(samples) => t.samples_us = samples,
        Err(err) => t.fail(err),
    }
    t
}

fn guest_add(helper: &mut ApiHelper, system: &str, n: usize, out: &mut Vec<Timing>) -> Vec<String> {
    let mut t = Timing::new("guest add", format!("{system}, API"));
    let mut names = Vec::new();
    match helper.call("POST", "/v1/networks", json!({"name": "cpg"})) {
        Err(err) => t.fail(err),
        Ok(_) => {
            for i in 0..n {
                let name = format!("n{i}");
                match helper.call("POST", "/v1/networks/cpg/guests", json!({"name": name})) {
                    Ok((took, _)) => {
                        t.samples_us.push(took);
                        names.push(name);
                    }
                    Err(err) => {
                        t.fail(err);
                        break;
                    }
                }
            }
        }
    }
    out.push(t);
    names
}

/// `disjoint` of all guests in two groups, alternating between halves and
/// odd/even so that every request changes the policy.
fn partition(
    helper: &mut ApiHelper,
    case: &Case,
    guests: &[String],
    reps: usize,
    out: &mut Vec<Timing>,
) {
    let system = case.key.short();
    let n = guests.len();
    let mut in_force = Timing::new(
        "partition apply",
        format!("{system}, in_force_after_us (API, {n} guests)"),
    );
    let mut api = Timing::new(
        "partition apply",
        format!("{system}, API round trip ({n} guests)"),
    );
    let mut cli_in_force = Timing::new(
        "partition apply",
        format!("{system}, in_force_after_us (CLI, {n} guests)"),
    );
    let mut cli_rt = Timing::new(
        "partition apply",
        format!("{system}, `netd partition ... --json` round trip ({n} guests)"),
    );
    if n < 2 {
        api.fail(anyhow::anyhow!("fewer than two guests were added"));
        out.push(api);
        return;
    }
    let halves = |rep: usize| -> Vec<Vec<String>> {
        if rep.is_multiple_of(2) {
            vec![guests[..n / 2].to_vec(), guests[n / 2..].to_vec()]
        } else {
            let (odd, even): (Vec<_>, Vec<_>) =
                guests.iter().enumerate().partition(|(i, _)| i % 2 == 1);
            vec![
                odd.into_iter().map(|(_, g)| g.clone()).collect(),
                even.into_iter().map(|(_, g)| g.clone()).collect(),
            ]
        }
    };
    let netd = case.netd().expect("a netd case");
    for rep in 0..reps {
        let request = Partition::new(Verb::Disjoint {
            groups: halves(rep),
        });
        match helper.call(
            "PUT",
            "/v1/networks/cpg/partition",
            serde_json::to_value(&request).expect("serializable"),
        ) {
            Ok((took, view)) => {
                api.samples_us.push(took);
                match view["in_force_after_us"].as_f64() {
                    Some(v) => in_force.samples_us.push(v),
                    None => in_force.fail(anyhow::anyhow!("the answer has no in_force_after_us")),
                }
            }
            Err(err) => api.fail(err),
        }
        // The same through the CLI, with the other grouping.
        let groups = halves(rep + 1);
        let mut args = vec!["partition", "cpg", "disjoint"];
        args.extend(groups[0].iter().map(String::as_str));
        args.push("--");
        args.extend(groups[1].iter().map(String::as_str));
        args.push("--json");
        let start = Instant::now();
        match cli(netd, &args) {
            Ok(text) => {
                cli_rt.samples_us.push(us(start.elapsed()));
                match serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["in_force_after_us"].as_f64())
                {
                    Some(v) => cli_in_force.samples_us.push(v),
                    None => cli_in_force
                        .fail(anyhow::anyhow!("the CLI's JSON has no in_force_after_us")),
                }
            }
            Err(err) => cli_rt.fail(err),
        }
    }
    let _ = helper.call(
        "PUT",
        "/v1/networks/cpg/partition",
        json!({"verb": "fullmesh"}),
    );
    out.extend([in_force, api, cli_in_force, cli_rt]);
}

fn network_create(helper: &mut ApiHelper, system: &str, n: usize, out: &mut Vec<Timing>) {
    let mut create = Timing::new("network create", format!("{system}, API"));
    let mut remove = Timing::new("network rm", format!("{system}, API"));
    let mut made = Vec::new();
    for i in 0..n {
        let name = format!("cpn{i}");
        match helper.call("POST", "/v1/networks", json!({"name": name})) {
            Ok((took, _)) => {
                create.samples_us.push(took);
                made.push(name);
            }
            Err(err) => {
                create.fail(err);
                break;
            }
        }
    }
    for name in made {
        match helper.call("DELETE", &format!("/v1/networks/{name}"), Value::Null) {
            Ok((took, _)) => remove.samples_us.push(took),
            Err(err) => remove.fail(err),
        }
    }
    out.extend([create, remove]);
}

/// Publishes ports of one guest until `level` forwards exist, then times
/// `forward_samples` more adds (withdrawn again) at each level.
fn port_add(
    helper: &mut ApiHelper,
    system: &str,
    settings: &Settings,
    out: &mut Vec<Timing>,
    log: &dyn Fn(&str),
) {
    let ports = "/v1/networks/cpp/guests/p1/ports";
    let mut fill = Timing::new("port add (filling)", format!("{system}, API"));
    let mut rows: Vec<Timing> = Vec::new();
    let ready = helper
        .call("POST", "/v1/networks", json!({"name": "cpp"}))
        .and_then(|_| helper.call("POST", "/v1/networks/cpp/guests", json!({"name": "p1"})));
    if let Err(err) = ready {
        fill.fail(err);
        out.push(fill);
        return;
    }
    let mut existing = 0usize;
    for &level in &settings.forward_levels {
        let mut row = Timing::new("port add", format!("{system}, API, {level} existing"));
        let filling = Instant::now();
        while existing < level {
            let spec = format!("{}:80", 10_000 + existing);
            match helper.call("POST", ports, json!({"spec": spec})) {
                Ok((took, _)) => {
                    fill.samples_us.push(took);
                    existing += 1;
                }
                Err(err) => {
                    row.fail(err);
                    break;
                }
            }
        }
        if existing < level {
            rows.push(row);
            break;
        }
        log(&format!(
            "  {level} forwards in place ({:.1} s of filling)",
            filling.elapsed().as_secs_f64()
        ));
        let mut added = Vec::new();
        for j in 0..settings.forward_samples {
            let spec = format!("{}:80", 30_000 + j);
            match helper.call("POST", ports, json!({"spec": spec})) {
                Ok((took, _)) => {
                    row.samples_us.push(took);
                    added.push(spec);
                }
                Err(err) => row.fail(err),
            }
        }
        for spec in added {
            let _ = helper.call(
                "DELETE",
                &format!("{ports}/{}", segment(&spec)),
                Value::Null,
            );
        }
        rows.push(row);
    }
    out.extend(rows);
    out.push(fill);
}

/// One container's setup (and teardown) by every system, interleaved:
/// container i is set up by each system in turn (the order rotating)
/// before container i+1. Every system gets an existing, empty network
/// namespace and publishes one TCP port.
pub fn setup_comparison(cases: &[Case], n: usize, log: &dyn Fn(&str)) -> Vec<Timing> {
    struct System<'c, 'a> {
        case: &'c Case<'a>,
        helper: Option<ApiHelper>,
        setup: Timing,
        teardown: Timing,
        done: Vec<Done>,
    }
    enum Done {
        Netd(String),
        Netavark(netd::netns::Netns, Value),
        Cni(netd::netns::Netns, String, super::cases::CniAttachment),
    }
    let mut systems: Vec<System> = Vec::new();
    for case in cases {
        let short = case.key.short();
        let variants: Vec<(String, String, bool)> = match case.key {
            CaseKey::NetdEbpf | CaseKey::NetdNft => vec![
                (
                    format!("{short}: CLI `guest add --netns` + `port add`"),
                    format!("{short}: CLI `guest rm`"),
                    false,
                ),
                (
                    format!("{short}: API, the same two calls"),
                    format!("{short}: API `DELETE .../guests/NAME`"),
                    true,
                ),
            ],
            CaseKey::Netavark => vec![(
                "netavark: `netavark setup` (one port mapping)".to_owned(),
                "netavark: `netavark teardown`".to_owned(),
                false,
            )],
            CaseKey::Cni => vec![(
                "CNI: bridge ADD + portmap ADD (one port mapping)".to_owned(),
                "CNI: portmap DEL + bridge DEL".to_owned(),
                false,
            )],
            CaseKey::Limit => continue,
        };
        for (setup_label, teardown_label, via_api) in variants {
            let mut setup = Timing::new("container setup", setup_label);
            let teardown = Timing::new("container teardown", teardown_label);
            let helper = match case.netd() {
                Some(netd) if via_api => match ApiHelper::start(netd.sandbox, &netd.socket) {
                    Ok(h) => Some(h),
                    Err(err) => {
                        setup.fail(err);
                        None
                    }
                },
                _ => None,
            };
            if let Some(netd) = case.netd()
                && !via_api
                && let Err(err) = cli(netd, &["network", "create", "setup"])
            {
                setup.fail(err);
            }
            systems.push(System {
                case,
                helper,
                setup,
                teardown,
                done: Vec::new(),
            });
        }
    }
    log(&format!(
        "container setup x{n}: {}",
        systems
            .iter()
            .map(|s| s.setup.label.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    let count = systems.len();
    for i in 0..n {
        for k in 0..count {
            let index = (i + k) % count;
            let sys = &mut systems[index];
            if sys.setup.error.is_some() {
                continue;
            }
            let name = format!("s{index}x{i}");
            let result = (|| -> Result<(f64, Done)> {
                let ns = container_netns(sys.case.sandbox, &name)?;
                let host_port = (20_000 + 100 * index + i) as u16;
                match sys.case.key {
                    CaseKey::NetdEbpf | CaseKey::NetdNft => {
                        let netd = sys.case.netd().expect("netd");
                        let path = ns.path().to_string_lossy().into_owned();
                        let spec = format!("{host_port}:80");
                        let took = if let Some(helper) = &mut sys.helper {
                            let (a, _) = helper.call(
                                "POST",
                                "/v1/networks/setup/guests",
                                json!({"name": name, "netns": path}),
                            )?;
                            let (b, _) = helper.call(
                                "POST",
                                &format!("/v1/networks/setup/guests/{name}/ports"),
                                json!({"spec": spec}),
                            )?;
                            a + b
                        } else {
                            let start = Instant::now();
                            cli(netd, &["guest", "add", "setup", &name, "--netns", &path])?;
                            cli(netd, &["port", "add", "setup", &name, &spec])?;
                            us(start.elapsed())
                        };
                        Ok((took, Done::Netd(name.clone())))
                    }
                    CaseKey::Netavark => {
                        let net = sys.case.netavark().expect("netavark");
                        let options = net.options(10 + i as u32, host_port);
                        let took = net.setup(ns.path(), &options)?;
                        Ok((us(took), Done::Netavark(ns, options)))
                    }
                    CaseKey::Cni => {
                        let net = sys.case.cni().expect("cni");
                        let (attachment, took) = net.add(&name, ns.path(), host_port)?;
                        Ok((us(took), Done::Cni(ns, name.clone(), attachment)))
                    }
                    CaseKey::Limit => bail!("the limit sets nothing up"),
                }
            })();
            match result {
                Ok((took, done)) => {
                    sys.setup.samples_us.push(took);
                    sys.done.push(done);
                }
                Err(err) => sys.setup.fail(err),
            }
        }
    }
    // Teardown, interleaved the same way, newest first.
    let most = systems.iter().map(|s| s.done.len()).max().unwrap_or(0);
    for i in 0..most {
        for k in 0..count {
            let sys = &mut systems[(i + k) % count];
            let Some(done) = sys.done.pop() else { continue };
            let result = (|| -> Result<f64> {
                match done {
                    Done::Netd(name) => {
                        let netd = sys.case.netd().expect("netd");
                        if let Some(helper) = &mut sys.helper {
                            Ok(helper
                                .call(
                                    "DELETE",
                                    &format!("/v1/networks/setup/guests/{name}"),
                                    Value::Null,
                                )?
                                .0)
                        } else {
                            let start = Instant::now();
                            cli(netd, &["guest", "rm", "setup", &name])?;
                            Ok(us(start.elapsed()))
                        }
                    }
                    Done::Netavark(ns, options) => {
                        let net = sys.case.netavark().expect("netavark");
                        Ok(us(net.teardown(ns.path(), &options)?))
                    }
                    Done::Cni(ns, id, attachment) => {
                        let net = sys.case.cni().expect("cni");
                        Ok(us(net.del(&id, ns.path(), &attachment)?))
                    }
                }
            })();
            match result {
                Ok(took) => sys.teardown.samples_us.push(took),
                Err(err) => sys.teardown.fail(err),
            }
        }
    }
    systems
        .into_iter()
        .flat_map(|s| [s.setup, s.teardown])
        .collect()
}
