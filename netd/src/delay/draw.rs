//! Drawing each packet's delay: uniform over delay ± jitter, each draw
//! leaning on the last by the correlation, as netem draws it (the next
//! random number is `correlation * last + (1 - correlation) * fresh`).
//! Pure; the random numbers come from a small seeded generator, so a draw
//! sequence can be replayed.

use crate::partition::fault::Impairments;

/// One fault class's delay, as the delay line uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelaySpec {
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// 0-100.
    pub correlation_percent: u8,
}

impl DelaySpec {
    /// The delay a clause's impairments ask for, if any.
    pub fn of(impair: &Impairments) -> Option<DelaySpec> {
        let delay_ms = impair.delay_ms?;
        Some(DelaySpec {
            delay_ns: u64::from(delay_ms) * 1_000_000,
            jitter_ns: u64::from(impair.jitter_ms.unwrap_or(0)) * 1_000_000,
            correlation_percent: impair.correlation_percent.unwrap_or(0).min(100),
        })
    }
}

/// A class's sequence of delays.
#[derive(Clone, Debug)]
pub struct DelayDraw {
    spec: DelaySpec,
    /// The correlation as a share of 2^32.
    rho: u64,
    last: u32,
    state: u64,
}

impl DelayDraw {
    pub fn new(spec: DelaySpec, seed: u64) -> DelayDraw {
        let rho = (u64::from(spec.correlation_percent) << 32) / 100;
        let mut draw = DelayDraw {
            spec,
            rho,
            last: 0,
            state: seed,
        };
        draw.last = draw.fresh();
        draw
    }

    /// splitmix64: fast, and good enough for spreading delays.
    fn fresh(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    /// The next packet's delay, in nanoseconds.
    pub fn next_ns(&mut self) -> u64 {
        let DelaySpec {
            delay_ns,
            jitter_ns,
            ..
        } = self.spec;
        if jitter_ns == 0 {
            return delay_ns;
        }
        let fresh = u64::from(self.fresh());
        let value =
            ((self.rho * u64::from(self.last) + ((1 << 32) - self.rho) * fresh) >> 32) as u32;
        self.last = value;
        // Uniform over [delay - jitter, delay + jitter].
        let spread = 2 * jitter_ns + 1;
        delay_ns - jitter_ns + ((u128::from(value) * u128::from(spread)) >> 32) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(delay_ms: u64, jitter_ms: u64, correlation_percent: u8) -> DelaySpec {
        DelaySpec {
            delay_ns: delay_ms * 1_000_000,
            jitter_ns: jitter_ms * 1_000_000,
            correlation_percent,
        }
    }

    fn draws(spec: DelaySpec, n: usize) -> Vec<u64> {
        let mut draw = DelayDraw::new(spec, 7);
        (0..n).map(|_| draw.next_ns()).collect()
    }

    /// Mean absolute difference between consecutive draws.
    fn mean_step(values: &[u64]) -> f64 {
        let steps: f64 = values
            .windows(2)
            .map(|w| (w[0] as f64 - w[1] as f64).abs())
            .sum();
        steps / (values.len() - 1) as f64
    }

    #[test]
    fn without_jitter_every_packet_gets_the_delay() {
        assert!(draws(spec(50, 0, 0), 100).iter().all(|&d| d == 50_000_000));
    }

    #[test]
    fn jitter_spreads_uniformly_within_delay_plus_minus_jitter() {
        let values = draws(spec(50, 10, 0), 20_000);
        assert!(
            values
                .iter()
                .all(|&d| (40_000_000..=60_000_000).contains(&d))
        );
        let mean = values.iter().sum::<u64>() as f64 / values.len() as f64;
        assert!((mean - 50e6).abs() < 0.3e6, "mean {mean}");
        // Uniform: about a quarter in each quarter of the range.
        let low = values.iter().filter(|&&d| d < 45_000_000).count();
        assert!((4_500..=5_500).contains(&low), "{low}");
    }

    #[test]
    fn correlation_makes_consecutive_draws_closer() {
        let free = mean_step(&draws(spec(50, 10, 0), 10_000));
        let leaning = mean_step(&draws(spec(50, 10, 75), 10_000));
        // Uncorrelated uniform steps average a third of the range (6.7 ms).
        assert!((6.2e6..7.2e6).contains(&free), "{free}");
        assert!(leaning < free / 2.0, "{leaning} vs {free}");
        let stuck = draws(spec(50, 10, 100), 100);
        assert!(stuck.windows(2).all(|w| w[0] == w[1]), "100 %: one value");
    }

    #[test]
    fn a_seed_replays_the_same_delays() {
        let mut a = DelayDraw::new(spec(20, 5, 25), 42);
        let mut b = DelayDraw::new(spec(20, 5, 25), 42);
        assert!((0..100).all(|_| a.next_ns() == b.next_ns()));
    }

    #[test]
    fn specs_come_from_a_clause_impairments() {
        let impair = Impairments {
            delay_ms: Some(50),
            jitter_ms: Some(10),
            correlation_percent: Some(25),
            ..Impairments::default()
        };
        assert_eq!(DelaySpec::of(&impair), Some(spec(50, 10, 25)));
        assert_eq!(DelaySpec::of(&Impairments::default()), None);
    }
}
