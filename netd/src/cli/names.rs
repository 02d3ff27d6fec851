//! Completion of network and guest names, asked of the daemon while the
//! shell completes (`netd completions`). The daemon is found at
//! `NETD_SOCKET` or the default socket; if it does not answer, nothing is
//! offered.

use std::{ffi::OsStr, path::PathBuf};

use clap_complete::{ArgValueCompleter, CompletionCandidate};
use netd::{client::Client, daemon::requests::NetworkView};

fn networks_now() -> Vec<NetworkView> {
    let socket = std::env::var_os("NETD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| netd::config::Config::default().socket);
    Client::new(&socket).get("/v1/networks").unwrap_or_default()
}

fn networks(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    networks_now()
        .into_iter()
        .filter(|n| n.name.starts_with(current.as_ref()))
        .map(|n| CompletionCandidate::new(n.name).help(Some(n.subnet.into())))
        .collect()
}

/// Guests of every network (the completer does not see the network typed
/// before), each with its network as help.
fn guests(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    networks_now()
        .into_iter()
        .flat_map(|n| n.guests)
        .filter(|g| g.name.starts_with(current.as_ref()))
        .map(|g| CompletionCandidate::new(g.name).help(Some(format!("in {}", g.network).into())))
        .collect()
}

pub fn network() -> ArgValueCompleter {
    ArgValueCompleter::new(networks)
}

pub fn guest() -> ArgValueCompleter {
    ArgValueCompleter::new(guests)
}
