//! The underlay probe: every node answers a small UDP datagram on its
//! underlay address (`underlay_probe_port`, default 4790), and `netd
//! status` sends one to every other registered node, from this node's
//! underlay address, to show which it reaches and the round trip. Two
//! nodes that cannot reach each other over the underlay are then shown,
//! not silently broken (their guests' traffic would vanish).
//!
//! The datagram: `NETDPRB1` and an 8-byte nonce; the answer: `NETDPRA1`,
//! the same nonce, then the answering node's name. The encoding is pure
//! and unit-tested; `serve` and `probe` are the socket's side.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;

/// The probe port's default: VXLAN's 4789 plus one.
pub const DEFAULT_PROBE_PORT: u16 = 4790;

/// How long `status` waits for the answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

const PROBE: &[u8; 8] = b"NETDPRB1";
const ANSWER: &[u8; 8] = b"NETDPRA1";

/// A probe datagram carrying `nonce`.
pub fn probe_datagram(nonce: u64) -> [u8; 16] {
    let mut datagram = [0u8; 16];
    datagram[..8].copy_from_slice(PROBE);
    datagram[8..].copy_from_slice(&nonce.to_be_bytes());
    datagram
}

/// The answer to `datagram` by node `me`, or None if it is no probe.
pub fn answer_to(datagram: &[u8], me: &str) -> Option<Vec<u8>> {
    if datagram.len() != 16 || &datagram[..8] != PROBE {
        return None;
    }
    let mut answer = Vec::with_capacity(16 + me.len());
    answer.extend_from_slice(ANSWER);
    answer.extend_from_slice(&datagram[8..16]);
    answer.extend_from_slice(me.as_bytes());
    Some(answer)
}

/// The nonce and node name of an answer, or None if it is none.
pub fn parse_answer(datagram: &[u8]) -> Option<(u64, String)> {
    if datagram.len() < 16 || &datagram[..8] != ANSWER {
        return None;
    }
    let nonce = u64::from_be_bytes(datagram[8..16].try_into().ok()?);
    let node = std::str::from_utf8(&datagram[16..]).ok()?.to_owned();
    Some((nonce, node))
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub node: String,
    pub address: SocketAddrV4,
    /// The round trip, when an answer came.
    pub rtt: Option<Duration>,
}

/// Answers probes on `socket` for as long as the daemon runs.
pub async fn serve(socket: UdpSocket, me: String) {
    let mut buf = [0u8; 64];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Some(answer) = answer_to(&buf[..len], &me) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

/// Sends one probe to each of `targets` (node -> its probe address) from
/// `source` (this node's underlay address, any port) and waits at most
/// `timeout` for the answers. A node whose answer did not come (or came
/// from another node than asked) has no round trip.
pub async fn probe(
    source: Ipv4Addr,
    targets: &BTreeMap<String, SocketAddrV4>,
    timeout: Duration,
) -> std::io::Result<Vec<ProbeResult>> {
    let socket = UdpSocket::bind(SocketAddrV4::new(source, 0)).await?;
    let base: u64 = rand_nonce();
    let mut pending: BTreeMap<u64, (&String, SocketAddrV4, Instant)> = BTreeMap::new();
    let mut results: BTreeMap<&String, Option<Duration>> = BTreeMap::new();
    for (i, (node, address)) in targets.iter().enumerate() {
        let nonce = base.wrapping_add(i as u64);
        results.insert(node, None);
        // A send that fails (no route) is an unreachable node, not an error.
        if socket
            .send_to(&probe_datagram(nonce), address)
            .await
            .is_ok()
        {
            pending.insert(nonce, (node, *address, Instant::now()));
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 128];
    while !pending.is_empty() {
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let Ok(Ok((len, from))) = received else {
            break;
        };
        let Some((nonce, answered_by)) = parse_answer(&buf[..len]) else {
            continue;
        };
        let Some((node, address, sent)) = pending.get(&nonce).copied() else {
            continue;
        };
        if *node == answered_by && std::net::SocketAddr::V4(address) == from {
            pending.remove(&nonce);
            results.insert(node, Some(sent.elapsed()));
        }
    }
    Ok(targets
        .iter()
        .map(|(node, address)| ProbeResult {
            node: node.clone(),
            address: *address,
            rtt: results.get(node).copied().flatten(),
        })
        .collect())
}

fn rand_nonce() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_answered_with_its_nonce_and_the_nodes_name() {
        let probe = probe_datagram(0x0102_0304_0506_0708);
        let answer = answer_to(&probe, "node2").expect("a probe");
        assert_eq!(
            parse_answer(&answer),
            Some((0x0102_0304_0506_0708, "node2".to_owned()))
        );
    }

    #[test]
    fn what_is_no_probe_is_not_answered() {
        assert_eq!(answer_to(b"hello", "n"), None);
        assert_eq!(answer_to(&[0u8; 16], "n"), None);
        // An answer is not a probe: two nodes never answer each other's
        // answers in a loop.
        let answer = answer_to(&probe_datagram(1), "n").unwrap();
        assert_eq!(answer_to(&answer, "m"), None);
        assert_eq!(parse_answer(&probe_datagram(1)), None);
        assert_eq!(parse_answer(b"NETDPRA1"), None);
    }

    #[tokio::test]
    async fn a_node_answering_on_loopback_is_reachable_and_a_silent_one_is_not() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let std::net::SocketAddr::V4(serving) = server.local_addr().unwrap() else {
            unreachable!()
        };
        tokio::spawn(serve(server, "n2".to_owned()));
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(silent_at) = silent.local_addr().unwrap() else {
            unreachable!()
        };
        let targets: BTreeMap<String, SocketAddrV4> =
            [("n2".to_owned(), serving), ("n3".to_owned(), silent_at)].into();
        let results = probe(Ipv4Addr::LOCALHOST, &targets, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(results[0].rtt.is_some(), "{results:?}");
        assert_eq!(results[1].rtt, None, "{results:?}");
    }
}
