//! Redis's geohash arithmetic (`geohash.c`, `geohash_helper.c`), bit for bit: encoding and
//! decoding positions, distances, the boxes a search looks in, the GEOHASH text.

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

/// Moves `h` one cell along the axis whose interleaved bits are `axis` (`X_BITS` for longitude,
/// `Y_BITS` for latitude), by the sign of `d`, as Redis's `geohash_move_x`/`_y`: the axis bits
/// are stepped with the other axis's bits set as carries.
fn move_axis(h: &mut Hash, d: i8, axis: u64) {
    if d == 0 {
        return;
    }
    let other = h.bits & !axis;
    let mut v = h.bits & axis;
    let zz = !axis >> (64 - h.step * 2);
    if d > 0 {
        v = v.wrapping_add(zz + 1);
    } else {
        v |= zz;
        v = v.wrapping_sub(zz + 1);
    }
    v &= axis >> (64 - h.step * 2);
    h.bits = v | other;
}

const X_BITS: u64 = 0xaaaa_aaaa_aaaa_aaaa;
const Y_BITS: u64 = 0x5555_5555_5555_5555;

fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
    let mut m = h;
    move_axis(&mut m, dx, X_BITS);
    move_axis(&mut m, dy, Y_BITS);
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
