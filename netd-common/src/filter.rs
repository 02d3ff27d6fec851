//! Keys and values of the destination filter map.

/// An IPv4 address as it appears on the wire (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ipv4Key {
    pub addr: [u8; 4],
}

impl Ipv4Key {
    pub const fn new(octets: [u8; 4]) -> Self {
        Self { addr: octets }
    }
}

/// What the filter does with a matched destination. Only drop exists today;
/// the field leaves room for more verdicts without a layout change.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FilterRule {
    pub verdict: u32,
}

pub const VERDICT_DROP: u32 = 1;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data without padding or pointers.
    unsafe impl aya::Pod for super::Ipv4Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FilterRule {}
}
