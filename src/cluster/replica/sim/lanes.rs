//! The bulk lanes in the simulation (`cluster/lanes.rs` in the node): a lane from `a` to `b`
//! is up exactly while `a`'s bus connection to `b` is (`links`), as the node's lane dialer
//! connects when the bus does (writes in flight on a connection that broke may still arrive:
//! the sessions take them as the gaps or repeats they are); what the hubs write goes through an in-memory net of its own
//! with the bus's delays, cuts and pauses, and is read by the replicas' `lane_bytes` as the
//! lane tasks read it.

use super::*;
use shardline_shards::migrate::hub::Dir;

/// A lane write in flight: (writer, reader, shard thread, the reader's side of the lane).
pub(super) type LaneLink = (NodeId, NodeId, usize, Dir);

impl Sim {
    /// Tells each hub which of its lanes are up: those whose bus connection is (a restarted
    /// node's hub starts with none).
    pub(super) fn sync_lanes(&mut self) {
        for a in self.ids() {
            if !self.up(a) {
                continue;
            }
            for p in self.ids() {
                if p == a {
                    continue;
                }
                for (dir, lane) in [(Dir::Source, (a, p)), (Dir::Target, (p, a))] {
                    let up = self.links.contains(&lane);
                    for t in 0..self.threads() {
                        let hub = &mut self.replicas(a, t).hub;
                        match (hub.lane_is_up(p, dir), up) {
                            (false, true) => hub.lane_up(p, dir),
                            (true, false) => hub.lane_down(p, dir),
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// Sends what shard thread `t` of node `id` has for its lanes.
    pub(super) fn flush_lanes(&mut self, id: NodeId, t: usize) {
        let peers: Vec<NodeId> = self.ids().filter(|&p| p != id).collect();
        for p in peers {
            for dir in [Dir::Source, Dir::Target] {
                let lane = match dir {
                    Dir::Source => (id, p),
                    Dir::Target => (p, id),
                };
                if !self.links.contains(&lane) {
                    continue;
                }
                let mut bytes = Vec::new();
                let now = self.now().mono;
                let r = self.replicas(id, t);
                let now_ms = r.hub_now_ms(now);
                r.with_hub_fetch(|hub, _, fetch| {
                    hub.poll(p, dir, &mut bytes, 4 << 20, now_ms, fetch)
                });
                if bytes.is_empty() || self.cut.contains(&(id, p)) {
                    continue;
                }
                self.lane_bytes_sent += bytes.len() as u64;
                let theirs = match dir {
                    Dir::Source => Dir::Target,
                    Dir::Target => Dir::Source,
                };
                let delay = 1 + self.rng.below(4);
                self.lane_net
                    .send(self.now_ms + delay, (id, p, t, theirs), bytes);
            }
        }
    }

    /// Delivers the lane writes due now (held for a paused reader).
    pub(super) fn deliver_lanes(&mut self) {
        let now = self.now().mono;
        let mut held = Vec::new();
        while let Some(((from, to, t, dir), bytes)) = self.lane_net.next_due(self.now_ms) {
            let lane = match dir {
                Dir::Target => (from, to),
                Dir::Source => (to, from),
            };
            if !self.up(to) || !self.links.contains(&lane) || self.cut.contains(&(from, to)) {
                continue;
            }
            if self.paused == Some(to) {
                held.push(((from, to, t, dir), bytes));
                continue;
            }
            let mut bytes = bytes;
            if self.hostile == Some(from) && !bytes.is_empty() {
                // A misbehaving member's lane: bytes flipped anywhere, heads included.
                for _ in 0..1 + self.rng.below(4) {
                    let at = self.rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << self.rng.below(8);
                }
            }
            match self.replicas(to, t).lane_bytes(from, dir, &bytes, now) {
                Ok(took) if took == bytes.len() => {}
                // Each write is whole frames the hub made: read whole, or a bug of ours.
                res => {
                    assert!(
                        self.hostile == Some(from),
                        "seed {:#x}: node {to} read node {from}'s lane bytes: {res:?}",
                        self.seed
                    );
                    // The lane task ends the connection; the bus's goes with it here.
                    self.reset(lane.0, lane.1);
                    continue;
                }
            }
            self.flush_lanes(to, t);
        }
        for (k, bytes) in held {
            self.lane_net.send(self.now_ms + 1, k, bytes);
        }
    }
}
