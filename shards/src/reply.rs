//! Replies are written straight into the connection's output buffer in RESP2 or RESP3, so that
//! the fast path allocates nothing per request. RESP3-only types degrade to their RESP2 forms
//! exactly as Redis does (maps become flat arrays, doubles become bulk strings, null becomes `$-1`).

/// Protocol version of a connection (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// A reply sink. `buf` only grows; the connection driver drains it to the socket.
#[derive(Debug, Default)]
pub struct Out {
    pub buf: Vec<u8>,
    pub proto: Proto,
    /// Error replies written so far, at any depth (an EXEC's array counts the errors in it):
    /// whoever runs a command compares this before and after to learn whether it failed,
    /// instead of reading the reply's bytes.
    pub errors: u32,
}

impl Out {
    pub fn new(proto: Proto) -> Self {
        Out {
            buf: Vec::with_capacity(256),
            proto,
            errors: 0,
        }
    }

    #[inline]
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    #[inline]
    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error. `msg` must include its prefix (`ERR ...`, `WRONGTYPE ...`) and no CR/LF.
    #[inline]
    pub fn error(&mut self, msg: &str) {
        self.errors += 1;
        self.buf.push(b'-');
        self.buf.extend_from_slice(msg.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn int(&mut self, n: i64) {
        self.buf.push(b':');
        self.push_decimal(n);
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.push(b'$');
        self.push_decimal(data.len() as i64);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `n`.
    pub fn bulk_int(&mut self, n: i64) {
        let mut tmp = [0u8; 20];
        let s = crate::num::format_i64(n, &mut tmp);
        self.bulk(s);
    }

    /// Null: `_` in RESP3, `$-1` in RESP2.
    #[inline]
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
            Proto::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
        }
    }

    /// A null array: `_` in RESP3, `*-1` in RESP2 (EXEC aborted by WATCH, for example).
    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
            Proto::Resp2 => self.buf.extend_from_slice(b"*-1\r\n"),
        }
    }

    #[inline]
    pub fn array(&mut self, len: usize) {
        self.header(b'*', len);
    }

    /// A set in RESP3 (`~`), an array in RESP2.
    pub fn set(&mut self, len: usize) {
        let t = if self.proto == Proto::Resp3 {
            b'~'
        } else {
            b'*'
        };
        self.header(t, len);
    }

    /// A map of `pairs` entries in RESP3 (`%`), a flat array of `2 * pairs` in RESP2.
    pub fn map(&mut self, pairs: usize) {
        match self.proto {
            Proto::Resp3 => self.header(b'%', pairs),
            Proto::Resp2 => self.header(b'*', pairs * 2),
        }
    }

    /// A double: `,` in RESP3, a bulk string in RESP2, formatted as Redis formats them.
    pub fn double(&mut self, d: f64) {
        let mut tmp = [0u8; 48];
        let s = crate::num::format_f64(d, &mut tmp);
        match self.proto {
            Proto::Resp3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(s);
                self.buf.extend_from_slice(b"\r\n");
            }
            Proto::Resp2 => self.bulk(s),
        }
    }

    /// A sorted-set score: a RESP3 double or a RESP2 bulk string, formatted `%.17g` as Redis does.
    pub fn score(&mut self, d: f64) {
        let mut buf = [0u8; 20];
        if let Some(digits) = crate::num::format_g17_integral(d, &mut buf) {
            return match self.proto {
                Proto::Resp3 => {
                    self.buf.push(b',');
                    self.buf.extend_from_slice(digits);
                    self.buf.extend_from_slice(b"\r\n");
                }
                Proto::Resp2 => self.bulk(digits),
            };
        }
        let text = crate::num::format_g17(d);
        match self.proto {
            Proto::Resp3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
            Proto::Resp2 => self.bulk(text.as_bytes()),
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, b: bool) {
        match self.proto {
            Proto::Resp3 => self
                .buf
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
            Proto::Resp2 => self.int(b as i64),
        }
    }

    /// A verbatim text (`=` in RESP3 with the `txt` format, bulk in RESP2), used by INFO.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.proto {
            Proto::Resp3 => {
                self.buf.push(b'=');
                self.push_decimal(text.len() as i64 + 4);
                self.buf.extend_from_slice(b"\r\ntxt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
            Proto::Resp2 => self.bulk(text),
        }
    }

    /// Bytes that already are a complete RESP value in this connection's protocol.
    /// Copies an encoded reply (another sink's, or another thread's); an error reply counts
    /// as one.
    pub fn raw(&mut self, resp: &[u8]) {
        self.errors += u32::from(resp.first() == Some(&b'-'));
        self.buf.extend_from_slice(resp);
    }

    #[inline]
    fn header(&mut self, t: u8, len: usize) {
        self.buf.push(t);
        self.push_decimal(len as i64);
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    fn push_decimal(&mut self, n: i64) {
        let mut tmp = [0u8; 20];
        let s = crate::num::format_i64(n, &mut tmp);
        self.buf.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_counts_the_error_replies_it_takes_however_they_arrive() {
        let mut o = Out::new(Proto::Resp2);
        o.bulk(b"-not an error");
        o.simple("-neither");
        o.raw(b"+OK\r\n");
        assert_eq!(o.errors, 0);
        o.array(2);
        o.error("ERR one");
        o.raw(b"-WRONGTYPE copied\r\n");
        assert_eq!(o.errors, 2);
    }

    #[test]
    fn resp2_and_resp3_differ_only_where_redis_does() {
        let mut o2 = Out::new(Proto::Resp2);
        let mut o3 = Out::new(Proto::Resp3);
        for o in [&mut o2, &mut o3] {
            o.null();
            o.map(1);
            o.bulk(b"k");
            o.double(1.5);
            o.int(-7);
        }
        assert_eq!(o2.buf, b"$-1\r\n*2\r\n$1\r\nk\r\n$3\r\n1.5\r\n:-7\r\n");
        assert_eq!(o3.buf, b"_\r\n%1\r\n$1\r\nk\r\n,1.5\r\n:-7\r\n");
    }
}
