use super::check::{self, assemble, entries, fill};
use super::*;
use crate::cmdfuzz::Node;
use crate::db::Tunables;
use crate::rng::Rng;

/// Every vShard of a node captured at one point, then changed in every way while the
/// captures walk in small steps: each capture, decoded, is exactly the vShard as it was at
/// its point (what a plain encoding then held), with every key once (`check.rs`).
#[test]
fn a_capture_is_the_vshard_as_it_was_whatever_changes_meanwhile() {
    let seeds: u64 = std::env::var("CAPTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut all = check::Seen::default();
    for seed in 0..seeds {
        let mut rng = Rng::new(seed);
        let n = 200 + rng.below(1500) as usize;
        let seen = check::captured_sequence(&mut rng, n, seed)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(seen.changes > 0);
        all.walked += seen.walked;
        all.rewalks += seen.rewalks;
        all.changed_first += seen.changed_first;
    }
    // Tables were laid out anew under walks, and keys were written by their first change.
    assert!(
        all.walked > 0 && all.rewalks > 0 && all.changed_first > 0,
        "{all:?}"
    );
}

/// A capture of a vShard nothing changes is byte for byte the plain encoding, whatever its
/// step sizes.
#[test]
fn a_capture_of_an_unchanged_vshard_is_its_plain_encoding() {
    let t = Tunables::default();
    let mut rng = Rng::new(7);
    let mut node = Node::new(1, 7);
    fill(&mut node, &mut rng, 3000);
    node.now_ms += 2500; // some TTLs due: left out
    let now = node.now_ms;
    for v in 0..node.layout.count() as u16 {
        let vs = node.dbs[0].vshard_mut(VShardId(v)).unwrap();
        let plain = super::super::encode(vs, now);
        // The walk the driver runs (marks read and set) against `encode`'s (none).
        vs.begin_capture(now, 1);
        let mut out = Vec::new();
        loop {
            let done = vs.capture_walk(1 + rng.below(10_000) as usize);
            let c = vs.capture.as_deref_mut().unwrap();
            out.extend_from_slice(c.out());
            c.out().clear();
            if done {
                break;
            }
        }
        let c = vs.capture.take().unwrap();
        assert_eq!(assemble(c.finish(), &out), plain);
        assert!(super::super::decode(&plain, &t).is_ok());
    }
}

/// A table that grows, shrinks and is flushed under a capture: the marks move with their
/// entries, the walk starts over on the new layout, a flush hands the capture the old
/// tables; every key of the start is written once, as it was, and no other.
#[test]
fn a_capture_survives_resizes_and_a_flush_of_its_table() {
    let t = Tunables::default();
    let put = |vs: &mut VShard, k: &str, v: &str| {
        vs.cow(k.as_bytes());
        let v = Value::Str(crate::bytes::SmallBytes::new(v.as_bytes()));
        vs.keys.insert(k.as_bytes(), v);
    };
    let mut vs = VShard::new(VShardId(1));
    for i in 0..100 {
        put(&mut vs, &format!("k{i}"), "old");
    }
    let want = entries(&super::super::decode(&super::super::encode(&vs, 0), &t).unwrap());
    vs.begin_capture(0, 1);
    let mut out = Vec::new();
    let mut drain = |vs: &mut VShard, budget: usize| {
        let done = vs.capture_walk(budget);
        let c = vs.capture.as_deref_mut().unwrap();
        out.extend_from_slice(c.out());
        c.out().clear();
        done
    };
    assert!(!drain(&mut vs, 64));
    // Grows (new keys), overwrites old ones, then shrinks (most keys removed).
    for i in 100..2000 {
        put(&mut vs, &format!("k{i}"), "new");
    }
    for i in (0..100).step_by(3) {
        put(&mut vs, &format!("k{i}"), "changed");
    }
    assert!(!drain(&mut vs, 64));
    for i in 50..2000 {
        let k = format!("k{i}");
        vs.cow(k.as_bytes());
        vs.keys.remove(k.as_bytes());
    }
    assert!(!drain(&mut vs, 64));
    // Flushed: the capture walks the tables it was handed; the vShard starts anew.
    vs.cow_all();
    vs.keys.clear();
    put(&mut vs, "after", "flush");
    while !drain(&mut vs, 64) {}
    let whole = vs.capture.take().unwrap().finish();
    assert!(whole.rewalks >= 2, "{} walks started over", whole.rewalks);
    let back = super::super::decode(&assemble(whole, &out), &t).unwrap();
    assert_eq!(entries(&back), want);
    assert_eq!(vs.keys.len(), 1);
}

/// The last key of a table removed under a capture (the table is cleared) and new keys put
/// in before the walk's next piece: the capture writes the old key only.
#[test]
fn a_table_emptied_and_refilled_under_a_capture_adds_nothing_to_it() {
    let t = Tunables::default();
    let mut vs = VShard::new(VShardId(2));
    vs.keys
        .insert(b"only", Value::Str(crate::bytes::SmallBytes::new(b"was")));
    vs.begin_capture(0, 1);
    vs.cow(b"only");
    vs.keys.remove(b"only");
    for i in 0..50 {
        let k = format!("later{i}");
        vs.cow(k.as_bytes());
        let v = Value::Str(crate::bytes::SmallBytes::new(b"new"));
        vs.keys.insert(k.as_bytes(), v);
    }
    let mut out = Vec::new();
    loop {
        let done = vs.capture_walk(16);
        let c = vs.capture.as_deref_mut().unwrap();
        out.extend_from_slice(c.out());
        c.out().clear();
        if done {
            break;
        }
    }
    let whole = vs.capture.take().unwrap().finish();
    let back = super::super::decode(&assemble(whole, &out), &t).unwrap();
    assert_eq!(back.keys.len(), 1);
    assert!(back.keys.get(b"only").is_some());
}
