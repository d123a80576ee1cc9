//! Sets: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER SINTERSTORE
//! SUNION SUNIONSTORE SDIFF SDIFFSTORE SINTERCARD SSCAN.
//!
//! A set is an `intset` (sorted integers) while its members are all integers and at most
//! `set-max-intset-entries`, a packed `listpack` while small, a `Dict<()>` (`hashtable`) beyond;
//! the thresholds and conversions are Redis's. Emptied sets are removed. Random choices draw from
//! the request's seeded RNG.

use super::{Args, Ctx, create, drop_if_empty, err, modify};
use crate::db::{Db, Value};
use crate::num::parse_i64;
use crate::reply::Out;
pub use crate::types::Set;

/// Largest negative count (repetitions allowed, so the reply has |count| elements) that
/// SRANDMEMBER, HRANDFIELD and ZRANDMEMBER accept, so one request cannot build an unbounded
/// reply. A positive count is bounded by the collection (distinct members), so any is taken.
const COUNT_MAX: i64 = 1 << 24;

/// Checks a SPOP/SRANDMEMBER/HRANDFIELD/ZRANDMEMBER count (see `COUNT_MAX`); writes the error.
pub(crate) fn random_count_ok(n: i64, out: &mut Out) -> bool {
    if n == i64::MIN {
        out.error(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        );
        return false;
    }
    if n < -COUNT_MAX {
        out.error(&format!(
            "ERR value is out of range: a negative count repeats members, at most {COUNT_MAX} of them"
        ));
        return false;
    }
    true
}

pub fn sadd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let t = db.tunables;
    match modify::<Set>(db, a.get(1), c.now_ms, out) {
        Err(()) => return,
        Ok(None) => {
            let fresh = Set::for_members(a.get(2), a.len() - 2, &t);
            db.set(a.get(1), Value::Set(Box::new(fresh)), None, false);
        }
        Ok(Some(_)) => {}
    }
    let Some(s) = create::<Set>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let added = a.iter().skip(2).filter(|m| s.insert(m, &t)).count();
    out.int(added as i64)
}

pub fn srem(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    let Ok(s) = modify::<Set>(db, key, c.now_ms, out) else {
        return;
    };
    let removed = s.map_or(0, |s| a.iter().skip(2).filter(|m| s.remove(m)).count());
    if removed > 0 {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
    out.int(removed as i64)
}

fn write_members(out: &mut Out, s: Option<&Set>) {
    out.set(s.map_or(0, |s| s.len()));
    if let Some(s) = s {
        s.for_each(|m| out.bulk(m));
    }
}

pub fn smembers(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) {
        write_members(out, s.map(|s| &*s));
    }
}

pub fn sismember(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) {
        out.int(s.is_some_and(|s| s.contains(a.get(2))) as i64)
    }
}

pub fn smismember(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) {
        out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            out.int(s.as_ref().is_some_and(|s| s.contains(m)) as i64);
        }
    }
}

pub fn scard(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) {
        out.int(s.map_or(0, |s| s.len() as i64))
    }
}

/// The optional count argument of SPOP/SRANDMEMBER at `a[2]`.
fn count_arg(a: &Args, out: &mut Out, allow_negative: bool) -> Result<Option<i64>, ()> {
    match a.len() {
        2 => Ok(None),
        3 => match parse_i64(a.get(2)) {
            None => {
                out.error(err::NOT_INT);
                Err(())
            }
            Some(n) if n < 0 && !allow_negative => {
                out.error("ERR value is out of range, must be positive");
                Err(())
            }
            Some(n) if !random_count_ok(n, out) => Err(()),
            Some(n) => Ok(Some(n)),
        },
        _ => {
            out.error(err::SYNTAX);
            Err(())
        }
    }
}

pub fn spop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Ok(count) = count_arg(&a, out, false) else {
        return;
    };
    let key = a.get(1);
    let Ok(s) = modify::<Set>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(s) = s else {
        return if count.is_some() {
            out.set(0)
        } else {
            out.null()
        };
    };
    // Chosen by content, not layout: the log replays this pop on every replica and after a
    // restart (`Set::pick_by_content`).
    let mut popped: Vec<Vec<u8>> = Vec::new();
    s.pick_by_content(count.map_or(1, |n| n as usize), c.rng, |m| {
        popped.push(m.to_vec())
    });
    match count {
        None => out.bulk(&popped[0]),
        Some(_) => {
            out.set(popped.len());
            for m in &popped {
                out.bulk(m);
            }
        }
    }
    for m in &popped {
        s.remove(m);
    }
    if !popped.is_empty() {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
}

pub fn srandmember(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Ok(count) = count_arg(&a, out, true) else {
        return;
    };
    let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    match (count, s) {
        (None, None) => out.null(),
        (None, Some(s)) => out.bulk(&s.random(c.rng)),
        (Some(_), None) | (Some(0), _) => out.array(0),
        (Some(n), Some(s)) if n < 0 => {
            out.array(n.unsigned_abs() as usize);
            for _ in 0..n.unsigned_abs() {
                out.bulk(&s.random(c.rng));
            }
        }
        (Some(n), Some(s)) => {
            out.array((n as usize).min(s.len()));
            s.sample_distinct(n as usize, c.rng, |m| out.bulk(m));
        }
    }
}

pub fn smove(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (src, dst, member) = (a.get(1), a.get(2), a.get(3));
    let Ok(from) = modify::<Set>(db, src, c.now_ms, out) else {
        return;
    };
    // As Redis: a missing source answers 0 before the destination's type is looked at.
    let Some(from) = from else { return out.int(0) };
    let in_src = from.contains(member);
    if modify::<Set>(db, dst, c.now_ms, out).is_err() {
        return;
    }
    if !in_src {
        return out.int(0);
    }
    if src == dst {
        return out.int(1);
    }
    if let Some(Value::Set(s)) = db.get_mut(src, c.now_ms) {
        s.remove(member);
    }
    db.signal(src);
    drop_if_empty(db, src, c.now_ms);
    let t = db.tunables;
    if matches!(modify::<Set>(db, dst, c.now_ms, out), Ok(None)) {
        let fresh = Set::for_members(member, 1, &t);
        db.set(dst, Value::Set(Box::new(fresh)), None, false);
    }
    if let Some(s) = create::<Set>(db, dst, c.now_ms, out) {
        s.insert(member, &t);
    }
    out.int(1)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Computes `op` over the sets at `keys` (missing keys are empty sets). `None` if a key holds
/// another type (error written).
fn combine<'k>(
    db: &mut Db,
    keys: impl Iterator<Item = &'k [u8]>,
    op: Op,
    c: &Ctx,
    out: &mut Out,
) -> Option<Vec<Vec<u8>>> {
    let mut acc: Option<std::collections::HashSet<Vec<u8>>> = None;
    for key in keys {
        let Ok(s) = modify::<Set>(db, key, c.now_ms, out) else {
            return None;
        };
        let members = s.into_iter().flat_map(|s| s.members());
        match &mut acc {
            None => acc = Some(members.collect()),
            Some(acc) => {
                let other: std::collections::HashSet<Vec<u8>> = members.collect();
                match op {
                    Op::Inter => acc.retain(|m| other.contains(m)),
                    Op::Union => acc.extend(other),
                    Op::Diff => acc.retain(|m| !other.contains(m)),
                }
            }
        }
    }
    Some(acc.unwrap_or_default().into_iter().collect())
}

fn reply_combined(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, op: Op) {
    if let Some(members) = combine(db, a.iter().skip(1), op, c, out) {
        out.set(members.len());
        for m in members {
            out.bulk(&m);
        }
    }
}

fn store_combined(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, op: Op) {
    let Some(members) = combine(db, a.iter().skip(2), op, c, out) else {
        return;
    };
    let dst = a.get(1);
    let n = members.len();
    if n == 0 {
        db.remove(dst, c.now_ms);
        return out.int(0);
    }
    let t = db.tunables;
    let mut s = Set::for_members(&members[0], n, &t);
    for m in members {
        s.insert(&m, &t);
    }
    db.set(dst, Value::Set(Box::new(s)), None, false);
    out.int(n as i64)
}

pub fn sinter(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    reply_combined(db, a, c, out, Op::Inter)
}

pub fn sunion(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    reply_combined(db, a, c, out, Op::Union)
}

pub fn sdiff(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    reply_combined(db, a, c, out, Op::Diff)
}

pub fn sinterstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    store_combined(db, a, c, out, Op::Inter)
}

pub fn sunionstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    store_combined(db, a, c, out, Op::Union)
}

pub fn sdiffstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    store_combined(db, a, c, out, Op::Diff)
}

pub fn sintercard(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(keys) = super::card_keys(&a, false, out) else {
        return;
    };
    let Some(limit) = super::card_limit(&a, keys.end, out) else {
        return;
    };
    if let Some(members) = combine(db, keys.map(|i| a.get(i)), Op::Inter, c, out) {
        out.int(super::capped(members.len(), limit) as i64)
    }
}

pub fn sscan(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(sa) = super::scan_args(&a, 2, false, false, out) else {
        return;
    };
    let Ok(s) = modify::<Set>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let mut items: Vec<Vec<u8>> = Vec::new();
    let next = s.map_or(0, |s| {
        s.scan(sa.cursor as usize, sa.count, |m| {
            if sa.matches(m) {
                items.push(m.to_vec());
            }
        })
    });
    let items: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    super::scan_reply(out, next as u64, &items)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;
    use crate::reply::Proto;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    /// The members of a set or array reply, sorted.
    fn members(reply: &str) -> Vec<String> {
        let mut v: Vec<String> = reply
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.starts_with('$') && !l.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// What SPOP removes is replayed from the log on every replica and after a restart, on
    /// a set built by another history or loaded from a snapshot: it must follow from the
    /// members and the entry's seed alone (it once picked by hash-table bucket: two
    /// keyspaces with one history popped different members, and a node restarted after
    /// SPOPs held the popped members again).
    #[test]
    fn spop_removes_the_same_members_whatever_the_history_encoding_or_process() {
        let mut a = Harness::new();
        let mut b = Harness::new();
        let mut c = Harness::new();
        let all: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
        // a: 300 added at once; b: the same members added in another order, with others
        // added and removed between (another table layout); c: the members of a loaded from
        // its DUMP (a snapshot's path).
        a.run(&format!("SADD s {}", all.join(" ")));
        for chunk in all.iter().rev().collect::<Vec<_>>().chunks(7) {
            let chunk: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            b.run(&format!("SADD s {} x{}", chunk.join(" "), chunk[0]));
            b.run(&format!("SREM s x{}", chunk[0]));
        }
        let dump = a.run_raw(&[b"DUMP", b"s"]);
        let payload = &dump[dump.iter().position(|&c| c == b'\n').unwrap() + 1..dump.len() - 2];
        c.run_args(&[b"RESTORE", b"s", b"0", payload]);
        for seed in 0..20 {
            for h in [&mut a, &mut b, &mut c] {
                h.rng = crate::rng::Rng::new(seed);
            }
            let cmd = if seed % 2 == 0 { "SPOP s" } else { "SPOP s 5" };
            let got = a.run(cmd);
            assert_eq!(b.run(cmd), got, "seed {seed}: another history");
            assert_eq!(c.run(cmd), got, "seed {seed}: loaded from a payload");
        }
        assert_eq!(members(&a.run("SMEMBERS s")), members(&b.run("SMEMBERS s")));
        assert_eq!(members(&a.run("SMEMBERS s")), members(&c.run("SMEMBERS s")));
        assert_eq!(a.run("SCARD s"), int(300 - 10 - 50));
        // Compact encodings too: a small set of integers and one of strings.
        for members_of in ["1 2 3 4 5 6 7 8 9", "a b c d e f g"] {
            let (mut x, mut y) = (Harness::new(), Harness::new());
            x.run(&format!("SADD t {members_of}"));
            let rev: Vec<&str> = members_of.split(' ').rev().collect();
            y.run(&format!("SADD t {}", rev.join(" ")));
            for h in [&mut x, &mut y] {
                h.rng = crate::rng::Rng::new(3);
            }
            assert_eq!(x.run("SPOP t 3"), y.run("SPOP t 3"), "{members_of}");
            assert_eq!(x.run("SPOP t"), y.run("SPOP t"), "{members_of}");
        }
    }

    #[test]
    fn add_remove_membership_and_deletion_of_empty_sets() {
        let mut h = Harness::new();
        assert_eq!(h.run("SADD s a b c a"), int(3));
        assert_eq!(h.run("SADD s c d"), int(1));
        assert_eq!(h.run("SCARD s"), int(4));
        assert_eq!(members(&h.run("SMEMBERS s")), ["a", "b", "c", "d"]);
        assert_eq!(h.run("SISMEMBER s a"), int(1));
        assert_eq!(h.run("SISMEMBER s z"), int(0));
        assert_eq!(h.run("SMISMEMBER s a z"), "*2\r\n:1\r\n:0\r\n");
        assert_eq!(h.run("SREM s a z"), int(1));
        assert_eq!(h.run("SREM s b c d"), int(3));
        assert_eq!(h.run("EXISTS s"), int(0));
        assert_eq!(h.run("SCARD s"), int(0));
        h.run("SET str v");
        assert_eq!(h.run("SADD str a"), error(WRONGTYPE));
        assert_eq!(h.run("SMEMBERS str"), error(WRONGTYPE));
        h.proto = Proto::Resp3;
        h.run("SADD t x");
        assert_eq!(h.run("SMEMBERS t"), format!("~1\r\n{}", bulk("x")));
        assert_eq!(h.run("TYPE t"), "+set\r\n");
    }

    #[test]
    fn pop_and_random_members() {
        let mut h = Harness::new();
        h.run("SADD s a b c d e");
        assert_eq!(h.run("SRANDMEMBER s 10").matches('$').count(), 5);
        assert_eq!(h.run("SRANDMEMBER s 3").matches('$').count(), 3);
        assert_eq!(h.run("SRANDMEMBER s -8").matches('$').count(), 8);
        assert_eq!(h.run("SRANDMEMBER s 0"), "*0\r\n");
        assert_eq!(h.run("SRANDMEMBER nokey"), NIL);
        assert!(h.run("SPOP s").starts_with("$1\r\n"));
        assert_eq!(h.run("SCARD s"), int(4));
        assert_eq!(members(&h.run("SPOP s 3")).len(), 3);
        assert_eq!(h.run("SCARD s"), int(1));
        assert_eq!(
            h.run("SPOP s -1"),
            error("ERR value is out of range, must be positive")
        );
        assert_eq!(members(&h.run("SPOP s 9")).len(), 1);
        assert_eq!(h.run("EXISTS s"), int(0));
        assert_eq!(h.run("SPOP s"), NIL);
        assert_eq!(h.run("SPOP s 2"), "*0\r\n");
    }

    #[test]
    fn algebra_and_store_forms() {
        let mut h = Harness::new();
        h.run("SADD {k}a 1 2 3 4");
        h.run("SADD {k}b 3 4 5");
        assert_eq!(members(&h.run("SINTER {k}a {k}b")), ["3", "4"]);
        assert_eq!(
            members(&h.run("SUNION {k}a {k}b")),
            ["1", "2", "3", "4", "5"]
        );
        assert_eq!(members(&h.run("SDIFF {k}a {k}b")), ["1", "2"]);
        assert_eq!(members(&h.run("SINTER {k}a {k}none")), Vec::<String>::new());
        assert_eq!(h.run("SINTERSTORE {k}d {k}a {k}b"), int(2));
        assert_eq!(members(&h.run("SMEMBERS {k}d")), ["3", "4"]);
        assert_eq!(h.run("SDIFFSTORE {k}d {k}a {k}a"), int(0));
        assert_eq!(h.run("EXISTS {k}d"), int(0));
        assert_eq!(h.run("SUNIONSTORE {k}d {k}a {k}b"), int(5));
        assert_eq!(h.run("SINTERCARD 2 {k}a {k}b"), int(2));
        assert_eq!(h.run("SINTERCARD 2 {k}a {k}b LIMIT 1"), int(1));
        assert_eq!(
            h.run("SINTERCARD 0 {k}a"),
            error("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            h.run("SINTERCARD 3 {k}a"),
            error("ERR Number of keys can't be greater than number of args")
        );
        assert_eq!(
            h.run("SINTERCARD 1 {k}a LIMIT -1"),
            error("ERR LIMIT can't be negative")
        );
        assert_eq!(
            h.run("SINTERCARD 1 {k}a LIMIT x"),
            error("ERR LIMIT can't be negative")
        );
        h.run("SET {k}s v");
        assert_eq!(h.run("SUNION {k}a {k}s"), error(WRONGTYPE));
        assert_eq!(h.run("SMOVE {k}a {k}b 1"), int(1));
        assert_eq!(h.run("SMOVE {k}a {k}b 1"), int(0));
        assert_eq!(h.run("SMOVE {k}a {k}s 2"), error(WRONGTYPE));
        assert_eq!(h.run("SISMEMBER {k}b 1"), int(1));
    }

    #[test]
    fn sscan_walks_every_member() {
        let mut h = Harness::new();
        for i in 0..100 {
            h.run(&format!("SADD s m{i}"));
        }
        let n = scan_all(&mut h, |c| format!("SSCAN s {c} COUNT 9")).len();
        assert_eq!(n, 100);
    }
}
