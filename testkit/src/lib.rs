//! # shardline-testkit: test support
//!
//! - [`lincheck`]: a Wing-Gong linearizability checker for single-key register histories, for the
//!   histories the crash and partition tests of replication record (issue 3).
//! - [`faultproxy`]: a fault-injecting TCP proxy between processes on loopback (partition,
//!   blackhole, delay, heal).
//!
//! It checks histories and moves bytes; it does not start servers (tests do, with real processes).

pub mod faultproxy;
pub mod lincheck;
