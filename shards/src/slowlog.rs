//! SLOWLOG and LATENCY (issue 20, step 6), as Redis keeps them, one of each per shard thread:
//! `command::apply` times every command it runs (with the clock the driver gave the `Db`)
//! when `slowlog-log-slower-than` is not negative or `latency-monitor-threshold` is set, and
//! records the slow ones here. The connection merges the threads' logs (newest first by id:
//! ids come from one counter per node).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Arguments kept per entry (the last one says how many more there were).
const ARGS_MAX: usize = 32;
/// Bytes kept per argument (the rest said as "... (n more bytes)").
const ARG_BYTES_MAX: usize = 128;
/// Samples kept per latency event.
pub const HISTORY_MAX: usize = 160;

/// A cheap monotonic clock in ticks, and how many make a microsecond (the driver injects the
/// TSC or a nanosecond clock; the default never advances: nothing is ever slow).
#[derive(Clone, Copy)]
pub struct Timer {
    pub now: fn() -> u64,
    pub ticks_per_us: u64,
}

impl Default for Timer {
    fn default() -> Self {
        Timer {
            now: || 0,
            ticks_per_us: 1,
        }
    }
}

impl Timer {
    /// Microseconds since `start` (ticks from `now`).
    pub fn us_since(&self, start: u64) -> u64 {
        (self.now)().saturating_sub(start) / self.ticks_per_us.max(1)
    }
}

/// One slow command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Unix seconds when it ran.
    pub at_s: u64,
    pub us: u64,
    pub args: Vec<Vec<u8>>,
}

/// The slow log of one shard thread.
#[derive(Default)]
pub struct SlowLog {
    entries: VecDeque<Entry>,
    /// The node's id counter (shared by its threads; a fresh one by default).
    ids: Arc<AtomicU64>,
}

impl SlowLog {
    /// A log whose ids come from `ids` (one counter per node).
    pub fn with_ids(ids: Arc<AtomicU64>) -> SlowLog {
        SlowLog {
            entries: VecDeque::new(),
            ids,
        }
    }

    /// Records a command's arguments and duration, keeping the newest `max_len`.
    /// `n` is how many arguments `args` yields.
    pub fn push<'a>(
        &mut self,
        n: usize,
        args: impl Iterator<Item = &'a [u8]>,
        us: u64,
        at_s: u64,
        max_len: usize,
    ) {
        if max_len == 0 {
            self.entries.clear();
            return;
        }
        let keep = if n > ARGS_MAX { ARGS_MAX - 1 } else { n };
        let mut kept: Vec<Vec<u8>> = args
            .take(keep)
            .map(|a| {
                if a.len() > ARG_BYTES_MAX {
                    let mut v = a[..ARG_BYTES_MAX].to_vec();
                    v.extend_from_slice(
                        format!("... ({} more bytes)", a.len() - ARG_BYTES_MAX).as_bytes(),
                    );
                    v
                } else {
                    a.to_vec()
                }
            })
            .collect();
        if n > ARGS_MAX {
            kept.push(format!("... ({} more arguments)", n - keep).into_bytes());
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.entries.push_front(Entry {
            id,
            at_s,
            us,
            args: kept,
        });
        self.entries.truncate(max_len);
    }

    /// The newest `count` entries, newest first.
    pub fn newest(&self, count: usize) -> impl Iterator<Item = &Entry> {
        self.entries.iter().take(count)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

/// One latency event's record: its samples (one per second, the highest), and its highest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `(unix seconds, ms)`, oldest first.
    pub history: VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

/// LATENCY's events of one shard thread (`command`, `fast-command`).
#[derive(Default)]
pub struct Latency {
    pub events: Vec<(&'static str, Event)>,
}

impl Latency {
    /// Records `ms` for `event` at `at_s` (the second's highest is kept).
    pub fn add(&mut self, event: &'static str, at_s: u64, ms: u64) {
        let i = match self.events.iter().position(|(n, _)| *n == event) {
            Some(i) => i,
            None => {
                self.events.push((event, Event::default()));
                self.events.len() - 1
            }
        };
        let e = &mut self.events[i].1;
        e.max_ms = e.max_ms.max(ms);
        match e.history.back_mut() {
            Some((t, m)) if *t == at_s => *m = (*m).max(ms),
            _ => {
                e.history.push_back((at_s, ms));
                if e.history.len() > HISTORY_MAX {
                    e.history.pop_front();
                }
            }
        }
    }

    /// Forgets the named events (all when `names` is empty); how many were reset.
    pub fn reset(&mut self, names: &[&[u8]]) -> usize {
        let before = self.events.len();
        if names.is_empty() {
            self.events.clear();
        } else {
            self.events
                .retain(|(n, _)| !names.iter().any(|x| x.eq_ignore_ascii_case(n.as_bytes())));
        }
        before - self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_trims_arguments_and_numbers_entries() {
        let mut l = SlowLog::default();
        let long = vec![b'x'; 200];
        for i in 0..5u64 {
            let args: Vec<&[u8]> = vec![b"set", b"k", &long];
            l.push(3, args.into_iter(), 100 + i, 1000 + i, 3);
        }
        assert_eq!(l.len(), 3);
        let got: Vec<&Entry> = l.newest(10).collect();
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 3, 2]);
        assert_eq!((got[0].us, got[0].at_s), (104, 1004));
        let mut want = vec![b'x'; 128];
        want.extend_from_slice(b"... (72 more bytes)");
        assert_eq!(got[0].args, [b"set".to_vec(), b"k".to_vec(), want]);
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        l.push(40, many.iter().map(|a| a.as_slice()), 1, 1, 3);
        let e = l.newest(1).next().unwrap();
        assert_eq!(e.args.len(), 32);
        assert_eq!(e.args[31], b"... (9 more arguments)");
        assert_eq!(e.args[30], b"a30");
        l.push(1, [b"x".as_slice()].into_iter(), 1, 1, 0);
        assert!(l.is_empty(), "a max length of 0 keeps nothing");
        l.push(1, [b"x".as_slice()].into_iter(), 1, 1, 5);
        l.reset();
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn ids_are_shared_by_logs_of_one_node() {
        let ids = Arc::new(AtomicU64::new(0));
        let (mut a, mut b) = (SlowLog::with_ids(ids.clone()), SlowLog::with_ids(ids));
        a.push(1, [b"a".as_slice()].into_iter(), 1, 1, 9);
        b.push(1, [b"b".as_slice()].into_iter(), 1, 1, 9);
        a.push(1, [b"c".as_slice()].into_iter(), 1, 1, 9);
        assert_eq!(a.newest(9).map(|e| e.id).collect::<Vec<_>>(), [2, 0]);
        assert_eq!(b.newest(9).map(|e| e.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn latency_keeps_each_seconds_highest_and_the_highest_ever() {
        let mut l = Latency::default();
        l.add("command", 10, 5);
        l.add("command", 10, 3);
        l.add("command", 11, 2);
        l.add("fast-command", 11, 1);
        let e = &l.events[0].1;
        assert_eq!(e.history, [(10, 5), (11, 2)]);
        assert_eq!(e.max_ms, 5);
        for s in 0..300 {
            l.add("command", 100 + s, 1);
        }
        assert_eq!(l.events[0].1.history.len(), HISTORY_MAX);
        assert_eq!(l.reset(&[b"FAST-COMMAND"]), 1);
        assert_eq!(l.reset(&[]), 1);
        assert!(l.events.is_empty());
    }
}
