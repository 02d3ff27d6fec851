//! Map keys, values, names and sizes shared by the kernel programs
//! (`netd-ebpf`) and user space (`netd`).
//!
//! Every type is `#[repr(C)]` with explicit, zeroed padding so that both sides
//! agree on the byte layout and no uninitialised byte ever reaches a map key.
#![no_std]

pub mod counters;
pub mod csum;
pub mod filter;
pub mod head;
pub mod maps;
pub mod nat;
pub mod next_hop;
pub mod partition;
pub mod zones;
