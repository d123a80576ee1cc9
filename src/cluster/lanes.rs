//! The bulk lanes (issue 19, step 2): the TCP connections that carry snapshot copies beside
//! the cluster bus, so megabytes of a base copy never queue in front of heartbeats and
//! appends. What they carry and when is the shard thread's bulk hub
//! (`shardline_shards::migrate::hub`, in `Replicas::hub`); these tasks only move its bytes.
//!
//! Shard thread `i` dials a lane to thread `i` of a peer when the hub has a session for it
//! (`dial_lane`, one task per peer, idle otherwise), with a hello that names the lane
//! (`bus::lane_hello`) on the bus port; the acceptor judges it as any hello and hands the
//! socket to the same thread (`serve_accepted`). A lane runs both ways: chunks from its
//! dialer, answers from its acceptor. Each end runs a reader task and a writer loop; when
//! either ends, the socket is shut down, the other ends, and the hub hears the lane is down
//! (its sessions resume on the next connection from what the target holds).

use super::{Cluster, NodeId, bus};
use crate::shard::Shard;
use shardline_shards::migrate::hub::{Dir, Hub};
use shardline_transport::link::tcp;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Bytes a lane's writer hands the kernel in one write (several chunks in flight).
const WRITE_BYTES: usize = 4 << 20;
/// Bytes a lane's reader asks the kernel for in one read.
const READ_BYTES: usize = 256 << 10;
/// A source lane no session needed for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(30);

/// The lane tasks' state, kept with the replicas (one borrow for the hub and them).
pub struct LaneIo {
    /// Per peer slot and direction: the task waiting for the hub (a writer, or an idle
    /// dialer), and the generation of the connection that holds the lane now.
    wakers: Vec<[Option<Waker>; 2]>,
    gens: Vec<[u64; 2]>,
    /// The hub's time zero.
    epoch: Instant,
}

impl LaneIo {
    pub fn new(epoch: Instant) -> LaneIo {
        LaneIo {
            wakers: Vec::new(),
            gens: Vec::new(),
            epoch,
        }
    }

    /// The hub's time (ms since `epoch`).
    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn at(&mut self, peer: NodeId) -> usize {
        let i = peer.slot();
        if self.wakers.len() <= i {
            self.wakers.resize_with(i + 1, Default::default);
            self.gens.resize(i + 1, [0; 2]);
        }
        i
    }

    fn register(&mut self, peer: NodeId, dir: Dir, w: &Waker) {
        let i = self.at(peer);
        self.wakers[i][dir as usize] = Some(w.clone());
    }

    /// A new connection holds the lane: its generation.
    fn take_over(&mut self, peer: NodeId, dir: Dir) -> u64 {
        let i = self.at(peer);
        self.gens[i][dir as usize] += 1;
        self.gens[i][dir as usize]
    }

    fn is_current(&mut self, peer: NodeId, dir: Dir, generation: u64) -> bool {
        let i = self.at(peer);
        self.gens[i][dir as usize] == generation
    }

    fn wake_one(&mut self, peer: NodeId, dir: Dir) {
        let i = self.at(peer);
        if let Some(w) = self.wakers[i][dir as usize].take() {
            w.wake();
        }
    }
}

/// What runs lanes: a shard thread (its replicas hold the hub), or a benchmark's host.
pub trait LaneHost: 'static {
    /// `f` on the hub and the lane tasks' state.
    fn with_lanes<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo) -> R) -> R;
    /// What a lane read, handed to the hub: the bytes it took (the host wakes what copies
    /// completed and answers concern).
    fn lane_bytes(
        &self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, String>;
}

impl LaneHost for Shard {
    fn with_lanes<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo) -> R) -> R {
        self.with_replicas(|r| f(&mut r.hub, &mut r.lane_io))
    }

    fn lane_bytes(
        &self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, String> {
        self.with_replicas(|r| r.lane_bytes(peer, dir, bytes, now))
    }
}

/// Wakes the tasks of the lanes the hub has something for.
pub fn wake(hub: &mut Hub, io: &mut LaneIo) {
    for (peer, dir) in hub.take_ready() {
        io.wake_one(peer, dir);
    }
}

/// Dials the lane to `peer`'s thread whenever this thread's hub has a session for it,
/// until `peer` is no longer a member.
pub async fn dial_lane(shard: Rc<Shard>, c: Arc<Cluster>, peer: NodeId) {
    let addr = c.bus_addr(peer);
    let mut logged = false;
    while c.member(peer).is_some() {
        let needed = monoio::select! {
            _ = needed(&shard, peer) => true,
            _ = monoio::time::sleep(Duration::from_secs(1)) => false,
        };
        if !needed {
            continue;
        }
        let opened = match tcp::dial(addr, &bus::lane_hello(&c, shard.id)).await {
            Ok((w, answer)) => bus::take_answer(&c, &answer).map(|()| w).map_err(|e| e.why),
            Err(e) => Err(e.to_string()),
        };
        let w = match opened {
            Ok(w) => w,
            Err(why) => {
                if !logged {
                    tracing::info!(%peer, %addr, "bulk lane: cannot reach peer yet: {why}");
                    logged = true;
                }
                monoio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        logged = false;
        let (rd, wr, rest) = w.into_duplex();
        let why = run(shard.clone(), peer, Dir::Source, rd, wr, rest).await;
        tracing::info!(%peer, shard = shard.id, "bulk lane to peer ended: {why}");
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves once the hub has a session for `peer`.
async fn needed(shard: &Shard, peer: NodeId) {
    std::future::poll_fn(|cx| {
        shard.with_lanes(|hub, io| {
            if hub.wants_lane(peer) {
                Poll::Ready(())
            } else {
                io.register(peer, Dir::Source, cx.waker());
                Poll::Pending
            }
        })
    })
    .await
}

/// Serves a lane `peer` dialed (its chunks in, this thread's answers out), `rest` being what
/// came after its hello.
pub async fn serve_accepted(shard: Rc<Shard>, peer: NodeId, s: std::net::TcpStream, rest: Vec<u8>) {
    match tcp::adopt_duplex(s) {
        Ok((rd, wr)) => {
            let why = run(shard.clone(), peer, Dir::Target, rd, wr, rest).await;
            tracing::info!(%peer, shard = shard.id, "bulk lane from peer ended: {why}");
        }
        Err(e) => tracing::warn!(%peer, "bulk lane: cannot adopt a socket: {e}"),
    }
}

/// Runs one connection of lane `(peer, dir)` until either half ends; why it ended.
pub async fn run<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    dir: Dir,
    rd: tcp::DuplexReader,
    mut wr: tcp::DuplexWriter,
    rest: Vec<u8>,
) -> String {
    let generation = shard.with_lanes(|hub, io| {
        let generation = io.take_over(peer, dir);
        hub.lane_up(peer, dir);
        wake(hub, io);
        generation
    });
    let ended: Rc<RefCell<Option<String>>> = Rc::default();
    let reader = monoio::spawn(read(shard.clone(), peer, dir, rd, rest, ended.clone()));
    let why = write(&*shard, peer, dir, &mut wr, generation, &ended).await;
    wr.close();
    reader.await;
    shard.with_lanes(|hub, io| {
        if io.is_current(peer, dir, generation) {
            hub.lane_down(peer, dir);
        }
    });
    why
}

/// The reading half: what arrives goes to the hub; on its end, `ended` says why and the
/// writer is woken.
async fn read<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    dir: Dir,
    mut rd: tcp::DuplexReader,
    rest: Vec<u8>,
    ended: Rc<RefCell<Option<String>>>,
) {
    let mut buf = rest;
    buf.reserve(2 * READ_BYTES);
    let mut start = 0;
    let why = loop {
        if start < buf.len() {
            let took = shard.lane_bytes(peer, dir, &buf[start..], Instant::now());
            match took {
                Ok(n) => start += n,
                Err(e) => break e,
            }
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
        } else if start > 0 && buf.capacity() - buf.len() < READ_BYTES {
            // A partial frame goes to the front (at most one frame's bytes, once per frame).
            buf.drain(..start);
            start = 0;
        }
        let (r, b) = rd.read(buf, READ_BYTES).await;
        buf = b;
        match r {
            Ok(0) => break "closed by the peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    *ended.borrow_mut() = Some(why);
    shard.with_lanes(|_, io| io.wake_one(peer, dir));
}

/// The writing half: writes what the hub hands out for the lane until the reader ends, a
/// write fails, a newer connection takes the lane over, or (a source lane) no session
/// needed it for a while.
async fn write<H: LaneHost>(
    shard: &H,
    peer: NodeId,
    dir: Dir,
    wr: &mut tcp::DuplexWriter,
    generation: u64,
    ended: &RefCell<Option<String>>,
) -> String {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Some(why) = ended.borrow_mut().take() {
                return Poll::Ready(Err(why));
            }
            shard.with_lanes(|hub, io| {
                if !io.is_current(peer, dir, generation) {
                    return Poll::Ready(Err("a newer connection took the lane over".into()));
                }
                buf.clear();
                hub.poll(peer, dir, &mut buf, WRITE_BYTES, io.now_ms(Instant::now()));
                if buf.is_empty() {
                    io.register(peer, dir, cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(std::mem::take(&mut buf)))
                }
            })
        });
        let bytes = monoio::select! {
            n = next => n,
            _ = monoio::time::sleep(IDLE_CLOSE) => {
                if dir == Dir::Source && !shard.with_lanes(|hub, _| hub.wants_lane(peer)) {
                    return "no session needed it".into();
                }
                continue;
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(why) => return why,
        };
        let (res, b) = wr.send(bytes).await;
        buf = b;
        if let Err(e) = res {
            return format!("write failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
