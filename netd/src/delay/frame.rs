//! A frame as the TAP hands it to the delay line: the guest port tagged it
//! with 802.1Q, VLAN id = fault class + 1 (`impairment::delay` in
//! netd-ebpf). The tag is taken out before the frame goes back. Pure.

use netd_common::partition::MAX_FAULTS;

const TPID_OFF: usize = 12;
const TAG_LEN: usize = 4;
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];

/// Takes the class tag out of `frame`; the class, or None for a frame the
/// guest port did not send (the TAP's own IPv6 chatter, say).
pub fn untag(frame: &mut Vec<u8>) -> Option<usize> {
    if frame.len() < TPID_OFF + TAG_LEN + 2 || frame[TPID_OFF..TPID_OFF + 2] != ETH_P_8021Q {
        return None;
    }
    let vid = u16::from_be_bytes([frame[TPID_OFF + 2], frame[TPID_OFF + 3]]) & 0x0fff;
    let class = usize::from(vid)
        .checked_sub(1)
        .filter(|&c| c < MAX_FAULTS)?;
    frame.drain(TPID_OFF..TPID_OFF + TAG_LEN);
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: [u8; 2], tail: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xaa; 6];
        frame.extend([0xbb; 6]);
        frame.extend(ethertype);
        frame.extend(tail);
        frame
    }

    #[test]
    fn the_tag_gives_the_class_and_comes_out() {
        let mut tagged = frame([0x81, 0x00], &[0x00, 0x03, 0x08, 0x00, 0x45, 0x00]);
        assert_eq!(untag(&mut tagged), Some(2));
        assert_eq!(tagged, frame([0x08, 0x00], &[0x45, 0x00]));
    }

    #[test]
    fn untagged_and_unknown_classes_are_not_the_guest_ports() {
        let mut plain = frame([0x86, 0xdd], &[0; 8]);
        assert_eq!(untag(&mut plain), None);
        assert_eq!(plain.len(), 22, "left as it was");
        let mut zero = frame([0x81, 0x00], &[0x00, 0x00, 0x08, 0x00]);
        assert_eq!(untag(&mut zero), None);
        let mut beyond = frame([0x81, 0x00], &[0x00, MAX_FAULTS as u8 + 1, 0x08, 0x00]);
        assert_eq!(untag(&mut beyond), None);
        assert_eq!(untag(&mut vec![0; 5]), None);
    }
}
