//! etcd mode (`--etcd`): the same closed loop, key space and value size, as puts through etcd's
//! v3 JSON gateway (`POST /v3/kv/put` over HTTP/1.1 keep-alive), so one run can compare a
//! replicated Shardline cluster with an etcd cluster using one load generator. One request in
//! flight per connection (etcd's gateway does not pipeline).

use crate::args::Options;
use crate::run::{Shared, claim};
use crate::workload::{Keys, Rng};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8], out: &mut Vec<u8>) {
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// The put of key number `k` as one HTTP request.
fn put(o: &Options, k: u64, value_b64: &[u8], body: &mut Vec<u8>, out: &mut Vec<u8>) {
    let key = format!("{}{k:012}", o.key_prefix);
    body.clear();
    body.extend_from_slice(b"{\"key\":\"");
    base64(key.as_bytes(), body);
    body.extend_from_slice(b"\",\"value\":\"");
    body.extend_from_slice(value_b64);
    body.extend_from_slice(b"\"}");
    out.extend_from_slice(
        format!(
            "POST /v3/kv/put HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            o.host,
            o.port,
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// The length of the complete HTTP response at the start of `b` and whether it was a 200;
/// `None` when more bytes are needed.
pub fn response_len(b: &[u8]) -> Result<Option<(usize, bool)>, String> {
    let Some(head_end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&b[..head_end]).map_err(|_| "non-UTF-8 HTTP header")?;
    let ok = head.starts_with("HTTP/1.1 200");
    let mut body_at = head_end + 4;
    let lower = head.to_ascii_lowercase();
    if let Some(l) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let n: usize = l.trim().parse().map_err(|_| "bad Content-Length")?;
        return Ok((b.len() >= body_at + n).then_some((body_at + n, ok)));
    }
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let Some(line_end) = b[body_at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size_text = std::str::from_utf8(&b[body_at..body_at + line_end])
                .map_err(|_| "bad chunk size")?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "bad chunk size")?;
            body_at += line_end + 2 + size + 2;
            if b.len() < body_at {
                return Ok(None);
            }
            if size == 0 {
                return Ok(Some((body_at, ok)));
            }
        }
    }
    Err(format!("HTTP response without a length: {head}"))
}

pub async fn closed_loop(
    o: Rc<Options>,
    shared: Arc<Shared>,
    seed: u64,
    hist: Rc<RefCell<Histogram<u64>>>,
) -> std::io::Result<()> {
    let keys = Keys::new(&o);
    let mut rng = Rng::new(seed);
    let mut value_b64 = Vec::new();
    base64(&vec![b'x'; o.value_size], &mut value_b64);
    let mut stream = TcpStream::connect((o.host.as_str(), o.port)).await?;
    stream.set_nodelay(true)?;
    let mut body = Vec::new();
    let mut wbuf = Vec::with_capacity(512);
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    while !shared.stop.load(Ordering::Relaxed) {
        if claim(&o, &shared, 1) == 0 {
            break;
        }
        wbuf.clear();
        put(&o, keys.sample(&mut rng), &value_b64, &mut body, &mut wbuf);
        let sent = Instant::now();
        let (res, back) = stream.write_all(wbuf).await;
        wbuf = back;
        res?;
        let ok = loop {
            match response_len(&rbuf).map_err(std::io::Error::other)? {
                Some((len, ok)) => {
                    rbuf.drain(..len);
                    break ok;
                }
                None => {
                    let chunk = Vec::with_capacity(16 * 1024);
                    let (res, chunk) = stream.read(chunk).await;
                    if res? == 0 {
                        return Err(std::io::Error::other("etcd closed the connection"));
                    }
                    rbuf.extend_from_slice(&chunk);
                }
            }
        };
        hist.borrow_mut()
            .record(sent.elapsed().as_micros().max(1) as u64)
            .ok();
        shared.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (input, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64(input, &mut out);
            assert_eq!(out, want.as_bytes());
        }
    }

    #[test]
    fn responses_are_framed_by_length_or_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra";
        assert_eq!(response_len(r), Ok(Some((r.len() - 5, true))));
        assert_eq!(response_len(&r[..r.len() - 6]), Ok(None));
        let c = b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(response_len(c), Ok(Some((c.len(), false))));
        assert_eq!(response_len(&c[..c.len() - 2]), Ok(None));
    }
}
