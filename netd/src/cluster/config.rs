//! The three cluster settings (`cluster_endpoints`, `node`,
//! `underlay_address`), checked together: all of them or none.

use std::net::Ipv4Addr;

/// Where this node's cluster is and who this node is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs, `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// The address other nodes send this node's VXLAN traffic to.
    pub underlay: Ipv4Addr,
    /// The UDP port this node answers the underlay probe on.
    pub probe_port: u16,
}

/// The longest node name: it is part of etcd keys and of `node ls`, and
/// short names keep both readable.
pub const MAX_NODE_NAME_LEN: usize = 32;

/// A setting that is wrong: (setting, value, problem and fix).
pub type SettingError = (&'static str, String, String);

impl ClusterConfig {
    /// None when no cluster setting is given (a single host).
    pub fn from_settings(
        endpoints: &[String],
        node: Option<&str>,
        underlay: Option<Ipv4Addr>,
        probe_port: u16,
    ) -> Result<Option<ClusterConfig>, SettingError> {
        if endpoints.is_empty() && node.is_none() && underlay.is_none() {
            return Ok(None);
        }
        let missing = |setting: &'static str, flag: &str| {
            (
                setting,
                "(not set)".to_owned(),
                format!(
                    "a cluster node needs all of cluster_endpoints, node and underlay_address: \
                     set {setting} (or give `netd daemon {flag}`), or remove the other cluster \
                     settings to run a single host"
                ),
            )
        };
        if endpoints.is_empty() {
            return Err(missing("cluster_endpoints", "--cluster-endpoints URL,..."));
        }
        let Some(node) = node else {
            return Err(missing("node", "--node NAME"));
        };
        let Some(underlay) = underlay else {
            return Err(missing("underlay_address", "--underlay-address IP"));
        };
        for endpoint in endpoints {
            check_endpoint(endpoint)?;
        }
        check_node_name(node)?;
        if underlay.is_unspecified() || underlay.is_loopback() || underlay.is_multicast() {
            return Err((
                "underlay_address",
                underlay.to_string(),
                "must be a unicast address of this host that the other nodes reach".to_owned(),
            ));
        }
        if probe_port == 0 || probe_port == super::vxlan::VXLAN_PORT {
            return Err((
                "underlay_probe_port",
                probe_port.to_string(),
                format!(
                    "must be a UDP port other than 0 and VXLAN's {}: leave it out for {}",
                    super::vxlan::VXLAN_PORT,
                    super::probe::DEFAULT_PROBE_PORT
                ),
            ));
        }
        Ok(Some(ClusterConfig {
            endpoints: endpoints.to_vec(),
            node: node.to_owned(),
            underlay,
            probe_port,
        }))
    }
}

/// `http://HOST:PORT`: etcd's client URL form (TLS is not supported yet).
fn check_endpoint(endpoint: &str) -> Result<(), SettingError> {
    let bad = |problem: &str| {
        Err((
            "cluster_endpoints",
            format!("{endpoint:?}"),
            format!("{problem}: write each as http://HOST:PORT, e.g. http://10.0.0.1:2379"),
        ))
    };
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return bad("is not an http:// URL (TLS endpoints are not supported yet)");
    };
    let Some((host, port)) = rest.trim_end_matches('/').rsplit_once(':') else {
        return bad("has no port");
    };
    if host.is_empty() || host.contains('/') {
        return bad("has no host");
    }
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad("has a port that is not 1-65535");
    }
    Ok(())
}

/// Node names: a-z, 0-9 and '-', starting with a letter or digit.
pub fn check_node_name(name: &str) -> Result<(), SettingError> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > MAX_NODE_NAME_LEN || !plain || name.starts_with('-') {
        return Err((
            "node",
            format!("{name:?}"),
            format!(
                "must be 1-{MAX_NODE_NAME_LEN} characters of a-z, 0-9 and '-', not starting \
                 with '-', e.g. \"node1\""
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Vec<String> {
        vec!["http://10.0.0.1:2379".to_owned()]
    }

    const UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const PORT: u16 = crate::cluster::probe::DEFAULT_PROBE_PORT;

    #[test]
    fn the_probe_port_is_neither_zero_nor_vxlans() {
        for bad in [0, 4789] {
            let (setting, value, problem) =
                ClusterConfig::from_settings(&endpoints(), Some("n1"), Some(UNDERLAY), bad)
                    .unwrap_err();
            assert_eq!(setting, "underlay_probe_port");
            assert_eq!(value, bad.to_string());
            assert!(problem.contains("4790"), "{problem}");
        }
        let config = ClusterConfig::from_settings(&endpoints(), Some("n1"), Some(UNDERLAY), 5000)
            .unwrap()
            .unwrap();
        assert_eq!(config.probe_port, 5000);
    }

    #[test]
    fn no_cluster_setting_is_a_single_host() {
        assert_eq!(
            ClusterConfig::from_settings(&[], None, None, PORT),
            Ok(None)
        );
    }

    #[test]
    fn all_three_settings_make_a_node() {
        let config = ClusterConfig::from_settings(&endpoints(), Some("n1"), Some(UNDERLAY), PORT)
            .unwrap()
            .unwrap();
        assert_eq!(config.node, "n1");
        assert_eq!(config.underlay, UNDERLAY);
    }

    #[test]
    fn a_missing_setting_is_named_with_its_flag() {
        let (setting, _, problem) =
            ClusterConfig::from_settings(&endpoints(), None, Some(UNDERLAY), PORT).unwrap_err();
        assert_eq!(setting, "node");
        assert!(problem.contains("--node NAME"), "{problem}");
        let (setting, _, _) =
            ClusterConfig::from_settings(&[], Some("n1"), None, PORT).unwrap_err();
        assert_eq!(setting, "cluster_endpoints");
        let (setting, _, problem) =
            ClusterConfig::from_settings(&endpoints(), Some("n1"), None, PORT).unwrap_err();
        assert_eq!(setting, "underlay_address");
        assert!(problem.contains("--underlay-address"), "{problem}");
    }

    #[test]
    fn endpoints_must_be_http_urls_with_a_port() {
        for bad in [
            "10.0.0.1:2379",
            "https://a:2379",
            "http://a",
            "http://:1",
            "http://a:0",
        ] {
            let (setting, value, problem) =
                ClusterConfig::from_settings(&[bad.to_owned()], Some("n1"), Some(UNDERLAY), PORT)
                    .unwrap_err();
            assert_eq!(setting, "cluster_endpoints", "{bad}");
            assert!(value.contains(bad), "{value}");
            assert!(problem.contains("http://HOST:PORT"), "{problem}");
        }
    }

    #[test]
    fn node_names_are_short_and_plain() {
        for bad in ["", "Node1", "-n", "n_1", &"n".repeat(MAX_NODE_NAME_LEN + 1)] {
            assert_eq!(check_node_name(bad).unwrap_err().0, "node", "{bad:?}");
        }
        check_node_name("node-1").unwrap();
    }

    #[test]
    fn the_underlay_must_be_unicast() {
        for bad in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(239, 1, 1, 1),
        ] {
            let (setting, _, _) =
                ClusterConfig::from_settings(&endpoints(), Some("n1"), Some(bad), PORT)
                    .unwrap_err();
            assert_eq!(setting, "underlay_address");
        }
    }
}
