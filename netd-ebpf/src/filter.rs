//! Destination filter: drop IPv4 packets to addresses user space listed.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    maps::HashMap,
    programs::TcContext,
};
use aya_log_ebpf::debug;
use netd_common::{
    counters::Counter,
    filter::{FilterRule, Ipv4Key, VERDICT_DROP},
    maps::BLOCKED_DST_MAX_ENTRIES,
};

use crate::{counters, parse};

netd_map! {
    "NETD_BLOCKED_DST" == netd_common::maps::BLOCKED_DST,
    static NETD_BLOCKED_DST: HashMap<Ipv4Key, FilterRule> =
        HashMap::with_max_entries(BLOCKED_DST_MAX_ENTRIES, 0);
}

pub fn run(ctx: &TcContext) -> i32 {
    let ip = match parse::ipv4(ctx) {
        parse::Parsed::Ipv4(ip) => ip,
        parse::Parsed::NotIpv4 => {
            counters::bump(0, Counter::NotIpv4);
            return TC_ACT_OK;
        }
        parse::Parsed::Malformed => {
            counters::bump(0, Counter::Malformed);
            return TC_ACT_OK;
        }
    };
    let key = Ipv4Key::new(ip.dst);
    // SAFETY: the value is copied out before any other map operation.
    let verdict = unsafe { NETD_BLOCKED_DST.get(key) }.map(|rule| rule.verdict);
    if verdict == Some(VERDICT_DROP) {
        counters::bump(0, Counter::DroppedBlockedDst);
        debug!(
            ctx,
            "drop to {}.{}.{}.{}", ip.dst[0], ip.dst[1], ip.dst[2], ip.dst[3]
        );
        return TC_ACT_SHOT;
    }
    counters::bump(0, Counter::Passed);
    TC_ACT_OK
}
