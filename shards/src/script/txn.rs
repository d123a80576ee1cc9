//! Scripts that run as transactions across vShards (issue 18, step 6;
//! `docs/design/scripting.md`, "Replication: effects, never the script"): every participant's
//! leader runs the script alone, on a scratch keyspace of the transaction's reads, and no
//! vote follows, so every run must end alike. What here serves that: the script may name only
//! the keys the transaction holds (the scratch has no other), no command that reads or writes
//! the keyspace as a whole, and it is stopped by an instruction count (the same on every
//! participant), never by a clock or by SCRIPT KILL. FCALL runs the library code the origin
//! carried, loaded here once per code (`carried`).

use super::*;
use std::collections::HashSet;

/// A transaction's script run (`Scripts::txn`, set for the run by `calvin::exec::run_script`).
#[derive(Debug)]
pub struct TxnRun {
    /// The transaction's keys: the only ones its commands may name.
    pub held: HashSet<Vec<u8>>,
    /// FCALL's library, as the origin had it (`calvin::exec::LIBRARY`).
    pub library: Option<CarriedCode>,
    /// The most Lua instructions it runs (`TXN_INSTRUCTIONS_MAX`; counted every
    /// `HOOK_EVERY`).
    pub instructions_max: u64,
}

/// The most Lua instructions a script across vShards runs before it is stopped, alike on
/// every participant (a time limit would not be alike): about tens of seconds of Lua.
pub const TXN_INSTRUCTIONS_MAX: u64 = 10_000_000_000;

/// The error of a script across vShards stopped by the instruction limit.
pub(super) const EXHAUSTED: &str = "the script ran past the instructions a script across vShards may run (10,000,000,000) and was stopped (nothing it wrote was kept)";

const UNDECLARED: &str = "ERR Script attempted to access a key it did not declare: a script whose keys are in several vShards may only use its KEYS";

const WHOLE_KEYSPACE: &str = "ERR This Redis command is not allowed from a script whose keys are in several vShards (it reads or writes keys beyond the script's KEYS)";

/// Libraries carried by transactions kept loaded in a thread's state.
const CARRIED_MAX: usize = 16;

/// What a library carried by a transaction made when loaded (its functions by name with
/// their flags), or why it did not load.
pub(super) type Carried = Result<HashMap<String, (Function, u8)>, String>;

/// Why a command of a transaction's script is refused, if it is: a key the transaction does
/// not hold, or a command on the whole keyspace (KEYS, SCAN, DBSIZE, FLUSHALL, ...).
pub(super) fn refusal(
    txn: &TxnRun,
    spec: &command::CommandSpec,
    cmd: Args,
) -> Option<&'static str> {
    let mut keys = spec.keys_of(cmd).peekable();
    if keys.peek().is_none() {
        let keyless = matches!(spec.scope, command::Scope::Keyless);
        return (!keyless || spec.flags & flags::WRITE != 0).then_some(WHOLE_KEYSPACE);
    }
    keys.any(|k| !txn.held.contains(cmd.get(k)))
        .then_some(UNDECLARED)
}

/// A library's code carried by a transaction, with its SHA-1 (what the loaded copies are
/// kept by; computed once per FCALL).
#[derive(Clone, Debug)]
pub struct CarriedCode {
    pub code: Arc<[u8]>,
    pub sha: String,
}

impl CarriedCode {
    pub fn new(code: &[u8]) -> CarriedCode {
        CarriedCode {
            code: Arc::from(code),
            sha: sha1::hex(code),
        }
    }
}

/// The functions of carried library `lib` in `engine`, loaded at its first use here (by the
/// code's SHA-1; the few kept are all dropped when there are too many): the key they are
/// kept by.
pub(super) fn carried(engine: &mut Engine, db: &Db, lib: &CarriedCode) -> String {
    let (sha, code) = (&lib.sha, &lib.code[..]);
    if !engine.carried.contains_key(sha) {
        if engine.carried.len() >= CARRIED_MAX {
            engine.carried.clear();
        }
        let loaded = library::load(engine, db, code).map(|(_, fns)| {
            fns.into_iter()
                .map(|(info, f)| (info.name, (f, info.flags)))
                .collect()
        });
        engine.carried.insert(sha.clone(), loaded);
    }
    sha.clone()
}
