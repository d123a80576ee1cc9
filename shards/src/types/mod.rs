//! The value types a key can hold, apart from the commands on them: the keyspace (`db::Value`),
//! snapshots and DUMP/RESTORE name them here, not in the command layer.

mod hash;
mod list;
mod set;
pub mod stream;
mod zset;

pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use zset::ZSet;

/// Marks `min(n, len)` of `len` positions, chosen uniformly without repetition.
pub(crate) fn pick_distinct(len: usize, n: usize, rng: &mut crate::rng::Rng) -> Vec<bool> {
    let mut order: Vec<usize> = (0..len).collect();
    let n = n.min(len);
    for i in 0..n {
        let j = i + rng.below((len - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut picked = vec![false; len];
    for &i in &order[..n] {
        picked[i] = true;
    }
    picked
}
