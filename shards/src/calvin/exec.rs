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

/// A transaction's commands, each its words.
pub type Cmds = Vec<Vec<Vec<u8>>>;

/// One key of a transaction as a participant read it, or as the transaction left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub key: Vec<u8>,
    /// `None`: no such key (an expired key is none). Else its absolute expiry in ms (`None`:
    /// persistent) and its value as a DUMP payload.
    pub value: Option<(Option<u64>, Vec<u8>)>,
}

impl Read {
    /// Participant `v`'s verdict that a key its transaction WATCHed changed since the WATCH
    /// (a read of no key, with no payload, naming `v` where the expiry goes: no real read
    /// has an empty DUMP payload). Every participant that holds one aborts the transaction.
    pub fn watch_broken(v: VShardId) -> Read {
        Read {
            key: Vec::new(),
            value: Some((Some(v.0 as u64), Vec::new())),
        }
    }

    /// The participant whose verdict this is, if it is one (`watch_broken`).
    pub fn broken_by(&self) -> Option<VShardId> {
        match &self.value {
            Some((Some(v), payload)) if self.key.is_empty() && payload.is_empty() => {
                u16::try_from(*v).ok().map(VShardId)
            }
            _ => None,
        }
    }
}

/// Why a transaction's part cannot run.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecError {
    /// A read's payload does not decode (a damaged or forged message): nothing ran, nothing
    /// changed; every participant that holds the same reads refuses alike.
    BadRead { key: Vec<u8> },
    /// An execution entry for a vShard this keyspace does not hold (no leader writes one):
    /// nothing changed.
    Foreign,
    /// SHUTDOWN stopped one of its scripts midway (`run_script`): nothing is proposed; the
    /// next leader runs it again.
    ShutDown,
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

/// Runs `txn` on a scratch keyspace holding `reads` (every key its commands name,
/// from every participant), with `tunables` (the encodings' thresholds); its replies go to
/// `out`. Returns the value afterwards of every key a write command named, in the order first
/// named: what each participant keeps of its own. (A transaction with scripts runs through
/// `run_script`, in a thread's Lua state.)
pub fn execute(
    tunables: &Tunables,
    reads: &[Read],
    txn: Txn,
    out: &mut Out,
) -> Result<Vec<Read>, ExecError> {
    let mut scratch = scratch_of(tunables, reads.iter())?;
    run_on(&mut scratch, reads, txn, out)
}

/// `execute`'s run on `scratch` (which holds `reads`); with a thread's scripting state
/// swapped in (`run_script`), scripts run too, each on the transaction's keys only.
fn run_on(
    scratch: &mut Db,
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
    if exec && reads.iter().any(|r| r.broken_by().is_some()) {
        // A WATCHed key changed before the transaction: it aborts (as EXEC answers then),
        // alike on every participant, since each holds every participant's verdict.
        out.null_array();
        return Ok(Vec::new());
    }
    let mut rng = Rng::new(seed);
    let mut ctx = Ctx {
        now_ms,
        now_us,
        rng: &mut rng,
    };
    let start = out.buf.len();
    if exec {
        out.array(cmds.iter().filter(|c| !is_library(c)).count());
    }
    let mut written: Vec<Vec<u8>> = Vec::new();
    let add = |written: &mut Vec<Vec<u8>>, key: &[u8]| {
        if !written.iter().any(|w| w == key) {
            written.push(key.to_vec());
        }
    };
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    let mut cmds = cmds.iter().peekable();
    while let Some(argv) = cmds.next() {
        // (An FCALL's library follows it: what the function runs, `resolve_script`.)
        let library = cmds.next_if(|c| is_library(c)).and_then(|c| c.get(1));
        if let Some(t) = scratch.scripts.txn.as_mut() {
            t.library = library.map(|code| crate::script::CarriedCode::new(code));
        }
        command::words_into(argv, &mut buf, &mut spans);
        let args = Args::new(&buf, &spans);
        if is_sort(args) {
            // SORT's patterns name keys by the elements it sorts, known only now: the
            // transaction must hold them all, or nothing of it runs (alike on every
            // participant: the same reads) and its origin submits it again with them.
            let named = command::sort::pattern_keys(scratch, args, now_ms);
            let held: std::collections::HashSet<&[u8]> =
                reads.iter().map(|r| r.key.as_slice()).collect();
            if named.iter().any(|k| !held.contains(k.as_slice())) {
                out.buf.truncate(start);
                write_needs_keys(&named, out);
                return Ok(Vec::new());
            }
        }
        if scratch.scripts.txn.is_none()
            && command::lookup(args.get(0)).is_some_and(|s| s.group == "scripting")
        {
            // An execution entry runs no script (a script's carries its effects): a
            // member's entry that holds one is refused alike by every replica.
            out.error(crate::replicate::SCRIPT_IN_ENTRY);
            continue;
        }
        let spec = command::execute(scratch, args, &mut ctx, out);
        if spec.is_some_and(|s| s.group == "scripting") {
            // A script (where scripts run at all: a thread's state is swapped in).
            if scratch.scripts.shut_down {
                return Err(ExecError::ShutDown);
            }
            for key in std::mem::take(&mut scratch.scripts.written) {
                add(&mut written, &key);
            }
        } else if let Some(spec) = spec
            && spec.flags & command::flags::WRITE != 0
            && spec.arity_ok(args.len())
        {
            for k in spec.keys_of(args) {
                add(&mut written, args.get(k));
            }
        }
    }
    Ok(read(scratch, written.iter().map(Vec::as_slice), now_ms))
}

fn is_library(argv: &[Vec<u8>]) -> bool {
    argv.first().is_some_and(|w| w == LIBRARY)
}

/// The word list after a script transaction's FCALL that carries the code of the library
/// defining the function, as the origin held it (`resolve_script`): every participant runs
/// that code, whatever version of the library it holds by then.
pub const LIBRARY: &[u8] = b"\0library";

/// Whether a transaction of `cmds` has a script (EVAL, EVAL_RO, FCALL, FCALL_RO, resolved by
/// `resolve_script`): its participants' leaders run it and log its effects (`run_script`).
pub fn is_script(cmds: &[Vec<Vec<u8>>]) -> bool {
    cmds.iter()
        .any(|c| c.first().is_some_and(|n| is_script_name(n)))
}

fn is_script_name(n: &[u8]) -> bool {
    [&b"eval"[..], b"eval_ro", b"fcall", b"fcall_ro"]
        .iter()
        .any(|s| n.eq_ignore_ascii_case(s))
}

/// At the origin: makes the scripts among `cmds` ones every participant can run alike.
/// EVALSHA becomes EVAL with the body from the node's cache (`-NOSCRIPT` if there is none);
/// EVAL caches its body here, as Redis does; FCALL is followed by its library's code
/// (`LIBRARY`). Other commands are left. The error to answer if a script cannot be sent.
pub fn resolve_script(db: &mut Db, cmds: &mut Cmds) -> Result<(), String> {
    let by_sha =
        |n: &[u8]| n.eq_ignore_ascii_case(b"evalsha") || n.eq_ignore_ascii_case(b"evalsha_ro");
    if !cmds
        .iter()
        .any(|c| c.first().is_some_and(|n| is_script_name(n) || by_sha(n)))
    {
        return Ok(());
    }
    let mut resolved = Vec::with_capacity(cmds.len() + 1);
    for mut argv in std::mem::take(cmds) {
        let name = argv
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let mut library = None;
        if argv.len() >= 2 {
            match name.as_slice() {
                b"eval" | b"eval_ro" => {
                    db.scripts.cache.insert(&argv[1]);
                }
                b"evalsha" | b"evalsha_ro" => {
                    let sha = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
                    let Some(body) = db.scripts.body(&sha) else {
                        return Err("NOSCRIPT No matching script. Please use EVAL.".to_string());
                    };
                    argv[0] = if name == b"evalsha" {
                        b"EVAL".to_vec()
                    } else {
                        b"EVAL_RO".to_vec()
                    };
                    argv[1] = body.to_vec();
                }
                b"fcall" | b"fcall_ro" => {
                    let libs = db.scripts.functions.get();
                    let Some((lib, _)) = libs.function(&String::from_utf8_lossy(&argv[1])) else {
                        return Err("ERR Function not found".to_string());
                    };
                    library = Some(vec![LIBRARY.to_vec(), lib.code.clone()]);
                }
                _ => {}
            }
        }
        resolved.push(argv);
        resolved.extend(library);
    }
    *cmds = resolved;
    Ok(())
}

/// A scratch keyspace holding `reads`. One table for every key: the transaction's keys are
/// all here, and a scratch keyspace of the node's layout cost a table per vShard and a slot
/// for each of its vShards (most of a transaction's time across threads went to allocating
/// them).
fn scratch_of<'a>(
    tunables: &Tunables,
    reads: impl Iterator<Item = &'a Read>,
) -> Result<Db, ExecError> {
    let mut scratch = Db::new_all(VShardLayout::new(1).expect("one vShard is a layout"));
    scratch.tunables = *tunables;
    scratch.across_slots = true;
    // (A WATCH verdict is no key's value: `run_on` aborts on it.)
    for r in reads.filter(|r| r.broken_by().is_none()) {
        let Some((at, payload)) = &r.value else {
            continue;
        };
        let value = rdb::verify(payload)
            .and_then(|body| rdb::load(body, tunables))
            .map_err(|_| ExecError::BadRead { key: r.key.clone() })?;
        scratch.set(&r.key, value, *at, false);
    }
    Ok(scratch)
}

/// What a participant's execution entry of a script transaction carries instead of the
/// commands (`docs/design/scripting.md`: effects, never the script): replicas apply values,
/// they never run Lua.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    /// The script's reply, in its origin's protocol.
    pub reply: Vec<u8>,
    /// The values afterwards of the keys it wrote (`None`: removed); in an entry, the
    /// participant's own only.
    pub writes: Vec<Read>,
}

const BAD_READ: &str = "ERR a read of this transaction's log entry does not decode; not applied";

/// Runs transaction `txn` that has scripts (its commands made alike by `resolve_script`) in
/// `db`'s Lua state, on a scratch keyspace of `reads` (every participant's, taken in key order
/// so the scratch is the same everywhere), with the transaction's clock and seed, its scripts
/// naming only the keys of `held`; its reply written in `proto`. Returns its reply and the
/// values afterwards of every key it wrote, or `None` if SHUTDOWN stopped a script midway
/// (nothing is to be proposed: the next leader runs it again). Every participant computes
/// the same.
pub fn run_script<'a>(
    db: &mut Db,
    reads: &[Read],
    held: impl Iterator<Item = &'a [u8]>,
    txn: Txn,
    proto: crate::reply::Proto,
) -> Option<Effects> {
    let mut sorted: Vec<&Read> = reads.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Out::new(proto);
    let Ok(mut scratch) = scratch_of(&db.tunables, sorted.into_iter()) else {
        out.error(BAD_READ);
        return Some(Effects {
            reply: out.buf,
            writes: Vec::new(),
        });
    };
    // The thread's scripting state (its Lua state, the node's cache and libraries) works on
    // the scratch for this run.
    std::mem::swap(&mut scratch.scripts, &mut db.scripts);
    scratch.scripts.txn = Some(crate::script::TxnRun {
        held: held.map(<[u8]>::to_vec).collect(),
        library: None,
        instructions_max: crate::script::TXN_INSTRUCTIONS_MAX,
    });
    let ran = run_on(&mut scratch, reads, txn, &mut out);
    scratch.scripts.txn = None;
    std::mem::swap(&mut scratch.scripts, &mut db.scripts);
    match ran {
        Ok(writes) => Some(Effects {
            reply: out.buf,
            writes,
        }),
        Err(ExecError::ShutDown) => None,
        Err(_) => {
            let mut out = Out::new(proto);
            out.error(BAD_READ);
            Some(Effects {
                reply: out.buf,
                writes: Vec::new(),
            })
        }
    }
}

/// The head of the reply of a transaction that did not hold every key its SORT's patterns
/// name (they are known only once the sorted key is read): nothing of it ran, on any
/// participant, and its origin submits it again holding them ([`needs_keys`]). Not RESP: it
/// never reaches a client.
const NEEDS_KEYS: &[u8] = b"\0needs-keys\0";

fn is_sort(args: Args) -> bool {
    let name = args.get(0);
    name.eq_ignore_ascii_case(b"sort") || name.eq_ignore_ascii_case(b"sort_ro")
}

/// Writes the reply saying the transaction needs `keys` (each a length, 4 bytes LE, and
/// its bytes).
fn write_needs_keys(keys: &[Vec<u8>], out: &mut Out) {
    out.buf.extend_from_slice(NEEDS_KEYS);
    for k in keys {
        out.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.buf.extend_from_slice(k);
    }
}

/// The keys a transaction's reply says it must hold to run (see `NEEDS_KEYS`), or `None` for
/// any other reply (a damaged one too).
pub fn needs_keys(reply: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut rest = reply.strip_prefix(NEEDS_KEYS)?;
    let mut keys = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        keys.push(rest.get(4..4usize.checked_add(len)?)?.to_vec());
        rest = &rest[4 + len..];
    }
    Some(keys)
}

/// Every key `cmds` name (by the command table's key positions), each once, in the order
/// first named. A command the table does not know, or of the wrong arity, names none (it
/// answers its error on every participant alike).
pub fn keys_of(cmds: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    for argv in cmds {
        command::words_into(argv, &mut buf, &mut spans);
        let args = Args::new(&buf, &spans);
        let Some(spec) = command::lookup(args.get(0)) else {
            continue;
        };
        if !spec.arity_ok(args.len()) {
            continue;
        }
        for k in spec.keys_of(args) {
            let key = args.get(k);
            if !keys.iter().any(|w| w == key) {
                keys.push(key.to_vec());
            }
        }
    }
    keys
}

/// How a command that splits by key (MSET, MGET, DEL, UNLINK, EXISTS, TOUCH: each key's part
/// needs nothing from the others) is cut into its participants' parts, or `None` for one
/// that does not split (it runs whole on every participant, from their reads).
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub merge: command::Merge,
    /// Per participant (ascending): the argument indexes of its keys, in request order.
    pub parts: Vec<(VShardId, Vec<u32>)>,
    /// The words after each key that go with it (`CommandSpec::step - 1`).
    pub step: u32,
}

impl Split {
    pub fn of(argv: &[Vec<u8>], layout: VShardLayout) -> Option<Split> {
        let (mut buf, mut spans) = (Vec::new(), Vec::new());
        command::words_into(argv, &mut buf, &mut spans);
        let args = Args::new(&buf, &spans);
        let spec = command::lookup(args.get(0))?;
        let command::Scope::Keys(merge) = spec.scope else {
            return None;
        };
        if !matches!(
            merge,
            command::Merge::Sum | command::Merge::Positional | command::Merge::AllOk
        ) || !spec.arity_ok(args.len())
        {
            return None;
        }
        let step = spec.step.max(1) as u32;
        let mut parts: Vec<(VShardId, Vec<u32>)> = Vec::new();
        for k in spec.keys_of(args) {
            if k + step as usize > args.len() {
                return None; // a key without its values: the handler's arity error, whole
            }
            let v = layout.vshard_of(key_slot(args.get(k)));
            match parts.iter_mut().find(|(w, _)| *w == v) {
                Some((_, ks)) => ks.push(k as u32),
                None => parts.push((v, vec![k as u32])),
            }
        }
        parts.sort_unstable_by_key(|(v, _)| *v);
        Some(Split { merge, parts, step })
    }

    /// Participant `v`'s command: the name, then each of its keys with the words after it.
    pub fn part_of(&self, argv: &[Vec<u8>], v: VShardId) -> Vec<Vec<u8>> {
        let mut out = vec![argv[0].clone()];
        if let Some((_, keys)) = self.parts.iter().find(|(w, _)| *w == v) {
            for &k in keys {
                out.extend_from_slice(&argv[k as usize..(k + self.step) as usize]);
            }
        }
        out
    }

    /// For a positional merge: the part (index into `parts`) of each key, in request order.
    pub fn order(&self) -> Vec<u16> {
        let mut by_key: Vec<(u32, u16)> = self
            .parts
            .iter()
            .enumerate()
            .flat_map(|(i, (_, ks))| ks.iter().map(move |&k| (k, i as u16)))
            .collect();
        by_key.sort_unstable();
        by_key.into_iter().map(|(_, i)| i).collect()
    }
}

/// What a vShard's execution entry carries (`replicate::Kind::Execute`): the transaction's
/// place, the participant it is for, the transaction, and every participant's reads (its
/// own as its leader read and sent them: a participant that has not executed it yet may ask
/// for them again after this one has, `VShard::calvin_sent`).
#[derive(Debug, PartialEq, Eq)]
pub struct Execution {
    pub seq: u64,
    pub v: VShardId,
    pub exec: bool,
    /// `cmds` is this participant's part of a command that splits by key (`Split`): it runs
    /// on the keyspace itself, and `reads` is empty.
    pub split: bool,
    pub now_us: u64,
    pub seed: u64,
    pub cmds: Vec<Vec<Vec<u8>>>,
    pub reads: Vec<Read>,
    /// Every transaction below it has executed on every participant: the reads `v` keeps
    /// for the others below it can go.
    pub forget_below: u64,
    /// A script's: what its leader's run made (`run_script`), applied instead of running
    /// `cmds` (then empty); `reads` holds `v`'s own only.
    pub effects: Option<Effects>,
}

impl Execution {
    /// The entry's bytes: `replicate`'s header (the transaction's clock and seed), then a
    /// first word list `[seq: u64, v: u16, mode: u8, commands: u32, forget_below: u64]`
    /// (mode: 1 a MULTI/EXEC, 2 split by key, 4 a script's effects), the commands, and one
    /// word list per read: `[key]` for no key, else `[key, expire_at_ms (0: none), DUMP
    /// payload]`. A script's effects stand in the commands' place: `[reply]`, then a word
    /// list per write, written as reads are.
    pub fn encode(&self) -> Vec<u8> {
        let mut e =
            crate::replicate::Encoder::new(crate::replicate::Kind::Execute, self.now_us, self.seed);
        let (seq, v, n, below) = (
            self.seq.to_le_bytes(),
            self.v.0.to_le_bytes(),
            match &self.effects {
                Some(fx) => (1 + fx.writes.len()) as u32,
                None => self.cmds.len() as u32,
            }
            .to_le_bytes(),
            self.forget_below.to_le_bytes(),
        );
        let mode =
            [self.exec as u8 | (self.split as u8) << 1 | (self.effects.is_some() as u8) << 2];
        let head = [&seq[..], &v[..], &mode[..], &n[..], &below[..]];
        e.push(head.into_iter());
        let push_read = |e: &mut crate::replicate::Encoder, r: &Read| match &r.value {
            None => e.push(std::iter::once(r.key.as_slice())),
            Some((at, payload)) => {
                let at = at.unwrap_or(0).to_le_bytes();
                e.push([r.key.as_slice(), &at[..], payload.as_slice()].into_iter());
            }
        };
        match &self.effects {
            Some(fx) => {
                e.push(std::iter::once(fx.reply.as_slice()));
                for w in &fx.writes {
                    push_read(&mut e, w);
                }
            }
            None => {
                for argv in &self.cmds {
                    e.push(argv.iter().map(Vec::as_slice));
                }
            }
        }
        for r in &self.reads {
            push_read(&mut e, r);
        }
        e.finish()
    }

    /// The place and participant of execution entry `data` (`replicate::Kind::Execute`),
    /// read from its first word list alone (the apply path asks per entry; decoding the
    /// whole entry, reads included, is for `apply`). `None` if `data` is not one.
    pub fn head(data: &[u8]) -> Option<(u64, VShardId)> {
        if !crate::replicate::is_execute(data) {
            return None;
        }
        let mut at = crate::replicate::HEADER_BYTES;
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        if u32_at(at - 4)? == 0 || u32_at(at)? != 5 {
            return None;
        }
        at += 4;
        let mut word = || -> Option<&[u8]> {
            let len = u32_at(at)? as usize;
            let w = data.get(at + 4..(at + 4).checked_add(len)?)?;
            at += 4 + len;
            Some(w)
        };
        let seq = u64::from_le_bytes(word()?.try_into().ok()?);
        let v = u16::from_le_bytes(word()?.try_into().ok()?);
        Some((seq, VShardId(v)))
    }

    /// Takes apart an entry `replicate::decode` split into `words` (each command's words);
    /// `None` if it is not a well-formed execution entry.
    pub fn decode(
        now_us: u64,
        seed: u64,
        mut words: impl Iterator<Item = Vec<Vec<u8>>>,
    ) -> Option<Execution> {
        let head = words.next()?;
        let [seq, v, exec, n, below] = <[Vec<u8>; 5]>::try_from(head).ok()?;
        let seq = u64::from_le_bytes(seq.try_into().ok()?);
        let v = VShardId(u16::from_le_bytes(v.try_into().ok()?));
        let (exec, split, script) = match exec.as_slice() {
            [0] => (false, false, false),
            [1] => (true, false, false),
            [2] => (false, true, false),
            [4] => (false, false, true),
            _ => return None,
        };
        let n = u32::from_le_bytes(n.try_into().ok()?) as usize;
        let forget_below = u64::from_le_bytes(below.try_into().ok()?);
        let mut cmds: Vec<Vec<Vec<u8>>> = words.by_ref().take(n).collect();
        if cmds.len() != n {
            return None;
        }
        let effects = match script {
            false => None,
            true => {
                let mut lists = std::mem::take(&mut cmds).into_iter();
                let [reply] = <[Vec<u8>; 1]>::try_from(lists.next()?).ok()?;
                let writes = lists.map(read_of).collect::<Option<Vec<Read>>>()?;
                Some(Effects { reply, writes })
            }
        };
        let reads = words.map(read_of).collect::<Option<Vec<Read>>>()?;
        Some(Execution {
            seq,
            v,
            exec,
            split,
            now_us,
            seed,
            cmds,
            reads,
            forget_below,
            effects,
        })
    }

    /// Applies this entry to `db` (every replica of `v` alike): runs the transaction on the
    /// reads it carries, keeps `v`'s writes, keeps `v`'s own reads for participants that ask
    /// again, and moves `v`'s `calvin_next` past it; the reply goes to `out`. An entry at or
    /// below what `v` executed already changes nothing and answers a null (a repeated
    /// proposal). Errors change nothing.
    pub fn apply(&self, db: &mut Db, out: &mut Out) -> Result<(), ExecError> {
        let layout = db.layout();
        let v = self.v;
        let Some(vs) = db.vshard(v) else {
            return Err(ExecError::Foreign);
        };
        if self.seq < vs.calvin_next {
            out.null();
            return Ok(());
        }
        if let Some(fx) = &self.effects {
            // A script's: its leader's run decided; the values are applied as they are (a
            // damaged entry changes nothing).
            apply(db, &fx.writes, |w| w == v, self.now_us / 1000)?;
            out.buf.extend_from_slice(&fx.reply);
        } else if self.split {
            // Its own keys only, on the keyspace itself (`replicate::run` refuses a key of
            // another vShard, as for any entry).
            let mut rng = Rng::new(self.seed);
            let mut ctx = Ctx {
                now_ms: self.now_us / 1000,
                now_us: self.now_us,
                rng: &mut rng,
            };
            let (mut buf, mut spans) = (Vec::new(), Vec::new());
            for argv in &self.cmds {
                command::words_into(argv, &mut buf, &mut spans);
                crate::replicate::run(db, Args::new(&buf, &spans), &mut ctx, out);
            }
        } else {
            let txn = Txn {
                cmds: &self.cmds,
                exec: self.exec,
                now_us: self.now_us,
                seed: self.seed,
            };
            // `execute` checks every read before it writes a reply.
            let writes = execute(&db.tunables, &self.reads, txn, out)?;
            apply(db, &writes, |w| w == v, self.now_us / 1000).expect("what execute dumped loads");
        }
        let vs = db.vshard_mut(v).expect("owned");
        vs.calvin_next = self.seq + 1;
        let mine = self
            .reads
            .iter()
            .filter(|r| match r.broken_by() {
                Some(by) => by == v,
                None => layout.vshard_of(key_slot(&r.key)) == v,
            })
            .cloned()
            .collect();
        vs.calvin_sent.insert(self.seq, mine);
        if vs
            .calvin_sent
            .first_key_value()
            .is_some_and(|(s, _)| *s < self.forget_below)
        {
            vs.calvin_sent = vs.calvin_sent.split_off(&self.forget_below);
        }
        Ok(())
    }
}

/// A read's word list in an entry (`Execution::encode`), `None` if malformed.
fn read_of(w: Vec<Vec<u8>>) -> Option<Read> {
    let mut w = w.into_iter();
    let key = w.next()?;
    let value = match (w.next(), w.next(), w.next()) {
        (None, _, _) => None,
        (Some(at), Some(payload), None) => {
            let at = u64::from_le_bytes(at.try_into().ok()?);
            Some(((at != 0).then_some(at), payload))
        }
        _ => return None,
    };
    Some(Read { key, value })
}

/// Gives the keys of `writes` that are in vShards `db` owns and `mine` accepts their values
/// (a key with none is removed), at `now_ms`. Every value is decoded first: one that does not
/// (a damaged or forged entry) refuses them all, and nothing changes.
pub fn apply(
    db: &mut Db,
    writes: &[Read],
    mine: impl Fn(VShardId) -> bool,
    now_ms: u64,
) -> Result<(), ExecError> {
    let layout = db.layout();
    let mine: Vec<&Read> = writes
        .iter()
        .filter(|w| mine(layout.vshard_of(key_slot(&w.key))))
        .collect();
    let mut values = Vec::with_capacity(mine.len());
    for w in &mine {
        values.push(match &w.value {
            None => None,
            Some((at, payload)) => Some((
                *at,
                rdb::verify(payload)
                    .and_then(|body| rdb::load(body, &db.tunables))
                    .map_err(|_| ExecError::BadRead { key: w.key.clone() })?,
            )),
        });
    }
    for (w, value) in mine.into_iter().zip(values) {
        db.remove(&w.key, now_ms);
        if let Some((at, value)) = value {
            db.set(&w.key, value, at, false);
        }
    }
    Ok(())
}
