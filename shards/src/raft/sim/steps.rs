//! Step-by-step tests of elections, quiescence, check-quorum, pre-vote, read-index and
//! snapshots: one fixture, a few inputs, the exact outcome.

use super::*;

/// Replica `id` of a three-member group (1, 2, 3) with short timers and no pre-vote.
pub(super) fn three(id: NodeId, seed: u64) -> Config {
    Config {
        id,
        members: vec![NodeId(1), NodeId(2), NodeId(3)],
        election_ticks: 5,
        leader_wait_ticks: 0,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        bulk_snapshots: false,
        pre_vote: false,
        seed,
        check_snapshot: SnapshotCheck::any(),
    }
}

#[test]
fn a_stale_leader_cannot_commit_and_yields_to_a_higher_term() {
    let cfg = |id| three(id, 3);
    let mut a = Group::new(cfg(NodeId(1)));
    // Node 1 elects itself with node 2's vote.
    let term = elect(&mut a, &[NodeId(2)]);
    assert_eq!(a.role(), Role::Leader);
    let r = a.take_ready();
    assert!(
        r.messages
            .iter()
            .any(|m| matches!(m.msg, Msg::Append { .. }))
    );
    // Cut off, it accepts a proposal but cannot commit it without an acknowledgement.
    let i = a.propose(b"x".to_vec()).unwrap();
    let r = a.take_ready();
    assert!(r.committed.iter().all(|e| e.index < i));
    // A message of a higher term turns it into a follower; proposals are refused.
    a.step(
        NodeId(3),
        Msg::Vote {
            term: term + 1,
            last: LogId {
                term: term + 1,
                index: 10,
            },
        },
    );
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.propose(b"y".to_vec()), Err(NotLeader { leader: None }));
    let r = a.take_ready();
    assert_eq!(
        r.hard_state,
        Some(HardState {
            term: term + 1,
            vote: Some(NodeId(3))
        })
    );
}

/// Raft's figure 8: a leader must not commit an entry of an earlier term by counting replicas,
/// only through an entry of its own term.
#[test]
fn entries_of_earlier_terms_commit_only_through_the_current_term() {
    let members = [1u64, 2, 3, 4, 5];
    let cfg = Config {
        id: NodeId(1),
        members: crate::ids::nodes(&members),
        election_ticks: 5,
        leader_wait_ticks: 0,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        bulk_snapshots: false,
        pre_vote: false,
        seed: 8,
        check_snapshot: SnapshotCheck::any(),
    };
    let old = |term, index| Entry {
        term,
        index,
        data: b"old".to_vec().into(),
    };
    // Restarted with an entry of term 2 that never committed, last voted in term 3.
    let mut g = Group::restore(
        cfg,
        HardState {
            term: 3,
            vote: None,
        },
        vec![old(1, 1), old(2, 2)],
    );
    let term = elect(&mut g, &[NodeId(2), NodeId(3)]);
    assert_eq!(g.role(), Role::Leader);
    let r = g.take_ready();
    assert_eq!(
        r.entries.last().map(|e| (e.term, e.index)),
        Some((term, 3)),
        "no-op at 3"
    );
    // Two followers now hold index 2 (term 2): with the leader that is a majority of five, but
    // index 2 is from an earlier term and must not commit yet.
    g.step(
        NodeId(2),
        Msg::AppendReply {
            term,
            success: true,
            last: 2,
            ctx: 0,
        },
    );
    g.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: true,
            last: 2,
            ctx: 0,
        },
    );
    assert_eq!(g.commit_index(), 0);
    assert!(g.take_ready().committed.is_empty());
    // Once the no-op of this term is on a majority, everything up to it commits.
    g.step(
        NodeId(2),
        Msg::AppendReply {
            term,
            success: true,
            last: 3,
            ctx: 0,
        },
    );
    g.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: true,
            last: 3,
            ctx: 0,
        },
    );
    assert_eq!(g.commit_index(), 3);
    assert_eq!(g.take_ready().committed.len(), 3);
}

/// After every step, each live replica equals what its write-ahead log alone would restore.
#[test]
fn every_replica_is_what_its_log_restores() {
    let mut sim = Sim::new(0, &[NodeId(1), NodeId(2), NodeId(3)]);
    for step in 0..3000 {
        sim.step();
        for (id, n) in sim.nodes.iter() {
            let Some(g) = n.group.as_ref() else { continue };
            let files = n.files.iter().map(|(s, b)| (*s, b.clone())).collect();
            let rec = Engine::recover(wal_config(), files).unwrap().engine;
            let cfg = Config {
                id: *id,
                ..sim.cfg.clone()
            };
            let r = storage::restore(&rec, GROUP, cfg, n.snap_file.clone().into()).unwrap();
            assert_eq!(r.log(), g.log(), "step {step} node {id}");
            assert_eq!(r.membership(), g.membership(), "step {step} node {id}");
            assert_eq!(r.term(), g.term(), "step {step} node {id} term");
        }
    }
    assert!(!sim.applied.is_empty(), "the run made progress");
}

/// An idle group goes quiet after one last heartbeat (no messages, no timers, so a driver need
/// not tick it), wakes on a proposal, and fails over at once when the leader's node is reported
/// gone.
#[test]
fn idle_groups_go_quiet_and_wake_for_writes_and_failover() {
    let mut sim = Sim::new(11, &[NodeId(1), NodeId(2), NodeId(3)]);
    // Elect, commit something, let it settle.
    sim.converge();
    let run = |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
    run(&mut sim, 20);
    assert!(
        sim.nodes
            .values()
            .all(|n| n.group.as_ref().unwrap().is_quiet()),
        "every replica is quiet"
    );
    assert_eq!(run(&mut sim, 500), 0, "a quiet group sends nothing");
    // A write wakes it and commits.
    let leader = sim.leader();
    let before = sim.applied.len();
    let g = sim.group(leader);
    g.propose(b"wake".to_vec()).unwrap();
    sim.drain(leader);
    run(&mut sim, 20);
    assert!(sim.applied.len() > before, "the write committed");
    run(&mut sim, 20);
    assert_eq!(run(&mut sim, 200), 0, "and it went quiet again");
    // The leader's node dies; a quiet follower hears it from the node level and takes over
    // without waiting out an election timeout.
    sim.nodes.get_mut(&leader).unwrap().group = None;
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    sim.drain(follower);
    run(&mut sim, 3);
    let g = sim.nodes[&follower].group.as_ref().unwrap();
    assert_eq!(g.role(), Role::Leader, "elected within a few ticks");
}

/// A quiet leader sends nothing, so cut off it would lead forever in its own eyes (the quiet
/// followers run no timers either): told by the failure detector that a voter's node is gone,
/// it runs a quorum check, steps down when cut off, and goes quiet again when its quorum
/// answers. (Waiters of blocking commands parked on such a leader were never redirected.)
#[test]
fn a_quiet_leader_told_a_voter_is_lost_verifies_its_quorum() {
    let mut sim = Sim::new(13, &[NodeId(1), NodeId(2), NodeId(3)]);
    sim.converge();
    let run = |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
    run(&mut sim, 20);
    let leader = sim.leader();
    let term = sim.group(leader).term();
    assert!(sim.group(leader).is_quiet());
    // With its quorum: still the leader, in the same term, and quiet again.
    sim.group(leader).verify_quorum();
    assert!(!sim.group(leader).is_quiet());
    sim.drain(leader);
    run(&mut sim, 40);
    assert_eq!(sim.group(leader).role(), Role::Leader);
    assert_eq!(sim.group(leader).term(), term);
    assert!(sim.group(leader).is_quiet(), "quiet again once verified");
    assert_eq!(run(&mut sim, 100), 0, "and sends nothing");
    // Cut off and quiet, it goes on leading...
    sim.isolate(leader);
    run(&mut sim, 100);
    assert_eq!(sim.group(leader).role(), Role::Leader);
    // ...until told: one election timeout (10 ticks) later it steps down.
    sim.group(leader).verify_quorum();
    sim.drain(leader);
    run(&mut sim, 9);
    assert_eq!(
        sim.group(leader).role(),
        Role::Leader,
        "not before the check"
    );
    run(&mut sim, 1);
    assert_eq!(sim.group(leader).role(), Role::Follower);
    // A follower is not concerned.
    let f = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(f).verify_quorum();
    assert!(sim.group(f).is_quiet());
}

/// When every survivor hears that the leader's node is gone, only the designated successor (the
/// first member other than the lost leader) stands at once: one election, one new term, no split
/// vote (regression: all survivors campaigned together and split the vote, so failover waited
/// out an election timeout).
#[test]
fn a_lost_leader_is_replaced_by_one_election_without_a_split_vote() {
    for seed in 0..20 {
        let mut sim = Sim::new(
            seed,
            &[NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)],
        );
        sim.converge();
        let run =
            |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
        run(&mut sim, 20);
        let leader = sim.leader();
        let term = sim.group(leader).term();
        sim.nodes.get_mut(&leader).unwrap().group = None;
        let survivors: Vec<NodeId> = sim
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != leader)
            .collect();
        for &id in &survivors {
            sim.group(id).leader_lost();
            sim.drain(id);
        }
        run(&mut sim, 3);
        let successor = survivors[0];
        assert_eq!(
            sim.group(successor).role(),
            Role::Leader,
            "seed {seed}: the designated successor leads within 3 ticks"
        );
        assert_eq!(
            sim.group(successor).term(),
            term + 1,
            "seed {seed}: one election"
        );
    }
}

/// A settled leader hands its leadership to a chosen voter: one election in the next term,
/// won by that voter, nothing lost; an unsettled leader (a follower behind) refuses, as does a
/// transfer to a non-voter or to itself. A `TimeoutNow` from anyone but the leader is ignored.
#[test]
fn a_settled_leader_hands_leadership_to_the_voter_it_names() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, &[NodeId(1), NodeId(2), NodeId(3)]);
        sim.converge();
        let run =
            |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
        run(&mut sim, 20);
        let leader = sim.leader();
        let term = sim.group(leader).term();
        let to = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
        let other = *sim
            .nodes
            .keys()
            .find(|&&id| id != leader && id != to)
            .unwrap();
        assert!(!sim.group(leader).transfer_leader(leader), "seed {seed}");
        assert!(
            !sim.group(leader).transfer_leader(NodeId(9)),
            "seed {seed}: not a member"
        );
        // Not from the leader: ignored.
        sim.group(to).step(other, Msg::TimeoutNow { term });
        assert_eq!(sim.group(to).role(), Role::Follower, "seed {seed}");
        let applied = sim.applied.len();
        assert!(sim.group(leader).transfer_leader(to), "seed {seed}");
        sim.drain(leader);
        run(&mut sim, 5);
        assert_eq!(sim.group(to).role(), Role::Leader, "seed {seed}");
        assert_eq!(sim.group(to).term(), term + 1, "seed {seed}: one election");
        assert_eq!(sim.group(leader).role(), Role::Follower, "seed {seed}");
        // The new leader commits; nothing committed before is lost (the sim checks every
        // replica's applied entries against each other as it goes).
        sim.group(to).propose(b"after".to_vec()).unwrap();
        sim.drain(to);
        run(&mut sim, 20);
        assert!(sim.applied.len() > applied, "seed {seed}");
        // A proposal not yet replicated: the leader is not settled and refuses to hand over.
        sim.group(to).propose(b"in flight".to_vec()).unwrap();
        assert!(!sim.group(to).transfer_leader(leader), "seed {seed}");
        // A voter cut off lags behind what commits next: it can no longer take over, but the
        // caught-up one still can (regression: a dead voter pinned leadership where it was).
        run(&mut sim, 20);
        sim.isolate(other);
        sim.group(to)
            .propose(b"while other is away".to_vec())
            .unwrap();
        sim.drain(to);
        run(&mut sim, 20);
        assert_eq!(sim.group(to).role(), Role::Leader, "seed {seed}");
        assert!(!sim.group(to).transfer_leader(other), "seed {seed}");
        let term = sim.group(to).term();
        assert!(sim.group(to).transfer_leader(leader), "seed {seed}");
        sim.drain(to);
        run(&mut sim, 5);
        assert_eq!(sim.group(leader).role(), Role::Leader, "seed {seed}");
        assert_eq!(sim.group(leader).term(), term + 1, "seed {seed}");
    }
}

/// While a handover runs the leader takes no proposal (it would be cut off by the target's
/// election, or make the target's log too short to win); if the `TimeoutNow` is lost, the
/// window closes after an election timeout and the leader takes proposals again.
#[test]
fn a_leader_handing_over_refuses_proposals_until_the_handover_ends() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, &[NodeId(1), NodeId(2), NodeId(3)]);
        sim.converge();
        let run =
            |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
        run(&mut sim, 20);
        let leader = sim.leader();
        let to = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
        assert!(sim.group(leader).transfer_leader(to), "seed {seed}");
        assert_eq!(
            sim.group(leader).propose(b"x".to_vec()),
            Err(NotLeader { leader: None }),
            "seed {seed}"
        );
        assert_eq!(
            sim.group(leader)
                .propose_conf(ConfChange::AddLearner(NodeId(9))),
            Err(ConfError::Pending),
            "seed {seed}"
        );
        // The TimeoutNow is lost: nobody stands, and the leader takes proposals again once
        // an election timeout has passed.
        sim.group(leader).out.clear();
        let ticks = sim.group(leader).cfg.election_ticks;
        for _ in 0..ticks {
            assert!(sim.group(leader).transferring(), "seed {seed}");
            sim.group(leader).tick();
        }
        assert!(!sim.group(leader).transferring(), "seed {seed}");
        assert!(
            sim.group(leader).propose(b"y".to_vec()).is_ok(),
            "seed {seed}"
        );
        assert_eq!(sim.group(leader).role(), Role::Leader, "seed {seed}");
    }
}

/// A replica that restarts while its group is quiet learns the leader and catches up: its
/// pre-vote is refused (the leader lives), but it wakes the quiet leader, which answers with an
/// append (regression: the restarted replica used to ask forever, never told who leads).
#[test]
fn a_replica_restarted_under_a_quiet_leader_catches_up() {
    for seed in 0..30 {
        restart_under_quiet_leader(seed);
    }
}

fn restart_under_quiet_leader(seed: u64) {
    let mut sim = Sim::new(seed, &[NodeId(1), NodeId(2), NodeId(3)]);
    sim.converge();
    let run = |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
    run(&mut sim, 20);
    let leader = sim.leader();
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    let cfg = Config {
        id: follower,
        ..sim.cfg.clone()
    };
    sim.nodes.get_mut(&follower).unwrap().restart(cfg);
    run(&mut sim, 200);
    let leader = sim.leader();
    let g = sim.nodes[&follower].group.as_ref().unwrap();
    assert_eq!(
        g.leader(),
        Some(leader),
        "seed {seed}: the restarted replica follows the leader"
    );
    assert_eq!(
        g.commit_index(),
        sim.nodes[&leader].group.as_ref().unwrap().commit_index(),
        "seed {seed}: and has caught up"
    );
    assert_eq!(
        sim.nodes[&leader].group.as_ref().unwrap().role(),
        Role::Leader
    );
}

/// A leader cut off from its followers steps down within an election timeout (check quorum),
/// refusing writes from then on, while the majority side elects a new leader.
#[test]
fn a_leader_cut_off_from_its_quorum_steps_down() {
    let mut sim = Sim::new(5, &[NodeId(1), NodeId(2), NodeId(3)]);
    sim.converge();
    let leader = sim.leader();
    sim.isolate(leader);
    // A client write reaches the cut-off leader (waking the quiet group); the followers' node
    // failure detector reports the leader's node unreachable.
    let g = sim.group(leader);
    g.propose(b"lost".to_vec()).unwrap();
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    for _ in 0..40 {
        sim.round(true);
    }
    let old = sim.nodes[&leader].group.as_ref().unwrap();
    assert_ne!(old.role(), Role::Leader, "the cut-off leader stepped down");
    let leaders = sim
        .nodes
        .values()
        .filter(|n| n.group.as_ref().unwrap().role() == Role::Leader)
        .count();
    assert_eq!(leaders, 1, "the majority side has a leader");
    assert!(
        sim.applied.values().all(|e| e.data[..] != b"lost"[..]),
        "the cut-off leader never committed"
    );
}

/// With pre-vote, a follower cut off while the group is busy keeps timing out without raising
/// its term, so when the link heals the working leader is not deposed.
#[test]
fn pre_vote_keeps_a_rejoining_replica_from_deposing_the_leader() {
    let mut sim = Sim::new(2, &[NodeId(1), NodeId(2), NodeId(3)]); // even seeds run with pre-vote
    assert!(sim.cfg.pre_vote);
    sim.converge();
    let leader = sim.leader();
    let term = sim.nodes[&leader].group.as_ref().unwrap().term();
    let cut = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.isolate(cut);
    let busy_round = |sim: &mut Sim| {
        let g = sim.group(leader);
        let _ = g.propose(b"busy".to_vec());
        sim.round(true);
    };
    for _ in 0..100 {
        busy_round(&mut sim);
    }
    assert_eq!(
        sim.nodes[&cut].group.as_ref().unwrap().term(),
        term,
        "no term inflation"
    );
    sim.cut.clear();
    for _ in 0..30 {
        busy_round(&mut sim);
    }
    assert_eq!(sim.leader(), leader, "the leader kept its place");
    assert_eq!(sim.nodes[&leader].group.as_ref().unwrap().term(), term);
}

/// Read-index: a leader confirms a read only with a quorum. One cut off from its followers never
/// confirms the read it was asked for (a new leader may already have newer writes), and reports
/// it failed when it steps down; a connected leader confirms reads.
#[test]
fn reads_need_a_quorum_and_fail_when_leadership_is_lost() {
    let mut sim = Sim::new(4, &[NodeId(1), NodeId(2), NodeId(3)]);
    sim.converge();
    let leader = sim.leader();
    let g = sim.group(leader);
    g.read_index(1).unwrap();
    sim.reads.insert(1, (0, None));
    sim.drain(leader);
    sim.round(false);
    assert_eq!(sim.confirmed_reads, 1, "a connected leader confirms");
    sim.isolate(leader);
    let g = sim.group(leader);
    g.propose(b"wake".to_vec()).unwrap();
    g.read_index(2).unwrap();
    sim.reads.insert(2, (0, None));
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    for _ in 0..40 {
        sim.round(true);
    }
    assert_eq!(
        sim.confirmed_reads, 1,
        "the cut-off leader confirmed nothing"
    );
    assert!(
        !sim.reads.contains_key(&2),
        "its read was reported failed on stepping down"
    );
}

/// Regression (issue 15, a stale read after a failover): a new leader's commit index can lag
/// what the previous leader acknowledged, so it computes no read on its state until it has
/// committed an entry of its own term (its no-op), and then only once that is applied.
#[test]
fn a_new_leader_reads_at_once_only_after_committing_in_its_term() {
    let cfg = |id| three(id, 5);
    let mut a = Group::new(cfg(NodeId(1)));
    // Leader 2 of term 1 replicated entries 1 and 2 here but told only of entry 1 committed;
    // entry 2 may be acknowledged already (a quorum with node 3 has it).
    let e = |index| Entry {
        term: 1,
        index,
        data: Bytes::from_static(b"w"),
    };
    a.step(
        NodeId(2),
        Msg::Append {
            term: 1,
            prev: LogId::default(),
            entries: vec![e(1), e(2)],
            commit: 1,
            quiet: false,
            ctx: 0,
        },
    );
    let r = a.take_ready();
    assert_eq!(r.committed.len(), 1);
    assert!(!a.can_read_at(1), "a follower never reads at once");
    // Node 1 wins term 2 with node 3's vote: it leads, with commit 1 of term 1.
    let term = elect(&mut a, &[NodeId(3)]);
    assert_eq!(a.role(), Role::Leader);
    let r = a.take_ready();
    let noop = a.last_index();
    assert_eq!(noop, 3);
    assert_eq!(a.commit_index(), 1);
    assert!(
        !a.can_read_at(1),
        "commit 1 is of an earlier term: entry 2 may be acknowledged and missing from the state"
    );
    assert!(r.committed.is_empty());
    // Node 3 acknowledges the no-op: entries 2 and 3 commit.
    a.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: true,
            last: noop,
            ctx: 0,
        },
    );
    let r = a.take_ready();
    assert_eq!(a.commit_index(), noop);
    assert_eq!(r.committed.last().map(|e| e.index), Some(noop));
    assert!(!a.can_read_at(1), "applied must reach the commit index");
    assert!(a.can_read_at(noop));
}

/// Regression (issue 15, a follower stopped under 1 KB writes): a snapshot installed in the
/// same step as appends that follow it hands out one Ready with the purge and entries past the
/// log's old end; persisting it purges first, so the appends follow the snapshot, and a
/// restart restores the same replica.
#[test]
fn a_snapshot_and_the_appends_after_it_persist_from_one_ready() {
    let cfg = |id| three(id, 6);
    let mut node = Node::fresh(Group::new(cfg(NodeId(1))));
    let e = |index| Entry {
        term: 1,
        index,
        data: Bytes::from_static(b"w"),
    };
    let append = |prev: u64, from: u64, to: u64| Msg::Append {
        term: 1,
        prev: LogId {
            term: (prev > 0) as u64,
            index: prev,
        },
        entries: (from..=to).map(e).collect(),
        commit: prev,
        quiet: false,
        ctx: 0,
    };
    let g = node.group.as_mut().unwrap();
    g.step(NodeId(2), append(0, 1, 1));
    let r = g.take_ready();
    storage::persist(&mut node.wal, GROUP, &r).unwrap();
    node.flush();
    let g = node.group.as_mut().unwrap();
    // One step: entries 2..=6, then the leader's snapshot up to 4 (its state: entries 1..=4),
    // which keeps 5 and 6.
    g.step(NodeId(2), append(1, 2, 6));
    let state = encode_sm(&(1..=4).map(e).collect::<Vec<_>>());
    let blob = conf::snapshot_blob(
        &Membership::of_voters(&[NodeId(1), NodeId(2), NodeId(3)]),
        &state,
    );
    let last = LogId { term: 1, index: 4 };
    g.step(
        NodeId(2),
        Msg::Snapshot {
            term: 1,
            last,
            offset: 0,
            total: blob.len() as u64,
            data: blob.clone(),
        },
    );
    let r = g.take_ready();
    assert_eq!(r.purge, Some(last));
    assert_eq!(r.entries.first().map(|e| e.index), Some(5));
    node.snap_file = blob.to_vec();
    storage::persist(&mut node.wal, GROUP, &r).expect("the appends follow the snapshot");
    node.flush();
    let log = node.wal.group(GROUP).unwrap();
    assert_eq!((log.purged().index, log.last().index), (4, 6));
    node.restart(cfg(NodeId(1)));
    let g = node.group.as_ref().unwrap();
    assert_eq!((g.snapshot_id(), g.last_index()), (last, 6));
}

/// A snapshot whose state does not decode (`Config::check_snapshot`) is ignored: the replica
/// keeps its log and commit, persists nothing and answers nothing (before, the node stopped).
#[test]
fn a_snapshot_whose_state_does_not_decode_changes_nothing() {
    fn refuse_bad(state: &[u8]) -> bool {
        state != b"bad"
    }
    let mut g = Group::new(Config {
        check_snapshot: SnapshotCheck::new(refuse_bad),
        ..three(NodeId(1), 7)
    });
    let _ = g.take_ready();
    let m = Membership::of_voters(&[NodeId(1), NodeId(2), NodeId(3)]);
    let last = LogId { term: 1, index: 9 };
    let snapshot = |state: &'static [u8]| {
        let blob = conf::snapshot_blob(&m, state);
        Msg::Snapshot {
            term: 1,
            last,
            offset: 0,
            total: blob.len() as u64,
            data: blob,
        }
    };
    g.step(NodeId(2), snapshot(b"bad"));
    let r = g.take_ready();
    assert!(r.snapshot.is_none() && r.purge.is_none());
    assert!(
        !r.messages
            .iter()
            .any(|e| matches!(e.msg, Msg::AppendReply { success: true, .. }))
    );
    assert_eq!((g.commit_index(), g.snapshot_id()), (0, LogId::default()));
    g.step(NodeId(2), snapshot(b"good"));
    let r = g.take_ready();
    assert_eq!(r.snapshot.map(|s| s.last), Some(last));
    assert_eq!(g.commit_index(), 9);
}

/// A crash between storing a received snapshot and the log batch that purges up to it leaves
/// the snapshot ahead of the log (and the log may hold entries that conflict with it): aligning
/// the recovered log to the snapshot lets the next append follow it (before, each restart
/// stopped again on `NotContiguous`).
#[test]
fn a_log_behind_its_snapshot_file_is_aligned_on_restart() {
    let mut wal = Engine::new(wal_config());
    for i in 1..=3 {
        wal.append(GROUP, i, 1, b"old").unwrap();
    }
    // The snapshot was taken at 4 of term 2: entry 3 of term 1 conflicts with nothing below
    // it but the log ends before the snapshot.
    let snap = LogId { term: 2, index: 4 };
    storage::align_to_snapshot(&mut wal, GROUP, snap);
    let log = wal.group(GROUP).unwrap();
    assert_eq!((log.purged().index, log.last().index), (4, 4));
    wal.append(GROUP, 5, 2, b"next").unwrap();
    // A log past the snapshot whose entry at the snapshot's index is of another term: what
    // follows it is dropped too.
    let mut wal = Engine::new(wal_config());
    for i in 1..=6 {
        wal.append(GROUP, i, 1, b"old").unwrap();
    }
    storage::align_to_snapshot(&mut wal, GROUP, snap);
    let log = wal.group(GROUP).unwrap();
    assert_eq!(
        (log.purged(), log.last().index),
        (crate::wal::LogId { index: 4, term: 2 }, 4)
    );
    // One that agrees with the snapshot keeps what follows it.
    let mut wal = Engine::new(wal_config());
    for i in 1..=6 {
        wal.append(GROUP, i, 2, b"same").unwrap();
    }
    storage::align_to_snapshot(&mut wal, GROUP, snap);
    let log = wal.group(GROUP).unwrap();
    assert_eq!((log.purged().index, log.last().index), (4, 6));
}

/// Regression (found by `raft_soak`, seed 1855): a leader probing below a follower's snapshot
/// got refusals with hint 0 forever; a follower now answers an Append that starts below its
/// commit index with its commit index.
#[test]
fn a_probe_below_a_followers_snapshot_is_answered_with_its_commit() {
    run_seeds(1855..1856, false);
}

/// A replica created on demand (empty, not in its own membership) gives no vote: it may stand
/// where an earlier replica of the group voted and was removed, and its empty log would let a
/// stale candidate win. A listed member with an empty log still votes (a new group forms).
#[test]
fn a_blank_replica_created_on_demand_gives_no_vote_until_it_holds_the_log() {
    let cfg = |id, members: Vec<NodeId>| Config {
        id,
        members,
        election_ticks: 10,
        leader_wait_ticks: 0,
        heartbeat_ticks: 3,
        max_batch: 64,
        snapshot_chunk_bytes: 1 << 20,
        bulk_snapshots: false,
        pre_vote: true,
        seed: 1,
        check_snapshot: SnapshotCheck::any(),
    };
    let vote = |g: &mut Group| {
        g.step(
            NodeId(3),
            Msg::Vote {
                term: 5,
                last: LogId::default(),
            },
        );
        let r = g.take_ready();
        r.messages
            .iter()
            .any(|m| matches!(m.msg, Msg::VoteReply { granted: true, .. }))
    };
    let mut blank = Group::new(cfg(NodeId(2), vec![NodeId(1)]));
    assert!(!vote(&mut blank), "created on demand: no vote");
    let mut listed = Group::new(cfg(NodeId(2), vec![NodeId(1), NodeId(2), NodeId(3)]));
    assert!(vote(&mut listed), "a member of a new group votes");
}

/// A peer's messages that no correct peer sends are dropped whole (`Msg::well_formed`): terms
/// or indexes past the limits (their `+ 1` would overflow), appends whose entries do not number
/// on from `prev` or outrun the leader's term, snapshot chunks outside their snapshot. And a
/// follower that claims to have matched past the leader's log moves nothing past it.
#[test]
fn messages_no_correct_peer_sends_change_nothing() {
    let cfg = |id| three(id, 5);
    let mut a = Group::new(cfg(NodeId(1)));
    let term = elect(&mut a, &[NodeId(2)]);
    a.take_ready();
    let before = (a.term(), a.role(), a.last_id());
    let entry = |term, index| Entry {
        term,
        index,
        data: b"x".to_vec().into(),
    };
    let hostile = [
        Msg::Vote {
            term: u64::MAX,
            last: LogId::default(),
        },
        Msg::Append {
            term: TERM_LIMIT,
            prev: LogId::default(),
            entries: vec![],
            commit: 0,
            quiet: true,
            ctx: 0,
        },
        Msg::Append {
            term: term + 1,
            prev: LogId::default(),
            entries: vec![entry(term, 1), entry(term, 3)],
            commit: 3,
            quiet: false,
            ctx: 0,
        },
        Msg::Append {
            term: term + 1,
            prev: LogId::default(),
            entries: vec![entry(term + 2, 1)],
            commit: 1,
            quiet: false,
            ctx: 0,
        },
        Msg::Snapshot {
            term: term + 1,
            last: LogId {
                term: term + 1,
                index: INDEX_LIMIT,
            },
            offset: 0,
            total: 10,
            data: Bytes::from_static(b"0123456789"),
        },
        Msg::Snapshot {
            term: term + 1,
            last: LogId { term, index: 5 },
            offset: 8,
            total: 10,
            data: Bytes::from_static(b"0123"),
        },
    ];
    for m in hostile {
        assert!(!m.well_formed(), "{m:?}");
        a.step(NodeId(2), m);
        assert_eq!((a.term(), a.role(), a.last_id()), before);
    }
    // An acknowledgement past the leader's log: the match stops at the log's end.
    let last = a.last_id().index;
    a.step(
        NodeId(2),
        Msg::AppendReply {
            term,
            success: true,
            last: last + 1000,
            ctx: 0,
        },
    );
    let i = a.propose(b"y".to_vec()).unwrap();
    assert_eq!(i, last + 1);
    let r = a.take_ready();
    assert!(
        r.committed.iter().all(|e| e.index <= last),
        "{:?}",
        r.committed
    );
    // The next append to that follower continues from the leader's log, not past it.
    let to_2: Vec<_> = r.messages.iter().filter(|m| m.to == NodeId(2)).collect();
    assert!(
        to_2.iter()
            .any(|m| matches!(&m.msg, Msg::Append { prev, .. } if prev.index == last)),
        "{to_2:?}"
    );
}
