use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn db() -> Db {
    Db::new_all(VShardLayout::new(256).unwrap())
}

#[test]
fn expired_keys_vanish_on_access() {
    let mut d = db();
    d.set(b"k", Value::Str(SmallBytes::new(b"v")), Some(100), false);
    assert!(d.get(b"k", 99).is_some());
    assert!(d.get(b"k", 100).is_none());
    assert_eq!(d.len(), 0);
    assert_eq!(d.stats.expired_keys, 1);
}

#[test]
fn scan_visits_every_key_exactly_once() {
    let mut d = db();
    for i in 0..5000 {
        d.set(
            format!("key:{i}").as_bytes(),
            Value::Str(SmallBytes::new(b"v")),
            None,
            false,
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut calls = 0;
    loop {
        cursor = d.scan(cursor, 10, 0, |k, _| assert!(seen.insert(k.to_vec())));
        calls += 1;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 5000);
    assert!(
        calls > 256,
        "scan should take several calls per vShard, took {calls}"
    );
}

#[test]
fn active_expire_removes_due_keys_within_budget() {
    let mut d = db();
    for i in 0..1000 {
        d.set(
            format!("k{i}").as_bytes(),
            Value::Str(SmallBytes::new(b"v")),
            Some(10),
            false,
        );
    }
    d.set(
        b"live",
        Value::Str(SmallBytes::new(b"v")),
        Some(1000),
        false,
    );
    let mut total = 0;
    for _ in 0..10_000 {
        total += d.active_expire(20, 50);
        if d.len() == 1 {
            break;
        }
    }
    assert_eq!(total, 1000);
    assert_eq!(d.len(), 1);
}

#[test]
fn watch_flag_is_set_by_a_write_to_the_key() {
    let mut d = db();
    let flag = Arc::new(AtomicBool::new(false));
    d.watches.watch(b"k", flag.clone());
    d.set(b"other", Value::Str(SmallBytes::new(b"v")), None, false);
    assert!(!flag.load(Ordering::Acquire));
    d.set(b"k", Value::Str(SmallBytes::new(b"v")), None, false);
    assert!(flag.load(Ordering::Acquire));
}

#[test]
fn a_string_rewritten_at_the_same_length_keeps_its_buffer_and_anything_else_is_replaced() {
    let mut d = db();
    let heap = |d: &mut Db| match d.get(b"k", 0) {
        Some(Value::Str(SmallBytes::Heap(b))) => Some(b.as_ptr()),
        _ => None,
    };
    let string = |d: &mut Db, k: &[u8]| match d.get(k, 0) {
        Some(Value::Str(s)) => Some(s.to_vec()),
        _ => None,
    };
    let a = [b'a'; 64];
    d.set_str(b"k", &a, None, false);
    let first = heap(&mut d).expect("64 bytes live on the heap");
    d.set_str(b"k", &[b'b'; 64], Some(500), false);
    assert_eq!(heap(&mut d), Some(first), "rewritten in place");
    assert_eq!(string(&mut d, b"k"), Some(vec![b'b'; 64]));
    assert_eq!(d.expire_at(b"k", 0), Some(Some(500)));
    d.set_str(b"k", &[b'c'; 64], None, true);
    assert_eq!(d.expire_at(b"k", 0), Some(Some(500)), "KEEPTTL");
    d.set_str(b"k", &[b'd'; 64], None, false);
    assert_eq!(
        d.expire_at(b"k", 0),
        Some(None),
        "a plain SET clears the TTL"
    );
    d.set_str(b"k", &[b'e'; 100], None, false);
    assert_eq!(string(&mut d, b"k"), Some(vec![b'e'; 100]));
    d.set(b"l", Value::List(Default::default()), None, false);
    d.set_str(b"l", b"short", None, false);
    assert_eq!(string(&mut d, b"l"), Some(b"short".to_vec()));
    assert_eq!(d.len(), 2);
}
