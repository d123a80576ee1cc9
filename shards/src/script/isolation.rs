//! A script's run on a vShard with replicas on other nodes (issue 18, step 3): what it writes
//! is copied first and put back after (`Isolation`), its effects go through the log.

use crate::db::Db;

/// A script run for a vShard with replicas elsewhere (issue 18, step 3): it runs on the
/// leader's keyspace, but nothing it does may show before its effects commit, so every key a
/// write command of it names is copied first (`journal`) and put back after the run
/// (`undo`); its effects go through the log. Its commands may touch keys of `vshard` only
/// (`None`: no key at all).
#[derive(Default)]
pub struct Isolation {
    pub vshard: Option<crate::slot::VShardId>,
    journal: Vec<(Vec<u8>, Option<Kept>)>,
}

/// A key's value and expiry as a script found it (`Isolation::keep`).
type Kept = (crate::db::Value, Option<u64>);

impl Isolation {
    pub fn new(vshard: Option<crate::slot::VShardId>) -> Isolation {
        Isolation {
            vshard,
            journal: Vec::new(),
        }
    }

    /// Copies `key` as it is now, the first time a write names it.
    pub(super) fn keep(&mut self, db: &Db, key: &[u8]) {
        if !self.journal.iter().any(|(k, _)| k == key) {
            self.journal.push((key.to_vec(), db.raw_entry(key)));
        }
    }

    /// Puts every key the run wrote back as it was before it (latest copy first: each key
    /// once, so the order does not matter).
    pub fn undo(self, db: &mut Db) {
        for (key, entry) in self.journal.into_iter().rev() {
            db.put_raw(&key, entry);
        }
    }
}
