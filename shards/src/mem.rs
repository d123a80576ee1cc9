//! Memory accounting helpers. Sizes are estimates of what the allocator really hands out
//! (glibc malloc: 16-byte granularity and an 8-byte header), used by MEMORY USAGE.

/// Approximate bytes consumed by a heap allocation of `n` bytes.
pub fn alloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (n + 8).div_ceil(16).max(2) * 16
}

/// Approximate bytes of a hashbrown table with `buckets` buckets of `entry` bytes.
pub fn table_size(buckets: usize, entry: usize) -> usize {
    if buckets == 0 {
        return 0;
    }
    alloc_size(buckets * entry + buckets + 16)
}
