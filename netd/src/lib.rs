//! netd: namespaces, veth pairs and bridges over netlink, and a dataplane of
//! TC eBPF programs configured through BPF maps.
//!
//! Layers, each importing only from the ones below it:
//!
//! - `cli` (the binary's subcommands) and `client`, over the API;
//! - `daemon`: the API, the caller check and the `Service` (validate, apply,
//!   persist), which drives
//! - `dataplane`: the `Dataplane` trait and its backends (`ebpf`,
//!   `nftables`), each owning its host side (`hostnat` today), programmed
//!   from the descriptions `topology` hands out;
//! - `topology`: namespaces and links built and torn down over netlink,
//!   with the `*Plumbing` the dataplane programs;
//! - thin effect modules: `netlink`, `netns`, `nft` (run, render, check
//!   nftables scripts), `bpffs`, `store`;
//! - pure vocabulary and decisions, used by every layer above and
//!   unit-tested without root: `model`, `config` (with the defaults),
//!   `ipam`, `mac` (a guest's `--mac`), `mtu` (a network's `--mtu`), `ifname` (every interface name and its one check), `ports`
//!   (forwards, `PortMapping`), `partition` (verbs, `PartitionRules`),
//!   `state_check` (a loaded state checked as strictly as a request).

pub mod bpffs;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod delay;
pub mod dns;
pub mod ifname;
pub mod ipam;
pub mod labels;
pub mod mac;
pub mod model;
pub mod mtu;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod partition;
pub mod ports;
pub mod resource;
pub mod state_check;
pub mod store;
pub mod topology;
