//! Commands across vShards as Calvin transactions (issue 17; the design and its steps are in
//! `docs/design/calvin.md`).
//!
//! What is here, pure and step-tested:
//! - [`exec`]: what a participant reads for a transaction, how it runs the transaction from
//!   every participant's reads on a scratch keyspace (so every participant decides the same
//!   outcome from the same inputs), and how it keeps the writes to its own keys.
//!
//! Not here yet: the sequencer group (step 1) and the per-thread scheduler (step 2), which
//! decide *when* `exec` runs; the driver that carries reads between participants.

pub mod exec;

#[cfg(test)]
mod tests;
