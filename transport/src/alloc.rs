//! A counting global allocator over the system allocator: `used_memory` in INFO is the sum of
//! the chunk sizes glibc reserves for live allocations, kept per thread so that counting costs no
//! shared cache line on the fast path.

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

/// What glibc's malloc really reserves for a request of `size` bytes: chunks are 16-byte aligned
/// with an 8-byte header and at least 32 bytes; requests from 128 KiB up are mmapped whole pages.
/// Computed rather than asked (`malloc_usable_size` costs a call per allocation and free).
#[inline]
fn usable(size: usize) -> i64 {
    if size >= 128 * 1024 {
        ((size + 16).div_ceil(4096) * 4096) as i64
    } else {
        ((size + 8 + 15) & !15).max(32) as i64
    }
}

// SAFETY: every method forwards to `System`, which upholds GlobalAlloc's contract; the counting
// only reads the returned pointers.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            COUNTERS[slot()]
                .0
                .fetch_add(usable(layout.size()), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            COUNTERS[slot()]
                .0
                .fetch_add(usable(layout.size()), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        COUNTERS[slot()]
            .0
            .fetch_sub(usable(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded; `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            COUNTERS[slot()]
                .0
                .fetch_add(usable(new_size) - usable(layout.size()), Ordering::Relaxed);
        }
        p
    }
}

/// Gives the memory the C allocator holds free back to the system (MEMORY PURGE):
/// `malloc_trim(0)`, glibc's. Nothing elsewhere.
pub fn purge() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers; it only releases free memory of the C heap.
    unsafe {
        libc::malloc_trim(0);
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

/// An empty buffer of `capacity` bytes for a large copy that fills it in order (a snapshot's
/// bulk copy): its memory is taken as it is written, and asked to come in huge pages
/// (`MADV_HUGEPAGE`, where transparent huge pages are `madvise`), so filling it costs a page
/// fault per 2 MiB instead of per 4 KiB. A refused hint changes nothing; a refused
/// reservation gives a smaller one.
pub fn large_buffer(capacity: usize) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(capacity).is_err() {
        // Refused (strict overcommit, or too large for this machine): a smaller start, grown
        // as bytes arrive; a copy that cannot fit fails later, where growing it does.
        let _ = v.try_reserve_exact(capacity.min(64 << 20));
    }
    let capacity = v.capacity();
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = start + v.capacity();
    if capacity >= 2 * HUGE && aligned < end {
        let len = (end - aligned) / HUGE * HUGE;
        // SAFETY: the range lies inside `v`'s allocation (no bytes of it are read or written
        // here); madvise only changes how the kernel backs those pages, never their contents
        // (they are all unwritten).
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large buffer holds its capacity empty; one the machine cannot reserve starts smaller
    /// instead of aborting.
    #[test]
    fn a_large_buffer_is_reserved_or_starts_smaller() {
        let v = large_buffer(8 << 20);
        assert!(v.is_empty() && v.capacity() >= 8 << 20);
        let v = large_buffer(usize::MAX / 4);
        assert!(v.capacity() <= 64 << 20, "{}", v.capacity());
    }
}
