//! The CLI's words for a partition, both ways: `Partition::from_words`
//! reads `isolate a b --for 5m` (clauses joined by `+`:
//! `isolate a + all --delay 100ms`), `Partition::describe` prints it back;
//! and the durations and times those words and `show` use.

use std::fmt::Write as _;

use super::{
    DAY, Fault, HOUR, MAX_DURATION_SECS, MINUTE, Partition, PartitionError, Verb,
    fault::{parse_millis, parse_percent, parse_rate},
};

/// The word that joins the clauses of one policy.
pub const CLAUSE_SEPARATOR: &str = "+";

/// The word that separates the steps of a schedule.
pub const STEP_SEPARATOR: &str = "then";

impl Partition {
    /// The partition as the CLI words that set it again (after
    /// `netd partition NETWORK`): `isolate a b --keep-outside --loss 30 --for 5m`.
    pub fn describe(&self) -> String {
        let mut line = match &self.first.verb {
            Verb::Schedule { steps, repeat } => {
                let steps = steps
                    .iter()
                    .map(|step| {
                        format!(
                            "{} {}",
                            format_duration(step.secs),
                            step.partition.describe()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(&format!(" {STEP_SEPARATOR} "));
                let repeat = if *repeat { " --repeat" } else { "" };
                format!("schedule{repeat} {steps}")
            }
            _ => self
                .clauses()
                .map(Fault::describe)
                .collect::<Vec<_>>()
                .join(&format!(" {CLAUSE_SEPARATOR} ")),
        };
        if let Some(secs) = self.flap_secs {
            let _ = write!(line, " --flap {}", format_duration(secs));
        }
        if let Some(secs) = self.duration_secs {
            let _ = write!(line, " --for {}", format_duration(secs));
        }
        line
    }

    /// Reads the CLI's words after the network: clauses joined by `+`, each
    /// a verb, its guests (groups separated by `--` for `disjoint` and
    /// `split`), and options anywhere after the verb (see
    /// `Fault::from_words`); `--for DURATION` and `--flap PERIOD` in any
    /// one clause, for the whole policy. Or a schedule: `schedule
    /// [--repeat] DURATION POLICY then DURATION POLICY ...`. Only the
    /// syntax is checked here; `check` and `compile` do the rest.
    pub fn from_words(words: &[String]) -> Result<Partition, PartitionError> {
        if words.first().is_some_and(|word| word == "schedule") {
            return Self::schedule_from_words(&words[1..]);
        }
        let mut globals = Globals::default();
        let mut clauses = Vec::new();
        for clause in words.split(|word| word == CLAUSE_SEPARATOR) {
            if clause.is_empty() {
                return Err(if words.is_empty() {
                    PartitionError::NoVerb
                } else {
                    PartitionError::EmptyClause
                });
            }
            let (fault, found) = Fault::from_words(clause)?;
            for (option, mine, theirs) in [
                ("--for", &mut globals.duration_secs, found.duration_secs),
                ("--flap", &mut globals.flap_secs, found.flap_secs),
            ] {
                if let Some(secs) = theirs {
                    if mine.is_some() {
                        return Err(PartitionError::OptionTwice {
                            option: option.to_owned(),
                        });
                    }
                    *mine = Some(secs);
                }
            }
            clauses.push(fault);
        }
        let mut clauses = clauses.into_iter();
        let first = clauses.next().ok_or(PartitionError::NoVerb)?;
        Ok(Partition {
            first,
            and: clauses.collect(),
            duration_secs: globals.duration_secs,
            flap_secs: globals.flap_secs,
        })
    }

    /// `[--repeat] DURATION POLICY then DURATION POLICY ...`, after `schedule`.
    fn schedule_from_words(words: &[String]) -> Result<Partition, PartitionError> {
        let (repeat, words) = match words.split_first() {
            Some((first, rest)) if first == "--repeat" => (true, rest),
            _ => (false, words),
        };
        let mut steps = Vec::new();
        if !words.is_empty() {
            for (index, step) in words.split(|word| word == STEP_SEPARATOR).enumerate() {
                let Some((duration, policy)) = step.split_first() else {
                    return Err(PartitionError::EmptyStep);
                };
                let secs = parse_duration(duration)
                    .map_err(|_| PartitionError::StepNoDuration { step: index + 1 })?;
                if policy.is_empty() {
                    return Err(PartitionError::EmptyStep);
                }
                steps.push(super::schedule::Step {
                    secs,
                    partition: Partition::from_words(policy)?,
                });
            }
        }
        Ok(Partition::new(Verb::Schedule { steps, repeat }))
    }
}

/// The options of a whole policy, found in one of its clauses.
#[derive(Default)]
struct Globals {
    duration_secs: Option<u64>,
    flap_secs: Option<u64>,
}

impl Fault {
    /// One clause's words.
    pub fn describe(&self) -> String {
        let mut words: Vec<String> = vec![self.verb.name().to_owned()];
        match &self.verb {
            Verb::FullMesh
            | Verb::All
            | Verb::Bridge
            | Verb::MajoritiesRing
            | Verb::MinorityThird
            | Verb::RandomHalves { seed: None }
            | Verb::Schedule { .. } => {}
            Verb::RandomHalves { seed: Some(seed) } => words.push(format!("--seed {seed}")),
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
            Verb::Cut {
                from,
                to,
                both_ways,
            } => {
                words.push(format!("--from {}", from.join(",")));
                words.push(format!("--to {}", to.join(",")));
                if *both_ways {
                    words.push("--both-ways".to_owned());
                }
            }
        }
        if let Some(loss) = self.loss_percent {
            words.push(format!("--loss {loss}"));
        }
        words.extend(self.impair.words());
        words.extend(self.traffic.words());
        words.join(" ")
    }

    /// Reads one clause: a verb, its guests, and its options: `--loss
    /// PERCENT`, the impairments (`--delay`, `--jitter`, `--correlation`,
    /// `--duplicate`, `--corrupt`, `--rate`), the traffic (`--port`,
    /// `--proto`), `--keep-outside` (isolate), `--from A,B`, `--to C,D`
    /// (cut; repeatable) and `--both-ways` (cut), and `--for DURATION`,
    /// returned apart. Guest names never start with '-', so a word that
    /// does is an option.
    fn from_words(words: &[String]) -> Result<(Fault, Globals), PartitionError> {
        let Some((verb_word, rest)) = words.split_first() else {
            return Err(PartitionError::NoVerb);
        };
        let verb = verb_word.as_str();
        let mut fault = Fault::new(Verb::FullMesh);
        let mut globals = Globals::default();
        let mut keep_outside = false;
        let mut both_ways = false;
        let mut seed = None;
        let mut names: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<String>> = vec![Vec::new()];
        let mut from: Vec<String> = Vec::new();
        let mut to: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let grouped = matches!(verb, "disjoint" | "split");
        if !matches!(
            verb,
            "fullmesh"
                | "heal"
                | "isolate"
                | "disjoint"
                | "split"
                | "cut"
                | "all"
                | "bridge"
                | "majorities-ring"
                | "minority-third"
                | "random-halves"
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
                let repeatable = matches!(name, "from" | "to");
                if !repeatable && seen.iter().any(|seen| seen == name) {
                    return Err(PartitionError::OptionTwice {
                        option: format!("--{name}"),
                    });
                }
                seen.push(name.to_owned());
                let impair = &mut fault.impair;
                match name {
                    "loss" => fault.loss_percent = Some(parse_loss(&value()?)?),
                    "for" => globals.duration_secs = Some(parse_duration(&value()?)?),
                    "flap" => globals.flap_secs = Some(parse_duration(&value()?)?),
                    "delay" => impair.delay_ms = Some(parse_millis("--delay", &value()?)?),
                    "jitter" => impair.jitter_ms = Some(parse_millis("--jitter", &value()?)?),
                    "correlation" => {
                        impair.correlation_percent =
                            Some(parse_percent("--correlation", &value()?, 0)?);
                    }
                    "duplicate" => {
                        impair.duplicate_percent =
                            Some(parse_percent("--duplicate", &value()?, 1)?);
                    }
                    "corrupt" => {
                        impair.corrupt_percent = Some(parse_percent("--corrupt", &value()?, 1)?);
                    }
                    "rate" => impair.rate_bits_per_sec = Some(parse_rate(&value()?)?),
                    "port" => fault.traffic.set_port(&value()?)?,
                    "proto" => fault.traffic.set_proto_word(&value()?)?,
                    "keep-outside" if verb == "isolate" && inline.is_none() => {
                        keep_outside = true;
                    }
                    "both-ways" if verb == "cut" && inline.is_none() => both_ways = true,
                    "seed" if verb == "random-halves" => {
                        let text = value()?;
                        seed = Some(
                            text.parse::<u64>()
                                .map_err(|_| PartitionError::BadSeed { text: text.clone() })?,
                        );
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
        fault.verb = match verb {
            "isolate" => Verb::Isolate {
                guests: names,
                keep_outside,
            },
            "disjoint" => Verb::Disjoint { groups },
            "split" => Verb::Split { groups },
            "cut" => Verb::Cut {
                from,
                to,
                both_ways,
            },
            "all" => Verb::All,
            "bridge" => Verb::Bridge,
            "majorities-ring" => Verb::MajoritiesRing,
            "minority-third" => Verb::MinorityThird,
            "random-halves" => Verb::RandomHalves { seed },
            _ => Verb::FullMesh,
        };
        Ok((fault, globals))
    }
}

/// `heal` is `fullmesh` by another name; errors use the canonical word.
fn verb_name(word: &str) -> &'static str {
    match word {
        "isolate" => "isolate",
        "disjoint" => "disjoint",
        "split" => "split",
        "cut" => "cut",
        "all" => "all",
        "bridge" => "bridge",
        "majorities-ring" => "majorities-ring",
        "minority-third" => "minority-third",
        "random-halves" => "random-halves",
        _ => "fullmesh",
    }
}

/// `a,b,,c` -> a, b, c: a stray comma is no guest.
fn split_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
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

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

    // --- words ---

    #[test]
    fn options_may_come_anywhere_after_the_verb() {
        let expected = Partition {
            first: Fault {
                loss_percent: Some(30),
                ..Fault::new(Verb::Isolate {
                    guests: names("a b"),
                    keep_outside: true,
                })
            },
            and: Vec::new(),
            duration_secs: Some(90),
            flap_secs: None,
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
}
