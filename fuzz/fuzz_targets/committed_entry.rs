//! A committed log entry from a member, applied by a replica that holds only some vShards:
//! arbitrary bytes, and entries well formed around fuzzed commands (so the apply proper is
//! reached: commands on keys of vShards the replica lacks, transactions, retries, expiry
//! checks, flushes, Calvin execution entries with fuzzed commands and reads), and the same
//! bytes as an entry of the Calvin sequencer's group, as its snapshot state, and as the
//! metadata group's snapshot state. Never panics; a damaged entry is an error, a foreign
//! command a refusal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::db::Db;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::replicate::{self, Encoder, Kind, Scratch};
use shardline_shards::slot::{VShardId, VShardLayout};

fuzz_target!(|data: &[u8]| {
    let layout = VShardLayout::new(16).expect("16 vShards");
    let mut db = Db::new(layout, (0..16).step_by(2).map(VShardId));
    let mut clock = 0;
    let mut out = Out::new(Proto::Resp3);
    let mut ends = Vec::new();
    let mut scratch = Scratch::default();
    let _ = replicate::apply(&mut db, data, &mut clock, &mut out, &mut ends, &mut scratch);
    let mut seq = shardline_shards::calvin::seq::Sequencer::default();
    if seq.apply(data).is_err() {
        assert_eq!(seq.next_seq(), 0, "a damaged sequencer entry changes nothing");
    }
    let _ = shardline_shards::calvin::seq::Sequencer::decode(data, Default::default());
    let _ = shardline_shards::calvin::exec::Execution::head(data);
    if let Ok(parts) = shardline_shards::calvin::seq::split_state(data) {
        if let Some(state) = parts.seq {
            let _ = shardline_shards::calvin::seq::Sequencer::decode(state, Default::default());
        }
        if let Some(libs) = parts.libs {
            let _ = shardline_shards::script::functions::Libraries::decode(libs);
        }
    }
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    if k % 6 == 5 {
        // An execution entry: commands, then (after a 0xfd) reads as `key 0xfe payload`.
        let (cmds, reads) = match rest.iter().position(|&b| b == 0xfd) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let parse_reads = |b: &[u8]| -> Vec<shardline_shards::calvin::exec::Read> {
            b.split(|&b| b == 0xff)
                .map(|r| {
                    let mut w = r.splitn(2, |&b| b == 0xfe);
                    let key = w.next().unwrap_or_default().to_vec();
                    shardline_shards::calvin::exec::Read {
                        key,
                        value: w.next().map(|p| (None, p.to_vec())),
                    }
                })
                .collect()
        };
        // Some of them a script's effects (a reply, then writes as reads are written).
        let script = k & 32 != 0 && k & 192 == 0;
        let x = shardline_shards::calvin::exec::Execution {
            seq: u64::from(k),
            v: VShardId(u16::from(k) % 16),
            exec: k & 64 != 0,
            split: k & 128 != 0,
            now_us: 1_000_000,
            seed: u64::from(k),
            cmds: match script {
                true => Vec::new(),
                false => cmds
                    .split(|&b| b == 0xff)
                    .map(|c| c.split(|&b| b == 0xfe).map(<[u8]>::to_vec).collect())
                    .collect(),
            },
            reads: parse_reads(reads),
            forget_below: 0,
            effects: script.then(|| {
                let (reply, writes) = cmds.split_at(cmds.len() / 3);
                shardline_shards::calvin::exec::Effects {
                    reply: reply.to_vec(),
                    writes: parse_reads(writes),
                }
            }),
        };
        out.buf.clear();
        ends.clear();
        let entry = x.encode();
        assert_eq!(
            shardline_shards::calvin::exec::Execution::head(&entry),
            Some((x.seq, x.v))
        );
        let _ = replicate::apply(&mut db, &entry, &mut clock, &mut out, &mut ends, &mut scratch);
        return;
    }
    let kind = match k % 5 {
        0 => Kind::Commands,
        1 => Kind::Transaction,
        2 => Kind::Retry,
        3 => Kind::ExpireCheck,
        _ => Kind::Flush,
    };
    // Commands separated by 0xff, their words by 0xfe.
    let mut e = Encoder::new(kind, u64::from(k) * 1_000, u64::from(k));
    for cmd in rest.split(|&b| b == 0xff) {
        let words: Vec<&[u8]> = cmd.split(|&b| b == 0xfe).collect();
        e.push(words.into_iter());
    }
    out.buf.clear();
    ends.clear();
    let _ = replicate::apply(&mut db, &e.finish(), &mut clock, &mut out, &mut ends, &mut scratch);
});
