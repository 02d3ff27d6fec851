//! netd: namespaces, veth pairs and bridges over netlink, and a dataplane of
//! TC eBPF programs configured through BPF maps.
//!
//! Side effects live in thin modules (`netns`, `netlink`, `bpffs`, `ebpf`);
//! decisions live in pure ones, unit-tested without root.

pub mod bpffs;
pub mod ebpf;
pub mod netlink;
pub mod netns;
