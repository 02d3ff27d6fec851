//! Checks a loaded desired state as strictly as the requests that built it:
//! a state that no sequence of requests could have made (a guest outside its
//! subnet, two guests with one address or one partition slot, two networks
//! on one uplink, a name such as `../../../tmp/evil`) is refused before the
//! daemon acts on it. Reconciling to it would build the impossible or, worse,
//! tear down live objects as "orphans" (a duplicate uplink slot made netd
//! delete a live network's gateway port).
//!
//! Pure: no kernel, no files.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::{
    ifname, ipam,
    model::{self, GuestNetns, NameKind, State},
};

/// The first problem found in a state, in words that name the object.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct StateProblem(pub String);

/// Checks `state` against the model's rules and the configured uplink pool.
pub fn check_state(state: &State, uplinks: &ipam::UplinkPool) -> Result<(), StateProblem> {
    let problem = |text: String| Err(StateProblem(text));
    let mut uplink_holder: BTreeMap<u16, &str> = BTreeMap::new();
    let mut routable: Vec<(&str, ipnetwork::Ipv4Network)> = Vec::new();
    let mut external_paths: BTreeMap<&std::path::Path, String> = BTreeMap::new();
    for (key, net) in &state.networks {
        if let Err(err) = model::validate_name(NameKind::Network, key) {
            return problem(err.to_string());
        }
        if &net.name != key {
            return problem(format!(
                "network {key:?} is stored under the name {:?}: the two must agree",
                net.name
            ));
        }
        let name = net.name.as_str();
        if let Err(err) = ipam::validate_subnet(net.subnet) {
            return problem(format!("network {name:?}: {err}"));
        }
        if net.routable {
            if let Err(err) = ipam::check_not_reserved(net.subnet) {
                return problem(format!("network {name:?}: {err}"));
            }
            if let Some((other, _)) = routable
                .iter()
                .find(|(_, subnet)| ipam::overlaps(*subnet, net.subnet))
            {
                return problem(format!(
                    "routable networks {other:?} and {name:?} overlap ({})",
                    net.subnet
                ));
            }
            routable.push((name, net.subnet));
        }
        if let Err(err) = uplinks.addresses(net.uplink_slot) {
            return problem(format!("network {name:?}: {err}"));
        }
        if let Some(other) = uplink_holder.insert(net.uplink_slot, name) {
            return problem(format!(
                "networks {other:?} and {name:?} both hold uplink slot {}",
                net.uplink_slot
            ));
        }
        let mut ips = BTreeMap::new();
        let mut slots = BTreeMap::new();
        let mut ports = BTreeMap::new();
        for (gkey, guest) in &net.guests {
            if let Err(err) = model::validate_name(NameKind::Guest, gkey) {
                return problem(format!("network {name:?}: {err}"));
            }
            if &guest.name != gkey {
                return problem(format!(
                    "guest {gkey:?} of network {name:?} is stored under the name {:?}: the \
                     two must agree",
                    guest.name
                ));
            }
            let who = format!("guest {name}/{gkey}");
            let holder = ips.insert(guest.ip, gkey.as_str());
            if let Err(err) = ipam::check_guest_ip(net.subnet, guest.ip, holder) {
                return problem(format!("{who}: {err}"));
            }
            if let Some(other) = slots.insert(guest.slot, gkey.as_str()) {
                return problem(format!(
                    "guests {other:?} and {gkey:?} of network {name:?} both hold partition \
                     slot {}",
                    guest.slot
                ));
            }
            if !guest.bridge_port.is_empty() {
                if let Err(err) = ifname::validate_ifname(&guest.bridge_port) {
                    return problem(format!("{who}: bridge port: {err}"));
                }
                if let Some(other) = ports.insert(guest.bridge_port.as_str(), gkey.as_str()) {
                    return problem(format!(
                        "guests {other:?} and {gkey:?} of network {name:?} both hold bridge \
                         port {}",
                        guest.bridge_port
                    ));
                }
            }
            if let GuestNetns::Connected { network: home, .. } = &guest.netns {
                let own = state
                    .networks
                    .get(home)
                    .and_then(|home_net| home_net.guests.get(gkey));
                if own.is_none_or(|own| own.home().is_some()) || home == name {
                    return problem(format!(
                        "{who} is a connection from network {home:?}, which has no guest \
                         {gkey:?} of its own"
                    ));
                }
            }
            if let GuestNetns::External { path, .. } = &guest.netns {
                if !path.is_absolute() {
                    return problem(format!(
                        "{who}: namespace path {} is not absolute",
                        path.display()
                    ));
                }
                if let Some(other) = external_paths.insert(path, who.clone()) {
                    return problem(format!(
                        "{other} and {who} both live in namespace {}",
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, path::PathBuf};

    use super::*;
    use crate::model::{Guest, Network, test_support};

    fn pool() -> ipam::UplinkPool {
        ipam::UplinkPool::new(crate::config::DEFAULT_UPLINK_POOL).unwrap()
    }

    fn guest(name: &str, last: u8, slot: u8) -> Guest {
        test_support::guest(name, &format!("172.18.0.{last}"), slot)
    }

    fn network(name: &str, slot: u16, guests: Vec<Guest>) -> Network {
        let mut network = test_support::network(name, "172.18.0.0/24", slot);
        network.guests = guests.into_iter().map(|g| (g.name.clone(), g)).collect();
        network
    }

    fn state(networks: Vec<Network>) -> State {
        State {
            networks: networks.into_iter().map(|n| (n.name.clone(), n)).collect(),
            uplink_cursor: None,
        }
    }

    fn problem(state: &State) -> String {
        check_state(state, &pool()).unwrap_err().0
    }

    fn good() -> State {
        state(vec![
            network("web", 0, vec![guest("a", 1, 0), guest("b", 2, 1)]),
            network("db", 1, vec![guest("a", 1, 0)]),
        ])
    }

    #[test]
    fn a_state_requests_could_make_passes() {
        check_state(&good(), &pool()).unwrap();
        check_state(&State::default(), &pool()).unwrap();
    }

    #[test]
    fn a_connection_needs_its_guest_in_its_own_network() {
        let connected = |home: &str| GuestNetns::Connected {
            network: home.to_owned(),
            path: "/run/netns/netd-g-web.b".into(),
        };
        let mut s = good();
        let mut b = guest("b", 9, 9);
        b.netns = connected("web");
        b.interface = Some("eth1".to_owned());
        s.networks
            .get_mut("db")
            .unwrap()
            .guests
            .insert("b".to_owned(), b.clone());
        check_state(&s, &pool()).unwrap();

        for home in ["gone", "db"] {
            let mut bad = s.clone();
            let mut stray = b.clone();
            stray.netns = connected(home);
            bad.networks
                .get_mut("db")
                .unwrap()
                .guests
                .insert("b".to_owned(), stray);
            assert!(
                problem(&bad).contains(&format!("a connection from network \"{home}\"")),
                "{home}: {}",
                problem(&bad)
            );
        }
    }

    #[test]
    fn a_path_as_a_network_name_is_refused() {
        let mut s = good();
        let mut evil = network("../../../tmp/evil", 7, vec![]);
        evil.name = "../../../tmp/evil".to_owned();
        s.networks.insert(evil.name.clone(), evil);
        let text = problem(&s);
        assert!(
            text.contains("invalid network name \"../../../tmp/evil\""),
            "{text}"
        );
    }

    #[test]
    fn a_name_that_differs_from_its_key_is_refused() {
        let mut s = good();
        s.networks.get_mut("web").unwrap().name = "other".to_owned();
        assert!(problem(&s).contains("stored under the name \"other\""));
    }

    #[test]
    fn a_guest_outside_its_subnet_is_refused() {
        let mut s = good();
        let g = s
            .networks
            .get_mut("web")
            .unwrap()
            .guests
            .get_mut("a")
            .unwrap();
        g.ip = Ipv4Addr::new(10, 9, 9, 9);
        let text = problem(&s);
        assert!(
            text.starts_with("guest web/a: guest address 10.9.9.9 is outside"),
            "{text}"
        );
    }

    #[test]
    fn duplicate_guest_ips_slots_and_ports_are_refused() {
        let mut s = good();
        let web = s.networks.get_mut("web").unwrap();
        web.guests.get_mut("b").unwrap().ip = Ipv4Addr::new(172, 18, 0, 1);
        assert!(
            problem(&s).contains("already used by guest a"),
            "{}",
            problem(&s)
        );

        let mut s = good();
        let web = s.networks.get_mut("web").unwrap();
        web.guests.get_mut("b").unwrap().slot = 0;
        assert!(problem(&s).contains("both hold partition slot 0"));

        let mut s = good();
        let web = s.networks.get_mut("web").unwrap();
        web.guests.get_mut("b").unwrap().bridge_port = "g-a".to_owned();
        assert!(problem(&s).contains("both hold bridge port g-a"));
    }

    #[test]
    fn a_duplicate_uplink_slot_is_refused() {
        let mut s = good();
        s.networks.get_mut("db").unwrap().uplink_slot = 0;
        let text = problem(&s);
        assert_eq!(text, "networks \"db\" and \"web\" both hold uplink slot 0");
    }

    #[test]
    fn an_uplink_slot_outside_the_pool_is_refused() {
        let mut s = good();
        s.networks.get_mut("db").unwrap().uplink_slot = 60_000;
        assert!(problem(&s).contains("outside `uplink_pool`"));
    }

    #[test]
    fn overlapping_or_reserved_routable_subnets_are_refused() {
        let mut s = good();
        for name in ["web", "db"] {
            let net = s.networks.get_mut(name).unwrap();
            net.routable = true;
        }
        assert!(problem(&s).contains("routable networks \"db\" and \"web\" overlap"));
        let mut s = good();
        let db = s.networks.get_mut("db").unwrap();
        db.routable = true;
        db.subnet = "169.254.0.0/24".parse().unwrap();
        db.guests.clear();
        assert!(problem(&s).contains("link-local"), "{}", problem(&s));
    }

    #[test]
    fn two_guests_in_one_external_namespace_are_refused() {
        let mut s = good();
        let path = PathBuf::from("/run/netns/x");
        for (net, g) in [("web", "a"), ("db", "a")] {
            let guest = s.networks.get_mut(net).unwrap().guests.get_mut(g).unwrap();
            guest.netns = GuestNetns::External {
                path: path.clone(),
                id: None,
            };
        }
        assert!(problem(&s).contains("both live in namespace /run/netns/x"));
    }

    #[test]
    fn guests_of_old_state_files_without_bridge_ports_pass() {
        let mut s = good();
        for g in s.networks.get_mut("web").unwrap().guests.values_mut() {
            g.bridge_port.clear();
        }
        check_state(&s, &pool()).unwrap();
    }
}
