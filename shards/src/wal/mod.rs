//! The write-ahead log of one shard thread, shared by the Raft groups (vShards) it drives:
//! segment files of checksummed records, group commit, recovery that truncates a torn tail and
//! refuses any other damage. Sans-IO: [`engine::Engine`] queues records and hands file operations
//! to a driver (`src/wal.rs` in the binary runs them with real files).
//!
//! Call order: `Engine::recover` (or `Engine::new`) → `append` / `truncate` / `purge` /
//! `save_vote` and `flush(token)` → `take_batch(now)` → the driver runs `ops` in order, then
//! acknowledges `acks` → repeat.

pub mod engine;
pub mod record;

pub use engine::{
    Batch, Corrupt, Engine, FsyncPolicy, GroupLog, Io, LogError, LogId, Recovered, Vote, WalConfig,
};

#[cfg(test)]
mod tests;
