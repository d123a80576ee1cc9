//! The load-based rebalancer's decisions (issue 19, step 7): pure and deterministic, run by
//! the metadata leader once per period when `cluster-rebalance` is on, fed the load every
//! vShard's leader reports (`Load`, per second, in the leaders' hints: commands, bytes written
//! and CPU time).
//!
//! A node's load is the sum of the loads of the vShards it is the preferred leader of (the
//! placement's first replica: leaders hand over to it, and the leader does a vShard's work:
//! it runs every read and write, logs them and sends them to the followers). Reading the
//! placement rather than the leaders of the moment makes a decision visible to the next
//! sample at once, before the handover it asks for has happened.
//!
//! When the hottest node's load stays above the mean by `threshold_pct` for `samples` samples
//! in a row (hysteresis: a burst moves nothing), one action is taken:
//! 1. leadership first: the hottest node's vShard whose leadership, moved to another of its
//!    replicas, lowers the higher of the two nodes' loads the most (no data moves);
//! 2. only if no leadership move helps (every other replica sits on a node as loaded, or there
//!    are none: one replica per vShard), a replica move of such a vShard from the hottest node
//!    to a node without one (a base copy; its replacement is preferred in turn).
//!
//! An action must lower the higher load of the two nodes it touches (the target's load plus
//! the vShard's stays below the hottest node's): so under a steady load the highest node load
//! only falls from action to action, and nothing flaps back. And it must take at least a
//! quarter of the hottest node's excess over the mean off it: a vShard too light to matter is
//! not worth a handover's pause or a base copy (a node hot with one vShard that cannot be
//! split is left as it is). At most `max_open` of its moves
//! are open at once, and a vShard acted on is left alone for `cooldown` samples.

use super::{Cmd, Meta, MoveKind, MoveState};
use crate::placement::NodeId;

/// Bytes counted as one operation when a vShard's operations and bytes are weighed together
/// (a 1 KiB write weighs 1.25 operations: the leader's cost grows with the bytes it logs and
/// sends, slower than with the commands it runs).
pub const BYTES_PER_OP: u64 = 4096;

/// Microseconds of running commands counted as one operation. What a command costs its
/// leader around its run (reading and parsing it, writing the reply, logging and sending
/// it) is about this much on a busy node: measured at pipeline 16 on one core, a GET costs
/// the server 1.6-1.8 µs of which 0.35 is its run, a SET 3.5-4.0 µs (its log write
/// included) of which 0.3 (docs/BENCHMARKS.md, session 30): about 1.3 and 3.3 µs around the
/// run. So a GET weighs about one operation, and a ZRANGE of a thousand members (tens of µs
/// to run) tens of them.
pub const CPU_US_PER_OP: u64 = 2;

/// A vShard's load on its leader, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Commands run (reads and writes).
    pub ops: u32,
    /// Bytes of the commands that wrote (as logged).
    pub bytes: u32,
    /// Microseconds its commands took to run (in the keyspace, replies included), estimated
    /// from a sample of them: what makes a vShard of sorted-set ranges or Lua scripts heavier
    /// than one of GETs at the same rate.
    pub cpu_us: u32,
}

impl Load {
    /// The load in operations: its commands, its bytes written and its CPU time each
    /// converted (`BYTES_PER_OP`, `CPU_US_PER_OP`).
    pub fn weight(self) -> u64 {
        self.ops as u64 + self.bytes as u64 / BYTES_PER_OP + self.cpu_us as u64 / CPU_US_PER_OP
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How far above the mean (percent) the hottest node must be.
    pub threshold_pct: u64,
    /// Samples in a row the same node must be that hot before anything moves.
    pub samples: u32,
    /// The rebalancer's moves (both kinds) open at once.
    pub max_open: usize,
    /// Samples a vShard acted on is left alone.
    pub cooldown: u64,
    /// Below this total weight (operations a second across the cluster) nothing moves: an
    /// idle cluster's noise is not a load.
    pub min_total: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold_pct: 20,
            samples: 6,
            max_open: 2,
            cooldown: 30,
            min_total: 100,
        }
    }
}

/// One decision, with the figures that made it (for the log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub vshard: u16,
    /// The hottest node, and where the leadership (`lead`) or the replica goes.
    pub from: NodeId,
    pub to: NodeId,
    pub lead: bool,
    /// The hottest node's load, the mean over the nodes, the vShard's weight and the
    /// target's load before the action.
    pub hot_load: u64,
    pub mean: u64,
    pub weight: u64,
    pub to_load: u64,
}

impl Decision {
    /// The metadata command that carries it out.
    pub fn cmd(&self) -> Cmd {
        Cmd::Rebalance {
            vshard: self.vshard,
            from: self.from,
            to: self.to,
            lead: self.lead,
        }
    }
}

/// The rebalancer's memory between samples (on the metadata leader; a new leader starts
/// afresh, which only delays the next action by the hysteresis).
#[derive(Debug, Default)]
pub struct Rebalancer {
    tick: u64,
    hot: NodeId,
    streak: u32,
    /// (vShard, tick it was acted on), for the cooldown.
    acted: Vec<(u16, u64)>,
}

impl Rebalancer {
    /// One sample: `loads[v]` is vShard `v`'s load as its leader last reported it, `live` the
    /// nodes up (bit `id - 1`). At most one action.
    pub fn sample(
        &mut self,
        meta: &Meta,
        loads: &[Load],
        live: u64,
        s: &Settings,
    ) -> Option<Decision> {
        self.tick += 1;
        let tick = self.tick;
        self.acted.retain(|&(_, at)| tick < at + s.cooldown);
        let up = |id: NodeId| id.0 >= 1 && id.0 <= 64 && live & (1u64 << (id.0 - 1)) != 0;
        let nodes: Vec<NodeId> = meta
            .nodes
            .iter()
            .filter(|n| n.placeable())
            .map(|n| n.id)
            .collect();
        let weight = |v: usize| loads.get(v).map_or(0, |l| l.weight());
        let mut load = vec![0u64; nodes.len()];
        for (v, set) in meta.replicas.iter().enumerate() {
            if let Some(i) = set
                .first()
                .and_then(|r| nodes.iter().position(|&n| n == r.node))
            {
                load[i] += weight(v);
            }
        }
        let total: u64 = load.iter().sum();
        let hot = (0..nodes.len()).max_by_key(|&i| (load[i], std::cmp::Reverse(i)))?;
        let n = nodes.len() as u64;
        // hot > mean * (100 + pct) / 100, with mean = total / n, in integers.
        if nodes.len() < 2
            || total < s.min_total
            || load[hot] * 100 * n <= total * (100 + s.threshold_pct)
        {
            self.streak = 0;
            return None;
        }
        if self.hot == nodes[hot] {
            self.streak += 1;
        } else {
            (self.hot, self.streak) = (nodes[hot], 1);
        }
        let open = meta
            .moves
            .iter()
            .filter(|m| m.state == MoveState::Open)
            .filter(|m| matches!(m.kind, MoveKind::Rebalance | MoveKind::Lead))
            .count();
        if self.streak < s.samples || open >= s.max_open {
            return None;
        }
        let hot_id = nodes[hot];
        let excess = load[hot] - total / n;
        let load_of = |id: NodeId| nodes.iter().position(|&n| n == id).map(|i| load[i]);
        // The hottest node's vShards that may move now, heaviest first.
        let mut led: Vec<usize> = (0..meta.replicas.len())
            .filter(|&v| meta.replicas[v].first().is_some_and(|r| r.node == hot_id))
            .filter(|&v| weight(v) > 0 && meta.open_move(v as u16).is_none())
            .filter(|&v| !self.acted.iter().any(|&(a, _)| a as usize == v))
            .collect();
        led.sort_by_key(|&v| (std::cmp::Reverse(weight(v)), v));
        // The best action of a kind: the one that leaves the higher of the two loads lowest,
        // among those that lower it below the hottest node's.
        let best = |lead: bool| {
            let mut best: Option<(u64, usize, NodeId)> = None;
            for &v in &led {
                let w = weight(v);
                if w * 4 < excess {
                    // Too light to matter: moves cost (a handover's pause, a base copy).
                    continue;
                }
                let set = &meta.replicas[v];
                let targets: Vec<NodeId> = if lead {
                    set[1..].iter().map(|r| r.node).collect()
                } else {
                    nodes
                        .iter()
                        .copied()
                        .filter(|&id| !set.iter().any(|r| r.node == id))
                        .collect()
                };
                for to in targets.into_iter().filter(|&id| up(id)) {
                    let Some(to_load) = load_of(to) else { continue };
                    if to_load + w >= load[hot] {
                        continue;
                    }
                    let after = (load[hot] - w).max(to_load + w);
                    if best.is_none_or(|(b, _, _)| after < b) {
                        best = Some((after, v, to));
                    }
                }
            }
            best.map(|(_, v, to)| (v, to))
        };
        let (lead, (v, to)) = match best(true) {
            Some(a) => (true, a),
            None => (false, best(false)?),
        };
        self.acted.push((v as u16, tick));
        self.streak = 0;
        Some(Decision {
            vshard: v as u16,
            from: hot_id,
            to,
            lead,
            hot_load: load[hot],
            mean: total / n,
            weight: weight(v),
            to_load: load_of(to).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests;
