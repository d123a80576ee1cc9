//! A misbehaving member on the cluster bus (issue 15, section 5): a process that passes the
//! handshake as a stopped member and sends every message kind with hostile fields (terms and
//! indexes at the bounds, appends of garbage entries, snapshot chunks that do not add up or do
//! not decode, hints and removal notices of any bytes, messages for groups nobody drives) and
//! malformed frames. The real nodes must stay up and answer every client command.
//!
//! Raft does not survive a Byzantine member: one that votes twice, acknowledges what it does not
//! hold or pushes terms to their limit can make a vShard lose writes or stay without a leader.
//! So neither data nor availability is checked here, only that no input from a peer ends or
//! stalls a node (docs/design/hardening.md; authenticating members is issue 20's).

mod common;

use bytes::Bytes;
use common::cluster::TestCluster;
use shardline_shards::raft::{Entry, LogId, Msg, codec};
use shardline_shards::rng::Rng;
use shardline_transport::frame::{self, Frame, Hello, Message, WIRE_MAX, WIRE_MIN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn hello(cluster_id: [u8; 16], member: u64, threads: u16) -> Vec<u8> {
    let mut node_id = [0u8; 20];
    node_id[..8].copy_from_slice(&member.to_le_bytes());
    node_id[8..10].copy_from_slice(&threads.to_le_bytes());
    let mut out = Vec::new();
    frame::encode_hello(
        &Hello {
            wire_min: WIRE_MIN,
            wire_max: WIRE_MAX,
            cluster_id,
            node_id,
            shard: 0,
        },
        &mut out,
    );
    out
}

/// Reads one frame (a handshake's answer).
fn answer(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match frame::decode(&buf, 1 << 20) {
            Ok(Some((_, n))) => return Some(buf[..n].to_vec()),
            Ok(None) => {}
            Err(_) => return None,
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to a node's bus as member `member`: the socket after its `Hello` answer.
fn connect(addr: &str, cluster_id: [u8; 16], member: u64) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(&hello(cluster_id, member, 1)).ok()?;
    let a = answer(&mut s)?;
    matches!(frame::decode(&a, 1 << 20), Ok(Some((Frame::Hello(_), _)))).then_some(s)
}

fn term(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => u64::MAX,
        1 => u64::MAX >> rng.below(20),
        2 => 0,
        _ => rng.below(50),
    }
}

fn index(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => u64::MAX - rng.below(3),
        1 => 0,
        _ => rng.below(20_000),
    }
}

fn bytes(rng: &mut Rng, most: u64) -> Bytes {
    let n = rng.below(most + 1) as usize;
    Bytes::from((0..n).map(|_| rng.below(256) as u8).collect::<Vec<u8>>())
}

/// A Raft message of a random kind with hostile fields.
fn message(rng: &mut Rng) -> Msg {
    let log = |rng: &mut Rng| LogId {
        term: term(rng),
        index: index(rng),
    };
    match rng.below(10) {
        0 => Msg::Vote {
            term: term(rng),
            last: log(rng),
        },
        1 => Msg::VoteReply {
            term: term(rng),
            granted: rng.below(2) == 0,
        },
        2 | 3 => {
            let prev = log(rng);
            let entries = (0..rng.below(4))
                .map(|i| Entry {
                    term: term(rng),
                    index: prev.index.wrapping_add(1 + i),
                    data: bytes(rng, 64),
                })
                .collect();
            Msg::Append {
                term: term(rng),
                prev,
                entries,
                commit: index(rng),
                quiet: rng.below(2) == 0,
                ctx: index(rng),
            }
        }
        4 => Msg::AppendReply {
            term: term(rng),
            success: rng.below(2) == 0,
            last: index(rng),
            ctx: index(rng),
        },
        5 | 6 => {
            let total = [0, 10, 1 << 20, u64::MAX][rng.below(4) as usize];
            Msg::Snapshot {
                term: term(rng),
                last: log(rng),
                offset: [0, 0, 5, total][rng.below(4) as usize],
                total,
                data: bytes(rng, 200),
            }
        }
        7 => Msg::SnapshotAck {
            term: term(rng),
            last: index(rng),
            offset: index(rng),
        },
        8 => Msg::PreVote {
            term: term(rng),
            last: log(rng),
        },
        _ => match rng.below(2) {
            0 => Msg::PreVoteReply {
                term: term(rng),
                granted: true,
            },
            _ => Msg::TimeoutNow { term: term(rng) },
        },
    }
}

/// One batch frame: messages for real and unknown groups, the hints and removal kinds, raw
/// bytes where a message belongs; now and then a frame damaged on purpose.
fn batch(rng: &mut Rng, groups: u32) -> Vec<u8> {
    let mut payloads = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let group = match rng.below(10) {
            0 => u32::MAX,     // hints
            1 => u32::MAX - 1, // removal notices
            2 => rng.below(u32::MAX as u64) as u32,
            3 => groups, // the metadata group
            _ => rng.below(groups as u64) as u32,
        };
        let payload = if group >= u32::MAX - 1 || rng.below(8) == 0 {
            bytes(rng, 80).to_vec()
        } else {
            let mut p = Vec::new();
            codec::encode(&message(rng), &mut p);
            p
        };
        ids.push(group);
        payloads.push(payload);
    }
    let msgs: Vec<Message> = ids
        .iter()
        .zip(&payloads)
        .map(|(&group, p)| Message { group, payload: p })
        .collect();
    let mut out = Vec::new();
    frame::encode_batch(&msgs, &mut out);
    match rng.below(40) {
        0 => {
            let at = rng.below(out.len() as u64) as usize;
            out[at] ^= 0x40; // a checksum or a field broken
        }
        1 => out.truncate(out.len() / 2), // cut: the node waits for the rest, then a new frame
        2 => out[..4].copy_from_slice(&(u32::MAX).to_le_bytes()), // a length past the limit
        _ => {}
    }
    out
}

#[test]
fn a_misbehaving_member_on_the_bus_ends_no_node() {
    let mut c = TestCluster::start(3, false, &[]);
    {
        let mut conn = c.client().get_connection().unwrap();
        for i in 0..200 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query(&mut conn)
                .unwrap();
        }
    }
    // Member 3 stops; the impostor takes its place. A refused hello tells the cluster id.
    c.kill(2);
    let mut s = TcpStream::connect(c.bus_addr(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(&hello([0; 16], 3, 1)).unwrap();
    let refused = answer(&mut s).expect("an answer to a wrong cluster id");
    let Ok(Some((Frame::Refused(r), _))) = frame::decode(&refused, 1 << 20) else {
        panic!("not refused: {refused:?}");
    };
    let cluster_id = r.cluster_id;
    let groups = 64; // vShards of a test cluster (its default)
    let mut rng = Rng::new(0xb05);
    let mut sent = 0;
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        for node in 0..2 {
            let Some(mut s) = connect(&c.bus_addr(node), cluster_id, 3) else {
                reconnects += 1;
                continue;
            };
            for _ in 0..50 {
                if s.write_all(&batch(&mut rng, groups)).is_err() {
                    break;
                }
                sent += 1;
            }
        }
        c.assert_running();
    }
    eprintln!("{sent} hostile frames sent, {reconnects} refused or failed connections");
    assert!(sent > 1000, "{sent}");
    c.assert_running();
    // Both nodes still answer clients at once, and every command gets an answer (a write to a
    // vShard the impostor left without a leader is refused with TRYAGAIN or redirected, never
    // left hanging).
    let answered = |c: &TestCluster, node: usize| {
        let mut conn = redis::Client::open(c.url(node))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
        assert_eq!(pong, "PONG");
        for i in 0..50 {
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(1)
                .query(&mut conn);
            if let Err(e) = r {
                assert!(
                    !e.is_timeout() && !e.is_io_error(),
                    "node {node}: SET k{i}: {e}"
                );
            }
        }
    };
    for node in 0..2 {
        answered(&c, node);
    }
    // The real member back: every node up and answering.
    c.spawn(2);
    std::thread::sleep(Duration::from_secs(2));
    for node in 0..3 {
        answered(&c, node);
    }
    c.assert_running();
}
