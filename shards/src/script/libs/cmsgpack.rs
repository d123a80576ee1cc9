//! `cmsgpack`: lua-cmsgpack 0.4.0 as Redis 7.0 bundles it: `pack(...)`, `unpack(s)`,
//! `unpack_one(s[, offset])`, `unpack_limit(s, limit[, offset])`. Tables with keys 1..n are
//! arrays, others maps (in `next` order); integers in the smallest encoding, other numbers as
//! float32 when exact, else float64; strings as str8/16/32 (no bin or ext types: decoding
//! them is "Bad data format").

use super::{Builder, LibResult, check_number, check_string, lua_number, number};
use mlua::{Lua, MultiValue, Table, Value};

/// Past this nesting, a table packs as nil (lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`).
const PACK_NESTING_MAX: usize = 16;

pub(super) fn open(b: &Builder) -> mlua::Result<Table> {
    let t = b.lua.create_table()?;
    b.add(&t, "pack", |lua, a| {
        if a.is_empty() {
            return Err(super::arg_error(lua, 0, "MessagePack pack needs input."));
        }
        let mut out = Vec::new();
        for v in a.iter() {
            pack(v, 0, &mut out).map_err(|e| e.to_string())?;
        }
        let s = lua.create_string(out).map_err(|e| e.to_string())?;
        Ok(MultiValue::from_iter([Value::String(s)]))
    })?;
    b.add(&t, "unpack", |lua, a| {
        let s = check_string(lua, &a, 1)?;
        unpack_full(lua, &s, 0, 0)
    })?;
    b.add(&t, "unpack_one", |lua, a| {
        let s = check_string(lua, &a, 1)?;
        let offset = optional(lua, &a, 2)?;
        unpack_full(lua, &s, 1, offset)
    })?;
    b.add(&t, "unpack_limit", |lua, a| {
        let s = check_string(lua, &a, 1)?;
        let limit = check_number(lua, &a, 2)? as i64;
        let offset = optional(lua, &a, 3)?;
        unpack_full(lua, &s, limit, offset)
    })?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(t)
}

fn optional(lua: &Lua, a: &MultiValue, n: usize) -> Result<i64, String> {
    match a.get(n - 1) {
        None | Some(Value::Nil) => Ok(0),
        _ => Ok(check_number(lua, a, n)? as i64),
    }
}

fn pack(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::String(s) => pack_str(&s.as_bytes(), out),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(_) | Value::Number(_) => pack_number(lua_number(v).expect("a number"), out),
        Value::Table(t) if level < PACK_NESTING_MAX => pack_table(t, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn pack_str(s: &[u8], out: &mut Vec<u8>) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// An integral number in the int64 range as an integer, anything else as a float (32 bits
/// when that is exact).
fn pack_number(x: f64, out: &mut Vec<u8>) {
    let int = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x);
    if int && (x as i64) as f64 == x {
        return pack_int(x as i64, out);
    }
    let f = x as f32;
    if f as f64 == x {
        out.push(0xca);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&x.to_be_bytes());
    }
}

fn pack_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        let u = n as u64;
        if u <= 127 {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// lua-cmsgpack's `table_is_an_array`: every key an integer >= 1 and none missing.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0f64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        match lua_number(&k) {
            Some(k) if k >= 1.0 && k.floor() == k => {
                max = max.max(k);
                count += 1;
            }
            _ => return Ok(None),
        }
    }
    Ok((max == count as f64).then_some(count))
}

fn pack_table(t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if let Some(n) = array_len(t)? {
        header(n, 0x90, 0xdc, 0xdd, out);
        for i in 1..=n {
            let v: Value = t.raw_get(i)?;
            pack(&v, level + 1, out)?;
        }
        return Ok(());
    }
    let pairs: Vec<(Value, Value)> = t
        .clone()
        .pairs::<Value, Value>()
        .collect::<Result<_, _>>()?;
    header(pairs.len(), 0x80, 0xde, 0xdf, out);
    for (k, v) in &pairs {
        pack(k, level + 1, out)?;
        pack(v, level + 1, out)?;
    }
    Ok(())
}

/// An array's or a map's header: fix (up to 15), 16 or 32 bits.
fn header(n: usize, fix: u8, b16: u8, b32: u8, out: &mut Vec<u8>) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Why decoding stopped.
enum Stop {
    /// The input ends inside a value.
    Missing,
    /// A type lua-cmsgpack does not read.
    BadFormat,
    /// Nested deeper than `NESTING_MAX`.
    TooDeep,
    Lua(mlua::Error),
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Self {
        Stop::Lua(e)
    }
}

struct Cur<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Stop> {
        let b = self.s.get(self.at..self.at + n).ok_or(Stop::Missing)?;
        self.at += n;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> Result<u64, Stop> {
        Ok(self.take(n)?.iter().fold(0u64, |x, &b| x << 8 | b as u64))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> Result<Value, Stop> {
        if depth > super::NESTING_MAX {
            // (Where Redis's Lua stack runs out, later, it says so this way.)
            return Err(Stop::TooDeep);
        }
        let t = self.take(1)?[0];
        Ok(match t {
            0x00..=0x7f => number(t as f64),
            0x80..=0x8f => self.map(lua, (t & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array(lua, (t & 0x0f) as usize, depth)?,
            0xa0..=0xbf => self.str(lua, (t & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xca => number(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => number(f64::from_bits(self.be(8)?)),
            0xcc => number(self.be(1)? as f64),
            0xcd => number(self.be(2)? as f64),
            0xce => number(self.be(4)? as f64),
            // (lua-cmsgpack pushes it as a signed integer.)
            0xcf => number(self.be(8)? as i64 as f64),
            0xd0 => number(self.be(1)? as u8 as i8 as f64),
            0xd1 => number(self.be(2)? as u16 as i16 as f64),
            0xd2 => number(self.be(4)? as u32 as i32 as f64),
            0xd3 => number(self.be(8)? as i64 as f64),
            0xd9 => {
                let n = self.be(1)? as usize;
                self.str(lua, n)?
            }
            0xda => {
                let n = self.be(2)? as usize;
                self.str(lua, n)?
            }
            0xdb => {
                let n = self.be(4)? as usize;
                self.str(lua, n)?
            }
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(lua, n, depth)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(lua, n, depth)?
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map(lua, n, depth)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(lua, n, depth)?
            }
            0xe0..=0xff => number(t as i8 as f64),
            _ => return Err(Stop::BadFormat),
        })
    }

    fn str(&mut self, lua: &Lua, n: usize) -> Result<Value, Stop> {
        let b = self.take(n)?;
        Ok(Value::String(lua.create_string(b)?))
    }

    fn array(&mut self, lua: &Lua, n: usize, depth: usize) -> Result<Value, Stop> {
        // (A count larger than what is left cannot be met: no table that size is made.)
        let t = lua.create_table_with_capacity(n.min(self.s.len() - self.at), 0)?;
        for i in 1..=n {
            let v = self.value(lua, depth + 1)?;
            t.raw_set(i, v)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize, depth: usize) -> Result<Value, Stop> {
        let t = lua.create_table()?;
        for _ in 0..n {
            let k = self.value(lua, depth + 1)?;
            let v = self.value(lua, depth + 1)?;
            if !k.is_nil() {
                t.raw_set(k, v)?;
            }
        }
        Ok(Value::Table(t))
    }
}

/// lua-cmsgpack's `mp_unpack_full`: up to `limit` values (0: all) from `offset`; with a limit
/// or an offset, the offset after them first (-1 at the end).
fn unpack_full(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> LibResult {
    if offset < 0 || limit < 0 {
        // (lua-cmsgpack names the input's length as the limit.)
        return Err(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            s.len()
        ));
    }
    if offset as usize > s.len() {
        return Err(format!(
            "Start offset {offset} greater than input length {}.",
            s.len()
        ));
    }
    let all = limit == 0 && offset == 0;
    let mut c = Cur {
        s,
        at: offset as usize,
    };
    let mut values = Vec::new();
    while c.at < s.len() && (all || (values.len() as i64) < limit) {
        match c.value(lua, 0) {
            Ok(v) => values.push(v),
            Err(Stop::Missing) => return Err("Missing bytes in input.".to_string()),
            Err(Stop::BadFormat) => return Err("Bad data format in input.".to_string()),
            Err(Stop::TooDeep) => {
                return Err("stack overflow (in function mp_decode_to_lua_array)".to_string());
            }
            Err(Stop::Lua(e)) => return Err(e.to_string()),
        }
    }
    if !all {
        let next = if c.at == s.len() { -1 } else { c.at as i64 };
        values.insert(0, number(next as f64));
    }
    Ok(MultiValue::from_iter(values))
}
