//! A lane's bytes over a queue pair: the rings of send and receive buffers (sans-IO; the lane
//! driver calls `send`, `poll` and `recv`, and waits between polls).
//!
//! Sending copies bytes into free send buffers and posts them; a buffer is free again once
//! its send completed. Receiving: every receive buffer is posted at `connect`; the peer's
//! messages fill them in the order they were posted (a reliable connection delivers in
//! order, once), and `recv` hands their bytes out in that order and posts each buffer again.
//! A failed completion fails the stream for good (the queue pair is in error: the lane
//! ends, and the hub resumes its copies on the next connection).

use super::{Completion, Endpoint, Verbs};
use std::collections::VecDeque;

pub struct Stream {
    verbs: Box<dyn Verbs>,
    free: Vec<usize>,
    in_flight: usize,
    /// Receive buffers posted, in posting order; those filled, in order, with their length.
    posted: VecDeque<usize>,
    arrived: VecDeque<(usize, usize)>,
    done: Vec<Completion>,
    failed: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Stream {
    pub fn new(verbs: Box<dyn Verbs>) -> Stream {
        let free = (0..verbs.sends()).rev().collect();
        Stream {
            verbs,
            free,
            in_flight: 0,
            posted: VecDeque::new(),
            arrived: VecDeque::new(),
            done: Vec::new(),
            failed: None,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.verbs.endpoint()
    }

    fn fail(&mut self, why: String) -> String {
        self.failed.get_or_insert(why).clone()
    }

    /// Connects to the peer's queue pair and posts every receive buffer.
    pub fn connect(&mut self, peer: &Endpoint) -> Result<(), String> {
        if let Err(e) = self.verbs.connect(peer) {
            return Err(self.fail(format!("RDMA: connecting the queue pair: {e}")));
        }
        for i in self.verbs.sends()..self.verbs.buffers() {
            if let Err(e) = self.verbs.post_recv(i) {
                return Err(self.fail(format!("RDMA: posting a receive: {e}")));
            }
            self.posted.push_back(i);
        }
        Ok(())
    }

    /// Sends what of `bytes` fits in the free send buffers; how much.
    pub fn send(&mut self, bytes: &[u8]) -> Result<usize, String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        let per = self.verbs.buffer_bytes();
        let mut taken = 0;
        while taken < bytes.len() {
            let Some(i) = self.free.pop() else { break };
            let part = &bytes[taken..bytes.len().min(taken + per)];
            self.verbs.fill(i, part);
            if let Err(e) = self.verbs.post_send(i, part.len()) {
                self.free.push(i);
                return Err(self.fail(format!("RDMA: posting a send: {e}")));
            }
            self.in_flight += 1;
            taken += part.len();
        }
        self.bytes_sent += taken as u64;
        Ok(taken)
    }

    /// Takes what finished: whether anything did. An error completion fails the stream.
    pub fn poll(&mut self) -> Result<bool, String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        self.done.clear();
        if let Err(e) = self.verbs.poll(&mut self.done) {
            return Err(self.fail(format!("RDMA: polling completions: {e}")));
        }
        let sends = self.verbs.sends();
        for k in 0..self.done.len() {
            let c = self.done[k];
            if !c.ok {
                let what = if c.recv { "a receive" } else { "a send" };
                return Err(self.fail(format!("RDMA: {what} failed (the queue pair is in error)")));
            }
            if c.recv {
                // In the order posted, each once: anything else is a broken device or driver.
                if self.posted.front() != Some(&c.buffer) || c.len > self.verbs.buffer_bytes() {
                    return Err(self.fail(format!(
                        "RDMA: receive buffer {} completed out of order or overfull ({} bytes)",
                        c.buffer, c.len
                    )));
                }
                self.posted.pop_front();
                self.arrived.push_back((c.buffer, c.len));
            } else {
                if c.buffer >= sends || self.free.contains(&c.buffer) || self.in_flight == 0 {
                    return Err(self.fail(format!(
                        "RDMA: a send of buffer {} completed that was not posted",
                        c.buffer
                    )));
                }
                self.in_flight -= 1;
                self.free.push(c.buffer);
            }
        }
        Ok(!self.done.is_empty())
    }

    /// Appends the bytes received, in order, to `out` (each buffer is posted again); how many.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<usize, String> {
        let mut n = 0;
        while let Some((i, len)) = self.arrived.pop_front() {
            self.verbs.drain(i, len, out);
            n += len;
            if let Err(e) = self.verbs.post_recv(i) {
                return Err(self.fail(format!("RDMA: posting a receive: {e}")));
            }
            self.posted.push_back(i);
        }
        self.bytes_received += n as u64;
        Ok(n)
    }

    /// Sends posted and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a send buffer is free.
    pub fn can_send(&self) -> bool {
        self.failed.is_none() && !self.free.is_empty()
    }

    /// Whether received bytes wait for `recv`.
    pub fn has_arrived(&self) -> bool {
        !self.arrived.is_empty()
    }
}
