//! The eBPF host side, user space: `netd_host_link` on the host's end of the
//! host link, `netd_host_world` on every other device of the host (TCX, so
//! other programs attached there keep running), the host's addresses in the
//! map, and the source ports it uses reserved from the host's own sockets.
//!
//! Devices come and go (hotplug, a VPN coming up) and addresses change (a
//! DHCP renew): [`HostPrograms::follow`] runs at start and on every repair tick
//! and follows them. A program detached behind netd's back is drift.

use std::{collections::BTreeSet, fs, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TcAttachType};

use crate::{config::PortSpan, netns::Netns};

/// Where the kernel keeps the ports its own sockets must not be given; per
/// network namespace, for the namespace of the thread that opens it.
const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
/// The host's own ephemeral port range, for the same namespace.
const EPHEMERAL_PORTS: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Linux's default `ip_local_port_range`.
const DEFAULT_EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

/// The link pin of the host link's program.
pub const HOST_LINK_PIN: &str = "host-link";
/// Link pins of the world programs: this, then the device's name.
pub const HOST_WORLD_PINS: &str = "host-world@";

/// The host as the host side sees it.
pub struct HostPrograms {
    /// The namespace the daemon runs in.
    pub netns: Netns,
    /// The host's end of the host link.
    pub host_link: String,
    pub ports: PortSpan,
}

impl HostPrograms {
    pub fn new(host_link: &str, ports: PortSpan) -> Result<HostPrograms> {
        Ok(HostPrograms {
            netns: Netns::open_path("host", Path::new("/proc/self/ns/net"))?,
            host_link: host_link.to_owned(),
            ports,
        })
    }

    /// The devices that get the world program: all but loopback and the
    /// host link.
    pub fn world_devices(&self) -> Result<Vec<String>> {
        let names = self.netns.run_in(|| -> Result<Vec<String>> {
            Ok(nix::net::if_::if_nameindex()
                .context("listing the host's devices")?
                .iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect())
        })??;
        Ok(names
            .into_iter()
            .filter(|name| name != "lo" && *name != self.host_link)
            .collect())
    }

    /// Every IPv4 address of the host but loopback.
    pub fn addresses(&self) -> Result<Vec<Ipv4Addr>> {
        self.netns.run_in(|| -> Result<Vec<Ipv4Addr>> {
            let mut addrs: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
                .context("reading the host's addresses")?
                .filter_map(|ifa| {
                    ifa.address?
                        .as_sockaddr_in()
                        .map(|sin| sin.ip())
                        .filter(|ip| !ip.is_loopback())
                })
                .collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        })?
    }

    /// Whether `program` is attached to `device`'s ingress (by name: the
    /// kernel keeps the first 15 bytes).
    pub fn has_program(&self, device: &str, program: &str) -> bool {
        ingress_programs(&self.netns, device)
            .iter()
            .any(|name| program.starts_with(name.as_str()))
    }

    /// The host's own ephemeral port range (`ip_local_port_range`); the
    /// kernel's default if it cannot be read.
    pub fn ephemeral_ports(&self) -> (u16, u16) {
        self.netns
            .run_in(|| fs::read_to_string(EPHEMERAL_PORTS))
            .ok()
            .and_then(|read| read.ok())
            .and_then(|text| parse_port_range(&text))
            .unwrap_or(DEFAULT_EPHEMERAL_PORTS)
    }

    /// Reserves the host side's ports from the host's own sockets, keeping
    /// whatever else is reserved. Returns whether it changed anything.
    pub fn reserve_ports(&self) -> Result<bool> {
        let wanted = self.ports.to_string();
        let ports = self.ports;
        self.netns.run_in(move || -> Result<bool> {
            let ephemeral = fs::read_to_string(EPHEMERAL_PORTS)
                .with_context(|| format!("reading {EPHEMERAL_PORTS}"))?;
            if let Some((low, high)) = parse_port_range(&ephemeral)
                && ports.min <= low
                && ports.max >= high
            {
                anyhow::bail!(
                    "host_nat_ports {ports} would leave the host no ephemeral port of its own \
                     (net.ipv4.ip_local_port_range is {low}-{high}): set host_nat_ports in \
                     netd.toml to a range that leaves part of it free, e.g. the default 40000-65535"
                );
            }
            let current = fs::read_to_string(RESERVED_PORTS)
                .with_context(|| format!("reading {RESERVED_PORTS}"))?;
            let reserved = parse_reserved(&current);
            if (ports.min..=ports.max).all(|p| reserved.iter().any(|(a, b)| (*a..=*b).contains(&p)))
            {
                return Ok(false);
            }
            let mut list: Vec<String> = current
                .trim()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            list.push(wanted);
            fs::write(RESERVED_PORTS, list.join(","))
                .with_context(|| format!("writing {RESERVED_PORTS}"))?;
            Ok(true)
        })?
    }

    /// Gives the reserved ports back (at cleanup): exactly the range netd
    /// added, if the kernel still lists it as one entry.
    pub fn release_ports(&self) -> Result<()> {
        let ours = self.ports;
        self.netns.run_in(move || -> Result<()> {
            let current = fs::read_to_string(RESERVED_PORTS)?;
            let kept: Vec<&str> = current
                .trim()
                .split(',')
                .filter(|s| !s.is_empty() && parse_reserved(s) != vec![(ours.min, ours.max)])
                .collect();
            // A newline, not an empty write: the kernel ignores writes of
            // no bytes, and an empty list must clear the reservation.
            fs::write(RESERVED_PORTS, format!("{}\n", kept.join(",")))?;
            Ok(())
        })?
    }
}

/// The names of the programs attached through TCX to `device`'s ingress
/// in `netns` (empty if there is no such device).
pub fn ingress_programs(netns: &Netns, device: &str) -> Vec<String> {
    let device = device.to_owned();
    netns
        .run_in(move || {
            SchedClassifier::query_tcx(&device, TcAttachType::Ingress)
                .map(|(_, programs)| {
                    programs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// `ip_local_reserved_ports` as ranges: "8080,61000-65535".
pub fn parse_reserved(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => part.parse().ok().map(|p| (p, p)),
            }
        })
        .collect()
}

/// `ip_local_port_range`: "32768\t60999".
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The world pins that name devices not in `devices`.
pub fn stale_world_pins(pins: &[String], devices: &BTreeSet<String>) -> Vec<String> {
    let wanted: BTreeSet<String> = devices.iter().map(|d| world_pin(d)).collect();
    pins.iter()
        .filter(|pin| pin.starts_with(HOST_WORLD_PINS) && !wanted.contains(*pin))
        .cloned()
        .collect()
}

/// The names of the link pins in `dir`.
pub fn link_pins(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pin of the world program on `device`. bpffs refuses '.', which
/// device names may hold (`eth0.100`): it becomes '@'.
pub fn world_pin(device: &str) -> String {
    format!("{HOST_WORLD_PINS}{}", device.replace('.', "@"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_parse_single_ports_and_ranges() {
        assert_eq!(
            parse_reserved("8080,61000-65535\n"),
            vec![(8080, 8080), (61000, 65535)]
        );
        assert_eq!(parse_reserved("\n"), vec![]);
    }

    #[test]
    fn the_ephemeral_range_parses() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("junk"), None);
    }

    #[test]
    fn pins_of_devices_that_went_are_stale() {
        let pins = vec![
            world_pin("eth0"),
            world_pin("wlan0"),
            HOST_LINK_PIN.to_owned(),
            "gw-host".to_owned(),
        ];
        let devices = BTreeSet::from(["eth0".to_owned()]);
        assert_eq!(stale_world_pins(&pins, &devices), vec![world_pin("wlan0")]);
    }

    #[test]
    fn dotted_device_names_make_valid_pins() {
        assert_eq!(world_pin("eth0.100"), "host-world@eth0@100");
    }
}
