//! The head of a frame a program routes: its Ethernet header and the first
//! 20 bytes of its IPv4 header, copied to the stack, changed there (MACs,
//! TTL, addresses, with the header checksum kept right by RFC 1624's
//! incremental update) and written back in one store. One copy in and one
//! out replace a helper call per field and per checksum change, which is
//! most of what routing a packet costs a program.
//!
//! Only the IPv4 header checksum is handled here: it is never offloaded.
//! The transport checksum covers the addresses through its pseudo-header
//! and may be offloaded (CHECKSUM_PARTIAL), which only the kernel's helper
//! knows, so the programs keep updating it with `bpf_l4_csum_replace`.
//! Options beyond the first 20 bytes stay where they are; the incremental
//! update does not need them.

use crate::csum::{replace16, replace32, word};

/// Ethernet (14) and the fixed IPv4 header (20).
pub const FRAME_HEAD_LEN: usize = 34;
const ETH_DST: usize = 0;
const ETH_SRC: usize = 6;
const IP: usize = 14;
const TTL: usize = IP + 8;
const CHECK: usize = IP + 10;
const SRC: usize = IP + 12;
const DST: usize = IP + 16;

/// A frame's head, as loaded from the packet.
#[derive(Clone, Copy)]
pub struct FrameHead(pub [u8; FRAME_HEAD_LEN]);

/// What taking one hop off the TTL found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ttl {
    Decremented,
    /// The TTL would reach zero: a router answers "time exceeded" instead.
    Expired,
}

impl FrameHead {
    #[inline(always)]
    pub fn set_macs(&mut self, dst: [u8; 6], src: [u8; 6]) {
        self.0[ETH_DST..ETH_DST + 6].copy_from_slice(&dst);
        self.0[ETH_SRC..ETH_SRC + 6].copy_from_slice(&src);
    }

    /// Takes one hop off the TTL, as a router does, unless it would expire.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) -> Ttl {
        let ttl = self.0[TTL];
        if ttl <= 1 {
            return Ttl::Expired;
        }
        let old = word(&self.0, TTL);
        self.0[TTL] = ttl - 1;
        self.set_check(replace16(self.check(), old, word(&self.0, TTL)));
        Ttl::Decremented
    }

    #[inline(always)]
    pub fn src(&self) -> [u8; 4] {
        self.address(SRC)
    }

    #[inline(always)]
    pub fn dst(&self) -> [u8; 4] {
        self.address(DST)
    }

    /// Rewrites the source and destination addresses (a translation).
    #[inline(always)]
    pub fn set_addresses(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_address(SRC, src);
        self.set_address(DST, dst);
    }

    #[inline(always)]
    fn address(&self, at: usize) -> [u8; 4] {
        [self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]]
    }

    #[inline(always)]
    fn set_address(&mut self, at: usize, new: [u8; 4]) {
        let old = self.address(at);
        if old != new {
            self.set_check(replace32(self.check(), old, new));
            self.0[at..at + 4].copy_from_slice(&new);
        }
    }

    #[inline(always)]
    fn check(&self) -> u16 {
        word(&self.0, CHECK)
    }

    #[inline(always)]
    fn set_check(&mut self, check: u16) {
        let [hi, lo] = check.to_be_bytes();
        self.0[CHECK] = hi;
        self.0[CHECK + 1] = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::checksum;

    /// A frame head with a valid header checksum.
    fn head(ttl: u8, src: [u8; 4], dst: [u8; 4]) -> FrameHead {
        let mut bytes = [0u8; FRAME_HEAD_LEN];
        bytes[12] = 0x08;
        bytes[IP] = 0x45;
        bytes[IP + 2..IP + 4].copy_from_slice(&84u16.to_be_bytes());
        bytes[IP + 6] = 0x40;
        bytes[TTL] = ttl;
        bytes[TTL + 1] = 17;
        bytes[SRC..SRC + 4].copy_from_slice(&src);
        bytes[DST..DST + 4].copy_from_slice(&dst);
        let check = checksum(&bytes[IP..]);
        bytes[CHECK..CHECK + 2].copy_from_slice(&check.to_be_bytes());
        FrameHead(bytes)
    }

    fn header_is_valid(head: &FrameHead) -> bool {
        checksum(&head.0[IP..]) == 0
    }

    #[test]
    fn a_hop_off_the_ttl_keeps_the_checksum_right() {
        let mut h = head(64, [10, 0, 0, 2], [203, 0, 113, 10]);
        assert_eq!(h.decrement_ttl(), Ttl::Decremented);
        assert_eq!(h.0[TTL], 63);
        assert!(header_is_valid(&h));
    }

    #[test]
    fn a_ttl_of_one_expires_and_leaves_the_header_as_it_was() {
        let mut h = head(1, [10, 0, 0, 2], [203, 0, 113, 10]);
        let before = h.0;
        assert_eq!(h.decrement_ttl(), Ttl::Expired);
        assert_eq!(h.0, before);
    }

    #[test]
    fn translated_addresses_and_a_hop_keep_the_checksum_right() {
        for (src, dst, new_src) in [
            ([10, 0, 0, 2], [203, 0, 113, 10], [192, 0, 2, 1]),
            ([255, 255, 255, 255], [0, 0, 0, 0], [0, 0, 0, 1]),
            ([10, 88, 0, 200], [198, 51, 100, 7], [10, 88, 0, 200]),
        ] {
            let mut h = head(2, src, dst);
            h.set_addresses(new_src, dst);
            assert_eq!(h.decrement_ttl(), Ttl::Decremented);
            assert_eq!((h.src(), h.dst()), (new_src, dst));
            assert!(header_is_valid(&h), "{src:?} -> {new_src:?}");
        }
    }

    #[test]
    fn macs_go_where_ethernet_puts_them_and_leave_the_rest() {
        let mut h = head(64, [10, 0, 0, 2], [203, 0, 113, 10]);
        let ip: [u8; 20] = h.0[IP..].try_into().unwrap();
        h.set_macs([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        assert_eq!(&h.0[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&h.0[6..12], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&h.0[12..14], &[0x08, 0]);
        assert_eq!(h.0[IP..], ip);
    }
}
