//! A connection's job while its replies come from the log: one reply per op, arriving in any
//! order (entries of different vShards apply in different steps), written into one buffer as
//! they arrive, and handed to the connection in op order when the last one is in. No allocation
//! per op: when the replies arrived in op order (one vShard, or a pipeline of one) the buffer
//! goes to the connection as it is; otherwise it is reassembled once.

use super::{Done, Token};
use crate::reply::{Out, Proto};

const UNSET: u32 = u32::MAX;

pub struct PendingJob {
    pub origin: usize,
    pub token: Token,
    pub proto: Proto,
    /// Replies in arrival order; op `i`'s is `bytes[starts[i]..ends[i]]` (`UNSET` until put).
    bytes: Vec<u8>,
    starts: Vec<u32>,
    ends: Vec<u32>,
    /// Ops not yet answered. A held reply (a read waiting for its read-index round) is put but
    /// not yet answered.
    left: usize,
    /// Ops answered by several entries (FLUSHALL: one per vShard led here): `(op, entries
    /// still to answer, whether one failed, the error to answer then)`. Usually empty.
    parts: Vec<(u32, u32, bool, &'static str)>,
}

/// What `PendingJob::part` makes of one entry's answer to an op.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    /// The op is answered by one entry: write this answer.
    Single,
    /// More of its entries are to come: write nothing yet.
    More,
    /// Its last entry: write this answer, or, if any of its entries failed, this error (some
    /// entries may have applied: the error says so).
    Last(Option<&'static str>),
}

impl PendingJob {
    pub fn new(origin: usize, token: Token, proto: Proto, ops: usize) -> PendingJob {
        PendingJob {
            origin,
            token,
            proto,
            bytes: Vec::new(),
            starts: vec![UNSET; ops],
            ends: vec![UNSET; ops],
            left: ops,
            parts: Vec::new(),
        }
    }

    /// Op `op` is answered once `n` entries have been (each answer goes through `part`); if
    /// any of them fails, the answer is the error `partial` (which must say that some entries
    /// may have applied).
    pub fn expect_parts(&mut self, op: u32, n: u32, partial: &'static str) {
        assert!(
            n > 0 && !self.has(op),
            "a multi-entry op is set up before any answer"
        );
        self.parts.push((op, n, false, partial));
    }

    /// Counts one entry's answer to op `op` (`error`: it failed).
    pub fn part(&mut self, op: u32, error: bool) -> Part {
        let Some(i) = self.parts.iter().position(|p| p.0 == op) else {
            return Part::Single;
        };
        let p = &mut self.parts[i];
        p.2 |= error;
        p.1 -= 1;
        if p.1 > 0 {
            return Part::More;
        }
        let (_, _, failed, partial) = self.parts.swap_remove(i);
        Part::Last(failed.then_some(partial))
    }

    pub fn left(&self) -> usize {
        self.left
    }

    /// Whether op `op` has a reply (answered or held).
    pub fn has(&self, op: u32) -> bool {
        self.ends[op as usize] != UNSET
    }

    /// Writes op `op`'s reply with `write` (into the job's buffer, as an `Out` of its protocol),
    /// replacing any reply held for it. Answered unless `hold`.
    pub fn write(&mut self, op: u32, hold: bool, write: impl FnOnce(&mut Out)) {
        let start = self.bytes.len();
        let mut o = Out {
            buf: std::mem::take(&mut self.bytes),
            proto: self.proto,
            errors: 0,
        };
        write(&mut o);
        self.bytes = o.buf;
        self.starts[op as usize] = start as u32;
        self.ends[op as usize] = self.bytes.len() as u32;
        if !hold {
            self.answered();
        }
    }

    /// Op `op`'s reply is `reply` (answered).
    pub fn put(&mut self, op: u32, reply: &[u8]) {
        self.write(op, false, |o| o.buf.extend_from_slice(reply));
    }

    /// Op `op`'s held reply may go out now.
    pub fn release(&mut self, op: u32) {
        debug_assert!(self.has(op), "released a reply never held");
        self.answered();
    }

    /// One more op answered. Answering one twice is our bug: it would otherwise hand the
    /// connection a job with replies missing, or never finish it.
    fn answered(&mut self) {
        self.left = self.left.checked_sub(1).expect("an op answered twice");
    }

    /// The connection's `Done`: the replies in op order.
    pub fn into_done(self) -> Done {
        debug_assert_eq!(self.left, 0);
        let in_order = self
            .starts
            .iter()
            .zip(std::iter::once(&0).chain(&self.ends))
            .all(|(s, prev_end)| s == prev_end)
            && self
                .ends
                .last()
                .is_none_or(|&e| e as usize == self.bytes.len());
        if in_order {
            return Done {
                token: self.token,
                bytes: self.bytes,
                ends: self.ends,
            };
        }
        let mut bytes = Vec::with_capacity(self.bytes.len());
        let mut ends = self.ends;
        for (s, e) in self.starts.iter().zip(ends.iter_mut()) {
            bytes.extend_from_slice(&self.bytes[*s as usize..*e as usize]);
            *e = bytes.len() as u32;
        }
        Done {
            token: self.token,
            bytes,
            ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: usize) -> PendingJob {
        PendingJob::new(0, 7, Proto::Resp2, n)
    }

    fn segments(d: &Done) -> Vec<&[u8]> {
        (0..d.ends.len()).map(|i| d.segment(i)).collect()
    }

    #[test]
    fn an_op_of_several_entries_is_answered_once_by_the_last_and_fails_if_any_failed() {
        let mut j = job(2);
        j.expect_parts(1, 3, "TRYAGAIN partly applied");
        assert_eq!(j.part(0, false), Part::Single);
        assert_eq!(j.part(1, false), Part::More);
        assert_eq!(j.part(1, true), Part::More);
        assert_eq!(
            j.part(1, false),
            Part::Last(Some("TRYAGAIN partly applied"))
        );
        let mut k = job(1);
        k.expect_parts(0, 2, "x");
        assert_eq!(k.part(0, false), Part::More);
        assert_eq!(k.part(0, false), Part::Last(None));
        assert_eq!(k.part(0, false), Part::Single, "done with it");
    }

    #[test]
    fn replies_put_in_op_order_go_out_as_they_are() {
        let mut j = job(3);
        j.put(0, b"+a\r\n");
        j.put(1, b"+bb\r\n");
        j.put(2, b":1\r\n");
        assert_eq!(j.left(), 0);
        let d = j.into_done();
        assert_eq!(d.token, 7);
        assert_eq!(segments(&d), [&b"+a\r\n"[..], b"+bb\r\n", b":1\r\n"]);
    }

    #[test]
    fn replies_put_out_of_order_are_reassembled_in_op_order() {
        let mut j = job(3);
        j.put(2, b"+c\r\n");
        j.put(0, b"+a\r\n");
        j.put(1, b"+b\r\n");
        let d = j.into_done();
        assert_eq!(d.bytes, b"+a\r\n+b\r\n+c\r\n");
        assert_eq!(segments(&d), [&b"+a\r\n"[..], b"+b\r\n", b"+c\r\n"]);
    }

    #[test]
    fn a_held_reply_counts_once_released_and_a_replacement_wins() {
        let mut j = job(2);
        j.write(0, true, |o| o.buf.extend_from_slice(b"$1\r\nx\r\n"));
        assert!(j.has(0));
        assert_eq!(j.left(), 2, "held, not answered");
        j.put(1, b"+OK\r\n");
        j.release(0);
        assert_eq!(j.left(), 0);
        assert_eq!(segments(&j.into_done()), [&b"$1\r\nx\r\n"[..], b"+OK\r\n"]);

        // A held read whose round failed: the error replaces it.
        let mut j = job(1);
        j.write(0, true, |o| o.buf.extend_from_slice(b"$1\r\nx\r\n"));
        j.write(0, false, |o| o.error("TRYAGAIN lost"));
        assert_eq!(j.left(), 0);
        assert_eq!(j.into_done().bytes, b"-TRYAGAIN lost\r\n");
    }
}
