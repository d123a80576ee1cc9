//! Group membership: who votes, who only learns, how a change is carried in the log, and the
//! snapshot blob that records the membership at a snapshot's last entry (docs/design/replication.md,
//! "Membership changes in the Raft core"). Pure data and codecs; the rules of when a change
//! may be proposed and when it takes effect are in `Group`.

use super::{MAX_MEMBERS, NodeId};
use bytes::Bytes;

/// The first byte of a membership entry's data. The state machine's own encoding must never
/// start with it (`replicate.rs` asserts this), so every replica can tell the two apart.
pub const CONF_TAG: u8 = 0xC0;

/// The members of a group. Invariant: the two lists are disjoint, hold no duplicates, and
/// together hold at most `MAX_MEMBERS` ids; `voters` is not empty.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    /// In preference order: the first is the preferred leader and the first successor when
    /// the node-level detector reports the leader lost.
    pub voters: Vec<NodeId>,
    /// Receive the log; never vote, never count towards a quorum, never stand for election.
    pub learners: Vec<NodeId>,
}

/// One change, applied to the membership in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    AddLearner(NodeId),
    /// A learner becomes a voter (added last in preference order).
    Promote(NodeId),
    /// A voter or learner leaves the group.
    Remove(NodeId),
}

/// Why a change was not proposed. Nothing changed in any case.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfError {
    /// Only the leader proposes; retry there.
    NotLeader { leader: Option<NodeId> },
    /// The previous change is not committed yet, this leader has not yet committed an entry
    /// of its own term, or the learner to promote does not hold everything committed yet:
    /// retry shortly.
    Pending,
    /// The change makes no sense for the membership in effect (not retryable as is).
    Invalid(&'static str),
}

impl std::fmt::Display for ConfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfError::NotLeader { leader } => write!(f, "not the leader (leader: {leader:?})"),
            ConfError::Pending => write!(f, "a membership change is still in progress"),
            ConfError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl Membership {
    pub fn of_voters(voters: &[NodeId]) -> Membership {
        Membership {
            voters: voters.to_vec(),
            learners: Vec::new(),
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters then learners.
    pub fn all(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// The membership after `change`, if the change is valid here.
    pub fn apply(&self, change: ConfChange) -> Result<Membership, ConfError> {
        let mut m = self.clone();
        match change {
            ConfChange::AddLearner(id) => {
                if !(1..=crate::meta::NODES_MAX).contains(&id.0) {
                    return Err(ConfError::Invalid("not a member id"));
                }
                if self.contains(id) {
                    return Err(ConfError::Invalid("already a member"));
                }
                if self.voters.len() + self.learners.len() >= MAX_MEMBERS {
                    return Err(ConfError::Invalid("the group is full"));
                }
                m.learners.push(id);
            }
            ConfChange::Promote(id) => {
                let Some(i) = self.learners.iter().position(|&l| l == id) else {
                    return Err(ConfError::Invalid("only a learner can be promoted"));
                };
                m.learners.remove(i);
                m.voters.push(id);
            }
            ConfChange::Remove(id) => {
                if let Some(i) = self.learners.iter().position(|&l| l == id) {
                    m.learners.remove(i);
                } else if let Some(i) = self.voters.iter().position(|&v| v == id) {
                    if self.voters.len() == 1 {
                        return Err(ConfError::Invalid("the last voter cannot be removed"));
                    }
                    m.voters.remove(i);
                } else {
                    return Err(ConfError::Invalid("not a member"));
                }
            }
        }
        Ok(m)
    }

    /// Appends the encoding: `count: u8 | ids: u64...` for voters, then for learners.
    fn put(&self, out: &mut Vec<u8>) {
        for list in [&self.voters, &self.learners] {
            out.push(list.len() as u8);
            for id in list {
                out.extend_from_slice(&id.0.to_le_bytes());
            }
        }
    }

    /// Decodes a membership from the front of `b`; returns it and the bytes after it. `None`
    /// for anything malformed or breaking the invariant (a peer's bad bytes, never a panic).
    fn take(b: &[u8]) -> Option<(Membership, &[u8])> {
        let mut rest = b;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let (&n, r) = rest.split_first()?;
            let n = n as usize;
            if n > MAX_MEMBERS || r.len() < n * 8 {
                return None;
            }
            list.extend(
                r[..n * 8]
                    .chunks_exact(8)
                    .map(|c| NodeId(u64::from_le_bytes(c.try_into().expect("8")))),
            );
            rest = &r[n * 8..];
        }
        let [voters, learners] = lists;
        let m = Membership { voters, learners };
        m.valid().then_some((m, rest))
    }

    /// Voters, at most `MAX_MEMBERS` members, each once, each a member id the cluster can
    /// give (`1..=NODES_MAX`: a forged id out of that range was once taken in from a hostile
    /// member's snapshot, found by the simulator, and tripped the routing's replica masks).
    pub(crate) fn valid(&self) -> bool {
        let n = self.voters.len() + self.learners.len();
        let mut ids: Vec<NodeId> = self.all().collect();
        ids.sort_unstable();
        ids.dedup();
        !self.voters.is_empty()
            && n <= MAX_MEMBERS
            && ids.len() == n
            && ids
                .iter()
                .all(|id| (1..=crate::meta::NODES_MAX).contains(&id.0))
    }

    /// The data of the log entry that makes this the membership.
    pub fn to_entry_data(&self) -> Bytes {
        let mut out = vec![CONF_TAG];
        self.put(&mut out);
        out.into()
    }

    /// The membership an entry's data carries, if it is a membership entry (a malformed one,
    /// which no leader of ours writes, is treated as no change: a peer's bytes never panic).
    pub fn from_entry_data(data: &[u8]) -> Option<Membership> {
        let rest = data.strip_prefix(&[CONF_TAG])?;
        Membership::take(rest).map(|(m, _)| m)
    }
}

/// The next change that moves a group's membership `m` towards the voters `target` without
/// ever lowering its fault tolerance: a new replica joins as a learner (one at a time), is
/// promoted once it holds everything committed (`progress` of a member, against `commit`), and
/// only then does a voter outside the target leave; learners outside the target leave at once.
/// `None`: the membership holds exactly the target's replicas (their order aside). The one
/// mechanism for joins, leaves, replacing a node and changing the replication factor; the
/// group's leader calls it, and proposes what it returns once the previous change committed.
pub fn next_change(
    target: &[NodeId],
    m: &Membership,
    progress: impl Fn(NodeId) -> Option<u64>,
    commit: u64,
) -> Option<ConfChange> {
    if target.is_empty() {
        return None; // no target to move to: a group never loses its last voter this way
    }
    // A learner that is no longer wanted leaves first.
    if let Some(&l) = m.learners.iter().find(|l| !target.contains(l)) {
        return Some(ConfChange::Remove(l));
    }
    // A wanted learner that caught up becomes a voter.
    if let Some(&l) = m
        .learners
        .iter()
        .find(|&&l| progress(l).is_some_and(|p| p >= commit))
    {
        return Some(ConfChange::Promote(l));
    }
    // An unwanted voter leaves once its replacement votes (more voters than the target has).
    if let Some(&v) = m.voters.iter().find(|v| !target.contains(v))
        && m.voters.len() > target.len()
    {
        return Some(ConfChange::Remove(v));
    }
    // The next missing replica joins, once no other is catching up.
    if m.learners.is_empty()
        && let Some(&t) = target.iter().find(|t| !m.contains(**t))
    {
        return Some(ConfChange::AddLearner(t));
    }
    None
}

/// A snapshot as the core stores and sends it: the membership at its last entry, then the
/// state machine's bytes. An empty blob is "no snapshot yet".
pub fn snapshot_blob(conf: &Membership, state: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + 8 * MAX_MEMBERS + state.len());
    conf.put(&mut out);
    out.extend_from_slice(state);
    out.into()
}

/// The membership at the front of a snapshot blob and the bytes it takes (`None`: malformed,
/// or cut short). At most `MEMBERSHIP_BYTES_MAX` bytes.
pub fn membership_prefix(b: &[u8]) -> Option<(Membership, usize)> {
    let (m, rest) = Membership::take(b)?;
    Some((m, b.len() - rest.len()))
}

/// The most bytes a membership takes at the front of a snapshot blob.
pub const MEMBERSHIP_BYTES_MAX: usize = 2 * (1 + MAX_MEMBERS * 8);

/// Splits a snapshot blob into its membership and the state machine's bytes (a zero-copy
/// slice of `blob`). `None`: the blob is malformed.
pub fn split_snapshot(blob: &Bytes) -> Option<(Membership, Bytes)> {
    let (m, rest) = Membership::take(blob)?;
    let state = blob.slice(blob.len() - rest.len()..);
    Some((m, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: crate::ids::nodes(voters),
            learners: crate::ids::nodes(learners),
        }
    }

    #[test]
    fn changes_follow_the_rules_of_one_server_at_a_time() {
        let base = m(&[1, 2, 3], &[]);
        let with4 = base.apply(ConfChange::AddLearner(NodeId(4))).unwrap();
        assert_eq!(with4, m(&[1, 2, 3], &[4]));
        assert_eq!(
            with4.apply(ConfChange::Promote(NodeId(4))).unwrap(),
            m(&[1, 2, 3, 4], &[])
        );
        assert_eq!(
            with4.apply(ConfChange::Remove(NodeId(2))).unwrap(),
            m(&[1, 3], &[4])
        );
        assert_eq!(with4.apply(ConfChange::Remove(NodeId(4))).unwrap(), base);
        assert!(matches!(
            base.apply(ConfChange::AddLearner(NodeId(2))),
            Err(ConfError::Invalid(_))
        ));
        assert!(matches!(
            base.apply(ConfChange::Promote(NodeId(2))),
            Err(ConfError::Invalid(_))
        ));
        assert!(matches!(
            base.apply(ConfChange::Remove(NodeId(9))),
            Err(ConfError::Invalid(_))
        ));
        assert!(matches!(
            m(&[1], &[]).apply(ConfChange::Remove(NodeId(1))),
            Err(ConfError::Invalid(_))
        ));
        let full = m(&[1, 2, 3, 4, 5], &[6, 7, 8, 9]);
        assert!(matches!(
            full.apply(ConfChange::AddLearner(NodeId(10))),
            Err(ConfError::Invalid(_))
        ));
    }

    #[test]
    fn membership_entries_round_trip_and_other_data_is_not_one() {
        let x = m(&[3, 1], &[7]);
        let data = x.to_entry_data();
        assert_eq!(data[0], CONF_TAG);
        assert_eq!(Membership::from_entry_data(&data), Some(x.clone()));
        assert_eq!(Membership::from_entry_data(b""), None);
        assert_eq!(Membership::from_entry_data(b"\x01SET"), None);
        // Ids the cluster never gives out (0, past NODES_MAX): refused.
        for bad in [0, crate::meta::NODES_MAX + 1] {
            assert_eq!(
                Membership::from_entry_data(&m(&[1, bad], &[]).to_entry_data()),
                None
            );
            assert!(x.apply(ConfChange::AddLearner(NodeId(bad))).is_err());
        }
    }

    #[test]
    fn malformed_memberships_are_refused_not_panicked_on() {
        for bad in [
            &[][..],
            &[1][..],                            // a voter count with no id
            &[0, 0][..],                         // no voters
            &[10][..],                           // more than MAX_MEMBERS
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 1][..], // learner count with no id
        ] {
            assert_eq!(Membership::take(bad), None, "{bad:?}");
        }
        // Duplicates break the invariant.
        let dup = m(&[1, 1], &[]);
        let mut b = Vec::new();
        dup.put(&mut b);
        assert_eq!(Membership::take(&b), None);
    }

    /// Drives `next_change` to the end, every learner caught up at once; returns the steps.
    fn plan(from: Membership, target: &[u64]) -> Vec<ConfChange> {
        let mut m = from;
        let mut steps = Vec::new();
        let target = &crate::ids::nodes(target)[..];
        while let Some(c) = next_change(target, &m, |_| Some(10), 10) {
            m = m.apply(c).unwrap();
            steps.push(c);
            assert!(steps.len() < 20, "no end: {steps:?}");
        }
        let (mut got, mut want) = (m.voters.clone(), target.to_vec());
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!((got, m.learners.len()), (want, 0));
        steps
    }

    #[test]
    fn moves_add_a_learner_promote_it_then_remove_the_old_voter() {
        use ConfChange::*;
        // Replace node 1 by node 4 (a join taking its share, or a node leaving).
        assert_eq!(
            plan(m(&[1, 2, 3], &[]), &[4, 2, 3]),
            vec![AddLearner(NodeId(4)), Promote(NodeId(4)), Remove(NodeId(1))]
        );
        // Replace two: one at a time, never below three voters.
        assert_eq!(
            plan(m(&[1, 2, 3], &[]), &[2, 4, 5]),
            vec![
                AddLearner(NodeId(4)),
                Promote(NodeId(4)),
                Remove(NodeId(1)),
                AddLearner(NodeId(5)),
                Promote(NodeId(5)),
                Remove(NodeId(3))
            ]
        );
        // Replication factor 1 to 3, and back.
        assert_eq!(
            plan(m(&[1], &[]), &[1, 2, 3]),
            vec![
                AddLearner(NodeId(2)),
                Promote(NodeId(2)),
                AddLearner(NodeId(3)),
                Promote(NodeId(3))
            ]
        );
        assert_eq!(
            plan(m(&[1, 2, 3], &[]), &[2]),
            vec![Remove(NodeId(1)), Remove(NodeId(3))]
        );
        // An unwanted learner leaves first; the target reached means nothing to do.
        assert_eq!(
            plan(m(&[1, 2, 3], &[9]), &[1, 2, 3]),
            vec![Remove(NodeId(9))]
        );
        assert_eq!(plan(m(&[3, 1, 2], &[]), &[1, 2, 3]), vec![]);
    }

    #[test]
    fn a_learner_is_promoted_only_once_it_holds_everything_committed() {
        let x = m(&[1, 2, 3], &[4]);
        let behind = |id| (id == NodeId(4)).then_some(7);
        assert_eq!(
            next_change(&[NodeId(4), NodeId(2), NodeId(3)], &x, behind, 10),
            None,
            "wait"
        );
        let caught_up = |id| (id == NodeId(4)).then_some(10);
        assert_eq!(
            next_change(&[NodeId(4), NodeId(2), NodeId(3)], &x, caught_up, 10),
            Some(ConfChange::Promote(NodeId(4)))
        );
        // While it catches up, the old voter stays and no other learner is added.
        assert_eq!(
            next_change(&[NodeId(4), NodeId(5), NodeId(3)], &x, behind, 10),
            None
        );
    }

    #[test]
    fn a_snapshot_blob_splits_into_membership_and_state() {
        let x = m(&[1, 2, 3], &[4]);
        let blob = snapshot_blob(&x, b"state bytes");
        let (c, state) = split_snapshot(&blob).unwrap();
        assert_eq!(c, x);
        assert_eq!(&state[..], b"state bytes");
        assert_eq!(split_snapshot(&Bytes::from_static(b"\x05")), None);
    }
}
