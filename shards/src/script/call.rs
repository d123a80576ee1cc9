//! `redis.call` and `redis.pcall`: C functions over the Lua stack (issue 18; the per-call cost
//! of scripts, docs/BENCHMARKS.md). The command's words are read from the stack into the
//! thread's buffer, the command runs with the checks Redis makes of a script's commands, and
//! the common replies (an integer, a bulk string, a null, a status, an error) are pushed
//! straight from the reply's bytes; others go through `convert::from_resp`.
//!
//! Why C functions: through mlua every argument became a registry reference and every
//! value pushed a protected call, which in Lua 5.1 allocates a C closure each (garbage for
//! the collector): most of a small script's cost. And in Lua 5.1 a tail call into a C
//! function keeps the caller's frame, so `return redis.call(...)` reports the script's line,
//! and a C function can raise the error *table* Redis raises (what `pcall(redis.call, ...)`
//! in a script catches).
//!
//! # Safety of raising
//! A Lua error is a `longjmp` out of the C function: the frames it skips must hold nothing
//! with a destructor. So the Rust work (`run_words`) finishes and drops what it holds before
//! anything that can raise (pushing a value can run out of memory); the pushes use only
//! pointers and integers.

use super::*;
use mlua::ffi;
use std::cell::Cell;
use std::ffi::CStr;
use std::os::raw::c_int;

/// The registry name of the running script's `RunCtx` cell (a light userdata).
pub(super) const RUN_KEY: &CStr = c"shardline.run";
/// The registry name of the mlua function converting a reply that is not a scalar.
pub(super) const CONV_KEY: &CStr = c"shardline.conv";

/// `redis.call`: a command's error is raised (the error table).
///
/// # Safety
/// Called by Lua only, as a `lua_CFunction`.
pub(super) unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with its running state.
    unsafe { call(state, true) }
}

/// `redis.pcall`: a command's error is returned (the error table).
///
/// # Safety
/// Called by Lua only, as a `lua_CFunction`.
pub(super) unsafe extern "C-unwind" fn redis_pcall(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with its running state.
    unsafe { call(state, false) }
}

/// The runners' `run_args()`: the run's keys and arguments (`RunCtx::keys`, `argv`) as two
/// Lua sequences, KEYS and ARGV. One C call instead of a protected call per string.
///
/// # Safety
/// Called by Lua only, as a `lua_CFunction`, from a runner while `run_in` runs.
pub(super) unsafe extern "C-unwind" fn run_args(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: the cell outlives the state; its words point into `run_in`'s `Call`, alive
    // while the runner runs; a push that runs out of memory raises past this frame, which
    // holds pointers and integers only.
    unsafe {
        ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, RUN_KEY.as_ptr());
        let cell = ffi::lua_touserdata(state, -1) as *const Cell<RunCtx>;
        ffi::lua_settop(state, -2);
        if cell.is_null() {
            ffi::lua_pushstring(state, c"a script's arguments outside a script".as_ptr());
            ffi::lua_error(state)
        }
        let run = (*cell).get();
        for (words, n) in [run.keys, run.argv] {
            ffi::lua_createtable(state, n as c_int, 0);
            for i in 0..n {
                let w: &[u8] = *words.add(i);
                ffi::lua_pushlstring(state, w.as_ptr().cast(), w.len());
                ffi::lua_rawseti(state, -2, (i + 1) as ffi::lua_Integer);
            }
        }
        2
    }
}

/// What a command called by a script left in `Scripts::reply_buf`: its reply, or the text of
/// why it was refused before running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Reply,
    Refused,
}

/// # Safety
/// `state` is the running state; the registry's `RUN_KEY` is the engine's `RunCtx` cell.
unsafe fn call(state: *mut ffi::lua_State, raise: bool) -> c_int {
    // SAFETY: every index used is on the stack; the cell outlives the state (`Engine`); its
    // `db` and `rng`, while not null, are the running script's (`run_in` lent them and does
    // not touch them until the script returns).
    unsafe {
        ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, RUN_KEY.as_ptr());
        let cell = ffi::lua_touserdata(state, -1) as *const Cell<RunCtx>;
        ffi::lua_settop(state, -2);
        if cell.is_null() || (*cell).get().db.is_null() {
            ffi::lua_pushstring(state, c"redis.call outside a script".as_ptr());
            ffi::lua_error(state)
        }
        let outcome = run_words(state, &*cell);
        let run = (*cell).get();
        let reply = (*run.db).scripts.reply_buf.as_slice();
        let (ptr, len) = (reply.as_ptr(), reply.len());
        let failed = push(
            state,
            outcome,
            std::slice::from_raw_parts(ptr, len),
            run.resp3,
        );
        if failed && raise {
            ffi::lua_error(state)
        }
        1
    }
}

/// Reads the command's words from the stack and runs it: its outcome in
/// `Scripts::reply_buf`. Raises nothing (what it holds is dropped when it returns).
///
/// # Safety
/// As `call`'s.
unsafe fn run_words(state: *mut ffi::lua_State, cell: &Cell<RunCtx>) -> Outcome {
    let run = cell.get();
    // SAFETY: as `call` says of the cell's pointers.
    let (db, rng) = unsafe { (&mut *run.db, &mut *run.rng) };
    // SAFETY: `state` is the running state and `n` its stack's top.
    let n = unsafe { ffi::lua_gettop(state) };
    if n == 0 {
        return refuse(
            db,
            "ERR Please specify at least one argument for this redis lib call",
        );
    }
    // The words into the thread's buffers (lent out for the call: no allocation once they
    // have grown).
    let (mut buf, mut spans) = std::mem::take(&mut db.scripts.call_words);
    buf.clear();
    spans.clear();
    for i in 1..=n {
        let start = buf.len() as u32;
        // SAFETY: `i` is on the stack; `lua_tolstring` of a string allocates nothing and its
        // bytes live while the value is on the stack, which is for this call.
        unsafe {
            match ffi::lua_type(state, i) {
                ffi::LUA_TSTRING => {
                    let mut len = 0;
                    let p = ffi::lua_tolstring(state, i, &mut len);
                    buf.extend_from_slice(std::slice::from_raw_parts(p.cast::<u8>(), len));
                }
                // (Redis 7.0 writes a number as `%.17g`, not as Lua prints it.)
                ffi::LUA_TNUMBER => {
                    let text = libs::number_arg(ffi::lua_tonumber(state, i));
                    buf.extend_from_slice(text.as_bytes());
                }
                _ => {
                    db.scripts.call_words = (buf, spans);
                    return refuse(
                        db,
                        "ERR Lua redis lib command arguments must be strings or integers",
                    );
                }
            }
        }
        spans.push((start, buf.len() as u32));
    }
    let mut ctx = Ctx {
        now_ms: run.now_ms,
        now_us: run.now_us,
        rng,
    };
    let outcome = command(db, Args::new(&buf, &spans), &mut ctx, cell);
    db.scripts.call_words = (buf, spans);
    outcome
}

fn refuse(db: &mut Db, msg: &str) -> Outcome {
    db.scripts.reply_buf.clear();
    db.scripts.reply_buf.extend_from_slice(msg.as_bytes());
    Outcome::Refused
}

/// Runs `cmd` for the script whose context `cell` holds, with the checks Redis makes of a
/// script's commands; its reply, or why it was refused, in `Scripts::reply_buf`.
fn command(db: &mut Db, cmd: Args, ctx: &mut Ctx, cell: &Cell<RunCtx>) -> Outcome {
    let run = cell.get();
    let Some(spec) = command::lookup(cmd.get(0)) else {
        return refuse(db, "ERR Unknown Redis command called from script");
    };
    if spec.flags & flags::NOSCRIPT != 0 || spec.handler.is_none() {
        return refuse(db, "ERR This Redis command is not allowed from script");
    }
    if !spec.arity_ok(cmd.len()) {
        return refuse(
            db,
            "ERR Wrong number of args calling Redis command from script",
        );
    }
    // The caller's permissions (ACL), as a command it sent itself.
    if let Err(why) = crate::acl::check_caller(spec, cmd) {
        return refuse(db, &why);
    }
    let writes = spec.flags & flags::WRITE != 0;
    if writes && run.mode.read_only {
        return refuse(
            db,
            "ERR Write commands are not allowed from read-only scripts.",
        );
    }
    if let Some(why) = db
        .scripts
        .txn
        .as_ref()
        .and_then(|t| txn::refusal(t, spec, cmd))
    {
        return refuse(db, why);
    }
    for k in spec.keys_of(cmd) {
        let slot = key_slot(cmd.get(k));
        let local = match &db.scripts.isolation {
            Some(iso) => iso.vshard == Some(db.layout().vshard_of(slot)),
            None => db.owns_slot(slot),
        };
        if !local {
            return refuse(
                db,
                "ERR Script attempted to access a non local key in a cluster node script",
            );
        }
    }
    if let Some(mut iso) = db.scripts.isolation.take() {
        if writes && spec.keys_of(cmd).next().is_none() {
            db.scripts.isolation = Some(iso);
            // (It would write this replica alone: FLUSHALL, SWAPDB, ...)
            return refuse(db, "ERR This Redis command is not allowed from script");
        }
        if writes {
            for k in spec.keys_of(cmd) {
                iso.keep(db, cmd.get(k));
            }
        }
        db.scripts.isolation = Some(iso);
    }
    let mut reply = Out {
        buf: std::mem::take(&mut db.scripts.reply_buf),
        proto: if run.resp3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        },
        errors: 0,
    };
    reply.buf.clear();
    command::execute(db, cmd, ctx, &mut reply);
    db.scripts.reply_buf = reply.buf;
    if writes {
        cell.set(RunCtx { wrote: true, ..run });
        if db.scripts.busy.is_busy() {
            db.scripts.busy.wrote.store(true, Ordering::Release);
        }
        for k in spec.keys_of(cmd) {
            let key = cmd.get(k);
            if !db.scripts.written.iter().any(|w| w == key) {
                db.scripts.written.push(key.to_vec());
            }
        }
    }
    Outcome::Reply
}

/// Pushes what the command answered as a Lua value: whether it is an error table (a refusal,
/// or the command's error reply).
///
/// # Safety
/// `state` is the running state; `reply` outlives the call (the thread's reply buffer, which
/// nothing touches until the script's next command).
unsafe fn push(state: *mut ffi::lua_State, outcome: Outcome, reply: &[u8], resp3: bool) -> bool {
    // SAFETY: pushes onto the running state's stack (it has room for the few values here:
    // Lua guarantees `LUA_MINSTACK` to a C function); a push that runs out of memory raises,
    // skipping only frames that hold pointers and integers.
    unsafe {
        if outcome == Outcome::Refused {
            push_tagged(state, c"err", reply);
            return true;
        }
        // (A reply's first line holds its type byte: one that does not is converted whole.)
        let Some(line_end) = reply
            .windows(2)
            .position(|w| w == b"\r\n")
            .filter(|&e| e >= 1)
        else {
            return push_converted(state);
        };
        let head = &reply[1..line_end];
        match reply.first() {
            Some(b':') => match crate::num::parse_i64(head) {
                Some(n) => ffi::lua_pushnumber(state, n as f64),
                None => return push_converted(state),
            },
            Some(b'$') if head == b"-1" => {
                // RESP2's null is false; RESP3's nil.
                if resp3 {
                    ffi::lua_pushnil(state)
                } else {
                    ffi::lua_pushboolean(state, 0)
                }
            }
            Some(b'$') => match crate::num::parse_i64(head) {
                Some(n) if n >= 0 && reply.len() >= line_end + 2 + n as usize => {
                    let body = &reply[line_end + 2..line_end + 2 + n as usize];
                    ffi::lua_pushlstring(state, body.as_ptr().cast(), body.len());
                }
                _ => return push_converted(state),
            },
            Some(b'_') if resp3 => ffi::lua_pushnil(state),
            Some(b'+') => push_tagged(state, c"ok", head),
            Some(b'-') => {
                push_tagged(state, c"err", head);
                return true;
            }
            _ => return push_converted(state),
        }
        false
    }
}

/// Pushes `{[tag] = text}`.
///
/// # Safety
/// As `push`'s.
unsafe fn push_tagged(state: *mut ffi::lua_State, tag: &CStr, text: &[u8]) {
    // SAFETY: as `push` says.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
        ffi::lua_setfield(state, -2, tag.as_ptr());
    }
}

/// Pushes the reply as `convert::from_resp` makes it (arrays, maps, RESP3's types): calls
/// the engine's conversion function (`CONV_KEY`), which reads the reply buffer. Never an
/// error table (errors are scalars).
///
/// # Safety
/// As `push`'s.
unsafe fn push_converted(state: *mut ffi::lua_State) -> bool {
    // SAFETY: the registry holds the conversion function from the engine's start; calling it
    // unprotected propagates its error to the script as any Lua error.
    unsafe {
        ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, CONV_KEY.as_ptr());
        ffi::lua_call(state, 0, 1);
    }
    false
}
