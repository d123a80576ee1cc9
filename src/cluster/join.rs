//! Joining a running cluster (`cluster-join`): before the shard threads start, the node sends
//! `CLUSTER JOIN <client> <bus> <threads> <vshards> <wire-min> <wire-max> [<time> <proof>]` to
//! the member it was given (the proof, of the cluster's secret, when it holds one:
//! `secure.rs`), follows `-NOTLEADER` to the metadata group's leader, retries `-TRYAGAIN`, and keeps
//! the answer (cluster id, its member id, the members) in `cluster.conf` in its data
//! directory. Later starts read that file and never ask again; joining twice from the same
//! address is answered with the same id anyway.

use super::NodeId;
use super::secure::Security;
use crate::client::{Reply, encode, read_reply};
use crate::config::Config;
use shardline_transport::frame::{WIRE_MAX, WIRE_MIN};
use shardline_transport::tls::ExchangeError;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub const FILE: &str = "cluster.conf";
/// How long a joining node keeps retrying while the cluster has no metadata leader.
const PATIENCE: Duration = Duration::from_secs(60);
/// `-NOTLEADER` redirects followed before giving up (leadership moving all the while).
const HOPS_MAX: usize = 16;
/// The largest answer to a join read (its member list).
const REPLY_BYTES_MAX: usize = 1 << 20;

/// What a node that joined knows of its cluster before its metadata replica catches up.
#[derive(Debug, PartialEq, Eq)]
pub struct Joined {
    pub cluster_id: [u8; 16],
    pub me: NodeId,
    pub rf: u8,
    /// `(id, client, bus)`.
    pub members: Vec<(NodeId, SocketAddr, SocketAddr)>,
}

/// This node's bus address when it joins.
pub fn bus_addr(cfg: &Config) -> SocketAddr {
    cfg.cluster_bus_addr.unwrap_or_else(|| {
        let me = cfg.listen_addr();
        SocketAddr::new(me.ip(), me.port() + super::BUS_PORT_OFFSET)
    })
}

/// The membership kept from an earlier join, or a new one asked of `cluster-join`.
pub fn load_or_join(cfg: &Config, security: &Security) -> Result<Joined, String> {
    let path = cfg.data_dir.join(FILE);
    if path.exists() {
        return read(&path);
    }
    let seed = cfg.cluster_join.ok_or("cluster-join is not set")?;
    let j = ask(cfg, seed, security)?;
    keep(cfg, seed, j)
}

/// Checks the cluster's answer names this node and keeps it in `cluster.conf`.
fn keep(cfg: &Config, seed: SocketAddr, j: Joined) -> Result<Joined, String> {
    let path = cfg.data_dir.join(FILE);
    if j.members
        .iter()
        .all(|&(id, client, _)| id != j.me || client != cfg.listen_addr())
    {
        return Err(format!(
            "the cluster at {seed} answered with member id {} but does not list this node's address {} under it",
            j.me,
            cfg.listen_addr()
        ));
    }
    write(&path, &j)?;
    tracing::info!(id = %j.me, members = j.members.len(), "joined the cluster");
    Ok(j)
}

fn ask(cfg: &Config, seed: SocketAddr, security: &Security) -> Result<Joined, String> {
    let mut req = Vec::new();
    let mut target = seed;
    let mut hops = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        req.clear();
        let mut args = vec![
            "CLUSTER".to_string(),
            "JOIN".to_string(),
            cfg.listen_addr().to_string(),
            bus_addr(cfg).to_string(),
            cfg.cores.len().to_string(),
            cfg.vshards.to_string(),
            WIRE_MIN.to_string(),
            WIRE_MAX.to_string(),
        ];
        // A proof that this node holds the cluster's secret, made afresh each try (it is good
        // for `secure::JOIN_SKEW_S` around the member's clock).
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        args.extend(
            security
                .join_proof(cfg.listen_addr(), bus_addr(cfg), now_s)
                .into_iter()
                .flatten(),
        );
        // Under the cluster's TLS the member knows a node of the cluster by its certificate
        // (whatever its ACL users say of the default user); in clear it authenticates as the
        // default user with requirepass.
        let auth = cfg.requirepass.as_ref().filter(|_| security.tls.is_none());
        if let Some(pass) = auth {
            encode(&["AUTH", pass], &mut req);
        }
        encode(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &mut req,
        );
        let answer = exchange(target, &req, auth.is_some(), security.tls.as_deref());
        let retry = match answer {
            Ok(Reply::Error(e)) if e.starts_with("NOTLEADER ") && hops < HOPS_MAX => {
                let addr = e.split_whitespace().nth(1).unwrap_or_default();
                target = addr
                    .parse()
                    .map_err(|_| format!("{target} redirected the join to '{addr}'"))?;
                hops += 1;
                continue;
            }
            Ok(Reply::Error(e)) if e.starts_with("TRYAGAIN") => e,
            Ok(Reply::Error(e)) => return Err(format!("the cluster at {target} refused: {e}")),
            Ok(r) => return parse_answer(&r).map_err(|e| format!("{target}: {e}")),
            Err(ExchangeError::Refused(e)) => {
                return Err(format!("the cluster at {target} refused this node: {e}"));
            }
            Err(ExchangeError::Failed(e)) => format!("cannot reach {target}: {e}"),
        };
        if Instant::now() > deadline {
            return Err(format!("could not join within {PATIENCE:?}: {retry}"));
        }
        tracing::info!(%target, "joining: {retry}; retrying");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A joining node's reading of `CLUSTER JOIN`'s answer `reply` (RESP) from `seed`, kept as
/// `load_or_join` keeps it: the simulator's joins, which carry the request themselves.
#[cfg(test)]
pub(crate) fn accept(cfg: &Config, seed: SocketAddr, reply: &[u8]) -> Result<Joined, String> {
    let r = read_reply(&mut &reply[..], &mut Vec::new(), REPLY_BYTES_MAX)?;
    keep(cfg, seed, parse_answer(&r)?)
}

/// Sends `req` and reads the last reply (after AUTH's, when `auth`); under the cluster's TLS
/// when the node has it (the member must present a certificate of the cluster's CA naming
/// the address dialed, and this node presents its own).
fn exchange(
    to: SocketAddr,
    req: &[u8],
    auth: bool,
    tls: Option<&shardline_transport::tls::ClusterTls>,
) -> Result<Reply, ExchangeError> {
    let fail = |e: std::io::Error| ExchangeError::Failed(e.to_string());
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let read = |r: &mut dyn std::io::Read| {
        let mut r = r;
        let mut buf = Vec::new();
        if auth && let Reply::Error(e) = read_reply(&mut r, &mut buf, REPLY_BYTES_MAX)? {
            return Err(format!("AUTH was refused: {e}"));
        }
        read_reply(&mut r, &mut buf, REPLY_BYTES_MAX)
    };
    use shardline_transport::tls;
    match tls {
        Some(tls) => {
            let name = tls::member_name(to);
            tls::exchange_blocking(tls, &name, &mut s, req, read)
        }
        None => {
            s.write_all(req).map_err(fail)?;
            read(&mut s).map_err(ExchangeError::Failed)
        }
    }
}

/// `[cluster id (hex), id, vShards, rf, [[id, client, bus, threads]...]]`.
fn parse_answer(r: &Reply) -> Result<Joined, String> {
    let bad = || format!("an answer to CLUSTER JOIN that is not understood: {r:?}");
    let Reply::Array(a) = r else {
        return Err(bad());
    };
    let [
        Reply::Bulk(id),
        Reply::Int(me),
        Reply::Int(_),
        Reply::Int(rf),
        Reply::Array(ms),
    ] = &a[..]
    else {
        return Err(bad());
    };
    let cluster_id = parse_hex(std::str::from_utf8(id).map_err(|_| bad())?).ok_or_else(bad)?;
    let mut members = Vec::new();
    for m in ms {
        let Reply::Array(m) = m else {
            return Err(bad());
        };
        let [
            Reply::Int(id),
            Reply::Bulk(client),
            Reply::Bulk(bus),
            Reply::Int(_),
        ] = &m[..]
        else {
            return Err(bad());
        };
        let addr = |b: &[u8]| -> Result<SocketAddr, String> {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        members.push((member_id(*id).ok_or_else(bad)?, addr(client)?, addr(bus)?));
    }
    Ok(Joined {
        cluster_id,
        me: member_id(*me).ok_or_else(bad)?,
        rf: u8::try_from(*rf).map_err(|_| bad())?,
        members,
    })
}

fn member_id(x: i64) -> Option<NodeId> {
    (1..=super::NODES_MAX as i64)
        .contains(&x)
        .then_some(NodeId(x as u64))
}

fn parse_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn write(path: &Path, j: &Joined) -> Result<(), String> {
    let mut text = String::from("# Written when this node joined its cluster. Do not edit.\n");
    let hex = super::cluster_id_hex(&j.cluster_id);
    text.push_str(&format!("cluster-id {hex}\nme {}\nrf {}\n", j.me, j.rf));
    for (id, client, bus) in &j.members {
        text.push_str(&format!("member {id} {client} {bus}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read(path: &Path) -> Result<Joined, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut j = Joined {
        cluster_id: [0; 16],
        me: NodeId(0),
        rf: 0,
        members: Vec::new(),
    };
    let mut have_id = false;
    for (n, line) in text.lines().enumerate() {
        let bad = || {
            format!(
                "{} line {}: '{line}' is not understood; the file is damaged: move the data directory away and join again",
                path.display(),
                n + 1
            )
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["cluster-id", hex] => {
                j.cluster_id = parse_hex(hex).ok_or_else(bad)?;
                have_id = true;
            }
            ["me", id] => j.me = id.parse().ok().and_then(member_id).ok_or_else(bad)?,
            ["rf", rf] => j.rf = rf.parse().map_err(|_| bad())?,
            ["member", id, client, bus] => j.members.push((
                id.parse().ok().and_then(member_id).ok_or_else(bad)?,
                client.parse().map_err(|_| bad())?,
                bus.parse().map_err(|_| bad())?,
            )),
            _ => return Err(bad()),
        }
    }
    if !have_id || j.me == NodeId(0) || j.rf == 0 || !j.members.iter().any(|m| m.0 == j.me) {
        return Err(format!(
            "{}: incomplete (a cluster-id, me, rf and this node's member line are needed); move the data directory away and join again",
            path.display()
        ));
    }
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Joined {
        Joined {
            cluster_id: [0xab; 16],
            me: NodeId(4),
            rf: 3,
            members: vec![
                (
                    NodeId(1),
                    "127.0.0.1:7001".parse().unwrap(),
                    "127.0.0.1:17001".parse().unwrap(),
                ),
                (
                    NodeId(4),
                    "127.0.0.1:7004".parse().unwrap(),
                    "127.0.0.1:17004".parse().unwrap(),
                ),
            ],
        }
    }

    #[test]
    fn the_membership_file_round_trips_and_damage_names_the_line() {
        let dir = std::env::temp_dir().join(format!("shardline-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), sample());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("me 4", "me x")).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("line 3") && e.contains("me x"), "{e}");
        std::fs::write(&path, text.replace("me 4", "me 2")).unwrap();
        assert!(read(&path).unwrap_err().contains("incomplete"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn join_answers_parse_and_malformed_ones_are_refused() {
        let wire = b"*5\r\n$32\r\nabababababababababababababababab\r\n:4\r\n:256\r\n:3\r\n*2\r\n*4\r\n:1\r\n$14\r\n127.0.0.1:7001\r\n$15\r\n127.0.0.1:17001\r\n:2\r\n*4\r\n:4\r\n$14\r\n127.0.0.1:7004\r\n$15\r\n127.0.0.1:17004\r\n:2\r\n";
        let r = read_reply(&mut &wire[..], &mut Vec::new(), REPLY_BYTES_MAX).unwrap();
        assert_eq!(parse_answer(&r).unwrap(), sample());
        let r = read_reply(
            &mut &b"*2\r\n:1\r\n:2\r\n"[..],
            &mut Vec::new(),
            REPLY_BYTES_MAX,
        )
        .unwrap();
        assert!(parse_answer(&r).unwrap_err().contains("not understood"));
        assert!(read_reply(&mut &b"*1\r\n"[..], &mut Vec::new(), REPLY_BYTES_MAX).is_err());
        assert_eq!(
            read_reply(
                &mut &b"-NOTLEADER 127.0.0.1:7002 x\r\n"[..],
                &mut Vec::new(),
                REPLY_BYTES_MAX
            )
            .unwrap(),
            Reply::Error("NOTLEADER 127.0.0.1:7002 x".into())
        );
    }
}
