//! The desired state: what networks and guests should exist. The daemon
//! persists it and reconciles the kernel to it; nothing here touches the
//! kernel.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
    path::PathBuf,
};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{ipam, partition::PartitionState, ports::PortForward};

/// Names become parts of namespace names and of `ip netns` paths, so they are
/// kept short and free of anything a shell or a path would interpret.
pub const MAX_NAME_LEN: usize = 32;

/// Everything netd should have built.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct State {
    pub networks: BTreeMap<String, Network>,
    /// The last uplink slot handed out: the next allocation starts after it,
    /// so a freed slot is reused as late as possible.
    #[serde(default)]
    pub uplink_cursor: Option<u16>,
}

impl State {
    /// The subnets the host routes to (the routable networks').
    pub fn routable_subnets(&self) -> BTreeSet<Ipv4Network> {
        self.networks
            .values()
            .filter(|net| net.routable)
            .map(|net| net.subnet)
            .collect()
    }

    /// The uplink slots held by networks, as `UplinkPool::allocate` wants them.
    pub fn used_uplink_slots(&self) -> BTreeSet<u16> {
        self.networks
            .values()
            .map(|network| network.uplink_slot)
            .collect()
    }
}

/// A network: a namespace with a bridge for its guests, linked to the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Network,
    /// Whether the host routes to `subnet` (then it may collide with nothing
    /// on the host), rather than reaching guests through published ports only.
    pub routable: bool,
    pub uplink_slot: u16,
    pub guests: BTreeMap<String, Guest>,
    /// The last guest address handed out, for wrap-around allocation.
    #[serde(default)]
    pub guest_cursor: Option<Ipv4Addr>,
    /// Unix seconds.
    pub created_at: u64,
    /// The partition in force; None: a full mesh (nothing cut). Absent from
    /// state files older than partitions.
    #[serde(default)]
    pub partition: Option<PartitionState>,
    /// Its guests talk to each other and to nothing outside it: no NAT, no
    /// published ports (`--internal`). Absent from older state files: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// The MTU of its bridge, bridge ports and guests' interfaces
    /// (`--mtu`); None: the kernel's default (1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// This node's part of a network spanning the cluster's nodes
    /// (`--span`, see `cluster`); None: a network of this host alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
}

/// What a node keeps of a spanned network besides what every network has:
/// its definition and the other nodes' guests live in etcd.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Its VXLAN network identifier, the same on every node.
    pub vni: u32,
    /// The other nodes' guests, as etcd last said, by name: partitions name
    /// them and the dataplane knows their slots.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote: BTreeMap<String, RemoteGuest>,
}

/// A guest of a spanned network on another node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RemoteGuest {
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: crate::mac::Mac,
    pub slot: u8,
}

impl Network {
    /// The bridge ports its guests hold (a new guest's must differ).
    pub fn bridge_ports(&self) -> BTreeSet<String> {
        self.guests
            .values()
            .map(|guest| guest.bridge_port.clone())
            .collect()
    }

    /// The bridge's address: the last usable host of the subnet
    /// (172.18.0.254 in 172.18.0.0/24), the guests' default gateway.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        ipam::bridge_ip(self.subnet)
    }

    /// The lowest partition slot no guest holds (there are at most 253
    /// guests and 256 slots, so one is always free).
    ///
    /// While a partition is in force, slots its rules name stay taken even
    /// if their guest is gone, so a newcomer never inherits a removed
    /// guest's cuts: guests added during a partition are outside it until
    /// the next partition command. Should the 256 slots run out that way,
    /// the lowest slot no guest holds is reused.
    pub fn free_slot(&self) -> u8 {
        let held: BTreeSet<u8> = self.guests.values().map(|guest| guest.slot).collect();
        let mut named = held.clone();
        if let Some(partition) = &self.partition {
            // Every guest of the network when it was set (a schedule may
            // name any of them at some step); before slots were stored,
            // those its rules name.
            named.extend(partition.slots.values().copied());
            if let Ok(rules) = partition.compile(&self.name, &self.slots(), 0) {
                named.extend(rules.slots());
            }
        }
        (0..=u8::MAX)
            .find(|slot| !named.contains(slot))
            .or_else(|| (0..=u8::MAX).find(|slot| !held.contains(slot)))
            .expect("at most 253 guests hold the 256 slots")
    }

    /// Each guest's partition slot, by name, as `partition::compile` wants
    /// them: a spanned network's guests on other nodes too (their slots
    /// are the cluster's, unique across nodes).
    pub fn slots(&self) -> BTreeMap<String, u8> {
        let mut slots = self.local_slots();
        if let Some(span) = &self.span {
            slots.extend(span.remote.iter().map(|(name, g)| (name.clone(), g.slot)));
        }
        slots
    }

    /// The slots of this host's guests alone (what `verify` can probe).
    pub fn local_slots(&self) -> BTreeMap<String, u8> {
        self.guests
            .values()
            .map(|guest| (guest.name.clone(), guest.slot))
            .collect()
    }

    /// The guests' addresses, as `ipam::allocate_guest_ip` wants them.
    pub fn used_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.guests.values().map(|guest| guest.ip).collect()
    }

    /// The guest that has `ip`, so that `ipam::check_guest_ip` can name it.
    pub fn guest_with_ip(&self, ip: Ipv4Addr) -> Option<&Guest> {
        self.guests.values().find(|guest| guest.ip == ip)
    }

    /// The MAC of the guest at `ip`: derived from the network and the
    /// address, so a guest removed and added again, or rebuilt by
    /// reconcile, keeps the MAC its peers (and the network's stack) have in
    /// their ARP caches and is reachable at once. Unicast, locally
    /// administered; unique across networks but for a 46-bit hash collision.
    pub fn guest_mac(&self, ip: Ipv4Addr) -> [u8; 6] {
        guest_mac(&self.name, ip)
    }

    /// The MAC `guest`'s interface has: the one it was given (`--mac`), or
    /// the derived one ([`Network::guest_mac`]).
    pub fn mac_of(&self, guest: &Guest) -> [u8; 6] {
        guest
            .mac
            .map_or_else(|| self.guest_mac(guest.ip), |mac| mac.0)
    }

    /// The guest other than `name` whose interface has `mac`, so that a
    /// `--mac` already taken in the network is refused naming its holder.
    pub fn guest_with_mac(&self, mac: [u8; 6], name: &str) -> Option<&Guest> {
        self.guests
            .values()
            .find(|guest| guest.name != name && self.mac_of(guest) == mac)
    }

    /// The network's number in the dataplane: its uplink slot + 1, because
    /// zone 0 is the gateway's host side. Derived, not stored, so it stays
    /// what it was for as long as the network keeps its slot (its life).
    pub fn zone(&self) -> u32 {
        u32::from(self.uplink_slot) + 1
    }
}

/// See [`Network::guest_mac`]. FNV-1a over the network's name and the
/// address.
pub fn guest_mac(network: &str, ip: Ipv4Addr) -> [u8; 6] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in network.bytes().chain([0]).chain(ip.octets()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = hash.to_be_bytes();
    // Unicast (bit 0 clear), locally administered (bit 1 set).
    [(b[2] & 0xfe) | 0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// A guest: one network namespace with `eth0` plugged into its network's bridge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Guest {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: GuestNetns,
    /// Unix seconds.
    pub created_at: u64,
    /// Ports published to this guest. They belong to it, so removing the
    /// guest withdraws them. Absent from state files older than forwarding.
    #[serde(default)]
    pub ports: Vec<PortForward>,
    /// The guest's index in its network's partition matrix (0-255), fixed for
    /// its life so that a new policy never has to renumber anyone.
    #[serde(default)]
    pub slot: u8,
    /// The guest's veth end on its network's bridge (`ifname::bridge_port`),
    /// chosen when it is added and kept for its life. Empty in state files
    /// older than this field: the service assigns those on load, as they
    /// were assigned then (in name order).
    #[serde(default)]
    pub bridge_port: String,
    /// What its client says it is for (`labels`); netd decides nothing by
    /// them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// The MAC it asked for (`--mac`); None: derived from the network and
    /// the address ([`Network::guest_mac`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<crate::mac::Mac>,
    /// Its interface in this network's namespace: None for `eth0`, the
    /// guest's own network; `eth1`, ... for a guest of another network
    /// connected to this one (`netd network connect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

impl Guest {
    /// The name of its interface on this network.
    pub fn ifname(&self) -> &str {
        self.interface
            .as_deref()
            .unwrap_or(crate::ifname::GUEST_ETH)
    }

    /// The network it was added to, when this is its connection to
    /// another (`netd network connect`).
    pub fn home(&self) -> Option<&str> {
        match &self.netns {
            GuestNetns::Connected { network, .. } => Some(network),
            _ => None,
        }
    }
}

/// Whose namespace the guest lives in: it decides whether removing the guest
/// removes the namespace too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestNetns {
    /// netd made it and named it, and removes it with the guest.
    Owned,
    /// A runtime's namespace passed with `--netns`; netd only removes the
    /// interface it put there.
    External {
        path: PathBuf,
        /// The namespace's identity when the guest was added: netd never
        /// plugs the guest into another namespace found at `path` later (a
        /// namespace deleted and made again there, a reused PID). None in
        /// state files older than this field: then not checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<NetnsId>,
    },
    /// The namespace of the guest of the same name in `network`, which is
    /// connected to this network too (`netd network connect`): netd only
    /// removes the interface it put there, and the connection goes with
    /// that guest.
    Connected { network: String, path: PathBuf },
}

/// A namespace's identity: the device and inode of its nsfs file.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {} inode {}", self.dev, self.ino)
    }
}

/// What a name is for, so that its error says which name is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Network,
    Guest,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Network => "network",
            NameKind::Guest => "guest",
        })
    }
}

/// Why a request does not fit the model.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error(
        "invalid {kind} name {name:?}: use 1-{MAX_NAME_LEN} characters from a-z, 0-9, \
         '-' and '_', starting with a letter or digit"
    )]
    InvalidName { kind: NameKind, name: String },
}

/// Checks a network or guest name: 1 to 32 bytes of `a-z`, `0-9`, `-` and
/// `_`, starting with a letter or digit (so that it never reads as an option
/// or a hidden file).
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), ModelError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ModelError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let allowed = |byte: &u8| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_');
    let starts_well = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    (1..=MAX_NAME_LEN).contains(&bytes.len())
        && bytes.first().is_some_and(starts_well)
        && bytes.iter().all(allowed)
}

/// Networks and guests for unit tests elsewhere.
#[cfg(test)]
pub mod test_support {
    use super::*;

    /// A network with no guests and no partition.
    pub fn network(name: &str, subnet: &str, uplink_slot: u16) -> Network {
        Network {
            name: name.to_owned(),
            subnet: subnet.parse().expect("a CIDR"),
            routable: false,
            uplink_slot,
            guests: BTreeMap::new(),
            guest_cursor: None,
            created_at: 0,
            partition: None,
            internal: false,
            mtu: None,
            span: None,
        }
    }

    /// A guest in a namespace netd owns.
    pub fn guest(name: &str, ip: &str, slot: u8) -> Guest {
        Guest {
            name: name.to_owned(),
            ip: ip.parse().expect("an IPv4 address"),
            netns: GuestNetns::Owned,
            created_at: 0,
            ports: Vec::new(),
            slot,
            bridge_port: format!("g-{name}"),
            labels: Default::default(),
            mac: None,
            interface: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_state() -> State {
        let owned = Guest {
            mac: None,
            interface: None,
            name: "web1".to_owned(),
            ip: Ipv4Addr::new(172, 18, 0, 1),
            netns: GuestNetns::Owned,
            created_at: 1_700_000_000,
            ports: vec![
                "8080:80".parse().unwrap(),
                "10.0.0.5:5000-5002:6000-6002/udp".parse().unwrap(),
            ],
            slot: 0,
            bridge_port: String::new(),
            labels: Default::default(),
        };
        let external = Guest {
            mac: None,
            interface: None,
            name: "db".to_owned(),
            ip: Ipv4Addr::new(172, 18, 0, 7),
            netns: GuestNetns::External {
                path: PathBuf::from("/proc/4242/ns/net"),
                id: Some(NetnsId {
                    dev: 4,
                    ino: 4026532000,
                }),
            },
            created_at: 1_700_000_100,
            ports: Vec::new(),
            slot: 1,
            bridge_port: String::new(),
            labels: Default::default(),
        };
        let web = Network {
            internal: false,
            mtu: None,
            span: None,
            name: "web".to_owned(),
            subnet: crate::config::DEFAULT_SUBNET,
            routable: false,
            uplink_slot: 0,
            guests: BTreeMap::from([
                (owned.name.clone(), owned),
                (external.name.clone(), external),
            ]),
            guest_cursor: Some(Ipv4Addr::new(172, 18, 0, 7)),
            created_at: 1_699_999_999,
            partition: None,
        };
        let routed = Network {
            internal: false,
            mtu: None,
            span: None,
            name: "routed".to_owned(),
            subnet: "10.20.0.0/16".parse().unwrap(),
            routable: true,
            uplink_slot: 5,
            guests: BTreeMap::new(),
            guest_cursor: None,
            created_at: 1_700_000_200,
            partition: Some(PartitionState {
                partition: crate::partition::Partition::new(crate::partition::Verb::FullMesh),
                slots: BTreeMap::new(),
                set_at: 1_700_000_300,
                set_at_ms: 0,
                step: None,
                expires_at: None,
                set_by: "host".to_owned(),
            }),
        };
        State {
            networks: BTreeMap::from([(web.name.clone(), web), (routed.name.clone(), routed)]),
            uplink_cursor: Some(5),
        }
    }

    #[test]
    fn state_survives_a_json_round_trip() {
        let state = sample_state();
        let json = serde_json::to_string_pretty(&state).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn an_empty_state_round_trips_and_has_no_cursor() {
        let json = serde_json::to_string(&State::default()).unwrap();
        assert_eq!(json, r#"{"networks":{},"uplink_cursor":null}"#);
        assert_eq!(
            serde_json::from_str::<State>(&json).unwrap(),
            State::default()
        );
    }

    #[test]
    fn missing_cursors_read_as_none() {
        let state: State = serde_json::from_str(r#"{"networks":{}}"#).unwrap();
        assert_eq!(state.uplink_cursor, None);
    }

    #[test]
    fn subnets_and_addresses_serialize_as_plain_text() {
        let state = sample_state();
        let json = serde_json::to_value(&state).unwrap();
        let web = &json["networks"]["web"];
        assert_eq!(web["subnet"], "172.18.0.0/24");
        assert_eq!(web["guests"]["web1"]["ip"], "172.18.0.1");
        assert_eq!(web["guest_cursor"], "172.18.0.7");
    }

    #[test]
    fn guests_without_ports_read_as_publishing_none() {
        let guest: Guest = serde_json::from_str(
            r#"{"name":"web1","ip":"172.18.0.1","netns":{"kind":"owned"},"created_at":1}"#,
        )
        .unwrap();
        assert_eq!(guest.ports, Vec::new());
    }

    #[test]
    fn port_forwards_are_stored_with_their_guest() {
        let json = serde_json::to_value(sample_state()).unwrap();
        let ports = &json["networks"]["web"]["guests"]["web1"]["ports"];
        assert_eq!(
            ports[0]["host_ports"],
            serde_json::json!({"start": 8080, "end": 8080})
        );
        assert_eq!(ports[1]["host_ip"], "10.0.0.5");
        assert_eq!(ports[1]["proto"], "udp");
    }

    #[test]
    fn networks_without_a_partition_read_as_full_meshes() {
        let network: Network = serde_json::from_str(
            r#"{"name":"web","subnet":"172.18.0.0/24","routable":false,"uplink_slot":0,
                "guests":{},"created_at":1}"#,
        )
        .unwrap();
        assert_eq!(network.partition, None);
    }

    #[test]
    fn slots_are_listed_by_guest_name() {
        let state = sample_state();
        assert_eq!(
            state.networks["web"].slots(),
            BTreeMap::from([("db".to_owned(), 1), ("web1".to_owned(), 0)])
        );
    }

    #[test]
    fn zones_are_uplink_slots_plus_one() {
        let state = sample_state();
        assert_eq!(state.networks["web"].zone(), 1);
        assert_eq!(state.networks["routed"].zone(), 6);
    }

    #[test]
    fn guest_netns_is_tagged_by_kind() {
        let owned = serde_json::to_value(GuestNetns::Owned).unwrap();
        assert_eq!(owned, serde_json::json!({ "kind": "owned" }));
        let external = serde_json::to_value(GuestNetns::External {
            path: PathBuf::from("/run/netns/cni-1234"),
            id: None,
        })
        .unwrap();
        assert_eq!(
            external,
            serde_json::json!({ "kind": "external", "path": "/run/netns/cni-1234" })
        );
    }

    #[test]
    fn a_connection_is_stored_with_its_network_and_interface() {
        let mut guest = sample_state().networks["web"].guests["web1"].clone();
        guest.netns = GuestNetns::Connected {
            network: "front".to_owned(),
            path: PathBuf::from("/run/netns/netd-g-front.web1"),
        };
        guest.interface = Some("eth1".to_owned());
        let json = serde_json::to_value(&guest).unwrap();
        assert_eq!(json["netns"]["kind"], "connected");
        assert_eq!(json["interface"], "eth1");
        let back: Guest = serde_json::from_value(json).unwrap();
        assert_eq!((back.home(), back.ifname()), (Some("front"), "eth1"));
        let own = &sample_state().networks["web"].guests["web1"];
        assert_eq!((own.home(), own.ifname()), (None, "eth0"));
    }

    #[test]
    fn an_unknown_netns_kind_is_refused_on_load() {
        let result = serde_json::from_str::<GuestNetns>(r#"{"kind":"borrowed"}"#);
        assert!(result.is_err());
    }

    #[test]
    fn bridge_ip_is_the_last_usable_host() {
        let state = sample_state();
        assert_eq!(
            state.networks["web"].bridge_ip(),
            Ipv4Addr::new(172, 18, 0, 254)
        );
        assert_eq!(
            state.networks["routed"].bridge_ip(),
            Ipv4Addr::new(10, 20, 255, 254)
        );
    }

    #[test]
    fn guest_macs_are_stable_unicast_local_and_differ_by_network_and_address() {
        let ip = Ipv4Addr::new(172, 18, 0, 1);
        let mac = guest_mac("web", ip);
        assert_eq!(mac, guest_mac("web", ip), "the same guest, the same MAC");
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        assert_ne!(mac, guest_mac("db", ip), "another network");
        assert_ne!(mac, guest_mac("web", Ipv4Addr::new(172, 18, 0, 2)));
        let all: BTreeSet<[u8; 6]> = (1..=253)
            .flat_map(|i| ["a", "b", "c"].map(|net| guest_mac(net, Ipv4Addr::new(172, 18, 0, i))))
            .collect();
        assert_eq!(all.len(), 3 * 253, "no two guests share a MAC");
    }

    #[test]
    fn used_ips_lists_every_guest_address() {
        let used = sample_state().networks["web"].used_ips();
        let expected = BTreeSet::from([Ipv4Addr::new(172, 18, 0, 1), Ipv4Addr::new(172, 18, 0, 7)]);
        assert_eq!(used, expected);
    }

    #[test]
    fn guest_with_ip_finds_the_holder_of_an_address() {
        let state = sample_state();
        let web = &state.networks["web"];
        let holder = web.guest_with_ip(Ipv4Addr::new(172, 18, 0, 7));
        assert_eq!(holder.map(|guest| guest.name.as_str()), Some("db"));
        assert_eq!(web.guest_with_ip(Ipv4Addr::new(172, 18, 0, 2)), None);
    }

    #[test]
    fn used_uplink_slots_lists_every_network_slot() {
        assert_eq!(sample_state().used_uplink_slots(), BTreeSet::from([0, 5]));
    }

    #[test]
    fn default_subnet_is_a_valid_subnet() {
        let subnet = crate::config::DEFAULT_SUBNET;
        assert_eq!(ipam::validate_subnet(subnet), Ok(()));
    }

    #[test]
    fn valid_names_are_accepted() {
        let thirty_two = "a".repeat(32);
        let names = [
            "a",
            "0",
            "web",
            "web-1",
            "db_primary",
            "9lives",
            "a-_-b",
            &thirty_two,
        ];
        for name in names {
            assert_eq!(validate_name(NameKind::Network, name), Ok(()), "{name:?}");
            assert_eq!(validate_name(NameKind::Guest, name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        let thirty_three = "a".repeat(33);
        let names = [
            "",
            "-web",
            "_web",
            "Web",
            "web!",
            "web.1",
            "web 1",
            "web/1",
            "../etc",
            "wéb",
            "web\n",
            &thirty_three,
        ];
        for name in names {
            assert!(validate_name(NameKind::Network, name).is_err(), "{name:?}");
            assert!(validate_name(NameKind::Guest, name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn name_errors_say_which_kind_quote_the_name_and_state_the_rule() {
        let err = validate_name(NameKind::Network, "Foo!").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid network name \"Foo!\": use 1-32 characters from a-z, 0-9, '-' and '_', \
             starting with a letter or digit"
        );
        let err = validate_name(NameKind::Guest, "").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid guest name \"\": "),
            "{err}"
        );
    }

    #[test]
    fn name_errors_escape_control_characters() {
        let err = validate_name(NameKind::Guest, "a\nb").unwrap_err();
        assert!(err.to_string().contains(r#""a\nb""#), "{err}");
    }

    #[test]
    fn model_errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<ModelError>();
    }
}
