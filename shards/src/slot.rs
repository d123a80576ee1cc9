//! Hash slots: CRC16/XMODEM of the key (or of its `{hashtag}`) modulo 16384, exactly as Redis
//! Cluster computes them, and the fixed grouping of slots into vShards.

/// Number of Redis Cluster hash slots.
pub const SLOTS: u16 = 16384;

/// A Redis Cluster hash slot, `0..16384`.
pub type Slot = u16;

/// CRC16/XMODEM (poly 0x1021, init 0) tables for slicing by 8: `TABLES[k][v]` is the CRC of byte
/// `v` followed by `k` zero bytes, so eight input bytes fold in with eight independent lookups.
const TABLES: [[u16; 256]; 8] = {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// CRC16/XMODEM of `data`, one byte at a time (the reference the sliced version is tested against).
pub fn crc16_bytewise(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = (crc << 8) ^ TABLES[0][(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

/// CRC16/XMODEM of `data`, eight bytes per step.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    let t = &TABLES;
    let mut crc: u16 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let x0 = ((crc >> 8) as u8 ^ c[0]) as usize;
        let x1 = ((crc & 0xff) as u8 ^ c[1]) as usize;
        crc = t[7][x0]
            ^ t[6][x1]
            ^ t[5][c[2] as usize]
            ^ t[4][c[3] as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

/// The slot of `key`, with Redis's hashtag rule: if the key contains `{` followed later by `}` with
/// at least one byte between them, only the bytes between the first `{` and the first `}` after it
/// are hashed.
#[inline]
pub fn key_slot(key: &[u8]) -> Slot {
    crc16(hash_tag(key)) & (SLOTS - 1)
}

/// The part of `key` that is hashed.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The vShard layout of a node: `count` vShards (a power of two), each holding `SLOTS / count`
/// consecutive slots. Fixed when the node's data directory is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VShardLayout {
    shift: u32,
}

/// Index of a vShard, `0..layout.count()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VShardId(pub u16);

impl VShardLayout {
    /// `count` must be a power of two between 1 and 16384.
    pub fn new(count: u32) -> Result<Self, String> {
        if count == 0 || !count.is_power_of_two() || count > SLOTS as u32 {
            return Err(format!(
                "must be a power of two between 1 and {SLOTS}, got {count}"
            ));
        }
        Ok(VShardLayout {
            shift: (SLOTS as u32 / count).trailing_zeros(),
        })
    }

    pub fn count(self) -> u32 {
        SLOTS as u32 >> self.shift
    }

    pub fn slots_per_vshard(self) -> u32 {
        1 << self.shift
    }

    #[inline]
    pub fn vshard_of(self, slot: Slot) -> VShardId {
        VShardId(slot >> self.shift)
    }

    /// The first slot of `vshard` and the number of slots it holds.
    pub fn slot_range(self, vshard: VShardId) -> std::ops::Range<Slot> {
        let first = (vshard.0 as u32) << self.shift;
        first as Slot..(first + self.slots_per_vshard()) as Slot
    }

    /// Which of `threads` shard threads owns `vshard`: vShards are dealt round-robin so that
    /// consecutive slot ranges spread over all threads.
    #[inline]
    pub fn owner_thread(self, vshard: VShardId, threads: usize) -> usize {
        vshard.0 as usize % threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16_bytewise(b"123456789"), 0x31C3);
    }

    #[test]
    fn sliced_crc16_equals_the_bytewise_one_on_every_length() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(crc16(&data), crc16_bytewise(&data), "length {len}");
        }
    }

    #[test]
    fn key_slot_matches_values_redis_cluster_reports() {
        // Values read from `CLUSTER KEYSLOT` on redis-server 7.0.15 (Debian).
        let golden: &[(&[u8], u16)] = &[
            (b"foo", 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"key:000000000001", 8924),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"user1000", 3443),
            (b"", 0),
            (b"a", 15495),
        ];
        for (key, slot) in golden {
            assert_eq!(
                key_slot(key),
                *slot,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn hashtag_rule_follows_redis_edge_cases() {
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}"); // empty first tag: whole key
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
    }

    #[test]
    fn layout_groups_consecutive_slots() {
        let l = VShardLayout::new(256).unwrap();
        assert_eq!(l.slots_per_vshard(), 64);
        assert_eq!(l.vshard_of(0), VShardId(0));
        assert_eq!(l.vshard_of(63), VShardId(0));
        assert_eq!(l.vshard_of(64), VShardId(1));
        assert_eq!(l.vshard_of(16383), VShardId(255));
        assert_eq!(l.slot_range(VShardId(2)), 128..192);
        assert!(VShardLayout::new(300).is_err());
        assert!(VShardLayout::new(0).is_err());
        assert_eq!(VShardLayout::new(16384).unwrap().slots_per_vshard(), 1);
    }
}
