//! The node's stream of sequenced transactions (`Stream`): what thread 0's sequencer applied,
//! for every thread to take from its own position, with the node's executed marks, the
//! WATCH flags of transactions submitted here, and INFO's figures.

use super::*;

/// The transactions thread 0's sequencer has sequenced and not yet forgotten, in sequence
/// order, for the node's threads to take (each keeps its own position). Written by thread 0
/// only; read under the lock only when its end moved or a thread starts leading a vShard.
pub struct Stream {
    pub(super) txns: Mutex<VecDeque<Arc<Ordered>>>,
    /// The sequence number after the last published (0: none yet).
    pub(super) end: AtomicU64,
    /// Per vShard replicated here: every transaction below it that involves the vShard has
    /// executed there (committed: raised by every replica as it applies, so it only grows).
    pub(super) done: Vec<AtomicU64>,
    /// INFO's figures: execution entries applied by this node's leaders, reads asked for
    /// again (`Want`), jobs that waited for keys a transaction held.
    pub executions: AtomicU64,
    pub asked_again: AtomicU64,
    pub deferred: AtomicU64,
    /// Submissions sent again to a new sequencer leader.
    pub resent: AtomicU64,
    /// Transactions submitted from this node's connections, and how they were answered
    /// (by `Answered`), and the time from submission to an execution's reply (blocking
    /// commands left out: they wait for data by design).
    pub submitted: AtomicU64,
    pub answers: [AtomicU64; 4],
    pub latency_us: crate::node::Histogram,
    /// The WATCH registrations on this node of MULTI/EXECs across vShards, by the id they
    /// were registered under (`seq::Watching::id`): those of connections here (made when submitted) and those other nodes asked for
    /// (`Msg::Watch`). A participant's leader here reads its verdict from it
    /// (`WatchReg::broken`).
    pub(super) watches: Mutex<HashMap<TxnId, WatchReg>>,
}

/// The WATCHes of one transaction registered on this node: the flag that writes to them set,
/// the vShards whose watched keys are all registered here, and since when (a registration
/// nobody dropped goes after `WATCH_KEPT`).
pub(super) struct WatchReg {
    pub(super) flag: Arc<std::sync::atomic::AtomicBool>,
    pub(super) vshards: Vec<VShardId>,
    pub(super) since: Instant,
}

impl WatchReg {
    /// Whether the participant for `v` of a transaction watching under `id` must say its watched keys
    /// changed: they did, or this node cannot tell (they were registered elsewhere, or the
    /// registration is gone).
    pub(super) fn broken(regs: &HashMap<TxnId, WatchReg>, id: TxnId, v: VShardId) -> bool {
        regs.get(&id).is_none_or(|r| {
            !r.vshards.contains(&v) || r.flag.load(std::sync::atomic::Ordering::Acquire)
        })
    }
}

impl Stream {
    pub fn new(vshards: usize) -> Stream {
        Stream {
            txns: Mutex::new(VecDeque::new()),
            end: AtomicU64::new(0),
            done: (0..vshards).map(|_| AtomicU64::new(0)).collect(),
            executions: AtomicU64::new(0),
            asked_again: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
            answers: Default::default(),
            latency_us: Default::default(),
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// The sequence number after the last sequenced, and how many are retained.
    pub fn marks(&self) -> (u64, u64) {
        let (first, end) = (self.first(), self.end.load(Ordering::Acquire));
        (end, end.saturating_sub(first))
    }

    /// INFO's lines: `calvin_*`.
    pub fn info(&self) -> String {
        let (end, retained) = self.marks();
        let a = |i: usize| self.answers[i].load(Ordering::Relaxed);
        format!(
            "calvin_sequenced:{end}\r\ncalvin_retained:{retained}\r\ncalvin_submitted:{}\r\ncalvin_answered_executed:{}\r\ncalvin_answered_refused:{}\r\ncalvin_answered_unknown:{}\r\ncalvin_blocking_timed_out:{}\r\ncalvin_executions:{}\r\ncalvin_reads_asked_again:{}\r\ncalvin_jobs_deferred:{}\r\ncalvin_submissions_resent:{}\r\ncalvin_watch_registrations:{}\r\n",
            self.submitted.load(Ordering::Relaxed),
            a(0),
            a(1),
            a(2),
            a(3),
            self.executions.load(Ordering::Relaxed),
            self.asked_again.load(Ordering::Relaxed),
            self.deferred.load(Ordering::Relaxed),
            self.resent.load(Ordering::Relaxed),
            self.watches.lock().expect("calvin watches").len(),
        )
    }

    /// Thread 0: publishes the sequencer's retained transactions from `from` on (all of
    /// them, replacing what was there, with `replace`: a snapshot installed).
    pub(super) fn publish(&self, s: &Sequencer, from: u64, replace: bool) {
        let mut q = self.txns.lock().expect("calvin stream");
        if replace {
            q.clear();
        }
        let have = q.back().map_or(0, |t| t.seq + 1);
        for t in s.retained_from(from.max(have)) {
            q.push_back(t.clone());
        }
        while q.front().is_some_and(|t| t.seq < s.first_retained()) {
            q.pop_front();
        }
        self.end.store(s.next_seq(), Ordering::Release);
    }

    /// The lowest sequence number still published: every transaction below it has
    /// executed on every participant.
    pub(super) fn first(&self) -> u64 {
        let q = self.txns.lock().expect("calvin stream");
        q.front()
            .map_or_else(|| self.end.load(Ordering::Acquire), |t| t.seq)
    }

    /// The transactions from `from` (inclusive) to `to` (exclusive).
    pub(super) fn range(&self, from: u64, to: u64) -> Vec<Arc<Ordered>> {
        let q = self.txns.lock().expect("calvin stream");
        let start = q.partition_point(|t| t.seq < from);
        q.range(start..)
            .take_while(|t| t.seq < to)
            .cloned()
            .collect()
    }
}
