//! A small blocking RESP client for the node's own tools: a joining node's `CLUSTER JOIN`
//! (`cluster/join.rs`) and `shardline ctl` (`ctl.rs`). Not on any shard thread: these run
//! before the threads start, or in a separate process.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A command as RESP.
pub fn encode(args: &[&str], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

/// One reply; arrays of at most `items_max` items, nested at most 4 deep (RESP3 maps are
/// read as flat arrays).
pub fn read_reply(r: &mut impl BufRead, depth: usize, items_max: usize) -> Result<Reply, String> {
    if depth > 4 {
        return Err("a reply nested too deep".into());
    }
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or("the connection closed mid-reply")?;
    let (kind, rest) = line.split_at_checked(1).ok_or("an empty reply line")?;
    let n = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad reply line '{line}'"))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(n()?),
        "_" => Reply::Null,
        "$" if n()? < 0 => Reply::Null,
        "$" => {
            let len = usize::try_from(n()?).map_err(|_| "a bad bulk length")?;
            let mut b = vec![0; len + 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            b.truncate(len);
            Reply::Bulk(b)
        }
        "*" | "%" if n()? < 0 => Reply::Null,
        "*" | "%" => {
            let len = usize::try_from(n()?).map_err(|_| "a bad array length")?;
            let len = if kind == "%" { len * 2 } else { len };
            if len > items_max {
                return Err(format!("an array of {len} items"));
            }
            let items = (0..len)
                .map(|_| read_reply(r, depth + 1, items_max))
                .collect::<Result<_, _>>()?;
            Reply::Array(items)
        }
        _ => return Err(format!("bad reply line '{line}'")),
    })
}

/// A connection to one node.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    pub addr: SocketAddr,
}

/// The items of an array a tool reads (`CLUSTER MOVES` of many records).
const ITEMS_MAX: usize = 1 << 16;

impl Client {
    /// Connects to `addr` (host:port), authenticating with `password` when given.
    pub fn connect(addr: &str, password: Option<&str>) -> Result<Client, String> {
        let a = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))?;
        let w = TcpStream::connect_timeout(&a, Duration::from_secs(2))
            .map_err(|e| format!("cannot reach {a}: {e}"))?;
        w.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let r = BufReader::new(w.try_clone().map_err(|e| e.to_string())?);
        let mut c = Client { r, w, addr: a };
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
        self.w
            .write_all(&req)
            .map_err(|e| format!("{}: {e}", self.addr))?;
        read_reply(&mut self.r, 0, ITEMS_MAX).map_err(|e| format!("{}: {e}", self.addr))
    }
}
