//! Step-by-step tests of how a replica that fell behind, or cannot answer, is brought back:
//! re-probing a peer (after a reconnection, or a silent check-quorum period), pre-vote
//! refusals that carry the refuser's term, and a group's only voter standing at once.

use super::steps::three;
use super::*;

/// Node 1 of three, restarted with entries 1 to 5 of term 1, elected with node 2's vote.
fn leader_over_five_entries() -> (Group, u64) {
    let log: Vec<Entry> = (1..=5)
        .map(|index| Entry {
            term: 1,
            index,
            data: Bytes::from_static(b"x"),
        })
        .collect();
    let hs = HardState {
        term: 1,
        vote: None,
    };
    let mut a = Group::restore(three(NodeId(1), 7), hs, log);
    let term = elect(&mut a, &[NodeId(2)]);
    assert_eq!(a.role(), Role::Leader);
    (a, term)
}

/// Node 2 acknowledges everything leader `a` holds, in `term`.
fn acked_by_2(a: &mut Group, term: u64) {
    let last = a.last_index();
    a.step(
        NodeId(2),
        Msg::AppendReply {
            term,
            success: true,
            last,
            ctx: 0,
        },
    );
}

/// The `prev` index of the append `r` sends node 3, if any.
fn prev_to_3(r: &Ready) -> Option<u64> {
    r.messages
        .iter()
        .filter(|m| m.to == NodeId(3))
        .find_map(|m| match &m.msg {
            Msg::Append { prev, .. } => Some(prev.index),
            _ => None,
        })
}

/// A leader elected while a peer was away starts it at the end of its own log; the peer
/// refuses (it lacks that `prev`), and if its refusal cannot reach the leader, only a probe
/// from what it acknowledged gets it going again (`peer_reconnected`).
#[test]
fn a_reconnected_peer_is_probed_again_from_what_it_acknowledged() {
    let (mut a, _) = leader_over_five_entries();
    // At election: everyone is sent the new no-op after the leader's last entry.
    let r = a.take_ready();
    assert_eq!(prev_to_3(&r), Some(5));
    // Nothing 3 says arrives; its connection comes back.
    a.peer_reconnected(NodeId(3));
    let r = a.take_ready();
    assert_eq!(
        prev_to_3(&r),
        Some(0),
        "probed from what it acknowledged (nothing)"
    );
    // Not for a follower, nor for a non-member.
    a.peer_reconnected(NodeId(9));
    assert_eq!(prev_to_3(&a.take_ready()), None);
}

/// A peer silent for a whole check-quorum period is probed again from what it acknowledged:
/// its refusals may not reach the leader (the leader's own reconnection never happened).
#[test]
fn a_peer_silent_for_an_election_timeout_is_probed_again_from_what_it_acknowledged() {
    let (mut a, term) = leader_over_five_entries();
    assert_eq!(prev_to_3(&a.take_ready()), Some(5));
    // Node 2 answers everything; node 3 nothing. Within an election timeout (and its
    // heartbeats), what 3 is sent starts again from what it acknowledged.
    let mut seen = Vec::new();
    for _ in 0..2 * 5 {
        a.tick();
        acked_by_2(&mut a, term);
        if let Some(p) = prev_to_3(&a.take_ready()) {
            seen.push(p);
        }
        assert_eq!(a.role(), Role::Leader);
    }
    assert_eq!(seen.first(), Some(&5), "{seen:?}");
    assert_eq!(seen.last(), Some(&0), "{seen:?}");
}

/// Pre-vote refusals name the refuser's own term: a replica at a lower term with the longer
/// log and one at a higher term with a shorter log no longer refuse each other forever (the
/// lower one catches up in term, then wins the other's pre-vote).
#[test]
fn a_pre_vote_refusal_names_the_refusers_term_and_the_pre_candidate_takes_it() {
    let cfg = |id| Config {
        pre_vote: true,
        ..three(id, 11)
    };
    let entries = |n: u64| -> Vec<Entry> {
        (1..=n)
            .map(|index| Entry {
                term: 1,
                index,
                data: Bytes::from_static(b"x"),
            })
            .collect()
    };
    // Node 1: term 1, the longer log. Node 2: term 2 (an election it saw), a shorter log.
    let mut a = Group::restore(
        cfg(NodeId(1)),
        HardState {
            term: 1,
            vote: None,
        },
        entries(9),
    );
    let mut b = Group::restore(
        cfg(NodeId(2)),
        HardState {
            term: 2,
            vote: None,
        },
        entries(8),
    );
    while a.role() != Role::PreCandidate {
        a.tick();
    }
    let last = a.last_id();
    // Node 2 refuses the pre-vote for term 2 (not after its own) and says its term.
    b.step(NodeId(1), Msg::PreVote { term: 2, last });
    let r = b.take_ready();
    let reply = r
        .messages
        .iter()
        .find(|m| m.to == NodeId(1))
        .map(|m| m.msg.clone())
        .expect("a reply");
    assert_eq!(
        reply,
        Msg::PreVoteReply {
            term: 2,
            granted: false
        }
    );
    a.step(NodeId(2), reply);
    assert_eq!((a.role(), a.term()), (Role::Follower, 2));
    // Its next pre-vote asks for term 3, which node 2 grants (a newer term, a longer log).
    while a.role() != Role::PreCandidate {
        a.tick();
    }
    b.step(NodeId(1), Msg::PreVote { term: 3, last });
    let r = b.take_ready();
    assert!(r.messages.iter().any(|m| m.to == NodeId(1)
        && m.msg
            == Msg::PreVoteReply {
                term: 3,
                granted: true
            }));
    // A replica behind the term asked for refuses with its own term (here: its log is
    // longer), never the hypothetical one, so nobody's term climbs on refusals.
    let mut c = Group::restore(
        cfg(NodeId(3)),
        HardState {
            term: 1,
            vote: None,
        },
        entries(10),
    );
    c.step(NodeId(1), Msg::PreVote { term: 2, last });
    let r = c.take_ready();
    assert!(r.messages.iter().any(|m| m.to == NodeId(1)
        && m.msg
            == Msg::PreVoteReply {
                term: 1,
                granted: false
            }));
    // A refusal from a replica at or behind this one's term moves nothing.
    let before = (a.role(), a.term());
    a.step(
        NodeId(3),
        Msg::PreVoteReply {
            term: 2,
            granted: false,
        },
    );
    assert_eq!((a.role(), a.term()), before);
}

/// The only voter of a group stands at its first tick: nobody else can lead, and waiting an
/// election timeout only kept a one-node cluster answering `-TRYAGAIN` after every start.
#[test]
fn the_only_voter_leads_from_its_first_tick() {
    for pre_vote in [false, true] {
        let mut g = Group::new(Config {
            members: vec![NodeId(1)],
            pre_vote,
            ..three(NodeId(1), 3)
        });
        g.tick();
        assert_eq!(g.role(), Role::Leader, "pre-vote {pre_vote}");
    }
    // One voter of three waits its timeout as before.
    let mut g = Group::new(three(NodeId(1), 3));
    g.tick();
    assert_eq!(g.role(), Role::Follower);
}

/// An Append that starts below the follower's commit index but reaches past it: the entries
/// past the commit are taken (with the reply), not only a reply saying where to continue,
/// which a follower that cannot reach the leader could never send.
#[test]
fn an_append_from_below_the_commit_index_still_delivers_the_entries_past_it() {
    let entries = |from: u64, to: u64| -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                term: 1,
                index,
                data: Bytes::from_static(b"x"),
            })
            .collect()
    };
    // A follower holding entries 1..=5, all committed.
    let mut f = Group::restore(
        three(NodeId(3), 5),
        HardState {
            term: 1,
            vote: None,
        },
        entries(1, 5),
    );
    f.step(
        NodeId(1),
        Msg::Append {
            term: 1,
            prev: LogId { term: 1, index: 5 },
            entries: vec![],
            commit: 5,
            quiet: false,
            ctx: 0,
        },
    );
    let _ = f.take_ready();
    assert_eq!(f.commit_index(), 5);
    // The leader probes from index 1 with entries 2..=9, commit 8.
    f.step(
        NodeId(1),
        Msg::Append {
            term: 1,
            prev: LogId { term: 1, index: 1 },
            entries: entries(2, 9),
            commit: 8,
            quiet: false,
            ctx: 0,
        },
    );
    let r = f.take_ready();
    assert_eq!(
        f.last_index(),
        9,
        "the entries past the commit index are taken"
    );
    assert_eq!(f.commit_index(), 8);
    assert!(r.messages.iter().any(|m| m.to == NodeId(1)
        && m.msg
            == Msg::AppendReply {
                term: 1,
                success: true,
                last: 9,
                ctx: 0
            }));
    // Nothing past the commit index: the reply says where to continue, as before.
    f.step(
        NodeId(1),
        Msg::Append {
            term: 1,
            prev: LogId { term: 1, index: 2 },
            entries: entries(3, 4),
            commit: 8,
            quiet: false,
            ctx: 0,
        },
    );
    let r = f.take_ready();
    assert_eq!(f.last_index(), 9);
    assert!(r.messages.iter().any(|m| m.to == NodeId(1)
        && m.msg
            == Msg::AppendReply {
                term: 1,
                success: true,
                last: 8,
                ctx: 0
            }));
}

/// A silent peer whose acknowledged position is compacted away is probed with the snapshot
/// and, every other check-quorum period, with the log after the snapshot: a peer already past
/// the snapshot ignores it and may be unable to say so.
#[test]
fn a_silent_peer_behind_the_snapshot_is_probed_with_it_and_with_the_log_after_it() {
    let (mut a, term) = leader_over_five_entries();
    let _ = a.take_ready();
    // Node 2 acknowledges everything; the leader compacts up to 5.
    acked_by_2(&mut a, term);
    let _ = a.take_ready();
    a.compact(5, Bytes::from_static(b"state"));
    let _ = a.take_ready();
    // Node 3 says nothing, over several check-quorum periods (node 2 answers).
    // (Before the first probe, its sends continue from the election's no-op, after 5.)
    let (mut snapshots, mut from_log) = (0, 0);
    for _ in 0..4 * 5 {
        a.tick();
        acked_by_2(&mut a, term);
        for m in a.take_ready().messages.iter().filter(|m| m.to == NodeId(3)) {
            match &m.msg {
                Msg::Snapshot { last, .. } if last.index == 5 => snapshots += 1,
                Msg::Append { prev, .. } if prev.index == 5 && snapshots > 0 => from_log += 1,
                _ => {}
            }
        }
    }
    assert!(
        snapshots > 0 && from_log > 0,
        "{snapshots} snapshots, {from_log} appends from the log after one"
    );
}

/// A group of one drops the in-memory copy of its snapshot (its file holds it) and adds no
/// member before it is given back, with the snapshot's own membership.
#[test]
fn a_group_of_one_releases_its_snapshot_blob_and_adds_a_member_only_once_it_is_back() {
    let mut g = Group::new(Config {
        members: vec![NodeId(1)],
        ..three(NodeId(1), 3)
    });
    g.tick();
    assert_eq!(g.role(), Role::Leader);
    for i in 0..5 {
        g.propose(format!("entry {i}").into_bytes()).unwrap();
    }
    g.take_ready(); // persisted: committed and applied at RF 1
    let last = g.last_index();
    g.compact(last, b"state".to_vec());
    let blob = g.snapshot_blob().clone();
    assert!(!blob.is_empty());
    g.release_snapshot_blob();
    assert!(g.snapshot_blob_released());
    assert_eq!(
        g.propose_conf(ConfChange::AddLearner(NodeId(2))),
        Err(ConfError::Pending),
        "a member added now could be sent an empty snapshot"
    );
    // Another membership's blob is refused; its own is taken.
    let other = conf::snapshot_blob(
        &Membership {
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            learners: vec![],
        },
        b"state",
    );
    assert!(g.restore_snapshot_blob(other).is_err());
    g.restore_snapshot_blob(blob.clone()).unwrap();
    assert_eq!(g.snapshot_blob(), &blob);
    assert!(g.propose_conf(ConfChange::AddLearner(NodeId(2))).is_ok());
    // With a learner, the blob is kept.
    g.release_snapshot_blob();
    assert!(!g.snapshot_blob_released());
}

/// A follower far behind a log of large entries is sent each entry once, in batches of at
/// most `BATCH_BYTES`, with at most `INFLIGHT_BYTES` unacknowledged (heartbeats carry no
/// entries then); entries it does not acknowledge in time are sent again. Before, every
/// heartbeat sent the batch after what it acknowledged once more, and every copy's reply
/// the next batch once more (found measuring a vShard's move: a leader encoded hundreds of
/// megabytes of the same entries for its new replica).
#[test]
fn a_follower_far_behind_is_sent_each_entry_once_in_bounded_batches() {
    use super::super::append::{BATCH_BYTES, INFLIGHT_BYTES};
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let log: Vec<Entry> = (1..=60)
        .map(|index| Entry {
            term: 1,
            index,
            data: big.clone(),
        })
        .collect();
    let mut cfg = three(NodeId(1), 7);
    cfg.max_batch = 512;
    cfg.election_ticks = 1000;
    let hs = HardState {
        term: 1,
        vote: None,
    };
    let mut a = Group::restore(cfg, hs, log);
    let term = elect(&mut a, &[NodeId(2)]);
    let last = a.last_index();
    // Node 3 holds nothing: it refuses the first append, which sends the leader back.
    let mut sent = vec![0u32; last as usize + 1];
    let mut held = 0u64; // what node 3 holds
    let mut replies: Vec<Msg> = Vec::new();
    // `answer`: node 3's replies reach the leader this round.
    let mut round = |a: &mut Group, answer: bool, sent: &mut Vec<u32>, held: &mut u64| {
        if answer {
            for m in replies.drain(..) {
                a.step(NodeId(3), m);
            }
        }
        a.tick();
        let r = a.take_ready();
        for m in r.messages.iter().filter(|m| m.to == NodeId(3)) {
            let Msg::Append { prev, entries, .. } = &m.msg else {
                continue;
            };
            let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
            assert!(
                entries.len() <= 1 || bytes <= BATCH_BYTES,
                "{bytes} bytes in one append"
            );
            for e in entries {
                sent[e.index as usize] += 1;
            }
            // Node 3 takes what follows what it holds (in order, as one connection brings).
            let reply = if prev.index <= *held {
                *held = (*held).max(entries.last().map_or(prev.index, |e| e.index));
                Msg::AppendReply {
                    term,
                    success: true,
                    last: *held,
                    ctx: 0,
                }
            } else {
                Msg::AppendReply {
                    term,
                    success: false,
                    last: *held,
                    ctx: 0,
                }
            };
            replies.push(reply);
        }
        // Node 2 has everything.
        let l = a.last_index();
        a.step(
            NodeId(2),
            Msg::AppendReply {
                term,
                success: true,
                last: l,
                ctx: 0,
            },
        );
    };
    // The refusal comes back; then node 3 stays silent for three heartbeats: what is in
    // flight to it stays within the bound and nothing is sent twice.
    round(&mut a, true, &mut sent, &mut held);
    round(&mut a, true, &mut sent, &mut held);
    for _ in 0..6 {
        round(&mut a, false, &mut sent, &mut held);
    }
    let unacked: usize = (1..=last as usize).filter(|&i| sent[i] > 0).count() << 20;
    assert!(
        unacked > BATCH_BYTES,
        "batches go out before the first is acknowledged"
    );
    assert!(
        unacked <= INFLIGHT_BYTES + BATCH_BYTES,
        "{unacked} bytes unacknowledged"
    );
    assert!(sent[..last as usize].iter().all(|&n| n <= 1), "{sent:?}");
    // Then it answers every round: it gets everything, each of entries 1..=60 once.
    for _ in 0..200 {
        round(&mut a, true, &mut sent, &mut held);
        if held == last {
            break;
        }
    }
    assert_eq!(held, last, "caught up");
    assert!(sent[1..=60].iter().all(|&n| n == 1), "{sent:?}");
}
