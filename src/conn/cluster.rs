//! Redis Cluster's view of this node: CLUSTER KEYSLOT MYID INFO SLOTS SHARDS NODES
//! COUNTKEYSINSLOT GETKEYSINSLOT JOIN FORGET (and MOVE, MOVES, CANCELMOVE, DRAIN, UNDRAIN, LOAD:
//! `moves.rs`), READONLY/READWRITE/ASKING, and where a data
//! command goes on a node of a cluster (every node is one: a node given no cluster is a
//! cluster of itself), which is what lets cluster-aware clients (`redis-cli -c`, the `redis`
//! crate's cluster client, redis-py's RedisCluster) talk to it.

use super::*;
use crate::cluster::NodeId;
use shardline_shards::slot::{SLOTS, Slot, key_slot};

impl Conn {
    /// A data command on a replicated node: a command on keys goes to its vShard's leader (this
    /// node: through the owning thread's Raft group; another: `-MOVED`); keyless reads run here.
    pub(super) fn replicated_command(
        &mut self,
        c: &crate::cluster::Cluster,
        spec: &'static CommandSpec,
        args: Args,
    ) {
        if crate::cluster::replica::propose::is_flush(spec) {
            // Through every shard thread's log (this thread's too: never run on the spot, which
            // would empty this replica alone).
            let parts = (0..c.threads)
                .map(|t| PartRef::Remote {
                    thread: t,
                    op: self.push_cmd(t, spec, args.buf(), args.spans()),
                })
                .collect();
            return self.hole(
                parts,
                Finish::Merge(shardline_shards::command::Merge::AllOk, Vec::new()),
            );
        }
        if spec.name == "function" && command::scripting::changes_functions(args) {
            return self.function_change(c, spec, args);
        }
        if matches!(spec.name, "script" | "function")
            && args.len() == 2
            && args.get(1).eq_ignore_ascii_case(b"kill")
        {
            // Any thread's busy script (`script::Busy`), from this one.
            let function = spec.name == "function";
            return match shardline_shards::script::kill(&self.shard.node.script_busy, function) {
                Ok(()) => self.out.ok(),
                Err(e) => self.out.error(e),
            };
        }
        if !matches!(spec.scope, Scope::Keys(_)) {
            if spec.flags & flags::WRITE != 0 {
                return self.out.error(&format!(
                    "ERR {} is not supported on a replicated cluster yet: it writes outside any one vShard",
                    spec.name.to_uppercase()
                ));
            }
            // A keyless read (DBSIZE, SCAN, ...) answers from this node's replicas as they are.
            return self.planned(spec, args);
        }
        if crate::cluster::replica::propose::is_script(spec) {
            return self.script(c, spec, args);
        }
        if spec.name.starts_with("sort") && command::sort::patterns_leave_slot(args) {
            // BY or GET patterns that may name keys of other slots: a transaction across
            // vShards, which learns the keys when it first runs (`calvin::exec::needs_keys`).
            return self.submit_txn(args);
        }
        let first = match shardline_shards::route::vshard_of_keys(spec, args, c.layout) {
            Ok(first) => first,
            Err(msg) if msg == shardline_shards::route::CROSSSLOT => {
                match self.across_vshards(c, spec, args) {
                    Ok(seq) => self.durable_seq = self.durable_seq.max(seq),
                    Err(msg) => self.refuse(spec, msg),
                }
                return;
            }
            Err(msg) => return self.out.error(msg),
        };
        let Some((v, slot)) = first else {
            return self.planned(spec, args);
        };
        let t = c.layout.owner_thread(v, c.threads);
        let leader = c.leader(v);
        let blocking =
            spec.flags & flags::BLOCKING != 0 && command::blocking::blocks(spec.name, &args);
        if leader != c.me {
            // (A blocking read waits on the leader: a follower's state would only show what
            // the leader already has.)
            if self.readonly && spec.flags & flags::WRITE == 0 && !blocking && c.is_replica(v) {
                // READONLY: served from this replica's applied state, which may lag the leader.
                let first = self.copy_args(t, args.buf(), args.spans());
                let len = args.len() as u32;
                let op = self.push_op(t, Op::Local { first, len });
                return self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
            }
            if leader != NodeId(0) && c.proxy {
                return self.proxy(leader, spec, args);
            }
            return self.out.error(&c.redirect(slot, Some(leader)));
        }
        if blocking {
            // Parked on the leader, popped through the log (`replica/blocked.rs`).
            return self.blocking_on(t, spec, args);
        }
        if t == self.shard.id
            && self.jobs[t].is_none()
            && let Some(seq) =
                self.shard
                    .run_direct(v.0 as u32, spec, args, self.now_us, &mut self.out)
        {
            // A group of one on this thread, and no op of this batch queued for it before
            // (which would have to run first): run here; the batch's replies wait for the log.
            self.durable_seq = self.durable_seq.max(seq);
            return;
        }
        let op = self.push_cmd(t, spec, args.buf(), args.spans());
        self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
    }

    /// A command whose keys span vShards: run here if they are all groups of one on this
    /// thread (`Shard::run_direct_across`) and no op of this batch waits for this thread
    /// before it; else a Calvin transaction submitted from here, wherever the vShards are
    /// led; or the error to answer (nothing applied).
    fn across_vshards(
        &mut self,
        c: &crate::cluster::Cluster,
        spec: &'static CommandSpec,
        args: Args,
    ) -> Result<u64, &'static str> {
        use shardline_shards::slot::VShardId;
        let here = self.shard.id;
        let mut vshards = Vec::new();
        crate::cluster::replica::vshards_of(spec, args, c.layout, &mut vshards);
        vshards.sort_unstable();
        vshards.dedup();
        let alone = vshards.iter().all(|&v| c.alone(VShardId(v as u16)));
        if spec.flags & flags::BLOCKING != 0 && command::blocking::blocks(spec.name, &args) {
            // A blocking command waits on its keys' thread where they are all this node's
            // alone, on one thread (`replica/blocked.rs`, `try_across`); else it is tried as
            // a Calvin transaction each time a participant's stand-in sees one of its keys
            // written (`replica/calvin/`).
            let t = c
                .layout
                .owner_thread(VShardId(vshards[0] as u16), c.threads);
            if !alone
                || vshards
                    .iter()
                    .any(|&v| c.layout.owner_thread(VShardId(v as u16), c.threads) != t)
            {
                self.blocking_txn(spec, args);
            } else {
                self.blocking_on(t, spec, args);
            }
            return Ok(0);
        }
        if !alone
            || vshards
                .iter()
                .any(|&v| c.layout.owner_thread(VShardId(v as u16), c.threads) != here)
        {
            // Across shard threads, or vShards with other replicas (led here or by any
            // node): a Calvin transaction, atomic and serializable with everything else
            // (`replica/calvin/`).
            self.submit_txn(args);
            return Ok(0);
        }
        // An op of this batch queued for this thread must run first; and while a
        // transaction holds keys here, the job path waits for them.
        if self.jobs[here].is_some() || self.shard.with_replicas(|r| r.calvin_busy()) {
            let op = self.push_cmd(here, spec, args.buf(), args.spans());
            self.hole(vec![PartRef::Remote { thread: here, op }], Finish::Raw);
            return Ok(0);
        }
        match self
            .shard
            .run_direct_across(&vshards, spec, args, self.now_us, &mut self.out)
        {
            // Not all groups of one after all (one is growing a replica): through Calvin.
            Err(msg) if msg == shardline_shards::route::CROSSSLOT => {
                self.submit_txn(args);
                Ok(0)
            }
            r => r,
        }
    }

    /// EVAL and its family (issue 18, step 1): on the thread of its keys (the connection's
    /// without keys), at once when that is this one and nothing of this batch waits for it
    /// (`Shard::run_script_direct`), else through that thread's job (`plan_script`); its
    /// effects are logged. Keys on several threads: a Calvin transaction (step 6).
    fn script(&mut self, c: &crate::cluster::Cluster, spec: &'static CommandSpec, args: Args) {
        use shardline_shards::slot::VShardId;
        let here = self.shard.id;
        let mut vshards = Vec::new();
        crate::cluster::replica::vshards_of(spec, args, c.layout, &mut vshards);
        vshards.sort_unstable();
        vshards.dedup();
        if !vshards.iter().all(|&v| c.alone(VShardId(v as u16))) {
            return self.replicated_script(c, spec, args, &vshards);
        }
        let t = vshards.first().map_or(here, |&v| c.thread_of(v));
        if vshards.iter().any(|&v| c.thread_of(v) != t) {
            // Keys of several shard threads: a Calvin transaction (issue 18, step 6).
            return self.submit_txn(args);
        }
        if t != here || self.jobs[here].is_some() || self.shard.with_replicas(|r| r.calvin_busy()) {
            // On its keys' thread, or after what this batch queued here, through the job
            // path (`plan_script`), which waits while transactions hold this thread's groups.
            let op = self.push_cmd(t, spec, args.buf(), args.spans());
            return self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
        }
        match self
            .shard
            .run_script_direct(spec, args, self.now_us, &mut self.out)
        {
            Ok(seq) => self.durable_seq = self.durable_seq.max(seq),
            Err(msg) if msg == crate::cluster::replica::SCRIPTS_ALONE => {
                // Without keys, on a thread whose groups have replicas elsewhere.
                let op = self.push_cmd(here, spec, args.buf(), args.spans());
                self.barrier = true;
                self.hole(vec![PartRef::Remote { thread: here, op }], Finish::Raw);
            }
            Err(msg) => self.out.error(msg),
        }
    }

    /// A script whose keys are in vShards with replicas on other nodes (issue 18, step 3):
    /// to its vShard's leader (`-MOVED`, or forwarded with `cluster-routing proxy`), where it
    /// runs once the vShard has settled (`replica/scripts.rs`). It ends the batch: what the
    /// client sent after it waits for it. Keys in several such vShards: a Calvin transaction
    /// from here, wherever they are led (`calvin::exec::run_script`).
    fn replicated_script(
        &mut self,
        c: &crate::cluster::Cluster,
        spec: &'static CommandSpec,
        args: Args,
        vshards: &[u32],
    ) {
        use shardline_shards::slot::VShardId;
        let &[v] = vshards else {
            return self.submit_txn(args);
        };
        let leader = c.leader(VShardId(v as u16));
        if leader != c.me {
            if leader != NodeId(0) && c.proxy {
                return self.proxy(leader, spec, args);
            }
            let key = spec.keys_of(args).next().map_or(&b""[..], |k| args.get(k));
            let slot = shardline_shards::slot::key_slot(key);
            return self.out.error(&c.redirect(slot, Some(leader)));
        }
        let t = c.thread_of(v);
        let op = self.push_cmd(t, spec, args.buf(), args.spans());
        self.barrier = true;
        self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
    }

    /// Submits the command as a Calvin transaction from this thread (`Op::Txn`): answered
    /// when it has executed; the batch ends with it, so the commands after it wait for it.
    fn submit_txn(&mut self, args: Args) {
        let op = self.push_txn(
            args.buf(),
            args.spans(),
            &[(0, args.len() as u32)],
            false,
            None,
        );
        self.hole(op, Finish::Raw);
    }

    /// Queues the Calvin transaction of `cmds` (spans of `buf`; with `exec`, a MULTI/EXEC's,
    /// with `watch`, its WATCHes) in this thread's job, which ends the batch (`barrier`);
    /// returns the part its reply fills.
    pub(super) fn push_txn(
        &mut self,
        buf: &[u8],
        spans: &[Span],
        cmds: &[(u32, u32)],
        exec: bool,
        watch: Option<crate::hop::Watched>,
    ) -> Vec<PartRef> {
        let here = self.shard.id;
        let script = |&(f, _): &(u32, u32)| {
            let (s, e) = spans[f as usize];
            command::lookup(&buf[s as usize..e as usize])
                .is_some_and(crate::cluster::replica::propose::is_script)
        };
        if !self.acl_open && cmds.iter().any(script) {
            // A script run as a transaction across vShards runs at its participants, which do
            // not know this connection's user yet: refused rather than run unchecked.
            let mut out = Out::new(self.proto);
            out.error("NOPERM a script whose keys span vShards cannot run for an ACL user with restricted permissions yet; keep its keys in one slot (a hash tag)");
            return vec![PartRef::Local(out.buf)];
        }
        let base = self.copy_args(here, buf, spans);
        let cmds = cmds.iter().map(|&(f, l)| (f + base, l)).collect();
        let watch = watch.map(Box::new);
        let op = self.push_op(
            here,
            Op::Txn {
                cmds,
                exec,
                watch,
                block: false,
            },
        );
        self.barrier = true;
        vec![PartRef::Remote { thread: here, op }]
    }

    /// FUNCTION LOAD, DELETE, FLUSH or RESTORE: checked here (new code is loaded once in this
    /// thread's Lua state to find its functions), then proposed to the metadata group on
    /// thread 0, so every node holds the same libraries; answered once applied. Where another
    /// node leads the metadata, the command is forwarded there (as `cluster-routing proxy`
    /// forwards a data command), so it may be sent to any node.
    fn function_change(
        &mut self,
        c: &crate::cluster::Cluster,
        spec: &'static CommandSpec,
        args: Args,
    ) {
        let leader = c.leader(shardline_shards::slot::VShardId(c.meta_group() as u16));
        if leader != c.me && leader != NodeId(0) {
            return self.proxy(leader, spec, args);
        }
        let cmd = {
            let mut db = self.shard.db.borrow_mut();
            command::scripting::function_change(&mut db, args)
        };
        match cmd {
            Err(e) => self.out.error(&e),
            Ok(cmd) => {
                let mut b = Vec::new();
                cmd.encode(&mut b);
                let op = self.push_op(0, Op::Meta(b));
                self.hole(vec![PartRef::Remote { thread: 0, op }], Finish::Raw);
            }
        }
    }

    /// CLUSTER FORGET <node>: the node (its 40-character name or its member number) starts
    /// leaving: proposed to the metadata group on thread 0 (`RemoveNode`), `+OK` once applied;
    /// `-NOTLEADER <addr>` when another node leads the metadata.
    fn cluster_forget(&mut self, c: &crate::cluster::Cluster, args: Args) {
        let Some(id) = node_arg(c, args.get(2)) else {
            return self.out.error(&unknown_node(args.get(2)));
        };
        let mut cmd = Vec::new();
        shardline_shards::meta::Cmd::RemoveNode { id }.encode(&mut cmd);
        let op = self.push_op(0, Op::Meta(cmd));
        self.hole(vec![PartRef::Remote { thread: 0, op }], Finish::Raw);
    }

    /// CLUSTER JOIN: checked here (the joining node must run as many shard threads and vShards
    /// as this one and share a wire version), then proposed to the metadata group on thread 0;
    /// answered once applied (`-NOTLEADER <addr>` when another node leads the metadata).
    fn cluster_join(&mut self, c: &crate::cluster::Cluster, args: Args) {
        use shardline_transport::frame::{WIRE_MAX, WIRE_MIN, negotiate};
        let text = |i: usize| std::str::from_utf8(args.get(i)).unwrap_or("");
        let addr = |i: usize| text(i).parse::<std::net::SocketAddr>();
        let num = |i: usize| text(i).parse::<u64>();
        let (Ok(client), Ok(bus)) = (addr(2), addr(3)) else {
            return self
                .out
                .error("ERR CLUSTER JOIN wants the client and bus addresses as ip:port");
        };
        let proof = match args.len() {
            8 => None,
            10 => Some((text(8), text(9))),
            _ => {
                return self.out.error(
                    "ERR CLUSTER JOIN takes 6 arguments, or 8 with a join proof (its time and HMAC)",
                );
            }
        };
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let checked = c
            .security
            .check_join(client, bus, proof, now_s)
            .and_then(|()| {
                c.security
                    .check_joiner_cert(client, self.node_cert.as_ref())
            });
        if let Err(why) = checked {
            tracing::warn!(%client, "refused a join: {why}");
            return self.out.error(&format!("ERR join refused: {why}"));
        }
        let (Ok(threads), Ok(vshards), Ok(wmin), Ok(wmax)) = (num(4), num(5), num(6), num(7))
        else {
            return self.out.error(
                "ERR CLUSTER JOIN wants threads, vshards and the wire version range as integers",
            );
        };
        if threads != c.threads as u64 {
            return self.out.error(&format!(
                "ERR the joining node runs {threads} shard threads and this cluster {}: every member must run the same number",
                c.threads
            ));
        }
        if vshards != c.layout.count() as u64 {
            return self.out.error(&format!(
                "ERR the joining node has {vshards} vShards and this cluster {}",
                c.layout.count()
            ));
        }
        let (Ok(wmin), Ok(wmax)) = (u8::try_from(wmin), u8::try_from(wmax)) else {
            return self.out.error("ERR wire versions are 8-bit");
        };
        if negotiate((WIRE_MIN, WIRE_MAX), (wmin, wmax)).is_none() {
            return self.out.error(&format!(
                "ERR the joining node speaks wire versions {wmin}..={wmax}, this cluster {WIRE_MIN}..={WIRE_MAX}"
            ));
        }
        let mut cmd = Vec::new();
        shardline_shards::meta::Cmd::AddNode {
            client,
            bus,
            threads: threads as u16,
        }
        .encode(&mut cmd);
        let op = self.push_op(0, Op::Meta(cmd));
        self.hole(vec![PartRef::Remote { thread: 0, op }], Finish::Raw);
    }

    pub(super) fn cluster(&mut self, args: Args) {
        let spec = command::lookup(b"cluster").expect("in the table");
        // Unknown subcommands, arities and HELP from the subcommand table.
        if let Err(msg) = command::check_subcommand(spec, args) {
            return self.out.error(&msg);
        }
        let sub = args.get(1).to_ascii_lowercase();
        let c = self.shard.node.cluster.clone();
        match sub.as_slice() {
            b"myid" | b"info" | b"slots" | b"shards" | b"nodes" => {
                self.replicated_cluster(&c, &sub)
            }
            b"join" => self.cluster_join(&c, args),
            b"acluser" => self.cluster_acluser(&c, args),
            b"forget" => self.cluster_forget(&c, args),
            b"move" | b"cancelmove" | b"drain" | b"undrain" => self.cluster_move(&c, spec, args),
            b"moves" => self.cluster_moves(&c),
            b"load" => self.cluster_load(&c),
            b"help" => err::unknown_subcommand(&mut self.out, b"help", "cluster"),
            b"keyslot" => self.out.int(key_slot(args.get(2)) as i64),
            _ => self.slot_keys(args, sub == b"getkeysinslot"),
        }
    }

    /// CLUSTER ACLUSER <user>, from a node forwarding a client's commands (`proxy.rs`): this
    /// connection runs as that user from now on, so the commands (and the scripts they run)
    /// are checked here as the client's. Only a node of the cluster may say so (a connection
    /// under the cluster's TLS). A user this node does not know yet (its metadata lags) is
    /// allowed nothing until it does.
    fn cluster_acluser(&mut self, c: &crate::cluster::Cluster, args: Args) {
        if !self.node_peer {
            return self.out.error("ERR CLUSTER ACLUSER is for the cluster's own nodes (a connection under the cluster's TLS)");
        }
        match c.acl.user(args.get(2)) {
            (Some(u), _) => {
                self.set_user(u);
                self.out.ok()
            }
            (None, _) => {
                let name = String::from_utf8_lossy(args.get(2)).into_owned();
                self.set_user(Arc::new(shardline_shards::acl::User::new(&name)));
                self.out.error(&format!(
                    "ERR no user '{}' on this node yet: its commands are refused until there is",
                    err::sanitize(args.get(2))
                ))
            }
        }
    }

    /// CLUSTER MYID/INFO/SLOTS/SHARDS/NODES of a replicated node, from its routing table: the
    /// leader of each slot range is its master, the other replicas its replicas.
    fn replicated_cluster(&mut self, c: &crate::cluster::Cluster, sub: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        // This node as the client reached it (its member address may be unspecified, or an
        // older one of a node alone restarted on another port); the others as the metadata
        // has them.
        let reached = self.info.borrow().laddr;
        let client_addr = |id| {
            if id == c.me {
                reached
            } else {
                c.client_addr(id)
            }
        };
        let ranges = c.ranges();
        let served: u32 = ranges.iter().map(|r| (r.last - r.first) as u32 + 1).sum();
        let epoch = c.epoch.load(Relaxed);
        match sub {
            b"myid" => self.out.bulk(c.node_name(c.me).as_bytes()),
            b"info" => {
                let up = c.up.iter().filter(|u| u.load(Relaxed)).count();
                let known = c.member_ids().len();
                let text = format!(
                    "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{SLOTS}\r\ncluster_slots_ok:{served}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{epoch}\r\ncluster_reachable_nodes:{up}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
                    if served == SLOTS as u32 { "ok" } else { "fail" },
                    SLOTS as u32 - served,
                    known,
                    known,
                );
                self.out.verbatim(text.as_bytes());
            }
            b"slots" => {
                self.out.array(ranges.len());
                for r in &ranges {
                    self.out.array(2 + r.replicas.len());
                    self.out.int(r.first as i64);
                    self.out.int(r.last as i64);
                    for &id in &r.replicas {
                        let a = client_addr(id);
                        self.out.array(4);
                        self.out.bulk(a.ip().to_string().as_bytes());
                        self.out.int(a.port() as i64);
                        self.out.bulk(c.node_name(id).as_bytes());
                        self.out.map(0);
                    }
                }
            }
            b"shards" => {
                self.out.array(ranges.len());
                for r in &ranges {
                    self.out.map(2);
                    self.out.bulk(b"slots");
                    self.out.array(2);
                    self.out.int(r.first as i64);
                    self.out.int(r.last as i64);
                    self.out.bulk(b"nodes");
                    self.out.array(r.replicas.len());
                    for (i, &id) in r.replicas.iter().enumerate() {
                        let a = client_addr(id);
                        let ip = a.ip().to_string();
                        self.out.map(7);
                        for (k, v) in [
                            ("id", c.node_name(id)),
                            ("endpoint", ip.clone()),
                            ("ip", ip),
                        ] {
                            self.out.bulk(k.as_bytes());
                            self.out.bulk(v.as_bytes());
                        }
                        self.out.bulk(b"port");
                        self.out.int(a.port() as i64);
                        let role = if i == 0 { "master" } else { "replica" };
                        let health = if c.is_up(id) { "online" } else { "failed" };
                        for (k, v) in [("role", role), ("health", health)] {
                            self.out.bulk(k.as_bytes());
                            self.out.bulk(v.as_bytes());
                        }
                        self.out.bulk(b"replication-offset");
                        self.out.int(0);
                    }
                }
            }
            _ => {
                // NODES: one line per member; a member leading nothing is listed as a replica of
                // the first member that leads something.
                let mut text = String::new();
                let any_master = ranges.first().map(|r| r.replicas[0]);
                for id in c.member_ids() {
                    let a = client_addr(id);
                    let mine: Vec<String> = ranges
                        .iter()
                        .filter(|r| r.replicas[0] == id)
                        .map(|r| format!("{}-{}", r.first, r.last))
                        .collect();
                    let me = if id == c.me { "myself," } else { "" };
                    let state = if c.is_up(id) {
                        "connected"
                    } else {
                        "disconnected"
                    };
                    let fail = if c.is_up(id) { "" } else { ",fail" };
                    let (role, master) = match (mine.is_empty(), any_master) {
                        (false, _) | (true, None) => ("master".to_string(), "-".to_string()),
                        (true, Some(m)) => ("slave".to_string(), c.node_name(m)),
                    };
                    text.push_str(&format!(
                        "{} {a}@{} {me}{role}{fail} {master} 0 0 {epoch} {state}{}{}\n",
                        c.node_name(id),
                        c.bus_addr(id).port(),
                        if mine.is_empty() { "" } else { " " },
                        mine.join(" "),
                    ));
                }
                self.out.verbatim(text.as_bytes());
            }
        }
    }

    /// COUNTKEYSINSLOT / GETKEYSINSLOT: asked of the shard thread that owns the slot.
    fn slot_keys(&mut self, args: Args, list: bool) {
        let slot = match shardline_shards::num::parse_i64(args.get(2)) {
            Some(s) if (0..SLOTS as i64).contains(&s) => s as Slot,
            _ => return self.out.error("ERR Invalid slot"),
        };
        let count = if list {
            match shardline_shards::num::parse_i64(args.get(3)) {
                Some(n) if n >= 0 => Some(n.min(u32::MAX as i64) as u32),
                _ => return self.out.error("ERR Invalid number of keys"),
            }
        } else {
            None
        };
        let node = &self.shard.node;
        let t = node
            .layout
            .owner_thread(node.layout.vshard_of(slot), node.threads);
        let op = Op::SlotKeys { slot, count };
        if t == self.shard.id {
            let mut out = Out::new(self.proto);
            self.shard.run_op(&op, &[], &[], self.now_us, &mut out);
            self.out.raw(&out.buf);
        } else {
            let op = self.push_op(t, op);
            self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
        }
    }
}

/// A member named by its number, its 40-character id (CLUSTER NODES) or its client address.
pub(super) fn node_arg(c: &crate::cluster::Cluster, arg: &[u8]) -> Option<NodeId> {
    let text = std::str::from_utf8(arg).ok()?;
    if let Ok(n) = text.parse::<u64>() {
        return Some(NodeId(n)).filter(|&id| c.member(id).is_some());
    }
    let addr = text.parse::<std::net::SocketAddr>().ok();
    c.member_ids().into_iter().find(|&id| {
        c.node_name(id).as_bytes().eq_ignore_ascii_case(arg)
            || addr.is_some_and(|a| c.client_addr(id) == a)
    })
}

pub(super) fn unknown_node(arg: &[u8]) -> String {
    format!(
        "ERR unknown node {}: give its id from CLUSTER NODES, its member number or its client address",
        err::sanitize(arg)
    )
}
