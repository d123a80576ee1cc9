//! Placement of vShard replicas on nodes and shard threads (issue 3): every vShard gets `rf`
//! replicas on distinct nodes, spread so that replicas per node, replicas per shard thread within
//! a node, and preferred leaders per node each differ by at most one. Rebalancing after a node
//! joins or leaves moves as few replicas as it can. Pure and deterministic: the metadata group
//! computes it once and every node reads the result.

use crate::slot::VShardId;

pub use crate::ids::NodeId;

/// A member of the cluster and how many shard threads it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    pub threads: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Replica {
    pub node: NodeId,
    pub thread: u16,
}

/// Where every vShard's replicas live; the first replica of each is its preferred leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub rf: u8,
    pub replicas: Vec<Vec<Replica>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// Fewer nodes than the replication factor: replicas must sit on distinct nodes.
    TooFewNodes {
        nodes: usize,
        rf: u8,
    },
    NoThreads(NodeId),
    DuplicateNode(NodeId),
}

fn validate(nodes: &[NodeSpec], rf: u8) -> Result<(), PlacementError> {
    if nodes.len() < rf as usize || rf == 0 {
        return Err(PlacementError::TooFewNodes {
            nodes: nodes.len(),
            rf,
        });
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.threads == 0 {
            return Err(PlacementError::NoThreads(n.id));
        }
        if nodes[..i].iter().any(|m| m.id == n.id) {
            return Err(PlacementError::DuplicateNode(n.id));
        }
    }
    Ok(())
}

/// Replica counts per node and per (node, thread), for choosing the least loaded.
struct Load<'a> {
    nodes: &'a [NodeSpec],
    per_node: Vec<usize>,
    per_thread: Vec<Vec<usize>>,
    leaders: Vec<usize>,
}

impl<'a> Load<'a> {
    fn new(nodes: &'a [NodeSpec]) -> Self {
        Load {
            nodes,
            per_node: vec![0; nodes.len()],
            per_thread: nodes.iter().map(|n| vec![0; n.threads as usize]).collect(),
            leaders: vec![0; nodes.len()],
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn add(&mut self, r: Replica) {
        let i = self.index(r.node).expect("a member");
        self.per_node[i] += 1;
        self.per_thread[i][r.thread as usize] += 1;
    }

    fn remove(&mut self, r: Replica) {
        let i = self.index(r.node).expect("a member");
        self.per_node[i] -= 1;
        self.per_thread[i][r.thread as usize] -= 1;
    }

    /// The least loaded node not in `taken` (ties broken by a rotation on `v` so that equal
    /// nodes take turns), and its least loaded thread.
    fn pick(&self, taken: &[NodeId], v: usize) -> Replica {
        let n = self.nodes.len();
        let i = (0..n)
            .map(|k| (k + v) % n)
            .filter(|&i| !taken.contains(&self.nodes[i].id))
            .min_by_key(|&i| self.per_node[i])
            .expect("validated: more nodes than replicas");
        let thread = (0..self.nodes[i].threads as usize)
            .min_by_key(|&t| self.per_thread[i][t])
            .expect("validated: threads > 0");
        Replica {
            node: self.nodes[i].id,
            thread: thread as u16,
        }
    }

    /// Puts the replica whose node leads the fewest vShards first.
    fn choose_leader(&mut self, replicas: &mut [Replica]) {
        let best = (0..replicas.len())
            .min_by_key(|&k| self.leaders[self.index(replicas[k].node).expect("member")])
            .expect("rf > 0");
        replicas.swap(0, best);
        let i = self.index(replicas[0].node).expect("member");
        self.leaders[i] += 1;
    }
}

/// The initial placement of `vshards` vShards with `rf` replicas on `nodes`.
pub fn place(nodes: &[NodeSpec], vshards: usize, rf: u8) -> Result<Placement, PlacementError> {
    validate(nodes, rf)?;
    let mut load = Load::new(nodes);
    let mut replicas = Vec::with_capacity(vshards);
    for v in 0..vshards {
        let mut set: Vec<Replica> = Vec::with_capacity(rf as usize);
        for _ in 0..rf {
            let taken: Vec<NodeId> = set.iter().map(|r| r.node).collect();
            let r = load.pick(&taken, v);
            load.add(r);
            set.push(r);
        }
        load.choose_leader(&mut set);
        replicas.push(set);
    }
    balance_leaders(&mut replicas, &mut load);
    Ok(Placement { rf, replicas })
}

/// A new placement for `nodes` (members joined or left) that keeps every replica it can where
/// it is: replicas on departed nodes are re-placed, then replicas move from the most to the
/// least loaded node until the counts differ by at most one. Preferred leaders are re-balanced
/// among each vShard's replicas without moving data.
pub fn rebalance(current: &Placement, nodes: &[NodeSpec]) -> Result<Placement, PlacementError> {
    validate(nodes, current.rf)?;
    let mut load = Load::new(nodes);
    let mut replicas: Vec<Vec<Replica>> = current
        .replicas
        .iter()
        .map(|set| {
            set.iter()
                .copied()
                .filter(|r| {
                    load.index(r.node)
                        .is_some_and(|i| (r.thread as usize) < nodes[i].threads as usize)
                })
                .collect()
        })
        .collect();
    for set in &replicas {
        for r in set {
            load.add(*r);
        }
    }
    // Refill vShards that lost replicas.
    for (v, set) in replicas.iter_mut().enumerate() {
        while set.len() < current.rf as usize {
            let taken: Vec<NodeId> = set.iter().map(|r| r.node).collect();
            let r = load.pick(&taken, v);
            load.add(r);
            set.push(r);
        }
    }
    // Move replicas from the fullest node to the emptiest while that narrows the spread.
    loop {
        let (max_i, min_i) = {
            let idx: Vec<usize> = (0..nodes.len()).collect();
            let max_i = *idx
                .iter()
                .max_by_key(|&&i| (load.per_node[i], i))
                .expect("nodes");
            let min_i = *idx
                .iter()
                .min_by_key(|&&i| (load.per_node[i], i))
                .expect("nodes");
            (max_i, min_i)
        };
        if load.per_node[max_i] <= load.per_node[min_i] + 1 {
            break;
        }
        let (from, to) = (nodes[max_i].id, nodes[min_i].id);
        // A vShard on the full node that the empty node does not hold; prefer non-leaders.
        let candidate = (0..replicas.len())
            .filter(|&v| {
                replicas[v].iter().any(|r| r.node == from)
                    && !replicas[v].iter().any(|r| r.node == to)
            })
            .min_by_key(|&v| replicas[v][0].node == from);
        let Some(v) = candidate else { break };
        let k = replicas[v]
            .iter()
            .position(|r| r.node == from)
            .expect("holds it");
        load.remove(replicas[v][k]);
        let thread = (0..nodes[min_i].threads as usize)
            .min_by_key(|&t| load.per_thread[min_i][t])
            .expect("threads > 0") as u16;
        let r = Replica { node: to, thread };
        load.add(r);
        replicas[v][k] = r;
    }
    for set in replicas.iter_mut() {
        load.choose_leader(set);
    }
    balance_leaders(&mut replicas, &mut load);
    Ok(Placement {
        rf: current.rf,
        replicas,
    })
}

/// Hands leadership from the node leading the most vShards to the one leading the fewest, for a
/// vShard both replicate, until the counts differ by at most one (no data moves).
fn balance_leaders(replicas: &mut [Vec<Replica>], load: &mut Load) {
    loop {
        let n = load.nodes.len();
        let max_i = (0..n).max_by_key(|&i| (load.leaders[i], i)).expect("nodes");
        let min_i = (0..n).min_by_key(|&i| (load.leaders[i], i)).expect("nodes");
        if load.leaders[max_i] <= load.leaders[min_i] + 1 {
            return;
        }
        let (from, to) = (load.nodes[max_i].id, load.nodes[min_i].id);
        let Some((v, k)) = replicas.iter().enumerate().find_map(|(v, set)| {
            (set[0].node == from)
                .then(|| set.iter().position(|r| r.node == to).map(|k| (v, k)))
                .flatten()
        }) else {
            return;
        };
        replicas[v].swap(0, k);
        load.leaders[max_i] -= 1;
        load.leaders[min_i] += 1;
    }
}

impl Placement {
    /// The replicas of vShard `v`, preferred leader first.
    pub fn of(&self, v: VShardId) -> &[Replica] {
        &self.replicas[v.0 as usize]
    }

    /// How many replicas differ from `other` (data that would have to move).
    pub fn moves_from(&self, other: &Placement) -> usize {
        self.replicas
            .iter()
            .zip(&other.replicas)
            .map(|(a, b)| {
                a.iter()
                    .filter(|r| !b.iter().any(|x| x.node == r.node))
                    .count()
            })
            .sum()
    }

    /// A table, one line per vShard: `v: leader node/thread, follower node/thread, ...`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (v, set) in self.replicas.iter().enumerate() {
            let parts: Vec<String> = set
                .iter()
                .map(|r| format!("n{}/t{}", r.node.0, r.thread))
                .collect();
            s.push_str(&format!("{v:>4}: {}\n", parts.join(" ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(u64, u16)]) -> Vec<NodeSpec> {
        spec.iter()
            .map(|&(id, threads)| NodeSpec {
                id: NodeId(id),
                threads,
            })
            .collect()
    }

    /// Replicas per node, per thread, and leaders per node each spread by at most one, and
    /// every vShard's replicas on distinct nodes.
    fn check_balanced(p: &Placement, ns: &[NodeSpec]) {
        let mut per_node = vec![0usize; ns.len()];
        let mut leaders = vec![0usize; ns.len()];
        let mut per_thread: Vec<Vec<usize>> =
            ns.iter().map(|n| vec![0; n.threads as usize]).collect();
        for set in &p.replicas {
            assert_eq!(set.len(), p.rf as usize);
            let mut seen: Vec<NodeId> = set.iter().map(|r| r.node).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), set.len(), "replicas on distinct nodes: {set:?}");
            for (k, r) in set.iter().enumerate() {
                let i = ns.iter().position(|n| n.id == r.node).unwrap();
                per_node[i] += 1;
                per_thread[i][r.thread as usize] += 1;
                if k == 0 {
                    leaders[i] += 1;
                }
            }
        }
        let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
        assert!(spread(&per_node) <= 1, "replicas per node {per_node:?}");
        assert!(spread(&leaders) <= 1, "leaders per node {leaders:?}");
        for (i, t) in per_thread.iter().enumerate() {
            assert!(spread(t) <= 1, "node {i} threads {t:?}");
        }
    }

    #[test]
    fn placement_matches_the_golden_table() {
        let ns = nodes(&[(1, 2), (2, 2), (3, 2)]);
        let p = place(&ns, 12, 3).unwrap();
        let golden = include_str!("../tests/golden/placement_3x2_12_rf3.txt");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write("tests/golden/placement_3x2_12_rf3.txt", p.render()).unwrap();
        } else {
            assert_eq!(
                p.render(),
                golden,
                "rerun with BLESS=1 to accept a deliberate change"
            );
        }
        check_balanced(&p, &ns);
    }

    #[test]
    fn placements_are_balanced_for_many_shapes() {
        for (spec, vshards, rf) in [
            (vec![(1, 1)], 256, 1),
            (vec![(1, 2), (2, 2), (3, 2)], 256, 3),
            (vec![(1, 4), (2, 4), (3, 4), (4, 4), (5, 4)], 1024, 3),
            (vec![(1, 2), (2, 8), (3, 3)], 256, 2),
            (vec![(10, 2), (20, 2), (30, 2), (40, 2), (50, 2)], 256, 5),
        ] {
            let ns = nodes(&spec);
            let p = place(&ns, vshards, rf).unwrap();
            // Per-node counts are balanced when nodes have equal thread counts; with unequal
            // threads the per-node balance still holds (data spreads by node), threads within.
            check_balanced(&p, &ns);
        }
    }

    #[test]
    fn joining_and_leaving_move_little_and_stay_balanced() {
        let three = nodes(&[(1, 2), (2, 2), (3, 2)]);
        let p = place(&three, 256, 3).unwrap();
        let four = nodes(&[(1, 2), (2, 2), (3, 2), (4, 2)]);
        let q = rebalance(&p, &four).unwrap();
        check_balanced(&q, &four);
        // A fourth node takes a quarter of the replicas: 192 of 768 move, no more.
        assert_eq!(q.moves_from(&p), 192);
        // Node 2 leaves: its replicas (a quarter) are re-placed, nothing else moves.
        let without_2 = nodes(&[(1, 2), (3, 2), (4, 2)]);
        let r = rebalance(&q, &without_2).unwrap();
        check_balanced(&r, &without_2);
        assert_eq!(r.moves_from(&q), 192);
        assert!(r.replicas.iter().flatten().all(|x| x.node != NodeId(2)));
        // Rebalancing a balanced placement moves nothing.
        assert_eq!(rebalance(&r, &without_2).unwrap().moves_from(&r), 0);
    }

    #[test]
    fn impossible_shapes_are_refused() {
        assert_eq!(
            place(&nodes(&[(1, 2), (2, 2)]), 16, 3),
            Err(PlacementError::TooFewNodes { nodes: 2, rf: 3 })
        );
        assert_eq!(
            place(&nodes(&[(1, 0)]), 16, 1),
            Err(PlacementError::NoThreads(NodeId(1)))
        );
        assert_eq!(
            place(&nodes(&[(1, 1), (1, 1)]), 16, 1),
            Err(PlacementError::DuplicateNode(NodeId(1)))
        );
    }
}
