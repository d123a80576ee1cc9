use crate::command::testing::*;
use crate::reply::Proto;

#[test]
fn zadd_options_follow_redis() {
    let mut h = Harness::new();
    assert_eq!(h.run("ZADD z 1 a 2 b 3 c"), int(3));
    assert_eq!(h.run("ZADD z 1 a 5 b"), int(0));
    assert_eq!(h.run("ZADD z CH 1 a 6 b"), int(1));
    assert_eq!(h.run("ZADD z NX 9 a 4 d"), int(1));
    assert_eq!(h.run("ZSCORE z a"), bulk("1"));
    assert_eq!(h.run("ZADD z XX 9 zz"), int(0));
    assert_eq!(h.run("EXISTS zz"), int(0));
    assert_eq!(h.run("ZADD z GT CH 0 a 7 b"), int(1));
    assert_eq!(h.run("ZADD z LT CH 0 a 9 b"), int(1));
    assert_eq!(h.run("ZSCORE z a"), bulk("0"));
    assert_eq!(h.run("ZSCORE z b"), bulk("7"));
    assert_eq!(h.run("ZADD z INCR 2.5 a"), bulk("2.5"));
    assert_eq!(h.run("ZADD z NX INCR 1 a"), NIL);
    assert_eq!(
        h.run("ZADD z XX NX 1 a"),
        error("ERR XX and NX options at the same time are not compatible")
    );
    assert_eq!(
        h.run("ZADD z GT LT 1 a"),
        error("ERR GT, LT, and/or NX options at the same time are not compatible")
    );
    assert_eq!(
        h.run("ZADD z INCR 1 a 2 b"),
        error("ERR INCR option supports a single increment-element pair")
    );
    assert_eq!(
        h.run("ZADD z 1 a x b"),
        error("ERR value is not a valid float")
    );
    assert_eq!(
        h.run("ZADD z 1"),
        error("ERR wrong number of arguments for 'zadd' command")
    );
    assert_eq!(h.run("ZADD z 1 a 2"), error("ERR syntax error"));
    assert_eq!(
        h.run("ZADD new nan x"),
        error("ERR value is not a valid float")
    );
    assert_eq!(h.run("EXISTS new"), int(0));
    assert_eq!(h.run("ZINCRBY z 0.5 a"), bulk("3"));
    assert_eq!(h.run("ZADD i +inf x"), int(1));
    assert_eq!(
        h.run("ZINCRBY i -inf x"),
        error("ERR resulting score is not a number (NaN)")
    );
    assert_eq!(h.run("ZADD s 0.1 a"), int(1));
    assert_eq!(h.run("ZSCORE s a"), bulk("0.10000000000000001"));
    h.run("SET str v");
    assert_eq!(
        h.run("ZADD str 1 a"),
        error("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(h.run("TYPE z"), "+zset\r\n");
}

#[test]
fn ranges_by_rank_score_and_lex() {
    let mut h = Harness::new();
    h.run("ZADD z 1 a 2 b 3 c 4 d 5 e");
    assert_eq!(h.run("ZRANGE z 0 -1"), arr(&["a", "b", "c", "d", "e"]));
    assert_eq!(h.run("ZRANGE z 1 2 WITHSCORES"), arr(&["b", "2", "c", "3"]));
    assert_eq!(h.run("ZRANGE z 0 1 REV"), arr(&["e", "d"]));
    assert_eq!(h.run("ZREVRANGE z 0 1"), arr(&["e", "d"]));
    assert_eq!(h.run("ZRANGE z (1 3 BYSCORE"), arr(&["b", "c"]));
    assert_eq!(h.run("ZRANGE z 3 (1 BYSCORE REV"), arr(&["c", "b"]));
    assert_eq!(
        h.run("ZRANGE z -inf +inf BYSCORE LIMIT 1 2"),
        arr(&["b", "c"])
    );
    assert_eq!(
        h.run("ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2"),
        arr(&["d", "c"])
    );
    assert_eq!(
        h.run("ZRANGEBYSCORE z 2 4 WITHSCORES LIMIT 0 -1"),
        arr(&["b", "2", "c", "3", "d", "4"])
    );
    assert_eq!(h.run("ZREVRANGEBYSCORE z 4 2"), arr(&["d", "c", "b"]));
    assert_eq!(
        h.run("ZRANGEBYSCORE z abc 1"),
        error("ERR min or max is not a float")
    );
    assert_eq!(
        h.run("ZRANGE z 0 -1 LIMIT 0 1"),
        error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    );
    assert_eq!(h.run("ZCOUNT z (1 +inf"), int(4));
    assert_eq!(h.run("ZCOUNT z 10 20"), int(0));
    h.run("ZADD l 0 a 0 b 0 c 0 d");
    assert_eq!(h.run("ZRANGEBYLEX l [b (d"), arr(&["b", "c"]));
    assert_eq!(h.run("ZRANGEBYLEX l - +"), arr(&["a", "b", "c", "d"]));
    assert_eq!(h.run("ZREVRANGEBYLEX l + (b"), arr(&["d", "c"]));
    assert_eq!(h.run("ZRANGE l [a [c BYLEX LIMIT 1 5"), arr(&["b", "c"]));
    assert_eq!(h.run("ZLEXCOUNT l (a +"), int(3));
    assert_eq!(
        h.run("ZRANGEBYLEX l a b"),
        error("ERR min or max not valid string range item")
    );
    assert_eq!(
        h.run("ZRANGE l [a [c BYLEX WITHSCORES"),
        error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    );
    assert_eq!(h.run("ZRANGE nokey 0 -1"), "*0\r\n");
}

#[test]
fn ranks_pops_and_removals() {
    let mut h = Harness::new();
    h.run("ZADD z 10 a 20 b 30 c 40 d");
    assert_eq!(h.run("ZRANK z c"), int(2));
    assert_eq!(h.run("ZREVRANK z c"), int(1));
    assert_eq!(
        h.run("ZRANK z c WITHSCORE"),
        format!("*2\r\n:2\r\n{}", bulk("30"))
    );
    assert_eq!(h.run("ZRANK z zz"), NIL);
    assert_eq!(h.run("ZPOPMIN z"), arr(&["a", "10"]));
    assert_eq!(h.run("ZPOPMAX z 2"), arr(&["d", "40", "c", "30"]));
    assert_eq!(
        h.run("ZPOPMIN z -1"),
        error("ERR value is out of range, must be positive")
    );
    assert_eq!(h.run("ZCARD z"), int(1));
    assert_eq!(h.run("ZPOPMIN z 5"), arr(&["b", "20"]));
    assert_eq!(h.run("EXISTS z"), int(0));
    assert_eq!(h.run("ZPOPMIN z"), "*0\r\n");
    h.run("ZADD r 1 a 2 b 3 c 4 d 5 e");
    assert_eq!(h.run("ZREMRANGEBYRANK r 0 1"), int(2));
    assert_eq!(h.run("ZREMRANGEBYSCORE r (3 4"), int(1));
    assert_eq!(h.run("ZRANGE r 0 -1"), arr(&["c", "e"]));
    assert_eq!(h.run("ZREM r c e x"), int(2));
    assert_eq!(h.run("EXISTS r"), int(0));
    assert_eq!(
        h.run("ZREMRANGEBYSCORE r x 1"),
        error("ERR min or max is not a float")
    );
    h.run("ZADD m 1 a");
    assert_eq!(
        h.run("ZMSCORE m a b"),
        format!("*2\r\n{}{}", bulk("1"), NIL)
    );
    h.proto = Proto::Resp3;
    assert_eq!(h.run("ZSCORE m a"), ",1\r\n");
    assert_eq!(
        h.run("ZRANGE m 0 -1 WITHSCORES"),
        format!("*1\r\n*2\r\n{},1\r\n", bulk("a"))
    );
}

#[test]
fn random_members_and_zscan() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.run(&format!("ZADD z {i} m{i}"));
    }
    assert!(h.run("ZRANDMEMBER z").starts_with('$'));
    assert_eq!(h.run("ZRANDMEMBER z 5").matches("\r\n$").count(), 5);
    assert_eq!(h.run("ZRANDMEMBER z 100").matches("\r\n$").count(), 50);
    assert!(h.run("ZRANDMEMBER z -60").starts_with("*60\r\n"));
    assert!(h.run("ZRANDMEMBER z 3 WITHSCORES").starts_with("*6\r\n"));
    assert_eq!(h.run("ZRANDMEMBER nokey 3"), "*0\r\n");
    let items = scan_all(&mut h, |c| format!("ZSCAN z {c} COUNT 7"));
    assert_eq!(items.len(), 100, "member and score for each of 50");
}

#[test]
fn union_inter_diff_with_weights_and_aggregates() {
    let mut h = Harness::new();
    h.run("ZADD {k}a 1 x 2 y 3 z");
    h.run("ZADD {k}b 10 y 20 z 30 w");
    h.run("SADD {k}s y q");
    assert_eq!(
        h.run("ZUNION 2 {k}a {k}b WITHSCORES"),
        arr(&["x", "1", "y", "12", "z", "23", "w", "30"])
    );
    assert_eq!(
        h.run("ZINTER 2 {k}a {k}b AGGREGATE MAX WITHSCORES"),
        arr(&["y", "10", "z", "20"])
    );
    assert_eq!(
        h.run("ZINTER 2 {k}a {k}b WEIGHTS 2 0.5 WITHSCORES"),
        arr(&["y", "9", "z", "16"])
    );
    assert_eq!(h.run("ZDIFF 2 {k}a {k}b WITHSCORES"), arr(&["x", "1"]));
    assert_eq!(h.run("ZINTER 2 {k}a {k}s"), arr(&["y"]));
    assert_eq!(h.run("ZUNIONSTORE {k}d 2 {k}a {k}b AGGREGATE MIN"), int(4));
    assert_eq!(
        h.run("ZRANGE {k}d 0 -1 WITHSCORES"),
        arr(&["x", "1", "y", "2", "z", "3", "w", "30"])
    );
    assert_eq!(h.run("ZINTERSTORE {k}d 2 {k}a {k}none"), int(0));
    assert_eq!(h.run("EXISTS {k}d"), int(0));
    assert_eq!(h.run("ZDIFFSTORE {k}d 1 {k}b"), int(3));
    assert_eq!(h.run("ZINTERCARD 2 {k}a {k}b LIMIT 1"), int(1));
    assert_eq!(
        h.run("ZUNIONSTORE {k}d 0 {k}a"),
        error("ERR at least 1 input key is needed for 'zunionstore' command")
    );
    assert_eq!(
        h.run("ZUNION 2 {k}a {k}b WEIGHTS 1 x"),
        error("ERR weight value is not a float")
    );
    assert_eq!(h.run("ZUNION 3 {k}a {k}b"), error("ERR syntax error"));
    h.run("SET {k}str v");
    assert_eq!(
        h.run("ZUNION 2 {k}a {k}str"),
        error("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(h.run("ZRANGESTORE {k}r {k}a 0 1"), int(2));
    assert_eq!(h.run("ZRANGE {k}r 0 -1"), arr(&["x", "y"]));
    assert_eq!(
        h.run("ZRANGESTORE {k}r {k}b (10 +inf BYSCORE LIMIT 0 1"),
        int(1)
    );
    assert_eq!(
        h.run("ZMPOP 2 {k}none {k}a MAX COUNT 2"),
        format!(
            "*2\r\n{}*2\r\n*2\r\n{}{}*2\r\n{}{}",
            bulk("{k}a"),
            bulk("z"),
            bulk("3"),
            bulk("y"),
            bulk("2")
        )
    );
    assert_eq!(h.run("ZMPOP 1 {k}none MIN"), "*-1\r\n");
}

/// Random operations agree with a model (a map of member to score, sorted on demand).
#[test]
fn random_operations_agree_with_a_model() {
    let mut h = Harness::new();
    let mut model: std::collections::HashMap<String, i64> = Default::default();
    let mut s = 0x5555_1234u64;
    for step in 0..3000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let m = format!("m{}", s % 40);
        let score = ((s >> 10) % 20) as i64;
        match s % 5 {
            0 | 1 => {
                h.run(&format!("ZADD z {score} {m}"));
                model.insert(m, score);
            }
            2 => {
                h.run(&format!("ZREM z {m}"));
                model.remove(&m);
            }
            3 => {
                let mut sorted: Vec<(i64, &String)> = model.iter().map(|(k, v)| (*v, k)).collect();
                sorted.sort();
                let want = sorted.iter().position(|(_, k)| **k == m);
                let got = h.run(&format!("ZRANK z {m}"));
                assert_eq!(
                    got,
                    want.map_or(NIL.to_string(), |r| int(r as i64)),
                    "step {step}"
                );
            }
            _ => {
                let lo = score.min(10);
                let n = model
                    .values()
                    .filter(|v| **v >= lo && **v <= lo + 5)
                    .count();
                assert_eq!(
                    h.run(&format!("ZCOUNT z {lo} {}", lo + 5)),
                    int(n as i64),
                    "step {step}"
                );
            }
        }
    }
    let mut sorted: Vec<(i64, String)> = model.into_iter().map(|(k, v)| (v, k)).collect();
    sorted.sort();
    let names: Vec<&str> = sorted.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(h.run("ZRANGE z 0 -1"), arr(&names));
}

/// Regression (issue 15, found by the differential run): Redis parses a range before it looks
/// the key up, reads score bounds with `strtod` (leading spaces, nothing at all as 0, a lone `(`
/// as "above 0", hexadecimal), checks conflicting options after parsing them all, and answers a
/// bad pop count with one message.
#[test]
fn ranges_are_parsed_before_the_key_and_as_redis_reads_them() {
    let mut h = Harness::new();
    h.run("SET s v");
    h.run("ZADD z 0 a 1 b 16 c");
    let not_float = error("ERR min or max is not a float");
    assert_eq!(h.run("ZCOUNT s x 1"), not_float);
    assert_eq!(h.run("ZRANGEBYSCORE s 1 x"), not_float);
    assert_eq!(h.run("ZREMRANGEBYSCORE s x 1"), not_float);
    assert_eq!(
        h.run("ZRANGE s x 1"),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        h.run("ZLEXCOUNT s x +"),
        error("ERR min or max not valid string range item")
    );
    assert!(h.run("ZCOUNT s 0 1").starts_with("-WRONGTYPE"));
    assert_eq!(h.run("ZCOUNT z ( 1"), int(1));
    assert_eq!(h.run("ZCOUNT z 0x10 0x10"), int(1));
    assert_eq!(h.run_args(&[b"ZCOUNT", b"z", b" 1", b"+inf"]), int(2));
    assert_eq!(h.run_args(&[b"ZCOUNT", b"z", b"", b"0"]), int(1));
    assert_eq!(h.run_args(&[b"ZCOUNT", b"z", b"1 ", b"2"]), not_float);
    assert_eq!(
        h.run("ZRANGEBYLEX z - + WITHSCORES"),
        error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    );
    assert_eq!(
        h.run("ZRANGEBYLEX z - + WITHSCORES x"),
        error("ERR syntax error")
    );
    assert_eq!(
        h.run("ZPOPMIN z x"),
        error("ERR value is out of range, must be positive")
    );
}
