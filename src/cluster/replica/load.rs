//! The load-based rebalancer's two ends on a node (issue 19, step 7; decisions in
//! `shardline_shards::meta::rebalance`):
//! - each shard thread counts, per vShard, the commands its leaders run and the bytes of those
//!   that write (`Meter`: a plain add per command into the thread's own array, no atomics),
//!   and the CPU time its commands take to run, from a sample: about one run in `SAMPLE_EVERY`
//!   (at random gaps, so a load's own period cannot hide a vShard from it) reads the clock
//!   before and after, and counts `SAMPLE_EVERY` times what it measured. Once a second, as it
//!   sends its hints, it turns the counts into rates (a moving average over a few seconds)
//!   that the hints carry to every member, once the group has been led here for a whole
//!   second (a new leader's first figures would say the vShard went cold: until then every
//!   node keeps the previous leader's);
//! - the metadata leader's thread 0, when `cluster-rebalance` is on, samples every vShard's
//!   rate once per `cluster-rebalance-period-ms` and proposes what the planner decides
//!   (`Cmd::Rebalance`), logging the figures that decided it; it closes its leadership records
//!   once the new leader leads (`close_moves`), or gives up on one after `LEAD_WAIT`.

use super::*;
use shardline_shards::meta::rebalance::{Load, Rebalancer, Settings};
use std::cell::Cell;

/// A leadership record the preferred replica has not taken over within this is cancelled
/// (its node cannot win an election now): the rebalancer may try elsewhere.
pub(super) const LEAD_WAIT: Duration = Duration::from_secs(30);

/// About one command run in this many is timed (gaps drawn from 1 to `2 * SAMPLE_EVERY - 1`).
/// Two reads of the thread's CPU clock (a system call each, some 0.2 µs) every 64 runs: about
/// 7 ns a command.
pub(crate) const SAMPLE_EVERY: u32 = 64;

/// A clock in nanoseconds (injected: the simulator's runs take no time).
pub(crate) type Clock = fn() -> u64;

/// The calling thread's CPU time: a run preempted by another process (or another test's
/// node on the same core) counts only what it ran. (The monotonic clock, tried first, let
/// one preempted GET weigh as much as a thousand-member ZRANGE in the end-to-end test.)
pub(crate) fn os_clock() -> u64 {
    shardline_transport::cpu::thread_cpu_ns()
}

/// One vShard's counts since the last roll.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    ops: u32,
    bytes: u64,
    /// Estimated nanoseconds of running its commands (sampled, scaled).
    run_ns: u64,
}

/// Per vShard, what this thread's leaders ran since the last roll, the rates so far, and
/// for how many rolls in a row the group was led here.
pub(crate) struct Meter {
    counts: Vec<Cell<Counts>>,
    rates: Vec<Load>,
    led: Vec<u8>,
    since: Instant,
    clock: Clock,
    /// Runs left before the next timed one (1: the next).
    gap: Cell<u32>,
    /// xorshift32 state for the gaps.
    draw: Cell<u32>,
}

impl Meter {
    pub(super) fn new(groups: usize, now: Instant, clock: Clock) -> Meter {
        Meter {
            counts: (0..groups).map(|_| Cell::new(Counts::default())).collect(),
            rates: vec![Load::default(); groups],
            led: vec![0; groups],
            since: now,
            clock,
            gap: Cell::new(1),
            draw: Cell::new(0x9e37_79b9),
        }
    }

    /// Times runs by `clock` from now on (the simulator's).
    #[cfg(test)]
    pub(super) fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// A command of vShard `v` that wrote `bytes` (0 for a read).
    #[inline]
    pub(crate) fn count(&self, v: u32, bytes: u64) {
        if let Some(c) = self.counts.get(v as usize) {
            let mut n = c.get();
            n.ops = n.ops.saturating_add(1);
            n.bytes = n.bytes.saturating_add(bytes);
            c.set(n);
        }
    }

    /// Before a run of commands (one command, an op's, or a log entry's): the clock when
    /// this run is one of the sample, to hand to `ran`.
    #[inline]
    pub(crate) fn start(&self) -> Option<u64> {
        let gap = self.gap.get();
        if gap > 1 {
            self.gap.set(gap - 1);
            return None;
        }
        let mut x = self.draw.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.draw.set(x);
        self.gap.set(1 + x % (2 * SAMPLE_EVERY - 1));
        Some((self.clock)())
    }

    /// After the run `start` began, of vShard `v`'s commands.
    #[inline]
    pub(crate) fn ran(&self, v: u32, started: Option<u64>) {
        let Some(t) = started else { return };
        let took = (self.clock)().saturating_sub(t);
        if let Some(c) = self.counts.get(v as usize) {
            let mut n = c.get();
            n.run_ns = n.run_ns.saturating_add(took * SAMPLE_EVERY as u64);
            c.set(n);
        }
    }

    /// Turns the counts since the last roll into rates, for the groups `led` says this
    /// thread leads: a group's first roll led here is dropped (it was led for part of it),
    /// its second sets its rate, and from then on each moves a third of the way to the last
    /// interval's (a second's burst is a third of itself; a steady load is seen at once).
    /// Intervals under 100 ms wait for the next roll.
    pub(super) fn roll(&mut self, now: Instant, led: impl Fn(usize) -> bool) {
        let ms = now.saturating_duration_since(self.since).as_millis() as u64;
        if ms < 100 {
            return;
        }
        self.since = now;
        let per_sec = |n: u64| (n.saturating_mul(1000) / ms).min(u32::MAX as u64) as u32;
        for (v, c) in self.counts.iter().enumerate() {
            let n = c.replace(Counts::default());
            let (r, led_for) = (&mut self.rates[v], &mut self.led[v]);
            if !led(v) {
                (*r, *led_for) = (Load::default(), 0);
                continue;
            }
            *led_for = led_for.saturating_add(1);
            let sample = Load {
                ops: per_sec(n.ops as u64),
                bytes: per_sec(n.bytes),
                cpu_us: per_sec(n.run_ns / 1000),
            };
            let avg = |old: u32, new: u32| ((old as u64 * 2 + new as u64) / 3) as u32;
            *r = match *led_for {
                1 => Load::default(),
                2 => sample,
                _ => Load {
                    ops: avg(r.ops, sample.ops),
                    bytes: avg(r.bytes, sample.bytes),
                    cpu_us: avg(r.cpu_us, sample.cpu_us),
                },
            };
        }
    }

    /// Group `v`'s rate, once it has one (led here for a whole roll).
    pub(super) fn rate(&self, v: u32) -> Option<Load> {
        let v = v as usize;
        (self.led.get(v).is_some_and(|&n| n >= 2)).then(|| self.rates[v])
    }
}

/// The bytes a command's words take (what a write logs, near enough).
pub(crate) fn words_bytes(spans: &[(u32, u32)]) -> u64 {
    spans.iter().map(|&(s, e)| (e - s) as u64).sum()
}

/// The rebalancer's settings of this node (thread 0 reads them from the config each step).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RebalanceConfig {
    pub on: bool,
    pub period: Duration,
    pub max_open: usize,
}

impl Replicas {
    /// On the metadata leader (thread 0), once per moves period: a rebalancer's sample when
    /// one is due.
    pub(super) fn rebalance(&mut self, now: Instant) {
        let cfg = self.rebalance_cfg;
        if !cfg.on {
            self.rebalancer = None;
            return;
        }
        if self.rebalance_at.is_some_and(|t| now < t) {
            return;
        }
        self.rebalance_at = Some(now + cfg.period);
        let Some(m) = &self.meta else { return };
        let c = &self.c;
        let loads = c.loads(self.meta_g as usize);
        let live = super::super::mask(c.member_ids().into_iter().filter(|&id| c.is_up(id)));
        let settings = Settings {
            max_open: cfg.max_open,
            ..Settings::default()
        };
        let r = self.rebalancer.get_or_insert_with(Rebalancer::default);
        let Some(d) = r.sample(m, &loads, live, &settings) else {
            return;
        };
        let mut cmd = Vec::new();
        d.cmd().encode(&mut cmd);
        if self.propose_meta(cmd).is_ok() {
            tracing::info!(
                vshard = d.vshard,
                from = d.from.0,
                to = d.to.0,
                what = if d.lead { "leadership" } else { "replica" },
                hot_load = d.hot_load,
                mean_load = d.mean,
                vshard_load = d.weight,
                target_load = d.to_load,
                "rebalancing: a node leads more than its share of the load"
            );
        }
    }

    /// On the metadata leader: whether open record `rec` has arrived (the group's committed
    /// voters are its placement, and for a leadership record, the preferred replica leads),
    /// and whether a leadership record waited too long (`LEAD_WAIT`, from when this leader
    /// first saw it).
    pub(super) fn move_arrived(
        &mut self,
        rec: &shardline_shards::meta::MoveRec,
        now: Instant,
    ) -> (bool, bool) {
        let v = VShardId(rec.vshard);
        let voters = self.c.replica_mask(v);
        let placed = voters != 0 && voters == self.c.target_mask(v);
        if rec.kind != shardline_shards::meta::MoveKind::Lead {
            return (placed, false);
        }
        let arrived = placed && self.c.leader(v) == self.c.preferred(v);
        let seen = match self.lead_seen.iter().find(|(id, _)| *id == rec.id) {
            Some(&(_, t)) => t,
            None => {
                self.lead_seen.push((rec.id, now));
                now
            }
        };
        (arrived, !arrived && now >= seen + LEAD_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static NOW_NS: Cell<u64> = const { Cell::new(0) };
    }

    fn fake_clock() -> u64 {
        NOW_NS.with(Cell::get)
    }

    /// Runs one command of `v` that takes `ns` on the fake clock, as the call sites do.
    fn run(m: &Meter, v: u32, ns: u64) {
        m.count(v, 0);
        let t = m.start();
        NOW_NS.with(|c| c.set(c.get() + ns));
        m.ran(v, t);
    }

    /// Three vShards at the same rate of commands, each 20 µs, 1 µs and 100 ns to run,
    /// interleaved in a period of `SAMPLE_EVERY` (a fixed stride would time only one of
    /// them): each one's CPU estimate lands within 15% of what its runs took.
    #[test]
    fn sampled_run_times_estimate_each_vshard_s_cpu_whatever_the_load_s_period() {
        let t0 = Instant::now();
        let mut m = Meter::new(3, t0, fake_clock);
        let cost = [20_000u64, 1_000, 100];
        let pattern: Vec<u32> = (0..SAMPLE_EVERY)
            .map(|i| if i == 0 { 0 } else { 1 + i % 2 })
            .collect();
        let mut truth = [0u64; 3];
        for sec in 1..=3u64 {
            for _ in 0..2_000 {
                for &v in &pattern {
                    run(&m, v, cost[v as usize]);
                    truth[v as usize] += cost[v as usize];
                }
            }
            m.roll(t0 + Duration::from_secs(sec), |_| true);
            if sec == 1 {
                truth = [0; 3]; // (the first roll led here is dropped)
            }
        }
        for (v, &ran_ns) in truth.iter().enumerate() {
            let est = m.rate(v as u32).unwrap().cpu_us as f64;
            let real = ran_ns as f64 / 1000.0 / 2.0; // µs a second over the two seconds
            assert!(
                (est - real).abs() <= real * 0.15,
                "vShard {v}: estimated {est} µs/s, ran {real}"
            );
        }
        assert_eq!(m.rate(0).unwrap().ops, 2_000);
    }

    #[test]
    fn a_group_s_rate_comes_after_a_whole_second_led_and_follows_its_load() {
        let t0 = Instant::now();
        let mut m = Meter::new(2, t0, fake_clock);
        let sec = |k: u64| t0 + Duration::from_millis(1000 * k);
        let run = |m: &Meter, n: u32| {
            for _ in 0..n {
                m.count(0, 4096);
            }
        };
        // Led from the first roll: that second is dropped (led for part of it).
        run(&m, 300);
        m.roll(sec(1), |v| v == 0);
        assert_eq!(m.rate(0), None);
        assert_eq!(m.rate(1), None, "never led here");
        run(&m, 600);
        m.roll(sec(2), |v| v == 0);
        assert_eq!(
            m.rate(0),
            Some(Load {
                ops: 600,
                bytes: 600 * 4096,
                cpu_us: 0,
            })
        );
        // Then a third of the way to each second's figure.
        run(&m, 0);
        m.roll(sec(3), |v| v == 0);
        assert_eq!(m.rate(0).unwrap().ops, 400);
        // Too soon: waits for the next roll.
        run(&m, 900);
        m.roll(sec(3) + Duration::from_millis(50), |v| v == 0);
        assert_eq!(m.rate(0).unwrap().ops, 400);
        m.roll(sec(4), |v| v == 0);
        assert_eq!(m.rate(0).unwrap().ops, 566);
        // Leadership lost: no figure, and the count starts over when it comes back.
        m.roll(sec(5), |_| false);
        assert_eq!(m.rate(0), None);
        run(&m, 10);
        m.roll(sec(6), |v| v == 0);
        assert_eq!(m.rate(0), None);
    }
}
