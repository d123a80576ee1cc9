use super::{Stream, StreamId, parse_id};
use crate::command::testing::*;
use crate::db::Value;
use crate::reply::Proto;

fn entry(id: &str, fields: &[&str]) -> String {
    format!("*2\r\n{}{}", bulk(id), arr(fields))
}

fn entries(list: &[(&str, &[&str])]) -> String {
    let mut s = format!("*{}\r\n", list.len());
    for (id, f) in list {
        s.push_str(&entry(id, f));
    }
    s
}

fn stream<'h>(h: &'h mut Harness, key: &str) -> &'h Stream {
    match h.db.get(key.as_bytes(), h.now_ms) {
        Some(Value::Stream(s)) => s,
        _ => panic!("{key} is not a stream"),
    }
}

#[test]
fn ids_parse_format_and_step() {
    assert_eq!(parse_id(b"5", 0, true), Some(StreamId::new(5, 0)));
    assert_eq!(
        parse_id(b"5", u64::MAX, true),
        Some(StreamId::new(5, u64::MAX))
    );
    assert_eq!(parse_id(b"5-7", 0, true), Some(StreamId::new(5, 7)));
    assert_eq!(parse_id(b"-", 0, false), Some(StreamId::MIN));
    assert_eq!(parse_id(b"+", 0, false), Some(StreamId::MAX));
    for bad in [
        "-",
        "+",
        "",
        "5-",
        "-5",
        "a-1",
        "1-b",
        "1-2-3",
        "18446744073709551616",
    ] {
        assert_eq!(parse_id(bad.as_bytes(), 0, true), None, "{bad}");
    }
    let max = StreamId::MAX;
    assert_eq!(
        max.format(&mut [0; 41]),
        b"18446744073709551615-18446744073709551615"
    );
    assert_eq!(max.next(), None);
    assert_eq!(StreamId::MIN.prev(), None);
    assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
    assert_eq!(StreamId::new(2, 0).prev(), Some(StreamId::new(1, u64::MAX)));
}

#[test]
fn xadd_assigns_monotonic_ids_and_refuses_smaller_ones() {
    let mut h = Harness::new();
    let now = h.now_ms;
    assert_eq!(h.run("XADD s * a 1"), bulk(&format!("{now}-0")));
    assert_eq!(h.run("XADD s * a 2"), bulk(&format!("{now}-1")));
    // A clock that went backwards still yields increasing ids.
    h.now_ms -= 1000;
    assert_eq!(h.run("XADD s * a 3"), bulk(&format!("{now}-2")));
    let too_small =
        error("ERR The ID specified in XADD is equal or smaller than the target stream top item");
    assert_eq!(h.run("XADD s 5-5 a 4"), too_small);
    assert_eq!(
        h.run(&format!("XADD s {now}-* a 5")),
        bulk(&format!("{now}-3"))
    );
    assert_eq!(
        h.run(&format!("XADD s {} a 6", now + 1)),
        bulk(&format!("{}-0", now + 1))
    );
    assert_eq!(
        h.run("XADD t 0-0 a 1"),
        error("ERR The ID specified in XADD must be greater than 0-0")
    );
    assert_eq!(h.run("XADD t 0-* a 1"), bulk("0-1"));
    assert_eq!(
        h.run("XADD t 1-1 a"),
        error("ERR wrong number of arguments for 'xadd' command")
    );
    assert_eq!(h.run("XLEN s"), int(5));
    assert_eq!(h.run("XADD u NOMKSTREAM * a 1"), NIL);
    assert_eq!(h.run("EXISTS u"), int(0));
    // A refused XADD on a missing key creates nothing.
    assert_eq!(
        h.run("XADD v 1-1 a"),
        error("ERR wrong number of arguments for 'xadd' command")
    );
    assert_eq!(h.run("EXISTS v"), int(0));
    h.run("SET str x");
    assert_eq!(
        h.run("XADD str * a 1"),
        error("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    h.run("XADD m 18446744073709551615-18446744073709551615 a 1");
    assert_eq!(
        h.run("XADD m * a 1"),
        error("ERR The stream has exhausted the last possible ID, unable to add more items")
    );
}

#[test]
fn ranges_counts_and_exclusive_bounds() {
    let mut h = Harness::new();
    for i in 1..=5 {
        h.run(&format!("XADD s {i}-1 f {i}"));
    }
    assert_eq!(
        h.run("XRANGE s (2-1 4"),
        entries(&[("3-1", &["f", "3"]), ("4-1", &["f", "4"])])
    );
    assert_eq!(
        h.run("XRANGE s - + COUNT 1"),
        entries(&[("1-1", &["f", "1"])])
    );
    assert_eq!(h.run("XRANGE s - + COUNT 0"), "*-1\r\n");
    assert_eq!(h.run("XRANGE s + -"), "*0\r\n");
    assert_eq!(
        h.run("XREVRANGE s + (4-1 COUNT 5"),
        entries(&[("5-1", &["f", "5"])])
    );
    assert_eq!(h.run("XRANGE nosuch - +"), "*0\r\n");
    assert_eq!(
        h.run("XRANGE s (18446744073709551615-18446744073709551615 +"),
        error("ERR invalid start ID for the interval")
    );
    assert_eq!(
        h.run("XRANGE s - (0-0"),
        error("ERR invalid end ID for the interval")
    );
    assert_eq!(
        h.run("XRANGE s x +"),
        error("ERR Invalid stream ID specified as stream command argument")
    );
    assert_eq!(h.run("XRANGE s - + LIMIT 1"), error("ERR syntax error"));
}

/// Issue 15's reproducers, with what redis-server 7.0 answers: `~` removes a whole node when
/// the rule allows it all (MAXLEN ~ 0 empties a small stream), never part of one (MINID ~ keeps a
/// node whose last entry is not below the id), and `=` marks entries inside the node.
#[test]
fn approximate_trimming_removes_the_nodes_redis_removes() {
    let mut h = Harness::new();
    for i in 1..=10 {
        h.run(&format!("XADD k {i}-1 f v"));
    }
    assert_eq!(h.run("XTRIM k MAXLEN ~ 0"), int(10));
    for i in 1..=10 {
        h.run(&format!("XADD k 1{i}-1 f v"));
    }
    assert_eq!(h.run("XADD k MINID ~ 15 200-1 f v"), bulk("200-1"));
    assert_eq!(h.run("XLEN k"), int(11));
    assert_eq!(h.run("XADD k MINID ~ 111 201-1 f v"), bulk("201-1"));
    assert_eq!(h.run("XLEN k"), int(12));
    assert_eq!(h.run("XTRIM k MINID = 111"), int(10));
    let info = h.run("XINFO STREAM k");
    assert!(
        info.starts_with("*20\r\n$6\r\nlength\r\n:2\r\n$15\r\nradix-tree-keys\r\n:1\r\n"),
        "{info}"
    );
}

#[test]
fn trimming_exact_and_approximate() {
    let mut h = Harness::new();
    for i in 1..=250 {
        h.run(&format!("XADD s {i}-0 f v"));
    }
    // `~` removes whole nodes of 100 entries only.
    assert_eq!(h.run("XTRIM s MAXLEN ~ 200"), int(0));
    assert_eq!(h.run("XTRIM s MAXLEN ~ 100"), int(100));
    assert_eq!(h.run("XTRIM s MAXLEN ~ 10 LIMIT 99"), int(0));
    assert_eq!(h.run("XTRIM s MAXLEN = 120"), int(30));
    assert_eq!(h.run("XTRIM s MINID 200"), int(69));
    assert_eq!(h.run("XLEN s"), int(51));
    assert_eq!(h.run("XRANGE s - - "), "*0\r\n");
    assert_eq!(
        h.run("XTRIM s MAXLEN 1 LIMIT 10"),
        error("ERR syntax error, LIMIT cannot be used without the special ~ option")
    );
    assert_eq!(
        h.run("XTRIM s LIMIT 10"),
        error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
    );
    assert_eq!(
        h.run("XTRIM s MAXLEN -1"),
        error("ERR The MAXLEN argument must be >= 0.")
    );
    assert_eq!(h.run("XLEN s"), int(51));
    // XADD trims after adding; an emptied stream stays.
    assert_eq!(h.run("XADD s MAXLEN 0 999-0 f v"), bulk("999-0"));
    assert_eq!(h.run("XLEN s"), int(0));
    assert_eq!(h.run("EXISTS s"), int(1));
    assert_eq!(h.run("TYPE s"), "+stream\r\n");
}

#[test]
fn xdel_tracks_max_deleted_and_first_id() {
    let mut h = Harness::new();
    for i in 1..=3 {
        h.run(&format!("XADD s {i}-0 f v"));
    }
    assert_eq!(h.run("XDEL s 2-0 2-0 9-0"), int(1));
    assert_eq!(
        h.run("XDEL s bad"),
        error("ERR Invalid stream ID specified as stream command argument")
    );
    assert_eq!(h.run("XDEL s 1-0"), int(1));
    let s = stream(&mut h, "s");
    assert_eq!(s.max_deleted, StreamId::new(2, 0));
    assert_eq!(s.first_id(), StreamId::new(3, 0));
    assert_eq!(s.entries_added, 3);
}

#[test]
fn xread_serves_streams_with_newer_entries_only() {
    let mut h = Harness::new();
    h.run("XADD {t}a 1-0 f 1");
    h.run("XADD {t}a 2-0 f 2");
    h.run("XADD {t}b 1-0 g 1");
    assert_eq!(
        h.run("XREAD COUNT 1 STREAMS {t}a {t}b 1-0 1-0"),
        format!(
            "*1\r\n*2\r\n{}{}",
            bulk("{t}a"),
            entries(&[("2-0", &["f", "2"])])
        )
    );
    assert_eq!(h.run("XREAD STREAMS {t}a $"), "*-1\r\n");
    assert_eq!(
        h.run("XREAD STREAMS {t}a {t}b 0"),
        error(
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
        )
    );
    assert_eq!(
        h.run("XREAD BLOCK -1 STREAMS {t}a 0"),
        error("ERR timeout is negative")
    );
    h.proto = Proto::Resp3;
    assert_eq!(
        h.run("XREAD STREAMS {t}b 0"),
        format!("%1\r\n{}{}", bulk("{t}b"), entries(&[("1-0", &["g", "1"])]))
    );
    assert_eq!(h.run("XREAD STREAMS {t}b 5"), "_\r\n");
}

#[test]
fn dollar_is_resolved_when_an_xread_is_parked() {
    let mut h = Harness::new();
    h.run("XADD s 7-3 f v");
    let words: Vec<&[u8]> = vec![
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"none", b"$", b"$",
    ];
    let (buf, spans) = crate::command::testing::buf_and_spans(&words);
    let args = crate::command::Args::new(&buf, &spans);
    let parked = crate::command::blocking::park_args(&mut h.db, &args, h.now_ms).unwrap();
    assert_eq!(parked[6], b"7-3");
    assert_eq!(parked[7], b"0-0");
    assert!(crate::command::blocking::blocks("xread", &args));
    assert!(!crate::command::blocking::blocks(
        "xread",
        &crate::command::Args::new(&buf, &spans[3..])
    ));
}

#[test]
fn consumer_group_delivery_ack_and_history() {
    let mut h = Harness::new();
    for i in 1..=4 {
        h.run(&format!("XADD s {i}-0 f {i}"));
    }
    assert_eq!(h.run("XGROUP CREATE s g 0"), OK);
    assert_eq!(
        h.run("XGROUP CREATE s g 0"),
        error("BUSYGROUP Consumer Group name already exists")
    );
    let two = h.run("XREADGROUP GROUP g alice COUNT 2 STREAMS s >");
    assert_eq!(
        two,
        format!(
            "*1\r\n*2\r\n{}{}",
            bulk("s"),
            entries(&[("1-0", &["f", "1"]), ("2-0", &["f", "2"])])
        )
    );
    h.now_ms += 50;
    h.run("XREADGROUP GROUP g bob STREAMS s >");
    assert_eq!(h.run("XREADGROUP GROUP g bob STREAMS s >"), "*-1\r\n");
    assert_eq!(h.run("XACK s g 1-0 9-0"), int(1));
    // History: alice's pending entries after 0, re-delivered (count goes up).
    assert_eq!(
        h.run("XREADGROUP GROUP g alice STREAMS s 0"),
        format!(
            "*1\r\n*2\r\n{}{}",
            bulk("s"),
            entries(&[("2-0", &["f", "2"])])
        )
    );
    assert_eq!(
        h.run("XPENDING s g - + 10"),
        format!(
            "*3\r\n*4\r\n{}{}:0\r\n:2\r\n*4\r\n{}{}:0\r\n:1\r\n*4\r\n{}{}:0\r\n:1\r\n",
            bulk("2-0"),
            bulk("alice"),
            bulk("3-0"),
            bulk("bob"),
            bulk("4-0"),
            bulk("bob")
        )
    );
    assert_eq!(
        h.run("XPENDING s g"),
        format!(
            ":3\r\n{}{}*2\r\n*2\r\n{}{}*2\r\n{}{}",
            bulk("2-0"),
            bulk("4-0"),
            bulk("alice"),
            bulk("1"),
            bulk("bob"),
            bulk("2")
        )
        .replacen(":3", "*4\r\n:3", 1)
    );
    // A deleted pending entry shows as [id, nil] in history.
    h.run("XDEL s 3-0");
    assert!(
        h.run("XREADGROUP GROUP g bob STREAMS s 0")
            .contains("3-0\r\n*-1\r\n")
    );
    let s = stream(&mut h, "s");
    s.groups[&b"g"[..]].check_invariants();
    assert_eq!(
        h.run("XREADGROUP GROUP nog c STREAMS s >"),
        error("NOGROUP No such key 's' or consumer group 'nog' in XREADGROUP with GROUP option")
    );
}

#[test]
fn claiming_moves_pending_entries_between_consumers() {
    let mut h = Harness::new();
    for i in 1..=5 {
        h.run(&format!("XADD s {i}-0 f {i}"));
    }
    h.run("XGROUP CREATE s g 0");
    h.run("XREADGROUP GROUP g alice STREAMS s >");
    h.now_ms += 1000;
    assert_eq!(h.run("XCLAIM s g bob 5000 1-0"), "*0\r\n");
    assert_eq!(h.run("XCLAIM s g bob 500 1-0 JUSTID"), arr(&["1-0"]));
    assert_eq!(
        h.run("XCLAIM s g bob 0 2-0"),
        entries(&[("2-0", &["f", "2"])])
    );
    h.run("XDEL s 3-0");
    // A claimed entry that was deleted leaves the PEL.
    assert_eq!(h.run("XCLAIM s g bob 0 3-0"), "*0\r\n");
    assert_eq!(
        h.run("XAUTOCLAIM s g carol 0 0 COUNT 1 JUSTID"),
        format!("*3\r\n{}{}*0\r\n", bulk("2-0"), arr(&["1-0"]))
    );
    assert_eq!(
        h.run("XAUTOCLAIM s g carol 0 2-0"),
        format!(
            "*3\r\n{}{}*0\r\n",
            bulk("0-0"),
            entries(&[
                ("2-0", &["f", "2"]),
                ("4-0", &["f", "4"]),
                ("5-0", &["f", "5"])
            ])
        )
    );
    assert_eq!(
        h.run("XPENDING s g - + 10 carol").matches("carol").count(),
        4
    );
    assert_eq!(h.run("XGROUP DELCONSUMER s g carol"), int(4));
    assert_eq!(h.run("XPENDING s g").lines().nth(1), Some(":0"));
    let s = stream(&mut h, "s");
    s.groups[&b"g"[..]].check_invariants();
    assert_eq!(
        h.run("XCLAIM s g bob 0 1-0 BOGUS"),
        error("ERR Unrecognized XCLAIM option 'BOGUS'")
    );
    assert_eq!(
        h.run("XAUTOCLAIM s g bob 0 0 COUNT 0"),
        error("ERR COUNT must be > 0")
    );
}

#[test]
fn group_lag_and_entries_read_follow_redis() {
    let mut h = Harness::new();
    for i in 1..=3 {
        h.run(&format!("XADD s {i}-0 f v"));
    }
    h.run("XGROUP CREATE s g 0");
    h.run("XREADGROUP GROUP g c COUNT 1 STREAMS s >");
    let groups = h.run("XINFO GROUPS s");
    assert!(
        groups.contains(&format!(
            "{}:1\r\n{}:2\r\n",
            bulk("entries-read"),
            bulk("lag")
        )),
        "{groups}"
    );
    // A deletion after the group's position makes the lag unknown.
    h.run("XDEL s 3-0");
    let groups = h.run("XINFO GROUPS s");
    assert!(
        groups.contains(&format!("{}$-1\r\n", bulk("lag"))),
        "{groups}"
    );
    h.run("XGROUP CREATE s g2 $");
    let groups = h.run("XINFO GROUPS s");
    assert!(
        groups.ends_with(&format!(
            "{}$-1\r\n{}:0\r\n",
            bulk("entries-read"),
            bulk("lag")
        )),
        "{groups}"
    );
}

#[test]
fn xgroup_and_xinfo_errors() {
    let mut h = Harness::new();
    assert_eq!(
        h.run("XGROUP CREATE s g $"),
        error(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically."
        )
    );
    assert_eq!(h.run("XGROUP CREATE s g $ MKSTREAM"), OK);
    assert_eq!(h.run("XLEN s"), int(0));
    assert_eq!(
        h.run("XGROUP SETID s nog 0"),
        error("NOGROUP No such consumer group 'nog' for key name 's'")
    );
    assert_eq!(
        h.run("XGROUP FOO s g"),
        error("ERR unknown subcommand 'FOO'. Try XGROUP HELP.")
    );
    assert_eq!(
        h.run("XGROUP DESTROY s"),
        error("ERR wrong number of arguments for 'xgroup|destroy' command")
    );
    assert_eq!(h.run("XGROUP CREATECONSUMER s g c"), int(1));
    assert_eq!(h.run("XGROUP CREATECONSUMER s g c"), int(0));
    assert_eq!(h.run("XGROUP DESTROY s g"), int(1));
    assert_eq!(h.run("XGROUP DESTROY s g"), int(0));
    assert_eq!(h.run("XINFO STREAM nosuch"), error("ERR no such key"));
    assert_eq!(h.run("XINFO GROUPS s"), "*0\r\n");
    let info = h.run("XINFO STREAM s");
    assert!(
        info.starts_with(&format!("*20\r\n{}:0\r\n", bulk("length"))),
        "{info}"
    );
    assert!(h.run("XINFO STREAM s FULL").starts_with("*18\r\n"));
}

/// Random XADD/XDEL/XTRIM sequences agree with a sorted `Vec` model, and random group
/// operations keep the PEL invariants.
#[test]
fn random_operations_agree_with_a_model() {
    let mut h = Harness::new();
    let mut model: Vec<(u64, String)> = Vec::new();
    let mut next_ms = 1u64;
    h.run("XGROUP CREATE s g 0 MKSTREAM");
    let mut x = 0x9E37_79B9u64;
    for step in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 9 {
            0..=2 => {
                next_ms += 1 + (x >> 20) % 3;
                let v = format!("v{}", x % 100);
                assert_eq!(
                    h.run(&format!("XADD s {next_ms} f {v}")),
                    bulk(&format!("{next_ms}-0"))
                );
                model.push((next_ms, v));
            }
            3 => {
                let target = 1 + (x >> 8) % next_ms;
                let n = h.run(&format!("XDEL s {target}-0"));
                let pos = model.iter().position(|(ms, _)| *ms == target);
                assert_eq!(n, int(pos.is_some() as i64), "step {step}");
                if let Some(p) = pos {
                    model.remove(p);
                }
            }
            4 => {
                let keep = 5 + (x >> 8) % 20;
                let excess = model.len().saturating_sub(keep as usize);
                assert_eq!(h.run(&format!("XTRIM s MAXLEN {keep}")), int(excess as i64));
                model.drain(..excess);
            }
            5 => {
                let c = format!("c{}", x % 3);
                h.run(&format!("XREADGROUP GROUP g {c} COUNT 3 STREAMS s >"));
            }
            6 => {
                let target = 1 + (x >> 8) % next_ms;
                h.run(&format!("XACK s g {target}-0"));
            }
            7 => {
                let c = format!("c{}", x % 4);
                h.run(&format!("XAUTOCLAIM s g {c} 0 0 COUNT 2"));
            }
            _ => {
                let lo = (x >> 8) % (next_ms + 1);
                let hi = lo + (x >> 16) % 10;
                let want: Vec<(u64, String)> = model
                    .iter()
                    .filter(|(ms, _)| (lo..=hi).contains(ms))
                    .cloned()
                    .collect();
                let ids: Vec<String> = want.iter().map(|(ms, _)| format!("{ms}-0")).collect();
                let list: Vec<(&str, [&str; 2])> = ids
                    .iter()
                    .zip(&want)
                    .map(|(id, (_, v))| (id.as_str(), ["f", v.as_str()]))
                    .collect();
                let expect: Vec<(&str, &[&str])> = list.iter().map(|(i, f)| (*i, &f[..])).collect();
                assert_eq!(
                    h.run(&format!("XRANGE s {lo} {hi}")),
                    entries(&expect),
                    "step {step}"
                );
            }
        }
        stream(&mut h, "s").groups[&b"g"[..]].check_invariants();
    }
    assert_eq!(h.run("XLEN s"), int(model.len() as i64));
}
