//! `netd resolve NAME[.NETWORK]`

use anyhow::Result;
use netd::{
    client::{Client, segment},
    dns::directory::Resolved,
};

#[derive(clap::Args)]
pub struct Args {
    /// GUEST (in every network that has one of that name) or GUEST.NETWORK.
    name: String,
    #[arg(long)]
    json: bool,
}

pub fn run(client: &Client, args: Args) -> Result<i32> {
    let found: Vec<Resolved> = client.get(&format!("/v1/resolve/{}", segment(&args.name)))?;
    super::print(args.json, &found, |found| {
        for r in found {
            println!("{}.{} {}", r.guest, r.network, r.ip);
        }
    });
    Ok(0)
}
