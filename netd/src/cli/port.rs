//! `netd port add|rm|ls`

use anyhow::Result;
use netd::{
    client::{Client, segment},
    daemon::requests::{AddPort, PortView},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Publish a guest's port or port range (idempotent).
    Add {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        guest: String,
        /// [HOSTIP:]HOSTPORT[-END]:GUESTPORT[-END][/tcp|udp], e.g. 8080:80 or
        /// 10.0.0.5:5000-5010:5000-5010/udp. Without HOSTIP (or with
        /// 0.0.0.0): any host address; without a protocol: tcp.
        spec: String,
    },
    /// Withdraw a published port: SPEC as added, or as `netd port ls` shows it.
    Rm {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        guest: String,
        /// Any spelling of the forward: `8080:80` withdraws `8080:80/tcp`.
        spec: String,
    },
    /// List published ports, of one network or of all.
    Ls {
        /// Only this network's ports.
        #[arg(add = super::names::network())]
        network: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Add {
            network,
            guest,
            spec,
        } => {
            let p: PortView = client.post(
                &format!(
                    "/v1/networks/{}/guests/{}/ports",
                    segment(&network),
                    segment(&guest)
                ),
                &AddPort { spec },
            )?;
            println!(
                "published {} -> {} ({}) in network {}",
                p.spec, p.guest, p.guest_ip, p.network
            );
        }
        Command::Rm {
            network,
            guest,
            spec,
        } => {
            // The spec's '/' and ':' are percent-encoded: it stays one segment.
            client.delete(&format!(
                "/v1/networks/{}/guests/{}/ports/{}",
                segment(&network),
                segment(&guest),
                segment(&spec)
            ))?;
            println!("withdrew {spec} from {guest} in network {network}");
        }
        Command::Ls { network, json } => {
            let path = match &network {
                Some(network) => format!("/v1/networks/{}/ports", segment(network)),
                None => "/v1/ports".to_owned(),
            };
            let ports: Vec<PortView> = client.get(&path)?;
            super::print(json, &ports, |ports| {
                println!("{:<20} {:<20} {:<15} SPEC", "NETWORK", "GUEST", "GUEST-IP");
                for p in ports {
                    println!(
                        "{:<20} {:<20} {:<15} {}",
                        p.network, p.guest, p.guest_ip, p.spec
                    );
                }
            });
        }
    }
    Ok(0)
}
