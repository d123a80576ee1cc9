//! A client connection: read, cut commands out of the buffer, run each where its keys live, write
//! the replies back in request order. The loop per read:
//!
//! 1. parse and dispatch commands until the buffer is used up or the pending replies pass
//!    `BATCH_OUT_BYTES` (so a client that never reads cannot make us buffer without bound);
//! 2. local commands write their replies straight into the output buffer; commands for another
//!    thread are appended to one job per thread and leave a [`Hole`] at their place in the output;
//! 3. send the jobs, wait for their replies, fill the holes, write everything with one syscall.

use crate::hop::{Done, Job, Op, Token};
use crate::pubsub::{Kind, Subscriber};
use crate::shard::{ClientInfo, Shard, send_job, wait};
use io::ClientIo;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use shardline_shards::command::{self, Args, CommandSpec, Merge, Scope, Span, err, flags, lookup};
use shardline_shards::db::Prefetched;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::route::{Plan, plan};
use shardline_transport::resp::{self, Limits};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod acl;
mod assemble;
mod blocking;
pub mod busy;
mod cluster;
pub(crate) mod io;
mod moves;
mod proxy;
mod pubsub;
mod server_cmds;
mod slow;
mod txn;

/// Replies buffered in one batch before the connection stops parsing and writes.
const BATCH_OUT_BYTES: usize = 64 * 1024;
/// Free space kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Commands parsed (and their keys prefetched) ahead of execution.
const LOOKAHEAD: usize = 32;

/// A command parsed ahead: its argument spans in `Conn::ahead_spans`, where it ends in the input,
/// and its table entry.
struct Ahead {
    first: u32,
    len: u32,
    end: usize,
    spec: Option<&'static CommandSpec>,
    /// Set when the first key's bucket was prefetched.
    prefetched: Option<Prefetched>,
}

/// Where a part of a deferred reply comes from.
#[derive(Clone)]
enum PartRef {
    /// Op `op` of the job sent to thread `thread` in this batch.
    Remote { thread: usize, op: usize },
    /// Already computed here.
    Local(Vec<u8>),
    /// Reply `n` of the commands forwarded to peer `peer` (proxy mode).
    Proxied { peer: usize, n: usize },
}

/// How a deferred reply is finished from its parts.
enum Finish {
    /// The single part, as is.
    Raw,
    /// Parts merged as `Merge` says; for `Positional`, `order[i]` is the part of key `i`.
    Merge(Merge, Vec<u16>),
    /// WATCH: `+OK` once every part registered.
    Ok,
    /// INFO with these sections (lower case, empty = default).
    Info(Vec<String>),
    /// CLIENT LIST: the parts' lines concatenated.
    Clients,
    /// CLIENT KILL: the parts' counts added; the old form answers OK or an error.
    Killed { old_form: bool },
    /// MEMORY STATS from every thread's `Op::Stats`.
    MemoryStats,
    /// SLOWLOG GET, LATENCY LATEST or HISTORY from every thread's `Op::Slow`.
    Slow(crate::slowlog::SlowMerge),
    /// This simple string once every part answered `+OK` (SAVE, BGSAVE, BGREWRITEAOF).
    Text(&'static str),
    /// Arrays of names from every thread, without duplicates (PUBSUB CHANNELS).
    Union,
    /// The number of distinct names (PUBSUB NUMPAT).
    UnionCount,
    /// Per-name counts added up over threads, answered as a map (PUBSUB NUMSUB).
    SumPerName(Vec<Vec<u8>>),
    /// The head of an EXEC reply whose transaction holds connection commands (CONFIG, INFO,
    /// ...): the part is the reply of its data commands (`ExecItem`s below it). An array
    /// becomes the header of `n` replies; anything else (null: a WATCHed key changed; an
    /// error) is the whole reply, and the output up to `end` (the connection commands'
    /// replies) and the `inner` holes after this one are dropped.
    ExecHead { n: usize, end: usize, inner: usize },
    /// Element `i` of the part's array: a data command's reply inside such an EXEC.
    ExecItem(usize),
}

/// A reply that is filled in after the batch's jobs return.
struct Hole {
    at: usize,
    parts: Vec<PartRef>,
    finish: Finish,
}

/// Commands queued by MULTI.
#[derive(Default)]
struct Multi {
    buf: Vec<u8>,
    spans: Vec<Span>,
    cmds: Vec<(u32, u32)>,
    /// Per queued command: a connection command (CONFIG, INFO, CLIENT, ...), run by the
    /// connection at EXEC rather than by the shard thread of the data commands.
    conn: Vec<bool>,
    /// A queued command was refused: EXEC answers EXECABORT.
    dirty: bool,
    /// The shard thread owning the keys of the queued commands.
    thread: Option<usize>,
    /// On a replicated node: the vShard of the queued commands' keys (a transaction is one
    /// entry of one vShard's log).
    vshard: Option<u16>,
    /// The queued commands' keys span shard threads: EXEC is a Calvin transaction.
    across: bool,
}

const TXN_CROSS_THREAD: &str = "CROSSSLOT Keys in request don't hash to the same shard thread (a transaction must stay on one shard thread for now)";

/// Per-connection state.
pub struct Conn {
    shard: Rc<Shard>,
    info: Rc<RefCell<ClientInfo>>,
    proto: Proto,
    authed: bool,
    /// The ACL user the connection runs as (`default` until AUTH), the users' generation it
    /// was read at, and whether it is allowed everything (no check per command).
    user: Arc<shardline_shards::acl::User>,
    acl_gen: u64,
    acl_open: bool,
    /// Its user is not one of the users (a node of the cluster's own identity): kept when the
    /// users change.
    acl_fixed: bool,
    /// A node of the cluster (a TLS connection under the cluster's CA): it may name the
    /// user it forwards for (`CLUSTER ACLUSER`).
    node_peer: bool,
    /// The ACL check's buffer of keys (kept: no allocation per command).
    acl_keys: Vec<(usize, u8)>,
    multi: Option<Multi>,
    /// The flag WATCHed keys set when written; replaced after each EXEC/DISCARD/UNWATCH.
    watch_flag: Arc<AtomicBool>,
    /// The WATCHed keys: each with its shard thread and, for one registered on the node
    /// that led its vShard, that node.
    watched: Vec<crate::hop::WatchedKey>,
    /// The id this connection's WATCHes on other nodes are registered under (`Op::WatchAt`),
    /// drawn at the first; none again after EXEC or UNWATCH.
    watch_id: Option<shardline_shards::calvin::seq::TxnId>,
    closing: bool,
    // The current batch.
    out: Out,
    holes: Vec<Hole>,
    jobs: Vec<Option<Job>>,
    now_us: u64,
    ahead: Vec<Ahead>,
    ahead_spans: Vec<Span>,
    /// Set when this batch ends with a blocking command: the thread that parks it and how long
    /// the client waits (`None`: forever).
    blocked: Option<(usize, Option<Duration>)>,
    /// Set once the connection subscribes: where deliveries for it queue up.
    sub: Option<Rc<Subscriber>>,
    /// This connection's subscriptions (registered on its own thread).
    subscriptions: std::collections::HashSet<(Kind, Vec<u8>)>,
    /// Table indexes of the commands dispatched in this batch (their service time is shared).
    batch_cmds: Vec<u16>,
    /// READONLY: reads may be served by this node's follower replicas (possibly stale).
    readonly: bool,
    /// Proxy mode: this connection's links to peers, by Raft id - 1.
    links: Vec<proxy::Link>,
    /// The direct job number this batch's replies wait for (`Shard::run_direct`); 0: none.
    durable_seq: u64,
    /// This batch ends with a Calvin transaction (`Op::Txn` in this thread's job): it is
    /// submitted once the batch's other jobs are answered, and the batch stops there.
    barrier: bool,
    /// This connection's `ClientInfo::busy_idle`, and the waker its idle reads wait with
    /// (`busy::idle_read`: the task's, which also clears the flag).
    busy_idle: Arc<AtomicBool>,
    busy_waker: Option<(std::task::Waker, std::task::Waker)>,
    /// The certificate a peer connected over TLS presented (a joining node's, which the
    /// cluster's CA signed: CLUSTER JOIN checks it names the address it joins as).
    node_cert: Option<shardline_transport::tls::CertificateDer<'static>>,
}

/// Answers a connection we will not serve, then closes it.
pub async fn refuse(mut stream: TcpStream, msg: &'static str) {
    let line = format!("-{msg}\r\n").into_bytes();
    let _ = stream.write_all(line).await;
}

/// Serves a client (or a joining node) from `peer` on `stream` (accepted at `laddr`), `read`
/// being what was read from it already.
pub async fn serve<S: ClientIo>(
    shard: Rc<Shard>,
    stream: S,
    peer: SocketAddr,
    laddr: SocketAddr,
    read: Vec<u8>,
    node_peer: bool,
) {
    let stats = &shard.node.stats[shard.id];
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let id = shard.node.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Rc::new(RefCell::new(ClientInfo {
        id,
        addr: peer,
        laddr,
        name: Vec::new(),
        created: Instant::now(),
        last_active: Instant::now(),
        last_cmd: "NULL",
        proto: Proto::Resp2,
        multi: -1,
        watching: 0,
        qbuf: 0,
        fd: stream.io_fd(),
        pubsub: false,
        killed: false,
        busy_idle: Arc::new(AtomicBool::new(false)),
        busy_authed: false,
        busy_user: None,
        busy_in: Vec::new(),
        busy_out: Vec::new(),
        user: "default".into(),
    }));
    let busy_idle = info.borrow().busy_idle.clone();
    shard.clients.borrow_mut().push(info.clone());
    // A node of the cluster (TLS under its CA) runs as the cluster itself, allowed
    // everything, until it names the client it forwards for (CLUSTER ACLUSER).
    let (user, acl_gen) = if node_peer {
        (crate::acl::node_user(), shard.node.cluster.acl.generation())
    } else {
        shard.node.cluster.acl.default_user()
    };
    info.borrow_mut().user = user.name.as_str().into();
    let threads = shard.node.threads;
    let mut conn = Conn {
        shard: shard.clone(),
        info: info.clone(),
        proto: Proto::Resp2,
        authed: user.enabled && user.nopass,
        acl_open: user.unrestricted(),
        acl_fixed: node_peer,
        user,
        acl_gen,
        acl_keys: Vec::new(),
        node_peer,
        multi: None,
        watch_flag: Arc::new(AtomicBool::new(false)),
        watched: Vec::new(),
        watch_id: None,
        closing: false,
        out: Out::new(Proto::Resp2),
        holes: Vec::new(),
        jobs: (0..threads).map(|_| None).collect(),
        now_us: 0,
        ahead: Vec::with_capacity(LOOKAHEAD),
        ahead_spans: Vec::with_capacity(LOOKAHEAD * 3),
        blocked: None,
        sub: None,
        subscriptions: std::collections::HashSet::new(),
        batch_cmds: Vec::with_capacity(LOOKAHEAD),
        readonly: false,
        links: Vec::new(),
        durable_seq: 0,
        barrier: false,
        busy_idle,
        busy_waker: None,
        node_cert: stream.io_peer_cert(),
    };
    if let Err(e) = conn.run(stream, read).await {
        tracing::debug!(client = id, error = %e, "connection ended with an error");
    }
    conn.drop_watches().await;
    conn.unsubscribe_all();
    shard.clients.borrow_mut().retain(|c| !Rc::ptr_eq(c, &info));
    stats.connected.fetch_sub(1, Ordering::Relaxed);
}

impl Conn {
    async fn run<S: ClientIo>(&mut self, mut stream: S, read: Vec<u8>) -> std::io::Result<()> {
        let shard = self.shard.clone();
        let mut rbuf: Vec<u8> = read;
        rbuf.reserve(READ_CHUNK);
        let mut rpos = 0usize;
        let mut spans: Vec<Span> = Vec::with_capacity(16);
        let mut scratch: Vec<u8> = Vec::new();
        // What was read already is parsed before anything more is read.
        let mut need_read = rbuf.is_empty();
        loop {
            if need_read {
                if rpos == rbuf.len() {
                    rbuf.clear();
                    rpos = 0;
                } else if rpos > 0 {
                    rbuf.drain(..rpos);
                    rpos = 0;
                }
                let want = resp::bytes_needed(&rbuf)
                    .unwrap_or(0)
                    .max(rbuf.len() + READ_CHUNK);
                let limit = self.shard.node.live.get(|l| &l.client_query_buffer_limit) as usize;
                if want > limit + READ_CHUNK {
                    self.shard.local.borrow_mut().protocol_errors += 1;
                    tracing::warn!(
                        client = self.info.borrow().id,
                        "query buffer limit exceeded; closing"
                    );
                    let _ = stream
                        .io_write(b"-ERR Protocol error: query buffer limit exceeded\r\n".to_vec())
                        .await;
                    return Ok(());
                }
                if rbuf.capacity() < want {
                    rbuf.reserve(want - rbuf.len());
                }
                if let Some(sub) = self.sub.clone() {
                    // Subscribed: write deliveries while waiting for the client to send more.
                    loop {
                        if sub.overflowed.get() {
                            tracing::warn!(
                                client = self.info.borrow().id,
                                "subscriber output limit reached; closing"
                            );
                            return Ok(());
                        }
                        if !self.user_current() {
                            // Not allowed its subscriptions any more: nothing more is
                            // delivered to it.
                            return Ok(());
                        }
                        let pending = std::mem::take(&mut *sub.queue.borrow_mut());
                        if !pending.is_empty() {
                            self.shard.local.borrow_mut().net_output_bytes += pending.len() as u64;
                            let (res, _) = stream.io_write(pending).await;
                            res?;
                            continue;
                        }
                        let readable = monoio::select! {
                            r = stream.io_readable() => { r?; true },
                            _ = sub.notified() => false,
                        };
                        if readable {
                            break;
                        }
                    }
                }
                let len = rbuf.len();
                // Nothing of the client's kept, nothing to write: while its read waits, a busy
                // script on this thread may answer what it sends (`busy`).
                let idle = len == 0
                    && self.sub.is_none()
                    && self.multi.is_none()
                    && self.blocked.is_none()
                    && busy::installed();
                let read = stream.io_read(rbuf);
                let (res, buf) = if idle {
                    {
                        let mut info = self.info.borrow_mut();
                        info.busy_authed = self.authed;
                        info.busy_user = (!self.acl_open).then(|| self.user.clone());
                    }
                    busy::idle_read(read, &self.busy_idle, &mut self.busy_waker).await
                } else {
                    read.await
                };
                rbuf = buf;
                let n = res?;
                if n == 0 {
                    return Ok(());
                }
                if idle {
                    let answered = busy::take_busy(&self.info, &mut rbuf);
                    if !answered.is_empty() {
                        let (res, _) = stream.io_write(answered).await;
                        res?;
                    }
                }
                self.shard.local.borrow_mut().net_input_bytes += n as u64;
            }
            if !self.user_current() {
                // Its user was deleted (ACL DELUSER, ACL LOAD): as Redis, the connection goes.
                return Ok(());
            }
            let started = Instant::now();
            self.now_us = self.shard.clock.unix_us(started);
            self.info.borrow_mut().last_active = started;
            let in_flight = &shard.node.stats[shard.id].batches_in_flight;
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (used, more) = self.parse_and_dispatch(&rbuf[rpos..], &mut spans, &mut scratch);
            self.share_batch_time(started);
            rpos += used;
            need_read = !more;
            self.info.borrow_mut().qbuf = rbuf.len() - rpos;
            let written = self.finish_batch(&mut stream).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            written?;
            let us = started.elapsed().as_micros() as u64;
            self.shard.local.borrow_mut().record_latency(us);
            if self.closing || self.info.borrow().killed {
                return Ok(());
            }
        }
    }

    /// Parses and dispatches commands from `buf`. Returns the bytes used and whether complete
    /// commands may remain (the batch stopped early to write).
    ///
    /// Multibulk commands are parsed up to `LOOKAHEAD` ahead of their execution, and the keyspace
    /// memory of each one's first key is prefetched, so the cache misses of a pipelined batch
    /// overlap instead of queueing.
    fn parse_and_dispatch(
        &mut self,
        buf: &[u8],
        spans: &mut Vec<Span>,
        scratch: &mut Vec<u8>,
    ) -> (usize, bool) {
        let live = &self.shard.node.live;
        let limits = Limits {
            max_bulk_len: live.get(|l| &l.proto_max_bulk_len) as usize,
            max_multibulk_len: live.get(|l| &l.max_multibulk_len) as usize,
            max_inline_len: 64 * 1024,
        };
        let mut ahead = std::mem::take(&mut self.ahead);
        let mut ahead_spans = std::mem::take(&mut self.ahead_spans);
        let mut pos = 0;
        let result = 'outer: loop {
            // Phase 1: parse ahead (multibulk only; inline commands run alone, below).
            ahead.clear();
            ahead_spans.clear();
            let mut p = pos;
            while ahead.len() < LOOKAHEAD {
                match resp::parse_command(&buf[p..], &limits, spans, scratch) {
                    Ok(Some(frame)) if !frame.in_scratch => {
                        let first = ahead_spans.len() as u32;
                        ahead_spans
                            .extend(spans.iter().map(|&(s, e)| (s + p as u32, e + p as u32)));
                        p += frame.consumed;
                        let spec = spans.first().and_then(|&(s, e)| {
                            lookup(&buf[p - frame.consumed + s as usize..][..(e - s) as usize])
                        });
                        let mut prefetched = None;
                        if let Some(spec) = spec
                            && spec.first_key > 0
                            && (spec.first_key as usize) < spans.len()
                        {
                            let (s, e) = ahead_spans[first as usize + spec.first_key as usize];
                            prefetched = self
                                .shard
                                .db
                                .borrow()
                                .prefetch(&buf[s as usize..e as usize]);
                        }
                        let len = spans.len() as u32;
                        ahead.push(Ahead {
                            first,
                            len,
                            end: p,
                            spec,
                            prefetched,
                        });
                    }
                    Ok(Some(_)) | Err(_) if !ahead.is_empty() => break,
                    Ok(Some(frame)) => {
                        // An inline command (its arguments live in `scratch`): run it alone.
                        pos += frame.consumed;
                        if !spans.is_empty() {
                            self.dispatch(None, Args::new(scratch, spans));
                        }
                        if self.out.buf.len() >= BATCH_OUT_BYTES
                            || self.closing
                            || self.blocked.is_some()
                            || self.barrier
                        {
                            break 'outer (pos, !self.closing);
                        }
                        p = pos;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.shard.local.borrow_mut().protocol_errors += 1;
                        self.out.error(&e.0);
                        self.closing = true;
                        break 'outer (buf.len(), false);
                    }
                }
            }
            if ahead.is_empty() {
                break (pos, false);
            }
            // Phase 2: the buckets are arriving; find the values and prefetch those.
            if ahead.len() > 1 {
                let db = self.shard.db.borrow();
                for a in &ahead {
                    if let (Some(spec), Some(at)) = (a.spec, a.prefetched) {
                        let (s, e) = ahead_spans[(a.first + spec.first_key as u32) as usize];
                        db.prefetch_value(&buf[s as usize..e as usize], at);
                    }
                }
            }
            // Phase 3: run them in order.
            for a in &ahead {
                if !ahead_spans[a.first as usize..][..a.len as usize].is_empty() {
                    let args = Args::new(
                        buf,
                        &ahead_spans[a.first as usize..(a.first + a.len) as usize],
                    );
                    self.dispatch(Some(a.spec), args);
                }
                pos = a.end;
                if self.out.buf.len() >= BATCH_OUT_BYTES
                    || self.closing
                    || self.blocked.is_some()
                    || self.barrier
                {
                    break 'outer (pos, !self.closing);
                }
            }
        };
        self.ahead = ahead;
        self.ahead_spans = ahead_spans;
        result
    }

    /// Splits the time since `started` over the commands dispatched in this batch (INFO
    /// commandstats `usec`): no clock read per command.
    fn share_batch_time(&mut self, started: Instant) {
        if self.batch_cmds.is_empty() {
            return;
        }
        let share = started.elapsed().as_nanos() as u64 / self.batch_cmds.len() as u64;
        let mut stats = self.shard.cmd_stats.borrow_mut();
        for &i in &self.batch_cmds {
            stats[i as usize].ns += share;
        }
        self.batch_cmds.clear();
    }

    /// Counts a command refused before it ran (INFO commandstats `rejected_calls`).
    /// Answers `msg` to a command refused where it would run: counted as a call on
    /// dispatch; Redis counts a refused command (CROSSSLOT) as rejected only.
    fn refuse(&mut self, spec: &CommandSpec, msg: &str) {
        let mut stats = self.shard.cmd_stats.borrow_mut();
        let s = &mut stats[command::index_of(spec)];
        s.calls -= 1;
        s.rejected += 1;
        drop(stats);
        self.batch_cmds.pop();
        self.out.error(msg)
    }

    fn reject(&mut self, spec: &CommandSpec) {
        self.shard.cmd_stats.borrow_mut()[command::index_of(spec)].rejected += 1;
    }

    /// Runs one command. `looked_up` is the result of `lookup` if the caller already has it.
    fn dispatch(&mut self, looked_up: Option<Option<&'static CommandSpec>>, args: Args) {
        self.shard.local.borrow_mut().commands += 1;
        let Some(spec) = looked_up.unwrap_or_else(|| lookup(args.get(0))) else {
            self.flag_multi();
            return err::unknown_command(&mut self.out, args);
        };
        self.info.borrow_mut().last_cmd = spec.name;
        if !spec.arity_ok(args.len()) {
            self.flag_multi();
            self.reject(spec);
            if spec.name == "exec" && self.multi.is_some() {
                // As Redis: an EXEC refused ends the transaction.
                return self.exec_abort(&format!(
                    "wrong number of arguments for '{}' command",
                    spec.name
                ));
            }
            return err::arity(&mut self.out, spec.name);
        }
        if !self.authed && spec.flags & flags::NO_AUTH == 0 {
            self.flag_multi();
            self.reject(spec);
            return self.out.error("NOAUTH Authentication required.");
        }
        if !self.acl_open
            && let Err(d) = shardline_shards::acl::check_command_with(
                &self.user,
                spec,
                args,
                &mut self.acl_keys,
            )
        {
            self.flag_multi();
            self.reject(spec);
            let msg = self.acl_denied(d, args, "toplevel");
            return self.out.error(&msg);
        }
        if !self.acl_open
            && spec.name.starts_with("sort")
            && let Some(opt) = shardline_shards::acl::sort_uses_patterns(args)
            && !shardline_shards::acl::sort_patterns_allowed(&self.user, spec, args)
        {
            self.flag_multi();
            self.reject(spec);
            return self.out.error(&format!(
                "ERR {opt} option of SORT denied due to insufficient ACL permissions."
            ));
        }
        // Scripts this command runs here check what they call against the user.
        let _caller =
            (!self.acl_open).then(|| shardline_shards::acl::set_caller(Some(self.user.clone())));
        self.shard.check_reset();
        let index = command::index_of(spec);
        self.shard.cmd_stats.borrow_mut()[index].calls += 1;
        self.batch_cmds.push(index as u16);
        if self.multi.is_some() && spec.flags & flags::NO_MULTI != 0 {
            self.flag_multi();
            self.reject(spec);
            return self
                .out
                .error("ERR Command not allowed inside a transaction");
        }
        if self.multi.is_some() && spec.flags & flags::IMMEDIATE == 0 {
            return self.queue(spec, args);
        }
        if self.proto == Proto::Resp2 && !self.subscriptions.is_empty() {
            match spec.name {
                "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe"
                | "sunsubscribe" | "quit" | "reset" => {}
                "ping" => {
                    // In RESP2 subscribed mode PING answers as a push: [pong, message].
                    self.out.array(2);
                    self.out.bulk(b"pong");
                    return self
                        .out
                        .bulk(if args.len() > 1 { args.get(1) } else { b"" });
                }
                name => {
                    return self.out.error(&format!(
                        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                    ));
                }
            }
        }
        if spec.on_connection(args) {
            self.conn_command(spec, args)
        } else {
            self.data_command(spec, args)
        }
    }

    /// Runs a data command where its plan says.
    fn data_command(&mut self, spec: &'static CommandSpec, args: Args) {
        let c = self.shard.node.cluster.clone();
        self.replicated_command(&c, spec, args)
    }

    /// Runs a command where `route::plan` says: here, on another thread, on all, or split.
    fn planned(&mut self, spec: &'static CommandSpec, args: Args) {
        let here = self.shard.id;
        let (layout, threads) = (self.shard.node.layout, self.shard.node.threads);
        match plan(spec, args, layout, threads, here) {
            Plan::On(t) if t == here => {
                self.shard.run_op(
                    &Op::Cmd {
                        first: 0,
                        len: args.len() as u32,
                        spec: Some(spec),
                    },
                    args.buf(),
                    args.spans(),
                    self.now_us,
                    &mut self.out,
                );
            }
            Plan::On(t) => {
                let op = self.push_cmd(t, spec, args.buf(), args.spans());
                self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
            }
            Plan::Refuse(msg) => self.refuse(spec, msg),
            Plan::All(merge) => {
                let parts = (0..threads)
                    .map(|t| self.part(t, spec, args.buf(), args.spans()))
                    .collect();
                self.hole(parts, Finish::Merge(merge, Vec::new()));
            }
            Plan::Split { parts, merge } => {
                let step = spec.step.max(1) as usize;
                let mut order = Vec::new();
                if merge == Merge::Positional {
                    let mut by_key: Vec<(u32, u16)> = parts
                        .iter()
                        .enumerate()
                        .flat_map(|(p, part)| part.keys.iter().map(move |&k| (k, p as u16)))
                        .collect();
                    by_key.sort_unstable();
                    order = by_key.into_iter().map(|(_, p)| p).collect();
                }
                let mut refs = Vec::with_capacity(parts.len());
                for part in &parts {
                    let mut sub_spans: Vec<Span> = Vec::with_capacity(1 + part.keys.len() * step);
                    sub_spans.push(args.spans()[0]);
                    for &k in &part.keys {
                        sub_spans.extend_from_slice(&args.spans()[k as usize..k as usize + step]);
                    }
                    refs.push(self.part(part.thread, spec, args.buf(), &sub_spans));
                }
                self.hole(refs, Finish::Merge(merge, order));
            }
        }
    }

    /// One part of a spread command: run now if local, else queued for its thread.
    fn part(
        &mut self,
        t: usize,
        spec: &'static CommandSpec,
        buf: &[u8],
        spans: &[Span],
    ) -> PartRef {
        if t == self.shard.id {
            let mut out = Out::new(self.proto);
            self.shard.run_op(
                &Op::Cmd {
                    first: 0,
                    len: spans.len() as u32,
                    spec: Some(spec),
                },
                buf,
                spans,
                self.now_us,
                &mut out,
            );
            PartRef::Local(out.buf)
        } else {
            PartRef::Remote {
                thread: t,
                op: self.push_cmd(t, spec, buf, spans),
            }
        }
    }

    fn job(&mut self, t: usize) -> &mut Job {
        let (origin, proto) = (self.shard.id, self.proto);
        let shard = &self.shard;
        let user = (!self.acl_open).then(|| self.user.clone());
        self.jobs[t].get_or_insert_with(|| Job {
            origin,
            token: shard.pending.borrow_mut().alloc(),
            proto,
            buf: Vec::with_capacity(256),
            spans: Vec::with_capacity(16),
            ops: Vec::with_capacity(4),
            calvin_place: None,
            user,
        })
    }

    /// Copies a command's arguments into thread `t`'s job; returns the span index of the first.
    fn copy_args(&mut self, t: usize, buf: &[u8], spans: &[Span]) -> u32 {
        let job = self.job(t);
        let first = job.spans.len() as u32;
        for &(s, e) in spans {
            let start = job.buf.len() as u32;
            job.buf.extend_from_slice(&buf[s as usize..e as usize]);
            job.spans.push((start, job.buf.len() as u32));
        }
        first
    }

    /// Queues a command for thread `t`; returns its op index in the job.
    fn push_cmd(
        &mut self,
        t: usize,
        spec: &'static CommandSpec,
        buf: &[u8],
        spans: &[Span],
    ) -> usize {
        let first = self.copy_args(t, buf, spans);
        self.push_op(
            t,
            Op::Cmd {
                first,
                len: spans.len() as u32,
                spec: Some(spec),
            },
        )
    }

    fn push_op(&mut self, t: usize, op: Op) -> usize {
        let job = self.job(t);
        job.ops.push(op);
        job.ops.len() - 1
    }

    fn hole(&mut self, parts: Vec<PartRef>, finish: Finish) {
        self.holes.push(Hole {
            at: self.out.buf.len(),
            parts,
            finish,
        });
    }

    /// Marks an open transaction as failed (a queued command was refused).
    fn flag_multi(&mut self) {
        if let Some(m) = &mut self.multi {
            m.dirty = true;
        }
    }

    fn conn_command(&mut self, spec: &'static CommandSpec, args: Args) {
        match spec.name {
            "multi" => {
                if self.multi.is_some() {
                    return self.out.error("ERR MULTI calls can not be nested");
                }
                self.multi = Some(Multi::default());
                self.info.borrow_mut().multi = 0;
                self.out.ok()
            }
            "exec" => self.exec(),
            "discard" => match self.multi.take() {
                None => self.out.error("ERR DISCARD without MULTI"),
                Some(_) => {
                    self.info.borrow_mut().multi = -1;
                    self.unwatch_all();
                    self.out.ok()
                }
            },
            "watch" => self.watch(args),
            "unwatch" => {
                self.unwatch_all();
                self.out.ok()
            }
            "subscribe" => self.subscribe(Kind::Channel, args),
            "psubscribe" => self.subscribe(Kind::Pattern, args),
            "ssubscribe" => self.subscribe(Kind::Shard, args),
            "unsubscribe" => self.unsubscribe(Kind::Channel, args),
            "punsubscribe" => self.unsubscribe(Kind::Pattern, args),
            "sunsubscribe" => self.unsubscribe(Kind::Shard, args),
            "publish" | "spublish" => {
                let sharded = spec.name == "spublish";
                let parts = (0..self.shard.node.threads)
                    .map(|t| {
                        if t == self.shard.id {
                            let mut out = Out::new(self.proto);
                            self.shard.run_op(
                                &Op::Publish { first: 1, sharded },
                                args.buf(),
                                args.spans(),
                                self.now_us,
                                &mut out,
                            );
                            PartRef::Local(out.buf)
                        } else {
                            let first = self.copy_args(t, args.buf(), &args.spans()[1..3]);
                            PartRef::Remote {
                                thread: t,
                                op: self.push_op(t, Op::Publish { first, sharded }),
                            }
                        }
                    })
                    .collect();
                self.hole(parts, Finish::Merge(Merge::Sum, Vec::new()));
            }
            "pubsub" => self.pubsub_introspect(args),
            "save" | "bgsave" | "bgrewriteaof" => self.persist(spec.name, args),
            "cluster" => self.cluster(args),
            // Cluster clients send these; a one-node cluster serves every slot itself.
            "readonly" | "readwrite" => {
                self.readonly = spec.name == "readonly";
                self.out.ok()
            }
            "asking" => self.out.ok(),
            "memory" => self.memory(args),
            "slowlog" | "latency" => self.slow(spec.name, args),
            "info" => {
                let sections = args
                    .iter()
                    .skip(1)
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect();
                let parts = (0..self.shard.node.threads)
                    .map(|t| self.stats_part(t))
                    .collect();
                self.hole(parts, Finish::Info(sections));
            }
            _ => server_cmds::run(self, spec, args),
        }
    }

    /// SAVE, BGSAVE [SCHEDULE] and BGREWRITEAOF: every write is in the log already, so a save
    /// makes it durable now: every shard thread fsyncs its log with its next batch, and the
    /// reply comes once all have (`Op::Persist`). BGREWRITEAOF also compacts every vShard's
    /// log into a snapshot, in the background (one per driver step).
    fn persist(&mut self, name: &'static str, args: Args) {
        if name == "bgsave"
            && (args.len() > 2
                || (args.len() == 2 && !args.get(1).eq_ignore_ascii_case(b"schedule")))
        {
            return self.out.error(err::SYNTAX);
        }
        let rewrite = name == "bgrewriteaof";
        let parts = (0..self.shard.node.threads)
            .map(|t| PartRef::Remote {
                thread: t,
                op: self.push_op(t, Op::Persist { rewrite }),
            })
            .collect();
        let text = match name {
            "save" => "OK",
            "bgsave" => "Background saving started",
            _ => "Background append only file rewriting started",
        };
        self.hole(parts, Finish::Text(text));
    }

    /// MEMORY DOCTOR, MALLOC-STATS, PURGE and STATS (USAGE runs on the key's thread), and HELP.
    fn memory(&mut self, args: Args) {
        let sub = args.get(1).to_ascii_lowercase();
        if let Err(msg) = command::check_subcommand(lookup(b"memory").expect("in the table"), args)
        {
            return self.out.error(&msg);
        }
        match sub.as_slice() {
            b"doctor" => {
                let text = crate::info::memory_doctor();
                self.out.verbatim(text.as_bytes())
            }
            b"malloc-stats" => self
                .out
                .verbatim(b"Stats not supported for the current allocator"),
            b"purge" => {
                shardline_transport::alloc::purge();
                self.out.ok()
            }
            b"stats" => {
                let parts = (0..self.shard.node.threads)
                    .map(|t| self.stats_part(t))
                    .collect();
                self.hole(parts, Finish::MemoryStats);
            }
            _ => err::unknown_subcommand(&mut self.out, args.get(1), "memory"),
        }
    }

    fn stats_part(&mut self, t: usize) -> PartRef {
        self.thread_part(t, Op::Stats)
    }

    /// An op without arguments on thread `t`: run here when `t` is this thread, else sent.
    fn thread_part(&mut self, t: usize, op: Op) -> PartRef {
        if t == self.shard.id {
            let mut out = Out::new(self.proto);
            self.shard.run_op(&op, &[], &[], self.now_us, &mut out);
            PartRef::Local(out.buf)
        } else {
            PartRef::Remote {
                thread: t,
                op: self.push_op(t, op),
            }
        }
    }

    // Accessors for the server commands module.
    pub fn out(&mut self) -> &mut Out {
        &mut self.out
    }

    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    pub fn info(&self) -> &Rc<RefCell<ClientInfo>> {
        &self.info
    }

    pub fn set_proto(&mut self, p: Proto) {
        self.proto = p;
        self.out.proto = p;
        self.info.borrow_mut().proto = p;
    }

    pub fn is_authed(&self) -> bool {
        self.authed
    }

    pub fn set_authed(&mut self, a: bool) {
        self.authed = a;
    }

    pub fn close_after_reply(&mut self) {
        self.closing = true;
    }

    /// RESET: back to a fresh connection's state.
    pub fn reset(&mut self) {
        self.unsubscribe_all();
        self.multi = None;
        self.info.borrow_mut().multi = -1;
        self.unwatch_all();
        self.set_proto(Proto::Resp2);
        self.info.borrow_mut().name.clear();
        let (user, _) = self.shard.node.cluster.acl.default_user();
        self.authed = user.enabled && user.nopass;
        self.set_user(user);
    }

    /// CLIENT LIST: every thread's clients.
    pub fn client_list(&mut self) {
        let parts = (0..self.shard.node.threads)
            .map(|t| {
                if t == self.shard.id {
                    let mut out = Out::new(self.proto);
                    self.shard
                        .run_op(&Op::Clients, &[], &[], self.now_us, &mut out);
                    PartRef::Local(out.buf)
                } else {
                    PartRef::Remote {
                        thread: t,
                        op: self.push_op(t, Op::Clients),
                    }
                }
            })
            .collect();
        self.hole(parts, Finish::Clients);
    }

    /// CLIENT KILL on every thread; `old_form`: answers OK or "No such client" instead of
    /// the count.
    pub fn client_kill(&mut self, filter: crate::shard::KillFilter, old_form: bool) {
        let parts = (0..self.shard.node.threads)
            .map(|t| {
                let op = Op::Kill(Box::new(filter.clone()));
                if t == self.shard.id {
                    let mut out = Out::new(self.proto);
                    self.shard.run_op(&op, &[], &[], self.now_us, &mut out);
                    PartRef::Local(out.buf)
                } else {
                    PartRef::Remote {
                        thread: t,
                        op: self.push_op(t, op),
                    }
                }
            })
            .collect();
        self.hole(parts, Finish::Killed { old_form });
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }
}
