//! Policy routing in the gateway namespace. Guest subnets overlap, so the
//! gateway has no route to them: a packet going into a network carries the
//! network's zone as its firewall mark (set by netd's table), and the rule
//! `fwmark ZONE lookup 1000+ZONE` sends it to that table, whose only route
//! is `default via <uplink> dev nu<slot>`. Made over rtnetlink.
//!
//! The dataplane's methods are synchronous and run on the daemon's tokio
//! runtime, so each call here runs its netlink work on a short-lived thread
//! with a runtime of its own.

use std::{collections::BTreeSet, future::Future, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};

use super::script::{RULE_PRIORITY, route_table};
use crate::{netlink::Netlink, netns::Netns};

/// Routes packets marked `zone` to `uplink_ip` through `port`. Idempotent.
pub fn ensure(gateway_netns: &Path, zone: u32, port: &str, uplink_ip: Ipv4Addr) -> Result<()> {
    let path = gateway_netns.to_owned();
    let port = port.to_owned();
    block_on(async move {
        let netns = Netns::open_path("gateway", &path)?;
        let netlink = Netlink::connect(Some(&netns))?;
        let table = route_table(zone);
        netlink
            .replace_default_route_in_table(table, uplink_ip, &port)
            .await?;
        netlink.add_fwmark_rule(zone, table, RULE_PRIORITY).await
    })
    .with_context(|| format!("policy routing for zone {zone} in the gateway"))
}

/// Removes the rule of `zone` (its table's route goes with the port).
pub fn remove(gateway_netns: &Path, zone: u32) -> Result<()> {
    let path = gateway_netns.to_owned();
    block_on(async move {
        let netns = Netns::open_path("gateway", &path)?;
        let netlink = Netlink::connect(Some(&netns))?;
        netlink.delete_fwmark_rules(zone, route_table(zone)).await
    })
    .with_context(|| format!("removing the policy routing of zone {zone}"))
}

/// The zones whose rule is in place.
pub fn zones_routed(gateway_netns: &Path) -> Result<BTreeSet<u32>> {
    let path = gateway_netns.to_owned();
    block_on(async move {
        let netns = Netns::open_path("gateway", &path)?;
        let netlink = Netlink::connect(Some(&netns))?;
        Ok(netlink
            .fwmark_rules()
            .await?
            .into_iter()
            .filter(|&(mark, table)| table == route_table(mark))
            .map(|(mark, _)| mark)
            .collect())
    })
}

fn block_on<R: Send>(future: impl Future<Output = Result<R>> + Send) -> Result<R> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a runtime for netlink")?
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
