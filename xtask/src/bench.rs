//! `cargo xtask bench [--quick]`: release build, then the benchmark binary
//! (`tests/src/bin/netd-bench.rs`), which builds its own sandboxes and
//! writes `bench/results/report.md` with its charts.

use std::process::Command;

use anyhow::Result;

use crate::{
    setup,
    shell::{self, cargo, workspace_root},
};

pub fn run(quick: bool, extra: &[String]) -> Result<()> {
    setup::run()?;
    let mut build = cargo();
    build.args(["build", "--release", "-p", "netd", "--bins"]);
    shell::run(build, "the release build of netd failed")?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "netd-tests",
        "--bin",
        "netd-bench",
    ]);
    shell::run(build, "the release build of netd-bench failed")?;

    let root = workspace_root();
    let out = root.join("bench/results");
    // A later `--out` among the extra arguments wins, in netd-bench and here.
    let shown = extra
        .iter()
        .position(|arg| arg == "--out")
        .and_then(|i| extra.get(i + 1))
        .map_or_else(|| out.clone(), std::path::PathBuf::from);
    let mut bench = Command::new(shell::target_dir()?.join("release/netd-bench"));
    if quick {
        bench.arg("--quick");
    }
    bench.arg("--out").arg(&out);
    // The programs' costs on the commit before the fast path, measured by
    // `netd-bench --only progcost` against that commit's netd (see
    // bench/results/README.md), are shown beside this build's.
    let before = out.join("progcost-before.json");
    if before.exists() {
        bench.arg("--prog-costs-before").arg(&before);
    }
    bench.args(extra);
    shell::run(bench, "the benchmark could not run: see above")?;
    println!(
        "bench: report in {} (charts and results.json beside it)",
        shown.join("report.md").display()
    );
    Ok(())
}
