//! Which name is which guest, as each network's resolver answers it, and
//! whether a guest may have other names looked up outside. Built from the
//! desired state after every change, so names follow guests at once. Pure.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use serde::{Deserialize, Serialize};

use super::wire::TYPE_A;
use crate::model::{Network, State};

/// What one network's resolver knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkNames {
    pub guests: BTreeMap<String, Ipv4Addr>,
    /// Internal networks reach nothing outside: names are never relayed.
    pub internal: bool,
    /// Guests the partition cuts from the outside (fully, not lossy): their
    /// queries for other names are not relayed either.
    pub cut_from_outside: BTreeSet<Ipv4Addr>,
}

/// Every network's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub networks: BTreeMap<String, NetworkNames>,
}

/// What a resolver answers a question with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A guest's address.
    Address(Ipv4Addr),
    /// The name is a guest's, but the question is not for an A record
    /// (AAAA, MX...): no data, so the asker does not try elsewhere.
    NoData,
    /// A name under a netd network that no guest has: never relayed.
    NxDomain,
    /// Not netd's: the upstream resolvers answer it.
    Relay,
    /// Not netd's, and the asker may not reach the outside (an internal
    /// network, a guest cut from the outside).
    Refused,
}

/// A guest's address as `netd resolve` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub network: String,
    pub guest: String,
    pub ip: Ipv4Addr,
}

impl NetworkNames {
    /// What `net`'s resolver knows.
    pub fn of(net: &Network) -> NetworkNames {
        let guests = net
            .guests
            .values()
            .map(|g| (g.name.clone(), g.ip))
            .collect();
        // The policy in force now (a flap's or schedule's step
        // included), compiled as the dataplane has it.
        let cut_from_outside = net
            .partition
            .as_ref()
            .and_then(|p| p.compile(&net.name, &net.slots(), now_ms()).ok())
            .filter(|rules| rules.loss_percent() == 100)
            .map(|rules| {
                let outside_cut = rules.outside_cut();
                net.guests
                    .values()
                    .filter(|g| outside_cut.contains(&g.slot))
                    .map(|g| g.ip)
                    .collect()
            })
            .unwrap_or_default();
        NetworkNames {
            guests,
            internal: net.internal,
            cut_from_outside,
        }
    }
}

impl Directory {
    pub fn from_state(state: &State) -> Directory {
        let networks = state
            .networks
            .values()
            .map(|net| (net.name.clone(), NetworkNames::of(net)))
            .collect();
        Directory { networks }
    }

    /// Takes `network`'s names from `state` again (drops them if it is gone
    /// from it), leaving every other network's as they are: a change to one
    /// network costs its own guests, not every guest of the host.
    pub fn update_network(&mut self, state: &State, network: &str) {
        match state.networks.get(network) {
            Some(net) => {
                self.networks
                    .insert(network.to_owned(), NetworkNames::of(net));
            }
            None => {
                self.networks.remove(network);
            }
        }
    }

    /// The answer of `network`'s resolver to `client` asking for `name`
    /// (lower case, no trailing dot): `GUEST` and `GUEST.NETWORK` are that
    /// network's guests; `X.OTHER` for any other netd network is no one
    /// here (its addresses are not reachable from this network), and is
    /// never relayed; anything else is relayed, if the client may reach
    /// the outside.
    pub fn answer(&self, network: &str, client: Ipv4Addr, name: &str, qtype: u16) -> Answer {
        let Some(names) = self.networks.get(network) else {
            return Answer::Refused;
        };
        let found = |guest: &str| {
            names.guests.get(guest).map(|&ip| {
                if qtype == TYPE_A {
                    Answer::Address(ip)
                } else {
                    Answer::NoData
                }
            })
        };
        let labels: Vec<&str> = name.split('.').collect();
        match labels.as_slice() {
            [guest] => {
                if let Some(answer) = found(guest) {
                    return answer;
                }
            }
            [guest, net] if self.networks.contains_key(*net) => {
                return if net == &network {
                    found(guest).unwrap_or(Answer::NxDomain)
                } else {
                    Answer::NxDomain
                };
            }
            _ => {}
        }
        if names.internal || names.cut_from_outside.contains(&client) {
            Answer::Refused
        } else {
            Answer::Relay
        }
    }

    /// `netd resolve NAME[.NETWORK]` from the host: `GUEST.NETWORK` is that
    /// guest; a bare `GUEST` is every guest of that name, one per network.
    pub fn resolve_from_host(&self, name: &str) -> Vec<Resolved> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (guest, only) = match name.split_once('.') {
            Some((guest, network)) => (guest.to_owned(), Some(network.to_owned())),
            None => (name.clone(), None),
        };
        self.networks
            .iter()
            .filter(|(net, _)| only.as_ref().is_none_or(|only| only == *net))
            .filter_map(|(net, names)| {
                Some(Resolved {
                    network: net.clone(),
                    guest: guest.clone(),
                    ip: *names.guests.get(&guest)?,
                })
            })
            .collect()
    }
}

/// Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAAA: u16 = 28;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(172, 18, 0, last)
    }

    fn directory() -> Directory {
        let web = NetworkNames {
            guests: BTreeMap::from([("a".to_owned(), ip(1)), ("b".to_owned(), ip(2))]),
            internal: false,
            cut_from_outside: BTreeSet::from([ip(2)]),
        };
        let db = NetworkNames {
            guests: BTreeMap::from([("a".to_owned(), ip(9))]),
            internal: true,
            cut_from_outside: BTreeSet::new(),
        };
        Directory {
            networks: BTreeMap::from([("web".to_owned(), web), ("db".to_owned(), db)]),
        }
    }

    #[test]
    fn guests_resolve_by_name_and_by_name_dot_network() {
        let d = directory();
        assert_eq!(d.answer("web", ip(1), "b", TYPE_A), Answer::Address(ip(2)));
        assert_eq!(
            d.answer("web", ip(1), "b.web", TYPE_A),
            Answer::Address(ip(2))
        );
        assert_eq!(d.answer("db", ip(9), "a", TYPE_A), Answer::Address(ip(9)));
        assert_eq!(d.answer("web", ip(1), "a", AAAA), Answer::NoData);
    }

    #[test]
    fn names_under_a_netd_network_are_never_relayed() {
        let d = directory();
        assert_eq!(
            d.answer("web", ip(1), "nobody.web", TYPE_A),
            Answer::NxDomain
        );
        assert_eq!(
            d.answer("web", ip(1), "a.db", TYPE_A),
            Answer::NxDomain,
            "another network's guest"
        );
    }

    #[test]
    fn other_names_are_relayed_unless_the_asker_may_not_reach_the_outside() {
        let d = directory();
        assert_eq!(d.answer("web", ip(1), "example.org", TYPE_A), Answer::Relay);
        assert_eq!(d.answer("web", ip(1), "nobody", TYPE_A), Answer::Relay);
        assert_eq!(
            d.answer("web", ip(2), "example.org", TYPE_A),
            Answer::Refused,
            "cut from the outside"
        );
        assert_eq!(
            d.answer("web", ip(2), "a", TYPE_A),
            Answer::Address(ip(1)),
            "its peers still resolve"
        );
        assert_eq!(
            d.answer("db", ip(9), "example.org", TYPE_A),
            Answer::Refused,
            "internal"
        );
        assert_eq!(d.answer("gone", ip(9), "a", TYPE_A), Answer::Refused);
    }

    #[test]
    fn the_directory_follows_the_state_with_partitions_and_internal_networks() {
        use crate::{
            model::test_support,
            partition::{Partition, PartitionState},
        };
        let guest =
            |name: &str, last: u8, slot: u8| test_support::guest(name, &ip(last).to_string(), slot);
        // `isolate b` (slot 1) from everyone, the outside included, with a
        // loss share.
        let cut = |loss: &str| {
            let words: Vec<String> = format!("isolate b --loss {loss}")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            PartitionState {
                partition: Partition::from_words(&words).unwrap(),
                slots: BTreeMap::from([("a".to_owned(), 0), ("b".to_owned(), 1)]),
                set_at: 0,
                set_at_ms: 0,
                step: None,
                expires_at: None,
                set_by: "host".to_owned(),
            }
        };
        let mut web = test_support::network("web", "172.18.0.0/24", 0);
        web.guests = [guest("a", 1, 0), guest("b", 2, 1)]
            .into_iter()
            .map(|g| (g.name.clone(), g))
            .collect();
        web.partition = Some(cut("100"));
        web.internal = true;
        let mut state = State {
            networks: BTreeMap::from([("web".to_owned(), web)]),
            uplink_cursor: None,
        };
        let d = Directory::from_state(&state);
        let names = &d.networks["web"];
        assert_eq!(names.guests.len(), 2);
        assert!(names.internal);
        assert_eq!(names.cut_from_outside, BTreeSet::from([ip(2)]));
        // A lossy cut lets some questions through: not refused outright.
        state.networks.get_mut("web").unwrap().partition = Some(cut("30"));
        assert!(
            Directory::from_state(&state).networks["web"]
                .cut_from_outside
                .is_empty()
        );
    }

    #[test]
    fn one_networks_update_equals_a_rebuild_and_leaves_the_others() {
        use crate::model::test_support;
        let mut state = State {
            networks: BTreeMap::new(),
            uplink_cursor: None,
        };
        for (n, name) in ["web", "db"].into_iter().enumerate() {
            let mut net = test_support::network(name, "172.18.0.0/24", n as u16);
            let g = test_support::guest("a", &ip(1).to_string(), 0);
            net.guests.insert(g.name.clone(), g);
            state.networks.insert(name.to_owned(), net);
        }
        let mut d = Directory::from_state(&state);
        let g = test_support::guest("b", &ip(2).to_string(), 1);
        let web = state.networks.get_mut("web").unwrap();
        web.guests.insert(g.name.clone(), g);
        d.update_network(&state, "web");
        assert_eq!(d, Directory::from_state(&state));
        state.networks.remove("db");
        d.update_network(&state, "db");
        assert_eq!(d, Directory::from_state(&state));
        assert_eq!(d.networks["web"].guests.len(), 2);
    }

    #[test]
    fn the_host_resolves_a_name_in_every_network_or_in_the_one_named() {
        let d = directory();
        let all = d.resolve_from_host("A");
        assert_eq!(
            all.iter()
                .map(|r| (r.network.as_str(), r.ip))
                .collect::<Vec<_>>(),
            [("db", ip(9)), ("web", ip(1))]
        );
        let one = d.resolve_from_host("a.web.");
        assert_eq!(
            one,
            [Resolved {
                network: "web".into(),
                guest: "a".into(),
                ip: ip(1)
            }]
        );
        assert!(d.resolve_from_host("zed").is_empty());
        assert!(d.resolve_from_host("a.nowhere").is_empty());
    }
}
