//! `netd guest add` in three steps, so that the slow one holds no lock but
//! its network's (see `shared`):
//!
//! 1. [`Service::plan_guest`] (service lock): validates the request and
//!    allocates the guest's address, slot, MAC and bridge port;
//! 2. [`PlannedGuest::build`] (no service lock): makes its namespace and veth
//!    pair in the kernel;
//! 3. [`Service::finish_guest`] (service lock): programs the dataplane, puts
//!    the guest in the desired state and commits it; or, if any step
//!    failed, takes away what the earlier ones made.

use std::sync::Arc;

use tracing::{info, warn};

use super::{Service, Shared, crash_point, guest_address, now, parse_guest_ip};
use crate::{
    daemon::{
        error::{ServiceError, ServiceResult},
        events::Event,
        requests::{AddGuest, GuestView},
    },
    ifname,
    model::{self, Guest, GuestNetns, NameKind, Network},
    topology::Topology,
};

/// What step 1 decided.
pub enum GuestPlan {
    /// The same guest exists already: the request is answered, nothing to do.
    Exists(Box<GuestView>),
    New(Box<PlannedGuest>),
}

/// A guest validated and allocated, not built yet.
pub struct PlannedGuest {
    net: Network,
    guest: Guest,
    /// Whether the address was picked by netd (the network's cursor moves).
    picked_address: bool,
    /// Whether step 1 brought a spanned network's part to this node (taken
    /// away again if the guest fails).
    adopted: bool,
    topology: Arc<Topology>,
}

impl PlannedGuest {
    /// Step 2: the guest's kernel objects; all or nothing (a failed build
    /// removes what it made).
    pub async fn build(&self) -> anyhow::Result<()> {
        self.topology.build_guest(&self.net, &self.guest).await
    }
}

impl Service {
    /// Step 1.
    pub async fn plan_guest(
        &mut self,
        network: &str,
        request: AddGuest,
    ) -> ServiceResult<GuestPlan> {
        // A spanned network's first guest on this node brings its part
        // here, and takes it away again if the guest is refused.
        let adopted = self.adopt_spanned(network).await?;
        match self.plan_guest_here(network, request).await {
            Ok(GuestPlan::New(mut planned)) => {
                planned.adopted = adopted;
                Ok(GuestPlan::New(planned))
            }
            Ok(exists) => Ok(exists),
            Err(err) => {
                if adopted {
                    self.drop_spanned_part(network).await;
                }
                Err(err)
            }
        }
    }

    async fn plan_guest_here(
        &mut self,
        network: &str,
        request: AddGuest,
    ) -> ServiceResult<GuestPlan> {
        let net = self.network(network)?.clone();
        model::validate_name(NameKind::Guest, &request.name)?;
        crate::labels::validate(&request.labels)
            .map_err(|err| ServiceError::Invalid(err.to_string()))?;
        let requested_ip = parse_guest_ip(request.ip.as_deref())?;
        let requested_mac = request
            .mac
            .as_deref()
            .map(|text| {
                text.parse::<crate::mac::Mac>()
                    .and_then(crate::mac::Mac::check_guest)
                    .map_err(|err| ServiceError::Invalid(err.to_string()))
            })
            .transpose()?;
        let netns = match &request.netns {
            None => GuestNetns::Owned,
            Some(path) => match self.existing_guest_netns(network, &request.name, path) {
                Some(same) => same,
                None => self.check_external_netns(path)?,
            },
        };
        if let Some(existing) = net.guests.get(&request.name) {
            let same = requested_ip.is_none_or(|ip| ip == existing.ip)
                && requested_mac.is_none_or(|mac| Some(mac) == existing.mac)
                && netns == existing.netns;
            return if same {
                Ok(GuestPlan::Exists(Box::new(self.guest_view(&net, existing))))
            } else {
                Err(ServiceError::Conflict(format!(
                    "guest {:?} exists in network {network:?} with address {}: remove it first to change it",
                    existing.name, existing.ip
                )))
            };
        }
        // A spanned network's addresses and slots are the cluster's.
        let (ip, slot) = match net.span {
            None => (guest_address(&net, requested_ip)?, net.free_slot()),
            Some(_) => {
                let allocated = self
                    .allocate_span_guest(&net, &request.name, requested_ip, requested_mac)
                    .await?;
                (allocated.ip, allocated.slot)
            }
        };
        let guest = Guest {
            name: request.name.clone(),
            ip,
            netns,
            created_at: now(),
            ports: Vec::new(),
            slot,
            bridge_port: ifname::bridge_port(&request.name, &net.bridge_ports()),
            labels: request.labels.clone(),
            mac: requested_mac,
            interface: None,
        };
        if let Some(holder) = net.guest_with_mac(net.mac_of(&guest), &guest.name) {
            let err = ServiceError::Conflict(format!(
                "MAC address {} is guest {:?}'s in network {network:?}: give another --mac, or \
                 leave it out to get one derived from the address",
                crate::mac::Mac(net.mac_of(&guest)),
                holder.name
            ));
            self.release_span_allocation(&net, &guest.name).await;
            return Err(err);
        }
        Ok(GuestPlan::New(Box::new(PlannedGuest {
            net,
            guest,
            picked_address: requested_ip.is_none(),
            adopted: false,
            topology: self.topology.clone(),
        })))
    }

    /// Step 3, given what step 2 returned.
    pub async fn finish_guest(
        &mut self,
        planned: Box<PlannedGuest>,
        built: anyhow::Result<()>,
    ) -> ServiceResult<GuestView> {
        let network = planned.net.name.clone();
        let finished = self.commit_guest(&planned, built).await;
        if finished.is_err() {
            self.release_span_allocation(&planned.net, &planned.guest.name)
                .await;
            if planned.adopted {
                self.drop_spanned_part(&network).await;
            }
        }
        finished
    }

    async fn commit_guest(
        &mut self,
        planned: &PlannedGuest,
        built: anyhow::Result<()>,
    ) -> ServiceResult<GuestView> {
        let PlannedGuest { net, guest, .. } = planned;
        let network = net.name.as_str();
        built.map_err(ServiceError::from)?;
        if let Err(gone) = self.network(network) {
            // Taken away meanwhile by the cluster (a spanned network
            // removed on another node): nowhere to add the guest.
            self.topology
                .teardown_guest(net, guest)
                .await
                .log("removing a guest of a gone network");
            return Err(gone);
        }
        let plumbing = self.topology.guest_plumbing(net, guest);
        if let Err(err) = self.dataplane.attach_guest(&plumbing) {
            self.teardown_guest(net, guest).await;
            return Err(err.into());
        }
        crash_point("guest-built");
        if let Err(err) = self.topology.announce_guest(net, guest) {
            // Peers learn the guest by ARP as usual; only a stale entry of
            // an earlier guest at its address waits to go stale.
            tracing::warn!("announcing guest {}/{}: {err:#}", net.name, guest.name);
        }
        let stored = self.network_mut(network);
        let previous_cursor = stored.guest_cursor;
        stored.guests.insert(guest.name.clone(), guest.clone());
        if planned.picked_address {
            stored.guest_cursor = Some(guest.ip);
        }
        self.network_names_changed(network);
        if let Err(err) = self.store.save_network(&self.state, network) {
            let stored = self.network_mut(network);
            stored.guests.remove(&guest.name);
            stored.guest_cursor = previous_cursor;
            self.network_names_changed(network);
            self.teardown_guest(net, guest).await;
            return Err(err.into());
        }
        info!(network, guest = %guest.name, ip = %guest.ip, "guest added");
        self.emit(
            Event::new("guest.added")
                .network(network)
                .guest(&guest.name)
                .detail(guest.ip.to_string()),
        );
        let net = self.network(network)?;
        Ok(self.guest_view(net, guest))
    }

    /// A spanned network's guest that will not be added gives its address
    /// and slot back to the cluster.
    async fn release_span_allocation(&self, net: &Network, guest: &str) {
        if net.span.is_some()
            && let Err(release) = self.release_span_guest(&net.name, guest).await
        {
            warn!("rolling back guest {}/{guest}: {release}", net.name);
        }
    }
}

impl Shared {
    /// `netd guest add`: the three steps, the slow one without the service
    /// lock, all under the network's lock.
    pub async fn add_guest(&self, network: String, request: AddGuest) -> ServiceResult<GuestView> {
        let shared = self.clone();
        self.run_whole(async move {
            let _network = shared.network(&network).await;
            let planned = match shared.lock().await.plan_guest(&network, request).await? {
                GuestPlan::Exists(view) => return Ok(*view),
                GuestPlan::New(planned) => planned,
            };
            let built = planned.build().await;
            shared.lock().await.finish_guest(planned, built).await
        })
        .await
    }
}
