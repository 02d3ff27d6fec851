//! Partitions: the service's side of `netd partition`. What a verb means is
//! decided in `crate::partition`; here the compiled rules replace the
//! network's policy in one dataplane step, then are persisted, all or
//! nothing. Timed partitions heal from the persisted deadline, so a daemon
//! restart does not forget them.

use std::{collections::BTreeMap, net::SocketAddrV4};

use anyhow::anyhow;
use tracing::{info, warn};

use super::Service;

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
use crate::daemon::{
    caller::Caller,
    error::{ServiceError, ServiceResult},
    probe::{self, Probe},
    requests::{PartitionRequest, PartitionView, StepView, VerifyReport},
};
use crate::{
    partition::{self, PartitionRules, PartitionState, through_ports::PortPath},
    ports::{PortForward, Proto},
};

impl Service {
    /// Puts `request` in force on `network`, replacing whatever was: the
    /// request is compiled first (an error leaves the network as it was),
    /// then applied, then persisted. `fullmesh` heals and stores nothing.
    pub fn set_partition(
        &mut self,
        network: &str,
        request: PartitionRequest,
        caller: Caller,
    ) -> ServiceResult<PartitionView> {
        self.set_partition_since(network, request, caller, std::time::Instant::now())
    }

    /// `set_partition` for a request that reached the daemon at `started`
    /// (before it waited for the service): `in_force_after_us` counts from
    /// there, as the README says.
    pub fn set_partition_since(
        &mut self,
        network: &str,
        mut request: PartitionRequest,
        caller: Caller,
        started: std::time::Instant,
    ) -> ServiceResult<PartitionView> {
        caller.may_partition(network)?;
        // A random split without a seed gets one now, stored with it.
        request.fill_seeds(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        let net = self.network(network)?;
        let slots = net.slots();
        let rules = partition::compile(network, &request, &slots)?;
        if let Some(reason) = self.dataplane.cannot_enforce(&rules) {
            return Err(ServiceError::Invalid(reason));
        }
        let line = request.describe();
        let heals = request.heals();
        let set_at_ms = now_ms();
        let set_at = set_at_ms / 1_000;
        // A schedule without --repeat heals at its end, as --for does.
        let lasts = request.duration_secs.or(request.schedule_secs());
        let state = (!heals).then(|| PartitionState {
            expires_at: lasts.map(|secs| set_at + secs),
            step: request.varies().then_some(0),
            partition: request,
            slots,
            set_at,
            set_at_ms,
            set_by: caller.to_string(),
        });
        let in_force_after = self.replace_partition(network, state, rules, started)?;
        info!(network, partition = %line, by = %caller, ?in_force_after, "partition set");
        let kind = if heals {
            "partition.healed"
        } else {
            "partition.set"
        };
        self.emit(
            crate::daemon::events::Event::new(kind)
                .network(network)
                .detail(format!("netd partition {network} {line} (by {caller})")),
        );
        let mut view = self.show_partition(network, true)?;
        view.in_force_after_us = Some(in_force_after.as_micros() as u64);
        Ok(view)
    }

    /// The partition in force on `network`, as asked for; with `matrix`,
    /// also what it compiles to and its matrix.
    pub fn show_partition(&self, network: &str, matrix: bool) -> ServiceResult<PartitionView> {
        let net = self.network(network)?;
        let slots = net.slots();
        let words = net
            .partition
            .as_ref()
            .map_or_else(|| "fullmesh".to_owned(), PartitionState::describe);
        let step = net.partition.as_ref().and_then(|state| {
            let at = state.step_at(now_ms())?;
            Some(StepView {
                index: at.index,
                count: at.count,
                in_force: at.partition.describe(),
                next: at.next_in_ms.and_then(|in_ms| {
                    let next = state.step_at(now_ms() + in_ms)?;
                    Some(next.partition.describe())
                }),
                next_in_ms: at.next_in_ms,
            })
        });
        let (rules, matrix) = if matrix {
            let rules = rules_in_force(net);
            let matrix = partition::render_rules(&rules, &slots);
            (Some(rules), Some(matrix))
        } else {
            (None, None)
        };
        Ok(PartitionView {
            network: net.name.clone(),
            command: format!("netd partition {} {words}", net.name),
            state: net.partition.clone(),
            matrix,
            slots,
            rules,
            step,
            in_force_after_us: None,
            cluster: None,
        })
    }

    /// Puts the step in force of every flapping or scheduled partition
    /// whose step changed by `now_ms`, one network at a time, each in one
    /// step as any policy. Called every 200 ms; a change that fails is
    /// logged and tried again next time.
    pub fn advance_schedules(&mut self, now_ms: u64) {
        let due: Vec<(String, usize)> = self
            .state
            .networks
            .values()
            .filter_map(|net| {
                let state = net.partition.as_ref()?;
                let at = state.step_at(now_ms)?;
                (state.step != Some(at.index)).then(|| (net.name.clone(), at.index))
            })
            .collect();
        for (network, index) in due {
            let net = self.network(&network).expect("listed above");
            let mut state = net.partition.clone().expect("listed above");
            let rules = match state.compile(&network, &net.slots(), now_ms) {
                Ok(rules) => rules,
                Err(err) => {
                    warn!(network, "the next step does not compile: {err}");
                    continue;
                }
            };
            state.step = Some(index);
            let described = state
                .step_at(now_ms)
                .map(|at| at.partition.describe())
                .unwrap_or_default();
            match self.replace_partition(&network, Some(state), rules, std::time::Instant::now()) {
                Ok(_) => {
                    info!(network, step = index + 1, policy = %described, "partition step");
                    self.emit(
                        crate::daemon::events::Event::new("partition.step")
                            .network(&network)
                            .detail(format!("step {}: {described}", index + 1)),
                    );
                }
                Err(err) => warn!(
                    network,
                    "the next step of the partition: {err:#}; trying again"
                ),
            }
        }
    }

    /// Heals every network whose timed partition is due at `now`. Called
    /// every few seconds and after the start-up reconcile; a heal that
    /// fails is logged and tried again next time.
    pub fn heal_expired(&mut self, now: u64) {
        let due: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|net| net.partition.as_ref().is_some_and(|p| p.expired(now)))
            .map(|net| net.name.clone())
            .collect();
        for network in due {
            let healed = self.replace_partition(
                &network,
                None,
                PartitionRules::default(),
                std::time::Instant::now(),
            );
            match healed {
                Ok(_) => {
                    info!(network, "partition expired: healed");
                    self.emit(
                        crate::daemon::events::Event::new("partition.expired").network(&network),
                    );
                }
                Err(err) => warn!(
                    network,
                    "healing an expired partition: {err:#}; trying again"
                ),
            }
        }
    }

    /// Sends real datagrams between every ordered pair of `network`'s guests
    /// and reports what arrived against what the partition intends.
    /// What `verify` will probe in `network`, taken from the state; the
    /// probing itself ([`VerifyPlan::run`]) needs no service lock.
    pub fn plan_verify(&self, network: &str) -> ServiceResult<VerifyPlan> {
        let net = self.network(network)?;
        let probes: Vec<Probe> = net
            .guests
            .values()
            .map(|guest| Probe {
                name: guest.name.clone(),
                slot: guest.slot,
                ip: guest.ip,
                netns: self.topology.guest_netns_path(net, guest),
            })
            .collect();
        let rules = rules_in_force(net);
        // Shares are measured: many datagrams per pair, not a few.
        // This host's guests: a spanned network's remote ones are probed
        // from their own nodes.
        let slots = net.local_slots();
        let per_pair = if partition::measure::needs_measuring(&rules, slots.values().copied()) {
            partition::measure::MEASURED_PER_PAIR
        } else {
            probe::DATAGRAMS_PER_PAIR
        };
        let across = self.verify_across(net);
        Ok(VerifyPlan {
            across,
            network: network.to_owned(),
            probes,
            rules,
            slots,
            per_pair,
            published: published_ports(net),
            gateway_ip: self.topology.config.gateway_ip(),
            host_link_net: self.topology.config.host_link_net,
        })
    }

    /// Makes `state` (compiled to `rules`) the network's partition: applied
    /// in one step, then persisted; if persisting fails, the previous rules
    /// are applied again and the previous state restored.
    /// Returns how long after `started` the new policy was in force.
    pub(super) fn replace_partition(
        &mut self,
        network: &str,
        state: Option<PartitionState>,
        rules: PartitionRules,
        started: std::time::Instant,
    ) -> ServiceResult<std::time::Duration> {
        let net = self.network(network)?;
        let zone = net.zone();
        let previous = net.partition.clone();
        let previous_rules = rules_in_force(net);
        self.dataplane.apply_partition(zone, &rules)?;
        let in_force_after = started.elapsed();
        self.network_mut(network).partition = state;
        if let Err(err) = self.store.save_network(&self.state, network) {
            if let Err(undo) = self.dataplane.apply_partition(zone, &previous_rules) {
                warn!(network, "restoring the previous partition: {undo:#}");
            }
            self.network_mut(network).partition = previous;
            return Err(err.into());
        }
        self.network_names_changed(network);
        Ok(in_force_after)
    }

    /// A network the caller has already looked up.
    pub(super) fn network_mut(&mut self, network: &str) -> &mut crate::model::Network {
        self.state
            .networks
            .get_mut(network)
            .expect("looked up above")
    }
}

/// A verify's probes and what to judge them against.
pub struct VerifyPlan {
    /// A spanned network with guests on other nodes: its pairs are probed
    /// by a round across the nodes (`super::span_requests`).
    across: Option<super::span_requests::VerifyAcross>,
    network: String,
    probes: Vec<Probe>,
    rules: PartitionRules,
    slots: std::collections::BTreeMap<String, u8>,
    per_pair: u32,
    /// Each guest's first published TCP and UDP port, for the probes of
    /// cut pairs through them.
    published: BTreeMap<String, Vec<PortForward>>,
    gateway_ip: std::net::Ipv4Addr,
    host_link_net: ipnetwork::Ipv4Network,
}

/// Each guest's first published TCP port and first UDP port.
fn published_ports(net: &crate::model::Network) -> BTreeMap<String, Vec<PortForward>> {
    net.guests
        .values()
        .map(|guest| {
            let ports: Vec<PortForward> = [Proto::Tcp, Proto::Udp]
                .into_iter()
                .filter_map(|proto| guest.ports.iter().find(|p| p.proto == proto).cloned())
                .collect();
            (guest.name.clone(), ports)
        })
        .filter(|(_, ports)| !ports.is_empty())
        .collect()
}

/// Where each port of `published` answers from inside a network: at the
/// gateway's address, and at a host address (the port's own, or the
/// host's first outside netd's host link).
async fn published_paths(
    published: &BTreeMap<String, Vec<PortForward>>,
    gateway_ip: std::net::Ipv4Addr,
    host_link_net: ipnetwork::Ipv4Network,
) -> ServiceResult<BTreeMap<String, Vec<PortPath>>> {
    if published.is_empty() {
        return Ok(BTreeMap::new());
    }
    let host = crate::netlink::HostView::read().await?;
    let host_ip = host
        .reachable_ips()
        .into_iter()
        .find(|ip| !host_link_net.contains(*ip));
    Ok(published
        .iter()
        .map(|(guest, ports)| {
            let paths = ports
                .iter()
                .flat_map(|port| {
                    let host_port = port.host_ports.ports().next().unwrap_or(0);
                    let guest_port = port.guest_ports.ports().next().unwrap_or(0);
                    [Some(gateway_ip), port.host_ip.or(host_ip)]
                        .into_iter()
                        .flatten()
                        .map(move |ip| PortPath {
                            proto: port.proto,
                            via: SocketAddrV4::new(ip, host_port),
                            guest_port,
                        })
                })
                .collect();
            (guest.clone(), paths)
        })
        .collect())
}

impl VerifyPlan {
    /// This node's guests of the plan.
    pub fn local_probes(&self) -> Vec<Probe> {
        self.probes.clone()
    }

    /// Sends the probes' traffic (seconds, when faults are measured) and
    /// judges what arrived.
    pub async fn run(self) -> ServiceResult<VerifyReport> {
        let VerifyPlan {
            across,
            network,
            probes,
            rules,
            slots,
            per_pair,
            published,
            gateway_ip,
            host_link_net,
        } = self;
        let timed = partition::rtt::pairs_to_time(&rules, &slots);
        // Rates are measured pair by pair, at most rate::MAX_PAIRS of them.
        let (rated, unrated) = partition::rate::pairs_to_measure(&rules, &slots);
        let held = std::time::Duration::from_millis(partition::rtt::longest_hold_ms(&rules));
        let published = published_paths(&published, gateway_ip, host_link_net).await?;
        // Across nodes: the round first (every node's guests, every pair),
        // then this node's own timings and rates.
        let (crossed, judged_slots) = match across {
            Some(across) => {
                let all = across.all_slots();
                (Some(across.run(&probes, per_pair, held).await?), all)
            }
            None => (None, slots.clone()),
        };
        let local_exchange = crossed.is_none();
        let (received, rtts, rates) = tokio::task::spawn_blocking({
            let probes = probes.clone();
            move || {
                let received = if local_exchange {
                    probe::exchange(&probes, per_pair, held)?
                } else {
                    BTreeMap::new()
                };
                let rtts = probe::time_pairs(&probes, timed)?;
                let rates = crate::daemon::rate_probe::measure_pairs(&probes, rated, held)?;
                anyhow::Ok((received, rtts, rates))
            }
        })
        .await
        .map_err(|err| anyhow!("the verify thread failed: {err}"))??;
        let (received, silent) = match crossed {
            Some(crossed) => (crossed.received, crossed.silent),
            None => (received, Vec::new()),
        };
        let mut report = partition::judge(&network, &rules, &judged_slots, &received, per_pair);
        super::span_requests::report_silent_nodes(&mut report, &silent);
        partition::rtt::add_to_report(&mut report, &rtts);
        partition::rate::add_to_report(&mut report, &rates, &unrated);
        // Cut pairs again, through the receivers' published ports.
        let through_ports = partition::through_ports::probes(&report, &published);
        let outcomes =
            tokio::task::spawn_blocking(move || probe::through_ports(&probes, through_ports))
                .await
                .map_err(|err| anyhow!("the verify thread failed: {err}"))??;
        partition::through_ports::add_to_report(&mut report, outcomes);
        Ok(report)
    }
}

impl super::Shared {
    /// `netd partition verify`: the network's lock is held throughout (its
    /// partition cannot change under the probes), the service lock only
    /// while the probes are planned.
    pub async fn verify_partition(&self, network: String) -> ServiceResult<VerifyReport> {
        let shared = self.clone();
        self.run_whole(async move {
            let _network = shared.network(&network).await;
            let plan = shared.lock().await.plan_verify(&network)?;
            plan.run().await
        })
        .await
    }
}

/// What the dataplane holds for a network's partition: its stored request
/// compiled against its stored slots; nothing cut without one. A stored
/// request that no longer compiles (a state edited by hand) cuts nothing,
/// and says so in the log.
pub fn rules_in_force(net: &crate::model::Network) -> PartitionRules {
    let Some(state) = &net.partition else {
        return PartitionRules::default();
    };
    state
        .compile(&net.name, &net.slots(), now_ms())
        .unwrap_or_else(|err| {
            warn!(network = %net.name, "the stored partition does not compile: {err}; nothing is cut");
            PartitionRules::default()
        })
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        net::Ipv4Addr,
        sync::{Arc, Mutex, atomic::Ordering},
    };

    use super::*;
    use crate::{
        config::Config,
        dataplane::testing::Recorder,
        model::{Guest, GuestNetns, Network, State},
        partition::Partition,
        store::Store,
        topology::Topology,
    };

    type Applied = Arc<Mutex<BTreeMap<u32, PartitionRules>>>;

    /// Networks `web` (zone 1: guests a, b, c in slots 0, 1, 2) and `db`
    /// (zone 5: guest pg), stored in `dir`; the recorder's applied rules and
    /// its refusal switch. Builds nothing in the kernel.
    fn service(dir: &std::path::Path) -> (Service, Applied, Arc<std::sync::atomic::AtomicBool>) {
        let guest = |name: &str, slot: u8| Guest {
            mac: None,
            interface: None,
            bridge_port: String::new(),
            name: name.to_owned(),
            ip: Ipv4Addr::new(172, 18, 0, slot + 1),
            netns: GuestNetns::Owned,
            created_at: 0,
            ports: Vec::new(),
            slot,
            labels: Default::default(),
        };
        let network = |name: &str, uplink_slot: u16, guests: Vec<Guest>| Network {
            internal: false,
            mtu: None,
            span: None,
            name: name.to_owned(),
            subnet: crate::config::DEFAULT_SUBNET,
            routable: false,
            uplink_slot,
            guests: guests.into_iter().map(|g| (g.name.clone(), g)).collect(),
            guest_cursor: None,
            created_at: 0,
            partition: None,
        };
        let state = State {
            networks: BTreeMap::from([
                (
                    "web".to_owned(),
                    network("web", 0, vec![guest("a", 0), guest("b", 1), guest("c", 2)]),
                ),
                ("db".to_owned(), network("db", 4, vec![guest("pg", 0)])),
            ]),
            uplink_cursor: Some(4),
        };
        let recorder = Recorder::default();
        let applied = recorder.partitions.clone();
        let refuse = recorder.refuse_partitions.clone();
        let topology = Topology::new(Config::default()).unwrap();
        let service = Service::new(
            topology,
            Store::open(dir).unwrap(),
            state,
            Box::new(recorder),
        );
        (service, applied, refuse)
    }

    fn saved(dir: &std::path::Path) -> State {
        Store::open(dir)
            .unwrap()
            .load()
            .unwrap()
            .expect("a saved state")
    }

    fn request(line: &str) -> PartitionRequest {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        Partition::from_words(&words).unwrap()
    }

    fn guest_a() -> Caller {
        Caller::Guest {
            network: "web".into(),
            guest: "a".into(),
        }
    }

    #[test]
    fn a_partition_is_applied_to_its_zone_persisted_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        let view = svc
            .set_partition("web", request("isolate a"), Caller::Host)
            .unwrap();

        let rules = applied.lock().unwrap()[&1].clone();
        assert_eq!(rules.outside_cut(), [0].into());
        assert_eq!(rules.cut().len(), 4);
        assert_eq!(view.rules, Some(rules));
        assert_eq!(view.command, "netd partition web isolate a");
        assert_eq!(
            view.slots,
            BTreeMap::from([("a".into(), 0), ("b".into(), 1), ("c".into(), 2)])
        );
        assert!(
            view.matrix
                .as_deref()
                .unwrap()
                .starts_with("from \\ to  a  b  c  outside\na          -  X  X  X\n"),
            "{:?}",
            view.matrix
        );
        let state = view.state.expect("a partition state");
        assert_eq!(state.set_by, "host");
        assert_eq!(state.expires_at, None);
        assert_eq!(saved(dir.path()).networks["web"].partition, Some(state));
        assert!(!applied.lock().unwrap().contains_key(&5), "db is untouched");
    }

    #[test]
    fn fullmesh_heals_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        svc.set_partition("web", request("split a b"), Caller::Host)
            .unwrap();
        let view = svc
            .set_partition("web", request("heal"), Caller::Host)
            .unwrap();
        assert_eq!(applied.lock().unwrap()[&1], PartitionRules::default());
        assert_eq!(view.state, None);
        assert_eq!(view.command, "netd partition web fullmesh");
        assert_eq!(saved(dir.path()).networks["web"].partition, None);
    }

    #[test]
    fn a_timed_partition_stores_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, _, _) = service(dir.path());
        let view = svc
            .set_partition("web", request("cut --from a --to b --for 5m"), Caller::Host)
            .unwrap();
        let state = view.state.unwrap();
        assert_eq!(state.expires_at, Some(state.set_at + 300));
        assert_eq!(
            view.command,
            "netd partition web cut --from a --to b --for 5m"
        );
    }

    #[test]
    fn a_refused_request_applies_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        let err = svc
            .set_partition("web", request("disjoint a -- b"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("guest c is in no group"), "{err}");
        let err = svc
            .set_partition("web", request("isolate pg"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("`netd guest ls web`"), "{err}");
        let err = svc
            .set_partition("nope", request("isolate a"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(applied.lock().unwrap().is_empty());
        assert!(svc.state.networks["web"].partition.is_none());
    }

    #[test]
    fn a_dataplane_failure_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, refuse) = service(dir.path());
        svc.set_partition("web", request("isolate a"), Caller::Host)
            .unwrap();
        refuse.store(true, Ordering::SeqCst);
        let err = svc
            .set_partition("web", request("isolate b"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 500);
        assert_eq!(
            svc.state.networks["web"]
                .partition
                .as_ref()
                .unwrap()
                .describe(),
            "isolate a"
        );
        assert_eq!(applied.lock().unwrap()[&1].outside_cut(), [0].into());
    }

    #[test]
    fn a_failed_save_puts_the_previous_partition_back() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let (mut svc, applied, _) = service(&blocker.join("state"));
        let err = svc
            .set_partition("web", request("isolate a"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 500);
        assert_eq!(applied.lock().unwrap()[&1], PartitionRules::default());
        assert!(svc.state.networks["web"].partition.is_none());
    }

    #[test]
    fn a_guest_partitions_its_own_network_and_is_named_as_the_setter() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, _, _) = service(dir.path());
        let view = svc
            .set_partition("web", request("isolate b"), guest_a())
            .unwrap();
        assert_eq!(view.state.unwrap().set_by, "guest a");
        let err = svc
            .set_partition("db", request("isolate pg"), guest_a())
            .unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(svc.state.networks["db"].partition.is_none());
    }

    #[test]
    fn expired_partitions_heal_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        svc.set_partition("web", request("isolate a --for 1m"), Caller::Host)
            .unwrap();
        svc.set_partition("db", request("isolate pg"), Caller::Host)
            .unwrap();
        let deadline = svc.state.networks["web"]
            .partition
            .as_ref()
            .unwrap()
            .expires_at
            .unwrap();

        svc.heal_expired(deadline - 1);
        assert!(svc.state.networks["web"].partition.is_some());
        svc.heal_expired(deadline);
        assert!(svc.state.networks["web"].partition.is_none());
        assert!(saved(dir.path()).networks["web"].partition.is_none());
        assert_eq!(applied.lock().unwrap()[&1], PartitionRules::default());
        assert!(
            svc.state.networks["db"].partition.is_some(),
            "untimed: stays"
        );
    }

    #[test]
    fn a_heal_that_fails_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, _, refuse) = service(dir.path());
        svc.set_partition("web", request("isolate a --for 1s"), Caller::Host)
            .unwrap();
        refuse.store(true, Ordering::SeqCst);
        svc.heal_expired(u64::MAX);
        assert!(svc.state.networks["web"].partition.is_some());
        refuse.store(false, Ordering::SeqCst);
        svc.heal_expired(u64::MAX);
        assert!(svc.state.networks["web"].partition.is_none());
    }

    #[test]
    fn a_flap_steps_between_the_policy_and_a_heal_from_its_stored_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        let view = svc
            .set_partition("web", request("isolate a --flap 2s"), Caller::Host)
            .unwrap();
        let step = view.step.expect("a flap has steps");
        assert_eq!((step.index, step.count), (0, 2));
        assert_eq!(step.in_force, "isolate a");
        assert_eq!(step.next.as_deref(), Some("fullmesh"));
        assert_eq!(applied.lock().unwrap()[&1].outside_cut(), [0].into());
        let start = svc.state.networks["web"]
            .partition
            .as_ref()
            .unwrap()
            .set_at_ms;

        svc.advance_schedules(start + 1_999);
        assert_eq!(applied.lock().unwrap()[&1].outside_cut(), [0].into());
        svc.advance_schedules(start + 2_000);
        assert!(applied.lock().unwrap()[&1].is_full_mesh(), "healed");
        let saved_state = saved(dir.path()).networks["web"].partition.clone().unwrap();
        assert_eq!(saved_state.step, Some(1), "the step is persisted");
        assert_eq!(saved_state.describe(), "isolate a --flap 2s");
        svc.advance_schedules(start + 4_100);
        assert_eq!(applied.lock().unwrap()[&1].outside_cut(), [0].into());
        // A restarted daemon finds the step from the stored start alone.
        let rules = rules_in_force(&svc.state.networks["web"]);
        assert!(rules.is_full_mesh() || rules.outside_cut() == [0].into());
    }

    #[test]
    fn a_schedule_heals_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, applied, _) = service(dir.path());
        let view = svc
            .set_partition(
                "web",
                request("schedule 10s isolate a then 5s cut --from b --to c"),
                Caller::Host,
            )
            .unwrap();
        let state = view.state.unwrap();
        assert_eq!(state.expires_at, Some(state.set_at + 15));
        svc.advance_schedules(state.set_at_ms + 10_000);
        assert_eq!(applied.lock().unwrap()[&1].cut(), [(1, 2)].into());
        svc.heal_expired(state.set_at + 15);
        assert!(svc.state.networks["web"].partition.is_none());
        let err = svc
            .set_partition("web", request("schedule 10s isolate zed"), Caller::Host)
            .unwrap_err();
        assert_eq!(err.status(), 404, "every step is checked at once");
    }

    #[test]
    fn show_of_an_unpartitioned_network_is_a_full_mesh() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, _, _) = service(dir.path());
        let view = svc.show_partition("db", true).unwrap();
        assert_eq!(view.command, "netd partition db fullmesh");
        assert_eq!(view.rules, Some(PartitionRules::default()));
        assert_eq!(
            view.matrix.as_deref().unwrap(),
            "from \\ to  pg  outside\npg         -   .\noutside    .   -\n. allowed  X cut  - itself\n"
        );
        assert_eq!(svc.show_partition("nope", false).unwrap_err().status(), 404);
        let plain = svc.show_partition("db", false).unwrap();
        assert_eq!((plain.rules, plain.matrix), (None, None));
    }
}
