//! The Raft core's types: log positions and entries, messages, hard state, roles, the
//! configuration and the Ready a driver takes.

use super::conf::{self, Membership};
use bytes::Bytes;

pub use crate::ids::NodeId;

/// A log position, ordered by term then index (Raft's "at least as up to date").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    /// Empty for the no-op a new leader appends. Shared, not copied, between the log, the
    /// Ready's entries to persist and to apply, and the messages that carry it.
    pub data: Bytes,
}

impl Entry {
    /// Whether this entry changes the group's membership (the state machine skips it).
    #[inline]
    pub fn is_config(&self) -> bool {
        self.data.first() == Some(&conf::CONF_TAG)
    }

    /// The membership a config entry sets.
    pub fn membership(&self) -> Option<Membership> {
        Membership::from_entry_data(&self.data)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    Vote {
        term: u64,
        last: LogId,
    },
    VoteReply {
        term: u64,
        granted: bool,
    },
    Append {
        term: u64,
        prev: LogId,
        entries: Vec<Entry>,
        commit: u64,
        /// The leader has nothing more to replicate and goes quiet: followers stop their
        /// election timers until it speaks again or their node learns it is gone.
        quiet: bool,
        /// The leader's read round (read-index), echoed in the reply.
        ctx: u64,
    },
    /// `last`: on success the follower's match index, on refusal its last index (a hint).
    AppendReply {
        term: u64,
        success: bool,
        last: u64,
        ctx: u64,
    },
    /// One chunk, `data` at `offset`, of the leader's snapshot up to `last` (a blob of `total`
    /// bytes: membership, then state-machine bytes), for a follower whose next entry the leader
    /// no longer has. Answered with a `SnapshotAck` until the last chunk, then with an
    /// `AppendReply` once installed.
    Snapshot {
        term: u64,
        last: LogId,
        offset: u64,
        total: u64,
        data: Bytes,
    },
    /// The leader's snapshot up to `last`, a blob of `total` bytes, is there for a follower
    /// whose next entry the leader no longer has: its bytes travel in a bulk session beside
    /// the bus (`migrate::hub`), not in Raft messages (`Config::bulk_snapshots`). Sent again
    /// every heartbeat while the follower needs it (it keeps the follower from campaigning);
    /// answered with an `AppendReply` once the follower installed it (`install_snapshot`).
    SnapshotOffer {
        term: u64,
        last: LogId,
        total: u64,
    },
    /// The follower holds the first `offset` bytes of the snapshot up to index `last`: send
    /// what follows.
    SnapshotAck {
        term: u64,
        last: u64,
        offset: u64,
    },
    /// Would you vote for me in `term` (one above the sender's)? Changes nobody's term.
    PreVote {
        term: u64,
        last: LogId,
    },
    PreVoteReply {
        term: u64,
        granted: bool,
    },
    /// The leader of `term` hands its leadership over: stand for election now (no pre-vote
    /// round). Sent only to a voter whose log matches the leader's (`Group::transfer_leader`).
    TimeoutNow {
        term: u64,
    },
}

/// Terms and log indexes a message may carry: far beyond any a group reaches (2^62 elections
/// or entries), and far enough below `u64::MAX` that no `+ 1` on them overflows. A message past
/// them, or one no correct peer sends, is a peer's bug or malice and is dropped
/// (`Msg::well_formed`). A group's own terms are not limited (a group pushed to the limit by
/// such a peer must still elect): 3 * 2^62 elections remain before a term overflows.
pub const TERM_LIMIT: u64 = 1 << 62;
pub const INDEX_LIMIT: u64 = 1 << 62;

impl Msg {
    /// Whether a correct peer could have sent this: every term and index within `TERM_LIMIT`
    /// and `INDEX_LIMIT`, an append's entries numbered on from `prev` with terms that never
    /// decrease and never pass the leader's, a snapshot no newer than its sender's term with its
    /// chunk inside it.
    pub fn well_formed(&self) -> bool {
        let log = |l: &LogId| l.term < TERM_LIMIT && l.index < INDEX_LIMIT;
        let index = |i: &u64| *i < INDEX_LIMIT;
        self.term() < TERM_LIMIT
            && match self {
                Msg::Vote { last, .. } | Msg::PreVote { last, .. } => log(last),
                Msg::VoteReply { .. } | Msg::PreVoteReply { .. } | Msg::TimeoutNow { .. } => true,
                Msg::Append {
                    term,
                    prev,
                    entries,
                    commit,
                    ..
                } => {
                    let mut at = prev.index;
                    let mut t = prev.term;
                    log(prev)
                        && prev.term <= *term
                        && index(commit)
                        && entries.iter().all(|e| {
                            let ok = e.index == at + 1 && e.term >= t && e.term <= *term;
                            at = e.index;
                            t = e.term;
                            ok && index(&e.index)
                        })
                }
                Msg::AppendReply { last, .. } => index(last),
                Msg::Snapshot {
                    term,
                    last,
                    offset,
                    total,
                    data,
                } => {
                    log(last)
                        && last.term <= *term
                        && index(total)
                        && offset
                            .checked_add(data.len() as u64)
                            .is_some_and(|end| end <= *total)
                }
                Msg::SnapshotAck { last, offset, .. } => index(last) && index(offset),
                Msg::SnapshotOffer { term, last, total } => {
                    log(last) && last.term <= *term && *total > 0 && *total <= SNAPSHOT_BYTES_MAX
                }
            }
    }

    pub(super) fn term(&self) -> u64 {
        match self {
            Msg::Vote { term, .. }
            | Msg::VoteReply { term, .. }
            | Msg::Append { term, .. }
            | Msg::AppendReply { term, .. }
            | Msg::Snapshot { term, .. }
            | Msg::SnapshotAck { term, .. }
            | Msg::SnapshotOffer { term, .. }
            | Msg::PreVote { term, .. }
            | Msg::PreVoteReply { term, .. }
            | Msg::TimeoutNow { term } => *term,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Msg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking whether a majority would vote, before raising the term (pre-vote).
    PreCandidate,
    Candidate,
    Leader,
}

/// Most members of one group (replication factors are 1, 3 or 5); commit counting keeps
/// them on the stack.
pub const MAX_MEMBERS: usize = 9;

/// Largest snapshot a follower assembles. A sanity bound against a peer's bogus `total`:
/// memory is taken only as chunks arrive.
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The voters the group starts with (before any snapshot or membership entry says
    /// otherwise). A replica created to join an existing group is given the group's voters
    /// without itself: it waits to be added.
    pub members: Vec<NodeId>,
    /// Ticks without a leader before standing for election (randomized up to twice this).
    pub election_ticks: u32,
    /// Ticks a follower that heard from its leader waits before standing (randomized up to
    /// twice this; 0: `election_ticks`). A driver with a node-level failure detector that
    /// reports a dead leader's node (`leader_lost`) sets it above the pauses that detector
    /// tolerates, so a leader's node paused briefly loses nothing; the timer still covers a
    /// leader whose node is up but whose group went silent. Without a known leader (at start,
    /// after `leader_lost`, while campaigning) the wait is `election_ticks`.
    pub leader_wait_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Most entries in one Append.
    pub max_batch: usize,
    /// Bytes of snapshot per message: a follower far behind is sent its snapshot one chunk at
    /// a time, the next when it acknowledges the last (one chunk in flight per follower).
    pub snapshot_chunk_bytes: usize,
    /// Snapshots go to followers as `SnapshotOffer`s, their bytes through the driver's bulk
    /// sessions; otherwise in `Snapshot` chunks of `snapshot_chunk_bytes`.
    pub bulk_snapshots: bool,
    /// Ask before raising the term, so a replica that was cut off cannot depose a working
    /// leader when it comes back.
    pub pre_vote: bool,
    pub seed: u64,
    /// Whether the state-machine bytes of a snapshot received from a leader can be installed
    /// (they decode, and they are this group's). A refused snapshot is ignored as a malformed
    /// blob is: nothing changes and nothing is answered, so a misbehaving peer costs its
    /// messages, never the replica.
    pub check_snapshot: SnapshotCheck,
}

/// `Config::check_snapshot`: a test of a snapshot's state-machine bytes, with whatever context
/// the group needs (its vShard, its cluster).
#[derive(Clone)]
pub struct SnapshotCheck(std::sync::Arc<CheckFn>);

type CheckFn = dyn Fn(&[u8]) -> bool + Send + Sync;

impl SnapshotCheck {
    pub fn new(f: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> SnapshotCheck {
        SnapshotCheck(std::sync::Arc::new(f))
    }

    /// Accepts every state.
    pub fn any() -> SnapshotCheck {
        SnapshotCheck::new(|_| true)
    }

    pub fn accepts(&self, state: &[u8]) -> bool {
        (self.0)(state)
    }
}

impl std::fmt::Debug for SnapshotCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotCheck")
    }
}

/// What the driver does next, in this order: persist, send, apply.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    /// Drop persisted entries from this index on before appending `entries`.
    pub truncate_from: Option<u64>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Envelope>,
    pub committed: Vec<Entry>,
    /// Reads confirmed by a quorum (read-index): `(read id, index)`; serve each once the state
    /// machine has applied `index`.
    pub reads: Vec<(u64, u64)>,
    /// Reads that cannot complete here (leadership lost): answer them with a retryable error.
    pub failed_reads: Vec<u64>,
    /// Entries up to this id are now in a snapshot: drop them from the persisted log.
    pub purge: Option<LogId>,
    /// A snapshot received from the leader: persist it, then install it in the state machine
    /// (it replaces the state; `committed` entries, if any, follow it).
    pub snapshot: Option<SnapshotIn>,
}

impl Ready {
    /// Empties it for reuse, keeping its buffers.
    pub fn clear(&mut self) {
        self.hard_state = None;
        self.truncate_from = None;
        self.entries.clear();
        self.messages.clear();
        self.committed.clear();
        self.reads.clear();
        self.failed_reads.clear();
        self.purge = None;
        self.snapshot = None;
    }

    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.failed_reads.is_empty()
            && self.purge.is_none()
            && self.snapshot.is_none()
    }
}

/// A follower's wish for its leader's snapshot (`Group::snapshot_wanted`): a bulk session from
/// `from` is to bring the blob up to `last`, of `total` bytes, offered in `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotWanted {
    pub from: NodeId,
    pub term: u64,
    pub last: LogId,
    pub total: u64,
}

/// A snapshot a follower received.
#[derive(Debug)]
pub struct SnapshotIn {
    pub last: LogId,
    /// What to store (and give back to `restore_from` at restart): membership and state.
    pub blob: Bytes,
    /// The state machine's bytes (a slice of `blob`): what to install.
    pub state: Bytes,
    /// Neither: the driver decoded the bytes as they came and holds the state and the file
    /// (`Group::install_snapshot_staged`).
    pub staged: bool,
}

/// A snapshot blob that does not decode (given back to `restore_from`): the snapshot store
/// returned bytes the core never wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct BadSnapshot;

/// Proposals go to the leader. Nothing was appended. `leader` is `None` when none is known,
/// and on a leader that is handing over (`Group::transfer_leader`): retry shortly.
#[derive(Debug, PartialEq, Eq)]
pub struct NotLeader {
    pub leader: Option<NodeId>,
}
