//! Network partitions ("netd partition"): what a verb means, compiled to the
//! directed cuts a dataplane enforces (`PartitionRules`, in guest slots).
//! Pure: the daemon applies the rules to the whole network in one step,
//! persists them with the verb as given, and heals timed partitions.
//!
//! The verbs are vagga's (`fullmesh`, `isolate`, `disjoint`, `split`), plus
//! the one-way `cut` Jepsen and Chaos Mesh users ask for, packet loss
//! instead of a clean cut (`--loss`), and a timed heal (`--for`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dataplane::PartitionRules;

/// A cut drops every affected packet unless `--loss` says otherwise.
pub const DEFAULT_LOSS_PERCENT: u8 = 100;

/// The longest timed partition: 30 days. Longer ones are forgotten tests;
/// a partition without `--for` lasts until it is healed.
pub const MAX_DURATION_SECS: u64 = 30 * DAY;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The verbs, repeated by errors that do not know which one was meant.
const VERBS: &str = "fullmesh (or heal), isolate, disjoint, split, cut";

/// What to cut, as the user said it. Guests are named, not numbered: names
/// are what `show` prints back, and what a test suite knows.
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
    /// cut; the reverse direction and everything else are untouched.
    Cut { from: Vec<String>, to: Vec<String> },
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
        }
    }
}

/// A partition as asked for: the verb, how hard it cuts, how long it lasts.
/// It is both the API's request body and what the daemon stores for `show`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    #[serde(flatten)]
    pub verb: Verb,
    /// The share of cut packets dropped, 1-100; None: 100 (all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<u8>,
    /// Seconds until the network heals by itself; None: until healed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
}

impl Partition {
    /// A partition with no options.
    pub fn new(verb: Verb) -> Partition {
        Partition {
            verb,
            loss_percent: None,
            duration_secs: None,
        }
    }

    /// Checks everything that does not depend on the network's guests: the
    /// verb names guests where it must, no list names one twice, a disjoint
    /// partition puts no guest in two groups, and the options fit the verb.
    pub fn check(&self) -> Result<(), PartitionError> {
        let verb = self.verb.name();
        match &self.verb {
            Verb::FullMesh => {
                if let Some(loss) = self.loss_percent {
                    return Err(PartitionError::OptionOnFullMesh {
                        option: format!("--loss {loss}"),
                    });
                }
                if let Some(secs) = self.duration_secs {
                    return Err(PartitionError::OptionOnFullMesh {
                        option: format!("--for {}", format_duration(secs)),
                    });
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
            Verb::Cut { from, to } => {
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
        }
        if let Some(loss) = self.loss_percent
            && !(1..=100).contains(&loss)
        {
            return Err(PartitionError::LossOutOfRange {
                text: loss.to_string(),
            });
        }
        match self.duration_secs {
            Some(0) => Err(PartitionError::DurationTooShort),
            Some(secs) if secs > MAX_DURATION_SECS => Err(PartitionError::DurationTooLong {
                text: format_duration(secs),
            }),
            _ => Ok(()),
        }
    }

    /// The partition as the CLI words that set it again (after
    /// `netd partition NETWORK`): `isolate a b --keep-outside --loss 30 --for 5m`.
    pub fn describe(&self) -> String {
        let mut words: Vec<String> = vec![self.verb.name().to_owned()];
        match &self.verb {
            Verb::FullMesh => {}
            Verb::Isolate {
                guests,
                keep_outside,
            } => {
                words.extend(guests.iter().cloned());
                if *keep_outside {
                    words.push("--keep-outside".to_owned());
                }
            }
            Verb::Disjoint { groups } | Verb::Split { groups } => {
                words.push(
                    groups
                        .iter()
                        .map(|group| group.join(" "))
                        .collect::<Vec<_>>()
                        .join(" -- "),
                );
            }
            Verb::Cut { from, to } => {
                words.push(format!("--from {}", from.join(",")));
                words.push(format!("--to {}", to.join(",")));
            }
        }
        if let Some(loss) = self.loss_percent {
            words.push(format!("--loss {loss}"));
        }
        if let Some(secs) = self.duration_secs {
            words.push(format!("--for {}", format_duration(secs)));
        }
        words.join(" ")
    }

    /// Reads the CLI's words after the network: a verb, its guests (groups
    /// separated by `--` for `disjoint` and `split`), and options anywhere
    /// after the verb: `--loss PERCENT`, `--for DURATION`, `--keep-outside`
    /// (isolate), `--from A,B` and `--to C,D` (cut; repeatable). Guest names
    /// never start with '-', so a word that does is an option. Only the
    /// syntax is checked here; `check` and `compile` do the rest.
    pub fn from_words(words: &[String]) -> Result<Partition, PartitionError> {
        let Some((verb_word, rest)) = words.split_first() else {
            return Err(PartitionError::NoVerb);
        };
        let verb = verb_word.as_str();
        let mut loss_percent = None;
        let mut duration_secs = None;
        let mut keep_outside = false;
        let mut names: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<String>> = vec![Vec::new()];
        let mut from: Vec<String> = Vec::new();
        let mut to: Vec<String> = Vec::new();
        let grouped = matches!(verb, "disjoint" | "split");
        if !matches!(
            verb,
            "fullmesh" | "heal" | "isolate" | "disjoint" | "split" | "cut"
        ) {
            return Err(PartitionError::UnknownVerb {
                word: verb.to_owned(),
            });
        }

        let mut rest = rest.iter();
        while let Some(word) = rest.next() {
            if word == "--" {
                if !grouped {
                    return Err(PartitionError::SeparatorOutsideGroups {
                        verb: verb_name(verb),
                    });
                }
                groups.push(Vec::new());
                continue;
            }
            if let Some(option) = word.strip_prefix("--") {
                let (name, inline) = match option.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (option, None),
                };
                let mut value = || -> Result<String, PartitionError> {
                    inline
                        .clone()
                        .or_else(|| rest.next().cloned())
                        .ok_or_else(|| PartitionError::MissingValue {
                            option: format!("--{name}"),
                        })
                };
                match name {
                    "loss" => loss_percent = Some(parse_loss(&value()?)?),
                    "for" => duration_secs = Some(parse_duration(&value()?)?),
                    "keep-outside" if verb == "isolate" && inline.is_none() => {
                        keep_outside = true;
                    }
                    "from" if verb == "cut" => from.extend(split_list(&value()?)),
                    "to" if verb == "cut" => to.extend(split_list(&value()?)),
                    _ => {
                        return Err(PartitionError::UnknownOption {
                            option: word.clone(),
                            verb: verb_name(verb),
                        });
                    }
                }
                continue;
            }
            if word.starts_with('-') {
                return Err(PartitionError::UnknownOption {
                    option: word.clone(),
                    verb: verb_name(verb),
                });
            }
            match verb {
                "isolate" => names.push(word.clone()),
                "disjoint" | "split" => groups.last_mut().expect("never empty").push(word.clone()),
                _ => {
                    return Err(PartitionError::UnexpectedWord {
                        word: word.clone(),
                        verb: verb_name(verb),
                    });
                }
            }
        }

        let groups = if groups.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            groups
        };
        let verb = match verb {
            "isolate" => Verb::Isolate {
                guests: names,
                keep_outside,
            },
            "disjoint" => Verb::Disjoint { groups },
            "split" => Verb::Split { groups },
            "cut" => Verb::Cut { from, to },
            _ => Verb::FullMesh,
        };
        Ok(Partition {
            verb,
            loss_percent,
            duration_secs,
        })
    }
}

/// `heal` is `fullmesh` by another name; errors use the canonical word.
fn verb_name(word: &str) -> &'static str {
    match word {
        "isolate" => "isolate",
        "disjoint" => "disjoint",
        "split" => "split",
        "cut" => "cut",
        _ => "fullmesh",
    }
}

/// `a,b,,c` -> a, b, c: a stray comma is no guest.
fn split_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
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
/// slot), into the cuts the dataplane enforces. Nothing is applied: an error
/// here leaves the network as it was.
pub fn compile(
    network: &str,
    partition: &Partition,
    guests: &BTreeMap<String, u8>,
) -> Result<PartitionRules, PartitionError> {
    partition.check()?;
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
    let mut rules = PartitionRules {
        loss_percent: partition.loss_percent.unwrap_or(DEFAULT_LOSS_PERCENT),
        ..PartitionRules::default()
    };
    match &partition.verb {
        Verb::FullMesh => return Ok(PartitionRules::default()),
        Verb::Isolate {
            guests: listed,
            keep_outside,
        } => {
            let listed = slots(listed)?;
            for &isolated in &listed {
                for &other in all.iter().filter(|&&other| other != isolated) {
                    rules.cut.insert((isolated, other));
                    rules.cut.insert((other, isolated));
                }
            }
            if !keep_outside {
                rules.outside_cut.extend(listed);
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
                        rules.cut.insert((a, b));
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
                        rules.cut.insert((a, b));
                    }
                }
            }
        }
        Verb::Cut { from, to } => {
            let to = slots(to)?;
            for a in slots(from)? {
                for &b in &to {
                    rules.cut.insert((a, b));
                }
            }
        }
    }
    Ok(rules)
}

/// A network's partition as the daemon persists it: what was asked, what it
/// compiled to, and when and by whom it was set. The deadline is stored, not
/// a timer, so a timed heal survives a daemon restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition as given, for `show`.
    pub partition: Partition,
    /// What the dataplane holds for it.
    pub rules: PartitionRules,
    /// Unix seconds.
    pub set_at: u64,
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
}

/// What the partition intends for packets from one end to another.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Allowed,
    Cut,
    /// Cut with `--loss` under 100: some packets pass.
    Lossy,
}

impl Intent {
    fn of(cut: bool, rules: &PartitionRules) -> Intent {
        match (cut, rules.loss_percent >= 100) {
            (false, _) => Intent::Allowed,
            (true, true) => Intent::Cut,
            (true, false) => Intent::Lossy,
        }
    }

    /// Its mark in a matrix.
    pub fn mark(self) -> char {
        match self {
            Intent::Allowed => '.',
            Intent::Cut => 'X',
            Intent::Lossy => '~',
        }
    }
}

/// One end of a packet's trip within a matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Guest(u8),
    /// Everything not in the network: the host, other networks, the internet.
    Outside,
}

/// What `rules` intend for packets from `from` to `to` (`from != to`).
pub fn intent(rules: &PartitionRules, from: End, to: End) -> Intent {
    let cut = match (from, to) {
        (End::Guest(a), End::Guest(b)) => rules.cut.contains(&(a, b)),
        (End::Guest(guest), End::Outside) | (End::Outside, End::Guest(guest)) => {
            rules.outside_cut.contains(&guest)
        }
        (End::Outside, End::Outside) => false,
    };
    Intent::of(cut, rules)
}

/// The matrix `show` prints: rows are senders, columns receivers, guests in
/// name order plus the outside; "." allowed, "X" cut, "~" lossy, "-" itself.
pub fn render_rules(rules: &PartitionRules, guests: &BTreeMap<String, u8>) -> String {
    let mut labels: Vec<&str> = guests.keys().map(String::as_str).collect();
    labels.push("outside");
    let ends: Vec<End> = guests
        .values()
        .map(|&slot| End::Guest(slot))
        .chain([End::Outside])
        .collect();
    let mut text = grid(&labels, |row, col| {
        intent(rules, ends[row], ends[col]).mark()
    });
    text.push_str(". allowed  X cut  - itself");
    if rules.loss_percent < 100 && !rules.is_full_mesh() {
        let _ = write!(text, "  ~ cut at {}% loss", rules.loss_percent);
    }
    text.push('\n');
    text
}

/// A square matrix with `labels` on both axes; `mark(row, col)` for the
/// cells off the diagonal, "-" on it.
fn grid(labels: &[&str], mark: impl Fn(usize, usize) -> char) -> String {
    const CORNER: &str = "from \\ to";
    let first = labels
        .iter()
        .map(|label| label.len())
        .chain([CORNER.len()])
        .max()
        .unwrap_or(0);
    let mut lines = Vec::with_capacity(labels.len() + 1);
    let header: Vec<String> = labels.iter().map(|label| label.to_string()).collect();
    lines.push(format!("{CORNER:<first$}  {}", header.join("  ")));
    for (row, label) in labels.iter().enumerate() {
        let cells: Vec<String> = labels
            .iter()
            .enumerate()
            .map(|(col, column)| {
                let mark = if row == col { '-' } else { mark(row, col) };
                format!("{mark:<width$}", width = column.len().max(1))
            })
            .collect();
        lines.push(format!("{label:<first$}  {}", cells.join("  ")));
    }
    let mut text = String::new();
    for line in lines {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// One ordered pair of guests as `verify` saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PairCheck {
    pub from: String,
    pub to: String,
    pub intended: Intent,
    pub sent: u32,
    pub received: u32,
    /// At least one datagram arrived.
    pub delivered: bool,
    /// What arrived fits the intent: nothing through a cut, something
    /// through an allowed pair; a lossy pair always fits.
    pub ok: bool,
}

/// What `netd partition verify` found: every ordered pair of guests, the
/// observed matrix, and the pairs that contradict the partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub network: String,
    /// True iff no pair contradicts the partition.
    pub ok: bool,
    /// Datagrams each guest sent to each other guest.
    pub sent_per_pair: u32,
    pub pairs: Vec<PairCheck>,
    /// One line per contradicting pair.
    pub mismatches: Vec<String>,
    /// The observed matrix: "." all arrived, "~" some, "X" none.
    pub matrix: String,
}

/// Judges what arrived (`received[(from, to)]`, by guest name; missing
/// pairs count as nothing) against what `rules` intend.
pub fn judge(
    network: &str,
    rules: &PartitionRules,
    guests: &BTreeMap<String, u8>,
    received: &BTreeMap<(String, String), u32>,
    sent: u32,
) -> VerifyReport {
    let mut pairs = Vec::new();
    let mut mismatches = Vec::new();
    for (from, &a) in guests {
        for (to, &b) in guests.iter().filter(|(to, _)| *to != from) {
            let intended = intent(rules, End::Guest(a), End::Guest(b));
            let got = received
                .get(&(from.clone(), to.clone()))
                .copied()
                .unwrap_or(0);
            let ok = match intended {
                Intent::Allowed => got > 0,
                Intent::Cut => got == 0,
                Intent::Lossy => true,
            };
            if !ok {
                mismatches.push(match intended {
                    Intent::Allowed => {
                        format!("{from} -> {to}: allowed, but none of {sent} datagrams arrived")
                    }
                    _ => format!("{from} -> {to}: cut, but {got} of {sent} datagrams arrived"),
                });
            }
            pairs.push(PairCheck {
                from: from.clone(),
                to: to.clone(),
                intended,
                sent,
                received: got,
                delivered: got > 0,
                ok,
            });
        }
    }
    let names: Vec<&String> = guests.keys().collect();
    let labels: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    let matrix = grid(&labels, |row, col| {
        let got = received
            .get(&(names[row].clone(), names[col].clone()))
            .copied()
            .unwrap_or(0);
        match got {
            0 => 'X',
            got if got >= sent => '.',
            _ => '~',
        }
    });
    VerifyReport {
        network: network.to_owned(),
        ok: mismatches.is_empty(),
        sent_per_pair: sent,
        pairs,
        mismatches,
        matrix,
    }
}

/// Reads `--loss`: a whole percentage, 1-100, with or without '%'.
pub fn parse_loss(text: &str) -> Result<u8, PartitionError> {
    let digits = text.strip_suffix('%').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PartitionError::BadLoss {
            text: text.to_owned(),
        });
    }
    match digits.parse::<u32>() {
        Ok(loss @ 1..=100) => Ok(loss as u8),
        _ => Err(PartitionError::LossOutOfRange {
            text: text.to_owned(),
        }),
    }
}

/// Reads `--for`: numbers with units, largest first (`30s`, `5m`, `2h`,
/// `1h30m`, `2d`), in whole seconds, 1 s to 30 days.
pub fn parse_duration(text: &str) -> Result<u64, PartitionError> {
    let bad = || PartitionError::BadDuration {
        text: text.to_owned(),
    };
    if text.ends_with("ms") || text.ends_with("us") || text.ends_with("ns") {
        return Err(PartitionError::SubSecond {
            text: text.to_owned(),
        });
    }
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let (number, after) = rest.split_at(digits);
        let mut chars = after.chars();
        let unit = match chars.next() {
            Some('d') => DAY,
            Some('h') => HOUR,
            Some('m') => MINUTE,
            Some('s') => 1,
            _ => return Err(bad()),
        };
        if unit >= last_unit {
            return Err(bad());
        }
        last_unit = unit;
        let too_long = || PartitionError::DurationTooLong {
            text: text.to_owned(),
        };
        let number: u64 = number.parse().map_err(|_| too_long())?;
        total = number
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_long)?;
        rest = chars.as_str();
    }
    match total {
        0 => Err(PartitionError::DurationTooShort),
        secs if secs > MAX_DURATION_SECS => Err(PartitionError::DurationTooLong {
            text: text.to_owned(),
        }),
        secs => Ok(secs),
    }
}

/// Seconds the way `--for` takes them: `1h30m`, `45s`, `2d`; 0 is `0s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    let mut left = secs;
    for (unit, name) in [(DAY, 'd'), (HOUR, 'h'), (MINUTE, 'm'), (1, 's')] {
        if left >= unit {
            let _ = write!(text, "{}{name}", left / unit);
            left %= unit;
        }
    }
    text
}

/// Unix seconds as `2024-03-05 14:07:09 UTC`, for `show`.
pub fn format_unix_time(secs: u64) -> String {
    let days = (secs / DAY) as i64;
    let of_day = secs % DAY;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / HOUR,
        of_day % HOUR / MINUTE,
        of_day % MINUTE
    )
}

/// Why a partition cannot be set.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartitionError {
    #[error("network {network} has no guest named {guest:?}: `netd guest ls {network}` lists them")]
    UnknownGuest { network: String, guest: String },
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
    #[error("unknown option {option:?} for `{verb}`: {}", options_of(verb))]
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
        "isolate" => "write `isolate GUEST... [--keep-outside] [--loss PERCENT] [--for DURATION]`",
        "disjoint" => "write `disjoint A B -- C D [-- ...] [--loss PERCENT] [--for DURATION]`",
        "split" => "write `split A B -- B C [-- ...] [--loss PERCENT] [--for DURATION]`",
        "cut" => "write `cut --from A,B --to C,D [--loss PERCENT] [--for DURATION]`",
        _ => "write `fullmesh` (or `heal`) alone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn parse(line: &str) -> Partition {
        Partition::from_words(&words(line))
            .unwrap_or_else(|err| panic!("{line:?} should parse: {err}"))
    }

    fn parse_err(line: &str) -> PartitionError {
        match Partition::from_words(&words(line)) {
            Ok(partition) => panic!("{line:?} should be refused, parsed as {partition:?}"),
            Err(err) => err,
        }
    }

    fn names(list: &str) -> Vec<String> {
        words(list)
    }

    /// Guests a..e in slots 0..4 (e: 9, so slots are not positions).
    fn guests(list: &str) -> BTreeMap<String, u8> {
        list.split_whitespace()
            .enumerate()
            .map(|(index, name)| {
                let slot = if name == "e" { 9 } else { index as u8 };
                (name.to_owned(), slot)
            })
            .collect()
    }

    fn compiled(line: &str, network: &str) -> PartitionRules {
        compile("web", &parse(line), &guests(network))
            .unwrap_or_else(|err| panic!("{line:?} should compile: {err}"))
    }

    fn compile_err(line: &str, network: &str) -> PartitionError {
        match compile("web", &parse(line), &guests(network)) {
            Ok(rules) => panic!("{line:?} should be refused, compiled to {rules:?}"),
            Err(err) => err,
        }
    }

    /// Both directions of every pair in `pairs`.
    fn both_ways(pairs: &[(u8, u8)]) -> BTreeSet<(u8, u8)> {
        pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect()
    }

    fn assert_message(err: &PartitionError, parts: &[&str]) {
        let message = err.to_string();
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

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
        assert_eq!(rules.cut, both_ways(&[(0, 1), (0, 2)]));
        assert_eq!(rules.outside_cut, BTreeSet::from([0]));
        assert_eq!(rules.loss_percent, 100);
    }

    #[test]
    fn isolated_guests_are_cut_from_each_other_too() {
        let rules = compiled("isolate a b", "a b c");
        assert_eq!(rules.cut, both_ways(&[(0, 1), (0, 2), (1, 2)]));
        assert_eq!(rules.outside_cut, BTreeSet::from([0, 1]));
    }

    #[test]
    fn keep_outside_leaves_the_outside_alone() {
        let rules = compiled("isolate a --keep-outside", "a b c");
        assert_eq!(rules.cut, both_ways(&[(0, 1), (0, 2)]));
        assert!(rules.outside_cut.is_empty());
    }

    #[test]
    fn disjoint_cuts_every_pair_across_groups_both_ways() {
        let rules = compiled("disjoint a b -- c e", "a b c e");
        assert_eq!(rules.cut, both_ways(&[(0, 2), (0, 9), (1, 2), (1, 9)]));
        assert!(rules.outside_cut.is_empty());
    }

    #[test]
    fn disjoint_with_three_groups() {
        let rules = compiled("disjoint a -- b -- c", "a b c");
        assert_eq!(rules.cut, both_ways(&[(0, 1), (0, 2), (1, 2)]));
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
        assert_eq!(rules.cut, both_ways(&[(0, 2)]));
        assert!(rules.outside_cut.is_empty());
    }

    #[test]
    fn split_cuts_unlisted_guests_from_every_guest() {
        let rules = compiled("split a b", "a b c e");
        assert_eq!(
            rules.cut,
            both_ways(&[(0, 2), (0, 9), (1, 2), (1, 9), (2, 9)])
        );
        assert!(rules.outside_cut.is_empty());
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
        assert_eq!(rules.cut, BTreeSet::from([(0, 2), (1, 2)]));
        assert!(rules.outside_cut.is_empty());
    }

    #[test]
    fn cut_lists_may_repeat_the_option() {
        assert_eq!(
            parse("cut --from a --from=b --to c,e"),
            Partition::new(Verb::Cut {
                from: names("a b"),
                to: names("c e"),
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
        assert_eq!(compiled("isolate a --loss 30", "a b").loss_percent, 30);
        assert_eq!(
            compiled("cut --from a --to b --loss=100%", "a b").loss_percent,
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
        let api = Partition {
            loss_percent: Some(0),
            ..Partition::new(Verb::Isolate {
                guests: names("a"),
                keep_outside: false,
            })
        };
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
        assert!(rules.cut.is_empty());
        assert_eq!(rules.outside_cut, BTreeSet::from([0]));
    }

    // --- words ---

    #[test]
    fn options_may_come_anywhere_after_the_verb() {
        let expected = Partition {
            verb: Verb::Isolate {
                guests: names("a b"),
                keep_outside: true,
            },
            loss_percent: Some(30),
            duration_secs: Some(90),
        };
        assert_eq!(
            parse("isolate a --loss 30 b --keep-outside --for 1m30s"),
            expected
        );
        assert_eq!(
            parse("isolate --for=90s --keep-outside a b --loss=30%"),
            expected
        );
    }

    #[test]
    fn groups_are_separated_by_double_dashes() {
        assert_eq!(
            parse("split a b -- b c -- d"),
            Partition::new(Verb::Split {
                groups: vec![names("a b"), names("b c"), names("d")],
            })
        );
    }

    #[test]
    fn unknown_words_and_options_are_refused_with_the_grammar() {
        assert_message(
            &parse_err("partition a"),
            &["unknown partition verb \"partition\""],
        );
        assert_eq!(
            Partition::from_words(&[]).unwrap_err(),
            PartitionError::NoVerb
        );
        assert_message(
            &parse_err("isolate a --from b"),
            &[
                "unknown option \"--from\" for `isolate`",
                "isolate GUEST...",
            ],
        );
        assert_message(
            &parse_err("split a --keep-outside"),
            &["unknown option \"--keep-outside\" for `split`"],
        );
        assert_message(&parse_err("isolate -a"), &["unknown option \"-a\""]);
        assert_message(
            &parse_err("cut a --to b"),
            &["`cut` takes no guest names here", "--from A,B --to C,D"],
        );
        assert_message(&parse_err("fullmesh a"), &["`fullmesh` (or `heal`) alone"]);
        assert_message(&parse_err("isolate a -- b"), &["`--` separates the groups"]);
        assert_message(
            &parse_err("isolate a --loss"),
            &["\"--loss\" needs a value"],
        );
        assert_message(
            &parse_err("isolate a --keep-outside=yes"),
            &["unknown option"],
        );
    }

    #[test]
    fn described_partitions_read_back_the_same() {
        for line in [
            "fullmesh",
            "isolate a b",
            "isolate a --keep-outside --loss 30 --for 1h30m",
            "disjoint a b -- c d",
            "split a b -- b c -- e --for 2d",
            "cut --from a,b --to c,d --loss 5",
        ] {
            let partition = parse(line);
            assert_eq!(partition.describe(), line);
            assert_eq!(parse(&partition.describe()), partition, "{line}");
        }
        assert_eq!(parse("heal").describe(), "fullmesh");
        assert_eq!(
            parse("isolate a --for 90m").describe(),
            "isolate a --for 1h30m"
        );
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
            rules: compiled("split a b -- b c --loss 50", "a b c"),
            set_at: 1_700_000_000,
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
            rules: PartitionRules::default(),
            set_at: 100,
            expires_at: Some(160),
            set_by: "host".into(),
        };
        assert!(!state.expired(159));
        assert!(state.expired(160));
        assert!(state.expired(161));
        state.expires_at = None;
        assert!(!state.expired(u64::MAX));
    }

    // --- durations ---

    #[test]
    fn durations_take_units_largest_first() {
        for (text, secs) in [
            ("1s", 1),
            ("30s", 30),
            ("5m", 300),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            ("90m", 5400),
            ("30d", MAX_DURATION_SECS),
            ("720h", MAX_DURATION_SECS),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for text in [
            "", "30", "s", "5x", "1m1h", "1h1h", "1.5h", "-5s", "5 m", "5M",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(
                err,
                PartitionError::BadDuration { text: text.into() },
                "{text}"
            );
            assert_message(&err, &["s, m, h or d", "1h30m"]);
        }
    }

    #[test]
    fn durations_are_1s_to_30_days() {
        assert_message(
            &parse_duration("500ms").unwrap_err(),
            &["under a second", "1s"],
        );
        assert_eq!(parse_duration("0s"), Err(PartitionError::DurationTooShort));
        assert_message(
            &parse_duration("0m").unwrap_err(),
            &["at least 1s", "`fullmesh`"],
        );
        assert_message(
            &parse_duration("30d1s").unwrap_err(),
            &["--for 30d1s is longer than 30 days"],
        );
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(PartitionError::DurationTooLong { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(PartitionError::DurationTooLong { .. })
        ));
        let api = Partition {
            duration_secs: Some(MAX_DURATION_SECS + 1),
            ..parse("isolate a")
        };
        assert_message(&api.check().unwrap_err(), &["--for 30d1s is longer"]);
        let api = Partition {
            duration_secs: Some(0),
            ..parse("isolate a")
        };
        assert_eq!(api.check(), Err(PartitionError::DurationTooShort));
    }

    #[test]
    fn durations_print_the_way_they_are_written() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (5400, "1h30m"),
            (86_400, "1d"),
            (93_784, "1d2h3m4s"),
        ] {
            assert_eq!(format_duration(secs), text);
        }
    }

    #[test]
    fn unix_times_print_as_utc_dates() {
        assert_eq!(format_unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_time(1_709_647_629), "2024-03-05 14:07:09 UTC");
        assert_eq!(format_unix_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    // --- matrices ---

    #[test]
    fn the_matrix_shows_senders_in_rows_and_the_outside() {
        let rules = compiled("isolate a", "a b c");
        assert_eq!(
            render_rules(&rules, &guests("a b c")),
            "\
from \\ to  a  b  c  outside
a          -  X  X  X
b          X  -  .  .
c          X  .  -  .
outside    X  .  .  -
. allowed  X cut  - itself
"
        );
    }

    #[test]
    fn one_way_and_lossy_cuts_show_as_such() {
        let rules = compiled("cut --from alpha --to b --loss 30", "alpha b");
        assert_eq!(
            render_rules(&rules, &guests("alpha b")),
            "\
from \\ to  alpha  b  outside
alpha      -      ~  .
b          .      -  .
outside    .      .  -
. allowed  X cut  - itself  ~ cut at 30% loss
"
        );
    }

    #[test]
    fn intents_follow_the_rules() {
        let rules = compiled("isolate a --keep-outside", "a b");
        assert_eq!(intent(&rules, End::Guest(0), End::Guest(1)), Intent::Cut);
        assert_eq!(intent(&rules, End::Guest(0), End::Outside), Intent::Allowed);
        let rules = compiled("isolate a --loss 10", "a b");
        assert_eq!(intent(&rules, End::Outside, End::Guest(0)), Intent::Lossy);
        assert_eq!(intent(&rules, End::Outside, End::Guest(1)), Intent::Allowed);
    }

    // --- verify ---

    fn received(entries: &[(&str, &str, u32)]) -> BTreeMap<(String, String), u32> {
        entries
            .iter()
            .map(|(from, to, count)| ((from.to_string(), to.to_string()), *count))
            .collect()
    }

    #[test]
    fn a_partition_that_holds_verifies_ok() {
        let rules = compiled("cut --from a --to b", "a b");
        let report = judge(
            "web",
            &rules,
            &guests("a b"),
            &received(&[("b", "a", 3)]),
            3,
        );
        assert!(report.ok);
        assert!(report.mismatches.is_empty());
        assert_eq!(
            report.pairs,
            vec![
                PairCheck {
                    from: "a".into(),
                    to: "b".into(),
                    intended: Intent::Cut,
                    sent: 3,
                    received: 0,
                    delivered: false,
                    ok: true,
                },
                PairCheck {
                    from: "b".into(),
                    to: "a".into(),
                    intended: Intent::Allowed,
                    sent: 3,
                    received: 3,
                    delivered: true,
                    ok: true,
                },
            ]
        );
        assert_eq!(
            report.matrix,
            "from \\ to  a  b\na          -  X\nb          .  -\n"
        );
    }

    #[test]
    fn leaks_and_losses_are_mismatches() {
        let rules = compiled("isolate a", "a b c");
        let report = judge(
            "web",
            &rules,
            &guests("a b c"),
            &received(&[("a", "b", 2), ("b", "c", 3)]),
            3,
        );
        assert!(!report.ok);
        assert_eq!(
            report.mismatches,
            vec![
                "a -> b: cut, but 2 of 3 datagrams arrived",
                "c -> b: allowed, but none of 3 datagrams arrived",
            ]
        );
        assert_eq!(report.pairs.len(), 6);
        assert!(
            report.matrix.contains("a          -  ~  X\n"),
            "{}",
            report.matrix
        );
    }

    #[test]
    fn lossy_pairs_are_never_mismatches() {
        let rules = compiled("isolate a --loss 50", "a b");
        for count in [0, 1, 3] {
            let report = judge(
                "web",
                &rules,
                &guests("a b"),
                &received(&[("a", "b", count), ("b", "a", count)]),
                3,
            );
            assert!(report.ok, "{count}");
            assert_eq!(report.pairs[0].intended, Intent::Lossy);
        }
    }

    #[test]
    fn a_network_of_one_guest_has_no_pairs() {
        let report = judge(
            "web",
            &PartitionRules::default(),
            &guests("a"),
            &BTreeMap::new(),
            3,
        );
        assert!(report.ok);
        assert!(report.pairs.is_empty());
    }

    #[test]
    fn errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<PartitionError>();
    }
}
