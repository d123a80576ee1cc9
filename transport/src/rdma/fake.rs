//! An RDMA fabric in memory, for the tests of everything above [`Verbs`]: queue pairs with
//! reliable-connected semantics as the lanes rely on them. A posted send is read out of its
//! buffer when delivered (so a buffer reused before its send completed shows up as wrong
//! bytes), into the receive buffer the peer posted first; with none posted it waits
//! (receiver not ready, retried for ever, as `rnr_retry` 7 makes the hardware do). Faults on
//! demand: a queue pair put in error flushes every request posted on it with error
//! completions (its peer's too, as a broken connection does), and a message can be damaged
//! on the way. Shared by threads (each end of a lane on its own shard thread).

use super::{Completion, Endpoint, Provider, Verbs};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Qp {
    bufs: Vec<Vec<u8>>,
    sends: usize,
    peer: Option<u32>,
    /// Sends posted and not delivered: (buffer, length).
    sending: VecDeque<(usize, usize)>,
    recv_posted: VecDeque<usize>,
    done: VecDeque<Completion>,
    error: bool,
}

#[derive(Default)]
struct State {
    qps: HashMap<u32, Qp>,
    next_qpn: u32,
    /// Messages delivered so far, the whole fabric.
    delivered: u64,
    /// Put the sender's queue pair in error at this delivery count.
    fail_at: Option<u64>,
    /// Flip a byte of the message delivered at this count.
    damage_at: Option<u64>,
}

/// The fabric; clones share it.
#[derive(Clone, Default)]
pub struct Fabric(Arc<Mutex<State>>);

impl Fabric {
    pub fn new() -> Fabric {
        Fabric::default()
    }

    /// The queue pair sending the `n`th message from now fails instead (error completions for
    /// everything posted on it and on its peer).
    pub fn fail_in(&self, n: u64) {
        let mut s = self.0.lock().expect("fabric");
        s.fail_at = Some(s.delivered + n);
    }

    /// The `n`th message from now arrives with a byte flipped.
    pub fn damage_in(&self, n: u64) {
        let mut s = self.0.lock().expect("fabric");
        s.damage_at = Some(s.delivered + n);
    }

    pub fn delivered(&self) -> u64 {
        self.0.lock().expect("fabric").delivered
    }
}

impl State {
    fn error(&mut self, qpn: u32) {
        let mut ends = vec![qpn];
        ends.extend(self.qps.get(&qpn).and_then(|q| q.peer));
        for n in ends {
            let Some(q) = self.qps.get_mut(&n) else {
                continue;
            };
            q.error = true;
            let flushed: Vec<Completion> = q
                .sending
                .drain(..)
                .map(|(buffer, _)| Completion::flushed(buffer, false))
                .chain(
                    q.recv_posted
                        .drain(..)
                        .map(|b| Completion::flushed(b, true)),
                )
                .collect();
            q.done.extend(flushed);
        }
    }

    /// Delivers every send that has a receive buffer waiting at its peer.
    fn pump(&mut self) {
        let qpns: Vec<u32> = self.qps.keys().copied().collect();
        for from in qpns {
            loop {
                let (buffer, len, to) = {
                    let q = &self.qps[&from];
                    let Some(&(b, l)) = q.sending.front() else {
                        break;
                    };
                    let Some(to) = q.peer.filter(|p| self.qps.contains_key(p)) else {
                        break;
                    };
                    if q.error || self.qps[&to].recv_posted.is_empty() {
                        break;
                    }
                    (b, l, to)
                };
                if self.fail_at == Some(self.delivered) {
                    self.fail_at = None;
                    self.error(from);
                    break;
                }
                let mut data = self.qps[&from].bufs[buffer][..len].to_vec();
                if self.damage_at == Some(self.delivered) && !data.is_empty() {
                    self.damage_at = None;
                    let k = data.len() / 2;
                    data[k] ^= 0x5A;
                }
                self.delivered += 1;
                let q = self.qps.get_mut(&from).expect("listed");
                q.sending.pop_front();
                q.done.push_back(Completion {
                    buffer,
                    recv: false,
                    ok: true,
                    len,
                });
                let t = self.qps.get_mut(&to).expect("listed");
                let rb = t.recv_posted.pop_front().expect("checked");
                if len > t.bufs[rb].len() {
                    // The receive buffer is too small: both ends fail, as on hardware.
                    self.error(from);
                    break;
                }
                t.bufs[rb][..len].copy_from_slice(&data);
                t.done.push_back(Completion {
                    buffer: rb,
                    recv: true,
                    ok: true,
                    len,
                });
            }
        }
    }
}

/// One end: a queue pair of the fabric.
pub struct FakeVerbs {
    fabric: Fabric,
    qpn: u32,
    buffers: usize,
    sends: usize,
    bytes: usize,
}

impl Provider for Fabric {
    fn open(&self, sends: usize, recvs: usize, bytes: usize) -> io::Result<Box<dyn Verbs>> {
        let mut s = self.0.lock().expect("fabric");
        s.next_qpn += 1;
        let qpn = s.next_qpn;
        s.qps.insert(
            qpn,
            Qp {
                bufs: vec![vec![0; bytes]; sends + recvs],
                sends,
                ..Qp::default()
            },
        );
        Ok(Box::new(FakeVerbs {
            fabric: self.clone(),
            qpn,
            buffers: sends + recvs,
            sends,
            bytes,
        }))
    }

    fn name(&self) -> String {
        "fake fabric".into()
    }
}

impl FakeVerbs {
    fn with<R>(&self, f: impl FnOnce(&mut State, u32) -> R) -> R {
        f(&mut self.fabric.0.lock().expect("fabric"), self.qpn)
    }
}

impl Drop for FakeVerbs {
    fn drop(&mut self) {
        // A destroyed queue pair: its peer's requests fail.
        self.with(|s, me| {
            s.error(me);
            s.qps.remove(&me);
        });
    }
}

impl Verbs for FakeVerbs {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            qpn: self.qpn,
            lid: 1,
            gid: None,
        }
    }

    fn connect(&mut self, peer: &Endpoint) -> io::Result<()> {
        self.with(|s, me| {
            if peer.qpn == me || !s.qps.contains_key(&peer.qpn) {
                return Err(io::Error::other(format!("no queue pair {}", peer.qpn)));
            }
            s.qps.get_mut(&me).expect("open").peer = Some(peer.qpn);
            Ok(())
        })
    }

    fn buffers(&self) -> usize {
        self.buffers
    }

    fn sends(&self) -> usize {
        self.sends
    }

    fn buffer_bytes(&self) -> usize {
        self.bytes
    }

    fn fill(&mut self, i: usize, data: &[u8]) {
        self.with(|s, me| {
            s.qps.get_mut(&me).expect("open").bufs[i][..data.len()].copy_from_slice(data)
        });
    }

    fn drain(&self, i: usize, len: usize, out: &mut Vec<u8>) {
        self.with(|s, me| out.extend_from_slice(&s.qps[&me].bufs[i][..len]));
    }

    fn post_send(&mut self, i: usize, len: usize) -> io::Result<()> {
        self.with(|s, me| {
            let q = s.qps.get_mut(&me).expect("open");
            assert!(
                i < q.sends && len <= q.bufs[i].len(),
                "a send of a receive buffer or past a buffer"
            );
            if q.error {
                // Posted on a queue pair in error: flushed at once.
                q.done.push_back(Completion::flushed(i, false));
                return Ok(());
            }
            q.sending.push_back((i, len));
            s.pump();
            Ok(())
        })
    }

    fn post_recv(&mut self, i: usize) -> io::Result<()> {
        self.with(|s, me| {
            let q = s.qps.get_mut(&me).expect("open");
            assert!(
                i >= q.sends && i < q.bufs.len(),
                "a receive into a send buffer"
            );
            if q.error {
                q.done.push_back(Completion::flushed(i, true));
                return Ok(());
            }
            q.recv_posted.push_back(i);
            s.pump();
            Ok(())
        })
    }

    fn poll(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        self.with(|s, me| {
            s.pump();
            out.extend(s.qps.get_mut(&me).expect("open").done.drain(..));
            Ok(())
        })
    }
}
