//! RESP framing, sans-IO. [`parse_command`] cuts one client command out of a buffer, says "need
//! more bytes" (`Ok(None)`) instead of failing on a partial frame, never panics on any input, and
//! enforces the configured limits. [`value_len`] and [`decode`] read any RESP2/RESP3 value (the
//! load generator and the server's reply merging use them).

/// A span of an argument: `(start, end)` offsets into the buffer the parser was given (or into
/// the scratch buffer for inline commands).
pub type Span = (u32, u32);

/// Protocol limits, from config.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string a client may send (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one command.
    pub max_multibulk_len: usize,
    /// Longest inline command line.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A framing error. The stream cannot be resynchronised: reply with the message, then close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(msg: &str) -> Self {
        ProtocolError(format!("ERR Protocol error: {msg}"))
    }
}

/// One complete command found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of the buffer this command used.
    pub consumed: usize,
    /// The spans index `scratch` (an inline command with quoting) rather than the input buffer.
    pub in_scratch: bool,
}

/// Parses one command from the front of `buf`. On success the argument spans are in `spans`
/// (cleared first). An empty command (`*0`, `*-1`, a blank inline line) yields a frame with no
/// spans, which the caller skips. `Ok(None)`: more bytes are needed.
pub fn parse_command(
    buf: &[u8],
    limits: &Limits,
    spans: &mut Vec<Span>,
    scratch: &mut Vec<u8>,
) -> Result<Option<Frame>, ProtocolError> {
    spans.clear();
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        parse_multibulk(buf, limits, spans)
    } else {
        parse_inline(buf, limits, spans, scratch)
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let off = memchr(b'\r', &buf[i..])?;
        let pos = i + off;
        if pos + 1 < buf.len() {
            if buf[pos + 1] == b'\n' {
                return Some(pos);
            }
            i = pos + 1;
        } else {
            return None;
        }
    }
    None
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a decimal length line `digits` (optionally negative) strictly.
fn parse_len(s: &[u8]) -> Option<i64> {
    // Up to 19 digits and a sign: every i64, -9223372036854775808 included (an integer reply
    // of a negative 19-digit number was refused as malformed, and a proxy or an EXEC that read
    // it could not find the end of the reply).
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, d) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    // Accumulated negative, so i64::MIN fits.
    let mut v: i64 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((b - b'0') as i64)?;
    }
    if neg { Some(v) } else { v.checked_neg() }
}

/// How far a header line may run without its CRLF before the client is cut off.
const HEADER_LINE_MAX: usize = 64 * 1024;

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    spans: &mut Vec<Span>,
) -> Result<Option<Frame>, ProtocolError> {
    let Some(eol) = find_crlf(buf, 1) else {
        if buf.len() > HEADER_LINE_MAX {
            return Err(ProtocolError::new("too big mbulk count string"));
        }
        return Ok(None);
    };
    let count =
        parse_len(&buf[1..eol]).ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
    if count > limits.max_multibulk_len as i64 {
        return Err(ProtocolError::new("invalid multibulk length"));
    }
    let mut pos = eol + 2;
    if count <= 0 {
        return Ok(Some(Frame {
            consumed: pos,
            in_scratch: false,
        }));
    }
    if buf.len() > u32::MAX as usize {
        return Err(ProtocolError::new("query buffer too large"));
    }
    for _ in 0..count {
        if pos >= buf.len() {
            spans.clear();
            return Ok(None);
        }
        if buf[pos] != b'$' {
            let got = buf[pos] as char;
            return Err(ProtocolError(format!(
                "ERR Protocol error: expected '$', got '{}'",
                got.escape_default()
            )));
        }
        let Some(eol) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > HEADER_LINE_MAX {
                return Err(ProtocolError::new("too big bulk count string"));
            }
            spans.clear();
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..eol])
            .ok_or_else(|| ProtocolError::new("invalid bulk length"))?;
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(ProtocolError::new("invalid bulk length"));
        }
        let start = eol + 2;
        let end = start + len as usize;
        if end + 2 > buf.len() {
            spans.clear();
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::new("bulk string not terminated by CRLF"));
        }
        spans.push((start as u32, end as u32));
        pos = end + 2;
    }
    Ok(Some(Frame {
        consumed: pos,
        in_scratch: false,
    }))
}

/// The number of bytes a partial multibulk command needs at least, to let the driver size its
/// read buffer for a large bulk. `None` if unknown.
pub fn bytes_needed(buf: &[u8]) -> Option<usize> {
    // Walk the complete headers; the first incomplete bulk tells the size.
    if buf.first() != Some(&b'*') {
        return None;
    }
    let eol = find_crlf(buf, 1)?;
    let count = parse_len(&buf[1..eol])?;
    let mut pos = eol + 2;
    for _ in 0..count {
        if pos >= buf.len() || buf[pos] != b'$' {
            return None;
        }
        let eol = find_crlf(buf, pos + 1)?;
        let len = parse_len(&buf[pos + 1..eol])?;
        let end = eol + 2 + len.max(0) as usize + 2;
        if end > buf.len() {
            return Some(end);
        }
        pos = end;
    }
    None
}

fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    spans: &mut Vec<Span>,
    scratch: &mut Vec<u8>,
) -> Result<Option<Frame>, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::new("too big inline request"));
        }
        return Ok(None);
    };
    if nl > limits.max_inline_len {
        return Err(ProtocolError::new("too big inline request"));
    }
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    scratch.clear();
    split_inline(line, spans, scratch)?;
    if spans.len() > limits.max_multibulk_len {
        return Err(ProtocolError::new("invalid multibulk length"));
    }
    Ok(Some(Frame {
        consumed: nl + 1,
        in_scratch: true,
    }))
}

/// Splits an inline line into arguments with `sdssplitargs` rules: whitespace separates, double
/// quotes allow `\n \r \t \b \a \\ \" \xHH` escapes, single quotes allow `\'`; a closing quote
/// must be followed by whitespace or the end of the line.
fn split_inline(
    line: &[u8],
    spans: &mut Vec<Span>,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let unbalanced = || ProtocolError::new("unbalanced quotes in request");
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = out.len() as u32;
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            if in_dq {
                if i >= line.len() {
                    return Err(unbalanced());
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    out.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 4;
                    continue;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    out.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
                i += 1;
            } else if in_sq {
                if i >= line.len() {
                    return Err(unbalanced());
                }
                let c = line[i];
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    out.push(b'\'');
                    i += 2;
                    continue;
                } else if c == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
            } else {
                if i >= line.len() {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => out.push(c),
                }
                i += 1;
            }
        }
        spans.push((start, out.len() as u32));
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// A decoded RESP2/RESP3 value (clients, tests, and merging replies).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    Double(f64),
    Bool(bool),
    Verbatim(String),
    BigNumber(String),
}

/// Most nesting a reply may have before it is treated as malformed.
const DEPTH_MAX: usize = 64;

/// The length of the complete RESP value at the front of `buf`, `Ok(None)` if incomplete.
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    walk(buf, 0, 0, &mut None)
}

/// Decodes the complete RESP value at the front of `buf` and its length.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut v = Some(Vec::new());
    match walk(buf, 0, 0, &mut v)? {
        None => Ok(None),
        Some(n) => Ok(Some((
            v.and_then(|mut v| v.pop()).expect("walk pushes one value"),
            n,
        ))),
    }
}

/// Walks one value starting at `pos`; returns its end. When `sink` is `Some`, pushes the decoded
/// value onto it.
fn walk(
    buf: &[u8],
    pos: usize,
    depth: usize,
    sink: &mut Option<Vec<Value>>,
) -> Result<Option<usize>, ProtocolError> {
    if depth > DEPTH_MAX {
        return Err(ProtocolError::new("reply nested too deep"));
    }
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let push = |sink: &mut Option<Vec<Value>>, v: Value| {
        if let Some(s) = sink {
            s.push(v)
        }
    };
    match buf[pos] {
        b'+' => push(sink, Value::Simple(text())),
        b'-' => push(sink, Value::Error(text())),
        b':' => push(
            sink,
            Value::Int(parse_len(line).ok_or_else(|| ProtocolError::new("bad integer"))?),
        ),
        b'_' => push(sink, Value::Null),
        b'#' => push(sink, Value::Bool(line == b"t")),
        b',' => push(sink, Value::Double(text().parse().unwrap_or(f64::NAN))),
        b'(' => push(sink, Value::BigNumber(text())),
        b'$' | b'=' | b'!' => {
            let len = parse_len(line).ok_or_else(|| ProtocolError::new("invalid bulk length"))?;
            if len < 0 {
                push(sink, Value::Null);
                return Ok(Some(next));
            }
            let end = next + len as usize;
            if end + 2 > buf.len() {
                return Ok(None);
            }
            let data = &buf[next..end];
            match buf[pos] {
                b'$' => push(sink, Value::Bulk(data.to_vec())),
                b'!' => push(
                    sink,
                    Value::Error(String::from_utf8_lossy(data).into_owned()),
                ),
                _ => push(
                    sink,
                    Value::Verbatim(
                        String::from_utf8_lossy(data.get(4..).unwrap_or(b"")).into_owned(),
                    ),
                ),
            }
            return Ok(Some(end + 2));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let len =
                parse_len(line).ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
            if len < 0 {
                push(sink, Value::Null);
                return Ok(Some(next));
            }
            let items = if matches!(buf[pos], b'%' | b'|') {
                len as usize * 2
            } else {
                len as usize
            };
            let mut inner: Option<Vec<Value>> =
                sink.as_ref().map(|_| Vec::with_capacity(items.min(1024)));
            let mut p = next;
            for _ in 0..items {
                match walk(buf, p, depth + 1, &mut inner)? {
                    Some(e) => p = e,
                    None => return Ok(None),
                }
            }
            if let Some(inner) = inner {
                let v = match buf[pos] {
                    b'*' => Value::Array(inner),
                    b'~' => Value::Set(inner),
                    b'>' => Value::Push(inner),
                    _ => {
                        let mut it = inner.into_iter();
                        let mut pairs = Vec::new();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            pairs.push((k, v));
                        }
                        Value::Map(pairs)
                    }
                };
                push(sink, v);
            }
            return Ok(Some(p));
        }
        other => {
            return Err(ProtocolError(format!(
                "ERR Protocol error: unknown reply type '{}'",
                (other as char).escape_default()
            )));
        }
    }
    Ok(Some(next))
}

/// Encodes `args` as a RESP multibulk command (clients).
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests;
