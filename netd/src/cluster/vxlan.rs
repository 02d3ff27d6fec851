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
    LinkVxlan,
    packet_core::{
        NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    },
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
    },
};

use super::fdb::FdbEntry;
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
    nl.set_up(VXLAN_DEVICE).await
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
    let messages: Vec<NeighbourMessage> = nl
        .handle()
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .context("listing FDB entries")?;
    Ok(messages
        .iter()
        .filter(|m| m.header.ifindex == index)
        .filter_map(|m| {
            let mut mac = None;
            let mut remote = None;
            for attribute in &m.attributes {
                match attribute {
                    NeighbourAttribute::LinkLayerAddress(lla) if lla.len() == 6 => {
                        mac = Some(Mac(lla[..6].try_into().ok()?));
                    }
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
