//! Streams end to end with the `redis` crate: XREAD BLOCK woken by an XADD from another
//! connection and shard thread, and a consumer group shared by several consumers in which every
//! entry is delivered once and pending entries can be claimed after a consumer disappears.

mod common;

use common::Server;
use redis::Value;
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

fn query_in_thread(url: String, cmd: redis::Cmd) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: Value = cmd.query(&mut c).unwrap();
        let _ = tx.send(v);
    });
    rx
}

/// The entry ids in an XREAD/XREADGROUP reply (RESP2 shape).
fn ids_of(v: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    if let Value::Array(streams) = v {
        for s in streams {
            let Value::Array(pair) = s else { continue };
            let Value::Array(entries) = &pair[1] else {
                continue;
            };
            for e in entries {
                if let Value::Array(e) = e
                    && let Value::BulkString(id) = &e[0]
                {
                    ids.push(String::from_utf8(id.clone()).unwrap());
                }
            }
        }
    }
    ids
}

#[test]
fn xread_block_is_woken_by_xadd_from_another_connection() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    // Keys on both shard threads; `$` means "only what is added after I block".
    for key in ["foo", "bar"] {
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("old")
            .arg("1")
            .query(&mut c)
            .unwrap();
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("BLOCK").arg(0).arg("STREAMS").arg(key).arg("$");
        let rx = query_in_thread(s.url(), cmd);
        std::thread::sleep(Duration::from_millis(150));
        assert!(rx.try_recv().is_err(), "XREAD BLOCK must wait");
        let id: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("new")
            .arg("2")
            .query(&mut c)
            .unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        assert_eq!(ids_of(&got), vec![id]);
    }
    // A timeout answers nil.
    let v: Value = redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(100)
        .arg("STREAMS")
        .arg("foo")
        .arg("$")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Nil);
}

#[test]
fn a_consumer_group_delivers_each_entry_once_and_claims_abandoned_ones() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs")
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut c)
        .unwrap();
    // Two consumers block on the group before anything is added.
    let waiters: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|w| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg("workers")
                .arg(*w)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(0)
                .arg("STREAMS")
                .arg("jobs")
                .arg(">");
            let rx = query_in_thread(s.url(), cmd);
            std::thread::sleep(Duration::from_millis(100));
            rx
        })
        .collect();
    let mut added = BTreeSet::new();
    for i in 0..20 {
        let id: String = redis::cmd("XADD")
            .arg("jobs")
            .arg("*")
            .arg("n")
            .arg(i)
            .query(&mut c)
            .unwrap();
        added.insert(id);
    }
    let mut delivered = Vec::new();
    for rx in waiters {
        let v = rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        delivered.extend(ids_of(&v));
    }
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    // w3 reads the rest; nothing is delivered twice.
    let v: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("w3")
        .arg("STREAMS")
        .arg("jobs")
        .arg(">")
        .query(&mut c)
        .unwrap();
    delivered.extend(ids_of(&v));
    let unique: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(unique.len(), delivered.len());
    assert_eq!(unique, added);
    // w3 acknowledges half of its entries and "crashes"; w1 claims what w3 left pending.
    let w3: Vec<String> = ids_of(&v);
    let acked: i64 = redis::cmd("XACK")
        .arg("jobs")
        .arg("workers")
        .arg(&w3[..9])
        .query(&mut c)
        .unwrap();
    assert_eq!(acked, 9);
    let pending: Value = redis::cmd("XPENDING")
        .arg("jobs")
        .arg("workers")
        .query(&mut c)
        .unwrap();
    let Value::Array(summary) = pending else {
        panic!("{pending:?}")
    };
    assert_eq!(summary[0], Value::Int(11));
    let claimed: Value = redis::cmd("XAUTOCLAIM")
        .arg("jobs")
        .arg("workers")
        .arg("w1")
        .arg(0)
        .arg("0")
        .arg("COUNT")
        .arg(100)
        .arg("JUSTID")
        .query(&mut c)
        .unwrap();
    let Value::Array(parts) = claimed else {
        panic!("{claimed:?}")
    };
    let Value::Array(ids) = &parts[1] else {
        panic!("{parts:?}")
    };
    assert_eq!(ids.len(), 11);
    let consumers: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("jobs")
        .arg("workers")
        .query(&mut c)
        .unwrap();
    let text = format!("{consumers:?}");
    assert!(text.contains("w1") && text.contains("w3"), "{text}");
}
