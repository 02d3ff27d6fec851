//! `netd guest add|rm|ls`

use std::path::PathBuf;

use anyhow::Result;
use netd::{
    client::{Client, segment},
    daemon::requests::{AddGuest, GuestView},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a guest: a namespace (or --netns) with eth0 on the network's bridge.
    /// Several names add several guests, one after the other, from one
    /// process (each with the next free address; stops at the first error).
    Add {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(required = true, num_args = 1..)]
        names: Vec<String>,
        /// Address in the network's subnet; the next free one if omitted.
        #[arg(long)]
        ip: Option<String>,
        /// An existing network namespace (a container runtime's) to plug in
        /// instead of creating one.
        #[arg(long)]
        netns: Option<PathBuf>,
        /// KEY=VALUE, repeatable: what the guest is for (shown by `guest ls
        /// --json`; the CNI plugin marks its attachments with `cni.*`).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// The MAC of its eth0 (unicast, not taken in the network); derived
        /// from the network and the address if omitted.
        #[arg(long)]
        mac: Option<String>,
    },
    /// Show one guest.
    Inspect {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a guest (and its namespace, if netd made it).
    Rm {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        name: String,
    },
    /// List a network's guests.
    Ls {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Add {
            network,
            names,
            ip,
            netns,
            labels,
            mac,
        } => {
            if names.len() > 1 && (ip.is_some() || netns.is_some() || mac.is_some()) {
                anyhow::bail!(
                    "--ip, --netns and --mac name one guest's: give one guest name with them, \
                     not {}",
                    names.len()
                );
            }
            let labels: netd::labels::Labels = labels.into_iter().collect();
            let path = format!("/v1/networks/{}/guests", segment(&network));
            for name in names {
                let g: GuestView = client.post(
                    &path,
                    &AddGuest {
                        name,
                        ip: ip.clone(),
                        netns: netns.clone(),
                        labels: labels.clone(),
                        mac: mac.clone(),
                    },
                )?;
                println!(
                    "guest {}/{} {} in {}",
                    g.network,
                    g.name,
                    g.ip,
                    g.netns.display()
                );
                println!("mac {}", g.mac);
                println!("nameserver {}", g.nameserver);
            }
        }
        Command::Inspect {
            network,
            name,
            json,
        } => {
            let g: GuestView = client.get(&format!(
                "/v1/networks/{}/guests/{}",
                segment(&network),
                segment(&name)
            ))?;
            super::print(json, &g, |g| {
                println!("guest     {}/{}", g.network, g.name);
                println!("address   {}", g.ip);
                println!("mac       {}", g.mac);
                println!("resolver  {}", g.nameserver);
                println!("port      {}", g.bridge_port);
                println!("namespace {}", g.netns.display());
            });
        }
        Command::Rm { network, name } => {
            client.delete(&format!(
                "/v1/networks/{}/guests/{}",
                segment(&network),
                segment(&name)
            ))?;
            println!("removed guest {network}/{name}");
        }
        Command::Ls { network, json } => {
            let guests: Vec<GuestView> =
                client.get(&format!("/v1/networks/{}/guests", segment(&network)))?;
            super::print(json, &guests, |guests| {
                println!("{:<20} {:<18} {:<15} NAMESPACE", "NAME", "ADDRESS", "PORT");
                for g in guests {
                    println!(
                        "{:<20} {:<18} {:<15} {}",
                        g.name,
                        g.ip,
                        g.bridge_port,
                        g.netns.display()
                    );
                }
            });
        }
    }
    Ok(0)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    netd::labels::parse(text).map_err(|err| err.to_string())
}
