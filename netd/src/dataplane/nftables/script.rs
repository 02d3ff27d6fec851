//! The nftables dataplane's scripts, rendered from plain data: no I/O here,
//! so every line is unit-tested with its exact text. Each script is one
//! `nft -f -` batch, which the kernel applies as one transaction.
//!
//! Two tables, both named `netd` and owned by netd (every object carries
//! `comment "netd"`; netd never touches a table it does not own):
//!
//! - `table inet netd` in the gateway namespace: conntrack zones per
//!   network, NAT (out, published ports, hairpin), the routing marks and the
//!   "no traffic between networks" filter. Maps and sets hold everything that
//!   grows (networks, host addresses, published ports), so a change adds or
//!   removes elements and never rewrites a rule.
//! - `table bridge netd` in each network namespace: anti-spoofing on guest
//!   ports and the partition. Guests are bridged, not routed: their frames
//!   between each other never reach the `ip`/`inet` hooks unless
//!   `br_netfilter` hands them over (a module netd does not load and whose
//!   behaviour depends on sysctls that are not netd's), and ARP never does.
//!   The bridge family sees every frame with its bridge port, MAC addresses,
//!   ARP and IPv4 header, which is what the guest port check needs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::Ipv4Addr,
};

use thiserror::Error;

use crate::{
    ifname,
    nft::render::{
        ChainDecl, Content, Layout, SetDecl, in_place_script, remove_script, table_definition,
        write_elements,
    },
    partition::PartitionRules,
    ports::{PortMapping, Proto},
};

/// The gateway's table, as nft names it (family and name).
pub const GATEWAY_TABLE: &str = "inet netd";
/// Each network namespace's table.
pub const NETWORK_TABLE: &str = "bridge netd";

/// Routing table of a network's zone in the gateway namespace: packets
/// marked with the zone are routed by it into the network.
pub const fn route_table(zone: u32) -> u32 {
    1000 + zone
}

/// Priority of the `fwmark ZONE lookup TABLE` rules: before the main table
/// (32766).
pub const RULE_PRIORITY: u32 = 1000;

/// Per-zone counter of packets one network sent into another.
pub fn cross_network_counter(zone: u32) -> String {
    format!("{CROSS_NETWORK_PREFIX}{zone}")
}

/// Prefix of the per-zone counters in the gateway table; the rest is the
/// zone number.
pub const CROSS_NETWORK_PREFIX: &str = "dropped_cross_network_z";

/// Per-zone counter of the gateway's partition drops: packets between two
/// guests of one network that took a published port (hairpin).
pub fn hairpin_partition_counter(zone: u32) -> String {
    format!("{HAIRPIN_PARTITION_PREFIX}{zone}")
}

/// Prefix of [`hairpin_partition_counter`]s; the rest is the zone number.
pub const HAIRPIN_PARTITION_PREFIX: &str = "dropped_partition_z";

/// Per-zone counter of new connections refused because their guest holds
/// its share of the gateway's ports towards that destination.
pub fn port_share_counter(zone: u32) -> String {
    format!("{PORT_SHARE_PREFIX}{zone}")
}

/// Prefix of [`port_share_counter`]s; the rest is the zone number.
pub const PORT_SHARE_PREFIX: &str = "dropped_port_share_z";

/// The share of the translation's ports one guest may hold towards one
/// destination (address, protocol and port): a quarter of them, as on the
/// eBPF dataplane, so that one guest leaves three quarters to the others.
pub fn port_share(ports: crate::config::PortSpan) -> u32 {
    ((u32::from(ports.max) - u32::from(ports.min) + 1) / 4).max(1)
}

/// The gateway counter of packets conntrack found invalid (reported for the
/// host side).
pub const INVALID_COUNTER: &str = "dropped_invalid";

/// Counters in each network's table, named as `netd status` shows them
/// (and `dropped_rate`: the rate shapers' drops, `shapers`).
pub const NETWORK_COUNTERS: [&str; 4] = [
    "dropped_spoofed",
    "dropped_unsupported",
    "dropped_partition",
    "dropped_internal",
];

/// Why a spec cannot be rendered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScriptError {
    #[error(
        "interface name {0:?} cannot go into an nftables rule: netd writes interface names \
         quoted, so they take only A-Z, a-z, 0-9, '_', '.' and '-'"
    )]
    Ifname(String),

    #[error("{proto} port 0 cannot be published: publish a port from 1 to 65535")]
    PortZero { proto: Proto },
}

/// One network as the gateway table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPort {
    /// The gateway's veth towards the network (`nu<slot>`).
    pub port: String,
    /// Routable networks leave untranslated (the host masquerades them).
    pub routable: bool,
    /// The network's partition as set elements ([`partition_elements`]):
    /// the gateway holds it too, for packets between two of its guests
    /// that go through a published port. Empty: no partition.
    pub partition: BTreeMap<&'static str, BTreeSet<String>>,
}

/// Everything the gateway table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The gateway's veth towards the host.
    pub host_side: String,
    /// The address guests are translated to, and where ports are published.
    pub gateway_ip: Ipv4Addr,
    /// The host's addresses: guests reach published ports through them too.
    pub host_addrs: BTreeSet<Ipv4Addr>,
    /// Networks by zone.
    pub networks: BTreeMap<u32, NetworkPort>,
    /// Published ports, one per protocol and host port.
    pub forwards: Vec<PortMapping>,
    /// The source ports guests' TCP and UDP connections are translated to
    /// (`host_nat_ports`).
    pub nat_ports: crate::config::PortSpan,
}

/// One guest as its network's table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestSpec {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The guest's index in the partition rules.
    pub slot: u8,
}

/// Everything a network's table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Guests by bridge port.
    pub guests: BTreeMap<String, GuestSpec>,
    /// The partition in force; None: whatever the table holds now is kept
    /// (a restarted daemon that has not been told the partition yet).
    pub partition: Option<PartitionRules>,
    /// An internal network's subnet: nothing crosses between it and the
    /// outside. None: not internal.
    pub internal_subnet: Option<ipnetwork::Ipv4Network>,
}

// ---------------------------------------------------------------------------
// Gateway

const GATEWAY_SETS: &[SetDecl] = &[
    SetDecl {
        name: "zone_of_port",
        kind: "map",
        spec: &["typeof iifname : ct zone"],
    },
    SetDecl {
        name: "net_ports",
        kind: "set",
        spec: &["type ifname"],
    },
    SetDecl {
        name: "snat_ports",
        kind: "set",
        spec: &["type ifname"],
    },
    SetDecl {
        name: "cross_counters",
        kind: "map",
        spec: &["type ifname : counter"],
    },
    SetDecl {
        name: "host_addrs",
        kind: "set",
        spec: &["type ipv4_addr"],
    },
    SetDecl {
        name: "forwards",
        kind: "map",
        spec: &["type inet_proto . inet_service : ipv4_addr . inet_service"],
    },
    SetDecl {
        name: "forward_zones",
        kind: "map",
        spec: &["type inet_proto . inet_service : mark"],
    },
    SetDecl {
        name: "forwards_any_ip",
        kind: "set",
        spec: &["type inet_proto . inet_service"],
    },
    SetDecl {
        name: "forwards_on_ip",
        kind: "set",
        spec: &["type ipv4_addr . inet_proto . inet_service"],
    },
    SetDecl {
        name: "hairpin_own",
        kind: "set",
        spec: &["typeof ct original zone . ct mark"],
    },
    SetDecl {
        name: "hairpin_cut",
        kind: "set",
        spec: &["type mark . ipv4_addr . ipv4_addr"],
    },
    SetDecl {
        name: "hairpin_port_cut",
        kind: "set",
        spec: &[
            "type mark . ipv4_addr . ipv4_addr . inet_proto . inet_service",
            "flags interval",
        ],
    },
    SetDecl {
        name: "hairpin_loss",
        kind: "set",
        spec: &["typeof ct mark . numgen random mod 100", "flags interval"],
    },
    SetDecl {
        name: "hairpin_counters",
        kind: "map",
        spec: &["type ifname : counter"],
    },
    SetDecl {
        name: "port_shares",
        kind: "set",
        spec: &[
            // Not `typeof ct original zone ...`: nft 1.0.6 aborts listing
            // a dynamic set of that key with elements. A new connection's
            // iifname is its network's port.
            "type ifname . ipv4_addr . ipv4_addr . inet_proto . inet_service",
            "size 262144",
            "flags dynamic",
        ],
    },
    SetDecl {
        name: "share_counters",
        kind: "map",
        spec: &["type ifname : counter"],
    },
];

/// The gateway table's sets and chains.
///
/// Connections from a network get the network's conntrack zone, on the
/// original direction only: two guests with the same address and port in
/// two networks are two connections, and replies (which arrive on the host
/// side, in the default zone) still find theirs. The gateway has no route
/// to guest subnets (they overlap), so packets into a network are marked
/// with its zone and policy routing (`fwmark ZONE lookup 1000+ZONE`) sends
/// them to its port: replies by the zone the connection came from, packets
/// to a published port by the zone the port leads to (kept in `ct mark`).
///
/// A guest reaching another guest of its network through a published port
/// (hairpin) leaves the network and comes back translated from the gateway
/// address, so the network's own partition check cannot tell who sent it.
/// The gateway checks such packets itself, in forward, where it sees both
/// guests' addresses (after DNAT, before SNAT), against the network's cut
/// kept in the `hairpin_*` sets, keyed by zone. `hairpin_own` holds `Z . Z`
/// for every network: the connection came from the zone (`ct original
/// zone`) its published port leads to (`ct mark`), in either direction, so
/// a guest of another network with the same addresses is never taken for
/// one of these.
///
/// Guests' TCP and UDP connections leave with a source port of
/// `nat_ports`, and a guest holding a quarter of them towards one
/// destination ([`port_share`], counted by `ct count` in `@port_shares`)
/// gets no new connection there until some of its own end: one noisy guest
/// cannot take every port towards a shared server (a DNS server, say) from
/// the other networks.
pub fn gateway_layout(spec: &GatewaySpec) -> Layout {
    let gw = spec.gateway_ip;
    let host_side = &spec.host_side;
    let to_forward = "ct mark set meta l4proto . th dport map @forward_zones \
                      meta mark set ct mark \
                      dnat ip to meta l4proto . th dport map @forwards";
    let hairpin = "ct original zone . ct mark @hairpin_own";
    let nat_ports = spec.nat_ports;
    let share = port_share(nat_ports);
    let hairpin_drop = "ct mark . numgen random mod 100 @hairpin_loss \
                        counter name oifname map @hairpin_counters drop";
    Layout {
        table: GATEWAY_TABLE,
        sets: GATEWAY_SETS,
        chains: vec![
            ChainDecl {
                name: "zones",
                hook: "type filter hook prerouting priority raw; policy accept;",
                rules: vec!["ct original zone set iifname map @zone_of_port".to_owned()],
            },
            ChainDecl {
                name: "marks",
                hook: "type filter hook prerouting priority mangle; policy accept;",
                rules: vec![
                    "ct direction original meta mark set ct mark".to_owned(),
                    "ct direction reply meta mark set ct original zone".to_owned(),
                ],
            },
            ChainDecl {
                name: "published",
                hook: "type nat hook prerouting priority dstnat; policy accept;",
                rules: vec![
                    format!("ip daddr {gw} {to_forward}"),
                    format!(
                        "iifname @net_ports ip daddr @host_addrs \
                         meta l4proto . th dport @forwards_any_ip {to_forward}"
                    ),
                    format!(
                        "iifname @net_ports ip daddr @host_addrs \
                         ip daddr . meta l4proto . th dport @forwards_on_ip {to_forward}"
                    ),
                ],
            },
            ChainDecl {
                name: "translate",
                hook: "type nat hook postrouting priority srcnat; policy accept;",
                rules: vec![
                    format!("iifname @net_ports oifname @net_ports ct status dnat snat ip to {gw}"),
                    format!(
                        "iifname @snat_ports oifname \"{host_side}\" meta l4proto {{ tcp, udp }} \
                         snat ip to {gw}:{nat_ports}"
                    ),
                    format!("iifname @snat_ports oifname \"{host_side}\" snat ip to {gw}"),
                ],
            },
            ChainDecl {
                name: "between",
                hook: "type filter hook forward priority filter; policy accept;",
                rules: vec![
                    format!("ct state invalid counter name \"{INVALID_COUNTER}\" drop"),
                    format!(
                        "ct state new iifname @snat_ports oifname \"{host_side}\" \
                         meta l4proto {{ tcp, udp }} add @port_shares {{ iifname . ip saddr \
                         . ip daddr . meta l4proto . th dport ct count over {share} }} \
                         counter name iifname map @share_counters drop"
                    ),
                    format!("{hairpin} ct mark . ip saddr . ip daddr @hairpin_cut {hairpin_drop}"),
                    // As in the network's table: tried by the destination
                    // port, else by the source port, so it is drawn once.
                    format!(
                        "{hairpin} ct mark . ip saddr . ip daddr . meta l4proto . th dport \
                         @hairpin_port_cut {hairpin_drop}"
                    ),
                    format!(
                        "{hairpin} ct mark . ip saddr . ip daddr . meta l4proto . th dport \
                         != @hairpin_port_cut \
                         ct mark . ip saddr . ip daddr . meta l4proto . th sport \
                         @hairpin_port_cut {hairpin_drop}"
                    ),
                    "iifname @net_ports oifname @net_ports ct status ! dnat \
                     counter name iifname map @cross_counters drop"
                        .to_owned(),
                ],
            },
        ],
    }
}

/// The gateway table's elements and per-network counters.
pub fn gateway_content(spec: &GatewaySpec) -> Content {
    let mut content = Content::default();
    let mut put = |set: &'static str, element: String| {
        content.elements.entry(set).or_default().insert(element);
    };
    for (zone, net) in &spec.networks {
        let port = &net.port;
        put("zone_of_port", format!("\"{port}\" : {zone}"));
        put("net_ports", format!("\"{port}\""));
        if !net.routable {
            put("snat_ports", format!("\"{port}\""));
        }
        put(
            "cross_counters",
            format!("\"{port}\" : \"{}\"", cross_network_counter(*zone)),
        );
        put("hairpin_own", format!("{zone} . {zone}"));
        put(
            "share_counters",
            format!("\"{port}\" : \"{}\"", port_share_counter(*zone)),
        );
        put(
            "hairpin_counters",
            format!("\"{port}\" : \"{}\"", hairpin_partition_counter(*zone)),
        );
        for (set, elements) in hairpin_elements(*zone, &net.partition) {
            for element in elements {
                put(set, element);
            }
        }
    }
    for addr in &spec.host_addrs {
        put("host_addrs", addr.to_string());
    }
    for port in &spec.forwards {
        let key = format!("{} . {}", port.proto, port.host_port);
        put(
            "forwards",
            format!("{key} : {} . {}", port.guest_ip, port.guest_port),
        );
        put("forward_zones", format!("{key} : {}", port.zone));
        match port.host_ip {
            None => put("forwards_any_ip", key),
            Some(ip) => put("forwards_on_ip", format!("{ip} . {key}")),
        }
    }
    content.counters = std::iter::once(INVALID_COUNTER.to_owned())
        .chain(spec.networks.keys().flat_map(|zone| {
            [
                cross_network_counter(*zone),
                hairpin_partition_counter(*zone),
                port_share_counter(*zone),
            ]
        }))
        .collect();
    content
}

/// A network's partition elements ([`partition_elements`]) as the
/// gateway's `hairpin_*` sets hold them: each behind the network's zone.
/// Single ports are written as ranges (`80-80`): nft 1.0.6 deletes a single
/// value from a concatenated interval set only in that form.
pub fn hairpin_elements(
    zone: u32,
    partition: &BTreeMap<&'static str, BTreeSet<String>>,
) -> Vec<(&'static str, Vec<String>)> {
    let of = |set: &str| partition.get(set).into_iter().flatten();
    vec![
        (
            "hairpin_cut",
            of("cut").map(|pair| format!("{zone} . {pair}")).collect(),
        ),
        (
            "hairpin_port_cut",
            of("port_cut")
                .map(|element| {
                    let ports_at = element.rfind(' ').map_or(0, |at| at + 1);
                    let (head, ports) = element.split_at(ports_at);
                    if ports.contains('-') {
                        format!("{zone} . {element}")
                    } else {
                        format!("{zone} . {head}{ports}-{ports}")
                    }
                })
                .collect(),
        ),
        (
            "hairpin_loss",
            of("loss").map(|loss| format!("{zone} . {loss}")).collect(),
        ),
    ]
}

/// Checks what goes into a gateway script unquoted or inside quotes.
pub fn validate_gateway(spec: &GatewaySpec) -> Result<(), ScriptError> {
    validate_ifname(&spec.host_side)?;
    for net in spec.networks.values() {
        validate_ifname(&net.port)?;
    }
    match spec.forwards.iter().find(|port| port.host_port == 0) {
        Some(port) => Err(ScriptError::PortZero { proto: port.proto }),
        None => Ok(()),
    }
}

/// The full sync of the gateway: netd's table deleted and recreated with the
/// spec's contents, in one transaction (the leading `add table` makes the
/// `delete` work when there is no table yet). Packets see the old table or
/// the new one, never none.
pub fn gateway_sync_script(spec: &GatewaySpec) -> Result<String, ScriptError> {
    validate_gateway(spec)?;
    let layout = gateway_layout(spec);
    Ok(format!(
        "{}{}",
        remove_script(GATEWAY_TABLE),
        table_definition(&layout, &gateway_content(spec))
    ))
}

// ---------------------------------------------------------------------------
// Networks

const NETWORK_SETS: &[SetDecl] = &[
    SetDecl {
        name: "guest_ports",
        kind: "set",
        spec: &["type ifname"],
    },
    SetDecl {
        name: "guest_ips",
        kind: "set",
        spec: &["type ipv4_addr"],
    },
    SetDecl {
        name: "guests",
        kind: "set",
        spec: &["type ifname . ether_addr . ipv4_addr"],
    },
    SetDecl {
        name: "cut",
        kind: "set",
        spec: &["type ipv4_addr . ipv4_addr"],
    },
    SetDecl {
        name: "outside_cut",
        kind: "set",
        spec: &["type ipv4_addr"],
    },
    SetDecl {
        name: "loss",
        kind: "set",
        spec: &["typeof numgen random mod 100", "flags interval"],
    },
    SetDecl {
        name: "internal",
        kind: "set",
        spec: &["type ipv4_addr", "flags interval"],
    },
    SetDecl {
        name: "port_cut",
        kind: "set",
        spec: &[
            "type ipv4_addr . ipv4_addr . inet_proto . inet_service",
            "flags interval",
        ],
    },
];

/// The sets that hold the partition, replaced together in one transaction.
pub const PARTITION_SETS: [&str; 4] = ["cut", "outside_cut", "loss", "port_cut"];

/// A network table's sets and chains. Guest ports are checked where frames
/// enter the bridge (prerouting: every frame a guest sends, whether it is
/// bridged to another guest or goes to the router); the partition where
/// they leave it: guest to guest in forward, guest to the router (the
/// outside) in input, router to guest in output. Cut packets are dropped
/// when `numgen random mod 100` falls in `@loss` (0-99 for all of them).
/// Nothing here tracks connections, so established connections are cut too.
/// `@internal` holds an internal network's subnet (and is empty otherwise):
/// then nothing crosses between the router and the guests unless both ends
/// are inside it (the bridge's own address is).
/// The layout of `spec`'s table: the same for every network (rates are
/// not here but in the shapers the delay table sends packets through,
/// `shapers`).
pub fn network_layout_for(_spec: &NetworkSpec) -> Layout {
    network_layout()
}

pub fn network_layout() -> Layout {
    let lossy = "numgen random mod 100 @loss counter name \"dropped_partition\" drop";
    let internal = "counter name \"dropped_internal\" drop";
    Layout {
        table: NETWORK_TABLE,
        sets: NETWORK_SETS,
        chains: vec![
            ChainDecl {
                name: "from_guests",
                hook: "type filter hook prerouting priority filter; policy accept;",
                rules: vec![
                    "iifname != @guest_ports accept".to_owned(),
                    "iifname . ether saddr . ip saddr @guests accept".to_owned(),
                    "iifname . ether saddr . arp saddr ip @guests \
                     iifname . arp saddr ether . arp saddr ip @guests accept"
                        .to_owned(),
                    "ether type { ip, arp } counter name \"dropped_spoofed\" drop".to_owned(),
                    "counter name \"dropped_unsupported\" drop".to_owned(),
                ],
            },
            ChainDecl {
                name: "between_guests",
                hook: "type filter hook forward priority filter; policy accept;",
                rules: vec![
                    format!("ip saddr . ip daddr @cut {lossy}"),
                    format!("ip saddr @outside_cut ip daddr != @guest_ips {lossy}"),
                    // A packet to or from the port: tried by its destination
                    // port, else by its source port, so it is drawn once.
                    format!("ip saddr . ip daddr . meta l4proto . th dport @port_cut {lossy}"),
                    format!(
                        "ip saddr . ip daddr . meta l4proto . th dport != @port_cut \
                         ip saddr . ip daddr . meta l4proto . th sport @port_cut {lossy}"
                    ),
                ],
            },
            ChainDecl {
                name: "to_outside",
                hook: "type filter hook input priority filter; policy accept;",
                rules: vec![
                    format!("ip saddr @internal ip daddr != @internal {internal}"),
                    format!("ip saddr @outside_cut {lossy}"),
                ],
            },
            ChainDecl {
                name: "from_outside",
                hook: "type filter hook output priority filter; policy accept;",
                rules: vec![
                    format!("ip daddr @internal ip saddr != @internal {internal}"),
                    format!("ip daddr @outside_cut {lossy}"),
                ],
            },
        ],
    }
}

/// A network table's elements; the partition sets only when the partition
/// is known.
pub fn network_content(spec: &NetworkSpec) -> Content {
    let mut content = Content {
        counters: NETWORK_COUNTERS.iter().map(|c| (*c).to_owned()).collect(),
        elements: BTreeMap::new(),
    };
    for (port, guest) in &spec.guests {
        let mut put = |set: &'static str, element: String| {
            content.elements.entry(set).or_default().insert(element);
        };
        put("guest_ports", format!("\"{port}\""));
        put("guest_ips", guest.ip.to_string());
        put(
            "guests",
            format!("\"{port}\" . {} . {}", mac_text(guest.mac), guest.ip),
        );
    }
    if let Some(rules) = &spec.partition {
        content
            .elements
            .extend(partition_elements(&spec.guests, rules));
    }
    content.elements.insert(
        "internal",
        spec.internal_subnet
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    content
}

/// The partition as set elements: slots become the addresses of the guests
/// holding them (slots without a guest cut nothing).
pub fn partition_elements(
    guests: &BTreeMap<String, GuestSpec>,
    rules: &PartitionRules,
) -> BTreeMap<&'static str, BTreeSet<String>> {
    let ip_of: BTreeMap<u8, Ipv4Addr> = guests.values().map(|g| (g.slot, g.ip)).collect();
    let mut port_cut = BTreeSet::new();
    // Only clauses that drop: a clause of a rate alone selects packets to
    // limit, not to cut.
    for fault in rules
        .faults
        .iter()
        .filter(|f| !f.traffic.is_all() && f.loss_percent > 0)
    {
        let protos: Vec<&str> = match fault.traffic.proto {
            Some(proto) => vec![proto.name()],
            None => vec!["tcp", "udp"],
        };
        let ports = fault
            .traffic
            .port
            .map_or_else(|| "0-65535".to_owned(), |port| port.to_string());
        for (from, to) in &fault.pairs {
            let (Some(from), Some(to)) = (ip_of.get(from), ip_of.get(to)) else {
                continue;
            };
            for proto in &protos {
                port_cut.insert(format!("{from} . {to} . {proto} . {ports}"));
            }
        }
    }
    let cut = rules
        .cut()
        .iter()
        .filter_map(|(from, to)| Some(format!("{} . {}", ip_of.get(from)?, ip_of.get(to)?)))
        .collect();
    let outside = rules
        .outside_cut()
        .iter()
        .filter_map(|slot| Some(ip_of.get(slot)?.to_string()))
        .collect();
    // As the eBPF dataplane reads it: 1-100, 100 drops every cut packet.
    let loss = rules.loss_percent();
    BTreeMap::from([
        ("cut", cut),
        ("outside_cut", outside),
        ("loss", BTreeSet::from([format!("0-{}", loss - 1)])),
        ("port_cut", port_cut),
    ])
}

/// Why the nftables dataplane cannot enforce `rules`, naming the option:
/// its delays are between guests only (`delay`), it cannot send a packet
/// twice or damage one, and its
/// partition sets hold one loss share for all traffic.
pub fn cannot_enforce(rules: &PartitionRules) -> Option<String> {
    let nftables_cannot = |option: String, what: &str| {
        Some(format!(
            "{option}: the nftables dataplane cannot {what}; use the eBPF dataplane (`netd daemon --dataplane ebpf`) or leave it out"
        ))
    };
    for fault in &rules.faults {
        let impair = &fault.impair;
        if let Some(delay) = impair.delay_ms
            && !fault.outside.is_empty()
        {
            return nftables_cannot(
                format!("--delay {}", crate::partition::fault::format_millis(delay)),
                "delay traffic with the outside (isolate without --keep-outside)",
            );
        }
        if let Some(percent) = impair.duplicate_percent {
            return nftables_cannot(format!("--duplicate {percent}"), "duplicate packets");
        }
        if let Some(percent) = impair.corrupt_percent {
            return nftables_cannot(format!("--corrupt {percent}"), "corrupt packets");
        }
        if let Some(rate) = impair.rate_bits_per_sec
            && (fault.traffic.port.is_some() || !fault.outside.is_empty())
        {
            return nftables_cannot(
                format!("--rate {}", crate::partition::fault::format_rate(rate)),
                "limit the rate of one port, or of traffic with the outside",
            );
        }
        if !fault.traffic.is_all() && !fault.outside.is_empty() {
            return nftables_cannot(
                fault.traffic.words().join(" "),
                "select ports of traffic with the outside (isolate without --keep-outside)",
            );
        }
    }
    let shares: BTreeSet<u8> = rules
        .faults
        .iter()
        .map(|f| f.loss_percent)
        .filter(|&share| share > 0)
        .collect();
    (shares.len() > 1).then(|| {
        "clauses with different --loss shares: the nftables dataplane holds one share per network; give every clause the same --loss, or use the eBPF dataplane (`netd daemon --dataplane ebpf`)".to_owned()
    })
}

/// Checks what goes into a network script inside quotes.
pub fn validate_network(spec: &NetworkSpec) -> Result<(), ScriptError> {
    spec.guests
        .keys()
        .try_for_each(|port| validate_ifname(port))
}

/// The full sync of a network's table, in place: the table, its counters,
/// sets and chains are added if missing (their counters keep counting if
/// not), every set netd manages is flushed and refilled and every chain
/// flushed and refilled, in one transaction. The partition sets are left
/// as they are when the partition is unknown, so a restarted daemon does not
/// heal a partition it has not been told about yet. What an older netd's
/// table held and this one does not ([`OLDER_LAYOUTS_LEFTOVERS`]) goes in
/// the same transaction.
pub fn network_sync_script(spec: &NetworkSpec) -> Result<String, ScriptError> {
    validate_network(spec)?;
    Ok(format!(
        "{}{OLDER_LAYOUTS_LEFTOVERS}",
        in_place_script(&network_layout_for(spec), &network_content(spec))
    ))
}

/// An older netd's `rates` chain (its `limit` rules, before the rate
/// shapers) and their counter, removed by a sync in place once
/// `between_guests` no longer jumps there (each added first, so that the
/// deletion finds it in a table that never had it).
pub const OLDER_LAYOUTS_LEFTOVERS: &str = "add chain bridge netd rates\n\
     flush chain bridge netd rates\n\
     delete chain bridge netd rates\n\
     add counter bridge netd dropped_rate\n\
     delete counter bridge netd dropped_rate\n";

/// The fallback when an in-place sync fails (a table of another layout):
/// deleted and recreated, in one transaction.
pub fn network_replace_script(spec: &NetworkSpec) -> Result<String, ScriptError> {
    validate_network(spec)?;
    Ok(format!(
        "{}{}",
        remove_script(NETWORK_TABLE),
        table_definition(&network_layout_for(spec), &network_content(spec))
    ))
}

/// A new partition for a whole network: its sets flushed and refilled in one
/// transaction, so no packet sees half of the old one and half of the new.
pub fn partition_script(guests: &BTreeMap<String, GuestSpec>, rules: &PartitionRules) -> String {
    let elements = partition_elements(guests, rules);
    let mut out = String::new();
    for set in PARTITION_SETS {
        let _ = writeln!(out, "flush set {NETWORK_TABLE} {set}");
    }
    for (set, elements) in &elements {
        write_elements(&mut out, "add", NETWORK_TABLE, set, elements);
    }
    out
}

/// Interface names go into quoted nft strings: a name the kernel takes and
/// that needs no escaping there (`ifname`'s checks; netd's own names always
/// pass).
pub fn validate_ifname(name: &str) -> Result<(), ScriptError> {
    if ifname::validate_ifname(name).is_err() || ifname::unquotable_char(name).is_some() {
        return Err(ScriptError::Ifname(name.to_owned()));
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{nft::render::diff_script, partition::test_support::compiled};

    fn mapping(proto: Proto, host_ip: Option<[u8; 4]>, host_port: u16, zone: u32) -> PortMapping {
        PortMapping {
            proto,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            zone,
            guest_ip: Ipv4Addr::new(172, 18, 0, 1),
            guest_port: 80,
        }
    }

    fn gateway() -> GatewaySpec {
        GatewaySpec {
            host_side: "host0".to_owned(),
            gateway_ip: Ipv4Addr::new(172, 18, 255, 2),
            host_addrs: BTreeSet::from([Ipv4Addr::new(198, 51, 100, 2)]),
            networks: BTreeMap::from([
                (
                    1,
                    NetworkPort {
                        port: "nu0".to_owned(),
                        routable: false,
                        partition: BTreeMap::new(),
                    },
                ),
                (
                    2,
                    NetworkPort {
                        port: "nu1".to_owned(),
                        routable: true,
                        partition: BTreeMap::new(),
                    },
                ),
            ]),
            forwards: vec![mapping(Proto::Tcp, None, 8080, 1)],
            nat_ports: crate::config::PortSpan {
                min: 40000,
                max: 65535,
            },
        }
    }

    const GATEWAY_TABLE_TEXT: &str = r#"table inet netd {
	comment "netd"
	counter dropped_cross_network_z1 {
		comment "netd"
	}
	counter dropped_cross_network_z2 {
		comment "netd"
	}
	counter dropped_invalid {
		comment "netd"
	}
	counter dropped_partition_z1 {
		comment "netd"
	}
	counter dropped_partition_z2 {
		comment "netd"
	}
	counter dropped_port_share_z1 {
		comment "netd"
	}
	counter dropped_port_share_z2 {
		comment "netd"
	}
	map zone_of_port {
		typeof iifname : ct zone
		comment "netd"
		elements = { "nu0" : 1, "nu1" : 2 }
	}
	set net_ports {
		type ifname
		comment "netd"
		elements = { "nu0", "nu1" }
	}
	set snat_ports {
		type ifname
		comment "netd"
		elements = { "nu0" }
	}
	map cross_counters {
		type ifname : counter
		comment "netd"
		elements = { "nu0" : "dropped_cross_network_z1", "nu1" : "dropped_cross_network_z2" }
	}
	set host_addrs {
		type ipv4_addr
		comment "netd"
		elements = { 198.51.100.2 }
	}
	map forwards {
		type inet_proto . inet_service : ipv4_addr . inet_service
		comment "netd"
		elements = { tcp . 8080 : 172.18.0.1 . 80 }
	}
	map forward_zones {
		type inet_proto . inet_service : mark
		comment "netd"
		elements = { tcp . 8080 : 1 }
	}
	set forwards_any_ip {
		type inet_proto . inet_service
		comment "netd"
		elements = { tcp . 8080 }
	}
	set forwards_on_ip {
		type ipv4_addr . inet_proto . inet_service
		comment "netd"
	}
	set hairpin_own {
		typeof ct original zone . ct mark
		comment "netd"
		elements = { 1 . 1, 2 . 2 }
	}
	set hairpin_cut {
		type mark . ipv4_addr . ipv4_addr
		comment "netd"
	}
	set hairpin_port_cut {
		type mark . ipv4_addr . ipv4_addr . inet_proto . inet_service
		flags interval
		comment "netd"
	}
	set hairpin_loss {
		typeof ct mark . numgen random mod 100
		flags interval
		comment "netd"
	}
	map hairpin_counters {
		type ifname : counter
		comment "netd"
		elements = { "nu0" : "dropped_partition_z1", "nu1" : "dropped_partition_z2" }
	}
	set port_shares {
		type ifname . ipv4_addr . ipv4_addr . inet_proto . inet_service
		size 262144
		flags dynamic
		comment "netd"
	}
	map share_counters {
		type ifname : counter
		comment "netd"
		elements = { "nu0" : "dropped_port_share_z1", "nu1" : "dropped_port_share_z2" }
	}
	chain zones {
		type filter hook prerouting priority raw; policy accept;
		comment "netd"
		ct original zone set iifname map @zone_of_port comment "netd"
	}
	chain marks {
		type filter hook prerouting priority mangle; policy accept;
		comment "netd"
		ct direction original meta mark set ct mark comment "netd"
		ct direction reply meta mark set ct original zone comment "netd"
	}
	chain published {
		type nat hook prerouting priority dstnat; policy accept;
		comment "netd"
		ip daddr 172.18.255.2 ct mark set meta l4proto . th dport map @forward_zones meta mark set ct mark dnat ip to meta l4proto . th dport map @forwards comment "netd"
		iifname @net_ports ip daddr @host_addrs meta l4proto . th dport @forwards_any_ip ct mark set meta l4proto . th dport map @forward_zones meta mark set ct mark dnat ip to meta l4proto . th dport map @forwards comment "netd"
		iifname @net_ports ip daddr @host_addrs ip daddr . meta l4proto . th dport @forwards_on_ip ct mark set meta l4proto . th dport map @forward_zones meta mark set ct mark dnat ip to meta l4proto . th dport map @forwards comment "netd"
	}
	chain translate {
		type nat hook postrouting priority srcnat; policy accept;
		comment "netd"
		iifname @net_ports oifname @net_ports ct status dnat snat ip to 172.18.255.2 comment "netd"
		iifname @snat_ports oifname "host0" meta l4proto { tcp, udp } snat ip to 172.18.255.2:40000-65535 comment "netd"
		iifname @snat_ports oifname "host0" snat ip to 172.18.255.2 comment "netd"
	}
	chain between {
		type filter hook forward priority filter; policy accept;
		comment "netd"
		ct state invalid counter name "dropped_invalid" drop comment "netd"
		ct state new iifname @snat_ports oifname "host0" meta l4proto { tcp, udp } add @port_shares { iifname . ip saddr . ip daddr . meta l4proto . th dport ct count over 6384 } counter name iifname map @share_counters drop comment "netd"
		ct original zone . ct mark @hairpin_own ct mark . ip saddr . ip daddr @hairpin_cut ct mark . numgen random mod 100 @hairpin_loss counter name oifname map @hairpin_counters drop comment "netd"
		ct original zone . ct mark @hairpin_own ct mark . ip saddr . ip daddr . meta l4proto . th dport @hairpin_port_cut ct mark . numgen random mod 100 @hairpin_loss counter name oifname map @hairpin_counters drop comment "netd"
		ct original zone . ct mark @hairpin_own ct mark . ip saddr . ip daddr . meta l4proto . th dport != @hairpin_port_cut ct mark . ip saddr . ip daddr . meta l4proto . th sport @hairpin_port_cut ct mark . numgen random mod 100 @hairpin_loss counter name oifname map @hairpin_counters drop comment "netd"
		iifname @net_ports oifname @net_ports ct status ! dnat counter name iifname map @cross_counters drop comment "netd"
	}
}
"#;

    #[test]
    fn the_gateway_table_is_rendered_exactly() {
        let script = gateway_sync_script(&gateway()).unwrap();
        assert_eq!(
            script,
            format!("add table inet netd\ndelete table inet netd\n{GATEWAY_TABLE_TEXT}")
        );
    }

    #[test]
    fn publishing_a_port_adds_elements_only() {
        let before = gateway();
        let mut after = gateway();
        after.forwards.push(mapping(Proto::Udp, None, 53, 2));
        after
            .forwards
            .push(mapping(Proto::Tcp, Some([10, 0, 0, 5]), 443, 1));
        assert_eq!(
            diff_script(
                GATEWAY_TABLE,
                &gateway_content(&before),
                &gateway_content(&after)
            ),
            "add element inet netd forward_zones { tcp . 443 : 1, udp . 53 : 2 }\n\
             add element inet netd forwards { tcp . 443 : 172.18.0.1 . 80, udp . 53 : 172.18.0.1 . 80 }\n\
             add element inet netd forwards_any_ip { udp . 53 }\n\
             add element inet netd forwards_on_ip { 10.0.0.5 . tcp . 443 }\n"
        );
        assert_eq!(
            diff_script(
                GATEWAY_TABLE,
                &gateway_content(&after),
                &gateway_content(&before)
            ),
            "delete element inet netd forward_zones { tcp . 443 : 1, udp . 53 : 2 }\n\
             delete element inet netd forwards { tcp . 443 : 172.18.0.1 . 80, udp . 53 : 172.18.0.1 . 80 }\n\
             delete element inet netd forwards_any_ip { udp . 53 }\n\
             delete element inet netd forwards_on_ip { 10.0.0.5 . tcp . 443 }\n"
        );
        let same = gateway_content(&before);
        assert_eq!(diff_script(GATEWAY_TABLE, &same, &same), "");
    }

    #[test]
    fn a_port_that_changes_guest_is_deleted_and_added_in_one_batch() {
        let before = gateway();
        let mut after = gateway();
        after.forwards[0].guest_ip = Ipv4Addr::new(172, 18, 0, 9);
        assert_eq!(
            diff_script(
                GATEWAY_TABLE,
                &gateway_content(&before),
                &gateway_content(&after)
            ),
            "delete element inet netd forwards { tcp . 8080 : 172.18.0.1 . 80 }\n\
             add element inet netd forwards { tcp . 8080 : 172.18.0.9 . 80 }\n"
        );
    }

    #[test]
    fn a_network_comes_and_goes_with_its_elements_and_counter() {
        let mut before = gateway();
        before.networks.remove(&2);
        let after = gateway();
        assert_eq!(
            diff_script(
                GATEWAY_TABLE,
                &gateway_content(&before),
                &gateway_content(&after)
            ),
            "add counter inet netd dropped_cross_network_z2 { comment \"netd\"; }\n\
             add counter inet netd dropped_partition_z2 { comment \"netd\"; }\n\
             add counter inet netd dropped_port_share_z2 { comment \"netd\"; }\n\
             add element inet netd cross_counters { \"nu1\" : \"dropped_cross_network_z2\" }\n\
             add element inet netd hairpin_counters { \"nu1\" : \"dropped_partition_z2\" }\n\
             add element inet netd hairpin_own { 2 . 2 }\n\
             add element inet netd net_ports { \"nu1\" }\n\
             add element inet netd share_counters { \"nu1\" : \"dropped_port_share_z2\" }\n\
             add element inet netd zone_of_port { \"nu1\" : 2 }\n"
        );
        assert_eq!(
            diff_script(
                GATEWAY_TABLE,
                &gateway_content(&after),
                &gateway_content(&before)
            ),
            "delete element inet netd cross_counters { \"nu1\" : \"dropped_cross_network_z2\" }\n\
             delete element inet netd hairpin_counters { \"nu1\" : \"dropped_partition_z2\" }\n\
             delete element inet netd hairpin_own { 2 . 2 }\n\
             delete element inet netd net_ports { \"nu1\" }\n\
             delete element inet netd share_counters { \"nu1\" : \"dropped_port_share_z2\" }\n\
             delete element inet netd zone_of_port { \"nu1\" : 2 }\n\
             delete counter inet netd dropped_cross_network_z2\n\
             delete counter inet netd dropped_partition_z2\n\
             delete counter inet netd dropped_port_share_z2\n"
        );
    }

    #[test]
    fn names_that_need_quoting_and_port_zero_are_refused() {
        for bad in ["nu\"0", "a b", "", "n;d", "abcdefghijklmnop"] {
            let mut spec = gateway();
            spec.host_side = bad.to_owned();
            assert_eq!(
                gateway_sync_script(&spec),
                Err(ScriptError::Ifname(bad.to_owned()))
            );
        }
        let mut spec = gateway();
        spec.forwards.push(mapping(Proto::Udp, None, 0, 1));
        assert_eq!(
            gateway_sync_script(&spec).unwrap_err().to_string(),
            "udp port 0 cannot be published: publish a port from 1 to 65535"
        );
        let guests = BTreeMap::from([("g-\"x".to_owned(), guest(1, 0))]);
        let spec = NetworkSpec {
            internal_subnet: None,
            guests,
            partition: None,
        };
        assert!(network_sync_script(&spec).is_err());
    }

    fn guest(last: u8, slot: u8) -> GuestSpec {
        GuestSpec {
            mac: [0x02, 0, 0, 0, 0, last],
            ip: Ipv4Addr::new(172, 18, 0, last),
            slot,
        }
    }

    fn network(partition: Option<PartitionRules>) -> NetworkSpec {
        NetworkSpec {
            guests: BTreeMap::from([
                ("g-a".to_owned(), guest(1, 0)),
                ("g-b".to_owned(), guest(2, 1)),
                ("g-c".to_owned(), guest(3, 2)),
            ]),
            partition,
            internal_subnet: None,
        }
    }

    #[test]
    fn a_network_table_is_synced_in_place_and_keeps_an_unknown_partition() {
        assert_eq!(
            network_sync_script(&network(None)).unwrap(),
            r#"add table bridge netd { comment "netd"; }
add counter bridge netd dropped_internal { comment "netd"; }
add counter bridge netd dropped_partition { comment "netd"; }
add counter bridge netd dropped_spoofed { comment "netd"; }
add counter bridge netd dropped_unsupported { comment "netd"; }
add set bridge netd guest_ports { type ifname; comment "netd"; }
flush set bridge netd guest_ports
add element bridge netd guest_ports { "g-a", "g-b", "g-c" }
add set bridge netd guest_ips { type ipv4_addr; comment "netd"; }
flush set bridge netd guest_ips
add element bridge netd guest_ips { 172.18.0.1, 172.18.0.2, 172.18.0.3 }
add set bridge netd guests { type ifname . ether_addr . ipv4_addr; comment "netd"; }
flush set bridge netd guests
add element bridge netd guests { "g-a" . 02:00:00:00:00:01 . 172.18.0.1, "g-b" . 02:00:00:00:00:02 . 172.18.0.2, "g-c" . 02:00:00:00:00:03 . 172.18.0.3 }
add set bridge netd cut { type ipv4_addr . ipv4_addr; comment "netd"; }
add set bridge netd outside_cut { type ipv4_addr; comment "netd"; }
add set bridge netd loss { typeof numgen random mod 100; flags interval; comment "netd"; }
add set bridge netd internal { type ipv4_addr; flags interval; comment "netd"; }
flush set bridge netd internal
add set bridge netd port_cut { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval; comment "netd"; }
add chain bridge netd from_guests { type filter hook prerouting priority filter; policy accept; comment "netd"; }
flush chain bridge netd from_guests
add rule bridge netd from_guests iifname != @guest_ports accept comment "netd"
add rule bridge netd from_guests iifname . ether saddr . ip saddr @guests accept comment "netd"
add rule bridge netd from_guests iifname . ether saddr . arp saddr ip @guests iifname . arp saddr ether . arp saddr ip @guests accept comment "netd"
add rule bridge netd from_guests ether type { ip, arp } counter name "dropped_spoofed" drop comment "netd"
add rule bridge netd from_guests counter name "dropped_unsupported" drop comment "netd"
add chain bridge netd between_guests { type filter hook forward priority filter; policy accept; comment "netd"; }
flush chain bridge netd between_guests
add rule bridge netd between_guests ip saddr . ip daddr @cut numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add rule bridge netd between_guests ip saddr @outside_cut ip daddr != @guest_ips numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add rule bridge netd between_guests ip saddr . ip daddr . meta l4proto . th dport @port_cut numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add rule bridge netd between_guests ip saddr . ip daddr . meta l4proto . th dport != @port_cut ip saddr . ip daddr . meta l4proto . th sport @port_cut numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add chain bridge netd to_outside { type filter hook input priority filter; policy accept; comment "netd"; }
flush chain bridge netd to_outside
add rule bridge netd to_outside ip saddr @internal ip daddr != @internal counter name "dropped_internal" drop comment "netd"
add rule bridge netd to_outside ip saddr @outside_cut numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add chain bridge netd from_outside { type filter hook output priority filter; policy accept; comment "netd"; }
flush chain bridge netd from_outside
add rule bridge netd from_outside ip daddr @internal ip saddr != @internal counter name "dropped_internal" drop comment "netd"
add rule bridge netd from_outside ip daddr @outside_cut numgen random mod 100 @loss counter name "dropped_partition" drop comment "netd"
add chain bridge netd rates
flush chain bridge netd rates
delete chain bridge netd rates
add counter bridge netd dropped_rate
delete counter bridge netd dropped_rate
"#
        );
    }

    #[test]
    fn a_known_partition_is_flushed_and_refilled_by_a_sync() {
        let rules = PartitionRules::cutting(BTreeSet::from([(0, 1)]), BTreeSet::new(), 100);
        let script = network_sync_script(&network(Some(rules))).unwrap();
        for line in [
            "flush set bridge netd cut\nadd element bridge netd cut { 172.18.0.1 . 172.18.0.2 }\n",
            "flush set bridge netd outside_cut\nadd set bridge netd loss",
            "flush set bridge netd loss\nadd element bridge netd loss { 0-99 }\n",
        ] {
            assert!(script.contains(line), "{line:?} missing from\n{script}");
        }
    }

    #[test]
    fn a_partition_is_one_batch_over_guest_addresses() {
        let rules = PartitionRules::cutting(
            // Slot 7 holds no guest: nothing to cut.
            BTreeSet::from([(0, 1), (1, 0), (2, 0), (0, 7)]),
            BTreeSet::from([2, 9]),
            30,
        );
        assert_eq!(
            partition_script(&network(None).guests, &rules),
            "flush set bridge netd cut\n\
             flush set bridge netd outside_cut\n\
             flush set bridge netd loss\n\
             flush set bridge netd port_cut\n\
             add element bridge netd cut { 172.18.0.1 . 172.18.0.2, 172.18.0.2 . 172.18.0.1, 172.18.0.3 . 172.18.0.1 }\n\
             add element bridge netd loss { 0-29 }\n\
             add element bridge netd outside_cut { 172.18.0.3 }\n"
        );
        // Healing: empty sets, every packet would be dropped if cut.
        assert_eq!(
            partition_script(&network(None).guests, &PartitionRules::default()),
            "flush set bridge netd cut\n\
             flush set bridge netd outside_cut\n\
             flush set bridge netd loss\n\
             flush set bridge netd port_cut\n\
             add element bridge netd loss { 0-99 }\n"
        );
        let all = PartitionRules::cutting(BTreeSet::new(), BTreeSet::new(), 100);
        assert!(partition_script(&BTreeMap::new(), &all).ends_with("loss { 0-99 }\n"));
    }

    #[test]
    fn a_guest_may_hold_a_quarter_of_the_ports() {
        use crate::config::PortSpan;
        assert_eq!(
            port_share(PortSpan {
                min: 40000,
                max: 65535
            }),
            6384
        );
        assert_eq!(
            port_share(PortSpan {
                min: 61000,
                max: 65535
            }),
            1134
        );
        assert_eq!(port_share(PortSpan { min: 1, max: 65535 }), 16383);
        assert_eq!(port_share(PortSpan { min: 80, max: 80 }), 1);
    }

    #[test]
    fn the_gateway_holds_each_networks_cut_behind_its_zone() {
        let rules = compiled(
            "cut --from a --to b + cut --from b --to c --port 53",
            "a b c",
        );
        let mut before = gateway();
        before.networks.remove(&2);
        let mut after = before.clone();
        after.networks.get_mut(&1).unwrap().partition =
            partition_elements(&network(None).guests, &rules);
        let diff = diff_script(
            GATEWAY_TABLE,
            &gateway_content(&before),
            &gateway_content(&after),
        );
        assert_eq!(
            diff,
            "add element inet netd hairpin_cut { 1 . 172.18.0.1 . 172.18.0.2 }\n\
             add element inet netd hairpin_loss { 1 . 0-99 }\n\
             add element inet netd hairpin_port_cut { 1 . 172.18.0.2 . 172.18.0.3 . tcp . 53-53, 1 . 172.18.0.2 . 172.18.0.3 . udp . 53-53 }\n"
        );
        // Healed: the elements go, the network's own ones stay.
        let healed = diff_script(
            GATEWAY_TABLE,
            &gateway_content(&after),
            &gateway_content(&before),
        );
        assert!(healed.starts_with("delete element inet netd hairpin_cut"));
        assert!(!healed.contains("hairpin_own"), "{healed}");
    }

    #[test]
    fn port_faults_are_elements_by_protocol_and_port() {
        let rules = compiled(
            "cut --from a --to b --port 53 + cut --from b --to c --proto icmp",
            "a b c",
        );
        assert_eq!(cannot_enforce(&rules), None);
        let elements = partition_elements(&network(None).guests, &rules);
        assert_eq!(
            elements["port_cut"],
            BTreeSet::from([
                "172.18.0.1 . 172.18.0.2 . tcp . 53".to_owned(),
                "172.18.0.1 . 172.18.0.2 . udp . 53".to_owned(),
                "172.18.0.2 . 172.18.0.3 . icmp . 0-65535".to_owned(),
            ])
        );
        assert!(elements["cut"].is_empty(), "no whole pair is cut");
    }

    #[test]
    fn a_rate_is_no_cut_and_no_rule_of_the_bridge_table() {
        let rules = compiled("isolate c + all --rate 1mbit --proto udp", "a b c");
        let guests = network(None).guests;
        assert!(partition_elements(&guests, &rules)["port_cut"].is_empty());
        let script = partition_script(&guests, &rules);
        assert!(!script.contains("limit"), "{script}");
    }

    #[test]
    fn what_nftables_cannot_do_is_refused_by_name() {
        let refusal = |line: &str| cannot_enforce(&compiled(line, "a b"));
        for (line, part) in [
            (
                "isolate a --delay 5ms",
                "--delay 5ms: the nftables dataplane cannot delay traffic with the outside",
            ),
            (
                "all --duplicate 5",
                "--duplicate 5: the nftables dataplane cannot duplicate",
            ),
            (
                "all --corrupt 5",
                "--corrupt 5: the nftables dataplane cannot corrupt",
            ),
            (
                "all --rate 1mbit --port 80",
                "--rate 1mbit: the nftables dataplane cannot limit the rate of one port",
            ),
            ("isolate a --port 80", "traffic with the outside"),
            ("isolate a + all --loss 30", "different --loss shares"),
        ] {
            let reason = refusal(line).unwrap_or_else(|| panic!("{line} was accepted"));
            assert!(reason.contains(part), "{line}: {reason}");
        }
        assert_eq!(
            refusal("isolate a --loss 30 + all --port 80 --loss 30"),
            None
        );
        assert_eq!(refusal("all --delay 5ms --jitter 1ms --port 80"), None);
    }

    #[test]
    fn a_guest_added_to_a_partitioned_network_joins_its_cuts() {
        let rules = PartitionRules::cutting(BTreeSet::from([(0, 3)]), BTreeSet::from([3]), 100);
        let before = network(Some(rules.clone()));
        let mut after = network(Some(rules));
        after.guests.insert("g-d".to_owned(), guest(4, 3));
        assert_eq!(
            diff_script(
                NETWORK_TABLE,
                &network_content(&before),
                &network_content(&after)
            ),
            "add element bridge netd cut { 172.18.0.1 . 172.18.0.4 }\n\
             add element bridge netd guest_ips { 172.18.0.4 }\n\
             add element bridge netd guest_ports { \"g-d\" }\n\
             add element bridge netd guests { \"g-d\" . 02:00:00:00:00:04 . 172.18.0.4 }\n\
             add element bridge netd outside_cut { 172.18.0.4 }\n"
        );
    }

    #[test]
    fn the_network_table_definition_tags_every_object() {
        let text = table_definition(&network_layout(), &network_content(&network(None)));
        assert!(
            text.starts_with("table bridge netd {\n\tcomment \"netd\"\n"),
            "{text}"
        );
        // Every counter, set and chain has a comment line, every rule ends
        // with one.
        let objects = text
            .lines()
            .filter(|l| {
                l.starts_with("\tcounter ") || l.starts_with("\tset ") || l.starts_with("\tchain ")
            })
            .count();
        let tagged_objects = text
            .lines()
            .filter(|l| *l == "\t\tcomment \"netd\"")
            .count();
        assert_eq!(objects, 4 + 8 + 4);
        assert_eq!(tagged_objects, objects);
        let rules: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("\t\t")
                    && !l.starts_with("\t\ttype")
                    && !l.starts_with("\t\tcomment")
                    && !l.starts_with("\t\telements")
                    && !l.starts_with("\t\tflags")
                    && !l.starts_with("\t\ttypeof")
            })
            .collect();
        assert_eq!(rules.len(), 13, "{rules:?}");
        assert!(
            rules.iter().all(|r| r.ends_with(" comment \"netd\"")),
            "{rules:?}"
        );
    }

    #[test]
    fn route_tables_and_counters_are_named_by_zone() {
        assert_eq!(route_table(1), 1001);
        assert_eq!(cross_network_counter(12), "dropped_cross_network_z12");
        assert_eq!(
            mac_text([0xde, 0xad, 0, 1, 0x0a, 0xff]),
            "de:ad:00:01:0a:ff"
        );
    }
}

/// The drift check (`crate::nft::check`) against the network table's layout.
#[cfg(test)]
mod drift_tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use crate::{dataplane::nftables::script, nft::check::problems};

    fn listing(objects: &[serde_json::Value]) -> serde_json::Value {
        json!({ "nftables": objects })
    }

    /// A listing of exactly the network layout, as nft would give it.
    fn intact() -> Vec<serde_json::Value> {
        let layout = script::network_layout();
        let mut objects = vec![json!({"table": {"family": "bridge", "name": "netd"}})];
        for counter in script::NETWORK_COUNTERS {
            objects.push(json!({"counter": {"name": counter, "packets": 0}}));
        }
        for set in layout.sets {
            objects.push(json!({ set.kind: {"name": set.name, "comment": "netd"} }));
        }
        for chain in &layout.chains {
            objects.push(json!({"chain": {"name": chain.name, "comment": "netd"}}));
            for _ in &chain.rules {
                objects.push(json!({"rule": {"chain": chain.name, "comment": "netd", "expr": []}}));
            }
        }
        objects
    }

    fn counters() -> BTreeSet<String> {
        script::NETWORK_COUNTERS
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    }

    #[test]
    fn an_intact_table_has_no_problems() {
        let layout = script::network_layout();
        assert_eq!(
            problems(&listing(&intact()), &layout, &counters()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn missing_and_foreign_pieces_are_named() {
        let layout = script::network_layout();
        let mut objects: Vec<serde_json::Value> = intact()
            .into_iter()
            .filter(|o| o["set"]["name"] != "cut" && o["counter"]["name"] != "dropped_spoofed")
            .collect();
        // One of netd's rules gone from from_guests, a foreign one added.
        let at = objects
            .iter()
            .position(|o| o["rule"]["chain"] == "from_guests")
            .unwrap();
        objects.remove(at);
        objects.push(json!({"rule": {"chain": "to_outside", "expr": []}}));
        assert_eq!(
            problems(&listing(&objects), &layout, &counters()),
            [
                "chain from_guests has 4 of its 5 rules",
                "chain to_outside has 1 rules netd did not add",
                "set cut is missing",
                "counter dropped_spoofed is missing",
            ]
        );
        let bare = listing(&[json!({"table": {"family": "bridge", "name": "netd"}})]);
        assert_eq!(problems(&bare, &layout, &BTreeSet::new()).len(), 4 + 8);
    }
}

/// The table on a spanned network's VXLAN device (netdev family, its own:
/// a device hook): ARP for or from the network's gateway address arriving
/// from the overlay is dropped, so guests resolve their own node's bridge.
pub const OVERLAY_TABLE: &str = "netdev netd_overlay";

/// The script that makes [`OVERLAY_TABLE`] exactly this, in one
/// transaction.
pub fn overlay_table(device: &str, gateway: std::net::Ipv4Addr) -> String {
    format!(
        "table {OVERLAY_TABLE} {{ comment \"netd\"; }}\n\
         delete table {OVERLAY_TABLE}\n\
         table {OVERLAY_TABLE} {{\n\
         \tcomment \"netd\"\n\
         \tchain overlay_in {{\n\
         \t\tcomment \"netd\"\n\
         \t\ttype filter hook ingress device \"{device}\" priority 0; policy accept;\n\
         \t\tarp saddr ip {gateway} counter drop comment \"dropped_overlay_arp\"\n\
         \t\tarp daddr ip {gateway} counter drop comment \"dropped_overlay_arp\"\n\
         \t}}\n\
         }}\n"
    )
}
