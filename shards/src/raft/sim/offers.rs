//! Step-by-step tests of snapshots offered for a bulk copy (`SnapshotOffer`,
//! `snapshot_wanted`, `install_snapshot`): one fixture, a few inputs, the exact outcome.

use super::steps::three;
use super::*;

fn bulk(id: NodeId, seed: u64) -> Config {
    Config {
        bulk_snapshots: true,
        ..three(id, seed)
    }
}

/// Node 1 leading with bulk snapshots, its `entries` entries held by node 2 (node 3 holds
/// nothing) and folded into a snapshot: the leader, its term and the snapshot's last entry.
fn compacted_leader(seed: u64, entries: u8) -> (Group, u64, LogId) {
    let mut a = Group::new(bulk(NodeId(1), seed));
    let term = elect(&mut a, &[NodeId(2)]);
    let _ = a.take_ready();
    for i in 0..entries {
        a.propose(vec![b'a' + i]).unwrap();
    }
    let last = a.last_id();
    a.step(
        NodeId(2),
        Msg::AppendReply {
            term,
            success: true,
            last: last.index,
            ctx: 0,
        },
    );
    let _ = a.take_ready();
    a.compact(last.index, b"state".to_vec());
    let _ = a.take_ready();
    (a, term, last)
}

/// A leader with bulk snapshots offers its snapshot to a follower behind it (no chunks), again
/// every heartbeat until the follower answers; the follower wants it, and once its bytes come
/// (`install_snapshot`) it installs and answers as a chunked snapshot is answered.
#[test]
fn a_snapshot_is_offered_then_installed_from_its_bulk_bytes() {
    // Node 2 holds everything; node 3 nothing, and the log is compacted past it.
    let (mut a, term, last) = compacted_leader(11, 3);
    a.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: false,
            last: 0,
            ctx: 0,
        },
    );
    let r = a.take_ready();
    let offers: Vec<_> = r.messages.iter().filter(|e| e.to == NodeId(3)).collect();
    let total = a.snapshot_blob().len() as u64;
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(
        offers[0].msg,
        Msg::SnapshotOffer { term, last, total },
        "offered, not sent in chunks"
    );
    for _ in 0..3 {
        a.tick();
    }
    let r = a.take_ready();
    assert!(
        r.messages
            .iter()
            .any(|e| e.to == NodeId(3) && matches!(e.msg, Msg::SnapshotOffer { .. })),
        "offered again by a heartbeat"
    );

    // The follower: wants it, answers nothing yet.
    let mut c = Group::new(bulk(NodeId(3), 11));
    let _ = c.take_ready();
    c.step(NodeId(1), Msg::SnapshotOffer { term, last, total });
    let wanted = c.snapshot_wanted().expect("wanted");
    assert_eq!(
        (wanted.from, wanted.last, wanted.total),
        (NodeId(1), last, total)
    );
    let r = c.take_ready();
    assert!(r.messages.is_empty() && r.snapshot.is_none());
    assert_eq!(c.leader(), Some(NodeId(1)));
    // Bytes of the wrong length change nothing; the offered blob installs.
    c.install_snapshot(wanted, Bytes::from_static(b"short"));
    assert!(c.take_ready().snapshot.is_none());
    c.install_snapshot(wanted, a.snapshot_blob().clone());
    let r = c.take_ready();
    assert_eq!(r.snapshot.map(|s| s.last), Some(last));
    assert_eq!(c.snapshot_wanted(), None);
    let reply = r.messages.iter().map(|e| &e.msg).collect::<Vec<_>>();
    assert_eq!(
        reply,
        [&Msg::AppendReply {
            term,
            success: true,
            last: last.index,
            ctx: 0
        }]
    );
    // An offer of what it holds is answered at once; the leader stops offering.
    c.step(NodeId(1), Msg::SnapshotOffer { term, last, total });
    assert_eq!(c.snapshot_wanted(), None);
    let r = c.take_ready();
    assert!(matches!(
        r.messages[..],
        [Envelope {
            msg: Msg::AppendReply { success: true, .. },
            ..
        }]
    ));
    a.step(NodeId(3), r.messages[0].msg.clone());
    let _ = a.take_ready();
    for _ in 0..3 {
        a.tick();
    }
    let r = a.take_ready();
    assert!(
        !r.messages
            .iter()
            .any(|e| matches!(e.msg, Msg::SnapshotOffer { .. })),
        "{:?}",
        r.messages
    );
}

/// Issue 19, step 3: a snapshot the driver decoded as its bytes came installs with no blob
/// (`install_snapshot_staged`): the membership it names, its length kept for offers of its
/// own, the same answer; an offer past its term, or a second install, is refused.
#[test]
fn a_staged_snapshot_installs_without_its_blob() {
    let (mut a, term, last) = compacted_leader(13, 4);
    let total = a.snapshot_blob().len() as u64;
    let (members, _) = conf::split_snapshot(a.snapshot_blob()).unwrap();
    let mut c = Group::new(bulk(NodeId(3), 13));
    let _ = c.take_ready();
    c.step(NodeId(1), Msg::SnapshotOffer { term, last, total });
    let wanted = c.snapshot_wanted().expect("wanted");
    let _ = c.take_ready();
    assert!(c.install_snapshot_staged(wanted, members.clone()));
    let r = c.take_ready();
    let snap = r.snapshot.expect("a staged snapshot to store and install");
    assert!(snap.staged && snap.blob.is_empty() && snap.state.is_empty());
    assert_eq!(snap.last, last);
    assert_eq!(r.purge, Some(last));
    assert_eq!(c.snapshot_wanted(), None);
    assert!(c.snapshot_blob_released());
    assert_eq!((c.snapshot_id(), c.snapshot_total()), (last, total));
    assert_eq!(c.commit_index(), last.index);
    assert_eq!(
        r.messages.iter().map(|e| &e.msg).collect::<Vec<_>>(),
        [&Msg::AppendReply {
            term,
            success: true,
            last: last.index,
            ctx: 0
        }]
    );
    // Its membership is the snapshot's: the leader's appends continue from it.
    a.step(NodeId(3), r.messages[0].msg.clone());
    let _ = a.take_ready();
    a.propose(b"next".to_vec()).unwrap();
    let r = a.take_ready();
    for e in r.messages.into_iter().filter(|e| e.to == NodeId(3)) {
        c.step(NodeId(1), e.msg);
    }
    let r = c.take_ready();
    assert_eq!(r.entries.len(), 1, "appends follow the staged install");
    // Taken already: the same install again changes nothing.
    assert!(!c.install_snapshot_staged(wanted, members));
    assert!(c.take_ready().snapshot.is_none());
}

/// A wanted snapshot is forgotten when the leader's appends continue the follower's log, and
/// when a later term begins (its leader offers its own); an offer with an impossible size is
/// dropped whole.
#[test]
fn a_wanted_snapshot_is_dropped_by_appends_a_new_term_or_a_bad_size() {
    let mut c = Group::new(bulk(NodeId(3), 12));
    let _ = c.take_ready();
    let last = LogId { term: 1, index: 7 };
    let offer = |term, total| Msg::SnapshotOffer { term, last, total };
    c.step(NodeId(1), offer(1, 0));
    c.step(NodeId(1), offer(1, SNAPSHOT_BYTES_MAX + 1));
    assert_eq!(c.snapshot_wanted(), None, "impossible sizes");
    c.step(NodeId(1), offer(1, 100));
    assert!(c.snapshot_wanted().is_some());
    c.step(
        NodeId(1),
        Msg::Append {
            term: 1,
            prev: LogId::default(),
            entries: vec![Entry {
                term: 1,
                index: 1,
                data: Bytes::from_static(b"x"),
            }],
            commit: 0,
            quiet: false,
            ctx: 0,
        },
    );
    assert_eq!(c.snapshot_wanted(), None, "appends continue the log");
    c.step(NodeId(1), offer(1, 100));
    assert!(c.snapshot_wanted().is_some());
    c.step(
        NodeId(2),
        Msg::Vote {
            term: 2,
            last: LogId { term: 1, index: 9 },
        },
    );
    assert_eq!(c.snapshot_wanted(), None, "a later term");
}

/// With bulk snapshots a replicated group drops its snapshot's blob (its file holds it; the
/// driver reads it back for a copy): it still offers the snapshot with its length, and adds
/// members; a follower that installed one drops it too.
#[test]
fn a_released_blob_is_still_offered_with_its_length_and_members_are_still_added() {
    let (mut a, term, last) = compacted_leader(12, 1);
    let total = a.snapshot_blob().len() as u64;
    let blob = a.snapshot_blob().clone();
    a.release_snapshot_blob();
    assert!(a.snapshot_blob_released(), "released with peers");
    assert_eq!(a.snapshot_total(), total);
    a.step(
        NodeId(3),
        Msg::AppendReply {
            term,
            success: false,
            last: 0,
            ctx: 0,
        },
    );
    let offers: Vec<_> = a
        .take_ready()
        .messages
        .into_iter()
        .filter(|e| e.to == NodeId(3))
        .collect();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].msg, Msg::SnapshotOffer { term, last, total });
    assert!(a.propose_conf(ConfChange::AddLearner(NodeId(4))).is_ok());

    let mut c = Group::new(bulk(NodeId(3), 12));
    let _ = c.take_ready();
    c.step(NodeId(1), Msg::SnapshotOffer { term, last, total });
    let wanted = c.snapshot_wanted().expect("wanted");
    c.install_snapshot(wanted, blob);
    assert!(c.take_ready().snapshot.is_some());
    c.release_snapshot_blob();
    assert!(c.snapshot_blob_released());
    assert_eq!(c.snapshot_total(), total);
}
