//! `netd node ls`: the cluster's nodes, as etcd has them.

use anyhow::Result;
use netd::{client::Client, daemon::requests::NodeView};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the cluster's nodes: underlay address, when each was last seen,
    /// and its guests in spanned networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Ls { json } => {
            let nodes: Vec<NodeView> = client.get("/v1/nodes")?;
            super::print(json, &nodes, |nodes| {
                println!("{:<16} {:<16} {:<10} GUESTS", "NODE", "UNDERLAY", "SEEN");
                for node in nodes {
                    let guests: Vec<String> = node
                        .networks
                        .iter()
                        .flat_map(|(network, guests)| {
                            guests
                                .iter()
                                .map(move |g| format!("{network}/{} {}", g.name, g.ip))
                        })
                        .collect();
                    println!(
                        "{:<16} {:<16} {:<10} {}",
                        format!("{}{}", node.name, if node.this_node { " *" } else { "" }),
                        node.underlay,
                        node.last_seen_secs
                            .map_or_else(|| "?".to_owned(), |s| format!("{s}s ago")),
                        if guests.is_empty() {
                            "-".to_owned()
                        } else {
                            guests.join(", ")
                        }
                    );
                    if let Some(problem) = &node.problem {
                        println!("  not registered: {problem}");
                    }
                }
            });
            Ok(0)
        }
    }
}
