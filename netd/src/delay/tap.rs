//! The delay line's TAP device, in a network's namespace. Persistent, so
//! that it outlives a daemon restart with its ifindex (which the policy in
//! force names) and the next daemon adopts it by name; frames sent to it
//! while no daemon reads are dropped by the kernel. Removed by turning
//! persistence off and closing it.

use std::{
    fs::OpenOptions,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::OpenOptionsExt,
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETPERSIST: libc::Ioctl = 0x4004_54cb;

/// Frames the TAP's ring holds for the reader (the kernel's default is
/// 500): room for a burst while the reader thread waits for a CPU, as
/// many as the delay queue holds.
const TX_QUEUE_LEN: libc::c_int = 10_000;

/// `struct ifreq` with the fields these ioctls use.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// `ifr_flags` or `ifr_mtu`, then the rest of the union.
    value: libc::c_int,
    _rest: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> Result<IfReq> {
        if name.len() >= libc::IFNAMSIZ {
            bail!("interface name {name:?} is too long");
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            _rest: [0; 20],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }
}

fn ioctl(
    fd: &impl AsRawFd,
    request: libc::Ioctl,
    arg: *mut libc::c_void,
    what: &str,
) -> Result<()> {
    // SAFETY: `arg` points to a live value of the layout the request takes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) } < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_owned());
    }
    Ok(())
}

/// TUNSETPERSIST takes its flag as the argument itself, not a pointer.
fn set_persist(fd: &OwnedFd, on: bool) -> std::io::Result<()> {
    // SAFETY: a plain integer argument.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, libc::c_ulong::from(on)) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the TAP `name` in the calling thread's namespace (creating it, or
/// attaching to the one a previous daemon left), persistent, non-blocking.
fn attach(name: &str) -> Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun (is the tun module there?)")?;
    let fd = OwnedFd::from(file);
    let mut req = IfReq::new(name)?;
    req.value = libc::c_int::from(IFF_TAP | IFF_NO_PI);
    ioctl(
        &fd,
        libc::TUNSETIFF,
        (&raw mut req).cast(),
        &format!("creating TAP device {name}"),
    )?;
    Ok(fd)
}

/// Sets `name` up with MTU `mtu` (a socket's ioctls, in the calling
/// thread's namespace).
fn set_up(name: &str, mtu: u32) -> Result<()> {
    // SAFETY: plain socket call; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a socket for ioctls");
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut req = IfReq::new(name)?;
    req.value = mtu as libc::c_int;
    ioctl(
        &sock,
        libc::SIOCSIFMTU,
        (&raw mut req).cast(),
        &format!("setting {name}'s MTU"),
    )?;
    let mut req = IfReq::new(name)?;
    req.value = TX_QUEUE_LEN;
    ioctl(
        &sock,
        libc::SIOCSIFTXQLEN as libc::Ioctl,
        (&raw mut req).cast(),
        &format!("setting {name}'s queue length"),
    )?;
    let mut req = IfReq::new(name)?;
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        (&raw mut req).cast(),
        &format!("reading {name}'s flags"),
    )?;
    req.value |= libc::IFF_UP;
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        (&raw mut req).cast(),
        &format!("setting {name} up"),
    )
}

/// Opens the delay line's TAP `name` in `netns`, made or adopted,
/// persistent and up with room for `mtu`-byte packets; its fd and ifindex.
pub fn open(netns: &Netns, name: &str, mtu: u32) -> Result<(OwnedFd, u32)> {
    netns
        .run_in(|| -> Result<(OwnedFd, u32)> {
            let fd = attach(name)?;
            set_persist(&fd, true).context("making the TAP persistent")?;
            // Quiet: no IPv6 chatter of its own for the reader to skip.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
            set_up(name, mtu)?;
            let ifindex = nix::net::if_::if_nametoindex(name)
                .with_context(|| format!("no interface {name} after creating it"))?;
            Ok((fd, ifindex))
        })?
        .with_context(|| format!("the delay line's TAP device in {}", netns.name()))
}

/// Removes the TAP whose fd is `fd` (the last fd: the device goes with it).
pub fn remove(fd: OwnedFd) {
    let _ = set_persist(&fd, false);
    drop(fd);
}

/// Removes TAP `name` in `netns` if one is there (left by an earlier
/// daemon with a delay in force).
pub fn remove_named(netns: &Netns, name: &str) -> Result<()> {
    let present = netns.run_in(|| nix::net::if_::if_nametoindex(name).is_ok())?;
    if !present {
        return Ok(());
    }
    let fd = netns.run_in(|| attach(name))??;
    remove(fd);
    Ok(())
}
