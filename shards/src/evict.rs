//! Key access tracking and eviction under `maxmemory`, approximated the way Redis approximates.
//!
//! Every key carries a `u32` in its table's metadata (`Dict::with_meta`): under an LFU policy a
//! logarithmic access counter and the minute it was last decayed (`minutes << 8 | counter`, as
//! Redis packs it), otherwise the second of the last access (an LRU clock). Lookups update it,
//! OBJECT IDLETIME and OBJECT FREQ read it. It is node-local bookkeeping, not replicated state.
//!
//! Eviction samples `maxmemory-samples` keys of this shard thread (from the keys with a TTL for
//! the `volatile-*` policies) and removes the best candidate: the longest idle (LRU), the least
//! frequently used (LFU), the nearest expiry (TTL) or the first sampled (random). Each shard
//! thread evicts from its own keys; keys spread evenly over threads, so this approximates a
//! node-wide choice as Redis's sampling approximates a global one.

use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

const NAMES: &[(Policy, &str)] = &[
    (Policy::NoEviction, "noeviction"),
    (Policy::AllKeysLru, "allkeys-lru"),
    (Policy::AllKeysLfu, "allkeys-lfu"),
    (Policy::AllKeysRandom, "allkeys-random"),
    (Policy::VolatileLru, "volatile-lru"),
    (Policy::VolatileLfu, "volatile-lfu"),
    (Policy::VolatileRandom, "volatile-random"),
    (Policy::VolatileTtl, "volatile-ttl"),
];

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("?", |(_, n)| n)
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    /// Whether candidates come from the keys with a TTL only.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// The counter a new key starts with under LFU (Redis's `LFU_INIT_VAL`).
pub const LFU_INIT: u32 = 5;

/// The LRU stamp of `now_ms`: seconds, wrapping.
#[inline]
pub fn lru_stamp(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32
}

/// Seconds since the LRU stamp `meta`; 0 for a stamp a little ahead of `now_ms` (a key
/// written with a later clock than the one evicting: a group's clock, a batch read earlier),
/// which a wrapping difference would make the idlest key of all.
#[inline]
pub fn idle_secs(meta: u32, now_ms: u64) -> u64 {
    let idle = lru_stamp(now_ms).wrapping_sub(meta);
    if idle > u32::MAX / 2 { 0 } else { idle as u64 }
}

#[inline]
fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

/// The LFU metadata of a new key.
#[inline]
pub fn lfu_new(now_ms: u64) -> u32 {
    minutes(now_ms) << 8 | LFU_INIT
}

/// The counter of LFU metadata `meta` after decaying one step per `decay_minutes` elapsed.
pub fn lfu_counter(meta: u32, now_ms: u64, decay_minutes: u32) -> u32 {
    let counter = meta & 0xff;
    if decay_minutes == 0 {
        return counter;
    }
    let elapsed = minutes(now_ms).wrapping_sub(meta >> 8) & 0xffff;
    counter.saturating_sub(elapsed / decay_minutes)
}

/// LFU metadata after one access: decayed, then incremented with probability
/// `1 / ((counter - LFU_INIT) * log_factor + 1)` (a logarithmic counter, as Redis's).
pub fn lfu_touch(
    meta: u32,
    now_ms: u64,
    log_factor: u32,
    decay_minutes: u32,
    rng: &mut Rng,
) -> u32 {
    let mut counter = lfu_counter(meta, now_ms, decay_minutes);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT) as u64;
        let r = rng.next_u64() >> 11; // 53 random bits
        let threshold = (1u64 << 53) / (base * log_factor as u64 + 1);
        if r < threshold {
            counter += 1;
        }
    }
    minutes(now_ms) << 8 | counter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_by_name() {
        for (p, n) in NAMES {
            assert_eq!(Policy::parse(n), Some(*p));
            assert_eq!(p.name(), *n);
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllKeysLru));
        assert_eq!(Policy::parse("lru"), None);
    }

    #[test]
    fn lru_idle_time_counts_seconds_and_survives_wrap() {
        let stamp = lru_stamp(10_500);
        assert_eq!(idle_secs(stamp, 12_900), 2);
        assert_eq!(idle_secs(u32::MAX, 1000 * (1u64 << 32)), 1);
        // Stamped a second after the evicting clock (a write with its group's later clock):
        // as fresh as can be, not the idlest key (found by an LRU test that lost the newest
        // writes first).
        assert_eq!(idle_secs(lru_stamp(13_000), 12_900), 0);
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let mut rng = Rng::new(1);
        let now = 600_000;
        let mut m = lfu_new(now);
        assert_eq!(lfu_counter(m, now, 1), LFU_INIT);
        for _ in 0..100 {
            m = lfu_touch(m, now, 10, 1, &mut rng);
        }
        let after_100 = lfu_counter(m, now, 1);
        assert!((6..=20).contains(&after_100), "{after_100}");
        for _ in 0..100_000 {
            m = lfu_touch(m, now, 10, 1, &mut rng);
        }
        let after_100k = lfu_counter(m, now, 1);
        assert!(after_100k > after_100 && after_100k < 255, "{after_100k}");
        // Ten minutes later the counter is ten lower.
        assert_eq!(lfu_counter(m, now + 600_000, 1), after_100k - 10);
        assert_eq!(lfu_counter(m, now + 600_000, 0), after_100k);
    }
}

#[cfg(test)]
mod db_tests {
    use super::Policy;
    use crate::command::testing::*;

    fn fill(h: &mut Harness, n: usize) {
        for i in 0..n {
            h.run(&format!("SET k{i} v"));
        }
    }

    #[test]
    fn noeviction_evicts_nothing() {
        let mut h = Harness::new();
        fill(&mut h, 10);
        assert_eq!(h.db.evict_one(h.now_ms), None);
        assert_eq!(h.db.len(), 10);
    }

    // Eviction samples keys at random and tables are seeded per process, so these tests sample
    // 64 keys per eviction: far more than production's 5, making a wrong pick vanishingly rare
    // (a test must fail for a broken policy, not for an unlucky draw).
    #[test]
    fn lru_prefers_keys_idle_longest() {
        let mut h = Harness::new();
        h.db.tunables.maxmemory_policy = Policy::AllKeysLru;
        h.db.tunables.maxmemory_samples = 64;
        fill(&mut h, 100);
        h.now_ms += 100_000;
        // Keys 0..50 are read again; the other half stays idle.
        for i in 0..50 {
            h.run(&format!("GET k{i}"));
        }
        let mut evicted_idle = 0;
        for _ in 0..20 {
            let k = h.db.evict_one(h.now_ms).unwrap();
            let i: usize = String::from_utf8(k).unwrap()[1..].parse().unwrap();
            evicted_idle += usize::from(i >= 50);
        }
        assert!(
            evicted_idle >= 18,
            "{evicted_idle} of 20 evictions took idle keys"
        );
        assert_eq!(h.db.len(), 80);
        assert_eq!(h.db.stats.evicted_keys, 20);
    }

    #[test]
    fn lfu_prefers_rarely_used_keys_and_volatile_policies_spare_persistent_keys() {
        let mut h = Harness::new();
        h.db.tunables.maxmemory_policy = Policy::AllKeysLfu;
        h.db.tunables.maxmemory_samples = 64;
        fill(&mut h, 40);
        for _ in 0..300 {
            for i in 0..20 {
                h.run(&format!("GET k{i}"));
            }
        }
        for _ in 0..10 {
            let k = h.db.evict_one(h.now_ms).unwrap();
            let i: usize = String::from_utf8(k).unwrap()[1..].parse().unwrap();
            assert!(i >= 20, "evicted hot key k{i}");
        }
        h.db.tunables.maxmemory_policy = Policy::VolatileTtl;
        h.run("SET soon v PX 1000");
        h.run("SET later v PX 900000");
        assert_eq!(h.db.evict_one(h.now_ms), Some(b"soon".to_vec()));
        assert_eq!(h.db.evict_one(h.now_ms), Some(b"later".to_vec()));
        assert_eq!(h.db.evict_one(h.now_ms), None, "no key with a TTL is left");
    }
}
