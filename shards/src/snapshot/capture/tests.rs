use super::*;
use crate::cmdfuzz::{self, Node};
use crate::db::Tunables;
use crate::rng::Rng;
use std::collections::BTreeMap;

/// A whole snapshot from a walked capture and what was drained from it.
fn assemble(whole: Captured, entries: &[u8]) -> Vec<u8> {
    let mut b = whole.header.to_vec();
    b.extend_from_slice(entries);
    b.extend_from_slice(&whole.tail);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Each key's expiry and value as the format writes them, collections in a canonical order
/// (a hash table's order depends on its instance's seed, not only on its content).
fn entries(vs: &VShard) -> BTreeMap<Vec<u8>, Vec<u8>> {
    vs.keys
        .iter()
        .map(|(k, v)| {
            let mut w = W(Vec::new());
            w.u64(vs.expires.get(k).copied().unwrap_or(0));
            let mut items: Vec<Vec<u8>> = Vec::new();
            match v {
                Value::Hash(h) => items.extend(h.iter().map(|(f, v)| [f, b"=", v].concat())),
                Value::Set(s) => s.for_each(|m| items.push(m.to_vec())),
                Value::ZSet(z) => items.extend(
                    z.members_and_scores()
                        .into_iter()
                        .map(|(m, s)| [&m[..], &s.to_bits().to_le_bytes()].concat()),
                ),
                _ => value_into(&mut w, v),
            }
            items.sort();
            for i in items {
                w.bytes(&i);
            }
            (k.to_vec(), w.0)
        })
        .collect()
}

fn run(node: &mut Node, words: &[&str]) {
    let argv: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    node.run(&argv);
}

/// Keys of every type over many buckets, a fifth with a TTL (some of them due soon).
fn fill(node: &mut Node, rng: &mut Rng, n: usize) {
    for i in 0..n {
        let k = format!("f:{i}");
        match rng.below(4) {
            0 => run(
                node,
                &[
                    "hset",
                    &k,
                    "a",
                    "1",
                    "b",
                    &"x".repeat(rng.below(300) as usize),
                ],
            ),
            1 => run(node, &["rpush", &k, "1", "2", "3"]),
            _ => run(node, &["set", &k, &"v".repeat(rng.below(2000) as usize)]),
        }
        if rng.below(5) == 0 {
            run(node, &["pexpire", &k, &(1 + rng.below(5000)).to_string()]);
        }
    }
    for argv in cmdfuzz::prefill(rng) {
        node.run(&argv);
    }
}

/// One change of the kinds a vShard sees while it is captured: random commands of every
/// family, overwrites, new keys (the table grows), deletions (it shrinks), TTLs set and
/// removed, time passing (keys expire), now and then a flush.
fn change(node: &mut Node, rng: &mut Rng, n: usize) {
    let k = format!("f:{}", rng.below(n as u64 * 2));
    match rng.below(20) {
        0..=5 => {
            let argv = cmdfuzz::command(rng);
            node.run(&argv);
        }
        6..=8 => run(node, &["set", &k, &"w".repeat(rng.below(1500) as usize)]),
        9..=10 => run(node, &["del", &k]),
        11 => run(node, &["pexpire", &k, &(1 + rng.below(3000)).to_string()]),
        12 => run(node, &["persist", &k]),
        13 => run(node, &["hset", &k, "c", "3"]),
        14 => run(node, &["lpush", &k, "0"]),
        15 => run(node, &["append", &k, "tail"]),
        16 => {
            // Time passes; active expiry and eviction take keys out.
            node.now_ms += rng.below(2000);
            let now = node.now_ms;
            node.dbs[0].active_expire(now, 1 + rng.below(40) as usize);
            node.dbs[0].tunables.maxmemory_policy = crate::evict::Policy::AllKeysLru;
            for _ in 0..rng.below(3) {
                node.dbs[0].evict_one(now);
            }
        }
        17 if rng.below(200) == 0 => run(node, &["flushall"]),
        17 => run(node, &["getex", &k, "persist"]),
        18 if rng.below(4) == 0 => {
            // A burst of deletions: the table may shrink under the walk.
            for j in 0..n {
                if rng.below(4) != 0 {
                    run(node, &["del", &format!("f:{j}")]);
                }
            }
        }
        18 => run(node, &["rename", &k, &format!("f:{}", rng.below(n as u64))]),
        _ => {
            // A burst of new keys: the table may grow under the walk.
            for j in 0..n / 2 {
                run(
                    node,
                    &["set", &format!("g:{}:{j}", rng.below(1 << 20)), "new"],
                );
            }
        }
    }
}

/// Every vShard of a node captured at one point, then changed in every way while the
/// captures walk in small steps: each capture, decoded, is exactly the vShard as it was at
/// its point (what a plain encoding then held), with every key once.
#[test]
fn a_capture_is_the_vshard_as_it_was_whatever_changes_meanwhile() {
    let seeds: u64 = std::env::var("CAPTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let t = Tunables::default();
    let (mut rewalks, mut changed_first, mut walked) = (0, 0, 0);
    for seed in 0..seeds {
        let mut rng = Rng::new(seed);
        let mut node = Node::new(1, seed);
        let n = 200 + rng.below(1500) as usize;
        fill(&mut node, &mut rng, n);
        let t0 = node.now_ms;
        let layout = node.layout;
        let ids: Vec<VShardId> = (0..layout.count() as u16).map(VShardId).collect();
        let mut want = BTreeMap::new();
        for &v in &ids {
            let vs = node.dbs[0].vshard_mut(v).unwrap();
            let plain = super::super::encode(vs, t0);
            want.insert(v, entries(&super::super::decode(&plain, &t).unwrap()));
            vs.begin_capture(t0, v.0 as u64);
        }
        let mut got: BTreeMap<VShardId, Vec<u8>> = BTreeMap::new();
        let mut open = ids.clone();
        let mut changes = 0;
        while !open.is_empty() {
            for _ in 0..rng.below(8) {
                change(&mut node, &mut rng, n);
                changes += 1;
            }
            let budget = 1 + rng.below(4096) as usize;
            open.retain(|&v| {
                let vs = node.dbs[0].vshard_mut(v).unwrap();
                let done = vs.capture_walk(budget);
                let c = vs.capture.as_deref_mut().expect("no one ends it");
                got.entry(v).or_default().extend_from_slice(c.out());
                c.out().clear();
                if done {
                    walked += 1;
                    let whole = vs.capture.take().unwrap().finish();
                    rewalks += whole.rewalks;
                    changed_first += whole.changed_first;
                    let b = assemble(whole, &got[&v]);
                    let back = super::super::decode(&b, &t).unwrap_or_else(|e| {
                        panic!("seed {seed}: vShard {v:?}'s capture does not decode: {e:?}")
                    });
                    assert_eq!(
                        entries(&back),
                        want[&v],
                        "seed {seed}: vShard {v:?} captured is not the vShard at its point"
                    );
                }
                !done
            });
        }
        assert!(changes > 0);
    }
    // Tables were laid out anew under walks, and keys were written by their first change.
    assert!(
        walked > 0 && rewalks > 0 && changed_first > 0,
        "{walked} captures, {rewalks} walks started over, {changed_first} keys written at a change"
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
        let mut c = Capture::new(vs, now, 1);
        let mut out = Vec::new();
        while !c.walk_unchanging(vs, 1 + rng.below(10_000) as usize) {
            out.extend_from_slice(c.out());
            c.out().clear();
        }
        out.extend_from_slice(c.out());
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
