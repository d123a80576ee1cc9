//! The simulator's scenarios: each runs seeds (`seeds`) of a cluster under faults and checks
//! what `checks.rs` checks at the end; a failing seed replays alone with `SIM_SEED`.

use super::*;

/// The seeds to run: `SIM_SEED` (hex) alone; else `SIM_SEEDS` of them (default `count`) from
/// `SIM_SEED_START` (hex, default 0x510000). `scripts/sim-soak.sh` runs thousands.
fn seeds(count: u64) -> Vec<u64> {
    let hex = |name: &str| {
        std::env::var(name).ok().map(|s| {
            u64::from_str_radix(s.trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("{name} is hex"))
        })
    };
    if let Some(seed) = hex("SIM_SEED") {
        return vec![seed];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .map_or(count, |n| n.parse().expect("SIM_SEEDS is a count"));
    let start = hex("SIM_SEED_START").unwrap_or(0x51_0000);
    (start..start + count).collect()
}

#[test]
fn sim_three_nodes_survive_crashes_restarts_and_cut_links_with_linearizable_keys() {
    let (mut captures, mut capture_steps) = (0, 0);
    for seed in seeds(12) {
        let mut sim = Sim::new(seed, 3, 1 + (seed as usize & 1));
        sim.run_with_faults(8_000);
        sim.finish();
        captures += sim.captures;
        capture_steps += sim.capture_steps;
    }
    // Compactions were written from captures walked over many steps while clients wrote.
    assert!(
        captures > 0 && capture_steps > captures,
        "{captures} captures, {capture_steps} steps"
    );
}

#[test]
fn sim_five_nodes_with_three_replicas_each_survive_the_same_faults() {
    for seed in seeds(4) {
        let mut sim = Sim::new(seed, 5, 2);
        sim.run_with_faults(8_000);
        sim.finish();
    }
}

#[test]
fn sim_nodes_join_and_leave_while_crashes_cuts_and_pauses_go_on() {
    for seed in seeds(6) {
        let mut sim = Sim::new(seed, 3, 1 + (seed as usize & 1));
        // Two nodes join, one at a time; then one of the five (a founder or a newcomer)
        // is asked to leave.
        sim.admin_queue.push_back((1_000, Admin::Join));
        sim.admin_queue.push_back((2_500, Admin::Join));
        let leaver = NodeId(1 + sim.rng.below(5));
        sim.admin_queue.push_back((4_000, Admin::Remove(leaver)));
        sim.run_with_faults(10_000);
        sim.finish();
        assert!(sim.nodes[leaver.slot()].gone, "node {leaver} left");
        assert_eq!(sim.members().len(), 4);
    }
}

#[test]
fn sim_operators_move_drain_and_cancel_while_crashes_cuts_and_pauses_go_on() {
    for seed in seeds(4) {
        let mut sim = Sim::new(seed, 4, 1 + (seed as usize & 1));
        let vshards = sim.nodes[0].c.meta_group() as u64;
        // To a node that does not hold it when the move starts (`NodeId(0)`).
        let pick = |sim: &mut Sim| Admin::Move {
            vshard: sim.rng.below(vshards) as u16,
            to: NodeId(0),
        };
        let drained = NodeId(1 + sim.rng.below(4));
        for (at, op) in [
            (1_000, pick(&mut sim)),
            (1_500, pick(&mut sim)),
            (1_520, Admin::CancelLast),
            (2_500, Admin::Drain(drained)),
            (5_000, Admin::Undrain(drained)),
            (6_500, pick(&mut sim)),
        ] {
            sim.admin_queue.push_back((at, op));
        }
        sim.run_with_faults(9_000);
        sim.finish();
        sim.check_moves_settled();
    }
}

#[test]
fn sim_the_rebalancer_moves_leaders_and_replicas_under_a_skewed_load_through_faults() {
    let mut acted = 0;
    for seed in seeds(4) {
        // Three keys take every request: a few vShards carry the whole load, and the
        // rebalancer (every 500 ms) spreads their leaders (RF 3 on three nodes: leaderships
        // only) or, with one replica each, the replicas, while crashes, cuts and pauses go
        // on; every move closes and every group is where it is placed in the end.
        let rf = if seed & 2 == 0 { 3 } else { 1 };
        let mut sim = Sim::with(seed, 3, 1 + (seed as usize & 1), Some(rf), true, 0);
        sim.run_with_faults(9_000);
        sim.finish();
        sim.check_moves_settled();
        let c = &sim.nodes[0].c;
        let n = c
            .moves()
            .iter()
            .filter(|m| {
                use shardline_shards::meta::MoveKind;
                matches!(m.kind, MoveKind::Rebalance | MoveKind::Lead)
            })
            .count();
        eprintln!("sim seed {:#x}: rf {rf}, {n} rebalancer moves", sim.seed);
        acted += n;
    }
    assert!(acted > 0, "the rebalancer acted on some seed");
}

#[test]
fn sim_a_dead_node_is_removed_and_its_replicas_made_again_while_faults_go_on() {
    for seed in seeds(4) {
        // Five nodes, three replicas a vShard, automatic repair after 2 s: a member dies for
        // good while crashes, power cuts, partitions and pauses go on among the others (none
        // lasts long enough to be repaired: `left` fails a run where one is). SWIM finds it
        // dead, the metadata leader removes it once a majority of every vShard it held is
        // alive, the moves make its replicas again on the others; the histories stay
        // linearizable and the cluster settles without it.
        let mut sim = Sim::with(seed, 5, 1 + (seed as usize & 1), Some(3), false, 2_000);
        sim.kill_at = Some(2_000 + sim.rng.below(2_000));
        sim.run_with_faults(14_000);
        sim.finish();
        sim.check_moves_settled();
        let dead = sim.killed.expect("a member died");
        let members = sim.members();
        assert_eq!(members.len(), 4);
        // Each member drops it from its member table once its metadata is current again
        // after the restart of every node (its leader's first entry committed).
        for waited in 0.. {
            let holding: Vec<NodeId> = members
                .iter()
                .copied()
                .filter(|id| sim.nodes[id.slot()].c.member(dead).is_some())
                .collect();
            if holding.is_empty() {
                break;
            }
            assert!(
                waited < 10_000,
                "seed {:#x}: nodes {holding:?} still count node {dead} a member\n{}",
                sim.seed,
                sim.log.join("\n")
            );
            sim.tick();
        }
        for &id in &members {
            let c = &sim.nodes[id.slot()].c;
            let r = sim.nodes[id.slot()].threads[0].r.as_ref().expect("up");
            for v in 0..c.meta_group() {
                let voters = c.members(VShardId(v as u16));
                assert!(
                    !voters.contains(&dead) && voters.len() == 3,
                    "seed {:#x}: node {id} places vShard {v} on {voters:?}",
                    sim.seed
                );
            }
            // The metadata group too, where this node holds a replica of it.
            if let Some(g) = r.groups[r.meta_g as usize].as_ref() {
                let m = g.membership();
                assert!(
                    !m.voters.contains(&dead) && !m.learners.contains(&dead),
                    "seed {:#x}: node {id}'s metadata group: {m:?}",
                    sim.seed
                );
            }
        }
    }
}

#[test]
fn sim_a_node_alone_applies_at_append_survives_power_cuts_and_grows_by_joins() {
    for seed in seeds(6) {
        // One node: every vShard a group of one (direct: applied at append, answered once on
        // disk) through crashes and power cuts; then two nodes join and the groups grow to
        // three replicas, out of direct mode while they move.
        let mut sim = Sim::new(seed, 1, 1 + (seed as usize & 1));
        sim.admin_queue.push_back((6_000, Admin::Join));
        sim.admin_queue.push_back((8_000, Admin::Join));
        sim.run_with_faults(12_000);
        sim.finish();
        assert_eq!(sim.members().len(), 3);
        eprintln!(
            "sim seed {:#x}: {} entries applied at append, {} acknowledged",
            sim.seed, sim.direct_entries, sim.acked
        );
        assert!(sim.direct_entries > 0, "the node applied entries at append");
    }
}

#[test]
fn sim_a_node_alone_runs_transactions_across_vshards_through_crashes_and_power_cuts() {
    for seed in seeds(6) {
        // Every transaction pair spans two vShards of one thread: run at once, its effects on
        // each vShard written as one log record, which a power cut keeps whole or drops. Pops
        // wait on two lists of two vShards of a thread (a waiter across vShards, tried at
        // once, its effects logged).
        let mut sim = Sim::new(seed, 1, 1 + (seed as usize & 1));
        sim.cross_pairs = true;
        sim.run_with_faults(8_000);
        sim.finish();
        assert!(sim.direct_entries > 0, "the node applied entries at append");
    }
}

#[test]
fn sim_transactions_across_nodes_stay_whole_and_linearizable_through_crashes_and_cuts() {
    for seed in seeds(6) {
        // Every transaction pair spans vShards led by any nodes (of two threads where there
        // are two): a Calvin transaction through the sequencer in the metadata log, reads
        // exchanged between the participants' leaders, one execution entry per participant,
        // the reply merged at the origin. Pairs are one register each in the history (a
        // read that saw half of a write fails the run), checked for linearizability; a bank's
        // transfers between accounts led anywhere never show in part to its audits.
        let nodes = if seed % 3 == 2 { 5 } else { 3 };
        let mut sim = Sim::new(seed, nodes, 1 + (seed as usize & 1));
        sim.calvin_pairs = true;
        sim.run_with_faults(8_000);
        let count = |f: fn(&crate::cluster::replica::calvin::Stream) -> u64| -> u64 {
            sim.members()
                .iter()
                .map(|&id| f(&sim.nodes[id.slot()].c.calvin))
                .sum()
        };
        let executed = count(|s| s.executions.load(std::sync::atomic::Ordering::Relaxed));
        let resent = count(|s| s.resent.load(std::sync::atomic::Ordering::Relaxed));
        sim.finish();
        eprintln!(
            "sim seed {:#x}: {executed} execution entries applied on the nodes' leaders and {resent} submissions sent again to a new sequencer since their last start, {} requests acknowledged, {} bank audits",
            sim.seed, sim.acked, sim.audits
        );
        assert!(executed > 0, "transactions executed");
        // (Some seeds' faults leave no audit of eight participants through before the
        // quiet end.)
        assert!(sim.audits > 0, "seed {:#x}: the bank was audited", sim.seed);
    }
}

#[test]
fn sim_a_seed_replays_exactly() {
    // The same seed twice in one process (where every `HashMap` gets other keys): the same
    // run, or a failure's seed would not replay it.
    // With transactions across nodes too (their ids, and the maps Calvin's driver walks,
    // once made runs differ).
    let run = |calvin: bool| {
        let mut sim = Sim::new(0x5EED, 3, 2);
        sim.calvin_pairs = calvin;
        sim.admin_queue.push_back((800, Admin::Join));
        sim.run_with_faults(3_000);
        (
            sim.now_ms,
            sim.acked,
            sim.refused,
            sim.unknown,
            sim.next_request,
            sim.leaders.clone(),
            sim.log.clone(),
        )
    };
    assert_eq!(run(false), run(false));
    assert_eq!(run(true), run(true));
}

#[test]
fn sim_a_member_sending_damaged_and_hostile_messages_takes_no_node_down() {
    for seed in seeds(10) {
        let mut sim = Sim::new(seed, 3, 2);
        sim.hostile = Some(NodeId(3));
        // No other faults: whatever goes wrong is the hostile member's doing. Every node keeps
        // running (a `Fatal` or a panic fails the test) and answers every request in time.
        for _ in 0..6_000 {
            sim.tick();
        }
        eprintln!(
            "sim seed {:#x}: {} frames rewritten, {} refused, {} acknowledged, {} refused requests",
            sim.seed, sim.mutated, sim.refused_frames, sim.acked, sim.refused
        );
        assert!(
            sim.mutated > 100 && sim.refused_frames > 10,
            "the fuzzing ran"
        );
        sim.hostile = None;
        sim.clients_stopped = true;
        while !sim.requests.is_empty() {
            sim.tick();
        }
    }
}
