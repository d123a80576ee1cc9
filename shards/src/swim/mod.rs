//! SWIM failure detection with Lifeguard's refinements (issue 20, step 1; the design record is
//! `docs/design/control.md`): sans-IO, one instance per node, driven by the control thread
//! (and by the simulators) with `(now_ms, input)`; the clock and the RNG are the caller's.
//!
//! Who is a member is not SWIM's to decide: the metadata group's member table is, and
//! `set_members` hands it over. SWIM says whether each member is `Alive`, `Suspect`, `Dead` or
//! `Left` (a member that announced its shutdown), with incarnations: a member suspected or
//! declared dead that is in fact up refutes it by raising its incarnation, and the newest
//! incarnation wins everywhere.
//!
//! Each protocol period a node probes one member (a shuffled round robin): a `Ping`; no `Ack`
//! within the probe timeout, `PingReq`s through `indirect` others; no `Ack` by the period's
//! end, the member is suspected. A suspicion becomes `Dead` after a timeout that starts at
//! `suspect_max_ms` and shrinks toward `suspect_min_ms` as other members independently
//! suspect the same incarnation (Lifeguard's dynamic suspicion). Lifeguard's local health:
//! a node that fails probes, misses the `Nack`s its relays owe it or has to refute
//! suspicions of itself is probably the slow one, and stretches its probe timeout and period
//! by `1 + lhm` (`lhm` up to `lhm_max`; a good probe lowers it). Lifeguard's buddy system: a
//! packet to a member this node holds as not alive carries that verdict first, so the
//! member hears it at once and refutes.
//!
//! Updates travel piggybacked on every packet, least recently sent first, each sent at most
//! `retransmit_mult * ceil(log2(n + 1))` times. A death or a departure new to a node is also
//! forwarded at once to `spread_fanout` random members (a flood: each member forwards it
//! once), so it crosses the cluster in a few network hops rather than protocol periods.
//!
//! Call order: `new`, `set_members`; then `handle_packet` for each datagram,
//! `handle_timeout` when `poll_timeout` is due, and after each, drain `poll_transmit`
//! (datagrams for members) and `poll_event` (state changes).

pub mod msg;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use crate::ids::NodeId;
use crate::rng::Rng;
use msg::{Msg, Packet, PacketError, Update};
use std::collections::{HashMap, VecDeque};

/// The protocol's timing and sizes. Defaults meet the targets of the design record: a killed
/// member is `Dead` everywhere within 3 s; one paused for 2 s is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A probe every this long (times `1 + lhm`).
    pub probe_period_ms: u64,
    /// A direct `Ping` unanswered this long (times `1 + lhm`) goes indirect.
    pub probe_timeout_ms: u64,
    /// Members asked to ping a silent one for us.
    pub indirect: usize,
    /// A suspicion confirmed by `confirmations` others becomes `Dead` after this long...
    pub suspect_min_ms: u64,
    /// ...and one nobody confirms after this long.
    pub suspect_max_ms: u64,
    /// Independent suspicions that bring the timeout to its minimum (at most `n - 2`).
    pub confirmations: u32,
    /// The local health multiplier's ceiling.
    pub lhm_max: u32,
    /// An update is sent `retransmit_mult * ceil(log2(n + 1))` times.
    pub retransmit_mult: u32,
    /// The largest datagram (below a path MTU: no IP fragments).
    pub packet_bytes_max: usize,
    /// Members a death or a departure new to this node is forwarded to at once.
    pub spread_fanout: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_period_ms: 100,
            probe_timeout_ms: 40,
            indirect: 3,
            suspect_min_ms: 2_400,
            suspect_max_ms: 6_000,
            confirmations: 3,
            lhm_max: 8,
            retransmit_mult: 4,
            packet_bytes_max: 1_400,
            spread_fanout: 3,
        }
    }
}

/// What a member is, as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Alive,
    Suspect,
    Dead,
    Left,
}

/// A change of a member's state, for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub member: NodeId,
    pub state: State,
    pub inc: u32,
}

/// A datagram for a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: NodeId,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Member {
    id: NodeId,
    inc: u32,
    state: State,
    /// When the state was entered (for a suspicion: when this node began suspecting).
    since_ms: u64,
    /// Others who suspect this incarnation too (a suspicion's confirmations), at most
    /// `Config::confirmations`.
    confirmed_by: Vec<NodeId>,
    /// When a suspicion becomes `Dead` (kept with `since_ms` and `confirmed_by`).
    dead_at_ms: u64,
}

/// An update waiting to be piggybacked, how often it was sent, and its generation (an entry
/// whose generation is not its member's latest was replaced: dropped when met).
#[derive(Clone, Copy, Debug)]
struct Gossip {
    u: Update,
    sent: u32,
    generation: u64,
}

/// The probe of this period.
#[derive(Clone, Debug)]
struct Probe {
    target: NodeId,
    seq: u32,
    /// When a direct `Ack` stops being waited for and `PingReq`s go out.
    indirect_at_ms: u64,
    indirect_sent: bool,
    acked: bool,
    nacks_owed: u32,
    /// The target was taken for up (alive or suspect) when probed: a dead member is probed
    /// too (a partition healed: both sides must hear each other again), but its silence is
    /// no news.
    expected: bool,
}

/// A `PingReq` this node relays: our ping's `seq`, who asked, their `seq`, and when the
/// asker gets a `Nack` instead.
#[derive(Clone, Copy, Debug)]
struct Relay {
    seq: u32,
    origin: NodeId,
    origin_seq: u32,
    nack_at_ms: u64,
}

/// Counters (what the driver exports as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Datagrams refused: undecodable, another cluster's, from a non-member.
    pub refused: u64,
    pub probes_failed: u64,
    pub refutations: u64,
}

pub struct Swim {
    me: NodeId,
    cluster: [u8; 16],
    inc: u32,
    cfg: Config,
    rng: Rng,
    /// Every member but this node, by id.
    members: Vec<Member>,
    /// The members under suspicion (their timers), and the earliest of their `dead_at_ms`.
    suspects: Vec<NodeId>,
    next_dead_ms: u64,
    order: Vec<NodeId>,
    order_at: usize,
    probe: Option<Probe>,
    next_probe_ms: u64,
    relays: Vec<Relay>,
    seq: u32,
    lhm: u32,
    /// Updates to piggyback, least recently sent first (new ones at the front; each sent one
    /// goes to the back): a round robin that sends every update about as often. One per
    /// member: `latest` has the generation of the newest (a newer one replaces the older).
    gossip: VecDeque<Gossip>,
    latest: HashMap<NodeId, u64>,
    generation: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    leaving: bool,
    /// Deaths and departures new to this node while a packet is applied, to `spread` after.
    to_spread: Vec<NodeId>,
    pub stats: Stats,
}

impl Swim {
    /// A node `me` of cluster `cluster`, starting at incarnation `inc` (0 on a first start; a
    /// restart may start anywhere: a verdict about an older incarnation is refuted). The first
    /// probe goes out at `now_ms` plus a random part of a period (nodes do not probe in step).
    pub fn new(
        me: NodeId,
        cluster: [u8; 16],
        inc: u32,
        cfg: Config,
        seed: u64,
        now_ms: u64,
    ) -> Swim {
        let mut rng = Rng::new(seed);
        let first = now_ms + rng.below(cfg.probe_period_ms.max(1));
        Swim {
            me,
            cluster,
            inc,
            cfg,
            rng,
            members: Vec::new(),
            suspects: Vec::new(),
            next_dead_ms: u64::MAX,
            order: Vec::new(),
            order_at: 0,
            probe: None,
            next_probe_ms: first,
            relays: Vec::new(),
            seq: 0,
            lhm: 0,
            gossip: VecDeque::new(),
            latest: HashMap::new(),
            generation: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            leaving: false,
            to_spread: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn incarnation(&self) -> u32 {
        self.inc
    }

    /// The local health multiplier (0: healthy).
    pub fn health(&self) -> u32 {
        self.lhm
    }

    /// Member `id`'s state and incarnation as this node knows it (`None`: not a member).
    pub fn state(&self, id: NodeId) -> Option<(State, u32)> {
        self.find(id)
            .map(|i| (self.members[i].state, self.members[i].inc))
    }

    /// Every member but this node, with its state.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, State)> + '_ {
        self.members.iter().map(|m| (m.id, m.state))
    }

    /// The member table from the metadata: members added start `Alive` at incarnation 0
    /// (their packets and updates bring the real one), members gone are forgotten.
    pub fn set_members(&mut self, ids: &[NodeId], now_ms: u64) {
        let mut ids: Vec<NodeId> = ids.iter().copied().filter(|&id| id != self.me).collect();
        ids.sort_unstable();
        ids.dedup();
        self.members.retain(|m| ids.binary_search(&m.id).is_ok());
        self.suspects.retain(|id| ids.binary_search(id).is_ok());
        self.next_dead();
        for id in ids {
            if let Err(at) = self.members.binary_search_by_key(&id, |m| m.id) {
                self.members.insert(
                    at,
                    Member {
                        id,
                        inc: 0,
                        state: State::Alive,
                        since_ms: now_ms,
                        confirmed_by: Vec::new(),
                        dead_at_ms: u64::MAX,
                    },
                );
                // Into this pass of the round robin at a random place.
                let at = self.order_at
                    + self
                        .rng
                        .below((self.order.len() - self.order_at) as u64 + 1)
                        as usize;
                self.order.insert(at, id);
            }
        }
        let members = &self.members;
        self.order
            .retain(|id| members.binary_search_by_key(id, |m| m.id).is_ok());
        self.order_at = self.order_at.min(self.order.len());
        let me = self.me;
        let known = |id: NodeId| id == me || members.binary_search_by_key(&id, |m| m.id).is_ok();
        self.gossip.retain(|g| known(g.u.member()));
        self.latest.retain(|&id, _| known(id));
    }

    /// This node is shutting down: every member is told at once (`Left`), so none waits out a
    /// suspicion.
    pub fn leave(&mut self) {
        self.leaving = true;
        let u = Update::Left {
            member: self.me,
            inc: self.inc,
        };
        self.queue(u);
        let ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        for id in ids {
            self.send(id, Msg::Notify);
        }
    }

    /// A verdict that ends `about`'s service (`Dead`, `Left`), new to this node: sent at once
    /// to `spread_fanout` random members that may be up, each of which does the same when it
    /// is new to it too. Every vShard `about` led waits for this news, and piggybacking alone
    /// takes some periods to reach everyone; so a death crosses the cluster in a few network
    /// hops, at `spread_fanout` packets per member (each forwards it once).
    fn spread(&mut self, about: NodeId) {
        let to = self.pick(self.cfg.spread_fanout, |m| {
            m.id != about && matches!(m.state, State::Alive | State::Suspect)
        });
        for id in to {
            self.send(id, Msg::Notify);
        }
    }

    /// Up to `k` members that pass `keep`, drawn at random.
    fn pick(&mut self, k: usize, keep: impl Fn(&Member) -> bool) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.id)
            .collect();
        let k = k.min(ids.len());
        for j in 0..k {
            let at = j + self.rng.below((ids.len() - j) as u64) as usize;
            ids.swap(j, at);
        }
        ids.truncate(k);
        ids
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_probe_ms;
        if let Some(p) = &self.probe
            && !p.indirect_sent
            && !p.acked
            && p.expected
        {
            t = t.min(p.indirect_at_ms);
        }
        for r in &self.relays {
            t = t.min(r.nack_at_ms);
        }
        t.min(self.next_dead_ms)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Timers due at `now_ms`: relays that owe a `Nack`, a probe going indirect, the period's
    /// end (judge its probe, start the next), suspicions that ran out.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let due: Vec<Relay> = self
            .relays
            .iter()
            .filter(|r| r.nack_at_ms <= now_ms)
            .copied()
            .collect();
        self.relays.retain(|r| r.nack_at_ms > now_ms);
        for r in due {
            self.send(r.origin, Msg::Nack { seq: r.origin_seq });
        }
        if let Some(p) = &self.probe
            && !p.acked
            && !p.indirect_sent
            && p.expected
            && now_ms >= p.indirect_at_ms
        {
            self.go_indirect();
        }
        if now_ms >= self.next_probe_ms {
            self.end_probe(now_ms);
            self.start_probe(now_ms);
        }
        let expired: Vec<usize> = self
            .suspects
            .iter()
            .filter_map(|&id| self.find(id))
            .filter(|&i| now_ms >= self.members[i].dead_at_ms)
            .collect();
        for i in expired {
            let (member, inc) = (self.members[i].id, self.members[i].inc);
            self.set_state(i, State::Dead, inc, now_ms);
            self.queue(Update::Dead { member, inc });
            self.spread(member);
        }
    }

    /// One datagram, from anyone: decoded, checked (this cluster, a member), applied. A bad
    /// one is dropped and counted, and its error returned for the driver's log; nothing was
    /// applied.
    pub fn handle_packet(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), PacketError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let p = match msg::decode(bytes) {
            Ok(p)
                if p.cluster == self.cluster
                    && p.from != self.me
                    && self.find(p.from).is_some() =>
            {
                p
            }
            Ok(_) => {
                self.stats.refused += 1;
                return Ok(());
            }
            Err(e) => {
                self.stats.refused += 1;
                return Err(e);
            }
        };
        self.receive(now_ms, p);
        Ok(())
    }

    fn receive(&mut self, now_ms: u64, p: Packet) {
        // The sender is up at its incarnation: as good as its own `Alive` (it refutes this way
        // too). An older incarnation than the verdict this node holds: the sender hears it
        // back first thing (`send` puts the verdict first).
        self.apply(
            now_ms,
            Update::Alive {
                member: p.from,
                inc: p.from_inc,
            },
        );
        for u in p.updates {
            self.apply(now_ms, u);
        }
        for member in std::mem::take(&mut self.to_spread) {
            self.spread(member);
        }
        match p.msg {
            Msg::Ping { seq } => self.send(p.from, Msg::Ack { seq }),
            Msg::PingReq { seq, target } => {
                if target == self.me || self.find(target).is_none() {
                    return;
                }
                let ours = self.next_seq();
                self.relays.push(Relay {
                    seq: ours,
                    origin: p.from,
                    origin_seq: seq,
                    nack_at_ms: now_ms + self.probe_timeout_ms() * 4 / 5,
                });
                self.send(target, Msg::Ping { seq: ours });
            }
            Msg::Ack { seq } => {
                if let Some(probe) = &mut self.probe
                    && probe.seq == seq
                {
                    probe.acked = true;
                    return;
                }
                if let Some(i) = self.relays.iter().position(|r| r.seq == seq) {
                    let r = self.relays.swap_remove(i);
                    self.send(r.origin, Msg::Ack { seq: r.origin_seq });
                }
            }
            Msg::Notify => {}
            Msg::Nack { seq } => {
                if let Some(probe) = &mut self.probe
                    && probe.seq == seq
                {
                    probe.nacks_owed = probe.nacks_owed.saturating_sub(1);
                }
            }
        }
    }

    /// Applies one node's word on a member: the newest incarnation wins, and at the same one
    /// the stronger verdict. About this node: refuted (a suspicion, a death), not taken.
    fn apply(&mut self, now_ms: u64, u: Update) {
        let member = u.member();
        if member == self.me {
            let claimed = match u {
                Update::Suspect { inc, .. }
                | Update::Dead { inc, .. }
                | Update::Left { inc, .. } => inc,
                Update::Alive { inc, .. } => {
                    // Someone holds a newer incarnation of this node (a restart lost ours).
                    if inc > self.inc {
                        self.inc = inc;
                        self.refute();
                    }
                    return;
                }
            };
            if claimed >= self.inc && !self.leaving {
                self.inc = claimed + 1;
                self.lhm = (self.lhm + 1).min(self.cfg.lhm_max);
                self.refute();
            }
            return;
        }
        let Some(i) = self.find(member) else { return };
        let m = &self.members[i];
        let (state, inc) = (m.state, m.inc);
        let rank = |s: State| match s {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead => 2,
            State::Left => 3,
        };
        let (new_state, new_inc) = match u {
            Update::Alive { inc, .. } => (State::Alive, inc),
            Update::Suspect { inc, .. } => (State::Suspect, inc),
            Update::Dead { inc, .. } => (State::Dead, inc),
            Update::Left { inc, .. } => (State::Left, inc),
        };
        if new_inc < inc {
            return;
        }
        if new_inc == inc {
            if rank(new_state) < rank(state) {
                return;
            }
            if new_state == state {
                // The same verdict again: a suspicion's confirmation, else nothing new.
                if let Update::Suspect { from, .. } = u {
                    self.confirm(i, from);
                }
                return;
            }
        }
        self.set_state(i, new_state, new_inc, now_ms);
        if let Update::Suspect { from, .. } = u {
            self.confirm(i, from);
        }
        self.queue(u);
        if matches!(new_state, State::Dead | State::Left) && new_state != state {
            // Once the whole packet is applied (a refutation later in it would raise this
            // node's incarnation: its packets carry the new one).
            self.to_spread.push(member);
        }
    }

    /// Another member suspects member `i`'s incarnation too.
    fn confirm(&mut self, i: usize, from: NodeId) {
        let k = self.confirmations_wanted() as usize;
        let m = &mut self.members[i];
        if from != self.me
            && from != m.id
            && m.confirmed_by.len() < k
            && !m.confirmed_by.contains(&from)
        {
            m.confirmed_by.push(from);
            self.members[i].dead_at_ms =
                self.members[i].since_ms + self.suspicion_ms(&self.members[i]);
            self.next_dead();
        }
    }

    /// The earliest suspicion's end, again (after one changed).
    fn next_dead(&mut self) {
        self.next_dead_ms = self
            .suspects
            .iter()
            .filter_map(|&id| self.find(id))
            .map(|i| self.members[i].dead_at_ms)
            .min()
            .unwrap_or(u64::MAX);
    }

    fn refute(&mut self) {
        self.stats.refutations += 1;
        self.queue(Update::Alive {
            member: self.me,
            inc: self.inc,
        });
    }

    fn set_state(&mut self, i: usize, state: State, inc: u32, now_ms: u64) {
        let m = &mut self.members[i];
        let (id, changed) = (m.id, m.state != state);
        if m.inc != inc || changed {
            m.confirmed_by.clear();
            m.since_ms = now_ms;
        }
        (m.state, m.inc) = (state, inc);
        let dead_at_ms = match state {
            State::Suspect => self.members[i].since_ms + self.suspicion_ms(&self.members[i]),
            _ => u64::MAX,
        };
        self.members[i].dead_at_ms = dead_at_ms;
        self.suspects.retain(|&s| s != id);
        if state == State::Suspect {
            self.suspects.push(id);
        }
        self.next_dead();
        if changed {
            self.events.push_back(Event {
                member: id,
                state,
                inc,
            });
        }
    }

    /// A suspicion's timeout: from `suspect_max_ms` with no confirmation down to
    /// `suspect_min_ms` with all wanted, on a log scale (Lifeguard).
    fn suspicion_ms(&self, m: &Member) -> u64 {
        let (min, max) = (
            self.cfg.suspect_min_ms,
            self.cfg.suspect_max_ms.max(self.cfg.suspect_min_ms),
        );
        let k = self.confirmations_wanted();
        if k == 0 {
            return min;
        }
        let c = (m.confirmed_by.len() as u32).min(k);
        let frac = ((c + 1) as f64).ln() / ((k + 1) as f64).ln();
        max - ((max - min) as f64 * frac) as u64
    }

    /// Confirmations a suspicion can get: `confirmations`, at most the members other than the
    /// suspect and this node.
    fn confirmations_wanted(&self) -> u32 {
        (self.cfg.confirmations).min(self.members.len().saturating_sub(1) as u32)
    }

    fn probe_timeout_ms(&self) -> u64 {
        self.cfg.probe_timeout_ms * (1 + self.lhm as u64)
    }

    /// The probe of the period that ends: a member that answered neither directly nor
    /// through others is suspected (at the incarnation probed); the outcome moves the local
    /// health.
    fn end_probe(&mut self, now_ms: u64) {
        let Some(p) = self.probe.take() else { return };
        if p.acked {
            self.lhm = self.lhm.saturating_sub(1);
            return;
        }
        if !p.expected {
            return;
        }
        self.stats.probes_failed += 1;
        // A failed probe and every missing nack: this node may be the slow one.
        let missed = if p.nacks_owed > 0 { 1 } else { 0 };
        self.lhm = (self.lhm + 1 + missed).min(self.cfg.lhm_max);
        let Some(i) = self.find(p.target) else { return };
        let (state, inc) = (self.members[i].state, self.members[i].inc);
        let u = Update::Suspect {
            member: p.target,
            inc,
            from: self.me,
        };
        match state {
            State::Alive => self.set_state(i, State::Suspect, inc, now_ms),
            // Suspected already (others said so): this node's own failed probe is an
            // independent confirmation for the others' timers.
            State::Suspect => {}
            State::Dead | State::Left => return,
        }
        self.queue(u);
    }

    /// The next member of the round robin that has not left, pinged; the list is shuffled
    /// again after each pass.
    fn start_probe(&mut self, now_ms: u64) {
        let period = self.cfg.probe_period_ms * (1 + self.lhm as u64);
        self.next_probe_ms = now_ms + period.max(1);
        for _ in 0..=self.order.len() {
            if self.order_at >= self.order.len() {
                self.shuffle();
                self.order_at = 0;
                if self.order.is_empty() {
                    return;
                }
            }
            let id = self.order[self.order_at];
            self.order_at += 1;
            let Some(i) = self.find(id) else { continue };
            let expected = match self.members[i].state {
                State::Left => continue,
                State::Dead => false,
                State::Alive | State::Suspect => true,
            };
            let seq = self.next_seq();
            self.probe = Some(Probe {
                target: id,
                seq,
                indirect_at_ms: now_ms + self.probe_timeout_ms(),
                indirect_sent: false,
                acked: false,
                nacks_owed: 0,
                expected,
            });
            self.send(id, Msg::Ping { seq });
            return;
        }
    }

    /// `PingReq`s for the probe's target through up to `indirect` random members that may be
    /// up.
    fn go_indirect(&mut self) {
        let Some(p) = &self.probe else { return };
        let (target, seq) = (p.target, p.seq);
        let via = self.pick(self.cfg.indirect, |m| {
            m.id != target && m.state == State::Alive
        });
        if let Some(p) = &mut self.probe {
            p.indirect_sent = true;
            p.nacks_owed = via.len() as u32;
        }
        for id in via {
            self.send(id, Msg::PingReq { seq, target });
        }
    }

    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            self.order.swap(i, j);
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn find(&self, id: NodeId) -> Option<usize> {
        self.members.binary_search_by_key(&id, |m| m.id).ok()
    }

    /// Queues an update to piggyback (replacing an older one about the same member).
    fn queue(&mut self, u: Update) {
        self.generation += 1;
        self.latest.insert(u.member(), self.generation);
        self.gossip.push_front(Gossip {
            u,
            sent: 0,
            generation: self.generation,
        });
    }

    /// How often an update is sent: `retransmit_mult * ceil(log2(n + 1))`.
    fn sends_max(&self) -> u32 {
        let n = self.members.len() as u32 + 1;
        self.cfg.retransmit_mult * (u32::BITS - n.leading_zeros())
    }

    /// A packet to `to`: the message, then (buddy system) this node's verdict on `to` if it
    /// is not `Alive` or `to` may not know this node's incarnation, then the updates sent
    /// least so far, as many as fit.
    fn send(&mut self, to: NodeId, msg: Msg) {
        let mut out = Vec::with_capacity(self.cfg.packet_bytes_max.min(512));
        msg::encode_head(&self.cluster, self.me, self.inc, msg, &mut out);
        let at = msg::count_at(&msg);
        let max = self.cfg.packet_bytes_max;
        if let Some(i) = self.find(to) {
            let m = &self.members[i];
            let verdict = match m.state {
                State::Alive => None,
                State::Suspect => Some(Update::Suspect {
                    member: to,
                    inc: m.inc,
                    from: self.me,
                }),
                State::Dead => Some(Update::Dead {
                    member: to,
                    inc: m.inc,
                }),
                State::Left => Some(Update::Left {
                    member: to,
                    inc: m.inc,
                }),
            };
            if let Some(v) = verdict {
                msg::push_update(&mut out, at, &v, max);
            }
        }
        let limit = self.sends_max();
        let mut again = Vec::new();
        while let Some(mut g) = self.gossip.pop_front() {
            if self.latest.get(&g.u.member()) != Some(&g.generation) {
                continue; // replaced
            }
            if !msg::push_update(&mut out, at, &g.u, max) {
                self.gossip.push_front(g);
                break;
            }
            g.sent += 1;
            if g.sent < limit {
                again.push(g);
            } else {
                self.latest.remove(&g.u.member());
            }
        }
        self.gossip.extend(again);
        self.stats.packets_out += 1;
        self.stats.bytes_out += out.len() as u64;
        self.transmits.push_back(Transmit { to, bytes: out });
    }
}
