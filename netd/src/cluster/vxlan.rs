//! A node's VXLAN device for one spanned network, and its forwarding
//! entries. The device is created in the host namespace, so that its UDP
//! socket lives there on the underlay address, then moved into the
//! network's namespace and enslaved to its bridge: the guests' frames for
//! remote guests leave through it. Learning is off: every entry comes from
//! etcd (`fdb::desired`).

use std::{collections::BTreeSet, net::Ipv4Addr};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use rtnetlink::{
    LinkBridgePort, LinkVxlan,
    packet_core::{
        NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    },
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        link::InfoBridgePort,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
    },
};

use super::fdb::{FdbEntry, Neighbour};
use crate::{ifname::NETWORK_BRIDGE, mac::Mac, netlink::Netlink, netns::Netns};

/// The VXLAN device's name in a network's namespace (one per namespace).
pub const VXLAN_DEVICE: &str = "vxlan0";

/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;

/// What VXLAN adds to each frame on an IPv4 underlay: outer IPv4 (20), UDP
/// (8), VXLAN (8) and inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Makes sure `ns` (a spanned network's namespace) holds its VXLAN device
/// for `vni`, sending from `underlay`, on its bridge and up.
pub async fn ensure(ns: &Netns, vni: u32, underlay: Ipv4Addr, mtu: u32) -> Result<()> {
    let nl = Netlink::connect(Some(ns))?;
    if nl.link(VXLAN_DEVICE).await?.is_none() {
        // A name of the host namespace's own for the moment between create
        // and move: unique per VNI, and under 15 bytes.
        let temporary = format!("netdvx{vni:x}");
        let host = Netlink::connect(None)?;
        host.delete_link(&temporary).await?;
        host.handle()
            .link()
            .add(
                LinkVxlan::new(&temporary, vni)
                    .local(underlay)
                    .port(VXLAN_PORT)
                    .learning(false)
                    .build(),
            )
            .execute()
            .await
            .with_context(|| {
                format!("creating VXLAN device {temporary} (VNI {vni}) on {underlay}")
            })?;
        if let Err(err) = host.move_to(&temporary, ns, Some(VXLAN_DEVICE)).await {
            let _ = host.delete_link(&temporary).await;
            return Err(err);
        }
    }
    nl.set_mtu(VXLAN_DEVICE, mtu).await?;
    nl.set_controller(VXLAN_DEVICE, NETWORK_BRIDGE).await?;
    suppress_neighbours(&nl).await?;
    nl.set_up(VXLAN_DEVICE).await
}

/// `bridge link set dev vxlan0 neigh_suppress on`: an ARP request for an
/// address the bridge has a neighbour entry of, for a MAC behind the VXLAN
/// port, is answered by the bridge here and not flooded to the other
/// nodes; nor are requests for the bridge's own (the gateway's) address.
async fn suppress_neighbours(nl: &Netlink) -> Result<()> {
    let index = nl.index(VXLAN_DEVICE).await?;
    nl.handle()
        .link()
        .set_port(
            LinkBridgePort::new(index)
                .append_info_data(InfoBridgePort::NeighSupress(true))
                .build(),
        )
        .execute()
        .await
        .context("turning neighbour suppression on for the VXLAN bridge port")
}

/// Makes the network's remote guests' neighbour entries exactly `desired`:
/// a permanent neighbour (address -> MAC) on the bridge, and a static
/// bridge FDB entry of the MAC on the VXLAN port, which neighbour
/// suppression needs to answer for it. Entries the kernel learnt stay.
pub async fn sync_neighbours(ns: &Netns, desired: &BTreeSet<Neighbour>) -> Result<()> {
    let nl = Netlink::connect(Some(ns))?;
    let port = nl.index(VXLAN_DEVICE).await?;
    let bridge = nl.index(NETWORK_BRIDGE).await?;
    let wanted_macs: BTreeSet<Mac> = desired.iter().map(|n| n.mac).collect();
    let (present_macs, present_neighbours) = static_entries(&nl, port, bridge).await?;
    for neighbour in present_neighbours.difference(desired) {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.ifindex = bridge;
        message.header.state = NeighbourState::Permanent;
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                neighbour.ip,
            )));
        nl.handle()
            .neighbours()
            .del(message)
            .execute()
            .await
            .with_context(|| format!("removing neighbour {}", neighbour.ip))?;
    }
    for mac in present_macs.difference(&wanted_macs) {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = port;
        message.header.state = NeighbourState::Noarp;
        message.header.flags = NeighbourFlags::Controller;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        nl.handle()
            .neighbours()
            .del(message)
            .execute()
            .await
            .with_context(|| format!("removing bridge FDB entry {mac}"))?;
    }
    for mac in wanted_macs.difference(&present_macs) {
        nl.handle()
            .neighbours()
            .add_bridge(port, &mac.0)
            .state(NeighbourState::Noarp)
            .flags(NeighbourFlags::Controller)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding bridge FDB entry {mac} on {VXLAN_DEVICE}"))?;
    }
    for neighbour in desired.difference(&present_neighbours) {
        nl.handle()
            .neighbours()
            .add(bridge, std::net::IpAddr::V4(neighbour.ip))
            .link_layer_address(&neighbour.mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding neighbour {} -> {}", neighbour.ip, neighbour.mac))?;
    }
    Ok(())
}

/// The static bridge FDB entries of the VXLAN port (`port`) and the
/// permanent neighbours of the bridge (`bridge`), as netd adds them.
async fn static_entries(
    nl: &Netlink,
    port: u32,
    bridge: u32,
) -> Result<(BTreeSet<Mac>, BTreeSet<Neighbour>)> {
    let fdb = neighbour_dump(nl, AddressFamily::Bridge, "listing bridge FDB entries").await?;
    let macs = fdb
        .iter()
        .filter(|m| {
            m.header.ifindex == port
                && m.header.flags.contains(NeighbourFlags::Controller)
                && m.header.state == NeighbourState::Noarp
        })
        .filter_map(|m| m.attributes.iter().find_map(mac_of))
        .collect();
    let inet = neighbour_dump(nl, AddressFamily::Inet, "listing the bridge's neighbours").await?;
    let neighbours = inet
        .iter()
        .filter(|m| m.header.ifindex == bridge && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| {
            let mut ip = None;
            let mut mac = None;
            for attribute in &m.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => {
                        ip = Some(*addr)
                    }
                    NeighbourAttribute::LinkLayerAddress(_) => mac = mac_of(attribute),
                    _ => {}
                }
            }
            Some(Neighbour { ip: ip?, mac: mac? })
        })
        .collect();
    Ok((macs, neighbours))
}

/// One dump of the namespace's neighbour table of `family` (`Bridge`: the
/// FDB).
async fn neighbour_dump(
    nl: &Netlink,
    family: AddressFamily,
    what: &str,
) -> Result<Vec<NeighbourMessage>> {
    nl.handle()
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await
        .context(what.to_owned())
}

/// The MAC a neighbour attribute carries, if it is one.
fn mac_of(attribute: &NeighbourAttribute) -> Option<Mac> {
    match attribute {
        NeighbourAttribute::LinkLayerAddress(lla) if lla.len() == 6 => {
            Some(Mac(lla[..6].try_into().ok()?))
        }
        _ => None,
    }
}

/// Makes the device's FDB hold exactly `desired` (entries with a remote
/// address: the kernel's own entries for the device's MAC stay).
pub async fn sync_fdb(ns: &Netns, desired: &BTreeSet<FdbEntry>) -> Result<()> {
    let nl = Netlink::connect(Some(ns))?;
    let index = nl.index(VXLAN_DEVICE).await?;
    let present = entries(&nl, index).await?;
    for entry in present.difference(desired) {
        nl.handle()
            .neighbours()
            .del(message(index, entry))
            .execute()
            .await
            .with_context(|| format!("removing FDB entry {} -> {}", entry.mac, entry.remote))?;
    }
    for entry in desired.difference(&present) {
        append(&nl, index, entry).await?;
    }
    Ok(())
}

/// The device's FDB entries that have a remote address.
pub async fn entries(nl: &Netlink, index: u32) -> Result<BTreeSet<FdbEntry>> {
    let messages = neighbour_dump(nl, AddressFamily::Bridge, "listing FDB entries").await?;
    Ok(messages
        .iter()
        .filter(|m| m.header.ifindex == index)
        .filter_map(|m| {
            let mut mac = None;
            let mut remote = None;
            for attribute in &m.attributes {
                match attribute {
                    NeighbourAttribute::LinkLayerAddress(_) => mac = mac_of(attribute),
                    // The kernel's bridge-family answers carry the
                    // address as bytes.
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        remote = Some(*ip)
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Other(bytes))
                        if bytes.len() == 4 =>
                    {
                        remote = Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
                    }
                    _ => {}
                }
            }
            Some(FdbEntry {
                mac: mac?,
                remote: remote?,
            })
        })
        .collect())
}

fn message(index: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.0.to_vec()));
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            entry.remote,
        )));
    message
}

/// `bridge fdb append`: several entries may share a MAC (the all-zero one
/// has one per remote node), which a plain add or replace would not allow.
async fn append(nl: &Netlink, index: u32, entry: &FdbEntry) -> Result<()> {
    let mut request =
        NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message(index, entry)));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut handle = nl.handle().clone();
    let mut answers = handle
        .request(request)
        .with_context(|| format!("adding FDB entry {} -> {}", entry.mac, entry.remote))?;
    use futures::StreamExt;
    while let Some(answer) = answers.next().await {
        if let NetlinkPayload::Error(err) = answer.payload
            && err.code.is_some()
        {
            anyhow::bail!("adding FDB entry {} -> {}: {err}", entry.mac, entry.remote);
        }
    }
    Ok(())
}

/// The MTU of a spanned network on this node: the MTU of the link holding
/// `underlay` (from `addresses` and `mtus`, as `HostView` has them) less
/// VXLAN's overhead. An error names the fix when this host has no such
/// address.
pub fn overlay_mtu(
    addresses: &[(ipnetwork::Ipv4Network, String)],
    mtus: &[(String, u32)],
    underlay: Ipv4Addr,
) -> Result<u32, String> {
    let link = addresses
        .iter()
        .find(|(address, _)| address.ip() == underlay)
        .map(|(_, link)| link)
        .ok_or_else(|| {
            format!(
                "underlay_address {underlay} is no address of this host: give `netd daemon \
                 --underlay-address` an address of the link the other nodes reach"
            )
        })?;
    let mtu = mtus
        .iter()
        .find(|(name, _)| name == link)
        .map_or(1500, |(_, mtu)| *mtu);
    Ok(mtu.saturating_sub(VXLAN_OVERHEAD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_mtu_is_the_underlay_links_less_the_overhead() {
        let addresses = vec![
            ("10.1.2.11/24".parse().unwrap(), "underlay".to_owned()),
            ("198.51.100.2/24".parse().unwrap(), "uplink".to_owned()),
        ];
        let mtus = vec![("underlay".to_owned(), 9000), ("uplink".to_owned(), 1500)];
        assert_eq!(
            overlay_mtu(&addresses, &mtus, Ipv4Addr::new(10, 1, 2, 11)),
            Ok(8950)
        );
        let err = overlay_mtu(&addresses, &mtus, Ipv4Addr::new(10, 1, 2, 12)).unwrap_err();
        assert!(err.contains("--underlay-address"), "{err}");
    }
}
