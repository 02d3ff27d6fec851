//! The delay line's timer queue: frames held until their release time, a
//! binary heap ordered by release time (and by arrival among equal ones,
//! so frames with one delay leave in the order they came). Bounded in
//! frames and in bytes; a frame over either bound is refused (the caller
//! drops and counts it). Pure.

use std::{cmp::Ordering, collections::BinaryHeap};

/// How much the queue may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub frames: usize,
    pub bytes: usize,
}

/// 10,000 frames or 16 MiB, whichever comes first: 100 ms of 100,000
/// packets a second.
pub const DEFAULT_LIMITS: Limits = Limits {
    frames: 10_000,
    bytes: 16 << 20,
};

struct Held {
    release_ns: u64,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.release_ns, other.seq).cmp(&(self.release_ns, self.seq))
    }
}

pub struct DelayQueue {
    heap: BinaryHeap<Held>,
    bytes: usize,
    limits: Limits,
    seq: u64,
}

impl DelayQueue {
    pub fn new(limits: Limits) -> DelayQueue {
        DelayQueue {
            heap: BinaryHeap::new(),
            bytes: 0,
            limits,
            seq: 0,
        }
    }

    /// Holds `frame` until `release_ns`; gives it back when the queue is full.
    pub fn push(&mut self, release_ns: u64, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.heap.len() >= self.limits.frames || self.bytes + frame.len() > self.limits.bytes {
            return Err(frame);
        }
        self.bytes += frame.len();
        self.seq += 1;
        self.heap.push(Held {
            release_ns,
            seq: self.seq,
            frame,
        });
        Ok(())
    }

    /// When the next frame is due.
    pub fn next_release(&self) -> Option<u64> {
        self.heap.peek().map(|held| held.release_ns)
    }

    /// The earliest frame if it is due at `now_ns`, with its release time.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<(u64, Vec<u8>)> {
        if self.next_release()? > now_ns {
            return None;
        }
        let held = self.heap.pop()?;
        self.bytes -= held.frame.len();
        Some((held.release_ns, held.frame))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_leave_in_release_order_and_equal_ones_in_arrival_order() {
        let mut queue = DelayQueue::new(DEFAULT_LIMITS);
        for (release, tag) in [(30, 1u8), (10, 2), (20, 3), (10, 4), (30, 5)] {
            queue.push(release, vec![tag]).unwrap();
        }
        assert_eq!(queue.next_release(), Some(10));
        assert_eq!(queue.pop_due(9), None, "nothing is due yet");
        let mut order = Vec::new();
        while let Some((release, frame)) = queue.pop_due(100) {
            order.push((release, frame[0]));
        }
        assert_eq!(order, [(10, 2), (10, 4), (20, 3), (30, 1), (30, 5)]);
        assert!(queue.is_empty() && queue.bytes() == 0);
    }

    #[test]
    fn only_due_frames_leave() {
        let mut queue = DelayQueue::new(DEFAULT_LIMITS);
        queue.push(50, vec![1]).unwrap();
        queue.push(60, vec![2]).unwrap();
        assert_eq!(queue.pop_due(55), Some((50, vec![1])));
        assert_eq!(queue.pop_due(55), None);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn the_queue_is_bounded_in_frames_and_in_bytes() {
        let mut queue = DelayQueue::new(Limits {
            frames: 3,
            bytes: 100,
        });
        for _ in 0..3 {
            queue.push(1, vec![0; 10]).unwrap();
        }
        assert_eq!(queue.push(1, vec![7; 10]), Err(vec![7; 10]), "frames");
        queue.pop_due(1).unwrap();
        assert_eq!(queue.push(1, vec![0; 81]).unwrap_err().len(), 81, "bytes");
        queue.push(1, vec![0; 80]).unwrap();
        assert_eq!(queue.bytes(), 100);
    }
}
