//! `netd partition [NETWORK] VERB ...`: cut a network's guests apart on
//! purpose, show the cut, check it with real packets. Without NETWORK (the
//! first word is a verb) the request is for the caller's own network, which
//! is how a guest uses it: `netd exec web a -- netd partition isolate b`.
//!
//! The words are read here, not by clap: groups are separated by `--`,
//! which clap would take for the end of options.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Result, bail};
use clap::CommandFactory;
use netd::{
    client::{Client, segment},
    daemon::requests::{PartitionRequest, PartitionView, VerifyReport},
    partition::{Partition, PartitionError, format_duration, format_unix_time, rate::format_bits},
};

/// Every word `netd partition` takes in place of a network.
const VERBS: [&str; 14] = [
    "fullmesh",
    "heal",
    "isolate",
    "disjoint",
    "split",
    "cut",
    "all",
    "bridge",
    "majorities-ring",
    "minority-third",
    "random-halves",
    "schedule",
    "show",
    "verify",
];

const GRAMMAR: &str = "\
Verbs:
  fullmesh | heal                          nothing cut: every guest talks to every guest
  isolate GUEST... [--keep-outside]        each GUEST cut from every other guest, both ways,
                                           and from the outside (unless --keep-outside)
  disjoint A B -- C D [-- ...]             every guest in exactly one group; groups cut
                                           from each other, both ways
  split A B -- B C [-- ...]                two guests talk iff a group holds both (B bridges);
                                           guests in no group are cut from every guest
  cut --from A,B --to C,D [--both-ways]    A->C, A->D, B->C, B->D cut; the reverse untouched
                                           (unless --both-ways)
  all                                      every ordered pair of guests (the outside untouched)
Jepsen's presets, over the guests in name order:
  bridge                                   two halves cut apart, but the first guest of the
                                           second half talks to both
  majorities-ring                          guests on a ring; each hears only the majority
                                           around it (one way cuts)
  minority-third                           the first k guests (k the largest whole number
                                           under n/3) cut from the rest
  random-halves [--seed N]                 two random halves cut apart; the seed (picked
                                           when left out) is printed, to replay the split
  show                                     the partition in force and its matrix
  verify                                   real datagrams between every pair of guests,
                                           against the partition (shares counted, delays
                                           timed, rates measured for up to 4 pairs);
                                           exit code 1 on a mismatch

Clauses: `VERB ... + VERB ...` puts several in force as one policy, replaced
as a whole (`isolate a + all --delay 100ms`); every clause that selects a
packet applies to it.

What a clause does to what it selects (nothing given: cut):
  --loss PERCENT         drop this share (1-100; default 100 without impairments)
  --duplicate PERCENT    send this share twice (1-100)
  --corrupt PERCENT      damage this share; receivers drop them (1-100)
  --rate RATE            each sender at most RATE (bit, kbit, mbit, gbit: 1mbit)
  --delay TIME [--jitter TIME [--correlation PERCENT]]
                         delay (us, ms, s: 50ms); nftables: between guests only
Which packets of the selected pairs:
  --port N[/tcp|udp]     only to or from port N (TCP and UDP without /proto)
  --proto tcp|udp|icmp   only this protocol
For the whole policy:
  --for DURATION         heal by itself after DURATION (30s, 5m, 1h30m, 2d; at most 30d)
  --flap PERIOD          in force for PERIOD, healed for PERIOD, over and over

Schedules (steps in turn; at the end the network heals, unless --repeat):
  schedule [--repeat] DURATION POLICY then DURATION POLICY ...
  schedule FILE          one `DURATION POLICY` step a line, `repeat` alone, `#` comments

Without NETWORK (the first word is a verb) the request is for the caller's own
network: from inside a guest, `netd exec web a -- netd partition isolate b`.
A guest may partition its own network only. Every form takes --json.";

/// Split a network's guests apart on purpose, show it, verify it.
#[derive(clap::Args)]
#[command(
    override_usage = "netd partition [NETWORK] VERB [GUESTS...] [OPTIONS] [--json]",
    after_long_help = GRAMMAR,
    after_help = "See `netd partition --help` for the verbs."
)]
pub struct Args {
    /// [NETWORK] VERB [GUESTS...] [OPTIONS]: see the verbs below.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "WORDS"
    )]
    words: Vec<String>,
}

/// What the words ask for.
#[derive(Debug, PartialEq)]
enum Action {
    Set(PartitionRequest),
    Show,
    Verify,
    Help,
}

#[derive(Debug, PartialEq)]
struct Invocation {
    /// None: the caller's own network.
    network: Option<String>,
    action: Action,
    json: bool,
    /// `--socket` given after the verb, where clap does not see it.
    socket: Option<PathBuf>,
}

pub fn run(client: &Client, args: Args) -> Result<i32> {
    let invocation = parse(&args.words)?;
    let own_client;
    let client = match &invocation.socket {
        Some(socket) => {
            own_client = Client::new(socket);
            &own_client
        }
        None => client,
    };
    let path = match &invocation.network {
        Some(network) => format!("/v1/networks/{}/partition", segment(network)),
        None => "/v1/partition".to_owned(),
    };
    let json = invocation.json;
    match invocation.action {
        Action::Help => {
            super::Cli::command()
                .find_subcommand_mut("partition")
                .expect("registered")
                .print_long_help()?;
        }
        Action::Show => {
            let view: PartitionView = client.get(&format!("{path}?matrix=true"))?;
            super::print(json, &view, print_view);
        }
        Action::Set(request) => {
            let view: PartitionView = client.put(&format!("{path}?matrix=true"), &request)?;
            super::print(json, &view, print_view);
        }
        Action::Verify => {
            let report: VerifyReport = client.post_empty(&format!("{path}/verify"))?;
            super::print(json, &report, print_report);
            return Ok(if report.ok { 0 } else { 1 });
        }
    }
    Ok(0)
}

fn parse(words: &[String]) -> Result<Invocation> {
    let mut json = false;
    let mut socket = None;
    let mut rest: Vec<String> = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--json" => json = true,
            "--help" | "-h" => {
                return Ok(Invocation {
                    network: None,
                    action: Action::Help,
                    json,
                    socket,
                });
            }
            "--socket" => match words.next() {
                Some(path) => socket = Some(PathBuf::from(path)),
                None => bail!("--socket needs a path, e.g. --socket /run/netd/netd.sock"),
            },
            _ => match word.strip_prefix("--socket=") {
                Some(path) => socket = Some(PathBuf::from(path)),
                None => rest.push(word.clone()),
            },
        }
    }
    let network = match rest.first() {
        None => bail!(
            "say what to do: netd partition [NETWORK] fullmesh|heal|isolate|disjoint|split|cut|all|show|verify ... (`netd partition --help`)"
        ),
        Some(first) if VERBS.contains(&first.as_str()) => None,
        Some(_) => Some(rest.remove(0)),
    };
    let action = match rest.first().map(String::as_str) {
        None => bail!(
            "say what to do with network {}: fullmesh|heal|isolate|disjoint|split|cut|all|show|verify ... (`netd partition --help`)",
            network.as_deref().unwrap_or_default()
        ),
        Some(verb @ ("show" | "verify")) => {
            if let Some(extra) = rest.get(1) {
                bail!("`{verb}` takes no arguments but --json, yet got {extra:?}");
            }
            if verb == "show" {
                Action::Show
            } else {
                Action::Verify
            }
        }
        Some("schedule") if rest.len() == 2 && !rest[1].starts_with('-') => {
            Action::Set(Partition::from_words(&schedule_file(&rest[1])?)?)
        }
        Some(_) => Action::Set(Partition::from_words(&rest).map_err(|err| match &network {
            // The network was a guess: say so, in case it was a mistyped verb.
            Some(network) if matches!(err, PartitionError::UnknownVerb { .. }) => {
                anyhow::anyhow!("{err} (after network {network:?})")
            }
            _ => err.into(),
        })?),
    };
    Ok(Invocation {
        network,
        action,
        json,
        socket,
    })
}

/// `schedule FILE`: one step a line (`DURATION POLICY`, as after
/// `schedule` on the command line), `repeat` on a line of its own to
/// repeat them, `#` comments; read into the words of an inline schedule.
fn schedule_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "reading the schedule {path}: {err}; write `schedule FILE` with one `DURATION POLICY` step a line, or the steps inline: `schedule 10s isolate a then 5s heal`"
        )
    })?;
    Ok(schedule_words(&text))
}

fn schedule_words(text: &str) -> Vec<String> {
    let mut words = vec!["schedule".to_owned()];
    let mut steps: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        match line {
            "" => {}
            "repeat" => words.insert(1, "--repeat".to_owned()),
            _ => steps.push(line.split_whitespace().map(str::to_owned).collect()),
        }
    }
    words.extend(steps.join(&"then".to_owned()));
    words
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn print_view(view: &PartitionView) {
    if let Some(us) = view.in_force_after_us {
        println!(
            "in force {:.2} ms after the request arrived",
            us as f64 / 1000.0
        );
    }
    match &view.state {
        None => println!("network {}: fullmesh (nothing cut)", view.network),
        Some(state) => {
            let now = now();
            println!("network {}: {}", view.network, state.describe());
            println!(
                "set {} by {} ({} ago)",
                format_unix_time(state.set_at),
                state.set_by,
                format_duration(now.saturating_sub(state.set_at))
            );
            if let Some(step) = &view.step {
                if step.index < step.count {
                    println!(
                        "step {} of {} in force: {}",
                        step.index + 1,
                        step.count,
                        step.in_force
                    );
                }
                if let (Some(next), Some(in_ms)) = (&step.next, step.next_in_ms) {
                    println!("next, in {:.1} s: {next}", in_ms as f64 / 1000.0);
                }
            }
            match state.expires_at {
                Some(deadline) => println!(
                    "heals {} (in {})",
                    format_unix_time(deadline),
                    format_duration(deadline.saturating_sub(now))
                ),
                None => println!("until healed: `netd partition {} heal`", view.network),
            }
        }
    }
    if let Some(cluster) = &view.cluster {
        println!(
            "spanned: etcd revision {}; spread {}",
            cluster.revision,
            cluster.spread_ms.map_or_else(
                || "(not every node yet)".to_owned(),
                |ms| format!("{ms} ms")
            )
        );
        for (node, applied) in &cluster.nodes {
            println!(
                "  {node}: applied revision {}{}",
                applied.revision,
                if applied.revision == cluster.revision {
                    ""
                } else {
                    " (behind)"
                }
            );
        }
    }
    if let Some(matrix) = &view.matrix {
        print!("{matrix}");
    }
}

fn print_report(report: &VerifyReport) {
    println!(
        "network {}: what arrived, {} datagrams per ordered pair",
        report.network, report.sent_per_pair
    );
    print!("{}", report.matrix);
    println!(". all arrived  ~ some  X none  - itself");
    for pair in &report.pairs {
        if let (Some(expected), Some(tolerance)) = (pair.expected, pair.tolerance) {
            println!(
                "  {} -> {}: {} of {} arrived; the policy means {expected:.0} (± {tolerance:.0}){}",
                pair.from,
                pair.to,
                pair.received,
                pair.sent,
                if pair.ok { "" } else { "  MISMATCH" }
            );
        }
    }
    for pair in &report.pairs {
        if let Some(rtt) = &pair.rtt {
            println!(
                "  {} <-> {}: round trip p50 {:.1} ms ({:.1} to {:.1} ms, {} echoes); the policy means {:.0} ms{}{}",
                pair.from,
                pair.to,
                rtt.p50_ms,
                rtt.min_ms,
                rtt.max_ms,
                rtt.samples,
                rtt.intended_ms,
                if rtt.jitter_ms > 0.0 {
                    format!(" ± {:.0} ms", rtt.jitter_ms)
                } else {
                    String::new()
                },
                if rtt.ok { "" } else { "  MISMATCH" }
            );
        }
    }
    for pair in &report.pairs {
        if let Some(rate) = &pair.rate {
            println!(
                "  {} -> {}: {} delivered of {} offered over {} ms; the policy means {} (± {:.0} %){}",
                pair.from,
                pair.to,
                format_bits(rate.delivered_bits_per_sec),
                format_bits(rate.offered_bits_per_sec),
                rate.window_ms,
                format_bits(rate.intended_bits_per_sec as f64),
                netd::partition::rate::TOLERANCE * 100.0,
                match (rate.ok, rate.unjudged) {
                    (_, true) => "  NOT JUDGED",
                    (true, false) => "",
                    (false, false) => "  MISMATCH",
                }
            );
        }
    }
    for check in &report.published {
        println!(
            "  {} -> {} through {}/{}: {}",
            check.from,
            check.to,
            check.via,
            check.proto,
            match check.reached {
                None => "not probed (the guest's own service holds the port)",
                Some(false) => "held",
                Some(true) => "got through  MISMATCH",
            }
        );
    }
    for note in &report.notes {
        println!("  note: {note}");
    }
    if report.ok {
        println!("verify: OK ({} pairs)", report.pairs.len());
    } else {
        println!(
            "verify: {} of {} pairs contradict the partition:",
            report.mismatches.len(),
            report.pairs.len()
        );
        for mismatch in &report.mismatches {
            println!("  {mismatch}");
        }
    }
}

#[cfg(test)]
mod tests {
    use netd::partition::Verb;

    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn parsed(line: &str) -> Invocation {
        parse(&words(line)).unwrap_or_else(|err| panic!("{line:?}: {err:#}"))
    }

    fn refused(line: &str) -> String {
        match parse(&words(line)) {
            Ok(invocation) => panic!("{line:?} should be refused, got {invocation:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn the_first_word_is_the_network_unless_it_is_a_verb() {
        assert_eq!(parsed("web show").network.as_deref(), Some("web"));
        assert_eq!(parsed("show").network, None);
        assert_eq!(parsed("isolate b").network, None);
        assert_eq!(parsed("web isolate b").network.as_deref(), Some("web"));
        assert_eq!(
            parsed("web heal").action,
            Action::Set(Partition::new(Verb::FullMesh))
        );
    }

    #[test]
    fn groups_keep_their_separators() {
        assert_eq!(
            parsed("web disjoint a b -- c d").action,
            Action::Set(Partition::new(Verb::Disjoint {
                groups: vec![words("a b"), words("c d")],
            }))
        );
    }

    #[test]
    fn json_and_socket_may_come_anywhere() {
        let invocation = parsed("--json web split a -- b --socket /tmp/s --loss 5");
        assert!(invocation.json);
        assert_eq!(invocation.socket, Some(PathBuf::from("/tmp/s")));
        let Action::Set(partition) = invocation.action else {
            panic!("a partition");
        };
        assert_eq!(partition.first.loss_percent, Some(5));
        assert_eq!(
            parsed("verify --socket=/x").socket,
            Some(PathBuf::from("/x"))
        );
    }

    #[test]
    fn show_and_verify_take_nothing_else() {
        assert_eq!(parsed("web verify --json").action, Action::Verify);
        assert!(refused("web show a").contains("`show` takes no arguments"));
    }

    #[test]
    fn a_schedule_file_is_read_into_steps() {
        let words = schedule_words("# a flaky link\n10s isolate a\n\nrepeat\n5s heal  # rest\n");
        assert_eq!(
            words.join(" "),
            "schedule --repeat 10s isolate a then 5s heal"
        );
        let err = refused("web schedule /nonexistent/steps");
        assert!(
            err.contains("reading the schedule /nonexistent/steps"),
            "{err}"
        );
        assert!(matches!(
            parsed("web schedule 10s isolate a then 5s heal").action,
            Action::Set(_)
        ));
    }

    #[test]
    fn help_is_found_anywhere() {
        assert_eq!(parsed("web isolate --help").action, Action::Help);
    }

    #[test]
    fn missing_verbs_and_bad_words_are_explained() {
        assert!(refused("web").contains("say what to do with network web"));
        assert!(refused("--json").contains("say what to do"));
        assert!(refused("web shuffle a").contains("unknown partition verb \"shuffle\""));
        assert!(refused("isolat a").contains("verb \"a\": use one of"));
        assert!(refused("isolat a").ends_with("(after network \"isolat\")"));
        assert!(refused("web isolate a --loss 0").contains("--loss 0 is out of range"));
    }
}
