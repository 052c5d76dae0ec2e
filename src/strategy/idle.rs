//! The idle units of one model in the planners' order of preference ([`Idle`]): by [`Share`] of
//! the day's requests used, then by owner. While every share has the same denominator (the
//! budgets of a model mostly share their requests per day) it is a bitset of owners per count
//! of requests used: a send moves a unit from one count to the next in O(1), where a B-tree's
//! removal and insertion were 5–7% of `exact_cooldown` and `flux` on `large.toml` (node merges
//! and moves: every send takes the front unit of a thousand and puts it at the back; issue 34).
//! A share over another denominator turns it into the B-tree, which keeps the same order.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};

/// A budget's share of its day's requests used, `used / of`, compared exactly (by
/// cross-multiplication, no floats); a day without a request limit is 0 of 1, or on token
/// buckets the day's sends of `u64::MAX` (see `ExactCooldown::preference`). Equal shares
/// (1/2 and 2/4) compare equal: the index breaks the tie by project.
#[derive(Debug, Clone, Copy)]
pub(super) struct Share {
    pub(super) used: u64,
    pub(super) of: u64,
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        // Budgets of one model mostly share their requests per day: then the counts compare
        // alone, the same order without two 128-bit products per step of an index walk.
        if self.of == other.of {
            return self.used.cmp(&other.used);
        }
        (u128::from(self.used) * u128::from(other.of)).cmp(&(u128::from(other.used) * u128::from(self.of)))
    }
}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Share {}

/// Owners a bitset per count holds at most (4,096 words of 64 a count, 64 summary words). Up
/// to 4,096 owners one summary word per count says which words are not empty; the decision
/// bench's 16,384 projects take 4 (beyond 4,096 the B-tree's insertions and removals were a
/// sixth of a `flux` decision there; issue 34).
const MAX_OWNERS: usize = 1 << 18;

/// Words the counts may take in all before the index turns into the B-tree (256 KB: counts
/// spread over more than 2,048 values at 1,000 owners), so that memory stays bounded.
const MAX_WORDS: usize = 1 << 15;

/// Idle units by `(share, owner)`, smallest first: [`Idle::first`], [`Idle::after`].
#[derive(Debug, Clone)]
pub(super) enum Idle {
    /// Every share over `of`: owner `o` with `base + i` requests used is bit `o` of bucket `i`
    /// (`words[i * width..(i + 1) * width]`; bit `w % 64` of `summary[i * sw + w / 64]`, `sw`
    /// being `width.div_ceil(64)`, says whether word `w` has one). The first and last buckets
    /// are not empty (no bucket at all when `len` is 0).
    Counts {
        of: u64,
        base: u64,
        width: usize,
        summary: VecDeque<u64>,
        words: VecDeque<u64>,
        len: usize,
        /// The least `(share, owner)` once found, until it is removed: a planner asks for it
        /// at each decision and again for the next (2.5 walks a decision, 5% of `flux` on
        /// `large.toml`; issue 34).
        least: Cell<Option<(Share, u32)>>,
    },
    /// Any shares.
    Shares(BTreeSet<(Share, u32)>),
}

impl Idle {
    /// An empty index for units of `owners` owners.
    pub(super) fn new(owners: usize) -> Self {
        if owners > MAX_OWNERS {
            return Idle::Shares(BTreeSet::new());
        }
        Idle::Counts {
            of: 1,
            base: 0,
            width: owners.div_ceil(64).max(1),
            summary: VecDeque::new(),
            words: VecDeque::new(),
            len: 0,
            least: Cell::new(None),
        }
    }

    /// The same units as a B-tree.
    fn to_shares(&self) -> BTreeSet<(Share, u32)> {
        let mut set = BTreeSet::new();
        let mut at = self.first();
        while let Some((s, o)) = at {
            set.insert((s, o));
            at = self.after(s, o);
        }
        set
    }

    /// Adds `owner` at `share` (not in the index).
    pub(super) fn insert(&mut self, share: Share, owner: u32) {
        if let Idle::Counts {
            of,
            base,
            width,
            summary,
            words,
            len,
            least,
        } = self
        {
            if *len == 0 {
                *of = share.of;
                *base = share.used;
                summary.clear();
                words.clear();
                least.set(None);
            }
            let w = *width;
            let sw = w.div_ceil(64);
            let fits = share.of == *of && {
                // Buckets it would take in all.
                let lo = (*base).min(share.used);
                let hi = (*base + (summary.len() / sw) as u64).max(share.used + 1);
                ((hi - lo) as usize).saturating_mul(w) <= MAX_WORDS
            };
            if fits {
                while share.used < *base {
                    for _ in 0..sw {
                        summary.push_front(0);
                    }
                    for _ in 0..w {
                        words.push_front(0);
                    }
                    *base -= 1;
                }
                let i = (share.used - *base) as usize;
                while summary.len() / sw <= i {
                    summary.extend(std::iter::repeat_n(0, sw));
                    words.extend(std::iter::repeat_n(0, w));
                }
                let (word, bit) = (owner as usize / 64, owner % 64);
                words[i * w + word] |= 1 << bit;
                summary[i * sw + word / 64] |= 1 << (word % 64);
                *len += 1;
                if least.get().is_some_and(|l| (share, owner) < l) {
                    least.set(Some((share, owner)));
                }
                return;
            }
            *self = Idle::Shares(self.to_shares());
        }
        if let Idle::Shares(set) = self {
            set.insert((share, owner));
        }
    }

    /// Takes `owner` at `share` out (it is there, at that share as inserted).
    pub(super) fn remove(&mut self, share: Share, owner: u32) {
        match self {
            Idle::Counts {
                base,
                width,
                summary,
                words,
                len,
                least,
                ..
            } => {
                if least.get().is_some_and(|l| l == (share, owner)) {
                    least.set(None);
                }
                let w = *width;
                let sw = w.div_ceil(64);
                let i = (share.used - *base) as usize;
                let word = owner as usize / 64;
                let x = &mut words[i * w + word];
                *x &= !(1u64 << (owner % 64));
                *len -= 1;
                if *x != 0 {
                    return;
                }
                let s = &mut summary[i * sw + word / 64];
                *s &= !(1u64 << (word % 64));
                // The first and last buckets hold someone: only bucket `i` may have emptied.
                if *s != 0 || (sw > 1 && summary.range(i * sw..(i + 1) * sw).any(|&x| x != 0)) {
                    return;
                }
                if i == 0 {
                    while !summary.is_empty() && summary.range(..sw).all(|&x| x == 0) {
                        summary.drain(..sw);
                        words.drain(..w);
                        *base += 1;
                    }
                }
                while !summary.is_empty() && summary.range(summary.len() - sw..).all(|&x| x == 0) {
                    summary.truncate(summary.len() - sw);
                    words.truncate(words.len() - w);
                }
            }
            Idle::Shares(set) => {
                set.remove(&(share, owner));
            }
        }
    }

    /// The least `(share, owner)`.
    #[inline]
    pub(super) fn first(&self) -> Option<(Share, u32)> {
        match self {
            Idle::Counts { len: 0, .. } => None,
            Idle::Counts { least, .. } => {
                if least.get().is_none() {
                    least.set(self.seek(0, 0));
                }
                least.get()
            }
            Idle::Shares(set) => set.first().copied(),
        }
    }

    /// The least `(share, owner)` after `(share, owner)` (which need not be in the index).
    #[inline]
    pub(super) fn after(&self, share: Share, owner: u32) -> Option<(Share, u32)> {
        match self {
            Idle::Counts { len: 0, .. } => None,
            Idle::Counts {
                of,
                base,
                width,
                summary,
                ..
            } => {
                // Its place in the order of counts over `of`: the least count whose share is
                // not below `share` (with the owner after `owner` when it is equal).
                let (used, next) = if share.of == *of {
                    (share.used, owner as usize + 1)
                } else {
                    // `used * share.of` vs `share.used * of`: the counts equal to `share`, if
                    // any, start after `owner`; those above it at the first owner.
                    let prod = u128::from(share.used) * u128::from(*of);
                    let floor = (prod / u128::from(share.of)) as u64;
                    if prod % u128::from(share.of) == 0 {
                        (floor, owner as usize + 1)
                    } else {
                        (floor + 1, 0)
                    }
                };
                if used < *base {
                    return self.seek(0, 0);
                }
                let i = (used - *base) as usize;
                if i >= summary.len() / width.div_ceil(64) {
                    return None;
                }
                self.seek(i, next)
            }
            Idle::Shares(set) => set.range((share, owner + 1)..).next().copied(),
        }
    }

    /// The first owner at or after bit `from` of bucket `i`, or in a later bucket.
    #[inline]
    fn seek(&self, mut i: usize, mut from: usize) -> Option<(Share, u32)> {
        let Idle::Counts {
            of,
            base,
            width,
            summary,
            words,
            ..
        } = self
        else {
            return None;
        };
        let w = *width;
        let sw = w.div_ceil(64);
        while i < summary.len() / sw {
            if from < w * 64 {
                let word = from / 64;
                // The rest of the word `from` is in, then the words after it (by the summary
                // words of bucket `i` from the one word `word + 1` is in).
                let x = words[i * w + word] & (u64::MAX << (from % 64));
                let found = if x != 0 {
                    Some(word * 64 + x.trailing_zeros() as usize)
                } else {
                    let mut v = None;
                    let mut next = word + 1;
                    while v.is_none() && next < sw * 64 {
                        let later = summary[i * sw + next / 64] & (u64::MAX << (next % 64));
                        if later != 0 {
                            v = Some(next / 64 * 64 + later.trailing_zeros() as usize);
                        }
                        next = (next / 64 + 1) * 64;
                    }
                    v.map(|v| v * 64 + words[i * w + v].trailing_zeros() as usize)
                };
                if let Some(o) = found {
                    let share = Share {
                        used: base + i as u64,
                        of: *of,
                    };
                    return Some((share, o as u32));
                }
            }
            i += 1;
            from = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::splitmix64;

    /// Inserts and removals at random, with one denominator and then several: the index walks
    /// in the B-tree's order at every step (`first`, and `after` from every member and from
    /// shares that are not in it).
    #[test]
    fn walks_in_the_b_trees_order() {
        // (owners, denominators over time, a jump now and then, bitsets at the end)
        let cases = [
            (1000usize, &[7u64][..], 300u64, true),
            (1000, &[7][..], 3_000, false),
            (70, &[7, 7, 7, 3][..], 300, false),
            // More than 4,096 owners: several summary words a count (2, then 5), in bitsets
            // while the counts span at most 496 values (4,200 owners), the B-tree once they
            // span more than 123 (17,000 owners, 266 words a count).
            (4200, &[7][..], 0, true),
            (17_000, &[7][..], 300, false),
            (130, &[1][..], 3_000, true),
        ];
        for (owners, ofs, jump, counts) in cases {
            let mut state = owners as u64;
            let mut below = |n: u64| {
                state = splitmix64(state);
                state % n
            };
            let mut idle = Idle::new(owners);
            let mut set: BTreeSet<(Share, u32)> = BTreeSet::new();
            let mut at: Vec<Option<Share>> = vec![None; owners];
            for step in 0..20_000 {
                let o = below(owners as u64) as usize;
                match at[o] {
                    Some(s) => {
                        idle.remove(s, o as u32);
                        set.remove(&(s, o as u32));
                        at[o] = None;
                    }
                    None => {
                        // Counts drift up, as a day's do, with a jump now and then.
                        let of = ofs[(step / 5_000).min(ofs.len() - 1)];
                        let used = step as u64 / 50 + below(8) + if below(100) == 0 { jump } else { 0 };
                        let s = Share { used, of };
                        idle.insert(s, o as u32);
                        set.insert((s, o as u32));
                        at[o] = Some(s);
                    }
                }
                assert_eq!(idle.first(), set.first().copied(), "first, step {step}");
                if step % 97 == 0 {
                    for &(s, o) in &set {
                        let want = set.range((s, o + 1)..).next().copied();
                        assert_eq!(idle.after(s, o), want, "after {s:?} {o}, step {step}");
                    }
                    for probe in [
                        Share { used: 2, of: 5 },
                        Share {
                            used: step as u64 / 50,
                            of: 7,
                        },
                    ] {
                        for o in [0u32, 63, 64, owners as u32 - 1] {
                            let want = set.range((probe, o + 1)..).next().copied();
                            assert_eq!(idle.after(probe, o), want, "after {probe:?} {o}");
                        }
                    }
                }
            }
            assert_eq!(
                matches!(idle, Idle::Counts { .. }),
                counts,
                "{owners} owners, jumps of {jump}"
            );
        }
    }
}
