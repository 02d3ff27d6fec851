//! `netd status`

use anyhow::Result;
use netd::{client::Client, daemon::requests::Status};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
    /// List every namespace's links (with their addresses and programs),
    /// routes and nft tables too (a netlink round per namespace: slow with
    /// thousands of guests).
    #[arg(long)]
    namespaces: bool,
}

pub fn run(client: &Client, args: Args) -> Result<i32> {
    let path = if args.namespaces {
        "/v1/status?namespaces=true"
    } else {
        "/v1/status"
    };
    let status: Status = client.get(path)?;
    super::print(args.json, &status, |s| {
        println!("dataplane {}", s.dataplane);
        println!(
            "{} networks, {} guests, {} namespaces",
            s.networks, s.guests, s.namespace_count
        );
        if let Some(figures) = &s.figures {
            if !figures.host_datapath.is_empty() {
                println!("host side {}", figures.host_datapath);
            }
            let nat = &figures.nat;
            println!(
                "conntrack {} entries; connections: {} snat, {} dnat, {} hairpin",
                nat.conntrack_entries, nat.snat, nat.dnat, nat.hairpin
            );
            for zone in figures.counters.iter().filter(|z| !z.counters.is_empty()) {
                let counts: Vec<String> = zone
                    .counters
                    .iter()
                    .map(|(name, count)| format!("{name}={count}"))
                    .collect();
                println!("  counters {}: {}", zone.zone, counts.join(" "));
            }
        }
        for ns in &s.namespaces {
            println!("namespace {}", ns.name);
            for l in &ns.links {
                let mut line =
                    format!("  link {:<15} {}", l.name, if l.up { "up" } else { "DOWN" });
                if let Some(b) = &l.bridge {
                    line.push_str(&format!(" bridge {b}"));
                }
                if !l.addresses.is_empty() {
                    line.push_str(&format!(" {}", l.addresses.join(" ")));
                }
                if !l.tc_programs.is_empty() {
                    line.push_str(&format!(" tc [{}]", l.tc_programs.join(" ")));
                }
                println!("{line}");
            }
            for r in &ns.routes {
                println!("  route {r}");
            }
            for t in &ns.nft_tables {
                println!("  nft table {t}");
            }
        }
        if let Some(underlay) = &s.underlay {
            if let Some(problem) = &underlay.problem {
                println!("underlay: {problem}");
            }
            for peer in &underlay.peers {
                match (peer.reachable, peer.rtt_ms) {
                    (Some(true), Some(rtt)) => {
                        println!(
                            "underlay {} {} reachable, {rtt:.2} ms",
                            peer.node, peer.address
                        )
                    }
                    (Some(false), _) | (Some(true), None) => println!(
                        "underlay {} {} UNREACHABLE: no answer to the probe within {} ms",
                        peer.node,
                        peer.address,
                        netd::cluster::probe::PROBE_TIMEOUT.as_millis()
                    ),
                    (None, _) => println!(
                        "underlay {} not probed (its netd answers no underlay probe)",
                        peer.node
                    ),
                }
            }
        }
        if s.drift.is_empty() {
            println!("no drift: the kernel matches the desired state");
        } else {
            println!("DRIFT:");
            for d in &s.drift {
                println!("  {d}");
            }
        }
    });
    Ok(exit_code(&status))
}

/// 3 on drift; else 4 when some other node did not answer the underlay
/// probe (a fault netd cannot repair, told apart from its own drift); 0.
fn exit_code(status: &Status) -> i32 {
    if !status.drift.is_empty() {
        3
    } else if status
        .underlay
        .as_ref()
        .is_some_and(|u| u.unreachable().next().is_some())
    {
        4
    } else {
        0
    }
}
