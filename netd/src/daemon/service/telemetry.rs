//! The service's side of events and metrics: what it tells (`emit`), the
//! repair pass counted (`netd_drift_found_total`, `netd_drift_repairs_total`,
//! `drift.found`, `drift.repaired`), and one metrics scrape of its state
//! and its dataplane's figures (the text format is `daemon::metrics`).

use std::sync::{Arc, atomic::Ordering};

use super::Service;
use crate::{
    config::Dataplane as DataplaneKind,
    daemon::{
        events::Event,
        metrics::{Exposition, Telemetry},
    },
};

impl Service {
    /// The events bus and counters, for the API layer.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    /// `metrics_listen` of the configuration.
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.topology.config.metrics_listen
    }

    /// Tells every `netd events` consumer.
    pub fn emit(&self, event: Event) {
        self.telemetry.events.emit(event);
    }

    /// The dataplane's repair (which also follows the host's devices, so it
    /// runs every pass), with what `check` found before it counted and told.
    pub(super) fn repair_counted(&mut self) {
        let problems = self.dataplane.check();
        if !problems.is_empty() {
            self.telemetry.drift_found.fetch_add(1, Ordering::Relaxed);
            self.emit(Event::new("drift.found").detail(problems.join("; ")));
        }
        self.dataplane.repair();
        if !problems.is_empty() && self.dataplane.check().is_empty() {
            self.telemetry.drift_repairs.fetch_add(1, Ordering::Relaxed);
            self.emit(Event::new("drift.repaired").detail("the kernel matches again"));
        }
    }

    /// Everything, for one scrape.
    pub fn scrape_metrics(&self) -> String {
        let service = self;
        let telemetry = &self.telemetry;
        let mut out = Exposition::default();
        let networks = &service.state.networks;

        out.family("netd_networks", "Networks netd has.", "gauge");
        out.sample("netd_networks", &[], networks.len() as f64);
        out.family("netd_guests", "Guests of each network.", "gauge");
        for net in networks.values() {
            out.sample(
                "netd_guests",
                &[("network", &net.name)],
                net.guests.len() as f64,
            );
        }
        out.family(
            "netd_port_forwards",
            "Published port forwards (one per port spec) of each network.",
            "gauge",
        );
        for net in networks.values() {
            let forwards: usize = net.guests.values().map(|g| g.ports.len()).sum();
            out.sample(
                "netd_port_forwards",
                &[("network", &net.name)],
                forwards as f64,
            );
        }
        out.family(
            "netd_partition_in_force",
            "1 while a partition cuts something in the network, else 0.",
            "gauge",
        );
        for net in networks.values() {
            let cut = net.partition.as_ref().is_some();
            out.sample(
                "netd_partition_in_force",
                &[("network", &net.name)],
                f64::from(u8::from(cut)),
            );
        }

        let zone_name = |zone: u32| {
            if zone == 0 {
                return "host".to_owned();
            }
            networks
                .values()
                .find(|net| net.zone() == zone)
                .map_or_else(|| format!("zone {zone}"), |net| net.name.clone())
        };
        out.family(
            "netd_dataplane_up",
            "1 if the dataplane's figures could be read, else 0.",
            "gauge",
        );
        match service.dataplane.status(&zone_name) {
            Ok(figures) => {
                out.sample("netd_dataplane_up", &[], 1.0);
                out.family(
                    "netd_packets_total",
                    "Packets the dataplane handled, by network and by what it did (forwarded, translated, dropped_*, ...).",
                    "counter",
                );
                for zone in &figures.counters {
                    for (reason, count) in &zone.counters {
                        out.sample(
                            "netd_packets_total",
                            &[("network", &zone.zone), ("reason", reason)],
                            *count as f64,
                        );
                    }
                }
                out.family(
                    "netd_conntrack_entries",
                    "Connection-tracking entries in use (one per direction of a connection).",
                    "gauge",
                );
                out.sample(
                    "netd_conntrack_entries",
                    &[],
                    figures.nat.conntrack_entries as f64,
                );
                out.family(
                    "netd_nat_connections",
                    "Tracked translated connections, by kind: snat (guest out, one host-side port each), dnat (through a published port), hairpin.",
                    "gauge",
                );
                for (kind, n) in [
                    ("snat", figures.nat.snat),
                    ("dnat", figures.nat.dnat),
                    ("hairpin", figures.nat.hairpin),
                ] {
                    out.sample("netd_nat_connections", &[("kind", kind)], n as f64);
                }
            }
            Err(err) => {
                tracing::warn!("metrics: dataplane figures unreadable: {err:#}");
                out.sample("netd_dataplane_up", &[], 0.0);
            }
        }
        if let Some(capacity) = conntrack_capacity(service) {
            out.family(
                "netd_conntrack_capacity",
                "Connection-tracking entries the dataplane can hold.",
                "gauge",
            );
            out.sample("netd_conntrack_capacity", &[], capacity as f64);
        }
        telemetry.render_own(&mut out);
        out.family("netd_build_info", "netd's version.", "gauge");
        out.sample(
            "netd_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("dataplane", &service.topology.config.dataplane.to_string()),
            ],
            1.0,
        );
        out.finish()
    }
}

/// The eBPF conntrack map's size; for nftables, the gateway namespace's
/// `nf_conntrack_max` (None without a gateway).
fn conntrack_capacity(service: &Service) -> Option<u64> {
    match service.topology.config.dataplane {
        DataplaneKind::Ebpf => Some(u64::from(netd_common::maps::CONNTRACK_MAX_ENTRIES)),
        DataplaneKind::Nftables => {
            let gateway = crate::netns::Netns::open(&service.topology.names.gateway_ns()).ok()?;
            gateway
                .run_in(|| std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max"))
                .ok()?
                .ok()?
                .trim()
                .parse()
                .ok()
        }
    }
}
