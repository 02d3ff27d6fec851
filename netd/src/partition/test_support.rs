//! Helpers for the partition tests: partitions from CLI lines, and small
//! networks to compile them for.

use std::collections::{BTreeMap, BTreeSet};

use super::PartitionRules;
use super::{Partition, PartitionError, compile};

pub(crate) fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

pub(crate) fn parse(line: &str) -> Partition {
    Partition::from_words(&words(line)).unwrap_or_else(|err| panic!("{line:?} should parse: {err}"))
}

pub(super) fn parse_err(line: &str) -> PartitionError {
    match Partition::from_words(&words(line)) {
        Ok(partition) => panic!("{line:?} should be refused, parsed as {partition:?}"),
        Err(err) => err,
    }
}

pub(super) fn names(list: &str) -> Vec<String> {
    words(list)
}

/// Guests a..e in slots 0..4 (e: 9, so slots are not positions).
pub(crate) fn guests(list: &str) -> BTreeMap<String, u8> {
    list.split_whitespace()
        .enumerate()
        .map(|(index, name)| {
            let slot = if name == "e" { 9 } else { index as u8 };
            (name.to_owned(), slot)
        })
        .collect()
}

/// `line` compiled for network `network` (guests as [`guests`] gives them).
pub(crate) fn compiled(line: &str, network: &str) -> PartitionRules {
    compile("web", &parse(line), &guests(network))
        .unwrap_or_else(|err| panic!("{line:?} should compile: {err}"))
}

pub(super) fn compile_err(line: &str, network: &str) -> PartitionError {
    match compile("web", &parse(line), &guests(network)) {
        Ok(rules) => panic!("{line:?} should be refused, compiled to {rules:?}"),
        Err(err) => err,
    }
}

/// Both directions of every pair in `pairs`.
pub(super) fn both_ways(pairs: &[(u8, u8)]) -> BTreeSet<(u8, u8)> {
    pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect()
}

pub(super) fn assert_message(err: &PartitionError, parts: &[&str]) {
    let message = err.to_string();
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}
