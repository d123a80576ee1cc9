//! `struct`: Roberto Ierusalimschy's struct library as Redis bundles it (`pack`, `unpack`,
//! `size`), on x86-64's sizes (short 2, int 4, long and size_t 8) and native little-endian
//! order; `!` aligns to at most 8.

use super::{
    Builder, LibResult, arg_error, check_number, check_string, lua_err, lua_number, number,
};
use mlua::{Lua, MultiValue, Table, Value};

/// The largest integer size (`i32` and the like).
const MAXINTSIZE: usize = 32;
/// The default and largest alignment of `!`.
const MAXALIGN: usize = 8;

#[derive(Clone, Copy)]
struct Header {
    big: bool,
    align: usize,
}

/// A format string being read.
struct Fmt<'a> {
    s: &'a [u8],
    at: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.s.get(self.at)?;
        // (The C code stops at a NUL.)
        if c == 0 {
            return None;
        }
        self.at += 1;
        Some(c)
    }

    /// A size written after an option, or `default`.
    fn num(&mut self, default: usize) -> Result<usize, String> {
        if !self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(d) = self.s.get(self.at).filter(|c| c.is_ascii_digit()) {
            let d = (d - b'0') as usize;
            if a > (i32::MAX as usize) / 10 || a * 10 > i32::MAX as usize - d {
                return Err("integral size overflow".to_string());
            }
            a = a * 10 + d;
            self.at += 1;
        }
        Ok(a)
    }

    /// The size of option `opt` (0 for those without one).
    fn size(&mut self, opt: u8) -> Result<usize, String> {
        Ok(match opt {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.num(1)?,
            b'i' | b'I' => {
                let n = self.num(4)?;
                if n > MAXINTSIZE {
                    return Err(format!(
                        "integral size {n} is larger than limit of {MAXINTSIZE}"
                    ));
                }
                n
            }
            _ => 0,
        })
    }
}

/// Padding before an item of `size` at offset `len`.
fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    if size == 0 {
        return 0;
    }
    (size - (len & (size - 1))) & (size - 1)
}

/// The options that change the header (`<`, `>`, `!n`, spaces); anything else is refused.
fn control(lua: &Lua, opt: u8, fmt: &mut Fmt, h: &mut Header) -> Result<(), String> {
    match opt {
        b' ' => {}
        b'>' => h.big = true,
        b'<' => h.big = false,
        b'!' => {
            let a = fmt.num(MAXALIGN)?;
            if a & a.wrapping_sub(1) != 0 {
                return Err(format!("alignment {a} is not a power of 2"));
            }
            h.align = a;
        }
        _ => {
            return Err(arg_error(
                lua,
                1,
                &format!("invalid format option '{}'", opt as char),
            ));
        }
    }
    Ok(())
}

fn default_header() -> Header {
    Header {
        big: false,
        align: 1,
    }
}

pub(super) fn open(b: &Builder) -> mlua::Result<Table> {
    let t = b.lua.create_table()?;
    b.add(&t, "pack", pack)?;
    b.add(&t, "unpack", unpack)?;
    b.add(&t, "size", size)?;
    Ok(t)
}

fn put_int(x: f64, big: bool, size: usize, out: &mut Vec<u8>) {
    let mut value = if x < 0.0 { x as i64 as u64 } else { x as u64 };
    let mut bytes = vec![0u8; size];
    for b in bytes.iter_mut() {
        *b = value as u8;
        value = value.checked_shr(8).unwrap_or(0);
    }
    if big {
        bytes.reverse();
    }
    out.extend_from_slice(&bytes);
}

fn pack(lua: &Lua, a: MultiValue) -> LibResult {
    let fmt_s = check_string(lua, &a, 1)?;
    let mut fmt = Fmt { s: &fmt_s, at: 0 };
    let mut h = default_header();
    let mut arg = 2;
    let mut out = Vec::new();
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        let pad = to_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let x = check_number(lua, &a, arg)?;
                arg += 1;
                put_int(x, h.big, size, &mut out);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = check_number(lua, &a, arg)? as f32;
                arg += 1;
                let b = if h.big {
                    f.to_be_bytes()
                } else {
                    f.to_le_bytes()
                };
                out.extend_from_slice(&b);
            }
            b'd' => {
                let d = check_number(lua, &a, arg)?;
                arg += 1;
                let b = if h.big {
                    d.to_be_bytes()
                } else {
                    d.to_le_bytes()
                };
                out.extend_from_slice(&b);
            }
            b'c' | b's' => {
                let s = check_string(lua, &a, arg)?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // (The C code names the argument after the string.)
                    return Err(arg_error(lua, arg, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => control(lua, opt, &mut fmt, &mut h)?,
        }
    }
    let s = lua.create_string(out).map_err(lua_err)?;
    Ok(MultiValue::from_iter([Value::String(s)]))
}

fn get_int(b: &[u8], big: bool, signed: bool) -> f64 {
    let size = b.len();
    let mut l: u64 = 0;
    let mut fold = |byte: u8| l = l.checked_shl(8).unwrap_or(0) | byte as u64;
    if big {
        b.iter().for_each(|&x| fold(x));
    } else {
        b.iter().rev().for_each(|&x| fold(x));
    }
    if !signed {
        return l as f64;
    }
    let bits = size * 8;
    if bits == 0 || bits > 64 {
        return l as i64 as f64;
    }
    let mask = u64::MAX << (bits - 1);
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, a: MultiValue) -> LibResult {
    let fmt_s = check_string(lua, &a, 1)?;
    let data = check_string(lua, &a, 2)?;
    let start = match a.get(2) {
        None | Some(Value::Nil) => 1.0,
        _ => check_number(lua, &a, 3)?,
    };
    if start < 1.0 {
        return Err(arg_error(lua, 3, "offset must be 1 or greater"));
    }
    let mut pos = (start as u64 - 1).min(usize::MAX as u64 / 2) as usize;
    let mut fmt = Fmt { s: &fmt_s, at: 0 };
    let mut h = default_header();
    let mut results: Vec<Value> = Vec::new();
    let short = |lua: &Lua| arg_error(lua, 2, "data string too short");
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        pos += to_align(pos, &h, opt, size);
        if pos.checked_add(size).is_none_or(|end| end > data.len()) {
            return Err(short(lua));
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = opt.is_ascii_lowercase();
                results.push(number(get_int(&data[pos..pos + size], h.big, signed)));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
                let f = if h.big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
                results.push(number(f as f64));
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8].try_into().expect("8 bytes");
                let d = if h.big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                results.push(number(d));
            }
            b'c' => {
                if size == 0 {
                    let prev = results.last().and_then(lua_number);
                    let Some(n) = prev else {
                        return Err("format 'c0' needs a previous size".to_string());
                    };
                    results.pop();
                    size = if n < 0.0 { usize::MAX } else { n as usize };
                    if size > data.len() || pos > data.len() - size {
                        return Err(short(lua));
                    }
                }
                let s = lua.create_string(&data[pos..pos + size]).map_err(lua_err)?;
                results.push(Value::String(s));
            }
            b's' => {
                let Some(nul) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err("unfinished string in data".to_string());
                };
                let s = lua.create_string(&data[pos..pos + nul]).map_err(lua_err)?;
                results.push(Value::String(s));
                size = nul + 1;
            }
            _ => control(lua, opt, &mut fmt, &mut h)?,
        }
        pos += size;
    }
    results.push(number((pos + 1) as f64));
    Ok(MultiValue::from_iter(results))
}

fn size(lua: &Lua, a: MultiValue) -> LibResult {
    let fmt_s = check_string(lua, &a, 1)?;
    let mut fmt = Fmt { s: &fmt_s, at: 0 };
    let mut h = default_header();
    let mut pos = 0usize;
    while let Some(opt) = fmt.next() {
        let size = fmt.size(opt)?;
        pos += to_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(arg_error(lua, 1, "option 's' has no fixed size"));
        } else if opt == b'c' && size == 0 {
            return Err(arg_error(lua, 1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            control(lua, opt, &mut fmt, &mut h)?;
        }
        pos += size;
    }
    Ok(MultiValue::from_iter([number(pos as f64)]))
}
