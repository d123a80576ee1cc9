//! WATCH bookkeeping of one shard thread.

use crate::dict::Dict;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// WATCH bookkeeping: for each watched key, the flags of the transactions watching it. A write
/// to the key sets the flags (the transactions will abort) and forgets them.
#[derive(Default)]
pub struct Watches {
    by_key: Dict<Vec<Arc<AtomicBool>>>,
}

impl Watches {
    pub fn watch(&mut self, key: &[u8], flag: Arc<AtomicBool>) {
        let (v, _) = self.by_key.get_or_insert_with(key, Vec::new);
        v.retain(|f| Arc::strong_count(f) > 1);
        v.push(flag);
    }

    pub fn unwatch(&mut self, key: &[u8], flag: &Arc<AtomicBool>) {
        if let Some(v) = self.by_key.get_mut(key) {
            v.retain(|f| !Arc::ptr_eq(f, flag) && Arc::strong_count(f) > 1);
            if v.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    #[inline]
    pub fn touch(&mut self, key: &[u8]) {
        if self.by_key.is_empty() {
            return;
        }
        if let Some(v) = self.by_key.remove(key) {
            for f in v {
                f.store(true, Ordering::Release);
            }
        }
    }

    pub(super) fn touch_all(&mut self) {
        for (_, v) in self.by_key.iter() {
            for f in v {
                f.store(true, Ordering::Release);
            }
        }
        self.by_key.clear();
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
