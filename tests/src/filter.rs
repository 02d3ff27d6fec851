//! The destination filter: a TC program that drops IPv4 packets to listed
//! addresses, with per-CPU counters for every verdict. Only the demo (part 1)
//! and the foundation test use it, so it lives here and not in the daemon.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow};
use aya::{
    maps::{HashMap, MapData, PerCpuArray},
    programs::{SchedClassifier, TcAttachType, tc::SchedClassifierLinkId},
};
use netd_common::{
    counters::Counter,
    filter::{FilterRule, Ipv4Key, VERDICT_DROP},
    maps,
};

use netd::{dataplane::ebpf::loader::Loaded, netns::Netns};

/// Which way through the interface the program sees packets.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    Ingress,
    Egress,
}

impl From<Direction> for TcAttachType {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Ingress => TcAttachType::Ingress,
            Direction::Egress => TcAttachType::Egress,
        }
    }
}

pub struct DestinationFilter {
    loaded: Loaded,
    blocked: HashMap<MapData, Ipv4Key, FilterRule>,
    counters: PerCpuArray<MapData, u64>,
    links: Vec<SchedClassifierLinkId>,
}

impl DestinationFilter {
    /// Loads the program into the kernel (not yet attached anywhere).
    pub fn load() -> Result<DestinationFilter> {
        Self::load_pinned(None)
    }

    /// Like [`DestinationFilter::load`], and pins the maps under `pin_dir` (a
    /// bpffs directory) so that they outlive this process.
    pub fn load_pinned(pin_dir: Option<&std::path::Path>) -> Result<DestinationFilter> {
        let mut loaded = Loaded::new()?;
        let program: &mut SchedClassifier = loaded
            .ebpf
            .program_mut(maps::PROG_FILTER)
            .ok_or_else(|| anyhow!("program {} missing from the object", maps::PROG_FILTER))?
            .try_into()?;
        program.load().context("verifier rejected netd_filter")?;
        if let Some(dir) = pin_dir {
            for name in [maps::BLOCKED_DST, maps::COUNTERS] {
                let map = loaded
                    .ebpf
                    .map(name)
                    .ok_or_else(|| anyhow!("map {name} missing"))?;
                map.pin(dir.join(name))
                    .with_context(|| format!("pinning {name} under {}", dir.display()))?;
            }
        }
        let blocked = HashMap::try_from(
            loaded
                .ebpf
                .take_map(maps::BLOCKED_DST)
                .ok_or_else(|| anyhow!("map {} missing", maps::BLOCKED_DST))?,
        )?;
        let counters = PerCpuArray::try_from(
            loaded
                .ebpf
                .take_map(maps::COUNTERS)
                .ok_or_else(|| anyhow!("map {} missing", maps::COUNTERS))?,
        )?;
        Ok(DestinationFilter {
            loaded,
            blocked,
            counters,
            links: Vec::new(),
        })
    }

    /// Attaches to `interface` inside `netns` (TCX on kernels that have it).
    pub fn attach(&mut self, netns: &Netns, interface: &str, direction: Direction) -> Result<()> {
        let program: &mut SchedClassifier = self
            .loaded
            .ebpf
            .program_mut(maps::PROG_FILTER)
            .expect("checked at load")
            .try_into()?;
        let link = netns
            .run_in(|| program.attach(interface, direction.into()))?
            .with_context(|| format!("attaching netd_filter to {interface} in {}", netns.name()))?;
        self.links.push(link);
        Ok(())
    }

    pub fn block(&mut self, destination: Ipv4Addr) -> Result<()> {
        self.blocked
            .insert(
                Ipv4Key::new(destination.octets()),
                FilterRule {
                    verdict: VERDICT_DROP,
                },
                0,
            )
            .with_context(|| format!("blocking {destination}"))
    }

    pub fn unblock(&mut self, destination: Ipv4Addr) -> Result<()> {
        self.blocked
            .remove(&Ipv4Key::new(destination.octets()))
            .with_context(|| format!("unblocking {destination}"))
    }

    /// Sums the per-CPU slots of one counter.
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let per_cpu = self
            .counters
            .get(&(counter as u32), 0)
            .with_context(|| format!("reading counter {}", counter.name()))?;
        Ok(per_cpu.iter().sum())
    }

    /// Every counter with its name, in index order.
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>> {
        Counter::ALL
            .iter()
            .map(|&c| Ok((c.name(), self.counter(c)?)))
            .collect()
    }
}
