//! Leaders' hints to their peers (`HINTS_GROUP` bus messages): which groups a node leads, in
//! which term, with which voters, learners, base-copy progress and load; sans-IO codec.

use super::progress;
use shardline_transport::wire::{Reader, WireError};

const HINT_BYTES: usize = 28;

/// What a leader tells its peers about a group it leads (`encode_hints`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    pub group: u16,
    pub term: u64,
    /// The voters (a bit set) of the group's committed membership; 0 while a change is not
    /// committed yet.
    pub voters: u64,
    /// The entry that set that membership.
    pub conf_index: u64,
    /// The group's learners (a bit set), and how far the base copy of one of them has come
    /// (`CLUSTER MOVES`); encoded only when there are learners.
    pub learners: u64,
    pub copy: progress::CopyProgress,
    /// The group's load on its leader (`replica/load.rs`), once the leader has a figure
    /// (`None`: every node keeps the one it had).
    pub load: Option<shardline_shards::meta::rebalance::Load>,
}

/// A leader's hint to its peers about the groups it leads, 28 bytes each (32 more with
/// learners, 12 more with a load):
/// nodes without a replica of a vShard route it by them, a replica that a committed
/// membership left out learns it from them (its removal notice may have been lost), and every
/// node follows the moves under way (`CLUSTER MOVES`).
pub fn encode_hints(led: impl Iterator<Item = Hint>, out: &mut Vec<u8>) {
    for h in led {
        out.extend_from_slice(&h.group.to_le_bytes());
        out.extend_from_slice(&h.term.to_le_bytes());
        out.extend_from_slice(&h.voters.to_le_bytes());
        out.extend_from_slice(&h.conf_index.to_le_bytes());
        out.push((h.learners != 0) as u8);
        if h.learners != 0 {
            out.extend_from_slice(&h.learners.to_le_bytes());
            h.copy.encode(out);
        }
        out.push(h.load.is_some() as u8);
        if let Some(l) = h.load {
            out.extend_from_slice(&l.ops.to_le_bytes());
            out.extend_from_slice(&l.bytes.to_le_bytes());
            out.extend_from_slice(&l.cpu_us.to_le_bytes());
        }
    }
}

/// The hints of a message, or why it is malformed (all read before any is used).
pub fn decode_hints(b: &[u8], groups: usize) -> Result<Vec<Hint>, String> {
    let mut r = Reader::new(b);
    let mut hints = Vec::with_capacity(b.len() / HINT_BYTES);
    while !r.is_empty() {
        let read = |r: &mut Reader| -> Result<Hint, WireError> {
            let (group, term, voters, conf_index) = (r.u16()?, r.u64()?, r.u64()?, r.u64()?);
            let (learners, copy) = match r.flag()? {
                false => (0, progress::CopyProgress::default()),
                true => (r.u64()?, progress::CopyProgress::decode(r)?),
            };
            let load = match r.flag()? {
                false => None,
                true => Some(shardline_shards::meta::rebalance::Load {
                    ops: r.u32()?,
                    bytes: r.u32()?,
                    cpu_us: r.u32()?,
                }),
            };
            Ok(Hint {
                group,
                term,
                voters,
                conf_index,
                learners,
                copy,
                load,
            })
        };
        let h = read(&mut r).map_err(|e| format!("a leader hint: {e}"))?;
        if h.group as usize >= groups {
            return Err(format!(
                "a leader hint for vShard {}, which does not exist",
                h.group
            ));
        }
        hints.push(h);
    }
    Ok(hints)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::HINT_BYTES;

    #[test]
    fn hints_round_trip_and_malformed_ones_are_refused() {
        let mut b = Vec::new();
        let hints = [
            Hint {
                group: 0,
                term: 7,
                voters: 0b111,
                conf_index: 0,
                learners: 0,
                copy: Default::default(),
                load: None,
            },
            Hint {
                group: 3,
                term: 1 << 40,
                voters: 1 << 63,
                conf_index: 12,
                learners: 0b1000,
                copy: progress::CopyProgress {
                    acked: 5,
                    total: 9,
                    elapsed_ms: 300,
                },
                load: Some(shardline_shards::meta::rebalance::Load {
                    ops: 1200,
                    bytes: 0,
                    cpu_us: 77_000,
                }),
            },
        ];
        encode_hints(hints.into_iter(), &mut b);
        assert_eq!(decode_hints(&b, 4).unwrap(), hints);
        for cut in 1..b.len() {
            assert!(
                decode_hints(&b[..cut], 4).is_err() || cut == HINT_BYTES,
                "cut {cut}"
            );
        }
        let e = decode_hints(&b[..9], 4).unwrap_err();
        assert!(e.contains("runs past the end at offset 2"), "{e}");
        assert!(decode_hints(&b, 3).err().unwrap().contains("vShard 3"));
        let mut r = Vec::new();
        encode_removed(5, 99, &mut r);
        assert_eq!(decode_removed(&r, 6).unwrap(), [(5, 99)]);
        assert!(decode_removed(&r, 5).is_err());
        assert!(decode_removed(&r[..11], 6).is_err());
    }
}
