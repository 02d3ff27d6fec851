//! `cargo xtask demo`: builds netd and runs the demo in a sandbox.

use anyhow::Result;

use crate::{
    setup,
    shell::{self, cargo, target_dir},
};

pub fn run() -> Result<()> {
    setup::run()?;
    let mut build = cargo();
    build.args(["build", "--workspace", "--exclude", "netd-ebpf", "--bins"]);
    shell::run(build, "the build failed")?;
    let demo = target_dir()?.join("debug/netd-demo");
    shell::run(
        std::process::Command::new(demo),
        "the demo failed: see above",
    )
}
