//! The command layer: one declarative table (name, arity, flags, key positions, how a command
//! spreads over shard threads, and its handler) that drives lookup, arity checks, routing and the
//! `COMMAND` reply; one file per command family.
//!
//! A handler is `fn(&mut Db, Args, &mut Ctx, &mut Out)`: it reads and changes the keyspace and
//! writes exactly one RESP reply. It does no I/O and reads no clock: time and randomness come in
//! `Ctx`, so the same call gives the same result on every replica.

mod bitmaps;
pub mod blocking;
mod connection;
mod dump;
pub mod geo;
pub mod hashes;
mod hyperloglog;
mod keys;
pub mod lists;
pub mod sets;
pub mod sort;
pub mod streams;
mod strings;
mod subcommands;
pub mod zsets;

use crate::db::{Db, Value};
use crate::reply::Out;
use crate::rng::Rng;

/// A span of an argument in a request buffer: `(start, end)` byte offsets.
pub type Span = (u32, u32);

/// The arguments of one command, the name first, as spans into a buffer (so parsing copies
/// nothing).
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    spans: &'a [Span],
}

/// Lays `words` out as one buffer and their spans, what a parsed request gives [`Args::new`]
/// (both cleared first, so callers reuse them).
pub fn words_into<W: AsRef<[u8]>>(words: &[W], buf: &mut Vec<u8>, spans: &mut Vec<Span>) {
    buf.clear();
    spans.clear();
    for w in words {
        let s = buf.len() as u32;
        buf.extend_from_slice(w.as_ref());
        spans.push((s, buf.len() as u32));
    }
}

impl<'a> Args<'a> {
    pub fn new(buf: &'a [u8], spans: &'a [Span]) -> Self {
        Args { buf, spans }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        let (s, e) = self.spans[i];
        &self.buf[s as usize..e as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub fn spans(&self) -> &'a [Span] {
        self.spans
    }

    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }
}

/// What a handler may use besides the keyspace: the time of the request and a seeded RNG.
pub struct Ctx<'a> {
    /// Unix time in milliseconds, read once per batch by the driver.
    pub now_ms: u64,
    /// Unix time in microseconds (TIME).
    pub now_us: u64,
    pub rng: &'a mut Rng,
}

pub type Handler = fn(&mut Db, Args, &mut Ctx, &mut Out);

/// How a command's work spreads over the shard threads of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No keys: runs on the connection's own thread.
    Keyless,
    /// Routed by its keys. With `Merge::Single` every key must live on one thread; otherwise the
    /// command is split per thread and the parts' replies are merged.
    Keys(Merge),
    /// Runs on every shard thread; the replies are merged.
    AllShards(Merge),
    /// SCAN: routed by the slot held in its cursor.
    Cursor,
    /// Connection or server state (AUTH, HELLO, MULTI, INFO, ...): handled by the driver.
    Conn,
}

/// How the replies of a command's parts on several threads combine into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Not splittable: all keys must be on one thread.
    Single,
    /// Integer replies are added (DEL, EXISTS, DBSIZE).
    Sum,
    /// Array replies, one element per key, put back in request order (MGET).
    Positional,
    /// Every part replies `+OK` (MSET, FLUSHALL).
    AllOk,
    /// Array replies are concatenated (KEYS).
    Concat,
    /// The first non-null reply, parts tried in a random order (RANDOMKEY).
    AnyNonNull,
}

pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const FAST: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const DENYOOM: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const LOADING: u32 = 1 << 6;
    pub const STALE: u32 = 1 << 7;
    /// Allowed before AUTH (AUTH, HELLO, QUIT, RESET).
    pub const NO_AUTH: u32 = 1 << 8;
    /// Refused inside MULTI, and the transaction with it (Redis's `no-multi`: SHUTDOWN).
    pub const NO_MULTI: u32 = 1 << 9;
    /// Not queued inside MULTI: run (or fail) at once (EXEC, DISCARD, MULTI, WATCH, QUIT,
    /// RESET). Every other command is queued.
    pub const IMMEDIATE: u32 = 1 << 17;
    pub const RANDOM: u32 = 1 << 11;
    /// Movable keys: `args[1]` is a key count and the keys follow it (LMPOP, SINTERCARD, ...).
    pub const NUMKEYS: u32 = 1 << 12;
    /// Movable keys counted at `args[2]` (BLMPOP, BZMPOP, and with `DEST` the STORE forms).
    pub const NUMKEYS2: u32 = 1 << 13;
    /// `args[1]` is a destination key before movable keys (ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE).
    pub const DEST: u32 = 1 << 15;
    /// Destination plus keys counted at `args[2]`.
    pub const DEST_NUMKEYS: u32 = DEST | NUMKEYS2;
    /// May block the client until a key is written (BLPOP, ...): the driver parks it.
    pub const BLOCKING: u32 = 1 << 14;
    /// Keys are the first half of the arguments after `STREAMS` (XREAD, XREADGROUP).
    pub const STREAM_KEYS: u32 = 1 << 16;
    /// The key at 1, and the one after a STORE or STOREDIST option (GEORADIUS,
    /// GEORADIUSBYMEMBER; the options start at `-arity`).
    pub const GEO_STORE: u32 = 1 << 18;
    /// The key at 1, and the one after a STORE option (SORT).
    pub const SORT_STORE: u32 = 1 << 19;

    /// Every flag of one bit: no two share it (`IMMEDIATE` and `GEO_STORE` once did, and
    /// GEORADIUS ran at once inside MULTI instead of being queued).
    pub const SINGLE: &[u32] = &[
        WRITE,
        READONLY,
        FAST,
        ADMIN,
        DENYOOM,
        NOSCRIPT,
        LOADING,
        STALE,
        NO_AUTH,
        NO_MULTI,
        IMMEDIATE,
        RANDOM,
        NUMKEYS,
        NUMKEYS2,
        DEST,
        BLOCKING,
        STREAM_KEYS,
        GEO_STORE,
        SORT_STORE,
    ];

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (NOSCRIPT, "noscript"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (NO_AUTH, "no_auth"),
        (NO_MULTI, "no_multi"),
        (FAST, "fast"),
        (RANDOM, "random"),
        (
            NUMKEYS | NUMKEYS2 | STREAM_KEYS | GEO_STORE | SORT_STORE,
            "movablekeys",
        ),
        (BLOCKING, "blocking"),
    ];
}

/// One row of the command table.
pub struct CommandSpec {
    /// Lower case.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    pub flags: u32,
    /// Key positions as Redis describes them: first, last (negative counts from the end), step.
    /// `first == 0` means no keys.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub scope: Scope,
    /// `None` for `Scope::Conn` commands, which the driver handles.
    pub handler: Option<Handler>,
    /// ACL categories, for COMMAND INFO.
    pub group: &'static str,
    pub summary: &'static str,
}

impl CommandSpec {
    /// Whether this command, with these arguments, is run by the connection rather than on a
    /// shard thread: connection and server commands, and MEMORY's subcommands other than USAGE
    /// (they report the process, not a key).
    pub fn on_connection(&self, args: Args) -> bool {
        self.scope == Scope::Conn
            || (self.name == "memory"
                && args.len() >= 2
                && !args.get(1).eq_ignore_ascii_case(b"usage"))
    }

    /// A read of the whole keyspace (DBSIZE, KEYS, SCAN, RANDOMKEY): on a replicated node it
    /// covers the vShards the node leads (`Db::view`).
    pub fn reads_keyspace(&self) -> bool {
        matches!(self.scope, Scope::AllShards(_) | Scope::Cursor) && self.flags & flags::WRITE == 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        if a >= 0 {
            argc == a as usize
        } else {
            argc >= (-a) as usize
        }
    }

    pub fn is_write(&self) -> bool {
        self.flags & flags::WRITE != 0
    }

    /// Indexes of the key arguments of `args`, movable keys included.
    pub fn keys_of(&self, args: Args) -> KeyIndexes {
        let movable = |count_at: usize| {
            let n = if args.len() > count_at {
                crate::num::parse_i64(args.get(count_at)).unwrap_or(0)
            } else {
                0
            };
            let n = (n.max(0) as usize).min(args.len().saturating_sub(count_at + 1));
            (count_at + 1..count_at + 1 + n).step_by(1)
        };
        if self.flags & flags::NUMKEYS != 0 {
            return KeyIndexes {
                dest: None,
                rest: movable(1),
            };
        }
        if self.flags & flags::STREAM_KEYS != 0 {
            return KeyIndexes {
                dest: None,
                rest: streams::read_key_range(&args).step_by(1),
            };
        }
        if self.flags & flags::GEO_STORE != 0 {
            return KeyIndexes {
                dest: geo::store_key_index(&args, (-self.arity) as usize),
                rest: self.key_indexes(args.len()),
            };
        }
        if self.flags & flags::SORT_STORE != 0 {
            return KeyIndexes {
                dest: sort::store_key_index(&args),
                rest: self.key_indexes(args.len()),
            };
        }
        if self.flags & flags::NUMKEYS2 != 0 {
            let dest = (self.flags & flags::DEST != 0 && args.len() > 1).then_some(1);
            return KeyIndexes {
                dest,
                rest: movable(2),
            };
        }
        KeyIndexes {
            dest: None,
            rest: self.key_indexes(args.len()),
        }
    }

    /// Indexes of the key arguments for a command with `argc` arguments (fixed positions).
    pub fn key_indexes(&self, argc: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
        let (first, step) = (self.first_key, self.step.max(1) as usize);
        let last = if self.last_key < 0 {
            argc as i32 + self.last_key
        } else {
            self.last_key
        };
        let range = if first <= 0 || argc as i32 <= first {
            0..0
        } else {
            first as usize..(last.min(argc as i32 - 1) + 1).max(first) as usize
        };
        range.step_by(step)
    }
}

/// The key positions of one command: an optional destination, then a stepped range.
pub struct KeyIndexes {
    dest: Option<usize>,
    rest: std::iter::StepBy<std::ops::Range<usize>>,
}

impl Iterator for KeyIndexes {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        self.dest.take().or_else(|| self.rest.next())
    }
}

/// Builds a table row. Kept terse so the table reads as a table.
#[allow(clippy::too_many_arguments)]
const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: (i32, i32, i32),
    scope: Scope,
    handler: Option<Handler>,
    group: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        scope,
        handler,
        group,
        summary,
    }
}

use Merge::*;
use Scope::*;
use flags::*;

const NOKEY: (i32, i32, i32) = (0, 0, 0);
const KEY1: (i32, i32, i32) = (1, 1, 1);
const KEY12: (i32, i32, i32) = (1, 2, 1);
const ALLKEYS: (i32, i32, i32) = (1, -1, 1);

/// The command table. Order is the order of `COMMAND`'s reply.
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    // strings
    cmd("get", 2, READONLY | FAST, KEY1, Keys(Single), Some(strings::get), "string", "Returns the string value of a key."),
    cmd("set", -3, WRITE | DENYOOM, KEY1, Keys(Single), Some(strings::set), "string", "Sets the string value of a key, ignoring its type."),
    cmd("setnx", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::setnx), "string", "Set the string value of a key only when the key doesn't exist."),
    cmd("setex", 4, WRITE | DENYOOM, KEY1, Keys(Single), Some(strings::setex), "string", "Sets the string value and expiration time of a key."),
    cmd("psetex", 4, WRITE | DENYOOM, KEY1, Keys(Single), Some(strings::psetex), "string", "Sets both string value and expiration time in milliseconds of a key."),
    cmd("getset", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::getset), "string", "Returns the previous string value of a key after setting it to a new value."),
    cmd("getdel", 2, WRITE | FAST, KEY1, Keys(Single), Some(strings::getdel), "string", "Returns the string value of a key after deleting the key."),
    cmd("getex", -2, WRITE | FAST, KEY1, Keys(Single), Some(strings::getex), "string", "Returns the string value of a key after setting its expiration time."),
    cmd("mget", -2, READONLY | FAST, ALLKEYS, Keys(Positional), Some(strings::mget), "string", "Atomically returns the string values of one or more keys."),
    cmd("mset", -3, WRITE | DENYOOM, (1, -1, 2), Keys(AllOk), Some(strings::mset), "string", "Atomically creates or modifies the string values of one or more keys."),
    cmd("msetnx", -3, WRITE | DENYOOM, (1, -1, 2), Keys(Single), Some(strings::msetnx), "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    cmd("incr", 2, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::incr), "string", "Increments the integer value of a key by one."),
    cmd("decr", 2, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::decr), "string", "Decrements the integer value of a key by one."),
    cmd("incrby", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::incrby), "string", "Increments the integer value of a key by a number."),
    cmd("decrby", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::decrby), "string", "Decrements a number from the integer value of a key."),
    cmd("incrbyfloat", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::incrbyfloat), "string", "Increment the floating point value of a key by a number."),
    cmd("append", 3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(strings::append), "string", "Appends a string to the value of a key."),
    cmd("strlen", 2, READONLY | FAST, KEY1, Keys(Single), Some(strings::strlen), "string", "Returns the length of a string value."),
    cmd("getrange", 4, READONLY, KEY1, Keys(Single), Some(strings::getrange), "string", "Returns a substring of the string stored at a key."),
    cmd("lcs", -3, READONLY, KEY12, Keys(Single), Some(strings::lcs), "string", "Finds the longest common substring."),
    cmd("substr", 4, READONLY, KEY1, Keys(Single), Some(strings::getrange), "string", "Returns a substring from a string value."),
    cmd("setrange", 4, WRITE | DENYOOM, KEY1, Keys(Single), Some(strings::setrange), "string", "Overwrites a part of a string value with another by an offset."),
    // keys
    cmd("del", -2, WRITE, ALLKEYS, Keys(Sum), Some(keys::del), "keyspace", "Deletes one or more keys."),
    cmd("unlink", -2, WRITE | FAST, ALLKEYS, Keys(Sum), Some(keys::del), "keyspace", "Asynchronously deletes one or more keys."),
    cmd("exists", -2, READONLY | FAST, ALLKEYS, Keys(Sum), Some(keys::exists), "keyspace", "Determines whether one or more keys exist."),
    cmd("touch", -2, READONLY | FAST, ALLKEYS, Keys(Sum), Some(keys::exists), "keyspace", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    cmd("expire", -3, WRITE | FAST, KEY1, Keys(Single), Some(keys::expire), "keyspace", "Sets the expiration time of a key in seconds."),
    cmd("pexpire", -3, WRITE | FAST, KEY1, Keys(Single), Some(keys::pexpire), "keyspace", "Sets the expiration time of a key in milliseconds."),
    cmd("expireat", -3, WRITE | FAST, KEY1, Keys(Single), Some(keys::expireat), "keyspace", "Sets the expiration time of a key to a Unix timestamp."),
    cmd("pexpireat", -3, WRITE | FAST, KEY1, Keys(Single), Some(keys::pexpireat), "keyspace", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    cmd("expiretime", 2, READONLY | FAST, KEY1, Keys(Single), Some(keys::expiretime), "keyspace", "Returns the expiration time of a key as a Unix timestamp."),
    cmd("pexpiretime", 2, READONLY | FAST, KEY1, Keys(Single), Some(keys::pexpiretime), "keyspace", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    cmd("ttl", 2, READONLY | FAST, KEY1, Keys(Single), Some(keys::ttl), "keyspace", "Returns the expiration time in seconds of a key."),
    cmd("pttl", 2, READONLY | FAST, KEY1, Keys(Single), Some(keys::pttl), "keyspace", "Returns the expiration time in milliseconds of a key."),
    cmd("persist", 2, WRITE | FAST, KEY1, Keys(Single), Some(keys::persist), "keyspace", "Removes the expiration time of a key."),
    cmd("type", 2, READONLY | FAST, KEY1, Keys(Single), Some(keys::type_), "keyspace", "Determines the type of value stored at a key."),
    cmd("rename", 3, WRITE, KEY12, Keys(Single), Some(keys::rename), "keyspace", "Renames a key and overwrites the destination."),
    cmd("renamenx", 3, WRITE | FAST, KEY12, Keys(Single), Some(keys::renamenx), "keyspace", "Renames a key only when the target key name doesn't exist."),
    cmd("copy", -3, WRITE | DENYOOM, KEY12, Keys(Single), Some(keys::copy), "keyspace", "Copies the value of a key to a new key."),
    cmd("dump", 2, READONLY, KEY1, Keys(Single), Some(dump::dump), "keyspace", "Returns a serialized representation of the value stored at a key."),
    cmd("restore", -4, WRITE | DENYOOM, KEY1, Keys(Single), Some(dump::restore), "keyspace", "Creates a key from the serialized representation of a value."),
    cmd("keys", 2, READONLY, NOKEY, AllShards(Concat), Some(keys::keys), "keyspace", "Returns all key names that match a pattern."),
    cmd("scan", -2, READONLY, NOKEY, Cursor, Some(keys::scan), "keyspace", "Iterates over the key names in the database."),
    cmd("randomkey", 1, READONLY | RANDOM, NOKEY, AllShards(AnyNonNull), Some(keys::randomkey), "keyspace", "Returns a random key name from the database."),
    cmd("dbsize", 1, READONLY | FAST, NOKEY, AllShards(Sum), Some(keys::dbsize), "keyspace", "Returns the number of keys in the database."),
    cmd("flushdb", -1, WRITE, NOKEY, AllShards(AllOk), Some(keys::flush), "keyspace", "Remove all keys from the current database."),
    cmd("flushall", -1, WRITE, NOKEY, AllShards(AllOk), Some(keys::flush), "keyspace", "Removes all keys from all databases."),
    cmd("sort", -2, WRITE | DENYOOM | SORT_STORE, KEY1, Keys(Single), Some(sort::sort), "generic", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result."),
    cmd("sort_ro", -2, READONLY, KEY1, Keys(Single), Some(sort::sort_ro), "generic", "Returns the sorted elements of a list, a set, or a sorted set."),
    cmd("object", -2, READONLY, (2, 2, 1), Keys(Single), Some(keys::object), "keyspace", "OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ key."),
    cmd("wait", 3, 0, NOKEY, Keyless, Some(keys::wait), "generic", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."),
    cmd("memory", -2, READONLY, (2, 2, 1), Keys(Single), Some(keys::memory), "keyspace", "Memory introspection: MEMORY USAGE key [SAMPLES n]."),
    // bitmaps
    cmd("setbit", 4, WRITE | DENYOOM, KEY1, Keys(Single), Some(bitmaps::setbit), "bitmap", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."),
    cmd("getbit", 3, READONLY | FAST, KEY1, Keys(Single), Some(bitmaps::getbit), "bitmap", "Returns a bit value by offset."),
    cmd("bitcount", -2, READONLY, KEY1, Keys(Single), Some(bitmaps::bitcount), "bitmap", "Counts the number of set bits (population counting) in a string."),
    cmd("bitpos", -3, READONLY, KEY1, Keys(Single), Some(bitmaps::bitpos), "bitmap", "Finds the first set (1) or clear (0) bit in a string."),
    cmd("bitfield", -2, WRITE | DENYOOM, KEY1, Keys(Single), Some(bitmaps::bitfield), "bitmap", "Performs arbitrary bitfield integer operations on strings."),
    cmd("bitfield_ro", -2, READONLY | FAST, KEY1, Keys(Single), Some(bitmaps::bitfield_ro), "bitmap", "Performs arbitrary read-only bitfield integer operations on strings."),
    cmd("bitop", -4, WRITE | DENYOOM, (2, -1, 1), Keys(Single), Some(bitmaps::bitop), "bitmap", "Performs bitwise operations on multiple strings, and stores the result."),
    // HyperLogLog
    cmd("pfadd", -2, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hyperloglog::pfadd), "hyperloglog", "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist."),
    cmd("pfcount", -2, READONLY, ALLKEYS, Keys(Single), Some(hyperloglog::pfcount), "hyperloglog", "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s)."),
    cmd("pfmerge", -2, WRITE | DENYOOM, ALLKEYS, Keys(Single), Some(hyperloglog::pfmerge), "hyperloglog", "Merges one or more HyperLogLog values into a single key."),
    // hashes
    cmd("hset", -4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hashes::hset), "hash", "Creates or modifies the value of a field in a hash."),
    cmd("hsetnx", 4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hashes::hsetnx), "hash", "Sets the value of a field in a hash only when the field doesn't exist."),
    cmd("hmset", -4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hashes::hmset), "hash", "Sets the values of multiple fields."),
    cmd("hget", 3, READONLY | FAST, KEY1, Keys(Single), Some(hashes::hget), "hash", "Returns the value of a field in a hash."),
    cmd("hmget", -3, READONLY | FAST, KEY1, Keys(Single), Some(hashes::hmget), "hash", "Returns the values of all fields in a hash."),
    cmd("hdel", -3, WRITE | FAST, KEY1, Keys(Single), Some(hashes::hdel), "hash", "Deletes one or more fields and their values from a hash."),
    cmd("hgetall", 2, READONLY, KEY1, Keys(Single), Some(hashes::hgetall), "hash", "Returns all fields and values in a hash."),
    cmd("hlen", 2, READONLY | FAST, KEY1, Keys(Single), Some(hashes::hlen), "hash", "Returns the number of fields in a hash."),
    cmd("hexists", 3, READONLY | FAST, KEY1, Keys(Single), Some(hashes::hexists), "hash", "Determines whether a field exists in a hash."),
    cmd("hincrby", 4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hashes::hincrby), "hash", "Increments the integer value of a field in a hash by a number."),
    cmd("hincrbyfloat", 4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(hashes::hincrbyfloat), "hash", "Increments the floating point value of a field by a number."),
    cmd("hkeys", 2, READONLY, KEY1, Keys(Single), Some(hashes::hkeys), "hash", "Returns all fields in a hash."),
    cmd("hvals", 2, READONLY, KEY1, Keys(Single), Some(hashes::hvals), "hash", "Returns all values in a hash."),
    cmd("hstrlen", 3, READONLY | FAST, KEY1, Keys(Single), Some(hashes::hstrlen), "hash", "Returns the length of the value of a field."),
    cmd("hrandfield", -2, READONLY | RANDOM, KEY1, Keys(Single), Some(hashes::hrandfield), "hash", "Returns one or more random fields from a hash."),
    cmd("hscan", -3, READONLY, KEY1, Keys(Single), Some(hashes::hscan), "hash", "Iterates over fields and values of a hash."),
    // lists
    cmd("lpush", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(lists::lpush), "list", "Prepends one or more elements to a list. Creates the key if it doesn't exist."),
    cmd("rpush", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(lists::rpush), "list", "Appends one or more elements to a list. Creates the key if it doesn't exist."),
    cmd("lpushx", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(lists::lpushx), "list", "Prepends one or more elements to a list only when the list exists."),
    cmd("rpushx", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(lists::rpushx), "list", "Appends an element to a list only when the list exists."),
    cmd("lpop", -2, WRITE | FAST, KEY1, Keys(Single), Some(lists::lpop), "list", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."),
    cmd("rpop", -2, WRITE | FAST, KEY1, Keys(Single), Some(lists::rpop), "list", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."),
    cmd("llen", 2, READONLY | FAST, KEY1, Keys(Single), Some(lists::llen), "list", "Returns the length of a list."),
    cmd("lrange", 4, READONLY, KEY1, Keys(Single), Some(lists::lrange), "list", "Returns a range of elements from a list."),
    cmd("lindex", 3, READONLY, KEY1, Keys(Single), Some(lists::lindex), "list", "Returns an element from a list by its index."),
    cmd("lset", 4, WRITE | DENYOOM, KEY1, Keys(Single), Some(lists::lset), "list", "Sets the value of an element in a list by its index."),
    cmd("linsert", 5, WRITE | DENYOOM, KEY1, Keys(Single), Some(lists::linsert), "list", "Inserts an element before or after another element in a list."),
    cmd("lrem", 4, WRITE, KEY1, Keys(Single), Some(lists::lrem), "list", "Removes elements from a list. Deletes the list if the last element was removed."),
    cmd("ltrim", 4, WRITE, KEY1, Keys(Single), Some(lists::ltrim), "list", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."),
    cmd("lpos", -3, READONLY, KEY1, Keys(Single), Some(lists::lpos), "list", "Returns the index of matching elements in a list."),
    cmd("lmove", 5, WRITE | DENYOOM, KEY12, Keys(Single), Some(lists::lmove), "list", "Returns an element after popping it from one list and pushing it to another."),
    cmd("rpoplpush", 3, WRITE | DENYOOM, KEY12, Keys(Single), Some(lists::rpoplpush), "list", "Returns the last element of a list after removing and pushing it to another list."),
    cmd("lmpop", -4, WRITE | NUMKEYS, NOKEY, Keys(Single), Some(lists::lmpop), "list", "Returns multiple elements from a list after removing them."),
    cmd("blpop", -3, WRITE | BLOCKING, (1, -2, 1), Keys(Single), Some(blocking::blpop), "list", "Removes and returns the first element in a list. Blocks until an element is available otherwise."),
    cmd("brpop", -3, WRITE | BLOCKING, (1, -2, 1), Keys(Single), Some(blocking::brpop), "list", "Removes and returns the last element in a list. Blocks until an element is available otherwise."),
    cmd("brpoplpush", 4, WRITE | DENYOOM | BLOCKING, KEY12, Keys(Single), Some(blocking::brpoplpush), "list", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise."),
    cmd("blmove", 6, WRITE | DENYOOM | BLOCKING, KEY12, Keys(Single), Some(blocking::blmove), "list", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise."),
    cmd("blmpop", -5, WRITE | BLOCKING | NUMKEYS2, NOKEY, Keys(Single), Some(blocking::blmpop), "list", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise."),
    // sets
    cmd("sadd", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(sets::sadd), "set", "Adds one or more members to a set. Creates the key if it doesn't exist."),
    cmd("srem", -3, WRITE | FAST, KEY1, Keys(Single), Some(sets::srem), "set", "Removes one or more members from a set. Deletes the set if the last member was removed."),
    cmd("smembers", 2, READONLY, KEY1, Keys(Single), Some(sets::smembers), "set", "Returns all members of a set."),
    cmd("sismember", 3, READONLY | FAST, KEY1, Keys(Single), Some(sets::sismember), "set", "Determines whether a member belongs to a set."),
    cmd("smismember", -3, READONLY | FAST, KEY1, Keys(Single), Some(sets::smismember), "set", "Determines whether multiple members belong to a set."),
    cmd("scard", 2, READONLY | FAST, KEY1, Keys(Single), Some(sets::scard), "set", "Returns the number of members in a set."),
    cmd("spop", -2, WRITE | FAST | RANDOM, KEY1, Keys(Single), Some(sets::spop), "set", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."),
    cmd("srandmember", -2, READONLY | RANDOM, KEY1, Keys(Single), Some(sets::srandmember), "set", "Get one or multiple random members from a set."),
    cmd("smove", 4, WRITE | FAST, KEY12, Keys(Single), Some(sets::smove), "set", "Moves a member from one set to another."),
    cmd("sinter", -2, READONLY, ALLKEYS, Keys(Single), Some(sets::sinter), "set", "Returns the intersect of multiple sets."),
    cmd("sunion", -2, READONLY, ALLKEYS, Keys(Single), Some(sets::sunion), "set", "Returns the union of multiple sets."),
    cmd("sdiff", -2, READONLY, ALLKEYS, Keys(Single), Some(sets::sdiff), "set", "Returns the difference of multiple sets."),
    cmd("sinterstore", -3, WRITE | DENYOOM, ALLKEYS, Keys(Single), Some(sets::sinterstore), "set", "Stores the intersect of multiple sets in a key."),
    cmd("sunionstore", -3, WRITE | DENYOOM, ALLKEYS, Keys(Single), Some(sets::sunionstore), "set", "Stores the union of multiple sets in a key."),
    cmd("sdiffstore", -3, WRITE | DENYOOM, ALLKEYS, Keys(Single), Some(sets::sdiffstore), "set", "Stores the difference of multiple sets in a key."),
    cmd("sintercard", -3, READONLY | NUMKEYS, NOKEY, Keys(Single), Some(sets::sintercard), "set", "Returns the number of members of the intersect of multiple sets."),
    cmd("sscan", -3, READONLY, KEY1, Keys(Single), Some(sets::sscan), "set", "Iterates over members of a set."),
    // sorted sets
    cmd("zadd", -4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(zsets::zadd), "sortedset", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist."),
    cmd("zincrby", 4, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(zsets::zincrby), "sortedset", "Increments the score of a member in a sorted set."),
    cmd("zrem", -3, WRITE | FAST, KEY1, Keys(Single), Some(zsets::zrem), "sortedset", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed."),
    cmd("zscore", 3, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zscore), "sortedset", "Returns the score of a member in a sorted set."),
    cmd("zmscore", -3, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zmscore), "sortedset", "Returns the score of one or more members in a sorted set."),
    cmd("zcard", 2, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zcard), "sortedset", "Returns the number of members in a sorted set."),
    cmd("zcount", 4, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zcount), "sortedset", "Returns the count of members in a sorted set that have scores within a range."),
    cmd("zlexcount", 4, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zlexcount), "sortedset", "Returns the number of members in a sorted set within a lexicographical range."),
    cmd("zrank", -3, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zrank), "sortedset", "Returns the index of a member in a sorted set ordered by ascending scores."),
    cmd("zrevrank", -3, READONLY | FAST, KEY1, Keys(Single), Some(zsets::zrevrank), "sortedset", "Returns the index of a member in a sorted set ordered by descending scores."),
    cmd("zrange", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrange), "sortedset", "Returns members in a sorted set within a range of indexes."),
    cmd("zrevrange", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrevrange), "sortedset", "Returns members in a sorted set within a range of indexes in reverse order."),
    cmd("zrangebyscore", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrangebyscore), "sortedset", "Returns members in a sorted set within a range of scores."),
    cmd("zrevrangebyscore", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrevrangebyscore), "sortedset", "Returns members in a sorted set within a range of scores in reverse order."),
    cmd("zrangebylex", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrangebylex), "sortedset", "Returns members in a sorted set within a lexicographical range."),
    cmd("zrevrangebylex", -4, READONLY, KEY1, Keys(Single), Some(zsets::zrevrangebylex), "sortedset", "Returns members in a sorted set within a lexicographical range in reverse order."),
    cmd("zpopmin", -2, WRITE | FAST, KEY1, Keys(Single), Some(zsets::zpopmin), "sortedset", "Returns the lowest-scoring members from a sorted set after removing them."),
    cmd("zpopmax", -2, WRITE | FAST, KEY1, Keys(Single), Some(zsets::zpopmax), "sortedset", "Returns the highest-scoring members from a sorted set after removing them."),
    cmd("zremrangebyrank", 4, WRITE, KEY1, Keys(Single), Some(zsets::zremrangebyrank), "sortedset", "Removes members in a sorted set within a range of indexes."),
    cmd("zremrangebyscore", 4, WRITE, KEY1, Keys(Single), Some(zsets::zremrangebyscore), "sortedset", "Removes members in a sorted set within a range of scores."),
    cmd("zremrangebylex", 4, WRITE, KEY1, Keys(Single), Some(zsets::zremrangebylex), "sortedset", "Removes members in a sorted set within a lexicographical range."),
    cmd("zrandmember", -2, READONLY | RANDOM, KEY1, Keys(Single), Some(zsets::zrandmember), "sortedset", "Returns one or more random members from a sorted set."),
    cmd("bzpopmin", -3, WRITE | FAST | BLOCKING, (1, -2, 1), Keys(Single), Some(blocking::bzpopmin), "sortedset", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise."),
    cmd("bzpopmax", -3, WRITE | FAST | BLOCKING, (1, -2, 1), Keys(Single), Some(blocking::bzpopmax), "sortedset", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise."),
    cmd("bzmpop", -5, WRITE | BLOCKING | NUMKEYS2, NOKEY, Keys(Single), Some(blocking::bzmpop), "sortedset", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise."),
    cmd("zunion", -3, READONLY | NUMKEYS, NOKEY, Keys(Single), Some(zsets::zunion), "sortedset", "Returns the union of multiple sorted sets."),
    cmd("zinter", -3, READONLY | NUMKEYS, NOKEY, Keys(Single), Some(zsets::zinter), "sortedset", "Returns the intersect of multiple sorted sets."),
    cmd("zdiff", -3, READONLY | NUMKEYS, NOKEY, Keys(Single), Some(zsets::zdiff), "sortedset", "Returns the difference between multiple sorted sets."),
    cmd("zunionstore", -4, WRITE | DENYOOM | DEST_NUMKEYS, NOKEY, Keys(Single), Some(zsets::zunionstore), "sortedset", "Stores the union of multiple sorted sets in a key."),
    cmd("zinterstore", -4, WRITE | DENYOOM | DEST_NUMKEYS, NOKEY, Keys(Single), Some(zsets::zinterstore), "sortedset", "Stores the intersect of multiple sorted sets in a key."),
    cmd("zdiffstore", -4, WRITE | DENYOOM | DEST_NUMKEYS, NOKEY, Keys(Single), Some(zsets::zdiffstore), "sortedset", "Stores the difference of multiple sorted sets in a key."),
    cmd("zintercard", -3, READONLY | NUMKEYS, NOKEY, Keys(Single), Some(zsets::zintercard), "sortedset", "Returns the number of members of the intersect of multiple sorted sets."),
    cmd("zrangestore", -5, WRITE | DENYOOM, KEY12, Keys(Single), Some(zsets::zrangestore), "sortedset", "Stores a range of members from sorted set in a key."),
    cmd("zmpop", -4, WRITE | NUMKEYS, NOKEY, Keys(Single), Some(zsets::zmpop), "sortedset", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them."),
    cmd("zscan", -3, READONLY, KEY1, Keys(Single), Some(zsets::zscan), "sortedset", "Iterates over members and scores of a sorted set."),
    // geo (sorted sets whose scores are geohashes)
    cmd("geoadd", -5, WRITE | DENYOOM, KEY1, Keys(Single), Some(geo::geoadd), "geo", "Adds one or more members to a geospatial index. The key is created if it doesn't exist."),
    cmd("geodist", -4, READONLY, KEY1, Keys(Single), Some(geo::geodist), "geo", "Returns the distance between two members of a geospatial index."),
    cmd("geohash", -2, READONLY, KEY1, Keys(Single), Some(geo::geohash_cmd), "geo", "Returns members from a geospatial index as geohash strings."),
    cmd("geopos", -2, READONLY, KEY1, Keys(Single), Some(geo::geopos), "geo", "Returns the longitude and latitude of members from a geospatial index."),
    cmd("georadius", -6, WRITE | DENYOOM | GEO_STORE, KEY1, Keys(Single), Some(geo::georadius), "geo", "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result."),
    cmd("georadius_ro", -6, READONLY, KEY1, Keys(Single), Some(geo::georadius_ro), "geo", "Returns members from a geospatial index that are within a distance from a coordinate."),
    cmd("georadiusbymember", -5, WRITE | DENYOOM | GEO_STORE, KEY1, Keys(Single), Some(geo::georadiusbymember), "geo", "Queries a geospatial index for members within a distance from a member, optionally stores the result."),
    cmd("georadiusbymember_ro", -5, READONLY, KEY1, Keys(Single), Some(geo::georadiusbymember_ro), "geo", "Returns members from a geospatial index that are within a distance from a member."),
    cmd("geosearch", -7, READONLY, KEY1, Keys(Single), Some(geo::geosearch), "geo", "Queries a geospatial index for members inside an area of a box or a circle."),
    cmd("geosearchstore", -8, WRITE | DENYOOM, KEY12, Keys(Single), Some(geo::geosearchstore), "geo", "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result."),
    // streams
    cmd("xadd", -5, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(streams::xadd), "stream", "Appends a new message to a stream. Creates the key if it doesn't exist."),
    cmd("xlen", 2, READONLY | FAST, KEY1, Keys(Single), Some(streams::xlen), "stream", "Return the number of messages in a stream."),
    cmd("xrange", -4, READONLY, KEY1, Keys(Single), Some(streams::xrange), "stream", "Returns the messages from a stream within a range of IDs."),
    cmd("xrevrange", -4, READONLY, KEY1, Keys(Single), Some(streams::xrevrange), "stream", "Returns the messages from a stream within a range of IDs in reverse order."),
    cmd("xdel", -3, WRITE | FAST, KEY1, Keys(Single), Some(streams::xdel), "stream", "Returns the number of messages after removing them from a stream."),
    cmd("xtrim", -4, WRITE, KEY1, Keys(Single), Some(streams::xtrim), "stream", "Deletes messages from the beginning of a stream."),
    cmd("xsetid", -3, WRITE | DENYOOM | FAST, KEY1, Keys(Single), Some(streams::xsetid), "stream", "An internal command for replicating stream values."),
    cmd("xread", -4, READONLY | BLOCKING | STREAM_KEYS, NOKEY, Keys(Single), Some(streams::xread), "stream", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise."),
    cmd("xreadgroup", -7, WRITE | BLOCKING | STREAM_KEYS, NOKEY, Keys(Single), Some(streams::xreadgroup), "stream", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise."),
    cmd("xgroup", -2, WRITE, (2, 2, 1), Keys(Single), Some(streams::xgroup), "stream", "XGROUP CREATE | SETID | DESTROY | CREATECONSUMER | DELCONSUMER | HELP."),
    cmd("xack", -4, WRITE | FAST, KEY1, Keys(Single), Some(streams::xack), "stream", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream."),
    cmd("xpending", -3, READONLY, KEY1, Keys(Single), Some(streams::xpending), "stream", "Returns the information and entries from a stream consumer group's pending entries list."),
    cmd("xclaim", -6, WRITE | FAST, KEY1, Keys(Single), Some(streams::xclaim), "stream", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member."),
    cmd("xautoclaim", -6, WRITE | FAST, KEY1, Keys(Single), Some(streams::xautoclaim), "stream", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member."),
    cmd("xinfo", -2, READONLY, (2, 2, 1), Keys(Single), Some(streams::xinfo), "stream", "XINFO STREAM | GROUPS | CONSUMERS | HELP."),
    // connection and server: pure ones have handlers, the rest are the driver's
    cmd("ping", -1, FAST | STALE, NOKEY, Keyless, Some(connection::ping), "connection", "Returns the server's liveliness response."),
    cmd("echo", 2, FAST | STALE, NOKEY, Keyless, Some(connection::echo), "connection", "Returns the given string."),
    cmd("time", 1, FAST | STALE | RANDOM, NOKEY, Keyless, Some(connection::time), "server", "Returns the server time."),
    cmd("command", -1, LOADING | STALE, NOKEY, Keyless, Some(connection::command), "server", "Returns detailed information about all commands."),
    cmd("hello", -1, FAST | NO_AUTH | STALE, NOKEY, Conn, None, "connection", "Handshakes with the Redis server."),
    cmd("auth", -2, FAST | NO_AUTH | STALE, NOKEY, Conn, None, "connection", "Authenticates the connection."),
    cmd("select", 2, FAST | LOADING | STALE, NOKEY, Conn, None, "connection", "Changes the selected database."),
    cmd("quit", -1, FAST | NO_AUTH | STALE | IMMEDIATE, NOKEY, Conn, None, "connection", "Closes the connection."),
    cmd("reset", 1, FAST | NO_AUTH | STALE | IMMEDIATE, NOKEY, Conn, None, "connection", "Resets the connection."),
    cmd("client", -2, ADMIN | STALE, NOKEY, Conn, None, "connection", "CLIENT ID, SETNAME, GETNAME, LIST, INFO."),
    cmd("info", -1, STALE, NOKEY, Conn, None, "server", "Returns information and statistics about the server."),
    cmd("config", -2, ADMIN | STALE, NOKEY, Conn, None, "server", "CONFIG GET, CONFIG SET, CONFIG RESETSTAT."),
    cmd("acl", -2, NOSCRIPT | LOADING | STALE, NOKEY, Conn, None, "server", "ACL users: SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, GENPASS, LOG, SAVE, LOAD, DRYRUN."),
    cmd("shutdown", -1, ADMIN | STALE | NO_MULTI, NOKEY, Conn, None, "server", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
    cmd("save", 1, ADMIN | NO_MULTI, NOKEY, Conn, None, "server", "Synchronously saves the database(s) to disk."),
    cmd("bgsave", -1, ADMIN, NOKEY, Conn, None, "server", "Asynchronously saves the database(s) to disk."),
    cmd("bgrewriteaof", 1, ADMIN | NO_MULTI, NOKEY, Conn, None, "server", "Asynchronously rewrites the append-only file to disk."),
    cmd("lastsave", 1, FAST | STALE, NOKEY, Conn, None, "server", "Returns the Unix timestamp of the last successful save to disk."),
    cmd("slowlog", -2, ADMIN | STALE, NOKEY, Conn, None, "server", "SLOWLOG GET [count], SLOWLOG LEN, SLOWLOG RESET: the slow commands log."),
    cmd("latency", -2, ADMIN | STALE, NOKEY, Conn, None, "server", "LATENCY LATEST, LATENCY HISTORY <event>, LATENCY RESET [event ...]: the latency monitor."),
    cmd("multi", 1, FAST | IMMEDIATE, NOKEY, Conn, None, "transaction", "Starts a transaction."),
    cmd("eval", -3, NOSCRIPT | STALE | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::eval), "scripting", "Executes a server-side Lua script."),
    cmd("evalsha", -3, NOSCRIPT | STALE | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::evalsha), "scripting", "Executes a server-side Lua script by SHA1 digest."),
    cmd("eval_ro", -3, NOSCRIPT | STALE | READONLY | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::eval_ro), "scripting", "Executes a read-only server-side Lua script."),
    cmd("evalsha_ro", -3, NOSCRIPT | STALE | READONLY | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::evalsha_ro), "scripting", "Executes a read-only server-side Lua script by SHA1 digest."),
    cmd("script", -2, NOSCRIPT, NOKEY, Keyless, Some(scripting::script), "scripting", "A container for Lua scripts management commands."),
    cmd("fcall", -3, NOSCRIPT | STALE | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::fcall), "scripting", "Invokes a function."),
    cmd("fcall_ro", -3, NOSCRIPT | STALE | READONLY | NUMKEYS2, NOKEY, Keys(Single), Some(scripting::fcall_ro), "scripting", "Invokes a read-only function."),
    cmd("function", -2, NOSCRIPT, NOKEY, Keyless, Some(scripting::function), "scripting", "A container for function commands."),
    cmd("exec", 1, IMMEDIATE, NOKEY, Conn, None, "transaction", "Executes all commands in a transaction."),
    cmd("discard", 1, FAST | IMMEDIATE, NOKEY, Conn, None, "transaction", "Discards a transaction."),
    cmd("watch", -2, FAST | IMMEDIATE, ALLKEYS, Conn, None, "transaction", "Monitors changes to keys to determine the execution of a transaction."),
    cmd("subscribe", -2, STALE, NOKEY, Conn, None, "pubsub", "Listens for messages published to channels."),
    cmd("unsubscribe", -1, STALE, NOKEY, Conn, None, "pubsub", "Stops listening to messages posted to channels."),
    cmd("psubscribe", -2, STALE, NOKEY, Conn, None, "pubsub", "Listens for messages published to channels that match one or more patterns."),
    cmd("punsubscribe", -1, STALE, NOKEY, Conn, None, "pubsub", "Stops listening to messages published to channels that match one or more patterns."),
    cmd("ssubscribe", -2, STALE, NOKEY, Conn, None, "pubsub", "Listens for messages published to shard channels."),
    cmd("sunsubscribe", -1, STALE, NOKEY, Conn, None, "pubsub", "Stops listening to messages posted to shard channels."),
    cmd("publish", 3, STALE | FAST, NOKEY, Conn, None, "pubsub", "Posts a message to a channel."),
    cmd("spublish", 3, STALE | FAST, NOKEY, Conn, None, "pubsub", "Post a message to a shard channel"),
    cmd("pubsub", -2, STALE, NOKEY, Conn, None, "pubsub", "PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB."),
    cmd("unwatch", 1, FAST, NOKEY, Conn, None, "transaction", "Forgets about watched keys of a transaction."),
    cmd("cluster", -2, STALE, NOKEY, Conn, None, "cluster", "CLUSTER KEYSLOT, MYID, INFO, SLOTS, SHARDS, NODES, COUNTKEYSINSLOT, GETKEYSINSLOT."),
    cmd("readonly", 1, FAST | STALE, NOKEY, Conn, None, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node."),
    cmd("readwrite", 1, FAST | STALE, NOKEY, Conn, None, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node."),
    cmd("asking", 1, FAST | STALE, NOKEY, Conn, None, "cluster", "Signals that a cluster client is following an -ASK redirect."),
];

/// Finds a command by name, case-insensitively, without allocating.
#[inline]
/// The row of a command in `COMMANDS`.
pub fn row(spec: &'static CommandSpec) -> usize {
    (spec as *const CommandSpec as usize - COMMANDS.as_ptr() as usize)
        / std::mem::size_of::<CommandSpec>()
}

pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut lower = [0u8; 24];
    if name.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = &lower[..name.len()];
    index().get(lower).map(|&i| &COMMANDS[i])
}

fn index() -> &'static crate::dict::Dict<usize> {
    static INDEX: std::sync::OnceLock<crate::dict::Dict<usize>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut d = crate::dict::Dict::default();
        for (i, c) in COMMANDS.iter().enumerate() {
            let prev = d.insert(c.name.as_bytes(), i);
            assert!(prev.is_none(), "duplicate command {}", c.name);
        }
        d
    })
}

pub use subcommands::check as check_subcommand;

/// Runs a data command (any scope but `Conn`) against `db`. The caller checked arity and routed
/// the keys to this `db`.
#[inline]
pub fn apply(spec: &CommandSpec, db: &mut Db, args: Args, ctx: &mut Ctx, out: &mut Out) {
    let Some(h) = spec.handler else {
        return out.error("ERR this command is handled by the connection, not the keyspace");
    };
    db.now_ms = ctx.now_ms;
    let t = &db.tunables;
    let timed =
        db.apply_depth == 0 && (t.slowlog_log_slower_than >= 0 || t.latency_monitor_threshold > 0);
    if !timed && t.notify_keyspace_events == 0 {
        return h(db, args, ctx, out);
    }
    let start = if timed { (db.timer.now)() } else { 0 };
    db.apply_depth += 1;
    let errors = out.errors;
    h(db, args, ctx, out);
    db.apply_depth -= 1;
    if timed {
        slow(spec, db, args, ctx.now_ms, start);
    }
    if db.tunables.notify_keyspace_events != 0 {
        let failed = out.errors != errors;
        crate::notify::after_command(db, spec, &args, failed);
    }
}

/// Records a command that ran since `start` (ticks of `db.timer`) in the slow log and as a
/// latency event, when it took long enough.
#[cold]
#[inline(never)]
fn slow_record(spec: &CommandSpec, db: &mut Db, args: Args, now_ms: u64, us: u64) {
    let t = db.tunables;
    let at_s = now_ms / 1000;
    if t.slowlog_log_slower_than >= 0 && us >= t.slowlog_log_slower_than as u64 {
        db.slowlog
            .push(args.len(), args.iter(), us, at_s, t.slowlog_max_len);
    }
    if t.latency_monitor_threshold > 0 && us / 1000 >= t.latency_monitor_threshold {
        let event = if spec.flags & flags::FAST != 0 {
            "fast-command"
        } else {
            "command"
        };
        db.latency.add(event, at_s, us / 1000);
    }
}

#[inline]
fn slow(spec: &CommandSpec, db: &mut Db, args: Args, now_ms: u64, start: u64) {
    let us = db.timer.us_since(start);
    let t = &db.tunables;
    let slowlog = t.slowlog_log_slower_than >= 0 && us >= t.slowlog_log_slower_than as u64;
    let latency = t.latency_monitor_threshold > 0 && us / 1000 >= t.latency_monitor_threshold;
    if slowlog || latency {
        slow_record(spec, db, args, now_ms, us);
    }
}

/// Looks up and runs a whole command: the entry point of tests and of replicated apply. Returns
/// the command's table row (`None` for an unknown command).
pub fn execute(
    db: &mut Db,
    args: Args,
    ctx: &mut Ctx,
    out: &mut Out,
) -> Option<&'static CommandSpec> {
    let name = args.get(0);
    let Some(spec) = lookup(name) else {
        err::unknown_command(out, args);
        return None;
    };
    if !spec.arity_ok(args.len()) {
        err::arity(out, spec.name);
        return Some(spec);
    }
    apply(spec, db, args, ctx, out);
    Some(spec)
}

/// The position of `spec` in `COMMANDS` (for per-command counters).
#[inline]
pub fn index_of(spec: &CommandSpec) -> usize {
    let base = COMMANDS.as_ptr() as usize;
    let i = (spec as *const CommandSpec as usize - base) / std::mem::size_of::<CommandSpec>();
    debug_assert!(std::ptr::eq(&COMMANDS[i], spec));
    i
}

/// Error replies in Redis's own wording.
pub mod err {
    use super::Args;
    use crate::reply::Out;

    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const NOT_INT: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const SYNTAX: &str = "ERR syntax error";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const INVALID_CURSOR: &str = "ERR invalid cursor";
    pub const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

    pub fn arity(out: &mut Out, name: &str) {
        out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }

    pub fn unknown_command(out: &mut Out, args: Args) {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            sanitize(args.get(0))
        );
        for a in args.iter().skip(1).take(16) {
            msg.push('\'');
            msg.push_str(&sanitize(a));
            msg.push_str("' ");
        }
        out.error(&msg);
    }

    /// An unknown subcommand of `cmd`, or `HELP`: its subcommands as Redis lists them (one
    /// status line per subcommand and one per description).
    pub fn unknown_subcommand(out: &mut Out, sub: &[u8], cmd: &str) {
        if sub.eq_ignore_ascii_case(b"help") && super::subcommands::write_help(out, cmd) {
            return;
        }
        out.error(&format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            sanitize(sub),
            cmd.to_ascii_uppercase()
        ));
    }

    pub fn invalid_expire(out: &mut Out, name: &str) {
        out.error(&format!("ERR invalid expire time in '{name}' command"));
    }

    /// Client bytes echoed in an error: at most 128 bytes, no CR/LF.
    pub fn sanitize(b: &[u8]) -> String {
        let s = String::from_utf8_lossy(&b[..b.len().min(128)]);
        s.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect()
    }
}

/// A collection type stored in one `Value` variant, so that type checks, creation and removal of
/// emptied collections are written once for every family.
pub(crate) trait Collection: Default {
    fn of(v: &Value) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn into_value(self: Box<Self>) -> Value;
}

macro_rules! collection {
    ($ty:ty, $variant:ident) => {
        impl Collection for $ty {
            fn of(v: &Value) -> Option<&Self> {
                if let Value::$variant(c) = v {
                    Some(c)
                } else {
                    None
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                if let Value::$variant(c) = v {
                    Some(c)
                } else {
                    None
                }
            }
            fn into_value(self: Box<Self>) -> Value {
                Value::$variant(self)
            }
        }
    };
}

collection!(crate::types::Hash, Hash);
collection!(crate::types::List, List);
collection!(crate::types::Set, Set);
collection!(crate::types::ZSet, ZSet);
collection!(streams::Stream, Stream);

/// The collection at `key` for reading (counts a keyspace hit or miss): `Ok(None)` if missing,
/// `Err` (WRONGTYPE written) if the key holds another type.
pub(crate) fn read<'d, T: Collection>(
    db: &'d mut Db,
    key: &[u8],
    now: u64,
    out: &mut Out,
) -> Result<Option<&'d T>, ()> {
    match db.get(key, now) {
        None => Ok(None),
        Some(v) => T::of(v).map(Some).ok_or_else(|| out.error(err::WRONGTYPE)),
    }
}

/// The collection at `key` for changing in place; as [`read`]. Call `db.signal` after a change.
pub(crate) fn modify<'d, T: Collection>(
    db: &'d mut Db,
    key: &[u8],
    now: u64,
    out: &mut Out,
) -> Result<Option<&'d mut T>, ()> {
    match db.get_mut(key, now) {
        None => Ok(None),
        Some(v) => T::of_mut(v)
            .map(Some)
            .ok_or_else(|| out.error(err::WRONGTYPE)),
    }
}

/// The collection at `key`, created empty if missing; `None` (WRONGTYPE written) if the key holds
/// another type. Signals the key as modified.
pub(crate) fn create<'d, T: Collection>(
    db: &'d mut Db,
    key: &[u8],
    now: u64,
    out: &mut Out,
) -> Option<&'d mut T> {
    if modify::<T>(db, key, now, out).is_err() {
        return None;
    }
    T::of_mut(db.get_or_insert_with(key, now, || Box::<T>::default().into_value()))
}

/// Removes `key` if it holds an emptied collection: Redis never keeps empty ones.
pub(crate) fn drop_if_empty(db: &mut Db, key: &[u8], now: u64) {
    if db
        .get_mut(key, now)
        .is_some_and(|v| v.is_empty_collection())
    {
        db.remove(key, now);
    }
}

mod options;
pub mod scripting;
pub(crate) use options::*;

#[cfg(test)]
mod encodings;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_table_has_no_duplicates() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
        for c in COMMANDS {
            assert_eq!(lookup(c.name.as_bytes()).unwrap().name, c.name);
            assert_eq!(c.scope == Scope::Conn, c.handler.is_none(), "{}", c.name);
        }
    }

    #[test]
    fn each_flag_has_a_bit_of_its_own() {
        let mut seen = 0u32;
        for &f in flags::SINGLE {
            assert_eq!(f.count_ones(), 1, "{f:#x} is one bit");
            assert_eq!(seen & f, 0, "{f:#x} is taken twice");
            seen |= f;
        }
        // Only MULTI's own commands run at once inside it; GEORADIUS is queued.
        let own = [
            "quit", "reset", "multi", "exec", "discard", "watch", "unwatch",
        ];
        for c in COMMANDS.iter().filter(|c| c.flags & flags::IMMEDIATE != 0) {
            assert!(
                own.contains(&c.name),
                "{} would run at once inside MULTI",
                c.name
            );
        }
    }

    #[test]
    fn key_indexes_follow_first_last_step() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_indexes(5).collect::<Vec<_>>(), vec![1, 3]);
        let get = lookup(b"get").unwrap();
        assert_eq!(get.key_indexes(2).collect::<Vec<_>>(), vec![1]);
        let del = lookup(b"del").unwrap();
        assert_eq!(del.key_indexes(4).collect::<Vec<_>>(), vec![1, 2, 3]);
        let ping = lookup(b"ping").unwrap();
        assert_eq!(ping.key_indexes(2).count(), 0);
        let memory = lookup(b"memory").unwrap();
        assert_eq!(memory.key_indexes(2).count(), 0);
        assert_eq!(memory.key_indexes(3).collect::<Vec<_>>(), vec![2]);
    }
}
