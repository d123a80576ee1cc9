//! `bit`: LuaBitOp 1.0.2. Every argument is taken to a signed 32-bit integer the way it does
//! (rounded to nearest, even on ties, then its low 32 bits), every result is one.

use super::{Builder, LibResult, check_number, number};
use mlua::{Lua, MultiValue, Table, Value};

/// LuaBitOp's `barg`: the double plus 2^52 + 2^51 puts the rounded integer in the low 32 bits
/// of its mantissa.
fn tobit(x: f64) -> u32 {
    (x + 6_755_399_441_055_744.0).to_bits() as u32
}

fn arg(lua: &Lua, args: &MultiValue, n: usize) -> Result<u32, String> {
    Ok(tobit(check_number(lua, args, n)?))
}

fn ret(b: u32) -> LibResult {
    Ok(MultiValue::from_iter([number(b as i32 as f64)]))
}

/// `band`, `bor`, `bxor`: the first argument is required, the others folded in.
fn fold(lua: &Lua, args: &MultiValue, op: fn(u32, u32) -> u32) -> LibResult {
    let mut acc = arg(lua, args, 1)?;
    for n in 2..=args.len() {
        acc = op(acc, arg(lua, args, n)?);
    }
    ret(acc)
}

pub(super) fn open(b: &Builder) -> mlua::Result<Table> {
    let t = b.lua.create_table()?;
    b.add(&t, "tobit", |lua, a| ret(arg(lua, &a, 1)?))?;
    b.add(&t, "bnot", |lua, a| ret(!arg(lua, &a, 1)?))?;
    b.add(&t, "band", |lua, a| fold(lua, &a, |x, y| x & y))?;
    b.add(&t, "bor", |lua, a| fold(lua, &a, |x, y| x | y))?;
    b.add(&t, "bxor", |lua, a| fold(lua, &a, |x, y| x ^ y))?;
    b.add(&t, "lshift", |lua, a| {
        let (x, n) = (arg(lua, &a, 1)?, arg(lua, &a, 2)? & 31);
        ret(x << n)
    })?;
    b.add(&t, "rshift", |lua, a| {
        let (x, n) = (arg(lua, &a, 1)?, arg(lua, &a, 2)? & 31);
        ret(x >> n)
    })?;
    b.add(&t, "arshift", |lua, a| {
        let (x, n) = (arg(lua, &a, 1)?, arg(lua, &a, 2)? & 31);
        ret(((x as i32) >> n) as u32)
    })?;
    b.add(&t, "rol", |lua, a| {
        let (x, n) = (arg(lua, &a, 1)?, arg(lua, &a, 2)? & 31);
        ret(x.rotate_left(n))
    })?;
    b.add(&t, "ror", |lua, a| {
        let (x, n) = (arg(lua, &a, 1)?, arg(lua, &a, 2)? & 31);
        ret(x.rotate_right(n))
    })?;
    b.add(&t, "bswap", |lua, a| ret(arg(lua, &a, 1)?.swap_bytes()))?;
    b.add(&t, "tohex", |lua, a| {
        let x = arg(lua, &a, 1)?;
        let mut n = match a.get(1) {
            None | Some(Value::Nil) => 8,
            _ => arg(lua, &a, 2)? as i32,
        };
        let upper = n < 0;
        if upper {
            n = n.wrapping_neg();
        }
        let n = n.clamp(0, 8) as u32;
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let text: Vec<u8> = (0..n)
            .rev()
            .map(|i| digits[((x >> (4 * i)) & 15) as usize])
            .collect();
        Ok(MultiValue::from_iter([Value::String(
            lua.create_string(text).map_err(|e| e.to_string())?,
        )]))
    })?;
    Ok(t)
}
