//! Request and response bodies of the HTTP/JSON API, shared by the daemon and
//! the CLI.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dataplane::Proto;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CreateNetwork {
    pub name: String,
    /// None: the default (overlapping, not routable) subnet; "auto": the first
    /// free /24 of the auto pool; else a CIDR.
    #[serde(default)]
    pub subnet: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AddGuest {
    pub name: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// A guest as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GuestView {
    pub network: String,
    pub name: String,
    pub ip: String,
    /// The namespace path `ip netns`/`nsenter` can use.
    pub netns: PathBuf,
    pub owned_netns: bool,
    pub bridge_port: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AddPort {
    /// `[HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp]`: see `ports`.
    pub spec: String,
}

/// A published port as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PortView {
    pub network: String,
    pub guest: String,
    /// Where the traffic goes (the address alone, no prefix).
    pub guest_ip: String,
    /// The canonical spec: what `netd port rm` takes back.
    pub spec: String,
    /// None: any host address.
    pub host_ip: Option<String>,
    /// `8080` or `8000-8010`.
    pub host_ports: String,
    pub guest_ports: String,
    pub proto: Proto,
}

/// A network as listings show it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NetworkView {
    pub name: String,
    pub subnet: String,
    pub routable: bool,
    pub bridge_ip: String,
    pub uplink: String,
    pub netns: String,
    pub guests: Vec<GuestView>,
}

/// What `cleanup` removed.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct CleanupReport {
    pub removed: Vec<String>,
}
