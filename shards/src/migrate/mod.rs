//! Live vShard migration (issue 19, `docs/design/migration.md`): what is pure of it.
//!
//! - [`session`]: a bulk session, one base copy from a source to a target beside the Raft
//!   bus: chunks in a window, acknowledgements, CRC32C per chunk and of the whole copy,
//!   resume from what the target holds, cancel. Sans-IO; transports carry its messages.
//!
//! - [`hub`]: a shard thread's sessions, as source of the snapshots its groups offer and as
//!   target of those they want, and the framing of the bulk lanes that carry them.
//!
//! - [`share`]: the share of a shard thread's time its copies may take.
//!
//! The transports that carry lanes are in `shardline-transport` (`quic`, `rdma`, `lane`);
//! moves and the rebalancer in `meta`.

pub mod hub;
pub mod session;
pub mod share;
