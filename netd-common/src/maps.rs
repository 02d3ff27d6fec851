//! Map names and sizes: one place, so kernel and user space cannot disagree.

/// Per-CPU array of packet counters, indexed by [`crate::counters::Counter`].
pub const COUNTERS: &str = "NETD_COUNTERS";

/// Hash of destination IPv4 addresses whose packets the filter drops.
pub const BLOCKED_DST: &str = "NETD_BLOCKED_DST";
pub const BLOCKED_DST_MAX_ENTRIES: u32 = 1024;

/// Program names, as the `#[classifier]` functions are called.
pub const PROG_FILTER: &str = "netd_filter";

/// Bumped whenever a map layout changes, so pins of an older layout live in
/// another directory and are never reused by mistake.
pub const PIN_LAYOUT_VERSION: &str = "v1";
