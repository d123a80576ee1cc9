//! The C libraries Redis gives its Lua (`cjson`, `cmsgpack`, `bit`, `struct`), written here in
//! Rust with the behaviour of the versions Redis 7.0 bundles (lua-cjson 2.1.0, lua-cmsgpack
//! 0.4.0, LuaBitOp 1.0.2, Roberto Ierusalimschy's struct 0.2), checked reply for reply against
//! redis-server 7.0.15 (`tests/scripting.rs`).
//!
//! Each function is a Rust function behind a C closure (`lib_call`): on an error the Rust
//! side hands back a marker and the message, worded as the C library's `luaL_error` would, and
//! the closure raises it as a string with the caller's position (`user_script:<line>: bad
//! argument #1 to 'band' (...)`), so scripts and `pcall` see what they see in Redis. (A C
//! function keeps its caller's frame even when tail-called, as Redis's libraries do; a Lua
//! wrapper would lose the line of `return bit.band(...)`.)

mod bit;
mod cjson;
mod cmsgpack;
mod structlib;

use mlua::{Function, Lua, MultiValue, Table, Value};

/// The deepest nesting the libraries build or walk whatever their settings say (Redis's Lua
/// stack runs out near 8,000 levels; here every level holds values on mlua's own stack, which
/// runs out first, and on the shard thread's, `thread::STACK_BYTES`): past it, the error each
/// library gives when its depth limit is passed.
const NESTING_MAX: usize = 3000;

/// What a library function answers: its results, or the error message (without position).
type LibResult = Result<MultiValue, String>;

/// Builds library functions (`add`).
#[derive(Clone)]
struct Builder<'a> {
    lua: &'a Lua,
    /// What a Rust function answers first when it fails (`lib_call` raises the message).
    marker: Table,
}

impl Builder<'_> {
    /// Sets `t[name]` to `f` behind the wrapper.
    fn add(
        &self,
        t: &Table,
        name: &'static str,
        f: impl Fn(&Lua, MultiValue) -> LibResult + 'static,
    ) -> mlua::Result<()> {
        let marker = self.marker.clone();
        let raw = self
            .lua
            .create_function(move |lua, args: MultiValue| match f(lua, args) {
                Ok(v) => Ok(v),
                Err(msg) => Ok(MultiValue::from_iter([
                    Value::Table(marker.clone()),
                    Value::String(lua.create_string(msg)?),
                ])),
            })?;
        // SAFETY: `lib_call` follows the C API's rules (below); `exec_raw` pushed its two
        // arguments, which `lua_pushcclosure` takes as the closure's upvalues.
        let closure: Function = unsafe {
            self.lua.exec_raw((raw, &self.marker), |state| {
                mlua::ffi::lua_pushcclosure(state, lib_call, 2)
            })?
        };
        t.raw_set(name, closure)
    }
}

/// A library function as Lua calls it: its Rust function (upvalue 1) with the arguments;
/// when that answers the marker (upvalue 2) first, the message after it is raised as a string
/// error prefixed with the caller's position (`luaL_where(L, 1)`, as `luaL_error` does).
///
/// # Safety
/// Called by Lua only, as a `lua_CFunction` made by `Builder::add` with its two upvalues. It
/// holds no Rust value with a destructor when it raises (`lua_error` does not return), and
/// calls the Rust function unprotected, so an error there propagates as any Lua error does.
unsafe extern "C-unwind" fn lib_call(state: *mut mlua::lua_State) -> std::os::raw::c_int {
    use mlua::ffi;
    // SAFETY: `state` is the running Lua state; every index used is on its stack or an
    // upvalue `Builder::add` set.
    unsafe {
        let n = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, n, ffi::LUA_MULTRET);
        let results = ffi::lua_gettop(state);
        if results >= 2 && ffi::lua_rawequal(state, 1, ffi::lua_upvalueindex(2)) != 0 {
            ffi::luaL_where(state, 1);
            ffi::lua_pushvalue(state, 2);
            ffi::lua_concat(state, 2);
            ffi::lua_error(state)
        }
        results
    }
}

/// Opens the libraries as globals of `lua` (before the globals are made read-only).
pub(super) fn open(lua: &Lua) -> mlua::Result<()> {
    let b = Builder {
        lua,
        marker: lua.create_table()?,
    };
    let g = lua.globals();
    g.raw_set("bit", bit::open(&b)?)?;
    g.raw_set("cjson", cjson::open(&b)?)?;
    g.raw_set("cmsgpack", cmsgpack::open(&b)?)?;
    g.raw_set("struct", structlib::open(&b)?)?;
    let math: Table = g.raw_get("math")?;
    lua.set_app_data(LuaRng(crate::rng::Rng::new(0)));
    b.add(&math, "random", random)?;
    b.add(&math, "randomseed", |lua, a| {
        let seed = check_number(lua, &a, 1)? as i64 as i32;
        seed_random(lua, seed as u64);
        Ok(MultiValue::new())
    })?;
    Ok(())
}

/// The generator behind `math.random` (the state's app data): seeded for every run from the
/// run's seed (`seed_random`), or by `math.randomseed`. (Lua's own draws from C's `rand`,
/// which `srandom` took a fifth of a small script's time to seed.)
struct LuaRng(crate::rng::Rng);

/// Seeds `math.random`'s generator.
pub(super) fn seed_random(lua: &Lua, seed: u64) {
    if let Some(mut r) = lua.app_data_mut::<LuaRng>() {
        r.0 = crate::rng::Rng::new(seed);
    }
}

/// `math.random([m [, n]])` as Lua 5.1 has it: a number in [0, 1), or an integer in [1, m]
/// or [m, n].
fn random(lua: &Lua, a: MultiValue) -> LibResult {
    let r = match lua.app_data_mut::<LuaRng>() {
        Some(mut g) => (g.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64,
        None => 0.0,
    };
    let int =
        |n: usize| -> Result<f64, String> { Ok(check_number(lua, &a, n)? as i64 as i32 as f64) };
    let x = match a.len() {
        0 => r,
        1 => {
            let u = int(1)?;
            if u < 1.0 {
                return Err(arg_error(lua, 1, "interval is empty"));
            }
            (r * u).floor() + 1.0
        }
        2 => {
            let (l, u) = (int(1)?, int(2)?);
            if l > u {
                return Err(arg_error(lua, 2, "interval is empty"));
            }
            (r * (u - l + 1.0)).floor() + l
        }
        _ => return Err("wrong number of arguments".to_string()),
    };
    Ok(MultiValue::from_iter([number(x)]))
}

/// The name the caller called the function by (`'?'` from C), as `luaL_argerror` gives it
/// (level 0 is the Rust function, 1 the closure the caller called).
fn called_as(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| d.names().name.map(|n| n.to_string()))
        .flatten()
        .unwrap_or_else(|| "?".to_string())
}

/// `luaL_argerror`'s message for argument `n`.
fn arg_error(lua: &Lua, n: usize, msg: &str) -> String {
    format!("bad argument #{n} to '{}' ({msg})", called_as(lua))
}

/// Lua's name of `v`'s type (`None`: no value).
fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "no value",
        Some(Value::Nil) => "nil",
        Some(Value::Boolean(_)) => "boolean",
        Some(Value::Integer(_) | Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Table(_)) => "table",
        Some(Value::Function(_)) => "function",
        Some(Value::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// `luaL_checknumber` of argument `n` (1-based) of `args`.
fn check_number(lua: &Lua, args: &MultiValue, n: usize) -> Result<f64, String> {
    let v = args.get(n - 1);
    let num = match v {
        Some(Value::String(_)) => lua
            .coerce_number(v.cloned().unwrap_or(Value::Nil))
            .ok()
            .flatten(),
        Some(v) => lua_number(v),
        None => None,
    };
    num.ok_or_else(|| arg_error(lua, n, &format!("number expected, got {}", type_name(v))))
}

/// `luaL_checklstring` of argument `n`: a string, or a number as Lua writes it.
fn check_string(lua: &Lua, args: &MultiValue, n: usize) -> Result<Vec<u8>, String> {
    let v = args.get(n - 1);
    let s = match v {
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(Value::Integer(_) | Value::Number(_)) => lua
            .coerce_string(v.cloned().unwrap_or(Value::Nil))
            .ok()
            .flatten()
            .map(|s| s.as_bytes().to_vec()),
        _ => None,
    };
    s.ok_or_else(|| arg_error(lua, n, &format!("string expected, got {}", type_name(v))))
}

/// A number given to `redis.call` as Redis 7.0 writes it (`%.17g`).
pub(super) fn number_arg(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 && !(x == 0.0 && x.is_sign_negative()) {
        return format!("{}", x as i64);
    }
    cjson::fmt_g(x, 17)
}

/// A Lua number's value (mlua hands integral ones as integers), `None` for anything else.
fn lua_number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(x) => Some(*x),
        _ => None,
    }
}

/// An mlua error as a library error's text.
fn lua_err(e: mlua::Error) -> String {
    e.to_string()
}

/// A number as a Lua value (Lua 5.1 has only doubles).
fn number(x: f64) -> Value {
    Value::Number(x)
}
