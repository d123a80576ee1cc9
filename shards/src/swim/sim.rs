//! SWIM across many nodes on one thread, with virtual time and seeded faults: packets delayed,
//! dropped, cut by partitions; nodes killed, paused (SIGSTOP: packets wait for them, timers
//! fire late), restarted. Each test states a target and measures against it; the seed is in
//! every failure message. Figures for 10, 100 and 1,000 nodes: `swim_convergence_figures`
//! (ignored; `cargo test --release -p shardline-shards swim_convergence_figures -- --ignored
//! --nocapture`, `SWIM_SIZES=10,100` for some sizes only).

use super::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const CLUSTER: [u8; 16] = [7; 16];

/// A datagram on its way: (delivery time, order sent, to, bytes).
type InFlight = (u64, u64, usize, Vec<u8>);

pub(super) struct Net {
    pub nodes: Vec<Swim>,
    pub now: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// (due, node); stale entries are checked against the node when popped.
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    /// The time each node was last armed for (no duplicate entries).
    armed: Vec<u64>,
    pub rng: Rng,
    /// Packets lost, per mille.
    pub loss_per_mille: u64,
    pub delay_ms: (u64, u64),
    /// Nodes in different groups do not hear each other.
    pub group: Vec<u32>,
    paused_until: Vec<u64>,
    pub killed: Vec<bool>,
    /// Every state change seen: (time, observer, event).
    pub log: Vec<(u64, usize, Event)>,
    cfg: Config,
}

impl Net {
    pub fn new(n: usize, cfg: Config, seed: u64) -> Net {
        let ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
        let mut rng = Rng::new(seed);
        let nodes = (0..n)
            .map(|i| {
                let mut s = Swim::new(ids[i], CLUSTER, 0, cfg.clone(), rng.next_u64(), 0);
                s.set_members(&ids, 0);
                s
            })
            .collect();
        let timers = (0..n).map(|i: usize| Reverse((0, i))).collect();
        Net {
            nodes,
            now: 0,
            queue: BinaryHeap::new(),
            order: 0,
            timers,
            armed: vec![0; n],
            rng,
            loss_per_mille: 0,
            delay_ms: (0, 2),
            group: vec![0; n],
            paused_until: vec![0; n],
            killed: vec![false; n],
            log: Vec::new(),
            cfg,
        }
    }

    fn runs(&self, i: usize) -> bool {
        !self.killed[i] && self.paused_until[i] <= self.now
    }

    /// Runs until `until_ms` of virtual time.
    pub fn run(&mut self, until_ms: u64) {
        loop {
            let next_packet = self.queue.peek().map(|Reverse(p)| p.0);
            let next_timer = self.timers.peek().map(|Reverse(t)| t.0);
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(until_ms + 1),
            };
            if next > until_ms {
                self.now = until_ms;
                return;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse((_, _, to, bytes)) = self.queue.pop().unwrap();
                if self.killed[to] {
                    continue;
                }
                if !self.runs(to) {
                    // Paused: the kernel holds it until the process runs again.
                    let at = self.paused_until[to];
                    self.push(at, to, bytes);
                    continue;
                }
                self.nodes[to]
                    .handle_packet(self.now, &bytes)
                    .expect("our own packets decode");
                self.flush(to);
            } else {
                let Reverse((_, i)) = self.timers.pop().unwrap();
                if self.killed[i] {
                    continue;
                }
                // Entries go stale (a packet moved the node's timers, a pause began): the
                // node's own word decides.
                let due = self.nodes[i].poll_timeout().max(self.paused_until[i]);
                if due > self.now {
                    self.timers.push(Reverse((due, i)));
                    continue;
                }
                self.nodes[i].handle_timeout(self.now);
                self.flush(i);
            }
        }
    }

    fn push(&mut self, at: u64, to: usize, bytes: Vec<u8>) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, to, bytes)));
    }

    fn flush(&mut self, from: usize) {
        while let Some(t) = self.nodes[from].poll_transmit() {
            let to = t.to.slot();
            if self.group[from] != self.group[to] || self.rng.below(1000) < self.loss_per_mille {
                continue;
            }
            let (lo, hi) = self.delay_ms;
            let at = self.now + lo + self.rng.below(hi - lo + 1);
            self.push(at, to, t.bytes);
        }
        while let Some(e) = self.nodes[from].poll_event() {
            self.log.push((self.now, from, e));
        }
        self.arm(from);
    }

    /// Node `i`'s next timer into the heap (at most one entry for each time it is asked).
    fn arm(&mut self, i: usize) {
        let t = self.nodes[i].poll_timeout().max(self.paused_until[i]);
        if self.armed[i] != t {
            self.armed[i] = t;
            self.timers.push(Reverse((t, i)));
        }
    }

    /// Node `i` stops for good (kill -9).
    pub fn kill(&mut self, i: usize) {
        self.killed[i] = true;
    }

    /// Node `i` starts again as a new process: incarnation 0, the member table from the
    /// metadata.
    pub fn restart(&mut self, i: usize) {
        let ids: Vec<NodeId> = (1..=self.nodes.len() as u64).map(NodeId).collect();
        let mut s = Swim::new(
            ids[i],
            CLUSTER,
            0,
            self.cfg.clone(),
            self.rng.next_u64(),
            self.now,
        );
        s.set_members(&ids, self.now);
        self.nodes[i] = s;
        self.killed[i] = false;
        self.armed[i] = u64::MAX;
        self.arm(i);
    }

    /// Node `i` stops (SIGSTOP) until `until_ms`.
    pub fn pause(&mut self, i: usize, until_ms: u64) {
        self.paused_until[i] = until_ms;
        self.arm(i);
    }

    /// Whether every running node other than `i` holds `i` in `state`.
    pub fn all_see(&self, i: usize, state: State) -> bool {
        (0..self.nodes.len())
            .filter(|&o| o != i && !self.killed[o])
            .all(|o| self.nodes[o].state(NodeId::of_slot(i)).map(|s| s.0) == Some(state))
    }

    /// Whether every running node holds every other running node `Alive`.
    pub fn all_alive(&self) -> bool {
        (0..self.nodes.len())
            .filter(|&i| !self.killed[i])
            .all(|i| self.all_see(i, State::Alive))
    }

    /// Runs in steps of `step_ms` until `done` or `limit_ms` more; the time it took.
    pub fn until(
        &mut self,
        step_ms: u64,
        limit_ms: u64,
        done: impl Fn(&Net) -> bool,
    ) -> Option<u64> {
        let start = self.now;
        while self.now < start + limit_ms {
            if done(self) {
                return Some(self.now - start);
            }
            let t = self.now + step_ms;
            self.run(t);
        }
        done(self).then(|| self.now - start)
    }

    /// Packets and bytes sent per node per probe period, over `ms` of running.
    pub fn cost(&mut self, ms: u64) -> (f64, f64) {
        let sum = |n: &Net| -> (u64, u64) {
            n.nodes
                .iter()
                .map(|s| (s.stats.packets_out, s.stats.bytes_out))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let before = sum(self);
        let t = self.now + ms;
        self.run(t);
        let after = sum(self);
        let periods = (ms / self.cfg.probe_period_ms) as f64 * self.nodes.len() as f64;
        (
            (after.0 - before.0) as f64 / periods,
            (after.1 - before.1) as f64 / periods,
        )
    }

    /// Anyone's `Dead` verdict on node `i` since `since_ms`.
    pub fn declared_dead(&self, i: usize, since_ms: u64) -> bool {
        self.log.iter().any(|(t, _, e)| {
            *t >= since_ms && e.member == NodeId::of_slot(i) && e.state == State::Dead
        })
    }
}

fn seeds() -> u64 {
    std::env::var("SWIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

#[test]
fn swim_a_killed_node_is_dead_everywhere_within_3_s_and_back_after_a_restart() {
    for seed in 0..seeds() {
        for n in [3, 10, 40] {
            let mut net = Net::new(n, Config::default(), seed);
            net.run(2_000);
            assert!(net.all_alive(), "seed {seed} n {n}: all up at the start");
            let victim = net.rng.below(n as u64) as usize;
            net.kill(victim);
            let took = net.until(10, 10_000, |net| net.all_see(victim, State::Dead));
            assert!(
                took.is_some_and(|t| t <= 3_000),
                "seed {seed} n {n}: node {victim} dead everywhere after {took:?} ms"
            );
            net.restart(victim);
            let back = net.until(10, 10_000, Net::all_alive);
            assert!(
                back.is_some_and(|t| t <= 1_000),
                "seed {seed} n {n}: node {victim} alive everywhere after {back:?} ms"
            );
        }
    }
}

#[test]
fn swim_a_node_paused_for_2_s_is_never_declared_dead() {
    for seed in 0..seeds() {
        for n in [3, 10, 40] {
            let mut net = Net::new(n, Config::default(), seed);
            net.run(2_000);
            let victim = net.rng.below(n as u64) as usize;
            let t0 = net.now;
            net.pause(victim, t0 + 2_000);
            net.run(t0 + 6_000);
            assert!(
                !net.declared_dead(victim, t0),
                "seed {seed} n {n}: node {victim} declared dead after a 2 s pause: {:?}",
                net.log.iter().filter(|l| l.0 >= t0).collect::<Vec<_>>()
            );
            assert!(
                net.all_alive(),
                "seed {seed} n {n}: all alive after the pause"
            );
        }
    }
}

#[test]
fn swim_loss_of_5_percent_of_packets_declares_nobody_dead() {
    for seed in 0..seeds() {
        let mut net = Net::new(10, Config::default(), seed);
        net.loss_per_mille = 50;
        net.delay_ms = (0, 10);
        net.run(30_000);
        let dead: Vec<_> = net
            .log
            .iter()
            .filter(|l| l.2.state == State::Dead)
            .collect();
        assert!(dead.is_empty(), "seed {seed}: {dead:?}");
    }
}

#[test]
fn swim_both_sides_of_a_healed_partition_see_each_other_alive_again() {
    for seed in 0..seeds() {
        let n = 10;
        let mut net = Net::new(n, Config::default(), seed);
        net.run(1_000);
        for i in 0..n {
            net.group[i] = (i < 4) as u32;
        }
        net.run(11_000);
        // Each side took the other for dead.
        assert!(
            (0..4).all(|i| net.nodes[9].state(NodeId::of_slot(i)).unwrap().0 == State::Dead),
            "seed {seed}: the majority holds the minority dead"
        );
        net.group = vec![0; n];
        let took = net.until(10, 10_000, Net::all_alive);
        assert!(
            took.is_some_and(|t| t <= 3_000),
            "seed {seed}: healed after {took:?} ms"
        );
    }
}

#[test]
fn swim_a_node_that_left_is_left_everywhere_at_once() {
    let mut net = Net::new(10, Config::default(), 1);
    net.run(1_000);
    net.nodes[3].leave();
    net.flush(3);
    net.kill(3);
    let took = net.until(1, 1_000, |net| net.all_see(3, State::Left));
    assert!(took.is_some_and(|t| t <= 20), "{took:?}");
    net.restart(3);
    let back = net.until(10, 2_000, Net::all_alive);
    assert!(
        back.is_some(),
        "a restarted node that had left is alive again"
    );
}

/// Targets of the design record, and the figures for 10, 100 and 1,000 nodes: protocol
/// periods until every node agrees after a death, a partition's heal and a restart, and
/// what a node sends per period.
#[test]
#[ignore]
fn swim_convergence_figures() {
    let cfg = Config::default();
    let period = cfg.probe_period_ms as f64;
    let sizes: Vec<usize> = std::env::var("SWIM_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1_000]);
    for n in sizes {
        let mut net = Net::new(n, cfg.clone(), 42);
        net.run(3_000);
        let (packets, bytes) = net.cost(5_000);
        let victim = n / 2;
        net.kill(victim);
        let death = net.until(10, 20_000, |net| net.all_see(victim, State::Dead));
        eprintln!("n {n}: death {death:?} ms");
        net.restart(victim);
        let rejoin = net.until(10, 20_000, Net::all_alive);
        eprintln!("n {n}: restart {rejoin:?} ms");
        for i in 0..n {
            net.group[i] = (i < n / 3) as u32;
        }
        net.run(net.now + 15_000);
        net.group = vec![0; n];
        let heal = net.until(10, 60_000, Net::all_alive);
        let p = |t: Option<u64>| {
            t.map_or("not converged".to_string(), |t| {
                format!("{t} ms ({:.0} periods)", t as f64 / period)
            })
        };
        eprintln!(
            "n {n}: death {}, restart {}, partition heal {}; per node and period: {packets:.2} packets, {bytes:.0} bytes sent",
            p(death),
            p(rejoin),
            p(heal)
        );
    }
}
