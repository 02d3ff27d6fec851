//! What a dataplane enforces for a network's partition: directed cuts in
//! guest slots, the guests cut from the outside, and the loss share. The
//! verbs compile to this (`compile`); the dataplanes only read it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A network's partition as a dataplane enforces it, in guest slots
/// (`Guest::slot`). The default (nothing cut) is a full mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRules {
    /// Directed pairs (from slot, to slot) whose packets are cut.
    pub cut: BTreeSet<(u8, u8)>,
    /// Guests cut from everything outside their network, both ways.
    pub outside_cut: BTreeSet<u8>,
    /// The share of affected packets dropped, 1-100 (100: all of them).
    pub loss_percent: u8,
}

impl PartitionRules {
    pub fn is_full_mesh(&self) -> bool {
        self.cut.is_empty() && self.outside_cut.is_empty()
    }

    /// The share of affected packets to drop, 1-100; 0 (unset) means all.
    pub fn effective_loss_percent(&self) -> u8 {
        match self.loss_percent {
            0 | 100.. => 100,
            percent => percent,
        }
    }
}
