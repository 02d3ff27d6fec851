//! Network partitions ("netd partition"): what a verb means, compiled to the
//! directed cuts a dataplane enforces (`PartitionRules`, in guest slots).
//! Pure: the daemon applies the rules to the whole network in one step,
//! persists them with the verb as given, and heals timed partitions.
//!
//! The verbs are vagga's (`fullmesh`, `isolate`, `disjoint`, `split`), plus
//! the one-way `cut` Jepsen and Chaos Mesh users ask for, packet loss
//! instead of a clean cut (`--loss`), and a timed heal (`--for`).
//!
//! Here: the verbs, what they compile to, what is persisted. `rules`: what
//! they compile to, the dataplanes' input. `words`: the
//! CLI's words for them (and durations), both ways. `matrix`: the matrices
//! `show` and `verify` print, and `verify`'s judgement.

mod matrix;
mod rules;
#[cfg(test)]
mod test_support;
mod words;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::{
    matrix::{End, Intent, PairCheck, VerifyReport, intent, judge, render_rules},
    rules::PartitionRules,
    words::{format_duration, format_unix_time, parse_duration, parse_loss},
};

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

    #[test]
    fn errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<PartitionError>();
    }
}
