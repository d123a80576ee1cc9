//! Keyspace notifications (`notify-keyspace-events`): which events a command raises, with
//! Redis's event names.
//!
//! One mechanism serves every command: while notifications are on, the `Db` records how each key
//! was touched (written, created, removed, given or stripped of a TTL) as the command runs; after
//! a command that did not fail, [`after_command`] turns those touches into events, naming the
//! command's event from [`command_event`] (the event can depend on the key's position, as for
//! RENAME or LMOVE, or on an argument, as LEFT/RIGHT). Expired and evicted keys raise their events
//! where they are removed. Events wait in `Db::events` until the driver publishes them on
//! `__keyspace@0__:<key>` and `__keyevent@0__:<event>`.
//!
//! Chosen where Redis is finer: an event is raised for every key a successful write command
//! touched, also when the write changed nothing (an SADD of a member already present raises
//! `sadd`; Redis raises nothing). Key-miss (`m`) and module (`d`) events are never raised.

use crate::command::{Args, CommandSpec};
use crate::db::Db;

pub mod class {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const KEYEVENT: u32 = 1 << 1;
    pub const GENERIC: u32 = 1 << 2;
    pub const STRING: u32 = 1 << 3;
    pub const LIST: u32 = 1 << 4;
    pub const SET: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const ZSET: u32 = 1 << 7;
    pub const EXPIRED: u32 = 1 << 8;
    pub const EVICTED: u32 = 1 << 9;
    pub const STREAM: u32 = 1 << 10;
    pub const KEY_MISS: u32 = 1 << 11;
    pub const MODULE: u32 = 1 << 12;
    pub const NEW: u32 = 1 << 13;
    /// `A`: every class but key-miss and new.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

use class::*;

const LETTERS: &[(char, u32)] = &[
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
    ('m', KEY_MISS),
    ('n', NEW),
];

/// Parses Redis's flag string (`KEA`, `Elg`, ...); `None` for an unknown letter.
pub fn parse_flags(s: &str) -> Option<u32> {
    let mut flags = 0;
    for ch in s.chars() {
        flags |= match ch {
            'A' => ALL,
            c => LETTERS.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    Some(flags)
}

/// The flag string CONFIG GET shows, in Redis's order (`AKE` for all classes).
pub fn format_flags(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    }
    for &(l, bit) in LETTERS {
        let in_all = bit & ALL != 0;
        if flags & bit != 0 && !(in_all && flags & ALL == ALL) {
            s.push(l);
        }
    }
    s
}

/// How a command touched a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Created (it did not exist).
    New,
    /// Written.
    Write,
    /// Removed by the command.
    Removed,
    /// Given a TTL.
    Expire,
    /// Stripped of its TTL.
    Persist,
}

/// One event waiting to be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub key: Vec<u8>,
}

/// The event a successful `spec` raises on a touched key: `first` tells whether the key is the
/// command's first key argument (`args[1]`) (for commands whose keys play different roles).
pub fn command_event(spec: &CommandSpec, args: &Args, first: bool) -> Option<(u32, &'static str)> {
    let arg_is = |i: usize, w: &[u8]| i < args.len() && args.get(i).eq_ignore_ascii_case(w);
    let side = |left_at: usize, l: &'static str, r: &'static str| {
        if arg_is(left_at, b"left") { l } else { r }
    };
    let mpop_left = || args.iter().any(|w| w.eq_ignore_ascii_case(b"left"));
    let mpop_min = || args.iter().any(|w| w.eq_ignore_ascii_case(b"min"));
    Some(match spec.name {
        "set" | "setnx" | "setex" | "psetex" | "getset" | "mset" | "msetnx" | "bitop" => {
            (STRING, "set")
        }
        "incr" | "decr" | "incrby" | "decrby" => (STRING, "incrby"),
        "incrbyfloat" => (STRING, "incrbyfloat"),
        "append" => (STRING, "append"),
        "setrange" => (STRING, "setrange"),
        "setbit" | "bitfield" => (STRING, "setbit"),
        "pfadd" | "pfmerge" => (STRING, "pfadd"),
        "del" | "unlink" | "getdel" => (GENERIC, "del"),
        "rename" | "renamenx" if first => (GENERIC, "rename_from"),
        "rename" | "renamenx" => (GENERIC, "rename_to"),
        "copy" if !first => (GENERIC, "copy_to"),
        "restore" => (GENERIC, "restore"),
        "sort" => (LIST, "sortstore"),
        "hset" | "hsetnx" | "hmset" => (HASH, "hset"),
        "hdel" => (HASH, "hdel"),
        "hincrby" => (HASH, "hincrby"),
        "hincrbyfloat" => (HASH, "hincrbyfloat"),
        "lpush" | "lpushx" => (LIST, "lpush"),
        "rpush" | "rpushx" => (LIST, "rpush"),
        "lpop" | "blpop" => (LIST, "lpop"),
        "rpop" | "brpop" => (LIST, "rpop"),
        "linsert" => (LIST, "linsert"),
        "lset" => (LIST, "lset"),
        "lrem" => (LIST, "lrem"),
        "ltrim" => (LIST, "ltrim"),
        "rpoplpush" | "brpoplpush" if first => (LIST, "rpop"),
        "rpoplpush" | "brpoplpush" => (LIST, "lpush"),
        "lmove" | "blmove" if first => (LIST, side(3, "lpop", "rpop")),
        "lmove" | "blmove" => (LIST, side(4, "lpush", "rpush")),
        "lmpop" | "blmpop" => (LIST, if mpop_left() { "lpop" } else { "rpop" }),
        "sadd" => (SET, "sadd"),
        "srem" => (SET, "srem"),
        "spop" => (SET, "spop"),
        "smove" if first => (SET, "srem"),
        "smove" => (SET, "sadd"),
        "sinterstore" => (SET, "sinterstore"),
        "sunionstore" => (SET, "sunionstore"),
        "sdiffstore" => (SET, "sdiffstore"),
        "zadd" if args.iter().any(|w| w.eq_ignore_ascii_case(b"incr")) => (ZSET, "zincr"),
        "zadd" => (ZSET, "zadd"),
        "zincrby" => (ZSET, "zincr"),
        "zrem" => (ZSET, "zrem"),
        "zremrangebyscore" => (ZSET, "zremrangebyscore"),
        "zremrangebyrank" => (ZSET, "zremrangebyrank"),
        "zremrangebylex" => (ZSET, "zremrangebylex"),
        "zpopmin" | "bzpopmin" => (ZSET, "zpopmin"),
        "zpopmax" | "bzpopmax" => (ZSET, "zpopmax"),
        "zmpop" | "bzmpop" => (ZSET, if mpop_min() { "zpopmin" } else { "zpopmax" }),
        "zunionstore" => (ZSET, "zunionstore"),
        "zinterstore" => (ZSET, "zinterstore"),
        "zdiffstore" => (ZSET, "zdiffstore"),
        "zrangestore" => (ZSET, "zrangestore"),
        "xadd" => (STREAM, "xadd"),
        "xtrim" => (STREAM, "xtrim"),
        "xdel" => (STREAM, "xdel"),
        "xsetid" => (STREAM, "xsetid"),
        "xgroup" => (STREAM, xgroup_event(args)?),
        _ => return None,
    })
}

fn xgroup_event(args: &Args) -> Option<&'static str> {
    let sub = args.get(1).to_ascii_lowercase();
    Some(match sub.as_slice() {
        b"create" => "xgroup-create",
        b"setid" => "xgroup-setid",
        b"destroy" => "xgroup-destroy",
        b"createconsumer" => "xgroup-createconsumer",
        b"delconsumer" => "xgroup-delconsumer",
        _ => return None,
    })
}

/// Turns the touches a command left in `db` into events. `failed`: the command answered an
/// error (and so changed nothing).
pub fn after_command(db: &mut Db, spec: &CommandSpec, args: &Args, failed: bool) {
    let touched = std::mem::take(&mut db.touched);
    if failed || touched.is_empty() {
        db.touched = touched;
        db.touched.clear();
        return;
    }
    let first_key = (args.len() > 1).then(|| args.get(1));
    let mut keys: Vec<&[u8]> = Vec::with_capacity(touched.len());
    for (key, _) in &touched {
        if !keys.contains(&key.as_slice()) {
            keys.push(key);
        }
    }
    let has = |key: &[u8], t: Touch| touched.iter().any(|(k, x)| k == key && *x == t);
    // Removals are announced after every key's own event, as Redis orders them.
    let mut removed = Vec::new();
    for key in keys {
        let own = command_event(spec, args, first_key == Some(key));
        if has(key, Touch::New) {
            db.emit(NEW, "new", key);
        }
        if let Some((class, name)) = own
            && (has(key, Touch::Write) || has(key, Touch::Removed) || has(key, Touch::New))
        {
            db.emit(class, name, key);
        }
        if has(key, Touch::Expire) {
            db.emit(GENERIC, "expire", key);
        }
        if has(key, Touch::Persist) {
            db.emit(GENERIC, "persist", key);
        }
        if has(key, Touch::Removed) && !matches!(own, Some((_, "del" | "rename_from"))) {
            removed.push(key);
        }
    }
    for key in removed {
        db.emit(GENERIC, "del", key);
    }
    db.touched = touched;
    db.touched.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::*;

    #[test]
    fn flags_parse_and_format_as_redis_does() {
        assert_eq!(parse_flags(""), Some(0));
        assert_eq!(parse_flags("KEA"), Some(KEYSPACE | KEYEVENT | ALL));
        assert_eq!(parse_flags("Ex"), Some(KEYEVENT | EXPIRED));
        assert_eq!(parse_flags("Kq"), None);
        assert_eq!(format_flags(parse_flags("KEA").unwrap()), "AKE");
        assert_eq!(format_flags(parse_flags("Elg$").unwrap()), "g$lE");
        assert_eq!(format_flags(0), "");
    }

    fn events(h: &mut Harness, cmd: &str) -> Vec<(String, String)> {
        h.db.events.clear();
        h.run(cmd);
        h.db.events
            .drain(..)
            .map(|e| (e.name.to_string(), String::from_utf8(e.key).unwrap()))
            .collect()
    }

    fn ev(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn commands_raise_redis_event_names() {
        let mut h = Harness::new();
        h.db.tunables.notify_keyspace_events = parse_flags("KEA").unwrap();
        assert_eq!(events(&mut h, "SET a 1"), ev(&[("set", "a")]));
        assert_eq!(
            events(&mut h, "SET a 1 EX 10"),
            ev(&[("set", "a"), ("expire", "a")])
        );
        assert_eq!(events(&mut h, "INCRBY a 2"), ev(&[("incrby", "a")]));
        assert_eq!(events(&mut h, "PERSIST a"), ev(&[("persist", "a")]));
        assert_eq!(
            events(&mut h, "RENAME a b"),
            ev(&[("rename_from", "a"), ("rename_to", "b")])
        );
        assert_eq!(events(&mut h, "RPUSH {l}a x"), ev(&[("rpush", "{l}a")]));
        assert_eq!(
            events(&mut h, "LMOVE {l}a {l}b LEFT RIGHT"),
            ev(&[("lpop", "{l}a"), ("rpush", "{l}b"), ("del", "{l}a")])
        );
        assert_eq!(events(&mut h, "HSET h f v"), ev(&[("hset", "h")]));
        assert_eq!(
            events(&mut h, "HDEL h f"),
            ev(&[("hdel", "h"), ("del", "h")])
        );
        assert_eq!(events(&mut h, "ZADD z 1 m"), ev(&[("zadd", "z")]));
        assert_eq!(events(&mut h, "XADD s 1-1 f v"), ev(&[("xadd", "s")]));
        assert_eq!(
            events(&mut h, "XGROUP CREATE s g 0"),
            ev(&[("xgroup-create", "s")])
        );
        assert_eq!(
            events(&mut h, "DEL b z nosuch"),
            ev(&[("del", "b"), ("del", "z")])
        );
        assert_eq!(events(&mut h, "EXPIRE s 0"), ev(&[("del", "s")]));
        // Reads and failed writes raise nothing.
        assert_eq!(events(&mut h, "GET a"), ev(&[]));
        h.run("SET str x");
        assert_eq!(events(&mut h, "LPUSH str x"), ev(&[]));
        // Expiry raises `expired` when the key is found expired.
        h.run("SET t v PX 5");
        h.now_ms += 10;
        assert_eq!(events(&mut h, "GET t"), ev(&[("expired", "t")]));
    }

    #[test]
    fn only_enabled_classes_are_recorded() {
        let mut h = Harness::new();
        assert_eq!(events(&mut h, "SET a 1"), ev(&[]));
        h.db.tunables.notify_keyspace_events = parse_flags("El").unwrap();
        assert_eq!(events(&mut h, "SET a 1"), ev(&[]));
        assert_eq!(events(&mut h, "LPUSH l x"), ev(&[("lpush", "l")]));
        h.db.tunables.notify_keyspace_events = parse_flags("A").unwrap();
        assert_eq!(events(&mut h, "LPUSH l x"), ev(&[]), "neither K nor E");
        h.db.tunables.notify_keyspace_events = parse_flags("Kn$").unwrap();
        assert_eq!(
            events(&mut h, "SET fresh 1"),
            ev(&[("new", "fresh"), ("set", "fresh")])
        );
    }
}
