//! Interface names: the fixed ones inside netd's namespaces, the ones netd
//! derives (gateway and bridge ports), and the one check of a name
//! ([`validate_ifname`], plus [`unquotable_char`] for names written into nft
//! rules). Linux caps them at 15 bytes (IFNAMSIZ - 1) and refuses a
//! duplicate within a namespace, so every name netd makes is derived to fit
//! and to be unique where it lives.

use std::collections::BTreeSet;

use thiserror::Error;

/// The longest interface name Linux takes: IFNAMSIZ (16) less the NUL.
pub const IFNAMSIZ_MAX: usize = 15;

/// Fixed interface names inside netd's own namespaces. They cannot collide:
/// each namespace holds one of each. The gateway's veth to the host:
pub const GATEWAY_HOST_SIDE: &str = "host0";
/// A network's veth to the gateway.
pub const NETWORK_UPLINK: &str = "uplink";
/// A network's bridge.
pub const NETWORK_BRIDGE: &str = "br0";
/// Every guest sees its network as `eth0`, whatever its name on the bridge.
pub const GUEST_ETH: &str = "eth0";
/// A network's delay line (a TAP device), while a fault delays packets.
pub const NETWORK_DELAY_LINE: &str = "delay0";

/// Prefix of a delay line's TAP: the eBPF dataplane's one is
/// [`NETWORK_DELAY_LINE`], the nftables dataplane's are one per delaying
/// clause ([`clause_delay_line`]).
const DELAY_LINE_PREFIX: &str = "delay";

/// Prefix of a rate clause's shaper on the nftables dataplane: a veth pair
/// in the network's namespace, `shape<clause>` (its tbf qdisc, where the
/// clause's packets go in) and `shape<clause>-out` (where they come out).
const RATE_SHAPER_PREFIX: &str = "shape";

/// The suffix of a shaper's peer, where its packets come out.
const RATE_SHAPER_OUT: &str = "-out";

/// Prefix of a network's veth end in the gateway namespace.
const GATEWAY_PORT_PREFIX: &str = "nu";

/// Prefix of a guest's veth end on its network's bridge.
const BRIDGE_PORT_PREFIX: &str = "g-";

/// Hex digits of a hashed bridge port name: all that fits after "g-".
const HASH_DIGITS: usize = IFNAMSIZ_MAX - BRIDGE_PORT_PREFIX.len();

/// Why a configured interface name cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IfnameError {
    #[error("interface name is empty: give a name of 1 to {IFNAMSIZ_MAX} bytes")]
    Empty,

    #[error(
        "interface name {name:?} is {len} bytes long: Linux allows at most {IFNAMSIZ_MAX}; \
         choose a shorter name"
    )]
    TooLong { name: String, len: usize },

    #[error(
        "interface name {name:?} is reserved (it means a directory under /sys/class/net): \
         choose another name"
    )]
    Dots { name: String },

    #[error(
        "interface name {name:?} contains {bad:?}: use printable ASCII without '/', ':' or \
         spaces"
    )]
    BadChar { name: String, bad: char },
}

/// The name of network `slot`'s veth end in the gateway namespace: "nu0" to
/// "nu65535". Slots are unique, so these names are too.
pub fn gateway_port(slot: u16) -> String {
    format!("{GATEWAY_PORT_PREFIX}{slot}")
}

/// The nftables dataplane's TAP of delaying clause `class`: "delay0",
/// "delay1"...
pub fn clause_delay_line(class: usize) -> String {
    format!("{DELAY_LINE_PREFIX}{class}")
}

/// Whether `name` is a delay line's TAP ([`NETWORK_DELAY_LINE`] or a
/// [`clause_delay_line`]): a network namespace's link the dataplane owns.
pub fn is_delay_line(name: &str) -> bool {
    name.strip_prefix(DELAY_LINE_PREFIX)
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The veth end of rate clause `class`'s shaper that its packets are sent
/// into (its tbf qdisc): "shape0", "shape1"...
pub fn rate_shaper(class: usize) -> String {
    format!("{RATE_SHAPER_PREFIX}{class}")
}

/// The peer of [`rate_shaper`], where the shaped packets come out.
pub fn rate_shaper_out(class: usize) -> String {
    format!("{RATE_SHAPER_PREFIX}{class}{RATE_SHAPER_OUT}")
}

/// Whether `name` is either end of a rate clause's shaper (see
/// [`rate_shaper`]): a network namespace's link the dataplane owns, not an
/// orphan.
pub fn is_rate_shaper(name: &str) -> bool {
    name.strip_prefix(RATE_SHAPER_PREFIX)
        .map(|rest| rest.strip_suffix(RATE_SHAPER_OUT).unwrap_or(rest))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a gateway port (`nu<slot>`, see [`gateway_port`]), so
/// reconcile can recognise orphans among the gateway's links.
pub fn is_gateway_port(name: &str) -> bool {
    name.strip_prefix(GATEWAY_PORT_PREFIX)
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The name of guest `guest`'s veth end on its network's bridge. `taken` holds
/// the bridge port names of the network's other guests (not this guest's own,
/// or it would be renamed).
///
/// "g-" + the guest name when that fits in 15 bytes, as it is the easiest to
/// read in `ip link`; otherwise "g-" + 13 hex digits of a hash of the name,
/// rehashed with a counter until it is not taken. The same name and the same
/// `taken` always give the same result.
pub fn bridge_port(guest: &str, taken: &BTreeSet<String>) -> String {
    let readable = format!("{BRIDGE_PORT_PREFIX}{guest}");
    let readable = (readable.len() <= IFNAMSIZ_MAX).then_some(readable);
    readable
        .into_iter()
        .chain((0u32..).map(|attempt| hashed_port(guest, attempt)))
        .find(|name| !taken.contains(name))
        .expect("an endless candidate list outlasts any finite taken set")
}

/// "g-" + 13 hex digits of FNV-1a 64 of the guest name, and of the attempt
/// number after the first attempt. The top 52 bits are kept because FNV-1a's
/// multiply spreads every input byte into the high bits, not the low ones.
fn hashed_port(guest: &str, attempt: u32) -> String {
    let hash = if attempt == 0 {
        fnv1a64(&[guest.as_bytes()])
    } else {
        // 0xff appears in no UTF-8 text, so (name, attempt) pairs never alias.
        fnv1a64(&[guest.as_bytes(), &[0xff], &attempt.to_le_bytes()])
    };
    let digits = hash >> (64 - 4 * HASH_DIGITS);
    format!("{BRIDGE_PORT_PREFIX}{digits:0width$x}", width = HASH_DIGITS)
}

/// FNV-1a, 64 bits, over the concatenation of `chunks`: tiny, stable across
/// releases and platforms (unlike `DefaultHasher`), which names need.
fn fnv1a64(chunks: &[&[u8]]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter())
        .fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// Checks a configured interface name (such as the host link) the way the
/// kernel's `dev_valid_name` would, before anything is built with it.
pub fn validate_ifname(name: &str) -> Result<(), IfnameError> {
    if name.is_empty() {
        return Err(IfnameError::Empty);
    }
    if name.len() > IFNAMSIZ_MAX {
        return Err(IfnameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    if name == "." || name == ".." {
        return Err(IfnameError::Dots {
            name: name.to_owned(),
        });
    }
    match name.chars().find(|&c| !is_ifname_char(c)) {
        Some(bad) => Err(IfnameError::BadChar {
            name: name.to_owned(),
            bad,
        }),
        None => Ok(()),
    }
}

/// The first character of `name` that netd cannot write into a quoted nft
/// string unescaped: nftables rules take interface names quoted, and netd
/// keeps to A-Z, a-z, 0-9, '_', '.' and '-' there (its own names always do).
/// On top of [`validate_ifname`] for every name that goes into a rule.
pub fn unquotable_char(name: &str) -> Option<char> {
    let quotable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    name.chars().find(|&c| !quotable(c))
}

/// The kernel refuses '/', ':' (alias syntax) and whitespace; its `isspace`
/// also counts byte 0xa0, which UTF-8 text contains, so only printable ASCII
/// is safe.
fn is_ifname_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '/' && c != ':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_ports() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn gateway_ports_are_nu_and_the_slot() {
        assert_eq!(gateway_port(0), "nu0");
        assert_eq!(gateway_port(2047), "nu2047");
        assert!(gateway_port(u16::MAX).len() <= IFNAMSIZ_MAX);
    }

    #[test]
    fn rate_shapers_are_shape_and_the_clause_and_are_known_by_their_prefix() {
        assert_eq!(rate_shaper(0), "shape0");
        assert_eq!(rate_shaper_out(3), "shape3-out");
        let last = netd_common::partition::MAX_FAULTS - 1;
        for name in [rate_shaper(last), rate_shaper_out(last)] {
            assert_eq!(validate_ifname(&name), Ok(()));
            assert_eq!(unquotable_char(&name), None);
            assert!(is_rate_shaper(&name), "{name}");
        }
        for other in [
            "shape",
            "shape-out",
            "shapex",
            "shape1-in",
            "g-shape1",
            "delay0",
        ] {
            assert!(!is_rate_shaper(other), "{other}");
        }
    }

    #[test]
    fn delay_lines_are_delay_and_the_clause() {
        assert_eq!(clause_delay_line(0), NETWORK_DELAY_LINE);
        assert_eq!(clause_delay_line(2), "delay2");
        assert!(is_delay_line(NETWORK_DELAY_LINE) && is_delay_line("delay3"));
        for other in ["delay", "delayx", "g-delay1", "shape0"] {
            assert!(!is_delay_line(other), "{other}");
        }
    }

    #[test]
    fn short_guest_names_keep_their_name_on_the_bridge() {
        assert_eq!(bridge_port("web1", &no_ports()), "g-web1");
        let thirteen = "abcdefghijklm";
        assert_eq!(bridge_port(thirteen, &no_ports()), format!("g-{thirteen}"));
    }

    #[test]
    fn a_guest_name_one_byte_too_long_is_hashed() {
        let port = bridge_port("abcdefghijklmn", &no_ports());
        assert_eq!(port.len(), IFNAMSIZ_MAX);
        assert!(port.starts_with("g-"));
        assert!(port[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn hashed_names_are_stable_across_calls_and_releases() {
        // Pinned: a change here renames the ports of running guests.
        let long = "a-very-long-guest-name-indeed";
        assert_eq!(bridge_port(long, &no_ports()), hashed_port(long, 0));
        assert_eq!(
            bridge_port(long, &no_ports()),
            bridge_port(long, &no_ports())
        );
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x85944171f73967e8);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    }

    #[test]
    fn long_guest_names_hash_to_fifteen_bytes_without_collisions() {
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("guest-with-a-long-name-{i}"))
            .collect();
        let ports: BTreeSet<String> = names
            .iter()
            .map(|name| bridge_port(name, &no_ports()))
            .inspect(|port| assert!(port.len() <= IFNAMSIZ_MAX, "{port}"))
            .collect();
        assert_eq!(ports.len(), names.len());
    }

    #[test]
    fn a_taken_readable_name_falls_back_to_the_hash() {
        // A guest named like a hash could meet another guest's hashed port.
        let taken = BTreeSet::from(["g-web1".to_owned()]);
        assert_eq!(bridge_port("web1", &taken), hashed_port("web1", 0));
    }

    #[test]
    fn a_taken_hash_is_rehashed_deterministically_until_free() {
        let long = "guest-whose-name-is-long";
        let taken: BTreeSet<String> = (0..3).map(|attempt| hashed_port(long, attempt)).collect();
        let port = bridge_port(long, &taken);
        assert_eq!(port, hashed_port(long, 3));
        assert!(!taken.contains(&port));
        assert_eq!(port.len(), IFNAMSIZ_MAX);
        assert_eq!(bridge_port(long, &taken), port);
    }

    #[test]
    fn ports_handed_out_one_by_one_never_collide() {
        let mut taken = BTreeSet::new();
        let names = (0..2_000)
            .map(|i| format!("g{i}"))
            .chain((0..2_000).map(|i| format!("a-long-guest-name-{i}")));
        for name in names {
            let port = bridge_port(&name, &taken);
            assert!(port.len() <= IFNAMSIZ_MAX);
            assert!(taken.insert(port), "{name} got a taken port");
        }
    }

    #[test]
    fn valid_interface_names_are_accepted() {
        for name in [
            "netd0",
            "a",
            "eth0.100",
            "veth-host_1",
            "x".repeat(15).as_str(),
        ] {
            assert_eq!(validate_ifname(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn interface_names_outside_linux_rules_are_refused() {
        type IsExpected = fn(&IfnameError) -> bool;
        let cases: [(&str, IsExpected); 10] = [
            ("", |e| matches!(e, IfnameError::Empty)),
            ("sixteen-bytes-xx", |e| {
                matches!(e, IfnameError::TooLong { len: 16, .. })
            }),
            (".", |e| matches!(e, IfnameError::Dots { .. })),
            ("..", |e| matches!(e, IfnameError::Dots { .. })),
            ("a/b", |e| {
                matches!(e, IfnameError::BadChar { bad: '/', .. })
            }),
            ("eth0:1", |e| {
                matches!(e, IfnameError::BadChar { bad: ':', .. })
            }),
            ("a b", |e| {
                matches!(e, IfnameError::BadChar { bad: ' ', .. })
            }),
            ("a\tb", |e| {
                matches!(e, IfnameError::BadChar { bad: '\t', .. })
            }),
            ("a\0b", |e| {
                matches!(e, IfnameError::BadChar { bad: '\0', .. })
            }),
            ("né", |e| {
                matches!(e, IfnameError::BadChar { bad: 'é', .. })
            }),
        ];
        for (name, expected) in cases {
            let err = validate_ifname(name).unwrap_err();
            assert!(expected(&err), "{name:?} gave {err:?}");
        }
    }

    #[test]
    fn interface_name_errors_quote_the_name_and_say_the_fix() {
        let err = validate_ifname("sixteen-bytes-xx").unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface name \"sixteen-bytes-xx\" is 16 bytes long: Linux allows at most 15; \
             choose a shorter name"
        );
        let err = validate_ifname("a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface name \"a/b\" contains '/': use printable ASCII without '/', ':' or spaces"
        );
    }

    #[test]
    fn default_names_are_valid_interface_names() {
        assert_eq!(validate_ifname(crate::config::DEFAULT_HOST_LINK), Ok(()));
        for fixed in [GATEWAY_HOST_SIDE, NETWORK_UPLINK, NETWORK_BRIDGE, GUEST_ETH] {
            assert_eq!(validate_ifname(fixed), Ok(()));
        }
    }

    #[test]
    fn ifname_errors_can_cross_threads_and_box_as_std_errors() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<IfnameError>();
    }
}
