//! Libraries in a thread's Lua state (FUNCTION LOAD, FCALL): a library's code runs once with
//! the load-time API as its only globals (`redis.register_function`, `redis.log`, the
//! versions), as Redis 7.0 loads it, and what it registered becomes the thread's functions;
//! the library's globals are then the state's (without KEYS and ARGV). The same loading
//! serves FUNCTION LOAD's check of new code (`describe`, where the command was sent) and every
//! thread's reload when the node's libraries change (`sync`).

use super::functions::{FunctionInfo, Library, flag_bit};
use super::*;

/// How long a library's code may run while it loads (Redis's limit).
const LOAD_MS: u64 = 500;
const LOAD_TIMEOUT: &str = "FUNCTION LOAD timeout";
const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The functions a library's code registers while it loads (present only then).
#[derive(Default)]
struct Registering(Vec<(FunctionInfo, Function)>);

/// The load-time API: a `redis` table with `register_function` and what Redis lets a library
/// use while it loads, every other name an error (`make` is the sandbox's `load_api`).
pub(super) fn load_api(lua: &Lua, make: &Function, full: &Table) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set("register_function", lua.create_function(register_function)?)?;
    for name in [
        "log",
        "LOG_DEBUG",
        "LOG_VERBOSE",
        "LOG_NOTICE",
        "LOG_WARNING",
        "REDIS_VERSION",
        "REDIS_VERSION_NUM",
    ] {
        redis.raw_set(name, full.raw_get::<Value>(name)?)?;
    }
    make.call(redis)
}

/// Function and library names: letters, digits and `_`, at least one.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A name or description given as a string or a number (Lua coerces numbers).
fn coerce(lua: &Lua, v: Value) -> mlua::Result<Option<String>> {
    Ok(match v {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v)?
            .map(|s| s.to_string_lossy().to_string()),
        _ => None,
    })
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=...,
/// callback=..., flags={...}, description=...}`, with Redis's errors.
fn register_function(lua: &Lua, args: mlua::MultiValue) -> mlua::Result<()> {
    let fail = |m: &str| Err(mlua::Error::runtime(m));
    let mut args = args.into_iter();
    let (name, callback, flags, description) = match (args.next(), args.next(), args.next()) {
        (Some(Value::Table(t)), None, None) => {
            let (mut name, mut callback, mut flags, mut description) = (None, None, 0, None);
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key = match &k {
                    Value::String(s) => s.to_string_lossy().to_string(),
                    _ => {
                        return fail(
                            "named argument key given to redis.register_function is not a string",
                        );
                    }
                };
                match key.as_str() {
                    "function_name" => match coerce(lua, v)? {
                        Some(n) => name = Some(n),
                        None => {
                            return fail(
                                "function_name argument given to redis.register_function must be a string",
                            );
                        }
                    },
                    "callback" => match v {
                        Value::Function(f) => callback = Some(f),
                        _ => {
                            return fail(
                                "callback argument given to redis.register_function must be a function",
                            );
                        }
                    },
                    "flags" => flags = parse_flags(v)?,
                    "description" => match coerce(lua, v)? {
                        Some(d) => description = Some(d),
                        None => {
                            return fail(
                                "description argument given to redis.register_function must be a string",
                            );
                        }
                    },
                    _ => return fail("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return fail("redis.register_function must get a function name argument");
            };
            let Some(callback) = callback else {
                return fail("redis.register_function must get a callback argument");
            };
            (name, callback, flags, description)
        }
        (Some(_), None, None) => {
            return fail(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            );
        }
        (Some(name), Some(callback), None) => {
            let Some(name) = coerce(lua, name)? else {
                return fail("first argument to redis.register_function must be a string");
            };
            let Value::Function(callback) = callback else {
                return fail("second argument to redis.register_function must be a function");
            };
            (name, callback, 0, None)
        }
        _ => return fail("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail(BAD_NAME);
    }
    let Some(mut reg) = lua.app_data_mut::<Registering>() else {
        return fail("redis.register_function can only be called on FUNCTION LOAD command");
    };
    if reg.0.iter().any(|(f, _)| f.name == name) {
        return fail("Function already exists in the library");
    }
    reg.0.push((
        FunctionInfo {
            name,
            description,
            flags,
        },
        callback,
    ));
    Ok(())
}

/// A function's `flags`: a table of flag names.
fn parse_flags(v: Value) -> mlua::Result<u8> {
    let Value::Table(t) = v else {
        return Err(mlua::Error::runtime(
            "flags argument to redis.register_function must be a table representing function flags",
        ));
    };
    let mut flags = 0;
    for f in t.sequence_values::<Value>() {
        let bit = match f? {
            Value::String(s) => flag_bit(&s.to_string_lossy()),
            _ => None,
        };
        match bit {
            Some(b) => flags |= b,
            None => return Err(mlua::Error::runtime("unknown flag given")),
        }
    }
    Ok(flags)
}

/// A library's name from its first line (`#!lua name=<name>`), with Redis's errors.
fn metadata(code: &[u8]) -> Result<String, String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".to_string());
    }
    let line = code.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(&line[2..]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or_default();
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(_) if name.is_some() => {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            Some(n) => name = Some(n),
            None => return Err(format!("ERR Invalid metadata value given: {part}")),
        }
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".to_string());
    };
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    if !valid_name(name) {
        return Err(format!("ERR {BAD_NAME}"));
    }
    Ok(name.to_string())
}

type Loaded = (String, Vec<(FunctionInfo, Function)>);

/// Loads library `code` into `engine`'s state: its name from its first line, its chunk run
/// (at most `LOAD_MS`) with the load-time API; what it registered.
pub(super) fn load(engine: &Engine, db: &Db, code: &[u8]) -> Result<Loaded, String> {
    let name = metadata(code)?;
    let lua = &engine.lua;
    let chunk = lua
        .load(strip_shebang(code))
        .set_name("@user_function")
        .into_function()
        .map_err(|e| format!("ERR Error compiling function: {}", lua_message(&e)))?;
    lua.set_app_data(Registering::default());
    set_budget(engine, db, (u64::MAX, LOAD_MS, LOAD_TIMEOUT), None);
    let ran = engine
        .loader
        .call::<(bool, Value)>((chunk, &engine.load_api));
    let registered = lua
        .remove_app_data::<Registering>()
        .map(|r| r.0)
        .unwrap_or_default();
    let (ok, res) =
        ran.map_err(|e| format!("ERR Error registering functions: ERR {}", lua_message(&e)))?;
    if !ok {
        return Err(format!(
            "ERR Error registering functions: {}",
            error_text(&res)
        ));
    }
    if registered.is_empty() {
        return Err("ERR No functions registered".to_string());
    }
    Ok((name, registered))
}

/// FUNCTION LOAD's check of `code`, in this thread's state: the library it makes (its
/// functions by name), or the error to answer. Nothing is kept.
pub fn describe(db: &mut Db, code: &[u8]) -> Result<Library, String> {
    let mut scratch = Out::new(Proto::Resp2);
    let Some(engine) = take_engine(db, &mut scratch) else {
        return Err(String::from_utf8_lossy(&scratch.buf).trim().to_string());
    };
    let loaded = load(&engine, db, code);
    db.scripts.engine = Some(engine);
    let (name, registered) = loaded?;
    let mut functions: Vec<FunctionInfo> = registered.into_iter().map(|(f, _)| f).collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Library {
        name,
        code: code.to_vec(),
        functions,
    })
}

/// Loads the node's libraries into `engine` if they changed since it last did. A library
/// that does not load here (its code ran out of time on a busy thread) keeps its functions,
/// each answering why.
pub(super) fn sync(engine: &mut Engine, db: &Db) {
    let registry = &db.scripts.functions;
    let generation = registry.generation();
    if engine.fn_generation == Some(generation) {
        return;
    }
    engine.functions.clear();
    for lib in registry.get().iter() {
        match load(engine, db, &lib.code) {
            Ok((_, fns)) => {
                for (info, f) in fns {
                    engine.functions.insert(info.name, (f, info.flags));
                }
            }
            Err(e) => {
                let msg = format!("the library {} did not load on this thread: {e}", lib.name);
                for info in &lib.functions {
                    let msg = msg.clone();
                    let Ok(f) = engine.lua.create_function(move |_, ()| {
                        Err::<(), _>(mlua::Error::runtime(msg.clone()))
                    }) else {
                        continue;
                    };
                    engine.functions.insert(info.name.clone(), (f, info.flags));
                }
            }
        }
    }
    engine.fn_generation = Some(generation);
}

/// The flags of function `name` as this thread's state has loaded it (`sync`: one atomic load
/// when the libraries did not change), `None` if there is none: FCALL's lookup, without the
/// registry's lock or a walk over every library. In a transaction across vShards, of the
/// library it carried (`txn::carried`).
pub fn flags_of(db: &mut Db, name: &str) -> Option<u8> {
    let mut scratch = Out::new(Proto::Resp2);
    let mut engine = take_engine(db, &mut scratch)?;
    match db.scripts.txn.as_ref().and_then(|t| t.library.as_ref()) {
        Some(lib) => engine.carried_now = Some(super::txn::carried(&mut engine, db, lib)),
        None => sync(&mut engine, db),
    }
    // (A carried library that did not load answers why when called: flags of none.)
    let flags = match engine.function(name) {
        Ok((_, flags)) => Some(flags),
        Err(_) if engine.carried_now.is_some() => Some(0),
        Err(_) => None,
    };
    engine.carried_now = None;
    db.scripts.engine = Some(engine);
    flags
}
