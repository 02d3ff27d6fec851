//! What `verify` should see through a pair with a loss, duplication or
//! corruption share: the datagrams expected to arrive of those sent, and
//! whether a count is within tolerance. Pure.

use super::{FaultClass, PartitionRules};

/// Datagrams `verify` sends per pair when some pair's share is measured:
/// enough that 5 standard deviations stay within about ±18 % of the sent.
pub const MEASURED_PER_PAIR: u32 = 200;

/// IP protocol number of verify's probes.
const UDP: u8 = 17;

/// What a pair's classes do to verify's datagrams (UDP between ephemeral
/// ports, so classes of one port are taken not to select them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expectation {
    /// The share of datagrams that arrive (not dropped, not damaged).
    pub delivered: f64,
    /// The share of arriving datagrams that arrive twice.
    pub duplicated: f64,
    /// A rate limit applies: what arrives depends on the burst, not judged.
    pub rate_limited: bool,
}

impl Expectation {
    /// Datagrams expected of `sent`.
    pub fn received(&self, sent: u32) -> f64 {
        f64::from(sent) * self.delivered * (1.0 + self.duplicated)
    }

    /// Whether `got` of `sent` fits: within 5 standard deviations of the
    /// binomial count (at least 2 datagrams), so a correct policy fails
    /// about once in two million runs.
    pub fn fits(&self, sent: u32, got: u32) -> bool {
        (f64::from(got) - self.received(sent)).abs() <= self.tolerance(sent)
    }

    /// How far from the expectation a count may be.
    pub fn tolerance(&self, sent: u32) -> f64 {
        let n = f64::from(sent);
        let p = self.delivered;
        let d = self.duplicated;
        // A datagram yields 0 (lost), 1 or 2 (duplicated) copies.
        let mean = p * (1.0 + d);
        let square = p * (1.0 - d) + 4.0 * p * d;
        let variance = (square - mean * mean).max(0.0);
        (5.0 * (n * variance).sqrt()).max(2.0)
    }

    /// Whether anything about the pair is measured (a share under 100 %).
    pub fn measured(&self) -> bool {
        !self.rate_limited
            && (self.duplicated > 0.0 || (self.delivered > 0.0 && self.delivered < 1.0))
    }
}

/// What the classes that select the pair (`from`, `to`) do to verify's
/// datagrams; every class applies, each drawing on its own.
pub fn expectation(rules: &PartitionRules, from: u8, to: u8) -> Expectation {
    let mut expect = Expectation {
        delivered: 1.0,
        duplicated: 0.0,
        rate_limited: false,
    };
    let mut not_duplicated = 1.0;
    for class in rules
        .faults
        .iter()
        .filter(|class| class.pairs.contains(&(from, to)) && selects_probes(class))
    {
        let share = |percent: Option<u8>| f64::from(percent.unwrap_or(0)) / 100.0;
        expect.delivered *= 1.0 - f64::from(class.loss_percent) / 100.0;
        expect.delivered *= 1.0 - share(class.impair.corrupt_percent);
        not_duplicated *= 1.0 - share(class.impair.duplicate_percent);
        expect.rate_limited |= class.impair.rate_bits_per_sec.is_some();
    }
    expect.duplicated = 1.0 - not_duplicated;
    expect
}

pub(super) fn selects_probes(class: &FaultClass) -> bool {
    class.traffic.port.is_none() && class.traffic.proto.is_none_or(|p| p.number() == UDP)
}

/// Whether `verify` must measure (send many datagrams) under `rules`.
pub fn needs_measuring(rules: &PartitionRules, slots: impl Iterator<Item = u8> + Clone) -> bool {
    slots.clone().any(|from| {
        slots
            .clone()
            .any(|to| from != to && expectation(rules, from, to).measured())
    })
}

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

    #[test]
    fn shares_combine_into_what_should_arrive() {
        let rules = compiled("cut --from a --to b --loss 30", "a b");
        let e = expectation(&rules, 0, 1);
        assert!((e.delivered - 0.7).abs() < 1e-9);
        assert_eq!(e.received(200), 140.0);
        assert!(e.fits(200, 140) && e.fits(200, 125) && !e.fits(200, 100) && !e.fits(200, 200));
        assert_eq!(expectation(&rules, 1, 0).delivered, 1.0, "one way");

        let rules = compiled(
            "all --duplicate 50 + cut --from a --to b --corrupt 10",
            "a b",
        );
        let e = expectation(&rules, 0, 1);
        assert!((e.delivered - 0.9).abs() < 1e-9 && (e.duplicated - 0.5).abs() < 1e-9);
        assert!((e.received(200) - 270.0).abs() < 1e-9);
        assert!(e.fits(200, 270) && !e.fits(200, 200));
        assert!(e.measured());
    }

    #[test]
    fn cuts_ports_and_rates_are_not_measured() {
        let rules = compiled("isolate a", "a b");
        assert_eq!(expectation(&rules, 0, 1).delivered, 0.0);
        assert!(
            !expectation(&rules, 0, 1).measured(),
            "a cut is judged as before"
        );
        let rules = compiled("cut --from a --to b --loss 50 --port 53", "a b");
        assert_eq!(
            expectation(&rules, 0, 1).delivered,
            1.0,
            "not the probes' port"
        );
        let rules = compiled("cut --from a --to b --loss 50 --proto tcp", "a b");
        assert_eq!(expectation(&rules, 0, 1).delivered, 1.0);
        let rules = compiled("cut --from a --to b --rate 1mbit --loss 10", "a b");
        assert!(!expectation(&rules, 0, 1).measured());
        assert!(!needs_measuring(&rules, [0u8, 1].into_iter()));
        let rules = compiled("cut --from a --to b --loss 10", "a b");
        assert!(needs_measuring(&rules, [0u8, 1].into_iter()));
    }
}
