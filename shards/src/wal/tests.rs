//! The engine step by step (exact file operations), and recovery against a simulated directory:
//! round trips, torn tails at every byte, corruption anywhere else, and random workloads.

use super::*;
use std::collections::BTreeMap;

fn cfg(segment_bytes: u64, fsync: FsyncPolicy) -> WalConfig {
    WalConfig {
        shard: 3,
        segment_bytes,
        fsync,
    }
}

/// A directory of segment files in memory; runs batches as the real driver does.
#[derive(Default, Clone)]
struct Dir {
    files: BTreeMap<u64, Vec<u8>>,
}

impl Dir {
    fn run(&mut self, b: Batch) -> Vec<u64> {
        for op in b.ops {
            match op {
                Io::Create { seq, header } => {
                    assert!(
                        self.files.insert(seq, header.to_vec()).is_none(),
                        "created twice"
                    );
                }
                Io::Write { seq, offset, bytes } => {
                    let f = self.files.get_mut(&seq).expect("written before created");
                    assert_eq!(f.len() as u64, offset, "writes are appends");
                    f.extend_from_slice(&bytes);
                }
                Io::Sync { seq } => assert!(self.files.contains_key(&seq)),
                Io::Delete { seq } => {
                    self.files.remove(&seq).expect("deleted a missing segment");
                }
            }
        }
        b.acks
    }

    /// As `run`, through `Batch::run`, then hands the batch back to `e` (`Engine::recycle`),
    /// as the real driver does: the next batches write from reused buffers.
    fn run_recycled(&mut self, e: &mut Engine, mut b: Batch) -> Vec<u64> {
        let mut ops = Vec::new();
        b.run(|op| {
            ops.push(match op {
                Io::Write { seq, offset, bytes } => Io::Write {
                    seq: *seq,
                    offset: *offset,
                    bytes: bytes.clone(),
                },
                Io::Create { seq, header } => Io::Create {
                    seq: *seq,
                    header: *header,
                },
                Io::Sync { seq } => Io::Sync { seq: *seq },
                Io::Delete { seq } => Io::Delete { seq: *seq },
            });
            Ok::<(), ()>(())
        })
        .expect("no errors here");
        assert!(b.ops.is_empty(), "every operation ran");
        let acks = self.run(Batch {
            ops,
            acks: b.acks.clone(),
            spent: Vec::new(),
            syncs_behind: b.syncs_behind,
        });
        e.recycle(b);
        acks
    }

    fn contents(&self) -> Vec<(u64, Vec<u8>)> {
        self.files.iter().map(|(s, b)| (*s, b.clone())).collect()
    }
}

/// A group's purge point, vote and `(index, term, payload)` entries.
type GroupState = (LogId, Option<Vote>, Vec<(u64, u64, Vec<u8>)>);

/// Every group's state, for comparisons.
fn snapshot(e: &Engine) -> BTreeMap<u32, GroupState> {
    e.groups()
        .map(|(g, l)| {
            let entries = (l.purged().index + 1..=l.last().index)
                .map(|i| {
                    let (t, p) = l.entry(i).expect("contiguous");
                    (i, t, p.to_vec())
                })
                .collect();
            (g, (l.purged(), l.vote(), entries))
        })
        .collect()
}

#[test]
fn one_batch_creates_writes_syncs_then_acknowledges() {
    let mut e = Engine::new(cfg(1 << 20, FsyncPolicy::Always));
    e.append(1, 1, 1, b"a").unwrap();
    e.append(2, 1, 1, b"b").unwrap();
    e.flush(7);
    let b = e.take_batch(0).unwrap();
    assert!(matches!(b.ops[0], Io::Create { seq: 1, .. }));
    assert!(matches!(
        b.ops[1],
        Io::Write {
            seq: 1,
            offset: 32,
            ..
        }
    ));
    assert_eq!(b.ops[2], Io::Sync { seq: 1 });
    assert_eq!(b.ops.len(), 3, "one write and one fsync for both groups");
    assert_eq!(b.acks, vec![7]);
    assert!(!b.syncs_behind, "always: the acks wait for the fsync");
    assert!(e.take_batch(0).is_none(), "idle");
    assert_eq!(
        e.append(1, 5, 1, b"x"),
        Err(LogError::NotContiguous {
            group: 1,
            index: 5,
            expected: 2
        })
    );
}

#[test]
fn never_and_batch_policies_acknowledge_after_the_write() {
    let mut e = Engine::new(cfg(1 << 20, FsyncPolicy::Never));
    e.append(1, 1, 1, b"a").unwrap();
    e.flush(1);
    let b = e.take_batch(0).unwrap();
    assert!(!b.ops.iter().any(|o| matches!(o, Io::Sync { .. })));
    assert_eq!(b.acks, vec![1]);

    let mut e = Engine::new(cfg(1 << 20, FsyncPolicy::Batch { interval_ms: 100 }));
    e.append(1, 1, 1, b"a").unwrap();
    let first = e.take_batch(1000).unwrap();
    assert!(first.ops.iter().any(|o| matches!(o, Io::Sync { .. })));
    e.append(1, 2, 1, b"b").unwrap();
    let soon = e.take_batch(1050).unwrap();
    assert!(
        !soon.ops.iter().any(|o| matches!(o, Io::Sync { .. })),
        "within the interval"
    );
    let later = e.take_batch(1100).unwrap();
    assert_eq!(
        later.ops,
        vec![Io::Sync { seq: 1 }],
        "the timer syncs what is pending"
    );
    assert!(
        first.syncs_behind && later.syncs_behind,
        "periodic syncs may run behind"
    );
}

#[test]
fn a_save_fsyncs_the_next_batch_whatever_the_policy() {
    for policy in [FsyncPolicy::Never, FsyncPolicy::Batch { interval_ms: 1000 }] {
        let mut e = Engine::new(cfg(1 << 20, policy));
        e.append(1, 1, 1, b"a").unwrap();
        let _ = e.take_batch(0); // a batch fsync's first sync, or none with never
        e.append(1, 2, 1, b"b").unwrap();
        e.sync_next();
        let b = e.take_batch(10).unwrap();
        assert!(
            b.ops.iter().any(|o| matches!(o, Io::Sync { seq: 1 })),
            "{policy:?}: {:?}",
            b.ops
        );
        assert!(!b.syncs_behind, "{policy:?}: a save waits for its fsync");
        e.append(1, 3, 1, b"c").unwrap();
        let after = e.take_batch(20).unwrap();
        assert!(
            !after.ops.iter().any(|o| matches!(o, Io::Sync { .. })),
            "{policy:?}: once only"
        );
    }
}

#[test]
fn segments_rotate_restate_votes_and_go_once_purged_and_synced() {
    let mut e = Engine::new(cfg(200, FsyncPolicy::Always));
    let mut dir = Dir::default();
    e.save_vote(
        9,
        Vote {
            term: 4,
            node: 2,
            committed: true,
        },
    );
    for i in 1..=20 {
        e.append(9, i, 4, &[b'x'; 20]).unwrap();
        dir.run(e.take_batch(i).unwrap());
    }
    let segs = e.segment_seqs();
    assert!(segs.len() > 3, "{segs:?}");
    // Each new segment restates the vote, so the log survives losing the old ones.
    e.purge(9, LogId { index: 15, term: 4 });
    dir.run(e.take_batch(100).unwrap());
    assert!(
        !dir.files.contains_key(&1),
        "a fully purged segment is deleted"
    );
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    assert_eq!(rec.engine.group(9).unwrap().vote().unwrap().term, 4);
    assert_eq!(rec.engine.group(9).unwrap().purged().index, 15);
}

/// With fsync `always`, only the newest segment ever holds writes not on disk: a batch that
/// starts a segment first fsyncs what it wrote to the older one (a crash can then tear only
/// the newest segment, which recovery repairs).
#[test]
fn a_new_segment_starts_only_after_the_older_ones_writes_are_synced() {
    let mut e = Engine::new(cfg(200, FsyncPolicy::Always));
    let mut dir = Dir::default();
    let mut rolled = 0;
    for i in 1..=20u64 {
        // Several entries a batch, so batches straddle segment boundaries.
        for k in 0..3 {
            e.append(9, 3 * (i - 1) + k + 1, 4, &[b'x'; 30]).unwrap();
        }
        let b = e.take_batch(i).unwrap();
        let mut unsynced: Vec<u64> = Vec::new();
        for op in &b.ops {
            match op {
                Io::Write { seq, .. } => unsynced.push(*seq),
                Io::Sync { seq } => unsynced.retain(|s| s != seq),
                Io::Create { seq, .. } => {
                    assert!(
                        unsynced.iter().all(|s| s == seq),
                        "segment {seq} made while {unsynced:?} hold unsynced writes: {:?}",
                        b.ops
                    );
                    rolled += 1;
                }
                Io::Delete { .. } => {}
            }
        }
        assert!(unsynced.is_empty(), "a batch ends synced");
        dir.run(b);
    }
    assert!(rolled > 3, "segments rolled over mid-batch");
}

/// A group whose replica left is forgotten: its old records are void on recovery, the segments
/// holding them can go, and a replica created later starts from index 1 again.
#[test]
fn a_reset_group_is_forgotten_and_can_start_again_from_nothing() {
    let mut e = Engine::new(cfg(200, FsyncPolicy::Always));
    let mut dir = Dir::default();
    let vote = Vote {
        term: 7,
        node: 2,
        committed: true,
    };
    e.save_vote(9, vote);
    for i in 1..=12 {
        e.append(9, i, 7, &[b'x'; 20]).unwrap();
        e.append(4, i, 1, &[b'y'; 4]).unwrap();
        dir.run(e.take_batch(i).unwrap());
    }
    e.purge(9, LogId { index: 10, term: 7 });
    e.reset(9);
    dir.run(e.take_batch(50).unwrap());
    assert!(e.group(9).is_none());
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert!(rec.engine.group(9).is_none(), "nothing of the old replica");
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    // A new replica of the group, from index 1 (the old one reached 12).
    e.append(9, 1, 9, b"new").unwrap();
    e.append(9, 2, 9, b"again").unwrap();
    dir.run(e.take_batch(60).unwrap());
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    let g = rec.engine.group(9).unwrap();
    assert_eq!((g.purged().index, g.last().index, g.vote()), (0, 2, None));
    // Once the other group's old entries are purged, every segment before the reset goes:
    // the old replica's entries pin nothing.
    e.purge(4, LogId { index: 12, term: 1 });
    for i in 3..=20 {
        e.append(9, i, 9, &[b'z'; 20]).unwrap();
        dir.run(e.take_batch(60 + i).unwrap());
    }
    let oldest = *dir.files.keys().next().unwrap();
    assert!(oldest > 1, "segments of the old replica were deleted");
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
}

#[test]
fn a_rarely_written_group_that_pins_the_oldest_segment_is_named_for_compaction() {
    let mut e = Engine::new(cfg(200, FsyncPolicy::Always));
    let mut dir = Dir::default();
    // Group 1 writes once; group 2 keeps writing and compacting as it goes.
    e.append(1, 1, 1, &[b'a'; 20]).unwrap();
    for i in 1..=30 {
        e.append(2, i, 1, &[b'x'; 20]).unwrap();
        e.purge(2, LogId { index: i, term: 1 });
        dir.run(e.take_batch(i).unwrap());
    }
    assert!(e.segment_seqs().len() > 4);
    assert!(
        dir.files.contains_key(&1),
        "group 1's entry keeps segment 1"
    );
    assert_eq!(e.pinning_oldest(4), vec![1]);
    assert_eq!(
        e.pinning_oldest(1000),
        Vec::<u32>::new(),
        "under the limit: nothing"
    );
    e.purge(1, LogId { index: 1, term: 1 });
    dir.run(e.take_batch(100).unwrap());
    assert!(
        !dir.files.contains_key(&1),
        "once compacted, the segment goes"
    );
    assert!(e.segment_seqs().len() <= 2, "{:?}", e.segment_seqs());
}

fn workload() -> (Engine, Dir) {
    let mut e = Engine::new(cfg(300, FsyncPolicy::Always));
    let mut dir = Dir::default();
    for i in 1..=12u64 {
        for g in [1u32, 2] {
            e.append(g, i, 1 + i / 5, format!("entry {g}/{i}").as_bytes())
                .unwrap();
        }
        if i == 6 {
            e.truncate(2, 5);
            e.append(2, 5, 9, b"overwritten").unwrap();
            e.append(2, 6, 9, b"again").unwrap();
            e.save_vote(
                2,
                Vote {
                    term: 9,
                    node: 1,
                    committed: false,
                },
            );
        }
        if i % 3 == 0 {
            dir.run(e.take_batch(i).unwrap());
        }
    }
    (e, dir)
}

#[test]
fn recovery_rebuilds_exactly_what_was_written() {
    let (e, dir) = workload();
    assert!(dir.files.len() > 1);
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert!(rec.truncate_tail.is_none());
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    let g2 = rec.engine.group(2).unwrap();
    assert_eq!(g2.entry(5), Some((9, &b"overwritten"[..])));
    assert_eq!(g2.last().index, 12);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_record_wherever_the_crash_fell() {
    let (e, dir) = workload();
    let last = *dir.files.keys().last().unwrap();
    let full = dir.files[&last].clone();
    // Record boundaries of the last segment.
    let mut bounds = vec![record::HEADER];
    while let record::Decoded::Record(_, next) = record::decode(&full, *bounds.last().unwrap()) {
        bounds.push(next);
    }
    for cut in record::HEADER..full.len() {
        let mut d = dir.clone();
        d.files.get_mut(&last).unwrap().truncate(cut);
        let rec = Engine::recover(e.config(), d.contents())
            .unwrap_or_else(|c| panic!("cut {cut}: {c:?}"));
        let whole = *bounds.iter().rev().find(|&&b| b <= cut).unwrap();
        if whole == cut {
            assert_eq!(rec.truncate_tail, None, "cut {cut} at a boundary");
        } else {
            assert_eq!(rec.truncate_tail, Some((last, whole as u64)), "cut {cut}");
        }
        // The recovered log is a prefix of what was written.
        for (g, (_, _, entries)) in snapshot(&rec.engine) {
            let all = &snapshot(&e)[&g].2;
            assert!(
                all.starts_with(&entries) || entries.len() <= all.len(),
                "group {g}"
            );
        }
    }
}

#[test]
fn a_newest_segment_whose_header_never_reached_the_disk_is_dropped_and_nothing_else() {
    let (e, dir) = workload();
    let last = *dir.files.keys().last().unwrap();
    let full = dir.files[&last].clone();
    let expect = snapshot(&Engine::recover(e.config(), dir.contents()).unwrap().engine);
    // Without the newest segment: what recovery must give back when that segment is dropped.
    let mut without = dir.clone();
    without.files.remove(&last);
    let before = snapshot(
        &Engine::recover(e.config(), without.contents())
            .unwrap()
            .engine,
    );
    assert_ne!(before, expect, "the newest segment holds records");
    // Its header torn anywhere (a prefix written, the rest zeros; records after it or not).
    for keep in 0..record::HEADER {
        if full[keep..record::HEADER].iter().all(|&b| b == 0) {
            break; // the rest of the header is zeros anyway: whole
        }
        for records in [false, true] {
            let mut d = dir.clone();
            let f = d.files.get_mut(&last).unwrap();
            f[keep..record::HEADER].fill(0);
            if !records {
                f.truncate(record::HEADER);
            }
            let rec = Engine::recover(e.config(), d.contents())
                .unwrap_or_else(|c| panic!("keep {keep}: {c:?}"));
            assert_eq!(rec.drop_newest, Some(last), "keep {keep}");
            assert_eq!(snapshot(&rec.engine), before, "keep {keep}");
        }
    }
    // A header that is not a torn write of its own (another byte in it) is damage.
    let mut d = dir.clone();
    d.files.get_mut(&last).unwrap()[3] ^= 0x40;
    assert!(Engine::recover(e.config(), d.contents()).is_err());
    // And an older segment's torn header is damage too.
    let first = *dir.files.keys().next().unwrap();
    let mut d = dir.clone();
    d.files.get_mut(&first).unwrap()[10..record::HEADER].fill(0);
    assert!(Engine::recover(e.config(), d.contents()).is_err());
    assert_eq!(full, dir.files[&last]);
}

#[test]
fn zeros_after_the_records_of_any_segment_are_their_clean_end_but_a_record_after_zeros_is_damage() {
    let (e, dir) = workload();
    // Every segment extended with zeros, as the file driver writes them ahead of the records.
    let mut d = dir.clone();
    for f in d.files.values_mut() {
        f.resize(f.len() + 4096, 0);
    }
    let rec = Engine::recover(e.config(), d.contents()).unwrap();
    assert_eq!(rec.truncate_tail, None);
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    // Zeros in the middle of the last segment with whole records after them: not a tail.
    let last = *dir.files.keys().last().unwrap();
    let mut d = dir.clone();
    let f = d.files.get_mut(&last).unwrap();
    let at = record::HEADER;
    let record::Decoded::Record(_, next) = record::decode(f, at) else {
        panic!("a first record");
    };
    f[at..next].fill(0);
    let Err(c) = Engine::recover(e.config(), d.contents()) else {
        panic!("zeros before whole records opened as a clean log");
    };
    assert_eq!((c.seq, c.offset), (last, at as u64));
}

#[test]
fn damage_anywhere_but_the_tail_refuses_to_open_naming_segment_and_offset() {
    let (e, dir) = workload();
    let first = *dir.files.keys().next().unwrap();
    let mut d = dir.clone();
    d.files.get_mut(&first).unwrap()[40] ^= 0x10;
    let err = Engine::recover(e.config(), d.contents())
        .err()
        .expect("corrupt");
    assert_eq!(err.seq, first);
    assert_eq!(err.offset, 32, "the record that holds the flipped byte");
    // A bad record in the last segment with good records after it is corruption, not a tear.
    let last = *dir.files.keys().last().unwrap();
    let mut d = dir.clone();
    let f = d.files.get_mut(&last).unwrap();
    f[record::HEADER + 10] ^= 0x01;
    let err = Engine::recover(e.config(), d.contents())
        .err()
        .expect("corrupt");
    assert_eq!((err.seq, err.offset), (last, record::HEADER as u64));
    assert!(err.reason.contains("checksum"), "{err:?}");
    // A missing segment in the middle, a foreign file, another shard's segment.
    if dir.files.len() > 2 {
        let mut d = dir.clone();
        let middle = *d.files.keys().nth(1).unwrap();
        d.files.remove(&middle);
        assert!(
            Engine::recover(e.config(), d.contents())
                .err()
                .unwrap()
                .reason
                .contains("missing")
        );
    }
    let mut d = dir.clone();
    d.files
        .insert(first, b"not a log at all, definitely not".to_vec());
    assert!(
        Engine::recover(e.config(), d.contents())
            .err()
            .unwrap()
            .reason
            .contains("magic")
    );
    let other = WalConfig {
        shard: 4,
        ..e.config()
    };
    assert!(Engine::recover(other, dir.contents()).is_err());
}

/// Random operations on several groups with small segments: after every batch the directory
/// recovers to exactly the engine's state, and the directory never holds more than the live
/// data needs (segments are collected as groups purge).
#[test]
fn random_workloads_recover_to_the_same_state() {
    let mut x = 0x5DEE_CE66_D1CEu64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20 {
        let mut e = Engine::new(cfg(400, FsyncPolicy::Always));
        let mut dir = Dir::default();
        for step in 0..300u64 {
            let g = (next() % 4) as u32;
            let last = e.group(g).map_or(LogId::default(), |l| l.last());
            let purged = e.group(g).map_or(LogId::default(), |l| l.purged());
            match next() % 10 {
                0 if last.index > purged.index + 2 => e.truncate(g, last.index - 1),
                1 if last.index > purged.index => {
                    let upto = purged.index + 1 + next() % (last.index - purged.index);
                    let term = e.group(g).unwrap().entry(upto).unwrap().0;
                    e.purge(g, LogId { index: upto, term });
                }
                3 => {
                    // A unit: the next entry of `g` and of another group.
                    let h = (g + 1 + (next() % 3) as u32) % 4;
                    let hl = e.group(h).map_or(0, |l| l.last().index);
                    let len = (next() % 40) as usize;
                    let p = bytes::Bytes::from(vec![b'u'; len]);
                    e.append_unit(&[
                        (g, last.index + 1, step / 10 + 1, p.clone()),
                        (h, hl + 1, step / 10 + 1, p),
                    ])
                    .unwrap();
                }
                2 => e.save_vote(
                    g,
                    Vote {
                        term: step,
                        node: next() % 3,
                        committed: false,
                    },
                ),
                _ => {
                    let len = (next() % 40) as usize;
                    e.append(g, last.index + 1, step / 10 + 1, &vec![b'p'; len])
                        .unwrap();
                }
            }
            if next() % 4 == 0 {
                e.flush(step);
                let b = e.take_batch(step).unwrap();
                // Half the rounds reuse batches and buffers (`Engine::recycle`).
                let acks = if round % 2 == 0 {
                    dir.run(b)
                } else {
                    dir.run_recycled(&mut e, b)
                };
                assert_eq!(acks, vec![step]);
                let rec = Engine::recover(e.config(), dir.contents())
                    .unwrap_or_else(|c| panic!("round {round} step {step}: {c:?}"));
                assert_eq!(
                    snapshot(&rec.engine),
                    snapshot(&e),
                    "round {round} step {step}"
                );
                assert_eq!(rec.engine.segment_seqs(), e.segment_seqs());
            }
        }
    }
}

/// A unit (entries of several groups in one record) comes back whole from a recovery, and a
/// crash anywhere inside it loses all of its entries, never some: what a command across
/// vShards wrote holds together.
#[test]
fn a_unit_of_entries_across_groups_is_recovered_whole_or_not_at_all() {
    let mut e = Engine::new(cfg(1 << 20, FsyncPolicy::Always));
    let mut dir = Dir::default();
    e.append(1, 1, 1, b"a1").unwrap();
    e.append(2, 1, 1, b"b1").unwrap();
    dir.run(e.take_batch(1).unwrap());
    let before = snapshot(&e);
    let written = dir.files[&1].len();
    // Group 1's next two entries and group 2's next one, as one unit; then an entry after it.
    let part = |g: u32, i: u64, p: &'static [u8]| (g, i, 1, bytes::Bytes::from_static(p));
    e.append_unit(&[part(1, 2, b"a2"), part(1, 3, b"a3"), part(2, 2, b"b2")])
        .unwrap();
    e.append(2, 3, 1, b"b3").unwrap();
    dir.run(e.take_batch(2).unwrap());
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert_eq!(snapshot(&rec.engine), snapshot(&e), "recovered whole");
    assert_eq!(rec.engine.group(1).unwrap().last().index, 3);
    let full = dir.files[&1].clone();
    let unit_end = match record::decode(&full, written) {
        record::Decoded::Record(r, next) => {
            assert_eq!(r.kind, record::Kind::Unit);
            next
        }
        other => panic!("{other:?}"),
    };
    for cut in written..unit_end {
        let mut d = dir.clone();
        d.files.get_mut(&1).unwrap().truncate(cut);
        let rec = Engine::recover(e.config(), d.contents()).unwrap_or_else(|c| panic!("{c:?}"));
        assert_eq!(snapshot(&rec.engine), before, "cut {cut}: none of the unit");
    }
    // A unit that does not follow its groups' logs changes nothing.
    let err = e.append_unit(&[part(1, 4, b"a4"), part(2, 9, b"b9")]);
    assert!(
        matches!(err, Err(LogError::NotContiguous { group: 2, .. })),
        "{err:?}"
    );
    assert_eq!(e.group(1).unwrap().last().index, 3);
}

/// A unit's entry of a group reset later is void like any record of that group; the other
/// groups' entries in the same unit stay.
#[test]
fn a_reset_voids_only_its_own_groups_entries_of_a_unit() {
    let mut e = Engine::new(cfg(1 << 20, FsyncPolicy::Always));
    let mut dir = Dir::default();
    let part = |g: u32, i: u64, p: &'static [u8]| (g, i, 1, bytes::Bytes::from_static(p));
    e.append_unit(&[part(0, 1, b"z1"), part(7, 1, b"s1")])
        .unwrap();
    e.reset(0);
    dir.run(e.take_batch(1).unwrap());
    let rec = Engine::recover(e.config(), dir.contents()).unwrap();
    assert_eq!(snapshot(&rec.engine), snapshot(&e));
    assert_eq!(rec.engine.group(7).unwrap().last().index, 1);
    assert!(rec.engine.group(0).is_none_or(|l| l.last().index == 0));
}

/// An engine that keeps no entries in memory (`release_entries`, as the node runs) writes the
/// same records as one that keeps them and knows the term of every entry it holds: its runs of
/// terms follow truncations, purges and units as the entries would.
#[test]
fn an_engine_that_keeps_no_entries_writes_the_same_records_and_knows_every_term() {
    let mut rng = crate::rng::Rng::new(0xC0FF_EE12_3456);
    let mut next = || rng.next_u64();
    for round in 0..20 {
        let mut kept = Engine::new(cfg(400, FsyncPolicy::Always));
        let mut lean = Engine::new(cfg(400, FsyncPolicy::Always));
        lean.release_entries();
        for step in 0..300u64 {
            let g = (next() % 4) as u32;
            let last = kept.group(g).map_or(LogId::default(), |l| l.last());
            let purged = kept.group(g).map_or(LogId::default(), |l| l.purged());
            // Terms move every few steps, so truncations cut runs.
            let term = step / 7 + 1;
            match next() % 8 {
                0 if last.index > purged.index + 2 => {
                    let from = purged.index + 2 + next() % (last.index - purged.index - 1);
                    kept.truncate(g, from);
                    lean.truncate(g, from);
                }
                1 if last.index > purged.index => {
                    let upto = purged.index + 1 + next() % (last.index - purged.index);
                    let t = kept.group(g).unwrap().entry(upto).unwrap().0;
                    let id = LogId {
                        index: upto,
                        term: t,
                    };
                    kept.purge(g, id);
                    lean.purge(g, id);
                }
                2 => {
                    let h = (g + 1 + (next() % 3) as u32) % 4;
                    let hl = kept.group(h).map_or(0, |l| l.last().index);
                    let p = bytes::Bytes::from(vec![b'u'; (next() % 40) as usize]);
                    let parts = [(g, last.index + 1, term, p.clone()), (h, hl + 1, term, p)];
                    kept.append_unit(&parts).unwrap();
                    lean.append_unit(&parts).unwrap();
                }
                3 if next() % 4 == 0 => {
                    // A snapshot installed past the end.
                    let id = LogId {
                        index: last.index + 1 + next() % 5,
                        term,
                    };
                    kept.purge(g, id);
                    lean.purge(g, id);
                }
                _ => {
                    let p = bytes::Bytes::from(vec![b'p'; (next() % 40) as usize]);
                    kept.append_shared(g, last.index + 1, term, &p).unwrap();
                    lean.append_shared(g, last.index + 1, term, &p).unwrap();
                }
            }
            for g in 0..4 {
                let (Some(k), Some(l)) = (kept.group(g), lean.group(g)) else {
                    assert_eq!(kept.group(g).is_some(), lean.group(g).is_some());
                    continue;
                };
                assert_eq!(l.last(), k.last(), "round {round} step {step} group {g}");
                assert_eq!(l.purged(), k.purged());
                assert_eq!(l.entry(k.last().index), None, "keeps no entries");
                for i in k.purged().index.saturating_sub(1)..=k.last().index + 1 {
                    let want = match i {
                        _ if i == k.purged().index => Some(k.purged().term),
                        _ => k.entry(i).map(|(t, _)| t),
                    };
                    assert_eq!(
                        l.term_at(i),
                        want,
                        "round {round} step {step} group {g} entry {i}"
                    );
                    assert_eq!(k.term_at(i), want);
                }
            }
            if next() % 4 == 0 {
                kept.flush(step);
                lean.flush(step);
                let ops = |b: Option<Batch>| b.map(|b| b.ops);
                assert_eq!(
                    ops(lean.take_batch(step)),
                    ops(kept.take_batch(step)),
                    "the same records"
                );
            }
        }
    }
}
