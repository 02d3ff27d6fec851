//! The dataplane's pins under `<bpffs>/netd/<layout>/`: maps in `maps/`,
//! TCX links in `links/`. Pinned maps keep connections and configuration
//! across daemon restarts; pinned links keep the programs attached while no
//! daemon runs.
//!
//! A pinned map is reused only if its type and sizes are exactly what this
//! build's programs expect; otherwise it is removed and created afresh, since
//! reading old entries with a new layout would corrupt every lookup.

use std::{
    fs, io,
    mem::size_of,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::maps::{MapInfo, MapType};
use netd_common::{
    counters::COUNTERS_MAX_ENTRIES,
    filter::{FilterRule, Ipv4Key},
    maps,
    nat::{CtEntry, CtKey, ForwardKey, ForwardTarget, ShareKey},
    partition::PartitionPolicy,
    zones::{GatewayInfo, GuestIdentity, GuestKey, GuestPort, NetworkInfo},
};
use tracing::warn;

/// What a map must look like for this build's programs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapSpec {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// `BPF_F_*` creation flags (no preallocation, per-CPU LRU lists).
    pub flags: u32,
}

const fn spec<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> MapSpec {
    MapSpec {
        name,
        map_type,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
        flags: 0,
    }
}

impl MapSpec {
    const fn with_flags(self, flags: u32) -> MapSpec {
        MapSpec { flags, ..self }
    }
}

/// Every map the dataplane pins, as the programs in `netd-ebpf` declare them.
pub const MAP_SPECS: [MapSpec; 14] = [
    spec::<ShareKey, u32>(
        maps::PORT_SHARES,
        MapType::LruHash,
        maps::PORT_SHARES_MAX_ENTRIES,
    )
    .with_flags(maps::BPF_F_NO_COMMON_LRU),
    spec::<u64, GuestIdentity>(
        maps::GUEST_BY_MAC,
        MapType::Hash,
        maps::GUEST_PORTS_MAX_ENTRIES,
    ),
    spec::<u32, PartitionPolicy>(
        maps::PARTITIONS,
        MapType::Hash,
        netd_common::counters::COUNTED_ZONES,
    )
    .with_flags(maps::BPF_F_NO_PREALLOC),
    spec::<u64, u32>(maps::ZONE_BY_MAC, MapType::Hash, maps::NETWORKS_MAX_ENTRIES),
    spec::<GuestKey, GuestPort>(
        maps::GUEST_PORTS,
        MapType::Hash,
        maps::GUEST_PORTS_MAX_ENTRIES,
    ),
    spec::<u32, u64>(maps::COUNTERS, MapType::PerCpuArray, COUNTERS_MAX_ENTRIES),
    spec::<Ipv4Key, FilterRule>(
        maps::BLOCKED_DST,
        MapType::Hash,
        maps::BLOCKED_DST_MAX_ENTRIES,
    ),
    spec::<CtKey, CtEntry>(
        maps::CONNTRACK,
        MapType::LruHash,
        maps::CONNTRACK_MAX_ENTRIES,
    )
    .with_flags(maps::BPF_F_NO_COMMON_LRU),
    spec::<ForwardKey, ForwardTarget>(maps::FORWARDS, MapType::Hash, maps::FORWARDS_MAX_ENTRIES),
    spec::<u32, GatewayInfo>(maps::GATEWAY, MapType::Array, 1),
    spec::<u32, NetworkInfo>(maps::NETWORKS, MapType::Hash, maps::NETWORKS_MAX_ENTRIES),
    spec::<u32, u32>(
        maps::ZONE_BY_IFINDEX,
        MapType::Hash,
        maps::NETWORKS_MAX_ENTRIES,
    ),
    spec::<Ipv4Key, u32>(
        maps::HOST_ADDRS,
        MapType::Hash,
        maps::HOST_ADDRS_MAX_ENTRIES,
    ),
    spec::<Ipv4Key, u32>(
        maps::OVERLAY_GATEWAYS,
        MapType::Hash,
        maps::NETWORKS_MAX_ENTRIES,
    ),
];

/// Why a pinned map cannot be reused, or None if it fits.
pub fn mismatch(spec: &MapSpec, found: &MapSpec) -> Option<String> {
    let mut differences = Vec::new();
    if found.map_type != spec.map_type {
        differences.push(format!(
            "type {:?} (wanted {:?})",
            found.map_type, spec.map_type
        ));
    }
    for (what, got, want) in [
        ("key size", found.key_size, spec.key_size),
        ("value size", found.value_size, spec.value_size),
        ("max entries", found.max_entries, spec.max_entries),
        ("flags", found.flags, spec.flags),
    ] {
        if got != want {
            differences.push(format!("{what} {got} (wanted {want})"));
        }
    }
    (!differences.is_empty()).then(|| differences.join(", "))
}

/// `<bpffs>/netd/<layout version>/`.
#[derive(Debug, Clone)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(bpffs_dir: &Path) -> PinDir {
        PinDir {
            root: bpffs_dir.join("netd").join(maps::PIN_LAYOUT_VERSION),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join("links").join(name)
    }

    /// Where a loaded program is pinned: the guest ports' program has no
    /// link to be found by (see `port_filter`), so tools (bpftool, the
    /// bench) find it here.
    pub fn program(&self, name: &str) -> PathBuf {
        self.root.join("programs").join(name)
    }

    pub fn create(&self) -> Result<()> {
        for sub in ["maps", "links", "programs"] {
            let dir = self.root.join(sub);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Removes pinned maps that do not fit [`MAP_SPECS`]; returns their
    /// names with the reason, for the log and for tests.
    pub fn drop_incompatible_maps(&self) -> Vec<(String, String)> {
        let mut replaced = Vec::new();
        for spec in &MAP_SPECS {
            let path = self.map(spec.name);
            if !path.exists() {
                continue;
            }
            let reason = match MapInfo::from_pin(&path) {
                Ok(info) => match info.map_type() {
                    Ok(map_type) => mismatch(
                        spec,
                        &MapSpec {
                            name: spec.name,
                            map_type,
                            key_size: info.key_size(),
                            value_size: info.value_size(),
                            max_entries: info.max_entries(),
                            flags: info.map_flags(),
                        },
                    ),
                    Err(err) => Some(format!("unknown map type: {err}")),
                },
                Err(err) => Some(format!("unreadable: {err}")),
            };
            if let Some(reason) = reason {
                warn!(map = spec.name, %reason, "replacing a pinned map whose layout differs");
                if let Err(err) = fs::remove_file(&path) {
                    warn!(map = spec.name, "removing {}: {err}", path.display());
                }
                replaced.push((spec.name.to_owned(), reason));
            }
        }
        replaced
    }

    /// The paths the loader pins the maps at.
    pub fn map_paths(&self) -> Vec<(&'static str, PathBuf)> {
        MAP_SPECS
            .iter()
            .map(|spec| (spec.name, self.map(spec.name)))
            .collect()
    }

    /// Removes one link pin (the link detaches once nothing holds it).
    pub fn remove_link(&self, name: &str) {
        match fs::remove_file(self.link(name)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => warn!(link = name, "removing link pin: {err}"),
        }
    }

    /// Removes every link pin whose name starts with `prefix`.
    pub fn remove_links_with_prefix(&self, prefix: &str) {
        let Ok(entries) = fs::read_dir(self.root.join("links")) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Removes every pin: the programs detach and the maps go once no
    /// program holds them.
    pub fn remove_all(&self) {
        if let Err(err) = fs::remove_dir_all(&self.root)
            && err.kind() != io::ErrorKind::NotFound
        {
            warn!("removing {}: {err}", self.root.display());
        }
        // The parent `netd/` goes too if no other layout version lives there.
        if let Some(parent) = self.root.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_that_fits_is_reused() {
        for spec in &MAP_SPECS {
            assert_eq!(mismatch(spec, spec), None, "{}", spec.name);
        }
    }

    #[test]
    fn every_difference_is_named() {
        let want = *MAP_SPECS
            .iter()
            .find(|spec| spec.name == maps::CONNTRACK)
            .expect("the conntrack map");
        let found = MapSpec {
            map_type: MapType::Hash,
            value_size: want.value_size + 8,
            ..want
        };
        let reason = mismatch(&want, &found).expect("differs");
        assert!(reason.contains("type Hash (wanted LruHash)"), "{reason}");
        assert!(reason.contains("value size 40 (wanted 32)"), "{reason}");
        assert!(!reason.contains("key size"), "{reason}");
    }

    #[test]
    fn pins_live_under_a_versioned_directory() {
        let pins = PinDir::new(Path::new("/sys/fs/bpf"));
        assert_eq!(
            pins.map("NETD_CONNTRACK"),
            Path::new("/sys/fs/bpf/netd/v1/maps/NETD_CONNTRACK")
        );
        assert_eq!(
            pins.link("gw-host"),
            Path::new("/sys/fs/bpf/netd/v1/links/gw-host")
        );
    }
}
