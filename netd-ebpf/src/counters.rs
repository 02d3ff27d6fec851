//! Per-CPU, per-reason counters: every verdict is counted without contention.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use netd_common::counters::{COUNTER_SLOTS, Counter};

#[map(name = "NETD_COUNTERS")]
static NETD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = NETD_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, so no other CPU writes it concurrently.
        unsafe { *slot += 1 };
    }
}
