//! Commands across vShards as Calvin transactions (issue 17; the design and its steps are in
//! `docs/design/calvin.md`).
//!
//! What is here, pure and step-tested:
//! - [`exec`]: what a participant reads for a transaction, how it runs the transaction from
//!   every participant's reads on a scratch keyspace (so every participant decides the same
//!   outcome from the same inputs), and how it keeps the writes to its own keys.
//!
//! - [`sched`]: the participant side on one shard thread: per-key queues in sequence order,
//!   when a transaction reads and sends (the ready mark), when it is proposed, which keys
//!   single-vShard commands wait for.
//!
//! - [`seq`]: the sequencer group's state machine: epochs of submissions by group commit,
//!   sequence numbers given once per submission id, the transactions kept for participants
//!   that ask, forgotten through the log, backpressure.
//!
//! - [`msg`]: what threads and nodes send each other (submissions, reads, replies, asks,
//!   executed marks) and its encoding on the cluster bus.
//!
//! The driver that carries them is `src/cluster/replica/calvin/`.

pub mod exec;
pub mod msg;
pub mod sched;
pub mod seq;

#[cfg(test)]
mod tests;
