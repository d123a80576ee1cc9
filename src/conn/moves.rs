//! Moves an operator controls (issue 19, step 4): CLUSTER MOVE, CANCELMOVE, DRAIN, UNDRAIN
//! change the metadata (`shardline_shards::meta::moves`), proposed on thread 0 of the
//! metadata group's leader (another node's request is forwarded there); CLUSTER MOVES lists
//! the records with where each move stands, as this node knows it (`cluster::progress`), and
//! CLUSTER LOAD the vShards' loads the rebalancer weighs. `shardline ctl` calls these.

use super::cluster::{node_arg, unknown_node};
use super::*;
use crate::cluster::NodeId;
use shardline_shards::meta::Cmd;
use shardline_shards::slot::{SLOTS, VShardId};

impl Conn {
    /// CLUSTER MOVE <vshard> <node> [FROM <node>], CLUSTER MOVE SLOTS <first> <last> <node>
    /// [FROM <node>] (one move per vShard the range touches, answered as an array), CLUSTER
    /// CANCELMOVE <id>, CLUSTER DRAIN <node>, CLUSTER UNDRAIN <node>. A move answers its id;
    /// the others `+OK`.
    pub(super) fn cluster_move(
        &mut self,
        c: &crate::cluster::Cluster,
        spec: &'static CommandSpec,
        args: Args,
    ) {
        let cmds = match parse(c, args) {
            Ok(cmds) => cmds,
            Err(e) => return self.out.error(&e),
        };
        let leader = c.leader(VShardId(c.meta_group() as u16));
        if leader != c.me && leader != NodeId(0) {
            return self.proxy(leader, spec, args);
        }
        let many = cmds.len() > 1 || args.get(2).eq_ignore_ascii_case(b"slots");
        if many {
            self.out.array(cmds.len());
        }
        for cmd in cmds {
            let mut b = Vec::new();
            cmd.encode(&mut b);
            let op = self.push_op(0, Op::Meta(b));
            self.hole(vec![PartRef::Remote { thread: 0, op }], Finish::Raw);
        }
    }

    /// CLUSTER MOVES: every open move and the last finished ones, each a map of id, vshard,
    /// slots, from, to (member numbers; from 0: a replica added), kind (operator, drain,
    /// join, leave), state (open, done, cancelled), phase (waiting,
    /// copying, catching-up, cutting-over, done, cancelled), the base copy's bytes copied and
    /// total, its rate (bytes a second) and ETA (seconds; -1 unknown) while it copies.
    pub(super) fn cluster_moves(&mut self, c: &crate::cluster::Cluster) {
        let views = c.move_views();
        self.out.array(views.len());
        for (rec, phase, copy) in views {
            let range = c.layout.slot_range(VShardId(rec.vshard));
            self.out.map(13);
            self.out.bulk(b"id");
            self.out.int(rec.id as i64);
            self.out.bulk(b"vshard");
            self.out.int(rec.vshard as i64);
            self.out.bulk(b"slots");
            self.out
                .bulk(format!("{}-{}", range.start, range.end - 1).as_bytes());
            self.out.bulk(b"from");
            self.out.int(rec.from.0 as i64);
            self.out.bulk(b"to");
            self.out.int(rec.to.0 as i64);
            self.out.bulk(b"kind");
            self.out.bulk(rec.kind.name().as_bytes());
            self.out.bulk(b"state");
            self.out.bulk(rec.state.name().as_bytes());
            self.out.bulk(b"phase");
            self.out.bulk(phase.name().as_bytes());
            self.out.bulk(b"epoch");
            self.out.int(rec.epoch as i64);
            self.out.bulk(b"bytes-copied");
            self.out.int(copy.acked as i64);
            self.out.bulk(b"bytes-total");
            self.out.int(copy.total as i64);
            self.out.bulk(b"rate-bytes-per-sec");
            self.out.int(copy.rate() as i64);
            self.out.bulk(b"eta-seconds");
            self.out.int(copy.eta_secs().map_or(-1, |s| s as i64));
        }
    }

    /// CLUSTER LOAD: every vShard's load as its leader last reported it (what the
    /// rebalancer weighs), each a map of vshard, slots, leader (the preferred one, by which
    /// the rebalancer counts a node's load), ops-per-sec, write-bytes-per-sec,
    /// cpu-us-per-sec (time its commands took to run, from a sample) and weight (the three
    /// in operations: `rebalance::Load::weight`). A vShard no leader has reported on yet
    /// shows zeros.
    pub(super) fn cluster_load(&mut self, c: &crate::cluster::Cluster) {
        let loads = c.loads(c.layout.count() as usize);
        self.out.array(loads.len());
        for (v, l) in loads.iter().enumerate() {
            let range = c.layout.slot_range(VShardId(v as u16));
            self.out.map(7);
            self.out.bulk(b"vshard");
            self.out.int(v as i64);
            self.out.bulk(b"slots");
            self.out
                .bulk(format!("{}-{}", range.start, range.end - 1).as_bytes());
            self.out.bulk(b"leader");
            self.out.int(c.preferred(VShardId(v as u16)).0 as i64);
            self.out.bulk(b"ops-per-sec");
            self.out.int(l.ops as i64);
            self.out.bulk(b"write-bytes-per-sec");
            self.out.int(l.bytes as i64);
            self.out.bulk(b"cpu-us-per-sec");
            self.out.int(l.cpu_us as i64);
            self.out.bulk(b"weight");
            self.out.int(l.weight() as i64);
        }
    }
}

/// The metadata changes a CLUSTER MOVE/CANCELMOVE/DRAIN/UNDRAIN asks for (arity checked by
/// the subcommand table), or why it is malformed.
fn parse(c: &crate::cluster::Cluster, args: Args) -> Result<Vec<Cmd>, String> {
    let sub = args.get(1).to_ascii_lowercase();
    let node = |i: usize| node_arg(c, args.get(i)).ok_or_else(|| unknown_node(args.get(i)));
    let num = |i: usize| -> Option<u64> { std::str::from_utf8(args.get(i)).ok()?.parse().ok() };
    match sub.as_slice() {
        b"cancelmove" => {
            let id = num(2).ok_or("ERR CLUSTER CANCELMOVE wants a move id (CLUSTER MOVES)")?;
            Ok(vec![Cmd::CancelMove { id }])
        }
        b"drain" => Ok(vec![Cmd::Drain { id: node(2)? }]),
        b"undrain" => Ok(vec![Cmd::Undrain { id: node(2)? }]),
        _ => {
            let slots = args.get(2).eq_ignore_ascii_case(b"slots");
            let at = if slots { 5 } else { 3 };
            let from = match args.len() - at {
                1 => None,
                3 if args.get(at + 1).eq_ignore_ascii_case(b"from") => Some(node(at + 2)?),
                _ => return Err("ERR syntax error: CLUSTER MOVE <vshard>|SLOTS <first> <last> <node> [FROM <node>]".into()),
            };
            let to = node(at)?;
            let vshards: Vec<u16> = if slots {
                let (Some(first), Some(last)) = (num(3), num(4)) else {
                    return Err("ERR Invalid slot".into());
                };
                if first > last || last >= SLOTS as u64 {
                    return Err(format!(
                        "ERR a slot range is <first> <last> with 0 <= first <= last < {SLOTS}"
                    ));
                }
                let (a, b) = (
                    c.layout.vshard_of(first as u16).0,
                    c.layout.vshard_of(last as u16).0,
                );
                (a..=b).collect()
            } else {
                match num(2) {
                    Some(v) if v < c.layout.count() as u64 => vec![v as u16],
                    _ => {
                        return Err(format!(
                            "ERR no vShard {} (this cluster has {}; CLUSTER MOVE SLOTS takes a slot range)",
                            err::sanitize(args.get(2)),
                            c.layout.count()
                        ));
                    }
                }
            };
            Ok(vshards
                .into_iter()
                .map(|vshard| Cmd::Move { vshard, to, from })
                .collect())
        }
    }
}
