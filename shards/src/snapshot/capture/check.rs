//! Checks of captures shared by the unit tests and the fuzz target `capture`: a node's
//! vShards captured at one point, then changed by commands of every family between the
//! walks' pieces; each capture must decode to exactly what its vShard held at the start.

use super::*;
use crate::cmdfuzz::{self, Choices, Node};
use crate::db::Tunables;
use std::collections::BTreeMap;

/// A whole snapshot from a walked capture and what was drained from it.
pub fn assemble(whole: Captured, entries: &[u8]) -> Vec<u8> {
    let mut b = whole.header.to_vec();
    b.extend_from_slice(entries);
    b.extend_from_slice(&whole.tail);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Each key's expiry and value as the format writes them, collections in a canonical order
/// (a hash table's order depends on its instance's seed, not only on its content).
pub fn entries(vs: &VShard) -> BTreeMap<Vec<u8>, Vec<u8>> {
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
pub fn fill(node: &mut Node, c: &mut impl Choices, n: usize) {
    for i in 0..n {
        let k = format!("f:{i}");
        match c.below(4) {
            0 => run(
                node,
                &["hset", &k, "a", "1", "b", &"x".repeat(c.below(300))],
            ),
            1 => run(node, &["rpush", &k, "1", "2", "3"]),
            _ => run(node, &["set", &k, &"v".repeat(c.below(2000))]),
        }
        if c.below(5) == 0 {
            run(node, &["pexpire", &k, &(1 + c.below(5000)).to_string()]);
        }
    }
    for argv in cmdfuzz::prefill(c) {
        node.run(&argv);
    }
}

/// One change of the kinds a vShard sees while it is captured: random commands of every
/// family, overwrites, new keys (the table grows), deletions (it shrinks), TTLs set and
/// removed, time passing (keys expire), now and then a flush.
fn change(node: &mut Node, c: &mut impl Choices, n: usize) {
    let k = format!("f:{}", c.below(n * 2));
    match c.below(20) {
        0..=5 => {
            let argv = cmdfuzz::command(c);
            node.run(&argv);
        }
        6..=8 => run(node, &["set", &k, &"w".repeat(c.below(1500))]),
        9..=10 => run(node, &["del", &k]),
        11 => run(node, &["pexpire", &k, &(1 + c.below(3000)).to_string()]),
        12 => run(node, &["persist", &k]),
        13 => run(node, &["hset", &k, "c", "3"]),
        14 => run(node, &["lpush", &k, "0"]),
        15 => run(node, &["append", &k, "tail"]),
        16 => {
            // Time passes; active expiry and eviction take keys out.
            node.now_ms += c.below(2000) as u64;
            let now = node.now_ms;
            node.dbs[0].active_expire(now, 1 + c.below(40));
            node.dbs[0].tunables.maxmemory_policy = crate::evict::Policy::AllKeysLru;
            for _ in 0..c.below(3) {
                node.dbs[0].evict_one(now);
            }
        }
        17 if c.below(200) == 0 => run(node, &["flushall"]),
        17 => run(node, &["getex", &k, "persist"]),
        18 if c.below(4) == 0 => {
            // A burst of deletions: the table may shrink under the walk.
            for j in 0..n {
                if c.below(4) != 0 {
                    run(node, &["del", &format!("f:{j}")]);
                }
            }
        }
        18 => run(node, &["rename", &k, &format!("f:{}", c.below(n))]),
        _ => {
            // A burst of new keys: the table may grow under the walk.
            for j in 0..n / 2 {
                run(
                    node,
                    &["set", &format!("g:{}:{j}", c.below(1 << 20)), "new"],
                );
            }
        }
    }
}

/// What `captured_sequence` saw: captures walked whole, walks started over after a resize,
/// keys written by their first change, changes made.
#[derive(Default, Debug)]
pub struct Seen {
    pub walked: u64,
    pub rewalks: u64,
    pub changed_first: u64,
    pub changes: u64,
}

/// Fills a node of one thread (about `n` keys of every type), captures every vShard, then
/// changes it (`change`, a few at a time, `c` choosing) between pieces of every capture's
/// walk until each is whole: each must decode to what its vShard held at the start.
pub fn captured_sequence(c: &mut impl Choices, n: usize, seed: u64) -> Result<Seen, String> {
    let t = Tunables::default();
    let mut node = Node::new(1, seed);
    fill(&mut node, c, n);
    let t0 = node.now_ms;
    let ids: Vec<VShardId> = (0..node.layout.count() as u16).map(VShardId).collect();
    let mut want = BTreeMap::new();
    for &v in &ids {
        let vs = node.dbs[0].vshard_mut(v).expect("owned");
        let plain = super::super::encode(vs, t0);
        let decoded = super::super::decode(&plain, &t).map_err(|e| format!("{e:?}"))?;
        want.insert(v, entries(&decoded));
        vs.begin_capture(t0, v.0 as u64);
    }
    let mut got: BTreeMap<VShardId, Vec<u8>> = BTreeMap::new();
    let mut open = ids;
    let mut seen = Seen::default();
    while !open.is_empty() {
        for _ in 0..c.below(8) {
            change(&mut node, c, n);
            seen.changes += 1;
        }
        let budget = 1 + c.below(4096);
        let mut failed = None;
        open.retain(|&v| {
            let vs = node.dbs[0].vshard_mut(v).expect("owned");
            let done = vs.capture_walk(budget);
            let cap = vs.capture.as_deref_mut().expect("no one ends it");
            got.entry(v).or_default().extend_from_slice(cap.out());
            cap.out().clear();
            if done {
                let whole = vs.capture.take().expect("under way").finish();
                seen.walked += 1;
                seen.rewalks += whole.rewalks as u64;
                seen.changed_first += whole.changed_first;
                let b = assemble(whole, &got[&v]);
                match super::super::decode(&b, &t) {
                    Err(e) => {
                        failed = Some(format!("vShard {v:?}'s capture does not decode: {e:?}"))
                    }
                    Ok(back) if entries(&back) != want[&v] => {
                        failed = Some(format!(
                            "vShard {v:?} captured is not the vShard at its point"
                        ))
                    }
                    Ok(_) => {}
                }
            }
            !done
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(seen)
}
