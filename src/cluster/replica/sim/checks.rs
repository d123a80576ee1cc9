//! What the simulation checks once the faults stop: the cluster settles, every key and pair
//! reads back linearizably, replicas hold the same, queues lost and duplicated nothing.

use super::*;

impl Sim {
    /// Why the cluster is not settled yet (`None`: it is): no membership change is under
    /// way (a node asked to leave has left); every member names the same leader for every
    /// vShard, that node leads it, its replicas are where the metadata places them (no
    /// learner, no replica left on a node it was moved off), and every replica has applied
    /// all it committed.
    pub(super) fn unsettled(&self) -> Option<String> {
        if let Some(a) = &self.admin {
            return Some(format!("{:?} of node {} is under way", a.op, a.node));
        }
        // Every running member holds every other alive (a healed partition's verdicts
        // refuted, a restarted node's death outranked by its new incarnation).
        let running: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|&id| self.up(id))
            .collect();
        for &id in &running {
            for &p in &running {
                if let Some((state, inc)) = self.swim_state(id, p)
                    && matches!(
                        state,
                        shardline_shards::swim::State::Dead | shardline_shards::swim::State::Left
                    )
                {
                    return Some(format!(
                        "node {id}'s SWIM holds node {p} {state:?} at {inc}"
                    ));
                }
            }
        }
        if let Some(id) = self.leaving {
            let n = &self.nodes[id.slot()];
            let why = match n.threads[0].r.as_ref() {
                None => "it is down".to_string(),
                Some(r) => format!(
                    "metadata {}, leaving {}, replicas hosted {:?}, out of the metadata group {}; its metadata replica and the others: {:?}",
                    if r.meta.is_some() { "known" } else { "not known yet" },
                    n.c.leaving.load(std::sync::atomic::Ordering::Relaxed),
                    n.c.hosted
                        .iter()
                        .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
                        .collect::<Vec<_>>(),
                    r.out_of_meta(),
                    self.members()
                        .into_iter()
                        .filter_map(|m| {
                            let r = self.nodes[m.slot()].threads[0].r.as_ref()?;
                            let g = r.groups[r.meta_g as usize].as_ref()?;
                            Some(format!(
                                "node {m}: {:?} term {} commit {} applied {} conf {} {:?} progress of {id}: {:?}; removal notice {:?}",
                                g.role(),
                                g.term(),
                                g.commit_index(),
                                r.applied[r.meta_g as usize].index,
                                g.conf_index(),
                                g.membership(),
                                g.progress(id),
                                r.meta_removed
                            ))
                        })
                        .collect::<Vec<_>>()
                ),
            };
            return Some(format!(
                "node {id} has not left yet: {why} links {:?}",
                self.links
            ));
        }
        let members = self.members();
        let c = &self.nodes[0].c;
        for v in 0..c.layout.count() {
            let v = VShardId(v as u16);
            let t = c.thread_of(v.0 as u32);
            let named: Vec<NodeId> = members
                .iter()
                .map(|&id| self.nodes[id.slot()].c.leader(v))
                .collect();
            let l = named[0];
            let group = |id: NodeId| {
                self.nodes[id.slot()].threads[t]
                    .r
                    .as_ref()
                    .and_then(|r| r.groups[v.0 as usize].as_ref())
            };
            let leads = l != NodeId(0) && group(l).is_some_and(|g| g.role() == raft::Role::Leader);
            if !leads || named.iter().any(|&x| x != l) {
                return Some(format!(
                    "vShard {} is routed to {named:?} by {members:?}\n{}",
                    v.0,
                    self.views(v)
                ));
            }
            let m = group(l).expect("leads").membership();
            let target = self.nodes[l.slot()].c.target_mask(v);
            if !m.learners.is_empty()
                || super::super::super::mask(m.voters.iter().copied()) != target
            {
                return Some(format!(
                    "vShard {}'s voters are {:?} (learners {:?}), not where the metadata places them ({target:#b})\n{}",
                    v.0,
                    m.voters,
                    m.learners,
                    self.views(v)
                ));
            }
            for &id in &members {
                if group(id).is_some() && !m.is_voter(id) {
                    return Some(format!(
                        "node {id} still holds a replica of vShard {} (voters {:?})\n{}",
                        v.0,
                        m.voters,
                        self.views(v)
                    ));
                }
            }
            let commit = group(l).expect("leads").commit_index();
            if commit != group(l).expect("leads").last_id().index {
                // Its own entries not committed yet (a leader just elected: its no-op).
                return Some(format!(
                    "vShard {}'s leader has not committed its log\n{}",
                    v.0,
                    self.views(v)
                ));
            }
            for id in self.ids() {
                if let Some(g) = group(id)
                    && (g.commit_index() != commit
                        || self.nodes[id.slot()].threads[t]
                            .r
                            .as_ref()
                            .is_some_and(|r| r.applied[v.0 as usize].index != commit))
                {
                    return Some(format!(
                        "node {id}'s replica of vShard {} is behind its leader's commit {commit}\n{}",
                        v.0,
                        self.views(v)
                    ));
                }
            }
        }
        None
    }

    /// What each member knows of vShard `v` and of the cluster, and the connections: a
    /// settle failure's report.
    fn views(&self, v: VShardId) -> String {
        let t = self.nodes[0].c.thread_of(v.0 as u32);
        let mut out = String::new();
        for id in self.members() {
            let n = &self.nodes[id.slot()];
            let state = |r: &Replicas, g: u32| {
                r.groups[g as usize].as_ref().map(|grp| {
                    let m = grp.membership();
                    let progress: Vec<(NodeId, Option<u64>)> = m
                        .voters
                        .iter()
                        .chain(&m.learners)
                        .map(|&p| (p, grp.progress(p)))
                        .collect();
                    format!(
                        "{:?} term {} leader {:?} commit {} applied {} last {:?} {m:?} matched {progress:?} quiet {}",
                        grp.role(),
                        grp.term(),
                        grp.leader(),
                        grp.commit_index(),
                        r.applied[g as usize].index,
                        grp.last_id(),
                        grp.is_quiet()
                    )
                })
            };
            let replica = n.threads[t].r.as_ref().and_then(|r| state(r, v.0 as u32));
            let meta = n.threads[0].r.as_ref().and_then(|r| state(r, r.meta_g));
            out.push_str(&format!(
                "  node {id}: members {:?}, routes to {}, places it on {:?}, up {:?}; replica {replica:?}; metadata replica {meta:?}\n",
                n.c.member_ids(),
                n.c.leader(v),
                n.c.target(v),
                self.members()
                    .into_iter()
                    .filter(|&p| n.c.is_up(p))
                    .collect::<Vec<_>>()
            ));
        }
        out.push_str(&format!("  connections {:?}", self.links));
        out
    }

    /// Runs `words` on node `id`'s replica of the key (its second word) as it stands, outside
    /// the log: what that replica holds.
    pub(super) fn read_replica(&mut self, id: NodeId, words: &[&[u8]]) -> Vec<u8> {
        let c = self.nodes[id.slot()].c.clone();
        let v = c
            .layout
            .vshard_of(shardline_shards::slot::key_slot(words[1]));
        let th = &mut self.nodes[id.slot()].threads[c.thread_of(v.0 as u32)];
        let mut out = Out::new(Proto::Resp3);
        let job = job_of(words, 0, |_| Op::Stats);
        let args = Args::new(&job.buf, &job.spans);
        let mut rng = Rng::new(1);
        let mut ctx = command::Ctx {
            now_ms: UNIX_START_US / 1000 + self.now_ms,
            now_us: UNIX_START_US + self.now_ms * 1000,
            rng: &mut rng,
        };
        let spec = command::lookup(words[0]).expect("a command");
        command::apply(spec, &mut th.db, args, &mut ctx, &mut out);
        if words[0] == b"SMEMBERS" {
            // In the replica's table order, which is its own: compared sorted.
            let text = String::from_utf8_lossy(&out.buf).into_owned();
            let mut members: Vec<&str> = text
                .split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty() && !l.starts_with('$'))
                .collect();
            members.sort_unstable();
            return members.join(",").into_bytes();
        }
        out.buf
    }

    /// Once quiet: every replica of every key holds the same (they applied the same log), and
    /// every queue lost and duplicated nothing: each value acknowledged pushed is still there
    /// or was popped (at most once), except as many as pops whose outcome is unknown; nothing
    /// refused or never pushed shows up.
    pub(super) fn check_replicas_and_queues(&mut self) {
        for key in 0..KEYS {
            let (k, q, x) = (format!("k{key}"), format!("q{key}"), format!("x{key}"));
            let s = format!("s{key}");
            for words in [
                vec![&b"GET"[..], k.as_bytes()],
                vec![&b"GET"[..], x.as_bytes()],
                vec![&b"LRANGE"[..], q.as_bytes(), b"0", b"-1"],
                vec![&b"SMEMBERS"[..], s.as_bytes()],
            ] {
                let v = self.nodes[0]
                    .c
                    .layout
                    .vshard_of(shardline_shards::slot::key_slot(words[1]));
                let holders: Vec<NodeId> = self
                    .ids()
                    .filter(|&id| {
                        let t = self.nodes[0].c.thread_of(v.0 as u32);
                        self.nodes[id.slot()].threads[t]
                            .r
                            .as_ref()
                            .is_some_and(|r| r.groups[v.0 as usize].is_some())
                    })
                    .collect();
                let seen: Vec<Vec<u8>> = holders
                    .iter()
                    .map(|&id| self.read_replica(id, &words))
                    .collect();
                let t = self.nodes[0].c.thread_of(v.0 as u32);
                let states: Vec<String> = holders
                    .iter()
                    .map(|&id| {
                        let r = self.nodes[id.slot()].threads[t].r.as_ref().expect("up");
                        let g = r.groups[v.0 as usize].as_ref().expect("held");
                        format!(
                            "node {id}: {:?} quiet {} term {} commit {} applied {:?} last {:?}",
                            g.role(),
                            g.is_quiet(),
                            g.term(),
                            g.commit_index(),
                            r.applied[v.0 as usize],
                            g.last_id()
                        )
                    })
                    .collect();
                assert!(
                    seen.windows(2).all(|w| w[0] == w[1]),
                    "seed {:#x}: the replicas on {holders:?} of {} differ: {:?}\n{states:#?}\n{}",
                    self.seed,
                    String::from_utf8_lossy(words[1]),
                    seen.iter()
                        .map(|b| String::from_utf8_lossy(b))
                        .collect::<Vec<_>>(),
                    self.log.join("\n")
                );
            }
            let leader = self.nodes[self.members()[0].slot()].c.leader(
                self.nodes[0]
                    .c
                    .layout
                    .vshard_of(shardline_shards::slot::key_slot(q.as_bytes())),
            );
            let list = self.read_replica(leader, &[b"LRANGE", q.as_bytes(), b"0", b"-1"]);
            let list = String::from_utf8_lossy(&list).into_owned();
            let remaining: Vec<u64> = list
                .split("\r\n")
                .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
                .map(|l| l.parse().expect("a value we pushed"))
                .collect();
            let log = &self.queues[key];
            let mut seen = BTreeSet::new();
            for &v in remaining.iter().chain(&log.popped) {
                assert!(
                    seen.insert(v),
                    "seed {:#x}: q{key}: value {v} popped twice or popped and still there",
                    self.seed
                );
                assert!(
                    log.acked.contains(&v) || log.unknown.contains(&v),
                    "seed {:#x}: q{key}: value {v} is there but was {}",
                    self.seed,
                    if log.refused.contains(&v) {
                        "refused (not applied)"
                    } else {
                        "never pushed"
                    }
                );
            }
            let missing = log.acked.iter().filter(|v| !seen.contains(v)).count() as u64;
            assert!(
                missing <= log.lost_pops,
                "seed {:#x}: q{key}: {missing} acknowledged values gone, only {} pops unaccounted for\n{}",
                self.seed,
                log.lost_pops,
                self.log.join("\n")
            );
            self.queue_stats.0 += log.acked.len() as u64;
            self.queue_stats.1 += log.popped.len() as u64;
        }
    }

    /// Runs until the cluster is settled (`unsettled`), at most `SETTLE_MS` after `after`.
    fn settle(&mut self, after: &str) {
        let mut waited = 0;
        while let Some(why) = self.unsettled() {
            waited += 1;
            assert!(
                waited < SETTLE_MS,
                "seed {:#x}: not settled {SETTLE_MS} ms after {after}: {why}\n{}",
                self.seed,
                self.log.join("\n")
            );
            self.tick();
        }
    }

    /// What the cluster holds of every key the clients used (but the expiring ones), read on
    /// each key's leader.
    fn contents(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for key in 0..KEYS {
            let (k, q, s) = (format!("k{key}"), format!("q{key}"), format!("s{key}"));
            let (ta, tb) = self.pair(key);
            for words in [
                vec![&b"GET"[..], k.as_bytes()],
                vec![&b"GET"[..], ta.as_bytes()],
                vec![&b"GET"[..], tb.as_bytes()],
                vec![&b"LRANGE"[..], q.as_bytes(), b"0", b"-1"],
                vec![&b"SMEMBERS"[..], s.as_bytes()],
            ] {
                let v = self.nodes[0]
                    .c
                    .layout
                    .vshard_of(shardline_shards::slot::key_slot(words[1]));
                let leader = self.nodes[self.members()[0].slot()].c.leader(v);
                out.push(self.read_replica(leader, &words));
            }
        }
        out
    }

    /// Every node restarts at once (a power cut of the whole cluster, processes killed): the
    /// cluster settles again and holds what it held.
    fn restart_everything(&mut self) {
        let before = self.contents();
        let members = self.members();
        for &id in &members {
            self.crash(id);
        }
        self.note("every node restarts".into());
        for &id in &members {
            self.start(id);
        }
        self.settle("every node restarted");
        let after = self.contents();
        let changed: Vec<String> = before
            .iter()
            .zip(&after)
            .enumerate()
            .filter(|(_, (b, a))| b != a)
            .map(|(i, (b, a))| {
                format!(
                    "item {i}: {:?} became {:?}",
                    String::from_utf8_lossy(b),
                    String::from_utf8_lossy(a)
                )
            })
            .collect();
        assert!(
            changed.is_empty(),
            "seed {:#x}: a restart of every node changed what the cluster holds: {changed:#?}\n{}\n{}",
            self.seed,
            (0..self.nodes[0].c.layout.count())
                .map(|v| format!("vShard {v}:\n{}", self.views(VShardId(v as u16))))
                .collect::<Vec<_>>()
                .join("\n"),
            self.log.join("\n")
        );
        self.check_replicas_and_queues();
    }

    /// After `finish`: every move (an operator's, a drain's) closes and every group's voters
    /// are where the metadata places them, on every member's view, within 30 s of quiet.
    pub(super) fn check_moves_settled(&mut self) {
        for waited in 0.. {
            let unsettled: Vec<String> = self
                .members()
                .into_iter()
                .filter(|&id| self.up(id))
                .filter_map(|id| {
                    let c = &self.nodes[id.slot()].c;
                    let off: Vec<u16> = (0..c.meta_group() as u16)
                        .filter(|&v| {
                            let v = VShardId(v);
                            c.replica_mask(v) != c.target_mask(v)
                        })
                        .collect();
                    (c.moves_open() > 0 || !off.is_empty()).then(|| {
                        format!(
                            "node {id}: {} moves open, vShards not in place {off:?}",
                            c.moves_open()
                        )
                    })
                })
                .collect();
            if unsettled.is_empty() {
                return;
            }
            assert!(
                waited < 30_000,
                "seed {:#x}: moves not settled: {unsettled:?}\n{}",
                self.seed,
                self.log.join("\n")
            );
            self.tick();
        }
    }

    /// Lets the cluster settle, then reads every key until a read succeeds, and checks the
    /// histories and that every node hears every other.
    pub(super) fn finish(&mut self) {
        self.note("faults stop".into());
        for _ in 0..5_000 {
            self.tick();
        }
        // No new requests; every one sent is answered (`clients_move` bounds the wait).
        self.clients_stopped = true;
        while !self.requests.is_empty() {
            self.tick();
        }
        // Read every key and pair back.
        for (key, req) in (0..KEYS)
            .map(|k| (k, Req::Get))
            .chain((0..KEYS).map(|k| (k, Req::TxGet)))
        {
            let mut tries = 0;
            loop {
                let h = req.history(key);
                let before = self.history[h].len();
                self.send(0, key, req);
                while self.clients[0].inflight.is_some() {
                    self.tick();
                }
                if self.history[h].len() > before {
                    break;
                }
                tries += 1;
                assert!(
                    tries < 50,
                    "seed {:#x}: key {key} cannot be read",
                    self.seed
                );
                for _ in 0..20 {
                    self.tick();
                }
            }
        }
        for key in 0..2 * KEYS {
            if let Err(e) = lincheck::check_register(&self.history[key]) {
                panic!(
                    "seed {:#x}: register {key} is not linearizable: {e}\n{}",
                    self.seed,
                    self.log.join("\n")
                );
            }
        }
        // Leadership may still move (handovers to the preferred replicas) and followers learn
        // the last commit index from the leader's next heartbeat: wait, boundedly, for every
        // vShard to be routed alike everywhere to a leader that every replica has caught up
        // with.
        self.settle("the faults stopped");
        self.check_replicas_and_queues();
        self.restart_everything();
        let elections: usize = self.leaders.iter().map(BTreeMap::len).sum();
        eprintln!(
            "sim seed {:#x}: {} ms, {} acknowledged, {} refused, {} unknown, {} leader terms, SWIM deaths declared: {}, {} pushed and {} popped, faults: {}, connection resets: {}, power cuts: {}, snapshot files written behind: {} (lost to crashes: {}), bulk lane bytes: {} (copies installed as they were decoded: {}), compactions from captures: {} (steps with one under way: {})",
            self.seed,
            self.now_ms,
            self.acked,
            self.refused,
            self.unknown,
            elections,
            self.swim_deaths,
            self.queue_stats.0,
            self.queue_stats.1,
            self.log.len(),
            self.resets,
            self.power_cuts,
            self.behind_written,
            self.behind_lost,
            self.lane_bytes_sent,
            self.streamed_in,
            self.captures,
            self.capture_steps
        );
        // A quorum was there all along: the clients got work done.
        assert!(
            self.acked > self.now_ms / 50,
            "seed {:#x}: only {} requests acknowledged in {} ms\n{}",
            self.seed,
            self.acked,
            self.now_ms,
            self.log.join("\n")
        );
        let members = self.members();
        for &id in &members {
            for &p in &members {
                assert!(
                    self.nodes[id.slot()].c.is_up(p),
                    "seed {:#x}: node {id} takes node {p} for down after the faults stopped\n{}\n{}",
                    self.seed,
                    self.views(VShardId(0)),
                    self.log.join("\n")
                );
            }
        }
    }
}
