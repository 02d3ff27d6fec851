//! Address allocation, as pure functions over the desired state: uplink /30s
//! that link networks to the gateway, guest addresses inside a network's
//! subnet, and the choice and checking of subnets that must be routable from
//! the host.
//!
//! Both allocators wrap around: they hand out the next free slot after the last
//! one handed out, and go back to the start of the range when they reach the
//! end. Reusing a freed slot late (not at once) keeps stale ARP entries and
//! conntrack state of a removed guest from meeting its successor; wrapping
//! keeps the allocator from failing while free slots remain below the cursor
//! (vagga's does not wrap, and does fail).

use std::{collections::BTreeSet, fmt, net::Ipv4Addr};

use ipnetwork::Ipv4Network;
use thiserror::Error;

/// Subnets given to networks must lie between these prefixes: a /16 holds
/// 65,533 guests (more than a bridge should carry), a /29 holds 5.
pub const MIN_SUBNET_PREFIX: u8 = 16;
pub const MAX_SUBNET_PREFIX: u8 = 29;

/// Automatically picked subnets are /24s, like Locker's.
pub const AUTO_SUBNET_PREFIX: u8 = 24;

/// An uplink is a /30: network address, gateway side, network side, broadcast.
const UPLINK_PREFIX: u8 = 30;
const UPLINK_SIZE: u32 = 4;

/// Slots are `u16`, so a pool may hold at most 2^15 of them (a /15): the next
/// power of two, 2^16, no longer fits.
const MIN_UPLINK_POOL_PREFIX: u8 = 15;

/// Why an address or subnet cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IpamError {
    #[error("bad CIDR {text:?}: write it as A.B.C.D/N, e.g. 10.20.0.0/24")]
    BadCidr { text: String },

    #[error(
        "subnet {subnet} is too {size}: use a prefix from /{MIN_SUBNET_PREFIX} to \
         /{MAX_SUBNET_PREFIX} (a /24 holds 253 guests, a /29 holds 5)",
        size = if subnet.prefix() < MIN_SUBNET_PREFIX { "large" } else { "small" }
    )]
    SubnetSize { subnet: Ipv4Network },

    #[error("{given} is not a network address: did you mean {network}?")]
    NotNetworkAddress {
        given: Ipv4Network,
        network: Ipv4Network,
    },

    #[error(
        "subnet {subnet} overlaps {range}, {what}, which cannot be routed to a bridge: \
         choose a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16), or pass \
         --subnet auto to get a free one"
    )]
    SubnetReserved {
        subnet: Ipv4Network,
        range: Ipv4Network,
        what: &'static str,
    },

    #[error(
        "subnet {subnet} overlaps {occupant}: choose a --subnet that overlaps nothing, \
         or pass --subnet auto to get a free one"
    )]
    SubnetTaken {
        subnet: Ipv4Network,
        occupant: Occupied,
    },

    #[error(
        "no free /{AUTO_SUBNET_PREFIX} left in `auto_subnet_pool` {pool}: each one overlaps \
         a host route, a host address or a routable network; pass --subnet CIDR, or widen \
         `auto_subnet_pool` in netd.toml"
    )]
    AutoSubnetPoolExhausted { pool: Ipv4Network },

    #[error(
        "`auto_subnet_pool` {pool} is smaller than a /{AUTO_SUBNET_PREFIX}: set it to a \
         /{AUTO_SUBNET_PREFIX} or larger in netd.toml"
    )]
    AutoSubnetPoolTooSmall { pool: Ipv4Network },

    #[error(
        "`uplink_pool` {pool} has a bad size: use a prefix from /{MIN_UPLINK_POOL_PREFIX} \
         to /{UPLINK_PREFIX} in netd.toml (a /19 links 2048 networks)"
    )]
    UplinkPoolSize { pool: Ipv4Network },

    #[error("`uplink_pool` {given} is not a network address: did you mean {network} in netd.toml?")]
    UplinkPoolNotNetworkAddress {
        given: Ipv4Network,
        network: Ipv4Network,
    },

    #[error(
        "all {capacity} network uplinks of {pool} are in use: remove a network or widen \
         `uplink_pool` in netd.toml"
    )]
    UplinksExhausted { pool: Ipv4Network, capacity: usize },

    #[error(
        "uplink slot {slot} lies outside `uplink_pool` {pool} ({capacity} slots): the pool \
         was narrowed after networks were made; widen `uplink_pool` in netd.toml again, or \
         remove the networks beyond it"
    )]
    UplinkSlotOutsidePool {
        slot: u16,
        pool: Ipv4Network,
        capacity: usize,
    },

    #[error(
        "network {network} has no free address: all {capacity} guest addresses of {subnet} \
         are taken; remove a guest or create the network with a larger --subnet"
    )]
    GuestAddressesExhausted {
        network: String,
        subnet: Ipv4Network,
        capacity: u32,
    },

    #[error(
        "guest address {ip} is outside the network's subnet {subnet}: pick one from {first} \
         to {last}, or leave it out to get a free one"
    )]
    GuestIpOutsideSubnet {
        ip: Ipv4Addr,
        subnet: Ipv4Network,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },

    #[error(
        "guest address {ip} is the {role} of {subnet}: pick one from {first} to {last}, \
         or leave it out to get a free one"
    )]
    GuestIpReserved {
        ip: Ipv4Addr,
        role: ReservedRole,
        subnet: Ipv4Network,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },

    #[error(
        "guest address {ip} is already used by guest {holder}: pick another, or leave it \
         out to get a free one"
    )]
    GuestIpInUse { ip: Ipv4Addr, holder: String },
}

/// The addresses of a subnet that no guest may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedRole {
    NetworkAddress,
    Broadcast,
    Bridge,
}

impl fmt::Display for ReservedRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservedRole::NetworkAddress => "network address",
            ReservedRole::Broadcast => "broadcast address",
            ReservedRole::Bridge => "bridge address",
        })
    }
}

// ---------------------------------------------------------------------------
// Uplinks

/// The pool of /30s that link each network's namespace to the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkPool {
    pool: Ipv4Network,
}

/// The two ends of one uplink /30.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkAddrs {
    /// `.4i+1/30`, on the gateway's veth end.
    pub gateway_side: Ipv4Network,
    /// `.4i+2/30`, on the network's veth end; its default route goes to
    /// `gateway_side`.
    pub network_side: Ipv4Network,
}

impl UplinkPool {
    /// Checks that `pool` is a network address whose size gives between 1 and
    /// 2^15 uplink slots.
    pub fn new(pool: Ipv4Network) -> Result<UplinkPool, IpamError> {
        if !(MIN_UPLINK_POOL_PREFIX..=UPLINK_PREFIX).contains(&pool.prefix()) {
            return Err(IpamError::UplinkPoolSize { pool });
        }
        if let Some(network) = misaligned(pool) {
            return Err(IpamError::UplinkPoolNotNetworkAddress {
                given: pool,
                network,
            });
        }
        Ok(UplinkPool { pool })
    }

    pub fn pool(&self) -> Ipv4Network {
        self.pool
    }

    /// How many networks the pool can link: 2048 for a /19.
    pub fn capacity(&self) -> usize {
        (self.pool.size() / UPLINK_SIZE) as usize
    }

    /// The addresses of slot `slot`. A slot outside the pool comes from a
    /// state saved under a wider pool, hence an error rather than a panic.
    pub fn addresses(&self, slot: u16) -> Result<UplinkAddrs, IpamError> {
        if usize::from(slot) >= self.capacity() {
            return Err(IpamError::UplinkSlotOutsidePool {
                slot,
                pool: self.pool,
                capacity: self.capacity(),
            });
        }
        let base = u32::from(self.pool.network()) + u32::from(slot) * UPLINK_SIZE;
        Ok(UplinkAddrs {
            gateway_side: slash30(base + 1),
            network_side: slash30(base + 2),
        })
    }

    /// The first slot not in `used`, searching from just after `cursor` (the
    /// last slot handed out) and wrapping around to slot 0.
    pub fn allocate(&self, used: &BTreeSet<u16>, cursor: Option<u16>) -> Result<u16, IpamError> {
        let start = cursor.map_or(0, |last| u64::from(last) + 1);
        first_free_from(start, self.capacity() as u64, |slot| {
            !used.contains(&(slot as u16))
        })
        .map(|slot| slot as u16)
        .ok_or(IpamError::UplinksExhausted {
            pool: self.pool,
            capacity: self.capacity(),
        })
    }
}

fn slash30(addr: u32) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::from(addr), UPLINK_PREFIX).expect("30 is a valid IPv4 prefix")
}

/// The first index `i` for which `is_free(i)`, visiting `start`, `start + 1`,
/// …, `capacity - 1`, then `0`, …, `start - 1`: each index once.
fn first_free_from(start: u64, capacity: u64, is_free: impl Fn(u64) -> bool) -> Option<u64> {
    if capacity == 0 {
        return None;
    }
    (0..capacity)
        .map(|step| (start + step) % capacity)
        .find(|&index| is_free(index))
}

// ---------------------------------------------------------------------------
// Guest addresses

/// The bridge's address in `subnet`: its last usable host (broadcast - 1),
/// which leaves `.1` upwards to guests.
pub fn bridge_ip(subnet: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.broadcast()).saturating_sub(1))
}

/// How many guests `subnet` holds: every address but the network address,
/// the broadcast and the bridge (253 for a /24).
pub fn guest_capacity(subnet: Ipv4Network) -> u32 {
    subnet.size().saturating_sub(3)
}

/// Guest number `index` (0-based) lives at network address + 1 + index.
fn guest_ip_at(subnet: Ipv4Network, index: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1 + index as u32)
}

/// The index of `ip` among the guest addresses of `subnet`, if it is one.
fn guest_index(subnet: Ipv4Network, ip: Ipv4Addr) -> Option<u64> {
    let offset = u32::from(ip).checked_sub(u32::from(subnet.network()))?;
    (1..=guest_capacity(subnet))
        .contains(&offset)
        .then(|| u64::from(offset - 1))
}

/// The first guest address of `subnet` not in `used`, searching from just
/// after `cursor` (the last address handed out) and wrapping around to `.1`.
/// `network` names the network in the error.
pub fn allocate_guest_ip(
    network: &str,
    subnet: Ipv4Network,
    used: &BTreeSet<Ipv4Addr>,
    cursor: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    // A cursor that is no guest address (say, from before a subnet change)
    // restarts the search at `.1` rather than failing.
    let start = cursor
        .and_then(|last| guest_index(subnet, last))
        .map_or(0, |index| index + 1);
    first_free_from(start, u64::from(guest_capacity(subnet)), |index| {
        !used.contains(&guest_ip_at(subnet, index))
    })
    .map(|index| guest_ip_at(subnet, index))
    .ok_or_else(|| IpamError::GuestAddressesExhausted {
        network: network.to_owned(),
        subnet,
        capacity: guest_capacity(subnet),
    })
}

/// Checks an address asked for by the user for a guest of a network with
/// `subnet`. `holder` is the guest that already has `ip`, if any (see
/// `Network::guest_with_ip`), so that the error can name it.
pub fn check_guest_ip(
    subnet: Ipv4Network,
    ip: Ipv4Addr,
    holder: Option<&str>,
) -> Result<(), IpamError> {
    let (first, last) = guest_range(subnet);
    if !subnet.contains(ip) {
        return Err(IpamError::GuestIpOutsideSubnet {
            ip,
            subnet,
            first,
            last,
        });
    }
    if let Some(role) = reserved_role(subnet, ip) {
        return Err(IpamError::GuestIpReserved {
            ip,
            role,
            subnet,
            first,
            last,
        });
    }
    match holder {
        Some(holder) => Err(IpamError::GuestIpInUse {
            ip,
            holder: holder.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The first and last guest address of `subnet`, for messages. Saturating,
/// so that even a subnet too small to hold guests yields something printable.
fn guest_range(subnet: Ipv4Network) -> (Ipv4Addr, Ipv4Addr) {
    let first = u32::from(subnet.network()).saturating_add(1);
    let last = u32::from(bridge_ip(subnet)).saturating_sub(1);
    (Ipv4Addr::from(first), Ipv4Addr::from(last))
}

/// What `ip` is in `subnet` if it is one of the addresses no guest may have.
pub fn reserved_role(subnet: Ipv4Network, ip: Ipv4Addr) -> Option<ReservedRole> {
    if ip == subnet.network() {
        Some(ReservedRole::NetworkAddress)
    } else if ip == subnet.broadcast() {
        Some(ReservedRole::Broadcast)
    } else if ip == bridge_ip(subnet) {
        Some(ReservedRole::Bridge)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Subnets

/// Parses CIDR text such as `10.20.0.0/24`. The prefix must be written: a bare
/// address would silently become a /32. Does not judge the size; see
/// `validate_subnet`.
pub fn parse_subnet(text: &str) -> Result<Ipv4Network, IpamError> {
    let bad = || IpamError::BadCidr {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    if !trimmed.contains('/') {
        return Err(bad());
    }
    trimmed.parse().map_err(|_| bad())
}

/// Checks a subnet for a network: a prefix from /16 to /29, written as its
/// network address (a typo like `172.18.0.5/24` is refused, not rounded).
pub fn validate_subnet(subnet: Ipv4Network) -> Result<(), IpamError> {
    if !(MIN_SUBNET_PREFIX..=MAX_SUBNET_PREFIX).contains(&subnet.prefix()) {
        return Err(IpamError::SubnetSize { subnet });
    }
    match misaligned(subnet) {
        Some(network) => Err(IpamError::NotNetworkAddress {
            given: subnet,
            network,
        }),
        None => Ok(()),
    }
}

/// Ranges that no routable network may touch (RFC 6890): routing them to a
/// bridge would take addresses the host needs (its loopback, the link-local
/// range with the cloud metadata address 169.254.169.254) or ones that are
/// no unicast destination at all.
pub const RESERVED_RANGES: [(Ipv4Network, &str); 5] = [
    (reserved(0, 8), "\"this network\" (RFC 1122)"),
    (reserved(127, 8), "the loopback range"),
    (
        Ipv4Network::new_checked(Ipv4Addr::new(169, 254, 0, 0), 16).expect("valid"),
        "the link-local range (cloud metadata at 169.254.169.254)",
    ),
    (reserved(224, 4), "the multicast range"),
    (
        reserved(240, 4),
        "the reserved range (with the broadcast address 255.255.255.255)",
    ),
];

const fn reserved(first: u8, prefix: u8) -> Ipv4Network {
    Ipv4Network::new_checked(Ipv4Addr::new(first, 0, 0, 0), prefix).expect("valid")
}

/// Checks that a routable subnet touches none of [`RESERVED_RANGES`].
pub fn check_not_reserved(subnet: Ipv4Network) -> Result<(), IpamError> {
    match RESERVED_RANGES
        .iter()
        .find(|(range, _)| overlaps(subnet, *range))
    {
        Some(&(range, what)) => Err(IpamError::SubnetReserved {
            subnet,
            range,
            what,
        }),
        None => Ok(()),
    }
}

/// The network address form of `net` if `net` was written with host bits set.
fn misaligned(net: Ipv4Network) -> Option<Ipv4Network> {
    let network = Ipv4Network::new(net.network(), net.prefix()).expect("prefix already valid");
    (network.ip() != net.ip()).then_some(network)
}

/// Something already using addresses that a routable subnet must avoid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupied {
    /// May carry host bits (a host address such as `192.168.1.5/24` occupies
    /// all of `192.168.1.0/24`).
    pub net: Ipv4Network,
    /// What it is, for the error: "host route 10.0.0.0/8 via eth0",
    /// "host address 192.168.1.5/24", "network web".
    pub what: String,
}

impl fmt::Display for Occupied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Descriptions usually quote their range already; add it only if not.
        if self.what.contains(&self.net.to_string()) {
            f.write_str(&self.what)
        } else {
            write!(f, "{} ({})", self.what, self.net)
        }
    }
}

/// Whether two networks share any address. Host bits are ignored.
pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.network() <= b.broadcast() && b.network() <= a.broadcast()
}

/// A default route (prefix 0) overlaps every subnet, yet it does not stop one
/// from being routed: more specific routes win. So collisions skip it.
fn is_default_route(net: Ipv4Network) -> bool {
    net.prefix() == 0
}

/// The first of `entries` whose range (`net_of`) shares an address with
/// `range`, default routes aside: the one overlap check, for routable
/// subnets against what is occupied and for the configured pools against
/// the host (`Config::check_host_conflicts`).
pub fn first_overlap<T>(
    range: Ipv4Network,
    entries: impl IntoIterator<Item = T>,
    net_of: impl Fn(&T) -> Ipv4Network,
) -> Option<T> {
    entries.into_iter().find(|entry| {
        let net = net_of(entry);
        !is_default_route(net) && overlaps(range, net)
    })
}

fn first_collision(subnet: Ipv4Network, occupied: &[Occupied]) -> Option<&Occupied> {
    first_overlap(subnet, occupied, |entry| entry.net)
}

/// Checks that a routable `subnet` overlaps none of `occupied` (host routes,
/// host addresses, other routable networks, netd's own links), default routes
/// aside.
pub fn check_subnet_free(subnet: Ipv4Network, occupied: &[Occupied]) -> Result<(), IpamError> {
    match first_collision(subnet, occupied) {
        Some(occupant) => Err(IpamError::SubnetTaken {
            subnet,
            occupant: occupant.clone(),
        }),
        None => Ok(()),
    }
}

/// The first /24 of `pool`, in address order, that overlaps none of
/// `occupied` (default routes aside).
pub fn pick_auto_subnet(
    pool: Ipv4Network,
    occupied: &[Occupied],
) -> Result<Ipv4Network, IpamError> {
    if pool.prefix() > AUTO_SUBNET_PREFIX {
        return Err(IpamError::AutoSubnetPoolTooSmall { pool });
    }
    let step = 1u64 << (32 - AUTO_SUBNET_PREFIX);
    let end = u64::from(u32::from(pool.broadcast()));
    let mut candidate = u64::from(u32::from(pool.network()));
    while candidate <= end {
        let subnet = auto_subnet_at(candidate);
        match first_collision(subnet, occupied) {
            None => return Ok(subnet),
            // Jump past the whole occupant (a /8 route covers 65,536 /24s)
            // to the next /24 boundary after it.
            Some(occupant) => {
                let past = u64::from(u32::from(occupant.net.broadcast())) + 1;
                candidate = past.div_ceil(step) * step;
            }
        }
    }
    Err(IpamError::AutoSubnetPoolExhausted { pool })
}

fn auto_subnet_at(addr: u64) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::from(addr as u32), AUTO_SUBNET_PREFIX).expect("24 is a valid prefix")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Network {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn default_pool() -> UplinkPool {
        UplinkPool::new(crate::config::DEFAULT_UPLINK_POOL).unwrap()
    }

    fn occupied(cidr: &str, what: &str) -> Occupied {
        Occupied {
            net: net(cidr),
            what: what.to_owned(),
        }
    }

    fn slash24() -> Ipv4Network {
        net("172.18.0.0/24")
    }

    // --- uplinks

    #[test]
    fn default_uplink_pool_links_2048_networks() {
        assert_eq!(default_pool().capacity(), 2048);
    }

    #[test]
    fn uplink_slot_addresses_are_the_first_two_hosts_of_its_slash30() {
        let pool = default_pool();
        assert_eq!(
            pool.addresses(0).unwrap(),
            UplinkAddrs {
                gateway_side: net("172.18.192.1/30"),
                network_side: net("172.18.192.2/30"),
            }
        );
        assert_eq!(
            pool.addresses(2047).unwrap(),
            UplinkAddrs {
                gateway_side: net("172.18.223.253/30"),
                network_side: net("172.18.223.254/30"),
            }
        );
    }

    #[test]
    fn uplink_slot_beyond_the_pool_is_an_error_naming_the_pool() {
        let err = default_pool().addresses(2048).unwrap_err();
        assert!(matches!(
            err,
            IpamError::UplinkSlotOutsidePool { slot: 2048, .. }
        ));
        assert!(err.to_string().contains("172.18.192.0/19"));
    }

    #[test]
    fn uplink_pool_must_hold_between_one_and_32768_slots() {
        assert!(UplinkPool::new(net("10.0.0.0/30")).is_ok());
        assert!(UplinkPool::new(net("10.0.0.0/15")).is_ok());
        for too_big_or_small in ["10.0.0.0/14", "10.0.0.0/31", "10.0.0.0/32"] {
            let err = UplinkPool::new(net(too_big_or_small)).unwrap_err();
            assert!(
                matches!(err, IpamError::UplinkPoolSize { .. }),
                "{too_big_or_small}"
            );
            assert!(err.to_string().contains("uplink_pool"));
        }
    }

    #[test]
    fn uplink_pool_with_host_bits_is_refused_with_the_network_address() {
        let err = UplinkPool::new(net("172.18.192.7/19")).unwrap_err();
        assert!(
            err.to_string().contains("did you mean 172.18.192.0/19"),
            "{err}"
        );
    }

    #[test]
    fn uplink_allocation_starts_at_slot_zero() {
        assert_eq!(default_pool().allocate(&BTreeSet::new(), None), Ok(0));
    }

    #[test]
    fn uplink_allocation_continues_after_the_cursor_even_when_lower_slots_are_free() {
        let used = BTreeSet::from([5]);
        assert_eq!(default_pool().allocate(&used, Some(3)), Ok(4));
        assert_eq!(default_pool().allocate(&used, Some(4)), Ok(6));
    }

    #[test]
    fn uplink_allocation_wraps_around_to_free_slots_below_the_cursor() {
        let pool = UplinkPool::new(net("10.0.0.0/28")).unwrap(); // 4 slots
        let used = BTreeSet::from([0, 2, 3]);
        assert_eq!(pool.allocate(&used, Some(2)), Ok(1));
        assert_eq!(pool.allocate(&BTreeSet::new(), Some(3)), Ok(0));
    }

    #[test]
    fn uplink_allocation_finds_the_last_free_slot_of_a_full_default_pool() {
        let pool = default_pool();
        let used: BTreeSet<u16> = (0..2048).filter(|&slot| slot != 17).collect();
        assert_eq!(pool.allocate(&used, Some(2000)), Ok(17));
    }

    #[test]
    fn uplink_allocation_fails_when_full_with_a_message_naming_the_limit() {
        let pool = default_pool();
        let used: BTreeSet<u16> = (0..2048).collect();
        let err = pool.allocate(&used, Some(100)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "all 2048 network uplinks of 172.18.192.0/19 are in use: remove a network or \
             widen `uplink_pool` in netd.toml"
        );
    }

    #[test]
    fn uplink_allocation_ignores_used_slots_outside_a_narrowed_pool() {
        let pool = UplinkPool::new(net("10.0.0.0/29")).unwrap(); // 2 slots
        let used = BTreeSet::from([0, 5000]);
        assert_eq!(pool.allocate(&used, None), Ok(1));
    }

    // --- guest addresses

    #[test]
    fn bridge_takes_the_last_usable_host_of_the_subnet() {
        assert_eq!(bridge_ip(slash24()), ip("172.18.0.254"));
        assert_eq!(bridge_ip(net("10.1.0.0/16")), ip("10.1.255.254"));
        assert_eq!(bridge_ip(net("10.1.0.8/29")), ip("10.1.0.14"));
    }

    #[test]
    fn a_slash24_holds_253_guests_and_a_slash29_five() {
        assert_eq!(guest_capacity(slash24()), 253);
        assert_eq!(guest_capacity(net("10.0.0.0/29")), 5);
    }

    #[test]
    fn first_guest_gets_dot_one() {
        let first = allocate_guest_ip("web", slash24(), &BTreeSet::new(), None);
        assert_eq!(first, Ok(ip("172.18.0.1")));
    }

    #[test]
    fn guest_allocation_continues_after_the_cursor_even_when_lower_addresses_are_free() {
        let used = BTreeSet::from([ip("172.18.0.8")]);
        let next = allocate_guest_ip("web", slash24(), &used, Some(ip("172.18.0.7")));
        assert_eq!(next, Ok(ip("172.18.0.9")));
    }

    #[test]
    fn guest_allocation_wraps_around_to_free_addresses_below_the_cursor() {
        let used = BTreeSet::from([ip("172.18.0.1"), ip("172.18.0.253")]);
        let next = allocate_guest_ip("web", slash24(), &used, Some(ip("172.18.0.252")));
        assert_eq!(next, Ok(ip("172.18.0.2")));
    }

    #[test]
    fn guest_allocation_restarts_at_dot_one_when_the_cursor_is_not_a_guest_address() {
        for stale in ["10.9.9.9", "172.18.0.0", "172.18.0.254", "172.18.0.255"] {
            let next = allocate_guest_ip("web", slash24(), &BTreeSet::new(), Some(ip(stale)));
            assert_eq!(next, Ok(ip("172.18.0.1")), "cursor {stale}");
        }
    }

    #[test]
    fn guest_allocation_never_hands_out_network_broadcast_or_bridge_address() {
        let subnet = net("10.0.0.0/29");
        let mut used = BTreeSet::new();
        let mut cursor = None;
        while let Ok(next) = allocate_guest_ip("tiny", subnet, &used, cursor) {
            assert_eq!(reserved_role(subnet, next), None, "{next}");
            assert!(subnet.contains(next));
            assert!(used.insert(next), "{next} handed out twice");
            cursor = Some(next);
        }
        let expected: BTreeSet<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(used, expected);
    }

    #[test]
    fn the_254th_guest_is_refused_with_a_message_naming_the_limit() {
        let mut used = BTreeSet::new();
        let mut cursor = None;
        for _ in 0..253 {
            let next = allocate_guest_ip("web", slash24(), &used, cursor).unwrap();
            used.insert(next);
            cursor = Some(next);
        }
        let err = allocate_guest_ip("web", slash24(), &used, cursor).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network web has no free address: all 253 guest addresses of 172.18.0.0/24 are \
             taken; remove a guest or create the network with a larger --subnet"
        );
    }

    #[test]
    fn a_free_address_inside_the_subnet_is_accepted() {
        assert_eq!(check_guest_ip(slash24(), ip("172.18.0.5"), None), Ok(()));
        assert_eq!(check_guest_ip(slash24(), ip("172.18.0.253"), None), Ok(()));
    }

    #[test]
    fn an_address_outside_the_subnet_is_refused_with_the_usable_range() {
        let err = check_guest_ip(slash24(), ip("172.18.1.5"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest address 172.18.1.5 is outside the network's subnet 172.18.0.0/24: pick one \
             from 172.18.0.1 to 172.18.0.253, or leave it out to get a free one"
        );
    }

    #[test]
    fn reserved_addresses_are_refused_naming_what_they_are() {
        let cases = [
            ("172.18.0.0", "network address"),
            ("172.18.0.255", "broadcast address"),
            ("172.18.0.254", "bridge address"),
        ];
        for (addr, role) in cases {
            let err = check_guest_ip(slash24(), ip(addr), None).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "guest address {addr} is the {role} of 172.18.0.0/24: pick one from \
                     172.18.0.1 to 172.18.0.253, or leave it out to get a free one"
                )
            );
        }
    }

    #[test]
    fn an_address_in_use_is_refused_naming_the_guest_holding_it() {
        let err = check_guest_ip(slash24(), ip("172.18.0.5"), Some("web1")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("guest address 172.18.0.5 is already used by guest web1"),
            "{err}"
        );
    }

    // --- subnets

    #[test]
    fn cidr_text_parses() {
        assert_eq!(parse_subnet("10.20.0.0/24"), Ok(net("10.20.0.0/24")));
        assert_eq!(parse_subnet(" 10.20.0.0/24\n"), Ok(net("10.20.0.0/24")));
    }

    #[test]
    fn garbage_cidr_text_is_refused_with_an_example() {
        for garbage in [
            "x",
            "",
            "10.20.0.0",
            "10.20.0.0/33",
            "10.20.0/24",
            "10.20.0.0/24/1",
            "::/0",
        ] {
            let err = parse_subnet(garbage).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("bad CIDR {garbage:?}: write it as A.B.C.D/N, e.g. 10.20.0.0/24")
            );
        }
    }

    #[test]
    fn subnet_prefixes_from_16_to_29_are_accepted() {
        for prefix in 16..=29 {
            let subnet = Ipv4Network::new(Ipv4Addr::new(10, 0, 0, 0), prefix).unwrap();
            assert_eq!(validate_subnet(subnet), Ok(()), "/{prefix}");
        }
    }

    #[test]
    fn subnets_too_large_or_too_small_are_refused_saying_which() {
        let err = validate_subnet(net("10.0.0.0/8")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("subnet 10.0.0.0/8 is too large: use a prefix from /16 to /29")
        );
        let err = validate_subnet(net("10.0.0.0/30")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("subnet 10.0.0.0/30 is too small: use a prefix from /16 to /29")
        );
    }

    #[test]
    fn a_subnet_with_host_bits_is_refused_suggesting_its_network_address() {
        let err = validate_subnet(net("172.18.0.5/24")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "172.18.0.5/24 is not a network address: did you mean 172.18.0.0/24?"
        );
    }

    #[test]
    fn overlap_is_symmetric_and_ignores_host_bits() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.0/24", true),
            ("10.0.0.0/24", "10.0.1.0/24", false),
            ("10.0.0.0/23", "10.0.1.0/24", true),
            ("192.168.1.5/24", "192.168.1.0/28", true),
            ("192.168.1.5/32", "192.168.1.0/29", true),
            ("192.168.1.9/32", "192.168.1.0/29", false),
            ("0.0.0.0/0", "1.2.3.0/24", true),
            ("255.255.255.0/24", "255.255.255.255/32", true),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlaps(net(a), net(b)), expected, "{a} vs {b}");
            assert_eq!(overlaps(net(b), net(a)), expected, "{b} vs {a}");
        }
    }

    #[test]
    fn a_subnet_overlapping_nothing_is_free() {
        let taken = [occupied("10.0.0.0/8", "host route 10.0.0.0/8 via eth0")];
        assert_eq!(check_subnet_free(net("172.18.0.0/24"), &taken), Ok(()));
    }

    #[test]
    fn a_subnet_overlapping_a_host_route_is_refused_naming_the_route() {
        let taken = [
            occupied("0.0.0.0/0", "default route via eth0"),
            occupied("10.0.0.0/8", "host route 10.0.0.0/8 via eth0"),
        ];
        let err = check_subnet_free(net("10.1.0.0/24"), &taken).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 10.1.0.0/24 overlaps host route 10.0.0.0/8 via eth0: choose a --subnet \
             that overlaps nothing, or pass --subnet auto to get a free one"
        );
    }

    #[test]
    fn a_subnet_overlapping_another_network_is_refused_naming_it_and_its_range() {
        let taken = [occupied("10.1.0.0/24", "network web")];
        let err = check_subnet_free(net("10.1.0.0/16"), &taken).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("subnet 10.1.0.0/16 overlaps network web (10.1.0.0/24):"),
            "{err}"
        );
    }

    #[test]
    fn subnet_collision_checks_ignore_the_default_route() {
        let taken = [occupied("0.0.0.0/0", "default route via eth0")];
        assert_eq!(check_subnet_free(net("10.1.0.0/24"), &taken), Ok(()));
    }

    #[test]
    fn auto_subnet_takes_the_first_slash24_of_an_empty_pool() {
        assert_eq!(pick_auto_subnet(net("172.18.0.0/16"), &[]), Ok(slash24()));
    }

    #[test]
    fn auto_subnet_skips_host_routes_and_ignores_the_default_route() {
        let taken = [
            occupied("0.0.0.0/0", "default route via eth0"),
            occupied("172.18.0.0/23", "host route 172.18.0.0/23 via docker0"),
            occupied("172.18.2.7/24", "host address 172.18.2.7/24"),
            occupied("172.18.4.0/24", "network web"),
        ];
        assert_eq!(
            pick_auto_subnet(net("172.18.0.0/16"), &taken),
            Ok(net("172.18.3.0/24"))
        );
    }

    #[test]
    fn auto_subnet_jumps_over_wide_routes_in_address_order() {
        let taken = [
            occupied("10.0.0.0/9", "host route 10.0.0.0/9 via eth1"),
            occupied("10.128.0.5/32", "host address 10.128.0.5/32"),
        ];
        assert_eq!(
            pick_auto_subnet(net("10.0.0.0/8"), &taken),
            Ok(net("10.128.1.0/24"))
        );
    }

    #[test]
    fn auto_subnet_from_a_pool_ending_at_the_top_of_the_address_space_does_not_overflow() {
        let pool = net("255.255.254.0/23");
        let taken = [occupied("255.255.254.0/24", "network a")];
        assert_eq!(pick_auto_subnet(pool, &taken), Ok(net("255.255.255.0/24")));
        let full = [occupied("255.255.255.0/24", "network b"), taken[0].clone()];
        assert!(pick_auto_subnet(pool, &full).is_err());
    }

    #[test]
    fn an_exhausted_auto_subnet_pool_is_an_error_suggesting_subnet_or_a_wider_pool() {
        let taken = [occupied(
            "172.18.0.0/16",
            "host route 172.18.0.0/16 via br0",
        )];
        let err = pick_auto_subnet(net("172.18.0.0/22"), &taken).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("172.18.0.0/22"), "{message}");
        assert!(message.contains("--subnet CIDR"), "{message}");
        assert!(message.contains("widen `auto_subnet_pool`"), "{message}");
    }

    #[test]
    fn an_auto_subnet_pool_smaller_than_a_slash24_is_refused() {
        let err = pick_auto_subnet(net("172.18.0.0/25"), &[]).unwrap_err();
        assert_eq!(
            err,
            IpamError::AutoSubnetPoolTooSmall {
                pool: net("172.18.0.0/25")
            }
        );
    }

    #[test]
    fn ipam_errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<IpamError>();
    }

    #[test]
    fn reserved_ranges_are_refused_as_routable_subnets() {
        for (cidr, what) in [
            ("0.0.0.0/16", "this network"),
            ("127.1.0.0/16", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("169.254.169.0/24", "cloud metadata"),
            ("224.0.0.0/24", "multicast"),
            ("240.0.0.0/24", "reserved"),
            ("255.255.255.0/24", "255.255.255.255"),
        ] {
            let err = check_not_reserved(net(cidr)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(what), "{cidr}: {text}");
            assert!(text.contains("choose a private range"), "{text}");
        }
        for ok in [
            "10.20.0.0/24",
            "172.16.0.0/16",
            "192.168.5.0/24",
            "100.64.0.0/24",
        ] {
            check_not_reserved(net(ok)).unwrap();
        }
    }
}
