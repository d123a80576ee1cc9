//! Lists: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM LTRIM LPOS LMOVE
//! RPOPLPUSH LMPOP. (The blocking forms need the connection layer and come with issue 4's rest.)
//!
//! A list is packed (`listpack`: one allocation) while within `list-max-listpack-size`, then a
//! `VecDeque` of `SmallBytes` (`quicklist` in OBJECT ENCODING): O(1) at both ends and by index.
//! It does not convert back. An emptied list is removed, as Redis never keeps empty collections.

use super::{Args, Ctx, create, drop_if_empty, err, int_arg, modify};
use crate::bytes::SmallBytes;
use crate::db::{Db, Value};
use crate::reply::Out;
pub use crate::types::List;

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

fn end_of(arg: &[u8]) -> Option<End> {
    if arg.eq_ignore_ascii_case(b"left") {
        Some(End::Left)
    } else if arg.eq_ignore_ascii_case(b"right") {
        Some(End::Right)
    } else {
        None
    }
}

fn push(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, end: End, only_if_exists: bool) {
    let key = a.get(1);
    if only_if_exists {
        match modify::<List>(db, key, c.now_ms, out) {
            Err(()) => return,
            Ok(None) => return out.int(0),
            Ok(Some(_)) => {}
        }
    }
    let t = db.tunables;
    let Some(list) = create::<List>(db, key, c.now_ms, out) else {
        return;
    };
    for e in a.iter().skip(2) {
        match end {
            End::Left => list.push_front(e, &t),
            End::Right => list.push_back(e, &t),
        }
    }
    out.int(list.len() as i64)
}

pub fn lpush(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    push(db, a, c, out, End::Left, false)
}

pub fn rpush(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    push(db, a, c, out, End::Right, false)
}

pub fn lpushx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    push(db, a, c, out, End::Left, true)
}

pub fn rpushx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    push(db, a, c, out, End::Right, true)
}

fn pop_one(list: &mut List, end: End) -> Option<SmallBytes> {
    match end {
        End::Left => list.pop_front(),
        End::Right => list.pop_back(),
    }
}

fn pop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, end: End) {
    let count = match a.len() {
        2 => None,
        3 => match crate::num::parse_i64(a.get(2)) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return out.error("ERR value is out of range, must be positive"),
        },
        // Redis's own check: LPOP/RPOP take at most a count.
        _ => return err::arity(out, if end == End::Left { "lpop" } else { "rpop" }),
    };
    let key = a.get(1);
    let Ok(found) = modify::<List>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(list) = found else {
        return if count.is_some() {
            out.null_array()
        } else {
            out.null()
        };
    };
    match count {
        None => match pop_one(list, end) {
            Some(e) => out.bulk(&e),
            None => out.null(),
        },
        Some(n) => {
            let n = n.min(list.len());
            out.array(n);
            for _ in 0..n {
                let e = pop_one(list, end).expect("counted");
                out.bulk(&e);
            }
        }
    }
    db.signal(key);
    drop_if_empty(db, key, c.now_ms);
}

pub fn lpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    pop(db, a, c, out, End::Left)
}

pub fn rpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    pop(db, a, c, out, End::Right)
}

pub fn llen(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(l) = modify::<List>(db, a.get(1), c.now_ms, out) {
        out.int(l.map_or(0, |l| l.len() as i64))
    }
}

/// Resolves a Redis index (negative counts from the end) within `len`.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub fn lrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(start) = int_arg(&a, 2, out) else {
        return;
    };
    let Some(stop) = int_arg(&a, 3, out) else {
        return;
    };
    let Ok(l) = modify::<List>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let l = l.map(|l| &*l);
    match l.and_then(|l| super::strings::range_of(start, stop, l.len()).map(|r| (l, r))) {
        None => out.array(0),
        Some((l, (from, to))) => {
            out.array(to - from + 1);
            for e in l.iter().skip(from).take(to - from + 1) {
                out.bulk(e);
            }
        }
    }
}

pub fn lindex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the key (missing: nil; another type: WRONGTYPE), then the index.
    let Ok(l) = modify::<List>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(l) = l else { return out.null() };
    let Some(i) = int_arg(&a, 2, out) else { return };
    match index(i, l.len()).and_then(|i| l.get(i)) {
        Some(e) => out.bulk(e),
        None => out.null(),
    }
}

pub fn lset(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the key (missing: no such key; another type: WRONGTYPE), then the index.
    let key = a.get(1);
    let t = db.tunables;
    let Ok(l) = modify::<List>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(l) = l else {
        return out.error(err::NO_SUCH_KEY);
    };
    let Some(i) = int_arg(&a, 2, out) else { return };
    let Some(i) = index(i, l.len()) else {
        return out.error("ERR index out of range");
    };
    l.set(i, a.get(3), &t);
    db.signal(key);
    out.ok()
}

pub fn linsert(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let after = if a.get(2).eq_ignore_ascii_case(b"after") {
        true
    } else if a.get(2).eq_ignore_ascii_case(b"before") {
        false
    } else {
        return out.error(err::SYNTAX);
    };
    let key = a.get(1);
    let t = db.tunables;
    let Ok(l) = modify::<List>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(l) = l else { return out.int(0) };
    let Some(at) = l.iter().position(|e| e == a.get(3)) else {
        return out.int(-1);
    };
    l.insert(at + after as usize, a.get(4), &t);
    let len = l.len();
    db.signal(key);
    out.int(len as i64)
}

pub fn lrem(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(count) = int_arg(&a, 2, out) else {
        return;
    };
    let key = a.get(1);
    let Ok(l) = modify::<List>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(l) = l else { return out.int(0) };
    let target = a.get(3);
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        let mut i = 0;
        while i < l.len() && removed < limit {
            if l.get(i) == Some(target) {
                l.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = l.len();
        while i > 0 && removed < limit {
            i -= 1;
            if l.get(i) == Some(target) {
                l.remove(i);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
    out.int(removed as i64)
}

pub fn ltrim(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(start) = int_arg(&a, 2, out) else {
        return;
    };
    let Some(stop) = int_arg(&a, 3, out) else {
        return;
    };
    let key = a.get(1);
    let Ok(l) = modify::<List>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(l) = l else { return out.ok() };
    match super::strings::range_of(start, stop, l.len()) {
        None => l.clear(),
        Some((from, to)) => l.keep(from, to),
    }
    db.signal(key);
    drop_if_empty(db, key, c.now_ms);
    out.ok()
}

pub fn lpos(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<usize>, 0usize);
    // As Redis: an unknown option (or one without its value) is a syntax error before its value
    // is read; COUNT and MAXLEN answer "can't be negative" for any value that is not a
    // non-negative integer.
    let mut i = 3;
    while i < a.len() {
        let opt = a.get(i);
        let is = |w: &[u8]| opt.eq_ignore_ascii_case(w);
        if !(is(b"rank") || is(b"count") || is(b"maxlen")) || i + 1 >= a.len() {
            return out.error(err::SYNTAX);
        }
        let n = crate::num::parse_i64(a.get(i + 1));
        if is(b"rank") {
            let Some(n) = n else {
                return out.error(err::NOT_INT);
            };
            if n == 0 {
                return out.error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
            }
            if n == i64::MIN {
                return out.error("ERR value is out of range");
            }
            rank = n;
        } else if is(b"count") {
            match n {
                Some(n) if n >= 0 => count = Some(n as usize),
                _ => return out.error("ERR COUNT can't be negative"),
            }
        } else {
            match n {
                Some(n) if n >= 0 => maxlen = n as usize,
                _ => return out.error("ERR MAXLEN can't be negative"),
            }
        }
        i += 2;
    }
    let Ok(l) = modify::<List>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let target = a.get(2);
    let mut found = Vec::new();
    if let Some(l) = l {
        let want = match count {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => 1,
        };
        let scan = if maxlen == 0 {
            l.len()
        } else {
            maxlen.min(l.len())
        };
        let mut skip = rank.unsigned_abs() - 1;
        let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
            Box::new(0..scan)
        } else {
            Box::new((l.len() - scan..l.len()).rev())
        };
        for p in positions {
            if l.get(p) == Some(target) {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                found.push(p);
                if found.len() >= want {
                    break;
                }
            }
        }
    }
    match count {
        None => match found.first() {
            Some(&p) => out.int(p as i64),
            None => out.null(),
        },
        Some(_) => {
            out.array(found.len());
            for p in found {
                out.int(p as i64);
            }
        }
    }
}

/// Moves one element from `src`'s `from` end to `dst`'s `to` end; writes the element or nil.
fn move_one(db: &mut Db, src: &[u8], dst: &[u8], from: End, to: End, c: &Ctx, out: &mut Out) {
    // As Redis: the source first (missing: nil; another type: WRONGTYPE), then the
    // destination's type, before anything is popped.
    match db.get_mut(src, c.now_ms) {
        None => return out.null(),
        Some(Value::List(_)) => {}
        Some(_) => return out.error(err::WRONGTYPE),
    }
    if !matches!(db.get_mut(dst, c.now_ms), None | Some(Value::List(_))) {
        return out.error(err::WRONGTYPE);
    }
    let t = db.tunables;
    let Ok(l) = modify::<List>(db, src, c.now_ms, out) else {
        return;
    };
    if src == dst {
        // A rotation: the list is never empty on the way, so it keeps its TTL (as in Redis,
        // where the push happens before the emptiness check).
        let Some((l, e)) = l.and_then(|l| pop_one(l, from).map(|e| (l, e))) else {
            return out.null();
        };
        match to {
            End::Left => l.push_front(&e, &t),
            End::Right => l.push_back(&e, &t),
        }
        db.signal(src);
        return out.bulk(&e);
    }
    let Some(e) = l.and_then(|l| pop_one(l, from)) else {
        return out.null();
    };
    db.signal(src);
    drop_if_empty(db, src, c.now_ms);
    let dest = create::<List>(db, dst, c.now_ms, out).expect("checked the type above");
    out.bulk(&e);
    match to {
        End::Left => dest.push_front(&e, &t),
        End::Right => dest.push_back(&e, &t),
    }
}

pub fn lmove(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (Some(from), Some(to)) = (end_of(a.get(3)), end_of(a.get(4))) else {
        return out.error(err::SYNTAX);
    };
    move_one(db, a.get(1), a.get(2), from, to, c, out)
}

pub fn rpoplpush(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    move_one(db, a.get(1), a.get(2), End::Right, End::Left, c, out)
}

pub fn lmpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some((keys, right, count)) = super::mpop_args(&a, [b"left", b"right"], out) else {
        return;
    };
    let end = if right { End::Right } else { End::Left };
    for k in keys {
        let key = a.get(k);
        let Ok(l) = modify::<List>(db, key, c.now_ms, out) else {
            return;
        };
        let Some(l) = l.filter(|l| !l.is_empty()) else {
            continue;
        };
        let n = count.min(l.len());
        out.array(2);
        out.bulk(key);
        out.array(n);
        for _ in 0..n {
            let e = pop_one(l, end).expect("counted");
            out.bulk(&e);
        }
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
        return;
    }
    out.null_array()
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    /// Regression (issue 15): moving the only element of a list onto itself dropped its TTL.
    #[test]
    fn a_list_rotated_onto_itself_keeps_its_ttl() {
        let mut h = Harness::new();
        h.run("RPUSH l a");
        h.run("EXPIRE l 100");
        assert_eq!(h.run("RPOPLPUSH l l"), bulk("a"));
        assert_eq!(h.run("TTL l"), int(100));
        assert_eq!(h.run("LMOVE l l LEFT RIGHT"), bulk("a"));
        h.run("RPUSH l b");
        assert_eq!(h.run("LMOVE l l LEFT RIGHT"), bulk("a"));
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["b", "a"]));
        assert_eq!(h.run("TTL l"), int(100));
        assert_eq!(h.run("RPOPLPUSH none none"), "$-1\r\n");
    }

    /// Regression (issue 15, found by the differential run): the key is looked at before the
    /// index (LINDEX of a missing key is nil whatever the index; LSET checks the type first),
    /// the source before the destination (RPOPLPUSH, LMOVE), and LPOP/RPOP take one count.
    #[test]
    fn keys_are_checked_before_arguments_as_redis_does() {
        let mut h = Harness::new();
        h.run("SET s v");
        assert_eq!(h.run("LINDEX none x"), "$-1\r\n");
        assert!(h.run("LSET s x v").starts_with("-WRONGTYPE"));
        assert_eq!(h.run("RPOPLPUSH none s"), "$-1\r\n");
        h.run("RPUSH l a");
        assert!(h.run("RPOPLPUSH l s").starts_with("-WRONGTYPE"));
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["a"]));
        assert_eq!(
            h.run("LPOP l 1 2"),
            error("ERR wrong number of arguments for 'lpop' command")
        );
        assert_eq!(h.run("SMOVE none s m"), int(0));
    }

    #[test]
    fn push_pop_range_and_deletion_of_empty_lists() {
        let mut h = Harness::new();
        assert_eq!(h.run("RPUSH l a b c"), int(3));
        assert_eq!(h.run("LPUSH l z"), int(4));
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["z", "a", "b", "c"]));
        assert_eq!(h.run("LRANGE l -2 100"), arr(&["b", "c"]));
        assert_eq!(h.run("LRANGE l 5 10"), "*0\r\n");
        assert_eq!(h.run("LLEN l"), int(4));
        assert_eq!(h.run("LPOP l"), bulk("z"));
        assert_eq!(h.run("RPOP l 2"), arr(&["c", "b"]));
        assert_eq!(h.run("LPOP l 0"), "*0\r\n");
        assert_eq!(
            h.run("LPOP l -1"),
            error("ERR value is out of range, must be positive")
        );
        assert_eq!(h.run("RPOP l"), bulk("a"));
        assert_eq!(h.run("EXISTS l"), int(0));
        assert_eq!(h.run("LPOP l"), NIL);
        assert_eq!(h.run("LPOP l 3"), "*-1\r\n");
        assert_eq!(h.run("LPUSHX l a"), int(0));
        assert_eq!(h.run("EXISTS l"), int(0));
        h.run("SET s v");
        assert_eq!(
            h.run("LPUSH s a"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("LLEN s"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("TYPE s"), "+string\r\n");
        h.run("RPUSH l x");
        assert_eq!(h.run("TYPE l"), "+list\r\n");
    }

    #[test]
    fn index_set_insert_remove_trim() {
        let mut h = Harness::new();
        h.run("RPUSH l a b a c a");
        assert_eq!(h.run("LINDEX l -1"), bulk("a"));
        assert_eq!(h.run("LINDEX l 9"), NIL);
        assert_eq!(h.run("LSET l 1 B"), OK);
        assert_eq!(h.run("LSET l 9 B"), error("ERR index out of range"));
        assert_eq!(h.run("LSET nokey 0 B"), error("ERR no such key"));
        assert_eq!(h.run("LINSERT l BEFORE c X"), int(6));
        assert_eq!(h.run("LINSERT l AFTER nope X"), int(-1));
        assert_eq!(h.run("LINSERT nokey AFTER a X"), int(0));
        assert_eq!(h.run("LINSERT l MIDDLE a X"), error("ERR syntax error"));
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["a", "B", "a", "X", "c", "a"]));
        assert_eq!(h.run("LREM l -1 a"), int(1));
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["a", "B", "a", "X", "c"]));
        assert_eq!(h.run("LREM l 0 a"), int(2));
        assert_eq!(h.run("LTRIM l 1 -1"), OK);
        assert_eq!(h.run("LRANGE l 0 -1"), arr(&["X", "c"]));
        assert_eq!(h.run("LTRIM l 5 10"), OK);
        assert_eq!(h.run("EXISTS l"), int(0));
    }

    #[test]
    fn lpos_options() {
        let mut h = Harness::new();
        h.run("RPUSH l a b c 1 2 3 c c");
        assert_eq!(h.run("LPOS l c"), int(2));
        assert_eq!(h.run("LPOS l c RANK 2"), int(6));
        assert_eq!(h.run("LPOS l c RANK -1"), int(7));
        assert_eq!(h.run("LPOS l c COUNT 0"), "*3\r\n:2\r\n:6\r\n:7\r\n");
        assert_eq!(h.run("LPOS l c COUNT 2 RANK -1"), "*2\r\n:7\r\n:6\r\n");
        assert_eq!(h.run("LPOS l c MAXLEN 2"), NIL);
        assert_eq!(h.run("LPOS l zz"), NIL);
        assert!(
            h.run("LPOS l c RANK 0")
                .starts_with("-ERR RANK can't be zero")
        );
        assert_eq!(
            h.run("LPOS l c COUNT -1"),
            error("ERR COUNT can't be negative")
        );
    }

    #[test]
    fn moves_between_lists() {
        let mut h = Harness::new();
        h.run("RPUSH {l}a 1 2 3");
        assert_eq!(h.run("LMOVE {l}a {l}b RIGHT LEFT"), bulk("3"));
        assert_eq!(h.run("RPOPLPUSH {l}a {l}b"), bulk("2"));
        assert_eq!(h.run("LRANGE {l}b 0 -1"), arr(&["2", "3"]));
        assert_eq!(h.run("LMOVE {l}a {l}a LEFT RIGHT"), bulk("1"));
        assert_eq!(h.run("LMOVE {l}a {l}b UP LEFT"), error("ERR syntax error"));
        h.run("SET {l}s v");
        assert_eq!(
            h.run("LMOVE {l}a {l}s LEFT LEFT"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("LLEN {l}a"),
            int(1),
            "nothing popped when the destination has the wrong type"
        );
        assert_eq!(h.run("LMOVE {l}none {l}b LEFT LEFT"), NIL);
        assert_eq!(
            h.run("LMPOP 2 {l}none {l}b LEFT COUNT 5"),
            format!("*2\r\n{}{}", bulk("{l}b"), arr(&["2", "3"]))
        );
        assert_eq!(h.run("LMPOP 1 {l}b LEFT"), "*-1\r\n");
        assert_eq!(
            h.run("LMPOP 0 {l}b LEFT"),
            error("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            h.run("LMPOP 1 {l}a LEFT COUNT 0"),
            error("ERR count should be greater than 0")
        );
    }

    /// A random sequence of list operations agrees with a `VecDeque` model.
    #[test]
    fn random_operations_agree_with_a_model() {
        let mut h = Harness::new();
        let mut model: std::collections::VecDeque<String> = Default::default();
        let mut s = 0x2545_F491u64;
        for step in 0..3000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = format!("v{}", s % 20);
            match s % 7 {
                0 => {
                    h.run(&format!("LPUSH k {v}"));
                    model.push_front(v);
                }
                1 => {
                    h.run(&format!("RPUSH k {v}"));
                    model.push_back(v);
                }
                2 => {
                    let got = h.run("LPOP k");
                    assert_eq!(
                        got,
                        model.pop_front().map_or(NIL.to_string(), |e| bulk(&e)),
                        "step {step}"
                    );
                }
                3 => {
                    let got = h.run("RPOP k");
                    assert_eq!(
                        got,
                        model.pop_back().map_or(NIL.to_string(), |e| bulk(&e)),
                        "step {step}"
                    );
                }
                4 => {
                    let n = h.run(&format!("LREM k 1 {v}"));
                    let pos = model.iter().position(|e| *e == v);
                    assert_eq!(n, int(pos.is_some() as i64));
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                }
                5 => {
                    let i = (s >> 8) % 10;
                    assert_eq!(
                        h.run(&format!("LINDEX k {i}")),
                        model.get(i as usize).map_or(NIL.to_string(), |e| bulk(e))
                    );
                }
                _ => assert_eq!(h.run("LLEN k"), int(model.len() as i64)),
            }
        }
        let items: Vec<&str> = model.iter().map(String::as_str).collect();
        assert_eq!(h.run("LRANGE k 0 -1"), arr(&items));
    }
}
