//! What `verify` should see of a pair's round trip when a delay is in
//! force: the intended round trip (the delay of each direction, as the
//! delay line takes it: the first delaying class that selects the probes)
//! and whether the measured echoes fit. Pure.
//!
//! Tolerances: the median round trip lies between the intended delay less
//! the jitter and the delay plus the jitter plus [`TOLERANCE_MS`] (the
//! veths, the stacks and the delay line's own lateness); with jitter and
//! no correlation, the echoes' spread (slowest less fastest) is at least
//! half the jitter, so a jitter that is not in force is seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PartitionRules, VerifyReport, measure::selects_probes};

/// Echoes timed per pair.
pub const PROBES: u32 = 20;

/// How much later than intended a median round trip may be.
pub const TOLERANCE_MS: f64 = 5.0;

/// A pair's intended round trip: both directions' delays and jitters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expectation {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    /// A direction's jitter is correlated: the spread is not judged.
    pub correlated: bool,
}

/// A pair to time: its guests' names, the first in name order first.
pub type Pair = (String, String, Expectation);

/// A timed pair and its round trips, milliseconds.
pub type Timed = (String, String, Expectation, Vec<f64>);

/// How one pair's round trip measured against its expectation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RttCheck {
    pub intended_ms: f64,
    pub jitter_ms: f64,
    pub samples: u32,
    pub p50_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub ok: bool,
}

/// The delay, jitter and correlation of the first class that delays the
/// probes from `from` to `to`; None when the direction is cut (no echo can
/// come back) or not delayed (0 ms).
fn direction(rules: &PartitionRules, from: u8, to: u8) -> Option<(u32, u32, bool)> {
    let mut classes = rules
        .faults
        .iter()
        .filter(|class| class.pairs.contains(&(from, to)) && selects_probes(class));
    if classes.clone().any(|class| class.loss_percent >= 100) {
        return None;
    }
    let delaying = classes.find(|class| class.impair.delay_ms.is_some());
    Some(delaying.map_or((0, 0, false), |class| {
        (
            class.impair.delay_ms.unwrap_or(0),
            class.impair.jitter_ms.unwrap_or(0),
            class.impair.correlation_percent.unwrap_or(0) > 0,
        )
    }))
}

/// The round trip between `a` and `b` (there and back), when a delay is
/// in force on either way and neither is cut.
pub fn expectation(rules: &PartitionRules, a: u8, b: u8) -> Option<Expectation> {
    let (there, back) = (direction(rules, a, b)?, direction(rules, b, a)?);
    if there.0 + back.0 == 0 {
        return None;
    }
    Some(Expectation {
        delay_ms: f64::from(there.0 + back.0),
        jitter_ms: f64::from(there.1 + back.1),
        correlated: there.2 || back.2,
    })
}

/// The longest one-way delay any class adds (delay plus jitter), ms.
pub fn longest_hold_ms(rules: &PartitionRules) -> u64 {
    rules
        .faults
        .iter()
        .filter_map(|class| {
            let delay = class.impair.delay_ms?;
            Some(u64::from(delay + class.impair.jitter_ms.unwrap_or(0)))
        })
        .max()
        .unwrap_or(0)
}

/// The unordered pairs of `guests` (by name, the first in name order
/// first) whose round trip `verify` times.
pub fn pairs_to_time(rules: &PartitionRules, guests: &BTreeMap<String, u8>) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for (a, &sa) in guests {
        for (b, &sb) in guests.range::<String, _>((
            std::ops::Bound::Excluded(a.clone()),
            std::ops::Bound::Unbounded,
        )) {
            if let Some(expect) = expectation(rules, sa, sb) {
                pairs.push((a.clone(), b.clone(), expect));
            }
        }
    }
    pairs
}

impl Expectation {
    /// The range a median round trip may fall in, milliseconds.
    pub fn bounds(&self) -> (f64, f64) {
        (
            self.delay_ms - self.jitter_ms,
            self.delay_ms + self.jitter_ms + TOLERANCE_MS,
        )
    }

    /// Judges round trips `rtts_ms` (of the echoes that came back).
    pub fn judge(&self, rtts_ms: &[f64]) -> RttCheck {
        let mut sorted = rtts_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let (min, max) = (
            sorted.first().copied().unwrap_or(0.0),
            sorted.last().copied().unwrap_or(0.0),
        );
        let (low, high) = self.bounds();
        let spread_ok =
            self.jitter_ms == 0.0 || self.correlated || max - min >= self.jitter_ms / 2.0;
        RttCheck {
            intended_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            samples: sorted.len() as u32,
            p50_ms: p50,
            min_ms: min,
            max_ms: max,
            ok: !sorted.is_empty() && (low..=high).contains(&p50) && spread_ok,
        }
    }
}

/// Puts the timed pairs' verdicts into `report`: each on the pair check of
/// (first, second), a mismatch for each that does not fit.
pub fn add_to_report(report: &mut VerifyReport, timed: &[Timed]) {
    for (a, b, expect, rtts) in timed {
        let check = expect.judge(rtts);
        if !check.ok {
            let (low, high) = expect.bounds();
            report.mismatches.push(if check.samples == 0 {
                format!("{a} <-> {b}: none of {PROBES} echoes came back to time the delay")
            } else {
                format!(
                    "{a} <-> {b}: round trip p50 {:.1} ms ({:.1} to {:.1} ms over {} echoes), but the policy means {:.0} ms (p50 within {low:.0} to {high:.0} ms{})",
                    check.p50_ms,
                    check.min_ms,
                    check.max_ms,
                    check.samples,
                    expect.delay_ms,
                    if expect.jitter_ms > 0.0 && !expect.correlated {
                        format!(", a spread of at least {:.0} ms", expect.jitter_ms / 2.0)
                    } else {
                        String::new()
                    }
                )
            });
        }
        if let Some(pair) = report
            .pairs
            .iter_mut()
            .find(|pair| pair.from == *a && pair.to == *b)
        {
            pair.ok &= check.ok;
            pair.rtt = Some(check);
        }
    }
    report.ok = report.mismatches.is_empty();
}

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

    #[test]
    fn a_round_trip_adds_both_directions_delays() {
        let rules = compiled("cut --from a --to b --delay 50ms", "a b");
        let expect = expectation(&rules, 0, 1).unwrap();
        assert_eq!(expect.delay_ms, 50.0);
        assert_eq!(expectation(&rules, 1, 0), Some(expect), "either order");
        let rules = compiled("all --delay 30ms --jitter 5ms", "a b");
        let expect = expectation(&rules, 0, 1).unwrap();
        assert_eq!((expect.delay_ms, expect.jitter_ms), (60.0, 10.0));
        assert_eq!(expect.bounds(), (50.0, 75.0));
        assert_eq!(longest_hold_ms(&rules), 35);
    }

    #[test]
    fn cut_undelayed_and_other_ports_pairs_are_not_timed() {
        let rules = compiled("isolate a + all --delay 10ms", "a b c");
        assert_eq!(expectation(&rules, 0, 1), None, "a is cut off");
        assert!(expectation(&rules, 1, 2).is_some());
        let rules = compiled("cut --from a --to b --delay 10ms --port 80", "a b");
        assert_eq!(
            expectation(&rules, 0, 1),
            None,
            "the probes' port is not 80"
        );
        let rules = compiled("cut --from a --to b --loss 30", "a b");
        assert_eq!(expectation(&rules, 0, 1), None);
        let timed = pairs_to_time(&compiled("all --delay 10ms", "a b c"), &guests("a b c"));
        let names: Vec<(&str, &str)> = timed
            .iter()
            .map(|(a, b, _)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(names, [("a", "b"), ("a", "c"), ("b", "c")]);
    }

    #[test]
    fn echoes_fit_when_the_median_is_within_the_tolerance() {
        let expect = Expectation {
            delay_ms: 50.0,
            jitter_ms: 0.0,
            correlated: false,
        };
        assert!(expect.judge(&[50.2, 50.3, 51.0, 50.1]).ok);
        assert!(!expect.judge(&[0.1, 0.1, 0.2]).ok, "no delay in force");
        assert!(!expect.judge(&[56.0, 57.0, 58.0]).ok, "too slow");
        assert!(!expect.judge(&[]).ok, "nothing came back");
        let jittery = Expectation {
            jitter_ms: 20.0,
            ..expect
        };
        assert!(jittery.judge(&[35.0, 48.0, 52.0, 66.0]).ok);
        assert!(
            !jittery.judge(&[50.1, 50.2, 50.3]).ok,
            "a jitter not in force shows as no spread"
        );
        let correlated = Expectation {
            correlated: true,
            ..jittery
        };
        assert!(correlated.judge(&[50.1, 50.2, 50.3]).ok);
    }
}
