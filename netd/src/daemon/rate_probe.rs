//! `verify`'s rate probes: a paced UDP stream from one guest to another,
//! over the rate, and the bytes that arrived of those sent in the window
//! (`partition::rate` plans it and judges the count). Blocking: run it off
//! the async runtime.

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::probe::{self, Probe};
use crate::partition::rate::{self, Plan, Sample};

/// Receive buffer asked for: a few hundred milliseconds of the fastest
/// offer, so the probe's own socket drops nothing while the receiver
/// thread is descheduled.
const RECEIVE_BUFFER: libc::c_int = 16 << 20;

/// Measures each pair in turn (a bucket may be shared by a clause's
/// pairs, so probes running together would split it); `held` is the
/// longest a delay line holds a datagram.
pub fn measure_pairs(
    probes: &[Probe],
    pairs: Vec<rate::Pair>,
    held: Duration,
) -> Result<Vec<(String, String, rate::Expectation, Sample)>> {
    let find = |name: &str| probes.iter().find(|probe| probe.name == name);
    let mut measured = Vec::new();
    for (from, to, expect, plan) in pairs {
        let (Some(sender), Some(receiver)) = (find(&from), find(&to)) else {
            continue;
        };
        let sample = measure(sender, receiver, &plan, held)?;
        measured.push((from, to, expect, sample));
    }
    Ok(measured)
}

/// Sends `plan`'s stream from `from` to `to` and counts, at `to`, the IP
/// bytes of the datagrams sent in the window.
pub fn measure(from: &Probe, to: &Probe, plan: &Plan, held: Duration) -> Result<Sample> {
    let (client, server) = (probe::open(from)?, probe::open(to)?);
    enlarge_receive_buffer(&server);
    server.set_nonblocking(false)?;
    server.set_read_timeout(Some(Duration::from_millis(50)))?;
    let server_addr = server.local_addr()?;
    let token = probe::token();
    let (warm_up, window) = (
        Duration::from_millis(plan.warm_up_ms),
        Duration::from_millis(plan.window_ms),
    );
    let start = Instant::now();
    let deadline = start + warm_up + window + probe::SETTLE + held;
    let payload = plan.payload;
    let receiver =
        std::thread::spawn(move || count(&server, token, payload, warm_up, window, deadline));

    let mut sent_bytes = 0;
    let mut datagram = vec![0u8; plan.payload];
    datagram[..8].copy_from_slice(&token.to_le_bytes());
    let per_datagram = plan.datagram_bytes();
    let mut offered = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= warm_up + window {
            break;
        }
        // Paced: what should have been sent by now at the offered rate.
        let due = plan.offered_bytes_per_sec as u128 * elapsed.as_micros() / 1_000_000;
        if u128::from(offered) >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let sent_at = elapsed.as_micros() as u64;
        datagram[8..16].copy_from_slice(&sent_at.to_le_bytes());
        offered += per_datagram;
        // Counted as offered whether or not the kernel took it: a full
        // socket buffer is the sender's limit, and shows as unjudged.
        if client.send_to(&datagram, server_addr).is_ok() && in_window(sent_at, warm_up, window) {
            sent_bytes += per_datagram;
        }
    }
    let delivered_bytes = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the rate probe's receiver panicked"))?;
    Ok(Sample {
        sent_bytes,
        delivered_bytes,
        window_ms: plan.window_ms,
    })
}

/// The receiver: IP bytes of this run's datagrams sent in the window,
/// read until `deadline`.
fn count(
    server: &UdpSocket,
    token: u64,
    payload: usize,
    warm_up: Duration,
    window: Duration,
    deadline: Instant,
) -> u64 {
    let mut buf = vec![0u8; payload + 1];
    let mut delivered = 0;
    while Instant::now() < deadline {
        let Ok(len) = server.recv(&mut buf) else {
            continue;
        };
        if len != payload || buf[..8] != token.to_le_bytes() {
            continue;
        }
        let sent_at = u64::from_le_bytes(buf[8..16].try_into().expect("eight bytes"));
        if in_window(sent_at, warm_up, window) {
            delivered += payload as u64 + rate::HEADERS;
        }
    }
    delivered
}

/// Whether a datagram sent `sent_at_us` after the start is counted.
fn in_window(sent_at_us: u64, warm_up: Duration, window: Duration) -> bool {
    let from = warm_up.as_micros() as u64;
    (from..from + window.as_micros() as u64).contains(&sent_at_us)
}

/// Asks for [`RECEIVE_BUFFER`] past `rmem_max` (the daemon has
/// CAP_NET_ADMIN); the default is kept if the kernel refuses.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    let size = RECEIVE_BUFFER;
    // SAFETY: a valid socket and an int option of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_warm_up() {
        let (warm_up, window) = (Duration::from_millis(550), Duration::from_millis(1_000));
        assert!(!in_window(549_999, warm_up, window));
        assert!(in_window(550_000, warm_up, window));
        assert!(in_window(1_549_999, warm_up, window));
        assert!(!in_window(1_550_000, warm_up, window));
    }
}
