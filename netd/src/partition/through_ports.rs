//! `verify`'s second path: a cut between two guests must hold when the
//! sender goes through the receiver's published port (out of the network,
//! translated at the gateway, back in) as well as directly. Pure: which
//! probes to make, and their judgement in the report; the daemon sends the
//! packets.

use std::{collections::BTreeMap, net::SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::{Intent, VerifyReport};
use crate::ports::Proto;

/// One way into a guest through a published port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortPath {
    pub proto: Proto,
    /// The port as published, at the gateway's address or a host address.
    pub via: SocketAddrV4,
    /// Where it leads in the guest.
    pub guest_port: u16,
}

/// One probe to make: `from` tries `to` through `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub path: PortPath,
}

/// One probe of a cut pair through the receiver's published port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PublishedCheck {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    /// Where the sender sent to.
    pub via: SocketAddrV4,
    /// The receiver got it (TCP: accepted or refused the connection, either
    /// way the packet got there; UDP: the datagram arrived on netd's socket
    /// on the guest's port). None: not probed (the guest's own service
    /// holds that UDP port).
    pub reached: Option<bool>,
    /// Not reached: the cut holds on this path.
    pub ok: bool,
}

/// The probes to make: for every cut pair of `report` whose receiver has
/// published ports (`published[receiver]`: one TCP and one UDP port, each
/// at the addresses it answers at, is enough to show the path), one per
/// path.
pub fn probes(report: &VerifyReport, published: &BTreeMap<String, Vec<PortPath>>) -> Vec<Probe> {
    report
        .pairs
        .iter()
        .filter(|pair| pair.intended == Intent::Cut)
        .flat_map(|pair| {
            published
                .get(&pair.to)
                .into_iter()
                .flatten()
                .map(|path| Probe {
                    from: pair.from.clone(),
                    to: pair.to.clone(),
                    path: *path,
                })
        })
        .collect()
}

/// Puts the probes' outcomes into `report`: a mismatch for each that got
/// through, and `ok` false then.
pub fn add_to_report(report: &mut VerifyReport, outcomes: Vec<(Probe, Option<bool>)>) {
    for (probe, reached) in outcomes {
        let Probe { from, to, path } = probe;
        if reached == Some(true) {
            report.mismatches.push(format!(
                "{from} -> {to} through its published port at {}/{}: cut, but it got through",
                path.via, path.proto
            ));
        }
        report.published.push(PublishedCheck {
            from,
            to,
            proto: path.proto,
            via: path.via,
            reached,
            ok: reached != Some(true),
        });
    }
    report.ok = report.mismatches.is_empty();
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::{
        super::{judge, test_support::*},
        *,
    };

    #[test]
    fn only_cut_pairs_to_guests_with_published_ports_are_probed() {
        let rules = compiled("cut --from a --to b + cut --from a --to c", "a b c");
        let slots = guests("a b c");
        let received = BTreeMap::from([
            (("b".to_owned(), "a".to_owned()), 3),
            (("b".to_owned(), "c".to_owned()), 3),
            (("c".to_owned(), "a".to_owned()), 3),
            (("c".to_owned(), "b".to_owned()), 3),
        ]);
        let mut report = judge("web", &rules, &slots, &received, 3);
        assert!(report.ok, "{report:?}");
        let path = |ip: [u8; 4], proto| PortPath {
            proto,
            via: SocketAddrV4::new(Ipv4Addr::from(ip), 8080),
            guest_port: 80,
        };
        let gw = path([172, 18, 255, 2], Proto::Tcp);
        let host = path([198, 51, 100, 2], Proto::Tcp);
        let udp = path([172, 18, 255, 2], Proto::Udp);
        // b publishes, c does not; a -> b is cut, b -> a is not.
        let published = BTreeMap::from([
            ("b".to_owned(), vec![gw, host, udp]),
            ("a".to_owned(), vec![gw]),
        ]);
        let made = probes(&report, &published);
        let to_b = |path| Probe {
            from: "a".to_owned(),
            to: "b".to_owned(),
            path,
        };
        assert_eq!(made, vec![to_b(gw), to_b(host), to_b(udp)]);
        let outcomes = made
            .into_iter()
            .map(|probe| {
                let reached = match probe.path.proto {
                    Proto::Udp => None,
                    Proto::Tcp => Some(probe.path == host),
                };
                (probe, reached)
            })
            .collect();
        add_to_report(&mut report, outcomes);
        assert!(!report.ok);
        assert_eq!(
            report.mismatches,
            vec![
                "a -> b through its published port at 198.51.100.2:8080/tcp: cut, but it got through"
            ]
        );
        let oks: Vec<bool> = report.published.iter().map(|check| check.ok).collect();
        assert_eq!(oks, [true, false, true], "not probed is no mismatch");
    }
}
