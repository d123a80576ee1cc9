//! Live vShard migration (issue 19, `docs/design/migration.md`): what is pure of it.
//!
//! - [`session`]: a bulk session, one base copy from a source to a target beside the Raft
//!   bus: chunks in a window, acknowledgements, CRC32C per chunk and of the whole copy,
//!   resume from what the target holds, cancel. Sans-IO; transports carry its messages.
//!
//! - [`hub`]: a shard thread's sessions, as source of the snapshots its groups offer and as
//!   target of those they want, and the framing of the bulk lanes that carry them.
//!
//! Not here yet (the design's later steps): QUIC and RDMA transports, streaming
//! snapshots, moves as metadata records, the rebalancer.

pub mod hub;
pub mod session;
