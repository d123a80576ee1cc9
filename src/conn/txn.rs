//! MULTI, EXEC, DISCARD's helpers, WATCH and UNWATCH for a connection: transactions run on one
//! shard thread, queued commands are checked when queued, WATCH flags are set by writes on the
//! owning thread.

use super::*;

/// A script without keys inside MULTI (a transaction with a script runs on its keys'
/// participants, and this one names none).
const SCRIPT_WITHOUT_KEYS: &str = "ERR a script without keys inside MULTI is not supported: declare the keys it uses, or run it outside the transaction";

impl Conn {
    pub(super) fn queue(&mut self, spec: &'static CommandSpec, args: Args) {
        let (layout, threads, here) = (
            self.shard.node.layout,
            self.shard.node.threads,
            self.shard.id,
        );
        if let Err(msg) = command::check_subcommand(spec, args) {
            self.flag_multi();
            return self.out.error(&msg);
        }
        let on_conn = spec.on_connection(args);
        let refusal: Option<String> = match spec.scope {
            _ if spec.name == "function" && command::scripting::changes_functions(args) => Some(
                "ERR FUNCTION LOAD/DELETE/FLUSH/RESTORE inside MULTI is not supported yet"
                    .to_string(),
            ),
            // Changes to the cluster's metadata (proposed on the metadata leader, answered
            // once applied there) are not part of a transaction.
            _ if spec.name == "cluster"
                && args.len() > 1
                && [
                    &b"move"[..],
                    b"cancelmove",
                    b"drain",
                    b"undrain",
                    b"join",
                    b"forget",
                ]
                .iter()
                .any(|s| args.get(1).eq_ignore_ascii_case(s)) =>
            {
                Some(format!(
                    "ERR CLUSTER {} inside MULTI is not supported: it changes the cluster's metadata, not keys",
                    String::from_utf8_lossy(args.get(1)).to_ascii_uppercase()
                ))
            }
            // A transaction with a script runs as a Calvin transaction, whatever its keys: its
            // participants' leaders run it and log its effects (`calvin::exec::run_script`),
            // so a script may name only its declared keys, and needs some.
            _ if crate::cluster::replica::propose::is_script(spec) => {
                match spec.keys_of(args).next() {
                    Some(_) => self.go_across(),
                    None => Some(SCRIPT_WITHOUT_KEYS.to_string()),
                }
            }
            // Run by this connection at EXEC (`exec_mixed`).
            _ if on_conn => None,
            // A transaction runs in one vShard's log; a write outside any one vShard (FLUSHALL)
            // would run on this replica alone.
            _ if spec.flags & flags::WRITE != 0 && !matches!(spec.scope, Scope::Keys(_)) => {
                Some(format!(
                    "ERR Command not allowed inside a transaction on a replicated cluster: '{}' writes outside any one vShard",
                    spec.name
                ))
            }
            _ => match plan(spec, args, layout, threads, here) {
                Plan::Refuse(msg) if msg == shardline_shards::route::ACROSS_THREADS => {
                    self.go_across()
                }
                Plan::Refuse(msg) => Some(msg.to_string()),
                Plan::On(t) => {
                    let m = self.multi.as_ref().expect("in MULTI");
                    match (spec.scope, m.thread) {
                        (Scope::Keyless, _) => None,
                        (_, Some(x)) if x != t => self.go_across(),
                        _ => {
                            self.multi.as_mut().expect("in MULTI").thread = Some(t);
                            None
                        }
                    }
                }
                Plan::Split { .. } => self.go_across(),
                Plan::All(_) => Some(TXN_CROSS_THREAD.to_string()),
            },
        };
        if let Some(msg) = refusal {
            self.flag_multi();
            return self.out.error(&msg);
        }
        // On a replicated node, as Redis Cluster does when queuing: keys of another vShard
        // than the transaction's are CROSSSLOT, a slot led elsewhere is MOVED (TRYAGAIN during
        // an election); EXEC then answers EXECABORT, having applied nothing.
        if !on_conn {
            let c = self.shard.node.cluster.clone();
            let at = shardline_shards::route::vshard_of_keys(spec, args, c.layout);
            let sort_across = spec.name.starts_with("sort")
                && shardline_shards::command::sort::patterns_leave_slot(args);
            let refusal = match at {
                // SORT's patterns may name keys of other slots (`replicated_command`).
                _ if sort_across => self.go_across(),
                Err(msg)
                    if msg == shardline_shards::route::CROSSSLOT && {
                        // Keys of several vShards that this node alone replicates (and leads):
                        // as for a transaction over them, below.
                        let mut vs = Vec::new();
                        crate::cluster::replica::vshards_of(spec, args, c.layout, &mut vs);
                        vs.iter().all(|&x| {
                            let x = shardline_shards::slot::VShardId(x as u16);
                            c.alone(x) && c.leader(x) == c.me
                        }) && self
                            .multi
                            .as_ref()
                            .and_then(|m| m.vshard)
                            .is_none_or(|x| c.alone(shardline_shards::slot::VShardId(x)))
                    } =>
                {
                    None
                }
                // Keys of several vShards, with other replicas or led elsewhere: the
                // transaction is one across them (Calvin).
                Err(msg) if msg == shardline_shards::route::CROSSSLOT => self.go_across(),
                Err(msg) => Some(msg.to_string()),
                Ok(None) => None,
                // Across vShards already: any vShard, led anywhere, may join it.
                Ok(Some(_)) if self.multi.as_ref().is_some_and(|m| m.across) => None,
                Ok(Some((v, slot))) => {
                    let m = self.multi.as_mut().expect("in MULTI");
                    // vShards of one thread that this node alone replicates may mix (their
                    // groups run it at once: `replica/direct.rs`; should one have grown
                    // meanwhile, EXEC answers CROSSSLOT, having applied nothing).
                    let alone = |x: u16| c.alone(shardline_shards::slot::VShardId(x));
                    if m.vshard
                        .is_some_and(|x| x != v.0 && !(alone(x) && alone(v.0)))
                    {
                        self.go_across()
                    } else {
                        m.vshard = Some(v.0);
                        let leader = c.leader(v);
                        (leader != c.me).then(|| c.redirect(slot, Some(leader)))
                    }
                }
            };
            if let Some(msg) = refusal {
                self.flag_multi();
                return self.out.error(&msg);
            }
        }
        let m = self.multi.as_mut().expect("in MULTI");
        let first = m.spans.len() as u32;
        for &(s, e) in args.spans() {
            let start = m.buf.len() as u32;
            m.buf.extend_from_slice(&args.buf()[s as usize..e as usize]);
            m.spans.push((start, m.buf.len() as u32));
        }
        m.cmds.push((first, args.len() as u32));
        m.conn.push(on_conn);
        self.info.borrow_mut().multi = m.cmds.len() as i64;
        self.out.simple("QUEUED");
    }

    /// The transaction being queued spans shard threads or vShards that are not all this
    /// node's alone: a Calvin transaction at EXEC.
    fn go_across(&mut self) -> Option<String> {
        self.multi.as_mut().expect("in MULTI").across = true;
        None
    }

    pub(super) fn exec(&mut self) {
        let Some(mut m) = self.multi.take() else {
            return self.out.error("ERR EXEC without MULTI");
        };
        self.info.borrow_mut().multi = -1;
        let flag = std::mem::replace(&mut self.watch_flag, Arc::new(AtomicBool::new(false)));
        let watched = !self.watched.is_empty();
        // A key WATCHed on the node that led it is checked there: only a transaction across
        // vShards (Calvin) asks its participants' leaders.
        m.across |= self.watched.iter().any(|k| k.at.is_some());
        // Each vShard's participant vouches for its watched keys from the registrations on
        // its own node: a vShard whose keys were registered on different nodes (its
        // leadership moved between WATCHes) has none that can, and the EXEC answers nil.
        let sound = !m.across || self.watches_on_one_node();
        let changed = flag.load(Ordering::Acquire);
        // A transaction across vShards checks its WATCHes where it runs: its participants
        // read the keys, and the flag stays registered while the transaction holds it (the
        // registrations go once nothing else does, `Watches::unwatch`; those on other nodes
        // when it is answered).
        let watch_across = (m.across && watched && sound && !changed && !m.dirty).then(|| {
            let keys = self.watched.clone();
            self.watched.retain(|k| k.at.is_none());
            crate::hop::Watched {
                keys,
                flag: flag.clone(),
                id: self.watch_id,
            }
        });
        self.unwatch_all();
        if m.dirty {
            return self
                .out
                .error("EXECABORT Transaction discarded because of previous errors.");
        }
        // The user's permissions may have changed since the commands were queued (they were
        // checked then): each is checked again, and one no longer allowed discards all of
        // them (nothing runs), where Redis would run the others.
        if !self.acl_open {
            for &(first, n) in &m.cmds {
                let args = Args::new(&m.buf, &m.spans[first as usize..(first + n) as usize]);
                let Some(spec) = lookup(args.get(0)) else {
                    continue;
                };
                if let Err(d) = shardline_shards::acl::check_command(&self.user, spec, args) {
                    let why = self.acl_denied(d, args, "multi");
                    return self.out.error(&format!(
                        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call; the transaction was discarded, nothing ran ({})",
                        why.trim_start_matches("NOPERM ")
                    ));
                }
            }
        }
        if m.across && watched && (changed || !sound) {
            return self.out.null_array();
        }
        if m.conn.iter().any(|&c| c) {
            let watch = (watched && !m.across).then_some(flag);
            return self.exec_mixed(m, watch, watch_across);
        }
        if m.across {
            // One Calvin transaction, one array reply.
            let part = self.push_txn(&m.buf, &m.spans, &m.cmds, true, watch_across);
            return self.hole(part, Finish::Raw);
        }
        // Queueing kept every keyed command on one thread (`m.thread`).
        let target = m.thread;
        let t = target.unwrap_or(self.shard.id);
        let watch = watched.then_some(flag);
        // On a replicated node a transaction on keys always goes through its vShard's log.
        let replicated = target.is_some();
        if t == self.shard.id && !replicated {
            let op = Op::Exec {
                cmds: m.cmds,
                watch,
            };
            self.shard
                .run_op(&op, &m.buf, &m.spans, self.now_us, &mut self.out);
        } else {
            let base = self.copy_args(t, &m.buf, &m.spans);
            let cmds = m.cmds.iter().map(|&(f, l)| (f + base, l)).collect();
            let op = self.push_op(t, Op::Exec { cmds, watch });
            self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
        }
    }

    /// Ends the transaction because EXEC itself was refused (Redis's `execCommandAbort`).
    pub(super) fn exec_abort(&mut self, why: &str) {
        self.multi = None;
        self.info.borrow_mut().multi = -1;
        self.unwatch_all();
        self.out.error(&format!(
            "EXECABORT Transaction discarded because of: {why}"
        ));
    }

    /// EXEC of a transaction that holds connection commands (CONFIG, INFO, CLIENT, CLUSTER,
    /// ...) besides data commands: the data commands run as one transaction on their shard
    /// thread, as any EXEC; the connection commands run here, now, and their replies take their
    /// places among the data commands' (holes `ExecHead` / `ExecItem`). If the data part is
    /// refused (a WATCHed key changed, a redirect), that is the whole reply and the connection
    /// commands' replies are dropped. A connection command with an effect (CONFIG SET, CLIENT
    /// SETNAME) has it even then if the WATCHed key changed after the check made here.
    fn exec_mixed(
        &mut self,
        m: Multi,
        watch: Option<Arc<AtomicBool>>,
        watch_across: Option<crate::hop::Watched>,
    ) {
        if watch.as_ref().is_some_and(|w| w.load(Ordering::Acquire)) {
            return self.out.null_array();
        }
        let data: Vec<(u32, u32)> = m
            .cmds
            .iter()
            .zip(&m.conn)
            .filter(|(_, c)| !**c)
            .map(|(c, _)| *c)
            .collect();
        let t = m.thread.unwrap_or(self.shard.id);
        let replicated = m.thread.is_some();
        let part = if data.is_empty() {
            PartRef::Local(b"*0\r\n".to_vec())
        } else if m.across {
            self.push_txn(&m.buf, &m.spans, &data, true, watch_across)
                .remove(0)
        } else if t == self.shard.id && !replicated {
            let mut out = Out::new(self.proto);
            let op = Op::Exec { cmds: data, watch };
            self.shard
                .run_op(&op, &m.buf, &m.spans, self.now_us, &mut out);
            PartRef::Local(out.buf)
        } else {
            let base = self.copy_args(t, &m.buf, &m.spans);
            let cmds = data.iter().map(|&(f, l)| (f + base, l)).collect();
            let op = self.push_op(t, Op::Exec { cmds, watch });
            PartRef::Remote { thread: t, op }
        };
        let n = m.cmds.len();
        let head = self.holes.len();
        self.hole(
            vec![part.clone()],
            Finish::ExecHead {
                n,
                end: 0,
                inner: 0,
            },
        );
        let mut k = 0;
        for (i, &(f, l)) in m.cmds.iter().enumerate() {
            if m.conn[i] {
                let args = Args::new(&m.buf, &m.spans[f as usize..(f + l) as usize]);
                let spec = lookup(args.get(0)).expect("looked up when queued");
                self.conn_command(spec, args);
            } else {
                self.hole(vec![part.clone()], Finish::ExecItem(k));
                k += 1;
            }
        }
        let (end, inner) = (self.out.buf.len(), self.holes.len() - head - 1);
        self.holes[head].finish = Finish::ExecHead { n, end, inner };
    }

    pub(super) fn watch(&mut self, args: Args) {
        if self.multi.is_some() {
            return self.out.error("ERR WATCH inside MULTI is not allowed");
        }
        let node = self.shard.node.clone();
        let c = node.cluster.clone();
        let several = c.member_ids().len() > 1;
        let mut parts = Vec::new();
        for i in 1..args.len() {
            let key = args.get(i);
            let t = shardline_shards::route::thread_of(key, node.layout, node.threads);
            let v = node.layout.vshard_of(shardline_shards::slot::key_slot(key));
            // A key whose vShard another node leads is registered there, where its
            // participant will read (`Op::WatchAt`; the transaction then runs across vShards).
            let leader = c.leader(v);
            let elsewhere = several && leader != c.me && leader != crate::cluster::NodeId(0);
            // (A key a transaction across vShards holds here: through the job path, which
            // waits until it executed.)
            let held = || self.shard.with_replicas(|r| r.calvin_holds(v, key));
            if elsewhere {
                let here = self.shard.id;
                let id = match self.watch_id {
                    Some(id) => id,
                    None => {
                        let id = self.shard.with_replicas(|r| r.next_txn_id());
                        *self.watch_id.insert(id)
                    }
                };
                let first = self.copy_args(here, args.buf(), &args.spans()[i..i + 1]);
                let op = self.push_op(
                    here,
                    Op::WatchAt {
                        first,
                        id,
                        node: leader,
                        flag: self.watch_flag.clone(),
                    },
                );
                parts.push(PartRef::Remote { thread: here, op });
                // What the client sends next waits until it is registered.
                self.barrier = true;
            } else if t == self.shard.id && !held() {
                self.shard
                    .db
                    .borrow_mut()
                    .watches
                    .watch(key, self.watch_flag.clone());
            } else {
                let first = self.copy_args(t, args.buf(), &args.spans()[i..i + 1]);
                let op = self.push_op(
                    t,
                    Op::Watch {
                        first,
                        add: true,
                        flag: self.watch_flag.clone(),
                    },
                );
                parts.push(PartRef::Remote { thread: t, op });
            }
            self.watched.push(crate::hop::WatchedKey {
                key: key.to_vec(),
                thread: t,
                at: elsewhere.then_some(leader),
            });
        }
        self.info.borrow_mut().watching = self.watched.len();
        if parts.is_empty() {
            self.out.ok()
        } else {
            self.hole(parts, Finish::Ok)
        }
    }

    /// Drops this connection's WATCH registrations (in this batch's jobs for remote keys).
    pub(super) fn unwatch_all(&mut self) {
        let flag = self.watch_flag.clone();
        let mut elsewhere = Vec::new();
        for wk in std::mem::take(&mut self.watched) {
            let (key, t) = (&wk.key, wk.thread);
            if wk.at.is_some() {
                elsewhere.push(wk);
            } else if t == self.shard.id {
                self.shard.db.borrow_mut().watches.unwatch(key, &flag);
            } else {
                let first = self.copy_args(t, key, &[(0, key.len() as u32)]);
                self.push_op(
                    t,
                    Op::Watch {
                        first,
                        add: false,
                        flag: flag.clone(),
                    },
                );
            }
        }
        if let Some(id) = self.watch_id.take()
            && !elsewhere.is_empty()
        {
            let here = self.shard.id;
            self.push_op(
                here,
                Op::Unwatch {
                    id,
                    keys: elsewhere,
                },
            );
        }
        self.watch_flag = Arc::new(AtomicBool::new(false));
        self.info.borrow_mut().watching = 0;
    }

    /// Whether the WATCHed keys of each vShard were all registered on one node.
    fn watches_on_one_node(&self) -> bool {
        let layout = self.shard.node.layout;
        let mut at = std::collections::HashMap::new();
        self.watched.iter().all(|k| {
            let v = layout.vshard_of(shardline_shards::slot::key_slot(&k.key));
            *at.entry(v).or_insert(k.at) == k.at
        })
    }

    /// On close: unregister watches and wait for the remote threads to have done so.
    pub(super) async fn drop_watches(&mut self) {
        if self.watched.is_empty() {
            return;
        }
        self.unwatch_all();
        let mut tokens = Vec::new();
        for t in 0..self.jobs.len() {
            if let Some(job) = self.jobs[t].take() {
                tokens.push(job.token);
                send_job(&self.shard, t, job).await;
            }
        }
        for token in tokens {
            wait(&self.shard, token).await;
        }
    }
}
