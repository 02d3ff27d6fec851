//! netd: namespaces, veth pairs and bridges over netlink, and a dataplane of
//! TC eBPF programs configured through BPF maps.
//!
//! Side effects live in thin modules (`netns`, `netlink`, `bpffs`, `ebpf`);
//! decisions live in pure ones (`model`, `ipam`, `ifname`, `config`,
//! `ports`, `partition`), unit-tested without root. `hostnat` holds both
//! halves: pure nft script rendering and the thin `HostNat` that runs `nft`.

pub mod bpffs;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod ebpf;
pub mod hostnat;
pub mod ifname;
pub mod ipam;
pub mod labels;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod partition;
pub mod ports;
pub mod store;
pub mod topology;
