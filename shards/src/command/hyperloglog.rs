//! HyperLogLog: PFADD PFCOUNT PFMERGE, with Redis's algorithm and layout, so estimates match
//! redis-server's register for register: MurmurHash64A (seed 0xadc83b19), 16384 six-bit registers
//! in the dense encoding behind a 16-byte `HYLL` header, and Ertl's improved estimator (0.81%
//! standard error). The value is a string, as in Redis. Shardline always writes the dense encoding
//! (12 KiB); it reads Redis's sparse encoding (a value copied from Redis with DUMP/RESTORE or
//! SET), expanding it to dense registers, which is what a write then stores.

use super::{Args, Ctx, err};
use crate::bytes::SmallBytes;
use crate::db::{Db, Value};
use crate::reply::Out;

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const BITS: usize = 6;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + (REGISTERS * BITS).div_ceil(8);
const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// MurmurHash64A, as Redis's hyperloglog.c computes it.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h: u64 = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register index of `element` and the run length of zeros (plus one) it observed.
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn get_register(regs: &[u8], i: usize) -> u8 {
    let bit = i * BITS;
    let (b, fb) = (bit / 8, bit % 8);
    let lo = regs[b] as u16 >> fb;
    let hi = if b + 1 < regs.len() {
        (regs[b + 1] as u16) << (8 - fb)
    } else {
        0
    };
    ((lo | hi) & 63) as u8
}

fn set_register(regs: &mut [u8], i: usize, v: u8) {
    let bit = i * BITS;
    let (b, fb) = (bit / 8, bit % 8);
    let v = v as u16 & 63;
    regs[b] &= !((63u16 << fb) as u8);
    regs[b] |= (v << fb) as u8;
    if b + 1 < regs.len() {
        let hi_mask = (63u16 << fb) >> 8;
        regs[b + 1] &= !(hi_mask as u8);
        regs[b + 1] |= (v << fb >> 8) as u8;
    }
}

fn new_dense() -> Vec<u8> {
    let mut v = vec![0u8; DENSE_SIZE];
    v[..4].copy_from_slice(b"HYLL");
    v[15] |= 0x80; // cached cardinality invalid
    v
}

/// Whether `v` is a dense HyperLogLog this code can read.
fn is_dense_hll(v: &[u8]) -> bool {
    v.len() == DENSE_SIZE && &v[..4] == b"HYLL" && v[4] == 0
}

/// Whether `v` claims Redis's sparse encoding.
fn is_sparse_hll(v: &[u8]) -> bool {
    v.len() >= HEADER && &v[..4] == b"HYLL" && v[4] == 1
}

/// The dense form of a sparse HyperLogLog: runs of zero registers (`00xxxxxx`: up to 64,
/// `01xxxxxx yyyyyyyy`: up to 16384) and runs of up to 4 registers of one value
/// (`1vvvvvxx`), which must cover the registers exactly. `None` if they do not.
fn sparse_to_dense(v: &[u8]) -> Option<Vec<u8>> {
    let mut dense = new_dense();
    let mut at = HEADER;
    let mut reg = 0usize;
    while at < v.len() {
        let op = v[at];
        let (run, value) = match op >> 6 {
            0 => ((op & 0x3f) as usize + 1, 0),
            1 => {
                let low = *v.get(at + 1)? as usize;
                at += 1;
                ((((op & 0x3f) as usize) << 8 | low) + 1, 0)
            }
            _ => ((op & 0x3) as usize + 1, ((op >> 2) & 0x1f) + 1),
        };
        at += 1;
        if reg + run > REGISTERS {
            return None;
        }
        if value != 0 {
            for i in reg..reg + run {
                set_register(&mut dense[HEADER..], i, value);
            }
        }
        reg += run;
    }
    (reg == REGISTERS).then_some(dense)
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Ertl's estimator over the register histogram, as Redis's `hllCount`.
fn estimate(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histo = [0u32; 64];
    for i in 0..REGISTERS {
        histo[get_register(regs, i) as usize] += 1;
    }
    let mut z = m * tau((m - histo[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
    (ALPHA_INF * m * m / z).round() as u64
}

/// The dense registers at `key`: `Ok(None)` if missing, `Err` (error written) if not an HLL.
fn load(db: &mut Db, key: &[u8], now: u64, out: &mut Out) -> Result<Option<Vec<u8>>, ()> {
    match db.get(key, now) {
        None => Ok(None),
        Some(Value::Str(s)) if is_dense_hll(s) => Ok(Some(s.to_vec())),
        Some(Value::Str(s)) if is_sparse_hll(s) => match sparse_to_dense(s) {
            Some(d) => Ok(Some(d)),
            None => {
                out.error("INVALIDOBJ Corrupted HLL object detected");
                Err(())
            }
        },
        Some(Value::Str(_)) => {
            out.error(NOT_HLL);
            Err(())
        }
        Some(_) => {
            out.error(err::WRONGTYPE);
            Err(())
        }
    }
}

fn store(db: &mut Db, key: &[u8], v: Vec<u8>) {
    db.set(key, Value::Str(SmallBytes::from_vec(v)), None, true);
}

pub fn pfadd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    let Ok(cur) = load(db, key, c.now_ms, out) else {
        return;
    };
    let created = cur.is_none();
    let mut v = cur.unwrap_or_else(new_dense);
    let mut changed = false;
    for e in a.iter().skip(2) {
        let (i, count) = pattern(e);
        let regs = &mut v[HEADER..];
        if get_register(regs, i) < count {
            set_register(regs, i, count);
            changed = true;
        }
    }
    if changed || created {
        v[15] |= 0x80;
        store(db, key, v);
    }
    out.int((changed || created) as i64)
}

pub fn pfcount(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let mut merged: Option<Vec<u8>> = None;
    for key in a.iter().skip(1) {
        let Ok(v) = load(db, key, c.now_ms, out) else {
            return;
        };
        let Some(v) = v else { continue };
        match &mut merged {
            None => merged = Some(v),
            Some(m) => merge_into(m, &v),
        }
    }
    out.int(merged.map_or(0, |m| estimate(&m[HEADER..])) as i64)
}

fn merge_into(dst: &mut [u8], src: &[u8]) {
    for i in 0..REGISTERS {
        let s = get_register(&src[HEADER..], i);
        if s > get_register(&dst[HEADER..], i) {
            set_register(&mut dst[HEADER..], i, s);
        }
    }
}

pub fn pfmerge(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let dest = a.get(1);
    let Ok(cur) = load(db, dest, c.now_ms, out) else {
        return;
    };
    let mut m = cur.unwrap_or_else(new_dense);
    for key in a.iter().skip(2) {
        let Ok(v) = load(db, key, c.now_ms, out) else {
            return;
        };
        if let Some(v) = v {
            merge_into(&mut m, &v);
        }
    }
    m[15] |= 0x80;
    store(db, dest, m);
    out.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::*;

    #[test]
    fn registers_pack_six_bits_each() {
        let mut regs = vec![0u8; DENSE_SIZE - HEADER];
        for i in [0, 1, 2, 3, 1000, REGISTERS - 1] {
            set_register(&mut regs, i, (i % 63) as u8 + 1);
        }
        for i in [0, 1, 2, 3, 1000, REGISTERS - 1] {
            assert_eq!(get_register(&regs, i), (i % 63) as u8 + 1, "register {i}");
        }
        assert_eq!(get_register(&regs, 4), 0);
    }

    /// A sparse HyperLogLog written by redis-server 7.0 (PFADD of 43 elements) counts, grows
    /// and merges as in Redis; a sparse one whose runs do not cover the registers is refused.
    #[test]
    fn sparse_values_from_redis_are_read() {
        let hex = "48594c4c010000000000000000000080388043389442a384404780148042148040fb904088801e8042ca884143844295b4404390404c8840dd800484429a80427c8040508842988041fe84405984412f8c40c884424280436780412a80453398417f8c446d80409f8840568441b08024842d88407b9444558c41088443ea842a8040faa440a9804050884061";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut h = Harness::new();
        h.run_args(&[b"SET", b"h", &bytes]);
        assert_eq!(h.run("PFCOUNT h"), int(43));
        assert_eq!(h.run("PFADD h zz"), int(1));
        assert_eq!(h.run("PFCOUNT h"), int(44));
        h.run_args(&[b"SET", b"s", &bytes]);
        assert_eq!(h.run("PFMERGE m s"), "+OK\r\n");
        assert_eq!(h.run("PFCOUNT m"), int(43));
        let mut short = bytes.clone();
        short.pop();
        h.run_args(&[b"SET", b"bad", &short]);
        assert_eq!(
            h.run("PFCOUNT bad"),
            error("INVALIDOBJ Corrupted HLL object detected")
        );
        assert_eq!(
            h.run("PFADD bad x"),
            error("INVALIDOBJ Corrupted HLL object detected")
        );
    }

    #[test]
    fn estimates_stay_within_redis_error_bound() {
        let mut h = Harness::new();
        assert_eq!(h.run("PFADD hll"), int(1));
        assert_eq!(h.run("PFADD hll"), int(0));
        assert_eq!(h.run("PFCOUNT hll"), int(0));
        for chunk in 0..100 {
            let elems: Vec<String> = (0..1000)
                .map(|i| format!("e{}", chunk * 1000 + i))
                .collect();
            h.run(&format!("PFADD hll {}", elems.join(" ")));
        }
        let n: i64 = h.run("PFCOUNT hll")[1..].trim().parse().unwrap();
        let error = (n - 100_000).abs() as f64 / 100_000.0;
        assert!(
            error < 0.0243,
            "estimate {n} is off by {:.2}% (3 standard errors is 2.43%)",
            error * 100.0
        );
        assert_eq!(
            h.run("PFADD hll e5"),
            int(0),
            "an element already seen changes nothing"
        );
        assert_eq!(h.run("TYPE hll"), "+string\r\n");
    }

    #[test]
    fn merge_and_multi_key_count_are_unions() {
        let mut h = Harness::new();
        h.run("PFADD {h}a a b c d");
        h.run("PFADD {h}b c d e f");
        assert_eq!(h.run("PFCOUNT {h}a {h}b"), int(6));
        assert_eq!(h.run("PFMERGE {h}m {h}a {h}b"), OK);
        assert_eq!(h.run("PFCOUNT {h}m"), int(6));
        assert_eq!(h.run("PFCOUNT {h}none"), int(0));
        h.run("SET {h}s notanhll");
        assert_eq!(h.run("PFADD {h}s x"), error(NOT_HLL));
        assert_eq!(h.run("PFCOUNT {h}s"), error(NOT_HLL));
        h.run("LPUSH {h}l x");
        assert_eq!(
            h.run("PFCOUNT {h}l"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }
}
