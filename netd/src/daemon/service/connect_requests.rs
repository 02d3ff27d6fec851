//! A guest on several networks: the service's side of `netd network
//! connect` and `disconnect`. A connection is an entry in the other
//! network's guests, of the same name, living in the guest's own namespace
//! (`GuestNetns::Connected`) on its own interface (`eth1`, ...): the
//! dataplane, partitions and names treat it as that network's guest, and
//! it goes with the guest, with the network, or with `disconnect`.

use std::collections::BTreeSet;

use tracing::info;

use super::{Service, crash_point, guest_address, now, parse_guest_ip};
use crate::{
    daemon::{
        error::{ServiceError, ServiceResult},
        events::Event,
        requests::{ConnectGuest, GuestView},
    },
    ifname, ipam,
    model::{Guest, GuestNetns, Network},
};

impl Service {
    /// Connects guest `request.guest` of network `request.network_of` to
    /// `network`: a new interface there with an address of that network.
    /// All or nothing.
    pub async fn connect_guest(
        &mut self,
        network: &str,
        request: ConnectGuest,
    ) -> ServiceResult<GuestView> {
        let net = self.network(network)?.clone();
        let home = self.network(&request.network_of)?.clone();
        let name = request.guest.as_str();
        let own = home.guests.get(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guest named {name:?} in network {:?}: `netd guest ls {}` lists them",
                home.name, home.name
            ))
        })?;
        if let Some(first) = own.home() {
            return Err(ServiceError::Invalid(format!(
                "guest {name:?} is in network {:?} by a connection: give its own network, \
                 --network-of {first}",
                home.name
            )));
        }
        if network == home.name {
            return Err(ServiceError::Conflict(format!(
                "guest {name:?} is already on network {network:?}: it is its own network"
            )));
        }
        if let Some(there) = net.guests.get(name) {
            return Err(ServiceError::Conflict(match there.home() {
                Some(from) if from == home.name => format!(
                    "guest {name:?} is already on network {network:?} (as {}): disconnect it \
                     first to connect it again",
                    there.ifname()
                ),
                _ => format!(
                    "network {network:?} has a guest named {name:?} already: names resolve per \
                     network, so another guest of that name cannot join it"
                ),
            }));
        }
        let joined = self.connections_of(&home.name, name);
        let mut subnets = vec![(home.name.clone(), home.subnet)];
        subnets.extend(joined.iter().map(|(net, _)| (net.name.clone(), net.subnet)));
        if let Some((other, subnet)) = subnets
            .iter()
            .find(|(_, subnet)| ipam::overlaps(*subnet, net.subnet))
        {
            return Err(ServiceError::Conflict(format!(
                "network {network:?} ({}) overlaps network {other:?} ({subnet}), which guest \
                 {name:?} is on: its interfaces would share addresses; connect it to a network \
                 made with another --subnet",
                net.subnet
            )));
        }
        let requested_ip = parse_guest_ip(request.ip.as_deref())?;
        let ip = guest_address(&net, requested_ip)?;
        let taken: BTreeSet<&str> = joined.iter().map(|(_, g)| g.ifname()).collect();
        let interface = (1..)
            .map(|n| format!("eth{n}"))
            .find(|eth| !taken.contains(eth.as_str()))
            .expect("an unused ethN");
        let guest = Guest {
            name: name.to_owned(),
            ip,
            netns: GuestNetns::Connected {
                network: home.name.clone(),
                path: self.topology.guest_netns_path(&home, own),
            },
            created_at: now(),
            ports: Vec::new(),
            slot: net.free_slot(),
            bridge_port: ifname::bridge_port(name, &net.bridge_ports()),
            labels: Default::default(),
            mac: None,
            interface: Some(interface.clone()),
        };

        self.build_guest(&net, &guest).await?;
        crash_point("connection-built");
        let stored = self.state.networks.get_mut(network).expect("checked above");
        let previous_cursor = stored.guest_cursor;
        stored.guests.insert(guest.name.clone(), guest.clone());
        if requested_ip.is_none() {
            stored.guest_cursor = Some(ip);
        }
        self.network_names_changed(network);
        if let Err(err) = self.store.save_network(&self.state, network) {
            let stored = self.state.networks.get_mut(network).expect("checked above");
            stored.guests.remove(name);
            stored.guest_cursor = previous_cursor;
            self.network_names_changed(network);
            self.teardown_guest(&net, &guest).await;
            return Err(err.into());
        }
        info!(network, guest = name, from = %home.name, %ip, %interface, "guest connected");
        self.emit(
            Event::new("guest.connected")
                .network(network)
                .guest(name)
                .detail(format!("{ip} on {interface}, from network {}", home.name)),
        );
        let net = self.network(network)?;
        Ok(self.guest_view(net, &guest))
    }

    /// Removes guest `name`'s connection to `network` (its interface there).
    pub async fn disconnect_guest(&mut self, network: &str, name: &str) -> ServiceResult<()> {
        let net = self.network(network)?;
        let guest = net.guests.get(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guest named {name:?} is on network {network:?}: `netd guest ls {network}` \
                 lists them"
            ))
        })?;
        if guest.home().is_none() {
            return Err(ServiceError::Invalid(format!(
                "guest {name:?} is network {network:?}'s own guest, not a connection: remove it \
                 with `netd guest rm {network} {name}`"
            )));
        }
        self.drop_connection(network, name).await?;
        Ok(())
    }

    /// Tears down and forgets one connection, its ports with it.
    pub(super) async fn drop_connection(&mut self, network: &str, name: &str) -> ServiceResult<()> {
        let net = self.network(network)?.clone();
        let Some(guest) = net.guests.get(name).cloned() else {
            return Ok(());
        };
        self.dataplane
            .unpublish(&Self::guest_port_mappings(&net, &guest));
        self.teardown_guest(&net, &guest).await;
        crash_point("connection-torn-down");
        if let Some(stored) = self.state.networks.get_mut(network) {
            stored.guests.remove(name);
        }
        self.network_names_changed(network);
        self.store.save_network(&self.state, network)?;
        info!(network, guest = name, "guest disconnected");
        self.emit(
            Event::new("guest.disconnected")
                .network(network)
                .guest(name),
        );
        Ok(())
    }

    /// Guest `name` of network `home`'s connections to other networks.
    pub(super) fn connections_of(&self, home: &str, name: &str) -> Vec<(Network, Guest)> {
        self.state
            .networks
            .values()
            .filter_map(|net| {
                let guest = net.guests.get(name)?;
                (guest.home() == Some(home)).then(|| (net.clone(), guest.clone()))
            })
            .collect()
    }

    /// Drops guest `name` of `home`'s connections (before the guest goes).
    pub(super) async fn drop_connections_of(
        &mut self,
        home: &str,
        name: &str,
    ) -> ServiceResult<()> {
        for (net, _) in self.connections_of(home, name) {
            self.drop_connection(&net.name, name).await?;
        }
        Ok(())
    }
}
