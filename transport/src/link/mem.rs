//! The simulator's link: byte pipes on simulated time, and handshakes run in memory through
//! the same readers and encoders as the TCP link, so the simulated cluster's connections are
//! judged and framed by the code the real ones use.

use super::{Answer, HandshakeError, HandshakeReader, encode_answer};
use crate::frame::{self, Hello};
use std::collections::BTreeMap;

/// Runs a handshake: the dialer's hello, encoded and read back as the acceptor reads it, goes
/// to `judge`; its answer, encoded and read back as the dialer reads it, is returned.
pub fn handshake(
    ours: &Hello,
    judge: impl FnOnce(&Hello) -> Answer,
) -> Result<Answer, HandshakeError> {
    let mut bytes = Vec::new();
    frame::encode_hello(ours, &mut bytes);
    let (theirs, _) = HandshakeReader::default()
        .hello(&bytes)?
        .ok_or(HandshakeError::Unexpected("a cut hello"))?;
    bytes.clear();
    encode_answer(&judge(&theirs), &mut bytes);
    HandshakeReader::default()
        .answer(&bytes)?
        .ok_or(HandshakeError::Unexpected("a cut answer"))
}

/// Writes in flight between the ends of connections named by `K` (in the simulator: from,
/// to, shard thread). Each write arrives whole at the time its sender chose; writes due at the
/// same time arrive in the order they were made.
#[derive(Debug)]
pub struct Net<K> {
    in_flight: BTreeMap<(u64, u64), (K, Vec<u8>)>,
    writes: u64,
}

impl<K> Default for Net<K> {
    fn default() -> Self {
        Net {
            in_flight: BTreeMap::new(),
            writes: 0,
        }
    }
}

impl<K> Net<K> {
    /// Sends `bytes` on `link`, to arrive at `at` (simulated milliseconds).
    pub fn send(&mut self, at: u64, link: K, bytes: Vec<u8>) {
        self.writes += 1;
        self.in_flight.insert((at, self.writes), (link, bytes));
    }

    /// The next write due by `now`, if any.
    pub fn next_due(&mut self, now: u64) -> Option<(K, Vec<u8>)> {
        let (&(at, seq), _) = self.in_flight.first_key_value()?;
        if at > now {
            return None;
        }
        self.in_flight.remove(&(at, seq))
    }

    /// Drops the writes in flight on links `keep` says no to (connections that broke).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.in_flight.retain(|_, (k, _)| keep(k));
    }

    /// How many writes are in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_hello as hello;
    use super::*;
    use crate::frame::Refused;

    #[test]
    fn a_handshake_in_memory_carries_the_hello_and_the_answer_both_ways() {
        let got = handshake(&hello(1), |h| {
            assert_eq!(h, &hello(1));
            Answer::Accepted(hello(1))
        });
        assert_eq!(got, Ok(Answer::Accepted(hello(1))));
        let refused = Refused {
            cluster_id: [7; 16],
            from: 9,
            removed: false,
            why: "no".into(),
        };
        let got = handshake(&hello(0), |_| Answer::Refused(refused.clone()));
        assert_eq!(got, Ok(Answer::Refused(refused)));
    }

    #[test]
    fn writes_arrive_by_time_then_in_the_order_they_were_made() {
        let mut net = Net::default();
        net.send(5, 'a', vec![1]);
        net.send(3, 'b', vec![2]);
        net.send(5, 'c', vec![3]);
        assert_eq!(net.next_due(2), None);
        assert_eq!(net.next_due(5), Some(('b', vec![2])));
        net.retain(|k| *k != 'c');
        assert_eq!(net.next_due(5), Some(('a', vec![1])));
        assert_eq!(net.next_due(9), None);
        assert!(net.is_empty());
    }
}
