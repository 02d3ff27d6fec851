//! The eBPF dataplane's user-space side: loading netd's TC programs, keeping
//! their logger polled, attaching them inside namespaces, and reading and
//! writing their maps.

pub mod filter;
pub mod loader;
pub mod test_run;
