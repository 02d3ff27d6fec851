//! Faults beyond cuts: what a clause does to the packets it selects
//! (`Impairments`: delay, jitter, loss, duplication, corruption, rate) and
//! which packets of a pair it selects (`Traffic`: a port, a protocol), with
//! the words that write them (`--delay 50ms`, `--rate 1mbit`,
//! `--port 5432/tcp`) read and printed both ways. Pure.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::PartitionError;

/// The longest delay a clause may add: the delay line holds packets in
/// memory, and a longer one is a cut by another name.
pub const MAX_DELAY_MS: u32 = 10_000;

/// Rates from 8 kbit/s (one full-size packet a second and a half) to
/// 100 Gbit/s (more than a veth carries).
pub const MIN_RATE_BITS: u64 = 8_000;
pub const MAX_RATE_BITS: u64 = 100_000_000_000;

/// What a clause does to the packets it selects, besides the loss share
/// (`Fault::loss_percent`). All None: the clause cuts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Impairments {
    /// Added one-way delay, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u32>,
    /// Each packet's delay is drawn from delay ± jitter (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u32>,
    /// How much each drawn jitter leans on the previous one, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_percent: Option<u8>,
    /// The share of selected packets sent twice, 1-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_percent: Option<u8>,
    /// The share of selected packets damaged on the way, 1-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt_percent: Option<u8>,
    /// Each sender's selected packets limited to this many bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bits_per_sec: Option<u64>,
}

impl Impairments {
    pub fn is_empty(&self) -> bool {
        *self == Impairments::default()
    }

    /// Checks the values together: jitter and correlation need a delay,
    /// jitter is at most the delay, everything within its range.
    pub fn check(&self) -> Result<(), PartitionError> {
        if let Some(delay) = self.delay_ms
            && !(1..=MAX_DELAY_MS).contains(&delay)
        {
            return Err(PartitionError::DelayOutOfRange {
                text: format_millis(delay),
            });
        }
        match (self.delay_ms, self.jitter_ms, self.correlation_percent) {
            (None, Some(_), _) => return Err(PartitionError::NeedsDelay { option: "--jitter" }),
            (None, _, Some(_)) => {
                return Err(PartitionError::NeedsDelay {
                    option: "--correlation",
                });
            }
            (Some(delay), Some(jitter), _) if jitter > delay => {
                return Err(PartitionError::JitterOverDelay {
                    jitter: format_millis(jitter),
                    delay: format_millis(delay),
                });
            }
            (_, None, Some(_)) => return Err(PartitionError::CorrelationWithoutJitter),
            _ => {}
        }
        if let Some(correlation) = self.correlation_percent
            && correlation > 100
        {
            return Err(PartitionError::PercentOutOfRange {
                option: "--correlation",
                text: correlation.to_string(),
                low: 0,
            });
        }
        for (option, value) in [
            ("--duplicate", self.duplicate_percent),
            ("--corrupt", self.corrupt_percent),
        ] {
            if let Some(percent) = value
                && !(1..=100).contains(&percent)
            {
                return Err(PartitionError::PercentOutOfRange {
                    option,
                    text: percent.to_string(),
                    low: 1,
                });
            }
        }
        if let Some(rate) = self.rate_bits_per_sec
            && !(MIN_RATE_BITS..=MAX_RATE_BITS).contains(&rate)
        {
            return Err(PartitionError::RateOutOfRange {
                text: format_rate(rate),
            });
        }
        Ok(())
    }

    /// The options that set these again, in a fixed order.
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(delay) = self.delay_ms {
            words.push(format!("--delay {}", format_millis(delay)));
        }
        if let Some(jitter) = self.jitter_ms {
            words.push(format!("--jitter {}", format_millis(jitter)));
        }
        if let Some(correlation) = self.correlation_percent {
            words.push(format!("--correlation {correlation}"));
        }
        if let Some(duplicate) = self.duplicate_percent {
            words.push(format!("--duplicate {duplicate}"));
        }
        if let Some(corrupt) = self.corrupt_percent {
            words.push(format!("--corrupt {corrupt}"));
        }
        if let Some(rate) = self.rate_bits_per_sec {
            words.push(format!("--rate {}", format_rate(rate)));
        }
        words
    }
}

/// A transport protocol a clause may select.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    Tcp,
    Udp,
    Icmp,
}

impl L4 {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Icmp => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Icmp => "icmp",
        }
    }

    fn parse(text: &str) -> Result<L4, PartitionError> {
        match text {
            "tcp" => Ok(L4::Tcp),
            "udp" => Ok(L4::Udp),
            "icmp" => Ok(L4::Icmp),
            _ => Err(PartitionError::BadProto {
                text: text.to_owned(),
            }),
        }
    }
}

impl fmt::Display for L4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which packets of a selected pair a clause applies to. Nothing set: all.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Traffic {
    /// Only this protocol; with a port and no protocol, TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<L4>,
    /// Only packets to or from this port (either end of a connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Traffic {
    pub fn is_all(&self) -> bool {
        self.proto.is_none() && self.port.is_none()
    }

    pub fn check(&self) -> Result<(), PartitionError> {
        match (self.port, self.proto) {
            (Some(0), _) => Err(PartitionError::BadPort {
                text: "0".to_owned(),
            }),
            (Some(port), Some(L4::Icmp)) => Err(PartitionError::PortOnIcmp { port }),
            _ => Ok(()),
        }
    }

    /// Whether a packet of protocol `proto` between ports `sport` and
    /// `dport` is selected (ports are 0 for protocols without them).
    pub fn matches(&self, proto: u8, sport: u16, dport: u16) -> bool {
        let proto_ok = match self.proto {
            Some(l4) => l4.number() == proto,
            None if self.port.is_some() => proto == L4::Tcp.number() || proto == L4::Udp.number(),
            None => true,
        };
        proto_ok && self.port.is_none_or(|port| port == sport || port == dport)
    }

    /// The options that select it again.
    pub fn words(&self) -> Vec<String> {
        match (self.port, self.proto) {
            (Some(port), Some(proto)) => vec![format!("--port {port}/{proto}")],
            (Some(port), None) => vec![format!("--port {port}")],
            (None, Some(proto)) => vec![format!("--proto {proto}")],
            (None, None) => Vec::new(),
        }
    }

    /// Reads `--port N[/tcp|udp]` into this selection.
    pub fn set_port(&mut self, text: &str) -> Result<(), PartitionError> {
        let (number, proto) = match text.split_once('/') {
            Some((number, proto)) => (number, Some(L4::parse(proto)?)),
            None => (text, None),
        };
        let port = match number.parse::<u16>() {
            Ok(port @ 1..) if number.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(PartitionError::BadPort {
                    text: text.to_owned(),
                });
            }
        };
        self.port = Some(port);
        if proto.is_some() {
            self.set_proto(proto)?;
        }
        Ok(())
    }

    /// Reads `--proto tcp|udp|icmp`; a second, different one is refused.
    pub fn set_proto_word(&mut self, text: &str) -> Result<(), PartitionError> {
        self.set_proto(Some(L4::parse(text)?))
    }

    fn set_proto(&mut self, proto: Option<L4>) -> Result<(), PartitionError> {
        match (self.proto, proto) {
            (Some(old), Some(new)) if old != new => Err(PartitionError::TwoProtos {
                first: old.name(),
                second: new.name(),
            }),
            _ => {
                self.proto = self.proto.or(proto);
                Ok(())
            }
        }
    }
}

/// Reads a percentage option (`--duplicate 5`, `--corrupt 1%`): a whole
/// number from `low` to 100.
pub fn parse_percent(option: &'static str, text: &str, low: u8) -> Result<u8, PartitionError> {
    let digits = text.strip_suffix('%').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PartitionError::BadPercent {
            option,
            text: text.to_owned(),
            low,
        });
    }
    match digits.parse::<u32>() {
        Ok(percent) if (u32::from(low)..=100).contains(&percent) => Ok(percent as u8),
        _ => Err(PartitionError::PercentOutOfRange {
            option,
            text: text.to_owned(),
            low,
        }),
    }
}

/// Reads a delay or jitter: a whole number of `us` (rounded up to a
/// millisecond), `ms` or `s`: `50ms`, `1s`, `0ms` (jitter only).
pub fn parse_millis(option: &'static str, text: &str) -> Result<u32, PartitionError> {
    let bad = || PartitionError::BadDelay {
        option,
        text: text.to_owned(),
    };
    let (digits, scale_us) = if let Some(digits) = text.strip_suffix("ms") {
        (digits, 1_000u64)
    } else if let Some(digits) = text.strip_suffix("us") {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('s') {
        (digits, 1_000_000)
    } else {
        return Err(bad());
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_long = || PartitionError::DelayOutOfRange {
        text: text.to_owned(),
    };
    let micros = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale_us))
        .ok_or_else(too_long)?;
    let millis = micros.div_ceil(1_000);
    if millis > u64::from(MAX_DELAY_MS) {
        return Err(too_long());
    }
    Ok(millis as u32)
}

/// Milliseconds as `--delay` takes them: `50ms`, `2s`.
pub fn format_millis(millis: u32) -> String {
    if millis >= 1_000 && millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

/// Reads `--rate`: a whole or decimal number and a unit in bits per
/// second, decimal as tc counts them: `bit`, `kbit`, `mbit`, `gbit`.
pub fn parse_rate(text: &str) -> Result<u64, PartitionError> {
    let bad = || PartitionError::BadRate {
        text: text.to_owned(),
    };
    let lower = text.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = lower.split_at(split);
    let scale: u64 = match unit {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || fraction.len() > 3 {
        return Err(bad());
    }
    let out_of_range = || PartitionError::RateOutOfRange {
        text: text.to_owned(),
    };
    // Thousandths, so that 1.5mbit is exact.
    let thousandths = format!("{whole}{fraction:0<3}")
        .parse::<u64>()
        .map_err(|_| out_of_range())?;
    let bits = thousandths
        .checked_mul(scale)
        .map(|n| n / 1_000)
        .ok_or_else(out_of_range)?;
    if !(MIN_RATE_BITS..=MAX_RATE_BITS).contains(&bits) {
        return Err(out_of_range());
    }
    Ok(bits)
}

/// Bits per second the way `--rate` takes them: `1mbit`, `1500kbit`.
pub fn format_rate(bits: u64) -> String {
    for (scale, unit) in [
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
    ] {
        if bits >= scale && bits.is_multiple_of(scale) {
            return format!("{}{unit}", bits / scale);
        }
    }
    format!("{bits}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_take_ms_us_and_s() {
        assert_eq!(parse_millis("--delay", "50ms"), Ok(50));
        assert_eq!(parse_millis("--delay", "2s"), Ok(2_000));
        assert_eq!(parse_millis("--delay", "1500us"), Ok(2));
        assert_eq!(parse_millis("--jitter", "0ms"), Ok(0));
        for text in ["50", "ms", "5.5ms", "-5ms", "5 ms", "5m"] {
            let err = parse_millis("--delay", text).unwrap_err();
            assert!(
                err.to_string().contains("e.g. --delay 50ms"),
                "{text}: {err}"
            );
        }
        let err = parse_millis("--delay", "11s").unwrap_err();
        assert!(err.to_string().contains("at most 10s"), "{err}");
        assert!(parse_millis("--delay", "99999999999999999999s").is_err());
        assert_eq!(format_millis(50), "50ms");
        assert_eq!(format_millis(2_000), "2s");
        assert_eq!(format_millis(2_500), "2500ms");
    }

    #[test]
    fn rates_are_bits_per_second_in_tc_units() {
        assert_eq!(parse_rate("1mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(1_500_000));
        assert_eq!(parse_rate("64kbit"), Ok(64_000));
        assert_eq!(parse_rate("10gbit"), Ok(10_000_000_000));
        assert_eq!(parse_rate("8000bit"), Ok(8_000));
        for text in ["1xbit", "1", "mbit", "1mb", "1..5mbit", "1.0005mbit", ""] {
            let err = parse_rate(text).unwrap_err();
            assert_eq!(err, PartitionError::BadRate { text: text.into() }, "{text}");
            assert!(err.to_string().contains("kbit, mbit or gbit"), "{err}");
        }
        for text in ["1bit", "7kbit", "101gbit", "99999999999999999999gbit"] {
            let err = parse_rate(text).unwrap_err();
            assert!(
                err.to_string().contains("8kbit to 100gbit"),
                "{text}: {err}"
            );
        }
        assert_eq!(format_rate(1_000_000), "1mbit");
        assert_eq!(format_rate(1_500_000), "1500kbit");
        assert_eq!(format_rate(8_500), "8500bit");
    }

    #[test]
    fn percentages_are_whole_numbers_in_range() {
        assert_eq!(parse_percent("--duplicate", "5", 1), Ok(5));
        assert_eq!(parse_percent("--corrupt", "100%", 1), Ok(100));
        assert_eq!(parse_percent("--correlation", "0", 0), Ok(0));
        let err = parse_percent("--duplicate", "150", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--duplicate 150 is out of range: give a whole percentage from 1 to 100"
        );
        let err = parse_percent("--corrupt", "0.5", 1).unwrap_err();
        assert!(err.to_string().contains("not a percentage"), "{err}");
        assert!(parse_percent("--duplicate", "0", 1).is_err());
    }

    #[test]
    fn ports_and_protocols_select_traffic() {
        let mut traffic = Traffic::default();
        traffic.set_port("5432/tcp").unwrap();
        assert_eq!(
            traffic,
            Traffic {
                proto: Some(L4::Tcp),
                port: Some(5432)
            }
        );
        assert!(traffic.matches(6, 40000, 5432));
        assert!(traffic.matches(6, 5432, 40000), "replies too");
        assert!(!traffic.matches(17, 40000, 5432));
        assert!(!traffic.matches(6, 40000, 5433));
        assert_eq!(traffic.words(), ["--port 5432/tcp"]);

        let mut any = Traffic::default();
        any.set_port("53").unwrap();
        assert!(any.matches(6, 1, 53) && any.matches(17, 53, 1) && !any.matches(1, 0, 0));
        let mut icmp = Traffic::default();
        icmp.set_proto_word("icmp").unwrap();
        assert!(icmp.matches(1, 0, 0) && !icmp.matches(6, 1, 2));
        assert!(Traffic::default().matches(47, 0, 0));

        for text in ["0", "65536", "x", "5432/sctp", "/tcp", "-1"] {
            assert!(Traffic::default().set_port(text).is_err(), "{text}");
        }
        assert!(
            Traffic::default()
                .set_port("5432/sctp")
                .unwrap_err()
                .to_string()
                .contains("tcp, udp or icmp")
        );
        let err = traffic.set_proto_word("udp").unwrap_err();
        assert!(err.to_string().contains("one protocol"), "{err}");
        let icmp_port = Traffic {
            proto: Some(L4::Icmp),
            port: Some(7),
        };
        assert!(icmp_port.check().unwrap_err().to_string().contains("ICMP"));
    }

    #[test]
    fn impairments_are_checked_together() {
        let jitter_only = Impairments {
            jitter_ms: Some(5),
            ..Impairments::default()
        };
        assert!(
            jitter_only
                .check()
                .unwrap_err()
                .to_string()
                .contains("--jitter needs --delay")
        );
        let too_much = Impairments {
            delay_ms: Some(10),
            jitter_ms: Some(20),
            ..Impairments::default()
        };
        assert!(
            too_much
                .check()
                .unwrap_err()
                .to_string()
                .contains("--jitter 20ms is more than --delay 10ms")
        );
        let correlation = Impairments {
            delay_ms: Some(10),
            correlation_percent: Some(20),
            ..Impairments::default()
        };
        assert_eq!(
            correlation.check(),
            Err(PartitionError::CorrelationWithoutJitter)
        );
        let api = Impairments {
            duplicate_percent: Some(101),
            ..Impairments::default()
        };
        assert!(api.check().is_err());
        let api = Impairments {
            rate_bits_per_sec: Some(1),
            ..Impairments::default()
        };
        assert!(api.check().unwrap_err().to_string().contains("--rate 1bit"));
        let api = Impairments {
            delay_ms: Some(0),
            ..Impairments::default()
        };
        assert!(api.check().is_err());
        let fine = Impairments {
            delay_ms: Some(50),
            jitter_ms: Some(10),
            correlation_percent: Some(25),
            duplicate_percent: Some(1),
            corrupt_percent: Some(2),
            rate_bits_per_sec: Some(1_000_000),
        };
        assert_eq!(fine.check(), Ok(()));
        assert_eq!(
            fine.words().join(" "),
            "--delay 50ms --jitter 10ms --correlation 25 --duplicate 1 --corrupt 2 --rate 1mbit"
        );
    }
}
