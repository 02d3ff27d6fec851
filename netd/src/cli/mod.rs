//! The command line. One subcommand per file; each has a single entry point.

mod cleanup;
mod completions;
mod daemon;
mod events;
mod exec;
mod guest;
mod names;
mod network;
mod partition;
mod port;
mod resolve;
mod state;
mod status;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use netd::client::Client;

#[derive(Parser)]
#[command(
    name = "netd",
    version,
    about = "Container networking: namespaces, bridges and an eBPF dataplane"
)]
pub struct Cli {
    /// The daemon's API socket [default: the config's `socket`, /run/netd/netd.sock].
    #[arg(long, global = true, env = "NETD_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (systemd Type=notify).
    Daemon(daemon::Args),
    /// Create, remove, list and inspect networks.
    #[command(subcommand)]
    Network(network::Command),
    /// Add, remove and list a network's guests.
    #[command(subcommand)]
    Guest(guest::Command),
    /// Publish guest ports on the gateway and host addresses.
    #[command(subcommand)]
    Port(port::Command),
    /// A guest's address by name, as the networks' resolvers answer it.
    Resolve(resolve::Args),
    /// Split a network's guests apart on purpose, show it, verify it.
    Partition(partition::Args),
    /// Run a command in a guest's network namespace.
    Exec(exec::Args),
    /// The live kernel state of everything this daemon owns, and any drift.
    Status(status::Args),
    /// Remove everything this daemon instance owns, and nothing else.
    Cleanup,
    /// Print the desired state, or restore an earlier one.
    #[command(subcommand)]
    State(state::Command),
    /// Stream what happens (networks, guests, ports, partitions, drift) as it happens.
    Events(events::Args),
    /// Print the Prometheus metrics (what `GET /metrics` serves).
    Metrics,
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(completions::Args),
    /// Write man pages for netd and every subcommand into a directory.
    #[command(hide = true)]
    Man(completions::ManArgs),
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    // `COMPLETE=SHELL netd -- WORDS`: the shell asking for completions.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        // A client whose reader went away (`netd network ls | head`) ends
        // quietly, as Unix tools do, instead of panicking on EPIPE. Not the
        // daemon: a client hanging up must never kill it.
        // SAFETY: resetting a signal's disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let socket = cli.socket.clone();
    let client = Client::new(
        &socket
            .clone()
            .unwrap_or_else(|| netd::config::Config::default().socket),
    );
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args, socket),
        Command::Network(cmd) => network::run(&client, cmd),
        Command::Guest(cmd) => guest::run(&client, cmd),
        Command::Port(cmd) => port::run(&client, cmd),
        Command::Resolve(args) => resolve::run(&client, args),
        Command::Partition(args) => partition::run(&client, args),
        Command::Exec(args) => exec::run(&client, args),
        Command::Status(args) => status::run(&client, args),
        Command::Cleanup => cleanup::run(&client),
        Command::State(cmd) => state::run(&client, cmd),
        Command::Events(args) => events::run(&client, args),
        Command::Metrics => client.get_text("/metrics").map(|text| {
            print!("{text}");
            0
        }),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => completions::man(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netd: {err:#}");
            1
        }
    }
}

/// Prints `value` as JSON, or through `human` for people.
pub fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    } else {
        human(value);
    }
}
