//! The simulated clients: what they send (`send`, `submit_job`: through the layer as a
//! connection's job), how they read the answers (`answered`: every reply taken at its word),
//! when they give up, and the history they record.

use super::*;

impl Sim {
    /// A client stops waiting for request `rid`: a write's outcome is unknown to it.
    pub(super) fn give_up(&mut self, rid: u64) {
        let q = self.requests.get_mut(&rid).expect("outstanding");
        if q.abandoned {
            return;
        }
        q.abandoned = true;
        let q = *q;
        if self.clients[q.client].inflight == Some(rid) {
            self.clients[q.client].inflight = None;
        }
        match q.req {
            Req::Set(v) | Req::TxSet(v) => {
                self.unknown += 1;
                self.history[q.req.history(q.key)].push(lincheck::Op {
                    client: q.client as u32,
                    call: q.call,
                    ret: None,
                    kind: OpKind::Write(v),
                });
            }
            Req::Push(v) => {
                self.unknown += 1;
                self.queues[q.key].unknown.insert(v);
            }
            Req::Pop => {
                self.queues[q.key].lost_pops += 1;
                // The client disconnects: its node ends the wait (if it is still there).
                self.unblocks.push((q.node, q.key, rid));
            }
            Req::Transfer(_) => self.unknown += 1,
            Req::Get | Req::TxGet | Req::SetPx(_) | Req::SetAdd(_) | Req::SetPop | Req::Audit => {}
        }
    }

    /// The reply to request `job.token` arrived from node `id`.
    pub(super) fn answered(&mut self, id: NodeId, job: PendingJob) {
        let rid = job.token;
        if rid >= ADMIN_TOKEN {
            return self.admin_answered(job);
        }
        let done = job.into_done();
        let reply = String::from_utf8_lossy(done.segment(0)).into_owned();
        let Some(q) = self.requests.remove(&rid) else {
            panic!("seed {:#x}: a reply to no request: {reply}", self.seed);
        };
        assert_eq!(
            q.node, id,
            "seed {:#x}: a reply from the wrong node",
            self.seed
        );
        let c = q.client;
        if matches!(q.req, Req::SetPx(_) | Req::SetAdd(_) | Req::SetPop)
            && !reply.starts_with("-MOVED")
        {
            if !q.abandoned {
                match reply.as_bytes()[0] {
                    b'+' | b':' | b'*' | b'~' => self.acked += 1,
                    _ if reply.starts_with("-UNKNOWN") => self.unknown += 1,
                    _ if reply.starts_with("-TRYAGAIN") || self.hostile.is_some() => {
                        self.refused += 1
                    }
                    _ => panic!("seed {:#x}: {:?} answered {reply}", self.seed, q.req),
                }
                self.clients[c].inflight = None;
                self.clients[c].next_at = self.now_ms + self.rng.below(5);
            }
            return;
        }
        if matches!(q.req, Req::Transfer(_) | Req::Audit) {
            return self.answered_bank(q, &reply);
        }
        if matches!(q.req, Req::Push(_) | Req::Pop) && !reply.starts_with("-MOVED") {
            self.answered_queue(q, &reply);
            return;
        }
        let ret = Some(self.now_ms);
        let kind = match (q.req, reply.as_bytes()[0]) {
            (Req::Set(v), b'+') => Some((OpKind::Write(v), ret)),
            (Req::Get, b'$') => {
                match reply.split("\r\n").nth(1).and_then(|v| v.parse().ok()) {
                    Some(v) => Some((OpKind::Read(Some(v)), ret)),
                    // A hostile member's forged entries may have written anything.
                    None if self.hostile.is_some() => None,
                    None => panic!("seed {:#x}: GET returned {reply}", self.seed),
                }
            }
            (Req::Get, b'_') => Some((OpKind::Read(None), ret)),
            (Req::TxSet(v), b'*') if reply == "*2\r\n+OK\r\n+OK\r\n" => {
                Some((OpKind::Write(v), ret))
            }
            // An MSET (`calvin_pairs`).
            (Req::TxSet(v), b'+') if reply == "+OK\r\n" => Some((OpKind::Write(v), ret)),
            (Req::TxGet, b'*') => match bulk_items(&reply).as_deref() {
                Some([a, b]) if a == b => match a.as_ref().map(|v| v.parse()) {
                    None => Some((OpKind::Read(None), ret)),
                    Some(Ok(v)) => Some((OpKind::Read(Some(v)), ret)),
                    Some(Err(_)) if self.hostile.is_some() => None,
                    Some(Err(_)) => panic!("seed {:#x}: a pair holds {reply}", self.seed),
                },
                _ if self.hostile.is_some() => None,
                _ => panic!(
                    "seed {:#x}: a transaction saw half of another: {reply:?}\n{}",
                    self.seed,
                    self.log.join("\n")
                ),
            },
            (Req::TxSet(v), b'-') if reply.starts_with("-UNKNOWN") => {
                Some((OpKind::Write(v), None))
            }
            (_, b'-') if reply.starts_with("-MOVED") => {
                // Not applied: ask the node it names next time.
                let port: u16 = reply
                    .trim_end()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("MOVED names an address");
                if !q.abandoned {
                    self.clients[c].target = NodeId((port - 40_000) as u64);
                }
                None
            }
            (_, b'-') if reply.starts_with("-TRYAGAIN") || reply.starts_with("-CLUSTERDOWN") => {
                // Not applied; another node may know better.
                if !q.abandoned {
                    self.clients[c].target = self.pick_member();
                }
                None
            }
            (Req::Set(v), b'-') if reply.starts_with("-UNKNOWN") => Some((OpKind::Write(v), None)),
            // A read that rode in an entry whose fate is unknown: it constrains nothing.
            (Req::Get | Req::TxGet, b'-') if reply.starts_with("-UNKNOWN") => {
                self.unknown += 1;
                None
            }
            (Req::Push(v), _) => {
                self.queues[q.key].refused.insert(v);
                None
            }
            (Req::Pop, _) => None,
            // A hostile member's forged entries may have made anything of the keys.
            _ if self.hostile.is_some() => None,
            _ => panic!(
                "seed {:#x}: unexpected reply to {:?} from node {id}: {reply}",
                self.seed, q.req
            ),
        };
        if q.abandoned {
            // The client gave up on it: what it learns now changes nothing it saw.
            return;
        }
        match &kind {
            None => self.refused += 1,
            Some((_, None)) => self.unknown += 1,
            Some(_) => self.acked += 1,
        }
        if let Some((kind, ret)) = kind {
            self.history[q.req.history(q.key)].push(lincheck::Op {
                client: c as u32,
                call: q.call,
                ret,
                kind,
            });
        }
        self.clients[c].inflight = None;
        self.clients[c].next_at = self.now_ms + self.rng.below(5);
    }

    /// A bank request's reply: an audit's accounts sum to 0 (a transfer is never seen in
    /// part); a transfer applied, refused, or of unknown outcome.
    fn answered_bank(&mut self, q: Request, reply: &str) {
        if q.abandoned {
            return;
        }
        match (q.req, reply.as_bytes()[0]) {
            (Req::Audit, b'*') => match bulk_items(reply) {
                Some(items) if items.len() == ACCOUNTS => {
                    let sum: i64 = items
                        .iter()
                        .map(|v| v.as_ref().map_or(Some(0), |v| v.parse::<i64>().ok()))
                        .sum::<Option<i64>>()
                        .unwrap_or_else(|| {
                            panic!("seed {:#x}: an account holds {reply}", self.seed)
                        });
                    assert!(
                        sum == 0 || self.hostile.is_some(),
                        "seed {:#x}: an audit saw a transfer in part (the accounts sum to {sum}): {reply:?}\n{}",
                        self.seed,
                        self.log.join("\n")
                    );
                    self.audits += 1;
                    self.acked += 1;
                }
                _ if self.hostile.is_some() => self.refused += 1,
                _ => panic!("seed {:#x}: an audit answered {reply:?}", self.seed),
            },
            (Req::Transfer(_), b'*') if reply.starts_with("*2\r\n:") => self.acked += 1,
            (_, b'-') if reply.starts_with("-UNKNOWN") => self.unknown += 1,
            (_, b'-') if reply.starts_with("-TRYAGAIN") || reply.starts_with("-CLUSTERDOWN") => {
                self.refused += 1;
                self.clients[q.client].target = self.pick_member();
            }
            _ if self.hostile.is_some() => self.refused += 1,
            _ => panic!("seed {:#x}: {:?} answered {reply:?}", self.seed, q.req),
        }
        self.clients[q.client].inflight = None;
        self.clients[q.client].next_at = self.now_ms + self.rng.below(5);
    }

    /// A queue request's reply (a `-MOVED` goes through `answered`'s redirect).
    pub(super) fn answered_queue(&mut self, q: Request, reply: &str) {
        let c = q.client;
        let log = &mut self.queues[q.key];
        let outcome = match (q.req, reply.as_bytes()[0]) {
            (Req::Push(v), b':') => {
                log.acked.insert(v);
                Some(true)
            }
            (Req::Push(v), b'-') if reply.starts_with("-UNKNOWN") => {
                log.unknown.insert(v);
                Some(false)
            }
            (Req::Push(v), b'-') if reply.starts_with("-TRYAGAIN") => {
                log.refused.insert(v);
                None
            }
            (Req::Pop, b'*') => {
                // [key, value]
                match reply.split("\r\n").nth(4).and_then(|v| v.parse().ok()) {
                    Some(v) => {
                        log.popped.push(v);
                        Some(true)
                    }
                    None if self.hostile.is_some() => None,
                    None => panic!("seed {:#x}: BLPOP returned {reply}", self.seed),
                }
            }
            (Req::Pop, b'_') => Some(true), // timed out: nothing popped
            (Req::Pop, b'-') if reply.starts_with("-UNKNOWN") => {
                log.lost_pops += 1;
                Some(false)
            }
            (Req::Pop, b'-') if reply.starts_with("-TRYAGAIN") => None,
            _ if self.hostile.is_some() => None,
            _ => panic!(
                "seed {:#x}: unexpected reply to {:?} from node {}: {reply}",
                self.seed, q.req, q.node
            ),
        };
        if q.abandoned {
            return;
        }
        match outcome {
            Some(true) => self.acked += 1,
            Some(false) => self.unknown += 1,
            None => {
                self.refused += 1;
                self.clients[c].target = self.pick_member();
            }
        }
        self.clients[c].inflight = None;
        self.clients[c].next_at = self.now_ms + self.rng.below(5);
    }

    pub(super) fn clients_move(&mut self) {
        for (node, key, rid) in std::mem::take(&mut self.unblocks) {
            if self.paused == Some(node) {
                self.unblocks.push((node, key, rid));
            } else if self.up(node) {
                let job = job_of(&[b"BLPOP", format!("q{key}").as_bytes()], NO_REPLY, |_| {
                    Op::Unblock {
                        origin: 0,
                        token: rid,
                    }
                });
                self.submit_job(node, job);
            }
        }
        if self.clients_stopped && self.requests.is_empty() {
            return;
        }
        // Every request is answered (a node that crashed took its requests with it).
        if let Some((rid, q)) = self.requests.first_key_value() {
            assert!(
                self.now_ms < q.call + ANSWER_WITHIN_MS,
                "seed {:#x}: request {rid} ({q:?}) is still unanswered\n{}",
                self.seed,
                self.log.join("\n")
            );
        }
        for c in 0..self.clients.len() {
            if let Some(rid) = self.clients[c].inflight {
                let q = self.requests[&rid];
                if q.req == Req::Pop && !q.unblocked && self.now_ms >= q.call + BLPOP_TIMEOUT_MS {
                    // The connection's timer: the node ends the wait (answering nil, or what
                    // a try in the log already popped).
                    self.requests.get_mut(&rid).expect("listed").unblocked = true;
                    self.unblocks.push((q.node, q.key, rid));
                }
                // A client gives up after its timeout and tries another node.
                let wait = match q.req {
                    Req::Pop => CLIENT_TIMEOUT_MS * 3,
                    _ => CLIENT_TIMEOUT_MS,
                };
                if self.now_ms >= q.call + wait {
                    self.give_up(rid);
                    self.clients[c].target = self.pick_member();
                }
                continue;
            }
            if self.now_ms < self.clients[c].next_at || self.clients_stopped {
                continue;
            }
            let key = self.rng.below(KEYS as u64) as usize;
            self.next_value += 1;
            let kinds = if self.calvin_pairs { 13 } else { 11 };
            let req = match self.rng.below(kinds) {
                0 | 1 => Req::Set(self.next_value),
                2 | 3 => Req::Get,
                4 => Req::Push(self.next_value),
                5 => Req::Pop,
                6 => Req::TxSet(self.next_value),
                7 => Req::TxGet,
                8 => Req::SetAdd(self.next_value),
                9 => Req::SetPop,
                10 => Req::SetPx(self.next_value),
                11 => Req::Transfer(self.next_value),
                _ => Req::Audit,
            };
            self.send(c, key, req);
        }
    }

    /// Client `c` sends `req` on `key` to its target node.
    pub(super) fn send(&mut self, c: usize, key: usize, req: Req) {
        let mut target = self.clients[c].target;
        if self.paused == Some(target) {
            // Connected, but nothing answers: the client waits to send.
            self.clients[c].next_at = self.now_ms + 1;
            return;
        }
        if !self.up(target) {
            target = self.pick_member();
            self.clients[c].target = target;
            if !self.up(target) || self.paused == Some(target) {
                self.clients[c].next_at = self.now_ms + 10;
                return;
            }
        }
        let (k, q) = (format!("k{key}"), format!("q{key}"));
        let (ta, tb) = self.pair(key);
        let x = format!("x{key}");
        let set = format!("s{key}");
        let members: Vec<String> = match req {
            Req::SetAdd(v) => (0..16).map(|i| format!("m{}", v * 16 + i)).collect(),
            _ => Vec::new(),
        };
        // With pairs across vShards, pops wait on a second, never-pushed list in another
        // vShard of the queue's thread too (a waiter across vShards, `blocked.rs`); with
        // Calvin pairs, in a vShard of another thread, led by any node (each try a Calvin
        // transaction, woken by stand-ins: `calvin/block.rs`).
        let also = if (self.cross_pairs || self.calvin_pairs) && req == Req::Pop {
            self.other_vshard(&q, &format!("w{key}"), self.cross_pairs)
        } else {
            String::new()
        };
        let value = match req {
            Req::Set(v) | Req::Push(v) | Req::TxSet(v) | Req::SetPx(v) => v.to_string(),
            Req::Transfer(v) => (1 + v % 100).to_string(),
            _ => String::new(),
        };
        let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("{{bank{i}}}acct")).collect();
        let (from, to) = match req {
            Req::Transfer(v) => {
                let from = key % ACCOUNTS;
                (from, (from + 1 + v as usize % (ACCOUNTS - 1)) % ACCOUNTS)
            }
            _ => (0, 0),
        };
        let ttl = (50 + self.rng.below(400)).to_string();
        let words: Vec<&[u8]> = match req {
            Req::Set(_) => vec![b"SET", k.as_bytes(), value.as_bytes()],
            Req::Get => vec![b"GET", k.as_bytes()],
            Req::Push(_) => vec![b"RPUSH", q.as_bytes(), value.as_bytes()],
            Req::Pop if !also.is_empty() => vec![b"BLPOP", q.as_bytes(), also.as_bytes(), b"0.3"],
            Req::Pop => vec![b"BLPOP", q.as_bytes(), b"0.3"], // BLPOP_TIMEOUT_MS
            Req::TxSet(_) => vec![
                b"SET",
                ta.as_bytes(),
                value.as_bytes(),
                b"SET",
                tb.as_bytes(),
                value.as_bytes(),
            ],
            Req::TxGet => vec![b"GET", ta.as_bytes(), b"GET", tb.as_bytes()],
            Req::SetPx(_) => vec![
                b"SET",
                x.as_bytes(),
                value.as_bytes(),
                b"PX",
                ttl.as_bytes(),
            ],
            Req::SetAdd(_) => [&b"SADD"[..], set.as_bytes()]
                .into_iter()
                .chain(members.iter().map(|m| m.as_bytes()))
                .collect(),
            Req::SetPop => vec![b"SPOP", set.as_bytes(), b"2"],
            Req::Transfer(_) => vec![
                b"DECRBY",
                accounts[from].as_bytes(),
                value.as_bytes(),
                b"INCRBY",
                accounts[to].as_bytes(),
                value.as_bytes(),
            ],
            Req::Audit => accounts
                .iter()
                .flat_map(|a| [&b"GET"[..], a.as_bytes()])
                .collect(),
        };
        let rid = self.next_request;
        self.next_request += 1;
        // Calvin pairs: half as a MULTI/EXEC, half as an MSET or MGET (split by key).
        let split = self.calvin_pairs && rid % 2 == 0;
        // A third of the pairs as scripts, whose replies are the MULTI/EXEC's in RESP2: in one
        // vShard (`replica/scripts.rs`), or across vShards as Calvin transactions, each
        // participant's leader running it and logging its effects (`calvin::exec::run_script`).
        let script = !self.cross_pairs && rid % 3 == 0 && !split;
        let words: Vec<&[u8]> = match req {
            Req::TxSet(_) if script => vec![
                b"EVAL",
                SET_PAIR.as_bytes(),
                b"2",
                ta.as_bytes(),
                tb.as_bytes(),
                value.as_bytes(),
            ],
            Req::TxGet if script => vec![
                b"EVAL",
                GET_PAIR.as_bytes(),
                b"2",
                ta.as_bytes(),
                tb.as_bytes(),
            ],
            Req::TxSet(_) if split => vec![
                b"MSET",
                ta.as_bytes(),
                value.as_bytes(),
                tb.as_bytes(),
                value.as_bytes(),
            ],
            Req::TxGet if split => vec![b"MGET", ta.as_bytes(), tb.as_bytes()],
            // (Half the audits an MGET split by key, half a MULTI of GETs.)
            Req::Audit if split => [&b"MGET"[..]]
                .into_iter()
                .chain(accounts.iter().map(|a| a.as_bytes()))
                .collect(),
            _ => words,
        };
        let mut job = job_of(&words, rid, |len| match req {
            Req::TxSet(_) | Req::TxGet if script && self.calvin_pairs => Op::Txn {
                cmds: vec![(0, len)],
                exec: false,
                watch: None,
                block: false,
            },
            Req::TxSet(_) | Req::TxGet if script => Op::Cmd {
                first: 0,
                len,
                spec: command::lookup(words[0]),
            },
            Req::Pop if self.calvin_pairs => Op::Txn {
                cmds: vec![(0, len)],
                exec: false,
                watch: None,
                block: true,
            },
            Req::Pop => Op::Block { first: 0, len },
            Req::TxSet(_) | Req::TxGet if split => Op::Txn {
                cmds: vec![(0, len)],
                exec: false,
                watch: None,
                block: false,
            },
            Req::TxSet(_) if self.calvin_pairs => Op::Txn {
                cmds: vec![(0, 3), (3, 3)],
                exec: true,
                watch: None,
                block: false,
            },
            Req::TxGet if self.calvin_pairs => Op::Txn {
                cmds: vec![(0, 2), (2, 2)],
                exec: true,
                watch: None,
                block: false,
            },
            Req::Transfer(_) => Op::Txn {
                cmds: vec![(0, 3), (3, 3)],
                exec: true,
                watch: None,
                block: false,
            },
            Req::Audit if split => Op::Txn {
                cmds: vec![(0, len)],
                exec: false,
                watch: None,
                block: false,
            },
            Req::Audit => Op::Txn {
                cmds: (0..ACCOUNTS as u32).map(|i| (2 * i, 2)).collect(),
                exec: true,
                watch: None,
                block: false,
            },
            Req::TxSet(_) => Op::Exec {
                cmds: vec![(0, 3), (3, 3)],
                watch: None,
            },
            Req::TxGet => Op::Exec {
                cmds: vec![(0, 2), (2, 2)],
                watch: None,
            },
            _ => Op::Cmd {
                first: 0,
                len,
                spec: command::lookup(words[0]),
            },
        });
        if script && matches!(req, Req::TxSet(_) | Req::TxGet) {
            job.proto = Proto::Resp2;
        }
        self.clients[c].inflight = Some(rid);
        self.requests.insert(
            rid,
            Request {
                client: c,
                key,
                req,
                node: target,
                call: self.now_ms,
                abandoned: false,
                unblocked: false,
            },
        );
        self.submit_job(target, job);
    }

    /// The two keys of pair `key`: in one vShard; with `cross_pairs`, in different vShards
    /// owned by one shard thread; with `calvin_pairs`, in different vShards of different
    /// threads where there are several (the first such, so every run names the same).
    pub(super) fn pair(&self, key: usize) -> (String, String) {
        let a = format!("{{t{key}}}a");
        let b = if self.cross_pairs {
            self.other_vshard(&a, &format!("u{key}"), true)
        } else if self.calvin_pairs {
            self.other_vshard(&a, &format!("u{key}"), false)
        } else {
            format!("{{t{key}}}b")
        };
        (a, b)
    }

    /// A key (`{<tag>.<i>}b`) in another vShard than `a`'s: on the same shard thread
    /// (`same_thread`), else on another one if there are several.
    fn other_vshard(&self, a: &str, tag: &str, same_thread: bool) -> String {
        let c = &self.nodes[0].c;
        let at = |k: &str| {
            let v = c
                .layout
                .vshard_of(shardline_shards::slot::key_slot(k.as_bytes()));
            (v, c.layout.owner_thread(v, c.threads))
        };
        let (va, ta) = at(a);
        (0..)
            .map(|i| format!("{{{tag}.{i}}}b"))
            .find(|b| {
                let (vb, tb) = at(b);
                vb != va && (tb == ta) == (same_thread || c.threads == 1)
            })
            .expect("another vShard")
    }

    /// Hands `job` (its key second) to the shard thread of node `node` that owns the key, as
    /// the connection layer does, and takes the replies it finished at once.
    pub(super) fn submit_job(&mut self, node: NodeId, job: Job) {
        // (A script's first key is its fourth word.)
        let at = if job.buf.starts_with(b"EVAL") { 3 } else { 1 };
        let key = &job.buf[job.spans[at].0 as usize..job.spans[at].1 as usize];
        let c = &self.nodes[0].c;
        let t = c.thread_of(c.layout.vshard_of(shardline_shards::slot::key_slot(key)).0 as u32);
        self.submit_on(node, t, job);
    }

    /// Hands `job` to shard thread `t` of node `node` and takes the replies it finished at
    /// once.
    pub(super) fn submit_on(&mut self, node: NodeId, t: usize, job: Job) {
        let now = self.now();
        let seed = self.rng.next_u64();
        let n = &mut self.nodes[node.slot()].threads[t];
        let r = n.r.as_mut().expect("up");
        if r.script_gates(&job) {
            // Behind a script that waits for its vShard to settle (`scripts.rs`), as
            // `Shard::run_job_replicated` defers it (`step_thread` runs them again).
            r.script_deferred.push_back(job);
            return;
        }
        if r.calvin_blocks(&job) {
            // Keys a transaction holds: run once one executed, as `Shard::run_job_replicated`
            // defers it (`step_thread` runs them again), with its place in their queues.
            let mut job = job;
            r.calvin_place(&mut job);
            r.calvin.deferred.push_back(job);
            return;
        }
        // A read served by read-index runs here at once, as `Shard::run_op_in` runs it.
        let mut rng = Rng::new(seed);
        let mut local = |db: &mut Db, op: &Op, o: &mut Out| {
            let Op::Local { first, len } = op else {
                return o.error("ERR not simulated");
            };
            let args = Args::new(
                &job.buf,
                &job.spans[*first as usize..(*first + *len) as usize],
            );
            let mut ctx = command::Ctx {
                now_ms: now.unix_us / 1000,
                now_us: now.unix_us,
                rng: &mut rng,
            };
            let spec = command::lookup(args.get(0)).expect("a command");
            command::apply(spec, db, args, &mut ctx, o);
        };
        let plan = r.plan_job(&mut n.db, &job, now, seed, &mut local);
        r.submit(&mut n.db, plan, now, seed);
        r.calvin_ran(&job);
        let done: Vec<PendingJob> = r.pending.take_finished().collect();
        for job in done {
            if job.token != NO_REPLY {
                self.answered(node, job);
            }
        }
    }
}

/// A job of one op, `op(words)`, over `words`, answered to `token`.
pub(super) fn job_of(words: &[&[u8]], token: u64, op: impl FnOnce(u32) -> Op) -> Job {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for w in words {
        let s = buf.len() as u32;
        buf.extend_from_slice(w);
        spans.push((s, buf.len() as u32));
    }
    Job {
        origin: 0,
        token,
        proto: Proto::Resp3,
        buf,
        spans,
        ops: vec![op(words.len() as u32)],
        calvin_place: None,
        user: None,
    }
}

/// A pair written by a script (`Req::TxSet`): both keys in one entry of effects.
const SET_PAIR: &str =
    "return {redis.call('set', KEYS[1], ARGV[1]), redis.call('set', KEYS[2], ARGV[1])}";
/// A pair read by a script (`Req::TxGet`).
const GET_PAIR: &str = "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}";

/// The items of a RESP array of bulk strings or nulls (`None` if `reply` is not one).
fn bulk_items(reply: &str) -> Option<Vec<Option<String>>> {
    let mut lines = reply.split("\r\n");
    let n: usize = lines.next()?.strip_prefix('*')?.parse().ok()?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let head = lines.next()?;
        if head == "_" || head == "$-1" {
            items.push(None);
        } else {
            head.strip_prefix('$')?;
            items.push(Some(lines.next()?.to_string()));
        }
    }
    Some(items)
}
