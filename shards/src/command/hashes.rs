//! Hashes: HSET HSETNX HMSET HGET HMGET HDEL HGETALL HLEN HEXISTS HINCRBY HINCRBYFLOAT HKEYS HVALS
//! HSTRLEN HRANDFIELD HSCAN.

use super::{Args, Ctx, create, drop_if_empty, err, int_arg, modify, read};
use crate::db::Db;
use crate::num::parse_i64;
use crate::reply::{Out, Proto};
pub use crate::types::Hash;

fn set_fields(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, name: &str) -> Option<i64> {
    if !a.len().is_multiple_of(2) {
        err::arity(out, name);
        return None;
    }
    let lim = db.tunables.hash_limits();
    let h = create::<Hash>(db, a.get(1), c.now_ms, out)?;
    let mut added = 0;
    for i in (2..a.len()).step_by(2) {
        if h.insert(a.get(i), a.get(i + 1), lim) {
            added += 1;
        }
    }
    Some(added)
}

pub fn hset(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Some(n) = set_fields(db, a, c, out, "hset") {
        out.int(n)
    }
}

pub fn hmset(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if set_fields(db, a, c, out, "hmset").is_some() {
        out.ok()
    }
}

pub fn hsetnx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let lim = db.tunables.hash_limits();
    let Some(h) = create::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let inserted = !h.contains(a.get(2)) && h.insert(a.get(2), a.get(3), lim);
    out.int(inserted as i64)
}

pub fn hget(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) {
        match h.and_then(|h| h.get(a.get(2))) {
            Some(v) => out.bulk(v),
            None => out.null(),
        }
    }
}

pub fn hmget(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) {
        out.array(a.len() - 2);
        for f in a.iter().skip(2) {
            match h.and_then(|h| h.get(f)) {
                Some(v) => out.bulk(v),
                None => out.null(),
            }
        }
    }
}

pub fn hdel(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    let Ok(h) = modify::<Hash>(db, key, c.now_ms, out) else {
        return;
    };
    let removed = h.map_or(0, |h| a.iter().skip(2).filter(|f| h.remove(f)).count());
    if removed > 0 {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
    out.int(removed as i64)
}

/// HGETALL, HKEYS, HVALS: fields and/or values of the whole hash.
fn dump(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, fields: bool, values: bool) {
    let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let len = h.map_or(0, |h| h.len());
    if fields && values {
        out.map(len);
    } else {
        out.array(len);
    }
    for (f, v) in h.into_iter().flat_map(|h| h.iter()) {
        if fields {
            out.bulk(f);
        }
        if values {
            out.bulk(v);
        }
    }
}

pub fn hgetall(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    dump(db, a, c, out, true, true)
}

pub fn hkeys(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    dump(db, a, c, out, true, false)
}

pub fn hvals(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    dump(db, a, c, out, false, true)
}

pub fn hlen(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) {
        out.int(h.map_or(0, |h| h.len() as i64))
    }
}

pub fn hexists(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) {
        out.int(h.is_some_and(|h| h.contains(a.get(2))) as i64)
    }
}

pub fn hstrlen(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) {
        out.int(
            h.and_then(|h| h.get(a.get(2)))
                .map_or(0, |v| v.len() as i64),
        )
    }
}

pub fn hincrby(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(by) = int_arg(&a, 3, out) else {
        return;
    };
    let current = match read::<Hash>(db, a.get(1), c.now_ms, out) {
        Err(()) => return,
        Ok(h) => match h.and_then(|h| h.get(a.get(2))) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return out.error("ERR hash value is not an integer"),
            },
        },
    };
    let Some(n) = current.checked_add(by) else {
        return out.error(err::OVERFLOW);
    };
    let lim = db.tunables.hash_limits();
    let Some(h) = create::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let mut tmp = [0u8; 20];
    h.insert(a.get(2), crate::num::format_i64(n, &mut tmp), lim);
    out.int(n)
}

pub fn hincrbyfloat(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the increment first (an infinite one refused), then the field's value, added
    // in `long double`.
    use crate::longdouble::{F80, Refused};
    match F80::parse(a.get(3)) {
        Ok(_) => {}
        Err(Refused::Infinite) => return out.error("ERR value is NaN or Infinity"),
        Err(Refused::NotFloat) => return out.error(err::NOT_FLOAT),
    }
    let text = match read::<Hash>(db, a.get(1), c.now_ms, out) {
        Err(()) => return,
        Ok(h) => {
            let current = h.and_then(|h| h.get(a.get(2))).unwrap_or(b"0");
            match crate::longdouble::add_decimal(current, a.get(3)) {
                Ok(t) => t,
                Err((2, _)) => {
                    return out.error("ERR increment would produce NaN or Infinity");
                }
                Err(_) => return out.error("ERR hash value is not a float"),
            }
        }
    };
    let lim = db.tunables.hash_limits();
    let Some(h) = create::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    h.insert(a.get(2), text.as_bytes(), lim);
    out.bulk(text.as_bytes())
}

pub fn hrandfield(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let count = if a.len() >= 3 {
        let Some(n) = int_arg(&a, 2, out) else { return };
        if !super::sets::random_count_ok(n, out) {
            return;
        }
        Some(n)
    } else {
        None
    };
    let with_values = match a.len() {
        4 if a.get(3).eq_ignore_ascii_case(b"withvalues") => true,
        2 | 3 => false,
        _ => return out.error(err::SYNTAX),
    };
    let proto = out.proto;
    let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(count) = count else {
        return match h.filter(|h| !h.is_empty()) {
            Some(h) => {
                let (f, _) = h.random(c.rng);
                out.bulk(f)
            }
            None => out.null(),
        };
    };
    let Some(h) = h.filter(|h| !h.is_empty() && count != 0) else {
        return out.array(0);
    };
    let emit = |out: &mut Out, f: &[u8], v: &[u8]| {
        if with_values && proto == Proto::Resp3 {
            out.array(2);
        }
        out.bulk(f);
        if with_values {
            out.bulk(v);
        }
    };
    let per = if with_values && proto == Proto::Resp2 {
        2
    } else {
        1
    };
    if count < 0 {
        let n = count.unsigned_abs() as usize;
        out.array(n * per);
        for _ in 0..n {
            let (f, v) = h.random(c.rng);
            emit(out, f, v);
        }
        return;
    }
    let n = (count as usize).min(h.len());
    out.array(n * per);
    h.sample_distinct(n, c.rng, |f, v| emit(out, f, v));
}

pub fn hscan(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(sa) = super::scan_args(&a, 2, false, true, out) else {
        return;
    };
    let Ok(h) = read::<Hash>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let mut items: Vec<&[u8]> = Vec::new();
    let next = h.map_or(0, |h| {
        h.scan(sa.cursor as usize, sa.count, |f, v| {
            if sa.matches(f) {
                items.push(f);
                if !sa.novalues {
                    items.push(v);
                }
            }
        })
    });
    super::scan_reply(out, next as u64, &items)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;
    use crate::reply::Proto;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    #[test]
    fn hset_hget_hdel_lifecycle() {
        let mut h = Harness::new();
        assert_eq!(h.run("HSET h a 1 b 2"), int(2));
        assert_eq!(h.run("HSET h a 3 c 4"), int(1));
        assert_eq!(h.run("HGET h a"), bulk("3"));
        assert_eq!(h.run("HGET h zz"), NIL);
        assert_eq!(h.run("HLEN h"), int(3));
        assert_eq!(h.run("HMGET h a zz"), format!("*2\r\n{}{}", bulk("3"), NIL));
        assert_eq!(h.run("HEXISTS h b"), int(1));
        assert_eq!(h.run("HSTRLEN h b"), int(1));
        assert_eq!(h.run("HSETNX h a 9"), int(0));
        assert_eq!(h.run("HSETNX h d 9"), int(1));
        assert_eq!(h.run("HDEL h a b c d zz"), int(4));
        assert_eq!(h.run("EXISTS h"), int(0));
        assert_eq!(
            h.run("HSET h a"),
            error("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(h.run("HMSET h a 1"), OK);
        h.run("SET s v");
        assert_eq!(h.run("HSET s a 1"), error(WRONGTYPE));
        assert_eq!(h.run("HGET s a"), error(WRONGTYPE));
        assert_eq!(h.run("HDEL s a"), error(WRONGTYPE));
        assert_eq!(h.run("HLEN nokey"), int(0));
    }

    #[test]
    fn hgetall_is_a_map_in_resp3() {
        let mut h = Harness::new();
        h.run("HSET h f v");
        assert_eq!(
            h.run("HGETALL h"),
            format!("*2\r\n{}{}", bulk("f"), bulk("v"))
        );
        h.proto = Proto::Resp3;
        assert_eq!(
            h.run("HGETALL h"),
            format!("%1\r\n{}{}", bulk("f"), bulk("v"))
        );
        assert_eq!(h.run("HKEYS h"), format!("*1\r\n{}", bulk("f")));
        assert_eq!(h.run("HVALS h"), format!("*1\r\n{}", bulk("v")));
        assert_eq!(h.run("HGETALL nokey"), "%0\r\n");
    }

    #[test]
    fn hincr_checks_types_and_overflow() {
        let mut h = Harness::new();
        assert_eq!(h.run("HINCRBY h n 5"), int(5));
        assert_eq!(h.run("HINCRBY h n -10"), int(-5));
        h.run("HSET h s abc");
        assert_eq!(
            h.run("HINCRBY h s 1"),
            error("ERR hash value is not an integer")
        );
        assert_eq!(
            h.run("HINCRBY h n x"),
            error("ERR value is not an integer or out of range")
        );
        h.run("HSET h big 9223372036854775807");
        assert_eq!(
            h.run("HINCRBY h big 1"),
            error("ERR increment or decrement would overflow")
        );
        assert_eq!(h.run("HINCRBYFLOAT h f 1.5"), bulk("1.5"));
        assert_eq!(
            h.run("HINCRBYFLOAT h s 1.5"),
            error("ERR hash value is not a float")
        );
        h.run("SET str v");
        assert_eq!(h.run("HINCRBY str f 1"), error(WRONGTYPE));
        assert_eq!(h.run("HINCRBYFLOAT str f 1"), error(WRONGTYPE));
    }

    #[test]
    fn hrandfield_counts() {
        let mut h = Harness::new();
        assert_eq!(h.run("HRANDFIELD nokey"), NIL);
        assert_eq!(h.run("HRANDFIELD nokey 3"), "*0\r\n");
        h.run("HSET h a 1 b 2 c 3");
        assert!(h.run("HRANDFIELD h").starts_with("$1\r\n"));
        assert!(h.run("HRANDFIELD h 2").starts_with("*2\r\n"));
        assert!(h.run("HRANDFIELD h 10").starts_with("*3\r\n"));
        assert!(h.run("HRANDFIELD h -10").starts_with("*10\r\n"));
        assert!(h.run("HRANDFIELD h 2 WITHVALUES").starts_with("*4\r\n"));
        h.proto = Proto::Resp3;
        assert!(
            h.run("HRANDFIELD h 2 WITHVALUES")
                .starts_with("*2\r\n*2\r\n")
        );
        assert_eq!(h.run("HRANDFIELD h 2 FOO"), error("ERR syntax error"));
        assert_eq!(
            h.run("HRANDFIELD h -99999999999"),
            error(
                "ERR value is out of range: a negative count repeats members, at most 16777216 of them"
            )
        );
        assert!(h.run("HRANDFIELD h 99999999999").starts_with("*3\r\n"));
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..100 {
            distinct.insert(h.run("HRANDFIELD h"));
        }
        assert_eq!(distinct.len(), 3, "every field should come up");
    }

    #[test]
    fn hscan_walks_all_fields() {
        let mut h = Harness::new();
        for i in 0..100 {
            h.run(&format!("HSET h f{i} v{i}"));
        }
        let n = scan_all(&mut h, |c| format!("HSCAN h {c} COUNT 7 NOVALUES")).len();
        assert_eq!(n, 100);
        assert_eq!(h.run("HSCAN h x"), error("ERR invalid cursor"));
        assert_eq!(h.run("HSCAN nokey 0"), format!("*2\r\n{}*0\r\n", bulk("0")));
    }
}
