//! The pure half of the blocking commands: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX
//! BZMPOP. [`parse`] finds the keys a command waits on and its timeout; [`try_serve`] runs it once
//! without blocking and says whether it was served. The handlers in the table are that single try
//! with a nil answer, which is what these commands do inside MULTI. Waiting (parking the request,
//! waking it when a key is written, timeouts) is the driver's; see docs/design/commands.md.

use super::{Args, Ctx, execute, modify};
use crate::db::{Db, Value};
use crate::reply::Out;

/// What a blocking command waits on.
pub struct Wait {
    /// Indexes of the keys it waits on, in order.
    pub keys: Vec<usize>,
    /// `None`: wait forever (timeout 0).
    pub timeout_ms: Option<u64>,
}

fn timeout(s: &[u8]) -> Result<Option<u64>, &'static str> {
    let Some(t) = crate::num::parse_f64(s).filter(|t| t.is_finite()) else {
        return Err("ERR timeout is not a float or out of range");
    };
    if t < 0.0 {
        return Err("ERR timeout is negative");
    }
    if t > 1e12 {
        return Err("ERR timeout is out of range");
    }
    let ms = (t * 1000.0).round() as u64;
    Ok(if ms == 0 && t == 0.0 {
        None
    } else {
        Some(ms.max(1))
    })
}

/// The keys and timeout of blocking command `name` (lower case) with `args`.
pub fn parse(name: &str, a: &Args) -> Result<Wait, &'static str> {
    let n = a.len();
    let numkeys = |at: usize| -> Result<Vec<usize>, &'static str> {
        let k = crate::num::parse_i64(a.get(at))
            .filter(|k| *k > 0)
            .ok_or("ERR numkeys should be greater than 0")? as usize;
        if at + 1 + k > n {
            return Err("ERR syntax error");
        }
        Ok((at + 1..at + 1 + k).collect())
    };
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => Ok(Wait {
            keys: (1..n - 1).collect(),
            timeout_ms: timeout(a.get(n - 1))?,
        }),
        "brpoplpush" => Ok(Wait {
            keys: vec![1],
            timeout_ms: timeout(a.get(3))?,
        }),
        "blmove" => Ok(Wait {
            keys: vec![1],
            timeout_ms: timeout(a.get(5))?,
        }),
        "blmpop" | "bzmpop" => Ok(Wait {
            keys: numkeys(2)?,
            timeout_ms: timeout(a.get(1))?,
        }),
        "xread" | "xreadgroup" => {
            let r = super::streams::read_args(a, name == "xreadgroup")
                .map_err(|_| "ERR syntax error")?;
            Ok(Wait {
                keys: (r.keys_at..r.keys_at + r.streams).collect(),
                timeout_ms: r.block_ms.filter(|&ms| ms > 0),
            })
        }
        _ => Err("ERR not a blocking command"),
    }
}

/// Whether command `name` may block at all: XREAD and XREADGROUP only with BLOCK (badly formed
/// ones are answered by their handler), the others always.
pub fn blocks(name: &str, a: &Args) -> bool {
    match name {
        "xread" | "xreadgroup" => {
            super::streams::read_args(a, name == "xreadgroup").is_ok_and(|r| r.block_ms.is_some())
        }
        _ => true,
    }
}

/// The arguments a parked request keeps: XREAD's `$` becomes the stream's current last id
/// (`None`: keep the request as it is).
pub fn park_args(db: &mut Db, a: &Args, now_ms: u64) -> Option<Vec<Vec<u8>>> {
    super::streams::resolve_dollar(db, a, now_ms)
}

/// Runs `words` as a command into `out`.
pub(crate) fn run_words(db: &mut Db, words: &[&[u8]], c: &mut Ctx, out: &mut Out) {
    let (buf, spans) = super::buf_and_spans(words);
    execute(db, Args::new(&buf, &spans), c, out);
}

/// Whether `reply`, a table handler's answer (the single try), says the command was not served
/// and would have blocked: a replicated leader parks the command again on it.
pub fn would_block(reply: &[u8]) -> bool {
    is_nil(reply)
}

fn is_nil(reply: &[u8]) -> bool {
    matches!(reply, b"*-1\r\n" | b"$-1\r\n" | b"_\r\n" | b"*0\r\n")
}

/// Tries blocking command `name` once. Writes its reply and returns true when it was served
/// (an error counts as served); writes nothing and returns false when it would block.
pub fn try_serve(name: &str, db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) -> bool {
    let wait = match parse(name, &a) {
        Ok(w) => w,
        Err(e) => {
            out.error(e);
            return true;
        }
    };
    let mut tmp = Out::new(out.proto);
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => wait
            .keys
            .iter()
            .any(|&k| pop_key(name, db, a.get(k), c, out, &mut tmp)),
        "xread" | "xreadgroup" => {
            execute(db, a, c, &mut tmp);
            if is_nil(&tmp.buf) {
                return false;
            }
            out.raw(&tmp.buf);
            true
        }
        "brpoplpush" | "blmove" => {
            // Nothing to move (and no type error to report) unless the source holds a list.
            if matches!(
                modify::<super::lists::List>(db, a.get(1), c.now_ms, &mut tmp),
                Ok(None)
            ) {
                return false;
            }
            move_one(name, db, &a, c, out);
            true
        }
        _ => {
            // BLMPOP/BZMPOP timeout numkeys ... => LMPOP/ZMPOP numkeys ...
            let mut words: Vec<&[u8]> = vec![if name == "blmpop" { b"LMPOP" } else { b"ZMPOP" }];
            words.extend((2..a.len()).map(|i| a.get(i)));
            run_words(db, &words, c, &mut tmp);
            if is_nil(&tmp.buf) {
                return false;
            }
            out.raw(&tmp.buf);
            true
        }
    }
}

/// BLPOP/BRPOP/BZPOPMIN/BZPOPMAX on one of their keys: true if it answered (served, or an
/// error such as WRONGTYPE), false if `key` had nothing to pop.
fn pop_key(name: &str, db: &mut Db, key: &[u8], c: &mut Ctx, out: &mut Out, tmp: &mut Out) -> bool {
    let pop: &[u8] = match name {
        "blpop" => b"LPOP",
        "brpop" => b"RPOP",
        "bzpopmin" => b"ZPOPMIN",
        _ => b"ZPOPMAX",
    };
    tmp.buf.clear();
    let errors = tmp.errors;
    run_words(db, &[pop, key], c, tmp);
    if tmp.errors != errors {
        out.raw(&tmp.buf);
        return true;
    }
    if is_nil(&tmp.buf) {
        return false;
    }
    if name.starts_with("bz") {
        // ZPOPMIN's reply is [member, score]: answer [key, member, score].
        let body = &tmp.buf[tmp
            .buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(0, |p| p + 1)..];
        out.array(3);
        out.bulk(key);
        out.raw(body);
    } else {
        out.array(2);
        out.bulk(key);
        out.raw(&tmp.buf);
    }
    true
}

/// BRPOPLPUSH/BLMOVE as RPOPLPUSH/LMOVE (the caller found a list at the source).
fn move_one(name: &str, db: &mut Db, a: &Args, c: &mut Ctx, out: &mut Out) {
    let words: Vec<&[u8]> = if name == "brpoplpush" {
        vec![b"RPOPLPUSH", a.get(1), a.get(2)]
    } else {
        vec![b"LMOVE", a.get(1), a.get(2), a.get(3), a.get(4)]
    };
    run_words(db, &words, c, out);
}

/// Tries parked blocking command `name` again after `key`, one of the keys it waits on,
/// changed (written, removed, expired, flushed). As Redis 7.0 serves a blocked client: from
/// that key alone, and only if it now holds the command's type; a key that became a string, or
/// that one transaction filled and emptied again, leaves the client waiting. XREADGROUP is
/// Redis's exception: its stream gone (or no longer a stream) or its group destroyed answers
/// an error. Returns whether it answered (reply in `out`).
pub fn retry(name: &str, db: &mut Db, a: Args, key: &[u8], c: &mut Ctx, out: &mut Out) -> bool {
    let kind = if db.exists(key, c.now_ms) {
        db.peek(key).map(Value::type_name)
    } else {
        None
    };
    let Ok(wait) = parse(name, &a) else {
        return try_serve(name, db, a, c, out);
    };
    match name {
        "blpop" | "brpop" => {
            kind == Some("list") && pop_key(name, db, key, c, out, &mut Out::new(out.proto))
        }
        "bzpopmin" | "bzpopmax" => {
            kind == Some("zset") && pop_key(name, db, key, c, out, &mut Out::new(out.proto))
        }
        "brpoplpush" | "blmove" => {
            if kind != Some("list") {
                return false;
            }
            move_one(name, db, &a, c, out);
            true
        }
        "blmpop" | "bzmpop" => {
            if kind != Some(if name == "blmpop" { "list" } else { "zset" }) {
                return false;
            }
            // From `key` alone: LMPOP/ZMPOP 1 key <direction and COUNT as given>.
            let after = wait.keys.last().map_or(a.len(), |&k| k + 1);
            let mut words: Vec<&[u8]> = vec![
                if name == "blmpop" { b"LMPOP" } else { b"ZMPOP" },
                b"1",
                key,
            ];
            words.extend((after..a.len()).map(|i| a.get(i)));
            let mut tmp = Out::new(out.proto);
            run_words(db, &words, c, &mut tmp);
            if is_nil(&tmp.buf) {
                return false;
            }
            out.raw(&tmp.buf);
            true
        }
        "xreadgroup" if kind != Some("stream") => {
            out.error("UNBLOCKED the stream key no longer exists");
            true
        }
        "xreadgroup" => {
            let group = super::streams::read_args(&a, true)
                .ok()
                .and_then(|r| r.group)
                .map_or(&b""[..], |g| g.0);
            let has_group =
                matches!(db.peek(key), Some(Value::Stream(s)) if s.groups.contains_key(group));
            if !has_group {
                out.error("NOGROUP the consumer group this client was blocked on no longer exists");
                return true;
            }
            try_serve(name, db, a, c, out)
        }
        "xread" => kind == Some("stream") && try_serve(name, db, a, c, out),
        _ => try_serve(name, db, a, c, out),
    }
}

/// What a blocking command answers when its timeout passes: a null array, for every one of
/// them (BRPOPLPUSH and BLMOVE too, as Redis's `replyToBlockedClientTimedOut`).
pub fn timeout_reply(_name: &str, out: &mut Out) {
    out.null_array()
}

/// What it answers inside MULTI (it never waits there) with nothing to pop: BRPOPLPUSH and
/// BLMOVE a null bulk, as their non-blocking forms, the others a null array.
fn not_waiting_reply(name: &str, out: &mut Out) {
    match name {
        "brpoplpush" | "blmove" => out.null(),
        _ => out.null_array(),
    }
}

fn once(name: &str, db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if !try_serve(name, db, a, c, out) {
        not_waiting_reply(name, out)
    }
}

pub fn blpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("blpop", db, a, c, out)
}

pub fn brpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("brpop", db, a, c, out)
}

pub fn brpoplpush(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("brpoplpush", db, a, c, out)
}

pub fn blmove(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("blmove", db, a, c, out)
}

pub fn blmpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("blmpop", db, a, c, out)
}

pub fn bzpopmin(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("bzpopmin", db, a, c, out)
}

pub fn bzpopmax(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("bzpopmax", db, a, c, out)
}

pub fn bzmpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    once("bzmpop", db, a, c, out)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    #[test]
    fn one_try_serves_or_answers_nil() {
        let mut h = Harness::new();
        assert_eq!(h.run("BLPOP {q}a {q}b 0"), "*-1\r\n");
        h.run("RPUSH {q}b x y");
        assert_eq!(
            h.run("BLPOP {q}a {q}b 0"),
            format!("*2\r\n{}{}", bulk("{q}b"), bulk("x"))
        );
        assert_eq!(
            h.run("BRPOP {q}b 1.5"),
            format!("*2\r\n{}{}", bulk("{q}b"), bulk("y"))
        );
        assert_eq!(h.run("BLPOP {q}b -1"), error("ERR timeout is negative"));
        assert_eq!(
            h.run("BLPOP {q}b abc"),
            error("ERR timeout is not a float or out of range")
        );
        h.run("RPUSH {q}c 1 2");
        assert_eq!(h.run("BLMOVE {q}c {q}d LEFT RIGHT 0"), bulk("1"));
        assert_eq!(h.run("BRPOPLPUSH {q}c {q}d 0"), bulk("2"));
        assert_eq!(h.run("BRPOPLPUSH {q}c {q}d 0"), NIL);
        assert_eq!(
            h.run("BLMPOP 0 2 {q}none {q}d RIGHT COUNT 5"),
            format!("*2\r\n{}*2\r\n{}{}", bulk("{q}d"), bulk("1"), bulk("2"))
        );
        h.run("ZADD {q}z 1 a 2 b");
        assert_eq!(
            h.run("BZPOPMAX {q}none {q}z 0"),
            format!("*3\r\n{}{}{}", bulk("{q}z"), bulk("b"), bulk("2"))
        );
        assert_eq!(
            h.run("BZMPOP 0 1 {q}z MIN"),
            format!(
                "*2\r\n{}*1\r\n*2\r\n{}{}",
                bulk("{q}z"),
                bulk("a"),
                bulk("1")
            )
        );
        assert_eq!(h.run("BZPOPMIN {q}z 0"), "*-1\r\n");
        h.run("SET {q}s v");
        assert_eq!(
            h.run("BLPOP {q}s 0"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    /// Retries `line` (a parked command) after `key` changed: its reply, `None` if it keeps
    /// waiting.
    fn retry(h: &mut Harness, line: &str, key: &str) -> Option<String> {
        let words: Vec<&[u8]> = line.split_whitespace().map(|w| w.as_bytes()).collect();
        let (buf, spans) = buf_and_spans(&words);
        let name = crate::command::lookup(words[0]).unwrap().name;
        let mut out = crate::reply::Out::new(h.proto);
        let mut c = crate::command::Ctx {
            now_ms: h.now_ms,
            now_us: h.now_ms * 1000,
            rng: &mut h.rng,
        };
        let args = crate::command::Args::new(&buf, &spans);
        super::retry(name, &mut h.db, args, key.as_bytes(), &mut c, &mut out)
            .then(|| String::from_utf8_lossy(&out.buf).into_owned())
    }

    #[test]
    fn a_retry_serves_from_the_changed_key_only_if_it_holds_the_right_type() {
        let mut h = Harness::new();
        // Regression (issue 15): a waited key that became a string answered WRONGTYPE; Redis
        // keeps the client waiting.
        h.run("SET {q}a text");
        assert_eq!(retry(&mut h, "BLPOP {q}a {q}b 0", "{q}a"), None);
        assert_eq!(retry(&mut h, "BZPOPMIN {q}a 0", "{q}a"), None);
        assert_eq!(retry(&mut h, "BLMOVE {q}a {q}d LEFT RIGHT 0", "{q}a"), None);
        assert_eq!(retry(&mut h, "BLMPOP 0 1 {q}a LEFT", "{q}a"), None);
        assert_eq!(retry(&mut h, "BLPOP {q}gone 0", "{q}gone"), None);
        // Served from the changed key, though an earlier key is a string.
        h.run("RPUSH {q}b x y");
        assert_eq!(
            retry(&mut h, "BLPOP {q}a {q}b 0", "{q}b"),
            Some(format!("*2\r\n{}{}", bulk("{q}b"), bulk("x")))
        );
        assert_eq!(
            retry(&mut h, "BLMPOP 0 2 {q}a {q}b RIGHT COUNT 5", "{q}b"),
            Some(format!("*2\r\n{}*1\r\n{}", bulk("{q}b"), bulk("y")))
        );
        // A zset filled and emptied again (one transaction) keeps BZPOPMIN waiting.
        h.run("ZADD {q}z 1 m");
        h.run("ZREM {q}z m");
        assert_eq!(retry(&mut h, "BZPOPMIN {q}z 0", "{q}z"), None);
        h.run("ZADD {q}z 2 n");
        assert_eq!(
            retry(&mut h, "BZMPOP 0 1 {q}z MIN", "{q}z"),
            Some(format!(
                "*2\r\n{}*1\r\n*2\r\n{}{}",
                bulk("{q}z"),
                bulk("n"),
                bulk("2")
            ))
        );
        // XREAD keeps waiting when its stream goes; XREADGROUP is told, as in Redis 7.0.
        h.run("XADD s 1-1 f v");
        h.run("XGROUP CREATE s g $");
        let read = "XREADGROUP GROUP g c BLOCK 0 STREAMS s >";
        assert_eq!(retry(&mut h, read, "s"), None);
        h.run("XADD s 2-1 f v");
        assert!(retry(&mut h, read, "s").unwrap().contains("2-1"));
        h.run("XGROUP DESTROY s g");
        assert_eq!(
            retry(&mut h, read, "s"),
            Some(error(
                "NOGROUP the consumer group this client was blocked on no longer exists"
            ))
        );
        h.run("DEL s");
        assert_eq!(retry(&mut h, "XREAD BLOCK 0 STREAMS s 0", "s"), None);
        let gone = Some(error("UNBLOCKED the stream key no longer exists"));
        assert_eq!(retry(&mut h, read, "s"), gone);
        h.run("SET s text");
        assert_eq!(retry(&mut h, read, "s"), gone);
        assert_eq!(retry(&mut h, "XREAD BLOCK 0 STREAMS s 0", "s"), None);
    }

    #[test]
    fn removals_expiry_and_flushes_mark_waited_keys_ready_too() {
        let mut h = Harness::new();
        h.db.waiting
            .insert(b"q", std::collections::VecDeque::from([7]));
        h.run("SET q v");
        h.db.ready.clear();
        h.run("DEL q");
        assert_eq!(h.db.ready, vec![b"q".to_vec()]);
        h.db.ready.clear();
        h.run("SET q v PX 5");
        h.db.ready.clear();
        h.now_ms += 10;
        h.run("EXISTS q");
        assert_eq!(h.db.ready, vec![b"q".to_vec()], "lazy expiry");
        h.db.ready.clear();
        h.run("SET q v");
        h.db.ready.clear();
        h.run("FLUSHALL");
        assert_eq!(h.db.ready, vec![b"q".to_vec()]);
    }

    #[test]
    fn writes_to_a_waited_key_mark_it_ready() {
        let mut h = Harness::new();
        h.run("RPUSH other x");
        assert!(h.db.ready.is_empty());
        h.db.waiting
            .insert(b"q", std::collections::VecDeque::from([7]));
        h.run("RPUSH other y");
        assert!(h.db.ready.is_empty());
        h.run("RPUSH q a");
        h.run("RPUSH q b");
        assert_eq!(h.db.ready, vec![b"q".to_vec()]);
    }
}
