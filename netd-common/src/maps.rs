//! Map and program names and sizes: one place, so kernel and user space
//! cannot disagree.

/// Per-CPU array of packet counters: [`crate::counters::Counter::slot`].
pub const COUNTERS: &str = "NETD_COUNTERS";

/// Hash of destination IPv4 addresses whose packets the filter drops.
pub const BLOCKED_DST: &str = "NETD_BLOCKED_DST";
pub const BLOCKED_DST_MAX_ENTRIES: u32 = 1024;

/// LRU hash of connection-tracking entries ([`crate::nat::CtKey`] ->
/// [`crate::nat::CtEntry`]), two per connection.
pub const CONNTRACK: &str = "NETD_CONNTRACK";
pub const CONNTRACK_MAX_ENTRIES: u32 = 131_072;

/// Hash of published ports ([`crate::nat::ForwardKey`] ->
/// [`crate::nat::ForwardTarget`]), ranges expanded.
pub const FORWARDS: &str = "NETD_FORWARDS";
pub const FORWARDS_MAX_ENTRIES: u32 = 65_536;

/// One-entry array of [`crate::zones::GatewayInfo`].
pub const GATEWAY: &str = "NETD_GATEWAY";

/// Hash of networks by zone ([`crate::zones::NetworkInfo`]).
pub const NETWORKS: &str = "NETD_NETWORKS";
/// Hash from a gateway port's ifindex to its network's zone.
pub const ZONE_BY_IFINDEX: &str = "NETD_ZONE_IFIDX";
pub const NETWORKS_MAX_ENTRIES: u32 = 4096;

/// Hash of the host's own addresses, so that a guest reaching a published
/// port through a host address is hairpinned at the gateway.
pub const HOST_ADDRS: &str = "NETD_HOST_ADDRS";
pub const HOST_ADDRS_MAX_ENTRIES: u32 = 256;

/// Hash from a network uplink's MAC address (in the low six bytes of a u64,
/// as the frame carries it) to the network's zone: the uplink program runs
/// in every network namespace and learns which one by the MAC the frame was
/// sent to. (`bpf_get_netns_cookie` would be the natural key, but on this
/// kernel it did not return the device's namespace for forwarded packets.)
pub const ZONE_BY_MAC: &str = "NETD_ZONE_MAC";

/// Array by ifindex of the host's devices whose egress a guest's packet
/// may skip (1): veths into another namespace with nothing on their egress,
/// so the host program puts the packet straight into the peer. An array,
/// not a hash: its lookup is a bounds check the JIT inlines. Devices with
/// a larger ifindex are never skipped. Not pinned: the daemon fills it from
/// the devices at every start and repair tick.
pub const EGRESS_PEER: &str = "NETD_EGRESS_PEER";
pub const EGRESS_PEER_MAX_ENTRIES: u32 = 1024;

/// LRU hash from a destination address to the host side's next hop for
/// it ([`crate::next_hop::NextHop`]): an established connection's packets skip
/// the FIB lookup while the entry is good. Not pinned: a new start begins
/// empty.
pub const NEXT_HOPS: &str = "NETD_NEXT_HOPS";
pub const NEXT_HOPS_MAX_ENTRIES: u32 = 4096;

/// A one-entry array: the host's routing epoch, which the daemon bumps for
/// every change of the host's routes, neighbours, links and addresses it is
/// told of (0: no daemon watches, so nothing is remembered). Not pinned.
pub const ROUTE_EPOCH: &str = "NETD_ROUTE_EPOCH";

/// A one-entry per-CPU array: the host link program's FIB lookup
/// parameters, kept off its stack (not pinned: nothing outlives a packet).
pub const FIB_SCRATCH: &str = "NETD_FIB_SCRATCH";

/// Hash of guests' bridge ports ([`crate::zones::GuestKey`] ->
/// [`crate::zones::GuestPort`]).
pub const GUEST_PORTS: &str = "NETD_GUEST_PORTS";
pub const GUEST_PORTS_MAX_ENTRIES: u32 = 65_536;

/// Hash from a guest's MAC to its identity ([`crate::zones::GuestIdentity`]).
pub const GUEST_BY_MAC: &str = "NETD_GUEST_MAC";

/// Hash of partition policies by zone ([`crate::partition::PartitionPolicy`]),
/// allocated on update (no preallocation: most networks have none).
pub const PARTITIONS: &str = "NETD_PARTITIONS";

/// LRU hash of fault policies' rate buckets ([`crate::partition::RateKey`]
/// -> [`crate::partition::RateBucket`]): one per network, policy, class and
/// sender, made on a sender's first packet. Not pinned: a restarted daemon
/// starts with full buckets.
pub const RATE_BUCKETS: &str = "NETD_RATE_BUCKETS";
pub const RATE_BUCKETS_MAX_ENTRIES: u32 = 16_384;

/// LRU hash of the ports each guest holds towards each destination
/// ([`crate::nat::ShareKey`] -> count): the programs count up as they
/// translate, the daemon's collector recounts from the connections.
pub const PORT_SHARES: &str = "NETD_PORT_SHARES";
pub const PORT_SHARES_MAX_ENTRIES: u32 = 65_536;

/// Hash of spanned networks' gateway addresses (the bridge's, the same on
/// every node; [`crate::filter::Ipv4Key`] -> zone): ARP for or from one is
/// dropped where packets arrive from the overlay, so a guest resolves its
/// own node's bridge, never another's.
pub const OVERLAY_GATEWAYS: &str = "NETD_OVERLAY_GWS";

/// `BPF_F_NO_PREALLOC`: entries allocated on update.
pub const BPF_F_NO_PREALLOC: u32 = 1;
/// `BPF_F_NO_COMMON_LRU`: an LRU list per CPU, so that inserting a new
/// connection takes no lock shared with the other CPUs.
pub const BPF_F_NO_COMMON_LRU: u32 = 2;

/// Every map the dataplane pins, in the order user space checks them.
pub const PINNED_MAPS: [&str; 14] = [
    PORT_SHARES,
    GUEST_BY_MAC,
    PARTITIONS,
    ZONE_BY_MAC,
    GUEST_PORTS,
    COUNTERS,
    BLOCKED_DST,
    CONNTRACK,
    FORWARDS,
    GATEWAY,
    NETWORKS,
    ZONE_BY_IFINDEX,
    HOST_ADDRS,
    OVERLAY_GATEWAYS,
];

/// Program names, as the `#[classifier]` functions are called.
pub const PROG_FILTER: &str = "netd_filter";
/// On the gateway's veth to the host, ingress: replies to guests'
/// connections, and new connections to published ports.
pub const PROG_GATEWAY_FROM_HOST: &str = "netd_gw_host";
/// On each gateway port to a network, ingress: guests' traffic out.
pub const PROG_GATEWAY_FROM_NETWORK: &str = "netd_gw_net";

/// On each network's uplink, ingress: packets from the gateway to a guest go
/// straight to the guest's veth.
pub const PROG_NETWORK_UPLINK: &str = "netd_net_uplink";

/// On each guest's bridge port, ingress: only the guest's own MAC and IP,
/// and the network's partition policy.
pub const PROG_GUEST_PORT: &str = "netd_guest_port";

/// On a spanned network's VXLAN device, ingress: what other nodes' guests
/// send to this node's guests meets the network's partition cuts again, so
/// a node that has not applied a partition yet cannot let traffic through.
pub const PROG_OVERLAY: &str = "netd_overlay_in";

/// The program on each network's delay line (its TAP device), ingress:
/// the frames the daemon writes back after their delay, delivered as the
/// guest port would have.
pub const PROG_DELAY_RETURN: &str = "netd_delay_return";

/// On the host's end of the host link (`netd0`), ingress: guests' packets
/// from the gateway, translated once to the host's address and sent out of
/// the host by a FIB lookup, past the host's stack and netfilter.
pub const PROG_HOST_LINK: &str = "netd_host_link";

/// On every other device of the host, ingress (TCX, beside whatever else is
/// attached): replies to guests' connections and new connections to
/// published ports go straight to the gateway; every other packet passes
/// untouched.
pub const PROG_HOST_WORLD: &str = "netd_host_world";

/// Bumped whenever a map layout changes, so pins of an older layout live in
/// another directory and are never reused by mistake.
pub const PIN_LAYOUT_VERSION: &str = "v1";
