//! Publishing guest ports: the service's side of `netd port`. What a spec
//! means and whether it may be published is decided in `crate::ports`; here
//! it is applied to the dataplane, then persisted, all or nothing.

use tracing::info;

use super::Service;
use crate::{
    daemon::{
        error::{ServiceError, ServiceResult},
        requests::PortView,
    },
    model::{Guest, Network},
    ports::{self, PortForward, PortMapping},
};

impl Service {
    /// `add_port` as the API calls it: a forward on one host address is
    /// refused unless the host has that address (naming those it has).
    pub async fn publish_port(
        &mut self,
        network: &str,
        guest: &str,
        spec: &str,
    ) -> ServiceResult<PortView> {
        let forward: PortForward = spec.parse()?;
        if let Some(ip) = forward.host_ip {
            let host = crate::netlink::HostView::read().await?;
            let addresses = host.reachable_ips();
            if !addresses.contains(&ip) {
                let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                return Err(ServiceError::Invalid(format!(
                    "host address {ip} in {spec:?} is not an address of the host: use one of \
                     {}, or leave the address out to publish on every host address",
                    listed.join(", ")
                )));
            }
        }
        self.add_port(network, guest, spec)
    }

    /// Publishes `spec` to a guest. Repeating an identical request changes
    /// nothing and answers the same.
    pub fn add_port(&mut self, network: &str, guest: &str, spec: &str) -> ServiceResult<PortView> {
        let net = self.network(network)?;
        let g = guest_in(net, guest)?;
        let forward: PortForward = spec.parse()?;
        if net.internal {
            return Err(ServiceError::Invalid(format!(
                "network {network:?} is internal: its guests are reachable from nothing outside \
                 it, so no port is published; publish from a guest of a network made without \
                 --internal"
            )));
        }
        if g.ports.contains(&forward) {
            return Ok(Self::port_view(net, g, &forward));
        }
        ports::check_conflicts(&forward, self.forwards())?;
        let mappings = forward.mappings(net.zone(), g.ip);

        self.dataplane.publish(&mappings)?;
        super::crash_point("port-published");
        self.guest_mut(network, guest).ports.push(forward.clone());
        if let Err(err) = self.store.save_network(&self.state, network) {
            self.guest_mut(network, guest)
                .ports
                .retain(|held| held != &forward);
            self.dataplane.unpublish(&mappings);
            return Err(err.into());
        }
        info!(network, guest, port = %forward, "port published");
        self.emit(
            crate::daemon::events::Event::new("port.published")
                .network(network)
                .guest(guest)
                .detail(forward.to_string()),
        );
        let net = self.network(network)?;
        Ok(Self::port_view(net, guest_in(net, guest)?, &forward))
    }

    /// Withdraws a forward `add_port` published. `spec` may be written any
    /// way that parses to the same forward (`8080:80` for `8080:80/tcp`).
    pub fn remove_port(&mut self, network: &str, guest: &str, spec: &str) -> ServiceResult<()> {
        let net = self.network(network)?;
        let g = guest_in(net, guest)?;
        let forward: PortForward = spec.parse()?;
        if !g.ports.contains(&forward) {
            return Err(ServiceError::NotFound(format!(
                "guest {guest:?} in network {network:?} does not publish {forward}: \
                 `netd port ls {network}` lists what it publishes"
            )));
        }
        let mappings = forward.mappings(net.zone(), g.ip);

        self.dataplane.unpublish(&mappings);
        super::crash_point("port-withdrawn");
        self.guest_mut(network, guest)
            .ports
            .retain(|held| held != &forward);
        self.store.save_network(&self.state, network)?;
        info!(network, guest, port = %forward, "port withdrawn");
        self.emit(
            crate::daemon::events::Event::new("port.withdrawn")
                .network(network)
                .guest(guest)
                .detail(forward.to_string()),
        );
        Ok(())
    }

    /// Published ports of one network, or of every network, in network,
    /// guest and publication order.
    pub fn list_ports(&self, network: Option<&str>) -> ServiceResult<Vec<PortView>> {
        let networks: Vec<&Network> = match network {
            Some(name) => vec![self.network(name)?],
            None => self.state.networks.values().collect(),
        };
        Ok(networks
            .into_iter()
            .flat_map(|net| {
                net.guests.values().flat_map(move |guest| {
                    guest
                        .ports
                        .iter()
                        .map(move |forward| Self::port_view(net, guest, forward))
                })
            })
            .collect())
    }

    /// What the dataplane must hold for one guest's forwards: removing the
    /// guest unpublishes exactly these.
    pub fn guest_port_mappings(net: &Network, guest: &Guest) -> Vec<PortMapping> {
        guest
            .ports
            .iter()
            .flat_map(|forward| forward.mappings(net.zone(), guest.ip))
            .collect()
    }

    /// What the dataplane must hold for every forward of the desired state,
    /// for reconciling it.
    pub fn all_port_mappings(&self) -> Vec<PortMapping> {
        self.state
            .networks
            .values()
            .flat_map(|net| {
                net.guests
                    .values()
                    .flat_map(|guest| Self::guest_port_mappings(net, guest))
            })
            .collect()
    }

    pub fn port_view(net: &Network, guest: &Guest, forward: &PortForward) -> PortView {
        PortView {
            network: net.name.clone(),
            guest: guest.name.clone(),
            guest_ip: guest.ip.to_string(),
            spec: forward.to_string(),
            host_ip: forward.host_ip.map(|ip| ip.to_string()),
            host_ports: forward.host_ports.to_string(),
            guest_ports: forward.guest_ports.to_string(),
            proto: forward.proto,
        }
    }

    /// Every forward of every guest, with its network and guest names, as
    /// `ports::check_conflicts` wants them.
    fn forwards(&self) -> impl Iterator<Item = (&str, &str, &PortForward)> {
        self.state.networks.values().flat_map(|net| {
            net.guests.values().flat_map(move |guest| {
                guest
                    .ports
                    .iter()
                    .map(move |forward| (net.name.as_str(), guest.name.as_str(), forward))
            })
        })
    }

    /// A guest the caller has already looked up.
    fn guest_mut(&mut self, network: &str, guest: &str) -> &mut Guest {
        self.state
            .networks
            .get_mut(network)
            .and_then(|net| net.guests.get_mut(guest))
            .expect("looked up above")
    }
}

fn guest_in<'a>(net: &'a Network, name: &str) -> ServiceResult<&'a Guest> {
    net.guests.get(name).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "no guest named {name:?} in network {:?}: `netd guest ls {}` lists them",
            net.name, net.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use super::*;
    use crate::{config::Config, model::State, ports::Proto, store::Store, topology::Topology};

    /// Networks `web` (slot 0: 172.18.0.1 web1, 172.18.0.2 web2) and `db`
    /// (slot 4: 172.18.0.1 pg), stored in `dir`. Builds nothing in the kernel.
    fn service(dir: &std::path::Path) -> Service {
        use crate::model::test_support;
        let guest =
            |name: &str, last: u8| test_support::guest(name, &format!("172.18.0.{last}"), last);
        let network = |name: &str, slot: u16, guests: Vec<Guest>| {
            let mut network = test_support::network(name, "172.18.0.0/24", slot);
            network.guests = guests.into_iter().map(|g| (g.name.clone(), g)).collect();
            network
        };
        let state = State {
            networks: BTreeMap::from([
                (
                    "web".to_owned(),
                    network("web", 0, vec![guest("web1", 1), guest("web2", 2)]),
                ),
                ("db".to_owned(), network("db", 4, vec![guest("pg", 1)])),
            ]),
            uplink_cursor: Some(4),
        };
        let topology = Topology::new(Config::default()).unwrap();
        Service::new(
            topology,
            Store::open(dir).unwrap(),
            state,
            Box::new(crate::dataplane::testing::Recorder::default()),
        )
    }

    fn saved(dir: &std::path::Path) -> State {
        Store::open(dir)
            .unwrap()
            .load()
            .unwrap()
            .expect("a saved state")
    }

    #[test]
    fn an_added_port_is_stored_with_its_guest_and_shown_canonically() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        let view = svc
            .add_port("web", "web1", "0.0.0.0:8000-8001:80-81")
            .unwrap();
        assert_eq!(
            view,
            PortView {
                network: "web".into(),
                guest: "web1".into(),
                guest_ip: "172.18.0.1".into(),
                spec: "8000-8001:80-81/tcp".into(),
                host_ip: None,
                host_ports: "8000-8001".into(),
                guest_ports: "80-81".into(),
                proto: Proto::Tcp,
            }
        );
        let stored = &saved(dir.path()).networks["web"].guests["web1"].ports;
        assert_eq!(stored, &vec!["8000-8001:80-81".parse().unwrap()]);
        assert_eq!(svc.list_ports(None).unwrap(), vec![view]);
    }

    #[test]
    fn adding_the_same_forward_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        let first = svc.add_port("web", "web1", "8080:80").unwrap();
        let again = svc.add_port("web", "web1", "0.0.0.0:8080:80/tcp").unwrap();
        assert_eq!(first, again);
        assert_eq!(svc.state.networks["web"].guests["web1"].ports.len(), 1);
    }

    #[test]
    fn a_taken_host_port_is_a_conflict_across_networks() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web1", "8080:80").unwrap();
        let err = svc.add_port("db", "pg", "10.0.0.5:8080:5432").unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(
            err.to_string()
                .contains("guest web1 in network web (8080:80/tcp)"),
            "{err}"
        );
        assert!(svc.add_port("db", "pg", "8080:5432/udp").is_ok());
        assert!(saved(dir.path()).networks["db"].guests["pg"].ports.len() == 1);
    }

    #[test]
    fn a_guest_conflicts_with_its_own_other_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web1", "8000-8010:8000-8010").unwrap();
        let err = svc.add_port("web", "web1", "8010:80").unwrap_err();
        assert_eq!(err.status(), 409, "{err}");
    }

    #[test]
    fn bad_specs_and_unknown_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        let err = svc.add_port("web", "web1", "127.0.0.1:80:80").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("loopback"), "{err}");
        let err = svc.add_port("nope", "web1", "80:80").unwrap_err();
        assert_eq!(err.status(), 404);
        let err = svc.add_port("web", "nope", "80:80").unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("`netd guest ls web`"), "{err}");
        assert!(svc.list_ports(None).unwrap().is_empty());
    }

    #[test]
    fn a_failed_save_leaves_nothing_published() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut svc = service(&blocker.join("state"));
        let err = svc.add_port("web", "web1", "8080:80").unwrap_err();
        assert_eq!(err.status(), 500);
        assert!(svc.list_ports(None).unwrap().is_empty());
    }

    #[test]
    fn removing_takes_any_spelling_of_the_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web1", "8080:80/tcp").unwrap();
        svc.add_port("web", "web1", "53:53/udp").unwrap();
        svc.remove_port("web", "web1", "0.0.0.0:8080:80").unwrap();
        let left: Vec<String> = svc
            .list_ports(Some("web"))
            .unwrap()
            .into_iter()
            .map(|v| v.spec)
            .collect();
        assert_eq!(left, vec!["53:53/udp"]);
        assert_eq!(
            saved(dir.path()).networks["web"].guests["web1"].ports,
            vec!["53:53/udp".parse().unwrap()]
        );
    }

    #[test]
    fn removing_what_is_not_published_says_where_to_look() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web1", "8080:80").unwrap();
        let err = svc.remove_port("web", "web2", "8080:80").unwrap_err();
        assert_eq!(err.status(), 404);
        assert_eq!(
            err.to_string(),
            "guest \"web2\" in network \"web\" does not publish 8080:80/tcp: \
             `netd port ls web` lists what it publishes"
        );
    }

    #[test]
    fn listings_filter_by_network() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web2", "8080:80").unwrap();
        svc.add_port("db", "pg", "5432:5432").unwrap();
        let all: Vec<(String, String)> = svc
            .list_ports(None)
            .unwrap()
            .into_iter()
            .map(|v| (v.network, v.guest))
            .collect();
        assert_eq!(
            all,
            vec![("db".into(), "pg".into()), ("web".into(), "web2".into())]
        );
        assert_eq!(svc.list_ports(Some("db")).unwrap().len(), 1);
        assert_eq!(svc.list_ports(Some("nope")).unwrap_err().status(), 404);
    }

    #[test]
    fn mappings_carry_the_zone_and_the_guest_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        svc.add_port("web", "web2", "8000-8001:80-81").unwrap();
        svc.add_port("db", "pg", "5432:5432/udp").unwrap();
        let web = &svc.state.networks["web"];
        let web2 = Service::guest_port_mappings(web, &web.guests["web2"]);
        assert_eq!(web2.len(), 2);
        assert!(
            web2.iter()
                .all(|m| m.zone == 1 && m.guest_ip == Ipv4Addr::new(172, 18, 0, 2))
        );
        let all = svc.all_port_mappings();
        assert_eq!(all.len(), 3);
        assert!(all.contains(&PortMapping {
            proto: Proto::Udp,
            host_ip: None,
            host_port: 5432,
            zone: 5,
            guest_ip: Ipv4Addr::new(172, 18, 0, 1),
            guest_port: 5432,
        }));
    }
}
