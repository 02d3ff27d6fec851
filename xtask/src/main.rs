//! netd's developer tasks. `cargo xtask --help` lists them.

mod bench;
mod demo;
mod install;
mod setup;
mod shell;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "netd developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building, testing, the demo and the benchmarks need
    /// (Debian packages, nightly rust-src, bpf-linker). Idempotent.
    Setup,
    /// Setup, then formatting, clippy (user space and eBPF), unit tests and
    /// the root integration tests.
    Test {
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Setup, build, then show netd's main job in a sandbox.
    Demo,
    /// Install the netd binary, the netd-cni plugin, man pages, shell
    /// completions, the systemd unit and a default config.
    Install,
    /// Setup, release build, then measure netd against a direct veth,
    /// netavark and the CNI plugins in sandboxes; writes
    /// bench/results/report.md and SVG charts.
    Bench {
        /// Fewer, shorter rounds and smaller control-plane figures (about
        /// 7 minutes instead of about 40 on 2 CPUs).
        #[arg(long)]
        quick: bool,
        /// Extra arguments for netd-bench (e.g. `--cases netd-ebpf,netavark
        /// --tests crr --paths internet --out DIR` for one figure, side by
        /// side with the limit).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => test::run(&args),
        Task::Demo => demo::run(),
        Task::Install => install::run(),
        Task::Bench { quick, args } => bench::run(quick, &args),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}
