//! [`IdMap`]: a map keyed by request id (open addressing, linear probing) that can
//! [`IdMap::prefetch`] an id's slot before it is looked up. The planners keep one entry per
//! planned or outstanding request; the entry is cold by the time the request's response comes
//! back (tens of thousands of others came and went), and `std`'s `HashMap` gives no way to ask
//! for its line ahead of the lookup: its probe was three quarters of `exact_cooldown`'s
//! `on_outcome`, a tenth of a large run (issue 34). Lookups, inserts and removals give the same
//! results as a `HashMap`; the order of [`IdMap::iter`] is the table's (unspecified, as a
//! `HashMap`'s), so callers only fold over it commutatively.

use crate::core::cache::prefetch_all;

/// One slot: `key` [`EMPTY`] when free.
#[derive(Debug, Clone, Copy)]
struct Slot<V> {
    key: u64,
    value: V,
}

/// The key of a free slot; the id `u64::MAX` itself lives beside the table (`max`).
const EMPTY: u64 = u64::MAX;

/// The smallest table (slots); it doubles when more than half are taken. (At up to three
/// quarters, a removal's backward shift and an insert's probe read about 8 slots, lines past the
/// one [`IdMap::prefetch`] asked for: a sixth of a `flux` run on `large.toml`; at up to half,
/// about 2.5; issue 34.)
const MIN_SLOTS: usize = 16;

/// A map from request ids (`u64`) to small `Copy` values.
#[derive(Debug, Clone)]
pub struct IdMap<V: Copy> {
    slots: Vec<Slot<V>>,
    /// `64 - log2(slots.len())`: the home slot is the top bits of a Fibonacci hash.
    shift: u32,
    len: usize,
    /// The value of id `u64::MAX`, which cannot be stored in a slot.
    max: Option<V>,
}

impl<V: Copy + Default> Default for IdMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + Default> IdMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        IdMap {
            slots: vec![
                Slot {
                    key: EMPTY,
                    value: V::default(),
                };
                MIN_SLOTS
            ],
            shift: 64 - MIN_SLOTS.trailing_zeros(),
            len: 0,
            max: None,
        }
    }

    /// Entries in all.
    pub fn len(&self) -> usize {
        self.len + usize::from(self.max.is_some())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot `id` is looked for first (ids close together land far apart, so a run of
    /// taken slots stays short whatever ids are live).
    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Asks the CPU for the line `id` would be found in first (changes nothing; see
    /// [`crate::core::cache`]).
    #[inline]
    pub fn prefetch(&self, id: u64) {
        prefetch_all(&self.slots[self.home(id)]);
    }

    /// Where `id` is, if it is in the table.
    fn find(&self, id: u64) -> Option<usize> {
        let mut i = self.home(id);
        loop {
            match self.slots[i].key {
                k if k == id => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    /// The value of `id`.
    pub fn get(&self, id: u64) -> Option<&V> {
        if id == EMPTY {
            return self.max.as_ref();
        }
        self.find(id).map(|i| &self.slots[i].value)
    }

    /// The value of `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        if id == EMPTY {
            return self.max.as_mut();
        }
        self.find(id).map(|i| &mut self.slots[i].value)
    }

    /// Sets `id`'s value; the one it replaces, if any.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if id == EMPTY {
            return self.max.replace(value);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut i = self.home(id);
        loop {
            let s = &mut self.slots[i];
            if s.key == id {
                return Some(std::mem::replace(&mut s.value, value));
            }
            if s.key == EMPTY {
                *s = Slot { key: id, value };
                self.len += 1;
                return None;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Takes `id` out; its value, if it was in.
    pub fn remove(&mut self, id: u64) -> Option<V> {
        if id == EMPTY {
            return self.max.take();
        }
        let mut hole = self.find(id)?;
        let value = self.slots[hole].value;
        self.len -= 1;
        // Backward shift: the entries after the hole, up to the next free slot, move into it
        // when the hole lies on their probe path (from their home slot), so every entry stays
        // reachable from its home without tombstones.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].key;
            if k == EMPTY {
                break;
            }
            let home = self.home(k);
            // `hole` lies on the cyclic path home ..= j.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole].key = EMPTY;
        Some(value)
    }

    /// Every entry, in the table's order (unspecified).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY)
            .map(|s| (s.key, &s.value))
            .chain(self.max.as_ref().map(|v| (EMPTY, v)))
    }

    /// Every value, in the table's order (unspecified).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Twice the slots, every entry placed again.
    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = std::mem::replace(
            &mut self.slots,
            vec![
                Slot {
                    key: EMPTY,
                    value: V::default(),
                };
                n
            ],
        );
        self.shift -= 1;
        let mask = self.mask();
        for s in old.into_iter().filter(|s| s.key != EMPTY) {
            let mut i = self.home(s.key);
            while self.slots[i].key != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// Ids as the planners hold them: handed out in order, each ending after a random while,
    /// so the live ones form a sliding window that wraps around the table many times, some
    /// living far longer than the rest; started at 0, below 2^32 and near `u64::MAX`. Every
    /// step agrees with a `HashMap`.
    #[test]
    fn ids_in_a_sliding_window_behave_as_a_hash_map() {
        for (seed, start) in [(1u64, 0u64), (2, (1 << 32) - 3_000), (3, u64::MAX - 20_000)] {
            let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
            let mut m: IdMap<u64> = IdMap::new();
            let mut h: HashMap<u64, u64> = HashMap::new();
            let mut live: Vec<u64> = Vec::new();
            for n in 0..15_000u64 {
                let id = start + n;
                assert_eq!(m.insert(id, n), h.insert(id, n));
                live.push(id);
                // End a few, mostly among the oldest (a response time), now and then any.
                for _ in 0..r.random_range(0..3) {
                    if live.is_empty() {
                        break;
                    }
                    let i = if r.random_range(0..8) == 0 {
                        r.random_range(0..live.len())
                    } else {
                        r.random_range(0..live.len().min(40))
                    };
                    let gone = live.swap_remove(i);
                    assert_eq!(m.remove(gone), h.remove(&gone), "seed {seed} id {gone}");
                }
                let probe = start + r.random_range(0..=n);
                assert_eq!(m.get(probe), h.get(&probe), "seed {seed} id {probe}");
                assert_eq!(m.len(), h.len());
            }
            for id in live {
                assert_eq!(m.remove(id), h.remove(&id));
            }
            assert!(m.is_empty());
        }
    }

    /// Random inserts, replacements, lookups and removals give what a `HashMap` gives, with
    /// ids dense (as request ids are), colliding on purpose, and `u64::MAX`.
    #[test]
    fn behaves_as_a_hash_map() {
        for seed in 0..20u64 {
            let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
            let mut m: IdMap<(u64, bool)> = IdMap::new();
            let mut h: HashMap<u64, (u64, bool)> = HashMap::new();
            let span = [8u64, 300, 5_000, u64::MAX][seed as usize % 4];
            for step in 0..20_000u64 {
                let id = match r.random_range(0..10) {
                    0 => u64::MAX,
                    // Multiples of a power of two: the same low bits.
                    1 => r.random_range(0..64u64) << 40,
                    _ => r.random_range(0..span.min(u64::MAX - 1)),
                };
                match r.random_range(0..4) {
                    0 | 1 => assert_eq!(m.insert(id, (step, id % 2 == 0)), h.insert(id, (step, id % 2 == 0))),
                    2 => assert_eq!(m.remove(id), h.remove(&id), "seed {seed} step {step}"),
                    _ => {
                        if let (Some(a), Some(b)) = (m.get_mut(id), h.get_mut(&id)) {
                            a.0 += 1;
                            b.0 += 1;
                        }
                        assert_eq!(m.get(id), h.get(&id));
                    }
                }
                assert_eq!(m.len(), h.len());
                m.prefetch(id);
            }
            let mut all: Vec<(u64, (u64, bool))> = m.iter().map(|(k, v)| (k, *v)).collect();
            let mut want: Vec<(u64, (u64, bool))> = h.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort_unstable();
            want.sort_unstable();
            assert_eq!(all, want, "seed {seed}");
            for (k, _) in want {
                assert!(m.remove(k).is_some());
            }
            assert!(m.is_empty());
        }
    }
}
