//! The end of a batch: jobs sent to other threads and peers, their replies put into the
//! holes left for them, and the replies written in order.

use super::*;

impl Conn {
    /// Sends the batch's jobs, fills the holes and writes the replies.
    pub(super) async fn finish_batch<S: ClientIo>(
        &mut self,
        stream: &mut S,
    ) -> std::io::Result<()> {
        // Allocation-free when the batch stayed on this thread (the common case).
        let mut dones: Vec<Option<Done>> = Vec::new();
        if self.jobs.iter().any(Option::is_some) {
            dones.resize_with(self.jobs.len(), || None);
        }
        let mut tokens = Vec::new();
        // A batch that ends with a transaction across threads submits it (in this thread's
        // job) only once every other job of the batch is answered: what the client sent
        // before it is applied before the transaction reads.
        let txn_job = if std::mem::take(&mut self.barrier) {
            self.jobs[self.shard.id].take()
        } else {
            None
        };
        for (t, done) in dones.iter_mut().enumerate() {
            if let Some(job) = self.jobs[t].take() {
                let busy = &self.shard.node.script_busy[t];
                if t != self.shard.id && busy.is_busy() && only_commands(&job) {
                    // Its thread runs a script past busy-reply-threshold: `-BUSY`, as Redis
                    // answers while a script runs (nothing of the job ran).
                    if matches!(self.blocked, Some((bt, _)) if bt == t) {
                        self.blocked = None;
                    }
                    let msg = shardline_shards::script::busy_error(busy);
                    *done = Some(answered_all(&job, msg));
                    continue;
                }
                tokens.push((t, job.token));
                if t == self.shard.id {
                    // A replicated command led on this very thread: straight to its group,
                    // no trip through our own mailbox.
                    self.shard.run_job_replicated(job);
                    continue;
                }
                self.shard.local.borrow_mut().hops_sent += 1;
                send_job(&self.shard, t, job).await;
            }
        }
        if !self.links.is_empty() {
            self.exchange_proxied().await;
        }
        for (t, token) in tokens {
            let done = match self.blocked {
                Some((bt, timeout)) if bt == t => {
                    self.blocked = None;
                    self.wait_blocked(stream, t, token, timeout).await
                }
                _ => wait(&self.shard, token).await,
            };
            dones[t] = Some(done);
        }
        if let Some(job) = txn_job {
            let (t, token) = (self.shard.id, job.token);
            self.shard.run_job_replicated(job);
            let done = match self.blocked.take() {
                // A blocking command across vShards (`blocking_txn`).
                Some((bt, timeout)) if bt == t => {
                    self.wait_blocked(stream, t, token, timeout).await
                }
                _ => wait(&self.shard, token).await,
            };
            dones[t] = Some(done);
        }
        if self.durable_seq > 0 {
            // What ran directly is not answered before the log holds it.
            self.shard
                .durable(std::mem::take(&mut self.durable_seq))
                .await;
        }
        let mut buf = std::mem::take(&mut self.out.buf);
        if !self.holes.is_empty() {
            buf = self.fill_holes(buf, &dones);
        }
        let limit = self.shard.node.live.get(|l| &l.client_output_buffer_limit) as usize;
        if buf.len() > limit {
            tracing::warn!(
                client = self.info.borrow().id,
                bytes = buf.len(),
                "client output buffer limit reached; closing"
            );
            self.closing = true;
            self.out.buf = Vec::new();
            return Ok(());
        }
        if !buf.is_empty() {
            self.shard.local.borrow_mut().net_output_bytes += buf.len() as u64;
            let (res, mut back) = stream.io_write(buf).await;
            back.clear();
            self.out.buf = back;
            res?;
        } else {
            self.out.buf = buf;
        }
        if self.out.buf.capacity() > 4 * BATCH_OUT_BYTES {
            self.out.buf = Vec::with_capacity(1024);
        }
        Ok(())
    }

    fn fill_holes(&mut self, buf: Vec<u8>, dones: &[Option<Done>]) -> Vec<u8> {
        let mut full = Vec::with_capacity(buf.len() + 256);
        let mut last = 0;
        // Holes inside an EXEC reply whose data part was refused: dropped with it.
        let mut skip = 0;
        let holes = std::mem::take(&mut self.holes);
        for hole in holes {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            full.extend_from_slice(&buf[last..hole.at]);
            last = hole.at;
            let parts: Vec<&[u8]> = hole
                .parts
                .iter()
                .map(|p| match p {
                    PartRef::Local(b) => b.as_slice(),
                    PartRef::Remote { thread, op } => {
                        dones[*thread].as_ref().expect("job was sent").segment(*op)
                    }
                    PartRef::Proxied { peer, n } => self.links[*peer].replies[*n].as_slice(),
                })
                .collect();
            let mut out = Out {
                buf: full,
                proto: self.proto,
                errors: 0,
            };
            if let Finish::ExecHead { n, end, inner } = hole.finish {
                if parts[0].starts_with(b"*") && !parts[0].starts_with(b"*-1") {
                    out.array(n);
                } else {
                    out.raw(parts[0]);
                    last = end;
                    skip = inner;
                }
            } else {
                self.finish(&hole.finish, &parts, &mut out);
            }
            full = out.buf;
        }
        full.extend_from_slice(&buf[last..]);
        full
    }

    pub(super) fn finish(&self, finish: &Finish, parts: &[&[u8]], out: &mut Out) {
        if let Some(e) = parts.iter().find(|p| p.first() == Some(&b'-')) {
            if !matches!(finish, Finish::Raw) {
                return out.raw(e);
            }
        }
        match finish {
            Finish::Raw => out.raw(parts[0]),
            // (Reached only when the head saw an array: `fill_holes`.)
            Finish::ExecHead { n, .. } => out.array(*n),
            Finish::ExecItem(i) => out.raw(array_item(parts[0], *i)),
            Finish::Ok => out.ok(),
            Finish::Text(text) => {
                // Every shard thread's log is fsynced: a save completed.
                let now = crate::shard::unix_now_us() / 1_000_000;
                self.shard.node.last_save.store(now, Ordering::Relaxed);
                out.simple(text)
            }
            Finish::Merge(merge, order) => {
                crate::merge::merge(*merge, order, parts, &mut self.shard.rng.borrow_mut(), out)
            }
            Finish::Info(sections) => crate::info::write(&self.shard, sections, parts, out),
            Finish::MemoryStats => crate::info::memory_stats(parts, out),
            Finish::Slow(how) => crate::slowlog::merge(*how, parts, out),
            Finish::Union | Finish::UnionCount => {
                let mut all: Vec<Vec<u8>> = Vec::new();
                for p in parts {
                    if let Ok(Some((resp::Value::Array(items), _))) = resp::decode(p) {
                        for it in items {
                            if let resp::Value::Bulk(b) = it
                                && !all.contains(&b)
                            {
                                all.push(b);
                            }
                        }
                    }
                }
                if matches!(finish, Finish::UnionCount) {
                    return out.int(all.len() as i64);
                }
                out.array(all.len());
                for n in all {
                    out.bulk(&n);
                }
            }
            Finish::SumPerName(names) => {
                let mut sums = vec![0i64; names.len()];
                for p in parts {
                    if let Ok(Some((resp::Value::Array(items), _))) = resp::decode(p) {
                        for (i, it) in items.iter().enumerate().take(names.len()) {
                            if let resp::Value::Int(n) = it {
                                sums[i] += n;
                            }
                        }
                    }
                }
                out.map(names.len());
                for (n, c) in names.iter().zip(sums) {
                    out.bulk(n);
                    out.int(c);
                }
            }
            Finish::Killed { old_form } => {
                let killed: i64 = parts
                    .iter()
                    .filter_map(|p| match resp::decode(p) {
                        Ok(Some((resp::Value::Int(n), _))) => Some(n),
                        _ => None,
                    })
                    .sum();
                match (old_form, killed) {
                    (false, n) => out.int(n),
                    (true, 0) => out.error("ERR No such client"),
                    (true, _) => out.ok(),
                }
            }
            Finish::Clients => {
                let mut text = Vec::new();
                for p in parts {
                    if let Ok(Some((resp::Value::Bulk(b), _))) = resp::decode(p) {
                        text.extend_from_slice(&b);
                    }
                }
                out.verbatim(&text)
            }
        }
    }
}

/// Element `i` of the RESP array `reply` (a reply we encoded: an array header, then whole
/// values); empty if it has none.
fn array_item(reply: &[u8], i: usize) -> &[u8] {
    let Some(nl) = reply.iter().position(|&b| b == b'\n') else {
        return &[];
    };
    let mut at = nl + 1;
    for k in 0..=i {
        let Ok(Some(len)) = resp::value_len(&reply[at..]) else {
            return &[];
        };
        if k == i {
            return &reply[at..at + len];
        }
        at += len;
    }
    &[]
}

/// Whether every op of `job` is a client's command (none bookkeeping another thread must see,
/// such as ending a blocked client's wait).
fn only_commands(job: &Job) -> bool {
    job.ops.iter().all(|op| {
        matches!(
            op,
            Op::Cmd { .. } | Op::Exec { .. } | Op::Local { .. } | Op::Block { .. }
        )
    })
}

/// `job`'s replies with every op answered the error `msg`.
fn answered_all(job: &Job, msg: &str) -> Done {
    let mut pj = shardline_shards::replica::job::PendingJob::new(
        job.origin,
        job.token,
        job.proto,
        job.ops.len(),
    );
    for i in 0..job.ops.len() as u32 {
        pj.write(i, false, |o| o.error(msg));
    }
    pj.into_done()
}
