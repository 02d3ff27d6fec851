//! Policies that change with time: `--flap PERIOD` (the policy, then
//! healed, each for PERIOD, over and over) and schedules of steps
//! (`schedule 10s isolate a then 5s heal [--repeat]`). Which step is in
//! force is a pure function of the time since the policy was set, so the
//! persisted start is all a restarted daemon needs. Pure.

use serde::{Deserialize, Serialize};

use super::{Partition, PartitionError, Verb, format_duration};

/// The most steps a schedule holds.
pub const MAX_STEPS: usize = 32;

/// One step of a schedule: a policy (or `fullmesh`) for `secs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub secs: u64,
    #[serde(flatten)]
    pub partition: Partition,
}

/// Where a time-varying policy stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StepAt {
    /// 0-based; `count` once a schedule without --repeat has ended.
    pub index: usize,
    pub count: usize,
    /// The policy of the step in force (`fullmesh` while healed).
    pub partition: Partition,
    /// Milliseconds until the next step (the heal, after a schedule's
    /// last); None once a schedule has ended.
    pub next_in_ms: Option<u64>,
}

impl Partition {
    /// Whether the policy changes with time (a flap or a schedule).
    pub fn varies(&self) -> bool {
        self.flap_secs.is_some() || matches!(self.first.verb, Verb::Schedule { .. })
    }

    /// The steps, each a policy and how long it lasts, and whether they
    /// repeat; None for a policy that stays as it is.
    fn timeline(&self) -> Option<(Vec<(u64, Partition)>, bool)> {
        if let Verb::Schedule { steps, repeat } = &self.first.verb {
            let steps = steps
                .iter()
                .map(|step| (step.secs, step.partition.clone()))
                .collect();
            return Some((steps, *repeat));
        }
        let period = self.flap_secs?;
        let steady = Partition {
            flap_secs: None,
            duration_secs: None,
            ..self.clone()
        };
        Some((
            vec![(period, steady), (period, Partition::new(Verb::FullMesh))],
            true,
        ))
    }

    /// The step in force `elapsed_ms` after the policy was set; None for a
    /// policy that stays as it is.
    pub fn step_at(&self, elapsed_ms: u64) -> Option<StepAt> {
        let (steps, repeat) = self.timeline()?;
        let count = steps.len();
        let cycle_ms: u64 = steps.iter().map(|(secs, _)| secs * 1_000).sum();
        if cycle_ms == 0 {
            return None;
        }
        let mut at = elapsed_ms;
        if repeat {
            at %= cycle_ms;
        } else if at >= cycle_ms {
            return Some(StepAt {
                index: count,
                count,
                partition: Partition::new(Verb::FullMesh),
                next_in_ms: None,
            });
        }
        let mut start = 0;
        for (index, (secs, partition)) in steps.into_iter().enumerate() {
            let end = start + secs * 1_000;
            if at < end {
                // After the last step of a schedule without --repeat, the
                // network heals: that is a next step too.
                return Some(StepAt {
                    index,
                    count,
                    partition,
                    next_in_ms: Some(end - at),
                });
            }
            start = end;
        }
        unreachable!("at is within the cycle")
    }

    /// How long a schedule without --repeat lasts; None otherwise.
    pub fn schedule_secs(&self) -> Option<u64> {
        match &self.first.verb {
            Verb::Schedule {
                steps,
                repeat: false,
            } => Some(steps.iter().map(|step| step.secs).sum()),
            _ => None,
        }
    }

    /// The checks of a time-varying policy: a schedule stands alone, has 1
    /// to 32 steps, each a policy that does not vary itself; a flap has a
    /// period of 1 s to a day and something to flap.
    pub(super) fn check_timeline(&self) -> Result<(), PartitionError> {
        if let Some(period) = self.flap_secs {
            if self.heals() {
                return Err(PartitionError::OptionOnFullMesh {
                    option: format!("--flap {}", format_duration(period)),
                });
            }
            if !(1..=super::DAY).contains(&period) {
                return Err(PartitionError::FlapOutOfRange {
                    text: format_duration(period),
                });
            }
        }
        let Verb::Schedule { steps, .. } = &self.first.verb else {
            return Ok(());
        };
        if self.flap_secs.is_some() || !self.and.is_empty() || self.first.changes_anything() {
            return Err(PartitionError::ScheduleNotAlone);
        }
        if steps.is_empty() || steps.len() > MAX_STEPS {
            return Err(PartitionError::StepCount { count: steps.len() });
        }
        for (index, step) in steps.iter().enumerate() {
            if step.secs == 0 || step.secs > super::MAX_DURATION_SECS {
                return Err(PartitionError::StepDuration { step: index + 1 });
            }
            if step.partition.varies() || step.partition.duration_secs.is_some() {
                return Err(PartitionError::StepVaries { step: index + 1 });
            }
            step.partition.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{super::test_support::*, *};

    #[test]
    fn a_flap_alternates_the_policy_and_a_heal() {
        let flap = parse("isolate a --flap 2s");
        let at = |ms| flap.step_at(ms).unwrap();
        assert_eq!(at(0).index, 0);
        assert_eq!(at(0).partition, parse("isolate a"));
        assert_eq!(at(0).next_in_ms, Some(2_000));
        assert_eq!(at(1_999).index, 0);
        assert_eq!(at(2_000).index, 1);
        assert!(at(2_000).partition.heals());
        assert_eq!(at(3_500).next_in_ms, Some(500));
        assert_eq!(at(4_000).index, 0, "and over again");
        assert_eq!(parse("isolate a").step_at(5_000), None);
    }

    #[test]
    fn a_schedule_steps_through_and_heals_at_its_end() {
        let schedule = parse("schedule 10s isolate a then 5s heal then 1m all --loss 30");
        assert_eq!(schedule.step_at(9_999).unwrap().index, 0);
        let second = schedule.step_at(10_000).unwrap();
        assert_eq!((second.index, second.count), (1, 3));
        assert_eq!(second.next_in_ms, Some(5_000));
        let third = schedule.step_at(15_000).unwrap();
        assert_eq!(third.partition, parse("all --loss 30"));
        assert_eq!(third.next_in_ms, Some(60_000));
        let ended = schedule.step_at(75_000).unwrap();
        assert_eq!((ended.index, ended.next_in_ms), (3, None));
        assert!(ended.partition.heals());
        assert_eq!(schedule.schedule_secs(), Some(75));
        let repeating = parse("schedule --repeat 10s isolate a then 5s heal");
        assert_eq!(repeating.step_at(15_000).unwrap().index, 0);
        assert_eq!(repeating.schedule_secs(), None);
    }

    #[test]
    fn schedules_print_back_as_they_read_and_cross_the_api() {
        for line in [
            "schedule 10s isolate a then 5s fullmesh",
            "schedule --repeat 1m disjoint a -- b then 30s all --delay 5ms + isolate c",
            "isolate a --flap 2s --for 1m",
        ] {
            assert_eq!(parse(line).describe(), line);
            let json = serde_json::to_string(&parse(line)).unwrap();
            assert_eq!(
                serde_json::from_str::<Partition>(&json).unwrap(),
                parse(line)
            );
        }
        let api: Partition = serde_json::from_str(
            r#"{"verb": "schedule", "repeat": true, "steps": [
                {"secs": 10, "verb": "isolate", "guests": ["a"]}, {"secs": 5, "verb": "fullmesh"}]}"#,
        )
        .unwrap();
        assert_eq!(
            api.describe(),
            "schedule --repeat 10s isolate a then 5s fullmesh"
        );
    }

    #[test]
    fn bad_schedules_and_flaps_are_refused() {
        for (line, part) in [
            ("schedule", "a schedule needs 1 to 32 steps"),
            (
                "schedule isolate a",
                "step 1 of the schedule must start with its duration",
            ),
            (
                "schedule 10s isolate a then",
                "a `then` with no step after it",
            ),
            (
                "schedule 10s isolate a --for 5m",
                "step 1 may not vary or last by itself",
            ),
            (
                "schedule 10s isolate a --flap 1s",
                "step 1 may not vary or last by itself",
            ),
            ("schedule 10s schedule 5s heal", "step 1 may not vary"),
            ("isolate a --flap 2d", "--flap 2d is out of range"),
            ("heal --flap 2s", "--flap 2s does not apply to fullmesh"),
            (
                "isolate a --flap 2s + all --flap 1s",
                "--flap is given twice",
            ),
            ("schedule 10s isolate zed", "no guest named \"zed\""),
        ] {
            let err = match Partition::from_words(&words(line)) {
                Ok(partition) => {
                    crate::partition::compile("web", &partition, &guests("a b")).expect_err(line)
                }
                Err(err) => err,
            };
            assert_message(&err, &[part]);
        }
    }
}
