//! Membership in the simulation: connections made as the cluster bus makes them, and nodes
//! that join and leave through the metadata group as an operator asks.

use super::*;

impl Sim {
    /// Makes every connection that can be made and is not (`links`), as the dialers do: a
    /// handshake in memory judged by the bus's own rules (`bus::judge` at the acceptor,
    /// `bus::take_answer` at the dialer); then the dialer's outbox starts afresh and the reader
    /// counts the peer connected.
    pub(super) fn connect_known(&mut self) {
        let now = self.now().mono;
        let mut retired = Vec::new();
        for a in self.ids() {
            for b in self.ids() {
                if a == b || self.links.contains(&(a, b)) || !self.up(a) || !self.up(b) {
                    continue;
                }
                let (ca, cb) = (&self.nodes[a.slot()].c, &self.nodes[b.slot()].c);
                if ca.member(b).is_none() {
                    // The dialer needs the peer's address.
                    continue;
                }
                let answer = mem::handshake(&bus::hello(ca, 0), |h| bus::judge(cb, h, None))
                    .expect("hellos encoded by the bus read back whole");
                match bus::take_answer(ca, &answer) {
                    Ok(()) => {}
                    Err(e) => {
                        if e.retire.is_some() {
                            // `a` retires on that word (`Cluster::retire`).
                            retired.push(a);
                        }
                        continue;
                    }
                }
                self.links.insert((a, b));
                for t in 0..self.threads() {
                    self.replicas(a, t).dialed(b);
                    self.replicas(b, t).peer_connected(a, now);
                }
            }
        }
        retired.dedup();
        for a in retired {
            if self.up(a) {
                self.note(format!("node {a} refused as removed: it retires"));
                self.left(a);
            }
        }
    }

    /// Whether `from`'s dialer is connected to `to`.
    pub(super) fn linked(&self, from: NodeId, to: NodeId) -> bool {
        self.links.contains(&(from, to))
    }

    /// The members that have started and not left.
    pub(super) fn members(&self) -> Vec<NodeId> {
        self.ids()
            .filter(|&id| {
                let n = &self.nodes[id.slot()];
                n.member && !n.gone
            })
            .collect()
    }

    /// A member, at random (where a client goes next).
    pub(super) fn pick_member(&mut self) -> NodeId {
        let m = self.members();
        m[self.rng.below(m.len() as u64) as usize]
    }

    /// Node `id` left the cluster (`Fatal::Left`): its process ends for good. Only a node
    /// asked to leave does: automatic repair removes only a node dead past
    /// `cluster-node-down-after-ms`, and the faults' crashes and pauses end sooner.
    pub(super) fn left(&mut self, id: NodeId) {
        assert_eq!(
            self.leaving,
            Some(id),
            "seed {:#x}: node {id} left without being asked to\n{}",
            self.seed,
            self.log.join("\n")
        );
        self.leaving = None;
        self.crash(id);
        self.note(format!("node {id} left"));
        self.node(id).gone = true;
    }

    /// A new node, not started: it starts once the cluster answers its join.
    pub(super) fn add_node(&mut self) -> NodeId {
        let id = NodeId::of_slot(self.nodes.len());
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000 + id.0 as u16);
        let first = &self.nodes[0];
        let cfg = Config {
            bind: addr.ip(),
            port: addr.port(),
            data_dir: self.dir.join(format!("node-{id}")),
            cluster_nodes: Vec::new(),
            cluster_join: Some(first.cfg.listen_addr()),
            ..first.cfg.clone()
        };
        std::fs::create_dir_all(&cfg.data_dir).expect("a data directory");
        let threads = self.threads();
        // Its `Cluster` is made when it starts; until then one it does not read (`member`).
        let c = self.nodes[0].c.clone();
        self.nodes.push(Node::new(cfg, c, threads, false));
        id
    }

    /// Moves the membership change under way (or starts the next one due): sends its request
    /// to thread 0 of a member, again after an error or no answer.
    pub(super) fn admin_move(&mut self) {
        if self.admin.is_none() {
            match self.admin_queue.front() {
                Some(&(at, op)) if self.now_ms >= at => {
                    self.admin_queue.pop_front();
                    let node = match op {
                        Admin::Join => self.add_node(),
                        Admin::Remove(id) => {
                            self.leaving = Some(id);
                            id
                        }
                        Admin::Move {
                            vshard,
                            to: NodeId(0),
                        } => {
                            let placed = self.nodes[0].c.target_mask(VShardId(vshard));
                            let free: Vec<NodeId> = self
                                .members()
                                .into_iter()
                                .filter(|id| placed & (1 << (id.0 - 1)) == 0)
                                .collect();
                            let Some(&to) =
                                free.get(self.rng.below(free.len().max(1) as u64) as usize)
                            else {
                                return;
                            };
                            self.admin_queue
                                .push_front((at, Admin::Move { vshard, to }));
                            return;
                        }
                        Admin::Move { to, .. } => to,
                        Admin::Drain(id) | Admin::Undrain(id) => id,
                        Admin::CancelLast if self.last_move.is_none() => return,
                        Admin::CancelLast => NodeId(0),
                    };
                    self.note(format!("{op:?}: node {node}"));
                    self.admin = Some(AdminState {
                        op,
                        node,
                        inflight: None,
                        target: None,
                        next_at: self.now_ms,
                    });
                }
                _ => return,
            }
        }
        let now_ms = self.now_ms;
        let a = self.admin.as_mut().expect("under way");
        if let Some((_, _, sent)) = a.inflight {
            if now_ms < sent + ADMIN_RETRY_MS {
                return;
            }
            a.inflight = None;
            a.target = None;
        }
        if now_ms < a.next_at {
            return;
        }
        let (op, node, target) = (a.op, a.node, a.target);
        let to = match target {
            Some(t) if self.up(t) => t,
            _ => self.pick_member(),
        };
        if !self.up(to) || self.paused == Some(to) {
            self.admin.as_mut().expect("under way").next_at = now_ms + 50;
            return;
        }
        let mut cmd = Vec::new();
        match op {
            Admin::Join => {
                let cfg = &self.nodes[node.slot()].cfg;
                shardline_shards::meta::Cmd::AddNode {
                    client: cfg.listen_addr(),
                    bus: join::bus_addr(cfg),
                    threads: cfg.cores.len() as u16,
                }
                .encode(&mut cmd);
            }
            Admin::Remove(id) => shardline_shards::meta::Cmd::RemoveNode { id }.encode(&mut cmd),
            Admin::Move { vshard, to } => shardline_shards::meta::Cmd::Move {
                vshard,
                to,
                from: None,
            }
            .encode(&mut cmd),
            Admin::CancelLast => shardline_shards::meta::Cmd::CancelMove {
                id: self.last_move.expect("checked when it started"),
            }
            .encode(&mut cmd),
            Admin::Drain(id) => shardline_shards::meta::Cmd::Drain { id }.encode(&mut cmd),
            Admin::Undrain(id) => shardline_shards::meta::Cmd::Undrain { id }.encode(&mut cmd),
        }
        let token = self.next_admin;
        self.next_admin += 1;
        self.admin.as_mut().expect("under way").inflight = Some((token, to, now_ms));
        let job = job_of(&[b"CLUSTER", b"MEMBERSHIP"], token, |_| Op::Meta(cmd));
        self.submit_on(to, 0, job);
    }

    /// The answer to a membership change's request (`token` at or above `ADMIN_TOKEN`).
    pub(super) fn admin_answered(&mut self, job: PendingJob) {
        let token = job.token;
        let reply = job.into_done().segment(0).to_vec();
        let text = String::from_utf8_lossy(&reply).into_owned();
        let now_ms = self.now_ms;
        let Some(a) = self.admin.as_mut() else { return };
        if a.inflight.map(|i| i.0) != Some(token) {
            // A request given up on (no answer in time): its change is asked again anyway.
            return;
        }
        a.inflight = None;
        if let Some(rest) = text.strip_prefix("-NOTLEADER ") {
            let port: u16 = rest
                .split_whitespace()
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("NOTLEADER names an address");
            a.target = Some(NodeId((port - 40_000) as u64));
            a.next_at = now_ms + 1;
            return;
        }
        let operator = !matches!(a.op, Admin::Join | Admin::Remove(_));
        if operator && text.starts_with("-ERR") {
            // A move, cancel or drain the metadata refused (the vShard is there already or
            // moving, the move finished): the same on every replica, nothing changed.
            let op = a.op;
            self.admin = None;
            self.note(format!("{op:?} refused: {}", text.trim_end()));
            return;
        }
        if text.starts_with('-') {
            // No metadata leader yet, or the entry's fate was lost: nothing (or something
            // idempotent) was done; ask again, elsewhere.
            assert!(
                text.starts_with("-TRYAGAIN") || text.starts_with("-UNKNOWN"),
                "seed {:#x}: {:?} answered {text}\n{}",
                self.seed,
                a.op,
                self.log.join("\n")
            );
            a.target = None;
            a.next_at = now_ms + 100;
            return;
        }
        let (op, node) = (a.op, a.node);
        self.admin = None;
        match op {
            Admin::Join => {
                let cfg = self.nodes[node.slot()].cfg.clone();
                let j = join::accept(&cfg, cfg.cluster_join.expect("joins"), &reply)
                    .unwrap_or_else(|e| panic!("seed {:#x}: {e}", self.seed));
                assert_eq!(
                    j.me, node,
                    "seed {:#x}: a join answered another id",
                    self.seed
                );
                self.note(format!("node {node} joined: starts"));
                self.start(node);
            }
            Admin::Remove(id) => {
                assert_eq!(text, "+OK\r\n", "seed {:#x}: FORGET {id}", self.seed);
                self.note(format!("node {id} is leaving"));
            }
            Admin::Move { .. } => {
                let id = text
                    .strip_prefix(':')
                    .and_then(|t| t.trim_end().parse().ok())
                    .unwrap_or_else(|| panic!("seed {:#x}: MOVE answered {text}", self.seed));
                self.note(format!("{op:?}: move {id}"));
                self.last_move = Some(id);
            }
            _ => {
                assert_eq!(text, "+OK\r\n", "seed {:#x}: {op:?}", self.seed);
                self.note(format!("{op:?} done"));
            }
        }
    }
}
