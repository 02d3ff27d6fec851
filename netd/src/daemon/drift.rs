//! The repair pass the daemon runs every few seconds: the host's nftables
//! table and the dataplane's kernel state are checked, drift is repaired,
//! and both are counted (`netd_drift_found_total`,
//! `netd_drift_repairs_total`) and told (`drift.found`, `drift.repaired`).

use std::sync::atomic::Ordering;

use super::{events::Event, service::Service};

impl Service {
    pub fn repair_drift(&mut self) {
        if !self.state.networks.is_empty() && !self.hostnat.present().unwrap_or(false) {
            self.found(
                "host_table",
                "the host's nftables table is missing or altered",
            );
            self.repair_host_nat();
            if self.hostnat.present().unwrap_or(false) {
                self.repaired("the host's nftables table restored");
            }
        }
        // repair() also follows the host (new devices and addresses), so
        // it runs every time; what check() reports is the drift counted.
        let problems = self.dataplane.check();
        if !problems.is_empty() {
            self.found("dataplane", &problems.join("; "));
        }
        self.dataplane.repair();
        if !problems.is_empty() && self.dataplane.check().is_empty() {
            self.repaired("the dataplane's kernel state restored");
        }
    }

    fn found(&self, what: &'static str, detail: &str) {
        self.telemetry.drift_found(what);
        self.emit(Event::new("drift.found").detail(detail));
    }

    fn repaired(&self, detail: &str) {
        self.telemetry.drift_repairs.fetch_add(1, Ordering::Relaxed);
        self.emit(Event::new("drift.repaired").detail(detail));
    }
}
