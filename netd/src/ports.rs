//! Port forwarding ("publishing"): what a `netd port add` spec means, and
//! whether it may be published. Pure: the daemon stores forwards with their
//! guest and hands the expanded mappings to the dataplane.
//!
//! A spec is `[HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp]`: traffic to
//! HOSTPORT (on HOSTIP only, if given) goes to GUESTPORT on the guest.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The transport protocol of a published port.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (IPPROTO_TCP, IPPROTO_UDP).
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port, ranges already expanded: traffic to the gateway (or
/// host) address on `host_port` goes to `guest_ip:guest_port` in network
/// `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    pub proto: Proto,
    /// Only connections to this host address are forwarded; None: any.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub zone: u32,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
}

/// Every port of a forward is one dataplane entry (and one rule for
/// backends that need rules), so one command may not flood the tables.
pub const MAX_PORTS_PER_FORWARD: u32 = 1024;

/// The spec's grammar, repeated by every syntax error so the user can fix it
/// without looking it up.
const SPEC_SYNTAX: &str = "[HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp]";

/// An inclusive range of ports; a single port has `start == end`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// How many ports it holds (0 if `end < start`, which parsing refuses but
    /// a hand-edited state file could contain).
    pub fn len(&self) -> u32 {
        (u32::from(self.end) + 1).saturating_sub(u32::from(self.start))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ports both ranges hold, if any.
    pub fn overlap(&self, other: &PortRange) -> Option<PortRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(PortRange { start, end })
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One published port or range, as the user asked for it. Belongs to a guest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortForward {
    /// Only traffic to this host address is forwarded; None (written
    /// `0.0.0.0` or left out): any address that reaches the gateway.
    pub host_ip: Option<Ipv4Addr>,
    pub host_ports: PortRange,
    /// As long as `host_ports`: the nth host port goes to the nth guest port.
    pub guest_ports: PortRange,
    pub proto: Proto,
}

impl PortForward {
    /// One dataplane mapping per port, in port order.
    pub fn mappings(&self, zone: u32, guest_ip: Ipv4Addr) -> Vec<PortMapping> {
        self.host_ports
            .ports()
            .zip(self.guest_ports.ports())
            .map(|(host_port, guest_port)| PortMapping {
                proto: self.proto,
                host_ip: self.host_ip,
                host_port,
                zone,
                guest_ip,
                guest_port,
            })
            .collect()
    }
}

/// Prints the canonical spec: no `0.0.0.0`, single ports without `-END`,
/// always the protocol. Parsing it gives the same forward back.
impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_ports, self.guest_ports, self.proto)
    }
}

impl FromStr for PortForward {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<PortForward, PortError> {
        let syntax = || PortError::Syntax {
            spec: spec.to_owned(),
        };
        if spec.contains('[') || spec.matches(':').count() > 2 {
            return Err(if spec.contains("::") || spec.contains('[') {
                PortError::Ipv6HostIp {
                    spec: spec.to_owned(),
                }
            } else {
                syntax()
            });
        }
        let (addresses, proto) = match spec.split_once('/') {
            Some((addresses, proto)) => (addresses, parse_proto(proto)?),
            None => (spec, Proto::Tcp),
        };
        let parts: Vec<&str> = addresses.split(':').collect();
        if parts.len() > 1 && parts.iter().any(|part| part.is_empty()) {
            return Err(syntax());
        }
        let (host_ip, host, guest) = match parts[..] {
            [host, guest] => (None, host, guest),
            [ip, host, guest] => (parse_host_ip(ip)?, host, guest),
            [single] if !single.is_empty() => {
                return Err(PortError::MissingGuestPort {
                    spec: spec.to_owned(),
                });
            }
            _ => return Err(syntax()),
        };
        let host_ports = parse_range(Side::Host, host, spec)?;
        let guest_ports = parse_range(Side::Guest, guest, spec)?;
        if host_ports.len() != guest_ports.len() {
            return Err(PortError::LengthMismatch {
                host: host_ports,
                guest: guest_ports,
            });
        }
        if host_ports.len() > MAX_PORTS_PER_FORWARD {
            return Err(PortError::TooManyPorts { range: host_ports });
        }
        Ok(PortForward {
            host_ip,
            host_ports,
            guest_ports,
            proto,
        })
    }
}

/// Which side of a forward a port is on, so that errors say which one is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Guest,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Host => "host",
            Side::Guest => "guest",
        })
    }
}

fn parse_proto(text: &str) -> Result<Proto, PortError> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(PortError::UnknownProto {
            proto: text.to_owned(),
        }),
    }
}

/// `0.0.0.0` means any address; addresses that can never be the destination
/// of a forwarded connection are refused.
fn parse_host_ip(text: &str) -> Result<Option<Ipv4Addr>, PortError> {
    let ip: Ipv4Addr = text.parse().map_err(|_| PortError::BadHostIp {
        text: text.to_owned(),
    })?;
    if ip.is_unspecified() {
        Ok(None)
    } else if ip.is_loopback() {
        Err(PortError::LoopbackHostIp { ip })
    } else if ip.is_broadcast() {
        Err(PortError::NotUnicastHostIp {
            ip,
            kind: "broadcast",
        })
    } else if ip.is_multicast() {
        Err(PortError::NotUnicastHostIp {
            ip,
            kind: "multicast",
        })
    } else {
        Ok(Some(ip))
    }
}

fn parse_range(side: Side, text: &str, spec: &str) -> Result<PortRange, PortError> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (parse_port(side, start, spec)?, parse_port(side, end, spec)?),
        None => {
            let port = parse_port(side, text, spec)?;
            (port, port)
        }
    };
    if start > end {
        return Err(PortError::Backwards { side, start, end });
    }
    Ok(PortRange { start, end })
}

fn parse_port(side: Side, text: &str, spec: &str) -> Result<u16, PortError> {
    // Digits only: `u16::from_str` would also take "+80".
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::BadPort {
            side,
            text: text.to_owned(),
            spec: spec.to_owned(),
        });
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PortError::PortOutOfRange {
            side,
            text: text.to_owned(),
        }),
    }
}

/// Refuses `new` if a host port it would publish, with the same protocol, is
/// published already. The host address does not matter: every network shares
/// the gateway's address, and a forward on one host address would shadow or
/// be shadowed by one on any address, so a host port and protocol is
/// published once per daemon.
pub fn check_conflicts<'a>(
    new: &PortForward,
    existing: impl Iterator<Item = (&'a str, &'a str, &'a PortForward)>,
) -> Result<(), PortError> {
    for (network, guest, held) in existing {
        if held.proto != new.proto {
            continue;
        }
        if let Some(ports) = new.host_ports.overlap(&held.host_ports) {
            return Err(PortError::Conflict {
                ports,
                proto: new.proto,
                network: network.to_owned(),
                guest: guest.to_owned(),
                holder: held.to_string(),
            });
        }
    }
    Ok(())
}

/// "1 port", "11 ports".
fn count(ports: u32) -> String {
    if ports == 1 {
        "1 port".to_owned()
    } else {
        format!("{ports} ports")
    }
}

/// Why a port spec cannot be published.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PortError {
    #[error(
        "bad port spec {spec:?}: write {SPEC_SYNTAX}, e.g. 8080:80 or 10.0.0.5:5000-5010:5000-5010/udp"
    )]
    Syntax { spec: String },
    #[error(
        "port spec {spec:?} has no guest port: write HOSTPORT:GUESTPORT, e.g. 8080:80 (or 80:80 for the same port)"
    )]
    MissingGuestPort { spec: String },
    #[error(
        "bad {side} port {text:?} in {spec:?}: a port is a number from 1 to 65535, a range is START-END (e.g. 8000-8010); the spec is {SPEC_SYNTAX}"
    )]
    BadPort {
        side: Side,
        text: String,
        spec: String,
    },
    #[error("{side} port {text} is out of range: ports are 1-65535")]
    PortOutOfRange { side: Side, text: String },
    #[error(
        "{side} port range {start}-{end} is backwards: write the lower port first, {end}-{start}"
    )]
    Backwards { side: Side, start: u16, end: u16 },
    #[error(
        "host ports {host} ({}) and guest ports {guest} ({}) differ in length: \
         give ranges of the same length, e.g. 8000-8010:80-90",
        count(host.len()),
        count(guest.len())
    )]
    LengthMismatch { host: PortRange, guest: PortRange },
    #[error(
        "host ports {range} are {} ports, more than {MAX_PORTS_PER_FORWARD} in one forward: \
         split the range into several forwards",
        range.len()
    )]
    TooManyPorts { range: PortRange },
    #[error(
        "bad host address {text:?}: write HOSTIP as an IPv4 address A.B.C.D, or leave it out (or write 0.0.0.0) for any address"
    )]
    BadHostIp { text: String },
    #[error(
        "port spec {spec:?} has an IPv6 host address: netd publishes on IPv4 only; give an IPv4 HOSTIP or leave it out"
    )]
    Ipv6HostIp { spec: String },
    #[error(
        "host address {ip} is loopback, which cannot be forwarded (connections to it never leave the host): leave HOSTIP out, or use one of the host's own addresses"
    )]
    LoopbackHostIp { ip: Ipv4Addr },
    #[error(
        "host address {ip} is {kind}, which connections are never made to: leave HOSTIP out, or use one of the host's own addresses"
    )]
    NotUnicastHostIp { ip: Ipv4Addr, kind: &'static str },
    #[error("unknown protocol {proto:?}: end the spec with /tcp or /udp, or leave it out for tcp")]
    UnknownProto { proto: String },
    #[error(
        "host {} {ports}/{proto} {} already published by guest {guest} in network {network} ({holder}): \
         pick another host port or remove that forward with `netd port rm {network} {guest} {holder}`",
        if ports.start == ports.end { "port" } else { "ports" },
        if ports.start == ports.end { "is" } else { "are" }
    )]
    Conflict {
        /// The host ports both forwards would publish.
        ports: PortRange,
        proto: Proto,
        network: String,
        guest: String,
        /// The existing forward, in canonical form.
        holder: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> PortForward {
        spec.parse()
            .unwrap_or_else(|err| panic!("{spec:?} should parse: {err}"))
    }

    fn parse_err(spec: &str) -> PortError {
        match spec.parse::<PortForward>() {
            Ok(forward) => panic!("{spec:?} should be refused, parsed as {forward:?}"),
            Err(err) => err,
        }
    }

    /// Asserts that the error for `spec` contains every one of `parts`.
    fn assert_refused(spec: &str, parts: &[&str]) {
        let message = parse_err(spec).to_string();
        for part in parts {
            assert!(
                message.contains(part),
                "{spec:?}: {message:?} lacks {part:?}"
            );
        }
    }

    fn range(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    #[test]
    fn a_plain_pair_is_tcp_on_any_address() {
        assert_eq!(
            parse("8080:80"),
            PortForward {
                host_ip: None,
                host_ports: PortRange::single(8080),
                guest_ports: PortRange::single(80),
                proto: Proto::Tcp,
            }
        );
    }

    #[test]
    fn every_part_is_read() {
        assert_eq!(
            parse("10.0.0.5:8000-8010:9000-9010/udp"),
            PortForward {
                host_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                host_ports: range(8000, 8010),
                guest_ports: range(9000, 9010),
                proto: Proto::Udp,
            }
        );
    }

    #[test]
    fn protocols_are_tcp_or_udp_in_any_case() {
        assert_eq!(parse("53:53/udp").proto, Proto::Udp);
        assert_eq!(parse("53:53/UDP").proto, Proto::Udp);
        assert_eq!(parse("80:80/tcp").proto, Proto::Tcp);
        assert_eq!(parse("80:80/Tcp").proto, Proto::Tcp);
    }

    #[test]
    fn any_address_is_stored_as_none() {
        assert_eq!(parse("0.0.0.0:8080:80"), parse("8080:80"));
        assert_eq!(parse("0.0.0.0:8080:80").host_ip, None);
    }

    #[test]
    fn the_extreme_ports_are_allowed() {
        let forward = parse("1:65535");
        assert_eq!(forward.host_ports, PortRange::single(1));
        assert_eq!(forward.guest_ports, PortRange::single(65535));
        assert_eq!(parse("65535-65535:1-1").host_ports.len(), 1);
    }

    #[test]
    fn a_range_of_one_port_reads_as_that_port() {
        assert_eq!(parse("8000-8000:80-80"), parse("8000:80"));
    }

    #[test]
    fn canonical_specs_print_back_unchanged() {
        for spec in [
            "8080:80/tcp",
            "53:53/udp",
            "8000-8010:9000-9010/udp",
            "10.0.0.5:8080:80/tcp",
            "192.168.1.20:5000-5009:6000-6009/tcp",
            "1:65535/tcp",
        ] {
            assert_eq!(parse(spec).to_string(), spec);
        }
    }

    #[test]
    fn other_spellings_print_canonically() {
        for (spec, canonical) in [
            ("8080:80", "8080:80/tcp"),
            ("0.0.0.0:8080:80", "8080:80/tcp"),
            ("0.0.0.0:8000-8010:80-90/UDP", "8000-8010:80-90/udp"),
            ("8000-8000:80-80/tcp", "8000:80/tcp"),
        ] {
            assert_eq!(parse(spec).to_string(), canonical, "{spec:?}");
        }
    }

    #[test]
    fn printed_specs_parse_back_to_the_same_forward() {
        for spec in [
            "8080:80",
            "0.0.0.0:1-1024:1001-2024/udp",
            "10.1.2.3:22:2222",
        ] {
            let forward = parse(spec);
            assert_eq!(parse(&forward.to_string()), forward, "{spec:?}");
        }
    }

    #[test]
    fn forwards_survive_a_json_round_trip() {
        let forward = parse("10.0.0.5:8000-8010:9000-9010/udp");
        let json = serde_json::to_value(&forward).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "host_ip": "10.0.0.5",
                "host_ports": { "start": 8000, "end": 8010 },
                "guest_ports": { "start": 9000, "end": 9010 },
                "proto": "udp",
            })
        );
        assert_eq!(
            serde_json::from_value::<PortForward>(json).unwrap(),
            forward
        );
    }

    #[test]
    fn garbage_is_refused_with_the_syntax() {
        for spec in [
            "",
            ":",
            "::",
            "8080:",
            ":80",
            "a:b:c:d",
            "8080:80:",
            "1.2.3.4::80",
        ] {
            let message = parse_err(spec).to_string();
            assert!(
                message.contains("[HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp]"),
                "{spec:?}: {message}"
            );
        }
        assert_refused("8080:80:", &["bad port spec \"8080:80:\"", "e.g. 8080:80"]);
        assert_refused("a:b:c:d", &["bad port spec"]);
    }

    #[test]
    fn a_lone_port_asks_for_the_guest_port() {
        assert_eq!(
            parse_err("8080"),
            PortError::MissingGuestPort {
                spec: "8080".into()
            }
        );
        assert_refused("8080", &["has no guest port", "HOSTPORT:GUESTPORT"]);
    }

    #[test]
    fn ports_must_be_plain_numbers() {
        for (spec, side, text) in [
            ("http:80", "host", "http"),
            ("8080:http", "guest", "http"),
            ("+80:80", "host", "+80"),
            ("80:-80", "guest", ""),
            (" 80:80", "host", " 80"),
            ("80:80 ", "guest", "80 "),
            ("80-:80", "host", ""),
            ("8000-8010-8020:80", "host", "8010-8020"),
            ("80.5:80", "host", "80.5"),
        ] {
            assert_refused(
                spec,
                &[
                    &format!("bad {side} port {text:?}"),
                    "a port is a number from 1 to 65535",
                ],
            );
        }
    }

    #[test]
    fn ports_are_1_to_65535() {
        assert_refused(
            "0:80",
            &["host port 0 is out of range", "ports are 1-65535"],
        );
        assert_refused("80:0", &["guest port 0 is out of range"]);
        assert_refused("65536:80", &["host port 65536 is out of range"]);
        assert_refused(
            "80:99999999999999999999",
            &["guest port 99999999999999999999"],
        );
        assert_refused("0-10:0-10", &["host port 0 is out of range"]);
    }

    #[test]
    fn ranges_run_upwards() {
        assert_eq!(
            parse_err("8010-8000:80-90"),
            PortError::Backwards {
                side: Side::Host,
                start: 8010,
                end: 8000
            }
        );
        assert_refused(
            "8010-8000:80-90",
            &["host port range 8010-8000 is backwards", "8000-8010"],
        );
        assert_refused("80-90:90-80", &["guest port range 90-80 is backwards"]);
    }

    #[test]
    fn ranges_must_be_the_same_length() {
        assert_refused(
            "8000-8010:80-89",
            &[
                "host ports 8000-8010 (11 ports)",
                "guest ports 80-89 (10 ports)",
                "same length",
            ],
        );
        assert_refused(
            "8000-8001:80",
            &["(2 ports) and guest ports 80 (1 port) differ in length"],
        );
        assert_refused("8000:80-81", &["differ in length"]);
    }

    #[test]
    fn at_most_1024_ports_per_forward() {
        assert_eq!(parse("1-1024:1-1024").host_ports.len(), 1024);
        assert_refused(
            "1-1025:1-1025",
            &[
                "host ports 1-1025 are 1025 ports",
                "more than 1024",
                "split",
            ],
        );
        assert_refused("1-65535:1-65535", &["65535 ports"]);
    }

    #[test]
    fn host_addresses_must_be_ipv4() {
        for ip in [
            "localhost",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "a.b.c.d",
        ] {
            assert_refused(
                &format!("{ip}:80:80"),
                &[&format!("bad host address {ip:?}"), "IPv4 address A.B.C.D"],
            );
        }
    }

    #[test]
    fn ipv6_host_addresses_are_refused_as_such() {
        for spec in ["[::1]:80:80", "::1:80:80", "fe80::1:80:80/udp"] {
            assert_refused(spec, &["IPv6", "IPv4 only"]);
        }
    }

    #[test]
    fn loopback_cannot_be_forwarded() {
        for ip in ["127.0.0.1", "127.1.2.3"] {
            assert_refused(
                &format!("{ip}:8080:80"),
                &[
                    &format!("host address {ip} is loopback"),
                    "cannot be forwarded",
                    "leave HOSTIP out",
                    "host's own addresses",
                ],
            );
        }
    }

    #[test]
    fn multicast_and_broadcast_are_refused() {
        assert_refused(
            "224.0.0.1:80:80",
            &["host address 224.0.0.1 is multicast", "leave HOSTIP out"],
        );
        assert_refused("239.255.255.250:1900:1900/udp", &["is multicast"]);
        assert_refused(
            "255.255.255.255:80:80",
            &["host address 255.255.255.255 is broadcast"],
        );
    }

    #[test]
    fn unknown_protocols_are_refused() {
        for proto in ["sctp", "", "tcp/udp", "tcp "] {
            assert_refused(
                &format!("80:80/{proto}"),
                &[&format!("unknown protocol {proto:?}"), "/tcp or /udp"],
            );
        }
    }

    #[test]
    fn errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<PortError>();
    }

    #[test]
    fn ranges_expand_to_one_mapping_per_port() {
        let guest_ip = Ipv4Addr::new(172, 18, 0, 1);
        let mappings = parse("10.0.0.5:8000-8002:9000-9002/udp").mappings(3, guest_ip);
        let expected: Vec<PortMapping> = (0..3)
            .map(|i| PortMapping {
                proto: Proto::Udp,
                host_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                host_port: 8000 + i,
                zone: 3,
                guest_ip,
                guest_port: 9000 + i,
            })
            .collect();
        assert_eq!(mappings, expected);
    }

    #[test]
    fn a_single_port_is_one_mapping() {
        let guest_ip = Ipv4Addr::new(10, 20, 0, 9);
        assert_eq!(
            parse("8080:80").mappings(1, guest_ip),
            vec![PortMapping {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                zone: 1,
                guest_ip,
                guest_port: 80,
            }]
        );
    }

    #[test]
    fn the_largest_forward_expands_fully_up_to_65535() {
        let mappings = parse("64512-65535:1-1024").mappings(1, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(mappings.len(), 1024);
        assert_eq!(
            mappings.last().map(|m| (m.host_port, m.guest_port)),
            Some((65535, 1024))
        );
    }

    #[test]
    fn range_lengths_and_overlaps() {
        assert_eq!(range(80, 80).len(), 1);
        assert_eq!(range(1, 65535).len(), 65535);
        assert_eq!(range(90, 80).len(), 0);
        assert!(range(90, 80).is_empty());
        assert_eq!(range(80, 90).overlap(&range(85, 100)), Some(range(85, 90)));
        assert_eq!(range(85, 100).overlap(&range(80, 90)), Some(range(85, 90)));
        assert_eq!(range(80, 90).overlap(&range(90, 90)), Some(range(90, 90)));
        assert_eq!(range(80, 90).overlap(&range(82, 83)), Some(range(82, 83)));
        assert_eq!(range(80, 90).overlap(&range(91, 100)), None);
        assert_eq!(range(91, 100).overlap(&range(80, 90)), None);
    }

    /// (network, guest, forward) triples as `check_conflicts` wants them.
    fn held(
        entries: &[(&'static str, &'static str, &str)],
    ) -> Vec<(&'static str, &'static str, PortForward)> {
        entries
            .iter()
            .map(|(network, guest, spec)| (*network, *guest, parse(spec)))
            .collect()
    }

    fn check(
        new: &str,
        existing: &[(&'static str, &'static str, PortForward)],
    ) -> Result<(), PortError> {
        check_conflicts(&parse(new), existing.iter().map(|(n, g, f)| (*n, *g, f)))
    }

    #[test]
    fn nothing_published_means_no_conflict() {
        assert_eq!(check("8080:80", &[]), Ok(()));
    }

    #[test]
    fn the_same_host_port_conflicts_and_names_the_holder() {
        let existing = held(&[("web", "web1", "8080:80")]);
        let err = check("8080:8080", &existing).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host port 8080/tcp is already published by guest web1 in network web (8080:80/tcp): \
             pick another host port or remove that forward with `netd port rm web web1 8080:80/tcp`"
        );
        assert!(matches!(err, PortError::Conflict { .. }));
    }

    #[test]
    fn overlapping_ranges_conflict_on_the_shared_ports() {
        let existing = held(&[("db", "pg", "5000-5010:6000-6010/udp")]);
        let err = check("5005-5020:5005-5020/udp", &existing).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "host ports 5005-5010/udp are already published by guest pg in network db \
                 (5000-5010:6000-6010/udp)"
            ),
            "{err}"
        );
        assert!(check("4990-5000:4990-5000/udp", &existing).is_err());
        assert!(check("5010:80/udp", &existing).is_err());
        assert!(check("5003-5004:1-2/udp", &existing).is_err());
    }

    #[test]
    fn adjacent_ranges_do_not_conflict() {
        let existing = held(&[("db", "pg", "5000-5010:6000-6010")]);
        assert_eq!(check("4990-4999:4990-4999", &existing), Ok(()));
        assert_eq!(check("5011-5020:5011-5020", &existing), Ok(()));
    }

    #[test]
    fn guest_ports_do_not_matter() {
        let existing = held(&[("web", "web1", "8080:80")]);
        assert_eq!(check("8081:80", &existing), Ok(()));
    }

    #[test]
    fn different_protocols_do_not_conflict() {
        let existing = held(&[("dns", "ns1", "53:53/udp")]);
        assert_eq!(check("53:53/tcp", &existing), Ok(()));
        let existing = held(&[("dns", "ns1", "53:53/tcp")]);
        assert_eq!(check("53:53/udp", &existing), Ok(()));
    }

    #[test]
    fn the_host_address_does_not_matter() {
        let any = held(&[("web", "web1", "8080:80")]);
        let one = held(&[("web", "web1", "10.0.0.5:8080:80")]);
        assert!(check("10.0.0.5:8080:80", &any).is_err());
        assert!(check("8080:80", &one).is_err());
        assert!(check("0.0.0.0:8080:80", &one).is_err());
        assert!(check("10.0.0.6:8080:80", &one).is_err());
        let err = check("10.0.0.6:8080:80", &one).unwrap_err().to_string();
        assert!(
            err.contains("(10.0.0.5:8080:80/tcp)")
                && err.contains("`netd port rm web web1 10.0.0.5:8080:80/tcp`"),
            "{err}"
        );
    }

    #[test]
    fn the_first_holder_found_is_named() {
        let existing = held(&[
            ("a", "g1", "53:53/udp"),
            ("b", "g2", "8000-8100:8000-8100"),
            ("c", "g3", "8050:80"),
        ]);
        let err = check("8050:8050", &existing).unwrap_err();
        assert!(
            matches!(&err, PortError::Conflict { network, guest, .. } if network == "b" && guest == "g2"),
            "{err:?}"
        );
    }
}
