//! `cjson`: lua-cjson 2.1.0 as Redis 7.0 bundles it. Encoding walks tables in `next` order
//! (the same Lua, the same order as Redis), numbers as `%.14g`; decoding follows its
//! tokenizer, so errors read `Expected <what> but found <token> at character <n>`.

use super::{Builder, LibResult, arg_error, check_string, lua_err, lua_number, number, type_name};
use mlua::{LightUserData, Lua, MultiValue, Table, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// The settings the `cjson.encode_*`/`decode_*` functions read and change.
struct Config {
    sparse_convert: bool,
    sparse_ratio: i64,
    sparse_safe: i64,
    encode_max_depth: i64,
    decode_max_depth: i64,
    precision: usize,
    /// 0: refused; 1: written as C prints them; 2: written as `null`.
    encode_invalid: u8,
    decode_invalid: bool,
    keep_buffer: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            precision: 14,
            encode_invalid: 0,
            decode_invalid: true,
            keep_buffer: true,
        }
    }
}

type Shared = Rc<RefCell<Config>>;

/// `cjson.null`: a light userdata holding NULL, as lua-cjson's.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn one(v: Value) -> LibResult {
    Ok(MultiValue::from_iter([v]))
}

pub(super) fn open(b: &Builder) -> mlua::Result<Table> {
    let t = module(b)?;
    let marker = b.marker.clone();
    b.add(&t, "new", move |lua, _| {
        // A module of its own settings, as lua-cjson's `new`.
        let b = Builder {
            lua,
            marker: marker.clone(),
        };
        let t = module(&b).map_err(lua_err)?;
        Ok(MultiValue::from_iter([Value::Table(t)]))
    })?;
    Ok(t)
}

/// The module's functions and fields, with settings of their own.
fn module(b: &Builder) -> mlua::Result<Table> {
    let t = b.lua.create_table()?;
    let cfg: Shared = Rc::default();
    let c = cfg.clone();
    b.add(&t, "encode", move |lua, a| {
        if a.len() != 1 {
            return Err(arg_error(lua, 1, "expected 1 argument"));
        }
        let mut out = Vec::new();
        encode(&c.borrow(), &a[0], 0, &mut out)?;
        one(Value::String(lua.create_string(out).map_err(lua_err)?))
    })?;
    let c = cfg.clone();
    b.add(&t, "decode", move |lua, a| {
        if a.len() != 1 {
            return Err(arg_error(lua, 1, "expected 1 argument"));
        }
        let text = check_string(lua, &a, 1)?;
        decode(lua, &c.borrow(), &text).map(|v| MultiValue::from_iter([v]))
    })?;
    config_functions(b, &t, &cfg)?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

/// The settings' getters and setters: each takes the new value(s), if any, and answers the
/// current one(s).
fn config_functions(b: &Builder, t: &Table, cfg: &Shared) -> mlua::Result<()> {
    let c = cfg.clone();
    b.add(t, "encode_sparse_array", move |lua, a| {
        let mut cfg = c.borrow_mut();
        if let Some(v) = a.front().filter(|v| !v.is_nil()) {
            cfg.sparse_convert = flag(lua, v, 1)?;
        }
        if let Some(v) = a.get(1).filter(|v| !v.is_nil()) {
            cfg.sparse_ratio = integer(lua, v, 2, 0)?;
        }
        if let Some(v) = a.get(2).filter(|v| !v.is_nil()) {
            cfg.sparse_safe = integer(lua, v, 3, 0)?;
        }
        Ok(MultiValue::from_iter([
            Value::Boolean(cfg.sparse_convert),
            number(cfg.sparse_ratio as f64),
            number(cfg.sparse_safe as f64),
        ]))
    })?;
    for (name, encode) in [("encode_max_depth", true), ("decode_max_depth", false)] {
        let c = cfg.clone();
        b.add(t, name, move |lua, a| {
            let mut cfg = c.borrow_mut();
            let slot = if encode {
                &mut cfg.encode_max_depth
            } else {
                &mut cfg.decode_max_depth
            };
            if let Some(v) = a.front().filter(|v| !v.is_nil()) {
                *slot = integer(lua, v, 1, 1)?;
            }
            one(number(*slot as f64))
        })?;
    }
    let c = cfg.clone();
    b.add(t, "encode_number_precision", move |lua, a| {
        let mut cfg = c.borrow_mut();
        if let Some(v) = a.front().filter(|v| !v.is_nil()) {
            let n = integer(lua, v, 1, 1)?;
            if n > 14 {
                return Err(arg_error(lua, 1, "expected integer between 1 and 14"));
            }
            cfg.precision = n as usize;
        }
        one(number(cfg.precision as f64))
    })?;
    let c = cfg.clone();
    b.add(t, "encode_keep_buffer", move |lua, a| {
        let mut cfg = c.borrow_mut();
        if let Some(v) = a.front().filter(|v| !v.is_nil()) {
            cfg.keep_buffer = flag(lua, v, 1)?;
        }
        one(Value::Boolean(cfg.keep_buffer))
    })?;
    let c = cfg.clone();
    b.add(t, "encode_invalid_numbers", move |lua, a| {
        let mut cfg = c.borrow_mut();
        if let Some(v) = a.front().filter(|v| !v.is_nil()) {
            cfg.encode_invalid = match v {
                Value::String(s) if s.as_bytes().as_ref() == b"null" => 2,
                v => flag(lua, v, 1)? as u8,
            };
        }
        match cfg.encode_invalid {
            2 => one(Value::String(lua.create_string("null").map_err(lua_err)?)),
            n => one(Value::Boolean(n == 1)),
        }
    })?;
    let c = cfg.clone();
    b.add(t, "decode_invalid_numbers", move |lua, a| {
        let mut cfg = c.borrow_mut();
        if let Some(v) = a.front().filter(|v| !v.is_nil()) {
            cfg.decode_invalid = flag(lua, v, 1)?;
        }
        one(Value::Boolean(cfg.decode_invalid))
    })?;
    Ok(())
}

/// A setting's on/off argument: a boolean, or `"on"`/`"off"`.
fn flag(lua: &Lua, v: &Value, n: usize) -> Result<bool, String> {
    match v {
        Value::Boolean(b) => Ok(*b),
        Value::String(s) if s.as_bytes().as_ref() == b"on" => Ok(true),
        Value::String(s) if s.as_bytes().as_ref() == b"off" => Ok(false),
        _ => Err(arg_error(lua, n, "invalid option")),
    }
}

/// A setting's integer argument, at least `min`.
fn integer(lua: &Lua, v: &Value, n: usize, min: i64) -> Result<i64, String> {
    let x = lua_number(v).unwrap_or(f64::NAN);
    if x.is_nan() || x < min as f64 || x > i32::MAX as f64 {
        return Err(arg_error(
            lua,
            n,
            &format!("expected integer between {min} and {}", i32::MAX),
        ));
    }
    Ok(x as i64)
}

/// `%.<precision>g`, as C's printf writes a double.
pub(super) fn fmt_g(x: f64, precision: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let p = precision.max(1);
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("an exponent");
    let exp: i32 = exp.parse().expect("a number");
    if exp < -4 || exp >= p as i32 {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

/// A fixed-point number without trailing zeros after its point (nor the point alone).
fn trim_zeros(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.')
}

fn encode_number(cfg: &Config, x: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !x.is_finite() {
        match cfg.encode_invalid {
            0 => return Err("Cannot serialise number: must not be NaN or Inf".to_string()),
            2 => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
            _ => {}
        }
    }
    out.extend_from_slice(fmt_g(x, cfg.precision).as_bytes());
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 || c == 0x7f => {
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// lua-cjson's `lua_array_length`: the largest key if every key is an integer >= 1 (not too
/// sparse), 0 for an empty table, `None` for an object.
fn array_length(cfg: &Config, t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0f64, 0f64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair.map_err(lua_err)?;
        match lua_number(&k) {
            Some(k) if k.floor() == k && k >= 1.0 => {
                max = max.max(k);
                items += 1.0;
            }
            _ => return Ok(None),
        }
    }
    if cfg.sparse_ratio > 0 && max > items * cfg.sparse_ratio as f64 && max > cfg.sparse_safe as f64
    {
        if !cfg.sparse_convert {
            return Err("Cannot serialise table: excessively sparse array".to_string());
        }
        return Ok(None);
    }
    Ok(Some(max as usize))
}

fn encode(cfg: &Config, v: &Value, depth: i64, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Integer(_) | Value::Number(_) => {
            encode_number(cfg, lua_number(v).expect("a number"), out)?
        }
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > cfg.encode_max_depth.min(super::NESTING_MAX as i64) {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            match array_length(cfg, t)? {
                Some(n) if n > 0 => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i).map_err(lua_err)?;
                        encode(cfg, &item, depth, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.clone().pairs::<Value, Value>() {
                        let (k, item) = pair.map_err(lua_err)?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => encode_string(&s.as_bytes(), out),
                            Value::Integer(_) | Value::Number(_) => {
                                out.push(b'"');
                                encode_number(cfg, lua_number(&k).expect("a number"), out)?;
                                out.push(b'"');
                            }
                            other => {
                                return Err(format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    type_name(Some(other))
                                ));
                            }
                        }
                        out.push(b':');
                        encode(cfg, &item, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(Some(other))
            ));
        }
    }
    Ok(())
}

/// A token of lua-cjson's tokenizer.
#[derive(Debug, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(what) => what,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: i64,
    cfg: &'a Config,
}

impl Parser<'_> {
    fn byte(&self, i: usize) -> u8 {
        // (lua-cjson reads a NUL-terminated buffer: a NUL ends the text.)
        self.s.get(i).copied().unwrap_or(0)
    }

    /// The next token and where it starts (where an error token was found).
    fn next(&mut self) -> (Tok, usize) {
        while matches!(self.byte(self.at), b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
        let start = self.at;
        let simple = match self.byte(start) {
            0 => Some(Tok::End),
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(t) = simple {
            if t != Tok::End {
                self.at += 1;
            }
            return (t, start);
        }
        let rest = &self.s[start..];
        match rest[0] {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(start),
            _ if rest.starts_with(b"true") => {
                self.at += 4;
                (Tok::Bool(true), start)
            }
            _ if rest.starts_with(b"false") => {
                self.at += 5;
                (Tok::Bool(false), start)
            }
            _ if rest.starts_with(b"null") => {
                self.at += 4;
                (Tok::Null, start)
            }
            _ if self.cfg.decode_invalid && invalid_number(rest) => self.number(start),
            _ => (Tok::Error("invalid token"), start),
        }
    }

    fn number(&mut self, start: usize) -> (Tok, usize) {
        let end = self.s[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(self.s.len(), |p| start + p);
        match strtod(&self.s[start..end]) {
            Some((x, used)) => {
                self.at = start + used;
                (Tok::Num(x), start)
            }
            None => (Tok::Error("invalid number"), start),
        }
    }

    fn string(&mut self) -> (Tok, usize) {
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.byte(self.at) {
                0 => return (Tok::Error("unexpected end of string"), self.at),
                b'"' => {
                    self.at += 1;
                    return (Tok::Str(out), start);
                }
                b'\\' => {
                    let esc = self.at;
                    let c = match self.byte(esc + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => match self.unicode(esc) {
                            Some((cp, used)) => {
                                let mut buf = [0; 4];
                                let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                                self.at = esc + used;
                                continue;
                            }
                            None => return (Tok::Error("invalid unicode escape code"), esc),
                        },
                        _ => return (Tok::Error("invalid escape code"), esc),
                    };
                    out.push(c);
                    self.at = esc + 2;
                }
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// A `\uXXXX` escape at `at` (with its low surrogate after a high one): the code point and
    /// the bytes it took.
    fn unicode(&self, at: usize) -> Option<(u32, usize)> {
        let hex4 = |i: usize| -> Option<u32> {
            let h = self.s.get(i..i + 4)?;
            u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        let first = hex4(at + 2)?;
        if (0xDC00..=0xDFFF).contains(&first) {
            return None;
        }
        if !(0xD800..=0xDBFF).contains(&first) {
            return Some((first, 6));
        }
        if self.s.get(at + 6..at + 8) != Some(b"\\u") {
            return None;
        }
        let low = hex4(at + 8)?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return None;
        }
        Some((((first & 0x3ff) << 10 | (low & 0x3ff)) + 0x10000, 12))
    }

    fn fail(&self, expected: &str, (tok, at): &(Tok, usize)) -> String {
        format!(
            "Expected {expected} but found {} at character {}",
            tok.name(),
            at + 1
        )
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.cfg.decode_max_depth.min(super::NESTING_MAX as i64) {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.at
            ));
        }
        Ok(())
    }

    fn value(&mut self, lua: &Lua, tok: (Tok, usize)) -> Result<Value, String> {
        Ok(match tok.0 {
            Tok::Str(s) => Value::String(lua.create_string(s).map_err(lua_err)?),
            Tok::Num(x) => number(x),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => null(),
            Tok::ObjBegin => self.object(lua)?,
            Tok::ArrBegin => self.array(lua)?,
            _ => return Err(self.fail("value", &tok)),
        })
    }

    fn object(&mut self, lua: &Lua) -> Result<Value, String> {
        self.descend()?;
        let t = lua.create_table().map_err(lua_err)?;
        let mut tok = self.next();
        if tok.0 == Tok::ObjEnd {
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        loop {
            let Tok::Str(key) = tok.0 else {
                return Err(self.fail("object key string", &tok));
            };
            let colon = self.next();
            if colon.0 != Tok::Colon {
                return Err(self.fail("colon", &colon));
            }
            let first = self.next();
            let v = self.value(lua, first)?;
            t.raw_set(lua.create_string(key).map_err(lua_err)?, v)
                .map_err(lua_err)?;
            tok = self.next();
            if tok.0 == Tok::ObjEnd {
                self.depth -= 1;
                return Ok(Value::Table(t));
            }
            if tok.0 != Tok::Comma {
                return Err(self.fail("comma or object end", &tok));
            }
            tok = self.next();
        }
    }

    fn array(&mut self, lua: &Lua) -> Result<Value, String> {
        self.descend()?;
        let t = lua.create_table().map_err(lua_err)?;
        let mut tok = self.next();
        if tok.0 == Tok::ArrEnd {
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        for i in 1.. {
            let v = self.value(lua, tok)?;
            t.raw_set(i, v).map_err(lua_err)?;
            tok = self.next();
            if tok.0 == Tok::ArrEnd {
                break;
            }
            if tok.0 != Tok::Comma {
                return Err(self.fail("comma or array end", &tok));
            }
            tok = self.next();
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }
}

/// lua-cjson's `json_is_invalid_number`: what JSON forbids but `strtod` reads (a leading
/// `+`, hex, leading zeros, `inf`, `nan`).
fn invalid_number(s: &[u8]) -> bool {
    let mut p = s;
    if p.first() == Some(&b'+') {
        return true;
    }
    if p.first() == Some(&b'-') {
        p = &p[1..];
    }
    match p.first() {
        Some(b'0') => matches!(p.get(1), Some(b'x' | b'X' | b'0'..=b'9')),
        Some(&c) if c <= b'9' => false,
        _ => {
            let head = p.get(..3).map(|h| h.to_ascii_lowercase());
            matches!(head.as_deref(), Some(b"inf") | Some(b"nan"))
        }
    }
}

/// C's `strtod` on the front of `s`: the number and the bytes it took (`None`: none).
pub(super) fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let sign = |x: f64| if neg { -x } else { x };
    let rest = &s[i..];
    let lower: Vec<u8> = rest.iter().take(8).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"inf") {
        let n = if lower.starts_with(b"infinity") { 8 } else { 3 };
        return Some((sign(f64::INFINITY), i + n));
    }
    if lower.starts_with(b"nan") {
        let mut n = 3;
        if rest.get(3) == Some(&b'(')
            && let Some(close) = rest[4..].iter().position(|&b| b == b')')
            && rest[4..4 + close]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            n = 4 + close + 1;
        }
        return Some((sign(f64::NAN), i + n));
    }
    if lower.starts_with(b"0x") {
        if let Some((x, n)) = hex_float(&rest[2..]) {
            return Some((sign(x), i + 2 + n));
        }
        // "0x" without hex digits: the "0" alone.
        return Some((sign(0.0), i + 1));
    }
    let mut j = 0;
    let digits = |j: &mut usize| {
        let from = *j;
        while rest.get(*j).is_some_and(u8::is_ascii_digit) {
            *j += 1;
        }
        *j - from
    };
    let mut n = digits(&mut j);
    if rest.get(j) == Some(&b'.') {
        j += 1;
        n += digits(&mut j);
    }
    if n == 0 {
        return None;
    }
    if matches!(rest.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(rest.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if digits(&mut k) > 0 {
            j = k;
        }
    }
    let text = std::str::from_utf8(&rest[..j]).ok()?;
    let x: f64 = text.parse().ok()?;
    Some((sign(x), i + j))
}

/// A hexadecimal float after its `0x`: digits, an optional point and digits, an optional
/// binary exponent.
fn hex_float(s: &[u8]) -> Option<(f64, usize)> {
    let mut j = 0;
    let mut mantissa = 0f64;
    let mut any = false;
    let mut scale = 0i32;
    while let Some(d) = s.get(j).and_then(|c| (*c as char).to_digit(16)) {
        mantissa = mantissa * 16.0 + d as f64;
        any = true;
        j += 1;
    }
    if s.get(j) == Some(&b'.') {
        let mut k = j + 1;
        while let Some(d) = s.get(k).and_then(|c| (*c as char).to_digit(16)) {
            mantissa = mantissa * 16.0 + d as f64;
            scale -= 4;
            any = true;
            k += 1;
        }
        if any {
            j = k;
        }
    }
    if !any {
        return None;
    }
    if matches!(s.get(j), Some(b'p' | b'P')) {
        let mut k = j + 1;
        let neg = match s.get(k) {
            Some(b'-') => {
                k += 1;
                true
            }
            Some(b'+') => {
                k += 1;
                false
            }
            _ => false,
        };
        let from = k;
        let mut e = 0i32;
        while let Some(d) = s.get(k).filter(|c| c.is_ascii_digit()) {
            e = e.saturating_mul(10).saturating_add((d - b'0') as i32);
            k += 1;
        }
        if k > from {
            scale = scale.saturating_add(if neg { -e } else { e });
            j = k;
        }
    }
    Some((mantissa * 2f64.powi(scale), j))
}

/// `cjson.decode(text)`.
fn decode(lua: &Lua, cfg: &Config, text: &[u8]) -> Result<Value, String> {
    if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
        return Err("JSON parser does not support UTF-16 or UTF-32".to_string());
    }
    let mut p = Parser {
        s: text,
        at: 0,
        depth: 0,
        cfg,
    };
    let first = p.next();
    let v = p.value(lua, first)?;
    let end = p.next();
    if end.0 != Tok::End {
        return Err(p.fail("the end", &end));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_percent_14g() {
        for (x, want) in [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (123456789012345678.0, "1.2345678901235e+17"),
            (1.0 / 3.0, "0.33333333333333"),
            (100.0, "100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-300, "-2.5e-300"),
            (99999999999999.0, "99999999999999"),
            (999999999999999.0, "1e+15"),
        ] {
            assert_eq!(fmt_g(x, 14), want, "{x}");
        }
    }

    #[test]
    fn strtod_reads_what_c_reads() {
        for (s, want) in [
            (&b"1.5e3x"[..], Some((1500.0, 5))),
            (b"0x10", Some((16.0, 4))),
            (b"01", Some((1.0, 2))),
            (b"-0", Some((-0.0, 2))),
            (b"1e", Some((1.0, 1))),
            (b"1.", Some((1.0, 2))),
            (b".5", Some((0.5, 2))),
            (b"-", None),
            (b"x", None),
            (b"1e400", Some((f64::INFINITY, 5))),
            (b"0x1p4", Some((16.0, 5))),
        ] {
            assert_eq!(strtod(s), want, "{:?}", String::from_utf8_lossy(s));
        }
        assert!(strtod(b"nan").unwrap().0.is_nan());
        assert_eq!(strtod(b"-Infinity"), Some((f64::NEG_INFINITY, 9)));
    }
}
