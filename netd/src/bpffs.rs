//! The BPF filesystem that holds netd's pins. A fresh machine has none mounted.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

/// Whether `dir` is the root of, or inside, a mounted bpffs.
pub fn is_bpffs(dir: &Path) -> bool {
    statfs(dir).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts a bpffs on `dir` (created if missing) unless one is there already.
/// Returns whether this call mounted it.
pub fn ensure_mounted(dir: &Path) -> Result<bool> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if is_bpffs(dir) {
        return Ok(false);
    }
    mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("mounting bpffs on {} (mount -t bpf bpf {0})", dir.display()))?;
    Ok(true)
}

/// Unmounts the bpffs on `dir`; its pins go with it.
pub fn unmount(dir: &Path) -> Result<()> {
    if !is_bpffs(dir) {
        return Ok(());
    }
    umount2(dir, MntFlags::MNT_DETACH)
        .with_context(|| format!("unmounting bpffs {}", dir.display()))
}
