//! What `verify` should see through a pair under a `--rate` clause: the
//! rate it should be delivered at, how to offer more than that for long
//! enough to see it (the probe's budget), and whether what arrived fits.
//! Pure.
//!
//! The probe: UDP datagrams from the sender to the receiver at four times
//! the rate (a limiter drops what is over it, whatever the pacing; TCP
//! would instead slow down to what its congestion window finds, which
//! measures TCP, not the limiter). First a warm-up long enough to drain the
//! fullest bucket a dataplane kept (nftables' `limit` held one second of
//! the rate plus the burst; its tbf shapers now hold 100 ms: the warm-up
//! has not been shortened yet), then a window of [`WINDOW_MS`] in which the
//! bytes of the datagrams sent are counted at the receiver (IP bytes: the
//! eBPF bucket counts Ethernet frames, 14 bytes more per datagram, about
//! 1 % here). The delivered rate fits when it is within [`TOLERANCE`] of
//! the intended one, either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PartitionRules, VerifyReport, measure::selects_probes};

/// How far (a share of the intended rate) the delivered rate may be from
/// it, either way.
pub const TOLERANCE: f64 = 0.15;

/// Ordered pairs whose rate one `verify` measures: probes run one after
/// the other (a bucket may be shared by a clause's pairs), about two
/// seconds each, so verify takes at most about eight seconds more.
pub const MAX_PAIRS: usize = 4;

/// The window in which delivered bytes are counted, milliseconds.
pub const WINDOW_MS: u64 = 1_000;

/// The slowest rate measured: slower ones deliver too few datagrams in the
/// window to count (bits per second).
pub const SLOWEST: u64 = 128_000;

/// The fastest verify offers (bits per second): the daemon sends from one
/// thread, and more would measure the probe, not the limiter.
pub const FASTEST_OFFER: u64 = 400_000_000;

/// How many times the intended rate is offered.
const OVERLOAD: u64 = 4;

/// The longest warm-up verify waits for a bucket to drain.
const LONGEST_WARM_UP_MS: u64 = 2_000;

/// IPv4 and UDP headers: counted with the payload.
pub const HEADERS: u64 = 28;

/// A directed pair under a rate: the smallest rate of the classes that
/// select the probes (each class applies its own bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub bits_per_sec: u64,
}

/// Why a pair under a rate is not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmeasured {
    /// A loss, duplication or corruption share applies too: what arrives
    /// depends on which comes first.
    Shares,
    /// Slower than [`SLOWEST`].
    TooSlow,
    /// Faster than verify can offer enough over.
    TooFast,
    /// Beyond [`MAX_PAIRS`].
    Capped,
}

impl Unmeasured {
    pub fn reason(self) -> String {
        match self {
            Unmeasured::Shares => {
                "a loss, duplication or corruption share applies to it too".to_owned()
            }
            Unmeasured::TooSlow => format!("slower than {}", format_bits(SLOWEST as f64)),
            Unmeasured::TooFast => format!(
                "too fast for verify to offer enough over it (it offers at most {})",
                format_bits(FASTEST_OFFER as f64)
            ),
            Unmeasured::Capped => format!("verify measures the first {MAX_PAIRS} pairs"),
        }
    }
}

/// How a probe runs for one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// UDP payload of each datagram, bytes.
    pub payload: usize,
    /// What the sender offers, IP bytes per second.
    pub offered_bytes_per_sec: u64,
    /// Sent before the window: the buckets drain.
    pub warm_up_ms: u64,
    pub window_ms: u64,
}

impl Plan {
    /// The budget for `bits_per_sec`, or why it is not measured.
    pub fn for_rate(bits_per_sec: u64) -> Result<Plan, Unmeasured> {
        if bits_per_sec < SLOWEST {
            return Err(Unmeasured::TooSlow);
        }
        let rate = bits_per_sec / 8;
        let offered = (rate * OVERLOAD).min(FASTEST_OFFER / 8);
        // The fullest bucket a dataplane kept: one second of the rate and
        // a burst of 50 ms of it (at least two full-size frames), as
        // nftables' `limit` did (its tbf shapers hold less).
        let bucket = rate + (rate / 20).max(2 * 1514);
        let over = offered.saturating_sub(rate);
        if over < rate / 2 {
            return Err(Unmeasured::TooFast);
        }
        let warm_up_ms = bucket * 1_000 / over + 200;
        if warm_up_ms > LONGEST_WARM_UP_MS {
            return Err(Unmeasured::TooFast);
        }
        // About a hundred datagrams a second at the rate, and at least 512
        // bytes each, so header accounting differs by little.
        let payload = (rate / 100).saturating_sub(HEADERS).clamp(512, 1400) as usize;
        Ok(Plan {
            payload,
            offered_bytes_per_sec: offered,
            warm_up_ms,
            window_ms: WINDOW_MS,
        })
    }

    /// IP bytes of one datagram.
    pub fn datagram_bytes(&self) -> u64 {
        self.payload as u64 + HEADERS
    }
}

/// What the probe of one pair counted in the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// IP bytes sent in the window.
    pub sent_bytes: u64,
    /// IP bytes of those that arrived.
    pub delivered_bytes: u64,
    pub window_ms: u64,
}

/// How one pair's delivered rate measured against its rate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RateCheck {
    pub intended_bits_per_sec: u64,
    pub offered_bits_per_sec: f64,
    pub delivered_bits_per_sec: f64,
    pub window_ms: u64,
    /// Delivered within the tolerance of the intended rate.
    pub ok: bool,
    /// The sender could not offer clearly more than the rate: not judged.
    #[serde(default)]
    pub unjudged: bool,
}

/// The rate of the classes that limit the probes from `from` to `to`;
/// Ok(None) when none does, or the direction is cut.
pub fn expectation(
    rules: &PartitionRules,
    from: u8,
    to: u8,
) -> Result<Option<Expectation>, Unmeasured> {
    let classes = rules
        .faults
        .iter()
        .filter(|class| class.pairs.contains(&(from, to)) && selects_probes(class));
    let Some(bits_per_sec) = classes
        .clone()
        .filter_map(|class| class.impair.rate_bits_per_sec)
        .min()
    else {
        return Ok(None);
    };
    let mut shares = classes.filter(|class| {
        class.loss_percent > 0
            || class.impair.duplicate_percent.is_some()
            || class.impair.corrupt_percent.is_some()
    });
    if let Some(class) = shares.next() {
        if class.loss_percent >= 100 {
            return Ok(None);
        }
        return Err(Unmeasured::Shares);
    }
    Ok(Some(Expectation { bits_per_sec }))
}

/// A pair to measure: sender and receiver names, the rate and the plan.
pub type Pair = (String, String, Expectation, Plan);

/// The ordered pairs of `guests` (senders in name order, then receivers)
/// whose rate `verify` measures, at most [`MAX_PAIRS`], and the others
/// under a rate with why they are not.
pub fn pairs_to_measure(
    rules: &PartitionRules,
    guests: &BTreeMap<String, u8>,
) -> (Vec<Pair>, Vec<(String, String, Unmeasured)>) {
    let (mut measured, mut skipped) = (Vec::new(), Vec::new());
    for (from, &a) in guests {
        for (to, &b) in guests.iter().filter(|(to, _)| *to != from) {
            let planned = match expectation(rules, a, b) {
                Ok(None) => continue,
                Ok(Some(expect)) => Plan::for_rate(expect.bits_per_sec).map(|plan| (expect, plan)),
                Err(why) => Err(why),
            };
            match planned {
                Ok(_) if measured.len() == MAX_PAIRS => {
                    skipped.push((from.clone(), to.clone(), Unmeasured::Capped));
                }
                Ok((expect, plan)) => measured.push((from.clone(), to.clone(), expect, plan)),
                Err(why) => skipped.push((from.clone(), to.clone(), why)),
            }
        }
    }
    (measured, skipped)
}

impl Expectation {
    /// The delivered rates that fit, bits per second.
    pub fn bounds(&self) -> (f64, f64) {
        let rate = self.bits_per_sec as f64;
        (rate * (1.0 - TOLERANCE), rate * (1.0 + TOLERANCE))
    }

    /// Judges what the probe counted.
    pub fn judge(&self, sample: &Sample) -> RateCheck {
        let per_sec = |bytes: u64| bytes as f64 * 8.0 * 1_000.0 / sample.window_ms.max(1) as f64;
        let (offered, delivered) = (per_sec(sample.sent_bytes), per_sec(sample.delivered_bytes));
        let (low, high) = self.bounds();
        // Offered less than the top of the band: a delivered rate below it
        // could be the sender's, not the limiter's.
        let unjudged = offered < high;
        RateCheck {
            intended_bits_per_sec: self.bits_per_sec,
            offered_bits_per_sec: offered,
            delivered_bits_per_sec: delivered,
            window_ms: sample.window_ms,
            ok: unjudged || (low..=high).contains(&delivered),
            unjudged,
        }
    }
}

/// Puts the measured pairs' verdicts into `report` (on each pair's check,
/// a mismatch for each that does not fit) and a note for each pair under a
/// rate that was not measured or judged.
pub fn add_to_report(
    report: &mut VerifyReport,
    measured: &[(String, String, Expectation, Sample)],
    skipped: &[(String, String, Unmeasured)],
) {
    for (from, to, expect, sample) in measured {
        let check = expect.judge(sample);
        let (low, high) = expect.bounds();
        if check.unjudged {
            report.notes.push(format!(
                "{from} -> {to}: rate not judged: verify offered only {} (the policy means {})",
                format_bits(check.offered_bits_per_sec),
                format_bits(expect.bits_per_sec as f64)
            ));
        } else if !check.ok {
            report.mismatches.push(format!(
                "{from} -> {to}: {} delivered of {} offered over {} ms, but the policy means {} ({} to {})",
                format_bits(check.delivered_bits_per_sec),
                format_bits(check.offered_bits_per_sec),
                check.window_ms,
                format_bits(expect.bits_per_sec as f64),
                format_bits(low),
                format_bits(high)
            ));
        }
        if let Some(pair) = report
            .pairs
            .iter_mut()
            .find(|pair| pair.from == *from && pair.to == *to)
        {
            pair.ok &= check.ok;
            pair.rate = Some(check);
        }
    }
    for (from, to, why) in skipped {
        report.notes.push(format!(
            "{from} -> {to}: rate not measured: {}",
            why.reason()
        ));
    }
    report.ok = report.mismatches.is_empty();
}

/// A rate for people: `1.00 Mbit/s`, `640.0 kbit/s`.
pub fn format_bits(bits_per_sec: f64) -> String {
    if bits_per_sec >= 1e9 {
        format!("{:.2} Gbit/s", bits_per_sec / 1e9)
    } else if bits_per_sec >= 1e6 {
        format!("{:.2} Mbit/s", bits_per_sec / 1e6)
    } else {
        format!("{:.1} kbit/s", bits_per_sec / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

    #[test]
    fn the_budget_offers_four_times_the_rate_after_the_buckets_drain() {
        let plan = Plan::for_rate(1_000_000).unwrap();
        assert_eq!(plan.offered_bytes_per_sec, 500_000);
        // One second and 50 ms of 125 kB/s, drained at 375 kB/s, + 200 ms.
        assert_eq!(plan.warm_up_ms, 550);
        assert_eq!((plan.payload, plan.datagram_bytes()), (1222, 1250));
        assert_eq!(plan.window_ms, WINDOW_MS);
        // Slow rates: bigger datagrams than a hundredth, a longer drain
        // (the burst is two frames at least).
        let slow = Plan::for_rate(SLOWEST).unwrap();
        assert_eq!(slow.payload, 512);
        assert!(slow.warm_up_ms > 550 && slow.warm_up_ms <= LONGEST_WARM_UP_MS);
        assert_eq!(Plan::for_rate(64_000), Err(Unmeasured::TooSlow));
        // Fast rates: the offer is capped; too close to it is not measured.
        let fast = Plan::for_rate(200_000_000).unwrap();
        assert_eq!(fast.offered_bytes_per_sec, FASTEST_OFFER / 8);
        assert_eq!(fast.payload, 1400);
        assert_eq!(Plan::for_rate(300_000_000), Err(Unmeasured::TooFast));
        assert_eq!(Plan::for_rate(1_000_000_000), Err(Unmeasured::TooFast));
    }

    fn sample(sent: u64, delivered: u64) -> Sample {
        Sample {
            sent_bytes: sent,
            delivered_bytes: delivered,
            window_ms: 1_000,
        }
    }

    #[test]
    fn delivered_rates_fit_within_the_tolerance_either_way() {
        let expect = Expectation {
            bits_per_sec: 1_000_000,
        };
        assert_eq!(expect.bounds(), (850_000.0, 1_150_000.0));
        let check = expect.judge(&sample(500_000, 123_000));
        assert!(check.ok && !check.unjudged, "{check:?}");
        assert_eq!(check.delivered_bits_per_sec, 984_000.0);
        assert_eq!(check.offered_bits_per_sec, 4_000_000.0);
        assert!(!expect.judge(&sample(500_000, 150_000)).ok, "20 % over");
        assert!(!expect.judge(&sample(500_000, 100_000)).ok, "20 % under");
        assert!(!expect.judge(&sample(500_000, 500_000)).ok, "no limit");
        assert!(!expect.judge(&sample(500_000, 0)).ok, "nothing arrived");
        let half_window = Sample {
            window_ms: 500,
            ..sample(250_000, 62_000)
        };
        assert!(expect.judge(&half_window).ok);
        // A sender that could not offer enough is not judged.
        let slow_sender = expect.judge(&sample(120_000, 100_000));
        assert!(slow_sender.ok && slow_sender.unjudged);
    }

    #[test]
    fn the_smallest_rate_of_the_pairs_classes_applies() {
        let rules = compiled("cut --from a --to b --rate 1mbit + all --rate 2mbit", "a b");
        assert_eq!(
            expectation(&rules, 0, 1),
            Ok(Some(Expectation {
                bits_per_sec: 1_000_000
            }))
        );
        assert_eq!(
            expectation(&rules, 1, 0),
            Ok(Some(Expectation {
                bits_per_sec: 2_000_000
            }))
        );
        let rules = compiled("cut --from a --to b --rate 1mbit --port 80", "a b");
        assert_eq!(expectation(&rules, 0, 1), Ok(None), "not the probes' port");
        let rules = compiled("cut --from a --to b --rate 1mbit --loss 10", "a b");
        assert_eq!(expectation(&rules, 0, 1), Err(Unmeasured::Shares));
        let rules = compiled("isolate a + all --rate 1mbit", "a b c");
        assert_eq!(expectation(&rules, 0, 1), Ok(None), "cut");
        assert!(matches!(expectation(&rules, 1, 2), Ok(Some(_))));
    }

    #[test]
    fn at_most_four_pairs_are_measured_and_the_rest_noted() {
        let rules = compiled("all --rate 1mbit", "a b c");
        let (measured, skipped) = pairs_to_measure(&rules, &guests("a b c"));
        let names: Vec<(&str, &str)> = measured
            .iter()
            .map(|(a, b, _, _)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(names, [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c")]);
        assert_eq!(
            skipped,
            [
                ("c".into(), "a".into(), Unmeasured::Capped),
                ("c".into(), "b".into(), Unmeasured::Capped)
            ]
        );
        let rules = compiled("cut --from a --to b --rate 8kbit", "a b");
        let (measured, skipped) = pairs_to_measure(&rules, &guests("a b"));
        assert!(measured.is_empty());
        assert_eq!(skipped, [("a".into(), "b".into(), Unmeasured::TooSlow)]);
        assert!(Unmeasured::TooSlow.reason().contains("128.0 kbit/s"));
    }

    #[test]
    fn rates_print_in_their_unit() {
        assert_eq!(format_bits(984_000.0), "984.0 kbit/s");
        assert_eq!(format_bits(1_180_000.0), "1.18 Mbit/s");
        assert_eq!(format_bits(2.5e9), "2.50 Gbit/s");
    }
}
