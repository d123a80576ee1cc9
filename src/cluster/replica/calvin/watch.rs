//! WATCH with a transaction across nodes (`docs/design/calvin.md`, "WATCH"): a connection
//! WATCHing a key whose vShard another node leads registers it there (`watch_at`, answered
//! once that node has it, under an id the connection draws at its first such WATCH); the
//! MULTI/EXEC names that id (`seq::Watching`), and each participant's leader tells from the
//! registrations on its own node whether its watched keys changed (`WatchReg::broken`). The registrations go when the
//! transaction is answered or the connection unwatches (`unwatch`), or after `WATCH_KEPT`.

use super::*;
use crate::hop::WatchedKey;

impl Replicas {
    /// Origin: registers a WATCH of `key` under `id` on `node`, which leads its
    /// vShard; op `op` of job `j` is answered `+OK` once `node` acknowledges it, or after
    /// `WATCH_ACK_TIMEOUT` with `flag` set (the EXEC then answers nil).
    pub(in crate::cluster::replica) fn watch_at(
        &mut self,
        (key, id, node): (Vec<u8>, TxnId, NodeId),
        flag: Arc<std::sync::atomic::AtomicBool>,
        (j, op): (u32, u32),
        now: Instant,
    ) {
        let v = self
            .c
            .layout
            .vshard_of(shardline_shards::slot::key_slot(&key));
        self.calvin.next_ack += 1;
        let ack = self.calvin.next_ack;
        self.calvin.watch_acks.insert(
            ack,
            WatchAck {
                job: j,
                op,
                since: now,
                flag,
            },
        );
        let t = self.c.thread_of(v.0 as u32);
        self.send_to(node, t, CalvinMsg::Watch { id, ack, v, key });
    }

    /// Origin: acknowledgements that did not come in time: those WATCHes answer `+OK`, and
    /// their connection's flag is set (nothing vouches for their keys).
    pub(super) fn watch_acks_due(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .calvin
            .watch_acks
            .iter()
            .filter(|(_, a)| now.duration_since(a.since) > WATCH_ACK_TIMEOUT)
            .map(|(&ack, _)| ack)
            .collect();
        for ack in late {
            let a = self.calvin.watch_acks.remove(&ack).expect("listed");
            a.flag.store(true, Ordering::Release);
            self.pending.fill(a.job, a.op, b"+OK\r\n");
        }
    }

    /// Origin: drops the registrations of `keys` made on other nodes for `id`, one message
    /// per node and thread.
    pub(in crate::cluster::replica) fn unwatch(&mut self, id: TxnId, mut keys: Vec<WatchedKey>) {
        keys.sort_by_key(|k| (k.at, k.thread));
        let mut i = 0;
        while i < keys.len() {
            let (at, t) = (keys[i].at, keys[i].thread);
            let n = keys[i..]
                .iter()
                .take_while(|k| (k.at, k.thread) == (at, t))
                .count();
            if let Some(node) = at {
                let names = keys[i..i + n].iter().map(|k| k.key.clone()).collect();
                self.send_to(node, t, CalvinMsg::Unwatch { id, keys: names });
            }
            i += n;
        }
    }

    /// Another node's connection WATCHes `key` of `v` (led here, as it saw) under `id`:
    /// registered with that id's flag on this node, then acknowledged.
    pub(super) fn watch_here(
        &mut self,
        db: &mut Db,
        id: TxnId,
        v: VShardId,
        key: &[u8],
        ack: u64,
        now: Instant,
    ) {
        let (node, t) = origin_in(id);
        if self.c.thread_of(v.0 as u32) != self.shard || node == self.c.me {
            return; // not for this thread (a confused peer): its WATCH times out
        }
        {
            let mut watches = self.c.calvin.watches.lock().expect("calvin watches");
            let reg = watches.entry(id).or_insert_with(|| WatchReg {
                flag: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                vshards: Vec::new(),
                since: now,
            });
            if !reg.vshards.contains(&v) {
                reg.vshards.push(v);
            }
            db.watches.watch(key, reg.flag.clone());
        }
        if t < self.c.threads {
            self.send_to(node, t, CalvinMsg::Watched { ack });
        }
    }

    /// Another node's connection no longer WATCHes `keys` (of this thread's vShards) for
    /// `id`: their registrations go, and the id's entry with the last of them.
    pub(super) fn unwatch_here(&mut self, db: &mut Db, id: TxnId, keys: &[Vec<u8>]) {
        let mut watches = self.c.calvin.watches.lock().expect("calvin watches");
        let Some(reg) = watches.get_mut(&id) else {
            return;
        };
        for k in keys {
            db.watches.unwatch(k, &reg.flag);
        }
        let (c, me) = (&self.c, self.shard);
        reg.vshards.retain(|v| c.thread_of(v.0 as u32) != me);
        if reg.vshards.is_empty() {
            watches.remove(&id);
        }
    }
}
