//! netd's own ports (each guest's, each network's gateway port and uplink)
//! take their program through a cls_bpf filter on a clsact qdisc (attached
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
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
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
            match tc::qdisc_add_clsact(iface) {
                Ok(()) => {}
                Err(TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(err) => return Err(err).context("adding the clsact qdisc"),
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
