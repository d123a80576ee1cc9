//! Consumer groups: XGROUP XREADGROUP XACK XPENDING XCLAIM XAUTOCLAIM.

use super::{
    Consumer, Group, Nack, Stream, StreamId, id_arg, interval_arg, nogroup, read_args, reply_entry,
    reply_id, reply_streams,
};
use crate::command::{Args, Ctx, create, err, int_arg, modify, read};
use crate::db::Db;
use crate::reply::{Out, Proto};
use std::ops::Bound::{Excluded, Included, Unbounded};

impl Group {
    fn new(last_id: StreamId, entries_read: Option<u64>) -> Self {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// The consumer `name`, created if missing; notes that it was seen now.
    fn consumer(&mut self, name: &[u8], now_ms: u64) -> &mut Consumer {
        let c = self
            .consumers
            .entry(name.into())
            .or_insert_with(|| Consumer {
                seen_ms: now_ms,
                ..Consumer::default()
            });
        c.seen_ms = now_ms;
        c
    }

    /// Makes `id` pending for consumer `name` (moving it from another consumer if it was
    /// pending there), delivered at `delivery_ms`; returns its entry in the group PEL.
    fn assign(&mut self, id: StreamId, name: &[u8], delivery_ms: u64) -> &mut Nack {
        let previous = self.pel.get(&id).map(|n| n.consumer.clone());
        if let Some(prev) = &previous
            && **prev != *name
            && let Some(c) = self.consumers.get_mut(prev)
        {
            c.pel.remove(&id);
        }
        if let Some(c) = self.consumers.get_mut(name) {
            c.pel.insert(id);
        }
        let nack = self.pel.entry(id).or_insert_with(|| Nack {
            consumer: name.into(),
            delivery_ms,
            deliveries: 1,
        });
        nack.consumer = name.into();
        nack.delivery_ms = delivery_ms;
        nack
    }

    /// Acknowledges `id`; true if it was pending.
    fn ack(&mut self, id: StreamId) -> bool {
        let Some(n) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&n.consumer) {
            c.pel.remove(&id);
        }
        true
    }

    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        for (id, n) in &self.pel {
            assert!(self.consumers[&n.consumer].pel.contains(id), "{id:?}");
        }
        let total: usize = self.consumers.values().map(|c| c.pel.len()).sum();
        assert_eq!(total, self.pel.len());
    }
}

/// Looks up a stream for a group command: the stream, or NOGROUP (missing key or group) or
/// WRONGTYPE written.
fn stream_with_group<'d>(
    db: &'d mut Db,
    key: &[u8],
    group: &[u8],
    now_ms: u64,
    out: &mut Out,
) -> Option<&'d mut Stream> {
    match modify::<Stream>(db, key, now_ms, out) {
        Err(()) => None,
        Ok(Some(s)) if s.groups.contains_key(group) => Some(s),
        Ok(_) => {
            nogroup(out, key, group);
            None
        }
    }
}

fn subcommand_error(out: &mut Out, sub: &[u8], cmd: &str) {
    out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {cmd} HELP.",
        err::sanitize(sub)
    ))
}

/// Redis 7's arity error for a subcommand (`xgroup|create`).
pub fn subcommand_arity(out: &mut Out, cmd: &str, sub: &[u8]) {
    out.error(&format!(
        "ERR wrong number of arguments for '{cmd}|{}' command",
        err::sanitize(sub)
    ))
}

/// `ENTRIESREAD n`: a count, or -1 for "unknown".
fn entries_read_arg(a: &Args, i: usize, out: &mut Out) -> Option<Option<u64>> {
    let n = int_arg(a, i, out)?;
    match n {
        -1 => Some(None),
        n if n >= 0 => Some(Some(n as u64)),
        _ => {
            out.error("ERR value for ENTRIESREAD must be positive or -1");
            None
        }
    }
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

pub fn help(out: &mut Out, lines: &[&str]) {
    out.array(lines.len());
    for l in lines {
        out.simple(l);
    }
}

pub fn xgroup(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let sub = a.get(1).to_ascii_lowercase();
    let argc = a.len();
    let arity_ok = match sub.as_slice() {
        b"help" => argc == 2,
        b"create" | b"setid" => argc >= 5,
        b"destroy" => argc == 4,
        b"createconsumer" | b"delconsumer" => argc == 5,
        _ => return err::unknown_subcommand(out, a.get(1), "xgroup"),
    };
    if !arity_ok {
        return subcommand_arity(out, "xgroup", &sub);
    }
    if sub == b"help" {
        return help(out, XGROUP_HELP);
    }
    let shape_ok = match sub.as_slice() {
        b"create" => argc <= 8,
        b"setid" => argc == 5 || argc == 7,
        _ => true,
    };
    if !shape_ok {
        return subcommand_error(out, a.get(1), "XGROUP");
    }
    let (key, group) = (a.get(2), a.get(3));
    let (mut mkstream, mut entries_read) = (false, None);
    if sub == b"create" {
        let mut i = 5;
        while i < argc {
            if a.get(i).eq_ignore_ascii_case(b"mkstream") {
                mkstream = true;
                i += 1;
            } else if a.get(i).eq_ignore_ascii_case(b"entriesread") && i + 1 < argc {
                let Some(n) = entries_read_arg(&a, i + 1, out) else {
                    return;
                };
                entries_read = n;
                i += 2;
            } else {
                return subcommand_error(out, a.get(1), "XGROUP");
            }
        }
    } else if sub == b"setid" && argc == 7 {
        if !a.get(5).eq_ignore_ascii_case(b"entriesread") {
            return subcommand_error(out, a.get(1), "XGROUP");
        }
        let Some(n) = entries_read_arg(&a, 6, out) else {
            return;
        };
        entries_read = n;
    }
    let s = match modify::<Stream>(db, key, c.now_ms, out) {
        Err(()) => return,
        Ok(s) => s,
    };
    if s.is_none() && !(mkstream && sub == b"create") {
        return out.error("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
    }
    let has_group = s.as_ref().is_some_and(|s| s.groups.contains_key(group));
    if !has_group
        && matches!(
            sub.as_slice(),
            b"setid" | b"createconsumer" | b"delconsumer"
        )
    {
        return out.error(&format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            err::sanitize(group),
            err::sanitize(key)
        ));
    }
    let last = s.as_ref().map_or(StreamId::MIN, |s| s.last_id);
    let id_or_dollar = |out: &mut Out| match a.get(4) {
        b"$" => Some(last),
        id => id_arg(id, out),
    };
    match sub.as_slice() {
        b"create" => {
            let Some(id) = id_or_dollar(out) else {
                return;
            };
            if has_group {
                return out.error("BUSYGROUP Consumer Group name already exists");
            }
            let s = create::<Stream>(db, key, c.now_ms, out).expect("type checked above");
            s.groups.insert(group.into(), Group::new(id, entries_read));
            out.ok()
        }
        b"setid" => {
            let Some(id) = id_or_dollar(out) else {
                return;
            };
            let g = s.and_then(|s| s.groups.get_mut(group)).expect("checked");
            g.last_id = id;
            g.entries_read = entries_read;
            db.signal(key);
            out.ok()
        }
        b"destroy" => {
            let removed = s.is_some_and(|s| s.groups.remove(group).is_some());
            if removed {
                db.signal(key);
            }
            out.int(removed as i64)
        }
        b"createconsumer" => {
            let g = s.and_then(|s| s.groups.get_mut(group)).expect("checked");
            let name = a.get(4);
            if g.consumers.contains_key(name) {
                return out.int(0);
            }
            g.consumer(name, c.now_ms);
            db.signal(key);
            out.int(1)
        }
        _ => {
            let g = s.and_then(|s| s.groups.get_mut(group)).expect("checked");
            let Some(consumer) = g.consumers.remove(a.get(4)) else {
                return out.int(0);
            };
            for id in &consumer.pel {
                g.pel.remove(id);
            }
            db.signal(key);
            out.int(consumer.pel.len() as i64)
        }
    }
}

/// Where an XREADGROUP reads one stream.
enum ReadFrom {
    /// `>`: entries never delivered to the group.
    New,
    /// The consumer's own pending entries after this id.
    History(StreamId),
}

pub fn xreadgroup(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let r = match read_args(&a, true) {
        Ok(r) => r,
        Err(e) => return out.error(&e),
    };
    let (group, consumer) = r.group.expect("parsed");
    let mut froms = Vec::with_capacity(r.streams);
    for i in 0..r.streams {
        let (key, id) = (a.get(r.keys_at + i), a.get(r.keys_at + r.streams + i));
        match read::<Stream>(db, key, c.now_ms, out) {
            Err(()) => return,
            Ok(s) if s.is_some_and(|s| s.groups.contains_key(group)) => {}
            Ok(_) => {
                return out.error(&format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    err::sanitize(key),
                    err::sanitize(group)
                ));
            }
        }
        froms.push(match id {
            b">" => ReadFrom::New,
            b"$" => {
                return out.error("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.");
            }
            id => match id_arg(id, out) {
                Some(id) => ReadFrom::History(id),
                None => return,
            },
        });
    }
    let mut body = Out::new(out.proto);
    let mut served = 0;
    for (i, from) in froms.into_iter().enumerate() {
        let key = a.get(r.keys_at + i);
        let s = stream_with_group(db, key, group, c.now_ms, &mut body).expect("checked above");
        if matches!(from, ReadFrom::New) && s.last_valid_id() <= s.groups[group].last_id {
            continue;
        }
        served += 1;
        if body.proto == Proto::Resp2 {
            body.array(2);
        }
        body.bulk(key);
        let read = Read {
            group,
            consumer,
            count: r.count,
            noack: r.noack,
            now_ms: c.now_ms,
        };
        match from {
            ReadFrom::New => deliver_new(s, &read, &mut body),
            ReadFrom::History(after) => deliver_history(s, &read, after, &mut body),
        }
    }
    reply_streams(out, served, &body.buf)
}

struct Read<'a> {
    group: &'a [u8],
    consumer: &'a [u8],
    count: usize,
    noack: bool,
    now_ms: u64,
}

/// Delivers entries after the group's last id to the consumer, making them pending unless NOACK.
fn deliver_new(s: &mut Stream, r: &Read, out: &mut Out) {
    let start = s.groups[r.group].last_id;
    let limit = if r.count == 0 { usize::MAX } else { r.count };
    let ids: Vec<StreamId> = s
        .entries
        .range((Excluded(start), Unbounded))
        .take(limit)
        .map(|(id, _)| *id)
        .collect();
    out.array(ids.len());
    let g = s.groups.get_mut(r.group).expect("checked");
    g.consumer(r.consumer, r.now_ms);
    for &id in &ids {
        s.advance_group(r.group, id);
        let g = s.groups.get_mut(r.group).expect("checked");
        if !r.noack {
            g.assign(id, r.consumer, r.now_ms).deliveries = 1;
        }
        reply_entry(out, id, &s.entries[&id]);
    }
    if !ids.is_empty() {
        let g = s.groups.get_mut(r.group).expect("checked");
        g.consumer(r.consumer, r.now_ms).active_ms = Some(r.now_ms);
    }
}

/// Re-delivers the consumer's pending entries after `after`; a deleted entry is `[id, nil]`.
fn deliver_history(s: &mut Stream, r: &Read, after: StreamId, out: &mut Out) {
    let limit = if r.count == 0 { usize::MAX } else { r.count };
    let g = s.groups.get_mut(r.group).expect("checked");
    let ids: Vec<StreamId> = g
        .consumer(r.consumer, r.now_ms)
        .pel
        .range((Excluded(after), Unbounded))
        .take(limit)
        .copied()
        .collect();
    out.array(ids.len());
    for id in ids {
        match s.entries.get(&id) {
            Some(fields) => {
                let n = s.groups.get_mut(r.group).unwrap().pel.get_mut(&id).unwrap();
                n.delivery_ms = r.now_ms;
                n.deliveries += 1;
                reply_entry(out, id, fields);
            }
            None => {
                out.array(2);
                reply_id(out, id);
                out.null_array();
            }
        }
    }
}

pub fn xack(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (key, group) = (a.get(1), a.get(2));
    let Ok(s) = modify::<Stream>(db, key, c.now_ms, out) else {
        return;
    };
    // As Redis: no key or no group answers 0 before the ids are read.
    let Some(g) = s.and_then(|s| s.groups.get_mut(group)) else {
        return out.int(0);
    };
    let mut ids = Vec::with_capacity(a.len() - 3);
    for i in 3..a.len() {
        match id_arg(a.get(i), out) {
            Some(id) => ids.push(id),
            None => return,
        }
    }
    let acked = ids.into_iter().filter(|&id| g.ack(id)).count();
    if acked > 0 {
        db.signal(key);
    }
    out.int(acked as i64)
}

pub fn xpending(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let argc = a.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return out.error(err::SYNTAX);
    }
    let (mut min_idle, mut range, mut consumer) = (0i64, None, None);
    if argc >= 6 {
        let mut at = 3;
        if a.get(3).eq_ignore_ascii_case(b"idle") {
            let Some(n) = int_arg(&a, 4, out) else {
                return;
            };
            min_idle = n;
            if argc < 8 {
                return out.error(err::SYNTAX);
            }
            at += 2;
        }
        let Some(count) = int_arg(&a, at + 2, out) else {
            return;
        };
        let Ok(start) = interval_arg(a.get(at), 0, true, out) else {
            return;
        };
        let Ok(end) = interval_arg(a.get(at + 1), u64::MAX, false, out) else {
            return;
        };
        range = Some((start, end, count.max(0) as usize));
        if at + 3 < argc {
            consumer = Some(a.get(at + 3));
        }
    }
    let (key, group) = (a.get(1), a.get(2));
    let Some(s) = stream_with_group(db, key, group, c.now_ms, out) else {
        return;
    };
    let g = &s.groups[group];
    let Some((start, end, count)) = range else {
        return pending_summary(g, out);
    };
    let ids: Box<dyn Iterator<Item = &StreamId>> = match consumer {
        None => Box::new(g.pel.range(start..=end).map(|(id, _)| id)),
        Some(name) => match g.consumers.get(name) {
            Some(cons) if start <= end => Box::new(cons.pel.range(start..=end)),
            Some(_) => Box::new(std::iter::empty()),
            None => return out.array(0),
        },
    };
    let now = c.now_ms;
    let rows: Vec<(StreamId, &Nack)> = ids
        .map(|id| (*id, &g.pel[id]))
        .filter(|(_, n)| min_idle <= 0 || now.saturating_sub(n.delivery_ms) as i64 >= min_idle)
        .take(count)
        .collect();
    out.array(rows.len());
    for (id, n) in rows {
        out.array(4);
        reply_id(out, id);
        out.bulk(&n.consumer);
        out.int(now.saturating_sub(n.delivery_ms) as i64);
        out.int(n.deliveries as i64);
    }
}

fn pending_summary(g: &Group, out: &mut Out) {
    out.array(4);
    out.int(g.pel.len() as i64);
    let (Some((first, _)), Some((last, _))) = (g.pel.first_key_value(), g.pel.last_key_value())
    else {
        out.null();
        out.null();
        return out.null_array();
    };
    reply_id(out, *first);
    reply_id(out, *last);
    let busy: Vec<(&Box<[u8]>, &Consumer)> = g
        .consumers
        .iter()
        .filter(|(_, c)| !c.pel.is_empty())
        .collect();
    out.array(busy.len());
    for (name, cons) in busy {
        out.array(2);
        out.bulk(name);
        out.bulk_int(cons.pel.len() as i64);
    }
}

/// What XCLAIM and XAUTOCLAIM do with one pending entry they take over.
struct Claim<'a> {
    consumer: &'a [u8],
    delivery_ms: u64,
    /// `Some(n)`: set the delivery count (RETRYCOUNT); `None`: add one unless `justid`.
    retry_count: Option<u64>,
    justid: bool,
    now_ms: u64,
}

impl Claim<'_> {
    /// Moves pending `id` to the claiming consumer and writes its reply element.
    fn take(&self, s: &mut Stream, group: &[u8], id: StreamId, out: &mut Out) {
        let g = s.groups.get_mut(group).expect("checked");
        g.consumer(self.consumer, self.now_ms).active_ms = Some(self.now_ms);
        let n = g.assign(id, self.consumer, self.delivery_ms);
        match self.retry_count {
            Some(r) => n.deliveries = r,
            None if !self.justid => n.deliveries += 1,
            None => {}
        }
        if self.justid {
            reply_id(out, id);
        } else {
            reply_entry(out, id, &s.entries[&id]);
        }
    }
}

fn min_idle_arg(a: &Args, i: usize, cmd: &str, out: &mut Out) -> Option<u64> {
    match crate::num::parse_i64(a.get(i)) {
        Some(n) => Some(n.max(0) as u64),
        None => {
            out.error(&format!("ERR Invalid min-idle-time argument for {cmd}"));
            None
        }
    }
}

pub fn xclaim(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (key, group) = (a.get(1), a.get(2));
    if stream_with_group(db, key, group, c.now_ms, out).is_none() {
        return;
    }
    let Some(min_idle) = min_idle_arg(&a, 4, "XCLAIM", out) else {
        return;
    };
    let mut ids = Vec::new();
    let mut j = 5;
    while j < a.len() {
        match super::parse_id(a.get(j), 0, true) {
            Some(id) => ids.push(id),
            None => break,
        }
        j += 1;
    }
    let now = c.now_ms;
    let (mut delivery, mut retry, mut force, mut justid, mut last_id) =
        (None::<i64>, None, false, false, StreamId::MIN);
    while j < a.len() {
        let opt = a.get(j);
        let is = |w: &[u8]| opt.eq_ignore_ascii_case(w);
        let has_value = j + 1 < a.len();
        let num = |what: &str, out: &mut Out| {
            crate::num::parse_i64(a.get(j + 1))
                .ok_or_else(|| out.error(&format!("ERR Invalid {what} option argument for XCLAIM")))
        };
        if is(b"force") {
            force = true;
        } else if is(b"justid") {
            justid = true;
        } else if is(b"idle") && has_value {
            let Ok(n) = num("IDLE", out) else { return };
            delivery = Some(now as i64 - n);
            j += 1;
        } else if is(b"time") && has_value {
            let Ok(n) = num("TIME", out) else { return };
            delivery = Some(n);
            j += 1;
        } else if is(b"retrycount") && has_value {
            let Ok(n) = num("RETRYCOUNT", out) else {
                return;
            };
            retry = Some(n.max(0) as u64);
            j += 1;
        } else if is(b"lastid") && has_value {
            let Some(id) = id_arg(a.get(j + 1), out) else {
                return;
            };
            last_id = id;
            j += 1;
        } else {
            return out.error(&format!(
                "ERR Unrecognized XCLAIM option '{}'",
                err::sanitize(opt)
            ));
        }
        j += 1;
    }
    let delivery_ms = match delivery {
        Some(d) if d >= 0 && d as u64 <= now => d as u64,
        _ => now,
    };
    let s = stream_with_group(db, key, group, now, out).expect("checked above");
    let g = s.groups.get_mut(group).expect("checked");
    if last_id > g.last_id {
        g.last_id = last_id;
    }
    let claim = Claim {
        consumer: a.get(3),
        delivery_ms,
        retry_count: retry,
        justid,
        now_ms: now,
    };
    let mut body = Out::new(out.proto);
    let mut n = 0;
    for id in ids {
        let g = s.groups.get_mut(group).expect("checked");
        if !s.entries.contains_key(&id) {
            // The entry is gone: drop it from the PEL rather than hand out a ghost.
            g.ack(id);
            continue;
        }
        match g.pel.get(&id) {
            None if !force => continue,
            Some(nack) if min_idle > 0 && now.saturating_sub(nack.delivery_ms) < min_idle => {
                continue;
            }
            _ => {}
        }
        claim.take(s, group, id, &mut body);
        n += 1;
    }
    db.signal(key);
    out.array(n);
    out.raw(&body.buf);
}

pub fn xautoclaim(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (key, group) = (a.get(1), a.get(2));
    if stream_with_group(db, key, group, c.now_ms, out).is_none() {
        return;
    }
    let Some(min_idle) = min_idle_arg(&a, 4, "XAUTOCLAIM", out) else {
        return;
    };
    let Some(start) = super::parse_id(a.get(5), 0, false) else {
        return out.error(super::INVALID_ID);
    };
    let (mut count, mut justid) = (100usize, false);
    let mut j = 6;
    while j < a.len() {
        if a.get(j).eq_ignore_ascii_case(b"count") && j + 1 < a.len() {
            match crate::num::parse_i64(a.get(j + 1)) {
                Some(n) if (1..=(1 << 40)).contains(&n) => count = n as usize,
                _ => return out.error("ERR COUNT must be > 0"),
            }
            j += 2;
        } else if a.get(j).eq_ignore_ascii_case(b"justid") {
            justid = true;
            j += 1;
        } else {
            return out.error(err::SYNTAX);
        }
    }
    let now = c.now_ms;
    let s = stream_with_group(db, key, group, now, out).expect("checked above");
    let claim = Claim {
        consumer: a.get(3),
        delivery_ms: now,
        retry_count: None,
        justid,
        now_ms: now,
    };
    let mut attempts = count.saturating_mul(10);
    let (mut body, mut claimed, mut deleted) = (Out::new(out.proto), 0, Vec::new());
    let mut cursor = Some(start);
    while let Some(from) = cursor {
        if attempts == 0 || count == 0 {
            break;
        }
        let g = s.groups.get_mut(group).expect("checked");
        let Some((&id, nack)) = g.pel.range((Included(from), Unbounded)).next() else {
            cursor = None;
            break;
        };
        attempts -= 1;
        cursor = id.next();
        if !s.entries.contains_key(&id) {
            g.ack(id);
            deleted.push(id);
            count -= 1;
            continue;
        }
        if min_idle > 0 && now.saturating_sub(nack.delivery_ms) < min_idle {
            continue;
        }
        claim.take(s, group, id, &mut body);
        claimed += 1;
        count -= 1;
    }
    // The cursor is the next pending id still to look at, or 0-0 at the end.
    let g = &s.groups[group];
    let next = cursor
        .and_then(|from| {
            g.pel
                .range((Included(from), Unbounded))
                .next()
                .map(|(id, _)| *id)
        })
        .unwrap_or(StreamId::MIN);
    db.signal(key);
    out.array(3);
    reply_id(out, next);
    out.array(claimed);
    out.raw(&body.buf);
    out.array(deleted.len());
    for id in deleted {
        reply_id(out, id);
    }
}
