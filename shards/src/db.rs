//! The keyspace of one shard thread: the vShards it owns, each a `Dict` of keys plus a `Dict` of
//! expiry times for the keys that have one (as Redis keeps an `expires` dict). Expiry is lazy on
//! access plus a bounded active pass (`active_expire`).
//!
//! One table per vShard (not per slot): a lookup chases one fewer pointer, tables are large enough
//! to fill well, and the vShard is the unit that Raft and migration move anyway.
//!
//! Invariants:
//! - a key lives in the table of its own slot's vShard, and only vShards this `Db` owns hold keys;
//! - every key in `expires` is also in `keys` (an expiry never outlives its key);
//! - a key whose expiry time is `<= now` is never returned to a command.

use crate::bytes::SmallBytes;
use crate::dict::Dict;
use crate::evict::{self, Policy};
use crate::notify::{Event, Touch, class};
use crate::rng::Rng;
use crate::slot::{Slot, VShardId, VShardLayout, key_slot};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stored value.
pub enum Value {
    Str(SmallBytes),
    Hash(Box<crate::command::hashes::Hash>),
    List(Box<crate::command::lists::List>),
    Set(Box<crate::command::sets::Set>),
    ZSet(Box<crate::command::zsets::ZSet>),
    Stream(Box<crate::command::streams::Stream>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// The encoding OBJECT ENCODING names, given the thresholds in `t`.
    pub fn encoding_with(&self, _t: &Tunables) -> &'static str {
        self.encoding()
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) if s.len() <= 20 && crate::num::parse_i64(s).is_some() => "int",
            Value::Str(s) if s.len() <= 44 => "embstr",
            Value::Str(_) => "raw",
            Value::Hash(h) => h.encoding(),
            // A deque of elements: the indexed encoding (compact encodings come with issue 4).
            Value::List(l) => l.encoding(),
            Value::Set(s) => s.encoding(),
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    /// Whether this is a collection with no elements left (which Redis removes).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            // Redis keeps empty streams (they carry ids and groups).
            Value::Stream(_) => false,
        }
    }

    /// A copy that shares nothing with `self` (COPY).
    pub fn deep_clone(&self) -> Value {
        match self {
            Value::Str(s) => Value::Str(s.clone()),
            Value::Hash(h) => Value::Hash(h.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Set(s) => Value::Set(s.clone()),
            Value::ZSet(z) => Value::ZSet(Box::new(z.deep_clone())),
            Value::Stream(s) => Value::Stream(s.clone()),
        }
    }

    /// Estimated bytes owned by this value outside its table slot.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.heap_bytes(),
            Value::Hash(h) => {
                crate::mem::alloc_size(std::mem::size_of::<crate::command::hashes::Hash>())
                    + h.heap_bytes()
            }
            Value::List(l) => l.heap_bytes(),
            Value::Set(s) => s.heap_bytes(),
            Value::ZSet(z) => z.table_bytes(),
            Value::Stream(s) => s.heap_bytes(),
        }
    }
}

/// One vShard's state.
pub struct VShard {
    pub id: VShardId,
    pub keys: Dict<Value>,
    /// Absolute expiry, Unix milliseconds, of the keys that have one.
    pub expires: Dict<u64>,
}

impl VShard {
    pub fn new(id: VShardId) -> Self {
        VShard {
            id,
            keys: Dict::with_meta(),
            expires: Dict::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    #[inline]
    fn is_live(&self, key: &[u8], now_ms: u64) -> bool {
        !matches!(self.expires.get(key), Some(&at) if at <= now_ms)
    }
}

/// Where [`Db::prefetch`] found a key's table, for the second stage.
#[derive(Clone, Copy, Debug)]
pub struct Prefetched {
    vshard: VShardId,
    hash: u64,
}

/// Counters kept by the keyspace itself.
#[derive(Default, Debug, Clone, Copy)]
pub struct DbStats {
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub evicted_keys: u64,
}

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

    fn touch_all(&mut self) {
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

/// Settings the command layer reads (CONFIG SET changes them on every shard thread).
#[derive(Clone, Copy, Debug)]
pub struct Tunables {
    /// Entries per stream node: the unit approximate (`~`) trimming removes.
    pub stream_node_max_entries: usize,
    /// `notify-keyspace-events` as `notify::class` bits; 0 turns notifications off.
    pub notify_keyspace_events: u32,
    /// Node-wide memory limit in bytes (0: none); enforced by the driver, which calls `evict`.
    pub maxmemory: u64,
    pub maxmemory_policy: Policy,
    /// Keys sampled per eviction.
    pub maxmemory_samples: u32,
    pub lfu_log_factor: u32,
    /// Minutes per step of LFU counter decay (0: never decays).
    pub lfu_decay_time: u32,
    // Encoding thresholds, as Redis names them: collections stay packed while within them.
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub set_max_listpack_entries: usize,
    pub set_max_listpack_value: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    /// Positive: most entries of a packed list; negative -1..-5: most bytes, 4 KiB << (-n - 1).
    pub list_max_listpack_size: i64,
}

/// How far a packed collection may grow before it converts to its indexed encoding.
#[derive(Clone, Copy, Debug)]
pub struct PackLimits {
    pub entries: usize,
    /// Longest element (member, field or value) in bytes.
    pub value: usize,
}

impl Tunables {
    pub fn hash_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.hash_max_listpack_entries,
            value: self.hash_max_listpack_value,
        }
    }

    pub fn set_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.set_max_listpack_entries,
            value: self.set_max_listpack_value,
        }
    }

    pub fn zset_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.zset_max_listpack_entries,
            value: self.zset_max_listpack_value,
        }
    }
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            stream_node_max_entries: 100,
            notify_keyspace_events: 0,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
        }
    }
}

/// The keyspace of one shard thread.
pub struct Db {
    pub tunables: Tunables,
    layout: VShardLayout,
    /// Indexed by vShard id; `None` for vShards another thread (or node) owns.
    vshards: Vec<Option<VShard>>,
    pub watches: Watches,
    pub stats: DbStats,
    /// Where the next active-expiry pass starts: a vShard index and a bucket of its `expires`.
    expire_cursor: (u32, usize),
    /// Blocked clients by the key they wait on, in arrival order (ids are the driver's).
    pub waiting: Dict<std::collections::VecDeque<u64>>,
    /// Keys with waiters that were written since the driver last looked: it serves their waiters.
    pub ready: Vec<Vec<u8>>,
    /// How the running command touched keys, recorded only while notifications are on.
    pub touched: Vec<(Vec<u8>, Touch)>,
    /// Keyspace events waiting for the driver to publish them.
    pub events: Vec<Event>,
    /// Draws for the LFU counter and eviction sampling (bookkeeping, not replicated state).
    access_rng: Rng,
    /// The time of the running command (set by `command::apply`), for paths without a `now`.
    pub now_ms: u64,
}

/// The access metadata of a key just created.
#[inline]
fn fresh_meta(t: &Tunables, now_ms: u64) -> u32 {
    if t.maxmemory_policy.is_lfu() {
        evict::lfu_new(now_ms)
    } else {
        evict::lru_stamp(now_ms)
    }
}

/// The access metadata of a key after an access.
#[inline]
fn accessed_meta(t: &Tunables, rng: &mut Rng, old: u32, now_ms: u64) -> u32 {
    if t.maxmemory_policy.is_lfu() {
        evict::lfu_touch(old, now_ms, t.lfu_log_factor, t.lfu_decay_time, rng)
    } else {
        evict::lru_stamp(now_ms)
    }
}

#[inline]
fn table_in_mut(vshards: &mut [Option<VShard>], layout: VShardLayout, slot: Slot) -> &mut VShard {
    vshards[layout.vshard_of(slot).0 as usize]
        .as_mut()
        .expect("routing sent a key to a shard thread that does not own its vShard")
}

impl Db {
    /// A keyspace owning `owned` vShards of `layout`.
    pub fn new(layout: VShardLayout, owned: impl IntoIterator<Item = VShardId>) -> Self {
        let mut vshards: Vec<Option<VShard>> = (0..layout.count()).map(|_| None).collect();
        for id in owned {
            vshards[id.0 as usize] = Some(VShard::new(id));
        }
        Db {
            tunables: Tunables::default(),
            layout,
            vshards,
            watches: Watches::default(),
            stats: DbStats::default(),
            expire_cursor: (0, 0),
            waiting: Dict::default(),
            ready: Vec::new(),
            touched: Vec::new(),
            events: Vec::new(),
            access_rng: Rng::new(0x5DEE_CE66),
            now_ms: 0,
        }
    }

    /// A keyspace owning every vShard (one shard thread, and unit tests).
    pub fn new_all(layout: VShardLayout) -> Self {
        Self::new(layout, (0..layout.count()).map(|v| VShardId(v as u16)))
    }

    pub fn layout(&self) -> VShardLayout {
        self.layout
    }

    pub fn owns_slot(&self, slot: Slot) -> bool {
        self.vshards[self.layout.vshard_of(slot).0 as usize].is_some()
    }

    #[inline]
    fn table(&self, slot: Slot) -> &VShard {
        table_in(&self.vshards, self.layout, slot)
    }

    #[inline]
    fn table_mut(&mut self, slot: Slot) -> &mut VShard {
        self.vshards[self.layout.vshard_of(slot).0 as usize]
            .as_mut()
            .expect("routing sent a key to a shard thread that does not own its vShard")
    }

    /// Removes `key` if its expiry time has passed. Returns true if it did.
    #[inline]
    fn expire_if_due(&mut self, slot: Slot, key: &[u8], now_ms: u64) -> bool {
        let t = self.table_mut(slot);
        if t.expires.is_empty() {
            return false;
        }
        match t.expires.get(key) {
            Some(&at) if at <= now_ms => {
                t.expires.remove(key);
                t.keys.remove(key);
                self.stats.expired_keys += 1;
                self.watches.touch(key);
                self.emit(class::EXPIRED, "expired", key);
                true
            }
            _ => false,
        }
    }

    /// Starts loading the memory a lookup of `key` will touch, if this `Db` owns it, and returns
    /// what [`Db::prefetch_value`] needs. Called for the commands of a pipelined batch before any
    /// of them runs, so that their cache misses overlap.
    #[inline]
    pub fn prefetch(&self, key: &[u8]) -> Option<Prefetched> {
        let v = self.layout.vshard_of(key_slot(key));
        let vs = self.vshards[v.0 as usize].as_ref()?;
        let hash = vs.keys.hash(key);
        vs.keys.prefetch(hash);
        Some(Prefetched { vshard: v, hash })
    }

    /// The second stage of [`Db::prefetch`]: once the bucket of `key` is (nearly) in cache, finds
    /// the value and starts loading its heap part.
    #[inline]
    pub fn prefetch_value(&self, key: &[u8], at: Prefetched) {
        let Some(vs) = &self.vshards[at.vshard.0 as usize] else {
            return;
        };
        let Some(i) = vs.keys.index_hashed(key, at.hash) else {
            return;
        };
        vs.keys.prefetch_meta(i);
        match Some(vs.keys.at(i)) {
            Some(Value::Str(crate::bytes::SmallBytes::Heap(b))) => {
                shardline_transport::hint::prefetch(b.as_ptr())
            }
            Some(Value::Hash(h)) => shardline_transport::hint::prefetch(&**h),
            Some(Value::List(l)) => shardline_transport::hint::prefetch(&**l),
            Some(Value::Set(s)) => shardline_transport::hint::prefetch(&**s),
            Some(Value::ZSet(z)) => shardline_transport::hint::prefetch(&**z),
            Some(Value::Stream(s)) => shardline_transport::hint::prefetch(&**s),
            _ => {}
        }
    }

    /// Finds the live `key` and records the access in its metadata: its slot and bucket.
    #[inline]
    fn find_and_touch(&mut self, key: &[u8], now_ms: u64) -> Option<(Slot, usize)> {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        let vs = table_in_mut(&mut self.vshards, self.layout, slot);
        let i = vs.keys.index_of(key)?;
        let m = accessed_meta(
            &self.tunables,
            &mut self.access_rng,
            vs.keys.meta(i),
            now_ms,
        );
        vs.keys.set_meta(i, m);
        Some((slot, i))
    }

    /// The live value of `key` (counts a keyspace hit or miss).
    #[inline]
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Value> {
        let Some((slot, i)) = self.find_and_touch(key, now_ms) else {
            self.stats.keyspace_misses += 1;
            return None;
        };
        self.stats.keyspace_hits += 1;
        Some(self.table(slot).keys.at(i))
    }

    /// The value of `key` without counting an access or checking expiry (call after
    /// `access_meta`, which does).
    pub fn peek(&self, key: &[u8]) -> Option<&Value> {
        self.table(key_slot(key)).keys.get(key)
    }

    /// The access metadata of a live key without counting an access (OBJECT IDLETIME/FREQ).
    pub fn access_meta(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        let keys = &self.table(slot).keys;
        keys.index_of(key).map(|i| keys.meta(i))
    }

    /// The live value of `key`, for in-place change. Call `signal` after a change.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Value> {
        let (slot, i) = self.find_and_touch(key, now_ms)?;
        Some(self.table_mut(slot).keys.at_mut(i))
    }

    /// Whether `key` is live, without counting a hit or miss.
    pub fn exists(&mut self, key: &[u8], now_ms: u64) -> bool {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        self.table(slot).keys.contains(key)
    }

    /// The value of `key`, created by `make` if absent. Signals the key as modified.
    pub fn get_or_insert_with(
        &mut self,
        key: &[u8],
        now_ms: u64,
        make: impl FnOnce() -> Value,
    ) -> &mut Value {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        self.watches.touch(key);
        self.mark_ready(key);
        if self.tunables.notify_keyspace_events != 0 {
            if !self.table(slot).keys.contains(key) {
                self.touched.push((key.to_vec(), Touch::New));
            }
            self.touched.push((key.to_vec(), Touch::Write));
        }
        let vs = table_in_mut(&mut self.vshards, self.layout, slot);
        let (i, inserted) = vs.keys.index_or_insert_with(key, make);
        let m = if inserted {
            fresh_meta(&self.tunables, now_ms)
        } else {
            accessed_meta(
                &self.tunables,
                &mut self.access_rng,
                vs.keys.meta(i),
                now_ms,
            )
        };
        vs.keys.set_meta(i, m);
        vs.keys.at_mut(i)
    }

    /// Records how the running command touched `key` (for keyspace notifications).
    #[inline]
    fn note(&mut self, key: &[u8], how: Touch) {
        if self.tunables.notify_keyspace_events != 0 {
            self.touched.push((key.to_vec(), how));
        }
    }

    /// Queues event `name` of `class_bit` on `key` if notifications want it.
    #[inline]
    pub fn emit(&mut self, class_bit: u32, name: &'static str, key: &[u8]) {
        let f = self.tunables.notify_keyspace_events;
        if f & class_bit != 0 && f & (class::KEYSPACE | class::KEYEVENT) != 0 {
            self.events.push(Event {
                name,
                key: key.to_vec(),
            });
        }
    }

    /// Queues waiter `id` on `keys` (`first`: ahead of the others, for one whose turn came
    /// and went without being served).
    pub fn wait_on(&mut self, id: u64, keys: &[Vec<u8>], first: bool) {
        for k in keys {
            let q = self
                .waiting
                .get_or_insert_with(k, std::collections::VecDeque::new)
                .0;
            if first {
                q.push_front(id);
            } else {
                q.push_back(id);
            }
        }
    }

    /// Takes waiter `id` off the queues of `keys`.
    pub fn unwait(&mut self, id: u64, keys: &[Vec<u8>]) {
        for k in keys {
            let empty = match self.waiting.get_mut(k) {
                Some(q) => {
                    q.retain(|&x| x != id);
                    q.is_empty()
                }
                None => false,
            };
            if empty {
                self.waiting.remove(k);
            }
        }
    }

    /// Notes that `key` was written, if a blocked client waits on it (one `is_empty` check when
    /// nobody is blocked).
    #[inline]
    pub fn mark_ready(&mut self, key: &[u8]) {
        if !self.waiting.is_empty()
            && self.waiting.contains(key)
            && !self.ready.iter().any(|k| k == key)
        {
            self.ready.push(key.to_vec());
        }
    }

    /// Tells WATCHers that `key` changed.
    #[inline]
    pub fn signal(&mut self, key: &[u8]) {
        self.watches.touch(key);
        self.note(key, Touch::Write);
    }

    /// Stores `value` at `key`. `expire_at_ms`: `Some` sets it, `None` clears any old one, unless
    /// `keep_ttl` is set.
    pub fn set(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>, keep_ttl: bool) {
        let slot = key_slot(key);
        self.watches.touch(key);
        self.mark_ready(key);
        if self.tunables.notify_keyspace_events != 0 {
            if !self.table(slot).keys.contains(key) {
                self.note(key, Touch::New);
            }
            self.note(key, Touch::Write);
            if expire_at_ms.is_some() {
                self.note(key, Touch::Expire);
            }
        }
        let meta = fresh_meta(&self.tunables, self.now_ms);
        let t = self.table_mut(slot);
        let (i, _) = t.keys.insert_at(key, value);
        t.keys.set_meta(i, meta);
        match expire_at_ms {
            Some(at) => {
                t.expires.insert(key, at);
            }
            None if !keep_ttl => {
                t.expires.remove(key);
            }
            None => {}
        }
    }

    /// Removes `key`; returns its value if it was live.
    pub fn remove(&mut self, key: &[u8], now_ms: u64) -> Option<Value> {
        let slot = key_slot(key);
        if self.expire_if_due(slot, key, now_ms) {
            return None;
        }
        let t = self.table_mut(slot);
        let v = t.keys.remove(key)?;
        t.expires.remove(key);
        self.watches.touch(key);
        self.note(key, Touch::Removed);
        Some(v)
    }

    /// The expiry of a live key: `None` if the key does not exist, `Some(None)` if it is
    /// persistent.
    pub fn expire_at(&mut self, key: &[u8], now_ms: u64) -> Option<Option<u64>> {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        let t = self.table(slot);
        if !t.keys.contains(key) {
            return None;
        }
        Some(t.expires.get(key).copied())
    }

    /// Sets the expiry of an existing key. The caller checked that the key is live.
    pub fn set_expire(&mut self, key: &[u8], at_ms: u64) {
        let slot = key_slot(key);
        self.watches.touch(key);
        self.note(key, Touch::Expire);
        self.table_mut(slot).expires.insert(key, at_ms);
    }

    /// Removes the expiry of `key`; true if it had one.
    pub fn persist(&mut self, key: &[u8], now_ms: u64) -> bool {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        let removed = self.table_mut(slot).expires.remove(key).is_some();
        if removed {
            self.watches.touch(key);
            self.note(key, Touch::Persist);
        }
        removed
    }

    /// Number of keys (including expired ones not yet collected, as Redis's DBSIZE does).
    pub fn len(&self) -> usize {
        self.owned().map(|v| v.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys with an expiry.
    pub fn volatile_len(&self) -> usize {
        self.owned().map(|v| v.expires.len()).sum()
    }

    pub fn owned(&self) -> impl Iterator<Item = &VShard> {
        self.vshards.iter().flatten()
    }

    /// A random live key: random owned vShards and buckets are sampled, then, if sampling keeps
    /// missing (a nearly empty keyspace), the first live key in order.
    pub fn random_key(&self, rng: &mut crate::rng::Rng, now_ms: u64) -> Option<Vec<u8>> {
        let owned: Vec<&VShard> = self.owned().filter(|v| !v.is_empty()).collect();
        if owned.is_empty() {
            return None;
        }
        for _ in 0..1024 {
            let vs = owned[rng.below(owned.len() as u64) as usize];
            let b = rng.below(vs.keys.num_buckets() as u64) as usize;
            if let Some((k, _)) = vs.keys.bucket(b)
                && vs.is_live(k, now_ms)
            {
                return Some(k.to_vec());
            }
        }
        owned.iter().find_map(|vs| {
            vs.keys
                .iter()
                .find(|(k, _)| vs.is_live(k, now_ms))
                .map(|(k, _)| k.to_vec())
        })
    }

    /// The vShard `id`, if this `Db` owns it (for snapshots).
    pub fn vshard(&self, id: VShardId) -> Option<&VShard> {
        self.vshards.get(id.0 as usize)?.as_ref()
    }

    /// Replaces a vShard this `Db` owns with `vs` (an installed snapshot); false, and nothing
    /// changed, if it does not own it. Every WATCH is broken, as after FLUSHALL.
    pub fn install(&mut self, vs: VShard) -> bool {
        match self.vshards.get_mut(vs.id.0 as usize) {
            Some(slot @ Some(_)) => {
                *slot = Some(vs);
                self.watches.touch_all();
                true
            }
            _ => false,
        }
    }

    /// Up to `limit` live keys of `slot` (CLUSTER COUNTKEYSINSLOT / GETKEYSINSLOT). The slot's
    /// vShard table holds the keys of all its slots; this filters them.
    pub fn keys_in_slot(&self, slot: Slot, limit: usize, now_ms: u64) -> Vec<Vec<u8>> {
        let Some(vs) = &self.vshards[self.layout.vshard_of(slot).0 as usize] else {
            return Vec::new();
        };
        vs.keys
            .iter()
            .filter(|(k, _)| key_slot(k) == slot && vs.is_live(k, now_ms))
            .take(limit)
            .map(|(k, _)| k.to_vec())
            .collect()
    }

    /// Evicts one key chosen by `maxmemory-policy` from a sample of this thread's keys; returns
    /// it, or `None` under `noeviction` or with no candidate. See `evict`.
    pub fn evict_one(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let t = self.tunables;
        if t.maxmemory_policy == Policy::NoEviction {
            return None;
        }
        let volatile = t.maxmemory_policy.volatile();
        let candidates: Vec<usize> = (0..self.vshards.len())
            .filter(|&i| {
                self.vshards[i].as_ref().is_some_and(|v| {
                    if volatile {
                        !v.expires.is_empty()
                    } else {
                        !v.keys.is_empty()
                    }
                })
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let samples = t.maxmemory_samples.clamp(1, 64);
        let mut best: Option<(u64, Vec<u8>)> = None;
        for _ in 0..samples {
            let vi = candidates[self.access_rng.below(candidates.len() as u64) as usize];
            let vs = self.vshards[vi].as_ref().expect("owned");
            let (key, expire_at) = if volatile {
                let (_, k, at) = vs.expires.random(&mut self.access_rng)?;
                (k, Some(*at))
            } else {
                let (_, k, _) = vs.keys.random(&mut self.access_rng)?;
                (k, None)
            };
            let meta = vs.keys.index_of(key).map_or(0, |i| vs.keys.meta(i));
            let score = match t.maxmemory_policy {
                Policy::AllKeysLru | Policy::VolatileLru => evict::idle_secs(meta, now_ms),
                Policy::AllKeysLfu | Policy::VolatileLfu => {
                    255 - evict::lfu_counter(meta, now_ms, t.lfu_decay_time) as u64
                }
                Policy::VolatileTtl => u64::MAX - expire_at.unwrap_or(u64::MAX),
                _ => 0,
            };
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, key.to_vec()));
            }
        }
        let (_, key) = best?;
        let vs = table_in_mut(&mut self.vshards, self.layout, key_slot(&key));
        vs.keys.remove(&key);
        vs.expires.remove(&key);
        self.watches.touch(&key);
        self.stats.evicted_keys += 1;
        self.emit(class::EVICTED, "evicted", &key);
        Some(key)
    }

    /// Removes every key of vShard `id` (FLUSHALL on a replicated node, one entry per vShard);
    /// every WATCH is broken, as after FLUSHALL. Nothing if this `Db` does not own it.
    pub fn flush_vshard(&mut self, id: VShardId) {
        if let Some(Some(vs)) = self.vshards.get_mut(id.0 as usize) {
            vs.keys.clear();
            vs.expires.clear();
            self.watches.touch_all();
        }
    }

    /// Removes every key.
    pub fn flush(&mut self) {
        for vs in self.vshards.iter_mut().flatten() {
            vs.keys.clear();
            vs.expires.clear();
        }
        self.watches.touch_all();
    }

    /// Visits live keys from `cursor` on. The cursor packs a slot of the vShard to scan (low 14
    /// bits) and a bucket index in its table; a call stays within one vShard, so it runs on one
    /// thread. Returns the next cursor: the same vShard further on, the first slot of the next
    /// vShard, or 0 when the whole keyspace is done.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut visit: impl FnMut(&[u8], &Value),
    ) -> u64 {
        let slot = (cursor & 0x3fff) as Slot;
        let bucket = (cursor >> 14) as usize;
        let range = self.layout.slot_range(self.layout.vshard_of(slot));
        let vs = self.table(slot);
        let next = vs.keys.scan(bucket, count, |k, v| {
            if vs.is_live(k, now_ms) {
                visit(k, v);
            }
        });
        if next != 0 {
            ((next as u64) << 14) | range.start as u64
        } else if range.end as u32 >= crate::slot::SLOTS as u32 {
            0
        } else {
            range.end as u64
        }
    }

    /// One bounded active-expiry step: looks at up to `budget` keys with an expiry, starting where
    /// the last step stopped, and removes the ones that are due. Returns how many it removed.
    pub fn active_expire(&mut self, now_ms: u64, budget: usize) -> usize {
        let due = self.due_keys(now_ms, budget, |_| true);
        let mut removed = 0;
        for (v, keys) in due {
            let vs = self.vshards[v.0 as usize].as_mut().expect("scanned");
            for k in &keys {
                vs.expires.remove(k);
                vs.keys.remove(k);
            }
            removed += keys.len();
            self.stats.expired_keys += keys.len() as u64;
            for k in &keys {
                self.watches.touch(k);
                self.emit(class::EXPIRED, "expired", k);
            }
        }
        removed
    }

    /// Keys whose time has come, found by looking at up to `budget` keys with a TTL (resuming
    /// where the last call stopped), in the vShards `include` accepts; nothing is removed. Active
    /// expiry removes them at once; a replicated vShard's leader proposes them to its log
    /// instead, so every replica expires them at the same point.
    pub fn due_keys(
        &mut self,
        now_ms: u64,
        budget: usize,
        include: impl Fn(VShardId) -> bool,
    ) -> Vec<(VShardId, Vec<SmallBytes>)> {
        let mut looked = 0;
        let mut out = Vec::new();
        let count = self.vshards.len() as u32;
        let mut moves = 0;
        // One lap at most: a key is reported once per call.
        while looked < budget && moves < count {
            let (v, bucket) = self.expire_cursor;
            let vs = match self.vshards[v as usize].as_ref() {
                Some(vs) if include(VShardId(v as u16)) => vs,
                _ => {
                    self.expire_cursor = ((v + 1) % count, 0);
                    moves += 1;
                    continue;
                }
            };
            let mut due = Vec::new();
            let next = vs.expires.scan(bucket, budget - looked, |k, &at| {
                looked += 1;
                if at <= now_ms {
                    due.push(k.clone());
                }
            });
            if !due.is_empty() {
                out.push((VShardId(v as u16), due));
            }
            if next == 0 {
                self.expire_cursor = ((v + 1) % count, 0);
                moves += 1;
            } else {
                self.expire_cursor = (v, next);
            }
        }
        out
    }
}

#[inline]
fn table_in(vshards: &[Option<VShard>], layout: VShardLayout, slot: Slot) -> &VShard {
    vshards[layout.vshard_of(slot).0 as usize]
        .as_ref()
        .expect("routing sent a key to a shard thread that does not own its vShard")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        Db::new_all(VShardLayout::new(256).unwrap())
    }

    #[test]
    fn expired_keys_vanish_on_access() {
        let mut d = db();
        d.set(b"k", Value::Str(SmallBytes::new(b"v")), Some(100), false);
        assert!(d.get(b"k", 99).is_some());
        assert!(d.get(b"k", 100).is_none());
        assert_eq!(d.len(), 0);
        assert_eq!(d.stats.expired_keys, 1);
    }

    #[test]
    fn scan_visits_every_key_exactly_once() {
        let mut d = db();
        for i in 0..5000 {
            d.set(
                format!("key:{i}").as_bytes(),
                Value::Str(SmallBytes::new(b"v")),
                None,
                false,
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            cursor = d.scan(cursor, 10, 0, |k, _| assert!(seen.insert(k.to_vec())));
            calls += 1;
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 5000);
        assert!(
            calls > 256,
            "scan should take several calls per vShard, took {calls}"
        );
    }

    #[test]
    fn active_expire_removes_due_keys_within_budget() {
        let mut d = db();
        for i in 0..1000 {
            d.set(
                format!("k{i}").as_bytes(),
                Value::Str(SmallBytes::new(b"v")),
                Some(10),
                false,
            );
        }
        d.set(
            b"live",
            Value::Str(SmallBytes::new(b"v")),
            Some(1000),
            false,
        );
        let mut total = 0;
        for _ in 0..10_000 {
            total += d.active_expire(20, 50);
            if d.len() == 1 {
                break;
            }
        }
        assert_eq!(total, 1000);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn watch_flag_is_set_by_a_write_to_the_key() {
        let mut d = db();
        let flag = Arc::new(AtomicBool::new(false));
        d.watches.watch(b"k", flag.clone());
        d.set(b"other", Value::Str(SmallBytes::new(b"v")), None, false);
        assert!(!flag.load(Ordering::Acquire));
        d.set(b"k", Value::Str(SmallBytes::new(b"v")), None, false);
        assert!(flag.load(Ordering::Acquire));
    }
}
