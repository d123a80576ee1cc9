//! SORT and SORT_RO: the elements of a list, set or sorted set, ordered numerically or with ALPHA,
//! optionally by external weights (BY pattern) and projected through GET patterns, with LIMIT and
//! STORE. As in Redis Cluster, the keys a BY or GET pattern names must hash to the sorted key's
//! slot (they are read on the shard thread that owns it).

use super::{Args, Ctx, err};
use crate::db::{Db, Value};
use crate::num::parse_i64;
use crate::reply::Out;
use crate::slot::key_slot;

/// The key a pattern names for `element`: the first `*` replaced by it; `->field` names a hash
/// field. `None` when the pattern has no `*` (a constant: BY nosort-like).
fn substitute(pattern: &[u8], element: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let star = pattern.iter().position(|&b| b == b'*')?;
    let (key_part, field) = match pattern.windows(2).rposition(|w| w == b"->") {
        Some(arrow) if arrow > star => (&pattern[..arrow], Some(pattern[arrow + 2..].to_vec())),
        _ => (pattern, None),
    };
    let mut key = Vec::with_capacity(key_part.len() + element.len());
    key.extend_from_slice(&key_part[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&key_part[star + 1..]);
    Some((key, field))
}

/// The value a pattern yields for `element`, or `None` (missing key, field or wrong type).
fn lookup(
    db: &mut Db,
    pattern: &[u8],
    element: &[u8],
    slot: u16,
    what: &str,
    now: u64,
) -> Result<Option<Vec<u8>>, String> {
    if pattern == b"#" {
        return Ok(Some(element.to_vec()));
    }
    let Some((key, field)) = substitute(pattern, element) else {
        return Ok(None);
    };
    if key_slot(&key) != slot {
        return Err(format!(
            "ERR {what} option of SORT denied in Cluster mode when keys in different slots"
        ));
    }
    Ok(match (db.get(&key, now), field) {
        (Some(Value::Str(s)), None) => Some(s.to_vec()),
        (Some(Value::Hash(h)), Some(f)) => h.get(&f).map(|v| v.to_vec()),
        _ => None,
    })
}

fn sort_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, read_only: bool) {
    let key = a.get(1);
    let slot = key_slot(key);
    let (mut by, mut gets, mut limit, mut desc, mut alpha, mut store) = (
        None::<&[u8]>,
        Vec::<&[u8]>::new(),
        None,
        false,
        false,
        None::<&[u8]>,
    );
    let mut i = 2;
    while i < a.len() {
        let opt = a.get(i).to_ascii_lowercase();
        let has = |n: usize| i + n < a.len();
        match opt.as_slice() {
            b"asc" => desc = false,
            b"desc" => desc = true,
            b"alpha" => alpha = true,
            b"by" if has(1) => {
                by = Some(a.get(i + 1));
                i += 1;
            }
            b"get" if has(1) => {
                gets.push(a.get(i + 1));
                i += 1;
            }
            b"limit" if has(2) => {
                let (Some(o), Some(n)) = (parse_i64(a.get(i + 1)), parse_i64(a.get(i + 2))) else {
                    return out.error(err::NOT_INT);
                };
                limit = Some((o, n));
                i += 2;
            }
            b"store" if has(1) && !read_only => {
                store = Some(a.get(i + 1));
                i += 1;
            }
            _ => return out.error(err::SYNTAX),
        }
        i += 1;
    }
    if let Some(dst) = store
        && key_slot(dst) != slot
    {
        return out.error(err::CROSSSLOT);
    }
    let elements: Vec<Vec<u8>> = match db.get(key, c.now_ms) {
        None => Vec::new(),
        Some(Value::List(l)) => l.iter().map(|e| e.to_vec()).collect(),
        Some(Value::Set(s)) => s.members(),
        Some(Value::ZSet(z)) => {
            let mut v = Vec::with_capacity(z.len());
            z.for_each_in_order(|m| v.push(m.to_vec()));
            v
        }
        Some(_) => return out.error(err::WRONGTYPE),
    };
    // Sort keys: the element itself or its BY weight.
    let nosort = by.is_some_and(|p| !p.contains(&b'*'));
    let mut keyed: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(elements.len());
    for e in elements {
        let weight = match by {
            None => Some(e.clone()),
            Some(_) if nosort => None,
            Some(p) => match lookup(db, p, &e, slot, "BY", c.now_ms) {
                Ok(w) => w,
                Err(msg) => return out.error(&msg),
            },
        };
        keyed.push((e, weight));
    }
    if !nosort {
        if alpha {
            keyed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        } else {
            let mut scored = Vec::with_capacity(keyed.len());
            for (e, w) in keyed {
                let score = match &w {
                    None => 0.0,
                    // Redis's `strtod` with nothing after the number and no ERANGE: leading
                    // spaces and hexadecimal taken, `1e309` refused.
                    Some(w) => match super::zsets::score_arg(w.trim_ascii_start()) {
                        Some(s) => s,
                        None => {
                            return out
                                .error("ERR One or more scores can't be converted into double");
                        }
                    },
                };
                scored.push((e, score));
            }
            scored.sort_by(|a, b| {
                a.1.partial_cmp(&b.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.0.cmp(&b.0))
            });
            keyed = scored.into_iter().map(|(e, _)| (e, None)).collect();
        }
        if desc {
            keyed.reverse();
        }
    } else if desc {
        // Without sorting, DESC walks the source from its end (as Redis does for lists and
        // sorted sets).
        keyed.reverse();
    }
    let n = keyed.len() as i64;
    let (from, to) = match limit {
        None => (0, n),
        Some((o, cnt)) => {
            let start = o.clamp(0, n);
            let end = if cnt < 0 {
                n
            } else {
                start.saturating_add(cnt).min(n)
            };
            (start, end)
        }
    };
    let selected = &keyed[from as usize..to as usize];
    // Project through GET patterns (each element yields one value per pattern).
    let mut rows: Vec<Option<Vec<u8>>> = Vec::with_capacity(selected.len() * gets.len().max(1));
    for (e, _) in selected {
        if gets.is_empty() {
            rows.push(Some(e.clone()));
        }
        for g in &gets {
            match lookup(db, g, e, slot, "GET", c.now_ms) {
                Ok(v) => rows.push(v),
                Err(msg) => return out.error(&msg),
            }
        }
    }
    match store {
        Some(dst) => {
            let len = rows.len();
            if len == 0 {
                db.remove(dst, c.now_ms);
            } else {
                let t = db.tunables;
                let mut list = super::lists::List::default();
                for v in rows {
                    list.push_back(&v.unwrap_or_default(), &t);
                }
                db.set(dst, Value::List(Box::new(list)), None, false);
            }
            out.int(len as i64)
        }
        None => {
            out.array(rows.len());
            for r in rows {
                match r {
                    Some(v) => out.bulk(&v),
                    None => out.null(),
                }
            }
        }
    }
}

pub fn sort(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    sort_generic(db, a, c, out, false)
}

pub fn sort_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    sort_generic(db, a, c, out, true)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    #[test]
    fn numeric_alpha_limit_and_store() {
        let mut h = Harness::new();
        h.run("RPUSH {s}l 3 1 2 10");
        assert_eq!(h.run("SORT {s}l"), arr(&["1", "2", "3", "10"]));
        assert_eq!(h.run("SORT {s}l DESC LIMIT 1 2"), arr(&["3", "2"]));
        // Regression (issue 15): start + count overflowed, then a slice index panicked.
        assert_eq!(
            h.run("SORT {s}l LIMIT 2 9223372036854775807"),
            arr(&["3", "10"])
        );
        assert_eq!(
            h.run("SORT_RO {s}l LIMIT 9223372036854775807 9223372036854775807"),
            "*0\r\n"
        );
        assert_eq!(h.run("SORT {s}l LIMIT -5 1"), arr(&["1"]));
        assert_eq!(h.run("SORT {s}l ALPHA"), arr(&["1", "10", "2", "3"]));
        assert_eq!(h.run("SORT {s}l STORE {s}out"), int(4));
        assert_eq!(h.run("LRANGE {s}out 0 -1"), arr(&["1", "2", "3", "10"]));
        assert_eq!(
            h.run("SORT_RO {s}l STORE {s}out"),
            error("ERR syntax error")
        );
        h.run("RPUSH {s}bad a 1");
        assert_eq!(
            h.run("SORT {s}bad"),
            error("ERR One or more scores can't be converted into double")
        );
        h.run("SADD {s}set c a b");
        assert_eq!(h.run("SORT {s}set ALPHA"), arr(&["a", "b", "c"]));
        h.run("ZADD {s}z 3 x 1 y 2 z");
        assert_eq!(h.run("SORT {s}z BY nosort"), arr(&["y", "z", "x"]));
        assert_eq!(h.run("SORT {s}z BY nosort DESC"), arr(&["x", "z", "y"]));
        assert_eq!(h.run("SORT {s}none"), "*0\r\n");
        h.run("SET {s}str v");
        assert_eq!(
            h.run("SORT {s}str"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    #[test]
    fn by_and_get_patterns_within_the_slot() {
        let mut h = Harness::new();
        h.run("RPUSH {u}ids 1 2 3");
        h.run("SET {u}w_1 30");
        h.run("SET {u}w_2 10");
        h.run("SET {u}w_3 20");
        h.run("HSET {u}h_1 name ann");
        h.run("HSET {u}h_2 name bob");
        assert_eq!(h.run("SORT {u}ids BY {u}w_*"), arr(&["2", "3", "1"]));
        assert_eq!(
            h.run("SORT {u}ids BY {u}w_* GET # GET {u}h_*->name"),
            format!(
                "*6\r\n{}{}{}{}{}{}",
                bulk("2"),
                bulk("bob"),
                bulk("3"),
                NIL,
                bulk("1"),
                bulk("ann")
            )
        );
        assert_eq!(
            h.run("SORT {u}ids BY w_*"),
            error("ERR BY option of SORT denied in Cluster mode when keys in different slots")
        );
        assert_eq!(
            h.run("SORT {u}ids GET other_*"),
            error("ERR GET option of SORT denied in Cluster mode when keys in different slots")
        );
    }
}
