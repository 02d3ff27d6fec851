//! Test support for netd: the sandbox every root test and the demo run in.

pub mod bench;
pub mod netd;
pub mod sandbox;
pub mod sockets;
pub mod status;
pub mod traffic;

pub use sandbox::Sandbox;
