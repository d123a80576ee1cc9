//! The candidate Raft core over the shard thread's write-ahead log: a group's Ready is persisted
//! as log records of its vShard's group, and a restarted replica is rebuilt from what the log
//! recovered. The vote record carries the Raft term and vote (node 0: none).

use super::{BadSnapshot, Config, Entry, Group, HardState, LogId, NodeId, Ready};
use crate::wal::{Engine, LogError, Vote};
use bytes::Bytes;

/// Queues what `r` asks to persist into `wal` for `group` (the caller then flushes the WAL and
/// sends `r.messages` only once that flush is acknowledged).
pub fn persist(wal: &mut Engine, group: u32, r: &Ready) -> Result<(), LogError> {
    if let Some(from) = r.truncate_from {
        wal.truncate(group, from);
    }
    // A compaction, or an installed snapshot: the log keeps only what follows it. (The
    // snapshot's bytes are the driver's to store, before this Ready's log records.) Before the
    // entries: those that follow an installed snapshot in the same Ready start past the log's
    // old end.
    if let Some(p) = r.purge {
        wal.purge(
            group,
            crate::wal::LogId {
                index: p.index,
                term: p.term,
            },
        );
    }
    for e in &r.entries {
        // (At the purge point `term_at` answers the purge's term: no entry is held there.)
        let (held, within) = wal.group(group).map_or((None, false), |l| {
            let held = l.term_at(e.index).filter(|_| e.index > l.purged().index);
            (held, l.last().index >= e.index)
        });
        if held == Some(e.term) {
            // Written already, as a part of a unit (`Engine::append_unit`): the same entry
            // (one index and term name one entry).
            continue;
        }
        if within {
            wal.truncate(group, e.index);
        }
        wal.append_shared(group, e.index, e.term, &e.data)?;
    }
    if let Some(hs) = r.hard_state {
        wal.save_vote(
            group,
            Vote {
                term: hs.term,
                node: hs.vote.map_or(0, |n| n.0),
                committed: false,
            },
        );
    }
    Ok(())
}

/// Brings the recovered log of `group` in line with the driver's snapshot file at `snap`,
/// which can be ahead of it after a crash between storing a snapshot and the log batch that
/// purges up to it: entries that conflict with the snapshot are dropped and the log is purged
/// up to it, so the next append follows the snapshot. Queues records; nothing when aligned.
pub fn align_to_snapshot(wal: &mut Engine, group: u32, snap: LogId) {
    let Some(log) = wal.group(group) else {
        if snap.index > 0 {
            purge_to(wal, group, snap);
        }
        return;
    };
    if log.purged().index >= snap.index {
        return;
    }
    let conflicts =
        log.last().index > snap.index && log.term_at(snap.index).is_some_and(|t| t != snap.term);
    if conflicts {
        wal.truncate(group, snap.index + 1);
    }
    purge_to(wal, group, snap);
}

fn purge_to(wal: &mut Engine, group: u32, snap: LogId) {
    wal.purge(
        group,
        crate::wal::LogId {
            index: snap.index,
            term: snap.term,
        },
    );
}

/// The replica of `group` as the recovered log has it, with `snapshot`: the blob of the latest
/// snapshot the driver stored (empty when the log was never purged), taken at the log's purge
/// point.
pub fn restore(
    wal: &Engine,
    group: u32,
    cfg: Config,
    snapshot: Bytes,
) -> Result<Group, BadSnapshot> {
    restore_at(wal, group, cfg, None, snapshot)
}

/// `restore` with the snapshot's own position `snap` when the driver knows it (its snapshot
/// file may be newer than the log's last purge record, after a crash between the two): the log
/// entries it covers are skipped.
pub fn restore_at(
    wal: &Engine,
    group: u32,
    cfg: Config,
    snap: Option<LogId>,
    snapshot: Bytes,
) -> Result<Group, BadSnapshot> {
    let Some(log) = wal.group(group) else {
        return Group::restore_from(
            cfg,
            HardState::default(),
            snap.unwrap_or_default(),
            snapshot,
            Vec::new(),
        );
    };
    let hs = log.vote().map_or(HardState::default(), |v| HardState {
        term: v.term,
        vote: (v.node != 0).then_some(NodeId(v.node)),
    });
    let purged = LogId {
        index: log.purged().index,
        term: log.purged().term,
    };
    let snap = snap.unwrap_or(purged);
    let entries = (snap.index.max(purged.index) + 1..=log.last().index)
        .map(|i| {
            let (term, data) = log.entry_shared(i).expect("contiguous");
            Entry {
                term,
                index: i,
                data,
            }
        })
        .collect();
    Group::restore_from(cfg, hs, snap, snapshot, entries)
}
