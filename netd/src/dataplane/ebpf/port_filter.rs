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
//!
//! Guest ports share one filter block per network namespace
//! ([`GUEST_BLOCK`]): each port's ingress qdisc is made with `ingress_block
//! 1`, and the block holds the one filter of every guest port of the
//! network. Binding a qdisc's block goes through the kernel's flow offload
//! (`flow_indr_dev_setup_offload`), which walks a host-wide list of bound
//! blocks under one mutex until it meets the block (a new block: the whole
//! list). A block per port made every guest add walk every port on the host
//! (a quarter of the daemon's time at 10,000 guests); a shared block is met
//! among the networks' few, and a guest add attaches no filter of its own.

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
            attach_here(iface, program)
        })?
        .with_context(|| format!("attaching a cls_bpf filter to {iface} in {}", netns.name()))
}

/// The filter block the guest ports of a network namespace share (block
/// indexes are per namespace).
pub const GUEST_BLOCK: u32 = 1;

/// Puts a guest port `iface` (in `netns`) under the network's guest block,
/// and `program` in the block: written over whatever filter the block holds
/// if `replace` (a daemon's first guest of the network: an earlier daemon's
/// program is replaced in place, no packet meets a gap), else only if the
/// block has none (its first port, or every port gone since). A port of an
/// older netd, with a qdisc and a filter of its own, keeps them, its filter
/// replaced in place as [`attach`] does.
pub fn attach_guest_port(
    netns: &Netns,
    iface: &str,
    program: &mut SchedClassifier,
    program_name: &str,
    replace: bool,
) -> Result<()> {
    netns
        .run_in(|| -> Result<()> {
            match add_ingress_qdisc_to(iface, Some(GUEST_BLOCK)) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                    // An older netd's port: its own block takes the filter
                    // (a port of the shared block refuses a filter by device).
                    if attach_here(iface, program).is_ok() {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err).context("adding the ingress qdisc"),
            }
            let fd = {
                use std::os::fd::{AsFd as _, AsRawFd as _};
                program.fd()?.as_fd().as_raw_fd()
            };
            match set_block_filter(GUEST_BLOCK, fd, program_name, !replace) {
                Ok(()) => Ok(()),
                Err(err) if !replace && err.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                Err(err) => Err(err).context("setting the guest block's cls_bpf filter"),
            }
        })?
        .with_context(|| format!("attaching guest port {iface} in {}", netns.name()))
}

/// netd's filter on a device (calling thread's namespace): added on a
/// fresh port (every guest add); only a restarted daemon finds one, and
/// replaces it in place.
fn attach_here(iface: &str, program: &mut SchedClassifier) -> Result<()> {
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
}

/// Adds or replaces netd's cls_bpf filter (direct action, netd's priority
/// and handle) in shared block `block` of the calling thread's namespace:
/// one RTM_NEWTFILTER, `exclusive` refusing (EEXIST) to replace one there.
fn set_block_filter(block: u32, fd: i32, name: &str, exclusive: bool) -> std::io::Result<()> {
    const TCM_IFINDEX_MAGIC_BLOCK: u32 = 0xffff_ffff;
    const TCA_KIND: u16 = 1;
    const TCA_OPTIONS: u16 = 2;
    const NLA_F_NESTED: u16 = 0x8000;
    const TCA_BPF_FD: u16 = 6;
    const TCA_BPF_NAME: u16 = 7;
    const TCA_BPF_FLAGS: u16 = 8;
    const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
    const ETH_P_ALL: u16 = 0x0003;
    let mut options = Vec::new();
    put_attr(&mut options, TCA_BPF_FD, &(fd as u32).to_ne_bytes());
    let mut name = name.as_bytes().to_vec();
    name.push(0);
    put_attr(&mut options, TCA_BPF_NAME, &name);
    put_attr(
        &mut options,
        TCA_BPF_FLAGS,
        &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes(),
    );
    let mut attrs = Vec::new();
    put_attr(&mut attrs, TCA_KIND, b"bpf\0");
    put_attr(&mut attrs, TCA_OPTIONS | NLA_F_NESTED, &options);
    let mut flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE;
    if exclusive {
        flags |= libc::NLM_F_EXCL;
    }
    let info = (u32::from(PRIORITY) << 16) | u32::from(ETH_P_ALL.to_be());
    let tcmsg = Tcmsg {
        ifindex: TCM_IFINDEX_MAGIC_BLOCK as i32,
        handle: HANDLE.into(),
        parent: block,
        info,
    };
    request(libc::RTM_NEWTFILTER, flags as u16, &tcmsg, &attrs)
}

/// A tcmsg's fields (family AF_UNSPEC).
struct Tcmsg {
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// Appends one netlink attribute (padded to 4 bytes).
fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// Sends one rtnetlink tc request (calling thread's namespace) and waits for
/// its acknowledgement: Ok, or the kernel's errno.
fn request(kind: u16, flags: u16, tcmsg: &Tcmsg, attrs: &[u8]) -> std::io::Result<()> {
    use std::{
        io::Error,
        os::fd::{AsRawFd, FromRawFd, OwnedFd},
    };
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
    let len = 16 + 20 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    // nlmsghdr
    msg.extend((len as u32).to_ne_bytes());
    msg.extend(kind.to_ne_bytes());
    msg.extend(flags.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // tcmsg
    msg.extend([libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend(tcmsg.ifindex.to_ne_bytes());
    msg.extend(tcmsg.handle.to_ne_bytes());
    msg.extend(tcmsg.parent.to_ne_bytes());
    msg.extend(tcmsg.info.to_ne_bytes());
    msg.extend(attrs);
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
    Err(Error::other("no acknowledgement of a tc request"))
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
    add_ingress_qdisc_to(iface, None)
}

/// [`add_ingress_qdisc`], its block shared block `block` if given (made by
/// the first qdisc that names it).
fn add_ingress_qdisc_to(iface: &str, block: Option<u32>) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    const TC_H_INGRESS: u32 = 0xffff_fff1;
    const INGRESS_HANDLE: u32 = 0xffff_0000;
    const TCA_KIND: u16 = 1;
    const TCA_INGRESS_BLOCK: u16 = 13;
    let name = std::ffi::CString::new(iface).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::last_os_error());
    }
    let mut attrs = Vec::new();
    put_attr(&mut attrs, TCA_KIND, b"ingress\0");
    if let Some(block) = block {
        put_attr(&mut attrs, TCA_INGRESS_BLOCK, &block.to_ne_bytes());
    }
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_EXCL | libc::NLM_F_CREATE;
    let tcmsg = Tcmsg {
        ifindex: index as i32,
        handle: INGRESS_HANDLE,
        parent: TC_H_INGRESS,
        info: 0,
    };
    request(libc::RTM_NEWQDISC, flags as u16, &tcmsg, &attrs)
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
