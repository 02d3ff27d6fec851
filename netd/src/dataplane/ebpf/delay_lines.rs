//! The eBPF dataplane's delay lines (`crate::delay`): one per network whose
//! policy delays packets, made when a policy first needs it, kept (with
//! new delays) while policies do, removed with the last one that does and
//! with the network. A daemon restart adopts the TAP (persistent, same
//! ifindex) and its cls_bpf filter (netd's own device, as the ports are:
//! see `port_filter`), whose program `port_filter::attach` replaces.

use anyhow::{Context, Result};
use netd_common::{maps, partition::PartitionPolicy};
use tracing::{info, warn};

use super::{EbpfDataplane, port_filter, program};
use crate::{
    delay::{DelayLine, line::Classes, tap},
    ifname::NETWORK_DELAY_LINE,
    netns::Netns,
    partition::PartitionRules,
    topology::NetworkPlumbing,
};

pub use crate::delay::classes_of;

/// Points every class of `policy` whose clause delays at the delay line
/// `ifindex`.
pub fn send_delayed_to(policy: &mut PartitionPolicy, rules: &PartitionRules, ifindex: u32) {
    for (class, fault) in policy.faults.iter_mut().zip(&rules.faults) {
        if fault.impair.delay_ms.is_some() {
            class.set_delay_line(ifindex);
        }
    }
}

impl EbpfDataplane {
    /// The ifindex of `zone`'s delay line with `classes` in force, made
    /// (or adopted) if the network has none yet.
    pub(super) fn delay_line_for(&mut self, zone: u32, classes: Classes) -> Result<u32> {
        if let Some(line) = self.delay_lines.get(&zone) {
            line.set_classes(classes);
            return Ok(line.ifindex);
        }
        let net = self
            .networks_attached
            .get(&zone)
            .cloned()
            .with_context(|| format!("network zone {zone} is not attached to the dataplane"))?;
        let netns = Netns::open_path(&net.name, &net.netns)?;
        let (fd, ifindex) = tap::open(&netns, NETWORK_DELAY_LINE, net.mtu.unwrap_or(1500))?;
        let line = DelayLine::start(&net.name, fd, ifindex, classes)?;
        let attached = program(&mut self.loaded, maps::PROG_DELAY_RETURN)
            .and_then(|program| port_filter::attach(&netns, NETWORK_DELAY_LINE, program));
        if let Err(err) = attached {
            line.remove();
            return Err(err);
        }
        info!(network = %net.name, ifindex, "delay line started");
        self.stale_delay_lines.remove(&zone);
        self.delay_lines.insert(zone, line);
        Ok(ifindex)
    }

    /// Removes `zone`'s delay line, the one this daemon runs or one an
    /// earlier daemon left.
    pub(super) fn remove_delay_line(&mut self, zone: u32) {
        let Some(net) = self.networks_attached.get(&zone) else {
            return;
        };
        if let Some(line) = self.delay_lines.remove(&zone) {
            line.remove();
            info!(network = %net.name, "delay line removed");
            return;
        }
        if self.stale_delay_lines.remove(&zone)
            && let Ok(netns) = Netns::open_path(&net.name, &net.netns)
            && let Err(err) = tap::remove_named(&netns, NETWORK_DELAY_LINE)
        {
            warn!(network = %net.name, "removing a delay line left over: {err:#}");
        }
    }

    /// Remembers where a network lives, for its delay line, and whether an
    /// earlier daemon left one there (adopted if a policy still delays,
    /// removed when the first policy applied does not).
    pub(super) fn remember_network(&mut self, net: &NetworkPlumbing, netns: &Netns) {
        self.networks_attached.insert(net.zone, net.clone());
        if !self.delay_lines.contains_key(&net.zone)
            && netns
                .run_in(|| nix::net::if_::if_nametoindex(NETWORK_DELAY_LINE).is_ok())
                .unwrap_or(false)
        {
            self.stale_delay_lines.insert(net.zone);
        }
    }

    /// `delayed` and `dropped_delay_queue` for `zone`, next to the
    /// programs' counters.
    pub(super) fn delay_counters(&self, zone: u32) -> Vec<(String, u64)> {
        let Some(line) = self.delay_lines.get(&zone) else {
            return Vec::new();
        };
        let counters = line.counters();
        let ordering = std::sync::atomic::Ordering::Relaxed;
        vec![
            ("delayed".to_owned(), counters.delayed.load(ordering)),
            (
                "dropped_delay_queue".to_owned(),
                counters.dropped_full.load(ordering),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dataplane::ebpf::policy_of,
        partition::{Partition, PartitionRules, compile},
    };

    fn rules(line: &str) -> PartitionRules {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let guests = [("a", 0u8), ("b", 1), ("c", 2)]
            .into_iter()
            .map(|(name, slot)| (name.to_owned(), slot))
            .collect();
        Partition::from_words(&words)
            .and_then(|partition| compile("web", &partition, &guests))
            .unwrap_or_else(|err| panic!("{line}: {err}"))
    }

    #[test]
    fn only_delaying_clauses_have_a_delay_and_go_to_the_line() {
        let rules = rules("isolate c + cut --from a --to b --delay 50ms --jitter 5ms");
        let classes = classes_of(&rules).expect("a clause delays");
        assert_eq!(classes[0], None);
        assert_eq!(classes[1].unwrap().delay_ns, 50_000_000);
        assert_eq!(classes[1].unwrap().jitter_ns, 5_000_000);
        let mut policy = policy_of(&rules, 1);
        send_delayed_to(&mut policy, &rules, 42);
        assert_eq!(policy.faults[0].delay_line(), 0, "the cut is not delayed");
        assert_eq!(policy.faults[1].delay_line(), 42);
        assert_eq!(classes_of(&self::rules("isolate c --loss 30")), None);
    }
}
