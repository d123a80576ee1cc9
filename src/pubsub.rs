//! Pub/sub: each shard thread keeps the subscriptions of its own connections; PUBLISH runs on
//! every thread (like DBSIZE) and each delivers to its local subscribers, so a message reaches
//! subscribers on every thread. Deliveries are appended to the subscriber's queue, which its
//! connection writes out; a subscriber whose queue passes the client output buffer limit is
//! disconnected rather than allowed to grow without bound.

use shardline_shards::glob::glob_match;
use shardline_shards::reply::{Out, Proto};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// The receiving end of a subscribed connection.
pub struct Subscriber {
    pub queue: RefCell<Vec<u8>>,
    waker: RefCell<Option<Waker>>,
    pub proto: Cell<Proto>,
    /// Set when the queue passed the output limit: the connection closes.
    pub overflowed: Cell<bool>,
}

impl Subscriber {
    pub fn new(proto: Proto) -> Rc<Self> {
        Rc::new(Subscriber {
            queue: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
            proto: Cell::new(proto),
            overflowed: Cell::new(false),
        })
    }

    fn deliver(&self, bytes: &[u8], limit: usize) {
        let mut q = self.queue.borrow_mut();
        if q.len() + bytes.len() > limit {
            self.overflowed.set(true);
        } else {
            q.extend_from_slice(bytes);
        }
        drop(q);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves when there is something to write (or the subscriber overflowed).
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| {
            if !self.queue.borrow().is_empty() || self.overflowed.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The kinds of subscription; sharded channels (SSUBSCRIBE) live apart from plain ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    pub fn confirm(self, subscribe: bool) -> &'static str {
        match (self, subscribe) {
            (Kind::Channel, true) => "subscribe",
            (Kind::Channel, false) => "unsubscribe",
            (Kind::Pattern, true) => "psubscribe",
            (Kind::Pattern, false) => "punsubscribe",
            (Kind::Shard, true) => "ssubscribe",
            (Kind::Shard, false) => "sunsubscribe",
        }
    }
}

/// The subscribers of one name: `(connection id, subscriber)`.
type Subscribers = Vec<(u64, Rc<Subscriber>)>;

/// One thread's subscriptions by `(kind, name)`.
#[derive(Default)]
pub struct Registry {
    subs: HashMap<(Kind, Vec<u8>), Subscribers>,
}

impl Registry {
    pub fn add(&mut self, kind: Kind, name: &[u8], id: u64, s: &Rc<Subscriber>) {
        let v = self.subs.entry((kind, name.to_vec())).or_default();
        if !v.iter().any(|(i, _)| *i == id) {
            v.push((id, s.clone()));
        }
    }

    pub fn remove(&mut self, kind: Kind, name: &[u8], id: u64) {
        let key = (kind, name.to_vec());
        if let Some(v) = self.subs.get_mut(&key) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                self.subs.remove(&key);
            }
        }
    }

    /// Delivers a message to this thread's subscribers of `channel` (and matching patterns, for
    /// plain channels). Returns how many received it.
    pub fn publish(&self, sharded: bool, channel: &[u8], msg: &[u8], limit: usize) -> usize {
        let mut n = 0;
        let kind = if sharded { Kind::Shard } else { Kind::Channel };
        if let Some(v) = self.subs.get(&(kind, channel.to_vec())) {
            for (_, s) in v {
                let kind_name = if sharded { "smessage" } else { "message" };
                s.deliver(&encode(s.proto.get(), kind_name, None, channel, msg), limit);
                n += 1;
            }
        }
        if !sharded {
            for ((k, pattern), v) in &self.subs {
                if *k == Kind::Pattern && glob_match(pattern, channel) {
                    for (_, s) in v {
                        s.deliver(
                            &encode(s.proto.get(), "pmessage", Some(pattern), channel, msg),
                            limit,
                        );
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Names with at least one subscriber of `kind`, filtered by a glob pattern.
    pub fn names(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        self.subs
            .keys()
            .filter(|(k, name)| *k == kind && pattern.is_none_or(|p| glob_match(p, name)))
            .map(|(_, name)| name.clone())
            .collect()
    }

    pub fn count(&self, kind: Kind, name: &[u8]) -> usize {
        self.subs.get(&(kind, name.to_vec())).map_or(0, Vec::len)
    }
}

/// A message push: `[message, channel, payload]` or `[pmessage, pattern, channel, payload]`, as a
/// RESP3 push or a RESP2 array.
pub fn encode(
    proto: Proto,
    kind: &str,
    pattern: Option<&[u8]>,
    channel: &[u8],
    msg: &[u8],
) -> Vec<u8> {
    let mut out = Out::new(proto);
    push_header(&mut out, if pattern.is_some() { 4 } else { 3 });
    out.bulk(kind.as_bytes());
    if let Some(p) = pattern {
        out.bulk(p);
    }
    out.bulk(channel);
    out.bulk(msg);
    out.buf
}

/// `>n` in RESP3, `*n` in RESP2.
pub fn push_header(out: &mut Out, n: usize) {
    if out.proto == Proto::Resp3 {
        out.buf.extend_from_slice(format!(">{n}\r\n").as_bytes());
    } else {
        out.array(n);
    }
}
