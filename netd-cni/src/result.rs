//! The result of ADD (what CHECK and DEL get back as `prevResult`), as the
//! spec writes it: interfaces, ips, routes and dns. Pure.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

type Extra = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Result {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    /// What earlier plugins of a chain put there that this one does not
    /// know: passed on untouched.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The container's namespace; empty for an interface on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR: `172.18.0.1/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// What netd built for one attachment, as the result reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub ifname: String,
    pub mac: [u8; 6],
    pub sandbox: String,
    pub address: Ipv4Network,
    /// The network's bridge: the guest's default gateway, and its
    /// resolver.
    pub gateway: Ipv4Addr,
    /// The netd network: the resolver's search domain (`GUEST.NETWORK`).
    pub network: String,
    /// The network's `--mtu`, if it has one.
    pub mtu: Option<u32>,
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// ADD's result: `prev` (an earlier plugin's, when chained) with this
/// attachment's interface, address and default route appended; where
/// `prev` has no `dns`, the configuration's, else the network's own
/// resolver (the bridge address, the network's name as search domain).
pub fn add_result(
    version: &str,
    prev: Option<Result>,
    attached: &Attached,
    dns: Option<Dns>,
) -> Result {
    let mut result = prev.unwrap_or_default();
    result.cni_version = version.to_owned();
    let index = result.interfaces.len();
    result.interfaces.push(Interface {
        name: attached.ifname.clone(),
        mac: format_mac(attached.mac),
        mtu: attached.mtu,
        sandbox: attached.sandbox.clone(),
        extra: Extra::new(),
    });
    let gateway = attached.gateway.to_string();
    result.ips.push(IpConfig {
        address: attached.address.to_string(),
        gateway: Some(gateway.clone()),
        interface: Some(index),
    });
    result.routes.push(Route {
        dst: "0.0.0.0/0".to_owned(),
        gw: Some(gateway),
        extra: Extra::new(),
    });
    if result.dns.is_empty() {
        result.dns = dns
            .filter(|dns| !dns.is_empty())
            .unwrap_or_else(|| network_resolver(attached));
    }
    result
}

/// The network's resolver as a result's `dns`.
fn network_resolver(attached: &Attached) -> Dns {
    Dns {
        nameservers: vec![attached.gateway.to_string()],
        search: vec![attached.network.clone()],
        ..Dns::default()
    }
}

/// What CHECK finds against a `prevResult`: the attachment's interface and
/// address must be in it, with the MAC the kernel has.
pub fn check_against(prev: &Result, attached: &Attached) -> std::result::Result<(), String> {
    let Some((index, iface)) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == attached.ifname && i.sandbox == attached.sandbox)
    else {
        return Err(format!(
            "prevResult has no interface {} in {}",
            attached.ifname, attached.sandbox
        ));
    };
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&format_mac(attached.mac)) {
        return Err(format!(
            "{} has MAC {} in the kernel, prevResult says {}",
            attached.ifname,
            format_mac(attached.mac),
            iface.mac
        ));
    }
    let address = attached.address.to_string();
    if !prev
        .ips
        .iter()
        .any(|ip| ip.address == address && ip.interface.is_none_or(|i| i == index))
    {
        return Err(format!(
            "prevResult does not give {} address {address}",
            attached.ifname
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached() -> Attached {
        Attached {
            ifname: "eth0".into(),
            mac: [0x02, 0, 0, 0, 0, 0x0a],
            sandbox: "/run/netns/ctr".into(),
            address: "172.18.0.1/24".parse().unwrap(),
            gateway: Ipv4Addr::new(172, 18, 0, 254),
            network: "web".into(),
            mtu: None,
        }
    }

    #[test]
    fn a_networks_mtu_is_the_interfaces() {
        let attached = Attached {
            mtu: Some(1400),
            ..attached()
        };
        let result = add_result("1.1.0", None, &attached, None);
        assert_eq!(
            serde_json::to_value(&result).unwrap()["interfaces"][0]["mtu"],
            1400
        );
    }

    #[test]
    fn without_dns_of_its_own_a_result_names_the_networks_resolver() {
        for conf_dns in [None, Some(Dns::default())] {
            let result = add_result("1.1.0", None, &attached(), conf_dns);
            assert_eq!(
                serde_json::to_value(&result.dns).unwrap(),
                serde_json::json!({"nameservers": ["172.18.0.254"], "search": ["web"]})
            );
        }
    }

    #[test]
    fn the_first_plugin_reports_interface_address_route_and_dns() {
        let dns = Dns {
            nameservers: vec!["203.0.113.53".into()],
            ..Dns::default()
        };
        let result = add_result("1.1.0", None, &attached(), Some(dns));
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:0a", "sandbox": "/run/netns/ctr"}],
                "ips": [{"address": "172.18.0.1/24", "gateway": "172.18.0.254", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "172.18.0.254"}],
                "dns": {"nameservers": ["203.0.113.53"]}
            })
        );
    }

    #[test]
    fn a_chained_result_keeps_what_came_before() {
        let prev: Result = serde_json::from_value(serde_json::json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "lo", "sandbox": "/run/netns/ctr", "pciID": "x"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"domain": "example.test"},
            "custom": {"kept": true}
        }))
        .unwrap();
        let result = add_result("1.0.0", Some(prev), &attached(), Some(Dns::default()));
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(json["interfaces"][0]["pciID"], "x");
        assert_eq!(json["interfaces"][1]["name"], "eth0");
        assert_eq!(json["ips"][1]["interface"], 1);
        assert_eq!(json["dns"]["domain"], "example.test");
        assert_eq!(json["custom"]["kept"], true);
    }

    #[test]
    fn check_finds_a_prev_result_that_does_not_match() {
        let good = add_result("1.1.0", None, &attached(), None);
        assert_eq!(check_against(&good, &attached()), Ok(()));
        let mut other_mac = attached();
        other_mac.mac[5] = 0x0b;
        assert!(
            check_against(&good, &other_mac)
                .unwrap_err()
                .contains("MAC 02:00:00:00:00:0b")
        );
        let mut other_ip = attached();
        other_ip.address = "172.18.0.2/24".parse().unwrap();
        assert!(
            check_against(&good, &other_ip)
                .unwrap_err()
                .contains("address 172.18.0.2/24")
        );
        let empty = Result::default();
        assert!(
            check_against(&empty, &attached())
                .unwrap_err()
                .contains("no interface eth0")
        );
    }
}
