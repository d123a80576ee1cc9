//! # shardline-testkit: test support
//!
//! [`lincheck`]: a Wing-Gong linearizability checker for single-key registers, for the histories
//! the crash and partition tests of replication record (issue 3). Later: the fault-injecting TCP
//! proxy. It checks histories; it does not run clients or servers.

pub mod lincheck;
