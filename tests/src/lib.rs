//! Test support for netd: the sandbox every root test and the demo run in.

pub mod bench;
pub mod cluster;
pub mod cni;
pub mod fake_dns;
pub mod filter;
pub mod netd;
pub mod podman;
pub mod sandbox;
pub mod sockets;
pub mod status;
pub mod traffic;

pub use sandbox::Sandbox;

/// Runs each listed behaviour test once per path through the kernel, as
/// `ebpf::NAME` (eBPF with the eBPF host side), `ebpf_nft_host::NAME` (eBPF
/// with the host's nftables table) and `nftables::NAME`: every behaviour is
/// written once, as `fn NAME(dataplane: &str)`, and every path must pass it.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod ebpf {
            $( #[test] fn $name() { super::$name("ebpf") } )*
        }
        mod ebpf_nft_host {
            $( #[test] fn $name() { super::$name($crate::netd::EBPF_NFT_HOST) } )*
        }
        mod nftables {
            $( #[test] fn $name() { super::$name("nftables") } )*
        }
    };
}
