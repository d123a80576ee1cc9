//! A lane's QUIC carrier on the shard thread (issue 19, step 5): the thin driver of a
//! `quic::Pipe` (quinn-proto, sans-IO) over a monoio UDP socket of the lane's own. Two tasks
//! run while the lane lives: one receives datagrams into the pipe, one sends what the pipe
//! has to send and fires its timers. The lane's writer (the source) and reader (the target)
//! call the pipe between them, waking the sender when they gave it work.
//!
//! Why quinn-proto on the shard thread and not quinn on a tokio runtime: the bytes of a copy
//! are read from the snapshot file into the chunk's frame on this thread (source) and handed
//! to this thread's hub (target); quinn would need them to cross to another thread (a copy
//! each way and a channel), and a tokio runtime of its own on a thread-per-core node.
//! Measured in `docs/BENCHMARKS.md` (session 28).

use bytes::BytesMut;
use shardline_transport::quic::Pipe;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Bytes a receive asks for: the largest datagram the lane's QUIC sends.
const RECV_BYTES: usize = shardline_transport::quic::UDP_PAYLOAD_MAX as usize;
/// How long the lane's writer or reader waits for the pipe before looking again at whether
/// the lane ended (a wake comes sooner whenever datagrams arrive).
const RECHECK: Duration = Duration::from_millis(100);

/// One waiting task, woken by `notify` (a wake before the wait is kept).
#[derive(Default)]
struct Signal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A lane's QUIC connection and its socket.
pub struct QuicLane {
    pipe: RefCell<Pipe>,
    sock: monoio::net::udp::UdpSocket,
    /// Wakes the sending task (the pipe may have datagrams to send).
    send: Signal,
    /// Wakes the lane's writer or reader (the pipe may take or give bytes).
    app: Signal,
    /// Ends the receiving task.
    stop: Signal,
    closed: Cell<bool>,
}

impl QuicLane {
    /// Runs `pipe` over `sock` (on this thread's runtime) until `shutdown`.
    pub fn start(pipe: Pipe, sock: std::net::UdpSocket) -> Result<Rc<QuicLane>, String> {
        let sock = monoio::net::udp::UdpSocket::from_std(sock)
            .map_err(|e| format!("QUIC: cannot adopt the lane's UDP socket: {e}"))?;
        let lane = Rc::new(QuicLane {
            pipe: RefCell::new(pipe),
            sock,
            send: Signal::default(),
            app: Signal::default(),
            stop: Signal::default(),
            closed: Cell::new(false),
        });
        monoio::spawn(receive(lane.clone()));
        monoio::spawn(send(lane.clone()));
        Ok(lane)
    }

    /// Closes the connection (the peer is told) and ends the tasks.
    pub fn shutdown(&self) {
        self.pipe.borrow_mut().close(Instant::now());
        self.closed.set(true);
        self.send.notify();
        self.stop.notify();
    }

    /// The source: puts `bytes` on the stream whole, as the window lets it; `ended` says the
    /// lane ended meanwhile.
    pub async fn write_all(
        &self,
        bytes: &[u8],
        ended: &RefCell<Option<String>>,
    ) -> Result<(), String> {
        let mut at = 0;
        loop {
            let n = self.pipe.borrow_mut().write(&bytes[at..])?;
            at += n;
            if n > 0 {
                self.send.notify();
            }
            if at == bytes.len() {
                return Ok(());
            }
            if let Some(why) = ended.borrow().clone() {
                return Err(why);
            }
            self.wait().await;
        }
    }

    /// The target: appends what arrived (at most `max` bytes) to `out`, waiting for some;
    /// `Ok(0)` after a while without any (for the caller to look at the lane).
    pub async fn read(&self, out: &mut Vec<u8>, max: usize) -> Result<usize, String> {
        let n = self.pipe.borrow_mut().read(out, max)?;
        if n > 0 {
            // The credit given back goes out with the next datagrams.
            self.send.notify();
            return Ok(n);
        }
        self.wait().await;
        Ok(0)
    }

    async fn wait(&self) {
        monoio::select! {
            _ = self.app.wait() => {},
            _ = monoio::time::sleep(RECHECK) => {},
        }
    }
}

/// Datagrams from the socket into the pipe, until the lane shuts down or the socket fails.
async fn receive(lane: Rc<QuicLane>) {
    loop {
        let buf = BytesMut::with_capacity(RECV_BYTES);
        let (res, buf) = monoio::select! {
            r = lane.sock.recv_from(buf) => r,
            _ = lane.stop.wait() => return,
        };
        match res {
            Ok((_, from)) => lane.pipe.borrow_mut().datagram(Instant::now(), from, buf),
            Err(e) => {
                // The pipe has no say in it: the writer or reader learns it from `failed`.
                tracing::debug!("bulk lane: QUIC socket receive failed: {e}");
                lane.pipe.borrow_mut().close(Instant::now());
                lane.app.notify();
                lane.send.notify();
                return;
            }
        }
        lane.send.notify();
        lane.app.notify();
    }
}

/// What the pipe has to send, and its timers, until the lane shuts down (its last
/// datagrams, the close, sent).
async fn send(lane: Rc<QuicLane>) {
    let mut out = Vec::with_capacity(RECV_BYTES);
    loop {
        let now = Instant::now();
        let due = lane.pipe.borrow_mut().timeout();
        if due.is_some_and(|t| t <= now) {
            lane.pipe.borrow_mut().on_timeout(now);
            lane.app.notify();
        }
        loop {
            let to = lane.pipe.borrow_mut().transmit(Instant::now(), &mut out);
            let Some(to) = to else { break };
            let (res, b) = lane.sock.send_to(std::mem::take(&mut out), to).await;
            out = b;
            // A datagram the socket refused (too large for the path, no buffer) is a lost
            // one: QUIC sends its bytes again or shrinks its datagrams.
            if let Err(e) = res {
                tracing::trace!("bulk lane: QUIC datagram not sent: {e}");
            }
        }
        if lane.closed.get() {
            return;
        }
        let due = lane.pipe.borrow_mut().timeout();
        match due {
            Some(t) => {
                let wait = t.saturating_duration_since(Instant::now());
                monoio::select! {
                    _ = lane.send.wait() => {},
                    _ = monoio::time::sleep(wait) => {},
                }
            }
            None => lane.send.wait().await,
        }
    }
}
