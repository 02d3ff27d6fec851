//! Network partitions and faults ("netd partition"): what a request means,
//! compiled to the fault classes a dataplane enforces (`PartitionRules`, in
//! guest slots). Pure: the daemon applies the rules to the whole network in
//! one step, persists the request as given (with the guests' slots), and
//! heals timed partitions.
//!
//! A request is one or more clauses (`isolate a + all --delay 100ms`), each a
//! verb that selects ordered pairs of guests (vagga's `fullmesh`, `isolate`,
//! `disjoint`, `split`, the one-way `cut` Jepsen and Chaos Mesh users ask
//! for, and `all`), optionally narrowed to a port or protocol, and what
//! happens to the selected packets: cut (the default), a loss share, or
//! impairments (`fault`). Every clause that selects a packet applies to it.
//!
//! Here: the verbs and clauses, what they compile to, what is persisted.
//! `rules`: what they compile to, the dataplanes' input. `fault`: the
//! impairments and traffic selectors. `words`: the CLI's words for them
//! (and durations), both ways. `matrix`: the matrices `show` and `verify`
//! print, and `verify`'s judgement.

pub mod fault;
mod matrix;
pub mod measure;
mod presets;
pub mod rate;
pub mod rtt;
mod rules;
pub mod schedule;
#[cfg(test)]
pub(crate) mod test_support;
pub mod through_ports;
mod words;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::{
    fault::{Impairments, L4, Traffic},
    matrix::{End, Intent, PairCheck, VerifyReport, intent, judge, render_rules},
    rules::{FaultClass, PartitionRules},
    words::{format_duration, format_unix_time, parse_duration, parse_loss},
};

/// A cut drops every affected packet unless `--loss` says otherwise.
pub const DEFAULT_LOSS_PERCENT: u8 = 100;

/// Clauses one policy may hold: the eBPF policy has this many fault classes.
pub const MAX_CLAUSES: usize = netd_common::partition::MAX_FAULTS;

/// The longest timed partition: 30 days. Longer ones are forgotten tests;
/// a partition without `--for` lasts until it is healed.
pub const MAX_DURATION_SECS: u64 = 30 * DAY;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The verbs, repeated by errors that do not know which one was meant.
const VERBS: &str = "fullmesh (or heal), isolate, disjoint, split, cut, all, \
bridge, majorities-ring, minority-third, random-halves";

/// Which ordered pairs of guests a clause selects, as the user said it.
/// Guests are named, not numbered: names are what `show` prints back, and
/// what a test suite knows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "verb", rename_all = "lowercase")]
pub enum Verb {
    /// Nothing is cut: every guest talks to every guest (heals the network).
    #[serde(alias = "heal")]
    FullMesh,
    /// Each listed guest is cut from every other guest, both ways (from each
    /// other too), and from the outside unless `keep_outside`.
    Isolate {
        guests: Vec<String>,
        #[serde(default)]
        keep_outside: bool,
    },
    /// Every guest is in exactly one group; groups are cut from each other,
    /// both ways. The outside is untouched.
    Disjoint { groups: Vec<Vec<String>> },
    /// Groups may overlap: two guests talk iff some group holds both (a guest
    /// in two groups bridges them). Guests in no group are cut from every
    /// other guest. The outside is untouched.
    Split { groups: Vec<Vec<String>> },
    /// One way only: packets from each `from` guest to each `to` guest are
    /// cut; the reverse direction too with `both_ways`; everything else is
    /// untouched.
    Cut {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        both_ways: bool,
    },
    /// Every ordered pair of guests (the outside untouched): with
    /// impairments, the whole network's links (`all --delay 50ms`).
    All,
    /// Jepsen's presets (`presets`), over the guests in name order.
    /// Two halves cut apart but for one guest that talks to both.
    Bridge,
    /// Each guest hears only a majority around it on a ring, its own.
    #[serde(rename = "majorities-ring")]
    MajoritiesRing,
    /// The largest minority under a third cut from the rest.
    #[serde(rename = "minority-third")]
    MinorityThird,
    /// Two random halves cut apart; the seed (picked by the daemon when
    /// not given) is stored and printed, so the split can be replayed.
    #[serde(rename = "random-halves")]
    RandomHalves {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
    },
    /// Steps of policies in turn, each for its time, once or over and over
    /// (`schedule`); stands alone.
    Schedule {
        steps: Vec<schedule::Step>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repeat: bool,
    },
}

impl Verb {
    /// The verb's CLI word.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::FullMesh => "fullmesh",
            Verb::Isolate { .. } => "isolate",
            Verb::Disjoint { .. } => "disjoint",
            Verb::Split { .. } => "split",
            Verb::Cut { .. } => "cut",
            Verb::All => "all",
            Verb::Bridge => "bridge",
            Verb::MajoritiesRing => "majorities-ring",
            Verb::MinorityThird => "minority-third",
            Verb::RandomHalves { .. } => "random-halves",
            Verb::Schedule { .. } => "schedule",
        }
    }

    /// The fewest guests the verb needs to cut anything.
    fn min_guests(&self) -> usize {
        match self {
            Verb::Bridge | Verb::MajoritiesRing => 3,
            Verb::MinorityThird => 4,
            Verb::RandomHalves { .. } => 2,
            _ => 0,
        }
    }
}

/// One clause: the pairs its verb selects, which of their packets
/// (`traffic`), and what happens to those: cut when no loss share and no
/// impairment is given; else only the given share lost and the given
/// impairments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    #[serde(flatten)]
    pub verb: Verb,
    /// The share of selected packets dropped, 1-100; None: 100 (all of
    /// them) without impairments, none with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<u8>,
    #[serde(flatten)]
    pub impair: Impairments,
    #[serde(flatten)]
    pub traffic: Traffic,
}

impl Fault {
    /// A clause that cuts what `verb` selects.
    pub fn new(verb: Verb) -> Fault {
        Fault {
            verb,
            loss_percent: None,
            impair: Impairments::default(),
            traffic: Traffic::default(),
        }
    }

    /// Whether it says what happens to packets (loss, impairments) or
    /// which (a port, a protocol), beyond its verb.
    pub fn changes_anything(&self) -> bool {
        self.loss_percent.is_some() || !self.impair.is_empty() || !self.traffic.is_all()
    }

    /// The share of selected packets it drops, 0-100.
    pub fn effective_loss_percent(&self) -> u8 {
        match self.loss_percent {
            Some(loss) => loss,
            None if self.impair.is_empty() => DEFAULT_LOSS_PERCENT,
            None => 0,
        }
    }

    fn check(&self) -> Result<(), PartitionError> {
        let verb = self.verb.name();
        match &self.verb {
            Verb::FullMesh => {
                let mut options = self.impair.words();
                options.extend(self.traffic.words());
                if let Some(loss) = self.loss_percent {
                    options.insert(0, format!("--loss {loss}"));
                }
                if let Some(option) = options.into_iter().next() {
                    return Err(PartitionError::OptionOnFullMesh { option });
                }
            }
            Verb::Isolate { guests, .. } => {
                if guests.is_empty() {
                    return Err(PartitionError::NoGuests {
                        verb,
                        example: "isolate a b",
                    });
                }
                check_unique(guests, || "`isolate`".to_owned())?;
            }
            Verb::Disjoint { groups } | Verb::Split { groups } => {
                check_groups(verb, groups)?;
                if let Verb::Disjoint { groups } = &self.verb {
                    check_disjoint(groups)?;
                }
            }
            Verb::Cut { from, to, .. } => {
                for (side, list) in [("--from", from), ("--to", to)] {
                    if list.is_empty() {
                        return Err(PartitionError::MissingSide { side });
                    }
                    check_unique(list, || side.to_owned())?;
                }
                if let Some(guest) = from.iter().find(|guest| to.contains(guest)) {
                    return Err(PartitionError::FromAndTo {
                        guest: guest.clone(),
                    });
                }
            }
            Verb::All
            | Verb::Bridge
            | Verb::MajoritiesRing
            | Verb::MinorityThird
            | Verb::RandomHalves { .. }
            | Verb::Schedule { .. } => {}
        }
        if let Some(loss) = self.loss_percent
            && !(1..=100).contains(&loss)
        {
            return Err(PartitionError::LossOutOfRange {
                text: loss.to_string(),
            });
        }
        self.impair.check()?;
        self.traffic.check()
    }
}

/// A partition as asked for: one or more clauses, and how long it lasts.
/// It is both the API's request body and what the daemon stores for `show`.
/// The first clause's fields sit at the top (`{"verb": "isolate", ...}`, as
/// before there were several), the others in `and`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    #[serde(flatten)]
    pub first: Fault,
    /// More clauses of the same policy, applied together with the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub and: Vec<Fault>,
    /// Seconds until the network heals by itself; None: until healed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// In force for this many seconds, then healed as long, over and over
    /// (`--flap`); None: in force throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_secs: Option<u64>,
}

impl Partition {
    /// A partition of one clause that cuts what `verb` selects.
    pub fn new(verb: Verb) -> Partition {
        Partition {
            first: Fault::new(verb),
            and: Vec::new(),
            duration_secs: None,
            flap_secs: None,
        }
    }

    /// Every clause, the first first.
    pub fn clauses(&self) -> impl Iterator<Item = &Fault> {
        std::iter::once(&self.first).chain(&self.and)
    }

    /// Gives every `random-halves` without a seed one, from `entropy`, so
    /// that what is stored (and printed) replays the same split.
    pub fn fill_seeds(&mut self, entropy: u64) {
        let clauses = std::iter::once(&mut self.first).chain(&mut self.and);
        for (index, fault) in clauses.enumerate() {
            if let Verb::RandomHalves { seed: seed @ None } = &mut fault.verb {
                *seed = Some(entropy.wrapping_add(index as u64) % 1_000_000_000);
            }
        }
    }

    /// Whether it heals the network (`fullmesh`).
    pub fn heals(&self) -> bool {
        matches!(self.first.verb, Verb::FullMesh)
    }

    /// Checks everything that does not depend on the network's guests: the
    /// verbs name guests where they must, no list names one twice, a
    /// disjoint partition puts no guest in two groups, the options fit the
    /// verbs and their values their ranges, `fullmesh` stands alone.
    pub fn check(&self) -> Result<(), PartitionError> {
        if self.clauses().count() > MAX_CLAUSES {
            return Err(PartitionError::TooManyClauses {
                count: self.clauses().count(),
            });
        }
        if self.heals() && !self.and.is_empty() {
            return Err(PartitionError::FullMeshWithOthers);
        }
        if self.and.iter().any(|fault| fault.verb == Verb::FullMesh) {
            return Err(PartitionError::FullMeshWithOthers);
        }
        for fault in self.clauses() {
            fault.check()?;
        }
        self.check_timeline()?;
        match self.duration_secs {
            Some(secs) if self.heals() => Err(PartitionError::OptionOnFullMesh {
                option: format!("--for {}", format_duration(secs)),
            }),
            Some(0) => Err(PartitionError::DurationTooShort),
            Some(secs) if secs > MAX_DURATION_SECS => Err(PartitionError::DurationTooLong {
                text: format_duration(secs),
            }),
            _ => Ok(()),
        }
    }
}

fn check_unique(names: &[String], place: impl Fn() -> String) -> Result<(), PartitionError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(PartitionError::Duplicate {
                guest: name.clone(),
                place: place(),
            });
        }
    }
    Ok(())
}

fn check_groups(verb: &'static str, groups: &[Vec<String>]) -> Result<(), PartitionError> {
    if groups.is_empty() {
        return Err(PartitionError::NoGuests {
            verb,
            example: if verb == "split" {
                "split a b -- b c"
            } else {
                "disjoint a b -- c d"
            },
        });
    }
    for (index, group) in groups.iter().enumerate() {
        if group.is_empty() {
            return Err(PartitionError::EmptyGroup {
                verb,
                index: index + 1,
            });
        }
        check_unique(group, || {
            format!("group {} ({})", index + 1, group.join(" "))
        })?;
    }
    Ok(())
}

/// No guest in two groups, and at least two groups (one cuts nothing).
fn check_disjoint(groups: &[Vec<String>]) -> Result<(), PartitionError> {
    let mut group_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, group) in groups.iter().enumerate() {
        for guest in group {
            if let Some(first) = group_of.insert(guest, index) {
                return Err(PartitionError::InTwoGroups {
                    guest: guest.clone(),
                    first: first + 1,
                    first_members: groups[first].join(" "),
                    second: index + 1,
                    second_members: group.join(" "),
                });
            }
        }
    }
    if groups.len() < 2 {
        return Err(PartitionError::OneGroup);
    }
    Ok(())
}

/// Compiles a partition of `network`, whose guests are `guests` (name ->
/// slot), into the fault classes the dataplane enforces, one per clause.
/// Nothing is applied: an error here leaves the network as it was.
pub fn compile(
    network: &str,
    partition: &Partition,
    guests: &BTreeMap<String, u8>,
) -> Result<PartitionRules, PartitionError> {
    partition.check()?;
    if let Verb::Schedule { steps, .. } = &partition.first.verb {
        // Every step is checked now, not when its turn comes.
        for step in steps {
            compile(network, &step.partition, guests)?;
        }
    }
    compile_at(network, partition, guests, 0)
}

/// What a policy compiles to `elapsed_ms` after it was set: the step in
/// force of a flap or a schedule, or the policy itself.
pub fn compile_at(
    network: &str,
    partition: &Partition,
    guests: &BTreeMap<String, u8>,
    elapsed_ms: u64,
) -> Result<PartitionRules, PartitionError> {
    if let Some(step) = partition.step_at(elapsed_ms) {
        return compile_static(network, &step.partition, guests);
    }
    compile_static(network, partition, guests)
}

/// A policy that does not vary, compiled.
fn compile_static(
    network: &str,
    partition: &Partition,
    guests: &BTreeMap<String, u8>,
) -> Result<PartitionRules, PartitionError> {
    partition.check()?;
    if partition.heals() {
        return Ok(PartitionRules::default());
    }
    let faults = partition
        .clauses()
        .map(|fault| {
            let (pairs, outside) = select(network, &fault.verb, guests)?;
            Ok(FaultClass {
                pairs,
                outside,
                traffic: fault.traffic,
                loss_percent: fault.effective_loss_percent(),
                impair: fault.impair,
            })
        })
        .collect::<Result<_, PartitionError>>()?;
    Ok(PartitionRules { faults })
}

/// The directed pairs (from slot, to slot) a verb selects, and the guests
/// whose traffic with the outside it selects.
type Selection = (BTreeSet<(u8, u8)>, BTreeSet<u8>);

/// The directed pairs (from slot, to slot) a verb selects, and the guests it
/// cuts from the outside.
fn select(
    network: &str,
    verb: &Verb,
    guests: &BTreeMap<String, u8>,
) -> Result<Selection, PartitionError> {
    let slot = |name: &String| {
        guests
            .get(name)
            .copied()
            .ok_or_else(|| PartitionError::UnknownGuest {
                network: network.to_owned(),
                guest: name.clone(),
            })
    };
    let slots = |names: &[String]| names.iter().map(slot).collect::<Result<Vec<u8>, _>>();
    let all: Vec<u8> = guests.values().copied().collect();
    let mut pairs = BTreeSet::new();
    let mut outside = BTreeSet::new();
    match verb {
        Verb::FullMesh => {}
        Verb::Isolate {
            guests: listed,
            keep_outside,
        } => {
            let listed = slots(listed)?;
            for &isolated in &listed {
                for &other in all.iter().filter(|&&other| other != isolated) {
                    pairs.insert((isolated, other));
                    pairs.insert((other, isolated));
                }
            }
            if !keep_outside {
                outside.extend(listed);
            }
        }
        Verb::Disjoint { groups } => {
            let mut group_of: BTreeMap<u8, usize> = BTreeMap::new();
            for (index, group) in groups.iter().enumerate() {
                for guest in slots(group)? {
                    group_of.insert(guest, index);
                }
            }
            if let Some((name, _)) = guests.iter().find(|(_, slot)| !group_of.contains_key(slot)) {
                return Err(PartitionError::InNoGroup {
                    guest: name.clone(),
                });
            }
            for (&a, group_a) in &group_of {
                for (&b, group_b) in &group_of {
                    if group_a != group_b {
                        pairs.insert((a, b));
                    }
                }
            }
        }
        Verb::Split { groups } => {
            let groups: Vec<BTreeSet<u8>> = groups
                .iter()
                .map(|group| Ok(slots(group)?.into_iter().collect()))
                .collect::<Result<_, PartitionError>>()?;
            for &a in &all {
                for &b in all.iter().filter(|&&b| b != a) {
                    let together = groups
                        .iter()
                        .any(|group| group.contains(&a) && group.contains(&b));
                    if !together {
                        pairs.insert((a, b));
                    }
                }
            }
        }
        Verb::Cut {
            from,
            to,
            both_ways,
        } => {
            let to = slots(to)?;
            for a in slots(from)? {
                for &b in &to {
                    pairs.insert((a, b));
                    if *both_ways {
                        pairs.insert((b, a));
                    }
                }
            }
        }
        Verb::All => {
            for &a in &all {
                pairs.extend(all.iter().filter(|&&b| b != a).map(|&b| (a, b)));
            }
        }
        Verb::Bridge | Verb::MajoritiesRing | Verb::MinorityThird | Verb::RandomHalves { .. } => {
            if all.len() < verb.min_guests() {
                return Err(PartitionError::TooFewGuests {
                    verb: verb.name(),
                    needs: verb.min_guests(),
                    has: all.len(),
                });
            }
            pairs = match verb {
                Verb::Bridge => presets::bridge(&all),
                Verb::MajoritiesRing => presets::majorities_ring(&all),
                Verb::MinorityThird => presets::minority_third(&all),
                Verb::RandomHalves { seed } => {
                    presets::random_halves(&all, seed.ok_or(PartitionError::NoSeed)?)
                }
                _ => unreachable!("a preset"),
            };
        }
        Verb::Schedule { .. } => unreachable!("a schedule is compiled step by step"),
    }
    Ok((pairs, outside))
}

/// A network's partition as the daemon persists it: what was asked, the
/// slots its guests held then (it is compiled against them whenever it is
/// applied), and when and by whom it was set. The deadline is stored, not
/// a timer, so a timed heal survives a daemon restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition as given, for `show`.
    pub partition: Partition,
    /// Each guest's slot when it was set, by name. Empty in states written
    /// before slots were stored: then the network's guests' slots serve.
    #[serde(default)]
    pub slots: BTreeMap<String, u8>,
    /// Unix seconds.
    pub set_at: u64,
    /// Unix milliseconds, for the steps of a flap or schedule (0 in states
    /// from before: `set_at` serves).
    #[serde(default)]
    pub set_at_ms: u64,
    /// The step of a flap or schedule the dataplane holds (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Unix seconds at which the daemon heals it; None: until healed.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// "host", or "guest NAME" when set from inside a guest.
    pub set_by: String,
}

impl PartitionState {
    /// The CLI words that set it again (after `netd partition NETWORK`).
    pub fn describe(&self) -> String {
        self.partition.describe()
    }

    /// Whether its timed heal is due at `now` (unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|deadline| deadline <= now)
    }

    /// The slots it is compiled against: its own, or (a state from before
    /// they were stored) `current`.
    pub fn slots_or<'a>(&'a self, current: &'a BTreeMap<String, u8>) -> &'a BTreeMap<String, u8> {
        if self.slots.is_empty() {
            current
        } else {
            &self.slots
        }
    }

    /// What the dataplane enforces for it at `now_ms` (unix milliseconds),
    /// compiled against its slots.
    pub fn compile(
        &self,
        network: &str,
        current: &BTreeMap<String, u8>,
        now_ms: u64,
    ) -> Result<PartitionRules, PartitionError> {
        compile_at(
            network,
            &self.partition,
            self.slots_or(current),
            self.elapsed_ms(now_ms),
        )
    }

    /// Milliseconds since it was set.
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        let set = if self.set_at_ms == 0 {
            self.set_at * 1_000
        } else {
            self.set_at_ms
        };
        now_ms.saturating_sub(set)
    }

    /// The step of a flap or schedule in force at `now_ms`; None for a
    /// policy that stays as it is.
    pub fn step_at(&self, now_ms: u64) -> Option<schedule::StepAt> {
        self.partition.step_at(self.elapsed_ms(now_ms))
    }
}

/// Why a partition cannot be set.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartitionError {
    #[error("network {network} has no guest named {guest:?}: `netd guest ls {network}` lists them")]
    UnknownGuest { network: String, guest: String },
    #[error(
        "{count} clauses in one policy: at most {MAX_CLAUSES} (join clauses with ` + `, e.g. `isolate a + all --delay 50ms`)"
    )]
    TooManyClauses { count: usize },
    #[error(
        "`fullmesh` (or `heal`) stands alone: it heals the whole network; give the other clauses without it"
    )]
    FullMeshWithOthers,
    #[error(
        "a ` + ` with no clause after it: write `VERB ... + VERB ...`, e.g. `isolate a + all --delay 50ms`"
    )]
    EmptyClause,
    #[error("{option} is given twice: give it once{}", if *option == "--for" { " (it applies to the whole policy)" } else { " per clause" })]
    OptionTwice { option: String },
    #[error("bad {option} {text:?}: write a whole number with unit us, ms or s, e.g. --delay 50ms")]
    BadDelay { option: &'static str, text: String },
    #[error("delay {text} is out of range: give from 1ms to at most 10s")]
    DelayOutOfRange { text: String },
    #[error("{option} needs --delay: it varies the delay, e.g. `--delay 50ms --jitter 10ms`")]
    NeedsDelay { option: &'static str },
    #[error(
        "--jitter {jitter} is more than --delay {delay}: a packet cannot leave before it was sent; give at most the delay"
    )]
    JitterOverDelay { jitter: String, delay: String },
    #[error(
        "--correlation needs --jitter: it says how much each drawn jitter follows the last, e.g. `--delay 50ms --jitter 10ms --correlation 25`"
    )]
    CorrelationWithoutJitter,
    #[error(
        "{option} {text:?} is not a percentage: give a whole number from {low} to 100, e.g. {option} 5"
    )]
    BadPercent {
        option: &'static str,
        text: String,
        low: u8,
    },
    #[error("{option} {text} is out of range: give a whole percentage from {low} to 100")]
    PercentOutOfRange {
        option: &'static str,
        text: String,
        low: u8,
    },
    #[error(
        "bad --rate {text:?}: write a number and a unit of bits per second, bit, kbit, mbit or gbit, e.g. --rate 1mbit or --rate 500kbit"
    )]
    BadRate { text: String },
    #[error("--rate {text} is out of range: give from 8kbit to 100gbit")]
    RateOutOfRange { text: String },
    #[error(
        "unknown protocol {text:?}: give tcp, udp or icmp, e.g. --proto udp or --port 5432/tcp"
    )]
    BadProto { text: String },
    #[error(
        "bad --port {text:?}: give a port from 1 to 65535, optionally with a protocol, e.g. --port 5432/tcp"
    )]
    BadPort { text: String },
    #[error(
        "--port {port} with ICMP: ICMP has no ports; give --port {port}/tcp or /udp, or --proto icmp alone"
    )]
    PortOnIcmp { port: u16 },
    #[error(
        "one protocol per clause, but got {first} and {second}: write two clauses joined by ` + ` for both"
    )]
    TwoProtos {
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "`{verb}` needs at least {needs} guests to cut anything, and the network has {has}: add guests, or choose another verb"
    )]
    TooFewGuests {
        verb: &'static str,
        needs: usize,
        has: usize,
    },
    #[error(
        "`random-halves` has no seed: give one with --seed N (the daemon picks one when it is left out)"
    )]
    NoSeed,
    #[error("bad --seed {text:?}: give a whole number, e.g. --seed 42")]
    BadSeed { text: String },
    #[error("--flap {text} is out of range: give a period from 1s to 1d")]
    FlapOutOfRange { text: String },
    #[error(
        "`schedule` stands alone: its steps hold the clauses and options; write `schedule [--repeat] 10s isolate a then 5s heal`"
    )]
    ScheduleNotAlone,
    #[error(
        "a schedule needs 1 to 32 steps, but got {count}: write `schedule [--repeat] 10s isolate a then 5s heal`"
    )]
    StepCount { count: usize },
    #[error("step {step} of the schedule must start with its duration, e.g. `10s isolate a`")]
    StepNoDuration { step: usize },
    #[error("step {step} of the schedule lasts 0s or more than 30 days: give 1s to 30d")]
    StepDuration { step: usize },
    #[error(
        "step {step} may not vary or last by itself (no --flap, --for or schedule inside a schedule): its duration is the step's"
    )]
    StepVaries { step: usize },
    #[error("a `then` with no step after it: write `schedule 10s isolate a then 5s heal`")]
    EmptyStep,
    #[error("no verb given: say what to do, one of {VERBS}, or show or verify")]
    NoVerb,
    #[error("unknown partition verb {word:?}: use one of {VERBS}, or show or verify")]
    UnknownVerb { word: String },
    #[error("`{verb}` names no guest: list them, e.g. `{example}`")]
    NoGuests {
        verb: &'static str,
        example: &'static str,
    },
    #[error(
        "group {index} of `{verb}` is empty: separate groups with one `--`, e.g. `{verb} a b -- c d`"
    )]
    EmptyGroup { verb: &'static str, index: usize },
    #[error(
        "`disjoint` needs at least two groups, separated by `--` (e.g. `disjoint a b -- c d`): one group cuts nothing (that is `fullmesh`)"
    )]
    OneGroup,
    #[error("guest {guest} is listed twice in {place}: list each guest once")]
    Duplicate { guest: String, place: String },
    #[error(
        "guest {guest} is in two groups: group {first} ({first_members}) and group {second} ({second_members}): \
         every guest of a disjoint partition is in exactly one group; use `split` for groups that overlap"
    )]
    InTwoGroups {
        guest: String,
        first: usize,
        first_members: String,
        second: usize,
        second_members: String,
    },
    #[error(
        "guest {guest} is in no group: every guest of a disjoint partition must be listed once; use `split` to leave guests out"
    )]
    InNoGroup { guest: String },
    #[error(
        "`cut` needs {side}: e.g. `cut --from a,b --to c` cuts a->c and b->c (and nothing the other way)"
    )]
    MissingSide { side: &'static str },
    #[error(
        "guest {guest} is both in --from and in --to: a guest is never cut from itself; list it on one side"
    )]
    FromAndTo { guest: String },
    #[error(
        "{option} does not apply to fullmesh, which cuts nothing: give it with a verb that cuts (isolate, disjoint, split, cut)"
    )]
    OptionOnFullMesh { option: String },
    #[error(
        "--loss {text:?} is not a percentage: give a whole number from 1 to 100, e.g. --loss 30"
    )]
    BadLoss { text: String },
    #[error(
        "--loss {text} is out of range: give a percentage from 1 to 100 (100, the default, drops every packet)"
    )]
    LossOutOfRange { text: String },
    #[error(
        "bad duration {text:?}: write numbers with units s, m, h or d, largest first, e.g. 30s, 5m, 1h30m"
    )]
    BadDuration { text: String },
    #[error("duration {text:?} is under a second: netd heals to the second; give at least 1s")]
    SubSecond { text: String },
    #[error("--for must last at least 1s: to heal now, use `fullmesh`")]
    DurationTooShort,
    #[error(
        "--for {text} is longer than 30 days: give at most 30d (720h), or leave --for out to partition until healed"
    )]
    DurationTooLong { text: String },
    #[error("{option:?} needs a value, e.g. `--loss 30`, `--for 5m`, `--from a,b`")]
    MissingValue { option: String },
    #[error("unknown option {option:?} for `{verb}`: {}", full_grammar(verb))]
    UnknownOption { option: String, verb: &'static str },
    #[error(
        "`{verb}` takes no guest names here, but got {word:?}: {}",
        options_of(verb)
    )]
    UnexpectedWord { word: String, verb: &'static str },
    #[error(
        "`--` separates the groups of `disjoint` and `split`, not `{verb}`'s guests: {}",
        options_of(verb)
    )]
    SeparatorOutsideGroups { verb: &'static str },
}

/// A verb's grammar, for errors about its words.
fn options_of(verb: &str) -> &'static str {
    match verb {
        "isolate" => "write `isolate GUEST... [--keep-outside] [FAULT OPTIONS] [--for DURATION]`",
        "disjoint" => "write `disjoint A B -- C D [-- ...] [FAULT OPTIONS] [--for DURATION]`",
        "split" => "write `split A B -- B C [-- ...] [FAULT OPTIONS] [--for DURATION]`",
        "cut" => "write `cut --from A,B --to C,D [--both-ways] [FAULT OPTIONS] [--for DURATION]`",
        "all" => "write `all [FAULT OPTIONS] [--for DURATION]`",
        "bridge" | "majorities-ring" | "minority-third" => {
            "write the preset alone: `bridge`, `majorities-ring` or `minority-third` [FAULT OPTIONS] [--for DURATION]"
        }
        "random-halves" => "write `random-halves [--seed N] [FAULT OPTIONS] [--for DURATION]`",
        _ => "write `fullmesh` (or `heal`) alone",
    }
}

/// The options every verb but `fullmesh` takes, for errors about them.
pub const FAULT_OPTIONS: &str = "--loss PERCENT, --delay TIME [--jitter TIME [--correlation PERCENT]], \
--duplicate PERCENT, --corrupt PERCENT, --rate RATE, --port N[/tcp|udp], --proto tcp|udp|icmp";

/// A verb's grammar with the fault options spelled out.
fn full_grammar(verb: &str) -> String {
    match verb {
        "fullmesh" => options_of(verb).to_owned(),
        _ => format!("{}; FAULT OPTIONS: {FAULT_OPTIONS}", options_of(verb)),
    }
}
#[cfg(test)]
mod tests {
    use super::{test_support::*, *};

    // --- semantics ---

    #[test]
    fn fullmesh_and_heal_cut_nothing() {
        for line in ["fullmesh", "heal"] {
            assert_eq!(compiled(line, "a b c"), PartitionRules::default());
            assert!(compiled(line, "a b c").is_full_mesh());
        }
        assert_eq!(parse("heal"), Partition::new(Verb::FullMesh));
    }

    #[test]
    fn isolate_cuts_the_guest_from_everyone_and_the_outside() {
        let rules = compiled("isolate a", "a b c");
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2)]));
        assert_eq!(rules.outside_cut(), BTreeSet::from([0]));
        assert_eq!(rules.loss_percent(), 100);
    }

    #[test]
    fn isolated_guests_are_cut_from_each_other_too() {
        let rules = compiled("isolate a b", "a b c");
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2), (1, 2)]));
        assert_eq!(rules.outside_cut(), BTreeSet::from([0, 1]));
    }

    #[test]
    fn keep_outside_leaves_the_outside_alone() {
        let rules = compiled("isolate a --keep-outside", "a b c");
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2)]));
        assert!(rules.outside_cut().is_empty());
    }

    #[test]
    fn disjoint_cuts_every_pair_across_groups_both_ways() {
        let rules = compiled("disjoint a b -- c e", "a b c e");
        assert_eq!(rules.cut(), both_ways(&[(0, 2), (0, 9), (1, 2), (1, 9)]));
        assert!(rules.outside_cut().is_empty());
    }

    #[test]
    fn disjoint_with_three_groups() {
        let rules = compiled("disjoint a -- b -- c", "a b c");
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2), (1, 2)]));
    }

    #[test]
    fn disjoint_must_list_every_guest() {
        let err = compile_err("disjoint a b -- c", "a b c e");
        assert_eq!(err, PartitionError::InNoGroup { guest: "e".into() });
        assert_eq!(
            err.to_string(),
            "guest e is in no group: every guest of a disjoint partition must be listed once; \
             use `split` to leave guests out"
        );
    }

    #[test]
    fn disjoint_refuses_a_guest_in_two_groups() {
        let err = compile_err("disjoint a b -- b c", "a b c");
        assert_eq!(
            err.to_string(),
            "guest b is in two groups: group 1 (a b) and group 2 (b c): every guest of a \
             disjoint partition is in exactly one group; use `split` for groups that overlap"
        );
    }

    #[test]
    fn disjoint_needs_two_groups() {
        let err = compile_err("disjoint a b c", "a b c");
        assert_eq!(err, PartitionError::OneGroup);
        assert_message(&err, &["at least two groups", "`fullmesh`"]);
    }

    #[test]
    fn split_groups_may_overlap_and_a_shared_guest_bridges_them() {
        // b is in both groups: a-b and b-c talk, a-c do not.
        let rules = compiled("split a b -- b c", "a b c");
        assert_eq!(rules.cut(), both_ways(&[(0, 2)]));
        assert!(rules.outside_cut().is_empty());
    }

    #[test]
    fn split_cuts_unlisted_guests_from_every_guest() {
        let rules = compiled("split a b", "a b c e");
        assert_eq!(
            rules.cut(),
            both_ways(&[(0, 2), (0, 9), (1, 2), (1, 9), (2, 9)])
        );
        assert!(rules.outside_cut().is_empty());
    }

    #[test]
    fn split_without_overlap_is_disjoint_over_the_listed_guests() {
        assert_eq!(
            compiled("split a b -- c e", "a b c e"),
            compiled("disjoint a b -- c e", "a b c e")
        );
    }

    #[test]
    fn cut_is_one_way() {
        let rules = compiled("cut --from a,b --to c", "a b c e");
        assert_eq!(rules.cut(), BTreeSet::from([(0, 2), (1, 2)]));
        assert!(rules.outside_cut().is_empty());
    }

    #[test]
    fn cut_lists_may_repeat_the_option() {
        assert_eq!(
            parse("cut --from a --from=b --to c,e"),
            Partition::new(Verb::Cut {
                from: names("a b"),
                to: names("c e"),
                both_ways: false,
            })
        );
    }

    #[test]
    fn cut_refuses_a_guest_on_both_sides() {
        let err = compile_err("cut --from a,b --to b", "a b c");
        assert_eq!(err, PartitionError::FromAndTo { guest: "b".into() });
        assert_message(&err, &["both in --from and in --to", "one side"]);
    }

    #[test]
    fn cut_needs_both_sides() {
        assert_message(&compile_err("cut --from a", "a b"), &["`cut` needs --to"]);
        assert_message(&compile_err("cut --to a", "a b"), &["`cut` needs --from"]);
    }

    #[test]
    fn loss_is_carried_into_the_rules() {
        assert_eq!(compiled("isolate a --loss 30", "a b").loss_percent(), 30);
        assert_eq!(
            compiled("cut --from a --to b --loss=100%", "a b").loss_percent(),
            100
        );
    }

    #[test]
    fn loss_on_fullmesh_is_refused() {
        let err = compile_err("fullmesh --loss 30", "a b");
        assert_message(&err, &["--loss 30 does not apply to fullmesh", "isolate"]);
        let err = compile_err("heal --for 5m", "a b");
        assert_message(&err, &["--for 5m does not apply to fullmesh"]);
    }

    #[test]
    fn loss_must_be_1_to_100() {
        for text in ["0", "101", "1000", "99999999999"] {
            assert_message(
                &parse_err(&format!("isolate a --loss {text}")),
                &[&format!("--loss {text} is out of range"), "1 to 100"],
            );
        }
        for text in ["-5", "abc", "30.5", "%", ""] {
            let err = parse_loss(text).unwrap_err();
            assert_eq!(err, PartitionError::BadLoss { text: text.into() });
        }
        let mut api = Partition::new(Verb::Isolate {
            guests: names("a"),
            keep_outside: false,
        });
        api.first.loss_percent = Some(0);
        assert!(matches!(
            api.check(),
            Err(PartitionError::LossOutOfRange { .. })
        ));
    }

    #[test]
    fn every_name_must_exist_and_the_error_says_where_to_look() {
        for line in [
            "isolate a x",
            "disjoint a -- x",
            "split x",
            "cut --from x --to a",
            "cut --from a --to x",
        ] {
            let err = compile_err(line, "a b");
            assert_eq!(
                err.to_string(),
                "network web has no guest named \"x\": `netd guest ls web` lists them",
                "{line}"
            );
        }
    }

    #[test]
    fn an_unknown_name_is_named_before_a_missing_one() {
        let err = compile_err("disjoint a -- typo", "a b");
        assert!(matches!(err, PartitionError::UnknownGuest { .. }), "{err}");
    }

    #[test]
    fn verbs_that_cut_need_guests() {
        assert_message(
            &compile_err("isolate", "a"),
            &["`isolate` names no guest", "isolate a b"],
        );
        assert_message(
            &compile_err("disjoint", "a"),
            &["`disjoint` names no guest"],
        );
        assert_message(
            &compile_err("split", "a"),
            &["`split` names no guest", "split a b -- b c"],
        );
        assert_message(&compile_err("isolate --loss 30", "a"), &["names no guest"]);
    }

    #[test]
    fn empty_groups_are_refused() {
        for line in [
            "split a -- -- b",
            "split a --",
            "split -- a",
            "disjoint a -- -- b",
        ] {
            assert_message(&compile_err(line, "a b"), &["is empty", "one `--`"]);
        }
        assert_message(
            &compile_err("split a -- -- b", "a b"),
            &["group 2 of `split`"],
        );
    }

    #[test]
    fn a_guest_listed_twice_in_one_list_is_refused() {
        assert_message(
            &compile_err("isolate a a", "a b"),
            &["guest a is listed twice in `isolate`"],
        );
        assert_message(
            &compile_err("split a b a -- c", "a b c"),
            &["guest a is listed twice in group 1 (a b a)"],
        );
        assert_message(
            &compile_err("cut --from a,a --to b", "a b"),
            &["listed twice in --from"],
        );
    }

    #[test]
    fn a_network_with_one_guest_can_be_isolated_from_the_outside_only() {
        let rules = compiled("isolate a", "a");
        assert!(rules.cut().is_empty());
        assert_eq!(rules.outside_cut(), BTreeSet::from([0]));
    }

    // --- JSON ---

    #[test]
    fn partitions_are_tagged_by_verb_in_json() {
        let json = serde_json::to_value(parse("isolate a --loss 30 --for 5m")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "verb": "isolate",
                "guests": ["a"],
                "keep_outside": false,
                "loss_percent": 30,
                "duration_secs": 300,
            })
        );
        let json = serde_json::to_value(parse("disjoint a -- b")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"verb": "disjoint", "groups": [["a"], ["b"]]})
        );
        let json = serde_json::to_value(parse("cut --from a --to b")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"verb": "cut", "from": ["a"], "to": ["b"]})
        );
        assert_eq!(
            serde_json::to_value(parse("heal")).unwrap(),
            serde_json::json!({"verb": "fullmesh"})
        );
    }

    #[test]
    fn json_requests_take_heal_and_defaults() {
        let heal: Partition = serde_json::from_str(r#"{"verb":"heal"}"#).unwrap();
        assert_eq!(heal, Partition::new(Verb::FullMesh));
        let isolate: Partition =
            serde_json::from_str(r#"{"verb":"isolate","guests":["a"]}"#).unwrap();
        assert_eq!(
            isolate,
            Partition::new(Verb::Isolate {
                guests: names("a"),
                keep_outside: false
            })
        );
        assert!(serde_json::from_str::<Partition>(r#"{"verb":"shuffle"}"#).is_err());
    }

    #[test]
    fn states_survive_a_json_round_trip() {
        let state = PartitionState {
            partition: parse("split a b -- b c --loss 50 --for 10m"),
            slots: guests("a b c"),
            set_at: 1_700_000_000,
            set_at_ms: 0,
            step: None,
            expires_at: Some(1_700_000_600),
            set_by: "guest a".into(),
        };
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<PartitionState>(&json).unwrap(),
            state
        );
        assert_eq!(state.describe(), "split a b -- b c --loss 50 --for 10m");
    }

    #[test]
    fn a_state_expires_at_its_deadline() {
        let mut state = PartitionState {
            partition: parse("isolate a"),
            slots: BTreeMap::new(),
            set_at: 100,
            set_at_ms: 0,
            step: None,
            expires_at: Some(160),
            set_by: "host".into(),
        };
        assert!(!state.expired(159));
        assert!(state.expired(160));
        assert!(state.expired(161));
        state.expires_at = None;
        assert!(!state.expired(u64::MAX));
    }

    // --- faults beyond cuts ---

    #[test]
    fn impairments_select_like_cuts_and_do_not_drop() {
        let rules = compiled("all --delay 50ms --jitter 10ms --correlation 25", "a b c");
        assert_eq!(rules.faults.len(), 1);
        let class = &rules.faults[0];
        assert_eq!(
            class.pairs,
            both_ways(&[(0, 1), (0, 2), (1, 2)]),
            "all: every ordered pair"
        );
        assert!(class.outside.is_empty());
        assert_eq!(class.loss_percent, 0, "an impairment alone drops nothing");
        assert_eq!(class.impair.delay_ms, Some(50));
        assert_eq!(class.impair.jitter_ms, Some(10));
        assert_eq!(class.impair.correlation_percent, Some(25));
        assert!(rules.cut().is_empty());

        let rules = compiled("cut --from a --to b --duplicate 5 --loss 10", "a b c");
        let class = &rules.faults[0];
        assert_eq!(class.pairs, BTreeSet::from([(0, 1)]), "one way");
        assert_eq!(
            (class.loss_percent, class.impair.duplicate_percent),
            (10, Some(5))
        );
        let rules = compiled("cut --from a --to b,c --both-ways --corrupt 1", "a b c");
        assert_eq!(
            rules.faults[0].pairs,
            both_ways(&[(0, 1), (0, 2)]),
            "--both-ways adds the reverse"
        );
        let rules = compiled("isolate a --rate 1mbit", "a b");
        assert_eq!(rules.faults[0].impair.rate_bits_per_sec, Some(1_000_000));
        assert_eq!(rules.faults[0].outside, BTreeSet::from([0]));
    }

    #[test]
    fn a_port_or_protocol_narrows_a_clause() {
        let rules = compiled("cut --from a --to b --port 5432/tcp", "a b");
        assert_eq!(
            rules.faults[0].traffic,
            Traffic {
                proto: Some(L4::Tcp),
                port: Some(5432)
            }
        );
        assert_eq!(rules.faults[0].loss_percent, 100, "a port cut");
        assert!(rules.cut().is_empty(), "not a cut of the whole pair");
        let rules = compiled("all --proto icmp --loss 50", "a b");
        assert_eq!(rules.faults[0].traffic.proto, Some(L4::Icmp));
        assert_eq!(
            compile_err("all --port 7/icmp", "a b"),
            PartitionError::PortOnIcmp { port: 7 }
        );
    }

    #[test]
    fn clauses_joined_by_plus_form_one_policy() {
        let partition = parse("isolate a + all --delay 100ms --for 5m");
        assert_eq!(partition.and.len(), 1);
        assert_eq!(partition.duration_secs, Some(300));
        let rules = compiled("isolate a + all --delay 100ms", "a b c");
        assert_eq!(rules.faults.len(), 2);
        assert!(rules.faults[0].is_cut());
        assert_eq!(rules.faults[1].impair.delay_ms, Some(100));
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2)]));
        assert_eq!(
            partition.describe(),
            "isolate a + all --delay 100ms --for 5m",
            "--for is printed once, for the whole policy"
        );
        // Every option of every clause prints back as it reads.
        for line in [
            "cut --from a,b --to c --both-ways --loss 30 --duplicate 2 --corrupt 3 --rate 500kbit --port 53/udp",
            "split a b -- b c --proto tcp + isolate c --keep-outside --delay 2s --jitter 0ms",
        ] {
            assert_eq!(parse(line).describe(), line);
            assert_eq!(parse(&parse(line).describe()), parse(line));
        }
    }

    #[test]
    fn bad_clauses_and_values_are_refused_with_the_fix() {
        for (line, parts) in [
            (
                "isolate a --loss 150",
                &["--loss 150 is out of range", "1 to 100"][..],
            ),
            (
                "all --rate 1xbit",
                &["bad --rate \"1xbit\"", "kbit, mbit or gbit"],
            ),
            (
                "all --rate 1bit",
                &["--rate 1bit is out of range", "8kbit to 100gbit"],
            ),
            ("all --duplicate 150", &["--duplicate 150 is out of range"]),
            ("all --corrupt x", &["--corrupt \"x\" is not a percentage"]),
            ("all --delay 50", &["bad --delay \"50\"", "us, ms or s"]),
            ("all --delay 20s", &["at most 10s"]),
            ("all --jitter 5ms", &["--jitter needs --delay"]),
            (
                "all --delay 5ms --jitter 6ms",
                &["--jitter 6ms is more than --delay 5ms"],
            ),
            (
                "all --delay 5ms --correlation 5",
                &["--correlation needs --jitter"],
            ),
            ("all --port 99999", &["bad --port \"99999\"", "1 to 65535"]),
            (
                "all --port 53/sctp",
                &["unknown protocol \"sctp\"", "tcp, udp or icmp"],
            ),
            (
                "all --port 53/udp --proto tcp",
                &["one protocol per clause"],
            ),
            ("all --delay 5ms --delay 6ms", &["--delay is given twice"]),
            (
                "isolate a --for 1m + all --for 2m",
                &["--for is given twice", "whole policy"],
            ),
            ("isolate a +", &["a ` + ` with no clause after it"]),
            ("+ isolate a", &["a ` + ` with no clause after it"]),
            ("heal + isolate a", &["`fullmesh` (or `heal`) stands alone"]),
            ("isolate a + heal", &["stands alone"]),
            (
                "heal --delay 5ms",
                &["--delay 5ms does not apply to fullmesh"],
            ),
            ("heal --port 80", &["--port 80 does not apply to fullmesh"]),
            (
                "isolate a --both-ways",
                &["unknown option \"--both-ways\" for `isolate`"],
            ),
            ("all a", &["`all` takes no guest names"]),
            (
                "all --warp 9",
                &["unknown option \"--warp\"", "FAULT OPTIONS", "--rate RATE"],
            ),
        ] {
            let err = match Partition::from_words(&words(line)) {
                Ok(partition) => partition.check().unwrap_err(),
                Err(err) => err,
            };
            assert_message(&err, parts);
        }
        let five = "all + all + all + all + all";
        assert_message(
            &parse(five).check().unwrap_err(),
            &["5 clauses", "at most 4"],
        );
    }

    #[test]
    fn api_requests_keep_their_old_shape_and_take_clauses_in_and() {
        let old: Partition = serde_json::from_str(
            r#"{"verb": "isolate", "guests": ["a"], "loss_percent": 30, "duration_secs": 300}"#,
        )
        .unwrap();
        assert_eq!(old.describe(), "isolate a --loss 30 --for 5m");
        let new: Partition = serde_json::from_str(
            r#"{"verb": "isolate", "guests": ["a"], "and": [{"verb": "cut", "from": ["b"],
                "to": ["c"], "delay_ms": 100, "rate_bits_per_sec": 1000000, "port": 80,
                "proto": "tcp"}]}"#,
        )
        .unwrap();
        assert_eq!(
            new.describe(),
            "isolate a + cut --from b --to c --delay 100ms --rate 1mbit --port 80/tcp"
        );
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["and"][0]["delay_ms"], 100);
        assert!(json.get("delay_ms").is_none(), "unset options are left out");
        assert_eq!(serde_json::from_value::<Partition>(json).unwrap(), new);
        let bad: Partition =
            serde_json::from_str(r#"{"verb": "all", "duplicate_percent": 0}"#).unwrap();
        assert_message(
            &bad.check().unwrap_err(),
            &["--duplicate 0 is out of range"],
        );
    }

    #[test]
    fn a_stored_state_compiles_against_its_own_slots() {
        let state = PartitionState {
            partition: parse("isolate a"),
            slots: guests("a b"),
            set_at: 1,
            set_at_ms: 0,
            step: None,
            expires_at: None,
            set_by: "host".into(),
        };
        // Guest b left and c (slot 5) came after the partition was set:
        // the stored slots still compile, and c is outside the partition.
        let now = BTreeMap::from([("a".to_owned(), 0), ("c".to_owned(), 5)]);
        let rules = state.compile("web", &now, 0).unwrap();
        assert_eq!(rules.cut(), both_ways(&[(0, 1)]));
        // A state from before slots were stored compiles against today's.
        let old: PartitionState = serde_json::from_str(
            r#"{"partition": {"verb": "isolate", "guests": ["a"]},
                "rules": {"cut": [[0, 1]], "outside_cut": [0], "loss_percent": 100},
                "set_at": 1, "set_by": "host"}"#,
        )
        .unwrap();
        assert!(old.slots.is_empty());
        assert_eq!(
            old.compile("web", &now, 0).unwrap().cut(),
            both_ways(&[(0, 5)])
        );
    }

    #[test]
    fn the_matrix_marks_impaired_and_port_only_pairs() {
        let rules = compiled(
            "cut --from a --to b --delay 5ms + cut --from b --to a --port 80",
            "a b",
        );
        assert_eq!(
            render_rules(&rules, &guests("a b")),
            "\
from \\ to  a  b  outside
a          -  *  .
b          p  -  .
outside    .  .  -
. allowed  X cut  - itself  * impaired  p some ports or protocols
"
        );
    }

    #[test]
    fn presets_compile_to_their_definitions_over_guests_in_name_order() {
        // guests(): a..e in slots 0, 1, 2, 3, and e in 9.
        let rules = compiled("bridge", "a b c d e");
        // Halves a b | c d e, c the bridge.
        assert_eq!(rules.cut(), both_ways(&[(0, 3), (0, 9), (1, 3), (1, 9)]));
        let rules = compiled("minority-third", "a b c d");
        assert_eq!(rules.cut(), both_ways(&[(0, 1), (0, 2), (0, 3)]));
        let rules = compiled("majorities-ring", "a b c d e");
        // Each guest hears its two ring neighbours: a is cut off c and d.
        assert!(rules.cut().contains(&(2, 0)) && rules.cut().contains(&(3, 0)));
        assert!(!rules.cut().contains(&(1, 0)) && !rules.cut().contains(&(9, 0)));
        assert_eq!(rules.cut().len(), 10);
        let halves = compiled("random-halves --seed 7", "a b c d");
        assert_eq!(
            halves,
            compiled("random-halves --seed 7", "a b c d"),
            "replayed"
        );
        assert_eq!(halves.cut().len(), 8, "two and two, cut both ways");
        // Presets take fault options like any verb.
        let slow = compiled("bridge --delay 10ms", "a b c");
        assert_eq!(slow.faults[0].impair.delay_ms, Some(10));
    }

    #[test]
    fn a_random_split_gets_a_seed_that_is_stored_and_printed() {
        assert_eq!(compile_err("random-halves", "a b"), PartitionError::NoSeed);
        let mut partition = parse("random-halves + random-halves --seed 5 --loss 10");
        partition.fill_seeds(1_234);
        assert_eq!(
            partition.describe(),
            "random-halves --seed 1234 + random-halves --seed 5 --loss 10"
        );
        assert_message(
            &parse_err("random-halves --seed x"),
            &["bad --seed \"x\"", "whole number"],
        );
        assert_message(
            &parse_err("bridge --seed 5"),
            &["unknown option \"--seed\" for `bridge`"],
        );
        assert_message(
            &compile_err("minority-third", "a b c"),
            &["`minority-third` needs at least 4 guests", "has 3"],
        );
        let json = serde_json::to_value(parse("random-halves --seed 9")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"verb": "random-halves", "seed": 9})
        );
        let back: Partition = serde_json::from_str(r#"{"verb": "majorities-ring"}"#).unwrap();
        assert_eq!(back.first.verb, Verb::MajoritiesRing);
    }

    #[test]
    fn errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<PartitionError>();
    }
}
