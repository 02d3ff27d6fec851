//! Real datagrams between a network's guests, for `netd partition verify`:
//! what the dataplane lets through, whatever the rules say.
//!
//! Each guest gets a UDP socket made inside its namespace (a socket stays in
//! the namespace it was made in, whichever thread uses it later), bound to
//! the guest's address, so a datagram takes the path the guest's own
//! traffic takes: its `eth0`, its bridge port, the bridge. Blocking: run it
//! off the async runtime.

use std::{
    collections::BTreeMap,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

use crate::{
    netns::Netns,
    partition::{rtt, through_ports::Probe as PortProbe},
    ports::Proto,
};

/// Datagrams each guest sends to each other guest: a pair is delivered if
/// one arrives, so a lossy cut is rarely taken for a full one.
pub const DATAGRAMS_PER_PAIR: u32 = 3;

/// How long to wait for stragglers after the last datagram is sent. A
/// bridge delivers in microseconds; the first datagram to a neighbour waits
/// for ARP, a few milliseconds.
pub const SETTLE: Duration = Duration::from_millis(300);

/// One guest taking part.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub slot: u8,
    pub ip: Ipv4Addr,
    /// The guest's namespace file.
    pub netns: PathBuf,
}

/// Sends `per_pair` datagrams from every guest to every other
/// and counts what arrived, by (sender, receiver) name; every ordered pair
/// is present, 0 if nothing arrived. Stragglers are waited for [`SETTLE`]
/// plus `held` (the longest a delay line holds a datagram).
pub fn exchange(
    probes: &[Probe],
    per_pair: u32,
    held: Duration,
) -> Result<BTreeMap<(String, String), u32>> {
    let sockets = probes.iter().map(open).collect::<Result<Vec<_>>>()?;
    let addrs = sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<SocketAddr>>>()?;
    let mut tally = Tally {
        probes,
        token: token(),
        received: BTreeMap::new(),
        total: 0,
    };
    for from in probes {
        for to in probes.iter().filter(|to| to.slot != from.slot) {
            tally
                .received
                .insert((from.name.clone(), to.name.clone()), 0);
        }
    }
    let expected = tally.received.len() as u64 * u64::from(per_pair);

    for (sender, socket) in sockets.iter().enumerate() {
        let payload = payload(tally.token, probes[sender].slot);
        for (receiver, addr) in addrs.iter().enumerate() {
            if receiver != sender {
                for index in 0..per_pair {
                    // A failed send is a datagram that did not arrive.
                    let _ = socket.send_to(&payload, addr);
                    if index % 50 == 49 {
                        // Read as we go: no receive buffer overflows.
                        tally.drain(&sockets);
                    }
                }
            }
        }
        // Read as we go, so no receive buffer overflows in a large network.
        tally.drain(&sockets);
    }
    let deadline = Instant::now() + SETTLE + held;
    while tally.total < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        tally.drain(&sockets);
    }
    Ok(tally.received)
}

/// This node's part of a verify round across nodes: a receiver on `port`
/// in each of `local`'s guests, opened now; at `send_at`, `per_pair`
/// datagrams marked with `token` from each to every other guest of `all`
/// (name -> address, slot; on any node) at that port; what arrived at the
/// local guests, counted until `settle` after the sending. Every pair with
/// a local receiver is present, 0 if nothing arrived.
pub fn exchange_across(
    local: &[Probe],
    all: &BTreeMap<String, (Ipv4Addr, u8)>,
    port: u16,
    per_pair: u32,
    token: u64,
    send_at: SystemTime,
    settle: Duration,
) -> Result<BTreeMap<(String, String), u32>> {
    let sockets = local
        .iter()
        .map(|probe| open_on(probe, port))
        .collect::<Result<Vec<_>>>()?;
    let mut received: BTreeMap<(String, String), u32> = BTreeMap::new();
    for to in local {
        for from in all.keys().filter(|from| **from != to.name) {
            received.insert((from.clone(), to.name.clone()), 0);
        }
    }
    let by_slot: BTreeMap<u8, (&String, Ipv4Addr)> = all
        .iter()
        .map(|(name, (ip, slot))| (*slot, (name, *ip)))
        .collect();
    let drain = |received: &mut BTreeMap<(String, String), u32>| {
        let mut buf = [0u8; 64];
        for (receiver, socket) in sockets.iter().enumerate() {
            let mut errors = 0;
            while errors < 8 {
                match socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let Some(slot) = sender_slot(&buf[..len], token) else {
                            continue;
                        };
                        let Some((sender, ip)) = by_slot.get(&slot) else {
                            continue;
                        };
                        if from.ip() != *ip {
                            continue;
                        }
                        let key = ((*sender).clone(), local[receiver].name.clone());
                        if let Some(count) = received.get_mut(&key) {
                            *count += 1;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => errors += 1,
                }
            }
        }
    };
    if let Ok(wait) = send_at.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    for (sender, socket) in sockets.iter().enumerate() {
        let from = &local[sender];
        let payload = payload(token, from.slot);
        let targets = all.iter().filter(|(name, _)| **name != from.name);
        for (ip, _) in targets.map(|(_, target)| target) {
            for index in 0..per_pair {
                // A failed send is a datagram that did not arrive.
                let _ = socket.send_to(&payload, SocketAddrV4::new(*ip, port));
                if index % 50 == 49 {
                    drain(&mut received);
                }
            }
        }
        drain(&mut received);
    }
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        drain(&mut received);
    }
    Ok(received)
}

/// Times `count` UDP echoes from `from` to `to` and back, one after the
/// other (an echo not back within `wait` is lost, and left out): each
/// round trip in milliseconds.
pub fn round_trips(from: &Probe, to: &Probe, count: u32, wait: Duration) -> Result<Vec<f64>> {
    let (client, server) = (open(from)?, open(to)?);
    server.set_nonblocking(false)?;
    server.set_read_timeout(Some(wait))?;
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(wait))?;
    let server_addr = server.local_addr()?;
    let token = token();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut answered = 0;
        while answered < count {
            let Ok((len, peer)) = server.recv_from(&mut buf) else {
                break;
            };
            let _ = server.send_to(&buf[..len], peer);
            answered += 1;
        }
    });
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    let mut lost_in_a_row = 0;
    // Three lost in a row: the pair does not answer; waiting for the rest
    // would only make verify slow.
    for index in 0..count {
        if lost_in_a_row == 3 {
            break;
        }
        let payload = payload(token ^ u64::from(index), 0);
        let start = Instant::now();
        lost_in_a_row += 1;
        if client.send_to(&payload, server_addr).is_err() {
            continue;
        }
        // Skip late answers to earlier echoes.
        while let Ok((len, _)) = client.recv_from(&mut buf) {
            if buf[..len] == payload {
                rtts.push(start.elapsed().as_secs_f64() * 1e3);
                lost_in_a_row = 0;
                break;
            }
        }
    }
    let _ = echo.join();
    Ok(rtts)
}

/// Times the round trips of the pairs with a delay in force, all pairs at
/// once (each on its own sockets), so a large network takes one pair's
/// time, not the sum.
pub fn time_pairs(probes: &[Probe], pairs: Vec<rtt::Pair>) -> Result<Vec<rtt::Timed>> {
    let find = |name: &str| probes.iter().find(|probe| probe.name == name);
    std::thread::scope(|scope| {
        let runs: Vec<_> = pairs
            .into_iter()
            .filter_map(|(a, b, expect)| {
                let (from, to) = (find(&a)?.clone(), find(&b)?.clone());
                // Twice the delay with all the jitter, and a second to spare.
                let wait = std::time::Duration::from_millis(
                    (2.0 * (expect.delay_ms + expect.jitter_ms)) as u64 + 1_000,
                );
                let run = scope.spawn(move || round_trips(&from, &to, rtt::PROBES, wait));
                Some((a, b, expect, run))
            })
            .collect();
        runs.into_iter()
            .map(|(a, b, expect, run)| {
                let rtts = run
                    .join()
                    .map_err(|_| anyhow::anyhow!("timing {a} <-> {b} panicked"))??;
                Ok((a, b, expect, rtts))
            })
            .collect()
    })
}

/// How long a connection through a published port may take to be
/// answered: a cut one never is.
pub const CONNECT_WAIT: Duration = Duration::from_millis(700);

/// At most this many connections are tried at once.
const CONNECTS_AT_ONCE: usize = 64;

/// Tries each probe through a published port: TCP ones as connections,
/// many at once; UDP ones as one datagram each to netd's own socket on the
/// receiver's guest port, all at once. In the order given.
pub fn through_ports(
    probes: &[Probe],
    tries: Vec<PortProbe>,
) -> Result<Vec<(PortProbe, Option<bool>)>> {
    let (tcp, udp): (Vec<PortProbe>, Vec<PortProbe>) = tries
        .iter()
        .cloned()
        .partition(|t| t.path.proto == Proto::Tcp);
    let mut outcomes = connect_all(probes, tcp)?;
    outcomes.extend(datagrams(probes, udp)?);
    // Back into the order given.
    let mut ordered = Vec::with_capacity(tries.len());
    for wanted in tries {
        if let Some(at) = outcomes.iter().position(|(t, _)| *t == wanted) {
            ordered.push(outcomes.swap_remove(at));
        }
    }
    Ok(ordered)
}

/// TCP probes: a connection from the sender's namespace and address;
/// reached if the receiver answered (accepted, or refused: a reset came
/// back from it).
fn connect_all(probes: &[Probe], tries: Vec<PortProbe>) -> Result<Vec<(PortProbe, Option<bool>)>> {
    let find = |name: &str| probes.iter().find(|probe| probe.name == name);
    let mut outcomes = Vec::with_capacity(tries.len());
    for chunk in tries.chunks(CONNECTS_AT_ONCE) {
        let reached = std::thread::scope(|scope| {
            let runs: Vec<_> = chunk
                .iter()
                .map(|t| {
                    let from = find(&t.from);
                    let via = t.path.via;
                    scope.spawn(move || match from {
                        Some(from) => connects(from, via),
                        None => Ok(false),
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .map_err(|_| anyhow::anyhow!("a connection probe panicked"))?
                })
                .collect::<Result<Vec<bool>>>()
        })?;
        outcomes.extend(chunk.iter().cloned().zip(reached.into_iter().map(Some)));
    }
    Ok(outcomes)
}

/// UDP probes: netd binds the receiver's guest port itself (a port its own
/// service holds is not probed: None), each sender sends one datagram
/// with its probe's index, and what arrives within [`CONNECT_WAIT`] got
/// through.
fn datagrams(probes: &[Probe], tries: Vec<PortProbe>) -> Result<Vec<(PortProbe, Option<bool>)>> {
    let find = |name: &str| probes.iter().find(|probe| probe.name == name);
    let mut receivers: BTreeMap<(String, u16), Option<UdpSocket>> = BTreeMap::new();
    for t in &tries {
        let key = (t.to.clone(), t.path.guest_port);
        if receivers.contains_key(&key) {
            continue;
        }
        let socket = match find(&t.to) {
            Some(to) => open_on(to, t.path.guest_port).ok(),
            None => None,
        };
        receivers.insert(key, socket);
    }
    let token = token();
    let mut reached = vec![false; tries.len()];
    for (index, t) in tries.iter().enumerate() {
        let Some(from) = find(&t.from) else { continue };
        let mut payload = token.to_le_bytes().to_vec();
        payload.extend_from_slice(&(index as u32).to_le_bytes());
        if let Ok(socket) = open(from) {
            let _ = socket.send_to(&payload, t.path.via);
        }
    }
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        for socket in receivers.values().flatten() {
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                let datagram = &buf[..len];
                if len == 12 && datagram[..8] == token.to_le_bytes() {
                    let index = u32::from_le_bytes(datagram[8..12].try_into().expect("4 bytes"));
                    if let Some(hit) = reached.get_mut(index as usize) {
                        *hit = true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(tries
        .into_iter()
        .zip(reached)
        .map(|(t, hit)| {
            let probed = receivers
                .get(&(t.to.clone(), t.path.guest_port))
                .is_some_and(Option::is_some);
            (t, probed.then_some(hit))
        })
        .collect())
}

/// One connection from `from` to `via` (see [`through_ports`]).
fn connects(from: &Probe, via: SocketAddrV4) -> Result<bool> {
    let netns = Netns::open_path(&from.name, &from.netns).with_context(|| {
        format!(
            "guest {}'s namespace is missing: `netd status` shows what is",
            from.name
        )
    })?;
    let ip = from.ip;
    netns.run_in(move || -> Result<bool> {
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        nix::sys::socket::bind(
            socket.as_raw_fd(),
            &nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(ip, 0)),
        )?;
        let stream = TcpStream::from(socket);
        // connect_timeout needs a socket it makes itself: connect here
        // with a send timeout, which bounds a blocking connect on Linux.
        stream.set_write_timeout(Some(CONNECT_WAIT))?;
        let addr = nix::sys::socket::SockaddrIn::from(via);
        Ok(match nix::sys::socket::connect(stream.as_raw_fd(), &addr) {
            Ok(()) => true,
            Err(nix::errno::Errno::ECONNREFUSED) => true,
            Err(_) => false,
        })
    })?
}

/// A socket in the guest's namespace, on its address, non-blocking.
pub(super) fn open(probe: &Probe) -> Result<UdpSocket> {
    open_on(probe, 0)
}

/// [`open`] on a given port (0: any).
fn open_on(probe: &Probe, port: u16) -> Result<UdpSocket> {
    let netns = Netns::open_path(&probe.name, &probe.netns).with_context(|| {
        format!(
            "guest {}'s namespace is missing: `netd status` shows what is",
            probe.name
        )
    })?;
    let socket = netns
        .run_in(|| UdpSocket::bind((probe.ip, port)))?
        .with_context(|| {
            format!(
                "binding a UDP socket to guest {}'s address {} in its namespace \
                 (is its eth0 up? `netd status` shows it)",
                probe.name, probe.ip
            )
        })?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// What arrived so far.
struct Tally<'a> {
    probes: &'a [Probe],
    /// This run's mark: a datagram without it is not ours.
    token: u64,
    received: BTreeMap<(String, String), u32>,
    total: u64,
}

impl Tally<'_> {
    /// Reads everything waiting on every socket.
    fn drain(&mut self, sockets: &[UdpSocket]) {
        let mut buf = [0u8; 64];
        for (receiver, socket) in sockets.iter().enumerate() {
            // A queued ICMP error fails one read and is gone; a few in a row
            // mean something else is wrong, and what is left is not counted.
            let mut errors = 0;
            while errors < 8 {
                match socket.recv_from(&mut buf) {
                    Ok((len, from)) => self.count(receiver, &buf[..len], from),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => errors += 1,
                }
            }
        }
    }

    fn count(&mut self, receiver: usize, datagram: &[u8], from: SocketAddr) {
        let Some(slot) = sender_slot(datagram, self.token) else {
            return;
        };
        let Some(sender) = self.probes.iter().find(|probe| probe.slot == slot) else {
            return;
        };
        if from.ip() != sender.ip {
            return;
        }
        let key = (sender.name.clone(), self.probes[receiver].name.clone());
        if let Some(count) = self.received.get_mut(&key) {
            *count += 1;
            self.total += 1;
        }
    }
}

/// The run's token, then the sender's slot.
fn payload(token: u64, slot: u8) -> [u8; 9] {
    let mut payload = [0u8; 9];
    payload[..8].copy_from_slice(&token.to_le_bytes());
    payload[8] = slot;
    payload
}

/// The sender's slot, if `datagram` is one of this run's.
fn sender_slot(datagram: &[u8], token: u64) -> Option<u8> {
    match datagram {
        [mark @ .., slot] if mark == token.to_le_bytes() => Some(*slot),
        _ => None,
    }
}

/// Differs between runs (and between daemons), so that a late datagram of
/// an earlier run is never counted.
pub(super) fn token() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_the_token_and_the_slot() {
        let datagram = payload(0x1122_3344_5566_7788, 42);
        assert_eq!(sender_slot(&datagram, 0x1122_3344_5566_7788), Some(42));
        assert_eq!(sender_slot(&datagram, 0x1122_3344_5566_7789), None);
        assert_eq!(sender_slot(&datagram[..8], 0x1122_3344_5566_7788), None);
        assert_eq!(sender_slot(b"", 0), None);
    }
}
