//! `BPF_PROG_TEST_RUN`: runs a loaded TC program on a crafted frame and
//! returns its verdict and the frame as the program left it. Helpers that
//! act on the frame (checksum updates, stores) run for real; redirects only
//! set the verdict. Used by tests to check rewrites byte for byte.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use aya::programs::SchedClassifier;

/// What a test run returned.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The program's return value (TC_ACT_*).
    pub verdict: i32,
    pub frame: Vec<u8>,
}

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

pub fn run(program: &SchedClassifier, frame: &[u8]) -> Result<TestRun> {
    let fd = program.fd().context("the program is not loaded")?;
    let timed = run_timed(fd.as_fd(), frame, 0, 0, 1)?;
    Ok(TestRun {
        verdict: timed.verdict,
        frame: timed.frame,
    })
}

/// A run timed by the kernel: `repeat` runs of the program on one skb.
#[derive(Debug, Clone)]
pub struct TimedRun {
    pub verdict: i32,
    pub frame: Vec<u8>,
    /// The kernel's `duration`: nanoseconds per run, averaged over `repeat`.
    pub duration_ns: u32,
    /// The skb's mark as the program left it.
    pub mark: u32,
}

/// Runs the program behind `fd` (any loaded TC program, e.g. one found by
/// id) `repeat` times on `frame` with the skb mark `mark`, as if it arrived
/// on `ifindex` (0: the loopback device) of the calling thread's network
/// namespace. The runs share one skb: from the second on, a program sees
/// what the previous run left of the frame.
pub fn run_timed(
    fd: std::os::fd::BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    mark: u32,
    repeat: u32,
) -> Result<TimedRun> {
    // The head of `struct __sk_buff`: mark at 8, ingress_ifindex at 36,
    // ifindex at 40.
    let mut ctx = [0u32; 11];
    ctx[2] = mark;
    ctx[9] = ifindex;
    ctx[10] = ifindex;
    // The kernel copies the whole `struct __sk_buff` (192 bytes) out.
    let mut ctx_out = [0u32; 48];
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..TestRunAttr::default()
    };
    if ifindex != 0 || mark != 0 {
        attr.ctx_size_in = std::mem::size_of_val(&ctx) as u32;
        attr.ctx_in = ctx.as_ptr() as u64;
        attr.ctx_size_out = std::mem::size_of_val(&ctx_out) as u32;
        attr.ctx_out = ctx_out.as_mut_ptr() as u64;
    }
    // SAFETY: as in `run`; `ctx` and `ctx_out` outlive the call too.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_TEST_RUN");
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TimedRun {
        verdict: attr.retval as i32,
        frame: out,
        duration_ns: attr.duration,
        mark: ctx_out[2],
    })
}
