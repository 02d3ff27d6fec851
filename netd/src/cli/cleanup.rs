//! `netd cleanup`

use anyhow::Result;
use netd::{client::Client, daemon::requests::CleanupReport};

pub fn run(client: &Client) -> Result<i32> {
    let report: CleanupReport = client.post_empty("/v1/cleanup")?;
    for item in &report.removed {
        println!("removed {item}");
    }
    println!("cleanup done: nothing of this daemon instance is left");
    Ok(0)
}
