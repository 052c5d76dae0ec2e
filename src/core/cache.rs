//! Hints to the CPU's cache: [`prefetch`] asks for a cache line ahead of its use. A hint reads
//! nothing the program sees, so results never depend on it; it only lets a load that would
//! miss overlap other work (the engine and the ledger touch memory that went cold between two
//! uses: a request's slot while its response was in flight, a budget's window entries while
//! a thousand other budgets were used).

/// Asks for the cache line holding `p` (x86-64: `prefetcht0`; nothing elsewhere).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch cannot fault and changes nothing the program can observe; `p` is a
    // valid reference anyway. The intrinsic needs SSE, part of every x86-64 target.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for every cache line of `*p` (a record spanning several).
#[inline(always)]
pub fn prefetch_all<T>(p: &T) {
    prefetch_bytes(p as *const T as usize, std::mem::size_of::<T>());
}

/// Asks for the cache lines of `*p` and of the element after it in an array (where a ring
/// or vector writes next; past its end, an address nothing reads: a hint only).
#[inline(always)]
pub fn prefetch_next<T>(p: &T) {
    prefetch_bytes(p as *const T as usize, 2 * std::mem::size_of::<T>());
}

/// Asks for the cache lines of the `len` bytes from address `start`.
#[inline(always)]
fn prefetch_bytes(start: usize, len: usize) {
    let mut line = start & !63;
    while line < start + len.max(1) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `prefetch`: a prefetch of any address cannot fault and changes
        // nothing the program can observe.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
        }
        line += 64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetch_changes_nothing() {
        let v: Vec<u64> = (0..1024).collect();
        for x in &v {
            prefetch(x);
        }
        assert_eq!(v, (0..1024).collect::<Vec<u64>>());
        prefetch_all(&v[..].len());
        let big = [7u8; 300];
        prefetch_all(&big);
        prefetch_next(&big[299]);
        assert_eq!(big, [7u8; 300]);
    }
}
