//! The cluster bus: the node's policy on the node-to-node link (`shardline_transport::link`)
//! and the shard threads' dialers and readers on its TCP implementation. Shard thread `i` of
//! this node talks to shard thread `i` of every peer; each side dials the other and writes only
//! on the connection it dialed; it reads on the ones peers dialed. The acceptor judges a
//! peer's `Hello` (`check_hello`: cluster id, wire version, member id, shard threads) and hands
//! the socket to the named shard thread; a refused peer is told why (a `Refused` frame) and the
//! reason is logged on both sides. The simulator connects its nodes through the same `judge`,
//! `take_answer` and `deliver`. A dialer refused as removed by a member of its own cluster retires
//! (`Cluster::retire`): it was removed while it was away and what it holds is stale.

use super::replica::Replicas;
use super::{Cluster, NodeId, Retired};
use crate::shard::Shard;
use shardline_transport::frame::{self, Hello, Refused, WIRE_MAX, WIRE_MIN};
use shardline_transport::link::{Answer, Frames, tcp};
use shardline_transport::tls::CertificateDer;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Our `Hello` as shard thread `shard`: the member id and the thread count ride in `node_id`.
pub fn hello(c: &Cluster, shard: usize) -> Hello {
    let mut node_id = [0u8; 20];
    node_id[..8].copy_from_slice(&c.me.0.to_le_bytes());
    node_id[8..10].copy_from_slice(&(c.threads as u16).to_le_bytes());
    Hello {
        wire_min: WIRE_MIN,
        wire_max: WIRE_MAX,
        cluster_id: c.cluster_id,
        node_id,
        shard: shard as u16,
    }
}

/// The byte of a hello's `node_id` that names the connection's lane: 0 the bus, 1 a bulk
/// lane (`lanes.rs`).
const LANE_AT: usize = 10;
const LANE_BULK: u8 = 1;

/// Our `Hello` as shard thread `shard` dialing a bulk lane (`lanes.rs`).
pub fn lane_hello(c: &Cluster, shard: usize) -> Hello {
    let mut h = hello(c, shard);
    h.node_id[LANE_AT] = LANE_BULK;
    h
}

/// Whether a hello opens a bulk lane.
pub fn is_lane(h: &Hello) -> bool {
    h.node_id[LANE_AT] == LANE_BULK
}

/// The member id and shard thread count a `Hello` carries (in `node_id`, as [`hello`] puts
/// them).
fn node_of(h: &Hello) -> (NodeId, usize) {
    let id = u64::from_le_bytes(h.node_id[..8].try_into().expect("8"));
    let threads = u16::from_le_bytes(h.node_id[8..10].try_into().expect("2")) as usize;
    (NodeId(id), threads)
}

/// Why a peer's `Hello` is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The peer's member id was removed from this cluster (it may retire, `Retired`).
    pub removed: bool,
    pub why: String,
}

impl Refusal {
    fn because(why: String) -> Refusal {
        Refusal {
            removed: false,
            why,
        }
    }
}

/// Checks a peer's `Hello`: the peer's member id and the shard thread it names, or why it is
/// refused.
pub fn check_hello(c: &Cluster, h: &Hello) -> Result<(NodeId, usize), Refusal> {
    if h.cluster_id != c.cluster_id {
        return Err(Refusal::because("it belongs to another cluster (a different cluster-nodes list, vshards or cluster-replicas)".into()));
    }
    if frame::negotiate((WIRE_MIN, WIRE_MAX), (h.wire_min, h.wire_max)).is_none() {
        return Err(Refusal::because(format!(
            "it speaks wire versions {}..={}, this node {WIRE_MIN}..={WIRE_MAX}",
            h.wire_min, h.wire_max
        )));
    }
    let (id, threads) = node_of(h);
    if id == c.me {
        return Err(Refusal::because(format!(
            "it claims member id {id}, which is this node's own"
        )));
    }
    if !c.may_be_member(id) {
        // Said `removed` only on the word of this node's applied metadata (`was_removed`): the
        // peer will retire on it. Otherwise (an id this node knew of from its join that its
        // metadata, still catching up, does not hold) the refusal is for now, and retried.
        if c.was_removed(id) {
            return Err(Refusal {
                removed: true,
                why: format!("member id {id} was removed from this cluster"),
            });
        }
        return Err(Refusal::because(format!(
            "member id {id} is not a member in this node's metadata (it may be catching up)"
        )));
    }
    if threads != c.threads {
        return Err(Refusal::because(format!(
            "it runs {threads} shard threads and this node {}: every member must run the same number",
            c.threads
        )));
    }
    if h.shard as usize >= c.threads {
        return Err(Refusal::because(format!(
            "it names shard thread {}",
            h.shard
        )));
    }
    Ok((id, h.shard as usize))
}

/// The acceptor's answer to a dialer's hello (and its certificate, when the links are TLS):
/// this node's hello for the thread it names, or the refusal and why.
pub fn judge(c: &Cluster, theirs: &Hello, cert: Option<&CertificateDer<'_>>) -> Answer {
    let checked = check_hello(c, theirs).and_then(|(id, shard)| {
        super::secure::check_cert(c, id, cert)
            .map(|()| (id, shard))
            .map_err(Refusal::because)
    });
    match checked {
        Ok((_, shard)) => Answer::Accepted(hello(c, shard)),
        Err(r) => Answer::Refused(Refused {
            cluster_id: c.cluster_id,
            from: c.me.0,
            removed: r.removed,
            why: r.why,
        }),
    }
}

/// Why a dialer's connection did not open, and whether this node must retire because of it.
#[derive(Debug, PartialEq, Eq)]
pub struct NotConnected {
    /// A member of this node's own cluster said it was removed (`Cluster::retire`).
    pub retire: Option<Retired>,
    pub why: String,
}

/// What a dialer makes of the acceptor's answer: an acceptance must name a member of this
/// cluster; a removal said by a member of its own cluster retires this node; anything else is
/// an error to log and retry.
pub fn take_answer(c: &Cluster, answer: &Answer) -> Result<(), NotConnected> {
    match answer {
        Answer::Accepted(h) => check_hello(c, h).map(|_| ()).map_err(|r| NotConnected {
            retire: None,
            why: r.why,
        }),
        Answer::Refused(r) => {
            let retire = (r.removed && r.cluster_id == c.cluster_id).then(|| {
                if c.leaving.load(std::sync::atomic::Ordering::Acquire) {
                    Retired::Left
                } else {
                    Retired::RemovedWhileAway { by: NodeId(r.from) }
                }
            });
            Err(NotConnected {
                retire,
                why: format!("member {} refused this node: {}", r.from, r.why),
            })
        }
    }
}

/// Hands every whole batch `frames` holds to the replicas, as peer `peer`'s; the error says
/// why the connection must end (a bad frame, or a batch the replicas refuse).
pub fn deliver(
    r: &mut Replicas,
    peer: NodeId,
    frames: &mut Frames,
    now: Instant,
) -> Result<(), String> {
    while let Some(msgs) = frames.next_batch()? {
        r.receive(peer, &msgs, now)?;
    }
    Ok(())
}

/// The node's side of accepting: judging hellos and handing accepted sockets to their
/// shard threads.
struct Accepting(Arc<Cluster>);

impl tcp::Acceptor for Accepting {
    fn judge(&self, theirs: &Hello, cert: Option<&CertificateDer<'_>>) -> Answer {
        let answer = judge(&self.0, theirs, cert);
        if let Answer::Refused(r) = &answer {
            tracing::warn!(
                from = r.from,
                "cluster bus: refused a connection: {}",
                r.why
            );
        }
        answer
    }

    fn adopt(&self, theirs: Hello, accepted: tcp::Accepted) {
        let (id, _) = node_of(&theirs);
        let shard = theirs.shard as usize;
        self.0.inbound[shard]
            .lock()
            .expect("inbound")
            .push((id, accepted, is_lane(&theirs)));
        self.0.inbound_waker[shard].wake();
    }

    fn dropped(&self, peer: Option<std::net::SocketAddr>, why: String) {
        tracing::warn!(?peer, "cluster bus: dropped a connection: {why}");
    }
}

/// Starts the acceptor thread on this node's bus address.
pub fn start_acceptor(c: Arc<Cluster>, bind: std::net::IpAddr) -> Result<(), String> {
    let me = c.bus_addr(c.me);
    let addr = std::net::SocketAddr::new(bind, me.port());
    let listener = shardline_transport::net::bind_patiently(addr)
        .map_err(|e| format!("cannot listen on the cluster bus {addr}: {e}"))?;
    let tls = c.security.tls.clone();
    tcp::serve(listener, Arc::new(Accepting(c)), tls).map_err(|e| e.to_string())
}

/// Takes the sockets the acceptor handed to this shard thread and reads each.
pub async fn inbound(shard: Rc<Shard>, c: Arc<Cluster>) {
    loop {
        std::future::poll_fn(|cx| {
            c.inbound_waker[shard.id].register(cx.waker());
            if c.inbound[shard.id].lock().expect("inbound").is_empty() {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        let taken = std::mem::take(&mut *c.inbound[shard.id].lock().expect("inbound"));
        for (peer, accepted, lane) in taken {
            if lane {
                monoio::spawn(super::lanes::serve_accepted(shard.clone(), peer, accepted));
                continue;
            }
            match tcp::Reader::adopt(accepted) {
                Ok(reader) => {
                    monoio::spawn(read_peer(shard.clone(), peer, reader));
                }
                Err(e) => tracing::warn!(%peer, "cluster bus: cannot adopt a socket: {e}"),
            }
        }
    }
}

/// Reads batches from `peer` until the connection ends or sends a bad frame.
async fn read_peer(shard: Rc<Shard>, peer: NodeId, mut reader: tcp::Reader) {
    shard.with_replicas(|r| r.peer_connected(peer, Instant::now()));
    let why = loop {
        let delivered = shard.with_replicas(|r| {
            let res = deliver(r, peer, reader.frames(), Instant::now());
            shard.wake_dialers(r);
            res
        });
        if let Err(e) = delivered {
            break e;
        }
        match reader.read().await {
            Ok(0) => break "closed by the peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    tracing::info!(
        %peer,
        shard = shard.id,
        "cluster bus: connection from peer ended: {why}"
    );
    shard.with_replicas(|r| r.peer_disconnected(peer));
}

/// Dials every member, and every member that joins later (checked every 100 ms: one atomic
/// load while the membership is unchanged).
pub async fn dial_members(shard: Rc<Shard>, c: Arc<Cluster>) {
    let mut dialing = [false; super::NODES_MAX];
    let mut seen = 0;
    loop {
        let version = c.members_version.load(std::sync::atomic::Ordering::Acquire);
        if version != seen {
            seen = version;
            // A removed member's dialer ends by itself (`dial`).
            for (i, d) in dialing.iter_mut().enumerate() {
                if c.member(NodeId::of_slot(i)).is_none() {
                    *d = false;
                }
            }
            for peer in c.member_ids() {
                if peer != c.me && !std::mem::replace(&mut dialing[peer.slot()], true) {
                    monoio::spawn(dial(shard.clone(), c.clone(), peer));
                    monoio::spawn(super::lanes::dial_lane(shard.clone(), c.clone(), peer));
                }
            }
        }
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Dials `peer` at its bus address with `ours` (a bus or lane hello), over mutual TLS when the
/// links are (the acceptor's certificate must name `peer`), and takes its answer.
pub async fn open(c: &Cluster, peer: NodeId, ours: &Hello) -> Result<tcp::Writer, NotConnected> {
    let not = |why: String| NotConnected { retire: None, why };
    let name = super::secure::member_name(c, peer);
    let tls = match (&c.security.tls, &name) {
        (None, _) => None,
        (Some(t), Some(name)) => Some((&**t, name.as_str())),
        (Some(_), None) => return Err(not(format!("member {peer} has no address here"))),
    };
    let (w, answer) = tcp::dial(c.bus_addr(peer), ours, tls)
        .await
        .map_err(|e| not(e.to_string()))?;
    take_answer(c, &answer).map(|()| w)
}

/// Dials `peer`'s shard thread, then writes what the replicas queue for it (and a heartbeat
/// frame when there is nothing else), reconnecting after any failure, until `peer` is no
/// longer a member.
pub async fn dial(shard: Rc<Shard>, c: Arc<Cluster>, peer: NodeId) {
    let addr = c.bus_addr(peer);
    let heartbeat = Duration::from_millis((c.node_timeout_ms / 4).max(10));
    let mut logged = false;
    while c.member(peer).is_some() {
        let mut w = match open(&c, peer, &hello(&c, shard.id)).await {
            Ok(w) => w,
            Err(e) => {
                if let Some(how) = e.retire {
                    c.retire(how);
                }
                if !logged {
                    tracing::info!(%peer, %addr, "cluster bus: cannot reach peer yet: {}", e.why);
                    logged = true;
                }
                monoio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::info!(%peer, shard = shard.id, "cluster bus: connected to peer");
        logged = false;
        shard.with_replicas(|r| r.dialed(peer));
        loop {
            let bytes = monoio::select! {
                b = shard.outbox_ready(peer) => b,
                _ = monoio::time::sleep(heartbeat) => {
                    if c.member(peer).is_none() {
                        break;
                    }
                    let mut hb = Vec::new();
                    frame::encode_batch(&[], &mut hb);
                    hb
                }
            };
            if let Err(e) = w.send(bytes).await {
                tracing::info!(%peer, "cluster bus: write to peer failed: {e}");
                break;
            }
        }
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(
        %peer,
        shard = shard.id,
        "cluster bus: peer removed from the cluster"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(me: &str) -> Cluster {
        let mut cfg = crate::config::Config {
            cluster_nodes: vec![
                "127.0.0.1:7001".parse().unwrap(),
                "127.0.0.1:7002".parse().unwrap(),
                "127.0.0.1:7003".parse().unwrap(),
            ],
            cores: vec![0, 1],
            ..Default::default()
        };
        cfg.port = me.parse().unwrap();
        Cluster::new(&cfg, shardline_shards::slot::VShardLayout::new(16).unwrap()).unwrap()
    }

    #[test]
    fn a_member_of_the_same_cluster_is_accepted_for_the_thread_it_names() {
        let (a, b) = (cluster("7001"), cluster("7002"));
        assert_eq!(check_hello(&a, &hello(&b, 1)), Ok((NodeId(2), 1)));
    }

    #[test]
    fn peers_of_another_cluster_or_wire_version_or_shape_are_refused_with_the_reason() {
        let a = cluster("7001");
        // None of these says the peer was removed: only that retires a node.
        let why = |h: &Hello| {
            let r = check_hello(&a, h).unwrap_err();
            assert!(!r.removed, "{r:?}");
            r.why
        };
        let mut h = hello(&cluster("7002"), 0);
        h.cluster_id[0] ^= 1;
        assert!(why(&h).contains("another cluster"));
        let mut h = hello(&cluster("7002"), 0);
        (h.wire_min, h.wire_max) = (WIRE_MAX + 1, WIRE_MAX + 3);
        assert!(why(&h).contains("wire versions"));
        let mut h = hello(&cluster("7002"), 0);
        h.node_id[8] = 3;
        assert!(why(&h).contains("shard threads"));
        assert!(why(&hello(&a, 0)).contains("own"));
    }

    /// A node whose metadata is behind (restarted before it replayed a join) accepts a member
    /// that joined since, so the metadata can reach it; a member it saw removed stays refused,
    /// and is told it was removed only on the word of the applied metadata.
    #[test]
    fn a_newer_member_is_accepted_and_a_removed_one_refused() {
        let a = cluster("7001");
        let mut h = hello(&cluster("7002"), 0);
        h.node_id[..8].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(check_hello(&a, &h), Ok((NodeId(4), 0)));
        a.retain_members(&[NodeId(1), NodeId(3)]);
        let h = hello(&cluster("7002"), 0);
        let r = check_hello(&a, &h).unwrap_err();
        assert!(!r.removed, "no applied metadata says so yet: {r:?}");
        a.note_meta_next_id(4);
        let r = check_hello(&a, &h).unwrap_err();
        assert!(r.removed && r.why.contains("removed"), "{r:?}");
        assert_eq!(
            check_hello(&a, &hello(&cluster("7003"), 1)),
            Ok((NodeId(3), 1))
        );
    }

    /// A joined node knows the members of its join answer; the metadata snapshot it is sent
    /// may be older than some of them. Applying it drops them from the member table for a
    /// moment, and their handshakes are refused, but never as removed: they would retire.
    #[test]
    fn a_member_missing_from_an_older_metadata_state_is_not_told_it_was_removed() {
        let a = cluster("7001");
        let addrs = a.member(NodeId(2)).unwrap();
        a.set_member(NodeId(4), addrs);
        // The applied state predates member 4's join: ids 1..=3 handed out, all members.
        a.retain_members(&[NodeId(1), NodeId(2), NodeId(3)]);
        a.note_meta_next_id(4);
        let mut h = hello(&cluster("7002"), 0);
        h.node_id[..8].copy_from_slice(&4u64.to_le_bytes());
        let r = check_hello(&a, &h).unwrap_err();
        assert!(!r.removed, "{r:?}");
    }
}
