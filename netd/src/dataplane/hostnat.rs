//! The host side of NAT: one nftables table, `inet netd`, in the namespace
//! the daemon runs in. It masquerades the gateway's traffic (and routable
//! guest subnets) leaving the host, and DNATs published ports on host
//! addresses to the gateway, which takes them on to the guests.
//!
//! netd owns that table and nothing else: a sync deletes and recreates it in
//! one transaction, and every other table (the host's firewall, docker's,
//! firewalld's) is left alone. Published ports and masquerade sources are set
//! elements, so publishing the N-th port adds one element and rewrites no
//! rule (unlike a backend that flushes and refills its chains on every
//! change).
//!
//! Pure part: [`HostNatPlan`] and the `*_script` functions that render nft
//! scripts (each one a single atomic `nft -f -` batch, written with
//! `crate::nft::render`'s element writers), unit-tested without root.
//! Effect part: [`HostNat`], which feeds them to `nft`; [`NftHostSide`]
//! makes it a backend's [`HostSide`] (both backends own one today).

use std::{collections::BTreeSet, fs, io, net::Ipv4Addr};

use anyhow::{Context, Result, bail};
use ipnetwork::Ipv4Network;
use thiserror::Error;

use tracing::{info, warn};

use super::HostSide;
use crate::{
    ifname::{self, IfnameError},
    netns::Netns,
    nft::{
        Nft, check, objects,
        render::{self, SetDecl, write_chain, write_elements, write_set, write_table_start},
    },
    ports::{PortMapping, Proto},
    topology::HostPlumbing,
};

/// The table netd owns, as nft names it (family and name).
pub const TABLE: &str = "inet netd";

/// The table's comment, shown by `nft list ruleset`, so that whoever reads
/// the host's firewall knows where the table comes from and that editing it
/// is pointless.
const TABLE_COMMENT: &str = "owned by netd: every sync replaces this table, so edits here are lost";

/// The table's sets, as `table_definition` declares them.
const SETS: [SetDecl; 4] = [
    SetDecl {
        name: "masq_sources",
        kind: "set",
        spec: &["type ipv4_addr", "flags interval"],
    },
    SetDecl {
        name: "ports_any",
        kind: "set",
        spec: &["type inet_proto . inet_service"],
    },
    SetDecl {
        name: "ports_on_ip",
        kind: "set",
        spec: &["type ipv4_addr . inet_proto . inet_service"],
    },
    SetDecl {
        name: "guests_refused",
        kind: "set",
        spec: &["type ifname"],
    },
];

/// The chains [`HostNat::present`] expects, with their number of rules.
const CHAINS: [(&str, usize); 4] = [
    ("prerouting", 2),
    ("output", 3),
    ("postrouting", 1),
    ("input", 1),
];

/// The sysctl that turns on IPv4 forwarding; each network namespace has its
/// own, read and written in the namespace of the thread that opens it.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Everything the host's table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNatPlan {
    /// The host's veth to the gateway: traffic leaving through it is going
    /// to the gateway, not out of the host, and is never masqueraded.
    pub host_link: String,
    /// Where published ports are DNATed to: the gateway's end of the host
    /// link, which forwards them to the guests.
    pub gateway_ip: Ipv4Addr,
    /// Sources masqueraded when leaving the host: the host link's network
    /// (the gateway translates guests to its own address) and the subnets of
    /// routable networks (which it does not translate).
    pub masquerade_sources: Vec<Ipv4Network>,
    /// Published ports; only `proto`, `host_ip` and `host_port` matter here
    /// (the gateway maps them on to the guest).
    pub ports: Vec<PortMapping>,
    /// Guests may open connections to the host's own addresses (the
    /// `guests_reach_host` setting); false: what comes in from the host
    /// link to the host itself, other than replies, is refused.
    pub guests_reach_host: bool,
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items.dedup();
    items
}

impl HostNatPlan {
    /// The plan for the host as the topology describes it: the whole host
    /// link network plus the routable subnets masqueraded.
    pub fn from_plumbing(host: &HostPlumbing) -> HostNatPlan {
        HostNatPlan {
            host_link: host.host_link.clone(),
            gateway_ip: host.gateway_ip,
            masquerade_sources: std::iter::once(host.host_link_net)
                .chain(host.routable_subnets.iter().copied())
                .collect(),
            ports: host.ports.clone(),
            guests_reach_host: host.guests_reach_host,
        }
    }

    /// Whether `other` makes the same table (sources and ports in any order).
    pub fn same_table(&self, other: &HostNatPlan) -> bool {
        self.same_but_sources(other)
            && sorted(&self.masquerade_sources) == sorted(&other.masquerade_sources)
    }

    /// Whether `other` differs at most in its masqueraded sources (a set
    /// whose elements a small script replaces).
    pub fn same_but_sources(&self, other: &HostNatPlan) -> bool {
        self.host_link == other.host_link
            && self.gateway_ip == other.gateway_ip
            && self.guests_reach_host == other.guests_reach_host
            && sorted(&self.ports) == sorted(&other.ports)
    }

    /// Checks what goes into a script unquoted or inside quotes.
    pub fn validate(&self) -> Result<(), PlanError> {
        validate_host_link(&self.host_link)?;
        validate_ports(&self.ports)
    }
}

/// Why a plan cannot be turned into a script, and what to change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error("host link: {0}")]
    HostLink(#[from] IfnameError),

    #[error(
        "host link {name:?} contains {bad:?}: netd writes it into an nftables rule, so it \
         takes only A-Z, a-z, 0-9, '_', '.' and '-'; set host_link in netd.toml to such a name"
    )]
    HostLinkChar { name: String, bad: char },

    #[error("{proto} port 0 cannot be published: publish a port from 1 to 65535")]
    PortZero { proto: Proto },
}

/// The script for a full sync: netd's table deleted and recreated with the
/// plan's contents, in one transaction. The leading `add table` makes the
/// `delete` succeed when there is no table yet, so a sync works the same on
/// a fresh host, after a crash and on every later run.
pub fn sync_script(plan: &HostNatPlan) -> Result<String, PlanError> {
    Ok(format!("{}{}", remove_script(), table_definition(plan)?))
}

/// `table inet netd { ... }`: what `nft list table inet netd` shows after a
/// sync, up to blank lines and how nft orders and wraps set elements.
pub fn table_definition(plan: &HostNatPlan) -> Result<String, PlanError> {
    plan.validate()?;
    let gateway = plan.gateway_ip;
    let link = &plan.host_link;
    let (any, on_ip) = port_elements(&plan.ports);
    // Only the rules carry netd's tag (`comment "netd"`, from the shared
    // writer): it marks netd's rules in `nft list ruleset` and in tools that
    // show rules without their table, and the drift check counts them. The
    // table's comment tells whoever reads the host's firewall where it
    // comes from.
    let mut out = String::new();
    write_table_start(&mut out, TABLE, TABLE_COMMENT);
    let [masq_sources, ports_any, ports_on_ip, guests_refused] = &SETS;
    write_set(
        &mut out,
        masq_sources,
        None,
        source_elements(&plan.masquerade_sources),
    );
    write_set(&mut out, ports_any, None, &any);
    write_set(&mut out, ports_on_ip, None, &on_ip);
    let refused: Vec<String> = if plan.guests_reach_host {
        Vec::new()
    } else {
        vec![format!("\"{link}\"")]
    };
    write_set(&mut out, guests_refused, None, &refused);
    let dnat_any =
        format!("fib daddr type local meta l4proto . th dport @ports_any dnat ip to {gateway}");
    let dnat_on_ip =
        format!("ip daddr . meta l4proto . th dport @ports_on_ip dnat ip to {gateway}");
    write_chain(
        &mut out,
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
        None,
        &[&dnat_any, &dnat_on_ip],
    );
    // The host's processes reach published ports through its own addresses
    // too. Loopback stays out: a DNATed 127.0.0.1 connection would leave
    // with a loopback source, which the kernel drops as a martian (and
    // 127.0.0.1 means "this host", not "a guest").
    write_chain(
        &mut out,
        "output",
        "type nat hook output priority -100; policy accept;",
        None,
        &["ip daddr 127.0.0.0/8 return", &dnat_any, &dnat_on_ip],
    );
    write_chain(
        &mut out,
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        None,
        &[&format!(
            "ip saddr @masq_sources oifname != \"{link}\" masquerade"
        )],
    );
    // Connections from guests (and the gateway) to the host itself, with
    // `guests_reach_host = false`: the host link is then in
    // `@guests_refused`. Replies to the host's own connections (to
    // published ports, to routable guests) are let in. Published ports on
    // host addresses never get here: the gateway translates guests' ones
    // itself, and the outside's are DNATed to the gateway in prerouting.
    write_chain(
        &mut out,
        "input",
        "type filter hook input priority filter; policy accept;",
        None,
        &["iifname @guests_refused ct state != { established, related } counter reject"],
    );
    out.push_str("}\n");
    Ok(out)
}

/// Adds published ports. Ports already published are no error, so a retry
/// after a failure is safe. Empty when there is nothing to add.
pub fn publish_script(ports: &[PortMapping]) -> Result<String, PlanError> {
    validate_ports(ports)?;
    let (any, on_ip) = port_elements(ports);
    let mut out = String::new();
    write_elements(&mut out, "add", TABLE, "ports_any", &any);
    write_elements(&mut out, "add", TABLE, "ports_on_ip", &on_ip);
    Ok(out)
}

/// Withdraws published ports. Each element is added before it is deleted in
/// the same transaction, so ports that are not published are ignored
/// instead of failing the whole batch. Empty when there is nothing to do.
pub fn unpublish_script(ports: &[PortMapping]) -> String {
    let (any, on_ip) = port_elements(ports);
    let mut out = String::new();
    for (set, elements) in [("ports_any", &any), ("ports_on_ip", &on_ip)] {
        write_elements(&mut out, "add", TABLE, set, elements);
        write_elements(&mut out, "delete", TABLE, set, elements);
    }
    out
}

/// Replaces the masquerade sources: the set is flushed and refilled in one
/// transaction, so no packet sees it half-filled.
pub fn masquerade_script(sources: &[Ipv4Network]) -> String {
    let mut out = format!("flush set {TABLE} masq_sources\n");
    write_elements(
        &mut out,
        "add",
        TABLE,
        "masq_sources",
        source_elements(sources),
    );
    out
}

/// Deletes netd's table; a missing table is no error (see [`sync_script`]).
pub fn remove_script() -> String {
    render::remove_script(TABLE)
}

/// The host link goes into a quoted nft string: on top of what the kernel
/// accepts, keep to characters that need no escaping there.
fn validate_host_link(name: &str) -> Result<(), PlanError> {
    ifname::validate_ifname(name)?;
    match ifname::unquotable_char(name) {
        Some(bad) => Err(PlanError::HostLinkChar {
            name: name.to_owned(),
            bad,
        }),
        None => Ok(()),
    }
}

fn validate_ports(ports: &[PortMapping]) -> Result<(), PlanError> {
    match ports.iter().find(|port| port.host_port == 0) {
        Some(port) => Err(PlanError::PortZero { proto: port.proto }),
        None => Ok(()),
    }
}

/// The set elements for `ports`: (`ports_any`, `ports_on_ip`), sorted and
/// without duplicates (one element per protocol, host address and port,
/// whichever guest it leads to).
fn port_elements(ports: &[PortMapping]) -> (Vec<String>, Vec<String>) {
    let any: BTreeSet<(Proto, u16)> = ports
        .iter()
        .filter(|port| port.host_ip.is_none())
        .map(|port| (port.proto, port.host_port))
        .collect();
    let on_ip: BTreeSet<(Ipv4Addr, Proto, u16)> = ports
        .iter()
        .filter_map(|port| Some((port.host_ip?, port.proto, port.host_port)))
        .collect();
    (
        any.into_iter()
            .map(|(proto, port)| format!("{proto} . {port}"))
            .collect(),
        on_ip
            .into_iter()
            .map(|(ip, proto, port)| format!("{ip} . {proto} . {port}"))
            .collect(),
    )
}

/// The elements of the interval set `masq_sources`: network addresses (what
/// nft would store anyway, and so that one network spelled two ways is one
/// element), sorted, with networks inside another one left out, since an
/// interval set refuses overlapping elements.
fn source_elements(sources: &[Ipv4Network]) -> Vec<String> {
    let mut nets: Vec<(Ipv4Addr, u8)> = sources
        .iter()
        .map(|net| (net.network(), net.prefix()))
        .collect();
    // By address, then widest first: a network's container comes before it.
    nets.sort_unstable();
    nets.dedup();
    let mut kept: Vec<Ipv4Network> = Vec::new();
    for (addr, prefix) in nets {
        let net = Ipv4Network::new(addr, prefix).expect("prefix of a valid network");
        // CIDR blocks nest or are disjoint, so the last one kept is the only
        // possible container.
        if kept.last().is_some_and(|last| last.contains(addr)) {
            continue;
        }
        kept.push(net);
    }
    kept.iter()
        .map(|net| format!("{}/{}", net.network(), net.prefix()))
        .collect()
}

/// Applies netd's host NAT through `nft`, in the daemon's own namespace or
/// in a given one, and remembers the plan last applied so that a caller who
/// finds the table gone ([`HostNat::present`]) can sync it again.
#[derive(Debug)]
pub struct HostNat {
    nft: Nft,
    plan: Option<HostNatPlan>,
}

impl HostNat {
    /// Host NAT in `netns`, or in the namespace the daemon runs in (the
    /// host's; a test sandbox's when a test runs the daemon) when None.
    pub fn new(netns: Option<Netns>) -> HostNat {
        HostNat {
            nft: Nft::new(netns),
            plan: None,
        }
    }

    /// The plan as last applied, with the ports and sources changed since;
    /// None before the first sync and after [`HostNat::remove`].
    pub fn plan(&self) -> Option<&HostNatPlan> {
        self.plan.as_ref()
    }

    /// Makes netd's table exactly `plan`, in one transaction. Idempotent.
    pub fn sync(&mut self, plan: &HostNatPlan) -> Result<()> {
        let script = sync_script(plan).context("checking the host NAT plan")?;
        self.apply(&script)
            .with_context(|| format!("syncing nftables table {TABLE}"))?;
        self.plan = Some(plan.clone());
        Ok(())
    }

    /// Brings the table to `plan` with the least work: none if that is the
    /// table in force (a network created or removed changes the host table
    /// only when it is routable, and a whole sync rewrites every published
    /// port), the sources' set alone if only they differ, else a sync.
    pub fn update(&mut self, plan: &HostNatPlan) -> Result<()> {
        match &self.plan {
            Some(current) if current.same_table(plan) => Ok(()),
            Some(current) if current.same_but_sources(plan) => {
                self.set_masquerade_sources(&plan.masquerade_sources)
            }
            _ => self.sync(plan),
        }
    }

    /// Publishes ports: all of them, or none on error.
    pub fn publish(&mut self, ports: &[PortMapping]) -> Result<()> {
        self.ensure_synced("publishing ports")?;
        let script = publish_script(ports).context("publishing ports")?;
        self.apply(&script)
            .with_context(|| format!("publishing {} port(s) in {TABLE}", ports.len()))?;
        if let Some(plan) = &mut self.plan {
            // One mapping per element: a port published again replaces the
            // mapping it had.
            for port in ports {
                plan.ports.retain(|have| !same_key(have, port));
                plan.ports.push(*port);
            }
        }
        Ok(())
    }

    /// Withdraws ports; ports not published are ignored.
    pub fn unpublish(&mut self, ports: &[PortMapping]) -> Result<()> {
        self.ensure_synced("withdrawing ports")?;
        self.apply(&unpublish_script(ports))
            .with_context(|| format!("withdrawing {} port(s) from {TABLE}", ports.len()))?;
        if let Some(plan) = &mut self.plan {
            plan.ports
                .retain(|have| !ports.iter().any(|port| same_key(have, port)));
        }
        Ok(())
    }

    /// Replaces the masqueraded sources (when routable networks come or go).
    pub fn set_masquerade_sources(&mut self, sources: &[Ipv4Network]) -> Result<()> {
        self.ensure_synced("setting masquerade sources")?;
        self.apply(&masquerade_script(sources))
            .with_context(|| format!("replacing the masquerade sources in {TABLE}"))?;
        if let Some(plan) = &mut self.plan {
            plan.masquerade_sources = sources.to_vec();
        }
        Ok(())
    }

    /// Deletes netd's table, and only it; a missing table is no error.
    pub fn remove(&mut self) -> Result<()> {
        self.apply(&remove_script())
            .with_context(|| format!("removing nftables table {TABLE}"))?;
        self.plan = None;
        Ok(())
    }

    /// Whether netd's table is there with its three chains and their rules:
    /// false means someone deleted the table, a chain or one of netd's rules
    /// (or added rules to its chains), and a sync puts it back.
    pub fn present(&self) -> Result<bool> {
        let context = || format!("checking nftables table {TABLE}");
        let tables = self
            .nft
            .json(&["list", "tables", "inet"])
            .with_context(context)?;
        let has_table = objects(&tables, "table").any(|table| table["name"] == "netd");
        if !has_table {
            return Ok(false);
        }
        let listing = self
            .nft
            .json(&["list", "table", "inet", "netd"])
            .with_context(context)?;
        Ok(chains_intact(&listing))
    }

    /// Turns on IPv4 forwarding (net.ipv4.ip_forward) in this `HostNat`'s
    /// namespace, without which the host would not route between the gateway
    /// and its other interfaces. Returns whether it was off, so the caller
    /// can say it changed a host setting.
    pub fn enable_forwarding(&self) -> Result<bool> {
        let result = match self.nft.netns() {
            Some(ns) => ns.run_in(enable_ip_forward)?,
            None => enable_ip_forward(),
        };
        result.with_context(|| {
            format!(
                "enabling IPv4 forwarding ({IP_FORWARD}) in {}: netd needs it to route the \
                 gateway's traffic; is /proc/sys mounted read-only (as in some containers)?",
                self.where_()
            )
        })
    }

    /// Ports and sources are changed in a table a sync made: without one,
    /// nft would only say "No such file or directory".
    fn ensure_synced(&self, doing: &str) -> Result<()> {
        if self.plan.is_none() {
            bail!("{doing}: host NAT is not set up: sync a plan before changing it");
        }
        Ok(())
    }

    fn where_(&self) -> String {
        self.nft.place()
    }

    /// Runs `script` as one nft transaction; nft's "No such file or
    /// directory" gets a hint, since the table or a set is then missing.
    fn apply(&self, script: &str) -> Result<()> {
        self.nft.apply(script).map_err(|err| {
            if format!("{err:#}").contains("No such file or directory") {
                err.context(format!(
                    "table {TABLE} or one of its sets is missing: a sync recreates it"
                ))
            } else {
                err
            }
        })
    }
}

/// The host table as a backend's [`HostSide`]: the table is wanted while
/// some network exists (the last sync was given a host); while it is, it is
/// checked and, when missing or altered, synced again from what it should
/// hold.
#[derive(Debug)]
pub struct NftHostSide {
    nat: HostNat,
    /// What the table should hold: the last sync's host, with the ports
    /// published and withdrawn since. None: no table is wanted.
    wanted: Option<HostPlumbing>,
}

impl NftHostSide {
    /// The table in the namespace the daemon runs in.
    pub fn new() -> NftHostSide {
        NftHostSide {
            nat: HostNat::new(None),
            wanted: None,
        }
    }
}

impl Default for NftHostSide {
    fn default() -> NftHostSide {
        NftHostSide::new()
    }
}

impl NftHostSide {
    /// The table for `host`: rewritten whole with `force` (a repair), else
    /// changed only where it differs from the one in force.
    fn sync_to(&mut self, host: Option<&HostPlumbing>, force: bool) -> Result<()> {
        self.wanted = host.cloned();
        let Some(host) = host else {
            return self.nat.remove();
        };
        if self.nat.enable_forwarding()? {
            info!("enabled IPv4 forwarding in the host namespace (net.ipv4.ip_forward)");
        }
        let plan = HostNatPlan::from_plumbing(host);
        if force {
            self.nat.sync(&plan)
        } else {
            self.nat.update(&plan)
        }
    }
}

impl HostSide for NftHostSide {
    fn sync(&mut self, host: Option<&HostPlumbing>) -> Result<()> {
        self.sync_to(host, false)
    }

    fn publish(&mut self, ports: &[PortMapping]) -> Result<()> {
        // Before the first sync there is no table; the sync will carry these.
        if self.nat.plan().is_some() {
            self.nat.publish(ports)?;
        }
        if let Some(host) = &mut self.wanted {
            host.ports.extend_from_slice(ports);
        }
        Ok(())
    }

    fn unpublish(&mut self, ports: &[PortMapping]) {
        if let Some(host) = &mut self.wanted {
            host.ports.retain(|have| !ports.contains(have));
        }
        if self.nat.plan().is_some()
            && let Err(err) = self.nat.unpublish(ports)
        {
            warn!("withdrawing ports from the host nftables table: {err:#}");
        }
    }

    fn check(&self) -> Vec<String> {
        if self.wanted.is_none() {
            return Vec::new();
        }
        match self.nat.present() {
            Ok(true) => Vec::new(),
            Ok(false) => vec![format!(
                "host nftables table {TABLE} is missing or altered (the daemon restores it)"
            )],
            // nft could not run (EMFILE...): no sign that the table is gone.
            Err(err) => vec![format!(
                "could not check host nftables table {TABLE}: {err:#}"
            )],
        }
    }

    fn repair(&mut self) {
        if self.wanted.is_none() {
            return;
        }
        match self.nat.present() {
            Ok(true) => return,
            Ok(false) => {}
            Err(err) => {
                warn!("could not check the host nftables table (left as it is): {err:#}");
                return;
            }
        }
        warn!("netd's host nftables table is missing or altered: restoring it");
        let host = self.wanted.clone();
        if let Err(err) = self.sync_to(host.as_ref(), true) {
            warn!("restoring the host nftables table: {err:#}");
        }
    }

    fn remove(&mut self) {
        self.wanted = None;
        if let Err(err) = self.nat.remove() {
            warn!("removing the host nftables table: {err:#}");
        }
    }
}

/// Ports are the same element when protocol, host address and port match.
fn same_key(a: &PortMapping, b: &PortMapping) -> bool {
    (a.proto, a.host_ip, a.host_port) == (b.proto, b.host_ip, b.host_port)
}

fn enable_ip_forward() -> io::Result<bool> {
    if fs::read_to_string(IP_FORWARD)?.trim() == "1" {
        return Ok(false);
    }
    fs::write(IP_FORWARD, "1")?;
    Ok(true)
}

/// Whether `nft -j list table inet netd` shows every chain with its rules.
fn chains_intact(listing: &serde_json::Value) -> bool {
    CHAINS
        .iter()
        .all(|&(chain, rules)| check::chain_problem(listing, chain, rules).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(proto: Proto, host_ip: Option<[u8; 4]>, host_port: u16) -> PortMapping {
        PortMapping {
            proto,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            zone: 1,
            guest_ip: Ipv4Addr::new(172, 18, 0, 2),
            guest_port: 80,
        }
    }

    fn net(text: &str) -> Ipv4Network {
        text.parse().unwrap()
    }

    #[test]
    fn plans_that_make_the_same_table_compare_equal_in_any_order() {
        let plan = example_plan();
        let mut shuffled = example_plan();
        shuffled.ports.reverse();
        shuffled.masquerade_sources.reverse();
        assert!(plan.same_table(&shuffled));

        let mut routable = example_plan();
        routable.masquerade_sources.push(net("10.9.0.0/24"));
        assert!(!plan.same_table(&routable));
        assert!(
            plan.same_but_sources(&routable),
            "only the sources' set changes"
        );

        let mut published = example_plan();
        published.ports.push(port(Proto::Tcp, None, 9090));
        assert!(!plan.same_but_sources(&published));
        let mut moved = example_plan();
        moved.host_link = "other0".to_owned();
        assert!(!plan.same_but_sources(&moved));
        let mut guarded = example_plan();
        guarded.guests_reach_host = false;
        assert!(!plan.same_but_sources(&guarded));
    }

    #[test]
    fn guests_kept_from_the_host_put_the_host_link_in_the_refused_set() {
        let plan = HostNatPlan {
            guests_reach_host: false,
            ..example_plan()
        };
        let table = table_definition(&plan).unwrap();
        assert!(
            table.contains(
                "\tset guests_refused {\n\t\ttype ifname\n\t\telements = { \"netd0\" }\n\t}\n"
            ),
            "{table}"
        );
    }

    fn example_plan() -> HostNatPlan {
        HostNatPlan {
            host_link: "netd0".to_owned(),
            gateway_ip: Ipv4Addr::new(172, 18, 255, 2),
            masquerade_sources: vec![net("172.18.255.0/30"), net("172.18.3.0/24")],
            ports: vec![
                port(Proto::Udp, None, 53),
                port(Proto::Tcp, None, 8080),
                port(Proto::Tcp, Some([198, 51, 100, 2]), 8443),
            ],
            guests_reach_host: true,
        }
    }

    const EXAMPLE_TABLE: &str = r#"table inet netd {
	comment "owned by netd: every sync replaces this table, so edits here are lost"
	set masq_sources {
		type ipv4_addr
		flags interval
		elements = { 172.18.3.0/24, 172.18.255.0/30 }
	}
	set ports_any {
		type inet_proto . inet_service
		elements = { tcp . 8080, udp . 53 }
	}
	set ports_on_ip {
		type ipv4_addr . inet_proto . inet_service
		elements = { 198.51.100.2 . tcp . 8443 }
	}
	set guests_refused {
		type ifname
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local meta l4proto . th dport @ports_any dnat ip to 172.18.255.2 comment "netd"
		ip daddr . meta l4proto . th dport @ports_on_ip dnat ip to 172.18.255.2 comment "netd"
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.0/8 return comment "netd"
		fib daddr type local meta l4proto . th dport @ports_any dnat ip to 172.18.255.2 comment "netd"
		ip daddr . meta l4proto . th dport @ports_on_ip dnat ip to 172.18.255.2 comment "netd"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr @masq_sources oifname != "netd0" masquerade comment "netd"
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname @guests_refused ct state != { established, related } counter reject comment "netd"
	}
}
"#;

    #[test]
    fn sync_replaces_only_netds_table_in_one_batch() {
        let script = sync_script(&example_plan()).unwrap();
        assert_eq!(
            script,
            format!("add table inet netd\ndelete table inet netd\n{EXAMPLE_TABLE}")
        );
    }

    #[test]
    fn empty_sets_are_declared_without_elements() {
        let plan = HostNatPlan {
            masquerade_sources: vec![],
            ports: vec![],
            ..example_plan()
        };
        let table = table_definition(&plan).unwrap();
        assert!(!table.contains("elements"), "{table}");
        assert!(
            table.contains("\tset ports_any {\n\t\ttype inet_proto . inet_service\n\t}\n"),
            "{table}"
        );
    }

    #[test]
    fn the_default_config_masquerades_the_host_link_and_routable_subnets() {
        let topology = crate::topology::Topology::new(crate::config::Config::default()).unwrap();
        let host = topology.host_plumbing(vec![net("10.9.0.0/24")], vec![]);
        let plan = HostNatPlan::from_plumbing(&host);
        assert_eq!(plan.host_link, "netd0");
        assert_eq!(plan.gateway_ip, Ipv4Addr::new(172, 18, 255, 2));
        assert_eq!(
            plan.masquerade_sources,
            vec![net("172.18.255.0/30"), net("10.9.0.0/24")]
        );
    }

    #[test]
    fn publishing_adds_one_element_per_port() {
        let script = publish_script(&[
            port(Proto::Tcp, None, 8080),
            port(Proto::Tcp, None, 8080),
            port(Proto::Udp, Some([198, 51, 100, 2]), 5353),
        ])
        .unwrap();
        assert_eq!(
            script,
            "add element inet netd ports_any { tcp . 8080 }\n\
             add element inet netd ports_on_ip { 198.51.100.2 . udp . 5353 }\n"
        );
        assert_eq!(publish_script(&[]).unwrap(), "");
    }

    #[test]
    fn unpublishing_tolerates_ports_that_are_not_published() {
        assert_eq!(
            unpublish_script(&[port(Proto::Tcp, None, 8080)]),
            "add element inet netd ports_any { tcp . 8080 }\n\
             delete element inet netd ports_any { tcp . 8080 }\n"
        );
        assert_eq!(
            unpublish_script(&[port(Proto::Udp, Some([10, 0, 0, 1]), 53)]),
            "add element inet netd ports_on_ip { 10.0.0.1 . udp . 53 }\n\
             delete element inet netd ports_on_ip { 10.0.0.1 . udp . 53 }\n"
        );
        assert_eq!(unpublish_script(&[]), "");
    }

    #[test]
    fn masquerade_sources_are_replaced_in_one_batch() {
        assert_eq!(
            masquerade_script(&[net("172.18.255.0/30")]),
            "flush set inet netd masq_sources\n\
             add element inet netd masq_sources { 172.18.255.0/30 }\n"
        );
        assert_eq!(masquerade_script(&[]), "flush set inet netd masq_sources\n");
    }

    #[test]
    fn masquerade_sources_lose_host_bits_duplicates_and_overlaps() {
        let sources = [
            net("10.1.2.3/16"),
            net("172.18.255.2/30"),
            net("10.0.0.0/8"),
            net("172.18.255.0/30"),
            net("192.168.1.7/32"),
            net("10.200.0.0/24"),
        ];
        assert_eq!(
            source_elements(&sources),
            ["10.0.0.0/8", "172.18.255.0/30", "192.168.1.7/32"]
        );
    }

    #[test]
    fn remove_touches_only_netds_table_and_tolerates_its_absence() {
        assert_eq!(
            remove_script(),
            "add table inet netd\ndelete table inet netd\n"
        );
    }

    #[test]
    fn host_link_names_that_need_quoting_are_refused() {
        for bad in ["net\"d0", "a b", "net\\0", "n;d", "ünd"] {
            let plan = HostNatPlan {
                host_link: bad.to_owned(),
                ..example_plan()
            };
            let err = sync_script(&plan).unwrap_err();
            assert!(
                matches!(&err, PlanError::HostLinkChar { name, .. } if name == bad)
                    || matches!(err, PlanError::HostLink(_)),
                "{bad:?}: {err:?}"
            );
        }
        let err = validate_host_link("net\"d0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "host link \"net\\\"d0\" contains '\"': netd writes it into an nftables rule, so it \
             takes only A-Z, a-z, 0-9, '_', '.' and '-'; set host_link in netd.toml to such a name"
        );
        for good in ["netd0", "br-1.100", "a_b", "abcdefghijklmno"] {
            validate_host_link(good).unwrap();
        }
    }

    #[test]
    fn host_link_names_the_kernel_refuses_are_refused() {
        for bad in ["", "abcdefghijklmnop", ".", ".."] {
            assert!(
                matches!(validate_host_link(bad), Err(PlanError::HostLink(_))),
                "{bad:?}"
            );
        }
        let message = validate_host_link("abcdefghijklmnop")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("host link: interface name"),
            "{message}"
        );
    }

    #[test]
    fn port_zero_is_refused() {
        let err = publish_script(&[port(Proto::Udp, None, 0)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "udp port 0 cannot be published: publish a port from 1 to 65535"
        );
        let plan = HostNatPlan {
            ports: vec![port(Proto::Tcp, None, 0)],
            ..example_plan()
        };
        assert_eq!(
            sync_script(&plan),
            Err(PlanError::PortZero { proto: Proto::Tcp })
        );
    }

    #[test]
    fn changes_before_a_sync_name_the_fix() {
        let mut nat = HostNat::new(None);
        let message = format!(
            "{:#}",
            nat.publish(&[port(Proto::Tcp, None, 80)]).unwrap_err()
        );
        assert_eq!(
            message,
            "publishing ports: host NAT is not set up: sync a plan before changing it"
        );
    }

    #[test]
    fn drift_check_counts_netds_rules_per_chain() {
        let rule = |chain: &str| {
            serde_json::json!({"rule": {"family": "inet", "table": "netd", "chain": chain,
                "comment": "netd", "expr": []}})
        };
        let chain = |name: &str| serde_json::json!({"chain": {"name": name}});
        let mut objects = vec![
            chain("prerouting"),
            rule("prerouting"),
            rule("prerouting"),
            chain("output"),
            rule("output"),
            rule("output"),
            rule("output"),
            chain("postrouting"),
            rule("postrouting"),
            chain("input"),
            rule("input"),
        ];
        let listing = |objects: &[serde_json::Value]| serde_json::json!({ "nftables": objects });
        assert!(chains_intact(&listing(&objects)));
        objects.pop();
        assert!(!chains_intact(&listing(&objects)));
        assert!(!chains_intact(&listing(&objects[..4])));
    }
}

/// Against a real kernel, in throw-away namespaces only: every nft call goes
/// through the namespace's handle, so the machine's own firewall is never
/// read or changed.
#[cfg(test)]
mod root_tests {
    use std::{
        net::{TcpListener, TcpStream},
        sync::atomic::{AtomicU32, Ordering},
    };

    use super::*;

    /// Deletes the namespace when the test ends, passing or panicking.
    struct ThrowAwayNetns {
        name: String,
    }

    impl ThrowAwayNetns {
        fn create() -> (ThrowAwayNetns, Netns) {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("hnt-{}-{n}", std::process::id());
            let netns = Netns::create(&name).unwrap();
            (ThrowAwayNetns { name }, netns)
        }
    }

    impl Drop for ThrowAwayNetns {
        fn drop(&mut self) {
            if let Err(err) = Netns::delete(&self.name) {
                eprintln!("leaving namespace {} behind: {err:#}", self.name);
            }
        }
    }

    fn is_root() -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        eprintln!("skipped: needs root to create network namespaces");
        false
    }

    /// Runs `program args` in `netns` and returns its stdout.
    fn run(netns: &Netns, program: &str, args: &[&str]) -> String {
        let output = netns.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn nft(netns: &Netns, args: &[&str]) -> String {
        run(netns, "nft", args)
    }

    /// A set's elements as nft's JSON spells them, one string each.
    fn elements(netns: &Netns, set: &str) -> BTreeSet<String> {
        let json: serde_json::Value =
            serde_json::from_str(&nft(netns, &["-j", "list", "set", "inet", "netd", set])).unwrap();
        objects(&json, "set")
            .flat_map(|set| set["elem"].as_array().cloned().unwrap_or_default())
            .map(|elem| elem.to_string())
            .collect()
    }

    fn mapping(proto: Proto, host_ip: Option<Ipv4Addr>, host_port: u16) -> PortMapping {
        PortMapping {
            proto,
            host_ip,
            host_port,
            zone: 1,
            guest_ip: Ipv4Addr::new(172, 18, 0, 2),
            guest_port: 80,
        }
    }

    fn plan() -> HostNatPlan {
        HostNatPlan {
            host_link: "netd0".to_owned(),
            gateway_ip: Ipv4Addr::new(172, 18, 255, 2),
            masquerade_sources: vec!["172.18.255.0/30".parse().unwrap()],
            ports: vec![
                mapping(Proto::Tcp, None, 8080),
                mapping(Proto::Udp, Some(Ipv4Addr::new(198, 51, 100, 2)), 5353),
            ],
            guests_reach_host: true,
        }
    }

    const OTHER_TABLE: &str = "table inet other {\n\
        \tset keep { type inet_service; elements = { 22 } }\n\
        \tchain input { type filter hook input priority 0; policy accept; \
        tcp dport @keep counter; }\n}\n";

    #[test]
    fn sync_publish_remove_touch_only_netds_table() {
        if !is_root() {
            return;
        }
        let (_guard, netns) = ThrowAwayNetns::create();
        let probe = Netns::open(netns.name()).unwrap();
        Nft::new(Some(Netns::open(netns.name()).unwrap()))
            .apply(OTHER_TABLE)
            .unwrap();
        let other_before = nft(&probe, &["list", "table", "inet", "other"]);
        let other_untouched = || {
            assert_eq!(
                nft(&probe, &["list", "table", "inet", "other"]),
                other_before
            )
        };

        let mut nat = HostNat::new(Some(netns));
        assert!(!nat.present().unwrap());
        nat.remove().unwrap();

        nat.sync(&plan()).unwrap();
        let listing = nft(&probe, &["list", "table", "inet", "netd"]);
        for expected in [
            "172.18.255.0/30",
            "tcp . 8080",
            "198.51.100.2 . udp . 5353",
            "fib daddr type local meta l4proto . th dport @ports_any dnat ip to 172.18.255.2 comment \"netd\"",
            "ip daddr . meta l4proto . th dport @ports_on_ip dnat ip to 172.18.255.2 comment \"netd\"",
            "ip daddr 127.0.0.0/8 return comment \"netd\"",
            "ip saddr @masq_sources oifname != \"netd0\" masquerade comment \"netd\"",
        ] {
            assert!(
                listing.contains(expected),
                "{expected:?} missing from\n{listing}"
            );
        }
        assert!(nat.present().unwrap());
        other_untouched();

        // Idempotent: a second sync leaves the same table.
        nat.sync(&plan()).unwrap();
        assert_eq!(nft(&probe, &["list", "table", "inet", "netd"]), listing);
        other_untouched();

        // Publishing and withdrawing a port changes exactly one element.
        let before = elements(&probe, "ports_any");
        let extra = mapping(Proto::Udp, None, 9999);
        nat.publish(&[extra]).unwrap();
        let after = elements(&probe, "ports_any");
        assert!(after.is_superset(&before));
        assert_eq!(
            after.difference(&before).collect::<Vec<_>>(),
            [r#"{"concat":["udp",9999]}"#]
        );
        assert_eq!(elements(&probe, "ports_on_ip").len(), 1);
        assert!(nat.plan().unwrap().ports.contains(&extra));
        nat.publish(&[extra]).unwrap();
        assert_eq!(elements(&probe, "ports_any"), after);
        nat.unpublish(&[extra]).unwrap();
        assert_eq!(elements(&probe, "ports_any"), before);
        nat.unpublish(&[extra]).unwrap();
        assert_eq!(elements(&probe, "ports_any"), before);
        assert!(!nat.plan().unwrap().ports.contains(&extra));

        let on_ip = mapping(Proto::Tcp, Some(Ipv4Addr::new(192, 0, 2, 7)), 443);
        nat.publish(&[on_ip]).unwrap();
        assert_eq!(elements(&probe, "ports_on_ip").len(), 2);
        nat.unpublish(&[on_ip]).unwrap();
        assert_eq!(elements(&probe, "ports_on_ip").len(), 1);

        let sources: Vec<Ipv4Network> = vec![
            "172.18.255.0/30".parse().unwrap(),
            "10.9.0.0/24".parse().unwrap(),
            "10.9.0.128/25".parse().unwrap(),
        ];
        nat.set_masquerade_sources(&sources).unwrap();
        let masq = elements(&probe, "masq_sources");
        assert_eq!(masq.len(), 2, "{masq:?}");
        nat.set_masquerade_sources(&sources[..1]).unwrap();
        assert_eq!(elements(&probe, "masq_sources").len(), 1);
        other_untouched();

        // Drift: a flushed chain is noticed, and a sync repairs it.
        nft(&probe, &["flush", "chain", "inet", "netd", "output"]);
        assert!(!nat.present().unwrap());
        let repaired = nat.plan().unwrap().clone();
        nat.sync(&repaired).unwrap();
        assert!(nat.present().unwrap());

        nat.remove().unwrap();
        assert!(!nft(&probe, &["list", "tables"]).contains("netd"));
        assert!(!nat.present().unwrap());
        nat.remove().unwrap();
        other_untouched();

        let err = format!("{:#}", nat.publish(&[extra]).unwrap_err());
        assert!(err.contains("sync a plan"), "{err}");
    }

    #[test]
    fn nft_errors_carry_nfts_message() {
        if !is_root() {
            return;
        }
        let (_guard, netns) = ThrowAwayNetns::create();
        let probe = Netns::open(netns.name()).unwrap();
        let mut nat = HostNat::new(Some(netns));
        nat.sync(&plan()).unwrap();
        nft(&probe, &["delete", "table", "inet", "netd"]);
        let err = format!(
            "{:#}",
            nat.publish(&[mapping(Proto::Tcp, None, 1)]).unwrap_err()
        );
        assert!(
            err.starts_with("publishing 1 port(s) in inet netd: "),
            "{err}"
        );
        assert!(
            err.contains("nft -f - failed in network namespace"),
            "{err}"
        );
        assert!(err.contains("Error: "), "{err}");
        assert!(err.contains("a sync recreates it"), "{err}");
    }

    /// The host's own processes reach a published port through a host
    /// address, but not through loopback.
    #[test]
    fn output_hook_dnats_local_connections_except_loopback() {
        if !is_root() {
            return;
        }
        let (_guard, netns) = ThrowAwayNetns::create();
        run(&netns, "ip", &["link", "set", "lo", "up"]);
        // Host addresses on loopback: local, yet outside 127.0.0.0/8.
        for addr in ["172.18.255.2/32", "198.51.100.2/32"] {
            run(&netns, "ip", &["addr", "add", addr, "dev", "lo"]);
        }
        let probe = Netns::open(netns.name()).unwrap();
        let mut nat = HostNat::new(Some(netns));
        nat.sync(&plan()).unwrap();

        // One listener for every probe: binding it again right after a
        // probe's connection closed could meet that connection still
        // closing (EADDRINUSE).
        let listener = probe
            .run_in(|| TcpListener::bind("172.18.255.2:8080").unwrap())
            .unwrap();
        let reached = |to: &str| -> bool {
            let ok = probe.run_in(|| TcpStream::connect(to).is_ok()).unwrap();
            if ok {
                listener.accept().unwrap();
            }
            ok
        };
        assert!(reached("198.51.100.2:8080"));
        assert!(!reached("127.0.0.1:8080"));
        nat.unpublish(&[mapping(Proto::Tcp, None, 8080)]).unwrap();
        assert!(!reached("198.51.100.2:8080"));
    }

    #[test]
    fn forwarding_is_enabled_once_in_the_given_namespace() {
        if !is_root() {
            return;
        }
        let (_guard, netns) = ThrowAwayNetns::create();
        let probe = Netns::open(netns.name()).unwrap();
        let nat = HostNat::new(Some(netns));
        assert!(nat.enable_forwarding().unwrap());
        assert!(!nat.enable_forwarding().unwrap());
        let value = probe
            .run_in(|| fs::read_to_string(IP_FORWARD))
            .unwrap()
            .unwrap();
        assert_eq!(value.trim(), "1");
    }
}
