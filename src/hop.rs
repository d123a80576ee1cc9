//! Hops between shard threads. Each shard thread has a [`Mailbox`]: a bounded queue of [`Job`]s
//! other threads send it, and a queue of [`Done`] replies to jobs it sent. A thread's inbox task
//! drains both: it runs jobs against its keyspace and hands replies to the waiting connections.
//!
//! Deadlock freedom: a job's execution never waits on another thread. Replies have their own
//! queue, which is bounded by the jobs in flight (each job yields at most one reply), so a full
//! job queue can never stop a reply from being delivered.

pub use shardline_shards::replica::{Done, NO_REPLY, Token};

use atomic_waker::AtomicWaker;
use crossbeam_queue::{ArrayQueue, SegQueue};
use shardline_shards::command::Span;
use shardline_shards::reply::Proto;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Poll, Waker};

/// One unit of work for the owning thread. Each op writes one reply segment.
pub enum Op {
    /// A command: `args` indexes `spans` of the job's buffer. `spec` is its table row when the
    /// sender looked it up and checked its arity already (the owner then skips both).
    Cmd {
        first: u32,
        len: u32,
        spec: Option<&'static shardline_shards::command::CommandSpec>,
    },
    /// A command run against this node's replica as it is, outside the log: a READONLY
    /// connection's read on a follower (possibly stale).
    Local { first: u32, len: u32 },
    /// A transaction: the commands run back to back (atomically: a job runs without yielding),
    /// unless `watch` was set by a write to a watched key, then the reply is a null array.
    Exec {
        cmds: Vec<(u32, u32)>,
        watch: Option<Arc<AtomicBool>>,
    },
    /// Register (or, with `add == false`, drop) a WATCH on a key.
    Watch {
        first: u32,
        add: bool,
        flag: Arc<AtomicBool>,
    },
    /// Keyspace figures for INFO: a RESP array of integers.
    Stats,
    /// SLOWLOG or LATENCY on this thread's log and events (`crate::slowlog`).
    Slow(crate::slowlog::SlowOp),
    /// This thread's clients for CLIENT LIST: one bulk string.
    Clients,
    /// CLIENT KILL on this thread's clients; replies with how many it killed.
    Kill(Box<crate::shard::KillFilter>),
    /// A blocking command (always a job's last op). If it cannot be served now, the owner parks
    /// the job's reply until a write serves it or an `Unblock` ends the wait.
    Block { first: u32, len: u32 },
    /// Delivers a message to this thread's subscribers; replies with how many received it.
    Publish { first: u32, sharded: bool },
    /// PUBSUB introspection on this thread: the names with subscribers of `kind` (filtered by the
    /// glob pattern at `first` when `len == 1`), as an array.
    PubsubNames {
        kind: crate::pubsub::Kind,
        first: u32,
        len: u32,
    },
    /// The subscriber count of each name at `first..first + len`, as an array of integers.
    PubsubCounts {
        kind: crate::pubsub::Kind,
        first: u32,
        len: u32,
    },
    /// CLUSTER COUNTKEYSINSLOT (`count: None`) or GETKEYSINSLOT on the slot's owner: an integer,
    /// or an array of at most `count` key names.
    SlotKeys {
        slot: shardline_shards::slot::Slot,
        count: Option<u32>,
    },
    /// A change to the cluster's metadata (an encoded `meta::Cmd`), for shard thread 0 of a
    /// replicated node: answered once the metadata group applied it.
    Meta(Vec<u8>),
    /// SAVE, BGSAVE and BGREWRITEAOF on this thread: its log fsynced with its next batch,
    /// `+OK` once that is done; with `rewrite`, every vShard's log is also compacted into a
    /// snapshot (one per step, Redis's AOF rewrite).
    Persist { rewrite: bool },
    /// Ends the wait of the blocked request `(origin, token)`: its parked reply is finished with
    /// the timeout answer, unless it was served already. Replies `+OK`.
    Unblock { origin: usize, token: Token },
    /// A command (or, with `exec`, a MULTI/EXEC's commands: one array reply) whose keys span
    /// vShards of several shard threads, for the connection's own thread: submitted to the
    /// sequencer as a Calvin transaction (`replica/calvin/`), answered when a participant
    /// has executed it.
    /// With `watch`, the MULTI/EXEC's connection WATCHed keys: it aborts if one changed.
    /// With `block`, a blocking command: tried again each time one of its keys is written
    /// (a stand-in on each participant wakes it), until served or `Unblock`ed.
    Txn {
        cmds: Vec<(u32, u32)>,
        exec: bool,
        watch: Option<Box<Watched>>,
        block: bool,
    },
    /// For the connection's own thread: registers a WATCH of the key at `first` on `node`,
    /// which leads its vShard, under `id` (the connection's); `+OK` once that
    /// node has it. Had it not in time, `flag` is set (that EXEC answers nil: nothing can
    /// vouch for the key).
    WatchAt {
        first: u32,
        id: shardline_shards::calvin::seq::TxnId,
        node: crate::cluster::NodeId,
        flag: Arc<AtomicBool>,
    },
    /// For the connection's own thread: drops the WATCH registrations made elsewhere for
    /// `id` (`WatchAt`) of these keys. `+OK` at once.
    Unwatch {
        id: shardline_shards::calvin::seq::TxnId,
        keys: Vec<WatchedKey>,
    },
}

/// The WATCHes of a transaction across vShards: each key with its shard thread and where
/// it is registered (`None`: on this node, with the connection's `flag`, which writes to it
/// set; `Some(node)`: on the node that led its vShard, `Op::WatchAt`), and the id the
/// transaction is submitted under (the one its registrations elsewhere were made for). The
/// registrations are kept until the transaction's participants have read.
pub struct Watched {
    pub keys: Vec<WatchedKey>,
    pub flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub id: Option<shardline_shards::calvin::seq::TxnId>,
}

/// A WATCHed key: its name, its shard thread, and the node it is registered on (`None`:
/// this one).
#[derive(Clone, Debug)]
pub struct WatchedKey {
    pub key: Vec<u8>,
    pub thread: usize,
    pub at: Option<crate::cluster::NodeId>,
}

/// What shard threads send each other for Calvin transactions (`replica/calvin/`), on the
/// mailboxes and, encoded, on the cluster bus.
pub use shardline_shards::calvin::msg::Msg as CalvinMsg;

/// A batch of ops from one connection to one thread, with their arguments in one buffer.
pub struct Job {
    pub origin: usize,
    pub token: Token,
    pub proto: Proto,
    pub buf: Vec<u8>,
    pub spans: Vec<Span>,
    pub ops: Vec<Op>,
    /// Its place in the key queues of transactions, once it waited for keys one held
    /// (`calvin::sched::Scheduler::wait_local`): those delivered after it wait for it.
    pub calvin_place: Option<u64>,
    /// The ACL user the client runs as, if restricted: scripts of this job check the
    /// commands they call against it (`acl::set_caller`).
    pub user: Option<std::sync::Arc<shardline_shards::acl::User>>,
}

pub struct Mailbox {
    jobs: ArrayQueue<Job>,
    done: SegQueue<Done>,
    /// Unbounded like `done`: bounded by the sequencer's limit on transactions in flight,
    /// and never waited on (a step cannot wait for room).
    calvin: SegQueue<CalvinMsg>,
    waker: AtomicWaker,
}

impl Mailbox {
    pub fn new(depth: usize) -> Self {
        Mailbox {
            jobs: ArrayQueue::new(depth),
            done: SegQueue::new(),
            calvin: SegQueue::new(),
            waker: AtomicWaker::new(),
        }
    }

    /// Queues a job; gives it back if the queue is full.
    pub fn push_job(&self, job: Job) -> Result<(), Job> {
        self.jobs.push(job)?;
        self.waker.wake();
        Ok(())
    }

    pub fn push_done(&self, done: Done) {
        self.done.push(done);
        self.waker.wake();
    }

    /// Jobs and replies not yet drained.
    pub fn backlog(&self) -> usize {
        self.jobs.len() + self.done.len()
    }

    pub fn pop_job(&self) -> Option<Job> {
        self.jobs.pop()
    }

    pub fn pop_done(&self) -> Option<Done> {
        self.done.pop()
    }

    pub fn push_calvin(&self, msg: CalvinMsg) {
        self.calvin.push(msg);
        self.waker.wake();
    }

    pub fn pop_calvin(&self) -> Option<CalvinMsg> {
        self.calvin.pop()
    }

    /// Resolves when there may be something to drain.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            if !self.jobs.is_empty() || !self.done.is_empty() || !self.calvin.is_empty() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if !self.jobs.is_empty() || !self.done.is_empty() || !self.calvin.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Replies awaited by this thread's connections, by token. Thread-local.
#[derive(Default)]
pub struct Pending {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Default)]
struct Slot {
    done: Option<Done>,
    waker: Option<Waker>,
    live: bool,
    generation: u32,
}

impl Pending {
    pub fn alloc(&mut self) -> Token {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[i as usize];
        slot.live = true;
        slot.generation = slot.generation.wrapping_add(1);
        ((slot.generation as u64) << 32) | i as u64
    }

    fn slot(&mut self, t: Token) -> Option<&mut Slot> {
        self.slots
            .get_mut((t & 0xffff_ffff) as usize)
            .filter(|s| s.live && s.generation == (t >> 32) as u32)
    }

    /// Delivers a reply; wakes the connection waiting for it.
    pub fn complete(&mut self, done: Done) {
        let Some(slot) = self.slot(done.token) else {
            return; // The connection went away; its token was released.
        };
        slot.done = Some(done);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }

    fn poll_take(&mut self, t: Token, waker: &Waker) -> Poll<Done> {
        let slot = self
            .slot(t)
            .expect("waiting on a token this connection holds");
        match slot.done.take() {
            Some(d) => {
                slot.live = false;
                slot.waker = None;
                self.free.push((t & 0xffff_ffff) as u32);
                Poll::Ready(d)
            }
            None => {
                slot.waker = Some(waker.clone());
                Poll::Pending
            }
        }
    }
}

/// Waits for the reply to `t`.
pub async fn wait(pending: &RefCell<Pending>, t: Token) -> Done {
    std::future::poll_fn(|cx| pending.borrow_mut().poll_take(t, cx.waker())).await
}
