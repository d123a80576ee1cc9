//! A small blocking RESP client for the node's own tools: a joining node's `CLUSTER JOIN`
//! (`cluster/join.rs`) and `shardline ctl` (`ctl.rs`), over the transport's RESP encoder and
//! decoder (`shardline_transport::resp`). Not on any shard thread: these run before the
//! threads start, or in a separate process.

use shardline_transport::resp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use shardline_transport::resp::Value as Reply;

/// A command as RESP.
pub fn encode(args: &[&str], out: &mut Vec<u8>) {
    resp::encode_command(args, out);
}

/// A reply's text (a simple or bulk string, or an integer).
pub fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Simple(s) => Some(s.clone()),
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The next reply from `r`: what `buf` holds from earlier reads first (left there: what
/// follows the reply), then more reads, refused past `bytes_max` bytes.
pub fn read_reply(r: &mut impl Read, buf: &mut Vec<u8>, bytes_max: usize) -> Result<Reply, String> {
    loop {
        if let Some((v, n)) = resp::decode(buf).map_err(|e| e.0)? {
            buf.drain(..n);
            return Ok(v);
        }
        if buf.len() >= bytes_max {
            return Err(format!("a reply of more than {bytes_max} bytes"));
        }
        let mut chunk = [0u8; 16 << 10];
        let n = r.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed mid-reply".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A connection to one node.
pub struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    pub addr: SocketAddr,
}

/// The largest reply a tool reads (`CLUSTER MOVES` of many records).
const REPLY_BYTES_MAX: usize = 16 << 20;

impl Client {
    /// Connects to `addr` (host:port), authenticating with `password` when given.
    pub fn connect(addr: &str, password: Option<&str>) -> Result<Client, String> {
        let a = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))?;
        let s = TcpStream::connect_timeout(&a, Duration::from_secs(2))
            .map_err(|e| format!("cannot reach {a}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut c = Client {
            s,
            buf: Vec::new(),
            addr: a,
        };
        if let Some(p) = password
            && let Reply::Error(e) = c.call(&["AUTH", p])?
        {
            return Err(format!("AUTH was refused: {e}"));
        }
        Ok(c)
    }

    pub fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut req = Vec::new();
        encode(args, &mut req);
        self.s
            .write_all(&req)
            .map_err(|e| format!("{}: {e}", self.addr))?;
        read_reply(&mut self.s, &mut self.buf, REPLY_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", self.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read (replies arrive in pieces).
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn replies_read_in_pieces_one_after_another_and_bounded() {
        let wire = b"+OK\r\n*2\r\n:1\r\n$3\r\nabc\r\n-ERR no\r\n";
        let (mut r, mut buf) = (Trickle(wire), Vec::new());
        assert_eq!(
            read_reply(&mut r, &mut buf, 1 << 10),
            Ok(Reply::Simple("OK".into()))
        );
        assert_eq!(
            read_reply(&mut r, &mut buf, 1 << 10),
            Ok(Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(b"abc".to_vec())
            ]))
        );
        assert_eq!(
            read_reply(&mut r, &mut buf, 1 << 10),
            Ok(Reply::Error("ERR no".into()))
        );
        assert!(read_reply(&mut r, &mut buf, 1 << 10).is_err(), "closed");
        let big = b"$100\r\n";
        assert!(read_reply(&mut &big[..], &mut Vec::new(), 4).is_err());
        assert!(read_reply(&mut &b"*1\r\n"[..], &mut Vec::new(), 1 << 10).is_err());
        assert_eq!(text(&Reply::Int(5)).as_deref(), Some("5"));
    }
}
