//! A participant's part of a transaction (`docs/design/calvin.md`, "Execute through the log").
//!
//! Call order: every participant [`read`]s the transaction's keys it owns at the
//! transaction's place in its log and sends them to the others; each, holding every
//! participant's reads, runs [`execute`] (the same inputs, clock and seed everywhere, so the
//! same replies and the same values afterwards) and keeps what concerns it with [`apply`].

use crate::command::{self, Args, Ctx};
use crate::db::{Db, Tunables};
use crate::rdb;
use crate::reply::Out;
use crate::rng::Rng;
use crate::slot::{VShardId, VShardLayout, key_slot};

/// One key of a transaction as a participant read it, or as the transaction left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub key: Vec<u8>,
    /// `None`: no such key (an expired key is none). Else its absolute expiry in ms (`None`:
    /// persistent) and its value as a DUMP payload.
    pub value: Option<(Option<u64>, Vec<u8>)>,
}

/// Why a transaction's part cannot run.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecError {
    /// A read's payload does not decode (a damaged or forged message): nothing ran, nothing
    /// changed; every participant that holds the same reads refuses alike.
    BadRead { key: Vec<u8> },
}

/// The values of `keys` in `db` at `now_ms`.
pub fn read<'a>(db: &mut Db, keys: impl IntoIterator<Item = &'a [u8]>, now_ms: u64) -> Vec<Read> {
    keys.into_iter()
        .map(|key| Read {
            key: key.to_vec(),
            value: db.expire_at(key, now_ms).map(|at| {
                let value = db.peek(key).expect("a live key has a value");
                (at, rdb::dump(value))
            }),
        })
        .collect()
}

/// A sequenced transaction as every participant runs it: its commands (each an argv; one
/// command, or a MULTI/EXEC's when `exec`: their replies in one array), and the clock and
/// seed the sequencer gave it.
#[derive(Clone, Copy, Debug)]
pub struct Txn<'a> {
    pub cmds: &'a [Vec<Vec<u8>>],
    pub exec: bool,
    pub now_us: u64,
    pub seed: u64,
}

/// Runs `txn` on a scratch keyspace of `layout` holding `reads` (every key its commands name,
/// from every participant), with `tunables` (the encodings' thresholds); its replies go to
/// `out`. Returns the value afterwards of every key a write command named, in the order first
/// named: what each participant keeps of its own.
pub fn execute(
    layout: VShardLayout,
    tunables: &Tunables,
    reads: &[Read],
    txn: Txn,
    out: &mut Out,
) -> Result<Vec<Read>, ExecError> {
    let Txn {
        cmds,
        exec,
        now_us,
        seed,
    } = txn;
    let now_ms = now_us / 1000;
    let mut vshards: Vec<VShardId> = reads
        .iter()
        .map(|r| layout.vshard_of(key_slot(&r.key)))
        .collect();
    vshards.sort_unstable();
    vshards.dedup();
    let mut scratch = Db::new(layout, vshards.iter().copied());
    scratch.tunables = *tunables;
    for r in reads {
        let Some((at, payload)) = &r.value else {
            continue;
        };
        let value = rdb::verify(payload)
            .and_then(|body| rdb::load(body, tunables))
            .map_err(|_| ExecError::BadRead { key: r.key.clone() })?;
        scratch.set(&r.key, value, *at, false);
    }
    let mut rng = Rng::new(seed);
    let mut ctx = Ctx {
        now_ms,
        now_us,
        rng: &mut rng,
    };
    if exec {
        out.array(cmds.len());
    }
    let mut written: Vec<Vec<u8>> = Vec::new();
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    for argv in cmds {
        command::words_into(argv, &mut buf, &mut spans);
        let args = Args::new(&buf, &spans);
        if let Some(spec) = command::execute(&mut scratch, args, &mut ctx, out)
            && spec.flags & command::flags::WRITE != 0
            && spec.arity_ok(args.len())
        {
            for k in spec.keys_of(args) {
                let key = args.get(k);
                if !written.iter().any(|w| w == key) {
                    written.push(key.to_vec());
                }
            }
        }
    }
    Ok(read(
        &mut scratch,
        written.iter().map(Vec::as_slice),
        now_ms,
    ))
}

/// Gives the keys of `writes` that are in vShards `db` owns and `mine` accepts their values
/// (a key with none is removed), at `now_ms`. The payloads came from `execute` on the same
/// build: one that does not decode is our bug.
pub fn apply(db: &mut Db, writes: &[Read], mine: impl Fn(VShardId) -> bool, now_ms: u64) {
    let layout = db.layout();
    for w in writes {
        if !mine(layout.vshard_of(key_slot(&w.key))) {
            continue;
        }
        db.remove(&w.key, now_ms);
        if let Some((at, payload)) = &w.value {
            let value = rdb::verify(payload)
                .and_then(|body| rdb::load(body, &db.tunables))
                .expect("a payload execute dumped loads");
            db.set(&w.key, value, *at, false);
        }
    }
}
