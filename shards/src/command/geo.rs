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

/// Redis's geohash arithmetic (`geohash.c`, `geohash_helper.c`), bit for bit.
pub mod geohash {
    pub const LAT_MIN: f64 = -85.05112878;
    pub const LAT_MAX: f64 = 85.05112878;
    pub const LON_MIN: f64 = -180.0;
    pub const LON_MAX: f64 = 180.0;
    pub const STEP_MAX: u32 = 26;
    pub const EARTH_RADIUS: f64 = 6372797.560856;
    const MERCATOR_MAX: f64 = 20037726.37;
    const D_R: f64 = std::f64::consts::PI / 180.0;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct Hash {
        pub bits: u64,
        pub step: u32,
    }

    impl Hash {
        /// Redis's `HASHISZERO`: a box left out of a search.
        pub fn is_zero(self) -> bool {
            self.bits == 0 && self.step == 0
        }

        /// The scores `[min, max)` of the members inside this box.
        pub fn score_range(self) -> (u64, u64) {
            let shift = 52 - self.step * 2;
            (self.bits << shift, (self.bits + 1) << shift)
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub struct Range {
        pub min: f64,
        pub max: f64,
    }

    pub const LON: Range = Range {
        min: LON_MIN,
        max: LON_MAX,
    };
    pub const LAT: Range = Range {
        min: LAT_MIN,
        max: LAT_MAX,
    };

    #[derive(Clone, Copy, Debug)]
    pub struct Area {
        pub lon: Range,
        pub lat: Range,
    }

    /// Spreads the low 32 bits of `v` to the even bit positions.
    fn spread(v: u32) -> u64 {
        let mut x = v as u64;
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        (x | (x << 1)) & 0x5555_5555_5555_5555
    }

    /// The even bit positions of `v`, packed.
    fn squash(v: u64) -> u32 {
        let mut x = v & 0x5555_5555_5555_5555;
        x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
        x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
        (x | (x >> 16)) as u32
    }

    /// Latitude bits at even positions, longitude bits at odd ones.
    pub fn interleave(lat: u32, lon: u32) -> u64 {
        spread(lat) | (spread(lon) << 1)
    }

    /// `(latitude bits, longitude bits)`.
    pub fn deinterleave(v: u64) -> (u32, u32) {
        (squash(v), squash(v >> 1))
    }

    /// `geohashEncode`: `None` outside Redis's limits or the ranges.
    pub fn encode(lon_r: Range, lat_r: Range, lon: f64, lat: f64, step: u32) -> Option<Hash> {
        if step == 0 || step > 32 {
            return None;
        }
        if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
            return None;
        }
        if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
            return None;
        }
        let mut lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min);
        let mut lon_off = (lon - lon_r.min) / (lon_r.max - lon_r.min);
        lat_off *= (1u64 << step) as f64;
        lon_off *= (1u64 << step) as f64;
        Some(Hash {
            bits: interleave(lat_off as u32, lon_off as u32),
            step,
        })
    }

    /// `geohashDecode`.
    pub fn decode(lon_r: Range, lat_r: Range, h: Hash) -> Option<Area> {
        if h.is_zero() {
            return None;
        }
        let (ilat, ilon) = deinterleave(h.bits);
        let div = (1u64 << h.step) as f64;
        let (lat_scale, lon_scale) = (lat_r.max - lat_r.min, lon_r.max - lon_r.min);
        Some(Area {
            lat: Range {
                min: lat_r.min + (ilat as f64 * 1.0 / div) * lat_scale,
                max: lat_r.min + (ilat.wrapping_add(1) as f64 * 1.0 / div) * lat_scale,
            },
            lon: Range {
                min: lon_r.min + (ilon as f64 * 1.0 / div) * lon_scale,
                max: lon_r.min + (ilon.wrapping_add(1) as f64 * 1.0 / div) * lon_scale,
            },
        })
    }

    /// The centre of a box, clamped to the limits: `[longitude, latitude]`.
    pub fn center(a: Area) -> [f64; 2] {
        let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
        let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
        [lon, lat]
    }

    /// C's `(uint64_t)` of a double as x86-64 code computes it (Redis casts a member's score so;
    /// a score that is not a geohash still decodes to some position there).
    pub fn c_u64(v: f64) -> u64 {
        const TWO63: f64 = 9_223_372_036_854_775_808.0;
        if v < TWO63 {
            c_i64(v) as u64
        } else {
            (c_i64(v - TWO63) as u64) ^ (1u64 << 63)
        }
    }

    /// The position a member's score stands for (`decodeGeohash`).
    pub fn position(score: f64) -> Option<[f64; 2]> {
        let h = Hash {
            bits: c_u64(score),
            step: STEP_MAX,
        };
        decode(LON, LAT, h).map(center)
    }

    /// The score of a position, as an integer (`None` outside the limits).
    pub fn score(lon: f64, lat: f64) -> Option<u64> {
        encode(LON, LAT, lon, lat, STEP_MAX).map(|h| h.bits)
    }

    /// C's `(long long)` of a double on x86-64 (`cvttsd2si`): truncation, or `i64::MIN` when
    /// out of range or NaN (WITHHASH prints a member's score so).
    pub fn c_i64(v: f64) -> i64 {
        const TWO63: f64 = 9_223_372_036_854_775_808.0;
        if v.is_nan() || !(-TWO63..TWO63).contains(&v) {
            i64::MIN
        } else {
            v as i64
        }
    }

    fn deg_rad(d: f64) -> f64 {
        d * D_R
    }

    fn rad_deg(r: f64) -> f64 {
        r / D_R
    }

    pub fn lat_distance(lat1: f64, lat2: f64) -> f64 {
        EARTH_RADIUS * (deg_rad(lat2) - deg_rad(lat1)).abs()
    }

    /// Haversine distance in meters (`geohashGetDistance`).
    pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
        let (lon1r, lon2r) = (deg_rad(lon1), deg_rad(lon2));
        let v = ((lon2r - lon1r) / 2.0).sin();
        if v == 0.0 {
            return lat_distance(lat1, lat2);
        }
        let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
        let u = ((lat2r - lat1r) / 2.0).sin();
        let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
        2.0 * EARTH_RADIUS * a.sqrt().asin()
    }

    /// The shape of a search, in meters.
    #[derive(Clone, Copy, Debug)]
    pub enum Shape {
        Radius(f64),
        Box { width: f64, height: f64 },
    }

    /// The distance from `center` to `p` if `p` is inside `shape`
    /// (`geohashGetDistanceIfInRadius` / `...IfInRectangle`).
    pub fn within(shape: Shape, center: [f64; 2], p: [f64; 2]) -> Option<f64> {
        let [x1, y1] = center;
        let [x2, y2] = p;
        match shape {
            Shape::Radius(r) => {
                let d = distance(x1, y1, x2, y2);
                (d <= r).then_some(d)
            }
            Shape::Box { width, height } => {
                if lat_distance(y2, y1) > height / 2.0 {
                    return None;
                }
                if distance(x2, y2, x1, y2) > width / 2.0 {
                    return None;
                }
                Some(distance(x1, y1, x2, y2))
            }
        }
    }

    fn steps_by_radius(mut range: f64, lat: f64) -> u32 {
        if range == 0.0 {
            return 26;
        }
        let mut step: i32 = 1;
        while range < MERCATOR_MAX {
            range *= 2.0;
            step += 1;
        }
        step -= 2;
        if !(-66.0..=66.0).contains(&lat) {
            step -= 1;
            if !(-80.0..=80.0).contains(&lat) {
                step -= 1;
            }
        }
        step.clamp(1, 26) as u32
    }

    fn move_x(h: &mut Hash, d: i8) {
        if d == 0 {
            return;
        }
        let mut x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
        let y = h.bits & 0x5555_5555_5555_5555;
        let zz = 0x5555_5555_5555_5555u64 >> (64 - h.step * 2);
        if d > 0 {
            x = x.wrapping_add(zz + 1);
        } else {
            x |= zz;
            x = x.wrapping_sub(zz + 1);
        }
        x &= 0xaaaa_aaaa_aaaa_aaaau64 >> (64 - h.step * 2);
        h.bits = x | y;
    }

    fn move_y(h: &mut Hash, d: i8) {
        if d == 0 {
            return;
        }
        let x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
        let mut y = h.bits & 0x5555_5555_5555_5555;
        let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> (64 - h.step * 2);
        if d > 0 {
            y = y.wrapping_add(zz + 1);
        } else {
            y |= zz;
            y = y.wrapping_sub(zz + 1);
        }
        y &= 0x5555_5555_5555_5555u64 >> (64 - h.step * 2);
        h.bits = x | y;
    }

    fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
        let mut m = h;
        move_x(&mut m, dx);
        move_y(&mut m, dy);
        m
    }

    /// The boxes a search looks in, in Redis's order: the centre's, then north, south, east,
    /// west, north-east, north-west, south-east, south-west; a zero hash is a box left out
    /// (`geohashCalculateAreasByShapeWGS84`).
    pub fn search_boxes(center: [f64; 2], shape: Shape) -> [Hash; 9] {
        let [lon, lat] = center;
        let (half_h, half_w) = match shape {
            Shape::Radius(r) => (r, r),
            Shape::Box { width, height } => (height / 2.0, width / 2.0),
        };
        let lat_delta = rad_deg(half_h / EARTH_RADIUS);
        let lon_top = rad_deg(half_w / EARTH_RADIUS / deg_rad(lat + lat_delta).cos());
        let lon_bottom = rad_deg(half_w / EARTH_RADIUS / deg_rad(lat - lat_delta).cos());
        let south = lat < 0.0;
        let min_lon = if south {
            lon - lon_bottom
        } else {
            lon - lon_top
        };
        let max_lon = if south {
            lon + lon_bottom
        } else {
            lon + lon_top
        };
        let (min_lat, max_lat) = (lat - lat_delta, lat + lat_delta);
        let radius = match shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        };
        let mut steps = steps_by_radius(radius, lat);
        let at = |steps: u32| {
            let h = encode(LON, LAT, lon, lat, steps).unwrap_or(Hash {
                bits: 0,
                step: steps,
            });
            let n = [
                moved(h, 0, 1),
                moved(h, 0, -1),
                moved(h, 1, 0),
                moved(h, -1, 0),
                moved(h, 1, 1),
                moved(h, -1, 1),
                moved(h, 1, -1),
                moved(h, -1, -1),
            ];
            (h, n)
        };
        let (mut h, mut n) = at(steps);
        let area_of = |h: Hash| decode(LON, LAT, h);
        let decrease = {
            let [north, south_, east, west] = [n[0], n[1], n[2], n[3]].map(area_of);
            north.is_some_and(|a| a.lat.max < max_lat)
                || south_.is_some_and(|a| a.lat.min > min_lat)
                || east.is_some_and(|a| a.lon.max < max_lon)
                || west.is_some_and(|a| a.lon.min > min_lon)
        };
        if steps > 1 && decrease {
            steps -= 1;
            (h, n) = at(steps);
        }
        // n: north, south, east, west, north-east, north-west, south-east, south-west.
        if steps >= 2
            && let Some(area) = area_of(h)
        {
            let zero = Hash::default();
            if area.lat.min < min_lat {
                n[1] = zero;
                n[7] = zero;
                n[6] = zero;
            }
            if area.lat.max > max_lat {
                n[0] = zero;
                n[4] = zero;
                n[5] = zero;
            }
            if area.lon.min < min_lon {
                n[3] = zero;
                n[7] = zero;
                n[5] = zero;
            }
            if area.lon.max > max_lon {
                n[2] = zero;
                n[6] = zero;
                n[4] = zero;
            }
        }
        [h, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
    }

    /// The standard 11-character geohash of a position (GEOHASH): re-encoded on latitudes
    /// -90..90, the last character always the first of the alphabet (52 bits).
    pub fn text(p: [f64; 2]) -> [u8; 11] {
        const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
        let std_lat = Range {
            min: -90.0,
            max: 90.0,
        };
        let bits = encode(LON, std_lat, p[0], p[1], STEP_MAX).map_or(0, |h| h.bits);
        let mut out = [ALPHABET[0]; 11];
        for (i, c) in out.iter_mut().enumerate().take(10) {
            *c = ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
        }
        out
    }
}

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
mod tests {
    use super::geohash;
    use crate::command::testing::*;

    #[test]
    fn positions_hash_and_decode_as_redis_does() {
        // Redis's documentation and redis-server 7.0 give these for Palermo and Catania.
        let palermo = geohash::score(13.361389, 38.115556).unwrap();
        assert_eq!(palermo, 3479099956230698);
        let p = geohash::position(palermo as f64).unwrap();
        assert_eq!(format!("{:.17}", p[0]), "13.36138933897018433");
        assert_eq!(format!("{:.17}", p[1]), "38.11555639549629859");
        assert_eq!(&geohash::text(p), b"sqc8b49rny0");
        let catania = geohash::position(geohash::score(15.087269, 37.502669).unwrap() as f64);
        let c = catania.unwrap();
        assert_eq!(
            format!("{:.4}", geohash::distance(p[0], p[1], c[0], c[1])),
            "166274.1516"
        );
        assert_eq!(geohash::score(180.1, 0.0), None);
        assert_eq!(geohash::score(0.0, 85.06), None);
        // Scores that are not geohashes decode as x86-64 casts them in Redis.
        assert_eq!(geohash::c_u64(-5.0), u64::MAX - 4);
        assert_eq!(geohash::c_u64(f64::INFINITY), 0);
        assert_eq!(
            geohash::c_u64(1e20),
            0,
            "past 2^64, as redis-server decodes 1e20"
        );
        for v in [0u32, 1, 0x3ff_ffff, u32::MAX, 0x1234_5678] {
            let (lat, lon) = geohash::deinterleave(geohash::interleave(v, v.rotate_left(7)));
            assert_eq!((lat, lon), (v, v.rotate_left(7)));
        }
    }

    #[test]
    fn commands_answer_as_redis_does() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania"),
            int(2)
        );
        assert_eq!(
            h.run("GEOADD g 200 10 x"),
            error("ERR invalid longitude,latitude pair 200.000000,10.000000")
        );
        assert_eq!(h.run("GEOADD g NX XX 1 1 x"), error("ERR syntax error"));
        assert_eq!(h.run("GEODIST g Palermo Catania km"), bulk("166.2742"));
        assert_eq!(h.run("GEODIST g Palermo nobody"), NIL);
        assert_eq!(
            h.run("GEODIST g Palermo Catania yd"),
            error("ERR unsupported unit provided. please use M, KM, FT, MI")
        );
        assert_eq!(
            h.run("GEOPOS g Palermo nobody"),
            format!(
                "*2\r\n*2\r\n{}{}*-1\r\n",
                bulk("13.36138933897018433"),
                bulk("38.11555639549629859")
            )
        );
        assert_eq!(
            h.run("GEOHASH g Palermo Catania"),
            format!("*2\r\n{}{}", bulk("sqc8b49rny0"), bulk("sqdtr74hyu0"))
        );
        assert_eq!(
            h.run("GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHDIST"),
            format!(
                "*2\r\n*2\r\n{}{}*2\r\n{}{}",
                bulk("Catania"),
                bulk("56.4413"),
                bulk("Palermo"),
                bulk("190.4424")
            )
        );
        assert_eq!(
            h.run("GEOSEARCH g FROMLONLAT 15 37 BYBOX 400 400 km DESC COUNT 1"),
            format!("*1\r\n{}", bulk("Palermo"))
        );
        assert_eq!(
            h.run("GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 1 km ANY"),
            error("ERR the ANY argument requires COUNT argument")
        );
        assert_eq!(
            h.run("GEOSEARCH g BYRADIUS 1 km FROMMEMBER Palermo FROMLONLAT 1 1"),
            error("ERR syntax error")
        );
        assert_eq!(
            h.run("GEORADIUSBYMEMBER g nobody 1 km"),
            error("ERR could not decode requested zset member")
        );
        assert_eq!(
            h.run("GEOSEARCHSTORE d g FROMMEMBER Palermo BYRADIUS 200 km"),
            int(2)
        );
        assert_eq!(h.run("ZSCORE d Catania"), bulk("3479447370796909"));
        assert_eq!(h.run("GEORADIUS g 15 37 200 km STOREDIST d"), int(2));
        assert_eq!(h.run("ZSCORE d Catania"), bulk("56.441257870158204"));
        assert_eq!(
            h.run("GEORADIUS_RO g 15 37 200 km STORE d"),
            error("ERR syntax error")
        );
        // A missing source empties the destination.
        assert_eq!(
            h.run("GEOSEARCHSTORE d none FROMMEMBER x BYRADIUS 1 km"),
            int(0)
        );
        assert_eq!(h.run("EXISTS d"), int(0));
    }

    #[test]
    fn the_store_key_of_georadius_is_a_key_for_routing() {
        let spec = crate::command::lookup(b"georadius").unwrap();
        let words: Vec<&[u8]> = "GEORADIUS src 1 2 3 km COUNT store STORE dst"
            .split(' ')
            .map(str::as_bytes)
            .collect();
        let (buf, spans) = buf_and_spans(&words);
        let keys: Vec<usize> = spec
            .keys_of(crate::command::Args::new(&buf, &spans))
            .collect();
        assert_eq!(keys, vec![9, 1], "COUNT's value is not an option");
    }
}
