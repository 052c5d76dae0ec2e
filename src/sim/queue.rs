//! The engine's event queue: a calendar queue (Brown, 1988) of events ordered exactly by
//! `key = time << 64 | seq`, so ties pop in the order they were scheduled. Events within the
//! next `BUCKETS` buckets of `2^SHIFT` ns wait unsorted in their bucket and are sorted once,
//! in cache, when their bucket comes up; later ones wait in a heap until the ring reaches
//! them. Completions a few seconds ahead — most of a run's events — cost a push and a
//! sorted pop instead of a heap's logarithmic walk through memory. A small run never pays for
//! the ring: the queue is a plain heap until it first holds `RING_FROM` events.

use std::cmp::Reverse;

use dary_heap::QuaternaryHeap;

use crate::core::time::Nanos;

/// A scheduled event: its order key `time << 64 | seq` and what it does. The key is kept as
/// two words (ordered as the key: the high one first) so that an event takes 24 bytes, not
/// the 32 a `u128`'s alignment would make it: the ring's buckets are written a second ahead
/// and read back cold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Event {
    /// The key's high word: the time.
    hi: u64,
    /// The key's low word: the sequence number.
    lo: u64,
    /// What the event does (the engine's `slot << 2 | kind`).
    pub tag: u64,
}

impl Event {
    /// The event of order key `key` (`time << 64 | seq`) doing `tag`.
    pub fn new(key: u128, tag: u64) -> Self {
        Event {
            hi: (key >> 64) as u64,
            lo: key as u64,
            tag,
        }
    }

    /// The order key, `time << 64 | seq`.
    pub fn key(&self) -> u128 {
        u128::from(self.hi) << 64 | u128::from(self.lo)
    }

    /// The event's virtual time.
    pub fn time(&self) -> Nanos {
        self.hi as Nanos
    }
}

/// A bucket spans 2^SHIFT ns (about 4 ms). Wider buckets mean fewer of them taking pushes at
/// once (a push writes the tail of a bucket that is seconds ahead: with 1 ms buckets the
/// thousands of tails in use had left the cache between two pushes to one of them).
const SHIFT: u32 = 22;
/// Sequence numbers below 2^PACKED_SEQ sort within a bucket as one word with the time's low
/// SHIFT bits.
const PACKED_SEQ: u32 = 64 - SHIFT;
/// Buckets in the ring (about 8.6 s ahead at 4 ms each); a power of two.
const BUCKETS: usize = 1 << 11;
const MASK: u64 = BUCKETS as u64 - 1;
/// Events queued at once from which the ring is worth setting up.
const RING_FROM: usize = 2048;

/// Events in exact `key` order (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    /// `ring[b & MASK]` holds the events of bucket `b`, for `b` in `cur..cur + BUCKETS`; the
    /// current bucket is sorted in descending order (its minimum last), the others unsorted.
    /// Empty until the queue first holds `RING_FROM` events (all of them in `far` until then).
    ring: Vec<Vec<Event>>,
    /// One bit per ring slot: whether it holds events.
    occupied: Vec<u64>,
    /// The current bucket (absolute index: `time >> SHIFT`).
    cur: u64,
    /// Events in the ring.
    in_ring: usize,
    /// Events of buckets from `cur + BUCKETS` on (all events, while there is no ring).
    far: QuaternaryHeap<Reverse<Event>>,
}

fn bucket_of(e: &Event) -> u64 {
    e.hi >> SHIFT
}

impl EventQueue {
    /// Schedules `e`; its time is never before the last popped event's.
    #[inline]
    pub fn push(&mut self, e: Event) {
        if self.ring.is_empty() {
            self.far.push(Reverse(e));
            if self.far.len() >= RING_FROM {
                self.start_ring();
            }
            return;
        }
        let b = bucket_of(&e);
        if self.in_ring == 0 && self.far.is_empty() {
            self.cur = b;
        }
        if b <= self.cur {
            // The current bucket (or earlier: an event scheduled at a time before the bucket
            // a peek moved to, which still precedes everything queued): keep it sorted.
            let v = &mut self.ring[(self.cur & MASK) as usize];
            let at = v.partition_point(|x| x.key() > e.key());
            v.insert(at, e);
            self.mark(self.cur);
            self.in_ring += 1;
        } else if b < self.cur + BUCKETS as u64 {
            self.ring[(b & MASK) as usize].push(e);
            self.mark(b);
            self.in_ring += 1;
        } else {
            self.far.push(Reverse(e));
        }
    }

    /// Sets up the ring from the current bucket of the earliest event on, and moves the events
    /// it covers there.
    fn start_ring(&mut self) {
        self.ring = vec![Vec::new(); BUCKETS];
        self.occupied = vec![0; BUCKETS / 64];
        // The empty ring moves to the earliest event's bucket and takes what it covers.
        self.ready();
    }

    /// Moves the far events the ring now covers into it, and sorts the current bucket.
    fn pull_far(&mut self) {
        let end = self.cur + BUCKETS as u64;
        while let Some(Reverse(e)) = self.far.peek() {
            let b = bucket_of(e);
            if b >= end {
                break;
            }
            let Reverse(e) = self.far.pop().expect("peeked");
            self.ring[(b & MASK) as usize].push(e);
            self.mark(b);
            self.in_ring += 1;
        }
        let cur = self.cur;
        let bucket = &mut self.ring[(cur & MASK) as usize];
        if bucket.iter().all(|e| e.lo < 1 << PACKED_SEQ && bucket_of(e) == cur) {
            // The bucket's events share their time's bits from SHIFT up: the rest of the
            // time and the sequence number fit one word, ordered as the key (one comparison
            // of 64 bits where the key takes two).
            bucket.sort_unstable_by_key(|e| Reverse((e.hi & ((1 << SHIFT) - 1)) << PACKED_SEQ | e.lo));
        } else {
            bucket.sort_unstable_by_key(|e| Reverse(e.key()));
        }
    }

    /// The earliest event, if any.
    #[inline]
    pub fn peek(&mut self) -> Option<&Event> {
        if self.ring.is_empty() {
            return self.far.peek().map(|Reverse(e)| e);
        }
        if !self.ready() {
            return None;
        }
        self.ring[(self.cur & MASK) as usize].last()
    }

    /// The events that follow the earliest in its bucket, soonest first (at most `n`; none
    /// while there is no ring): what a driver may prefetch the data of while it handles the
    /// earliest. Moves nothing.
    #[inline]
    pub fn following(&self, n: usize) -> impl Iterator<Item = &Event> {
        let bucket: &[Event] = match self.ring.get((self.cur & MASK) as usize) {
            Some(v) => v,
            None => &[],
        };
        bucket.iter().rev().take(n)
    }

    /// Takes the earliest event, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<Event> {
        if self.ring.is_empty() {
            return self.far.pop().map(|Reverse(e)| e);
        }
        if !self.ready() {
            return None;
        }
        let slot = (self.cur & MASK) as usize;
        let e = self.ring[slot].pop();
        self.in_ring -= 1;
        if self.ring[slot].is_empty() {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
        e
    }

    fn mark(&mut self, b: u64) {
        let slot = (b & MASK) as usize;
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }

    /// Makes the current bucket the first non-empty one, sorted; false if nothing is queued.
    fn ready(&mut self) -> bool {
        if !self.ring[(self.cur & MASK) as usize].is_empty() {
            return true;
        }
        if self.in_ring > 0 {
            self.cur = self.next_occupied();
        } else if let Some(Reverse(e)) = self.far.peek() {
            self.cur = bucket_of(e);
        } else {
            return false;
        }
        // The ring now reaches further: bring in the far events it covers.
        self.pull_far();
        true
    }

    /// The first occupied bucket after `cur` (the ring holds events, none in `cur`).
    fn next_occupied(&self) -> u64 {
        let start = ((self.cur + 1) & MASK) as usize;
        let words = self.occupied.len();
        let (w0, bit0) = (start / 64, start % 64);
        // The first word from `start`'s bit on, then whole words around the ring.
        let first = self.occupied[w0] & (!0u64 << bit0);
        let slot = if first != 0 {
            w0 * 64 + first.trailing_zeros() as usize
        } else {
            (1..=words)
                .map(|i| (w0 + i) % words)
                .find_map(|w| {
                    let bits = self.occupied[w];
                    (bits != 0).then(|| w * 64 + bits.trailing_zeros() as usize)
                })
                .expect("the ring holds events")
        };
        let ahead = (slot as u64).wrapping_sub(self.cur) & MASK;
        self.cur + ahead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BinaryHeap;

    /// Random pushes and pops, interleaved as the engine does (pushes never before the last
    /// pop, peeks that move ahead of later pushes, delays from 0 to hours), against a binary
    /// heap: the same events in the same order.
    #[test]
    fn pops_in_exact_key_order() {
        for seed in 0..20u64 {
            pops_as_a_heap(seed, 0);
        }
    }

    /// The same with sequence numbers crossing 2^PACKED_SEQ, where a bucket's sort no longer
    /// packs time and sequence number into one word.
    #[test]
    fn pops_in_exact_key_order_past_packed_sequence_numbers() {
        for seed in 0..4u64 {
            pops_as_a_heap(seed, (1 << PACKED_SEQ) - 5_000);
        }
    }

    fn pops_as_a_heap(seed: u64, first_seq: u64) {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut q = EventQueue::default();
        let mut heap = BinaryHeap::new();
        let (mut now, mut seq) = (0u64, first_seq);
        for _ in 0..20_000 {
            match rng.random_range(0..10) {
                0..=5 => {
                    let delay = match rng.random_range(0..6) {
                        0 => 0,
                        1 => rng.random_range(0..1 << SHIFT),
                        2 => rng.random_range(0..2_000_000_000),
                        3 => rng.random_range(0..20_000_000_000),
                        4 => rng.random_range(0..3_600_000_000_000),
                        _ => rng.random_range(0..3) << SHIFT,
                    };
                    seq += 1;
                    let e = Event::new(((now + delay) as u128) << 64 | seq as u128, seq);
                    q.push(e);
                    heap.push(Reverse(e));
                }
                6 => {
                    // A peek, then time moves on less than to the peeked event (an
                    // arrival in between).
                    let p = q.peek().copied();
                    assert_eq!(p, heap.peek().map(|r| r.0));
                    if let Some(p) = p {
                        now += rng.random_range(0..p.time() - now + 1);
                    }
                }
                _ => {
                    let e = q.pop();
                    assert_eq!(e, heap.pop().map(|r| r.0), "seed {seed}");
                    // What follows in the current bucket (if anything) is what the heap
                    // pops next, in order (checked whole now and then: a sorted copy of
                    // the heap is slow).
                    let following: Vec<Event> = q.following(3).copied().collect();
                    if let Some(f) = following.first() {
                        assert_eq!(Some(f), heap.peek().map(|r| &r.0), "seed {seed}");
                    }
                    if seq % 61 == 0 {
                        let next: Vec<Event> = heap
                            .clone()
                            .into_sorted_vec()
                            .iter()
                            .rev()
                            .take(following.len())
                            .map(|r| r.0)
                            .collect();
                        assert_eq!(following, next, "seed {seed}");
                    }
                    if let Some(e) = e {
                        now = e.time();
                    }
                }
            }
        }
        while let Some(e) = q.pop() {
            assert_eq!(Some(e), heap.pop().map(|r| r.0));
        }
        assert!(heap.is_empty());
    }

    /// An event is 24 bytes (its key as two words), not the 32 of a `u128` key's alignment.
    #[test]
    fn an_event_is_24_bytes_and_orders_by_its_key() {
        assert_eq!(std::mem::size_of::<Event>(), 24);
        let (a, b) = (Event::new(1 << 64 | 7, 3), Event::new(2 << 64, 1));
        assert!(a < b && a.key() == (1 << 64 | 7) && b.time() == 2);
    }
}
