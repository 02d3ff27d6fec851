//! Real traffic between sandbox namespaces, through the ordinary tools.

use std::{net::Ipv4Addr, process::Command};

use netd::netns::Netns;

/// Sends `count` ICMP echo requests from `from` to `to` (200 ms apart, 1 s
/// deadline per reply) and returns how many replies came back.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32) -> u32 {
    let output = from
        .command("ping")
        .args(["-n", "-q", "-i", "0.2", "-W", "1", "-c"])
        .arg(count.to_string())
        .arg(to.to_string())
        .output()
        .expect("running ping (is iputils-ping installed? `cargo xtask setup`)");
    parse_received(&String::from_utf8_lossy(&output.stdout))
}

/// Whether a single echo from `from` to `to` is answered.
pub fn reachable(from: &Netns, to: Ipv4Addr) -> bool {
    ping(from, to, 1) == 1
}

/// Reads "N received" from ping's summary line.
fn parse_received(summary: &str) -> u32 {
    summary
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or(0)
}

/// Runs a command to completion and returns its stdout, panicking with its
/// stderr if it failed.
pub fn run_ok(mut command: Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Round-trip times in milliseconds of `count` ICMP echoes from `from` to
/// `to`, 50 ms apart (2 s deadline per reply); lost echoes are left out.
pub fn ping_rtts(from: &Netns, to: Ipv4Addr, count: u32) -> Vec<f64> {
    let output = from
        .command("ping")
        .args(["-n", "-i", "0.05", "-W", "2", "-c"])
        .arg(count.to_string())
        .arg(to.to_string())
        .output()
        .expect("running ping (is iputils-ping installed? `cargo xtask setup`)");
    parse_rtts(&String::from_utf8_lossy(&output.stdout))
}

/// Reads each reply's "time=12.3 ms".
fn parse_rtts(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|line| line.split("time=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// The median of `values` (sorted on the way), 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::{median, parse_received, parse_rtts};

    #[test]
    fn reads_the_received_count_from_ping_summary() {
        let summary = "--- 203.0.113.10 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 401ms\n";
        assert_eq!(parse_received(summary), 2);
        assert_eq!(parse_received("garbage"), 0);
    }

    #[test]
    fn reads_each_reply_time_and_takes_the_median() {
        let output = "PING 172.18.0.2 (172.18.0.2) 56(84) bytes of data.\n\
            64 bytes from 172.18.0.2: icmp_seq=1 ttl=64 time=50.3 ms\n\
            64 bytes from 172.18.0.2: icmp_seq=2 ttl=64 time=51.7 ms\n\
            64 bytes from 172.18.0.2: icmp_seq=3 ttl=64 time=50.1 ms\n\
            rtt min/avg/max/mdev = 50.1/50.7/51.7/0.7 ms\n";
        let mut rtts = parse_rtts(output);
        assert_eq!(rtts, [50.3, 51.7, 50.1]);
        assert_eq!(median(&mut rtts), 50.3);
        assert_eq!(median(&mut []), 0.0);
    }
}
