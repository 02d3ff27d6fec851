//! What a dataplane enforces for a network's fault policy: one fault class
//! per clause, each the directed pairs in guest slots and the guests cut
//! from the outside that it selects, which of their packets, and what
//! happens to them. The requests compile to this (`compile`); the
//! dataplanes only read it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Impairments, Traffic};

/// One clause, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultClass {
    /// Directed pairs (from slot, to slot) whose packets it selects.
    pub pairs: BTreeSet<(u8, u8)>,
    /// Guests whose packets to and from everything outside their network
    /// it selects (only loss applies there: see the README).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub outside: BTreeSet<u8>,
    /// Which packets of those: all, or a port or protocol.
    #[serde(default, skip_serializing_if = "Traffic::is_all")]
    pub traffic: Traffic,
    /// The share of selected packets dropped, 0-100 (100: a cut).
    pub loss_percent: u8,
    #[serde(default, skip_serializing_if = "Impairments::is_empty")]
    pub impair: Impairments,
}

impl FaultClass {
    /// Drops every selected packet and does nothing else.
    pub fn is_cut(&self) -> bool {
        self.loss_percent >= 100 && self.impair.is_empty()
    }

    /// Only drops (all of them or a share): what every dataplane can do.
    pub fn only_drops(&self) -> bool {
        self.loss_percent > 0 && self.impair.is_empty()
    }

    pub fn selects_nothing(&self) -> bool {
        self.pairs.is_empty() && self.outside.is_empty()
    }
}

/// A network's fault policy as a dataplane enforces it, in guest slots
/// (`Guest::slot`). The default (no class) is a full mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRules {
    /// Every class applies to every packet it selects.
    pub faults: Vec<FaultClass>,
}

impl PartitionRules {
    /// One class that drops `loss_percent` of all traffic of the pairs
    /// `cut` and of the guests `outside_cut` with the outside: what a
    /// single cut or lossy clause compiles to.
    pub fn cutting(
        cut: BTreeSet<(u8, u8)>,
        outside_cut: BTreeSet<u8>,
        loss_percent: u8,
    ) -> PartitionRules {
        PartitionRules {
            faults: vec![FaultClass {
                pairs: cut,
                outside: outside_cut,
                loss_percent,
                ..FaultClass::default()
            }],
        }
    }

    pub fn is_full_mesh(&self) -> bool {
        self.faults.iter().all(FaultClass::selects_nothing)
    }

    /// The directed pairs that some class drops all traffic of.
    pub fn cut(&self) -> BTreeSet<(u8, u8)> {
        self.whole_pair_drops()
            .flat_map(|class| class.pairs.iter().copied())
            .collect()
    }

    /// The guests that some class cuts from the outside.
    pub fn outside_cut(&self) -> BTreeSet<u8> {
        self.whole_pair_drops()
            .flat_map(|class| class.outside.iter().copied())
            .collect()
    }

    /// The loss share of the classes that only drop, when they agree (a
    /// single cut or lossy clause); 100 otherwise.
    pub fn loss_percent(&self) -> u8 {
        let shares: BTreeSet<u8> = self
            .whole_pair_drops()
            .map(|class| class.loss_percent)
            .collect();
        match shares.len() {
            1 => *shares.first().expect("one"),
            _ => 100,
        }
    }

    /// Every guest slot the rules name, so that a newcomer is never given
    /// one.
    pub fn slots(&self) -> BTreeSet<u8> {
        self.faults
            .iter()
            .flat_map(|class| {
                class
                    .pairs
                    .iter()
                    .flat_map(|&(from, to)| [from, to])
                    .chain(class.outside.iter().copied())
            })
            .collect()
    }

    fn whole_pair_drops(&self) -> impl Iterator<Item = &FaultClass> {
        self.faults
            .iter()
            .filter(|class| class.traffic.is_all() && class.only_drops())
    }
}
