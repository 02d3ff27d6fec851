//! netd's own ports (each guest's, each network's gateway port and uplink)
//! take their program through a cls_bpf filter on an ingress qdisc (attached
//! over netlink), not a TCX link.
//!
//! Why: a TCX attach makes the kernel wait for an RCU grace period while it
//! holds the RTNL lock (`tcx_entry_sync`), about 10 ms per attach on these
//! machines, which was two thirds of a guest add (and two of them a fifth of
//! a network create) and serialises every other netlink request meanwhile.
//! A cls_bpf filter on a fresh device attaches in well under a millisecond.
//! TCX's strengths (ordering among several programs, an owner that detaches
//! them) buy nothing here: these ports are netd's own devices in netd's own
//! namespaces, where nothing else attaches, and the filter lives exactly as
//! long as the device, across daemon restarts, like a pinned link. Host
//! devices, shared with other software, keep TCX.

use anyhow::{Context, Result};
use aya::programs::{
    SchedClassifier, TcAttachType,
    links::Link as _,
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};

use crate::netns::Netns;

/// Where netd's filter sits on a port: one fixed priority and handle, so a
/// restarted daemon finds and replaces it in place.
const PRIORITY: u16 = 1;
const HANDLE: TcHandle = TcHandle::new(0, 1);

/// Puts `program` on `iface`'s ingress in `netns`: adds netd's filter (with
/// the clsact qdisc, if missing), or replaces it in place if there is one
/// (a restarted daemon: no packet meets a gap).
pub fn attach(netns: &Netns, iface: &str, program: &mut SchedClassifier) -> Result<()> {
    netns
        .run_in(|| -> Result<()> {
            match add_ingress_qdisc(iface) {
                Ok(()) => {}
                // A port of an older netd has a clsact qdisc: its ingress
                // takes the same filter.
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(err) => return Err(err).context("adding the ingress qdisc"),
            }
            // A fresh port (every guest add) has no filter: add it; only a
            // restarted daemon finds one, and replaces it.
            let added = program.attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::Netlink(NlOptions {
                    priority: PRIORITY,
                    handle: HANDLE,
                    ..NlOptions::default()
                }),
            );
            let id = match added {
                Ok(id) => id,
                Err(_) => {
                    let existing = SchedClassifierLink::attached(
                        iface,
                        TcAttachType::Ingress,
                        PRIORITY,
                        HANDLE,
                        None,
                    )?;
                    program
                        .attach_to_link(existing)
                        .context("replacing the cls_bpf filter")?
                }
            };
            // The filter stays with the device: dropping aya's handle would
            // remove it.
            std::mem::forget(program.take_link(id)?);
            Ok(())
        })?
        .with_context(|| format!("attaching a cls_bpf filter to {iface} in {}", netns.name()))
}

/// Adds an `ingress` qdisc to `iface` (in the calling thread's namespace)
/// with one netlink request.
///
/// Why not clsact: every qdisc's filter block is registered with the
/// kernel's flow offload (`flow_indr_dev_setup_offload`), which walks the
/// list of every block on the host under one global mutex for each block
/// added or removed; clsact has two blocks (ingress and egress), ingress
/// one. At 20,000 guest ports that walk was a third of the daemon's time
/// in a guest add, and grew with every guest. netd's programs are all on
/// ingress; a filter for parent `ffff:fff2` (aya's ingress) lands in an
/// ingress qdisc's block as in a clsact's.
fn add_ingress_qdisc(iface: &str) -> std::io::Result<()> {
    use std::{
        io::{Error, ErrorKind},
        os::fd::{AsRawFd, FromRawFd, OwnedFd},
    };
    const TC_H_INGRESS: u32 = 0xffff_fff1;
    const INGRESS_HANDLE: u32 = 0xffff_0000;
    const TCA_KIND: u16 = 1;
    let name = std::ffi::CString::new(iface).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: plain socket(2); the fd is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let kind = b"ingress\0";
    let attr_len = 4 + kind.len();
    let len = 16 + 20 + attr_len;
    let mut msg = Vec::with_capacity(len);
    // nlmsghdr
    msg.extend((len as u32).to_ne_bytes());
    msg.extend(libc::RTM_NEWQDISC.to_ne_bytes());
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_EXCL | libc::NLM_F_CREATE;
    msg.extend((flags as u16).to_ne_bytes());
    msg.extend(1u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // tcmsg
    msg.extend([libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend((index as i32).to_ne_bytes());
    msg.extend(INGRESS_HANDLE.to_ne_bytes());
    msg.extend(TC_H_INGRESS.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // TCA_KIND "ingress" (8 bytes: already aligned)
    msg.extend((attr_len as u16).to_ne_bytes());
    msg.extend(TCA_KIND.to_ne_bytes());
    msg.extend(kind);
    // SAFETY: sends `msg`'s bytes on the socket owned above.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(Error::last_os_error());
    }
    let mut answer = [0u8; 1024];
    // SAFETY: receives into `answer`, within its length.
    let got = unsafe { libc::recv(fd.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0) };
    if got < 0 {
        return Err(Error::last_os_error());
    }
    let got = got as usize;
    // The ack: an NLMSG_ERROR whose code is 0, or minus the errno.
    if got >= 20 && u16::from_ne_bytes([answer[4], answer[5]]) == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
        return if code == 0 {
            Ok(())
        } else {
            Err(Error::from_raw_os_error(-code))
        };
    }
    Err(Error::other("no acknowledgement of RTM_NEWQDISC"))
}

/// Removes netd's filter from `iface` in `netns`; a port that is gone (with
/// its filter) is no error.
pub fn detach(netns: &Netns, iface: &str) {
    let _ = netns.run_in(|| {
        if let Ok(link) =
            SchedClassifierLink::attached(iface, TcAttachType::Ingress, PRIORITY, HANDLE, None)
        {
            let _ = link.detach();
        }
    });
}
