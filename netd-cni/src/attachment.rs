//! One CNI attachment (a container ID and an interface name) as a netd
//! guest: its name, derived from both so that ADD, CHECK and DEL find the
//! same guest without state of their own, and the labels that mark it as
//! the plugin's, so that GC removes only what the plugin made. Pure.

use netd::{daemon::requests::GuestView, labels::Labels};

use crate::conf::Attachment;

/// Every attachment's guest name starts with this.
pub const NAME_PREFIX: &str = "cni-";
pub const LABEL_CONTAINER: &str = "cni.container_id";
pub const LABEL_IFNAME: &str = "cni.ifname";
/// The network configuration's `name`: GC of one configuration leaves
/// another's attachments on the same netd network alone.
pub const LABEL_CONFIG: &str = "cni.config";

/// `cni-<up to 12 characters of the container ID>-<10 hex digits of a hash
/// of ID and interface>`: at most 27 bytes, a valid netd guest name for any
/// container ID, readable in `netd guest ls`.
pub fn guest_name(container_id: &str, ifname: &str) -> String {
    let readable: String = container_id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(12)
        .collect();
    let hash = fnv1a(&[container_id.as_bytes(), b"/", ifname.as_bytes()]);
    format!("{NAME_PREFIX}{readable}-{:010x}", hash & 0xff_ffff_ffff)
}

/// FNV-1a, 64 bits: stable across versions and machines (the name must be
/// the same at DEL as it was at ADD).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

pub fn labels(container_id: &str, ifname: &str, config: &str) -> Labels {
    Labels::from([
        (LABEL_CONTAINER.to_owned(), container_id.to_owned()),
        (LABEL_IFNAME.to_owned(), ifname.to_owned()),
        (LABEL_CONFIG.to_owned(), config.to_owned()),
    ])
}

/// Whether `guest` is the plugin's attachment for this container and
/// interface (its labels say so, not only its name).
pub fn is_attachment(guest: &GuestView, container_id: &str, ifname: &str) -> bool {
    guest.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(container_id)
        && guest.labels.get(LABEL_IFNAME).map(String::as_str) == Some(ifname)
}

/// GC: the guests of configuration `config` that the plugin made and whose
/// attachment the runtime no longer has.
pub fn stale<'a>(
    guests: &'a [GuestView],
    config: &str,
    valid: &[Attachment],
) -> Vec<&'a GuestView> {
    guests
        .iter()
        .filter(|g| g.labels.get(LABEL_CONFIG).map(String::as_str) == Some(config))
        .filter(|g| {
            let (Some(id), Some(ifname)) =
                (g.labels.get(LABEL_CONTAINER), g.labels.get(LABEL_IFNAME))
            else {
                return false;
            };
            !valid
                .iter()
                .any(|a| &a.container_id == id && &a.ifname == ifname)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use netd::model::{NameKind, validate_name};

    use super::*;

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let id = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f";
        let name = guest_name(id, "eth0");
        assert_eq!(name, guest_name(id, "eth0"), "deterministic");
        assert!(name.starts_with("cni-3f4e5a6b7c8d-"), "{name}");
        assert_eq!(name.len(), 27);
        assert_ne!(name, guest_name(id, "eth1"));
        assert_ne!(guest_name("a", "eth0"), guest_name("b", "eth0"));
        // Fixed: a change of the derivation would orphan every attachment.
        assert_eq!(guest_name("ctr1", "eth0"), "cni-ctr1-759a1dde65");
        for odd in ["A.B_C-D", "...", "x", &"9".repeat(200)] {
            let name = guest_name(odd, "eth0");
            assert_eq!(validate_name(NameKind::Guest, &name), Ok(()), "{name}");
        }
    }

    fn view(name: &str, labels: Labels) -> GuestView {
        GuestView {
            network: "web".into(),
            name: name.into(),
            ip: "172.18.0.1/24".into(),
            netns: "/run/netns/x".into(),
            owned_netns: false,
            bridge_port: "g-x".into(),
            labels,
            mac: "02:00:00:00:00:01".into(),
            nameserver: "172.18.0.254".into(),
            interface: "eth0".into(),
            connected_from: None,
        }
    }

    #[test]
    fn gc_removes_only_its_own_stale_attachments() {
        let guests = vec![
            view("kept", labels("a", "eth0", "netd-web")),
            view("stale", labels("b", "eth0", "netd-web")),
            view("other-config", labels("c", "eth0", "other")),
            view("by-hand", Labels::new()),
            view("cni-looks-like-one", Labels::new()),
        ];
        let valid = [Attachment {
            container_id: "a".into(),
            ifname: "eth0".into(),
        }];
        let names: Vec<_> = stale(&guests, "netd-web", &valid)
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(names, ["stale"]);
        assert!(is_attachment(&guests[0], "a", "eth0"));
        assert!(!is_attachment(&guests[0], "a", "eth1"));
        assert!(!is_attachment(&guests[4], "a", "eth0"));
    }
}
