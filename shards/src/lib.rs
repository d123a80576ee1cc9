//! # shardline-shards: the data plane's logic
//!
//! Everything here is pure: no sockets, no files, no clocks, no threads. A shard thread (in the
//! `shardline` binary) owns one [`db::Db`] and feeds it commands; later, Raft apply and Calvin
//! execution feed the same [`command::apply`] from a log.
//!
//! Call order for one request:
//! 1. [`command::lookup`] the name, check [`command::CommandSpec::arity_ok`];
//! 2. route: [`route::plan`] says which shard thread(s) own the keys;
//! 3. on the owning thread, [`command::apply`] with the request time and RNG in a
//!    [`command::Ctx`], writing the reply into an [`reply::Out`].
//!
//! It will not: parse RESP (see `shardline-transport`), decide placement across nodes, or read
//! the time.

pub mod acl;
pub mod bytes;
pub mod calvin;
pub mod cmdfuzz;
pub mod command;
pub mod db;
pub mod dict;
pub mod evict;
pub mod glob;
pub mod ids;
pub mod longdouble;
pub mod mem;
pub mod meta;
pub mod migrate;
pub mod notify;
pub mod num;
pub mod ostree;
pub mod packed;
pub mod placement;
pub mod raft;
pub mod rdb;
pub mod replica;
pub mod replicate;
pub mod reply;
pub mod rng;
pub mod route;
pub mod script;
pub mod slot;
pub mod slowlog;
pub mod snapshot;
pub mod swim;
pub mod types;
pub mod wal;
