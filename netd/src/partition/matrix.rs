//! The matrices `show` and `verify` print (senders in rows, receivers in
//! columns), and `verify`'s judgement of what arrived against what the
//! partition intends.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use serde::{Deserialize, Serialize};

use super::{FaultClass, PartitionRules};

/// What the partition intends for packets from one end to another.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Allowed,
    /// Some ports or protocols only are affected.
    Partly,
    /// Delayed, duplicated, corrupted or rate-limited, not (only) dropped.
    Impaired,
    /// Cut with `--loss` under 100: some packets pass.
    Lossy,
    Cut,
}

impl Intent {
    /// What one class intends for the packets it selects.
    fn of(class: &FaultClass) -> Intent {
        if !class.traffic.is_all() {
            Intent::Partly
        } else if class.is_cut() {
            Intent::Cut
        } else if class.loss_percent > 0 {
            Intent::Lossy
        } else {
            Intent::Impaired
        }
    }

    /// Its mark in a matrix.
    pub fn mark(self) -> char {
        match self {
            Intent::Allowed => '.',
            Intent::Partly => 'p',
            Intent::Impaired => '*',
            Intent::Lossy => '~',
            Intent::Cut => 'X',
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

/// What `rules` intend for packets from `from` to `to` (`from != to`): the
/// strongest of the classes that select the pair (a cut over a loss over an
/// impairment over one that selects some ports only).
pub fn intent(rules: &PartitionRules, from: End, to: End) -> Intent {
    rules
        .faults
        .iter()
        .filter(|class| match (from, to) {
            (End::Guest(a), End::Guest(b)) => class.pairs.contains(&(a, b)),
            (End::Guest(guest), End::Outside) | (End::Outside, End::Guest(guest)) => {
                class.outside.contains(&guest)
            }
            (End::Outside, End::Outside) => false,
        })
        .map(Intent::of)
        .max()
        .unwrap_or(Intent::Allowed)
}

/// The matrix `show` prints: rows are senders, columns receivers, guests in
/// name order plus the outside; "." allowed, "X" cut, "~" lossy, "*"
/// impaired, "p" some ports or protocols, "-" itself.
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
    let live = || rules.faults.iter().filter(|class| !class.selects_nothing());
    let shares: BTreeSet<u8> = live()
        .filter(|class| Intent::of(class) == Intent::Lossy)
        .map(|class| class.loss_percent)
        .collect();
    match shares.len() {
        0 => {}
        1 => {
            let _ = write!(text, "  ~ cut at {}% loss", shares.first().expect("one"));
        }
        _ => text.push_str("  ~ lossy"),
    }
    if live().any(|class| Intent::of(class) == Intent::Impaired) {
        text.push_str("  * impaired");
    }
    if live().any(|class| Intent::of(class) == Intent::Partly) {
        text.push_str("  p some ports or protocols");
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PairCheck {
    pub from: String,
    pub to: String,
    pub intended: Intent,
    pub sent: u32,
    pub received: u32,
    /// At least one datagram arrived.
    pub delivered: bool,
    /// What arrived fits the intent: nothing through a cut, something
    /// through an allowed pair, the expected count (within its tolerance)
    /// through a pair with a loss, duplication or corruption share.
    pub ok: bool,
    /// For a measured pair: the datagrams expected to arrive, and by how
    /// many the count may differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// With a delay in force: the pair's round trip, timed (on the pair
    /// whose sender comes first in name order; it covers both ways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<super::rtt::RttCheck>,
    /// With a rate in force on the pair: the rate delivered, measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<super::rate::RateCheck>,
}

/// What `netd partition verify` found: every ordered pair of guests, the
/// observed matrix, and the pairs that contradict the partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
    /// What was not measured, and why (pairs under a rate beyond the cap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Cut pairs probed through the receiver's published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<super::through_ports::PublishedCheck>,
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
            let expectation = super::measure::expectation(rules, a, b);
            let measured = expectation.measured();
            // A share is measured against its expectation; a rate, or
            // faults of other ports, are not judged here.
            let ok = match intended {
                _ if measured => expectation.fits(sent, got),
                Intent::Allowed => got > 0,
                Intent::Cut => got == 0,
                Intent::Lossy | Intent::Impaired | Intent::Partly => true,
            };
            if !ok {
                mismatches.push(match intended {
                    _ if measured => format!(
                        "{from} -> {to}: {got} of {sent} datagrams arrived, but the policy means {:.0} (± {:.0})",
                        expectation.received(sent),
                        expectation.tolerance(sent)
                    ),
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
                expected: measured.then(|| expectation.received(sent)),
                tolerance: measured.then(|| expectation.tolerance(sent)),
                rtt: None,
                rate: None,
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
        notes: Vec::new(),
        published: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

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
                    expected: None,
                    tolerance: None,
                    rtt: None,
                    rate: None,
                },
                PairCheck {
                    from: "b".into(),
                    to: "a".into(),
                    intended: Intent::Allowed,
                    sent: 3,
                    received: 3,
                    delivered: true,
                    ok: true,
                    expected: None,
                    tolerance: None,
                    rtt: None,
                    rate: None,
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
    fn lossy_pairs_are_measured_against_their_share() {
        let rules = compiled("isolate a --loss 50", "a b");
        for (count, ok) in [(100, true), (85, true), (60, false), (150, false)] {
            let report = judge(
                "web",
                &rules,
                &guests("a b"),
                &received(&[("a", "b", count), ("b", "a", 100)]),
                200,
            );
            assert_eq!(report.ok, ok, "{count}: {:?}", report.mismatches);
            assert_eq!(report.pairs[0].intended, Intent::Lossy);
            assert_eq!(report.pairs[0].expected, Some(100.0));
        }
        let report = judge(
            "web",
            &rules,
            &guests("a b"),
            &received(&[("a", "b", 40), ("b", "a", 100)]),
            200,
        );
        assert_eq!(
            report.mismatches,
            vec!["a -> b: 40 of 200 datagrams arrived, but the policy means 100 (± 35)"]
        );
    }

    #[test]
    fn duplicates_count_above_what_was_sent() {
        let rules = compiled("cut --from a --to b --duplicate 100", "a b");
        let judged = |count| {
            judge(
                "web",
                &rules,
                &guests("a b"),
                &received(&[("a", "b", count), ("b", "a", 200)]),
                200,
            )
        };
        assert!(judged(400).ok);
        assert!(!judged(200).ok, "no duplicates arrived");
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
}
