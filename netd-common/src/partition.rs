//! A network's partition policy as the programs read it: one map value per
//! network, replaced whole by one map update, so every guest of the network
//! switches from the old policy to the new one at the same instant.

/// Guests per network the matrix can address (`Guest::slot`).
pub const SLOTS: usize = 256;

/// Who may not send to whom in one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// A cut packet is dropped when `bpf_get_prandom_u32()` is below this;
    /// ignored when [`policy_flags::DROP_ALL`] is set.
    pub loss_threshold: u32,
    /// [`policy_flags`] bits.
    pub flags: u32,
    /// Bit `s` set: guest slot `s` is cut from everything outside the
    /// network, both ways.
    pub outside: [u64; SLOTS / 64],
    /// `cut[from]` bit `to` set: packets from slot `from` to slot `to` are cut.
    pub cut: [[u64; SLOTS / 64]; SLOTS],
}

pub mod policy_flags {
    /// Every affected packet is dropped (no `--loss`).
    pub const DROP_ALL: u32 = 1;
}

impl PartitionPolicy {
    /// Nothing cut: a full mesh.
    pub const fn open() -> PartitionPolicy {
        PartitionPolicy {
            loss_threshold: 0,
            flags: policy_flags::DROP_ALL,
            outside: [0; SLOTS / 64],
            cut: [[0; SLOTS / 64]; SLOTS],
        }
    }

    /// Drops `percent` (1-100) of the affected packets.
    pub fn set_loss_percent(&mut self, percent: u8) {
        if percent >= 100 {
            self.flags |= policy_flags::DROP_ALL;
            self.loss_threshold = 0;
        } else {
            self.flags &= !policy_flags::DROP_ALL;
            self.loss_threshold = ((percent as u64) << 32).div_euclid(100) as u32;
        }
    }

    #[inline(always)]
    pub fn cut_between(&self, from: u8, to: u8) -> bool {
        self.cut[from as usize][(to >> 6) as usize] & (1 << (to & 63)) != 0
    }

    #[inline(always)]
    pub fn cut_from_outside(&self, slot: u8) -> bool {
        self.outside[(slot >> 6) as usize] & (1 << (slot & 63)) != 0
    }

    pub fn set_cut(&mut self, from: u8, to: u8) {
        self.cut[from as usize][(to >> 6) as usize] |= 1 << (to & 63);
    }

    pub fn set_outside(&mut self, slot: u8) {
        self.outside[(slot >> 6) as usize] |= 1 << (slot & 63);
    }

    /// Whether an affected packet is dropped, given a uniform random number.
    #[inline(always)]
    pub fn drops(&self, random: u32) -> bool {
        self.flags & policy_flags::DROP_ALL != 0 || random < self.loss_threshold
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` plain integers without padding.
    unsafe impl aya::Pod for super::PartitionPolicy {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_one_way_and_per_pair() {
        let mut policy = PartitionPolicy::open();
        policy.set_cut(3, 200);
        assert!(policy.cut_between(3, 200));
        assert!(!policy.cut_between(200, 3));
        assert!(!policy.cut_between(3, 199));
        policy.set_outside(255);
        assert!(policy.cut_from_outside(255) && !policy.cut_from_outside(254));
        assert_eq!(core::mem::size_of::<PartitionPolicy>(), 8 + 32 + 8192);
    }

    #[test]
    fn loss_maps_percent_to_a_threshold() {
        let mut policy = PartitionPolicy::open();
        assert!(policy.drops(u32::MAX), "no --loss: all dropped");
        policy.set_loss_percent(30);
        let dropped = (0..1000u32)
            .filter(|i| policy.drops(i.wrapping_mul(4_294_967)))
            .count();
        assert!((290..=310).contains(&dropped), "{dropped}");
        policy.set_loss_percent(100);
        assert!(policy.drops(u32::MAX));
    }
}
