//! DUMP and RESTORE: a key's value in Redis's serialization format (`crate::rdb`).

use super::{Args, Ctx, err};
use crate::db::Db;
use crate::rdb::{self, PayloadError};
use crate::reply::Out;

pub fn dump(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    match db.get(a.get(1), c.now_ms) {
        Some(v) => out.bulk(&rdb::dump(v)),
        None => out.null(),
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency], checked in
/// Redis 7.0's order: options, an existing key, the TTL, the payload.
pub fn restore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut j = 4;
    while j < a.len() {
        let opt = a.get(j);
        let more = j + 1 < a.len();
        if opt.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if opt.eq_ignore_ascii_case(b"absttl") {
            absttl = true;
        } else if opt.eq_ignore_ascii_case(b"idletime") && more && freq.is_none() {
            j += 1;
            match crate::num::parse_i64(a.get(j)) {
                None => return out.error(err::NOT_INT),
                Some(n) if n < 0 => return out.error("ERR Invalid IDLETIME value, must be >= 0"),
                n => idle = n,
            }
        } else if opt.eq_ignore_ascii_case(b"freq") && more && idle.is_none() {
            j += 1;
            match crate::num::parse_i64(a.get(j)) {
                None => return out.error(err::NOT_INT),
                Some(n) if !(0..=255).contains(&n) => {
                    return out.error("ERR Invalid FREQ value, must be >= 0 and <= 255");
                }
                n => freq = n,
            }
        } else {
            return out.error(err::SYNTAX);
        }
        j += 1;
    }
    let key = a.get(1);
    if !replace && db.exists(key, c.now_ms) {
        return out.error("BUSYKEY Target key name already exists.");
    }
    let ttl = match crate::num::parse_i64(a.get(2)) {
        None => return out.error(err::NOT_INT),
        Some(n) if n < 0 => return out.error("ERR Invalid TTL value, must be >= 0"),
        Some(n) => n,
    };
    let value = match rdb::verify(a.get(3)).and_then(|body| rdb::load(body, &db.tunables)) {
        Ok(v) => v,
        Err(PayloadError::VersionOrChecksum) => {
            return out.error("ERR DUMP payload version or checksum are wrong");
        }
        Err(PayloadError::BadFormat(_)) => return out.error("ERR Bad data format"),
    };
    if replace {
        db.remove(key, c.now_ms);
    }
    let at = if ttl == 0 {
        None
    } else if absttl {
        Some(ttl)
    } else {
        // As Redis computes it (a relative TTL past i64::MAX wraps to the past: the key is
        // taken for expired and not stored; found by the differential run).
        Some(ttl.wrapping_add(c.now_ms as i64))
    };
    // A TTL already past stores nothing (and REPLACE has removed the old value), as in Redis.
    if at.is_some_and(|at| at <= c.now_ms as i64) {
        return out.ok();
    }
    db.set(key, value, at.map(|at| at as u64), false);
    let policy = db.tunables.maxmemory_policy;
    if let (true, Some(f)) = (policy.is_lfu(), freq) {
        let now = crate::evict::lfu_new(c.now_ms);
        db.set_access_meta(key, (now & !0xff) | f as u32);
    } else if let (false, Some(secs)) = (policy.is_lfu(), idle) {
        let stamp = crate::evict::lru_stamp(c.now_ms).wrapping_sub(secs as u32);
        db.set_access_meta(key, stamp);
    }
    out.ok()
}
