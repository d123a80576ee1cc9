//! A vShard replica's snapshot blob decoded as its bytes arrive (issue 19, step 3: a base copy
//! installs on its target as it comes, never held whole): the Raft membership at its front,
//! the replica's apply clock, then the vShard's snapshot through `snapshot::Decoder`.

use crate::db::{Tunables, VShard};
use crate::raft::Membership;
use crate::raft::conf::{MEMBERSHIP_BYTES_MAX, membership_prefix};
use crate::snapshot::{Decoder, SnapshotError};

/// Bytes before the vShard's snapshot at most: the membership and the apply clock.
const PREFIX_MAX: usize = MEMBERSHIP_BYTES_MAX + 8;

/// What a whole blob held.
pub struct Decoded {
    pub membership: Membership,
    /// The replica's apply clock (microseconds) the snapshot was taken at.
    pub clock_us: u64,
    pub vshard: VShard,
    /// The blob's length.
    pub bytes: u64,
}

/// The blob's front, read: then the vShard's snapshot, from offset `at`.
struct Front {
    membership: Membership,
    clock_us: u64,
    at: usize,
    dec: Decoder,
}

/// Decodes a blob of `total` bytes fed in pieces of any size.
pub struct BlobDecoder {
    total: u64,
    t: Tunables,
    fed: u64,
    /// The blob's first bytes, until the membership and the clock are read.
    head: Vec<u8>,
    front: Option<Front>,
}

impl BlobDecoder {
    pub fn new(total: u64, t: &Tunables) -> BlobDecoder {
        BlobDecoder {
            total,
            t: *t,
            fed: 0,
            head: Vec::new(),
            front: None,
        }
    }

    /// Bytes taken so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Bytes held besides the decoded keys (an entry not yet whole).
    pub fn held_bytes(&self) -> usize {
        self.head.capacity() + self.front.as_ref().map_or(0, |f| f.dec.pending_bytes())
    }

    /// The blob's next bytes.
    pub fn feed(&mut self, mut b: &[u8]) -> Result<(), SnapshotError> {
        if self.fed + b.len() as u64 > self.total {
            return Err(SnapshotError {
                offset: self.total as usize,
                reason: "longer than the snapshot's length",
            });
        }
        self.fed += b.len() as u64;
        if self.front.is_none() {
            let need = PREFIX_MAX.min(self.total as usize);
            let n = (need - self.head.len()).min(b.len());
            self.head.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.head.len() < need {
                return Ok(());
            }
            let (membership, used) = membership_prefix(&self.head).ok_or(SnapshotError {
                offset: 0,
                reason: "a bad membership",
            })?;
            let clock = self.head.get(used..used + 8).ok_or(SnapshotError {
                offset: used,
                reason: "shorter than a replica snapshot",
            })?;
            let clock_us = u64::from_le_bytes(clock.try_into().expect("8"));
            let at = used + 8;
            let dec = Decoder::new(self.total - at as u64, &self.t).map_err(|e| shift(e, at))?;
            let head = std::mem::take(&mut self.head);
            let f = self.front.insert(Front {
                membership,
                clock_us,
                at,
                dec,
            });
            f.dec.feed(&head[at..]).map_err(|e| shift(e, at))?;
        }
        let f = self.front.as_mut().expect("read above");
        f.dec.feed(b).map_err(|e| shift(e, f.at))
    }

    /// Every byte fed: the blob's membership, clock and vShard.
    pub fn finish(self) -> Result<Decoded, SnapshotError> {
        let Some(f) = self.front else {
            return Err(SnapshotError {
                offset: self.fed as usize,
                reason: "shorter than a replica snapshot",
            });
        };
        let vshard = f.dec.finish().map_err(|e| shift(e, f.at))?;
        Ok(Decoded {
            membership: f.membership,
            clock_us: f.clock_us,
            vshard,
            bytes: self.total,
        })
    }
}

fn shift(e: SnapshotError, at: usize) -> SnapshotError {
    SnapshotError {
        offset: e.offset + at,
        ..e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::nodes;
    use crate::raft::conf::snapshot_blob;

    fn blob(keys: usize) -> (Vec<u8>, Membership) {
        let mut vs = VShard::new(crate::slot::VShardId(3));
        for i in 0..keys {
            vs.keys.insert(
                format!("k{i}").as_bytes(),
                crate::db::Value::Str(crate::bytes::SmallBytes::new(&vec![b'v'; i % 3000])),
            );
        }
        let m = Membership {
            voters: nodes(&[1, 2, 3]),
            learners: nodes(&[4]),
        };
        let mut state = 77u64.to_le_bytes().to_vec();
        state.extend_from_slice(&crate::snapshot::encode(&vs, 0));
        (snapshot_blob(&m, &state).to_vec(), m)
    }

    #[test]
    fn a_blob_fed_in_pieces_gives_its_membership_clock_and_keys() {
        let (b, m) = blob(500);
        let t = Tunables::default();
        for piece in [1, 5, 40, 4096, b.len()] {
            let mut d = BlobDecoder::new(b.len() as u64, &t);
            for c in b.chunks(piece) {
                d.feed(c).unwrap();
            }
            assert_eq!(d.fed(), b.len() as u64);
            let got = d.finish().unwrap();
            assert_eq!(got.membership, m, "piece {piece}");
            assert_eq!(got.clock_us, 77);
            assert_eq!(got.vshard.id, crate::slot::VShardId(3));
            assert_eq!(got.vshard.len(), 500);
        }
        // A blob shorter than its front (an empty vShard's is not).
        let (small, _) = blob(0);
        let mut d = BlobDecoder::new(small.len() as u64, &t);
        d.feed(&small).unwrap();
        assert_eq!(d.finish().unwrap().vshard.len(), 0);
    }

    #[test]
    fn a_bad_blob_is_refused() {
        let (b, _) = blob(50);
        let t = Tunables::default();
        let run = |b: &[u8], total: usize| {
            let mut d = BlobDecoder::new(total as u64, &t);
            b.chunks(64).try_for_each(|c| d.feed(c))?;
            d.finish().map(|_| ())
        };
        assert!(run(&b, b.len()).is_ok());
        let mut bad = b.clone();
        bad[0] = 200; // a membership of 200 voters
        assert_eq!(run(&bad, b.len()).unwrap_err().reason, "a bad membership");
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(run(&bad, b.len()).unwrap_err().reason, "checksum mismatch");
        assert!(run(&b[..b.len() - 1], b.len()).is_err());
        assert!(run(&b[..10], 10).is_err());
        assert!(run(&b, b.len() - 1).is_err());
    }
}
