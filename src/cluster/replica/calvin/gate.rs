//! Which jobs wait for transactions on this thread (`docs/design/calvin.md`, step 4a): a job
//! on a key a transaction holds waits (`calvin_blocks`), with a place in the key queues so
//! the transactions delivered after it wait for it (`calvin_place`, `calvin_ran`).

use super::*;

impl Replicas {
    /// Whether `job` touches a key a transaction holds (or waits for) on this thread, or
    /// writes without keys (a flush) while one does, or spans vShards of groups of one here
    /// that a transaction's execution entries keep from running ops at once (they are
    /// direct again once those apply; refusing the op there answered -TRYAGAIN to a
    /// 2-key MSET under load): it must wait (`deferred`).
    pub(crate) fn calvin_blocks(&self, job: &Job) -> bool {
        if !self.calvin_busy() {
            return false;
        }
        let layout = self.c.layout;
        let mut vshards = Vec::new();
        let locked = |f: u32, l: u32, vshards: &mut Vec<u32>| {
            let args = Args::new(&job.buf, &job.spans[f as usize..(f + l) as usize]);
            let Some(spec) = command::lookup(args.get(0)) else {
                return false;
            };
            if !spec.arity_ok(args.len()) {
                return false;
            }
            let mut keys = spec.keys_of(args).peekable();
            if keys.peek().is_none() {
                return spec.flags & flags::WRITE != 0;
            }
            let held = keys.any(|k| {
                let key = args.get(k);
                let v = layout.vshard_of(shardline_shards::slot::key_slot(key));
                self.calvin.sched.is_locked_for(v, key, job.calvin_place)
                    || self.calvin.catching_up.contains(&(v.0 as u32))
            });
            if !held {
                if super::propose::is_script(spec) {
                    // A script may touch any key of this thread (`plan_script`).
                    vshards.extend(self.thread_vshards());
                } else {
                    super::direct::vshards_of(spec, args, layout, vshards);
                }
            }
            held
        };
        // An op's (or a MULTI's) vShards: several, all of this thread's groups of one, not
        // all direct now.
        let waits_for_direct = |vshards: &mut Vec<u32>| {
            vshards.sort_unstable();
            vshards.dedup();
            let wait = vshards.len() > 1
                && !self.all_direct(vshards)
                && self.across_refusal(vshards) == super::direct::ACROSS_CATCHING_UP;
            vshards.clear();
            wait
        };
        job.ops.iter().any(|op| match op {
            Op::Cmd { first, len, .. } | Op::Local { first, len } | Op::Block { first, len } => {
                locked(*first, *len, &mut vshards) || waits_for_direct(&mut vshards)
            }
            // A WATCH after a transaction that replied must not see its last participants'
            // entries apply as changes (a spurious abort).
            Op::Watch { first, .. } => {
                let (s, e) = job.spans[*first as usize];
                let key = &job.buf[s as usize..e as usize];
                let v = layout.vshard_of(shardline_shards::slot::key_slot(key));
                self.calvin.sched.is_locked_for(v, key, job.calvin_place)
                    || self.calvin.catching_up.contains(&(v.0 as u32))
            }
            Op::Exec { cmds, .. } => {
                cmds.iter().any(|&(f, l)| locked(f, l, &mut vshards))
                    || waits_for_direct(&mut vshards)
            }
            _ => false,
        })
    }

    /// `job` waits for keys transactions hold (`calvin_blocks`): it takes a place in the queues
    /// of all its keys here (those of vShards this thread leads), so the transactions
    /// delivered after it wait for it, and a stream of them cannot starve it (found by four
    /// clients running scripts across vShards on one key while another client's EXISTS on it
    /// waited for minutes). Keys it names later than its first wait join its place.
    pub(crate) fn calvin_place(&mut self, job: &mut Job) {
        let layout = self.c.layout;
        let mut keys: Vec<(VShardId, &[u8])> = Vec::new();
        let mut add = |f: u32, l: u32| {
            let args = Args::new(&job.buf, &job.spans[f as usize..(f + l) as usize]);
            let Some(spec) = command::lookup(args.get(0)) else {
                return;
            };
            if !spec.arity_ok(args.len()) {
                return;
            }
            for k in spec.keys_of(args) {
                let key = args.get(k);
                keys.push((layout.vshard_of(shardline_shards::slot::key_slot(key)), key));
            }
        };
        for op in &job.ops {
            match op {
                Op::Cmd { first, len, .. }
                | Op::Local { first, len }
                | Op::Block { first, len } => add(*first, *len),
                Op::Exec { cmds, .. } => cmds.iter().for_each(|&(f, l)| add(f, l)),
                _ => {}
            }
        }
        for op in &job.ops {
            if let Op::Watch { first, .. } = op {
                let (s, e) = job.spans[*first as usize];
                let key = &job.buf[s as usize..e as usize];
                keys.push((layout.vshard_of(shardline_shards::slot::key_slot(key)), key));
            }
        }
        let place = self.calvin.sched.wait_local(job.calvin_place, keys);
        job.calvin_place = Some(place);
    }

    /// A job that had a place in the key queues ran (its entries proposed): the transactions
    /// behind it go on, reading once their logs applied what it proposed.
    pub(crate) fn calvin_ran(&mut self, job: &Job) {
        let Some(place) = job.calvin_place else {
            return;
        };
        let groups = &self.groups;
        self.calvin.sched.local_done(place, |v| {
            groups[v.0 as usize]
                .as_ref()
                .map_or(0, |grp| grp.last_index())
        });
    }

    /// Whether any transaction waits on this thread (one count: the direct paths then leave
    /// their command to the job path, which waits only for the keys held).
    pub(crate) fn calvin_busy(&self) -> bool {
        self.calvin.sched.is_busy() || !self.calvin.catching_up.is_empty()
    }

    /// Whether transactions involve `v` that this thread has not taken up into its scheduler
    /// (it follows `v`, or leads it and is catching up): active expiry leaves `v` alone.
    pub(crate) fn calvin_waits_for(&self, v: VShardId) -> bool {
        self.calvin.stalled.contains(&(v.0 as u32))
    }

    /// Whether `key` of `v` is held by a transaction here (active expiry leaves it).
    pub(crate) fn calvin_holds(&self, v: VShardId, key: &[u8]) -> bool {
        self.calvin.sched.is_locked(v, key) || self.calvin.catching_up.contains(&(v.0 as u32))
    }
}
