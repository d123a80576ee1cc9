//! Step-by-step tests of membership changes, chunked snapshot transfer and moving a group to
//! new replicas.

use super::*;

/// A 3-voter group with a spare replica 4 (knowing the first voters, waiting to be added),
/// converged, with `leader` leading.
fn group_with_spare(seed: u64) -> (Sim, NodeId) {
    let mut sim = Sim::with_changes(seed, &[NodeId(1), NodeId(2), NodeId(3)], true);
    sim.converge();
    let leader = sim.leader();
    (sim, leader)
}

fn applied_marker(sim: &Sim, data: &[u8]) -> bool {
    sim.applied.values().any(|e| e.data[..] == *data)
}

#[test]
fn a_learner_gets_the_log_but_never_counts_or_stands_for_election() {
    let (mut sim, leader) = group_with_spare(3);
    sim.group(leader)
        .propose_conf(ConfChange::AddLearner(NodeId(4)))
        .unwrap();
    sim.drain(leader);
    for _ in 0..30 {
        sim.round(true);
    }
    let last = sim.group(leader).last_index();
    assert_eq!(
        sim.group(NodeId(4)).last_index(),
        last,
        "the learner holds the log"
    );
    assert_eq!(sim.group(NodeId(4)).membership().learners, vec![NodeId(4)]);
    // With both other voters cut off, the leader and the learner do not make a quorum.
    for v in crate::ids::nodes(&[1, 2, 3])
        .into_iter()
        .filter(|&v| v != leader)
    {
        sim.isolate(v);
    }
    sim.group(leader).propose(b"alone".to_vec()).unwrap();
    sim.drain(leader);
    let term4 = sim.group(NodeId(4)).term();
    for _ in 0..5 {
        sim.round(true);
    }
    assert!(
        !applied_marker(&sim, b"alone"),
        "a learner's copy does not commit"
    );
    // However long it goes without a leader, a learner never stands for election.
    sim.isolate(NodeId(4));
    for _ in 0..200 {
        sim.group(NodeId(4)).tick();
        sim.drain(NodeId(4));
    }
    assert_eq!(
        sim.group(NodeId(4)).term(),
        term4,
        "the learner never raised its term"
    );
    assert_eq!(sim.group(NodeId(4)).role(), Role::Follower);
}

#[test]
fn a_change_waits_for_the_previous_one_and_for_the_leaders_first_commit() {
    let (mut sim, leader) = group_with_spare(5);
    let g = sim.group(leader);
    g.propose_conf(ConfChange::AddLearner(NodeId(4))).unwrap();
    assert_eq!(
        g.propose_conf(ConfChange::Promote(NodeId(4))),
        Err(ConfError::Pending),
        "the previous change is not committed"
    );
    assert!(matches!(
        g.propose_conf(ConfChange::AddLearner(NodeId(4))),
        Err(ConfError::Pending | ConfError::Invalid(_))
    ));
    sim.drain(leader);
    for _ in 0..5 {
        sim.round(true);
    }
    let g = sim.group(leader);
    assert!(g.propose_conf(ConfChange::Promote(NodeId(4))).is_ok());
    assert_eq!(g.membership().voters, crate::ids::nodes(&[1, 2, 3, 4]));
    // A follower refuses, naming the leader.
    let follower = crate::ids::nodes(&[1, 2, 3])
        .into_iter()
        .find(|&v| v != leader)
        .unwrap();
    assert_eq!(
        sim.group(follower)
            .propose_conf(ConfChange::Remove(NodeId(4))),
        Err(ConfError::NotLeader {
            leader: Some(leader)
        })
    );
    // A new leader may not change anything before its own no-op commits.
    let mut g = Group::new(Config {
        id: NodeId(1),
        members: vec![NodeId(1), NodeId(2), NodeId(3)],
        election_ticks: 5,
        leader_wait_ticks: 0,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        bulk_snapshots: false,
        pre_vote: false,
        seed: 1,
        check_snapshot: SnapshotCheck::any(),
    });
    elect(&mut g, &[NodeId(2)]);
    assert_eq!(g.role(), Role::Leader);
    assert_eq!(
        g.propose_conf(ConfChange::Remove(NodeId(3))),
        Err(ConfError::Pending)
    );
}

#[test]
fn a_leader_that_removes_itself_steps_down_once_that_commits() {
    // An even seed: pre-vote on, as the shard threads run it.
    let (mut sim, leader) = group_with_spare(8);
    sim.group(leader)
        .propose_conf(ConfChange::Remove(leader))
        .unwrap();
    sim.drain(leader);
    // Until the removal commits it still leads (without counting itself).
    assert_eq!(sim.group(leader).role(), Role::Leader);
    for _ in 0..60 {
        sim.round(true);
    }
    assert_ne!(sim.group(leader).role(), Role::Leader);
    let rest: Vec<NodeId> = crate::ids::nodes(&[1, 2, 3])
        .into_iter()
        .filter(|&v| v != leader)
        .collect();
    let new = sim.leader();
    assert!(rest.contains(&new), "one of the remaining voters leads");
    assert_eq!(sim.group(new).membership().voters, rest);
    sim.group(new).propose(b"after".to_vec()).unwrap();
    sim.drain(new);
    for _ in 0..5 {
        sim.round(true);
    }
    assert!(applied_marker(&sim, b"after"));
    // The removed replica, cut off from the news, campaigns in ever higher terms: nobody
    // listens, and the leader keeps its term.
    let term = sim.group(new).term();
    for _ in 0..100 {
        sim.group(leader).tick();
        sim.round(false);
    }
    assert_eq!(
        sim.group(new).term(),
        term,
        "the removed replica disrupted nothing"
    );
    assert_eq!(sim.group(new).role(), Role::Leader);
}

/// Moves messages between `a` and `b` (dropping those `lose` picks, and any to others) until
/// none is left; returns the Snapshot chunks delivered.
fn exchange(a: &mut Group, b: &mut Group, mut lose: impl FnMut(&Envelope) -> bool) -> usize {
    let mut net: Vec<Envelope> = a.take_ready().messages;
    net.extend(b.take_ready().messages);
    let mut chunks = 0;
    while let Some(env) = net.pop() {
        if lose(&env) {
            continue;
        }
        let g = match env.to {
            t if t == a.id() => &mut *a,
            t if t == b.id() => &mut *b,
            _ => continue,
        };
        chunks += matches!(env.msg, Msg::Snapshot { .. }) as usize;
        g.step(env.from, env.msg);
        net.extend(g.take_ready().messages);
    }
    chunks
}

#[test]
fn a_snapshot_travels_in_chunks_and_a_lost_chunk_is_resent() {
    let cfg = |id| Config {
        id,
        members: vec![NodeId(1), NodeId(2), NodeId(3)],
        election_ticks: 5,
        leader_wait_ticks: 0,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 100,
        bulk_snapshots: false,
        pre_vote: false,
        seed: 4,
        check_snapshot: SnapshotCheck::any(),
    };
    let mut leader = Group::new(cfg(NodeId(1)));
    let term = elect(&mut leader, &[NodeId(3)]);
    for i in 0..50 {
        leader.propose(format!("entry {i}").into_bytes()).unwrap();
    }
    let last = leader.last_index();
    // Replica 3 holds everything (2 is away): it all commits and is applied.
    leader.take_ready();
    leader.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: true,
            last,
            ctx: 0,
        },
    );
    assert_eq!(
        leader.take_ready().committed.last().map(|e| e.index),
        Some(last)
    );
    let state = vec![7u8; 1000];
    leader.compact(last, state.clone());
    let blob_len = leader.snapshot_blob().len();
    assert!(blob_len > 1000);
    // Replica 2 comes back empty: a heartbeat finds it behind, and the snapshot follows in
    // chunks of 100 bytes; the third chunk is lost once and comes again with a heartbeat.
    let mut follower = Group::new(cfg(NodeId(2)));
    while leader
        .take_ready()
        .messages
        .iter()
        .all(|e| e.to != NodeId(2))
    {
        leader.tick();
    }
    let mut lost = false;
    let mut delivered = exchange(&mut leader, &mut follower, |_| false);
    let mut dropper = |e: &Envelope| {
        let hit = !lost && matches!(e.msg, Msg::Snapshot { offset: 200, .. });
        lost |= hit;
        hit
    };
    // The first heartbeat's refusal starts the transfer; keep heartbeating until installed.
    for _ in 0..50 {
        if follower.snapshot_id().index == last {
            break;
        }
        leader.tick();
        delivered += exchange(&mut leader, &mut follower, &mut dropper);
    }
    assert!(lost, "a chunk was lost on the way");
    assert_eq!(
        follower.snapshot_id().index,
        last,
        "the snapshot was installed"
    );
    assert_eq!(follower.snapshot_blob().len(), blob_len);
    let (m, got) = conf::split_snapshot(follower.snapshot_blob()).unwrap();
    assert_eq!(
        (m.voters, &got[..]),
        (crate::ids::nodes(&[1, 2, 3]), &state[..])
    );
    assert!(
        delivered >= blob_len.div_ceil(100),
        "{delivered} chunks for {blob_len} bytes"
    );
    assert_eq!(
        leader.progress(NodeId(2)),
        Some(last),
        "the leader knows it caught up"
    );
}

/// The leader walks the group to a new set of voters with `conf::next_change` while writes
/// flow and replicas are cut off and crash: the group ends with exactly the target's voters,
/// every safety check holding on the way, and keeps committing.
#[test]
fn a_group_moves_to_new_replicas_under_writes_and_faults() {
    for seed in 0..100 {
        let mut sim = Sim::with_changes(seed * 2, &[NodeId(1), NodeId(2), NodeId(3)], true);
        sim.converge();
        let target = crate::ids::nodes(&[2, 4, 5]);
        let mut moved = false;
        for round in 0..3000 {
            if round % 3 == 1 {
                // Faults all along: cut one off, crash one, or heal and restart everyone.
                let id = 1 + sim.rng.below(5);
                let down = sim.nodes.values().any(|n| n.group.is_none());
                match sim.rng.below(3) {
                    0 if sim.cut.is_empty() => sim.isolate(NodeId(id)),
                    1 if !down => sim.nodes.get_mut(&NodeId(id)).expect("node").group = None,
                    _ => {
                        sim.cut.clear();
                        for id in 1..=5 {
                            let cfg = Config {
                                id: NodeId(id),
                                ..sim.cfg.clone()
                            };
                            let n = sim.nodes.get_mut(&NodeId(id)).expect("node");
                            if n.group.is_none() {
                                n.restart(cfg);
                            }
                        }
                    }
                }
            }
            let leaders: Vec<NodeId> = (1..=5)
                .map(NodeId)
                .filter(|id| {
                    sim.nodes[id]
                        .group
                        .as_ref()
                        .is_some_and(|g| g.role() == Role::Leader)
                })
                .collect();
            for l in leaders {
                let g = sim.group(l);
                let _ = g.propose(format!("w{round}").into_bytes());
                let next = conf::next_change(
                    &target,
                    g.membership(),
                    |id| g.progress(id),
                    g.commit_index(),
                );
                if let Some(c) = next {
                    let _ = g.propose_conf(c);
                }
                sim.drain(l);
            }
            sim.round(true);
            let done = (1..=5).any(|id| {
                sim.nodes[&NodeId(id)].group.as_ref().is_some_and(|g| {
                    let mut v = g.membership().voters.clone();
                    v.sort_unstable();
                    g.role() == Role::Leader
                        && v == target
                        && g.membership().learners.is_empty()
                        && g.commit_index() >= g.last_index()
                })
            });
            if done {
                moved = true;
                break;
            }
        }
        assert!(
            moved,
            "seed {}: the group never reached {target:?}",
            seed * 2
        );
        sim.converge();
    }
}
