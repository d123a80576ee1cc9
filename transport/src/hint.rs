//! CPU hints for the data plane's hot loops.

/// Asks the CPU to start loading the cache line holding `p`. A hint only: it never faults and
/// never changes memory, whatever `p` is.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 does not access memory architecturally and cannot fault; SSE, which
    // `_mm_prefetch` requires, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
