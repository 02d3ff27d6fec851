//! The delay line's reader: one thread per network with a delay in force.
//! A thread, not a tokio task: tokio's timers tick in milliseconds, and a
//! packet's release should be late by microseconds; the thread sleeps in
//! `ppoll` with a nanosecond timeout until the next release or the next
//! frame, and keeps the per-packet work (a read, a heap push, a write) off
//! the runtime that serves the API.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context, Result};
use netd_common::partition::MAX_FAULTS;
use tracing::warn;

use super::{
    DelaySpec,
    draw::DelayDraw,
    frame,
    queue::{DEFAULT_LIMITS, DelayQueue},
    tap,
};

/// The longest a reader sleeps without looking at its stop flag.
const IDLE_NS: u64 = 20_000_000;
/// Frames read in one go before the due ones are written.
const READ_BATCH: usize = 256;

/// Each class's delay (None: the class does not delay).
pub type Classes = [Option<DelaySpec>; MAX_FAULTS];

/// What a delay line has done, for `netd status` and metrics.
#[derive(Debug, Default)]
pub struct LineCounters {
    /// Frames held and written back.
    pub delayed: AtomicU64,
    /// Frames dropped because the queue was full.
    pub dropped_full: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    /// The class of frames without a tag: the nftables dataplane cannot
    /// tag, and gives each delaying class a TAP of its own.
    untagged: Option<usize>,
    classes: Mutex<Classes>,
    /// Bumped when `classes` changes, so the reader redraws its delays.
    version: AtomicU64,
    counters: LineCounters,
}

/// A running delay line on a network's TAP.
pub struct DelayLine {
    pub ifindex: u32,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<OwnedFd>>,
}

impl DelayLine {
    /// Starts reading `fd` (the TAP with `ifindex`) with `classes`' delays,
    /// each frame's class in its 802.1Q tag.
    pub fn start(name: &str, fd: OwnedFd, ifindex: u32, classes: Classes) -> Result<DelayLine> {
        DelayLine::start_reading(name, fd, ifindex, classes, None)
    }

    /// Starts reading `fd`, whose frames (untagged) are all of `class`.
    pub fn start_for_class(
        name: &str,
        fd: OwnedFd,
        ifindex: u32,
        classes: Classes,
        class: usize,
    ) -> Result<DelayLine> {
        DelayLine::start_reading(name, fd, ifindex, classes, Some(class))
    }

    fn start_reading(
        name: &str,
        fd: OwnedFd,
        ifindex: u32,
        classes: Classes,
        untagged: Option<usize>,
    ) -> Result<DelayLine> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            untagged,
            classes: Mutex::new(classes),
            version: AtomicU64::new(1),
            counters: LineCounters::default(),
        });
        let reader = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("delay-{name}"))
            .spawn(move || run(fd, &reader))
            .context("starting the delay line's thread")?;
        Ok(DelayLine {
            ifindex,
            shared,
            thread: Some(thread),
        })
    }

    /// Puts new delays in force (a policy replaced, the TAP kept).
    pub fn set_classes(&self, classes: Classes) {
        *self.shared.classes.lock().unwrap() = classes;
        self.shared.version.fetch_add(1, Ordering::Release);
    }

    pub fn counters(&self) -> &LineCounters {
        &self.shared.counters
    }

    /// Stops the reader; the frames it held are dropped. Gives back the
    /// TAP's fd (to remove the device, or to let it persist).
    fn stop(&mut self) -> Option<OwnedFd> {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|thread| thread.join().ok())
    }

    /// Stops and removes the TAP device.
    pub fn remove(mut self) {
        if let Some(fd) = self.stop() {
            tap::remove(fd);
        }
    }
}

impl Drop for DelayLine {
    /// Stops the reader and leaves the TAP in place (persistent), for the
    /// next daemon to adopt.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// CLOCK_MONOTONIC, nanoseconds.
pub fn now_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

fn draws_of(classes: &Classes, seed: u64) -> [Option<DelayDraw>; MAX_FAULTS] {
    let mut draws: [Option<DelayDraw>; MAX_FAULTS] = Default::default();
    for (index, spec) in classes.iter().enumerate() {
        draws[index] = spec.map(|spec| DelayDraw::new(spec, seed ^ index as u64));
    }
    draws
}

/// The reader's loop: write what is due, sleep until the next release or
/// frame, read what came, hold it. Returns the fd when told to stop.
fn run(fd: OwnedFd, shared: &Shared) -> OwnedFd {
    let mut queue = DelayQueue::new(DEFAULT_LIMITS);
    let mut version = 0;
    let mut draws: [Option<DelayDraw>; MAX_FAULTS] = Default::default();
    let mut buf = vec![0u8; 65_536 + 64];
    let counters = &shared.counters;
    while !shared.stop.load(Ordering::Acquire) {
        let current = shared.version.load(Ordering::Acquire);
        if current != version {
            version = current;
            draws = draws_of(&shared.classes.lock().unwrap(), now_ns());
        }
        let mut now = now_ns();
        while let Some((_, held)) = queue.pop_due(now) {
            write_back(&fd, &held);
            counters.delayed.fetch_add(1, Ordering::Relaxed);
            now = now_ns();
        }
        let wait = queue
            .next_release()
            .map_or(IDLE_NS, |next| next.saturating_sub(now).min(IDLE_NS));
        if !readable(&fd, wait) {
            continue;
        }
        for _ in 0..READ_BATCH {
            // SAFETY: reads into a buffer of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let arrived = now_ns();
            let mut held = buf[..n as usize].to_vec();
            let Some(class) = shared.untagged.or_else(|| frame::untag(&mut held)) else {
                continue;
            };
            let Some(draw) = draws[class].as_mut() else {
                // A class that no longer delays: send it on now.
                write_back(&fd, &held);
                continue;
            };
            if queue.push(arrived + draw.next_ns(), held).is_err() {
                counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fd
}

/// Waits up to `wait_ns` for a frame.
fn readable(fd: &OwnedFd, wait_ns: u64) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: (wait_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (wait_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: one pollfd, a valid timespec, no signal mask.
    let ready = unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

fn write_back(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: writes a buffer of the given length.
    let n = unsafe { libc::write(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        warn!(
            "delay line: writing a frame back: {}",
            std::io::Error::last_os_error()
        );
    }
}
