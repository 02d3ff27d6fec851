//! `cargo xtask test`: every check, ending with the test runner's summary.

use std::process::Command;

use anyhow::Result;

use crate::{
    setup,
    shell::{self, cargo, output},
};

pub fn run(extra: &[String]) -> Result<()> {
    setup::run()?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    shell::run(fmt, "formatting differs: run `cargo fmt --all`")?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "netd-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    shell::run(clippy, "clippy found problems in user space")?;

    let mut clippy_ebpf = Command::new("rustup");
    clippy_ebpf
        .args(["run", "nightly", "cargo", "clippy", "-p", "netd-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"]);
    shell::run(clippy_ebpf, "clippy found problems in the eBPF crate")?;

    // Tests spawn the `netd` binary, so build every binary first.
    let mut build = cargo();
    build.args(["build", "--workspace", "--exclude", "netd-ebpf", "--bins"]);
    shell::run(build, "the build failed")?;

    let mut tests = if output("cargo", &["nextest", "--version"]).is_some() {
        let mut nextest = cargo();
        nextest.args([
            "nextest",
            "run",
            "--workspace",
            "--exclude",
            "netd-ebpf",
            "--no-fail-fast",
        ]);
        nextest
    } else {
        let mut test = cargo();
        test.args([
            "test",
            "--workspace",
            "--exclude",
            "netd-ebpf",
            "--no-fail-fast",
        ]);
        test
    };
    tests.args(extra);
    shell::run(tests, "tests failed: see the summary above")
}
