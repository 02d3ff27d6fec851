//! Drift: does a table in the kernel still have the shape netd gave it?
//! Pure comparison of `nft -j list table` output with the [`Layout`] (and
//! counters) netd renders; elements are not compared (they change with
//! traffic-free bookkeeping that only netd does).

use std::collections::BTreeSet;

use super::script::{Layout, OWNER};
use crate::nft::objects;

/// What differs between a listing and the layout; empty when intact.
pub fn problems(
    listing: &serde_json::Value,
    layout: &Layout,
    counters: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for chain in &layout.chains {
        if !objects(listing, "chain").any(|c| c["name"] == chain.name) {
            problems.push(format!("chain {} is missing", chain.name));
            continue;
        }
        let rules: Vec<&serde_json::Value> = objects(listing, "rule")
            .filter(|r| r["chain"] == chain.name)
            .collect();
        let ours = rules.iter().filter(|r| r["comment"] == OWNER).count();
        if ours != chain.rules.len() {
            problems.push(format!(
                "chain {} has {ours} of its {} rules",
                chain.name,
                chain.rules.len()
            ));
        }
        if rules.len() > ours {
            problems.push(format!(
                "chain {} has {} rules netd did not add",
                chain.name,
                rules.len() - ours
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{super::script, *};

    fn listing(objects: &[serde_json::Value]) -> serde_json::Value {
        json!({ "nftables": objects })
    }

    /// A listing of exactly the network layout, as nft would give it.
    fn intact() -> Vec<serde_json::Value> {
        let layout = script::network_layout();
        let mut objects = vec![json!({"table": {"family": "bridge", "name": "netd"}})];
        for counter in script::NETWORK_COUNTERS {
            objects.push(json!({"counter": {"name": counter, "packets": 0}}));
        }
        for set in layout.sets {
            objects.push(json!({ set.kind: {"name": set.name, "comment": "netd"} }));
        }
        for chain in &layout.chains {
            objects.push(json!({"chain": {"name": chain.name, "comment": "netd"}}));
            for _ in &chain.rules {
                objects.push(json!({"rule": {"chain": chain.name, "comment": "netd", "expr": []}}));
            }
        }
        objects
    }

    fn counters() -> BTreeSet<String> {
        script::NETWORK_COUNTERS
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    }

    #[test]
    fn an_intact_table_has_no_problems() {
        let layout = script::network_layout();
        assert_eq!(
            problems(&listing(&intact()), &layout, &counters()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn missing_and_foreign_pieces_are_named() {
        let layout = script::network_layout();
        let mut objects: Vec<serde_json::Value> = intact()
            .into_iter()
            .filter(|o| o["set"]["name"] != "cut" && o["counter"]["name"] != "dropped_spoofed")
            .collect();
        // One of netd's rules gone from from_guests, a foreign one added.
        let at = objects
            .iter()
            .position(|o| o["rule"]["chain"] == "from_guests")
            .unwrap();
        objects.remove(at);
        objects.push(json!({"rule": {"chain": "to_outside", "expr": []}}));
        assert_eq!(
            problems(&listing(&objects), &layout, &counters()),
            [
                "chain from_guests has 4 of its 5 rules",
                "chain to_outside has 1 rules netd did not add",
                "set cut is missing",
                "counter dropped_spoofed is missing",
            ]
        );
        let bare = listing(&[json!({"table": {"family": "bridge", "name": "netd"}})]);
        assert_eq!(problems(&bare, &layout, &BTreeSet::new()).len(), 4 + 6);
    }
}
