//! The gateway's connections as `netd status` counts them, read from the
//! kernel's conntrack table (`/proc/net/nf_conntrack` of the gateway
//! namespace). Pure parsing here; the reading is in `mod.rs`.

use std::net::Ipv4Addr;

use crate::dataplane::NatSummary;

/// What one line of `/proc/net/nf_conntrack` says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub original_src: Ipv4Addr,
    pub original_dst: Ipv4Addr,
    pub reply_src: Ipv4Addr,
    pub reply_dst: Ipv4Addr,
    /// The conntrack zone of the original direction: the network the
    /// connection came from (0: the host side).
    pub zone: u32,
}

impl Connection {
    /// Parses one line; None for lines that are not IPv4 connections.
    pub fn parse(line: &str) -> Option<Connection> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "ipv4" {
            return None;
        }
        let mut src = Vec::with_capacity(2);
        let mut dst = Vec::with_capacity(2);
        let mut zone = 0;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "src" => src.push(value.parse().ok()?),
                "dst" => dst.push(value.parse().ok()?),
                // "zone=" applies to both directions, "zone-orig=" to the
                // original one only (what netd sets).
                "zone" | "zone-orig" => zone = value.parse().ok()?,
                _ => {}
            }
        }
        match (src.as_slice(), dst.as_slice()) {
            ([original_src, reply_src], [original_dst, reply_dst]) => Some(Connection {
                original_src: *original_src,
                original_dst: *original_dst,
                reply_src: *reply_src,
                reply_dst: *reply_dst,
                zone,
            }),
            _ => None,
        }
    }

    /// The destination was translated (a published port).
    pub fn dnat(&self) -> bool {
        self.reply_src != self.original_dst
    }

    /// The source was translated.
    pub fn snat(&self) -> bool {
        self.reply_dst != self.original_src
    }
}

/// Counts connections the way the eBPF dataplane does: two entries per
/// connection (one per direction), a connection from a network to a
/// published port is a hairpin, one from the host side a DNAT, one from a
/// network whose source was translated an SNAT.
pub fn summarize(table: &str) -> NatSummary {
    let mut nat = NatSummary::default();
    for connection in table.lines().filter_map(Connection::parse) {
        nat.conntrack_entries += 2;
        match (connection.dnat(), connection.zone != 0, connection.snat()) {
            (true, true, _) => nat.hairpin += 1,
            (true, false, _) => nat.dnat += 1,
            (false, true, true) => nat.snat += 1,
            _ => {}
        }
    }
    nat
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 59 CLOSE_WAIT src=172.18.0.7 dst=203.0.113.10 sport=40000 dport=8080 zone-orig=1 src=203.0.113.10 dst=172.18.255.2 sport=8080 dport=40000 [ASSURED] mark=0 use=2
ipv4     2 icmp     1 21 src=172.18.0.7 dst=203.0.113.10 type=8 code=0 id=25357 zone-orig=2 src=203.0.113.10 dst=172.18.255.2 type=0 code=0 id=25357 mark=0 use=2
ipv4     2 tcp      6 53 CLOSE_WAIT src=172.18.255.1 dst=172.18.255.2 sport=41526 dport=8080 src=172.18.0.7 dst=172.18.255.1 sport=80 dport=41526 [ASSURED] mark=1 zone=0 use=2
ipv4     2 tcp      6 119 TIME_WAIT src=172.18.0.7 dst=172.18.255.2 sport=59422 dport=8080 zone-orig=2 src=172.18.0.7 dst=172.18.255.2 sport=80 dport=59422 [ASSURED] mark=1 use=2
ipv4     2 udp      17 29 src=10.77.1.1 dst=203.0.113.10 sport=5000 dport=53 zone-orig=3 src=203.0.113.10 dst=10.77.1.1 sport=53 dport=5000 mark=0 use=2
ipv6     10 udp      17 29 src=::1 dst=::1 sport=1 dport=2 src=::1 dst=::1 sport=2 dport=1 mark=0 use=2
";

    #[test]
    fn connections_are_counted_by_kind() {
        assert_eq!(
            summarize(TABLE),
            NatSummary {
                conntrack_entries: 10,
                snat: 2,
                dnat: 1,
                hairpin: 1,
            }
        );
        assert_eq!(summarize(""), NatSummary::default());
    }

    #[test]
    fn a_line_gives_both_tuples_and_the_zone() {
        let line = TABLE.lines().next().unwrap();
        assert_eq!(
            Connection::parse(line),
            Some(Connection {
                original_src: Ipv4Addr::new(172, 18, 0, 7),
                original_dst: Ipv4Addr::new(203, 0, 113, 10),
                reply_src: Ipv4Addr::new(203, 0, 113, 10),
                reply_dst: Ipv4Addr::new(172, 18, 255, 2),
                zone: 1,
            })
        );
        assert_eq!(Connection::parse("garbage"), None);
        assert_eq!(Connection::parse("ipv4 2 tcp 6 src=1.2.3.4"), None);
    }
}
