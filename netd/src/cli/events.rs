//! `netd events`: what happens, as it happens (like `podman events`).

use anyhow::Result;
use netd::{
    client::{Client, segment},
    daemon::events::Event,
};

#[derive(clap::Args)]
pub struct Args {
    /// Only this network's events (and the daemon's own).
    #[arg(long, add = super::names::network())]
    network: Option<String>,
    /// One JSON object a line, as the API sends them.
    #[arg(long)]
    json: bool,
}

pub fn run(client: &Client, args: Args) -> Result<i32> {
    let path = match &args.network {
        Some(network) => format!("/v1/events?network={}", segment(network)),
        None => "/v1/events".to_owned(),
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    client.get_lines(&path, |line| {
        let text = if args.json {
            line.to_owned()
        } else {
            match serde_json::from_str::<Event>(line) {
                Ok(event) => event.human(),
                Err(_) => line.to_owned(),
            }
        };
        // A closed pipe (`netd events | head`) ends the stream quietly.
        Ok(writeln!(out, "{text}").and_then(|()| out.flush()).is_ok())
    })?;
    Ok(0)
}
