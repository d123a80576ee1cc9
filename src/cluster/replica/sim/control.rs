//! The nodes' control threads in the simulation: each running node's SWIM (`control::Membership`,
//! as the control thread drives it) exchanges datagrams through the simulated network, under
//! its faults: a partition drops them, a paused node reads them when it runs again, a crashed
//! one loses them and starts again at a later incarnation. Its verdicts reach the shard
//! threads through `Cluster`, as in a process: a node cut off is found by SWIM, not by its
//! connections' silence (the simulated `cluster-node-timeout-ms` is the production default,
//! longer than SWIM's verdict).

use super::*;
use crate::control::Membership;

impl Sim {
    /// Node `id`'s SWIM, started (or restarted: its incarnation is the simulated clock's
    /// seconds plus one, above any earlier run's, as the wall clock's seconds are).
    pub(super) fn start_swim(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        let seed = self.seed ^ id.0.wrapping_mul(0xA24B_AED4_963E_E407) ^ now_ms;
        let inc = (now_ms / 1000) as u32 + 1;
        let n = self.node(id);
        n.swim = Some(Membership::new(
            n.c.clone(),
            shardline_shards::swim::Config::default(),
            inc,
            seed,
            now_ms,
            now_ms,
        ));
        self.send_datagrams(id);
    }

    /// Delivers the datagrams due, runs the timers of the nodes that run, sends what they
    /// queued.
    pub(super) fn swim_tick(&mut self) {
        let mut held = Vec::new();
        while let Some(((from, to), bytes)) = self.swim_net.next_due(self.now_ms) {
            if self.cut.contains(&(from, to)) || self.nodes[to.slot()].swim.is_none() {
                continue;
            }
            if self.paused == Some(to) {
                held.push((from, to, bytes));
                continue;
            }
            let now_ms = self.now_ms;
            let from_addr = self.nodes[from.slot()].c.bus_addr(from);
            let m = self.nodes[to.slot()].swim.as_mut().expect("running");
            m.handle_packet(now_ms, &bytes, from_addr);
            self.swim_deaths += std::mem::take(&mut m.deaths);
            self.send_datagrams(to);
        }
        for (from, to, bytes) in held {
            // In its socket's buffer until it runs again.
            self.swim_net.send(self.now_ms + 1, (from, to), bytes);
        }
        for id in self.ids() {
            if self.paused == Some(id) {
                continue;
            }
            let now_ms = self.now_ms;
            let Some(m) = self.nodes[id.slot()].swim.as_mut() else {
                continue;
            };
            if now_ms >= m.poll_timeout() {
                m.handle_timeout(now_ms);
                self.swim_deaths += std::mem::take(&mut m.deaths);
                self.send_datagrams(id);
            }
        }
    }

    /// What node `id`'s SWIM queued, onto the network with a seeded delay of 1-4 ms.
    fn send_datagrams(&mut self, id: NodeId) {
        let mut out = Vec::new();
        if let Some(m) = self.nodes[id.slot()].swim.as_mut() {
            while let Some((to, _, bytes)) = m.poll_transmit() {
                out.push((to, bytes));
            }
        }
        for (to, bytes) in out {
            if to.0 as usize > self.nodes.len() || self.cut.contains(&(id, to)) {
                continue;
            }
            let delay = 1 + self.rng.below(4);
            self.swim_net.send(self.now_ms + delay, (id, to), bytes);
        }
    }

    /// SWIM's verdict on `about` as node `id` holds it (`None`: not running, or not a member
    /// to it).
    pub(super) fn swim_state(
        &self,
        id: NodeId,
        about: NodeId,
    ) -> Option<(shardline_shards::swim::State, u32)> {
        self.nodes[id.slot()].swim.as_ref()?.state(about)
    }
}
