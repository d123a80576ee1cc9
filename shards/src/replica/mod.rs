//! The replica layer's pure pieces (issue 16: the layer moves here from `src/cluster/replica`,
//! see docs/design/redesign.md). Today: a job's reply token and finished replies, the pending
//! job that collects replies arriving from the log in any order (`job`), and what the replicas
//! owe connections: jobs, proposals waiting for their entries, reads waiting for their
//! read-index round, and how each wait ends (`pending`).

pub mod job;
pub mod pending;
pub mod stream;

/// A token of a pending reply on the sending thread: slot index in the low 32 bits, the slot's
/// generation in the high 32, so a late reply to a released slot is never taken for another's.
/// `NO_REPLY` asks for no reply.
pub type Token = u64;
pub const NO_REPLY: Token = u64::MAX;

/// The replies to a job: `bytes` holds each op's reply, ending at `ends[i]`.
pub struct Done {
    pub token: Token,
    pub bytes: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Done {
    pub fn segment(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }
}

/// A snapshot file the layer needs on disk: a received one or a tombstone before the log
/// batch of its step is written (that batch's records rely on it; the driver hands it to the
/// flush thread with the batch), a compaction's behind the batches (the log purges what it
/// covers once the driver says it is on disk).
#[derive(Clone)]
pub struct SnapshotFile {
    pub group: u32,
    pub last: crate::raft::LogId,
    /// The group's snapshot blob (membership and state), as `raft::Group` keeps it.
    pub blob: bytes::Bytes,
    pub kind: SnapshotKind,
    /// Or, `blob` empty, a file holding the whole snapshot already (header included: a base
    /// copy received as it came), to sync and put in place.
    pub staged: Option<std::path::PathBuf>,
}

/// Why a snapshot file is written (said in the error if it cannot be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// This replica compacted its log into it.
    Compacted,
    /// The leader sent it; it was installed.
    Received,
    /// The replica was moved off this node: membership only, so a restart knows it left.
    Tombstone,
}

impl std::fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotKind::Compacted => "snapshot",
            SnapshotKind::Received => "received snapshot",
            SnapshotKind::Tombstone => "tombstone",
        })
    }
}

/// Why a replica layer cannot go on: what it would acknowledge next could be a lie, so the
/// node stops (its replicas elsewhere carry on; restart it after fixing the cause). Never a
/// peer's or a client's input: a peer's damaged message or snapshot is dropped before it gets
/// here (`raft::Config::check_snapshot`, `Msg::well_formed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// A snapshot that passed its check did not install.
    SnapshotInstall {
        group: u32,
        offset: usize,
        reason: String,
    },
    /// The log engine refused an append (our bug or a damaged log).
    LogAppend(String),
    /// A committed entry of the metadata group cannot be applied to this node's metadata
    /// (none yet: its snapshot has not arrived).
    Meta { index: u64, reason: String },
    /// Not a failure: this node was asked to leave (`CLUSTER FORGET`), handed every replica
    /// over and is out of the metadata group. The driver retires it (it marks the data
    /// directory as removed and ends the process with status 0).
    Left,
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::SnapshotInstall {
                group,
                offset,
                reason,
            } => write!(
                f,
                "a snapshot received for vShard {group} does not decode at offset {offset}: {reason}"
            ),
            Fatal::LogAppend(e) => write!(f, "write-ahead log refused an append: {e}"),
            Fatal::Meta { index, reason } => write!(
                f,
                "committed entry {index} of the metadata group cannot be applied: {reason}"
            ),
            Fatal::Left => write!(f, "this node left the cluster"),
        }
    }
}

/// The time an input arrives with: the monotonic clock (timeouts, ticks) and the wall clock
/// (entries' stamps, which replicas apply as the leader's clock). Read by the driver only.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: std::time::Instant,
    pub unix_us: u64,
}
