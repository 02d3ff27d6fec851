//! The declarative network resource (`PUT /v1/networks/NAME`, zos's
//! `ApplyNetResource`): the whole desired network in one body, and the
//! pure diff from what netd holds to the steps that make it so. Applying
//! the same resource twice plans nothing; a changed one plans the guests
//! and ports to add and remove; a changed immutable field is refused,
//! naming it. No side effects here: the service runs the steps.

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::ports::PortForward;

/// The whole desired network.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkResource {
    /// A CIDR, `auto`, or None: the default subnet (as `network create`).
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub internal: bool,
    /// None: the default MTU, and not compared with an existing network's.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub span: bool,
    /// An exit node (`--exit`): not built yet, refused.
    #[serde(default)]
    pub exit: Option<String>,
    #[serde(default)]
    pub guests: Vec<ResourceGuest>,
    #[serde(default)]
    pub ports: Vec<ResourcePort>,
}

/// A guest of the resource: None fields are netd's to choose.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceGuest {
    pub name: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// A published port of the resource: `spec` as `netd port add` takes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourcePort {
    pub guest: String,
    pub spec: String,
}

/// What netd holds of the network now, as the diff needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub subnet: Ipv4Network,
    pub routable: bool,
    pub internal: bool,
    pub mtu: Option<u32>,
    pub span: bool,
    /// This node's guests: name -> (address, MAC), as text.
    pub guests: BTreeMap<String, (String, String)>,
    /// Their published ports: (guest, canonical spec).
    pub ports: BTreeSet<(String, String)>,
}

/// One step of a plan, in the order the plan gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateNetwork,
    RemovePort { guest: String, spec: String },
    RemoveGuest { guest: String },
    AddGuest(ResourceGuest),
    AddPort { guest: String, spec: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateNetwork => write!(f, "network created"),
            Step::RemovePort { guest, spec } => write!(f, "port {spec} of {guest} withdrawn"),
            Step::RemoveGuest { guest } => write!(f, "guest {guest} removed"),
            Step::AddGuest(guest) => write!(f, "guest {} added", guest.name),
            Step::AddPort { guest, spec } => write!(f, "port {spec} of {guest} published"),
        }
    }
}

/// The steps that make `current` (None: no such network) what `desired`
/// says; empty when it already is. `default_subnet` is what a resource
/// without a subnet means. An error names what is wrong and the fix.
pub fn plan(
    desired: &NetworkResource,
    current: Option<&Current>,
    default_subnet: Ipv4Network,
) -> Result<Vec<Step>, String> {
    if let Some(exit) = &desired.exit {
        return Err(format!(
            "\"exit\": {exit:?}: exit points are not built yet: leave \"exit\" out (outside \
             traffic leaves through each guest's own node)"
        ));
    }
    let mut names = BTreeSet::new();
    for guest in &desired.guests {
        if !names.insert(guest.name.as_str()) {
            return Err(format!(
                "guest {:?} is listed twice in \"guests\": list each guest once",
                guest.name
            ));
        }
    }
    let mut ports = BTreeSet::new();
    for port in &desired.ports {
        if !names.contains(port.guest.as_str()) {
            return Err(format!(
                "port {:?} is for guest {:?}, which is not in \"guests\": add the guest or \
                 remove the port",
                port.spec, port.guest
            ));
        }
        let canonical = port
            .spec
            .parse::<PortForward>()
            .map_err(|err| format!("port {:?} of guest {:?}: {err}", port.spec, port.guest))?
            .to_string();
        ports.insert((port.guest.clone(), canonical));
    }
    let Some(current) = current else {
        let mut steps = vec![Step::CreateNetwork];
        steps.extend(desired.guests.iter().cloned().map(Step::AddGuest));
        steps.extend(
            ports
                .into_iter()
                .map(|(guest, spec)| Step::AddPort { guest, spec }),
        );
        return Ok(steps);
    };
    check_immutable(desired, current, default_subnet)?;

    // A guest whose address or MAC the resource changes is made again.
    let replaced: BTreeSet<&str> = desired
        .guests
        .iter()
        .filter(|guest| {
            current.guests.get(&guest.name).is_some_and(|(ip, mac)| {
                guest.ip.as_ref().is_some_and(|want| want != ip)
                    || guest
                        .mac
                        .as_ref()
                        .is_some_and(|want| !want.eq_ignore_ascii_case(mac))
            })
        })
        .map(|guest| guest.name.as_str())
        .collect();
    let gone: BTreeSet<&str> = current
        .guests
        .keys()
        .map(String::as_str)
        .filter(|name| !names.contains(name) || replaced.contains(name))
        .collect();
    let mut steps = Vec::new();
    for (guest, spec) in current.ports.difference(&ports) {
        if !gone.contains(guest.as_str()) {
            steps.push(Step::RemovePort {
                guest: guest.clone(),
                spec: spec.clone(),
            });
        }
    }
    steps.extend(gone.iter().map(|guest| Step::RemoveGuest {
        guest: (*guest).to_owned(),
    }));
    steps.extend(
        desired
            .guests
            .iter()
            .filter(|guest| {
                !current.guests.contains_key(&guest.name) || replaced.contains(guest.name.as_str())
            })
            .cloned()
            .map(Step::AddGuest),
    );
    for (guest, spec) in ports {
        let there = current.ports.contains(&(guest.clone(), spec.clone()));
        if !there || gone.contains(guest.as_str()) {
            steps.push(Step::AddPort { guest, spec });
        }
    }
    Ok(steps)
}

/// A field that cannot change on an existing network, named.
fn check_immutable(
    desired: &NetworkResource,
    current: &Current,
    default_subnet: Ipv4Network,
) -> Result<(), String> {
    let refuse = |field: &str, now: String, asked: String| {
        Err(format!(
            "\"{field}\" cannot change on an existing network: it is {now}, the resource asks \
             {asked}; DELETE /v1/networks/NAME first to change it"
        ))
    };
    match desired.subnet.as_deref() {
        Some("auto") if !current.routable => {
            return refuse("subnet", current.subnet.to_string(), "auto".to_owned());
        }
        Some("auto") => {}
        Some(cidr) => {
            let asked: Ipv4Network = cidr
                .parse()
                .map_err(|err| format!("\"subnet\": {cidr:?} is no CIDR: {err}"))?;
            if asked != current.subnet {
                return refuse("subnet", current.subnet.to_string(), asked.to_string());
            }
        }
        None if current.subnet != default_subnet || current.routable => {
            return refuse(
                "subnet",
                current.subnet.to_string(),
                format!("the default {default_subnet}"),
            );
        }
        None => {}
    }
    if desired.internal != current.internal {
        return refuse(
            "internal",
            current.internal.to_string(),
            desired.internal.to_string(),
        );
    }
    if desired.span != current.span {
        return refuse("span", current.span.to_string(), desired.span.to_string());
    }
    if let Some(mtu) = desired.mtu
        && current.mtu != Some(mtu)
    {
        return refuse(
            "mtu",
            current
                .mtu
                .map_or("the default".to_owned(), |m| m.to_string()),
            mtu.to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_subnet() -> Ipv4Network {
        "172.18.0.0/24".parse().unwrap()
    }

    fn guest(name: &str) -> ResourceGuest {
        ResourceGuest {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    fn resource() -> NetworkResource {
        NetworkResource {
            guests: vec![guest("a"), guest("b")],
            ports: vec![ResourcePort {
                guest: "a".into(),
                spec: "8080:80".into(),
            }],
            ..Default::default()
        }
    }

    fn current() -> Current {
        Current {
            subnet: default_subnet(),
            routable: false,
            internal: false,
            mtu: None,
            span: false,
            guests: [
                (
                    "a".to_owned(),
                    ("172.18.0.1".into(), "02:00:00:00:00:01".into()),
                ),
                (
                    "b".to_owned(),
                    ("172.18.0.2".into(), "02:00:00:00:00:02".into()),
                ),
            ]
            .into(),
            ports: [("a".to_owned(), "8080:80/tcp".to_owned())].into(),
        }
    }

    #[test]
    fn a_new_network_is_created_with_its_guests_then_its_ports() {
        let steps = plan(&resource(), None, default_subnet()).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::CreateNetwork,
                Step::AddGuest(guest("a")),
                Step::AddGuest(guest("b")),
                Step::AddPort {
                    guest: "a".into(),
                    spec: "8080:80/tcp".into()
                },
            ]
        );
    }

    #[test]
    fn the_same_resource_again_plans_nothing() {
        assert_eq!(
            plan(&resource(), Some(&current()), default_subnet()),
            Ok(vec![])
        );
        // Addresses and MACs as netd chose them are the same resource too.
        let mut pinned = resource();
        pinned.guests[0].ip = Some("172.18.0.1".into());
        pinned.guests[0].mac = Some("02:00:00:00:00:01".to_uppercase());
        assert_eq!(
            plan(&pinned, Some(&current()), default_subnet()),
            Ok(vec![])
        );
    }

    #[test]
    fn guests_and_ports_are_reconciled_removals_first() {
        let mut desired = resource();
        desired.guests = vec![guest("a"), guest("c")];
        desired.ports = vec![ResourcePort {
            guest: "a".into(),
            spec: "9090:90/udp".into(),
        }];
        let steps = plan(&desired, Some(&current()), default_subnet()).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::RemovePort {
                    guest: "a".into(),
                    spec: "8080:80/tcp".into()
                },
                Step::RemoveGuest { guest: "b".into() },
                Step::AddGuest(guest("c")),
                Step::AddPort {
                    guest: "a".into(),
                    spec: "9090:90/udp".into()
                },
            ]
        );
    }

    #[test]
    fn a_guest_given_another_address_is_made_again_with_its_ports() {
        let mut desired = resource();
        desired.guests[0].ip = Some("172.18.0.9".into());
        let steps = plan(&desired, Some(&current()), default_subnet()).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::RemoveGuest { guest: "a".into() },
                Step::AddGuest(desired.guests[0].clone()),
                Step::AddPort {
                    guest: "a".into(),
                    spec: "8080:80/tcp".into()
                },
            ]
        );
    }

    #[test]
    fn an_immutable_field_changed_is_refused_naming_it() {
        for (field, change) in [
            (
                "subnet",
                (|r: &mut NetworkResource| r.subnet = Some("10.9.0.0/24".into()))
                    as fn(&mut NetworkResource),
            ),
            ("internal", |r| r.internal = true),
            ("span", |r| r.span = true),
            ("mtu", |r| r.mtu = Some(1400)),
            ("subnet", |r| r.subnet = Some("auto".into())),
        ] {
            let mut desired = resource();
            change(&mut desired);
            let err = plan(&desired, Some(&current()), default_subnet()).unwrap_err();
            assert!(
                err.starts_with(&format!("\"{field}\" cannot change")),
                "{err}"
            );
            assert!(err.contains("DELETE /v1/networks/NAME"), "{err}");
        }
    }

    #[test]
    fn bad_resources_are_refused_naming_the_problem() {
        let mut twice = resource();
        twice.guests.push(guest("a"));
        assert!(
            plan(&twice, None, default_subnet())
                .unwrap_err()
                .contains("listed twice")
        );
        let mut stray = resource();
        stray.ports[0].guest = "zz".into();
        assert!(
            plan(&stray, None, default_subnet())
                .unwrap_err()
                .contains("not in \"guests\"")
        );
        let mut bad = resource();
        bad.ports[0].spec = "80:nope".into();
        assert!(
            plan(&bad, None, default_subnet())
                .unwrap_err()
                .contains("80:nope")
        );
        let mut exit = resource();
        exit.exit = Some("node1".into());
        assert!(
            plan(&exit, None, default_subnet())
                .unwrap_err()
                .contains("not built yet")
        );
        let unknown = serde_json::from_str::<NetworkResource>(r#"{"guestz": []}"#).unwrap_err();
        assert!(unknown.to_string().contains("guestz"), "{unknown}");
    }
}
