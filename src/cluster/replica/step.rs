//! The driver step (see the parent module): `start_step`, the log flush, `finish_step`, and the
//! task that loops over them.

use super::*;

impl Shard {
    /// The first half of a driver step (see the module documentation): everything up to the
    /// log batch that must be on disk before the step's messages go out.
    fn start_step(&self) -> Step {
        let now = Instant::now();
        let c = self.node.cluster.as_deref().expect("replicated");
        let mut guard = self.repl.borrow_mut();
        let r = guard.as_mut().expect("replicated");
        if !r.to_drop.is_empty() {
            r.drop_removed(&mut self.db.borrow_mut());
        }
        for (g, from, msg) in std::mem::take(&mut r.incoming) {
            if let Some(grp) = r.groups[g as usize].as_mut() {
                grp.step(from, msg);
                r.touch(g);
            }
        }
        let mut timed_out = Vec::new();
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
            let timeout = Duration::from_millis(c.node_timeout_ms);
            for p in 1..=r.peers.len() as RaftId {
                if p != c.me
                    && r.peers[p as usize - 1]
                        .heard
                        .is_some_and(|h| now.duration_since(h) > timeout)
                {
                    tracing::info!(peer = p, "peer silent for cluster-node-timeout-ms");
                    r.peer_down(p);
                }
            }
            // Groups that write too rarely to compact on their own must not keep old log
            // segments alive: once the log has more than a few, compact them (one per step).
            if r.to_compact.is_empty() {
                r.to_compact = r.wal.pinning_oldest(MAX_SEGMENTS);
            }
            // The oldest proposals of each group are at the front.
            for q in &mut r.waiting {
                while q
                    .front()
                    .is_some_and(|(_, w)| now.duration_since(w.since) > PROPOSAL_TIMEOUT)
                {
                    timed_out.push(q.pop_front().expect("checked").1);
                }
            }
        }
        // A read round no quorum answered in time (a cut-off leader): the read was not served.
        if !r.read_rounds.is_empty() && r.last_tick == now {
            let late: Vec<u64> = r
                .read_rounds
                .iter()
                .filter(|(_, (since, _))| now.duration_since(*since) > PROPOSAL_TIMEOUT)
                .map(|(id, _)| *id)
                .collect();
            for id in late {
                let (_, ops) = r.read_rounds.remove(&id).expect("listed");
                for o in ops {
                    if let Some(done) = r.fail(o.job, o.op, READ_LOST) {
                        drop_finished(self, done);
                    }
                }
            }
        }
        let mut finished = Vec::new();
        for w in timed_out {
            r.fail_waiter(w, UNKNOWN, &mut finished);
        }
        for done in finished {
            drop_finished(self, done);
        }
        // Persist every touched group's Ready, then one flush for all of them.
        let mut readies = std::mem::take(&mut r.readies_buf);
        debug_assert!(readies.is_empty());
        for g in std::mem::take(&mut r.dirty) {
            r.is_dirty[g as usize] = false;
            let Some(grp) = r.groups[g as usize].as_mut() else {
                continue;
            };
            if !r.reads_queued[g as usize].is_empty() {
                // One read-index round for every read of this group in this step.
                let ops = std::mem::take(&mut r.reads_queued[g as usize]);
                let id = r.next_read;
                r.next_read += 1;
                match grp.read_index(id) {
                    Ok(()) => {
                        r.read_rounds.insert(id, (Instant::now(), ops));
                    }
                    Err(e) => {
                        for o in ops {
                            let msg = c.redirect(o.slot, e.leader);
                            if let Some(done) = r.fail(o.job, o.op, &msg) {
                                drop_finished(self, done);
                            }
                        }
                    }
                }
            }
            let grp = r.groups[g as usize].as_mut().expect("checked");
            let mut ready = r.free_readies.pop().unwrap_or_default();
            grp.take_ready_into(&mut ready);
            for &(id, _) in &ready.reads {
                for o in r.read_rounds.remove(&id).map(|x| x.1).unwrap_or_default() {
                    if let Some(done) = r.release(o.job, o.op) {
                        drop_finished(self, done);
                    }
                }
            }
            for id in &ready.failed_reads {
                if let Some((_, ops)) = r.read_rounds.remove(id) {
                    for o in ops {
                        if let Some(done) = r.fail(o.job, o.op, READ_LOST) {
                            drop_finished(self, done);
                        }
                    }
                }
            }
            if let Some(snap) = &ready.snapshot {
                if let Err(e) = write_snapshot(&r.snap_dir, g, snap.last, &snap.blob) {
                    fatal(&format!("cannot store a received snapshot: {e}"));
                }
                let mut db = self.db.borrow_mut();
                let installed = if g == r.meta_g {
                    r.install_meta(&snap.state)
                } else {
                    install(&mut db, &snap.state)
                };
                match installed {
                    Ok(clock) => {
                        tracing::info!(
                            vshard = g,
                            index = snap.last.index,
                            bytes = snap.blob.len(),
                            "installed a snapshot from the leader"
                        );
                        r.clocks[g as usize] = clock;
                        r.applied[g as usize] = snap.last;
                        r.log_bytes_total -= std::mem::take(&mut r.log_bytes[g as usize]);
                    }
                    Err(e) => fatal(&format!(
                        "a snapshot received for vShard {g} does not decode at offset {}: {}",
                        e.offset, e.reason
                    )),
                }
            }
            if let Err(e) = storage::persist(&mut r.wal, g, &ready) {
                fatal(&format!("write-ahead log refused an append: {e:?}"));
            }
            let added: usize = ready.entries.iter().map(|e| e.data.len()).sum();
            r.log_bytes[g as usize] += added;
            r.log_bytes_total += added;
            readies.push((g, ready));
        }
        r.wal.flush(0);
        let batch = r.wal.take_batch(unix_now_us() / 1000);
        let before = std::mem::take(&mut r.before_flush);
        Step {
            readies,
            batch,
            before,
        }
    }

    /// The second half of a driver step, once its log batch is on disk: send, apply, answer.
    fn finish_step(&self, readies: Vec<(u32, Ready)>) {
        let now = Instant::now();
        let c = self.node.cluster.as_deref().expect("replicated");
        let mut guard = self.repl.borrow_mut();
        let r = guard.as_mut().expect("replicated");
        // Send, now that what the messages promise is on disk.
        r.payloads.clear();
        for (g, ready) in &readies {
            for env in &ready.messages {
                let start = r.payloads.len();
                codec::encode(&env.msg, &mut r.payloads);
                let end = r.payloads.len();
                if let Some(q) = r.per_peer.get_mut(env.to as usize - 1) {
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
                frame::encode_batch(&msgs, &mut peer.out);
                if let Some(w) = peer.waker.take() {
                    w.wake();
                }
            }
            drop(msgs);
            let mut q = q;
            q.clear();
            r.per_peer[p] = q;
        }
        // Apply what is committed, answering the proposals that wait on it.
        let mut finished = Vec::new();
        {
            let mut db = self.db.borrow_mut();
            let mut out = Out::new(Proto::Resp2);
            let mut ends = Vec::new();
            for (g, ready) in &readies {
                for e in &ready.committed {
                    let w = r.waiter(*g, e.index, &mut finished);
                    let proto = w
                        .as_ref()
                        .and_then(|w| r.jobs[w.job as usize].as_ref())
                        .map_or(Proto::Resp2, |j| j.proto);
                    out.buf.clear();
                    out.proto = proto;
                    ends.clear();
                    let res = if *g == r.meta_g {
                        r.apply_meta(&e.data, &mut out, &mut ends)
                    } else {
                        replicate::apply(
                            &mut db,
                            &e.data,
                            &mut r.clocks[*g as usize],
                            &mut out,
                            &mut ends,
                            &mut r.scratch,
                        )
                        .map_err(|e| e.to_string())
                    };
                    if let Err(err) = res {
                        fatal(&format!(
                            "committed entry {} of vShard {g} does not decode: {err}",
                            e.index
                        ));
                    }
                    r.applied[*g as usize] = LogId {
                        term: e.term,
                        index: e.index,
                    };
                    if e.is_config() {
                        r.conf_applied(*g, e.index, &e.data);
                    }
                    let Some(w) = w else { continue };
                    if w.term != e.term {
                        r.fail_waiter(w, REPLACED, &mut finished);
                        continue;
                    }
                    if let Some(id) = w.block {
                        let reply = &out.buf[..ends[0] as usize];
                        finished.extend(r.block_tried(id, reply, &mut db));
                        continue;
                    }
                    for (k, &op) in w.ops.as_slice().iter().enumerate() {
                        let start = if k == 0 { 0 } else { ends[k - 1] as usize };
                        finished.extend(r.fill(w.job, op, &out.buf[start..ends[k] as usize]));
                    }
                }
            }
            if !r.blocked.is_empty() {
                r.redirect_blocked(&mut db, &mut finished);
            }
        }
        // Routing: publish the leader each touched group knows. Compact one group per step:
        // one keeping an old segment alive, else the longest log past the limit. Groups written
        // evenly reach the limits together and must not all stop the thread in one step (seen:
        // 2 s stalls with 256 of them) but take turns.
        let mut longest: Option<(usize, u32)> = None;
        for (g, _) in &readies {
            let grp = r.groups[*g as usize].as_mut().expect("ready of a group");
            let leader = match grp.role() {
                raft::Role::Leader => c.me,
                _ => grp.leader().unwrap_or(0),
            };
            if c.set_leader(VShardId(*g as u16), grp.term(), leader) && leader == c.me {
                r.hint_due = now;
            }
            if *g != r.meta_g {
                let voters = crate::cluster::mask(grp.membership().voters.iter().copied());
                c.set_replicas(VShardId(*g as u16), voters);
            }
            let len = grp.log().len();
            if len > COMPACT_ENTRIES && longest.is_none_or(|(l, _)| len > l) {
                longest = Some((len, *g));
            }
        }
        if longest.is_none() && r.log_bytes_total > r.log_bytes_max {
            // Over the thread's memory budget for logs: the largest one.
            longest = (0..r.log_bytes.len())
                .max_by_key(|&g| r.log_bytes[g])
                .map(|g| (0, g as u32));
        }
        if let Some(g) = r.to_compact.pop().or(longest.map(|(_, g)| g)) {
            r.compact(&self.db.borrow(), g);
        }
        if now >= r.hint_due {
            r.send_hints(now);
        }
        if self.id == 0 {
            let g = r.meta_g as usize;
            // (A node removed from the metadata group hears no leader again: what it applied
            // is final for it, and it still has to move its groups off.)
            let out = r.out_of_meta();
            let current = r.groups[g].as_ref().is_some_and(|grp| {
                (grp.leader().is_some() || out) && r.applied[g].index >= grp.commit_index()
            });
            c.meta_current
                .store(current, std::sync::atomic::Ordering::Release);
            r.meta_duty(&self.db.borrow(), now);
        }
        if now >= r.moves_due {
            r.moves_due = now + moves::MOVES_PERIOD;
            r.drive_moves(now);
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
        drop(guard);
        for done in finished {
            drop_finished(self, done);
        }
        self.flush_events();
        self.serve_ready();
    }
}

/// A driver step between its halves: the Readies taken and the log batch to write.
struct Step {
    readies: Vec<(u32, Ready)>,
    batch: Option<shardline_shards::wal::Batch>,
    /// Snapshot files to write before the batch.
    before: Vec<crate::wal::Before>,
}

/// The driver task of a shard thread: one step per wake-up (proposals, messages) or tick. While
/// a step's batch is written and fsynced (io_uring), the thread serves connections and reads
/// peers; proposals made meanwhile and messages received meanwhile go into the next step (peer
/// messages are stepped only between flushes, so a Ready is never taken before the previous one
/// is on disk), which makes the next group commit larger.
pub async fn run(shard: std::rc::Rc<Shard>) {
    let flusher = match crate::wal::Flusher::spawn(shard.id) {
        Ok(f) => f,
        Err(e) => fatal(&format!("cannot start the log's flush thread: {e}")),
    };
    loop {
        let work = std::future::poll_fn(|cx| shard.with_replicas(|r| r.poll_work(cx.waker())));
        monoio::select! {
            _ = work => {},
            _ = monoio::time::sleep(TICK) => {},
        }
        let step = shard.start_step();
        if step.batch.is_some() || !step.before.is_empty() {
            let log = shard
                .with_replicas(|r| r.log.take())
                .expect("one flush at a time");
            let batch = step.batch.unwrap_or_default();
            let (log, res) = flusher.run(log, batch, step.before).await;
            shard.with_replicas(|r| r.log = Some(log));
            if let Err(e) = res {
                fatal(&format!(
                    "cannot write the write-ahead log or a snapshot: {e}"
                ));
            }
        }
        shard.finish_step(step.readies);
    }
}
