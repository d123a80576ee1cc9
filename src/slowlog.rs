//! SLOWLOG and LATENCY across the shard threads (issue 20, step 6): each thread keeps its own
//! log and events (`shardline_shards::slowlog`, filled by `command::apply`); the connection
//! asks every thread (`Op::Slow`) and merges what they answer here. The merges are pure:
//! RESP parts in, one reply out.

use shardline_shards::reply::Out;
use shardline_shards::slowlog::HISTORY_MAX;
use shardline_transport::resp::{self, Value};

/// What a thread is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlowOp {
    /// Its newest `n` entries, newest first.
    Get(usize),
    Len,
    Reset,
    /// Each event: `[name, latest second, latest ms, highest ms]`.
    Latest,
    /// The event's samples: `[second, ms]`, oldest first.
    History(Vec<u8>),
    /// Forgets the named events (all when none): the names it forgot.
    LatencyReset(Vec<Vec<u8>>),
}

/// How the connection merges the threads' answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowMerge {
    /// The newest `n` entries over every thread, newest (highest id) first.
    Get(usize),
    /// Per event the latest sample and the highest.
    Latest,
    /// Per second the highest, oldest first, at most `HISTORY_MAX`.
    History,
}

/// A thread's answer to `op` from its keyspace's log and events.
pub fn answer(db: &mut shardline_shards::db::Db, op: &SlowOp, out: &mut Out) {
    match op {
        SlowOp::Get(n) => {
            let entries: Vec<_> = db.slowlog.newest(*n).collect();
            out.array(entries.len());
            for e in entries {
                out.array(6);
                out.int(e.id as i64);
                out.int(e.at_s as i64);
                out.int(e.us as i64);
                out.array(e.args.len());
                for a in &e.args {
                    out.bulk(a);
                }
                // Where the command came from: a command may run on a replica that applies
                // its leader's log, with no client; the log does not keep one.
                out.bulk(b"");
                out.bulk(b"");
            }
        }
        SlowOp::Len => out.int(db.slowlog.len() as i64),
        SlowOp::Reset => {
            db.slowlog.reset();
            out.ok()
        }
        SlowOp::Latest => {
            out.array(db.latency.events.len());
            for (name, e) in &db.latency.events {
                let (at, ms) = e.history.back().copied().unwrap_or_default();
                out.array(4);
                out.bulk(name.as_bytes());
                out.int(at as i64);
                out.int(ms as i64);
                out.int(e.max_ms as i64);
            }
        }
        SlowOp::History(name) => {
            let e = db
                .latency
                .events
                .iter()
                .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()));
            let samples: Vec<(u64, u64)> = e
                .map(|(_, e)| e.history.iter().copied().collect())
                .unwrap_or_default();
            out.array(samples.len());
            for (at, ms) in samples {
                out.array(2);
                out.int(at as i64);
                out.int(ms as i64);
            }
        }
        SlowOp::LatencyReset(names) => {
            let wanted: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
            let before: Vec<&'static str> = db.latency.events.iter().map(|(n, _)| *n).collect();
            db.latency.reset(&wanted);
            let gone: Vec<&str> = before
                .into_iter()
                .filter(|n| !db.latency.events.iter().any(|(m, _)| m == n))
                .collect();
            out.array(gone.len());
            for n in gone {
                out.bulk(n.as_bytes());
            }
        }
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}

fn items(part: &[u8]) -> Vec<Value> {
    match resp::decode(part) {
        Ok(Some((Value::Array(items), _))) => items,
        _ => Vec::new(),
    }
}

/// Merges the threads' answers.
pub fn merge(how: SlowMerge, parts: &[&[u8]], out: &mut Out) {
    match how {
        SlowMerge::Get(n) => {
            let mut all: Vec<(i64, &[u8])> = Vec::new();
            for p in parts {
                let Some(nl) = p.iter().position(|&b| b == b'\n') else {
                    continue;
                };
                let mut at = nl + 1;
                while let Ok(Some(len)) = resp::value_len(&p[at..]) {
                    let entry = &p[at..at + len];
                    let id = match resp::decode(entry) {
                        Ok(Some((Value::Array(f), _))) => f.first().map_or(0, int),
                        _ => 0,
                    };
                    all.push((id, entry));
                    at += len;
                }
            }
            all.sort_by_key(|e| std::cmp::Reverse(e.0));
            all.truncate(n);
            out.array(all.len());
            for (_, e) in all {
                out.raw(e);
            }
        }
        SlowMerge::Latest => {
            // name → (latest second, its ms, highest)
            let mut events: Vec<(Vec<u8>, i64, i64, i64)> = Vec::new();
            for p in parts {
                for ev in items(p) {
                    let Value::Array(f) = ev else { continue };
                    let (Some(Value::Bulk(name)), Some(at), Some(ms), Some(max)) =
                        (f.first(), f.get(1), f.get(2), f.get(3))
                    else {
                        continue;
                    };
                    let (at, ms, max) = (int(at), int(ms), int(max));
                    match events.iter_mut().find(|e| &e.0 == name) {
                        Some(e) => {
                            if (at, ms) > (e.1, e.2) {
                                (e.1, e.2) = (at, ms);
                            }
                            e.3 = e.3.max(max);
                        }
                        None => events.push((name.clone(), at, ms, max)),
                    }
                }
            }
            events.sort();
            out.array(events.len());
            for (name, at, ms, max) in events {
                out.array(4);
                out.bulk(&name);
                out.int(at);
                out.int(ms);
                out.int(max);
            }
        }
        SlowMerge::History => {
            let mut samples: std::collections::BTreeMap<i64, i64> = Default::default();
            for p in parts {
                for s in items(p) {
                    if let Value::Array(f) = s
                        && let (Some(at), Some(ms)) = (f.first(), f.get(1))
                    {
                        let slot = samples.entry(int(at)).or_insert(0);
                        *slot = (*slot).max(int(ms));
                    }
                }
            }
            let skip = samples.len().saturating_sub(HISTORY_MAX);
            out.array(samples.len() - skip);
            for (at, ms) in samples.into_iter().skip(skip) {
                out.array(2);
                out.int(at);
                out.int(ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardline_shards::db::Db;
    use shardline_shards::slot::VShardLayout;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    fn run(db: &mut Db, op: SlowOp) -> Vec<u8> {
        let mut out = Out::new(shardline_shards::reply::Proto::Resp2);
        answer(db, &op, &mut out);
        out.buf
    }

    fn merged(how: SlowMerge, parts: &[Vec<u8>]) -> Value {
        let mut out = Out::new(shardline_shards::reply::Proto::Resp2);
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        merge(how, &parts, &mut out);
        resp::decode(&out.buf).unwrap().unwrap().0
    }

    #[test]
    fn the_threads_logs_merge_newest_first_and_are_cut_to_the_count() {
        let ids = Arc::new(AtomicU64::new(0));
        let layout = VShardLayout::new(4).unwrap();
        let (mut a, mut b) = (Db::new_all(layout), Db::new_all(layout));
        a.slowlog = shardline_shards::slowlog::SlowLog::with_ids(ids.clone());
        b.slowlog = shardline_shards::slowlog::SlowLog::with_ids(ids);
        for (on_a, name) in [(true, "x"), (false, "y"), (true, "z")] {
            let db = if on_a { &mut a } else { &mut b };
            db.slowlog
                .push(1, [name.as_bytes()].into_iter(), 7, 100, 10);
        }
        let parts = [run(&mut a, SlowOp::Get(10)), run(&mut b, SlowOp::Get(10))];
        let Value::Array(got) = merged(SlowMerge::Get(2), &parts) else {
            panic!()
        };
        let ids: Vec<i64> = got
            .iter()
            .map(|e| match e {
                Value::Array(f) => int(&f[0]),
                _ => -1,
            })
            .collect();
        assert_eq!(ids, [2, 1]);
        let Value::Array(f) = &got[0] else { panic!() };
        assert_eq!(f[3], Value::Array(vec![Value::Bulk(b"z".to_vec())]));
        assert_eq!(f.len(), 6);
        assert_eq!(run(&mut a, SlowOp::Len), b":2\r\n");
        assert_eq!(run(&mut a, SlowOp::Reset), b"+OK\r\n");
        assert_eq!(run(&mut a, SlowOp::Len), b":0\r\n");
    }

    #[test]
    fn latency_events_merge_by_latest_and_highest() {
        let layout = VShardLayout::new(4).unwrap();
        let (mut a, mut b) = (Db::new_all(layout), Db::new_all(layout));
        a.latency.add("command", 10, 50);
        a.latency.add("command", 12, 5);
        b.latency.add("command", 11, 70);
        b.latency.add("fast-command", 11, 3);
        let parts = [run(&mut a, SlowOp::Latest), run(&mut b, SlowOp::Latest)];
        let v = merged(SlowMerge::Latest, &parts);
        let row = |name: &str, at: i64, ms: i64, max: i64| {
            Value::Array(vec![
                Value::Bulk(name.as_bytes().to_vec()),
                Value::Int(at),
                Value::Int(ms),
                Value::Int(max),
            ])
        };
        assert_eq!(
            v,
            Value::Array(vec![
                row("command", 12, 5, 70),
                row("fast-command", 11, 3, 3)
            ])
        );
        let h = [
            run(&mut a, SlowOp::History(b"COMMAND".to_vec())),
            run(&mut b, SlowOp::History(b"command".to_vec())),
        ];
        let pair = |at, ms| Value::Array(vec![Value::Int(at), Value::Int(ms)]);
        assert_eq!(
            merged(SlowMerge::History, &h),
            Value::Array(vec![pair(10, 50), pair(11, 70), pair(12, 5)])
        );
        assert_eq!(
            run(&mut b, SlowOp::LatencyReset(vec![])),
            b"*2\r\n$7\r\ncommand\r\n$12\r\nfast-command\r\n"
        );
    }
}
