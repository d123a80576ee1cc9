//! The replica layer's pure pieces (issue 16: the layer moves here from `src/cluster/replica`,
//! see docs/design/redesign.md). Today: a job's reply token and finished replies, and the
//! pending job that collects replies arriving from the log in any order.

pub mod job;

/// A token of a pending reply on the sending thread: slot index in the low 32 bits, the slot's
/// generation in the high 32, so a late reply to a released slot is never taken for another's.
/// `NO_REPLY` asks for no reply.
pub type Token = u64;
pub const NO_REPLY: Token = u64::MAX;

/// The replies to a job: `bytes` holds each op's reply, ending at `ends[i]`.
pub struct Done {
    pub token: Token,
    pub bytes: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Done {
    pub fn segment(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }
}
