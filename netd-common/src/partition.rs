//! A network's fault policy as the programs read it: one map value per
//! network, replaced whole by one map update, so every guest of the network
//! switches from the old policy to the new one at the same instant.
//!
//! The policy is up to [`MAX_FAULTS`] fault classes (one per clause of the
//! request); each selects directed pairs of guest slots (a bit matrix), the
//! guests whose traffic with the outside it selects, optionally a protocol
//! and port, and says what happens to the selected packets: a loss share,
//! duplication and corruption shares, a rate. Every class that selects a
//! packet applies to it.

/// Guests per network the matrix can address (`Guest::slot`).
pub const SLOTS: usize = 256;

/// Fault classes per policy.
pub const MAX_FAULTS: usize = 4;

/// What one class selects and does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultClass {
    /// A selected packet is dropped when `bpf_get_prandom_u32()` is below
    /// this; every one when [`fault_flags::DROP_ALL`] is set.
    pub loss_threshold: u32,
    /// Sent twice when a random number is below this ([`fault_flags::DUPLICATE`]).
    pub duplicate_threshold: u32,
    /// Damaged when a random number is below this ([`fault_flags::CORRUPT`]).
    pub corrupt_threshold: u32,
    /// [`fault_flags`] bits.
    pub flags: u32,
    /// Each sender's selected bytes per second ([`fault_flags::RATE`]).
    pub rate_bytes_per_sec: u64,
    /// The most bytes a sender may send at once after a quiet spell.
    pub burst_bytes: u64,
    /// IP protocol number ([`fault_flags::MATCH_PROTO`]).
    pub proto: u8,
    pub _pad: u8,
    /// Either end's port ([`fault_flags::MATCH_PORT`]; TCP or UDP unless a
    /// protocol is matched too).
    pub port: u16,
    /// The network's delay line ([`fault_flags::DELAY`]): the ifindex of
    /// the TAP device selected packets are sent to, tagged with the class's
    /// index, for the daemon to hold and write back.
    pub delay_ifindex: u32,
    /// Bit `s` set: guest slot `s`'s packets to and from the outside.
    pub outside: [u64; SLOTS / 64],
    /// `pairs[from]` bit `to` set: packets from slot `from` to slot `to`.
    pub pairs: [[u64; SLOTS / 64]; SLOTS],
}

pub mod fault_flags {
    /// Every selected packet is dropped.
    pub const DROP_ALL: u32 = 1;
    /// A share is dropped (`loss_threshold`).
    pub const LOSS: u32 = 1 << 1;
    pub const DUPLICATE: u32 = 1 << 2;
    pub const CORRUPT: u32 = 1 << 3;
    pub const RATE: u32 = 1 << 4;
    pub const MATCH_PROTO: u32 = 1 << 5;
    pub const MATCH_PORT: u32 = 1 << 6;
    /// Selected packets go through the delay line (`delay_ifindex`).
    pub const DELAY: u32 = 1 << 7;
}

/// IP protocol numbers the matching needs.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

impl FaultClass {
    /// Selects nothing, does nothing.
    pub const fn none() -> FaultClass {
        FaultClass {
            loss_threshold: 0,
            duplicate_threshold: 0,
            corrupt_threshold: 0,
            flags: 0,
            rate_bytes_per_sec: 0,
            burst_bytes: 0,
            proto: 0,
            _pad: 0,
            port: 0,
            delay_ifindex: 0,
            outside: [0; SLOTS / 64],
            pairs: [[0; SLOTS / 64]; SLOTS],
        }
    }

    /// Drops `percent` (0-100) of the selected packets.
    pub fn set_loss_percent(&mut self, percent: u8) {
        self.flags &= !(fault_flags::DROP_ALL | fault_flags::LOSS);
        self.loss_threshold = 0;
        match percent {
            0 => {}
            100.. => self.flags |= fault_flags::DROP_ALL,
            _ => {
                self.flags |= fault_flags::LOSS;
                self.loss_threshold = threshold(percent);
            }
        }
    }

    pub fn set_duplicate_percent(&mut self, percent: u8) {
        self.flags |= fault_flags::DUPLICATE;
        self.duplicate_threshold = threshold(percent);
    }

    pub fn set_corrupt_percent(&mut self, percent: u8) {
        self.flags |= fault_flags::CORRUPT;
        self.corrupt_threshold = threshold(percent);
    }

    /// Limits each sender to `bits` per second, with a burst of 50 ms of
    /// it, and at least two full-size frames.
    pub fn set_rate_bits(&mut self, bits: u64) {
        self.flags |= fault_flags::RATE;
        self.rate_bytes_per_sec = bits / 8;
        self.burst_bytes = (self.rate_bytes_per_sec / 20).max(2 * 1514);
    }

    /// Sends the selected packets through the delay line on `ifindex`.
    pub fn set_delay_line(&mut self, ifindex: u32) {
        self.flags |= fault_flags::DELAY;
        self.delay_ifindex = ifindex;
    }

    /// The delay line's ifindex if this class delays, else 0.
    #[inline(always)]
    pub fn delay_line(&self) -> u32 {
        if self.flags & fault_flags::DELAY != 0 {
            self.delay_ifindex
        } else {
            0
        }
    }

    /// Selects only protocol `proto` (an IP protocol number).
    pub fn match_proto(&mut self, proto: u8) {
        self.flags |= fault_flags::MATCH_PROTO;
        self.proto = proto;
    }

    /// Selects only packets to or from `port`.
    pub fn match_port(&mut self, port: u16) {
        self.flags |= fault_flags::MATCH_PORT;
        self.port = port;
    }

    pub fn set_pair(&mut self, from: u8, to: u8) {
        self.pairs[from as usize][(to >> 6) as usize] |= 1 << (to & 63);
    }

    pub fn set_outside(&mut self, slot: u8) {
        self.outside[(slot >> 6) as usize] |= 1 << (slot & 63);
    }

    #[inline(always)]
    pub fn selects_pair(&self, from: u8, to: u8) -> bool {
        self.pairs[from as usize][(to >> 6) as usize] & (1 << (to & 63)) != 0
    }

    #[inline(always)]
    pub fn selects_outside(&self, slot: u8) -> bool {
        self.outside[(slot >> 6) as usize] & (1 << (slot & 63)) != 0
    }

    /// Whether a packet of IP protocol `proto` between ports `sport` and
    /// `dport` (0 without ports) is of the traffic this class selects.
    #[inline(always)]
    pub fn selects_traffic(&self, proto: u8, sport: u16, dport: u16) -> bool {
        if self.flags & fault_flags::MATCH_PROTO != 0 && proto != self.proto {
            return false;
        }
        if self.flags & fault_flags::MATCH_PORT != 0 {
            let ported = proto == IPPROTO_TCP || proto == IPPROTO_UDP;
            return ported && (sport == self.port || dport == self.port);
        }
        true
    }

    /// Whether a selected packet is dropped, given a uniform random number.
    #[inline(always)]
    pub fn drops(&self, random: u32) -> bool {
        self.flags & fault_flags::DROP_ALL != 0
            || (self.flags & fault_flags::LOSS != 0 && random < self.loss_threshold)
    }

    #[inline(always)]
    pub fn duplicates(&self, random: u32) -> bool {
        self.flags & fault_flags::DUPLICATE != 0 && random < self.duplicate_threshold
    }

    #[inline(always)]
    pub fn corrupts(&self, random: u32) -> bool {
        self.flags & fault_flags::CORRUPT != 0 && random < self.corrupt_threshold
    }
}

/// `percent` (1-100) of the range of a u32, the bar a random number passes
/// under; 100 is every number.
fn threshold(percent: u8) -> u32 {
    if percent >= 100 {
        u32::MAX
    } else {
        ((percent as u64) << 32).div_euclid(100) as u32
    }
}

/// A network's fault policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// Changes with every policy put in force, so that rate buckets of an
    /// older policy are not reused ([`RateKey::generation`]).
    pub generation: u32,
    /// Classes in use, from the first.
    pub count: u32,
    pub faults: [FaultClass; MAX_FAULTS],
}

impl PartitionPolicy {
    /// Nothing selected: a full mesh.
    pub const fn open() -> PartitionPolicy {
        PartitionPolicy {
            generation: 0,
            count: 0,
            faults: [FaultClass::none(); MAX_FAULTS],
        }
    }
}

/// A rate bucket: one per network, policy, class and sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub zone: u32,
    pub generation: u32,
    pub class: u32,
    pub slot: u32,
}

/// A token bucket's state: bytes it may still send (negative: a large
/// packet overdrew it, and it waits), as of `updated_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateBucket {
    pub tokens: i64,
    pub updated_ns: u64,
}

impl RateBucket {
    /// Refills the bucket to `now_ns` at `class`'s rate and takes `len`
    /// bytes if it holds any tokens; whether the packet passes. A packet
    /// larger than the burst passes when the bucket is full, overdrawing
    /// it, so the average holds for any packet size.
    #[inline(always)]
    pub fn take(&mut self, class: &FaultClass, now_ns: u64, len: u64) -> bool {
        // Microseconds, capped at ten seconds, so the product fits a u64
        // at any rate (and a long pause refills to the burst anyway).
        let elapsed_us = (now_ns.saturating_sub(self.updated_ns) / 1_000).min(10_000_000);
        let refill = (elapsed_us * class.rate_bytes_per_sec / 1_000_000) as i64;
        let burst = class.burst_bytes as i64;
        let tokens = self.tokens.saturating_add(refill).min(burst);
        if refill > 0 || self.updated_ns == 0 {
            self.updated_ns = now_ns;
        }
        if tokens > 0 {
            self.tokens = tokens - len as i64;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }

    /// A new bucket, full.
    pub fn full(class: &FaultClass, now_ns: u64) -> RateBucket {
        RateBucket {
            tokens: class.burst_bytes as i64,
            updated_ns: now_ns,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` plain integers without implicit padding.
    unsafe impl aya::Pod for super::PartitionPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateBucket {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_one_way_and_per_pair() {
        let mut class = FaultClass::none();
        class.set_pair(3, 200);
        assert!(class.selects_pair(3, 200));
        assert!(!class.selects_pair(200, 3));
        assert!(!class.selects_pair(3, 199));
        class.set_outside(255);
        assert!(class.selects_outside(255) && !class.selects_outside(254));
        assert_eq!(core::mem::size_of::<FaultClass>(), 40 + 32 + 8192);
        assert_eq!(
            core::mem::size_of::<PartitionPolicy>(),
            8 + MAX_FAULTS * (40 + 32 + 8192)
        );
    }

    #[test]
    fn loss_maps_percent_to_a_threshold() {
        let mut class = FaultClass::none();
        assert!(!class.drops(0), "no loss set: nothing dropped");
        class.set_loss_percent(100);
        assert!(class.drops(u32::MAX), "a cut drops all");
        class.set_loss_percent(30);
        let dropped = (0..1000u32)
            .filter(|i| class.drops(i.wrapping_mul(4_294_967)))
            .count();
        assert!((290..=310).contains(&dropped), "{dropped}");
        class.set_loss_percent(0);
        assert!(!class.drops(0));
        class.set_duplicate_percent(100);
        assert!(class.duplicates(u32::MAX - 1));
        class.set_corrupt_percent(50);
        assert!(class.corrupts(1) && !class.corrupts(u32::MAX - 1));
    }

    #[test]
    fn traffic_matches_protocol_and_either_port() {
        let mut class = FaultClass::none();
        assert!(class.selects_traffic(1, 0, 0), "no match: everything");
        class.match_port(5432);
        assert!(class.selects_traffic(6, 40000, 5432));
        assert!(class.selects_traffic(17, 5432, 40000));
        assert!(!class.selects_traffic(1, 5432, 0), "ICMP has no ports");
        assert!(!class.selects_traffic(6, 40000, 5433));
        class.match_proto(6);
        assert!(!class.selects_traffic(17, 40000, 5432));
    }

    #[test]
    fn a_token_bucket_keeps_the_rate_for_any_packet_size() {
        let mut class = FaultClass::none();
        class.set_rate_bits(1_000_000);
        assert_eq!(class.rate_bytes_per_sec, 125_000);
        assert_eq!(class.burst_bytes, 6_250);
        for len in [100u64, 1_500, 64_000] {
            let mut bucket = RateBucket::full(&class, 1);
            let mut passed = 0u64;
            // Offer 4 Mbit/s for ten seconds, in steps of 100 us.
            let step_ns = 100_000;
            let mut offered = 0u64;
            for tick in 1..=100_000u64 {
                let due = tick * 50; // bytes offered so far: 500 kB/s
                while offered + len <= due {
                    offered += len;
                    if bucket.take(&class, 1 + tick * step_ns, len) {
                        passed += len;
                    }
                }
            }
            let rate = passed as f64 / 10.0;
            assert!(
                (118_000.0..=132_000.0).contains(&rate),
                "{len}-byte packets: {rate} B/s"
            );
        }
    }
}
