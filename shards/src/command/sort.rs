//! SORT and SORT_RO: the elements of a list, set or sorted set, ordered numerically or with ALPHA,
//! optionally by external weights (BY pattern) and projected through GET patterns, with LIMIT and
//! STORE. On a vShard's own thread, as in Redis Cluster, the keys a BY or GET pattern names must
//! hash to the sorted key's slot; a SORT whose patterns may name keys elsewhere
//! (`patterns_leave_slot`) runs as a transaction across vShards instead, on a scratch keyspace
//! that holds every key it names (`Db::across_slots`; `pattern_keys` says which before it runs).

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
    if !db.across_slots && key_slot(&key) != slot {
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

/// The index of SORT's STORE destination in `a`, if it has one (the last STORE's, as Redis
/// takes it), skipping LIMIT's, BY's and GET's arguments as Redis's `sortGetKeys` does.
pub fn store_key_index(a: &Args) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < a.len() {
        let w = a.get(i);
        let skip = if w.eq_ignore_ascii_case(b"limit") {
            2
        } else if w.eq_ignore_ascii_case(b"get") || w.eq_ignore_ascii_case(b"by") {
            1
        } else if w.eq_ignore_ascii_case(b"store") {
            if i + 1 < a.len() {
                found = Some(i + 1);
            }
            1
        } else {
            0
        };
        i += skip + 1;
    }
    found
}

/// SORT's options.
#[derive(Default)]
struct Opts<'a> {
    by: Option<&'a [u8]>,
    gets: Vec<&'a [u8]>,
    limit: Option<(i64, i64)>,
    desc: bool,
    alpha: bool,
    store: Option<&'a [u8]>,
}

impl<'a> Opts<'a> {
    /// SORT's (or, `read_only`, SORT_RO's) options from its arguments after the key.
    fn parse(a: Args<'a>, read_only: bool) -> Result<Opts<'a>, &'static str> {
        let mut o = Opts::default();
        let mut i = 2;
        while i < a.len() {
            let opt = a.get(i).to_ascii_lowercase();
            let has = |n: usize| i + n < a.len();
            match opt.as_slice() {
                b"asc" => o.desc = false,
                b"desc" => o.desc = true,
                b"alpha" => o.alpha = true,
                b"by" if has(1) => {
                    o.by = Some(a.get(i + 1));
                    i += 1;
                }
                b"get" if has(1) => {
                    o.gets.push(a.get(i + 1));
                    i += 1;
                }
                b"limit" if has(2) => {
                    let (Some(off), Some(n)) = (parse_i64(a.get(i + 1)), parse_i64(a.get(i + 2)))
                    else {
                        return Err(err::NOT_INT);
                    };
                    o.limit = Some((off, n));
                    i += 2;
                }
                b"store" if has(1) && !read_only => {
                    o.store = Some(a.get(i + 1));
                    i += 1;
                }
                _ => return Err(err::SYNTAX),
            }
            i += 1;
        }
        Ok(o)
    }

    /// The patterns that name keys: BY's unless constant (nosort), GET's but `#`.
    fn key_patterns(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let by = self.by.filter(|p| p.contains(&b'*'));
        by.into_iter()
            .chain(self.gets.iter().copied().filter(|g| *g != b"#"))
            .filter(|p| p.contains(&b'*'))
    }
}

/// Whether the SORT (or SORT_RO) of `a` may name keys outside its sorted key's slot through
/// its BY or GET patterns: a pattern naming keys whose key part has no hash tag before its
/// `*` (the element decides the slot then), or a tag of another slot. A malformed SORT names
/// none (it answers its error where it runs).
pub fn patterns_leave_slot(a: Args) -> bool {
    if a.len() < 2 {
        return false;
    }
    let read_only = a.get(0).eq_ignore_ascii_case(b"sort_ro");
    let Ok(o) = Opts::parse(a, read_only) else {
        return false;
    };
    let slot = key_slot(a.get(1));
    o.key_patterns().any(|p| {
        let star = p
            .iter()
            .position(|&b| b == b'*')
            .expect("a pattern naming keys");
        let before = &p[..star];
        // The substituted key's tag is fixed by the pattern when its first `{` and the
        // first `}` after it both come before the `*`, with something between.
        let fixed = before.iter().position(|&b| b == b'{').is_some_and(|open| {
            before[open + 1..]
                .iter()
                .position(|&b| b == b'}')
                .is_some_and(|close| close > 0)
        });
        !fixed || key_slot(before) != slot
    })
}

/// The keys the BY and GET patterns of the SORT (or SORT_RO) of `a` name for the elements its
/// key holds in `db` at `now_ms`, each once, in order: what a transaction running it must
/// hold. None for a SORT that names none, is malformed or sorts a value of another type (it
/// answers its error, or its result, from what it holds).
pub fn pattern_keys(db: &mut Db, a: Args, now_ms: u64) -> Vec<Vec<u8>> {
    if a.len() < 2 {
        return Vec::new();
    }
    let read_only = a.get(0).eq_ignore_ascii_case(b"sort_ro");
    let Ok(o) = Opts::parse(a, read_only) else {
        return Vec::new();
    };
    let patterns: Vec<&[u8]> = o.key_patterns().collect();
    if patterns.is_empty() {
        return Vec::new();
    }
    let Ok(elements) = elements(db, a.get(1), now_ms) else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::new();
    for e in &elements {
        for p in &patterns {
            if let Some((k, _)) = substitute(p, e)
                && seen.insert(k.clone())
            {
                keys.push(k);
            }
        }
    }
    keys
}

/// The elements of the sorted key: a list's in order, a set's, a sorted set's by score.
fn elements(db: &mut Db, key: &[u8], now_ms: u64) -> Result<Vec<Vec<u8>>, ()> {
    Ok(match db.get(key, now_ms) {
        None => Vec::new(),
        Some(Value::List(l)) => l.iter().map(|e| e.to_vec()).collect(),
        Some(Value::Set(s)) => s.members(),
        Some(Value::ZSet(z)) => {
            let mut v = Vec::with_capacity(z.len());
            z.for_each_in_order(|m| v.push(m.to_vec()));
            v
        }
        Some(_) => return Err(()),
    })
}

fn sort_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, read_only: bool) {
    let key = a.get(1);
    let slot = key_slot(key);
    let Opts {
        by,
        gets,
        limit,
        desc,
        alpha,
        store,
    } = match Opts::parse(a, read_only) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    // (Routing brings the destination here: its vShard's, or one keyspace for both.)
    if let Some(dst) = store
        && !db.across_slots
        && !db.owns_slot(key_slot(dst))
    {
        return out.error(err::CROSSSLOT);
    }
    let Ok(elements) = elements(db, key, c.now_ms) else {
        return out.error(err::WRONGTYPE);
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
    fn the_store_key_and_the_keys_patterns_name_are_known_before_it_runs() {
        use super::{pattern_keys, patterns_leave_slot, store_key_index};
        use crate::command::Args;
        let parse = |s: &str| -> (Vec<u8>, Vec<(u32, u32)>) {
            let mut buf = Vec::new();
            let mut spans = Vec::new();
            for w in s.split(' ') {
                let start = buf.len() as u32;
                buf.extend_from_slice(w.as_bytes());
                spans.push((start, buf.len() as u32));
            }
            (buf, spans)
        };
        let with = |s: &str, f: &dyn Fn(Args) -> String| {
            let (buf, spans) = parse(s);
            f(Args::new(&buf, &spans))
        };
        let store = |s: &str| with(s, &|a| format!("{:?}", store_key_index(&a)));
        assert_eq!(store("SORT l STORE d"), "Some(3)");
        // The last STORE; LIMIT's, BY's and GET's arguments are never taken for it.
        assert_eq!(store("SORT l STORE d STORE e"), "Some(5)");
        assert_eq!(store("SORT l GET store BY store LIMIT 0 1"), "None");
        assert_eq!(store("SORT l STORE"), "None");
        let leaves = |s: &str| with(s, &|a| patterns_leave_slot(a).to_string());
        assert_eq!(leaves("SORT {u}l BY w_*"), "true");
        assert_eq!(leaves("SORT {u}l BY {u}w_* GET {u}h_*->f GET #"), "false");
        assert_eq!(leaves("SORT {u}l GET {v}h_*"), "true", "another tag");
        assert_eq!(leaves("SORT {u}l BY nosort GET #"), "false");
        assert_eq!(leaves("SORT {u}l BY {}w_*"), "true", "an empty tag");
        assert_eq!(leaves("SORT {u}l BY w_{*}"), "true", "the element decides");
        assert_eq!(leaves("SORT {u}l GET constant"), "false", "names no key");
        assert_eq!(
            leaves("SORT {u}l BY w_* BADOPT"),
            "false",
            "answers its error"
        );
        let mut h = Harness::new();
        h.run("RPUSH l b a b");
        let named = |h: &mut Harness, s: &str| {
            let (buf, spans) = parse(s);
            let keys = pattern_keys(&mut h.db, Args::new(&buf, &spans), 0);
            keys.iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            named(&mut h, "SORT l BY w_* GET h_*->f GET #"),
            "w_b h_b w_a h_a"
        );
        assert_eq!(named(&mut h, "SORT l BY nosort"), "");
        assert_eq!(named(&mut h, "SORT missing BY w_*"), "");
        h.run("SET s x");
        assert_eq!(named(&mut h, "SORT s BY w_*"), "", "its WRONGTYPE answers");
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
