//! Conversions between RESP and Lua values, as Redis documents them ("Data type conversion"):
//! a command's reply (RESP2, or RESP3 after `redis.setresp(3)`) into what `redis.call`
//! returns, and a script's return value into the client's reply.

use crate::reply::{Out, Proto};
use mlua::{Lua, Table, Value};
use shardline_transport::resp::{self, Value as Resp};

/// Deepest nesting a script's reply may have (a table holding itself would never end).
const DEPTH_MAX: usize = 1000;

/// The Lua value of the RESP reply in `bytes` (one complete value).
pub(super) fn from_resp(lua: &Lua, bytes: &[u8], resp3: bool) -> mlua::Result<Value> {
    if let Some(v) = scalar(lua, bytes, resp3)? {
        return Ok(v);
    }
    match resp::decode(bytes) {
        Ok(Some((v, _))) => to_lua(lua, &v, resp3),
        _ => Err(mlua::Error::runtime("a command's reply did not decode")),
    }
}

/// The common replies (an integer, a bulk string, a null) straight from their bytes, without
/// decoding into a value first; `None` for the others.
fn scalar(lua: &Lua, bytes: &[u8], resp3: bool) -> mlua::Result<Option<Value>> {
    let Some(line_end) = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .filter(|&e| e >= 1)
    else {
        return Ok(None);
    };
    let head = &bytes[1..line_end];
    Ok(match bytes.first() {
        Some(b':') => crate::num::parse_i64(head).map(|n| Value::Number(n as f64)),
        Some(b'$') if head == b"-1" => Some(if resp3 {
            Value::Nil
        } else {
            Value::Boolean(false)
        }),
        Some(b'$') => match crate::num::parse_i64(head) {
            Some(n) if n >= 0 && bytes.len() >= line_end + 2 + n as usize => {
                let body = &bytes[line_end + 2..line_end + 2 + n as usize];
                Some(Value::String(lua.create_string(body)?))
            }
            _ => None,
        },
        Some(b'_') if resp3 => Some(Value::Nil),
        _ => None,
    })
}

fn tagged(lua: &Lua, tag: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(tag, v)?;
    Ok(Value::Table(t))
}

fn to_lua(lua: &Lua, v: &Resp, resp3: bool) -> mlua::Result<Value> {
    Ok(match v {
        Resp::Simple(s) => tagged(lua, "ok", Value::String(lua.create_string(s)?))?,
        Resp::Error(s) => tagged(lua, "err", Value::String(lua.create_string(s)?))?,
        Resp::Int(n) => Value::Number(*n as f64),
        Resp::Bulk(b) => Value::String(lua.create_string(b)?),
        // RESP2's null bulk and null array are false; RESP3's null is nil.
        Resp::Null if resp3 => Value::Nil,
        Resp::Null => Value::Boolean(false),
        Resp::Array(items) | Resp::Push(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item, resp3)?)?;
            }
            Value::Table(t)
        }
        Resp::Map(pairs) => {
            let m = lua.create_table()?;
            for (k, v) in pairs {
                m.raw_set(to_lua(lua, k, resp3)?, to_lua(lua, v, resp3)?)?;
            }
            tagged(lua, "map", Value::Table(m))?
        }
        Resp::Set(items) => {
            let s = lua.create_table()?;
            for item in items {
                s.raw_set(to_lua(lua, item, resp3)?, true)?;
            }
            tagged(lua, "set", Value::Table(s))?
        }
        Resp::Double(d) => tagged(lua, "double", Value::Number(*d))?,
        Resp::Bool(b) => Value::Boolean(*b),
        Resp::BigNumber(s) => tagged(lua, "big_number", Value::String(lua.create_string(s)?))?,
        Resp::Verbatim(s) => {
            let t = lua.create_table()?;
            let (format, text) = s.split_at(s.len().min(3));
            t.raw_set("format", format)?;
            t.raw_set("string", text.strip_prefix(':').unwrap_or(text))?;
            tagged(lua, "verbatim_string", Value::Table(t))?
        }
    })
}

/// Writes the reply for a script's return value `v` to `out`.
pub(super) fn to_resp(v: &Value, out: &mut Out, depth: usize) {
    if depth > DEPTH_MAX {
        return out.error("ERR reached lua stack limit");
    }
    let resp3 = out.proto == Proto::Resp3;
    match v {
        Value::Nil => out.null(),
        Value::Boolean(true) if resp3 => out.boolean(true),
        Value::Boolean(false) if resp3 => out.boolean(false),
        Value::Boolean(true) => out.int(1),
        Value::Boolean(false) => out.null(),
        Value::Integer(n) => out.int(*n),
        Value::Number(n) => out.int(truncate(*n)),
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Table(t) => table_to_resp(t, out, depth),
        _ => out.null(),
    }
}

/// A double as C's cast to `long long` gives it on x86-64 (Redis's conversion): toward zero,
/// and the "integer indefinite" value for what does not fit (NaN, infinities, |n| >= 2^63).
fn truncate(n: f64) -> i64 {
    if n.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

fn one_line(s: &[u8]) -> String {
    String::from_utf8_lossy(s).replace(['\r', '\n'], " ")
}

fn table_to_resp(t: &Table, out: &mut Out, depth: usize) {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(e) = field("err") {
        return out.error(&one_line(&e.as_bytes()));
    }
    if let Value::String(s) = field("ok") {
        return out.simple(&one_line(&s.as_bytes()));
    }
    if let Value::Number(d) = field("double") {
        return out.double(d);
    }
    if let Value::Integer(d) = field("double") {
        return out.double(d as f64);
    }
    if let Value::String(s) = field("big_number") {
        let text = one_line(&s.as_bytes());
        return match out.proto {
            Proto::Resp3 => {
                out.buf.push(b'(');
                out.buf.extend_from_slice(text.as_bytes());
                out.buf.extend_from_slice(b"\r\n");
            }
            Proto::Resp2 => out.bulk(text.as_bytes()),
        };
    }
    if let Value::Table(m) = field("map") {
        let pairs: Vec<(Value, Value)> = m.pairs::<Value, Value>().filter_map(Result::ok).collect();
        out.map(pairs.len());
        for (k, v) in &pairs {
            to_resp(k, out, depth + 1);
            to_resp(v, out, depth + 1);
        }
        return;
    }
    if let Value::Table(s) = field("set") {
        let items: Vec<Value> = s
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        out.set(items.len());
        for k in &items {
            to_resp(k, out, depth + 1);
        }
        return;
    }
    // An array: from index 1 to the first nil.
    let mut items = Vec::new();
    loop {
        match t.raw_get::<Value>(items.len() + 1) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    out.array(items.len());
    for v in &items {
        to_resp(v, out, depth + 1);
    }
}
