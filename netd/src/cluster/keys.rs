//! Where netd keeps the cluster's state in etcd: one home for every key.
//! Everything lives under `/netd/v1/`, so an etcd shared with other users
//! is not disturbed and a later layout can live beside this one.

/// The root of netd's keys.
pub const ROOT: &str = "/netd/v1/";

/// Prefix of node registrations (each under its node's lease).
pub const NODES: &str = "/netd/v1/nodes/";
/// Prefix of spanned networks' definitions.
pub const NETWORKS: &str = "/netd/v1/networks/";
/// Prefix of spanned networks' allocation tables (guests, addresses, slots).
pub const GUESTS: &str = "/netd/v1/guests/";
/// Prefix of the VNIs taken, one key each, so that two networks created at
/// once never share one.
pub const VNIS: &str = "/netd/v1/vnis/";

/// Node `name`'s registration.
pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// Spanned network `name`'s definition.
pub fn network(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

/// Spanned network `name`'s allocation table: every guest on every node,
/// replaced whole by compare-and-swap.
pub fn guests(network: &str) -> String {
    format!("{GUESTS}{network}")
}

/// Prefix of spanned networks' partitions.
pub const PARTITIONS: &str = "/netd/v1/partitions/";
/// Prefix of what each node applied of them.
pub const APPLIED: &str = "/netd/v1/applied/";

/// Spanned network `name`'s partition: one write sets it for every node.
pub fn partition(network: &str) -> String {
    format!("{PARTITIONS}{network}")
}

/// The prefix of the nodes' applied revisions of `network`'s partition.
pub fn applied_of(network: &str) -> String {
    format!("{APPLIED}{network}/")
}

/// Node `node`'s applied revision of `network`'s partition.
pub fn applied(network: &str, node: &str) -> String {
    format!("{}{node}", applied_of(network))
}

/// Prefix of verify rounds of spanned networks: a round's key is
/// `verify/NET/TOKEN`, each node's answer `verify/NET/TOKEN/NODE`, all
/// under a lease of their own (gone in 30 s).
pub const VERIFY: &str = "/netd/v1/verify/";

/// The key of `network`'s verify round `token`.
pub fn verify_round(network: &str, token: u64) -> String {
    format!("{VERIFY}{network}/{token:016x}")
}

/// The prefix of the answers to a verify round.
pub fn verify_answers(network: &str, token: u64) -> String {
    format!("{}/", verify_round(network, token))
}

/// The network of a verify round's key (None for an answer's or another
/// key).
pub fn round_network(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(VERIFY)?;
    let (network, token) = rest.split_once('/')?;
    (!token.contains('/') && !token.is_empty()).then_some(network)
}

/// The key that holds `vni` taken.
pub fn vni(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

/// The name at the end of a key under `prefix` (None for another prefix).
pub fn name_under<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|name| !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verify_rounds_key_is_told_from_its_answers() {
        let round = verify_round("web", 0xab);
        assert_eq!(round_network(&round), Some("web"));
        let answer = format!("{}node2", verify_answers("web", 0xab));
        assert_eq!(round_network(&answer), None);
        assert_eq!(round_network(&partition("web")), None);
    }

    #[test]
    fn keys_round_trip_to_their_names() {
        assert_eq!(name_under(NODES, &node("n1")), Some("n1"));
        assert_eq!(name_under(NETWORKS, &network("web")), Some("web"));
        assert_eq!(name_under(GUESTS, &guests("web")), Some("web"));
        assert_eq!(name_under(NODES, &network("web")), None);
        assert_eq!(vni(7), "/netd/v1/vnis/7");
        assert_eq!(
            name_under(&applied_of("web"), &applied("web", "n1")),
            Some("n1")
        );
        assert_eq!(name_under(PARTITIONS, &applied("web", "n1")), None);
    }

    #[test]
    fn every_prefix_is_under_the_root() {
        for prefix in [NODES, NETWORKS, GUESTS, VNIS, PARTITIONS, APPLIED] {
            assert!(
                prefix.starts_with(ROOT) && prefix.ends_with('/'),
                "{prefix}"
            );
        }
    }
}
