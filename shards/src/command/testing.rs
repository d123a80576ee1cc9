//! Test harness: a keyspace, a clock and an RNG; commands given as text, replies returned as the
//! exact RESP text the client would read.

use super::{Args, Ctx, execute};
use crate::db::Db;
use crate::reply::{Out, Proto};
use crate::rng::Rng;
use crate::slot::VShardLayout;

pub struct Harness {
    pub db: Db,
    pub now_ms: u64,
    pub rng: Rng,
    pub proto: Proto,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            db: Db::new_all(VShardLayout::new(256).unwrap()),
            now_ms: 1_700_000_000_000,
            rng: Rng::new(7),
            proto: Proto::Resp2,
        }
    }

    /// Runs one command given as arguments.
    pub fn run_args(&mut self, argv: &[&[u8]]) -> String {
        String::from_utf8_lossy(&self.run_raw(argv)).into_owned()
    }

    /// Runs one command; the reply's exact bytes.
    pub fn run_raw(&mut self, argv: &[&[u8]]) -> Vec<u8> {
        let (buf, spans) = buf_and_spans(argv);
        let mut out = Out::new(self.proto);
        let mut ctx = Ctx {
            now_ms: self.now_ms,
            now_us: self.now_ms * 1000,
            rng: &mut self.rng,
        };
        execute(&mut self.db, Args::new(&buf, &spans), &mut ctx, &mut out);
        out.buf
    }

    /// Runs one command given as space-separated words.
    pub fn run(&mut self, line: &str) -> String {
        let words: Vec<&[u8]> = line.split_whitespace().map(|w| w.as_bytes()).collect();
        self.run_args(&words)
    }
}

pub(crate) use super::options::buf_and_spans;

/// Every key's `TYPE`, dump of contents, and TTL, as replies: equal dumps mean equal data.
pub fn contents(h: &mut Harness, keys: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for k in keys {
        let ty = h.run(&format!("TYPE {k}"));
        let body = match ty.as_str() {
            "+string\r\n" => h.run(&format!("GET {k}")),
            "+hash\r\n" => {
                let mut lines: Vec<String> = h
                    .run(&format!("HGETALL {k}"))
                    .split("\r\n")
                    .map(String::from)
                    .collect();
                lines.sort();
                lines.join("|")
            }
            "+list\r\n" => h.run(&format!("LRANGE {k} 0 -1")),
            "+set\r\n" => {
                let mut lines: Vec<String> = h
                    .run(&format!("SMEMBERS {k}"))
                    .split("\r\n")
                    .map(String::from)
                    .collect();
                lines.sort();
                lines.join("|")
            }
            "+zset\r\n" => h.run(&format!("ZRANGE {k} 0 -1 WITHSCORES")),
            "+stream\r\n" => format!(
                "{}{}{}{}",
                h.run(&format!("XRANGE {k} - +")),
                h.run(&format!("XINFO STREAM {k}")),
                h.run(&format!("XINFO GROUPS {k}")),
                h.run(&format!("XPENDING {k} g - + 100"))
            ),
            _ => String::new(),
        };
        out.push(format!("{k} {ty} {body} {}", h.run(&format!("PTTL {k}"))));
    }
    out
}

/// RESP text of a bulk string.
pub fn bulk(s: &str) -> String {
    format!("${}\r\n{}\r\n", s.len(), s)
}

/// RESP text of an error.
pub fn error(s: &str) -> String {
    format!("-{s}\r\n")
}

pub const OK: &str = "+OK\r\n";

/// RESP text of an array of bulk strings.
pub fn arr(items: &[&str]) -> String {
    let mut s = format!("*{}\r\n", items.len());
    for i in items {
        s.push_str(&bulk(i));
    }
    s
}
pub const NIL: &str = "$-1\r\n";

pub fn int(n: i64) -> String {
    format!(":{n}\r\n")
}

/// Runs a SCAN-family command from cursor 0 to the end; returns the items of every call. `cmd`
/// builds the command for a cursor.
pub fn scan_all(h: &mut Harness, cmd: impl Fn(&str) -> String) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut items = Vec::new();
    loop {
        let r = h.run(&cmd(&cursor));
        let lines: Vec<&str> = r.split("\r\n").collect();
        cursor = lines[2].to_string();
        items.extend(
            lines[4..]
                .iter()
                .skip(1)
                .step_by(2)
                .filter(|l| !l.is_empty())
                .map(|l| l.to_string()),
        );
        if cursor == "0" {
            return items;
        }
    }
}
