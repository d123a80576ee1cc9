//! The GEO commands: GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH, GEOSEARCHSTORE, GEORADIUS,
//! GEORADIUSBYMEMBER and their `_RO` forms. A position is a sorted-set member whose score is a
//! 52-bit interleaved geohash, as in Redis, so a Redis user's sorted-set commands see the same
//! scores and a search returns what Redis returns: the same hashing (`geohash`), the same nine
//! boxes searched in the same order, the same distances (haversine on Redis's earth radius) and
//! the same formatting of coordinates and distances.

use super::zsets::{ZSet, score_arg};
use super::{Args, Ctx, err, read};
use crate::db::Db;
use crate::reply::Out;

pub mod geohash;

use geohash::Shape;

/// Meters per unit (`extractUnitOrReply`).
fn unit(s: &[u8], out: &mut Out) -> Option<f64> {
    let m = match s.to_ascii_lowercase().as_slice() {
        b"m" => 1.0,
        b"km" => 1000.0,
        b"ft" => 0.3048,
        b"mi" => 1609.34,
        _ => {
            out.error("ERR unsupported unit provided. please use M, KM, FT, MI");
            return None;
        }
    };
    Some(m)
}

/// A longitude/latitude pair from `a[i]`, `a[i + 1]` (`extractLongLatOrReply`).
fn lon_lat(a: &Args, i: usize, out: &mut Out) -> Option<[f64; 2]> {
    let mut xy = [0.0; 2];
    for (j, v) in xy.iter_mut().enumerate() {
        match score_arg(a.get(i + j)) {
            Some(f) => *v = f,
            None => {
                out.error(err::NOT_FLOAT);
                return None;
            }
        }
    }
    if !(geohash::LON_MIN..=geohash::LON_MAX).contains(&xy[0])
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&xy[1])
    {
        out.error(&format!(
            "ERR invalid longitude,latitude pair {:.6},{:.6}",
            xy[0], xy[1]
        ));
        return None;
    }
    Some(xy)
}

/// A number that must not be negative, with Redis's message when it is not one.
fn distance_arg(s: &[u8], what: &str, out: &mut Out) -> Option<f64> {
    match score_arg(s) {
        Some(v) => Some(v),
        None => {
            out.error(&format!("ERR need numeric {what}"));
            None
        }
    }
}

/// A coordinate as Redis prints one (`addReplyHumanLongDouble`: 17 decimals, trailing zeros
/// dropped; a bulk string in RESP2, a double in RESP3).
fn coord(out: &mut Out, v: f64) {
    let s = format!("{v:.17}");
    let t = s.trim_end_matches('0').trim_end_matches('.');
    match out.proto {
        crate::reply::Proto::Resp2 => out.bulk(t.as_bytes()),
        _ => out.raw(format!(",{t}\r\n").as_bytes()),
    }
}

/// A distance as Redis prints one (`%.4f`).
fn dist(out: &mut Out, v: f64) {
    out.bulk(format!("{v:.4}").as_bytes())
}

/// GEOADD key [NX|XX] [CH] longitude latitude member [...]: ZADD with the positions' scores.
pub fn geoadd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (mut nx, mut xx) = (false, false);
    let mut i = 2;
    while i < a.len() {
        let o = a.get(i);
        if o.eq_ignore_ascii_case(b"nx") {
            nx = true;
        } else if o.eq_ignore_ascii_case(b"xx") {
            xx = true;
        } else if !o.eq_ignore_ascii_case(b"ch") {
            break;
        }
        i += 1;
    }
    if !(a.len() - i).is_multiple_of(3) || (nx && xx) {
        return out.error(err::SYNTAX);
    }
    let mut scores = Vec::with_capacity((a.len() - i) / 3);
    for j in (i..a.len()).step_by(3) {
        let Some(xy) = lon_lat(&a, j, out) else {
            return;
        };
        let score = geohash::score(xy[0], xy[1]).expect("checked against the limits");
        scores.push(score.to_string().into_bytes());
    }
    // ZADD key <the options as given> score member ...
    let mut words: Vec<&[u8]> = vec![b"ZADD"];
    words.extend((1..i).map(|k| a.get(k)));
    for (n, j) in (i..a.len()).step_by(3).enumerate() {
        words.push(&scores[n]);
        words.push(a.get(j + 2));
    }
    super::blocking::run_words(db, &words, c, out)
}

/// The sorted set at `key` for a read: `Ok(None)` if missing, `Err` (written) if another type.
fn zset<'d>(db: &'d mut Db, key: &[u8], c: &Ctx, out: &mut Out) -> Result<Option<&'d ZSet>, ()> {
    read::<ZSet>(db, key, c.now_ms, out)
}

/// GEOPOS key member [...]
pub fn geopos(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Ok(z) = zset(db, a.get(1), c, out) else {
        return;
    };
    out.array(a.len() - 2);
    for m in a.iter().skip(2) {
        match z.and_then(|z| z.score(m)).and_then(geohash::position) {
            Some(p) => {
                out.array(2);
                coord(out, p[0]);
                coord(out, p[1]);
            }
            None => out.null_array(),
        }
    }
}

/// GEODIST key member1 member2 [unit]
pub fn geodist(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let to_meter = match a.len() {
        5 => match unit(a.get(4), out) {
            Some(u) => u,
            None => return,
        },
        4 => 1.0,
        _ => return out.error(err::SYNTAX),
    };
    let Ok(z) = zset(db, a.get(1), c, out) else {
        return;
    };
    let pos = |m: &[u8]| z.and_then(|z| z.score(m)).and_then(geohash::position);
    match (pos(a.get(2)), pos(a.get(3))) {
        (Some(p), Some(q)) => dist(out, geohash::distance(p[0], p[1], q[0], q[1]) / to_meter),
        _ => out.null(),
    }
}

/// GEOHASH key member [...]
pub fn geohash_cmd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Ok(z) = zset(db, a.get(1), c, out) else {
        return;
    };
    out.array(a.len() - 2);
    for m in a.iter().skip(2) {
        match z.and_then(|z| z.score(m)).and_then(geohash::position) {
            Some(p) => out.bulk(&geohash::text(p)),
            None => out.null(),
        }
    }
}

/// Which search command is parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS(_RO) key lon lat radius unit ...
    Coords { store: bool },
    /// GEORADIUSBYMEMBER(_RO) key member radius unit ...
    Member { store: bool },
    /// GEOSEARCH key ... / GEOSEARCHSTORE dest key ...
    Search { store: bool },
}

/// One member found, as Redis's `geoPoint`.
struct Found {
    member: Vec<u8>,
    score: f64,
    pos: [f64; 2],
    dist: f64,
}

/// Where the options of a search start: after the fixed arguments.
fn base_args(kind: Kind) -> usize {
    match kind {
        Kind::Coords { .. } => 6,
        Kind::Member { .. } => 5,
        Kind::Search { store: true } => 3,
        Kind::Search { store: false } => 2,
    }
}

/// The argument index of GEORADIUS's / GEORADIUSBYMEMBER's STORE or STOREDIST key (the last
/// one given), found as the parser reads the options from `base` (routing needs it).
pub fn store_key_index(a: &Args, base: usize) -> Option<usize> {
    let mut found = None;
    let mut i = base;
    while i < a.len() {
        let w = a.get(i);
        let more = i + 1 < a.len();
        if (w.eq_ignore_ascii_case(b"store") || w.eq_ignore_ascii_case(b"storedist")) && more {
            found = Some(i + 1);
            i += 2;
        } else if w.eq_ignore_ascii_case(b"count") && more {
            i += 2;
        } else {
            i += 1;
        }
    }
    found
}

fn search(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, kind: Kind, name: &str) {
    let src_at = if kind == (Kind::Search { store: true }) {
        2
    } else {
        1
    };
    let src = a.get(src_at);
    // As Redis: the key's type first; a missing key still has its arguments checked.
    let Ok(z) = zset(db, src, c, out) else {
        return;
    };
    let member_pos = |m: &[u8], out: &mut Out| -> Option<[f64; 2]> {
        let p = z.and_then(|z| z.score(m)).and_then(geohash::position);
        if p.is_none() {
            out.error("ERR could not decode requested zset member");
        }
        p
    };
    let mut center: Option<[f64; 2]> = None;
    let mut shape: Option<Shape> = None;
    let mut conversion = 1.0;
    let mut store_key: Option<&[u8]> = None;
    let mut store_dist = false;
    match kind {
        Kind::Coords { .. } => {
            let Some(xy) = lon_lat(&a, 2, out) else {
                return;
            };
            center = Some(xy);
            let Some(r) = radius(&a, 4, &mut conversion, out) else {
                return;
            };
            shape = Some(Shape::Radius(r));
        }
        Kind::Member { .. } if z.is_some() => {
            let Some(xy) = member_pos(a.get(2), out) else {
                return;
            };
            center = Some(xy);
            let Some(r) = radius(&a, 3, &mut conversion, out) else {
                return;
            };
            shape = Some(Shape::Radius(r));
        }
        Kind::Member { .. } => {}
        Kind::Search { store } => {
            if store {
                store_key = Some(a.get(1));
            }
        }
    }
    let is_search = matches!(kind, Kind::Search { .. });
    let no_store = matches!(
        kind,
        Kind::Coords { store: false } | Kind::Member { store: false }
    );
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let mut sort: Option<bool> = None; // Some(true): ascending
    let mut count: i64 = 0;
    let base = base_args(kind);
    let mut i = base;
    while i < a.len() {
        let arg = a.get(i);
        let is = |w: &[u8]| arg.eq_ignore_ascii_case(w);
        let remaining = a.len() - i; // this word and those after it
        if is(b"withdist") {
            withdist = true;
        } else if is(b"withhash") {
            withhash = true;
        } else if is(b"withcoord") {
            withcoord = true;
        } else if is(b"any") {
            any = true;
        } else if is(b"asc") {
            sort = Some(true);
        } else if is(b"desc") {
            sort = Some(false);
        } else if is(b"count") && remaining > 1 {
            let Some(n) = crate::num::parse_i64(a.get(i + 1)) else {
                return out.error(err::NOT_INT);
            };
            if n <= 0 {
                return out.error("ERR COUNT must be > 0");
            }
            count = n;
            i += 1;
        } else if (is(b"store") || is(b"storedist")) && remaining > 1 && !no_store && !is_search {
            store_key = Some(a.get(i + 1));
            store_dist = is(b"storedist");
            i += 1;
        } else if is(b"storedist") && kind == (Kind::Search { store: true }) {
            store_dist = true;
        } else if is(b"frommember") && remaining > 1 && is_search && !from_lonlat {
            if z.is_some() {
                let Some(xy) = member_pos(a.get(i + 1), out) else {
                    return;
                };
                center = Some(xy);
            }
            from_member = true;
            i += 1;
        } else if is(b"fromlonlat") && remaining > 2 && is_search && !from_member {
            let Some(xy) = lon_lat(&a, i + 1, out) else {
                return;
            };
            center = Some(xy);
            from_lonlat = true;
            i += 2;
        } else if is(b"byradius") && remaining > 2 && is_search && !by_box {
            let Some(r) = radius(&a, i + 1, &mut conversion, out) else {
                return;
            };
            shape = Some(Shape::Radius(r));
            by_radius = true;
            i += 2;
        } else if is(b"bybox") && remaining > 3 && is_search && !by_radius {
            let Some(w) = distance_arg(a.get(i + 1), "width", out) else {
                return;
            };
            let Some(h) = distance_arg(a.get(i + 2), "height", out) else {
                return;
            };
            if h < 0.0 || w < 0.0 {
                return out.error("ERR height or width cannot be negative");
            }
            let Some(u) = unit(a.get(i + 3), out) else {
                return;
            };
            conversion = u;
            shape = Some(Shape::Box {
                width: w,
                height: h,
            });
            by_box = true;
            i += 3;
        } else {
            return out.error(err::SYNTAX);
        }
        i += 1;
    }
    if store_key.is_some() && (withdist || withhash || withcoord) {
        let what = if kind == (Kind::Search { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return out.error(&format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        ));
    }
    if is_search && !(from_member || from_lonlat) {
        return out.error(&format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        ));
    }
    if is_search && !(by_radius || by_box) {
        return out.error(&format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        ));
    }
    if any && count == 0 {
        return out.error("ERR the ANY argument requires COUNT argument");
    }
    let (Some(z), Some(center), Some(shape)) = (z, center, shape) else {
        // The source key does not exist.
        if let Some(dst) = store_key {
            db.remove(dst, c.now_ms);
            return out.int(0);
        }
        return out.array(0);
    };
    if count != 0 && sort.is_none() && !any {
        sort = Some(true);
    }
    let meters = match shape {
        Shape::Radius(r) => Shape::Radius(r * conversion),
        Shape::Box { width, height } => Shape::Box {
            width: width * conversion,
            height: height * conversion,
        },
    };
    let limit = if any { count as usize } else { 0 };
    let mut found: Vec<Found> = Vec::new();
    let boxes = geohash::search_boxes(center, meters);
    let mut last: Option<usize> = None;
    for (k, h) in boxes.iter().enumerate() {
        if h.is_zero() {
            continue;
        }
        // Redis skips a box equal to the last one searched (huge radii), but not when that
        // was the centre's (its "last processed" index 0 reads as none).
        if let Some(l) = last
            && l != 0
            && boxes[l] == *h
        {
            continue;
        }
        if !found.is_empty() && limit > 0 && found.len() >= limit {
            break;
        }
        let (min, max) = h.score_range();
        let (min, max) = (min as f64, max as f64);
        let from = z.position(|s, _| s < min);
        let to = z.position(|s, _| s < max);
        let mut full = false;
        z.for_range(from, to, |score, m| {
            if full {
                return;
            }
            let Some(p) = geohash::position(score) else {
                return;
            };
            if let Some(d) = geohash::within(meters, center, p) {
                found.push(Found {
                    member: m.to_vec(),
                    score,
                    pos: p,
                    dist: d,
                });
                if limit > 0 && found.len() >= limit {
                    full = true;
                }
            }
        });
        last = Some(k);
    }
    if found.is_empty() && store_key.is_none() {
        return out.array(0);
    }
    match sort {
        Some(true) => found.sort_by(|x, y| x.dist.total_cmp(&y.dist)),
        Some(false) => found.sort_by(|x, y| y.dist.total_cmp(&x.dist)),
        None => {}
    }
    let n = if count == 0 {
        found.len()
    } else {
        found.len().min(count as usize)
    };
    found.truncate(n);
    if let Some(dst) = store_key {
        let entries: Vec<(f64, Vec<u8>)> = found
            .into_iter()
            .map(|f| {
                let s = if store_dist {
                    f.dist / conversion
                } else {
                    f.score
                };
                (s, f.member)
            })
            .collect();
        return super::zsets::store(db, dst, entries, c, out);
    }
    let extra = withdist as usize + withhash as usize + withcoord as usize;
    out.array(n);
    for f in &found {
        if extra > 0 {
            out.array(extra + 1);
        }
        out.bulk(&f.member);
        if withdist {
            dist(out, f.dist / conversion);
        }
        if withhash {
            out.int(geohash::c_i64(f.score));
        }
        if withcoord {
            out.array(2);
            coord(out, f.pos[0]);
            coord(out, f.pos[1]);
        }
    }
}

/// `radius unit` at `a[i]`, `a[i + 1]` (`extractDistanceOrReply`).
fn radius(a: &Args, i: usize, conversion: &mut f64, out: &mut Out) -> Option<f64> {
    let r = distance_arg(a.get(i), "radius", out)?;
    if r < 0.0 {
        out.error("ERR radius cannot be negative");
        return None;
    }
    *conversion = unit(a.get(i + 1), out)?;
    Some(r)
}

pub fn georadius(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(db, a, c, out, Kind::Coords { store: true }, "georadius")
}

pub fn georadius_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(db, a, c, out, Kind::Coords { store: false }, "georadius_ro")
}

pub fn georadiusbymember(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(
        db,
        a,
        c,
        out,
        Kind::Member { store: true },
        "georadiusbymember",
    )
}

pub fn georadiusbymember_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(
        db,
        a,
        c,
        out,
        Kind::Member { store: false },
        "georadiusbymember_ro",
    )
}

pub fn geosearch(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(db, a, c, out, Kind::Search { store: false }, "geosearch")
}

pub fn geosearchstore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    search(
        db,
        a,
        c,
        out,
        Kind::Search { store: true },
        "geosearchstore",
    )
}

#[cfg(test)]
mod tests;
