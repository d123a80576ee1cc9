//! The load-based rebalancer's two ends on a node (issue 19, step 7; decisions in
//! `shardline_shards::meta::rebalance`):
//! - each shard thread counts, per vShard, the commands its leaders run and the bytes of those
//!   that write (`Meter`: a plain add per command into the thread's own array, no atomics, no
//!   clock read); once a second, as it sends its hints, it turns the counts into rates (a
//!   moving average over a few seconds) that the hints carry to every member;
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

/// Per vShard, what this thread's leaders ran since the last roll, and the rates so far.
pub(crate) struct Meter {
    counts: Vec<Cell<(u32, u64)>>,
    rates: Vec<Load>,
    since: Instant,
}

impl Meter {
    pub(super) fn new(groups: usize, now: Instant) -> Meter {
        Meter {
            counts: (0..groups).map(|_| Cell::new((0, 0))).collect(),
            rates: vec![Load::default(); groups],
            since: now,
        }
    }

    /// A command of vShard `v` that wrote `bytes` (0 for a read).
    #[inline]
    pub(crate) fn count(&self, v: u32, bytes: u64) {
        if let Some(c) = self.counts.get(v as usize) {
            let (ops, b) = c.get();
            c.set((ops.saturating_add(1), b.saturating_add(bytes)));
        }
    }

    /// Turns the counts since the last roll into rates: each vShard's rate moves a third of
    /// the way to the last interval's (so a second's burst is a third of itself, and a steady
    /// load is seen within a few seconds). Intervals under 100 ms wait for the next roll.
    pub(super) fn roll(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.since).as_millis() as u64;
        if ms < 100 {
            return;
        }
        self.since = now;
        for (c, r) in self.counts.iter().zip(&mut self.rates) {
            let (ops, bytes) = c.replace((0, 0));
            let per_sec = |n: u64| (n.saturating_mul(1000) / ms).min(u32::MAX as u64);
            let avg = |old: u32, new: u64| ((old as u64 * 2 + new) / 3) as u32;
            r.ops = avg(r.ops, per_sec(ops as u64));
            r.bytes = avg(r.bytes, per_sec(bytes));
        }
    }

    pub(super) fn rate(&self, v: u32) -> Load {
        self.rates.get(v as usize).copied().unwrap_or_default()
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
        let shardline_shards::meta::Cmd::Rebalance {
            vshard,
            from,
            to,
            lead,
        } = d.cmd
        else {
            return;
        };
        let mut cmd = Vec::new();
        d.cmd.encode(&mut cmd);
        if self.propose_meta(cmd).is_ok() {
            tracing::info!(
                vshard,
                from = from.0,
                to = to.0,
                what = if lead { "leadership" } else { "replica" },
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
