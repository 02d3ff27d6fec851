//! Drift: does a table in the kernel still have the shape netd gave it?
//! Pure comparison of `nft -j list table` output with the [`Layout`] (and
//! counters) netd renders, for every table netd owns; elements are not
//! compared (they change with traffic-free bookkeeping that only netd does).

use std::collections::BTreeSet;

use super::{
    objects,
    render::{Layout, OWNER},
};

/// What differs between a listing and the layout; empty when intact.
pub fn problems(
    listing: &serde_json::Value,
    layout: &Layout,
    counters: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for chain in &layout.chains {
        problems.extend(chain_problem(listing, chain.name, chain.rules.len()));
        let foreign = objects(listing, "rule")
            .filter(|r| r["chain"] == chain.name && r["comment"] != OWNER)
            .count();
        if foreign > 0 {
            problems.push(format!(
                "chain {} has {foreign} rules netd did not add",
                chain.name
            ));
        }
    }
    for set in layout.sets {
        if !objects(listing, set.kind).any(|s| s["name"] == set.name) {
            problems.push(format!("{} {} is missing", set.kind, set.name));
        }
    }
    for counter in counters {
        if !objects(listing, "counter").any(|c| c["name"] == counter.as_str()) {
            problems.push(format!("counter {counter} is missing"));
        }
    }
    problems
}

/// What is wrong with one chain of a listing: missing, or not holding
/// exactly `rules` of netd's rules (tagged [`OWNER`]); None when intact.
pub fn chain_problem(listing: &serde_json::Value, chain: &str, rules: usize) -> Option<String> {
    if !objects(listing, "chain").any(|c| c["name"] == chain) {
        return Some(format!("chain {chain} is missing"));
    }
    let ours = objects(listing, "rule")
        .filter(|r| r["chain"] == chain && r["comment"] == OWNER)
        .count();
    (ours != rules).then(|| format!("chain {chain} has {ours} of its {rules} rules"))
}
