//! The delay line: how netd delays packets on a kernel without netem (and
//! without fq). The eBPF guest port sends a packet that a delaying fault
//! class selects out of the network's TAP device ([`tap`]), tagged with
//! the class; the daemon reads it ([`line`]), draws its delay from the
//! class's delay, jitter and correlation ([`draw`]), holds it in a bounded
//! timer queue ([`queue`]) and writes it back into the TAP at its release
//! time, where the `netd_delay_return` program sends it on to its
//! destination without the policy (so it is delayed once).
//!
//! Jitter larger than the gap between two packets reorders them: each
//! leaves at its own release time, as with netem's jitter.

pub mod draw;
pub mod frame;
pub mod line;
pub mod queue;
pub mod tap;

pub use draw::DelaySpec;
pub use line::DelayLine;

/// Each class's delay, None when no class of `rules` delays.
pub fn classes_of(rules: &crate::partition::PartitionRules) -> Option<line::Classes> {
    let mut classes: line::Classes = [None; netd_common::partition::MAX_FAULTS];
    for (class, fault) in classes.iter_mut().zip(&rules.faults) {
        *class = DelaySpec::of(&fault.impair);
    }
    classes.iter().any(Option::is_some).then_some(classes)
}
