//! A guest's gratuitous ARP: once its port is programmed, the guest
//! announces its address and MAC, so that its peers and the network's own
//! namespace replace an entry an earlier guest at that address left (a
//! `--mac` given this time, a container's namespace made again) at once,
//! instead of sending to the old MAC until the entry goes stale (tens of
//! seconds). Linux takes a gratuitous ARP over an existing entry even
//! within its `locktime`; it creates no entry from one (`arp_accept` 0).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The length of an ARP frame over Ethernet (no padding: the veth peer
/// takes short frames).
pub const FRAME_LEN: usize = 42;

/// A gratuitous ARP request: broadcast, sender and target both `ip`, the
/// target hardware address zero (RFC 5227's announcement).
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&(libc::ETH_P_ARP as u16).to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, a request.
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// Sends the announcement out of `ifname` in `netns`.
pub fn announce(netns: &Netns, ifname: &str, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
    let frame = announcement(mac, ip);
    netns
        .run_in(|| send_frame(ifname, &frame))?
        .with_context(|| format!("announcing {ip} on {ifname}"))
}

fn send_frame(ifname: &str, frame: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let index = nix::net::if_::if_nametoindex(ifname)?;
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0, // sends only: receives nothing
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket just made and owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_is_a_broadcast_request_for_the_guests_own_address() {
        let mac = [0x02, 0, 0x5e, 0, 0xaa, 1];
        let frame = announcement(mac, Ipv4Addr::new(172, 18, 0, 10));
        assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
        assert_eq!(&frame[6..12], &mac, "from the guest's MAC");
        assert_eq!(&frame[12..14], &[0x08, 0x06], "ARP");
        assert_eq!(&frame[20..22], &[0, 1], "a request");
        assert_eq!(&frame[22..28], &mac, "sender MAC");
        assert_eq!(&frame[28..32], &[172, 18, 0, 10], "sender address");
        assert_eq!(&frame[32..38], &[0; 6], "no target MAC");
        assert_eq!(&frame[38..42], &[172, 18, 0, 10], "target: itself");
    }
}
