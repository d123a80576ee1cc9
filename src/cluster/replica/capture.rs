//! Compactions of vShard groups written from captures (`shardline_shards::snapshot::capture`;
//! issue 19, step 3): the file is begun at once and the vShard's state at that point is
//! walked a piece per driver step while the vShard keeps serving, its keys changed meanwhile
//! written as they were before their first change. The compaction folds the log once the
//! file is whole. Before, the whole vShard was walked in the step that compacted it: a
//! thread holding a vShard of gigabytes stopped serving for seconds each time.

use super::*;

/// Bytes the captures of a thread write at most per driver step, between which the thread
/// serves its connections (about a millisecond of encoding and page-cache writes).
const STEP_BYTES: usize = 1 << 20;
/// With a capture under way, the driver steps at least this often (`step::run`). It waits
/// for the time rather than yielding: a thread that never parks never sees the wake-ups
/// other threads send it (monoio takes them in when it parks), and a capture that yielded
/// between its steps held every job from other threads until it ended (measured: a client
/// on the other thread stalled for the whole 50 ms walk of a 16 MB vShard).
pub(super) const CAPTURE_PAUSE: Duration = Duration::from_millis(1);

/// What a capture's file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A compaction up to the index applied at its start (a direct group: its log's end),
    /// folded once written and applied.
    Compact,
    /// The group's snapshot written anew at its own index, of the length it offers
    /// (`rewrite_snapshot`: its file failed a copy).
    Rewrite { total: u64 },
}

/// A capture under way and the file it is written to.
pub(super) struct Capturing {
    g: u32,
    id: u64,
    last: LogId,
    conf: raft::Membership,
    file: snapfile::CompactionFile,
    purpose: Purpose,
    /// Steps it has walked.
    steps: u32,
    began: Instant,
}

/// The captures of a thread: wanted (begun at the step's end), under way, and their counts
/// (INFO `snapshot_captures`, `snapshot_captures_running`, `snapshot_capture_step_max_us`).
pub(super) struct Captures {
    /// `STEP_BYTES` (the simulator makes it small, so captures span many steps).
    pub(super) step_bytes: usize,
    /// The simulator's: every capture ends at exactly this many steps (the rest of its walk
    /// at the last). How many a walk takes depends on where keys sit in their table, which
    /// differs from run to run (each table's hash seed); a seed must replay exactly.
    pub(super) fixed_steps: Option<u32>,
    wanted: Vec<(u32, Purpose)>,
    running: Vec<Capturing>,
    next_id: u64,
    pub(super) done: u64,
    /// The longest step of the captures' walks and writes, since start.
    pub(super) step_max_us: u64,
}

impl Default for Captures {
    fn default() -> Self {
        Captures {
            step_bytes: STEP_BYTES,
            fixed_steps: None,
            wanted: Vec::new(),
            running: Vec::new(),
            next_id: 0,
            done: 0,
            step_max_us: 0,
        }
    }
}

impl Captures {
    pub(super) fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether a capture of group `g` is wanted or under way.
    pub(super) fn has(&self, g: u32) -> bool {
        self.wanted.iter().any(|w| w.0 == g) || self.running.iter().any(|c| c.g == g)
    }
}

impl Replicas {
    /// Whether a capture of group `g` is wanted or under way.
    pub(super) fn capturing(&self, g: u32) -> bool {
        self.captures.has(g)
    }

    /// A capture of group `g`'s vShard for `purpose`, begun at the step's end (`advance_captures`).
    pub(super) fn want_capture(&mut self, g: u32, purpose: Purpose) {
        if !self.capturing(g) {
            self.captures.wanted.push((g, purpose));
            self.wake();
        }
    }

    /// Begins a capture of group `g`'s vShard as it is now, its snapshot's index `last`; on
    /// an error nothing is compacted (the log keeps its entries) and it is logged.
    pub(super) fn begin_capture(&mut self, db: &mut Db, g: u32, last: LogId, purpose: Purpose) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        let Some(conf) = grp.membership_at(last.index) else {
            return;
        };
        let Some(vs) = db.vshard_mut(VShardId(g as u16)) else {
            return;
        };
        let clock = self.clocks[g as usize];
        let file = match snapfile::CompactionFile::create(&self.snap_dir, g, last, &conf, clock) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(
                    vshard = g,
                    "cannot write a snapshot file: {e}; the log keeps its entries"
                );
                return;
            }
        };
        self.captures.next_id += 1;
        let id = self.captures.next_id;
        vs.begin_capture(clock / 1000, id);
        self.captures.running.push(Capturing {
            g,
            id,
            last,
            conf,
            file,
            purpose,
            steps: 0,
            began: Instant::now(),
        });
    }

    /// At a step's end: begins the captures wanted, walks each one under way on by its share
    /// of `STEP_BYTES` and writes what it holds, and ends those walked whole.
    pub(super) fn advance_captures(&mut self, db: &mut Db) {
        for (g, purpose) in std::mem::take(&mut self.captures.wanted) {
            let Some(grp) = self.groups[g as usize].as_ref() else {
                continue;
            };
            let applied = self.applied[g as usize];
            let last = match purpose {
                Purpose::Compact if applied.index > grp.snapshot_id().index => applied,
                Purpose::Rewrite { total }
                    if applied == grp.snapshot_id() && grp.snapshot_total() == total =>
                {
                    applied
                }
                _ => continue,
            };
            // A direct group whose keyspace is ahead of its log is cut at a step's start.
            if !self.want_direct_cut(g) {
                self.begin_capture(db, g, last, purpose);
            }
        }
        if self.captures.running.is_empty() {
            return;
        }
        let started = Instant::now();
        let step = self.captures.step_bytes;
        let budget = (step / self.captures.running.len()).max(step / 16).max(1);
        let mut i = 0;
        while i < self.captures.running.len() {
            let c = &mut self.captures.running[i];
            let vs = db
                .vshard_mut(VShardId(c.g as u16))
                .filter(|vs| vs.capture.as_ref().is_some_and(|x| x.id() == c.id));
            let Some(vs) = vs else {
                // Its vShard was replaced (a snapshot installed) or dropped: nothing to fold.
                self.captures.running.swap_remove(i).file.discard();
                continue;
            };
            c.steps += 1;
            let done = match self.captures.fixed_steps {
                Some(n) if c.steps >= n => vs.capture_walk(usize::MAX),
                Some(_) => {
                    vs.capture_walk(budget);
                    false
                }
                None => vs.capture_walk(budget),
            };
            let cap = vs.capture.as_deref_mut().expect("checked");
            let res = c.file.append(cap.out());
            cap.out().clear();
            if let Err(e) = res {
                tracing::error!(
                    vshard = c.g,
                    "a snapshot capture failed: {e}; not used, the log keeps its entries"
                );
                vs.capture = None;
                self.captures.running.swap_remove(i).file.discard();
                continue;
            }
            if !done {
                i += 1;
                continue;
            }
            let whole = vs.capture.take().expect("checked").finish();
            let c = self.captures.running.swap_remove(i);
            tracing::debug!(
                vshard = c.g,
                index = c.last.index,
                steps = c.steps,
                keys = whole.count,
                changed_first = whole.changed_first,
                rewalks = whole.rewalks,
                ms = c.began.elapsed().as_millis() as u64,
                "compaction written from a capture"
            );
            match c.file.finish(whole) {
                Ok((path, total)) => self.captured(c.g, c.last, c.conf, c.purpose, path, total),
                Err(e) => tracing::error!(
                    vshard = c.g,
                    "cannot write a snapshot file: {e}; the log keeps its entries"
                ),
            }
        }
        let us = started.elapsed().as_micros() as u64;
        self.captures.step_max_us = self.captures.step_max_us.max(us);
        // The next piece at the next step, at most `CAPTURE_PAUSE` away.
    }

    /// A capture's file is whole: the compaction folds the log (once `last` is applied: a
    /// direct group's may not be yet), or the rewritten snapshot goes in place.
    fn captured(
        &mut self,
        g: u32,
        last: LogId,
        conf: raft::Membership,
        purpose: Purpose,
        path: PathBuf,
        total: u64,
    ) {
        self.captures.done += 1;
        let cut = Cut::Written { path, total, conf };
        match purpose {
            Purpose::Compact if self.applied[g as usize].index >= last.index => {
                self.compact_at(g, last, cut)
            }
            Purpose::Compact => self.direct_cut_written(g, last, cut),
            Purpose::Rewrite { total: want } => self.rewritten(g, last, want, cut),
        }
    }
}
