//! The `netd` binary: the daemon, and the CLI that talks to it.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
