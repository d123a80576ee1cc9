//! Criterion micro-benches: RESP parsing, slot hashing, command apply.
//! Run: `cargo bench -p shardline-bench --bench micro`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shardline_shards::command::{Args, Ctx, Span, execute};
use shardline_shards::db::Db;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::rng::Rng;
use shardline_shards::slot::{VShardLayout, key_slot};
use shardline_transport::resp::{Limits, parse_command};
use std::hint::black_box;

fn parser(c: &mut Criterion) {
    let mut stream = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i:012}");
        stream.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n$64\r\n{}\r\n",
                key.len(),
                key,
                "x".repeat(64)
            )
            .as_bytes(),
        );
    }
    let limits = Limits::default();
    let mut g = c.benchmark_group("resp");
    g.throughput(Throughput::Elements(16));
    g.bench_function("parse_16_set_commands", |b| {
        let (mut spans, mut scratch) = (Vec::new(), Vec::new());
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Some(f)) = parse_command(&stream[pos..], &limits, &mut spans, &mut scratch)
            {
                pos += f.consumed;
            }
            black_box(pos)
        })
    });
    g.finish();
}

fn slots(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("key:{i:012}")).collect();
    let mut g = c.benchmark_group("slot");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("key_slot_16_byte_keys", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| key_slot(k.as_bytes()) as u64)
                .sum::<u64>()
        })
    });
    g.finish();
}

fn args_of(words: &[&[u8]], buf: &mut Vec<u8>, spans: &mut Vec<Span>) {
    shardline_shards::command::words_into(words, buf, spans);
}

fn apply(c: &mut Criterion) {
    let mut db = Db::new_all(VShardLayout::new(256).unwrap());
    let mut rng = Rng::new(1);
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    let value = vec![b'x'; 64];
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    let mut out = Out::new(Proto::Resp2);
    for k in &keys {
        args_of(&[b"SET", k, &value], &mut buf, &mut spans);
        execute(
            &mut db,
            Args::new(&buf, &spans),
            &mut Ctx {
                now_ms: 1,
                now_us: 1000,
                rng: &mut rng,
            },
            &mut out,
        );
        out.buf.clear();
    }
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("get_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            args_of(&[b"GET", &keys[i]], &mut buf, &mut spans);
            out.buf.clear();
            execute(
                &mut db,
                Args::new(&buf, &spans),
                &mut Ctx {
                    now_ms: 1,
                    now_us: 1000,
                    rng: &mut rng,
                },
                &mut out,
            );
            black_box(out.buf.len())
        })
    });
    g.bench_function("set_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            args_of(&[b"SET", &keys[i], &value], &mut buf, &mut spans);
            out.buf.clear();
            execute(
                &mut db,
                Args::new(&buf, &spans),
                &mut Ctx {
                    now_ms: 1,
                    now_us: 1000,
                    rng: &mut rng,
                },
                &mut out,
            );
            black_box(out.buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parser, slots, apply);
criterion_main!(benches);
