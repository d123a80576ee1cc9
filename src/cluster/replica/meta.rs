//! The metadata group on shard thread 0 (issue 3, cluster formation): a Raft group like the
//! vShards' (same core, log and bus) whose state machine is `shardline_shards::meta::Meta`.
//! Applied changes are published to the `Cluster` every thread reads (members, replica sets);
//! its leader adds every member that is not yet in the group as a learner, so every node holds
//! the metadata; `CLUSTER JOIN` proposes `AddNode` here.

use super::*;
use shardline_shards::meta::{Applied, Cmd, Meta};
use shardline_shards::raft::conf::{CONF_TAG, ConfChange};
use shardline_shards::snapshot::SnapshotError;

/// The metadata group's members to start from: the static list's first five; on a node that
/// joined, some other member (a placeholder that never makes this node a voter; the group's
/// snapshot brings the real membership).
pub(super) fn meta_members(c: &Cluster) -> Vec<RaftId> {
    let voters = c.meta_voters();
    if !voters.is_empty() {
        return voters;
    }
    let other = c.member_ids().into_iter().find(|&id| id != c.me);
    vec![other.unwrap_or(if c.me == 1 { 2 } else { 1 })]
}

/// The metadata every node of a statically listed cluster starts from (`None` on a node that
/// joined).
pub(super) fn static_meta(c: &Cluster) -> Result<Option<Meta>, String> {
    if c.bootstrap.is_empty() {
        return Ok(None);
    }
    Meta::from_list(
        c.cluster_id,
        c.layout.count() as usize,
        c.rf_wanted,
        &c.bootstrap,
        c.threads as u16,
    )
    .map(Some)
    .map_err(|e| format!("cannot start the cluster's metadata: {e}"))
}

/// Hands the members and replica sets to the routing every thread reads.
pub(super) fn publish_meta(c: &Cluster, m: &Meta) {
    for n in &m.nodes {
        c.set_member(
            n.id.0,
            super::super::MemberAddrs {
                client: n.client,
                bus: n.bus,
            },
        );
    }
    c.set_targets(&m.replicas);
}

/// The answer to `CLUSTER JOIN`: `[cluster id (hex), the node's id, vShards, replication
/// factor, [[id, client, bus, threads]...]]`.
fn join_answer(m: &Meta, id: u64, out: &mut Out) {
    out.array(5);
    let hex: String = m.cluster_id.iter().map(|b| format!("{b:02x}")).collect();
    out.bulk(hex.as_bytes());
    out.int(id as i64);
    out.int(m.replicas.len() as i64);
    out.int(m.rf as i64);
    out.array(m.nodes.len());
    for n in &m.nodes {
        out.array(4);
        out.int(n.id.0 as i64);
        out.bulk(n.client.to_string().as_bytes());
        out.bulk(n.bus.to_string().as_bytes());
        out.int(n.threads as i64);
    }
}

impl Replicas {
    /// Applies one committed entry of the metadata group, writing its answer (one op).
    pub(super) fn apply_meta(
        &mut self,
        data: &[u8],
        out: &mut Out,
        ends: &mut Vec<u32>,
    ) -> Result<(), String> {
        if data.is_empty() || data[0] == CONF_TAG {
            return Ok(());
        }
        let cmd = Cmd::decode(data).map_err(|e| e.0.to_string())?;
        let m = self
            .meta
            .as_mut()
            .ok_or("a metadata entry to apply before the metadata's snapshot arrived")?;
        match m.apply(&cmd) {
            Ok(Applied::Added { id, new }) => {
                if new {
                    tracing::info!(node = id.0, epoch = m.epoch, "a node joined the cluster");
                }
                join_answer(m, id.0, out);
            }
            Ok(_) => out.ok(),
            Err(e) => out.error(&format!("ERR {e}")),
        }
        ends.push(out.buf.len() as u32);
        publish_meta(&self.c, m);
        Ok(())
    }

    /// Installs the metadata group's snapshot (a node that joined gets its first one so).
    pub(super) fn install_meta(&mut self, state: &[u8]) -> Result<u64, SnapshotError> {
        let m = Meta::decode(state).map_err(|e| SnapshotError {
            offset: 0,
            reason: e.0,
        })?;
        if m.cluster_id != self.c.cluster_id {
            return Err(SnapshotError {
                offset: 1,
                reason: "the metadata of another cluster",
            });
        }
        publish_meta(&self.c, &m);
        self.meta = Some(m);
        Ok(0)
    }

    /// On the metadata group's leader: adds the first member not yet in the group as a learner
    /// (one change at a time). A learner must start from a snapshot (the static start state is
    /// not in the log), so the group compacts first if it never has.
    pub(super) fn meta_duty(&mut self, db: &shardline_shards::db::Db) {
        let g = self.meta_g;
        let (Some(m), Some(grp)) = (&self.meta, self.groups[g as usize].as_mut()) else {
            return;
        };
        if grp.role() != raft::Role::Leader {
            return;
        }
        let Some(new) = m
            .nodes
            .iter()
            .map(|n| n.id.0)
            .find(|&id| !grp.membership().contains(id))
        else {
            // Everyone holds the metadata: keep 3 voters once there are 3 nodes, 5 from 5
            // (a cluster started from one node gets a fault-tolerant metadata group as it
            // grows), promoting caught-up learners one at a time.
            let want = match m.nodes.len() {
                0..=2 => 1,
                3 | 4 => 3,
                _ => 5,
            };
            let conf = grp.membership();
            if conf.voters.len() >= want {
                return;
            }
            let ready = conf
                .learners
                .iter()
                .copied()
                .find(|&l| grp.progress(l).is_some_and(|p| p >= grp.commit_index()));
            if let Some(l) = ready
                && grp.propose_conf(ConfChange::Promote(l)).is_ok()
            {
                tracing::info!(node = l, "metadata group: a learner becomes a voter");
                self.touch(g);
            }
            return;
        };
        if grp.snapshot_id().index == 0 {
            return self.compact(db, g);
        }
        if grp.propose_conf(ConfChange::AddLearner(new)).is_ok() {
            tracing::info!(node = new, "metadata group: adding a learner");
            self.touch(g);
        }
    }

    /// Proposes a metadata change for op `op` of job `j` (thread 0): the answer is written when
    /// it is applied. `Err`: this node does not lead the metadata group (nothing proposed).
    pub(super) fn propose_meta(&mut self, cmd: Vec<u8>) -> Result<(u64, u64), Option<RaftId>> {
        let g = self.meta_g as usize;
        let grp = self.groups[g].as_mut().ok_or(None)?;
        if self.meta.is_none() {
            return Err(grp.leader());
        }
        let index = grp.propose(cmd).map_err(|e| e.leader)?;
        let term = grp.term();
        self.touch(g as u32);
        Ok((index, term))
    }
}
