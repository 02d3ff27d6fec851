//! The gateway's maps. Their keys and values, names and sizes live in
//! `netd-common`, so user space reads and writes the same layouts. The map
//! macro takes only a literal name, so each literal is checked against
//! `netd-common`'s constant at compile time: a mismatch fails the build,
//! not the load.

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use netd_common::{
    filter::Ipv4Key,
    maps as names,
    maps::{
        CONNTRACK_MAX_ENTRIES, EGRESS_PEER_MAX_ENTRIES, FORWARDS_MAX_ENTRIES,
        GUEST_PORTS_MAX_ENTRIES, HOST_ADDRS_MAX_ENTRIES, NETWORKS_MAX_ENTRIES,
        PORT_SHARES_MAX_ENTRIES, RATE_BUCKETS_MAX_ENTRIES,
    },
    nat::{CtEntry, CtKey, ForwardKey, ForwardTarget, ShareKey},
    partition::{PartitionPolicy, RateBucket, RateKey},
    zones::{GatewayInfo, GuestIdentity, GuestKey, GuestPort, NetworkInfo},
};

netd_map! {
    "NETD_CONNTRACK" == names::CONNTRACK,
    pub static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CONNTRACK_MAX_ENTRIES, names::BPF_F_NO_COMMON_LRU);
}

netd_map! {
    "NETD_PORT_SHARES" == names::PORT_SHARES,
    pub static PORT_SHARES: LruHashMap<ShareKey, u32> = LruHashMap::with_max_entries(PORT_SHARES_MAX_ENTRIES, names::BPF_F_NO_COMMON_LRU);
}

netd_map! {
    "NETD_FORWARDS" == names::FORWARDS,
    pub static FORWARDS: HashMap<ForwardKey, ForwardTarget> = HashMap::with_max_entries(FORWARDS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_GATEWAY" == names::GATEWAY,
    pub static GATEWAY: Array<GatewayInfo> = Array::with_max_entries(1, 0);
}

netd_map! {
    "NETD_FIB_SCRATCH" == names::FIB_SCRATCH,
    pub static FIB_SCRATCH: PerCpuArray<bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);
}

netd_map! {
    "NETD_EGRESS_PEER" == names::EGRESS_PEER,
    pub static EGRESS_PEER: Array<u32> = Array::with_max_entries(EGRESS_PEER_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_NETWORKS" == names::NETWORKS,
    pub static NETWORKS: HashMap<u32, NetworkInfo> = HashMap::with_max_entries(NETWORKS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_ZONE_IFIDX" == names::ZONE_BY_IFINDEX,
    pub static ZONE_BY_IFINDEX: HashMap<u32, u32> = HashMap::with_max_entries(NETWORKS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_HOST_ADDRS" == names::HOST_ADDRS,
    pub static HOST_ADDRS: HashMap<Ipv4Key, u32> = HashMap::with_max_entries(HOST_ADDRS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_ZONE_MAC" == names::ZONE_BY_MAC,
    pub static ZONE_BY_MAC: HashMap<u64, u32> = HashMap::with_max_entries(NETWORKS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_GUEST_PORTS" == names::GUEST_PORTS,
    pub static GUEST_PORTS: HashMap<GuestKey, GuestPort> = HashMap::with_max_entries(GUEST_PORTS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_GUEST_MAC" == names::GUEST_BY_MAC,
    pub static GUEST_BY_MAC: HashMap<u64, GuestIdentity> = HashMap::with_max_entries(GUEST_PORTS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_RATE_BUCKETS" == names::RATE_BUCKETS,
    pub static RATE_BUCKETS: LruHashMap<RateKey, RateBucket> = LruHashMap::with_max_entries(RATE_BUCKETS_MAX_ENTRIES, 0);
}

netd_map! {
    "NETD_OVERLAY_GWS" == names::OVERLAY_GATEWAYS,
    pub static OVERLAY_GATEWAYS: HashMap<Ipv4Key, u32> = HashMap::with_max_entries(NETWORKS_MAX_ENTRIES, 0);
}

// No preallocation: a policy is 33 KiB and most networks have none.
netd_map! {
    "NETD_PARTITIONS" == names::PARTITIONS,
    pub static PARTITIONS: HashMap<u32, PartitionPolicy> = HashMap::with_max_entries(netd_common::counters::COUNTED_ZONES, names::BPF_F_NO_PREALLOC);
}

#[inline(always)]
pub fn guest_by_mac(mac: [u8; 6]) -> Option<GuestIdentity> {
    // SAFETY: copied out at once.
    unsafe { GUEST_BY_MAC.get(netd_common::zones::mac_key(mac)) }.copied()
}

/// The network's policy, read in place (33 KiB is too big to copy to the
/// stack). A policy is replaced whole, never edited, so the reference sees
/// one policy or the other.
#[inline(always)]
pub fn partition(zone: u32) -> Option<&'static PartitionPolicy> {
    // SAFETY: hash map values stay valid for the program's run (RCU).
    unsafe { PARTITIONS.get(zone) }
}

#[inline(always)]
pub fn zone_of_mac(mac: [u8; 6]) -> Option<u32> {
    // SAFETY: copied out at once.
    unsafe { ZONE_BY_MAC.get(netd_common::zones::mac_key(mac)) }.copied()
}

#[inline(always)]
pub fn guest_port(zone: u32, ip: [u8; 4]) -> Option<GuestPort> {
    // SAFETY: copied out at once.
    unsafe { GUEST_PORTS.get(GuestKey { zone, ip }) }.copied()
}

/// The gateway's facts, once user space has written them: read in place
/// (an array's value stays where it is), not copied onto the programs'
/// scarce stack.
#[inline(always)]
pub fn gateway() -> Option<&'static GatewayInfo> {
    let info = GATEWAY.get(0)?;
    (info.ready != 0).then_some(info)
}

#[inline(always)]
pub fn network(zone: u32) -> Option<NetworkInfo> {
    // SAFETY: copied out at once.
    unsafe { NETWORKS.get(zone) }.copied()
}

#[inline(always)]
pub fn zone_of_ifindex(ifindex: u32) -> Option<u32> {
    // SAFETY: copied out at once.
    unsafe { ZONE_BY_IFINDEX.get(ifindex) }.copied()
}

#[inline(always)]
pub fn forward(proto: u8, port: u16) -> Option<ForwardTarget> {
    let key = ForwardKey {
        proto,
        _pad: 0,
        port,
    };
    // SAFETY: copied out at once.
    unsafe { FORWARDS.get(key) }.copied()
}

/// Whether a packet leaving by host device `ifindex` may go straight into
/// its veth peer (see `EGRESS_PEER`).
#[inline(always)]
pub fn egress_by_peer(ifindex: u32) -> bool {
    EGRESS_PEER.get(ifindex).is_some_and(|skip| *skip != 0)
}

/// The zone of the spanned network whose gateway address `addr` is, if
/// it is one.
#[inline(always)]
pub fn overlay_gateway(addr: [u8; 4]) -> Option<u32> {
    // SAFETY: copied out at once.
    unsafe { OVERLAY_GATEWAYS.get(Ipv4Key::new(addr)) }.copied()
}

#[inline(always)]
pub fn is_host_addr(addr: [u8; 4]) -> bool {
    HOST_ADDRS.get_ptr(Ipv4Key::new(addr)).is_some()
}
