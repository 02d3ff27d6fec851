//! `verify`'s second path: a cut between two guests must hold when the
//! sender goes through the receiver's published port (out of the network,
//! translated at the gateway, back in) as well as directly. Pure: which
//! probes to make, and their judgement in the report; the daemon makes the
//! connections.

use std::{collections::BTreeMap, net::SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::{Intent, VerifyReport};

/// One probe of a cut pair through the receiver's published port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PublishedCheck {
    pub from: String,
    pub to: String,
    /// Where the sender connected: the port as published, at the gateway's
    /// address or a host address.
    pub via: SocketAddrV4,
    /// The receiver answered (accepted, or refused: either way the packet
    /// got there).
    pub reached: bool,
    /// Not reached: the cut holds on this path.
    pub ok: bool,
}

/// The probes to make: for every cut pair of `report` whose receiver has
/// published TCP ports (`published[receiver]`: the addresses they answer
/// at, one port per address is enough to show the path), one connection
/// per address.
pub fn probes(
    report: &VerifyReport,
    published: &BTreeMap<String, Vec<SocketAddrV4>>,
) -> Vec<(String, String, SocketAddrV4)> {
    report
        .pairs
        .iter()
        .filter(|pair| pair.intended == Intent::Cut)
        .flat_map(|pair| {
            published
                .get(&pair.to)
                .into_iter()
                .flatten()
                .map(|via| (pair.from.clone(), pair.to.clone(), *via))
        })
        .collect()
}

/// Puts the probes' outcomes (`(from, to, via, reached)`) into `report`: a
/// mismatch for each that got through, and `ok` false then.
pub fn add_to_report(
    report: &mut VerifyReport,
    outcomes: Vec<(String, String, SocketAddrV4, bool)>,
) {
    for (from, to, via, reached) in outcomes {
        if reached {
            report.mismatches.push(format!(
                "{from} -> {to} through its published port at {via}: cut, but the connection was answered"
            ));
        }
        report.published.push(PublishedCheck {
            from,
            to,
            via,
            reached,
            ok: !reached,
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
        let gw = SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 2), 8080);
        let host = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 8080);
        // b publishes, c does not; a -> b is cut, b -> a is not.
        let published =
            BTreeMap::from([("b".to_owned(), vec![gw, host]), ("a".to_owned(), vec![gw])]);
        let made = probes(&report, &published);
        assert_eq!(
            made,
            vec![
                ("a".to_owned(), "b".to_owned(), gw),
                ("a".to_owned(), "b".to_owned(), host),
            ]
        );
        let outcomes = made
            .into_iter()
            .map(|(from, to, via)| (from, to, via, via == host))
            .collect();
        add_to_report(&mut report, outcomes);
        assert!(!report.ok);
        assert_eq!(
            report.mismatches,
            vec![
                "a -> b through its published port at 198.51.100.2:8080: cut, but the connection was answered"
            ]
        );
        assert_eq!(report.published.len(), 2);
        assert!(report.published[0].ok && !report.published[1].ok);
    }
}
