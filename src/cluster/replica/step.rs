//! The driver step (see the parent module): `start_step`, the log flush, `finish_step`, and the
//! task that loops over them.

use super::*;

impl Shard {
    /// A step's first half on this thread's replicas; the jobs it finished go out at once.
    fn start_step(&self) -> Result<Step, Fatal> {
        let mut guard = self.repl.borrow_mut();
        let r = guard.as_mut().expect("replicated");
        let fsync = crate::config::fsync_of_code(self.node.live.get(|l| &l.fsync));
        if fsync != r.wal.fsync() {
            r.wal.set_fsync(fsync);
        }
        // The node's cap on copies, shared evenly by its threads (set when CONFIG SET moved it).
        let rate = self
            .node
            .live
            .get(|l| &l.bulk_max_bytes_per_sec)
            .div_ceil(self.node.threads as u64);
        if rate != r.hub.rate() {
            let now_ms = r.hub_now_ms(Instant::now());
            r.hub.set_rate(rate, now_ms);
        }
        let share = self.node.live.get(|l| &l.bulk_thread_share);
        if share != r.lane_io.share.pct() {
            r.lane_io.share.set_pct(share);
        }
        if self.id == 0 {
            let live = &self.node.live;
            r.rebalance_cfg = super::load::RebalanceConfig {
                on: live.get(|l| &l.cluster_rebalance) != 0,
                period: Duration::from_millis(live.get(|l| &l.cluster_rebalance_period_ms)),
                max_open: live.get(|l| &l.cluster_rebalance_moves) as usize,
            };
        }
        let step = r.start_step(
            &mut self.db.borrow_mut(),
            Instant::now(),
            unix_now_us() / 1000,
        );
        r.undirect();
        self.deliver_finished(r);
        step
    }

    /// A step's second half; then the jobs it finished, keyspace events and woken waiters.
    fn finish_step(&self, readies: Vec<(u32, Ready)>) -> Result<(), Fatal> {
        {
            let mut guard = self.repl.borrow_mut();
            let r = guard.as_mut().expect("replicated");
            let res = r.finish_step(&mut self.db.borrow_mut(), Instant::now(), readies);
            r.undirect();
            let mut db = self.db.borrow_mut();
            if db.tunables.maxmemory > 0 {
                r.evict_background(&mut db, unix_now_us());
            }
            drop(db);
            // The dialers first: the appends they carry are the next commit's critical path,
            // and woken tasks run in order (woken after the connections, SET p1 lost 15%).
            self.wake_dialers(r);
            self.deliver_finished(r);
            res?;
        }
        self.flush_events();
        self.serve_ready();
        self.run_deferred();
        self.run_script_waits();
        Ok(())
    }

    /// Runs again the jobs that waited for keys transactions held, once one executed here
    /// (in arrival order; those still blocked wait again).
    fn run_deferred(&self) {
        let jobs = self.with_replicas(|r| {
            if !std::mem::take(&mut r.calvin.released) {
                return std::collections::VecDeque::new();
            }
            std::mem::take(&mut r.calvin.deferred)
        });
        for job in jobs {
            self.run_job_replicated(job);
        }
    }
}

impl Replicas {
    /// The first half of a driver step (see the module documentation): everything up to the
    /// log batch that must be on disk before the step's messages go out. `wall_ms` stamps the
    /// batch's records.
    pub(super) fn start_step(
        &mut self,
        db: &mut Db,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Step, Fatal> {
        let c = Arc::clone(&self.c);
        let r = self;
        r.undirect();
        if !r.to_drop.is_empty() {
            r.drop_removed(db);
        }
        // Before anything of the step: here a direct group's keyspace holds its whole log.
        r.direct_cuts(db);
        // Ops across vShards: each one's entries as one record, before the groups' own.
        r.write_units()?;
        // Copies the bulk lanes completed, installed before the messages that follow them.
        r.hub_installs();
        for (g, from, msg) in std::mem::take(&mut r.incoming) {
            if let Some(grp) = r.groups[g as usize].as_mut() {
                grp.step(from, msg);
                r.touch(g);
            }
        }
        if now.duration_since(r.last_tick) >= TICK {
            r.last_tick = now;
            for v in 0..r.groups.len() {
                if let Some(g) = r.groups[v].as_mut()
                    && !g.is_quiet()
                {
                    g.tick();
                    r.touch(v as u32);
                }
            }
            r.follow_liveness();
            let timeout = Duration::from_millis(c.node_timeout_ms);
            for p in (0..r.peers.len()).map(NodeId::of_slot) {
                if p != c.me
                    && r.peers[p.slot()]
                        .heard
                        .is_some_and(|h| now.duration_since(h) > timeout)
                {
                    tracing::info!(peer = %p, "peer silent for cluster-node-timeout-ms");
                    r.peer_down(p);
                }
            }
            // Groups that write too rarely to compact on their own must not keep old log
            // segments alive: once the log has more than a few, compact them (one per step).
            if r.to_compact.is_empty() {
                r.to_compact = r.wal.pinning_oldest(MAX_SEGMENTS);
            }
            // Proposals and read rounds no quorum answered in time (a cut-off leader).
            r.pending.expire(now, PROPOSAL_TIMEOUT);
            r.settle_blocks();
            r.hub_tick(now);
        }
        // Persist every touched group's Ready, then one flush for all of them.
        let mut readies = std::mem::take(&mut r.readies_buf);
        debug_assert!(readies.is_empty());
        let mut dirty = std::mem::take(&mut r.dirty);
        for &g in &dirty {
            r.is_dirty[g as usize] = false;
            // The snapshot it wants (or no longer does), for the bulk hub.
            r.hub_want(g, now);
            let Some(grp) = r.groups[g as usize].as_mut() else {
                continue;
            };
            // One read-index round for every read of this group in this step.
            r.pending.start_round(
                g,
                now,
                |id| grp.read_index(id),
                |slot, e| c.redirect(slot, e.leader),
            );
            let mut ready = r.free_readies.pop().unwrap_or_default();
            grp.take_ready_into(&mut ready);
            for &(id, _) in &ready.reads {
                r.pending.round_confirmed(id);
            }
            for &id in &ready.failed_reads {
                r.pending.round_failed(id);
            }
            if let Some(snap) = &ready.snapshot {
                // A copy decoded as it came (`staging.rs`): its vShard and its file.
                let staged = match r.staged.remove(&g) {
                    Some(s) if snap.staged && s.last == snap.last => Some(s),
                    _ if snap.staged => {
                        return Err(Fatal::SnapshotInstall {
                            group: g,
                            offset: 0,
                            reason: "a staged snapshot that is not here".into(),
                        });
                    }
                    _ => None,
                };
                // Stored by the flush thread before this step's batch, which records the
                // install: nothing of the step goes out before both are on disk.
                r.before_flush.push(SnapshotFile {
                    group: g,
                    last: snap.last,
                    blob: snap.blob.clone(),
                    kind: SnapshotKind::Received,
                    staged: staged.as_ref().map(|s| s.path.clone()),
                });
                let installed = match staged {
                    Some(s) => install_decoded(db, s.decoded.vshard).map(|()| s.decoded.clock_us),
                    None if g == r.meta_g => r.install_meta(&snap.state),
                    None => install(db, &snap.state),
                };
                match installed {
                    Ok(clock) => {
                        tracing::info!(
                            vshard = g,
                            index = snap.last.index,
                            bytes = r.groups[g as usize]
                                .as_ref()
                                .map_or(0, |x| x.snapshot_total()),
                            "installed a snapshot from the leader"
                        );
                        r.clocks[g as usize] = clock;
                        r.applied[g as usize] = snap.last;
                        if g != r.meta_g
                            && let Some(grp) = r.groups[g as usize].as_mut()
                        {
                            // Its file (written before this step's batch) holds it now.
                            grp.release_snapshot_blob();
                        }
                        r.log_bytes_total -= std::mem::take(&mut r.log_bytes[g as usize]);
                    }
                    Err(e) => {
                        return Err(Fatal::SnapshotInstall {
                            group: g,
                            offset: e.offset,
                            reason: e.reason.to_string(),
                        });
                    }
                }
            }
            if let Some(p) = ready.purge
                && r.purge_waits_for_file(g, p)
            {
                // A compaction whose file is still to be written: purged once it is.
                ready.purge = None;
            }
            storage::persist(&mut r.wal, g, &ready)
                .map_err(|e| Fatal::LogAppend(format!("{e:?}")))?;
            let added: usize = ready
                .entries
                .iter()
                .map(|e| e.data.len() + super::ENTRY_OVERHEAD_BYTES)
                .sum();
            r.log_bytes[g as usize] += added;
            r.log_bytes_total += added;
            readies.push((g, ready));
        }
        if r.dirty.is_empty() {
            // Kept for the next step's touches (none came during this loop).
            dirty.clear();
            r.dirty = dirty;
        }
        r.wal.flush(0);
        let batch = r.wal.take_batch(wall_ms);
        r.direct_batch_taken();
        let before = snapshot_writes(&r.snap_dir, std::mem::take(&mut r.before_flush));
        Ok(Step {
            readies,
            batch,
            before,
            behind: r.take_behind(),
        })
    }

    /// The second half of a driver step, once its log batch is on disk: send, apply, answer.
    pub(super) fn finish_step(
        &mut self,
        db: &mut Db,
        now: Instant,
        readies: Vec<(u32, Ready)>,
    ) -> Result<(), Fatal> {
        let c = Arc::clone(&self.c);
        let r = self;
        r.undirect();
        // Send, now that what the messages promise is on disk.
        r.payloads.clear();
        for (g, ready) in &readies {
            for env in &ready.messages {
                if let Msg::SnapshotOffer { term, last, total } = env.msg {
                    // Its bytes go by the bulk lane; the offer itself on the bus.
                    r.hub_offer(env.to, *g, term, last, total, now);
                }
                let start = r.payloads.len();
                codec::encode(&env.msg, &mut r.payloads);
                let end = r.payloads.len();
                if let Some(q) = r.per_peer.get_mut(env.to.slot()) {
                    q.push((*g, start, end));
                }
            }
        }
        for p in 0..r.per_peer.len() {
            if r.per_peer[p].is_empty() {
                continue;
            }
            let q = std::mem::take(&mut r.per_peer[p]);
            let msgs: Vec<Message> = q
                .iter()
                .map(|&(group, s, e)| Message {
                    group,
                    payload: &r.payloads[s..e],
                })
                .collect();
            let peer = &mut r.peers[p];
            if peer.out.len() < OUTBOX_MAX {
                if peer.out.is_empty() {
                    r.out_ready.push(NodeId::of_slot(p));
                }
                frame::encode_batch(&msgs, &mut peer.out);
            }
            drop(msgs);
            let mut q = q;
            q.clear();
            r.per_peer[p] = q;
        }
        // Apply what is committed, answering the proposals that wait on it.
        {
            let mut out = Out::new(Proto::Resp2);
            let mut ends = Vec::new();
            for (g, ready) in &readies {
                for e in &ready.committed {
                    let w = r.pending.applied(*g, e.index, e.term);
                    let proto = w
                        .as_ref()
                        .and_then(|w| r.pending.job(w.job))
                        .map_or(Proto::Resp2, |j| j.proto);
                    out.buf.clear();
                    out.proto = proto;
                    ends.clear();
                    let res = if r.committed_direct(*g, e.index) {
                        // Applied when appended (`direct.rs`); no proposal waits on it.
                        debug_assert!(w.is_none(), "direct entries have no waiters");
                        r.applied[*g as usize] = LogId {
                            term: e.term,
                            index: e.index,
                        };
                        continue;
                    } else if *g == r.meta_g {
                        r.apply_meta(&e.data, &mut out, &mut ends)
                            .map_err(|reason| Fatal::Meta {
                                index: e.index,
                                reason,
                            })?;
                        Ok(())
                    } else {
                        // A transaction across vShards (`calvin/`) answers its origin, in
                        // the origin's protocol.
                        let calvin = replicate::is_execute(&e.data);
                        if calvin {
                            out.proto = r.calvin_proto(*g, &e.data);
                        }
                        let t = r.meter.start();
                        let res = replicate::apply(
                            db,
                            &e.data,
                            &mut r.clocks[*g as usize],
                            &mut out,
                            &mut ends,
                            &mut r.scratch,
                        );
                        r.meter.ran(*g, t);
                        if calvin && res.is_ok() {
                            r.calvin_applied(db, (*g, &e.data), &out.buf, now);
                        }
                        res.map_err(|e| e.to_string())
                    };
                    if let Err(reason) = res {
                        // Every replica holds the same committed bytes and skips them alike
                        // (the state stays the same everywhere): a member's damaged or forged
                        // entry must not stop the node. Our own proposals always decode.
                        tracing::error!(
                            vshard = *g,
                            index = e.index,
                            "a committed entry does not decode ({reason}); skipped"
                        );
                        out.buf.clear();
                        ends.clear();
                    }
                    r.applied[*g as usize] = LogId {
                        term: e.term,
                        index: e.index,
                    };
                    if e.is_config() {
                        r.conf_applied(*g, e.index, &e.data);
                    }
                    let Some(w) = w else { continue };
                    if w.held {
                        // A script's effects (`scripts.rs`): its reply was held until now.
                        if ends.is_empty() {
                            r.pending.fail_waiter(w, SKIPPED);
                        } else {
                            for &op in w.ops.as_slice() {
                                r.pending.release(w.job, op);
                            }
                        }
                        continue;
                    }
                    if ends.len() < w.ops.as_slice().len() {
                        // Skipped, or it answers fewer ops than were proposed: not ours.
                        r.pending.fail_waiter(w, SKIPPED);
                        continue;
                    }
                    if let Some(id) = w.block {
                        let reply = &out.buf[..ends[0] as usize];
                        r.block_tried(id, reply, db);
                        continue;
                    }
                    for (k, &op) in w.ops.as_slice().iter().enumerate() {
                        let start = if k == 0 { 0 } else { ends[k - 1] as usize };
                        r.pending.fill(w.job, op, &out.buf[start..ends[k] as usize]);
                    }
                }
            }
            r.settle_blocks();
            if !r.blocked.is_empty() {
                r.redirect_blocked(db);
            }
        }
        // The batch is on disk: what direct ops held goes out; cuts now committed are folded.
        r.direct_batch_written(readies.iter().map(|(g, _)| *g))?;
        r.direct_cuts_committed();
        // Routing: publish the leader each touched group knows. Compact one group per step:
        // one keeping an old segment alive, else the longest log past the limit. Groups written
        // evenly reach the limits together and must not all stop the thread in one step (seen:
        // 2 s stalls with 256 of them) but take turns.
        let mut longest: Option<(usize, u32)> = None;
        for (g, _) in &readies {
            let grp = r.groups[*g as usize].as_mut().expect("ready of a group");
            let leader = match grp.role() {
                raft::Role::Leader => c.me,
                _ => grp.leader().unwrap_or(NodeId(0)),
            };
            if c.set_leader(VShardId(*g as u16), grp.term(), leader) && leader == c.me {
                r.hint_due = now;
            }
            if *g != r.meta_g {
                let voters = crate::cluster::mask(grp.membership().voters.iter().copied());
                c.set_replicas(VShardId(*g as u16), voters);
            }
            let len = grp.log().len();
            // (A group whose compaction is being written is passed over: others take turns.)
            if len > COMPACT_ENTRIES && longest.is_none_or(|(l, _)| len > l) && !r.captures.has(*g)
            {
                longest = Some((len, *g));
            }
        }
        if longest.is_none() && r.log_bytes_total > r.log_budget(db.tunables.maxmemory) {
            // Over the thread's memory budget for logs: the largest one.
            longest = (0..r.log_bytes.len())
                .filter(|&g| !r.captures.has(g as u32))
                .max_by_key(|&g| r.log_bytes[g])
                .map(|g| (0, g as u32));
        }
        if let Some(g) = r.damaged_files.pop() {
            r.rewrite_snapshot(g);
        }
        if let Some(g) = r.to_compact.pop().or(longest.map(|(_, g)| g)) {
            r.compact(g);
        }
        r.advance_captures(db);
        if db.tunables.maxmemory > 0 || r.memory_published > 0 {
            r.publish_memory(db, db.tunables.maxmemory > 0);
        }
        if now >= r.hint_due {
            r.send_hints(now);
        }
        if r.shard == 0 {
            let g = r.meta_g as usize;
            // (A node removed from the metadata group hears no leader again: what it applied
            // is final for it, and it still has to move its groups off.) With a leader, its
            // commit counts once it is of the leader's term (its no-op committed): a leader
            // elected after a restart of every node knows only its snapshot as committed
            // until then, and metadata taken as current there dropped the members that
            // joined after that snapshot (found by the simulator's restart of every node).
            let out = r.out_of_meta();
            let current = r.groups[g].as_ref().is_some_and(|grp| {
                let commit = grp.commit_index();
                let of_this_term = match grp.entry(commit) {
                    Some(e) => e.term == grp.term(),
                    None => {
                        grp.snapshot_id()
                            == LogId {
                                term: grp.term(),
                                index: commit,
                            }
                    }
                };
                ((grp.leader().is_some() && of_this_term) || out) && r.applied[g].index >= commit
            });
            let was = c
                .meta_current
                .swap(current, std::sync::atomic::Ordering::AcqRel);
            if current
                && !was
                && let Some(m) = &r.meta
            {
                // Caught up: now the members it no longer names go (`publish_meta`).
                meta::publish_meta(&c, m);
            }
            r.meta_duty(now);
        }
        if now >= r.moves_due {
            r.moves_due = now + moves::MOVES_PERIOD;
            r.drive_moves(now)?;
        }
        let mut readies = readies;
        for (_, mut ready) in readies.drain(..) {
            if ready.entries.capacity() <= READY_KEEP_ENTRIES
                && ready.committed.capacity() <= READY_KEEP_ENTRIES
                && ready.messages.capacity() <= READY_KEEP_ENTRIES
            {
                ready.clear();
                r.free_readies.push(ready);
            }
        }
        r.readies_buf = readies;
        r.calvin_step(db, now);
        Ok(())
    }
}

/// A driver step between its halves: the Readies taken and the log batch to write.
pub(super) struct Step {
    pub(super) readies: Vec<(u32, Ready)>,
    pub(super) batch: Option<shardline_shards::wal::Batch>,
    /// Snapshot files to write before the batch.
    pub(super) before: Vec<crate::wal::Before>,
    /// Compactions' snapshot files to write behind the batches, with their tokens
    /// (`Replicas::snapshot_written`).
    pub(super) behind: Vec<(u64, SnapshotFile)>,
}

/// The driver task of a shard thread: one step per wake-up (proposals, messages) or tick. While
/// a step's batch is written and fsynced (io_uring), the thread serves connections and reads
/// peers; proposals made meanwhile and messages received meanwhile go into the next step (peer
/// messages are stepped only between flushes, so a Ready is never taken before the previous one
/// is on disk), which makes the next group commit larger.
pub async fn run(shard: std::rc::Rc<Shard>) {
    let flusher = match crate::wal::Flusher::spawn(shard.id, shard.node.stats[shard.id].log.clone())
    {
        Ok(f) => f,
        Err(e) => fatal(&format!("cannot start the log's flush thread: {e}")),
    };
    loop {
        let work = std::future::poll_fn(|cx| shard.with_replicas(|r| r.poll_work(cx.waker())));
        let pause = match shard.with_replicas(|r| r.captures.running()) {
            0 => TICK,
            _ => super::capture::CAPTURE_PAUSE,
        };
        monoio::select! {
            _ = work => {},
            _ = monoio::time::sleep(pause) => {},
        }
        match flusher.behind_done() {
            Ok(done) => {
                shard.with_replicas(|r| done.into_iter().for_each(|t| r.snapshot_written(t)))
            }
            Err(e) => fatal(&format!(
                "cannot write the write-ahead log or a snapshot: {e}"
            )),
        }
        let mut step = shard.start_step().unwrap_or_else(|e| fatal(&e.to_string()));
        if !step.behind.is_empty() {
            let dir = shard.with_replicas(|r| r.snap_dir.clone());
            for (token, f) in std::mem::take(&mut step.behind) {
                let dir = dir.clone();
                flusher.behind(Box::new(move || write_file(&dir, &f)), Some(token));
            }
        }
        if step.batch.is_some() || !step.before.is_empty() {
            let log = shard
                .with_replicas(|r| r.log.take())
                .expect("one flush at a time");
            let batch = step.batch.unwrap_or_default();
            let (log, batch, res) = flusher.run(log, batch, step.before).await;
            shard.with_replicas(|r| {
                r.log = Some(log);
                r.wal.recycle(batch);
            });
            if let Err(e) = res {
                fatal(&format!(
                    "cannot write the write-ahead log or a snapshot: {e}"
                ));
            }
        }
        match shard.finish_step(step.readies) {
            Ok(()) => {}
            Err(Fatal::Left) => shard.node.cluster.retire(crate::cluster::Retired::Left),
            Err(e) => fatal(&e.to_string()),
        }
    }
}
