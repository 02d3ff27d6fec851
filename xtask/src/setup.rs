//! `cargo xtask setup`: installs everything build, test, demo and bench need
//! on a fresh Debian machine. Each step checks first, so a second run is quick.

use std::process::Command;

use anyhow::{Result, bail};

use crate::shell::{self, output};

/// Debian packages, and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker links the eBPF programs with LLVM 22",
    ),
    ("libpolly-22-dev", "LLVM 22's static libraries need Polly"),
    ("libzstd-dev", "LLVM 22 links against zstd"),
    ("zlib1g-dev", "LLVM 22 links against zlib"),
    ("nftables", "the nftables dataplane and netd's host table"),
    ("iproute2", "ip/tc for inspecting what netd built"),
    ("iputils-ping", "tests and demo send real pings"),
    ("iperf3", "benchmarks: TCP throughput"),
    ("sockperf", "benchmarks: request/response latency"),
    (
        "netavark",
        "benchmarks: a peer, podman's network stack, driven through its CLI",
    ),
    (
        "containernetworking-plugins",
        "benchmarks: a peer, the CNI reference plugins (bridge, host-local, portmap)",
    ),
    (
        "iptables",
        "benchmarks: the firewall netavark and the CNI plugins program",
    ),
    ("bpftool", "inspecting loaded programs and maps"),
    (
        "conntrack",
        "tests: counting the host's connection-tracking entries",
    ),
    (
        "podman",
        "tests: a real container runtime using netd through netd-cni (CNI backend)",
    ),
    (
        "runc",
        "tests: podman's OCI runtime here (crun refuses the hybrid cgroup layout)",
    ),
    ("conmon", "tests: podman's container monitor"),
    (
        "busybox-static",
        "tests: the root filesystem of podman's containers (no registry is reachable)",
    ),
    (
        "dnsutils",
        "tests: real DNS queries (dig) to netd's per-network resolvers",
    ),
    (
        "prometheus",
        "tests: promtool checks /metrics, and a real server scrapes it",
    ),
    (
        "etcd-server",
        "tests and demo: the 3-member etcd cluster that netd nodes share (etcd 3.4)",
    ),
    (
        "protobuf-compiler",
        "the etcd-client crate's build script compiles etcd's gRPC protocol with protoc",
    ),
    (
        "libprotobuf-dev",
        "protoc's well-known types (google/protobuf/*.proto) that etcd's protocol imports",
    ),
];

const BPF_LINKER_VERSION: &str = "0.13";

pub fn run() -> Result<()> {
    require_root()?;
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    println!("setup: everything is in place");
    Ok(())
}

fn require_root() -> Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        bail!(
            "netd builds network namespaces and loads eBPF programs: run as root (sudo -E cargo xtask ...)"
        );
    }
    Ok(())
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(name, _)| !dpkg_installed(name))
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
        return Ok(());
    }
    for (name, why) in PACKAGES.iter().filter(|(n, _)| missing.contains(n)) {
        println!("setup: installing {name}: {why}");
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    shell::run(
        update,
        "apt-get update failed: check the machine's Debian mirror access",
    )?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    shell::run(install, "apt-get install failed: see its output above")
}

fn dpkg_installed(name: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", name])
        .is_some_and(|status| status.contains("install ok installed"))
}

fn nightly_rust_src() -> Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    );
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => {
            println!("setup: nightly toolchain with rust-src present");
            Ok(())
        }
        Some(_) => {
            println!("setup: adding rust-src to nightly (the eBPF crate builds core from source)");
            let mut add = Command::new("rustup");
            add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
            shell::run(add, "rustup could not add rust-src to nightly")
        }
        None => {
            println!("setup: installing the nightly toolchain with rust-src (for the eBPF crate)");
            let mut install = Command::new("rustup");
            install.args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]);
            shell::run(install, "rustup could not install nightly")
        }
    }
}

fn bpf_linker() -> Result<()> {
    let version = output("bpf-linker", &["--version"]).unwrap_or_default();
    if version.contains(&format!(" {BPF_LINKER_VERSION}.")) {
        println!("setup: {} present", version.trim());
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes, once)"
    );
    let mut install = shell::cargo();
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            "llvm-22",
            "--force",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22");
    shell::run(
        install,
        "bpf-linker did not build: is llvm-22-dev installed (cargo xtask setup installs it)?",
    )
}
