//! A deterministic simulation of Raft groups: one thread, a seeded RNG choosing every event
//! (ticks, deliveries out of order, drops, partitions, crashes that lose unpersisted state,
//! restarts, proposals), and Raft's safety properties checked after every step. A failure prints
//! the seed that replays it.

use super::*;
use crate::wal::{Engine, FsyncPolicy, Io, WalConfig};
use std::collections::BTreeMap;

/// The replica's vShard group in its shard thread's log.
const GROUP: u32 = 7;

fn wal_config() -> WalConfig {
    WalConfig {
        shard: 0,
        segment_bytes: 2048,
        fsync: FsyncPolicy::Always,
    }
}

struct Node {
    group: Option<Group>,
    /// The node's write-ahead log engine and its files: the files survive a crash, the engine
    /// is rebuilt from them.
    wal: Engine,
    files: BTreeMap<u64, Vec<u8>>,
    /// The state machine: every applied entry, in order (volatile).
    sm: Vec<Entry>,
    /// The latest snapshot of the state machine (survives a crash).
    snap_file: Vec<u8>,
}

/// A state machine's bytes: its entries, each `term | index | len | data`.
fn encode_sm(sm: &[Entry]) -> Vec<u8> {
    let mut b = Vec::new();
    for e in sm {
        b.extend_from_slice(&e.term.to_le_bytes());
        b.extend_from_slice(&e.index.to_le_bytes());
        b.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&e.data);
    }
    b
}

fn decode_sm(mut b: &[u8]) -> Vec<Entry> {
    let mut sm = Vec::new();
    while !b.is_empty() {
        let term = u64::from_le_bytes(b[..8].try_into().unwrap());
        let index = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let len = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        sm.push(Entry {
            term,
            index,
            data: b[20..20 + len].to_vec().into(),
        });
        b = &b[20 + len..];
    }
    sm
}

/// The state machine a stored snapshot blob holds (none: empty).
fn state_of(blob: &[u8]) -> Vec<Entry> {
    if blob.is_empty() {
        return Vec::new();
    }
    let blob = Bytes::copy_from_slice(blob);
    decode_sm(
        &conf::split_snapshot(&blob)
            .expect("a blob the core wrote")
            .1,
    )
}

impl Node {
    fn fresh(group: Group) -> Node {
        Node {
            group: Some(group),
            wal: Engine::new(wal_config()),
            files: BTreeMap::new(),
            sm: Vec::new(),
            snap_file: Vec::new(),
        }
    }

    /// Runs the log's pending file operations (a synchronous, always-durable disk).
    fn flush(&mut self) {
        let Some(b) = self.wal.take_batch(0) else {
            return;
        };
        for op in b.ops {
            match op {
                Io::Create { seq, header } => {
                    self.files.insert(seq, header.to_vec());
                }
                Io::Write { seq, offset, bytes } => {
                    let f = self.files.get_mut(&seq).expect("created");
                    assert_eq!(f.len() as u64, offset);
                    f.extend_from_slice(&bytes);
                }
                Io::Sync { .. } => {}
                Io::Delete { seq } => {
                    self.files.remove(&seq);
                }
            }
        }
    }

    /// Restarts from the files alone.
    fn restart(&mut self, cfg: Config) {
        let files = self.files.iter().map(|(s, b)| (*s, b.clone())).collect();
        self.wal = Engine::recover(wal_config(), files)
            .unwrap_or_else(|c| panic!("the log does not recover: {c:?}"))
            .engine;
        let g = storage::restore(&self.wal, GROUP, cfg, self.snap_file.clone().into())
            .expect("the stored snapshot blob decodes");
        self.sm = state_of(&self.snap_file);
        assert_eq!(
            self.sm.len() as u64,
            g.snapshot_id().index,
            "snapshot and log agree"
        );
        self.group = Some(g);
    }
}

struct Sim {
    rng: Rng,
    cfg: Config,
    nodes: BTreeMap<NodeId, Node>,
    /// In flight: delivered in random order.
    net: Vec<Envelope>,
    /// Links cut by a partition (both directions).
    cut: HashSet<(NodeId, NodeId)>,
    /// The one leader each term has had.
    leaders: HashMap<u64, NodeId>,
    /// What was applied at each index, by anyone: everyone must agree.
    applied: BTreeMap<u64, Entry>,
    /// The earliest term in which each index was known committed (the applier's term).
    commit_term: BTreeMap<u64, u64>,
    /// Reads in flight: id -> the highest index applied anywhere when the read began, and the
    /// index of the state it was computed on if it ran at once (`Group::can_read_at`, as the
    /// driver serves reads) rather than once confirmed. A read confirmed at, or computed on,
    /// a lower index could miss an acknowledged write: not linearizable.
    reads: HashMap<u64, (u64, Option<u64>)>,
    confirmed_reads: usize,
    /// Confirmed reads that were computed at once on the leader's state.
    fast_reads: usize,
    /// Snapshots sent by a leader and installed by a follower.
    installed: usize,
    /// Membership entries applied (each counted once, by the first replica to apply it).
    conf_applied: usize,
    /// Seeds that change membership: ids that may be added, beyond the first members (their
    /// replicas exist from the start, knowing the first voters, and wait to be added).
    conf_changes: bool,
    /// Leadership handovers sent (`Group::transfer_leader`).
    transfers: usize,
    proposed: u64,
    /// Bulk copies under way, as the driver's bulk sessions carry them: `(from, to, the
    /// offer's term and last, the blob the leader held when it offered)`.
    bulk: Vec<(NodeId, NodeId, u64, LogId, Bytes)>,
    bulk_installed: usize,
    seed: u64,
}

impl Sim {
    /// The live replica of `id`.
    fn group(&mut self, id: NodeId) -> &mut Group {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.group.as_mut())
            .expect("a live replica")
    }

    fn new(seed: u64, members: &[NodeId]) -> Sim {
        Sim::with_changes(seed, members, false)
    }

    /// `changes`: membership changes are among the random events, with two more replicas
    /// that may be added.
    fn with_changes(seed: u64, members: &[NodeId], changes: bool) -> Sim {
        let cfg = |id| Config {
            id,
            members: members.to_vec(),
            election_ticks: 10,
            leader_wait_ticks: 0,
            heartbeat_ticks: 3,
            max_batch: 8,
            snapshot_chunk_bytes: 48,
            // A third of the seeds send snapshots as offers, their bytes as a bulk session
            // brings them (`bulk`).
            bulk_snapshots: seed % 3 == 1,
            pre_vote: seed.is_multiple_of(2),
            seed,
            check_snapshot: SnapshotCheck::any(),
        };
        let conf_changes = members.len() > 1 && changes;
        let top = members.iter().max().map_or(0, |m| m.0);
        let spares = if conf_changes { top + 1..top + 3 } else { 0..0 };
        let nodes = members
            .iter()
            .copied()
            .chain(spares.map(NodeId))
            .map(|id| (id, Node::fresh(Group::new(cfg(id)))))
            .collect();
        Sim {
            rng: Rng::new(seed),
            cfg: cfg(NodeId(0)),
            nodes,
            net: Vec::new(),
            cut: HashSet::new(),
            leaders: HashMap::new(),
            applied: BTreeMap::new(),
            commit_term: BTreeMap::new(),
            reads: HashMap::new(),
            confirmed_reads: 0,
            fast_reads: 0,
            installed: 0,
            conf_applied: 0,
            conf_changes,
            transfers: 0,
            proposed: 0,
            bulk: Vec::new(),
            bulk_installed: 0,
            seed,
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("seed {}: {what}", self.seed)
    }

    /// Persists, sends and applies what node `id` has ready, checking safety as it goes.
    fn drain(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(g) = node.group.as_mut() else { return };
        let r = g.take_ready();
        // An installed snapshot is stored first, then replaces the state machine.
        let mut installed = Vec::new();
        if let Some(snap) = &r.snapshot {
            node.snap_file = snap.blob.to_vec();
            node.sm = decode_sm(&snap.state);
            assert_eq!(
                node.sm.len() as u64,
                snap.last.index,
                "seed {}: snapshot length",
                self.seed
            );
            installed = node.sm.clone();
            self.installed += 1;
        }
        // Persist through the write-ahead log, durably, before sending anything.
        storage::persist(&mut node.wal, GROUP, &r).expect("contiguous appends");
        let term = g.term();
        node.flush();
        let offered = node.group.as_ref().map(|g| g.snapshot_blob().clone());
        for e in &r.messages {
            if let Msg::SnapshotOffer { term, last, .. } = e.msg
                && !self
                    .bulk
                    .iter()
                    .any(|b| (b.0, b.1, b.2, b.3) == (id, e.to, term, last))
            {
                let blob = offered.clone().expect("a live replica offered");
                self.bulk.push((id, e.to, term, last, blob));
            }
        }
        self.net.extend(r.messages);
        for (rid, index) in r.reads {
            let (floor, computed) = self.reads.remove(&rid).unwrap_or((0, None));
            if index < floor {
                self.fail(format!(
                    "node {id} confirmed read {rid} at {index}, below {floor} applied before it began"
                ));
            }
            if let Some(at) = computed {
                if at < floor {
                    self.fail(format!(
                        "node {id} confirmed read {rid} computed on the state at {at}, below \
                         {floor} applied before it began"
                    ));
                }
                self.fast_reads += 1;
            }
            self.confirmed_reads += 1;
        }
        for rid in r.failed_reads {
            self.reads.remove(&rid);
        }
        let node = self.nodes.get_mut(&id).expect("member");
        for e in &r.committed {
            assert_eq!(e.index, node.sm.len() as u64 + 1, "applied in order");
            node.sm.push(e.clone());
        }
        for e in installed.into_iter().chain(r.committed) {
            let t = self.commit_term.entry(e.index).or_insert(term);
            *t = (*t).min(term);
            match self.applied.get(&e.index) {
                Some(prev) if *prev != e => self.fail(format!(
                    "node {id} applied {e:?} at {} where {prev:?} was applied",
                    e.index
                )),
                Some(_) => {}
                None => {
                    self.conf_applied += e.is_config() as usize;
                    self.applied.insert(e.index, e);
                }
            }
        }
        self.check_leader(id);
    }

    fn check_leader(&mut self, id: NodeId) {
        let Some(g) = self.nodes[&id].group.as_ref() else {
            return;
        };
        if g.role() != Role::Leader {
            return;
        }
        let term = g.term();
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            self.fail(format!("two leaders in term {term}: {other} and {id}"));
        }
        self.leaders.insert(term, id);
        // Leader completeness: every entry committed in an earlier term is in the leader's log
        // (or in its snapshot, below which entries were checked as they were applied).
        for (i, e) in &self.applied {
            if self.commit_term[i] < term && *i > g.snapshot_id().index && g.entry(*i) != Some(e) {
                self.fail(format!("leader {id} of term {term} lacks committed {e:?}"));
            }
        }
    }

    /// Log matching: two logs that agree on an index's term agree on everything before it
    /// (compared above both replicas' snapshots).
    fn check_logs(&self) {
        let groups: Vec<(NodeId, &Group)> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.group.as_ref().map(|g| (*id, g)))
            .collect();
        for (i, (a, ga)) in groups.iter().enumerate() {
            for (b, gb) in &groups[i + 1..] {
                let from = ga.snapshot_id().index.max(gb.snapshot_id().index) + 1;
                let last_a = ga.snapshot_id().index + ga.log().len() as u64;
                let last_b = gb.snapshot_id().index + gb.log().len() as u64;
                let to = last_a.min(last_b);
                let Some(k) = (from..=to)
                    .rev()
                    .find(|&k| ga.entry(k).map(|e| e.term) == gb.entry(k).map(|e| e.term))
                else {
                    continue;
                };
                if (from..=k).any(|x| ga.entry(x) != gb.entry(x)) {
                    self.fail(format!(
                        "logs of {a} and {b} match at {k} but differ before"
                    ));
                }
            }
        }
    }

    /// The replica that is leader now (tests call this once one has been elected).
    fn leader(&self) -> NodeId {
        *self
            .nodes
            .iter()
            .find(|(_, n)| n.group.as_ref().is_some_and(|g| g.role() == Role::Leader))
            .expect("a leader")
            .0
    }

    /// Cuts `id` off from every other member.
    fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            self.cut.insert((id, o));
        }
    }

    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a))
    }

    fn step(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        match self.rng.below(100) {
            0..=29 => {
                let id = ids[pick(&mut self.rng, ids.len())];
                if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) {
                    g.tick();
                }
                self.drain(id);
            }
            30..=74 if !self.net.is_empty() => {
                let k = pick(&mut self.rng, self.net.len());
                let env = self.net.swap_remove(k);
                let to = env.to;
                // As the driver does, a node may step several messages before it takes one
                // Ready for all of them (a snapshot and the appends that follow it, say).
                let burst = if self.rng.below(3) == 0 { 4 } else { 0 };
                let mut batch = vec![env];
                while batch.len() <= burst {
                    let Some(k) = self.net.iter().position(|e| e.to == to) else {
                        break;
                    };
                    batch.push(self.net.remove(k));
                }
                let mut stepped = false;
                for env in batch {
                    let dropped = self.rng.below(100) < 5 || !self.linked(env.from, env.to);
                    if !dropped
                        && let Some(g) = self.nodes.get_mut(&to).and_then(|n| n.group.as_mut())
                    {
                        g.step(env.from, env.msg);
                        stepped = true;
                    }
                }
                if stepped {
                    self.drain(to);
                }
            }
            75..=77 if !self.bulk.is_empty() => {
                let k = pick(&mut self.rng, self.bulk.len());
                self.bulk_copy(k);
            }
            72..=74 => {
                // A linearizable read on whoever believes it leads: computed at once on its
                // state where the core allows it (as the driver does), else served at the
                // index its confirmation names.
                let floor = self.applied.keys().next_back().copied().unwrap_or(0);
                for id in ids {
                    let rid = self.proposed * 1000 + id.0;
                    let Some(n) = self.nodes.get_mut(&id) else {
                        continue;
                    };
                    let applied = n.sm.len() as u64;
                    if let Some(g) = n.group.as_mut() {
                        let computed = g.can_read_at(applied).then_some(applied);
                        if g.read_index(rid).is_ok() {
                            self.reads.insert(rid, (floor, computed));
                            self.drain(id);
                        }
                    }
                }
            }
            84 => {
                // Whoever believes it leads hands over to a random member (refusals included).
                let to = ids[pick(&mut self.rng, ids.len())];
                for id in ids {
                    if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut())
                        && g.transfer_leader(to)
                    {
                        self.transfers += 1;
                        self.drain(id);
                    }
                }
            }
            75..=83 => {
                for id in ids {
                    let data = format!("v{}", self.proposed).into_bytes();
                    if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut())
                        && g.propose(data).is_ok()
                    {
                        self.proposed += 1;
                        self.drain(id);
                    }
                }
            }
            85..=88 => {
                // Partition one node from the others, or heal everything.
                if self.cut.is_empty() {
                    let id = ids[pick(&mut self.rng, ids.len())];
                    self.isolate(id);
                } else {
                    self.cut.clear();
                }
            }
            89..=91 => {
                // Crash: everything not persisted is lost.
                let id = ids[pick(&mut self.rng, ids.len())];
                let down = self.nodes.values().filter(|n| n.group.is_none()).count();
                if down < (self.nodes.len() - 1) / 2 {
                    self.nodes.get_mut(&id).expect("member").group = None;
                }
            }
            92..=95 => {
                let id = ids[pick(&mut self.rng, ids.len())];
                let cfg = Config {
                    id,
                    ..self.cfg.clone()
                };
                let n = self.nodes.get_mut(&id).expect("member");
                if n.group.is_none() {
                    n.restart(cfg);
                }
            }
            96..=97 => {
                // Snapshot a replica's state machine and compact its log.
                let id = ids[pick(&mut self.rng, ids.len())];
                let n = self.nodes.get_mut(&id).expect("member");
                if let Some(g) = n.group.as_mut() {
                    let applied = n.sm.len() as u64;
                    if applied > g.snapshot_id().index + 5 {
                        g.compact(applied, encode_sm(&n.sm));
                        // Stored before the log is purged (that is in the next Ready).
                        n.snap_file = g.snapshot_blob().to_vec();
                        self.drain(id);
                    }
                }
            }
            98..=99 if self.conf_changes => self.change_membership(),
            _ => {}
        }
        self.check_logs();
    }

    /// Whoever believes it leads proposes a random change: add a learner, promote one, or
    /// remove any member (itself included). Refusals are part of the test.
    fn change_membership(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let pick = self.rng.below(3);
            let r = self.rng.below(ids.len() as u64) as usize;
            let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) else {
                continue;
            };
            if g.role() != Role::Leader {
                continue;
            }
            let m = g.membership().clone();
            let change = match pick {
                0 => match ids
                    .iter()
                    .cycle()
                    .skip(r)
                    .take(ids.len())
                    .find(|&&i| !m.contains(i))
                {
                    Some(&i) => ConfChange::AddLearner(i),
                    None => continue,
                },
                1 => match m.learners.first() {
                    Some(&l) => ConfChange::Promote(l),
                    None => continue,
                },
                _ => ConfChange::Remove(
                    m.all()
                        .nth(r % (m.voters.len() + m.learners.len()))
                        .unwrap(),
                ),
            };
            if g.propose_conf(change).is_ok() {
                self.drain(id);
            }
        }
    }

    /// One round: every live replica ticks, then every message is delivered (unless a
    /// partition cuts its link) until none is left. Returns how many messages were sent.
    /// Bulk copy `k` arrives, if its link is up: installed if its target still wants it,
    /// forgotten either way.
    fn bulk_copy(&mut self, k: usize) {
        let (from, to, term, last, _) = self.bulk[k];
        if !self.linked(from, to) {
            return;
        }
        let (.., blob) = self.bulk.swap_remove(k);
        let Some(g) = self.nodes.get_mut(&to).and_then(|n| n.group.as_mut()) else {
            return;
        };
        if let Some(w) = g.snapshot_wanted()
            && (w.from, w.term, w.last) == (from, term, last)
        {
            g.install_snapshot(w, blob);
            self.bulk_installed += (g.snapshot_id() == last) as usize;
            self.drain(to);
        }
    }

    fn round(&mut self, tick: bool) -> usize {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if tick && let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) {
                g.tick();
            }
            self.drain(id);
        }
        let mut sent = 0;
        while let Some(env) = self.net.pop() {
            sent += 1;
            if sent > 100_000 {
                self.fail(format!("messages never settle: still sending {env:?}"));
            }
            if !self.linked(env.from, env.to) {
                continue; // lost to a partition
            }
            if let Some(g) = self.nodes.get_mut(&env.to).and_then(|n| n.group.as_mut()) {
                g.step(env.from, env.msg);
                self.drain(env.to);
            }
        }
        for k in (0..self.bulk.len()).rev() {
            if k < self.bulk.len() {
                self.bulk_copy(k);
            }
        }
        sent
    }

    /// Heals everything and runs without faults until an entry proposed now is applied by a
    /// majority: the cluster is still live.
    fn converge(&mut self) {
        self.cut.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let cfg = Config {
                id,
                ..self.cfg.clone()
            };
            let n = self.nodes.get_mut(&id).expect("member");
            if n.group.is_none() {
                n.restart(cfg);
            }
        }
        let marker = b"final".to_vec();
        for round in 0..20_000 {
            // A proposal can be lost with a deposed leader: propose again now and then.
            if round % 50 == 0 {
                for n in self.nodes.values_mut() {
                    if let Some(g) = n.group.as_mut() {
                        let _ = g.propose(marker.clone());
                    }
                }
            }
            self.round(true);
            if self.applied.values().any(|e| e.data == marker) {
                return;
            }
        }
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| match &n.group {
                Some(g) => format!(
                    "{id}: {:?} {:?} term {} leader {:?} commit {} snapshot {:?} last {:?} files {}",
                    g.membership(),
                    g.role(),
                    g.term(),
                    g.leader(),
                    g.commit_index(),
                    g.snapshot_id(),
                    g.log().last().map(|e| (e.term, e.index)),
                    n.files.len()
                ),
                None => format!("{id}: down"),
            })
            .collect();
        self.fail(format!("no progress after healing: {state:?}"));
    }
}

/// Runs `g` to candidacy and hands it the votes of `voters`.
fn elect(g: &mut Group, voters: &[NodeId]) -> u64 {
    while g.role() != Role::Candidate {
        g.tick();
    }
    let term = g.term();
    for &v in voters {
        g.step(
            v,
            Msg::VoteReply {
                term,
                granted: true,
            },
        );
    }
    term
}

#[test]
fn a_single_member_group_commits_alone() {
    let mut sim = Sim::new(1, &[NodeId(1)]);
    sim.converge();
    assert!(sim.applied.values().any(|e| e.data[..] == b"final"[..]));
}

/// Runs each seed with 3 and 5 members; with `changes`, two seeds in three also change
/// membership.
fn run_seeds(seeds: std::ops::Range<u64>, changes: bool) {
    let (mut reads, mut fast, mut installed, mut confs, mut transfers) = (0, 0, 0, 0, 0);
    let mut bulk = 0;
    // Handovers need a settled leader, rare under these faults: expected over many seeds only.
    let many = seeds.end - seeds.start >= 50;
    let seeds_len = seeds.end - seeds.start;
    let trace = std::env::var_os("RAFT_SIM_TRACE").is_some();
    for seed in seeds {
        if trace {
            eprintln!("seed {seed}");
        }
        for members in [&[1u64, 2, 3][..], &[1, 2, 3, 4, 5][..]] {
            let members = crate::ids::nodes(members);
            let mut sim = Sim::with_changes(seed, &members, changes && !seed.is_multiple_of(3));
            for _ in 0..3000 {
                sim.step();
            }
            sim.converge();
            // Something was committed along the way, not only the final marker, and reads were
            // confirmed (and checked).
            assert!(sim.applied.len() > 1, "seed {seed}: nothing committed");
            reads += sim.confirmed_reads;
            fast += sim.fast_reads;
            installed += sim.installed;
            bulk += sim.bulk_installed;
            confs += sim.conf_applied;
            transfers += sim.transfers;
        }
    }
    assert!(reads > 0, "no read was confirmed in any run");
    assert!(fast > 0, "no read was computed at once on a leader's state");
    assert!(
        !changes || confs > 0,
        "no membership change was ever applied"
    );
    assert!(installed > 0, "no snapshot was ever installed");
    assert!(
        seeds_len < 3 || bulk > 0,
        "no snapshot was ever installed from a bulk copy"
    );
    assert!(
        !many || transfers > 0,
        "no leadership handover was ever sent"
    );
    eprintln!(
        "{reads} reads confirmed ({fast} computed at once), {installed} snapshots installed ({bulk} from bulk copies), {confs} membership changes applied, {transfers} leadership handovers"
    );
}

#[test]
fn random_faults_never_break_safety_and_the_cluster_recovers() {
    run_seeds(0..60, true);
}

/// The long run: `cargo test --release -p shardline-shards raft_soak -- --ignored`
/// (`RAFT_SIM_SEEDS=n` sets how many seeds; a failure prints the one to replay).
#[test]
#[ignore]
fn raft_soak() {
    let n = std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    run_seeds(1000..1000 + n, true);
}

mod catch_up;
mod membership;
mod offers;
mod steps;
