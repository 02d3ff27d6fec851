//! Builds the TC programs of `netd-ebpf` (nightly, bpf target, bpf-linker)
//! so that `netd` can embed the object file.
//!
//! aya-build forwards every line of its inner cargo run as a
//! `cargo:warning` ("Compiling core ...", ~40 lines on a fresh build), which
//! cargo prints as `warning: netd@0.1.0: ...`. So this script runs
//! aya-build in a copy of itself and passes on what it says, less cargo's
//! progress lines; if the inner build fails, everything is passed on.

use std::{
    io::Write,
    process::{Command, Stdio},
};

const INNER: &str = "NETD_EBPF_BUILD_INNER";

fn main() -> anyhow::Result<()> {
    if std::env::var_os(INNER).is_some() {
        return build();
    }
    let output = Command::new(std::env::current_exe()?)
        .env(INNER, "1")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut out = std::io::stdout().lock();
    for line in stdout.lines() {
        if output.status.success() && is_progress(line) {
            continue;
        }
        writeln!(out, "{line}")?;
    }
    if !output.status.success() {
        anyhow::bail!(
            "building the eBPF programs failed ({}): see the warnings above",
            output.status
        );
    }
    Ok(())
}

fn build() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf");
    // aya-build watches the eBPF crate only; the programs are built from
    // netd-common's layouts and constants too.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-common/src")
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// A `cargo:warning` that is only the inner cargo's progress report.
fn is_progress(line: &str) -> bool {
    let Some(text) = line.strip_prefix("cargo:warning=") else {
        return false;
    };
    let text = text.trim_start();
    text.is_empty()
        || [
            "Compiling ",
            "Finished ",
            "Fresh ",
            "Blocking ",
            "Updating ",
            "Locking ",
            "Adding ",
            "Downloading ",
            "Downloaded ",
            "Checking ",
            "Running ",
        ]
        .iter()
        .any(|prefix| text.starts_with(prefix))
}
