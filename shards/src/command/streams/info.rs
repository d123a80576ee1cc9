//! XINFO STREAM [FULL [COUNT n]], GROUPS, CONSUMERS, HELP.

use super::groups::help;
use super::{Fields, Group, Stream, StreamId, reply_entry, reply_id};
use crate::command::{Args, Ctx, err, read};
use crate::db::Db;
use crate::reply::Out;

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

fn syntax(out: &mut Out, sub: &[u8]) {
    out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
        err::sanitize(sub)
    ))
}

pub fn xinfo(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let sub = a.get(1).to_ascii_lowercase();
    let arity_ok = match sub.as_slice() {
        b"help" => a.len() == 2,
        b"consumers" => a.len() == 4,
        b"groups" => a.len() == 3,
        b"stream" => a.len() >= 3,
        _ => return err::unknown_subcommand(out, a.get(1), "xinfo"),
    };
    if !arity_ok {
        return super::groups::subcommand_arity(out, "xinfo", &sub);
    }
    if sub == b"help" {
        return help(out, XINFO_HELP);
    }
    let s = match read::<Stream>(db, a.get(2), c.now_ms, out) {
        Err(()) => return,
        Ok(None) => return out.error(err::NO_SUCH_KEY),
        Ok(Some(s)) => s,
    };
    match sub.as_slice() {
        b"consumers" => consumers(s, a.get(2), a.get(3), c.now_ms, out),
        b"groups" => groups(s, out),
        _ => stream(s, &a, out),
    }
}

fn optional_int(out: &mut Out, v: Option<impl Into<i128>>) {
    match v.map(Into::into) {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
}

fn consumers(s: &Stream, key: &[u8], group: &[u8], now: u64, out: &mut Out) {
    let Some(g) = s.groups.get(group) else {
        return out.error(&format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            err::sanitize(group),
            err::sanitize(key)
        ));
    };
    out.array(g.consumers.len());
    for (name, cons) in &g.consumers {
        out.map(4);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"pending");
        out.int(cons.pel.len() as i64);
        out.bulk(b"idle");
        out.int(now.saturating_sub(cons.seen_ms) as i64);
        out.bulk(b"inactive");
        out.int(cons.active_ms.map_or(-1, |t| now.saturating_sub(t) as i64));
    }
}

fn groups(s: &Stream, out: &mut Out) {
    out.array(s.groups.len());
    for (name, g) in &s.groups {
        out.map(6);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"consumers");
        out.int(g.consumers.len() as i64);
        out.bulk(b"pending");
        out.int(g.pel.len() as i64);
        out.bulk(b"last-delivered-id");
        reply_id(out, g.last_id);
        out.bulk(b"entries-read");
        optional_int(out, g.entries_read);
        out.bulk(b"lag");
        optional_int(out, s.lag(g));
    }
}

/// The fields XINFO STREAM shares between its short and FULL forms. `radix-tree-keys` is the
/// number of Redis's listpack nodes (tracked exactly); `radix-tree-nodes`, the radix tree's inner
/// nodes, is estimated as one more.
fn stream_header(s: &Stream, out: &mut Out) {
    let nodes = s.nodes.len() as i64;
    out.bulk(b"length");
    out.int(s.len() as i64);
    out.bulk(b"radix-tree-keys");
    out.int(nodes);
    out.bulk(b"radix-tree-nodes");
    out.int(nodes + 1);
    out.bulk(b"last-generated-id");
    reply_id(out, s.last_id);
    out.bulk(b"max-deleted-entry-id");
    reply_id(out, s.max_deleted);
    out.bulk(b"entries-added");
    out.int(s.entries_added as i64);
    out.bulk(b"recorded-first-entry-id");
    reply_id(out, s.first_id());
}

fn edge_entry(out: &mut Out, e: Option<(&StreamId, &Fields)>) {
    match e {
        Some((id, f)) => reply_entry(out, *id, f),
        None => out.null(),
    }
}

fn stream(s: &Stream, a: &Args, out: &mut Out) {
    let mut count = 10usize;
    let full = match a.len() {
        3 => false,
        4 | 6 => {
            if !a.get(3).eq_ignore_ascii_case(b"full") {
                return syntax(out, a.get(1));
            }
            if a.len() == 6 {
                if !a.get(4).eq_ignore_ascii_case(b"count") {
                    return syntax(out, a.get(1));
                }
                let Some(n) = crate::command::int_arg(a, 5, out) else {
                    return;
                };
                count = if n < 0 { 10 } else { n as usize };
            }
            true
        }
        _ => return syntax(out, a.get(1)),
    };
    out.map(if full { 9 } else { 10 });
    stream_header(s, out);
    if !full {
        out.bulk(b"groups");
        out.int(s.groups.len() as i64);
        out.bulk(b"first-entry");
        edge_entry(out, s.entries.first_key_value());
        out.bulk(b"last-entry");
        return edge_entry(out, s.entries.last_key_value());
    }
    let limit = if count == 0 { usize::MAX } else { count };
    out.bulk(b"entries");
    let entries: Vec<_> = s.entries.iter().take(limit).collect();
    out.array(entries.len());
    for (id, f) in entries {
        reply_entry(out, *id, f);
    }
    out.bulk(b"groups");
    out.array(s.groups.len());
    for (name, g) in &s.groups {
        full_group(s, name, g, limit, out);
    }
}

fn full_group(s: &Stream, name: &[u8], g: &Group, limit: usize, out: &mut Out) {
    out.map(7);
    out.bulk(b"name");
    out.bulk(name);
    out.bulk(b"last-delivered-id");
    reply_id(out, g.last_id);
    out.bulk(b"entries-read");
    optional_int(out, g.entries_read);
    out.bulk(b"lag");
    optional_int(out, s.lag(g));
    out.bulk(b"pel-count");
    out.int(g.pel.len() as i64);
    out.bulk(b"pending");
    let pel: Vec<_> = g.pel.iter().take(limit).collect();
    out.array(pel.len());
    for (id, n) in pel {
        out.array(4);
        reply_id(out, *id);
        out.bulk(&n.consumer);
        out.int(n.delivery_ms as i64);
        out.int(n.deliveries as i64);
    }
    out.bulk(b"consumers");
    out.array(g.consumers.len());
    for (cname, cons) in &g.consumers {
        out.map(5);
        out.bulk(b"name");
        out.bulk(cname);
        out.bulk(b"seen-time");
        out.int(cons.seen_ms as i64);
        out.bulk(b"active-time");
        out.int(cons.active_ms.map_or(-1, |t| t as i64));
        out.bulk(b"pel-count");
        out.int(cons.pel.len() as i64);
        out.bulk(b"pending");
        let ids: Vec<_> = cons.pel.iter().take(limit).collect();
        out.array(ids.len());
        for id in ids {
            let n = &g.pel[id];
            out.array(3);
            reply_id(out, *id);
            out.int(n.delivery_ms as i64);
            out.int(n.deliveries as i64);
        }
    }
}
