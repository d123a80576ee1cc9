//! Compact and indexed encodings across families: the switch happens at Redis's thresholds
//! (taken from `Tunables`, so CONFIG SET moves them), OBJECT ENCODING names it, and behaviour is
//! the same on both sides of it (random operations against models with tiny thresholds).

use crate::command::testing::*;
use std::collections::{BTreeMap, BTreeSet};

fn enc(h: &mut Harness, key: &str) -> String {
    h.run(&format!("OBJECT ENCODING {key}"))
}

#[test]
fn hashes_switch_to_a_table_past_either_threshold() {
    let mut h = Harness::new();
    h.db.tunables.hash_max_listpack_entries = 3;
    h.db.tunables.hash_max_listpack_value = 8;
    h.run("HSET a f1 v f2 v f3 v");
    assert_eq!(enc(&mut h, "a"), bulk("listpack"));
    h.run("HSET a f4 v");
    assert_eq!(enc(&mut h, "a"), bulk("hashtable"));
    h.run("HDEL a f1 f2 f3");
    assert_eq!(enc(&mut h, "a"), bulk("hashtable"), "never converts back");
    h.run("HSET b f 12345678");
    assert_eq!(enc(&mut h, "b"), bulk("listpack"));
    h.run("HSET b f 123456789");
    assert_eq!(enc(&mut h, "b"), bulk("hashtable"));
    assert_eq!(h.run("HGET b f"), bulk("123456789"));
}

#[test]
fn sets_go_from_intset_to_listpack_to_table() {
    let mut h = Harness::new();
    h.db.tunables.set_max_intset_entries = 4;
    h.db.tunables.set_max_listpack_entries = 3;
    h.run("SADD i 1 2 3");
    assert_eq!(enc(&mut h, "i"), bulk("intset"));
    h.run("SADD i 4 5");
    assert_eq!(
        enc(&mut h, "i"),
        bulk("hashtable"),
        "intset overflow goes to a table"
    );
    h.run("SADD p 1 2");
    h.run("SADD p x");
    assert_eq!(enc(&mut h, "p"), bulk("listpack"));
    h.run("SADD p y");
    assert_eq!(enc(&mut h, "p"), bulk("hashtable"));
    // "01" is not an integer member: it is stored as given.
    h.run("SADD q 01");
    assert_eq!(enc(&mut h, "q"), bulk("listpack"));
    assert_eq!(h.run("SISMEMBER q 1"), int(0));
    assert_eq!(h.run("SMEMBERS q"), arr(&["01"]));
    h.run("SADD r -5 10 3");
    assert_eq!(h.run("SMEMBERS r"), arr(&["-5", "3", "10"]));
    assert_eq!(h.run("SREM r 3 4"), int(1));
}

#[test]
fn sorted_sets_stay_ordered_while_packed_and_after_conversion() {
    let mut h = Harness::new();
    h.db.tunables.zset_max_listpack_entries = 3;
    h.run("ZADD z 3 c 1 a 2 b");
    assert_eq!(enc(&mut h, "z"), bulk("listpack"));
    assert_eq!(h.run("ZRANGE z 0 -1"), arr(&["a", "b", "c"]));
    assert_eq!(h.run("ZRANK z c"), int(2));
    assert_eq!(h.run("ZRANGEBYSCORE z (1 2"), arr(&["b"]));
    h.run("ZADD z 0 d");
    assert_eq!(enc(&mut h, "z"), bulk("skiplist"));
    assert_eq!(h.run("ZRANGE z 0 -1"), arr(&["d", "a", "b", "c"]));
    h.run(&format!("ZADD long 1 {}", "m".repeat(65)));
    assert_eq!(enc(&mut h, "long"), bulk("skiplist"));
}

/// One random workload per family against a model, with thresholds so small that every run
/// crosses them.
#[test]
fn random_operations_agree_with_models_across_conversions() {
    let mut h = Harness::new();
    let t = &mut h.db.tunables;
    t.hash_max_listpack_entries = 4;
    t.set_max_intset_entries = 5;
    t.set_max_listpack_entries = 4;
    t.zset_max_listpack_entries = 4;
    let mut hash: BTreeMap<String, String> = BTreeMap::new();
    let mut set: BTreeSet<String> = BTreeSet::new();
    let mut zset: BTreeMap<String, i64> = BTreeMap::new();
    let mut x = 0x1234_5678u64;
    for round in 0..60 {
        let (hk, sk, zk) = (
            format!("h{round}"),
            format!("s{round}"),
            format!("z{round}"),
        );
        hash.clear();
        set.clear();
        zset.clear();
        for step in 0..40 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = if x.is_multiple_of(3) {
                format!("{}", x % 9)
            } else {
                format!("m{}", x % 9)
            };
            match (x >> 8) % 6 {
                0 | 1 => {
                    let v = format!("v{}", x % 5);
                    let new = hash.insert(m.clone(), v.clone()).is_none();
                    assert_eq!(h.run(&format!("HSET {hk} {m} {v}")), int(new as i64));
                    let new = set.insert(m.clone());
                    assert_eq!(h.run(&format!("SADD {sk} {m}")), int(new as i64));
                    let score = (x % 7) as i64;
                    let new = zset.insert(m.clone(), score).is_none();
                    assert_eq!(h.run(&format!("ZADD {zk} {score} {m}")), int(new as i64));
                }
                2 => {
                    let gone = hash.remove(&m).is_some();
                    assert_eq!(h.run(&format!("HDEL {hk} {m}")), int(gone as i64));
                    let gone = set.remove(&m);
                    assert_eq!(h.run(&format!("SREM {sk} {m}")), int(gone as i64));
                    let gone = zset.remove(&m).is_some();
                    assert_eq!(h.run(&format!("ZREM {zk} {m}")), int(gone as i64));
                }
                _ => {
                    let got = h.run(&format!("HGET {hk} {m}"));
                    assert_eq!(got, hash.get(&m).map_or(NIL.to_string(), |v| bulk(v)));
                    let got = h.run(&format!("SISMEMBER {sk} {m}"));
                    assert_eq!(
                        got,
                        int(set.contains(&m) as i64),
                        "round {round} step {step}"
                    );
                    let mut order: Vec<(i64, &String)> =
                        zset.iter().map(|(m, s)| (*s, m)).collect();
                    order.sort();
                    let names: Vec<&str> = order.iter().map(|(_, m)| m.as_str()).collect();
                    assert_eq!(h.run(&format!("ZRANGE {zk} 0 -1")), arr(&names));
                }
            }
        }
        assert_eq!(h.run(&format!("HLEN {hk}")), int(hash.len() as i64));
        assert_eq!(h.run(&format!("SCARD {sk}")), int(set.len() as i64));
        let mut members: Vec<String> = h
            .run(&format!("SMEMBERS {sk}"))
            .split("\r\n")
            .skip(2)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        members.sort();
        assert_eq!(
            members,
            set.iter().cloned().collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

#[test]
fn lists_leave_the_packed_encoding_past_the_size_limit() {
    let mut h = Harness::new();
    h.db.tunables.list_max_listpack_size = 3;
    h.run("RPUSH l a b c");
    assert_eq!(enc(&mut h, "l"), bulk("listpack"));
    h.run("LPUSH l z");
    assert_eq!(enc(&mut h, "l"), bulk("quicklist"));
    assert_eq!(h.run("LRANGE l 0 -1"), arr(&["z", "a", "b", "c"]));
    // A byte limit: -1 is 4 KiB.
    h.db.tunables.list_max_listpack_size = -1;
    let big = "x".repeat(1500);
    h.run(&format!("RPUSH m {big} {big}"));
    assert_eq!(enc(&mut h, "m"), bulk("listpack"));
    h.run(&format!("RPUSH m {big}"));
    assert_eq!(enc(&mut h, "m"), bulk("quicklist"));
}

/// Every list command against a `VecDeque` model with a limit of 5 entries, so lists are packed
/// and converted over and over.
#[test]
fn random_list_operations_agree_with_a_model_across_conversions() {
    let mut h = Harness::new();
    h.db.tunables.list_max_listpack_size = 5;
    let mut x = 0x9876_5431u64;
    for round in 0..80 {
        let key = format!("l{round}");
        let mut model: std::collections::VecDeque<String> = Default::default();
        for step in 0..30 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = format!("v{}", x % 4);
            let ctx = format!("round {round} step {step}");
            match (x >> 9) % 8 {
                0 => {
                    h.run(&format!("LPUSH {key} {v}"));
                    model.push_front(v);
                }
                1 | 2 => {
                    h.run(&format!("RPUSH {key} {v}"));
                    model.push_back(v);
                }
                3 => {
                    let want = model.pop_front().map_or(NIL.to_string(), |e| bulk(&e));
                    assert_eq!(h.run(&format!("LPOP {key}")), want, "{ctx}");
                }
                4 => {
                    let want = model.pop_back().map_or(NIL.to_string(), |e| bulk(&e));
                    assert_eq!(h.run(&format!("RPOP {key}")), want, "{ctx}");
                }
                5 => {
                    let n = h.run(&format!("LREM {key} 1 {v}"));
                    let pos = model.iter().position(|e| *e == v);
                    assert_eq!(n, int(pos.is_some() as i64), "{ctx}");
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                }
                6 if !model.is_empty() => {
                    let i = (x >> 20) as usize % model.len();
                    assert_eq!(h.run(&format!("LSET {key} {i} {v}")), OK, "{ctx}");
                    model[i] = v;
                }
                _ => {
                    let items: Vec<&str> = model.iter().map(String::as_str).collect();
                    assert_eq!(h.run(&format!("LRANGE {key} 0 -1")), arr(&items), "{ctx}");
                }
            }
        }
        h.run(&format!("LTRIM {key} 1 -2"));
        let items: Vec<&str> = model
            .iter()
            .skip(1)
            .take(model.len().saturating_sub(2))
            .map(String::as_str)
            .collect();
        assert_eq!(
            h.run(&format!("LRANGE {key} 0 -1")),
            arr(&items),
            "round {round}"
        );
    }
}
