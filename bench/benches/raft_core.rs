//! The candidate Raft core's own cost, for the library decision (ARCHITECTURE.md): 1,000 groups
//! with 3 replicas each on one thread, leaders elected, then 10 writes proposed to every group and
//! driven until all are committed on the leaders. Messages are handed over in memory (no
//! encoding, no fsync), so this is the core's CPU per write, not a cluster's throughput.
//! Run: `cargo bench -p shardline-bench --bench raft_core`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shardline_shards::raft::{Config, Envelope, Group, NodeId, Role};

const GROUPS: usize = 1000;
const WRITES: usize = 10;

/// Every replica of every group: `replicas[g][node - 1]`.
fn cluster() -> Vec<Vec<Group>> {
    let mut all: Vec<Vec<Group>> = (0..GROUPS)
        .map(|g| {
            (1..=3)
                .map(|id| {
                    Group::new(Config {
                        id: NodeId(id),
                        members: vec![NodeId(1), NodeId(2), NodeId(3)],
                        election_ticks: 10,
                        leader_wait_ticks: 0,
                        heartbeat_ticks: 3,
                        max_batch: 64,
                        snapshot_chunk_bytes: 1 << 20,
                        bulk_snapshots: false,
                        pre_vote: true,
                        seed: g as u64,
                        check_snapshot: shardline_shards::raft::SnapshotCheck::any(),
                    })
                })
                .collect()
        })
        .collect();
    // Elect a leader everywhere (a pre-vote round, then the vote).
    while all
        .iter()
        .any(|reps| !reps.iter().any(|r| r.role() == Role::Leader))
    {
        for reps in all.iter_mut() {
            for r in reps.iter_mut() {
                r.tick();
            }
            settle(reps);
        }
    }
    all
}

/// Delivers messages within one group until none are left; returns nothing committed on its own.
fn settle(reps: &mut [Group]) {
    let mut inbox: Vec<Envelope> = Vec::new();
    loop {
        for r in reps.iter_mut() {
            inbox.extend(r.take_ready().messages);
        }
        if inbox.is_empty() {
            return;
        }
        for env in inbox.drain(..) {
            reps[env.to.slot()].step(env.from, env.msg);
        }
    }
}

fn writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft_core");
    g.throughput(Throughput::Elements((GROUPS * WRITES) as u64));
    g.sample_size(10);
    g.bench_function("1000_groups_x_10_writes_rf3", |b| {
        b.iter_batched(
            cluster,
            |mut all| {
                for reps in all.iter_mut() {
                    let leader = reps.iter().position(|r| r.role() == Role::Leader).unwrap();
                    let target = reps[leader].log().len() as u64 + WRITES as u64;
                    for w in 0..WRITES {
                        reps[leader].propose(vec![w as u8; 64]).unwrap();
                    }
                    while reps[leader].commit_index() < target {
                        settle(reps);
                    }
                }
                all
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
