//! A counting global allocator over the system allocator: `used_memory` in INFO is the sum of
//! `malloc_usable_size` of live allocations, kept per thread so that counting costs no shared
//! cache line on the fast path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

const SLOTS: usize = 64;

#[repr(align(64))]
struct Padded(AtomicI64);

static COUNTERS: [Padded; SLOTS] = [const { Padded(AtomicI64::new(0)) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: usable from inside the allocator.
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn slot() -> usize {
    SLOT.try_with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let n = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
        s.set(n);
        n
    })
    .unwrap_or(0)
}

/// The allocator. Install with `#[global_allocator]`.
pub struct Counting;

#[inline]
fn usable(ptr: *mut u8) -> i64 {
    // SAFETY: `ptr` was returned by the system allocator and is live.
    unsafe { libc::malloc_usable_size(ptr.cast()) as i64 }
}

// SAFETY: every method forwards to `System`, which upholds GlobalAlloc's contract; the counting
// only reads the returned pointers.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            COUNTERS[slot()].0.fetch_add(usable(p), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            COUNTERS[slot()].0.fetch_add(usable(p), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        COUNTERS[slot()].0.fetch_sub(usable(ptr), Ordering::Relaxed);
        // SAFETY: forwarded; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = usable(ptr);
        // SAFETY: forwarded; `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            COUNTERS[slot()]
                .0
                .fetch_add(usable(p) - old, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes currently allocated through [`Counting`] by all threads.
pub fn used_bytes() -> u64 {
    COUNTERS
        .iter()
        .map(|c| c.0.load(Ordering::Relaxed))
        .sum::<i64>()
        .max(0) as u64
}
