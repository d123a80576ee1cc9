//! Live vShard migration (issue 19, `docs/design/migration.md`): what is pure of it.
//!
//! - [`session`]: a bulk session, one base copy from a source to a target beside the Raft
//!   bus: chunks in a window, acknowledgements, CRC32C per chunk and of the whole copy,
//!   resume from what the target holds, cancel. Sans-IO; transports carry its messages.
//!
//! Not here yet (the design's later steps): the transports (`transport/`), streaming
//! snapshots, moves as metadata records, the rebalancer.

pub mod session;
