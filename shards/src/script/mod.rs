//! Lua scripting (issue 18, `docs/design/scripting.md`): EVAL and its family run a script in
//! the shard thread's Lua 5.1 state (mlua, the interpreter Redis runs), with `redis.call` and
//! `redis.pcall` running commands on the thread's keyspace. What a script wrote is recorded
//! (`Scripts::written`) so the driver logs its *effects*, never the script: replicas and
//! restarts never run Lua.
//!
//! Replies and errors follow Redis 7.0 (checked against redis-server 7.0.15): the conversions
//! between RESP and Lua values (`convert.rs`), the error texts (`... script: <sha>, on
//! @user_script:<line>.`), the sandbox (no `os`, `io`, `debug`, `print`, `loadstring`,
//! `require`, ...; reading an undefined global or creating one is an error).

mod busy;
mod call;
mod convert;
pub mod functions;
mod isolation;
mod library;
mod libs;
mod txn;
pub use busy::{Busy, KILL_SCRIPT, KILL_SHUTDOWN, Running, busy_error, kill, running_function};
pub use isolation::Isolation;
pub use library::{describe, flags_of};
pub use txn::{CarriedCode, TXN_INSTRUCTIONS_MAX, TxnRun};
pub mod sha1;

use crate::command::{self, Args, Ctx, flags};
use crate::db::Db;
use crate::reply::{Out, Proto};
use crate::slot::key_slot;
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The node's script bodies by id (SHA-1, lowercase hex): SCRIPT LOAD's and EVAL's, as Redis
/// caches them; shared by the shard threads (each compiles a body into its own state when it
/// first runs it there).
#[derive(Default)]
pub struct Cache {
    bodies: Mutex<HashMap<String, Arc<[u8]>>>,
    /// Raised by SCRIPT FLUSH: a thread drops what it compiled when it sees it move.
    generation: AtomicU64,
}

impl Cache {
    /// Caches `body`; returns its id.
    pub fn insert(&self, body: &[u8]) -> String {
        let sha = sha1::hex(body);
        let mut bodies = self.bodies.lock().expect("script cache");
        bodies.entry(sha.clone()).or_insert_with(|| Arc::from(body));
        sha
    }

    /// The body cached under `sha` (any case).
    pub fn get(&self, sha: &[u8]) -> Option<Arc<[u8]>> {
        let sha = std::str::from_utf8(sha).ok()?.to_ascii_lowercase();
        self.bodies.lock().expect("script cache").get(&sha).cloned()
    }

    pub fn flush(&self) {
        self.bodies.lock().expect("script cache").clear();
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many scripts are cached (INFO's `number_of_cached_scripts`).
    pub fn len(&self) -> usize {
        self.bodies.lock().expect("script cache").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shard thread's scripting state, in its keyspace: the node's cache, the Lua state once a
/// script ran here, and the keys the last script wrote.
pub struct Scripts {
    pub cache: Arc<Cache>,
    engine: Option<Box<Engine>>,
    /// The keys the last script wrote, each once, in the order first written: what the
    /// driver logs the effects of.
    pub written: Vec<Vec<u8>>,
    /// A monotonic clock in milliseconds (the driver's; none: scripts are never timed).
    pub clock: Option<fn() -> u64>,
    /// The most memory the Lua state may hold (`LUA_MEMORY_MAX`).
    pub memory_max: usize,
    /// The cluster's libraries as this node has applied them (FCALL's functions).
    pub functions: Arc<functions::Registry>,
    /// Set while a script runs for a replicated group (`Isolation`).
    pub isolation: Option<Isolation>,
    /// This thread's running script as the node's other threads see it.
    pub busy: Arc<Busy>,
    /// Every thread's (FUNCTION STATS).
    pub node_busy: Vec<Arc<Busy>>,
    /// `redis.call`'s buffers, kept between calls: the command's words and its reply.
    call_words: (Vec<u8>, Vec<command::Span>),
    reply_buf: Vec<u8>,
    /// This thread's copies of cached bodies (`body`), and the cache generation they are of.
    bodies: (u64, HashMap<String, Arc<[u8]>>),
    /// Set while a script runs as a transaction across vShards (`TxnRun`).
    pub txn: Option<TxnRun>,
    /// The last script was stopped by SHUTDOWN (a transaction's run is then not proposed).
    pub shut_down: bool,
    /// The driver's service of this thread's own clients while a script holds the thread
    /// past `busy-reply-threshold` (`-BUSY`, SCRIPT KILL, SHUTDOWN): called by the count
    /// hook at most every `SERVE_EVERY_MS`, and with `true` once the script ended.
    pub serve_busy: Option<fn(bool)>,
}

/// Redis's `busy-reply-threshold` default.
pub const BUSY_MS: u64 = 5_000;
/// How long a script that has not written may run before the node stops it by itself
/// (`script-stop-ms`; its own thread's clients cannot reach SCRIPT KILL while it runs).
pub const STOP_MS: u64 = 60_000;

/// The most memory a thread's Lua state may hold (a script past it gets Lua's "not enough
/// memory" error instead of taking the node's memory).
const LUA_MEMORY_MAX: usize = 1 << 30;

/// How often (in Lua instructions) a running script's clock is looked at.
const HOOK_EVERY: u32 = 100_000;

/// How often a busy script's thread serves its own clients (`Scripts::serve_busy`).
const SERVE_EVERY_MS: u64 = 5;

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            cache: Arc::new(Cache::default()),
            engine: None,
            written: Vec::new(),
            clock: None,
            memory_max: LUA_MEMORY_MAX,
            functions: Arc::default(),
            isolation: None,
            busy: Arc::default(),
            node_busy: Vec::new(),
            call_words: Default::default(),
            reply_buf: Vec::new(),
            bodies: Default::default(),
            txn: None,
            shut_down: false,
            serve_busy: None,
        }
    }
}

/// A running script's budget, in the state's app data: when it started, how long it may run
/// without writing, whether it wrote.
struct Budget {
    clock: Option<fn() -> u64>,
    started_ms: u64,
    /// Past it, the thread is marked busy (`busy`, none: never).
    busy_ms: u64,
    busy: Option<Arc<Busy>>,
    marked: bool,
    function: bool,
    /// Past it, a run that has not written is stopped with `stop` (0: never).
    stop_ms: u64,
    /// It counts as having written from the start (a transaction's run: SCRIPT KILL answers
    /// `-UNKILLABLE`); otherwise its `RunCtx::wrote` says.
    unkillable: bool,
    stop: &'static str,
    /// A transaction's run: the hook's calls left before it is stopped (`txn::TXN_HOOKS`),
    /// and whether it was.
    hooks_left: Option<u64>,
    exhausted: bool,
    /// `Scripts::serve_busy`, and when it last ran.
    serve: Option<fn(bool)>,
    served_ms: u64,
}

/// The error of a script stopped for running too long without writing.
const STOPPED: &str = "the script ran longer than script-stop-ms without writing and was stopped by the node (nothing was written)";
/// The error of a script stopped by SCRIPT KILL or FUNCTION KILL.
const KILLED: &str = "Script killed by user with SCRIPT KILL...";
/// The error of a script stopped by SHUTDOWN: what it wrote is not kept.
const SHUT_DOWN: &str = "Script killed by SHUTDOWN (nothing it wrote was kept)";

impl Scripts {
    /// The body of script `sha` (lowercase): from this thread's copies of the node's cache,
    /// which EVALSHA reads without its lock; a copy is taken at a thread's first use, and
    /// all dropped when SCRIPT FLUSH moves the cache's generation.
    pub fn body(&mut self, sha: &str) -> Option<Arc<[u8]>> {
        let generation = self.cache.generation.load(Ordering::Acquire);
        if self.bodies.0 != generation {
            self.bodies = (generation, HashMap::new());
        }
        if let Some(b) = self.bodies.1.get(sha) {
            return Some(b.clone());
        }
        let b = self.cache.get(sha.as_bytes())?;
        self.bodies.1.insert(sha.to_string(), b.clone());
        Some(b)
    }

    /// Memory of the thread's Lua state (INFO's `used_memory_lua`).
    pub fn lua_memory(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.lua.used_memory())
    }
}

/// A thread's Lua state: the sandboxed globals, the runner that catches a script's error with
/// its line, and the scripts compiled here by id.
struct Engine {
    lua: Lua,
    run: Function,
    compiled: HashMap<String, Function>,
    generation: u64,
    /// Runs a function with its keys and arguments (`fn_runner` of the sandbox).
    fn_run: Function,
    /// Runs a library's chunk with the load-time API (`loader`), and that API.
    loader: Function,
    load_api: Table,
    /// The functions of the libraries loaded here, by name, with their flags; and the
    /// generation of the node's libraries they were loaded from (`functions::Registry`).
    functions: HashMap<String, (Function, u8)>,
    fn_generation: Option<u64>,
    /// Libraries carried by transactions across vShards, by their code's SHA-1
    /// (`txn::carried`), and the one the running FCALL calls into.
    carried: HashMap<String, txn::Carried>,
    carried_now: Option<String>,
    /// The running script's context (`RunCtx`), which `redis.call` reaches through the
    /// registry (`call::RUN_KEY`): boxed, so its address is fixed for the state's life.
    run_cell: Box<std::cell::Cell<RunCtx>>,
}

/// What a script may do: EVAL_RO and `no-writes` refuse write commands.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    pub read_only: bool,
}

/// The sandbox, run once per state: the runners (a script or a function under `xpcall`, its
/// error with the line it was raised at, found by `error_line`), FUNCTION LOAD's loader, what
/// Redis leaves out of the globals, and the read-only globals Redis 7 has. The state's global
/// table `G` keeps no key of its own: the globals live in `R`, which `G` reads through, so a
/// script can neither add a global nor replace one (`redis = nil` once broke every later
/// script of its thread); the libraries (`redis`, `string`, `cjson`, ...) are read-only
/// proxies of theirs, whose `pairs` and `next` still walk them; `rawset` refuses them all.
/// Takes the error handler and `run_args` (KEYS and ARGV of the running script, `call.rs`);
/// returns the runners, the loader and the load-time API's maker.
const SANDBOX: &str = r##"
local xp, err, tostr, handler, run_args = xpcall, error, tostring, ...
local setenv, setmt, getmt, rawset_, rawget_, next_, type_, select_, ipairs_ =
  setfenv, setmetatable, getmetatable, rawset, rawget, next, type, select, ipairs
local G = _G
local missing = function(t, n)
  err("Script attempted to access nonexistent global variable '" .. tostr(n) .. "'", 2)
end
local readonly = function(t, n, v)
  err("Attempt to modify a readonly table", 2)
end
-- (What getmetatable answers for a protected table: a table, as in Redis, but not its own.)
local shield = {}
-- The globals, moved out of G.
local R = {}
local names = {}
for k, v in next_, G do R[k] = v; names[#names + 1] = k end
for _, k in ipairs_(names) do rawset_(G, k, nil) end
for _, name in ipairs_({"os", "io", "print", "dofile", "loadfile", "require", "module",
    "package", "getfenv", "setfenv", "newproxy"}) do
  R[name] = nil
end
-- Protected table -> what it stands for.
local protected = {}
local proxy = function(t)
  local p = setmt({}, {__index = t, __newindex = readonly, __metatable = shield})
  protected[p] = t
  return p
end
for _, name in ipairs_({"redis", "cjson", "cmsgpack", "bit", "struct", "string", "table",
    "math", "coroutine"}) do
  if R[name] ~= nil then R[name] = proxy(R[name]) end
end
protected[G] = R
R._G = G
R.rawset = function(t, k, v)
  if protected[t] then err("Attempt to modify a readonly table", 0) end
  return rawset_(t, k, v)
end
R.rawget = function(t, k)
  return rawget_(protected[t] or t, k)
end
R.next = function(t, k)
  return next_(protected[t] or t, k)
end
local next_of = R.next
R.pairs = function(...)
  local t = ...
  if type_(t) ~= "table" then
    local got = select_("#", ...) == 0 and "no value" or type_(t)
    err("bad argument #1 to 'pairs' (table expected, got " .. got .. ")", 2)
  end
  return next_of, t, nil
end
getmt("").__metatable = shield
setmt(R, {__index = missing})
setmt(G, {__index = R, __newindex = readonly, __metatable = shield})
-- A library's globals once loaded: the state's, but for the scripts' KEYS and ARGV.
local fn_index = function(t, n)
  if n ~= "KEYS" and n ~= "ARGV" then
    local v = rawget_(R, n)
    if v ~= nil then return v end
  end
  err("Script attempted to access nonexistent global variable '" .. tostr(n) .. "'", 2)
end
-- Runs a library's chunk with the load-time API (`api`: redis.register_function, redis.log,
-- the versions) as its only globals, then gives it the state's.
local loader = function(chunk, api)
  local mt = {__index = api, __newindex = readonly, __metatable = shield}
  setenv(chunk, setmt({}, mt))
  local ok, res = xp(chunk, handler)
  mt.__index = fn_index
  return ok, res
end
local load_api = function(redis_api)
  setmt(redis_api, {__index = missing, __newindex = readonly, __metatable = shield})
  return setmt({redis = redis_api}, {__index = missing, __newindex = readonly, __metatable = shield})
end
-- A script's run: KEYS and ARGV (made by `run_args` from the run's words) are globals.
local runner = function(f)
  R.KEYS, R.ARGV = run_args()
  local ok, res = xp(f, handler)
  return ok, res
end
-- A function's call: its keys and arguments are its parameters (KEYS and ARGV are not globals).
-- (One closure for every call, over the call's upvalues: none made per call.)
local cur_f, cur_keys, cur_args
local call_fn = function() return cur_f(cur_keys, cur_args) end
local fn_runner = function(f)
  cur_f = f
  cur_keys, cur_args = run_args()
  local ok, res = xp(call_fn, handler)
  cur_f, cur_keys, cur_args = nil, nil, nil
  return ok, res
end
return runner, fn_runner, loader, load_api
"##;

/// The line of the script where the error being handled was raised: the innermost frame of
/// the script's chunk on the stack (levels above are the handler and C functions such as
/// `error` and `redis.call`); kept in the registry for the runner's caller.
fn error_line(lua: &Lua, e: Value) -> mlua::Result<Value> {
    let mut line = 0;
    for level in 1..12 {
        let found = lua.inspect_stack(level, |d| {
            let src = d.source();
            matches!(
                src.short_src.as_deref(),
                Some("user_script" | "user_function")
            )
            .then(|| d.current_line())
            .flatten()
        });
        match found {
            None => break,
            Some(Some(l)) => {
                line = l;
                break;
            }
            Some(None) => {}
        }
    }
    lua.set_named_registry_value("line", line as i64)?;
    Ok(e)
}

impl Engine {
    fn new() -> mlua::Result<Engine> {
        // The running script's context, where `redis.call` (a C function), `setresp` and the
        // hook find it (the box outlives the state: both are the engine's).
        let run_cell = Box::new(std::cell::Cell::new(RunCtx::idle()));
        let cell: *const std::cell::Cell<RunCtx> = &*run_cell;
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let redis = lua.create_table()?;
        redis.set("REDIS_VERSION", "7.0.15")?;
        redis.set("REDIS_VERSION_NUM", 0x07_00_0f)?;
        for (name, level) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
        ] {
            redis.set(name, level)?;
        }
        for (name, v) in [
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            redis.set(name, v)?;
        }
        redis.set(
            "sha1hex",
            lua.create_function(|lua, s: mlua::LuaString| {
                lua.create_string(sha1::hex(&s.as_bytes()))
            })?,
        )?;
        redis.set(
            "error_reply",
            lua.create_function(|lua, s: mlua::LuaString| {
                let t = lua.create_table()?;
                let text = s.to_str()?.to_string();
                // Redis prefixes a code-less message with "ERR ".
                let text = match text.strip_prefix('-') {
                    Some(rest) => rest.to_string(),
                    None => text,
                };
                t.set("err", text)?;
                Ok(t)
            })?,
        )?;
        redis.set(
            "status_reply",
            lua.create_function(|lua, s: mlua::LuaString| {
                let t = lua.create_table()?;
                t.set("ok", s)?;
                Ok(t)
            })?,
        )?;
        // Logged nowhere yet (the node's log has no place for scripts' lines): accepted.
        redis.set("log", lua.create_function(|_, _: mlua::MultiValue| Ok(()))?)?;
        redis.set(
            "setresp",
            lua.create_function(move |_, v: i64| {
                if v != 2 && v != 3 {
                    return Err(mlua::Error::runtime("RESP version must be 2 or 3."));
                }
                // SAFETY: the cell lives as long as the state (see above).
                let cell = unsafe { &*cell };
                cell.set(RunCtx {
                    resp3: v == 3,
                    ..cell.get()
                });
                Ok(())
            })?,
        )?;
        // Effects are what is replicated, always: these are accepted for old scripts.
        redis.set("set_repl", lua.create_function(|_, _: i64| Ok(()))?)?;
        redis.set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
        redis.set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
        redis.set(
            "debug",
            lua.create_function(|_, _: mlua::MultiValue| Ok(()))?,
        )?;
        // `redis.call`'s conversion of a reply that is not a scalar (`call.rs`).
        let conv = lua.create_function(move |lua, ()| {
            // SAFETY: the cell lives as long as the state; its `db`, while not null, is the
            // running script's, which `redis.call` (this function's only caller) does not
            // touch meanwhile.
            let run = unsafe { (*cell).get() };
            if run.db.is_null() {
                return Err(mlua::Error::runtime("redis.call outside a script"));
            }
            let db = unsafe { &*run.db };
            convert::from_resp(lua, &db.scripts.reply_buf, run.resp3)
        })?;
        lua.set_named_registry_value(call::CONV_KEY.to_str().expect("ASCII"), conv)?;
        lua.set_named_registry_value(
            call::RUN_KEY.to_str().expect("ASCII"),
            Value::LightUserData(mlua::LightUserData(cell as *mut std::ffi::c_void)),
        )?;
        let g = lua.globals();
        // SAFETY: `redis_call` and `redis_pcall` are `lua_CFunction`s that follow the C
        // API's rules (`call.rs`).
        redis.set("call", unsafe { lua.create_c_function(call::redis_call)? })?;
        redis.set("pcall", unsafe {
            lua.create_c_function(call::redis_pcall)?
        })?;
        let redis_real = redis.clone();
        g.set("redis", redis)?;
        libs::open(&lua)?;
        lua.set_memory_limit(LUA_MEMORY_MAX)?;
        lua.set_app_data(Budget {
            clock: None,
            started_ms: 0,
            busy_ms: BUSY_MS,
            busy: None,
            marked: false,
            function: false,
            stop_ms: STOP_MS,
            unkillable: false,
            stop: STOPPED,
            hooks_left: None,
            exhausted: false,
            serve: None,
            served_ms: 0,
        });
        lua.set_hook(
            mlua::HookTriggers {
                every_nth_instruction: Some(HOOK_EVERY),
                ..Default::default()
            },
            move |lua, _| {
                let Some(mut b) = lua.app_data_mut::<Budget>() else {
                    return Ok(mlua::VmState::Continue);
                };
                // SAFETY: the cell lives as long as the state.
                let run = unsafe { (*cell).get() };
                hook(&mut b, run).map(|()| mlua::VmState::Continue)
            },
        )?;
        let handler = lua.create_function(error_line)?;
        let (run, fn_run, loader, make_api): (Function, Function, Function, Function) = lua
            .load(SANDBOX)
            // SAFETY: `run_args` is a `lua_CFunction` that follows the C API's rules.
            .call((handler, unsafe { lua.create_c_function(call::run_args)? }))?;
        let load_api = library::load_api(&lua, &make_api, &redis_real)?;
        Ok(Engine {
            lua,
            run,
            compiled: HashMap::new(),
            generation: 0,
            fn_run,
            loader,
            load_api,
            functions: HashMap::new(),
            fn_generation: None,
            carried: HashMap::new(),
            carried_now: None,
            run_cell,
        })
    }
}

impl Engine {
    /// Function `name` and its flags: of the library the running transaction carried
    /// (`carried_now`), else of the node's libraries as this state loaded them.
    fn function(&self, name: &str) -> Result<(Function, u8), String> {
        let found = match &self.carried_now {
            Some(sha) => match self.carried.get(sha) {
                Some(Ok(fns)) => fns.get(name),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            },
            None => self.functions.get(name),
        };
        found
            .map(|(f, flags)| (f.clone(), *flags))
            .ok_or_else(|| "ERR Function not found".to_string())
    }
}

/// What a call runs: a script's body (EVAL and its family) or a function of the node's
/// libraries (FCALL, FCALL_RO).
pub enum Target<'a> {
    Script { body: &'a [u8], sha: &'a str },
    Function { name: &'a str },
}

/// A call to run: what, its keys and arguments, and what it may do.
pub struct Call<'a> {
    pub target: Target<'a>,
    pub keys: Vec<&'a [u8]>,
    pub argv: Vec<&'a [u8]>,
    pub mode: Mode,
}

/// Runs `call` on `db` (its commands with `ctx`'s clock and a generator seeded from it),
/// writing its reply to `out`; the keys it wrote are left in `db.scripts.written`.
pub fn run(db: &mut Db, call: Call, ctx: &mut Ctx, out: &mut Out) {
    db.scripts.written.clear();
    db.scripts.shut_down = false;
    let Some(mut engine) = take_engine(db, out) else {
        return;
    };
    let function = matches!(call.target, Target::Function { .. });
    let in_txn = db.scripts.txn.is_some();
    let hooks = db
        .scripts
        .txn
        .as_ref()
        .map(|t| t.instructions_max / u64::from(HOOK_EVERY));
    engine.carried_now = None;
    match db.scripts.txn.as_ref().and_then(|t| t.library.as_ref()) {
        Some(lib) if function => engine.carried_now = Some(txn::carried(&mut engine, db, lib)),
        _ if function => library::sync(&mut engine, db),
        _ => {}
    }
    let t = db.tunables;
    // A transaction's run is never stopped by time (its participants run at other moments).
    let stop_ms = if in_txn { 0 } else { t.script_stop_ms };
    set_budget(
        &engine,
        db,
        (t.busy_reply_ms, stop_ms, STOPPED),
        Some(function),
    );
    if let Some(hooks) = hooks
        && let Some(mut b) = engine.lua.app_data_mut::<Budget>()
    {
        // (Marked as having written: SCRIPT KILL answers -UNKILLABLE, since one participant
        // stopping alone would split the transaction's outcome.)
        b.unkillable = true;
        b.hooks_left = Some(hooks);
    }
    run_in(&mut engine, db, call, ctx, out);
    let exhausted = engine
        .lua
        .app_data_ref::<Budget>()
        .is_some_and(|b| b.exhausted);
    engine.carried_now = None;
    let busy = &db.scripts.busy;
    let kill = busy.kill.load(Ordering::Acquire);
    if kill == KILL_SHUTDOWN || exhausted {
        // Stopped midway by SHUTDOWN (the node goes down), or a transaction's past its
        // instruction limit: nothing of it is kept.
        db.scripts.written.clear();
        db.scripts.shut_down = kill == KILL_SHUTDOWN;
    }
    if kill != 0 || busy.is_busy() {
        if busy.is_busy()
            && let Some(serve) = db.scripts.serve_busy
        {
            // (What it answered its thread's clients meanwhile is all sent.)
            serve(true);
        }
        busy.clear();
    }
    db.scripts.engine = Some(engine);
}

/// The count hook's look at a running script: marks its thread busy past the threshold,
/// stops it when killed or past `stop_ms` without writing.
fn hook(b: &mut Budget, run: RunCtx) -> mlua::Result<()> {
    if let Some(left) = &mut b.hooks_left {
        // (Counted before any clock is read: it must end alike on every participant.)
        if *left == 0 {
            b.exhausted = true;
            return Err(mlua::Error::runtime(txn::EXHAUSTED));
        }
        *left -= 1;
    }
    let Some(now) = b.clock else {
        return Ok(());
    };
    let elapsed = now().saturating_sub(b.started_ms);
    let wrote = b.unkillable || run.wrote;
    let Some(busy) = &b.busy else {
        return match b.stop_ms {
            ms if ms > 0 && elapsed > ms && !wrote => Err(mlua::Error::runtime(b.stop)),
            _ => Ok(()),
        };
    };
    if !b.marked && elapsed > b.busy_ms {
        b.marked = true;
        if b.function
            && let Ok(mut r) = busy.running.lock()
        {
            *r = Some(run.running());
        }
        busy.function.store(b.function, Ordering::Release);
        busy.wrote.store(wrote, Ordering::Release);
        busy.since_ms.store(b.started_ms.max(1), Ordering::Release);
    }
    if b.marked
        && let Some(serve) = b.serve
        && elapsed >= b.served_ms + SERVE_EVERY_MS
    {
        // The thread's own clients: `-BUSY`, or SCRIPT KILL / SHUTDOWN, which set `kill`.
        b.served_ms = elapsed;
        serve(false);
    }
    match busy.kill.load(Ordering::Acquire) {
        KILL_SHUTDOWN => return Err(mlua::Error::runtime(SHUT_DOWN)),
        KILL_SCRIPT if !wrote => return Err(mlua::Error::runtime(KILLED)),
        _ => {}
    }
    if b.stop_ms > 0 && elapsed > b.stop_ms && !wrote {
        return Err(mlua::Error::runtime(b.stop));
    }
    Ok(())
}

/// The thread's Lua state (made at its first use), its scripts dropped if SCRIPT FLUSH ran
/// since; `None` (the error answered) if the interpreter does not start.
fn take_engine(db: &mut Db, out: &mut Out) -> Option<Box<Engine>> {
    let mut engine = match db.scripts.engine.take() {
        Some(e) => e,
        None => match Engine::new() {
            Ok(e) => Box::new(e),
            Err(e) => {
                out.error(&format!("ERR the Lua interpreter did not start: {e}"));
                return None;
            }
        },
    };
    let generation = db.scripts.cache.generation.load(Ordering::Acquire);
    if engine.generation != generation {
        engine.compiled.clear();
        engine.generation = generation;
    }
    let _ = engine.lua.set_memory_limit(db.scripts.memory_max);
    Some(engine)
}

/// Starts a run's budget: busy past `busy_ms` from now (when `function` says what runs: a
/// script or function others may see; `None`: a library loading), stopped with `stop` past
/// `stop_ms` unless it wrote.
fn set_budget(
    engine: &Engine,
    db: &Db,
    (busy_ms, stop_ms, stop): (u64, u64, &'static str),
    function: Option<bool>,
) {
    if let Some(mut b) = engine.lua.app_data_mut::<Budget>() {
        b.clock = db.scripts.clock;
        b.started_ms = db.scripts.clock.map_or(0, |now| now());
        b.busy_ms = busy_ms;
        b.busy = function.map(|_| db.scripts.busy.clone());
        // (A SCRIPT KILL that came as the last script ended is not for this one.)
        let _ = db.scripts.busy.kill.compare_exchange(
            KILL_SCRIPT,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        b.marked = false;
        b.function = function.unwrap_or(false);
        b.stop_ms = stop_ms;
        b.unkillable = false;
        b.stop = stop;
        b.hooks_left = None;
        b.exhausted = false;
        b.serve = db.scripts.serve_busy;
        b.served_ms = 0;
    }
}

fn run_in(engine: &mut Engine, db: &mut Db, call: Call, ctx: &mut Ctx, out: &mut Out) {
    let Call {
        target,
        keys,
        argv,
        mode,
    } = call;
    let lua = &engine.lua;
    // The function to call, the chunk name errors give, and the id they name.
    let (f, label, id, is_fn) = match target {
        Target::Script { body, sha } => {
            let body = strip_shebang(body);
            let f = match engine.compiled.get(sha) {
                Some(f) => f.clone(),
                None => match lua.load(body).set_name("@user_script").into_function() {
                    Ok(f) => {
                        engine.compiled.insert(sha.to_string(), f.clone());
                        f
                    }
                    Err(e) => {
                        return out.error(&format!(
                            "ERR Error compiling script (new function): {}",
                            lua_message(&e)
                        ));
                    }
                },
            };
            (f, "user_script", sha, false)
        }
        Target::Function { name } => match engine.function(name) {
            Ok((f, _)) => (f, "user_function", name, true),
            Err(e) => return out.error(&e),
        },
    };
    let result = (|| -> mlua::Result<()> {
        // A generator per script, from the run's seed (the same on a retry of the same run).
        libs::seed_random(lua, ctx.rng.next_u64());
        engine.run_cell.set(RunCtx {
            db: db as *mut Db,
            rng: ctx.rng as *mut crate::rng::Rng,
            now_ms: ctx.now_ms,
            now_us: ctx.now_us,
            mode,
            resp3: false,
            wrote: false,
            keys: (keys.as_ptr().cast(), keys.len()),
            argv: (argv.as_ptr().cast(), argv.len()),
            name: if is_fn {
                (id.as_ptr(), id.len())
            } else {
                (std::ptr::null(), 0)
            },
        });
        // (From here until the run is idle again, `db` and `ctx.rng` are reached only
        // through `RunCtx`, by `redis.call`; the words by the runner's `run_args`.)
        let ran: mlua::Result<(bool, Value)> = if is_fn {
            engine.fn_run.call(&f)
        } else {
            engine.run.call(&f)
        };
        engine.run_cell.set(RunCtx::idle());
        let (ok, res) = ran?;
        if ok {
            convert::to_resp(&res, out, 0);
        } else {
            let line: i64 = lua.named_registry_value("line").unwrap_or(0);
            out.error(&script_error(&res, id, label, line));
        }
        Ok(())
    })();
    if let Err(e) = result {
        out.error(&format!(
            "ERR {} script: {id}, on @{label}:0.",
            lua_message(&e)
        ));
    }
}

/// What `redis.call` works on while a script runs (`Engine::run_cell`; `idle` between runs):
/// the run's keyspace and generator as `run_in` lent them, its clock, its mode and protocol,
/// and whether it wrote.
#[derive(Clone, Copy)]
struct RunCtx {
    db: *mut Db,
    rng: *mut crate::rng::Rng,
    now_ms: u64,
    now_us: u64,
    mode: Mode,
    resp3: bool,
    wrote: bool,
    /// The script's keys and arguments (`run_in`'s, alive while it runs): `call::run_args`
    /// makes KEYS and ARGV of them.
    keys: (*const &'static [u8], usize),
    argv: (*const &'static [u8], usize),
    /// A function's name (`run_in`'s, alive while it runs; empty for a script).
    name: (*const u8, usize),
}

impl RunCtx {
    /// The running function as FUNCTION STATS shows it (its command as FCALL's words).
    fn running(&self) -> Running {
        // SAFETY: `run_in` set these from its `Call`, alive while the function runs, which
        // is when the hook (the only caller) runs.
        let words = |(p, n): (*const &'static [u8], usize)| -> &[&[u8]] {
            if n == 0 {
                &[]
            } else {
                unsafe { std::slice::from_raw_parts(p, n) }
            }
        };
        let name = if self.name.1 == 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(self.name.0, self.name.1) }.to_vec()
        };
        let (keys, argv) = (words(self.keys), words(self.argv));
        let mut command = vec![b"fcall".to_vec(), name.clone()];
        command.push(keys.len().to_string().into_bytes());
        command.extend(keys.iter().chain(argv).map(|w| w.to_vec()));
        Running { name, command }
    }
}

impl RunCtx {
    fn idle() -> RunCtx {
        RunCtx {
            db: std::ptr::null_mut(),
            rng: std::ptr::null_mut(),
            now_ms: 0,
            now_us: 0,
            mode: Mode::default(),
            resp3: false,
            wrote: false,
            keys: (std::ptr::null(), 0),
            argv: (std::ptr::null(), 0),
            name: (std::ptr::null(), 0),
        }
    }
}

/// The body after a `#!` line (the shebang is read by `shebang`).
fn strip_shebang(body: &[u8]) -> &[u8] {
    if body.starts_with(b"#!") {
        match body.iter().position(|&b| b == b'\n') {
            // (Its newline is kept so line numbers stay those of the text sent.)
            Some(nl) => &body[nl..],
            None => b"",
        }
    } else {
        body
    }
}

/// A script's `#!lua flags=...` line, if it has one: its flags, or the error to answer.
pub fn shebang(body: &[u8]) -> Result<Mode, String> {
    let mut mode = Mode::default();
    if !body.starts_with(b"#!") {
        return Ok(mode);
    }
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(&line[2..]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    match parts.next() {
        Some("lua") => {}
        Some(engine) => return Err(format!("ERR Could not find engine '{engine}'")),
        None => return Err("ERR Could not find engine ''".to_string()),
    }
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => mode.read_only = true,
                "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => return Err(format!("ERR Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok(mode)
}

/// The reply to a script (or function) `id` that raised `err` at `line` of chunk `label`.
fn script_error(err: &Value, id: &str, label: &str, line: i64) -> String {
    format!("{} script: {id}, on @{label}:{line}.", error_text(err))
}

/// The error a script raised, as its reply begins: an error table's text, else `ERR ` and
/// the message.
fn error_text(err: &Value) -> String {
    match err {
        Value::Table(t) => match t.raw_get::<Value>("err") {
            Ok(Value::String(s)) => s.to_string_lossy().to_string(),
            _ => "ERR unknown error".to_string(),
        },
        Value::String(s) => format!("ERR {}", s.to_string_lossy()),
        Value::Error(e) => format!("ERR {}", lua_message(e)),
        other => format!("ERR {}", other.to_string().unwrap_or_default()),
    }
}

/// An mlua error as Lua would print it.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}
