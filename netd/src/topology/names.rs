//! Names of the namespaces netd creates, derived from the instance's prefix
//! so that instances never collide and orphans are recognisable. Interface
//! names are `ifname`'s.

#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The one gateway namespace shared by all networks.
    pub fn gateway_ns(&self) -> String {
        format!("{}gw", self.prefix)
    }

    /// Prefix of every network namespace (and of nothing else).
    pub fn network_ns_prefix(&self) -> String {
        format!("{}n-", self.prefix)
    }

    pub fn network_ns(&self, network: &str) -> String {
        format!("{}{network}", self.network_ns_prefix())
    }

    /// Prefix of every guest namespace netd owns.
    pub fn guest_ns_prefix(&self) -> String {
        format!("{}g-", self.prefix)
    }

    /// Guest names are unique only within a network, so the network's name is
    /// part of the namespace name. `.` cannot appear in either name, so the
    /// pair is unambiguous.
    pub fn guest_ns(&self, network: &str, guest: &str) -> String {
        format!("{}{network}.{guest}", self.guest_ns_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_namespaces_of_equal_guest_names_differ_by_network() {
        let names = Names::new("netd-");
        assert_eq!(names.guest_ns("a", "web"), "netd-g-a.web");
        assert_ne!(names.guest_ns("a", "web"), names.guest_ns("b", "web"));
        assert_ne!(names.guest_ns("a-b", "c"), names.guest_ns("a", "b-c"));
    }

    #[test]
    fn every_namespace_carries_the_instance_prefix() {
        let names = Names::new("ndt1234-");
        for ns in [
            names.gateway_ns(),
            names.network_ns("x"),
            names.guest_ns("x", "y"),
        ] {
            assert!(ns.starts_with("ndt1234-"), "{ns}");
        }
    }
}
