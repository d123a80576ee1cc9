//! A shard thread: pinned to its core, running its own monoio runtime (io_uring, or epoll where
//! io_uring is missing), with its own SO_REUSEPORT listener, its keyspace (the vShards it owns),
//! and three kinds of task: one per connection, the inbox (jobs from other threads and replies to
//! ours), and the ticker (active expiry, publishing counters, noticing shutdown).

use crate::hop::{self, Done, Job, NO_REPLY, Op, Pending};
use crate::node::{LATENCY_BUCKETS, Node};
use shardline_shards::command::{self, Args, Ctx};
use shardline_shards::db::Db;
use shardline_shards::notify;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::rng::Rng;
use shardline_shards::slot::VShardId;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Counters kept without atomics on the thread, published to `ShardStats` each tick.
#[derive(Default)]
pub struct LocalStats {
    pub commands: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub hops_sent: u64,
    pub jobs_run: u64,
    pub latency_us: [u64; LATENCY_BUCKETS],
    pub latency_sum_us: u64,
    pub protocol_errors: u64,
}

impl LocalStats {
    pub fn record_latency(&mut self, us: u64) {
        self.latency_us[crate::node::bucket(us, 0)] += 1;
        self.latency_sum_us += us;
    }
}

/// What CLIENT LIST shows of a connection.
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub name: Vec<u8>,
    pub created: Instant,
    pub last_active: Instant,
    pub last_cmd: &'static str,
    pub proto: Proto,
    pub multi: i64,
    pub watching: usize,
    pub qbuf: usize,
    /// The connection's socket (CLIENT KILL shuts it down; valid while the client is listed).
    pub fd: i32,
    /// Subscribed to something (CLIENT KILL TYPE pubsub).
    pub pubsub: bool,
    /// Killed by CLIENT KILL: the connection closes once its current replies are written.
    pub killed: bool,
    /// Set while the connection's task waits for its read with nothing of the client's kept
    /// and nothing to write (not in MULTI, subscribed or blocked), cleared by that read's
    /// wake-up: a busy script's thread may then serve it (`conn::busy`).
    pub busy_idle: Arc<AtomicBool>,
    /// It has authenticated, and as which user if restricted (what `conn::busy` may let it
    /// do).
    pub busy_authed: bool,
    pub busy_user: Option<Arc<shardline_shards::acl::User>>,
    /// Bytes `conn::busy` read and did not answer (an incomplete command), and the replies
    /// the socket has not taken yet: the task takes both when its read completes.
    pub busy_in: Vec<u8>,
    pub busy_out: Vec<u8>,
    /// The ACL user it runs as (CLIENT LIST `user=`).
    pub user: Arc<str>,
}

/// What CLIENT KILL matches (its new form's filters; the old form is `addr` alone).
#[derive(Clone, Debug, Default)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<Vec<u8>>,
    pub laddr: Option<Vec<u8>>,
    /// `Some(true)`: pub/sub clients only; `Some(false)`: normal ones only.
    pub pubsub: Option<bool>,
    /// The client that sent the command, and whether it is spared (SKIPME yes).
    pub requester: u64,
    pub skip_me: bool,
    /// TYPE master or replica: no client is one here.
    pub none: bool,
    /// USER: clients authenticated as this user.
    pub user: Option<Vec<u8>>,
}

impl KillFilter {
    fn matches(&self, c: &ClientInfo) -> bool {
        self.addr
            .as_ref()
            .is_none_or(|a| a == c.addr.to_string().as_bytes())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| a == c.laddr.to_string().as_bytes())
            && self.pubsub.is_none_or(|p| p == c.pubsub)
            && self.id.is_none_or(|id| id == c.id)
            && self.user.as_ref().is_none_or(|u| u == c.user.as_bytes())
            && !(self.skip_me && c.id == self.requester)
            && !self.none
    }
}

impl ClientInfo {
    pub fn line(&self, shard: usize) -> String {
        let now = Instant::now();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi={} watch={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name= lib-ver= shard={}\n",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(&self.name),
            now.duration_since(self.created).as_secs(),
            now.duration_since(self.last_active).as_secs(),
            self.multi,
            self.watching,
            self.qbuf,
            self.last_cmd,
            self.user,
            if self.proto == Proto::Resp3 { 3 } else { 2 },
            shard,
        )
    }
}

/// Unix time from the monotonic clock: one clock read per batch instead of two. Re-anchored every
/// tick so that wall-clock adjustments show up within 1/hz s.
pub struct Clock {
    base: Cell<(Instant, u64)>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base: Cell::new((Instant::now(), unix_now_us())),
        }
    }

    fn reanchor(&self) {
        self.base.set((Instant::now(), unix_now_us()));
    }

    /// Unix µs at monotonic instant `at`.
    #[inline]
    pub fn unix_us(&self, at: Instant) -> u64 {
        let (i, u) = self.base.get();
        u + at.saturating_duration_since(i).as_micros() as u64
    }
}

/// A parked blocking command's own copy: its arguments (XREAD's `$` resolved) and the keys it
/// waits on. Shared by waiters on one node and on a replicated leader.
pub(crate) struct Parked {
    pub name: &'static str,
    pub buf: Vec<u8>,
    pub spans: Vec<command::Span>,
    pub keys: Vec<Vec<u8>>,
}

impl Parked {
    /// The copy of blocking command `args` to park (`$` resolved against `db` at `now_ms`).
    pub fn new(db: &mut Db, args: Args, now_ms: u64) -> Parked {
        let name = command::lookup(args.get(0)).map_or("", |s| s.name);
        let keys: Vec<Vec<u8>> = match command::blocking::parse(name, &args) {
            Ok(w) => w.keys.iter().map(|&i| args.get(i).to_vec()).collect(),
            Err(_) => Vec::new(), // unreachable: parse errors are answered before parking
        };
        let words: Vec<Vec<u8>> = command::blocking::park_args(db, &args, now_ms)
            .unwrap_or_else(|| args.iter().map(<[u8]>::to_vec).collect());
        let mut buf = Vec::new();
        let mut spans = Vec::with_capacity(words.len());
        for w in &words {
            let start = buf.len() as u32;
            buf.extend_from_slice(w);
            spans.push((start, buf.len() as u32));
        }
        Parked {
            name,
            buf,
            spans,
            keys,
        }
    }
}

pub struct Shard {
    pub id: usize,
    pub clock: Clock,
    pub node: Arc<Node>,
    pub db: RefCell<Db>,
    pub pending: RefCell<Pending>,
    pub rng: RefCell<Rng>,
    pub local: RefCell<LocalStats>,
    pub clients: RefCell<Vec<Rc<RefCell<ClientInfo>>>>,
    /// The subscriptions of this thread's connections.
    pub pubsub: RefCell<crate::pubsub::Registry>,
    /// Set when the node shuts down; the accept loop waits on it.
    stopping: Cell<bool>,
    stop_waker: RefCell<Option<Waker>>,
    /// The `Live::tunables_version` last copied into `db`.
    tunables_seen: Cell<u64>,
    /// Per-command counters of this thread, indexed like `command::COMMANDS`.
    pub cmd_stats: RefCell<Vec<CmdStat>>,
    /// The `Node::stats_epoch` (CONFIG RESETSTAT) these counters started at.
    stats_epoch_seen: Cell<u64>,
    /// On a replicated node: the Raft replicas this thread drives and their log.
    pub repl: RefCell<Option<crate::cluster::replica::Replicas>>,
    /// The cluster bus dialers waiting for bytes to send, by peer id - 1 (`outbox_ready`).
    pub(crate) dialers: RefCell<Vec<Option<std::task::Waker>>>,
}

/// Counters of one command on one thread (INFO commandstats).
#[derive(Clone, Copy, Default, Debug)]
pub struct CmdStat {
    /// Calls that arrived on this thread's connections.
    pub calls: u64,
    /// Service time in ns: each batch's time split evenly over its commands.
    pub ns: u64,
    /// Refused before running (arity, NOAUTH, CROSSSLOT, OOM).
    pub rejected: u64,
    /// Ran on this thread and answered an error.
    pub failed: u64,
}

/// Redis's refusal under `maxmemory` with nothing left to evict.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Unix time now, in microseconds. The one clock read of a batch.
/// Milliseconds on a monotonic clock since the process's first reading (scripts' budgets).
pub(crate) fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub fn unix_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Shard {
    pub(crate) fn new(id: usize, node: Arc<Node>) -> Self {
        let threads = node.threads;
        let layout = node.layout;
        let owned = (0..layout.count())
            .map(|v| VShardId(v as u16))
            .filter(|v| layout.owner_thread(*v, threads) == id);
        let mut db = Db::new(layout, owned);
        db.scripts.cache = node.scripts.clone();
        db.scripts.functions = node.cluster.functions.clone();
        db.scripts.busy = node.script_busy[id].clone();
        db.scripts.node_busy = node.script_busy.clone();
        db.scripts.clock = Some(mono_ms);
        let (now, ticks_per_us) = shardline_transport::cpu::Ticks::get().reader();
        db.timer = shardline_shards::slowlog::Timer { now, ticks_per_us };
        db.slowlog = shardline_shards::slowlog::SlowLog::with_ids(node.slow_ids.clone());
        let seed = unix_now_us() ^ ((id as u64 + 1) << 48);
        Shard {
            id,
            clock: Clock::new(),
            node,
            db: RefCell::new(db),
            pending: RefCell::new(Pending::default()),
            rng: RefCell::new(Rng::new(seed)),
            local: RefCell::new(LocalStats::default()),
            clients: RefCell::new(Vec::new()),
            pubsub: RefCell::new(crate::pubsub::Registry::default()),
            stopping: Cell::new(false),
            stop_waker: RefCell::new(None),
            tunables_seen: Cell::new(u64::MAX),
            cmd_stats: RefCell::new(vec![CmdStat::default(); command::COMMANDS.len()]),
            stats_epoch_seen: Cell::new(0),
            repl: RefCell::new(None),
            dialers: RefCell::new(Vec::new()),
        }
    }

    /// Zeroes this thread's counters if CONFIG RESETSTAT ran since they started.
    #[inline]
    pub fn check_reset(&self) {
        let e = self.node.stats_epoch.load(Ordering::Relaxed);
        if e != self.stats_epoch_seen.get() {
            self.stats_epoch_seen.set(e);
            self.cmd_stats.borrow_mut().fill(CmdStat::default());
            self.db.borrow_mut().stats = Default::default();
        }
    }

    /// Whether a command that runs here, outside any log (a keyless one), is refused for memory:
    /// it may grow memory (DENYOOM) and the node is over `maxmemory`. Evictions happen only
    /// where they are logged (`Replicas::evict_direct`); this counts the refusal as rejected.
    fn refused_for_memory(&self, db: &Db, spec: &'static command::CommandSpec) -> bool {
        if !crate::cluster::replica::over_maxmemory(db, spec) {
            return false;
        }
        self.cmd_stats.borrow_mut()[command::index_of(spec)].rejected += 1;
        true
    }

    /// Runs one command here: looked up and arity-checked unless `known` says the sender did,
    /// refused under maxmemory if nothing can be evicted, failures counted. `led_only`: a
    /// keyspace-wide read covers the vShards this thread leads on a replicated node (not for a
    /// READONLY connection's `Op::Local`).
    #[inline]
    fn exec(
        &self,
        db: &mut Db,
        ctx: &mut Ctx,
        known: Option<&'static command::CommandSpec>,
        args: Args,
        out: &mut Out,
        led_only: bool,
    ) {
        let spec = match known {
            Some(s) => s,
            None => match command::lookup(args.get(0)) {
                None => return command::err::unknown_command(out, args),
                Some(s) if !s.arity_ok(args.len()) => return command::err::arity(out, s.name),
                Some(s) => s,
            },
        };
        if self.refused_for_memory(db, spec) {
            return out.error(OOM);
        }
        let errors = out.errors;
        if led_only && spec.reads_keyspace() {
            db.view = Some(
                self.repl
                    .try_borrow()
                    .ok()
                    .and_then(|r| r.as_ref().map(|r| r.led_mask()))
                    .unwrap_or_default(),
            );
            command::apply(spec, db, args, ctx, out);
            db.view = None;
        } else {
            command::apply(spec, db, args, ctx, out);
        }
        if out.errors != errors {
            self.cmd_stats.borrow_mut()[command::index_of(spec)].failed += 1;
        }
    }

    /// Copies the command layer's settings into `db` if CONFIG SET changed them.
    #[inline]
    pub(crate) fn sync_tunables(&self) {
        let v = self.node.live.tunables_version.load(Ordering::Acquire);
        if v != self.tunables_seen.get() {
            self.db.borrow_mut().tunables = *self.node.live.tunables.lock().expect("tunables");
            self.tunables_seen.set(v);
        }
    }

    /// Publishes the keyspace events the last commands raised: to this thread's subscribers
    /// directly, to other threads' through their mailboxes (fire and forget).
    pub(crate) fn flush_events(&self) {
        let (events, flags) = {
            let mut db = self.db.borrow_mut();
            if db.events.is_empty() {
                return;
            }
            (
                std::mem::take(&mut db.events),
                db.tunables.notify_keyspace_events,
            )
        };
        let mut buf = Vec::new();
        let mut spans: Vec<command::Span> = Vec::new();
        let mut push = |parts: [&[u8]; 2], buf: &mut Vec<u8>| {
            let start = buf.len() as u32;
            buf.extend_from_slice(parts[0]);
            buf.extend_from_slice(parts[1]);
            spans.push((start, buf.len() as u32));
        };
        for e in &events {
            if flags & notify::class::KEYSPACE != 0 {
                push([b"__keyspace@0__:", &e.key], &mut buf);
                push([e.name.as_bytes(), b""], &mut buf);
            }
            if flags & notify::class::KEYEVENT != 0 {
                push([b"__keyevent@0__:", e.name.as_bytes()], &mut buf);
                push([&e.key, b""], &mut buf);
            }
        }
        let limit = self.node.live.get(|l| &l.client_output_buffer_limit) as usize;
        let ops = || -> Vec<Op> {
            (0..spans.len() as u32)
                .step_by(2)
                .map(|first| Op::Publish {
                    first,
                    sharded: false,
                })
                .collect()
        };
        for t in 0..self.node.threads {
            if t == self.id {
                let ps = self.pubsub.borrow();
                for pair in spans.chunks(2) {
                    let (c, m) = (pair[0], pair[1]);
                    ps.publish(
                        false,
                        &buf[c.0 as usize..c.1 as usize],
                        &buf[m.0 as usize..m.1 as usize],
                        limit,
                    );
                }
                continue;
            }
            let job = Job {
                origin: self.id,
                token: NO_REPLY,
                proto: Proto::Resp2,
                buf: buf.clone(),
                spans: spans.clone(),
                ops: ops(),
                calvin_place: None,
                user: None,
            };
            if let Err(job) = self.node.mailboxes[t].push_job(job) {
                let node = self.node.clone();
                monoio::spawn(async move { send_job_to(&node, t, job).await });
            }
        }
    }

    /// Sends a finished reply to the connection waiting for it.
    pub(crate) fn deliver(&self, origin: usize, done: Done) {
        if origin == self.id {
            self.pending.borrow_mut().complete(done);
        } else {
            self.node.mailboxes[origin].push_done(done);
        }
    }

    /// Serves parked requests whose keys were written: their leaders try them again.
    pub fn serve_ready(&self) {
        self.serve_ready_replicated()
    }

    /// After ops that may have written: waiters on written keys are tried again, and the
    /// keyspace events they raised are published.
    pub(crate) fn after_writes(&self) {
        if !self.db.borrow().ready.is_empty() {
            self.serve_ready();
        }
        self.flush_events();
    }

    /// Runs one op against this thread's keyspace. Used for local and remote ops alike.
    pub fn run_op(&self, op: &Op, buf: &[u8], spans: &[command::Span], now_us: u64, out: &mut Out) {
        self.sync_tunables();
        self.check_reset();
        self.run_op_in(&mut self.db.borrow_mut(), op, buf, spans, now_us, out);
        if !self.db.borrow().ready.is_empty() {
            self.serve_ready();
        }
        self.flush_events();
    }

    /// `run_op` on a keyspace the caller has borrowed (its settings already synced); the
    /// caller then serves woken waiters and publishes events.
    pub(crate) fn run_op_in(
        &self,
        db: &mut Db,
        op: &Op,
        buf: &[u8],
        spans: &[command::Span],
        now_us: u64,
        out: &mut Out,
    ) {
        let mut rng = self.rng.borrow_mut();
        let mut ctx = Ctx {
            now_ms: now_us / 1000,
            now_us,
            rng: &mut rng,
        };
        match op {
            Op::Cmd { first, len, spec } => {
                let args = Args::new(buf, &spans[*first as usize..(*first + *len) as usize]);
                self.exec(db, &mut ctx, *spec, args, out, true);
            }
            Op::Local { first, len } => {
                let args = Args::new(buf, &spans[*first as usize..(*first + *len) as usize]);
                self.exec(db, &mut ctx, None, args, out, false);
            }
            Op::Exec { cmds, watch } => {
                if watch.as_ref().is_some_and(|w| w.load(Ordering::Acquire)) {
                    return out.null_array();
                }
                out.array(cmds.len());
                for (first, len) in cmds {
                    let args = Args::new(buf, &spans[*first as usize..(*first + *len) as usize]);
                    self.exec(db, &mut ctx, None, args, out, true);
                }
            }
            Op::Watch { first, add, flag } => {
                let (s, e) = spans[*first as usize];
                let key = &buf[s as usize..e as usize];
                if *add {
                    db.watches.watch(key, flag.clone());
                } else {
                    db.watches.unwatch(key, flag);
                }
                out.ok();
            }
            Op::Slow(op) => crate::slowlog::answer(db, op, out),
            Op::Stats => {
                let st = db.stats;
                let ps = self.pubsub.borrow();
                out.array(10);
                out.int(db.len() as i64);
                out.int(db.volatile_len() as i64);
                out.int(st.keyspace_hits as i64);
                out.int(st.keyspace_misses as i64);
                out.int(st.expired_keys as i64);
                out.int(self.blocked_replicated() as i64);
                out.int(ps.names(crate::pubsub::Kind::Channel, None).len() as i64);
                out.int(ps.names(crate::pubsub::Kind::Pattern, None).len() as i64);
                out.int(st.evicted_keys as i64);
                let stats = self.cmd_stats.borrow();
                let rows: Vec<(usize, &CmdStat)> = stats
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.calls + s.rejected + s.failed > 0)
                    .collect();
                out.array(rows.len());
                for (i, s) in rows {
                    out.array(5);
                    for v in [i as u64, s.calls, s.ns, s.rejected, s.failed] {
                        out.int(v as i64);
                    }
                }
            }
            Op::Kill(f) => {
                // Another connection's socket is shut down, so its pending read ends and it
                // closes; the requester closes after its reply (it is on this thread, and its
                // socket is still listed, so the fd is its own).
                let mut killed = 0;
                for c in self.clients.borrow().iter() {
                    let mut ci = c.borrow_mut();
                    if ci.killed || !f.matches(&ci) {
                        continue;
                    }
                    ci.killed = true;
                    if ci.id != f.requester {
                        shardline_transport::net::shutdown(ci.fd);
                    }
                    killed += 1;
                }
                out.int(killed);
            }
            Op::Clients => {
                let mut text = String::new();
                for c in self.clients.borrow().iter() {
                    text.push_str(&c.borrow().line(self.id));
                }
                out.bulk(text.as_bytes());
            }
            Op::Publish { first, sharded } => {
                let (cs, ce) = spans[*first as usize];
                let (ms, me) = spans[*first as usize + 1];
                let limit = self.node.live.get(|l| &l.client_output_buffer_limit) as usize;
                let n = self.pubsub.borrow().publish(
                    *sharded,
                    &buf[cs as usize..ce as usize],
                    &buf[ms as usize..me as usize],
                    limit,
                );
                out.int(n as i64);
            }
            Op::PubsubNames { kind, first, len } => {
                let pattern = (*len == 1).then(|| {
                    let (s, e) = spans[*first as usize];
                    &buf[s as usize..e as usize]
                });
                let names = self.pubsub.borrow().names(*kind, pattern);
                out.array(names.len());
                for n in names {
                    out.bulk(&n);
                }
            }
            Op::PubsubCounts { kind, first, len } => {
                out.array(*len as usize);
                for &(s, e) in &spans[*first as usize..(*first + *len) as usize] {
                    out.int(
                        self.pubsub
                            .borrow()
                            .count(*kind, &buf[s as usize..e as usize])
                            as i64,
                    );
                }
            }
            Op::SlotKeys { slot, count } => {
                let keys =
                    db.keys_in_slot(*slot, count.map_or(usize::MAX, |n| n as usize), ctx.now_ms);
                match count {
                    None => out.int(keys.len() as i64),
                    Some(_) => {
                        out.array(keys.len());
                        for k in keys {
                            out.bulk(&k);
                        }
                    }
                }
            }
            // Only `run_job` runs blocking ops; the connection never runs them locally.
            Op::Block { .. } => out.error("ERR internal: blocking op outside a job"),
            Op::Meta(_) => out.error("ERR this node is not part of a replicated cluster"),
            // `run_op` and the replicated job path take it before the keyspace is borrowed.
            Op::Unblock { .. } => out.error("ERR internal: unblock outside a job"),
            Op::Persist { .. } => out.error("ERR internal: a save outside a job"),
            Op::Txn { .. } => out.error("ERR internal: a transaction outside a job"),
            Op::WatchAt { .. } | Op::Unwatch { .. } => {
                out.error("ERR internal: a WATCH elsewhere outside a job")
            }
        }
    }

    fn publish_stats(&self) {
        let s = &self.node.stats[self.id];
        let r = Ordering::Relaxed;
        let mut l = self.local.borrow_mut();
        s.commands.fetch_add(std::mem::take(&mut l.commands), r);
        s.net_input_bytes
            .fetch_add(std::mem::take(&mut l.net_input_bytes), r);
        s.net_output_bytes
            .fetch_add(std::mem::take(&mut l.net_output_bytes), r);
        s.hops_sent.fetch_add(std::mem::take(&mut l.hops_sent), r);
        s.jobs_run.fetch_add(std::mem::take(&mut l.jobs_run), r);
        s.protocol_errors
            .fetch_add(std::mem::take(&mut l.protocol_errors), r);
        let l = &mut *l;
        s.latency_us.add(&mut l.latency_us, &mut l.latency_sum_us);
        let d = self.db.borrow().stats;
        for (slot, v) in s.keyspace.iter().zip([
            d.expired_keys,
            d.evicted_keys,
            d.keyspace_hits,
            d.keyspace_misses,
        ]) {
            slot.store(v, r);
        }
        // The command counts as they stand (CONFIG RESETSTAT lowers them: a counter reset
        // to a scraper); only those that changed are stored.
        for (c, a) in self.cmd_stats.borrow().iter().zip(s.cmds.iter()) {
            for (v, slot) in [
                (c.calls, &a.calls),
                (c.rejected, &a.rejected),
                (c.failed, &a.failed),
            ] {
                if slot.load(r) != v {
                    slot.store(v, r);
                }
            }
        }
        let (user, sys) = shardline_transport::cpu::thread_cpu_time_us();
        s.cpu_user_us.store(user, r);
        s.cpu_sys_us.store(sys, r);
    }
}

/// A future that yields once to the scheduler.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Sends a job to thread `t`, waiting while its queue is full.
pub async fn send_job(shard: &Shard, t: usize, job: Job) {
    send_job_to(&shard.node, t, job).await
}

async fn send_job_to(node: &Node, t: usize, mut job: Job) {
    loop {
        match node.mailboxes[t].push_job(job) {
            Ok(()) => return,
            Err(back) => {
                job = back;
                yield_now().await;
            }
        }
    }
}

pub(crate) async fn inbox(shard: Rc<Shard>) {
    let mb = &shard.node.mailboxes[shard.id];
    loop {
        mb.ready().await;
        // Bounded work per wake-up so connections on this thread are not starved.
        for _ in 0..256 {
            let mut idle = true;
            if let Some(job) = mb.pop_job() {
                idle = false;
                shard.run_job_replicated(job);
            }
            if let Some(done) = mb.pop_done() {
                idle = false;
                shard.pending.borrow_mut().complete(done);
            }
            // After this round's job: a job sent before a transaction was sequenced is run
            // before the transaction is seen here (`Conn::finish_batch` sends it first).
            if let Some(msg) = mb.pop_calvin() {
                idle = false;
                shard.with_replicas(|r| r.calvin_receive(msg));
            }
            if idle {
                break;
            }
        }
        yield_now().await;
    }
}

pub(crate) async fn ticker(shard: Rc<Shard>) {
    loop {
        let hz = shard.node.live.get(|l| &l.hz).max(1);
        monoio::time::sleep(Duration::from_millis(1000 / hz)).await;
        let budget = shard.node.live.get(|l| &l.active_expire_keys_per_pass) as usize;
        shard.clock.reanchor();
        let now_ms = unix_now_us() / 1000;
        shard.sync_tunables();
        // Expiry is the leaders' to decide (through the log).
        shard.propose_expiry(now_ms * 1000, budget);
        shard.flush_events();
        shard.publish_stats();
        if shard.node.shutting_down.load(Ordering::Acquire) && !shard.stopping.get() {
            shard.stopping.set(true);
            if let Some(w) = shard.stop_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Resolves once the node is shutting down.
pub(crate) async fn stopped(shard: &Shard) {
    std::future::poll_fn(|cx| {
        if shard.stopping.get() {
            Poll::Ready(())
        } else {
            *shard.stop_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await
}

/// Waits for a reply token, used by connections.
pub async fn wait(shard: &Shard, t: hop::Token) -> Done {
    hop::wait(&shard.pending, t).await
}
