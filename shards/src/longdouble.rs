//! x87 80-bit `long double` arithmetic in software, for INCRBYFLOAT and HINCRBYFLOAT: Redis
//! reads both numbers with `strtold`, adds them in `long double` and prints the sum with
//! `%.17Lf` (trailing zeros dropped). With a 64-bit mantissa `9223372036854775807 + 0.5` is
//! `9223372036854775807.5` there; an f64 gives `9223372036854776000`. Every step here rounds
//! exactly once, to nearest with ties to even, as the hardware and glibc do.

/// A finite `long double`: `(-1)^neg * mant * 2^exp`, `mant` below 2^64 (normal values have the
/// top bit set; subnormals sit at [`EXP_MIN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F80 {
    neg: bool,
    mant: u64,
    exp: i32,
}

/// The exponent of the smallest subnormal (2^-16445) and of the largest finite value's
/// mantissa ((2^64 - 1) * 2^16320).
const EXP_MIN: i64 = -16445;
const EXP_MAX: i64 = 16320;

/// Why a number is refused (Redis answers each with its own error).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a number `strtold` reads whole, NaN, or out of range (ERANGE to infinity or zero).
    NotFloat,
    /// Infinite (INCRBYFLOAT's "increment would produce NaN or Infinity").
    Infinite,
}

/// A little-endian multi-word unsigned integer, just what parsing and printing need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut v: u128) -> Big {
        let mut b = Big(Vec::new());
        while v != 0 {
            b.0.push(v as u32);
            v >>= 32;
        }
        b
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn bits(&self) -> u64 {
        match self.0.iter().rposition(|&w| w != 0) {
            None => 0,
            Some(i) => i as u64 * 32 + 32 - self.0[i].leading_zeros() as u64,
        }
    }

    fn bit(&self, i: u64) -> bool {
        self.0
            .get((i / 32) as usize)
            .is_some_and(|w| w >> (i % 32) & 1 == 1)
    }

    /// Whether any bit below `i` is set.
    fn any_below(&self, i: u64) -> bool {
        let (w, b) = ((i / 32) as usize, i % 32);
        self.0.iter().take(w.min(self.0.len())).any(|&x| x != 0)
            || (b > 0 && self.0.get(w).is_some_and(|&x| x & ((1u32 << b) - 1) != 0))
    }

    /// Bits `from..from + 64` as a u64.
    fn window(&self, from: u64) -> u64 {
        (0..64).fold(0u64, |acc, k| acc | ((self.bit(from + k) as u64) << k))
    }

    fn mul_small_add(&mut self, m: u32, add: u32) {
        let mut carry = add as u64;
        for w in &mut self.0 {
            let v = *w as u64 * m as u64 + carry;
            *w = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    /// `self *= 10^k`, nine digits at a time.
    fn mul_pow10(&mut self, mut k: u64) {
        while k >= 9 {
            self.mul_small_add(1_000_000_000, 0);
            k -= 9;
        }
        self.mul_small_add(10u32.pow(k as u32), 0);
    }

    fn shl(&self, n: u64) -> Big {
        let (words, bits) = ((n / 32) as usize, n % 32);
        let mut out = vec![0u32; words];
        let mut carry = 0u32;
        for &w in &self.0 {
            if bits == 0 {
                out.push(w);
            } else {
                out.push((w << bits) | carry);
                carry = w >> (32 - bits);
            }
        }
        if carry != 0 {
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn compare(&self, o: &Big) -> std::cmp::Ordering {
        let (a, b) = (self.bits(), o.bits());
        if a != b {
            return a.cmp(&b);
        }
        for i in (0..self.0.len().max(o.0.len())).rev() {
            let (x, y) = (
                self.0.get(i).copied().unwrap_or(0),
                o.0.get(i).copied().unwrap_or(0),
            );
            if x != y {
                return x.cmp(&y);
            }
        }
        std::cmp::Ordering::Equal
    }

    fn plus(&self, o: &Big) -> Big {
        let n = self.0.len().max(o.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let v = self.0.get(i).copied().unwrap_or(0) as u64
                + o.0.get(i).copied().unwrap_or(0) as u64
                + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        if carry != 0 {
            out.push(carry as u32);
        }
        Big(out)
    }

    /// `self - o`; `self >= o`.
    fn minus(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = self.0[i] as i64 - o.0.get(i).copied().unwrap_or(0) as i64 - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// Decimal digits (most significant first); "0" for zero.
    fn to_decimal(&self) -> String {
        let mut n = self.clone();
        n.trim();
        if n.is_zero() {
            return "0".into();
        }
        let mut chunks = Vec::new();
        while !n.is_zero() {
            let mut rem = 0u64;
            for w in n.0.iter_mut().rev() {
                let v = (rem << 32) | *w as u64;
                *w = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            n.trim();
            chunks.push(rem as u32);
        }
        let mut s = chunks.last().expect("nonzero").to_string();
        for c in chunks.iter().rev().skip(1) {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

/// The digits of a number in `radix` with at most one point, as `strtold` reads them.
struct Mantissa {
    value: Big,
    /// Digits after the point.
    fraction: i64,
    /// Digits from the first nonzero one.
    significant: i64,
    /// Where the digits and point end.
    end: usize,
}

/// Reads the mantissa at the start of `s`; `None` without a single digit.
fn mantissa(s: &[u8], radix: u32) -> Option<Mantissa> {
    let mut m = Mantissa {
        value: Big::default(),
        fraction: 0,
        significant: 0,
        end: 0,
    };
    let (mut any, mut seen_dot) = (false, false);
    while let Some(&c) = s.get(m.end) {
        if let Some(d) = (c as char).to_digit(radix) {
            any = true;
            if m.significant > 0 || d != 0 {
                m.value.mul_small_add(radix, d);
                m.significant += 1;
            }
            if seen_dot {
                m.fraction += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        m.end += 1;
    }
    any.then_some(m)
}

/// The exponent after the mantissa, `marker [+-] digits` up to the end of `s` (0 when `s` ends
/// at `at`); anything else refuses the number. Saturates far past any finite value.
fn exponent(s: &[u8], at: usize, marker: u8) -> Result<i64, Refused> {
    let Some(&c) = s.get(at) else {
        return Ok(0);
    };
    if c != marker {
        return Err(Refused::NotFloat);
    }
    let (neg, digits) = match s.get(at + 1) {
        Some(b'-') => (true, &s[at + 2..]),
        Some(b'+') => (false, &s[at + 2..]),
        _ => (false, &s[at + 1..]),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Refused::NotFloat);
    }
    let e = digits
        .iter()
        .fold(0i64, |e, &d| (e * 10 + (d - b'0') as i64).min(1 << 40));
    Ok(if neg { -e } else { e })
}

impl F80 {
    const ZERO: F80 = F80 {
        neg: false,
        mant: 0,
        exp: 0,
    };

    /// `(-1)^neg * n * 2^e`, plus `sticky` (nonzero bits below `n` were dropped), rounded once.
    /// `Err(Infinite)` past the largest value; a nonzero value that rounds to zero is
    /// `Err(NotFloat)` (what `strtold`'s ERANGE to zero makes Redis answer).
    fn round(neg: bool, n: &Big, e: i64, sticky: bool) -> Result<F80, Refused> {
        let bits = n.bits() as i64;
        if bits == 0 {
            return if sticky {
                Err(Refused::NotFloat)
            } else {
                Ok(F80 { neg, ..F80::ZERO })
            };
        }
        let mut shift = bits - 64;
        if e + shift < EXP_MIN {
            shift = EXP_MIN - e;
        }
        let (mut mant, mut exp) = if shift <= 0 {
            (n.window(0) << (-shift) as u32, e + shift)
        } else {
            let s = shift as u64;
            let mut m = if s >= bits as u64 { 0 } else { n.window(s) };
            let half = n.bit(s - 1);
            let rest = sticky || n.any_below(s - 1);
            let mut x = e + shift;
            if half && (rest || m & 1 == 1) {
                match m.checked_add(1) {
                    Some(v) => m = v,
                    None => {
                        m = 1 << 63;
                        x += 1;
                    }
                }
            }
            (m, x)
        };
        if mant == 0 {
            return Err(Refused::NotFloat);
        }
        // A subnormal that rounded up into the normal range is still exact at EXP_MIN.
        if exp > EXP_MAX {
            return Err(Refused::Infinite);
        }
        if exp < EXP_MIN {
            // Unreachable by construction; keep the invariant.
            mant >>= (EXP_MIN - exp).min(63);
            exp = EXP_MIN;
        }
        Ok(F80 {
            neg,
            mant,
            exp: exp as i32,
        })
    }

    /// Reads `s` as Redis's `string2ld` does (`strtold` over the whole string, no leading
    /// space, at most 5,119 bytes; NaN and out-of-range values refused): `Err(Infinite)` only
    /// for a literal `inf` or `infinity`, which Redis reads and then refuses to add.
    pub fn parse(s: &[u8]) -> Result<F80, Refused> {
        if s.is_empty() || s.len() >= 5 * 1024 || s[0].is_ascii_whitespace() {
            return Err(Refused::NotFloat);
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = body.to_ascii_lowercase();
        if lower == b"inf" || lower == b"infinity" {
            return Err(Refused::Infinite);
        }
        // Past the largest value `strtold` answers HUGE_VAL with ERANGE: refused, not infinite.
        let finite = |r: Result<F80, Refused>| r.map_err(|_| Refused::NotFloat);
        if lower.len() > 2 && lower.starts_with(b"0x") {
            return finite(Self::parse_hex(neg, &lower[2..]));
        }
        // digits [. digits] [e [+-] digits], at least one digit in the mantissa.
        let m = mantissa(&lower, 10).ok_or(Refused::NotFloat)?;
        let exp10 = exponent(&lower, m.end, b'e')?;
        let (digits, nd, frac) = (m.value, m.significant, m.fraction);
        let k = exp10 - frac;
        if nd == 0 {
            return Ok(F80 { neg, ..F80::ZERO });
        }
        // 10^(nd + k) bounds the value: past 10^4933 it overflows, below 10^-4952 it is zero.
        if nd + k > 4933 {
            return Err(Refused::NotFloat);
        }
        if nd + k < -4952 {
            return Err(Refused::NotFloat);
        }
        if k >= 0 {
            let mut n = digits;
            n.mul_pow10(k as u64);
            return finite(F80::round(neg, &n, 0, false));
        }
        let mut p = Big::from_u128(1);
        p.mul_pow10((-k) as u64);
        // q = (digits << s) / p with 66 or 67 bits, the remainder a sticky bit; with more
        // digits than that past the divisor, the divisor is shifted up instead (s < 0: found
        // by the fuzzer, INCRBYFLOAT of 25 digits then a long fraction overflowed q).
        let s = p.bits() as i64 - digits.bits() as i64 + 66;
        let (mut r, p) = if s >= 0 {
            (digits.shl(s as u64), p)
        } else {
            (digits, p.shl((-s) as u64))
        };
        let qbits = (r.bits() as i64 - p.bits() as i64 + 1).max(0) as u64;
        let mut q: u128 = 0;
        for b in (0..qbits).rev() {
            let ps = p.shl(b);
            if r.compare(&ps) != std::cmp::Ordering::Less {
                r = r.minus(&ps);
                q |= 1u128 << b;
            }
        }
        F80::round(neg, &Big::from_u128(q), -s, !r.is_zero())
    }

    /// `strtold`'s hexadecimal form after `0x`: hex digits, an optional fraction, `p` exponent.
    fn parse_hex(neg: bool, s: &[u8]) -> Result<F80, Refused> {
        let m = mantissa(s, 16).ok_or(Refused::NotFloat)?;
        let e = exponent(s, m.end, b'p')?;
        let (n, frac) = (m.value, m.fraction * 4);
        if n.is_zero() {
            return Ok(F80 { neg, ..F80::ZERO });
        }
        let e = e - frac;
        if n.bits() as i64 + e > EXP_MAX + 64 {
            return Err(Refused::Infinite);
        }
        if n.bits() as i64 + e < EXP_MIN - 1 {
            return Err(Refused::NotFloat);
        }
        F80::round(neg, &n, e, false)
    }

    /// `self + o`, rounded once.
    pub fn plus(self, o: F80) -> Result<F80, Refused> {
        if self.mant == 0 {
            return Ok(if o.mant == 0 {
                F80 {
                    neg: self.neg && o.neg,
                    ..F80::ZERO
                }
            } else {
                o
            });
        }
        if o.mant == 0 {
            return Ok(self);
        }
        let e = self.exp.min(o.exp) as i64;
        let a = Big::from_u128(self.mant as u128).shl((self.exp as i64 - e) as u64);
        let b = Big::from_u128(o.mant as u128).shl((o.exp as i64 - e) as u64);
        if self.neg == o.neg {
            return F80::round(self.neg, &a.plus(&b), e, false);
        }
        match a.compare(&b) {
            std::cmp::Ordering::Equal => Ok(F80::ZERO),
            std::cmp::Ordering::Greater => F80::round(self.neg, &a.minus(&b), e, false),
            std::cmp::Ordering::Less => F80::round(o.neg, &b.minus(&a), e, false),
        }
    }

    /// `%.17Lf` with the trailing zeros (and a bare point) dropped, `-0` as `0`: Redis's
    /// `ld2string(..., LD_STR_HUMAN)`.
    pub fn human(self) -> String {
        let (int, frac) = if self.exp >= 0 {
            (
                Big::from_u128(self.mant as u128)
                    .shl(self.exp as u64)
                    .to_decimal(),
                0u128,
            )
        } else {
            const SCALE: u128 = 100_000_000_000_000_000;
            let prod = self.mant as u128 * SCALE;
            let sh = (-self.exp) as u32;
            let q = if sh >= 128 {
                0
            } else {
                let q = prod >> sh;
                let rem = prod & ((1u128 << sh) - 1);
                let half = 1u128 << (sh - 1);
                if rem > half || (rem == half && q & 1 == 1) {
                    q + 1
                } else {
                    q
                }
            };
            ((q / SCALE).to_string(), q % SCALE)
        };
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        s.push_str(&int);
        let f = format!("{frac:017}");
        let f = f.trim_end_matches('0');
        if !f.is_empty() {
            s.push('.');
            s.push_str(f);
        }
        if s == "-0" { "0".into() } else { s }
    }
}

/// INCRBYFLOAT's and HINCRBYFLOAT's arithmetic: `current + incr` as Redis computes and prints
/// it. `current` is read first.
/// The error's first item says what was refused: 0 `current`, 1 `incr` (not numbers), 2 the
/// sum (infinite: an operand was, or it overflowed).
pub fn add_decimal(current: &[u8], incr: &[u8]) -> Result<String, (usize, Refused)> {
    let a = F80::parse(current);
    if a == Err(Refused::NotFloat) {
        return Err((0, Refused::NotFloat));
    }
    let b = F80::parse(incr);
    if b == Err(Refused::NotFloat) {
        return Err((1, Refused::NotFloat));
    }
    match (a, b) {
        (Ok(a), Ok(b)) => a.plus(b).map(F80::human).map_err(|e| (2, e)),
        _ => Err((2, Refused::Infinite)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> String {
        add_decimal(a.as_bytes(), b.as_bytes()).unwrap()
    }

    #[test]
    fn sums_print_as_redis_server_prints_them() {
        // Each checked against redis-server 7.0's INCRBYFLOAT on x86-64.
        assert_eq!(sum("9223372036854775807", "0.5"), "9223372036854775807.5");
        assert_eq!(sum("10.5", "0.1"), "10.6");
        assert_eq!(sum("5.0e3", "2.0e2"), "5200");
        assert_eq!(sum("0", "-0"), "0");
        assert_eq!(sum("1.1", "2.2"), "3.3");
        assert_eq!(sum("12345.6789", "0.1"), "12345.77889999999999926");
        assert_eq!(sum("3", "1e-20"), "3");
        assert_eq!(sum("0", "0x10"), "16");
        assert_eq!(
            sum("18446744073709551616", "1"),
            "18446744073709551616",
            "2^64 + 1 rounds to even"
        );
        assert_eq!(sum("1e30", "0"), "1000000000000000000024696061952");
        // More digits before the point than the quotient's bits past the divisor (found by
        // the fuzzer: q's shift overflowed).
        assert_eq!(
            sum(
                "0",
                "4444444444444000000000000000000000100000000001518140749.444444444444444444444444444444444444444444444444444449444"
            ),
            "4444444444443999999968755713653888483468207572069122048"
        );
        assert_eq!(
            sum("0", "123456789012345678901234567890.5"),
            "123456789012345678899921813504"
        );
        assert_eq!(
            sum("0", "1.00000000000000000000000000000000000000000001"),
            "1"
        );
        assert_eq!(
            sum("3.7e-4951", "0"),
            "0",
            "a subnormal reads, and prints as 0"
        );
    }

    #[test]
    fn refusals_are_strtolds() {
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"abc",
            b"1e",
            b"nan",
            b"1e99999",
            b"1e-99999",
        ] {
            assert!(
                F80::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(F80::parse(b"inf"), Err(Refused::Infinite));
        assert_eq!(
            F80::parse(b"1e4933"),
            Err(Refused::NotFloat),
            "ERANGE, not inf"
        );
        assert_eq!(
            add_decimal(b"1.1e4932", b"1.1e4932"),
            Err((2, Refused::Infinite))
        );
        // The smallest subnormal parses; half of it is zero (ERANGE).
        assert!(F80::parse(b"3.7e-4951").is_ok());
        assert_eq!(F80::parse(b"1e-4952"), Err(Refused::NotFloat));
    }
}
