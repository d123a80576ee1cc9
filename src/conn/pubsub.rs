//! Pub/sub on the connection side: subscriptions register on this thread's registry; PUBLISH
//! and PUBSUB fan out to every thread.

use super::*;

impl Conn {
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: registers on this thread and confirms each name.
    pub(super) fn subscribe(&mut self, kind: Kind, args: Args) {
        let sub = self
            .sub
            .get_or_insert_with(|| Subscriber::new(self.proto))
            .clone();
        sub.proto.set(self.proto);
        let id = self.info.borrow().id;
        for name in args.iter().skip(1) {
            if self.subscriptions.insert((kind, name.to_vec())) {
                self.shard.pubsub.borrow_mut().add(kind, name, id, &sub);
                self.info.borrow_mut().pubsub = true;
            }
            self.confirm(kind, true, Some(name));
        }
    }

    /// UNSUBSCRIBE and friends: the named subscriptions, or all of the kind when none is named.
    pub(super) fn unsubscribe(&mut self, kind: Kind, args: Args) {
        let names: Vec<Vec<u8>> = if args.len() > 1 {
            args.iter().skip(1).map(<[u8]>::to_vec).collect()
        } else {
            let mut v: Vec<Vec<u8>> = self
                .subscriptions
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone())
                .collect();
            v.sort();
            v
        };
        if names.is_empty() {
            return self.confirm(kind, false, None);
        }
        let id = self.info.borrow().id;
        for name in names {
            if self.subscriptions.remove(&(kind, name.clone())) {
                self.shard.pubsub.borrow_mut().remove(kind, &name, id);
                self.info.borrow_mut().pubsub = !self.subscriptions.is_empty();
            }
            self.confirm(kind, false, Some(&name));
        }
    }

    /// One (un)subscription confirmation, with the count of subscriptions left of its family.
    pub(super) fn confirm(&mut self, kind: Kind, subscribe: bool, name: Option<&[u8]>) {
        let sharded = kind == Kind::Shard;
        let count = self
            .subscriptions
            .iter()
            .filter(|(k, _)| (*k == Kind::Shard) == sharded)
            .count();
        crate::pubsub::push_header(&mut self.out, 3);
        self.out.bulk(kind.confirm(subscribe).as_bytes());
        match name {
            Some(n) => self.out.bulk(n),
            None => self.out.null(),
        }
        self.out.int(count as i64);
    }

    /// Drops every subscription (disconnect, RESET).
    pub fn unsubscribe_all(&mut self) {
        let id = self.info.borrow().id;
        for (kind, name) in self.subscriptions.drain() {
            self.shard.pubsub.borrow_mut().remove(kind, &name, id);
        }
        self.sub = None;
    }

    /// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS [pattern] |
    /// SHARDNUMSUB [channel ...], gathered from every thread.
    pub(super) fn pubsub_introspect(&mut self, args: Args) {
        let sub = args.get(1).to_ascii_lowercase();
        let (kind, counts) = match sub.as_slice() {
            b"channels" => (Kind::Channel, false),
            b"shardchannels" => (Kind::Shard, false),
            b"numsub" => (Kind::Channel, true),
            b"shardnumsub" => (Kind::Shard, true),
            b"numpat" => (Kind::Pattern, false),
            _ => return err::unknown_subcommand(&mut self.out, args.get(1), "pubsub"),
        };
        if (sub == b"numpat" && args.len() != 2) || (!counts && args.len() > 3) {
            return err::arity(
                &mut self.out,
                &format!("pubsub|{}", String::from_utf8_lossy(&sub)),
            );
        }
        let rest = &args.spans()[2..];
        let len = rest.len() as u32;
        let parts = (0..self.shard.node.threads)
            .map(|t| {
                let op = |first| {
                    if counts {
                        Op::PubsubCounts { kind, first, len }
                    } else {
                        Op::PubsubNames { kind, first, len }
                    }
                };
                if t == self.shard.id {
                    let mut out = Out::new(self.proto);
                    self.shard
                        .run_op(&op(2), args.buf(), args.spans(), self.now_us, &mut out);
                    PartRef::Local(out.buf)
                } else {
                    let first = if len > 0 {
                        self.copy_args(t, args.buf(), rest)
                    } else {
                        0
                    };
                    PartRef::Remote {
                        thread: t,
                        op: self.push_op(t, op(first)),
                    }
                }
            })
            .collect();
        let names: Vec<Vec<u8>> = args.iter().skip(2).map(<[u8]>::to_vec).collect();
        let finish = match sub.as_slice() {
            b"numpat" => Finish::UnionCount,
            _ if counts => Finish::SumPerName(names),
            _ => Finish::Union,
        };
        self.hole(parts, finish);
    }
}
