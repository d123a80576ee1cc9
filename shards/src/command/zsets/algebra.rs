//! Sorted-set algebra: ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD, with WEIGHTS and
//! AGGREGATE; plain sets count as score 1.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Min,
    Max,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// The parsed arguments of ZUNION, ZINTER, ZDIFF and their STORE forms.
struct Algebra {
    weights: Vec<f64>,
    agg: Agg,
    withscores: bool,
}

/// Parses the arguments and reads the inputs, in Redis's order: the key count, the keys' types,
/// then the options.
fn parse_algebra<'a>(
    db: &mut Db,
    c: &Ctx,
    a: &Args<'a>,
    count_at: usize,
    (op, store, name): (SetOp, bool, &str),
    out: &mut Out,
) -> Option<(Algebra, Vec<Input>)> {
    let n = match parse_i64(a.get(count_at)) {
        Some(n) if n >= 1 => n as usize,
        Some(_) => {
            out.error(&format!(
                "ERR at least 1 input key is needed for '{name}' command"
            ));
            return None;
        }
        None => {
            out.error(err::NOT_INT);
            return None;
        }
    };
    if count_at + 1 + n > a.len() {
        out.error(err::SYNTAX);
        return None;
    }
    let keys: Vec<&[u8]> = (count_at + 1..count_at + 1 + n).map(|i| a.get(i)).collect();
    let ins = inputs(db, &keys, c, out)?;
    let mut p = Algebra {
        weights: vec![1.0; n],
        agg: Agg::Sum,
        withscores: false,
    };
    let mut i = count_at + 1 + n;
    while i < a.len() {
        let opt = a.get(i);
        if op != SetOp::Diff && opt.eq_ignore_ascii_case(b"weights") && i + n < a.len() {
            for j in 0..n {
                match parse_f64(a.get(i + 1 + j)) {
                    Some(w) => p.weights[j] = w,
                    None => {
                        out.error("ERR weight value is not a float");
                        return None;
                    }
                }
            }
            i += n + 1;
            continue;
        }
        if op != SetOp::Diff && opt.eq_ignore_ascii_case(b"aggregate") && i + 1 < a.len() {
            let v = a.get(i + 1);
            p.agg = if v.eq_ignore_ascii_case(b"sum") {
                Agg::Sum
            } else if v.eq_ignore_ascii_case(b"min") {
                Agg::Min
            } else if v.eq_ignore_ascii_case(b"max") {
                Agg::Max
            } else {
                out.error(err::SYNTAX);
                return None;
            };
            i += 2;
            continue;
        }
        if !store && opt.eq_ignore_ascii_case(b"withscores") {
            p.withscores = true;
            i += 1;
            continue;
        }
        out.error(err::SYNTAX);
        return None;
    }
    Some((p, ins))
}

/// One input of an algebra command: its members and scores.
type Input = Vec<(Vec<u8>, f64)>;

/// The members and scores of each input (sets count as score 1); `None` (error written) if one
/// holds another type.
fn inputs(db: &mut Db, keys: &[&[u8]], c: &Ctx, out: &mut Out) -> Option<Vec<Input>> {
    let mut all = Vec::with_capacity(keys.len());
    for key in keys {
        let members = match db.get(key, c.now_ms) {
            None => Vec::new(),
            Some(Value::ZSet(z)) => z.members_and_scores(),
            Some(Value::Set(s)) => s.members().into_iter().map(|m| (m, 1.0)).collect(),
            Some(_) => {
                out.error(err::WRONGTYPE);
                return None;
            }
        };
        all.push(members);
    }
    Some(all)
}

fn aggregate(agg: Agg, a: f64, b: f64) -> f64 {
    match agg {
        Agg::Sum => {
            let s = a + b;
            // inf + -inf: Redis answers 0 rather than NaN.
            if s.is_nan() { 0.0 } else { s }
        }
        Agg::Min => a.min(b),
        Agg::Max => a.max(b),
    }
}

/// Computes the operation; the result is sorted as a sorted set orders its entries.
fn compute(op: SetOp, p: &Algebra, inputs: Vec<Input>) -> Vec<(f64, Vec<u8>)> {
    let weigh = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() { 0.0 } else { v }
    };
    let mut acc: std::collections::HashMap<Vec<u8>, f64> = std::collections::HashMap::new();
    let mut it = inputs.into_iter().enumerate();
    if let Some((_, first)) = it.next() {
        for (m, s) in first {
            let v = if op == SetOp::Diff {
                s
            } else {
                weigh(s, p.weights[0])
            };
            acc.insert(m, v);
        }
    }
    for (i, input) in it {
        match op {
            SetOp::Union => {
                for (m, s) in input {
                    let v = weigh(s, p.weights[i]);
                    acc.entry(m)
                        .and_modify(|old| *old = aggregate(p.agg, *old, v))
                        .or_insert(v);
                }
            }
            SetOp::Inter => {
                let other: std::collections::HashMap<Vec<u8>, f64> = input.into_iter().collect();
                acc.retain(|m, old| match other.get(m) {
                    Some(&s) => {
                        *old = aggregate(p.agg, *old, weigh(s, p.weights[i]));
                        true
                    }
                    None => false,
                });
            }
            SetOp::Diff => {
                for (m, _) in input {
                    acc.remove(&m);
                }
            }
        }
    }
    let mut v: Vec<(f64, Vec<u8>)> = acc.into_iter().map(|(m, s)| (s, m)).collect();
    v.sort_by(|a, b| crate::ostree::cmp_entry(a.0, &a.1, b.0, &b.1));
    v
}

fn algebra(
    db: &mut Db,
    a: Args,
    c: &mut Ctx,
    out: &mut Out,
    op: SetOp,
    store_form: bool,
    name: &str,
) {
    let count_at = if store_form { 2 } else { 1 };
    let Some((p, ins)) = parse_algebra(db, c, &a, count_at, (op, store_form, name), out) else {
        return;
    };
    let result = compute(op, &p, ins);
    if store_form {
        store(db, a.get(1), result, c, out)
    } else {
        write_entries(out, &result, p.withscores)
    }
}

pub fn zunion(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Union, false, "zunion")
}

pub fn zinter(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Inter, false, "zinter")
}

pub fn zdiff(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Diff, false, "zdiff")
}

pub fn zunionstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Union, true, "zunionstore")
}

pub fn zinterstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Inter, true, "zinterstore")
}

pub fn zdiffstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    algebra(db, a, c, out, SetOp::Diff, true, "zdiffstore")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn zintercard(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the keys' types are checked before the options are read.
    let Some(range) = crate::command::card_keys(&a, true, out) else {
        return;
    };
    let keys: Vec<&[u8]> = range.clone().map(|i| a.get(i)).collect();
    let Some(ins) = inputs(db, &keys, c, out) else {
        return;
    };
    let Some(limit) = crate::command::card_limit(&a, range.end, out) else {
        return;
    };
    let p = Algebra {
        weights: vec![1.0; keys.len()],
        agg: Agg::Sum,
        withscores: false,
    };
    out.int(crate::command::capped(compute(SetOp::Inter, &p, ins).len(), limit) as i64)
}
