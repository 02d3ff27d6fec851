//! The host's routing epoch ([`netd_common::maps::ROUTE_EPOCH`]): a thread that listens
//! to the host namespace's route, rule, neighbour, link and address
//! notifications and bumps the epoch for each, so that the host link
//! program's remembered next hops ([`netd_common::next_hop`]) stop serving
//! the moment the host's routing may have changed. The program trusts a
//! hop for at most a second besides, which bounds a stale hop while no
//! daemon watches (killed, restarting).
//!
//! A notification is not parsed: any change, or a lost one (the socket's
//! buffer overran), is a new epoch. Routing changes are rare next to
//! packets, so a lookup per destination after each costs nothing.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tracing::{debug, warn};

use crate::netns::Netns;

/// rtnetlink's multicast groups (the legacy bit mask of `nl_groups`).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

/// How often the thread looks up from its socket to see whether to stop.
const STOP_POLL: Duration = Duration::from_millis(500);

/// The running watcher; stops when dropped.
pub struct RouteWatch {
    stop: Arc<AtomicBool>,
    /// Cleared when the thread gives up (its socket failed).
    alive: Arc<AtomicBool>,
}

impl RouteWatch {
    /// Whether the epoch still follows the host's changes.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts watching `netns` (the host's): the epoch becomes 1 (hops may be
/// remembered from now on) and moves on with every change.
pub fn start(netns: &Netns, mut epoch: Array<MapData, u32>) -> Result<RouteWatch> {
    let socket = netns.run_in(subscribe)??;
    epoch
        .set(0, 1, 0)
        .context("writing the host's routing epoch")?;
    let stop = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let (stopping, living) = (stop.clone(), alive.clone());
    thread::Builder::new()
        .name("netd-route-watch".into())
        .spawn(move || {
            watch(socket, epoch, &stopping);
            living.store(false, Ordering::Relaxed);
        })
        .context("starting the host's route watcher")?;
    Ok(RouteWatch { stop, alive })
}

fn subscribe() -> Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    let groups =
        RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE;
    socket
        .bind(&SocketAddr::new(0, groups))
        .context("subscribing to the host's routing notifications")?;
    set_receive_timeout(&socket, STOP_POLL)?;
    Ok(socket)
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("setting the watcher's receive timeout");
    }
    Ok(())
}

fn watch(socket: Socket, mut epoch: Array<MapData, u32>, stop: &AtomicBool) {
    let mut current: u32 = 1;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut &mut buf[..], 0) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // Notifications lost: something changed, we do not know what.
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(err) => {
                warn!(
                    "the host's route watcher stopped: {err}; next hops are looked up per packet"
                );
                let _ = epoch.set(0, 0, 0);
                return;
            }
        }
        current = next_epoch(current);
        if let Err(err) = epoch.set(0, current, 0) {
            debug!("writing the host's routing epoch: {err}");
        }
    }
    // Nobody watches from now on: nothing is remembered.
    let _ = epoch.set(0, 0, 0);
}

/// The epoch after `current`: never 0, which means "nobody watches".
fn next_epoch(current: u32) -> u32 {
    current.wrapping_add(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_on_and_skips_the_unwatched_zero() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(u32::MAX), 1);
    }
}
