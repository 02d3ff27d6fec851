//! Rates on the nftables dataplane: a real shaper per rate clause. The
//! kernel's `limit` in bytes keeps a bucket of a second of the rate (a
//! second of quiet lets twice the rate through), and tc's police is not in
//! this kernel; tbf is. So each clause with `--rate` has a veth pair in the
//! network's namespace, [`ifname::rate_shaper`] (a `tbf` qdisc, where the
//! clause's packets are sent in) and [`ifname::rate_shaper_out`] (where
//! they come out); the delay table's hooks (`delay`) send a clause's
//! packets through it on the way out of the receiver's bridge port.
//!
//! Made with the policy, given the new rate when the policy changes, and
//! removed with the last rate clause, with the network (they die with its
//! namespace) and at cleanup; a missing or altered shaper is drift.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use netd_common::partition::MAX_FAULTS;

use crate::{ifname, netns::Netns, partition::PartitionRules};

/// A shaper's tbf parameters, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// The bucket: 50 ms of the rate, at least two full-size frames.
    pub burst: u32,
    /// The queue in front of the bucket: the burst and 50 ms more, so a
    /// packet waits at most about 50 ms; beyond it, packets are dropped
    /// (and counted as `dropped_rate`).
    pub limit: u32,
}

impl Tbf {
    /// The shaper of a clause's rate (bits per second) on a network whose
    /// frames are at most `mtu` bytes of IP (with their Ethernet header).
    pub fn for_rate(bits_per_sec: u64, mtu: u32) -> Tbf {
        let rate = bits_per_sec / 8;
        let frame = u64::from(mtu) + 14;
        let fifty_ms = rate / 20;
        let burst = fifty_ms.max(2 * frame);
        let limit = burst + fifty_ms.max(2 * frame);
        Tbf {
            rate,
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }

    /// `tc qdisc replace`'s arguments that put it on `dev`.
    pub fn tc_args(&self, dev: &str) -> Vec<String> {
        ["qdisc", "replace", "dev", dev, "root", "tbf", "rate"]
            .iter()
            .map(|word| (*word).to_owned())
            .chain([
                format!("{}bit", self.rate * 8),
                "burst".to_owned(),
                self.burst.to_string(),
                "limit".to_owned(),
                self.limit.to_string(),
            ])
            .collect()
    }
}

/// The classes of `rules` with a rate (and pairs to hold to it).
pub fn rate_classes(rules: &PartitionRules) -> Vec<usize> {
    rules
        .faults
        .iter()
        .enumerate()
        .filter(|(_, fault)| fault.impair.rate_bits_per_sec.is_some() && !fault.pairs.is_empty())
        .map(|(class, _)| class)
        .collect()
}

/// The classes of `rules` with a rate, with their shapers.
pub fn shaped_classes(rules: &PartitionRules, mtu: u32) -> BTreeMap<usize, Tbf> {
    rate_classes(rules)
        .into_iter()
        .filter_map(|class| {
            let bits = rules.faults[class].impair.rate_bits_per_sec?;
            Some((class, Tbf::for_rate(bits, mtu)))
        })
        .collect()
}

/// Runs `program args` in `netns`, failing with its error output.
fn run(netns: &Netns, program: &str, args: &[String]) -> Result<()> {
    let output = netns
        .command(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (iproute2)"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn link_present(netns: &Netns, name: &str) -> bool {
    netns
        .run_in(|| nix::net::if_::if_nametoindex(name).is_ok())
        .unwrap_or(false)
}

/// Puts `wanted` in force in `netns`: each class's veth pair made if it is
/// not there (both ends up, `mtu`), its tbf put on (or given the new
/// rate). The shapers of classes not wanted stay until the delay table no
/// longer sends packets to them ([`remove_unwanted`]).
pub fn make(netns: &Netns, mtu: u32, wanted: &BTreeMap<usize, Tbf>) -> Result<()> {
    for (&class, tbf) in wanted {
        let (into, out) = (ifname::rate_shaper(class), ifname::rate_shaper_out(class));
        if !link_present(netns, &into) || !link_present(netns, &out) {
            // A half (one end renamed by hand) goes first.
            for end in [&into, &out] {
                if link_present(netns, end) {
                    run(netns, "ip", &words(&format!("link del {end}")))?;
                }
            }
            run(
                netns,
                "ip",
                &words(&format!(
                    "link add {into} mtu {mtu} type veth peer name {out} mtu {mtu}"
                )),
            )
            .with_context(|| format!("making rate shaper {into}"))?;
        }
        run(netns, "tc", &tbf.tc_args(&into))
            .with_context(|| format!("putting the rate on shaper {into}"))?;
        for end in [&into, &out] {
            run(netns, "ip", &words(&format!("link set {end} up")))?;
        }
    }
    Ok(())
}

/// Removes the shapers of the classes not in `wanted` (all of them for an
/// empty `wanted`).
pub fn remove_unwanted(netns: &Netns, wanted: &BTreeMap<usize, Tbf>) -> Result<()> {
    for class in (0..MAX_FAULTS).filter(|class| !wanted.contains_key(class)) {
        let into = ifname::rate_shaper(class);
        if link_present(netns, &into) {
            run(netns, "ip", &words(&format!("link del {into}")))
                .with_context(|| format!("removing rate shaper {into}"))?;
        }
    }
    Ok(())
}

/// What `tc -j -s qdisc show` tells of each shaper in a namespace: its
/// root qdisc's kind, rate (bytes/s, tbf only) and drops, by device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub qdiscs: BTreeMap<String, FoundQdisc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundQdisc {
    pub kind: String,
    pub rate: Option<u64>,
    pub drops: u64,
}

/// Parses `tc -j -s qdisc show`: the root qdiscs of the shapers' devices.
pub fn parse_qdiscs(json: &str) -> Result<Found> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(json).context("reading tc's JSON qdisc list")?;
    let qdiscs = list
        .iter()
        .filter(|q| q["root"].as_bool() == Some(true))
        .filter_map(|q| {
            let dev = q["dev"].as_str()?;
            ifname::is_rate_shaper(dev).then(|| {
                (
                    dev.to_owned(),
                    FoundQdisc {
                        kind: q["kind"].as_str().unwrap_or_default().to_owned(),
                        rate: q["options"]["rate"].as_u64(),
                        drops: q["drops"].as_u64().unwrap_or(0),
                    },
                )
            })
        })
        .collect();
    Ok(Found { qdiscs })
}

/// Reads the shapers' qdiscs in `netns`.
pub fn read(netns: &Netns) -> Result<Found> {
    let output = netns
        .command("tc")
        .args(["-j", "-s", "qdisc", "show"])
        .output()
        .context("running tc (iproute2)")?;
    if !output.status.success() {
        bail!(
            "tc -j -s qdisc show: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_qdiscs(&String::from_utf8_lossy(&output.stdout))
}

/// The problems of the shapers `wanted` against what `found` holds: a
/// shaper missing, or without its tbf at the rate, each named.
pub fn problems(place: &str, wanted: &BTreeMap<usize, Tbf>, found: &Found) -> Vec<String> {
    wanted
        .iter()
        .filter_map(|(&class, tbf)| {
            let into = ifname::rate_shaper(class);
            let problem = match found.qdiscs.get(&into) {
                None => "is missing".to_owned(),
                Some(q) if q.kind != "tbf" => format!("has qdisc {} instead of tbf", q.kind),
                Some(q) if q.rate != Some(tbf.rate) => format!(
                    "holds {} bytes/s instead of {} (--rate)",
                    q.rate.unwrap_or(0),
                    tbf.rate
                ),
                Some(_) => return None,
            };
            Some(format!(
                "{place}: rate shaper {into} {problem} (the daemon restores it)"
            ))
        })
        .collect()
}

/// `dropped_rate`: the packets the shapers dropped (their queues full).
pub fn drops(found: &Found) -> u64 {
    found.qdiscs.values().map(|q| q.drops).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::test_support::compiled;

    #[test]
    fn a_rate_is_a_bucket_and_a_queue_of_fifty_ms_each() {
        let tbf = Tbf::for_rate(1_000_000, 1500);
        assert_eq!(
            tbf,
            Tbf {
                rate: 125_000,
                burst: 6_250,
                limit: 12_500
            }
        );
        assert_eq!(
            tbf.tc_args("shape0").join(" "),
            "qdisc replace dev shape0 root tbf rate 1000000bit burst 6250 limit 12500"
        );
    }

    #[test]
    fn a_slow_rate_still_holds_two_full_frames_of_the_networks_mtu() {
        let tbf = Tbf::for_rate(8_000, 1500);
        assert_eq!((tbf.rate, tbf.burst, tbf.limit), (1_000, 3_028, 6_056));
        let jumbo = Tbf::for_rate(1_000_000, 9000);
        assert_eq!((jumbo.burst, jumbo.limit), (18_028, 36_056));
        let fastest = Tbf::for_rate(crate::partition::fault::MAX_RATE_BITS, 1500);
        assert_eq!((fastest.burst, fastest.limit), (625_000_000, 1_250_000_000));
    }

    #[test]
    fn each_clause_with_a_rate_has_a_shaper_by_its_class() {
        let rules = compiled(
            "isolate c + cut --from a --to b --rate 1mbit + all --rate 2mbit --proto udp",
            "a b c",
        );
        let shaped = shaped_classes(&rules, 1500);
        assert_eq!(shaped.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(shaped[&2].rate, 250_000);
        assert!(shaped_classes(&compiled("isolate a", "a b c"), 1500).is_empty());
    }

    #[test]
    fn tcs_listing_gives_each_shapers_kind_rate_and_drops() {
        let json = r#"[
            {"kind":"noqueue","handle":"0:","dev":"br0","root":true,"refcnt":2,"options":{},"bytes":0,"packets":0,"drops":0},
            {"kind":"tbf","handle":"8001:","dev":"shape0","root":true,"refcnt":2,"options":{"rate":125000,"burst":6250,"lat":50000},"bytes":1000,"packets":3,"drops":7},
            {"kind":"noqueue","handle":"0:","dev":"shape0-out","root":true,"refcnt":2,"options":{},"bytes":0,"packets":0,"drops":0},
            {"kind":"noqueue","handle":"0:","dev":"shape1","root":true,"refcnt":2,"options":{},"drops":0}
        ]"#;
        let found = parse_qdiscs(json).unwrap();
        assert_eq!(found.qdiscs.len(), 3, "{found:?}");
        assert_eq!(drops(&found), 7);
        let wanted = BTreeMap::from([
            (0, Tbf::for_rate(1_000_000, 1500)),
            (1, Tbf::for_rate(1_000_000, 1500)),
            (2, Tbf::for_rate(1_000_000, 1500)),
        ]);
        assert_eq!(
            problems("network web", &wanted, &found),
            [
                "network web: rate shaper shape1 has qdisc noqueue instead of tbf (the daemon restores it)",
                "network web: rate shaper shape2 is missing (the daemon restores it)",
            ]
        );
        let raised = BTreeMap::from([(0, Tbf::for_rate(4_000_000, 1500))]);
        assert_eq!(
            problems("network web", &raised, &found),
            [
                "network web: rate shaper shape0 holds 125000 bytes/s instead of 500000 (--rate) (the daemon restores it)"
            ]
        );
    }
}
