//! The commands' effects: requests to the netd daemon, and a look into the
//! container's namespace (its MAC for the result, its interface for CHECK).

use std::{net::Ipv4Addr, os::unix::net::UnixStream, path::Path};

use ipnetwork::Ipv4Network;
use netd::{
    client::{Client, segment},
    daemon::requests::{AddGuest, AddPort, GuestView, NetworkView, PortView},
    netns::Netns,
};

use crate::{
    attachment::{self, guest_name},
    conf::{Env, GUEST_IFNAME, NetConf},
    error::{CniError, CniResult, code},
    result::{self, Attached, Result as CniOutput},
};

/// The daemon named by the configuration, known to answer.
struct Daemon {
    client: Client,
    socket: std::path::PathBuf,
}

impl Daemon {
    /// Connects once to see that the daemon is there: `unavailable` is the
    /// error code if it is not (11, try again later; 50 for STATUS).
    fn reach(conf: &NetConf, unavailable: u32) -> CniResult<Daemon> {
        let socket = conf.socket();
        UnixStream::connect(&socket).map_err(|err| {
            CniError::new(
                unavailable,
                format!(
                    "the netd daemon is not answering at {} ({err}): start it (`systemctl start netd`), or name its socket in the network configuration's \"socket\"",
                    socket.display()
                ),
            )
        })?;
        Ok(Daemon {
            client: Client::new(&socket),
            socket,
        })
    }

    fn refused(&self, what: &str, err: anyhow::Error) -> CniError {
        CniError::new(code::DAEMON_REFUSED, format!("{what}: {err:#}"))
            .with_details(format!("netd daemon at {}", self.socket.display()))
    }

    /// The netd network, or None if the daemon has none of that name.
    fn network(&self, name: &str) -> CniResult<Option<NetworkView>> {
        let networks: Vec<NetworkView> = self
            .client
            .get("/v1/networks")
            .map_err(|err| self.refused("listing networks", err))?;
        Ok(networks.into_iter().find(|n| n.name == name))
    }

    fn remove_guest(&self, network: &str, guest: &str) -> CniResult<()> {
        self.client
            .delete(&format!(
                "/v1/networks/{}/guests/{}",
                segment(network),
                segment(guest)
            ))
            .map_err(|err| self.refused(&format!("removing guest {network}/{guest}"), err))
    }
}

fn no_network(name: &str, code: u32) -> CniError {
    CniError::new(
        code,
        format!(
            "netd has no network {name:?}: create it (`netd network create {name}`), or name another in the network configuration's \"network\""
        ),
    )
}

/// ADD: a guest in the runtime's namespace, the ports it asks for, and the
/// result. All or nothing: a port that cannot be published removes the
/// guest again.
pub fn add(env: &Env, conf: &NetConf) -> CniResult<CniOutput> {
    let (container_id, ifname, netns) = (env.container_id()?, env.ifname()?, env.netns()?);
    check_ifname(ifname)?;
    let ip = conf.requested_ip(env)?;
    let specs = conf
        .runtime_config
        .port_mappings
        .iter()
        .map(|m| m.netd_spec())
        .collect::<CniResult<Vec<_>>>()?;
    let daemon = Daemon::reach(conf, code::TRY_AGAIN_LATER)?;
    let network_name = conf.netd_network();
    let network = daemon
        .network(network_name)?
        .ok_or_else(|| no_network(network_name, code::INVALID_CONFIG))?;
    let name = guest_name(container_id, ifname);
    let guests_path = format!("/v1/networks/{}/guests", segment(network_name));
    let request = AddGuest {
        name: name.clone(),
        ip: ip.map(|ip| ip.to_string()),
        netns: Some(netns.to_path_buf()),
        labels: attachment::labels(container_id, ifname, &conf.name),
        mac: None,
    };
    let guest: GuestView = daemon.client.post(&guests_path, &request).map_err(|err| {
        daemon.refused(
            &format!("adding container {container_id} to netd network {network_name}"),
            err,
        )
    })?;
    let undo = |err: CniError| {
        let _ = daemon.remove_guest(network_name, &name);
        err
    };
    for spec in &specs {
        let path = format!(
            "/v1/networks/{}/guests/{}/ports",
            segment(network_name),
            segment(&name)
        );
        let published: Result<PortView, _> =
            daemon.client.post(&path, &AddPort { spec: spec.clone() });
        if let Err(err) = published {
            return Err(undo(
                daemon.refused(&format!("publishing port {spec}"), err),
            ));
        }
    }
    let attached = observe_attached(&guest, &network, ifname, netns).map_err(undo)?;
    Ok(result::add_result(
        &conf.cni_version,
        conf.prev_result.clone(),
        &attached,
        conf.dns.clone(),
    ))
}

fn check_ifname(ifname: &str) -> CniResult<()> {
    if ifname == GUEST_IFNAME {
        return Ok(());
    }
    Err(CniError::new(
        code::INVALID_ENV,
        format!(
            "CNI_IFNAME={ifname}: netd gives a container one interface, {GUEST_IFNAME}: ask for {GUEST_IFNAME} (one netd network per container)"
        ),
    ))
}

/// What the kernel has for the attachment: the guest's address and the MAC
/// of its interface in the container's namespace.
fn observe_attached(
    guest: &GuestView,
    network: &NetworkView,
    ifname: &str,
    netns: &Path,
) -> CniResult<Attached> {
    let address: Ipv4Network = guest.ip.parse().map_err(|_| {
        CniError::new(
            code::DECODE,
            format!(
                "the daemon gave guest {} address {:?}, not a CIDR",
                guest.name, guest.ip
            ),
        )
    })?;
    let gateway: Ipv4Addr = network.bridge_ip.parse().map_err(|_| {
        CniError::new(
            code::DECODE,
            format!(
                "the daemon gave network {} bridge address {:?}",
                network.name, network.bridge_ip
            ),
        )
    })?;
    let ns = Netns::open_path(&guest.name, netns).map_err(|err| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("{err:#}: the container's network namespace is gone"),
        )
    })?;
    let mac = ns
        .mac(ifname)
        .map_err(|err| CniError::new(code::IO, format!("{err:#}")))?;
    Ok(Attached {
        ifname: ifname.to_owned(),
        mac,
        sandbox: netns.display().to_string(),
        address,
        gateway,
        network: network.name.clone(),
        mtu: network.mtu,
    })
}

/// DEL: removes the attachment's guest (and with it its published ports).
/// An attachment already gone, or a network that no longer exists, is
/// success.
pub fn del(env: &Env, conf: &NetConf) -> CniResult<()> {
    let (container_id, ifname) = (env.container_id()?, env.ifname()?);
    let daemon = Daemon::reach(conf, code::TRY_AGAIN_LATER)?;
    let network_name = conf.netd_network();
    let Some(network) = daemon.network(network_name)? else {
        return Ok(());
    };
    let name = guest_name(container_id, ifname);
    match network.guests.iter().find(|g| g.name == name) {
        Some(guest) if attachment::is_attachment(guest, container_id, ifname) => {
            daemon.remove_guest(network_name, &name)
        }
        Some(_) => {
            eprintln!(
                "netd-cni: guest {network_name}/{name} was not made by CNI for container {container_id}: left alone"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// CHECK: the attachment exists in netd, in the runtime's namespace, and
/// the kernel has its interface up with its address (and the MAC and
/// address `prevResult` reports); its ports are published.
pub fn check(env: &Env, conf: &NetConf) -> CniResult<()> {
    let (container_id, ifname, netns) = (env.container_id()?, env.ifname()?, env.netns()?);
    check_ifname(ifname)?;
    let daemon = Daemon::reach(conf, code::TRY_AGAIN_LATER)?;
    let network_name = conf.netd_network();
    let network = daemon
        .network(network_name)?
        .ok_or_else(|| no_network(network_name, code::ATTACHMENT_MISSING))?;
    let name = guest_name(container_id, ifname);
    let missing = || {
        CniError::new(
            code::ATTACHMENT_MISSING,
            format!(
                "netd network {network_name} has no attachment for container {container_id} {ifname} (guest {name}): it was removed; DEL and ADD the container again"
            ),
        )
    };
    let guest = network
        .guests
        .iter()
        .find(|g| g.name == name && attachment::is_attachment(g, container_id, ifname))
        .ok_or_else(missing)?;
    let differs = |what: String| {
        CniError::new(
            code::ATTACHMENT_DIFFERS,
            format!(
                "attachment {network_name}/{name} of container {container_id}: {what}; DEL and ADD the container again"
            ),
        )
    };
    if guest.netns != netns {
        return Err(differs(format!(
            "netd has it in namespace {}, the runtime says {}",
            guest.netns.display(),
            netns.display()
        )));
    }
    let attached =
        observe_attached(guest, &network, ifname, netns).map_err(|err| differs(err.msg))?;
    let (up, has_address) =
        interface_state(netns, ifname, attached.address.ip()).map_err(|err| differs(err.msg))?;
    if !up {
        return Err(differs(format!("{ifname} is down")));
    }
    if !has_address {
        return Err(differs(format!(
            "{ifname} lacks its address {}",
            attached.address
        )));
    }
    let ports: Vec<PortView> = daemon
        .client
        .get(&format!("/v1/networks/{}/ports", segment(network_name)))
        .map_err(|err| daemon.refused("listing ports", err))?;
    for mapping in &conf.runtime_config.port_mappings {
        let spec = mapping.netd_spec()?;
        if !ports.iter().any(|p| p.guest == name && p.spec == spec) {
            return Err(differs(format!("port {spec} is not published")));
        }
    }
    if let Some(prev) = &conf.prev_result {
        result::check_against(prev, &attached).map_err(differs)?;
    }
    Ok(())
}

/// Whether `ifname` in `netns` is up and has `ip`.
fn interface_state(netns: &Path, ifname: &str, ip: Ipv4Addr) -> CniResult<(bool, bool)> {
    let ns = Netns::open_path("container", netns)
        .map_err(|err| CniError::new(code::IO, format!("{err:#}")))?;
    let found = ns
        .run_in(|| -> Option<(bool, bool)> {
            let addrs: Vec<_> = nix::ifaddrs::getifaddrs()
                .ok()?
                .filter(|a| a.interface_name == ifname)
                .collect();
            let first = addrs.first()?;
            let up = first.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            let has = addrs.iter().any(|a| {
                a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .is_some_and(|sin| sin.ip() == ip)
            });
            Some((up, has))
        })
        .map_err(|err| CniError::new(code::IO, format!("{err:#}")))?;
    found.ok_or_else(|| {
        CniError::new(
            code::IO,
            format!("no interface {ifname} in {}", netns.display()),
        )
    })
}

/// GC: removes this configuration's attachments that the runtime no longer
/// has (`cni.dev/valid-attachments`). Guests netd users made by hand, and
/// other configurations' attachments, stay.
pub fn gc(conf: &NetConf) -> CniResult<()> {
    let valid = conf.valid_attachments.as_deref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "GC without \"cni.dev/valid-attachments\": the runtime must list the attachments it still has (an empty list removes all of this configuration's)",
        )
    })?;
    let daemon = Daemon::reach(conf, code::TRY_AGAIN_LATER)?;
    let network_name = conf.netd_network();
    let Some(network) = daemon.network(network_name)? else {
        return Ok(());
    };
    let failures: Vec<String> = attachment::stale(&network.guests, &conf.name, valid)
        .into_iter()
        .filter_map(|guest| daemon.remove_guest(network_name, &guest.name).err())
        .map(|err| err.msg)
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(code::DAEMON_REFUSED, failures.join("; ")))
    }
}

/// STATUS: the daemon answers and has the network.
pub fn status(conf: &NetConf) -> CniResult<()> {
    let daemon = Daemon::reach(conf, code::NOT_AVAILABLE)?;
    let name = conf.netd_network();
    daemon
        .network(name)?
        .map(|_| ())
        .ok_or_else(|| no_network(name, code::NOT_AVAILABLE))
}
