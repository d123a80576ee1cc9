//! # shardline-transport: what touches the OS and the wire
//!
//! - [`resp`]: RESP framing, sans-IO (no OS dependency);
//! - [`frame`]: node-to-node frames (hello, batches of Raft messages), sans-IO;
//! - [`link`]: the node-to-node link: handshake and frame reading (sans-IO), its TCP
//!   implementation on monoio and the simulator's in-memory one;
//! - [`wire`]: the bounds-checked reader every binary format decodes with, sans-IO;
//! - [`net`]: listening sockets with SO_REUSEPORT, one per shard thread;
//! - [`cpu`]: pinning a thread to a core, reading the process's CPU time.
//! - [`lane`]: the record a bulk lane's ends open it with (which carrier: TCP, RDMA, QUIC);
//! - [`rdma`]: RDMA as the carrier of a bulk lane's bytes (the `ibverbs` implementation
//!   behind the `rdma` feature; a fake fabric for tests);
//! - [`quic`]: QUIC (quinn-proto, rustls) as the other carrier of a bulk lane's bytes,
//!   sans-IO;
//! - [`hint`]: cache prefetch hints for the keyspace's batched lookups;
//! - [`tls`]: mutual TLS on the node-to-node links (rustls driven over monoio sockets), and
//!   the development CA `shardline ctl certs` makes;
//! - [`seal`]: SWIM's datagrams sealed with an HMAC and a replay window, sans-IO;
//!
//! Every `unsafe` block of the project lives here, with a `// SAFETY:` line.

pub mod alloc;
pub mod cpu;
pub mod frame;
pub mod hint;
pub mod lane;
pub mod link;
pub mod net;
pub mod quic;
pub mod rdma;
pub mod resp;
pub mod seal;
pub mod tls;
pub mod wire;
