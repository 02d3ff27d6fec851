//! Per-CPU, per-zone, per-reason counters: every verdict is counted without
//! contention.

use aya_ebpf::maps::PerCpuArray;
use netd_common::counters::{COUNTED_ZONES, COUNTERS_MAX_ENTRIES, Counter};

netd_map! {
    "NETD_COUNTERS" == netd_common::maps::COUNTERS,
    static NETD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_MAX_ENTRIES, 0);
}

/// Counts one packet for `zone` (0: the host side, or programs without zones).
#[inline(always)]
pub fn bump(zone: u32, counter: Counter) {
    let zone = if zone < COUNTED_ZONES { zone } else { 0 };
    if let Some(slot) = NETD_COUNTERS.get_ptr_mut(counter.slot(zone)) {
        // SAFETY: per-CPU slot, so no other CPU writes it concurrently.
        unsafe { *slot += 1 };
    }
}
