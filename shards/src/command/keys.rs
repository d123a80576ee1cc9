//! Keys: DEL UNLINK EXISTS TOUCH EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME TTL PTTL
//! PERSIST TYPE RENAME RENAMENX COPY KEYS SCAN RANDOMKEY DBSIZE FLUSHDB FLUSHALL MEMORY USAGE.

use super::{Args, Ctx, err, int_arg};
use crate::db::{Db, Value};
use crate::glob::glob_match;
use crate::reply::Out;

pub fn del(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let n = a
        .iter()
        .skip(1)
        .filter(|k| db.remove(k, c.now_ms).is_some())
        .count();
    out.int(n as i64)
}

/// EXISTS and TOUCH: counts live keys, a key named twice counting twice.
pub fn exists(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let n = a.iter().skip(1).filter(|k| db.exists(k, c.now_ms)).count();
    out.int(n as i64)
}

/// The shared body of EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT.
fn expire_generic(
    db: &mut Db,
    a: Args,
    c: &mut Ctx,
    out: &mut Out,
    unit_ms: u64,
    absolute: bool,
    name: &str,
) {
    // As Redis: the options (and their conflicts) first, then the number.
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in a.iter().skip(3) {
        let mut kw = [0u8; 16];
        match super::keyword(opt, &mut kw) {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => return out.error(&format!("ERR Unsupported option {}", err::sanitize(opt))),
        }
    }
    if nx && (xx || gt || lt) {
        return out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return out.error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = int_arg(&a, 2, out) else { return };
    // The absolute deadline in ms, computed without overflow (Redis rejects overflowing values).
    let at: i64 = {
        let ms = n.checked_mul(unit_ms as i64);
        let at = if absolute {
            ms
        } else {
            ms.and_then(|ms| ms.checked_add(c.now_ms as i64))
        };
        match at {
            Some(at) => at,
            None => return err::invalid_expire(out, name),
        }
    };
    let key = a.get(1);
    let current = match db.expire_at(key, c.now_ms) {
        None => return out.int(0),
        Some(cur) => cur,
    };
    let allowed = match current {
        None => !(xx || gt),
        Some(cur) => {
            let cur = cur as i64;
            !(nx || (gt && at <= cur) || (lt && at >= cur))
        }
    };
    if !allowed {
        return out.int(0);
    }
    if at <= c.now_ms as i64 {
        db.remove(key, c.now_ms);
    } else {
        db.set_expire(key, at as u64);
    }
    out.int(1)
}

pub fn expire(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    expire_generic(db, a, c, out, 1000, false, "expire")
}

pub fn pexpire(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    expire_generic(db, a, c, out, 1, false, "pexpire")
}

pub fn expireat(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    expire_generic(db, a, c, out, 1000, true, "expireat")
}

pub fn pexpireat(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    expire_generic(db, a, c, out, 1, true, "pexpireat")
}

/// -2 for a missing key, -1 for a persistent one, else `f(deadline_ms)`.
fn ttl_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, f: impl Fn(u64, u64) -> i64) {
    match db.expire_at(a.get(1), c.now_ms) {
        None => out.int(-2),
        Some(None) => out.int(-1),
        Some(Some(at)) => out.int(f(at, c.now_ms)),
    }
}

pub fn ttl(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    ttl_generic(db, a, c, out, |at, now| {
        (at.saturating_sub(now) as i64 + 500) / 1000
    })
}

pub fn pttl(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    ttl_generic(db, a, c, out, |at, now| at.saturating_sub(now) as i64)
}

pub fn expiretime(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    ttl_generic(db, a, c, out, |at, _| at as i64 / 1000)
}

pub fn pexpiretime(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    ttl_generic(db, a, c, out, |at, _| at as i64)
}

pub fn persist(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    out.int(db.persist(a.get(1), c.now_ms) as i64)
}

pub fn type_(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let t = db.get(a.get(1), c.now_ms).map_or("none", |v| v.type_name());
    out.simple(t)
}

/// OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ key, and OBJECT HELP.
pub fn object(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let sub = a.get(1).to_ascii_lowercase();
    if sub == b"help" {
        out.array(4);
        for line in [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key> -- Return the kind of internal representation used to store the value.",
            "REFCOUNT <key> -- Return the number of references of the value (always 1: values are not shared).",
            "IDLETIME <key> -- Seconds since the key was last accessed (not under an LFU policy); FREQ <key> -- its logarithmic access counter (under an LFU policy).",
        ] {
            out.simple(line);
        }
        return;
    }
    if !matches!(
        sub.as_slice(),
        b"encoding" | b"refcount" | b"idletime" | b"freq"
    ) {
        return err::unknown_subcommand(out, a.get(1), "object");
    }
    if a.len() != 3 {
        return err::arity(out, &format!("object|{}", String::from_utf8_lossy(&sub)));
    }
    // OBJECT does not count as an access (Redis's LOOKUP_NOTOUCH).
    let Some(meta) = db.access_meta(a.get(2), c.now_ms) else {
        return out.null();
    };
    let t = db.tunables;
    const ADJUST: &str = "Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
    match sub.as_slice() {
        b"encoding" => {
            let v = db.peek(a.get(2)).expect("live: checked above");
            out.bulk(v.encoding_with(&t).as_bytes())
        }
        b"refcount" => out.int(1),
        b"idletime" if t.maxmemory_policy.is_lfu() => out.error(&format!(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. {ADJUST}"
        )),
        b"idletime" => out.int(crate::evict::idle_secs(meta, c.now_ms) as i64),
        _ if !t.maxmemory_policy.is_lfu() => out.error(&format!(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. {ADJUST}"
        )),
        _ => out.int(crate::evict::lfu_counter(meta, c.now_ms, t.lfu_decay_time) as i64),
    }
}

/// WAIT numreplicas timeout: there are no replicas yet, so no write is acknowledged by any.
pub fn wait(_db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    if crate::num::parse_i64(a.get(1)).is_none_or(|n| n < 0)
        || crate::num::parse_i64(a.get(2)).is_none_or(|n| n < 0)
    {
        return out.error("ERR timeout is negative");
    }
    out.int(0)
}

/// Moves `src` to `dst` with its TTL. `nx`: only if `dst` does not exist.
fn rename_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, nx: bool) {
    let (src, dst) = (a.get(1), a.get(2));
    let Some(ttl) = db.expire_at(src, c.now_ms) else {
        return out.error(err::NO_SUCH_KEY);
    };
    if src == dst {
        return if nx { out.int(0) } else { out.ok() };
    }
    if nx && db.exists(dst, c.now_ms) {
        return out.int(0);
    }
    let value = db.remove(src, c.now_ms).expect("checked live above");
    db.set(dst, value, ttl, false);
    if nx { out.int(1) } else { out.ok() }
}

pub fn rename(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    rename_generic(db, a, c, out, false)
}

pub fn renamenx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    rename_generic(db, a, c, out, true)
}

pub fn copy(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        let opt = a.get(i);
        if opt.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if opt.eq_ignore_ascii_case(b"db") && i + 1 < a.len() {
            i += 1;
            // As Redis's getIntFromObjectOrReply, then its database check (db 0 only here).
            match crate::num::parse_i64(a.get(i)) {
                Some(0) => {}
                Some(n) if i32::try_from(n).is_err() => {
                    return out.error(
                        "ERR value is out of range, value must between -2147483648 and 2147483647",
                    );
                }
                Some(_) => return out.error("ERR DB index is out of range"),
                None => return out.error(err::NOT_INT),
            }
        } else {
            return out.error(err::SYNTAX);
        }
        i += 1;
    }
    let (src, dst) = (a.get(1), a.get(2));
    if src == dst {
        return out.error("ERR source and destination objects are the same");
    }
    let Some(ttl) = db.expire_at(src, c.now_ms) else {
        return out.int(0);
    };
    if !replace && db.exists(dst, c.now_ms) {
        return out.int(0);
    }
    let value = db
        .get(src, c.now_ms)
        .map(Value::deep_clone)
        .expect("checked live above");
    db.set(dst, value, ttl, false);
    out.int(1)
}

pub fn keys(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let pattern = a.get(1);
    let all = pattern == b"*";
    let mut found: Vec<&[u8]> = Vec::new();
    for vs in db.visible() {
        for (k, _) in vs.keys.iter() {
            let live = !matches!(vs.expires.get(k), Some(&at) if at <= c.now_ms);
            if live && (all || glob_match(pattern, k)) {
                found.push(k);
            }
        }
    }
    out.array(found.len());
    for k in found {
        out.bulk(k);
    }
}

pub fn scan(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(sa) = super::scan_args(&a, 1, true, false, out) else {
        return;
    };
    if !db.owns_slot((sa.cursor & 0x3fff) as u16) {
        return out.error(err::INVALID_CURSOR);
    }
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = db.scan(sa.cursor, sa.count, c.now_ms, |k, v| {
        let type_ok = sa
            .type_name
            .is_none_or(|t| t.eq_ignore_ascii_case(v.type_name().as_bytes()));
        if type_ok && sa.matches(k) {
            found.push(k.to_vec());
        }
    });
    let items: Vec<&[u8]> = found.iter().map(Vec::as_slice).collect();
    super::scan_reply(out, next, &items)
}

pub fn randomkey(db: &mut Db, _a: Args, c: &mut Ctx, out: &mut Out) {
    match db.random_key(c.rng, c.now_ms) {
        Some(k) => out.bulk(&k),
        None => out.null(),
    }
}

pub fn dbsize(db: &mut Db, _a: Args, _c: &mut Ctx, out: &mut Out) {
    out.int(db.visible_len() as i64)
}

/// FLUSHDB and FLUSHALL, with the ASYNC/SYNC flag accepted (the flush is always synchronous).
pub fn flush(db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    if a.len() > 2 {
        return out.error(err::SYNTAX);
    }
    if a.len() == 2
        && !a.get(1).eq_ignore_ascii_case(b"async")
        && !a.get(1).eq_ignore_ascii_case(b"sync")
    {
        return out.error(err::SYNTAX);
    }
    db.flush();
    out.ok()
}

pub fn memory(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let sub = a.get(1);
    if !sub.eq_ignore_ascii_case(b"usage") {
        return err::unknown_subcommand(out, sub, "memory");
    }
    if a.len() < 3 {
        return err::arity(out, "memory|usage");
    }
    // As Redis: `SAMPLES n` pairs (any number of them), n an integer, not negative.
    let mut j = 3;
    while j < a.len() {
        if !(a.get(j).eq_ignore_ascii_case(b"samples") && j + 1 < a.len()) {
            return out.error(err::SYNTAX);
        }
        match crate::num::parse_i64(a.get(j + 1)) {
            None => return out.error(err::NOT_INT),
            Some(n) if n < 0 => return out.error(err::SYNTAX),
            Some(_) => {}
        }
        j += 2;
    }
    let key = a.get(2);
    match db.get(key, c.now_ms) {
        None => out.null(),
        Some(v) => {
            let entry = std::mem::size_of::<(crate::bytes::SmallBytes, Value)>() + 1;
            let key_heap = if key.len() > 22 {
                crate::mem::alloc_size(key.len())
            } else {
                0
            };
            out.int((entry + key_heap + v.heap_bytes()) as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    #[test]
    fn del_exists_count_each_key() {
        let mut h = Harness::new();
        h.run("MSET a 1 b 2");
        assert_eq!(h.run("EXISTS a a b c"), int(3));
        assert_eq!(h.run("DEL a c"), int(1));
        assert_eq!(h.run("UNLINK b"), int(1));
        assert_eq!(h.run("DBSIZE"), int(0));
    }

    #[test]
    fn expire_options_and_ttl_replies() {
        let mut h = Harness::new();
        assert_eq!(h.run("EXPIRE nokey 10"), int(0));
        assert_eq!(h.run("TTL nokey"), int(-2));
        h.run("SET k v");
        assert_eq!(h.run("TTL k"), int(-1));
        assert_eq!(h.run("EXPIRE k 100 XX"), int(0));
        assert_eq!(h.run("EXPIRE k 100 GT"), int(0));
        assert_eq!(h.run("EXPIRE k 100 NX"), int(1));
        assert_eq!(h.run("EXPIRE k 50 GT"), int(0));
        assert_eq!(h.run("EXPIRE k 50 LT"), int(1));
        assert_eq!(h.run("TTL k"), int(50));
        assert_eq!(
            h.run("EXPIRE k 50 NX XX"),
            error("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(
            h.run("EXPIRE k 50 GT LT"),
            error("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(
            h.run("EXPIRE k 50 FOO"),
            error("ERR Unsupported option FOO")
        );
        assert_eq!(
            h.run("EXPIRE k 9223372036854775807"),
            error("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(h.run("PERSIST k"), int(1));
        assert_eq!(h.run("PERSIST k"), int(0));
        let at_s = h.now_ms / 1000 + 100;
        assert_eq!(h.run(&format!("EXPIREAT k {at_s}")), int(1));
        assert_eq!(h.run("EXPIRETIME k"), int(at_s as i64));
        assert_eq!(h.run("EXPIRE k -1"), int(1));
        assert_eq!(h.run("EXISTS k"), int(0));
        assert_eq!(h.run("EXPIRETIME k"), int(-2));
    }

    #[test]
    fn rename_and_copy_carry_ttl() {
        let mut h = Harness::new();
        assert_eq!(h.run("RENAME a b"), error("ERR no such key"));
        h.run("SET a 1 EX 100");
        assert_eq!(h.run("RENAME a b"), OK);
        assert_eq!(h.run("TTL b"), int(100));
        assert_eq!(h.run("EXISTS a"), int(0));
        h.run("SET c 3");
        assert_eq!(h.run("RENAMENX b c"), int(0));
        assert_eq!(h.run("COPY b c"), int(0));
        assert_eq!(h.run("COPY b c REPLACE"), int(1));
        assert_eq!(h.run("GET c"), bulk("1"));
        assert_eq!(h.run("TTL c"), int(100));
        assert_eq!(
            h.run("COPY b b"),
            error("ERR source and destination objects are the same")
        );
        assert_eq!(
            h.run("COPY b d DB 1"),
            error("ERR DB index is out of range")
        );
        h.run("HSET h f v");
        assert_eq!(h.run("COPY h h2"), int(1));
        h.run("HSET h f changed");
        assert_eq!(h.run("HGET h2 f"), bulk("v"));
    }

    #[test]
    fn keys_scan_randomkey_flush() {
        let mut h = Harness::new();
        for i in 0..200 {
            h.run(&format!("SET user:{i} v"));
        }
        h.run("HSET other f v");
        let keys = h.run("KEYS user:1?");
        assert!(keys.starts_with("*10\r\n"), "{keys}");
        let seen: std::collections::HashSet<String> =
            scan_all(&mut h, |c| format!("SCAN {c} MATCH user:* COUNT 5"))
                .into_iter()
                .collect();
        assert_eq!(seen.len(), 200);
        let typed = h.run("SCAN 0 TYPE hash COUNT 100000");
        assert!(typed.ends_with("*0\r\n") || typed.contains("other"));
        assert_eq!(h.run("SCAN abc"), error("ERR invalid cursor"));
        assert!(h.run("RANDOMKEY").starts_with('$'));
        assert_eq!(h.run("FLUSHALL"), OK);
        assert_eq!(h.run("RANDOMKEY"), NIL);
        assert_eq!(h.run("FLUSHDB BAD"), error("ERR syntax error"));
    }

    #[test]
    fn object_answers_honestly() {
        let mut h = Harness::new();
        h.run("SET n 12345");
        h.run("SET s hello");
        h.run(&format!("SET big {}", "x".repeat(60)));
        h.run("RPUSH l a");
        h.run("ZADD z 1 a");
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("int"));
        assert_eq!(h.run("OBJECT ENCODING s"), bulk("embstr"));
        assert_eq!(h.run("OBJECT ENCODING big"), bulk("raw"));
        assert_eq!(h.run("OBJECT ENCODING l"), bulk("listpack"));
        assert_eq!(h.run("OBJECT ENCODING z"), bulk("listpack"));
        assert_eq!(h.run("OBJECT ENCODING none"), NIL);
        assert_eq!(h.run("OBJECT REFCOUNT s"), int(1));
        assert!(
            h.run("OBJECT FREQ s")
                .starts_with("-ERR An LFU maxmemory policy is not selected")
        );
        // Idle time counts seconds since the last access; OBJECT itself is not an access.
        assert_eq!(h.run("OBJECT IDLETIME s"), int(0));
        h.now_ms += 7_500;
        assert_eq!(h.run("OBJECT IDLETIME s"), int(7));
        assert_eq!(h.run("OBJECT IDLETIME s"), int(7));
        h.run("GET s");
        assert_eq!(h.run("OBJECT IDLETIME s"), int(0));
        h.db.tunables.maxmemory_policy = crate::evict::Policy::AllKeysLfu;
        assert!(
            h.run("OBJECT IDLETIME s")
                .starts_with("-ERR An LFU maxmemory policy is selected")
        );
        h.run("SET f v");
        assert_eq!(h.run("OBJECT FREQ f"), int(5));
        for _ in 0..1000 {
            h.run("GET f");
        }
        let freq: i64 = h.run("OBJECT FREQ f")[1..].trim().parse().unwrap();
        assert!(freq > 5 && freq < 255, "{freq}");
        assert_eq!(
            h.run("OBJECT NOPE s"),
            error("ERR unknown subcommand 'NOPE'. Try OBJECT HELP.")
        );
        assert_eq!(h.run("WAIT 1 0"), int(0));
    }

    #[test]
    fn memory_usage_is_an_estimate_that_grows_with_size() {
        let mut h = Harness::new();
        h.run("SET small v");
        h.run(&format!("SET big {}", "x".repeat(1000)));
        let small: i64 = h.run("MEMORY USAGE small")[1..].trim().parse().unwrap();
        let big: i64 = h.run("MEMORY USAGE big")[1..].trim().parse().unwrap();
        assert!((40..100).contains(&small), "{small}");
        assert!(big > 1000 && big < 1200, "{big}");
        assert_eq!(h.run("MEMORY USAGE nokey"), NIL);
        assert_eq!(
            h.run("MEMORY DOCTOR"),
            error("ERR unknown subcommand 'DOCTOR'. Try MEMORY HELP.")
        );
    }
}
