//! The nftables dataplane's delay lines: a TAP and its reader per delaying
//! clause of a network's policy ([`delay`] sends each clause's packets to
//! its own), made when a policy first needs one, kept (with new delays)
//! while policies do, removed with the policy that no longer does, with
//! the network, and at cleanup. A restarted daemon adopts the TAPs
//! (persistent) when it applies the policy again. The rate clauses'
//! shapers ([`shapers`]) are made and removed in the same steps, around
//! the same delay table.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use netd_common::partition::MAX_FAULTS;
use tracing::info;

use super::{delay, script::GuestSpec, shapers};
use crate::{
    delay::{DelayLine, tap},
    netns::Netns,
    nft::Nft,
    partition::PartitionRules,
    topology::NetworkPlumbing,
};

/// A network's running lines, by class.
#[derive(Default)]
pub struct DelayLines {
    lines: BTreeMap<usize, DelayLine>,
}

impl std::fmt::Debug for DelayLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lines.keys()).finish()
    }
}

impl DelayLines {
    /// Puts `rules`' delays and rates in force in the network `plumbing`
    /// (`nft` open in its namespace) with `guests` by bridge port: the
    /// lines each delaying class needs started or given the new delays,
    /// the shapers each rate class needs made or given the new rate, the
    /// delay table replaced, and the lines and shapers no class needs any
    /// more removed.
    pub fn sync(
        &mut self,
        plumbing: &NetworkPlumbing,
        nft: &Nft,
        guests: &BTreeMap<String, GuestSpec>,
        rules: &PartitionRules,
    ) -> Result<()> {
        let wanted = delay::delaying_classes(rules);
        let netns = Netns::open_path(&plumbing.name, &plumbing.netns)?;
        let present = |class: usize| present_link(&netns, &delay::tap_name(class));
        let unwanted: Vec<usize> = (0..MAX_FAULTS)
            .filter(|class| !wanted.contains(class))
            .filter(|&class| self.lines.contains_key(&class) || present(class))
            .collect();
        let mtu = plumbing.mtu.unwrap_or(1500);
        let shaped = shapers::shaped_classes(rules, mtu);
        let stale_shapers = (0..MAX_FAULTS)
            .filter(|class| !shaped.contains_key(class))
            .any(|class| present_link(&netns, &crate::ifname::rate_shaper(class)));
        if wanted.is_empty() && unwanted.is_empty() && shaped.is_empty() && !stale_shapers {
            // Nothing delays or is shaped, nothing was: no table to remove
            // either.
            return Ok(());
        }
        if let Some(classes) = crate::delay::classes_of(rules) {
            for &class in &wanted {
                if let Some(line) = self.lines.get(&class) {
                    line.set_classes(classes);
                    continue;
                }
                let name = delay::tap_name(class);
                let (fd, ifindex) = tap::open(&netns, &name, plumbing.mtu.unwrap_or(1500))?;
                let line = DelayLine::start_for_class(&plumbing.name, fd, ifindex, classes, class)?;
                info!(network = %plumbing.name, tap = name, "delay line started");
                self.lines.insert(class, line);
            }
        }
        shapers::make(&netns, mtu, &shaped)?;
        nft.apply(&delay::script(guests, rules)).with_context(|| {
            format!(
                "putting the delays and rates in force ({})",
                delay::DELAY_TABLE
            )
        })?;
        shapers::remove_unwanted(&netns, &shaped)?;
        for class in unwanted {
            match self.lines.remove(&class) {
                Some(line) => line.remove(),
                None => tap::remove_named(&netns, &delay::tap_name(class))?,
            }
            info!(network = %plumbing.name, class, "delay line removed");
        }
        Ok(())
    }

    /// Stops every line and removes its TAP (the shapers go with the
    /// namespace, or with the next policy).
    pub fn remove_all(&mut self) {
        for line in std::mem::take(&mut self.lines).into_values() {
            line.remove();
        }
    }

    /// `delayed` and `dropped_delay_queue`, summed over the lines.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let ordering = std::sync::atomic::Ordering::Relaxed;
        let (mut delayed, mut dropped) = (0, 0);
        for line in self.lines.values() {
            delayed += line.counters().delayed.load(ordering);
            dropped += line.counters().dropped_full.load(ordering);
        }
        vec![
            ("delayed".to_owned(), delayed),
            ("dropped_delay_queue".to_owned(), dropped),
        ]
    }
}

fn present_link(netns: &Netns, name: &str) -> bool {
    netns
        .run_in(|| nix::net::if_::if_nametoindex(name).is_ok())
        .unwrap_or(false)
}
