//! Number parsing and formatting with Redis's exact rules: `string2ll` (no leading `+`, no
//! leading zeros, no spaces, fits in i64) and `%.17g`-style doubles with `inf`/`-inf`.

/// Parses a decimal i64 the way Redis's `string2ll` does.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses a SCAN cursor as Redis 7.0 does (`strtoul`, then no leading space and nothing after
/// the digits): an optional sign, decimal digits, negative values wrapping (`-1` is 2^64 - 1),
/// the empty string 0; out of range is refused.
pub fn parse_cursor(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    strtoull_whole(s)
}

/// C's `strtoull` over the whole of `s` (no leading space taken here): an optional sign, then
/// only decimal digits, without overflow; `-` negates, wrapping.
fn strtoull_whole(s: &[u8]) -> Option<u64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Parses an unsigned 64-bit number as Redis's `string2ull` does (stream ids): what `string2ll`
/// takes if not negative, else what `strtoull` takes whole: leading white space, a `+` or `-`
/// (which negates, wrapping), then only decimal digits, without overflow.
pub fn parse_ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = parse_i64(s) {
        return u64::try_from(v).ok();
    }
    strtoull_whole(s.trim_ascii_start())
}

/// Parses a double the way Redis's `string2ld`/`strtold` accepts it: no spaces, not NaN,
/// `inf`, `+inf`, `-inf`, `infinity` accepted.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.len() > 256 {
        return None;
    }
    if s[0].is_ascii_whitespace() || s[s.len() - 1].is_ascii_whitespace() {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let lower = text.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            // Rust's parser accepts forms Redis does not ("1_0" no, but "nan" yes): reject NaN.
            let v: f64 = lower.parse().ok()?;
            if v.is_nan() {
                return None;
            }
            v
        }
    };
    Some(v)
}

/// Writes `v`'s decimal digits at the end of `buf`; returns where they start.
#[inline]
fn write_digits(mut v: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return i;
        }
    }
}

/// Writes `v` in decimal into `buf`, returning the used tail.
#[inline]
pub fn format_u64(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let i = write_digits(v, buf);
    &buf[i..]
}

/// Writes `n` in decimal into `buf`, returning the used tail.
#[inline]
pub fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = write_digits(n.unsigned_abs(), buf);
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Formats a double as Redis replies with it: `inf`, `-inf`, integers without a fraction when
/// exactly representable below 2^53, otherwise the shortest round-trip representation.
pub fn format_f64(d: f64, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    if d.is_infinite() {
        let _ = cur.write_all(if d > 0.0 { b"inf" } else { b"-inf" });
    } else if d == d.trunc() && d.abs() < 9007199254740992.0 {
        let _ = write!(cur, "{}", d as i64);
    } else {
        let _ = write!(cur, "{}", d);
    }
    let len = cur.position() as usize;
    &buf[..len]
}

/// Formats a double as C's `%.17g` does (Redis's sorted-set scores): 17 significant digits,
/// trailing zeros dropped, exponent form below 1e-4 or from 1e17 on, `inf` and `-inf`.
pub fn format_g17(d: f64) -> String {
    let mut buf = [0u8; 20];
    if let Some(text) = format_g17_integral(d, &mut buf) {
        return String::from_utf8_lossy(text).into_owned();
    }
    format_g17_general(d)
}

/// `%.17g` by float formatting: every value, slowly.
fn format_g17_general(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.16e}", d); // d.dddddddddddddddde[-]x
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let trim = |m: &str| -> String {
        if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            m.to_string()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{}{:02}", trim(mantissa), sign, exp.abs());
    }
    let decimals = (16 - exp).max(0) as usize;
    trim(&format!("{:.*}", decimals, d))
}

/// The fast path of [`format_g17`]: an integral `d` below 1e17 in magnitude prints as its integer
/// digits (what `%.17g` gives for it) without float formatting. `None` otherwise (and for -0).
#[inline]
pub fn format_g17_integral(d: f64, buf: &mut [u8; 20]) -> Option<&[u8]> {
    if d.fract() != 0.0 || d.abs() >= 1e17 || (d == 0.0 && d.is_sign_negative()) {
        return None;
    }
    Some(format_i64(d as i64, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_numbers_parse_as_string2ull_does() {
        assert_eq!(parse_ull(b"+1"), Some(1));
        assert_eq!(parse_ull(b"01"), Some(1));
        assert_eq!(parse_ull(b" 7"), Some(7));
        assert_eq!(parse_ull(b"-0"), Some(0));
        assert_eq!(parse_ull(b" -1"), Some(u64::MAX));
        assert_eq!(parse_ull(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"-1"[..],
            b"",
            b" ",
            b"1 ",
            b"18446744073709551616",
            b"0x1",
            b"+",
        ] {
            assert_eq!(parse_ull(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn cursors_parse_as_strtoul_does() {
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"010"), Some(10));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"-18446744073709551615"), Some(1));
        for bad in [
            &b"18446744073709551616"[..],
            b"-",
            b"+",
            b" 1",
            b"1 ",
            b"0x10",
            b"--1",
        ] {
            assert_eq!(
                parse_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parse_i64_follows_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"-0",
            b"1.0",
            b"-",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn parse_f64_rejects_nan_and_spaces() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b""), None);
    }

    #[test]
    fn g17_integral_fast_path_agrees_with_float_formatting() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut cases: Vec<f64> = vec![
            0.0,
            1.0,
            -1.0,
            1e16,
            -1e16,
            99_999_999_999_999_990.0,
            4503599627370497.0,
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 17) as i32;
            cases.push(
                ((x >> 8) as f64 % 10f64.powi(digits)).trunc()
                    * if x & 1 == 0 { 1.0 } else { -1.0 },
            );
        }
        for d in cases {
            let mut buf = [0u8; 20];
            if let Some(fast) = format_g17_integral(d, &mut buf) {
                assert_eq!(
                    std::str::from_utf8(fast).unwrap(),
                    format_g17_general(d),
                    "{d}"
                );
            }
        }
        assert!(format_g17_integral(-0.0, &mut [0; 20]).is_none());
        assert!(format_g17_integral(1e17, &mut [0; 20]).is_none());
        assert!(format_g17_integral(0.5, &mut [0; 20]).is_none());
    }

    #[test]
    fn g17_matches_what_redis_7_0_prints_for_scores() {
        // Read off redis-server 7.0.15: ZADD then ZSCORE.
        assert_eq!(format_g17(0.1), "0.10000000000000001");
        assert_eq!(format_g17(3.0), "3");
        assert_eq!(format_g17(1e20), "1e+20");
        assert_eq!(format_g17(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_g17(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(format_g17(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_g17(-2.5), "-2.5");
        assert_eq!(format_g17(123456.0), "123456");
    }

    #[test]
    fn formats_match_redis_replies() {
        let mut b = [0u8; 20];
        assert_eq!(format_i64(i64::MIN, &mut b), b"-9223372036854775808");
        let mut d = [0u8; 48];
        assert_eq!(format_f64(3.0, &mut d), b"3");
        assert_eq!(format_f64(10.5, &mut d), b"10.5");
        assert_eq!(format_f64(f64::INFINITY, &mut d), b"inf");
    }
}
