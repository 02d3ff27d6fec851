//! A thin, typed layer over rtnetlink for the few link, address and route
//! operations netd needs. One `Netlink` talks to one network namespace: its
//! socket is opened inside that namespace and stays bound to it.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::AddressAttribute,
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage},
        route::{RouteAddress, RouteAttribute},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
};

use crate::netns::Netns;

/// A netlink route socket in one namespace.
pub struct Netlink {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// Whether it has a carrier (`IFF_LOWER_UP`): for a veth end, that its
    /// peer is up too.
    pub carrier: bool,
    /// Index of the bridge it is enslaved to, if any.
    pub controller: Option<u32>,
    /// Its MTU (0 if the kernel did not say).
    pub mtu: u32,
}

/// An IPv4 route as the kernel reports it (main table only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteInfo {
    pub destination: Ipv4Network,
    pub gateway: Option<Ipv4Addr>,
    pub output_index: Option<u32>,
}

impl Netlink {
    /// Opens a socket in `netns`, or in the caller's namespace when `None`.
    /// Must be called inside a tokio runtime, which then drives the socket.
    pub fn connect(netns: Option<&Netns>) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::current();
        let open = move || {
            let _entered = runtime.enter();
            rtnetlink::new_connection()
        };
        let (connection, handle, _) = match netns {
            Some(ns) => ns.run_in(open)?,
            None => open(),
        }
        .context("opening a netlink socket")?;
        Ok(Netlink {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The rtnetlink handle, for effect modules with requests of their own
    /// (the cluster's VXLAN devices and FDB entries, `cluster::vxlan`).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Every link of the namespace, without their counters (the kernel
    /// skips filling each link's stats and IPv6 statistics, most of a
    /// dump's cost: `status` dumps every network's links).
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .set_filter_mask(
                rtnetlink::packet_route::AddressFamily::Unspec,
                vec![rtnetlink::packet_route::link::LinkExtentMask::SkipStats],
            )
            .execute()
            .try_collect()
            .await
            .context("listing links")?;
        Ok(messages.iter().map(link_info).collect())
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(message) => Ok(message.as_ref().map(link_info)),
            // ENODEV: no such link.
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
            Err(err) => Err(err).with_context(|| format!("looking up link {name}")),
        }
    }

    pub async fn index(&self, name: &str) -> Result<u32> {
        self.link(name)
            .await?
            .map(|link| link.index)
            .ok_or_else(|| anyhow!("no link named {name}"))
    }

    /// Creates a veth pair whose end `port` stays here (down) while its
    /// peer is made directly inside `peer_ns` as `peer_name` (down).
    pub async fn add_veth_into(&self, port: &str, peer_ns: &Netns, peer_name: &str) -> Result<()> {
        let port_end = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(port.to_owned());
        let peer = LinkMessageBuilder::<LinkUnspec>::new().name(peer_name.to_owned());
        self.add_veth_pair(port_end, peer, peer_ns, (port, peer_name))
            .await
    }

    /// Like [`Netlink::add_veth_into`], for a guest: the end `port` is
    /// enslaved to the bridge `bridge_index` and up, the peer gets
    /// `peer_mac` (and stays down: it is set up from inside, once it has
    /// its address), both ends `mtu` if given.
    pub async fn add_guest_veth(
        &self,
        port: &str,
        bridge_index: u32,
        peer_ns: &Netns,
        peer_name: &str,
        peer_mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_owned())
            .address(peer_mac.to_vec());
        let mut port_end = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(port.to_owned())
            .controller(bridge_index)
            .up();
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            port_end = port_end.mtu(mtu);
        }
        self.add_veth_pair(port_end, peer, peer_ns, (port, peer_name))
            .await
    }

    /// One request makes both ends, the peer in place in `peer_ns`: a link
    /// moved between namespaces afterwards costs the kernel an RCU grace
    /// period (`synchronize_net`) per move, under the RTNL lock.
    async fn add_veth_pair(
        &self,
        port_end: LinkMessageBuilder<LinkVeth>,
        peer: LinkMessageBuilder<LinkUnspec>,
        peer_ns: &Netns,
        (port, peer_name): (&str, &str),
    ) -> Result<()> {
        use std::os::fd::{AsFd, AsRawFd};
        let peer = peer.setns_by_fd(peer_ns.as_fd().as_raw_fd()).build();
        let message = port_end
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .with_context(|| {
                format!(
                    "creating veth pair {port} <-> {peer_name} (in {})",
                    peer_ns.name()
                )
            })
    }

    /// Creates a bridge with a fixed MAC address. A bridge without one takes
    /// the lowest MAC of its ports and changes it when ports come and go,
    /// which leaves guests' ARP caches pointing at a MAC the bridge no longer
    /// answers to.
    pub async fn add_bridge(&self, name: &str) -> Result<()> {
        self.handle
            .link()
            .add(
                LinkBridge::new(name)
                    .address(random_local_mac().to_vec())
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("creating bridge {name}"))
    }

    /// Sets a link's MAC address.
    pub async fn set_mac(&self, name: &str, mac: [u8; 6]) -> Result<()> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("setting the MAC address of {name}"))
    }

    /// Moves a link into another namespace, renaming it there if `new_name` is set.
    pub async fn move_to(&self, name: &str, target: &Netns, new_name: Option<&str>) -> Result<()> {
        use std::os::fd::{AsFd, AsRawFd};
        let index = self.index(name).await?;
        let mut message = LinkUnspec::new_with_index(index).setns_by_fd(target.as_fd().as_raw_fd());
        if let Some(new_name) = new_name {
            message = message.name(new_name.to_string());
        }
        self.handle
            .link()
            .set(message.build())
            .execute()
            .await
            .with_context(|| format!("moving link {name} into namespace {}", target.name()))
    }

    /// Sets a link's MTU.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .with_context(|| format!("setting the MTU of {name} to {mtu}"))
    }

    pub async fn set_up(&self, name: &str) -> Result<()> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("setting link {name} up"))
    }

    /// Enslaves `port` to `bridge`.
    pub async fn set_controller(&self, port: &str, bridge: &str) -> Result<()> {
        let port_index = self.index(port).await?;
        let bridge_index = self.index(bridge).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(port_index)
                    .controller(bridge_index)
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("attaching {port} to bridge {bridge}"))
    }

    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        self.handle
            .link()
            .del(link.index)
            .execute()
            .await
            .with_context(|| format!("deleting link {name}"))
    }

    /// The cls_bpf programs filtering link `index`, as `ingress:NAME` or
    /// `egress:NAME` (netd's guest ports carry theirs so, see
    /// `dataplane::ebpf::port_filter`).
    pub async fn bpf_filters(&self, index: u32) -> Result<Vec<String>> {
        use rtnetlink::packet_route::tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcOption};
        let mut out = Vec::new();
        // An `ingress` qdisc (netd's ports today) has one block, which the
        // kernel also lists for a dump of the egress parent; only a clsact
        // has an egress block of its own.
        let clsact = self.has_clsact(index).await;
        for (direction, minor) in [
            ("ingress", TcHandle::MIN_INGRESS),
            ("egress", TcHandle::MIN_EGRESS),
        ] {
            if minor == TcHandle::MIN_EGRESS && !clsact {
                continue;
            }
            let request = self.handle.traffic_filter(index as i32).get();
            let request = if minor == TcHandle::MIN_INGRESS {
                request.ingress()
            } else {
                request.egress()
            };
            let messages: Vec<_> = match request.execute().try_collect().await {
                Ok(messages) => messages,
                // No clsact qdisc: no filters.
                Err(_) => continue,
            };
            for message in messages {
                for attribute in &message.attributes {
                    let TcAttribute::Options(options) = attribute else {
                        continue;
                    };
                    for option in options {
                        if let TcOption::Bpf(TcFilterBpfOption::ProgName(name)) = option {
                            out.push(format!("{direction}:{name}"));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether link `index` has a clsact qdisc (a dump of the namespace's
    /// qdiscs, filtered here: older kernels ignore the index asked for).
    async fn has_clsact(&self, index: u32) -> bool {
        use rtnetlink::packet_route::tc::TcAttribute;
        let request = self.handle.qdisc().get().index(index as i32);
        let Ok(messages) = request.execute().try_collect::<Vec<_>>().await else {
            return false;
        };
        messages.iter().any(|message| {
            message.header.index == index as i32
                && message.attributes.iter().any(
                    |attribute| matches!(attribute, TcAttribute::Kind(kind) if kind == "clsact"),
                )
        })
    }

    pub async fn add_address(&self, link: &str, address: Ipv4Network) -> Result<()> {
        let index = self.index(link).await?;
        self.handle
            .address()
            .add(index, address.ip().into(), address.prefix())
            .execute()
            .await
            .with_context(|| format!("adding address {address} to {link}"))
    }

    /// IPv4 addresses per link index.
    pub async fn addresses(&self) -> Result<Vec<(u32, Ipv4Network)>> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .context("listing addresses")?;
        let mut out = Vec::new();
        for message in messages {
            if message.header.family != AddressFamily::Inet {
                continue;
            }
            for attribute in &message.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = attribute
                    && let Ok(net) = Ipv4Network::new(*ip, message.header.prefix_len)
                {
                    out.push((message.header.index, net));
                }
            }
        }
        Ok(out)
    }

    /// Adds a route to `destination` via `gateway` (or on-link through `link`).
    pub async fn add_route(
        &self,
        destination: Ipv4Network,
        gateway: Option<Ipv4Addr>,
        link: Option<&str>,
    ) -> Result<()> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix());
        if let Some(gateway) = gateway {
            builder = builder.gateway(gateway);
        }
        if let Some(link) = link {
            builder = builder.output_interface(self.index(link).await?);
        }
        self.handle
            .route()
            .add(builder.build())
            .execute()
            .await
            .with_context(|| format!("adding route to {destination}"))
    }

    /// IPv4 routes of the main table.
    pub async fn routes(&self) -> Result<Vec<RouteInfo>> {
        let messages: Vec<_> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .context("listing routes")?;
        let mut out = Vec::new();
        for message in messages {
            if message.header.table != 254 {
                continue;
            }
            let mut destination = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            let mut output_index = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(index) => output_index = Some(*index),
                    _ => {}
                }
            }
            if let Ok(destination) =
                Ipv4Network::new(destination, message.header.destination_prefix_length)
            {
                out.push(RouteInfo {
                    destination,
                    gateway,
                    output_index,
                });
            }
        }
        Ok(out)
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The host namespace's addresses and routes, each with the name of its
/// link: read once per operation ([`HostView::read`]) by everything that
/// checks netd's ranges against the host or hairpins through its addresses.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// Every IPv4 address, with host bits (`192.168.1.5/24`), and its link.
    pub addresses: Vec<(Ipv4Network, String)>,
    /// Every IPv4 route's destination and its output link ("" for none).
    pub routes: Vec<(Ipv4Network, String)>,
    /// Every link's MTU, by name.
    pub mtus: Vec<(String, u32)>,
}

impl HostView {
    /// Reads the namespace the daemon runs in.
    pub async fn read() -> Result<HostView> {
        let host = Netlink::connect(None)?;
        let links = host.links().await?;
        let name = |index: u32| link_name(&links, index);
        let addresses = host
            .addresses()
            .await?
            .into_iter()
            .map(|(index, net)| (net, name(index)))
            .collect();
        let routes = host
            .routes()
            .await?
            .into_iter()
            .map(|r| (r.destination, r.output_index.map(name).unwrap_or_default()))
            .collect();
        let mtus = links.iter().map(|l| (l.name.clone(), l.mtu)).collect();
        Ok(HostView {
            addresses,
            routes,
            mtus,
        })
    }

    /// The MTU of the link the host's default route leaves by (the
    /// smallest, if several routes are default): what guests' packets to
    /// the outside must fit. None without a default route.
    pub fn uplink_mtu(&self) -> Option<(String, u32)> {
        self.routes
            .iter()
            .filter(|(destination, _)| destination.prefix() == 0)
            .filter_map(|(_, link)| {
                let mtu = self.mtus.iter().find(|(name, _)| name == link)?.1;
                Some((link.clone(), mtu))
            })
            .min_by_key(|(_, mtu)| *mtu)
    }

    /// Every address but loopback ones: where published ports are reached.
    pub fn reachable_ips(&self) -> Vec<Ipv4Addr> {
        self.addresses
            .iter()
            .map(|(net, _)| net.ip())
            .filter(|ip| !ip.is_loopback())
            .collect()
    }
}

/// The name of the link with `index` in `links`, or `#index` if it is gone.
pub fn link_name(links: &[LinkInfo], index: u32) -> String {
    links
        .iter()
        .find(|l| l.index == index)
        .map_or_else(|| format!("#{index}"), |l| l.name.clone())
}

fn link_info(message: &LinkMessage) -> LinkInfo {
    let mut name = String::new();
    let mut controller = None;
    let mut mtu = 0;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Controller(index) => controller = Some(*index),
            LinkAttribute::Mtu(m) => mtu = *m,
            _ => {}
        }
    }
    LinkInfo {
        index: message.header.index,
        name,
        up: message.header.flags.contains(LinkFlags::Up),
        carrier: message.header.flags.contains(LinkFlags::LowerUp),
        controller,
        mtu,
    }
}

impl Netlink {
    /// Deletes the main-table route to `destination`, if there is one.
    pub async fn delete_route(&self, destination: Ipv4Network) -> Result<()> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix())
            .build();
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ESRCH => Ok(()),
            Err(err) => Err(err).with_context(|| format!("deleting route to {destination}")),
        }
    }
}

/// A random unicast, locally administered MAC address (as veth and bridge
/// devices get by default).
fn random_local_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // getrandom(2) never fails for 6 bytes once the pool is initialised;
    // should it, a time-derived value is still unique enough here.
    // SAFETY: writes at most `mac.len()` bytes into `mac`.
    let got = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if got != mac.len() as isize {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        mac.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Policy routing: what the nftables dataplane needs to send marked packets
/// into a network whose (possibly overlapping) subnet the main table does
/// not know.
impl Netlink {
    /// Makes `table`'s default route `via gateway dev link` (created or
    /// replaced).
    pub async fn replace_default_route_in_table(
        &self,
        table: u32,
        gateway: Ipv4Addr,
        link: &str,
    ) -> Result<()> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gateway)
            .output_interface(self.index(link).await?)
            .table_id(table)
            .build();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .with_context(|| format!("setting the default route of table {table} via {gateway}"))
    }

    /// Adds the rule `fwmark MARK lookup TABLE` at `priority`; one that is
    /// there already is no error.
    pub async fn add_fwmark_rule(&self, mark: u32, table: u32, priority: u32) -> Result<()> {
        let result = self
            .handle
            .rule()
            .add()
            .v4()
            .fw_mark(mark)
            .table_id(table)
            .priority(priority)
            .action(RuleAction::ToTable)
            .execute()
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::EEXIST => Ok(()),
            Err(err) => {
                Err(err).with_context(|| format!("adding rule fwmark {mark} lookup {table}"))
            }
        }
    }

    /// The IPv4 rules that match a firewall mark: (mark, table), in the
    /// kernel's order.
    pub async fn fwmark_rules(&self) -> Result<Vec<(u32, u32)>> {
        Ok(self
            .fwmark_rule_messages()
            .await?
            .iter()
            .filter_map(fwmark_rule)
            .collect())
    }

    /// Deletes every rule `fwmark MARK lookup TABLE`; none is no error.
    pub async fn delete_fwmark_rules(&self, mark: u32, table: u32) -> Result<()> {
        for message in self.fwmark_rule_messages().await? {
            if fwmark_rule(&message) != Some((mark, table)) {
                continue;
            }
            match self.handle.rule().del(message).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENOENT => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("deleting rule fwmark {mark} lookup {table}"));
                }
            }
        }
        Ok(())
    }

    async fn fwmark_rule_messages(&self) -> Result<Vec<RuleMessage>> {
        self.handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .context("listing routing rules")
    }
}

/// (mark, table) of a rule that matches a firewall mark and looks up a table.
fn fwmark_rule(message: &RuleMessage) -> Option<(u32, u32)> {
    let mut mark = None;
    let mut table = u32::from(message.header.table);
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::FwMark(value) => mark = Some(*value),
            RuleAttribute::Table(value) => table = *value,
            _ => {}
        }
    }
    Some((mark?, table))
}
