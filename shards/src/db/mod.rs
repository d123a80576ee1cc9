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
use crate::snapshot::Capture;

mod tunables;
mod value;
mod watch;

pub use tunables::{PackLimits, Tunables};
pub use value::Value;
pub use watch::Watches;

/// One vShard's state.
pub struct VShard {
    pub id: VShardId,
    pub keys: Dict<Value>,
    /// Absolute expiry, Unix milliseconds, of the keys that have one.
    pub expires: Dict<u64>,
    /// Every cross-vShard transaction (Calvin, `docs/design/calvin.md`) numbered below it has
    /// executed here: replicated state (in the snapshot), so an execution entry applies once.
    pub calvin_next: u64,
    /// The reads of this vShard's keys each executed transaction used, kept until every
    /// participant has executed it (a participant that lost them, restarted or with a new
    /// leader, asks again): replicated state, in the snapshot.
    pub calvin_sent: std::collections::BTreeMap<u64, Vec<crate::calvin::exec::Read>>,
    /// A snapshot being serialized while the vShard serves (`snapshot::capture`): every
    /// change to a key goes through `cow` first.
    pub capture: Option<Box<Capture>>,
}

impl VShard {
    pub fn new(id: VShardId) -> Self {
        VShard {
            id,
            keys: Dict::with_meta(),
            expires: Dict::default(),
            calvin_next: 0,
            calvin_sent: std::collections::BTreeMap::new(),
            capture: None,
        }
    }

    /// `key` is about to change (its value, its expiry, its insertion or removal): a capture
    /// under way serializes it first if it has not yet (`Capture::before_change`).
    #[inline]
    pub fn cow(&mut self, key: &[u8]) {
        if let Some(c) = self.capture.as_deref_mut() {
            c.before_change(&mut self.keys, &self.expires, key);
        }
    }

    /// Every key is about to go: a capture under way keeps the tables (`Capture::before_clear`).
    pub fn cow_all(&mut self) {
        if let Some(c) = self.capture.as_deref_mut() {
            c.before_clear(&mut self.keys, &mut self.expires);
        }
    }

    /// Starts a capture of the vShard as it is now (one under way is dropped).
    pub fn begin_capture(&mut self, now_ms: u64, id: u64) {
        self.keys.reset_marks();
        self.capture = Some(Box::new(Capture::new(self, now_ms, id)));
    }

    /// Walks the capture under way on by about `budget` bytes (see `Capture::walk`); true
    /// once every key is written; false with none under way.
    pub fn capture_walk(&mut self, budget: usize) -> bool {
        match self.capture.as_deref_mut() {
            Some(c) => c.walk(&mut self.keys, &self.expires, budget),
            None => false,
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
    /// While a keyspace-wide read runs on a replicated node (DBSIZE, KEYS, SCAN, RANDOMKEY):
    /// the vShards it covers, by id, those this node leads (as a Redis Cluster primary covers
    /// its slots, so a tool summing over nodes counts each key once). `None`: every vShard.
    pub view: Option<Vec<bool>>,
    /// How the running command touched keys, recorded only while notifications are on.
    pub touched: Vec<(Vec<u8>, Touch)>,
    /// Keyspace events waiting for the driver to publish them.
    pub events: Vec<Event>,
    /// Draws for the LFU counter and eviction sampling (bookkeeping, not replicated state).
    access_rng: Rng,
    /// The time of the running command (set by `command::apply`), for paths without a `now`.
    pub now_ms: u64,
    /// A transaction's scratch keyspace (`calvin::exec`): it holds every key its commands
    /// name, whatever their slots, so a command that may name keys it does not list (SORT's
    /// patterns and STORE) need not keep them in its first key's slot.
    pub across_slots: bool,
    /// Lua scripting on this thread: the node's script cache, the Lua state, the keys the
    /// last script wrote (`script`).
    pub scripts: crate::script::Scripts,
    /// SLOWLOG and LATENCY of this thread, the clock that times commands (the driver's;
    /// the default never advances), and how deep `command::apply` is (a script's calls
    /// are not timed on their own).
    pub slowlog: crate::slowlog::SlowLog,
    pub latency: crate::slowlog::Latency,
    pub timer: crate::slowlog::Timer,
    pub apply_depth: u32,
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
            view: None,
            touched: Vec::new(),
            events: Vec::new(),
            access_rng: Rng::new(0x5DEE_CE66),
            now_ms: 0,
            across_slots: false,
            scripts: crate::script::Scripts::default(),
            slowlog: Default::default(),
            latency: Default::default(),
            timer: Default::default(),
            apply_depth: 0,
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
                t.cow(key);
                t.expires.remove(key);
                t.keys.remove(key);
                self.stats.expired_keys += 1;
                self.changed(key);
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

    /// Overwrites the access metadata of an existing key (RESTORE's IDLETIME and FREQ).
    pub fn set_access_meta(&mut self, key: &[u8], meta: u32) {
        let keys = &mut self.table_mut(key_slot(key)).keys;
        if let Some(i) = keys.index_of(key) {
            keys.set_meta(i, meta);
        }
    }

    /// The live value of `key`, for in-place change. Call `signal` after a change.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Value> {
        let (slot, i) = self.find_and_touch(key, now_ms)?;
        let t = self.table_mut(slot);
        t.cow(key);
        Some(t.keys.at_mut(i))
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
        self.changed(key);
        if self.tunables.notify_keyspace_events != 0 {
            if !self.table(slot).keys.contains(key) {
                self.touched.push((key.to_vec(), Touch::New));
            }
            self.touched.push((key.to_vec(), Touch::Write));
        }
        let vs = table_in_mut(&mut self.vshards, self.layout, slot);
        vs.cow(key);
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

    /// Tells WATCHers and blocked clients that `key` changed (written, removed or expired):
    /// a waiter retries and either is served or keeps waiting (`command::blocking::retry`).
    #[inline]
    fn changed(&mut self, key: &[u8]) {
        self.watches.touch(key);
        self.mark_ready(key);
    }

    /// Every key may have changed (a flush, an installed snapshot): breaks every WATCH and
    /// lets every waiter retry.
    fn changed_all(&mut self) {
        self.watches.touch_all();
        if !self.waiting.is_empty() {
            let keys: Vec<Vec<u8>> = self.waiting.iter().map(|(k, _)| k.to_vec()).collect();
            for k in keys {
                self.mark_ready(&k);
            }
        }
    }

    /// Tells WATCHers and blocked clients that `key` changed in place.
    #[inline]
    pub fn signal(&mut self, key: &[u8]) {
        self.changed(key);
        self.note(key, Touch::Write);
    }

    /// Stores `value` at `key`. `expire_at_ms`: `Some` sets it, `None` clears any old one, unless
    /// `keep_ttl` is set.
    pub fn set(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>, keep_ttl: bool) {
        let slot = key_slot(key);
        self.changed(key);
        let t = self.table_mut(slot);
        t.cow(key);
        let (i, inserted) = t.keys.insert_at(key, value);
        self.stored(slot, key, i, inserted, expire_at_ms, keep_ttl);
    }

    /// `set` of a string value. A key that holds a string of the same length on the heap is
    /// rewritten in place: no allocation and no free for the rewrite of a fixed-size record
    /// (a counter's digits, a 1 KB blob), which SET at pipeline 1 spent about 4% of its CPU on.
    pub fn set_str(&mut self, key: &[u8], bytes: &[u8], expire_at_ms: Option<u64>, keep_ttl: bool) {
        let slot = key_slot(key);
        self.changed(key);
        let t = self.table_mut(slot);
        t.cow(key);
        let (i, inserted) = t
            .keys
            .index_or_insert_with(key, || Value::Str(SmallBytes::new(bytes)));
        if !inserted {
            match t.keys.at_mut(i) {
                Value::Str(SmallBytes::Heap(b)) if b.len() == bytes.len() => {
                    b.copy_from_slice(bytes)
                }
                v => *v = Value::Str(SmallBytes::new(bytes)),
            }
        }
        self.stored(slot, key, i, inserted, expire_at_ms, keep_ttl);
    }

    /// The rest of a store at bucket `i` of `slot`'s table (`inserted`: the key is new): its
    /// access metadata, its expiry as `set` says, and its notifications.
    fn stored(
        &mut self,
        slot: Slot,
        key: &[u8],
        i: usize,
        inserted: bool,
        expire_at_ms: Option<u64>,
        keep_ttl: bool,
    ) {
        let meta = fresh_meta(&self.tunables, self.now_ms);
        let t = self.table_mut(slot);
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
        if self.tunables.notify_keyspace_events != 0 {
            if inserted {
                self.note(key, Touch::New);
            }
            self.note(key, Touch::Write);
            if expire_at_ms.is_some() {
                self.note(key, Touch::Expire);
            }
        }
    }

    /// Removes `key`; returns its value if it was live.
    pub fn remove(&mut self, key: &[u8], now_ms: u64) -> Option<Value> {
        let slot = key_slot(key);
        if self.expire_if_due(slot, key, now_ms) {
            return None;
        }
        let t = self.table_mut(slot);
        t.cow(key);
        let v = t.keys.remove(key)?;
        t.expires.remove(key);
        self.changed(key);
        self.note(key, Touch::Removed);
        Some(v)
    }

    /// What `key` holds, due or not, and its expiry: a copy for a script's journal
    /// (`script::Isolation`), put back with `put_raw`.
    pub fn raw_entry(&self, key: &[u8]) -> Option<(Value, Option<u64>)> {
        let t = self.table(key_slot(key));
        let v = t.keys.get(key)?;
        Some((v.deep_clone(), t.expires.get(key).copied()))
    }

    /// Puts `key` back as `raw_entry` found it (absent: removed), signalling nothing: what a
    /// script ran for a replicated group is undone so (its effects apply through the log).
    pub fn put_raw(&mut self, key: &[u8], entry: Option<(Value, Option<u64>)>) {
        let slot = key_slot(key);
        let meta = fresh_meta(&self.tunables, self.now_ms);
        let t = self.table_mut(slot);
        t.cow(key);
        match entry {
            None => {
                t.keys.remove(key);
                t.expires.remove(key);
            }
            Some((v, at)) => {
                let (i, _) = t.keys.insert_at(key, v);
                t.keys.set_meta(i, meta);
                match at {
                    Some(at) => {
                        t.expires.insert(key, at);
                    }
                    None => {
                        t.expires.remove(key);
                    }
                }
            }
        }
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
        let t = self.table_mut(slot);
        t.cow(key);
        t.expires.insert(key, at_ms);
    }

    /// Removes the expiry of `key`; true if it had one.
    pub fn persist(&mut self, key: &[u8], now_ms: u64) -> bool {
        let slot = key_slot(key);
        self.expire_if_due(slot, key, now_ms);
        let t = self.table_mut(slot);
        t.cow(key);
        let removed = t.expires.remove(key).is_some();
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

    /// Whether vShard `id` is in the current [`Db::view`].
    #[inline]
    fn in_view(&self, id: VShardId) -> bool {
        self.view
            .as_ref()
            .is_none_or(|v| v.get(id.0 as usize).copied().unwrap_or(false))
    }

    /// The owned vShards in the current [`Db::view`] (what keyspace-wide reads cover).
    pub fn visible(&self) -> impl Iterator<Item = &VShard> {
        self.owned().filter(|vs| self.in_view(vs.id))
    }

    /// Number of keys in the visible vShards (DBSIZE).
    pub fn visible_len(&self) -> usize {
        self.visible().map(|v| v.len()).sum()
    }

    /// A random live key: random owned vShards and buckets are sampled, then, if sampling keeps
    /// missing (a nearly empty keyspace), the first live key in order.
    pub fn random_key(&self, rng: &mut crate::rng::Rng, now_ms: u64) -> Option<Vec<u8>> {
        let owned: Vec<&VShard> = self.visible().filter(|v| !v.is_empty()).collect();
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

    /// The vShard `id` to change, if this `Db` owns it.
    pub fn vshard_mut(&mut self, id: VShardId) -> Option<&mut VShard> {
        self.vshards.get_mut(id.0 as usize)?.as_mut()
    }

    /// Replaces a vShard this `Db` owns with `vs` (an installed snapshot); false, and nothing
    /// changed, if it does not own it. Every WATCH is broken, as after FLUSHALL.
    pub fn install(&mut self, vs: VShard) -> bool {
        match self.vshards.get_mut(vs.id.0 as usize) {
            Some(slot @ Some(_)) => {
                *slot = Some(vs);
                self.changed_all();
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
        self.evict_one_of(now_ms, &|_| true)
    }

    /// `evict_one` among the vShards `allowed` takes (by index): a node evicts only where it
    /// can log the eviction.
    pub fn evict_one_of(&mut self, now_ms: u64, allowed: &dyn Fn(u32) -> bool) -> Option<Vec<u8>> {
        let t = self.tunables;
        if t.maxmemory_policy == Policy::NoEviction {
            return None;
        }
        let volatile = t.maxmemory_policy.volatile();
        let candidates: Vec<usize> = (0..self.vshards.len())
            .filter(|&i| allowed(i as u32))
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
        vs.cow(&key);
        vs.keys.remove(&key);
        vs.expires.remove(&key);
        self.changed(&key);
        self.stats.evicted_keys += 1;
        self.emit(class::EVICTED, "evicted", &key);
        Some(key)
    }

    /// Removes every key of vShard `id` (FLUSHALL on a replicated node, one entry per vShard);
    /// every WATCH is broken, as after FLUSHALL. Nothing if this `Db` does not own it.
    pub fn flush_vshard(&mut self, id: VShardId) {
        if let Some(Some(vs)) = self.vshards.get_mut(id.0 as usize) {
            vs.cow_all();
            vs.keys.clear();
            vs.expires.clear();
            self.changed_all();
        }
    }

    /// Removes every key.
    pub fn flush(&mut self) {
        for vs in self.vshards.iter_mut().flatten() {
            vs.cow_all();
            vs.keys.clear();
            vs.expires.clear();
        }
        self.changed_all();
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
        // A vShard out of view is passed over: the next cursor is the next vShard's.
        let next = if self.in_view(vs.id) {
            vs.keys.scan(bucket, count, |k, v| {
                if vs.is_live(k, now_ms) {
                    visit(k, v);
                }
            })
        } else {
            0
        };
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
                vs.cow(k);
                vs.expires.remove(k);
                vs.keys.remove(k);
            }
            removed += keys.len();
            self.stats.expired_keys += keys.len() as u64;
            for k in &keys {
                self.changed(k);
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
mod tests;
