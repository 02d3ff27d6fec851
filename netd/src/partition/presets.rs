//! Jepsen's partition presets, as verbs that select pairs like any other:
//! `bridge`, `majorities-ring`, `minority-third`, `random-halves`. Guests
//! are taken in name order (Jepsen shuffles them; here only
//! `random-halves` does, from its seed, so a failing test replays).
//! Each returns the directed pairs (from slot, to slot) it cuts. Pure.

use std::collections::BTreeSet;

/// `bridge`: the guests in two halves (the first ⌊n/2⌋, the rest), cut from
/// each other both ways, except the first guest of the second half, which
/// talks to everyone: the bridge.
pub fn bridge(slots: &[u8]) -> BTreeSet<(u8, u8)> {
    let (first, second) = slots.split_at(slots.len() / 2);
    let Some((&bridge, rest)) = second.split_first() else {
        return BTreeSet::new();
    };
    let _ = bridge;
    between(first, rest)
}

/// `minority-third`: the first k guests, k the largest whole number under
/// n/3, cut from the others, both ways.
pub fn minority_third(slots: &[u8]) -> BTreeSet<(u8, u8)> {
    let (minority, majority) = slots.split_at(minority_third_size(slots.len()));
    between(minority, majority)
}

/// The largest whole number under `n`/3.
pub fn minority_third_size(n: usize) -> usize {
    n.div_ceil(3).saturating_sub(1)
}

/// `majorities-ring`: the guests on a ring in name order; each receives
/// only from the m = ⌊n/2⌋+1 guests of the window of m around it (from
/// ⌊m/2⌋ before it), itself included: every guest sees a majority, and no
/// two see the same one (Jepsen's definition). One way: i may hear j while
/// j does not hear i.
pub fn majorities_ring(slots: &[u8]) -> BTreeSet<(u8, u8)> {
    let n = slots.len();
    let majority = n / 2 + 1;
    let mut cut = BTreeSet::new();
    for (i, &receiver) in slots.iter().enumerate() {
        let heard: BTreeSet<usize> = (0..majority)
            .map(|k| (i + n + k - majority / 2) % n)
            .collect();
        for (j, &sender) in slots.iter().enumerate() {
            if j != i && !heard.contains(&j) {
                cut.insert((sender, receiver));
            }
        }
    }
    cut
}

/// `random-halves`: the guests shuffled by `seed`, then the first ⌊n/2⌋
/// cut from the rest, both ways.
pub fn random_halves(slots: &[u8], seed: u64) -> BTreeSet<(u8, u8)> {
    let shuffled = shuffle(slots, seed);
    let (first, second) = shuffled.split_at(shuffled.len() / 2);
    between(first, second)
}

/// Fisher-Yates with splitmix64: the same seed gives the same order on
/// every machine and release.
pub fn shuffle(slots: &[u8], seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order = slots.to_vec();
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Every pair across `a` and `b`, both ways.
fn between(a: &[u8], b: &[u8]) -> BTreeSet<(u8, u8)> {
    a.iter()
        .flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Who each guest receives from (itself included), by position.
    fn heard(slots: &[u8], cut: &BTreeSet<(u8, u8)>) -> BTreeMap<u8, BTreeSet<u8>> {
        slots
            .iter()
            .map(|&to| {
                let from = slots
                    .iter()
                    .copied()
                    .filter(|&from| !cut.contains(&(from, to)))
                    .collect();
                (to, from)
            })
            .collect()
    }

    #[test]
    fn majorities_ring_gives_every_guest_its_own_majority() {
        for n in 3..=9u8 {
            let slots: Vec<u8> = (0..n).collect();
            let seen = heard(&slots, &majorities_ring(&slots));
            let majority = n as usize / 2 + 1;
            for (guest, from) in &seen {
                assert_eq!(from.len(), majority, "n={n}: guest {guest} hears {from:?}");
                assert!(from.contains(guest));
            }
            let distinct: BTreeSet<&BTreeSet<u8>> = seen.values().collect();
            assert_eq!(
                distinct.len(),
                n as usize,
                "n={n}: two guests see the same majority"
            );
        }
        // Five guests: each hears its two ring neighbours.
        let seen = heard(&[0, 1, 2, 3, 4], &majorities_ring(&[0, 1, 2, 3, 4]));
        assert_eq!(seen[&0], BTreeSet::from([4, 0, 1]));
        assert_eq!(seen[&2], BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn bridge_keeps_one_guest_talking_to_both_halves() {
        let slots = [10, 11, 12, 13, 14];
        let cut = bridge(&slots);
        let seen = heard(&slots, &cut);
        // Halves 10 11 | 12 13 14; 12 is the bridge.
        assert_eq!(seen[&12], BTreeSet::from(slots));
        for (a, b) in [(10, 13), (10, 14), (11, 13), (11, 14)] {
            assert!(cut.contains(&(a, b)) && cut.contains(&(b, a)), "{a}-{b}");
        }
        assert!(!cut.contains(&(10, 11)) && !cut.contains(&(13, 14)));
        assert!(!cut.iter().any(|&(a, b)| a == 12 || b == 12));
        assert_eq!(cut.len(), 8);
        assert!(bridge(&[1]).is_empty());
    }

    #[test]
    fn minority_third_cuts_the_largest_minority_under_a_third() {
        for (n, k) in [(3, 0), (4, 1), (5, 1), (6, 1), (7, 2), (9, 2), (10, 3)] {
            assert_eq!(minority_third_size(n), k, "n={n}");
        }
        let slots = [0, 1, 2, 3, 4, 5, 6];
        let cut = minority_third(&slots);
        let seen = heard(&slots, &cut);
        assert_eq!(seen[&0], BTreeSet::from([0, 1]));
        assert_eq!(seen[&6], BTreeSet::from([2, 3, 4, 5, 6]));
    }

    #[test]
    fn random_halves_replay_from_their_seed() {
        let slots: Vec<u8> = (0..10).collect();
        assert_eq!(random_halves(&slots, 42), random_halves(&slots, 42));
        assert_eq!(shuffle(&slots, 42), shuffle(&slots, 42));
        let orders: BTreeSet<Vec<u8>> = (0..20).map(|seed| shuffle(&slots, seed)).collect();
        assert!(orders.len() > 15, "seeds give different orders");
        for seed in 0..20 {
            let cut = random_halves(&slots, seed);
            let seen = heard(&slots, &cut);
            // Two groups of five that hear exactly themselves.
            let groups: BTreeSet<&BTreeSet<u8>> = seen.values().collect();
            assert_eq!(groups.len(), 2, "seed {seed}");
            assert!(groups.iter().all(|group| group.len() == 5));
            let mut sorted = shuffle(&slots, seed);
            sorted.sort();
            assert_eq!(sorted, slots, "a shuffle keeps every guest");
        }
    }
}
