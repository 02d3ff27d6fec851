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
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd.as_fd().as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; the
    // buffers it points to outlive the call and have the sizes given.
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
    Ok(TestRun {
        verdict: attr.retval as i32,
        frame: out,
    })
}
