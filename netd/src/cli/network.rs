//! `netd network create|rm|ls|inspect`

use anyhow::Result;
use netd::{
    client::{Client, segment},
    daemon::requests::{CreateNetwork, NetworkView},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a network (idempotent: repeating an identical create changes nothing).
    Create {
        name: String,
        /// CIDR, or `auto` for the first free /24; makes the network routable
        /// from the host. Without it, guests get the default subnet, which
        /// may overlap other networks'.
        #[arg(long)]
        subnet: Option<String>,
        /// Guests talk to each other and to nothing outside the network: no
        /// NAT out, no published ports.
        #[arg(long)]
        internal: bool,
        /// MTU of the bridge, its ports and the guests' eth0 (576 up to the
        /// MTU of the host's link to the outside).
        #[arg(long)]
        mtu: Option<u32>,
        /// A network of the whole cluster: defined in etcd, its guests on
        /// any node, joined by VXLAN (needs a daemon started with cluster
        /// options). Its MTU defaults to the underlay's less 50 bytes.
        #[arg(long)]
        span: bool,
    },
    /// Give a guest of another network an interface (eth1, ...) on this one
    /// too, with an address of this network; its default route stays its
    /// own network's.
    Connect {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        guest: String,
        /// The network the guest was added to.
        #[arg(long, add = super::names::network())]
        network_of: String,
        /// Its address on NETWORK; the next free one if omitted.
        #[arg(long)]
        ip: Option<String>,
    },
    /// Remove a guest's interface on a network it was connected to.
    Disconnect {
        #[arg(add = super::names::network())]
        network: String,
        #[arg(add = super::names::guest())]
        guest: String,
    },
    /// Remove a network with all its guests (and other networks' guests'
    /// interfaces on it).
    Rm {
        #[arg(add = super::names::network())]
        name: String,
    },
    /// Make a network what a resource file says (`PUT /v1/networks/NAME`):
    /// created, its guests and ports added and removed; the same file again
    /// changes nothing.
    Apply {
        #[arg(add = super::names::network())]
        name: String,
        /// The JSON resource (`{"subnet", "internal", "mtu", "span",
        /// "guests": [{"name", "ip", "mac"}], "ports": [{"guest", "spec"}]}`),
        /// or `-` for stdin.
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one network and its guests.
    Inspect {
        #[arg(add = super::names::network())]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Create {
            name,
            subnet,
            internal,
            mtu,
            span,
        } => {
            let net: NetworkView = client.post(
                "/v1/networks",
                &CreateNetwork {
                    name,
                    subnet,
                    internal,
                    mtu,
                    span,
                },
            )?;
            println!(
                "network {} {} (bridge {}){}{}{}",
                net.name,
                net.subnet,
                net.bridge_ip,
                if net.internal { " internal" } else { "" },
                net.mtu.map(|mtu| format!(" mtu {mtu}")).unwrap_or_default(),
                net.vni
                    .map(|vni| format!(" spanned vni {vni}"))
                    .unwrap_or_default()
            );
        }
        Command::Connect {
            network,
            guest,
            network_of,
            ip,
        } => {
            let g: netd::daemon::requests::GuestView = client.post(
                &format!("/v1/networks/{}/connections", segment(&network)),
                &netd::daemon::requests::ConnectGuest {
                    guest,
                    network_of,
                    ip,
                },
            )?;
            println!(
                "guest {}/{} {} on {} (from network {})",
                g.network,
                g.name,
                g.ip,
                g.interface,
                g.connected_from.as_deref().unwrap_or("?")
            );
            println!("nameserver {}", g.nameserver);
        }
        Command::Disconnect { network, guest } => {
            client.delete(&format!(
                "/v1/networks/{}/connections/{}",
                segment(&network),
                segment(&guest)
            ))?;
            println!("disconnected guest {guest} from network {network}");
        }
        Command::Apply { name, file, json } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|err| anyhow::anyhow!("reading {}: {err}", file.display()))?
            };
            let resource: netd::resource::NetworkResource = serde_json::from_str(&text)
                .map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            let view: netd::daemon::requests::ResourceView =
                client.put(&format!("/v1/networks/{}", segment(&name)), &resource)?;
            super::print(json, &view, |view| {
                if view.steps.is_empty() {
                    println!("network {}: unchanged", view.name);
                }
                for step in &view.steps {
                    println!("network {}: {step}", view.name);
                }
                println!("namespace {}", view.namespace);
                for (guest, ns) in &view.namespaces {
                    println!("  guest {guest} namespace {ns}");
                }
            });
        }
        Command::Rm { name } => {
            client.delete(&format!("/v1/networks/{}", segment(&name)))?;
            println!("removed network {name}");
        }
        Command::Ls { json } => {
            let nets: Vec<NetworkView> = client.get("/v1/networks")?;
            super::print(json, &nets, |nets| {
                println!(
                    "{:<20} {:<18} {:<9} {:>6}  NAMESPACE",
                    "NAME", "SUBNET", "ROUTABLE", "GUESTS"
                );
                for n in nets {
                    println!(
                        "{:<20} {:<18} {:<9} {:>6}  {}",
                        n.name,
                        n.subnet,
                        if n.routable { "yes" } else { "no" },
                        n.guests.len(),
                        n.netns
                    );
                }
            });
        }
        Command::Inspect { name, json } => {
            let net: NetworkView = client.get(&format!("/v1/networks/{}", segment(&name)))?;
            super::print(json, &net, |n| {
                println!("network   {}", n.name);
                println!(
                    "subnet    {}{}",
                    n.subnet,
                    if n.routable { " (routable)" } else { "" }
                );
                if n.internal {
                    println!("internal  yes: no traffic to or from outside the network");
                }
                if let Some(mtu) = n.mtu {
                    println!("mtu       {mtu}");
                }
                println!("bridge    {}", n.bridge_ip);
                println!("uplink    {}", n.uplink);
                println!("namespace {}", n.netns);
                println!("guests    {}", n.guests.len());
                for g in &n.guests {
                    println!(
                        "  {:<20} {:<18} port {:<15} {}",
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
