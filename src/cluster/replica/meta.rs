//! The metadata group on shard thread 0 (issue 3, cluster formation): a Raft group like the
//! vShards' (same core, log and bus) whose state machine is `shardline_shards::meta::Meta`.
//! Applied changes are published to the `Cluster` every thread reads (members, replica sets);
//! its leader adds every member that is not yet in the group as a learner, so every node holds
//! the metadata; `CLUSTER JOIN` proposes `AddNode` here.

use super::*;
use shardline_shards::meta::{Applied, Cmd, Meta};
use shardline_shards::placement::NodeId;
use shardline_shards::script::functions::{FN_TAG, FnApplied, FnCmd, Libraries};

/// How soon the metadata leader proposes `Drained` again if the first did not apply.
const DRAINED_AGAIN: Duration = Duration::from_secs(5);
/// How often the metadata leader looks for dead members to remove (`repair`), and how often
/// it says again why it cannot.
const REPAIR_PERIOD: Duration = Duration::from_secs(1);
const REPAIR_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a live leaving node that no group holds any more keeps hearing the leaders before
/// it is dropped (hints go out every second; it exits by itself once it has dropped all).
const DRAINED_GRACE: Duration = Duration::from_secs(5);
use shardline_shards::raft::conf::{CONF_TAG, ConfChange};
use shardline_shards::snapshot::SnapshotError;

/// The metadata group's members to start from: the static list's first five; on a node that
/// joined, some other member (a placeholder that never makes this node a voter; the group's
/// snapshot brings the real membership).
pub(super) fn meta_members(c: &Cluster) -> Vec<NodeId> {
    let voters = c.meta_voters();
    if !voters.is_empty() {
        return voters;
    }
    let other = c.member_ids().into_iter().find(|&id| id != c.me);
    vec![other.unwrap_or(if c.me == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    })]
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

/// Hands the members and replica sets to the routing every thread reads. Members the
/// metadata no longer names are dropped only when it is current (`Cluster::meta_current`):
/// while a restarted node replays it, its member table keeps what it knew and what its log
/// hints at (`dial_hints`), or it could not reach the members that would bring it up to date.
pub(super) fn publish_meta(c: &Cluster, m: &Meta) {
    // Members are dropped only from metadata that is current and names this node: metadata
    // without it is older than its join (a newcomer gets the metadata group's snapshot, which
    // may predate members its join answer named; found by the simulator: a newcomer that
    // took such a snapshot from the old leader as current forgot the member that had become
    // the metadata leader, refused its connections, and never caught up). Its removal is
    // told otherwise (`Replicas::left`).
    if c.meta_current.load(std::sync::atomic::Ordering::Acquire)
        && m.nodes.iter().any(|n| n.id == c.me)
    {
        let ids: Vec<NodeId> = m.nodes.iter().map(|n| n.id).collect();
        c.retain_members(&ids);
    }
    for n in &m.nodes {
        c.set_member(
            n.id,
            super::super::MemberAddrs {
                client: n.client,
                bus: n.bus,
            },
        );
    }
    c.note_meta_next_id(m.next_id());
    c.set_targets(&m.replicas);
    c.set_moves(&m.moves);
}

/// Thread 0, at start: the members that the metadata log's entries beyond what is known
/// committed (`tail`, applied to a copy of `m`) would add, given to the member table as
/// addresses to dial; nothing is removed. A node restarts knowing only what its snapshot
/// holds as committed; after a join, every member restarting at once (or the newcomer leading
/// the metadata) left the founders unable to reach the newcomers and the metadata group
/// without a quorum (found by the simulator's restart of every node). An entry that never
/// commits names at worst an address dialed for nothing until the metadata is current.
pub(super) fn dial_hints(c: &Cluster, m: &Meta, tail: &[raft::Entry]) {
    let mut scratch = m.clone();
    for e in tail {
        if e.data.first().is_none_or(|&b| b == CONF_TAG) {
            continue;
        }
        if let Ok(cmd) = Cmd::decode(&e.data) {
            let _ = scratch.apply(&cmd);
        }
    }
    for n in &scratch.nodes {
        if n.id != c.me && c.member(n.id).is_none() {
            c.set_member(
                n.id,
                super::super::MemberAddrs {
                    client: n.client,
                    bus: n.bus,
                },
            );
        }
    }
}

/// The answer to `CLUSTER JOIN`: `[cluster id (hex), the node's id, vShards, replication
/// factor, [[id, client, bus, threads]...]]`.
fn join_answer(m: &Meta, id: u64, out: &mut Out) {
    out.array(5);
    let hex = super::super::cluster_id_hex(&m.cluster_id);
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

/// Whether no vShard's committed voters (as routing knows them) hold member `id`. Unknown (0)
/// counts as holding it: only what routing saw committed counts.
fn vshards_free_of(c: &Cluster, vshards: usize, id: NodeId) -> bool {
    (0..vshards).all(|v| {
        let voters = c.replica_mask(VShardId(v as u16));
        voters != 0 && voters & super::super::mask(std::iter::once(id)) == 0
    })
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
        if data[0] == shardline_shards::calvin::seq::SEQ_TAG {
            // The sequencer's (`calvin/`): nobody waits on it here.
            self.apply_seq(&data[1..]);
            return Ok(());
        }
        if data[0] == FN_TAG {
            self.apply_functions(&data[1..], out);
            ends.push(out.buf.len() as u32);
            return Ok(());
        }
        if data[0] == shardline_shards::acl::wire::ACL_TAG {
            self.apply_acl(&data[1..], out);
            ends.push(out.buf.len() as u32);
            return Ok(());
        }
        let cmd = match Cmd::decode(data) {
            Ok(cmd) => cmd,
            Err(e) => {
                // Skipped alike by every replica (as a vShard's entry is, `finish_step`).
                tracing::error!(
                    "a committed metadata entry does not decode ({}); skipped",
                    e.0
                );
                return Ok(());
            }
        };
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
            Ok(Applied::MoveStarted { id }) => {
                let rec = m.moves.last().expect("just opened");
                tracing::info!(
                    id,
                    vshard = rec.vshard,
                    from = rec.from.0,
                    to = rec.to.0,
                    "a move started"
                );
                out.int(id as i64)
            }
            Ok(_) => out.ok(),
            Err(e) => out.error(&format!("ERR {e}")),
        }
        ends.push(out.buf.len() as u32);
        publish_meta(&self.c, m);
        Ok(())
    }

    /// Applies a committed change to the function libraries (FUNCTION LOAD, DELETE, FLUSH,
    /// RESTORE), writing its answer, and publishes the libraries to the node's threads.
    fn apply_functions(&mut self, data: &[u8], out: &mut Out) {
        let cmd = match FnCmd::decode(data) {
            Ok(cmd) => cmd,
            Err(e) => {
                // Skipped alike by every replica, as any metadata entry that does not decode.
                tracing::error!("a committed function entry does not decode ({e}); skipped");
                return out
                    .error("ERR the change to the functions did not decode (nothing was changed)");
            }
        };
        match self.functions.apply(&cmd) {
            Ok(FnApplied::Loaded(name)) => out.bulk(name.as_bytes()),
            Ok(FnApplied::Done) => out.ok(),
            Err(e) => return out.error(&e),
        }
        self.c.functions.publish(self.functions.clone());
    }

    /// Applies a committed ACL change (SETUSER, DELUSER, LOAD), writing its answer, and hands
    /// the users to every connection of the node.
    fn apply_acl(&mut self, data: &[u8], out: &mut Out) {
        use shardline_shards::acl::wire::{AclApplied, AclEntry};
        let entry = match AclEntry::decode(data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("a committed ACL entry does not decode ({e}); skipped");
                return out.error("ERR the ACL change did not decode (nothing was changed)");
            }
        };
        match entry.apply(&mut self.acl_users) {
            Ok(AclApplied::Ok) => out.ok(),
            Ok(AclApplied::Deleted(n)) => out.int(n),
            Err(e) => return out.error(&e),
        }
        if let Some(u) = &self.acl_users {
            self.c.acl.install_cluster(u.clone());
        }
    }

    /// The ACL users of the metadata group's snapshot (or none), handed to the connections.
    pub(super) fn install_acl(&mut self, users: Option<shardline_shards::acl::Users>) {
        self.acl_users = users;
        if let Some(u) = &self.acl_users {
            self.c.acl.install_cluster(u.clone());
        }
    }

    /// The function libraries of the metadata group's snapshot (or start state), published.
    pub(super) fn install_functions(&mut self, libs: Libraries) {
        self.functions = libs;
        self.c.functions.publish(self.functions.clone());
    }

    /// Installs the metadata group's snapshot (a node that joined gets its first one so).
    pub(super) fn install_meta(&mut self, state: &[u8]) -> Result<u64, SnapshotError> {
        let parts =
            shardline_shards::calvin::seq::split_state(state).map_err(|e| SnapshotError {
                offset: e.offset,
                reason: e.what(),
            })?;
        let m = Meta::decode(parts.meta).map_err(|e| SnapshotError {
            offset: 0,
            reason: e.0,
        })?;
        let libs = match parts.libs {
            None => Libraries::default(),
            Some(b) => Libraries::decode(b).map_err(|e| SnapshotError {
                offset: e.offset,
                reason: "the function libraries do not decode",
            })?,
        };
        if m.cluster_id != self.c.cluster_id {
            return Err(SnapshotError {
                offset: 1,
                reason: "the metadata of another cluster",
            });
        }
        let users = match parts.users {
            None => None,
            Some(b) => shardline_shards::acl::wire::decode_users(b).map_err(|_| SnapshotError {
                offset: 0,
                reason: "the ACL users do not decode",
            })?,
        };
        self.install_seq(parts.seq)
            .map_err(|reason| SnapshotError { offset: 0, reason })?;
        self.install_functions(libs);
        self.install_acl(users);
        publish_meta(&self.c, &m);
        self.meta = Some(m);
        Ok(0)
    }

    /// On the metadata group's leader, one membership change at a time: adds the first member
    /// not yet in the group as a learner; keeps 3
    /// voters once there are 3 nodes staying, 5 from 5, promoting caught-up learners; removes
    /// dropped nodes from the group, and leaving ones once no vShard holds them and the voters
    /// that stay are enough; and
    /// proposes `Drained` for a leaving node no group holds a replica on any more.
    pub(super) fn meta_duty(&mut self, now: Instant) {
        let g = self.meta_g;
        let (Some(m), Some(grp)) = (&self.meta, self.groups[g as usize].as_mut()) else {
            return;
        };
        // Only on what is committed, applied: a leader that restarted acts on the metadata
        // of its log's end, not on the older state it is replaying.
        if grp.role() != raft::Role::Leader || self.applied[g as usize].index < grp.commit_index() {
            return;
        }
        // A replica that starts empty (a learner, a node that joined) must start from a
        // snapshot: the static start state is not in the log. So a leader whose log was never
        // compacted compacts before anything else, including a leader elected after another
        // added a learner but died before its snapshot reached it (found by the test that kills
        // the metadata leader mid-join: the new leader sent entries from index 1, and the
        // joined node stopped on an entry it could not apply).
        if grp.snapshot_id().index == 0 {
            return self.compact(g);
        }
        let staying = |id: NodeId| m.node(id).is_some_and(|n| !n.leaving);
        let conf = grp.membership().clone();
        let change = if let Some(new) = m
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|&id| staying(id) && !conf.contains(id))
        {
            ConfChange::AddLearner(new)
        } else {
            let want = match m.nodes.iter().filter(|n| !n.leaving).count() {
                0..=2 => 1,
                3 | 4 => 3,
                _ => 5,
            };
            let voters = conf.voters.iter().filter(|&&v| staying(v)).count();
            let ready =
                conf.learners.iter().copied().find(|&l| {
                    staying(l) && grp.progress(l).is_some_and(|p| p >= grp.commit_index())
                });
            // A leaving node stays in the group until no vShard holds it: until then it must
            // hear every metadata change (its leaders walk its groups toward the latest
            // placement, and it learns it is leaving from the log). Removed at once, it could
            // miss the commit of its own `RemoveNode` (a leader stops replicating to a member
            // as soon as it appends the membership without it) and never leave, or act on a
            // placement that still named a node removed after it (found by the test removing
            // two nodes at once: both stayed forever). A dropped node goes at once.
            let vshards = g as usize;
            let departing = conf
                .voters
                .iter()
                .chain(&conf.learners)
                .copied()
                .find(|&id| {
                    !staying(id) && (m.node(id).is_none() || vshards_free_of(&self.c, vshards, id))
                });
            match (ready, departing) {
                (Some(l), _) if voters < want => ConfChange::Promote(l),
                (_, Some(d)) if voters >= want || !conf.is_voter(d) => ConfChange::Remove(d),
                _ => {
                    self.propose_drained(now);
                    self.repair(now);
                    return self.close_moves(now);
                }
            }
        };
        if grp.propose_conf(change).is_ok() {
            tracing::info!(?change, "metadata group: membership change");
            self.touch(g);
        }
    }

    /// On the metadata leader: `Drained` for the first leaving node that neither the metadata
    /// group nor any vShard's committed voters (as routing knows them) hold, at most once per
    /// `DRAINED_AGAIN` (a repeat is refused harmlessly once the first applied).
    fn propose_drained(&mut self, now: Instant) {
        let Some(m) = &self.meta else { return };
        if self.drained_at.is_some_and(|t| now < t) {
            return;
        }
        let grp = self.groups[self.meta_g as usize].as_ref().expect("checked");
        let vshards = self.meta_g as usize;
        let drained = m.nodes.iter().map(|n| n.id).find(|&id| {
            m.node(id).is_some_and(|n| n.leaving)
                && !grp.membership().contains(id)
                && vshards_free_of(&self.c, vshards, id)
        });
        let Some(id) = drained else {
            self.drained_seen = None;
            return;
        };
        // A live leaving node learns of its last removals from notices and the leaders' hints
        // (every second), which stop once it is dropped: give them time, unless it is gone.
        let since = match self.drained_seen {
            Some((seen, t)) if seen == id => t,
            _ => {
                self.drained_seen = Some((id, now));
                now
            }
        };
        if self.c.is_up(id) && now < since + DRAINED_GRACE {
            return;
        }
        let mut cmd = Vec::new();
        Cmd::Drained { id }.encode(&mut cmd);
        if self.propose_meta(cmd).is_ok() {
            tracing::info!(
                node = id.0,
                "no group holds a replica on a leaving node: dropping it"
            );
            self.drained_at = Some(now + DRAINED_AGAIN);
        }
    }

    /// On the metadata leader, once every `REPAIR_PERIOD` when `cluster-node-down-after-ms`
    /// is set: removes a member SWIM has held dead that long (`RemoveNode`, as CLUSTER FORGET;
    /// the moves machinery makes its replicas again elsewhere), unless a vShard it holds has
    /// no live majority without it or the metadata would refuse (`meta::repair::decide`):
    /// then it says why (INFO `cluster_repair_blocked`, a log line every `REPAIR_LOG_EVERY`).
    fn repair(&mut self, now: Instant) {
        use shardline_shards::meta::repair::{Blocked, Repair, decide};
        let after = self.c.node_down_after_ms;
        if after == 0 || self.repair_at.is_some_and(|t| now < t) {
            return;
        }
        self.repair_at = Some(now + REPAIR_PERIOD);
        let Some(m) = &self.meta else { return };
        let c = self.c.clone();
        let dead: Vec<Option<u64>> = self
            .peers
            .iter()
            .map(|p| {
                p.dead_since
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64)
            })
            .collect();
        let dead_ms = |id: NodeId| dead.get(id.slot()).copied().flatten();
        let vshards = self.meta_g as u16;
        let decision = decide(m, vshards, |v| c.members(VShardId(v)), dead_ms, after);
        let blocked = match &decision {
            Repair::Blocked {
                why: Blocked::NoMajority(v),
                ..
            } => v.len() as u64,
            _ => 0,
        };
        c.repair_blocked
            .store(blocked, std::sync::atomic::Ordering::Relaxed);
        match decision {
            Repair::Nothing => {}
            Repair::Remove(id) => {
                let mut cmd = Vec::new();
                Cmd::RemoveNode { id }.encode(&mut cmd);
                if self.propose_meta(cmd).is_ok() {
                    c.repairs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        node = id.0,
                        dead_ms = dead_ms(id),
                        "automatic repair: removing a member dead for cluster-node-down-after-ms; its replicas are made again on the others"
                    );
                }
            }
            Repair::Blocked { id, why } => {
                if self
                    .repair_logged
                    .is_none_or(|t| now >= t + REPAIR_LOG_EVERY)
                {
                    self.repair_logged = Some(now);
                    match why {
                        Blocked::NoMajority(v) => tracing::warn!(
                            node = id.0,
                            vshards = ?v,
                            "automatic repair: not removing a dead member: these vShards have no live majority of their replicas (bring their dead replicas back)"
                        ),
                        Blocked::Refused(e) => tracing::warn!(
                            node = id.0,
                            "automatic repair: not removing a dead member: {e:?}"
                        ),
                    }
                }
            }
        }
    }

    /// On the metadata leader, once per moves period: `MoveDone` for every open move whose
    /// group's committed voters (as routing knows them) are its placement, again at most once
    /// per `DRAINED_AGAIN` (a repeat is refused harmlessly once the first applied).
    fn close_moves(&mut self, now: Instant) {
        if self.moves_closed_at.is_some_and(|t| now < t) {
            return;
        }
        // Looked at once per moves period, not at every step.
        self.moves_closed_at = Some(now + super::moves::MOVES_PERIOD);
        self.rebalance(now);
        let Some(m) = &self.meta else { return };
        let open: Vec<_> = m
            .moves
            .iter()
            .filter(|r| r.state == shardline_shards::meta::MoveState::Open)
            .copied()
            .collect();
        self.lead_seen
            .retain(|(id, _)| open.iter().any(|r| r.id == *id));
        for rec in open {
            let id = rec.id;
            let cmd = match self.move_arrived(&rec, now) {
                (true, _) => Cmd::MoveDone { id },
                (false, true) => Cmd::CancelMove { id },
                (false, false) => continue,
            };
            let done = matches!(cmd, Cmd::MoveDone { .. });
            let mut b = Vec::new();
            cmd.encode(&mut b);
            if self.propose_meta(b).is_ok() {
                if done {
                    tracing::info!(id, "a move's group is where it was moved: closing it");
                } else {
                    tracing::info!(
                        id,
                        vshard = rec.vshard,
                        to = rec.to.0,
                        "a leadership move's node did not take the lead in time: cancelling it"
                    );
                }
                self.moves_closed_at = Some(now + DRAINED_AGAIN);
            }
        }
    }

    /// Proposes a metadata change for op `op` of job `j` (thread 0): the answer is written when
    /// it is applied. `Err`: this node does not lead the metadata group (nothing proposed).
    pub(super) fn propose_meta(&mut self, cmd: Vec<u8>) -> Result<(u64, u64), Option<NodeId>> {
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
