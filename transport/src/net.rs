//! Socket helpers for the shard threads.

use std::net::SocketAddr;

/// Whether `addr` is a loopback address (protected mode allows those without a password).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The listen backlog asked of the kernel for each shard thread's listener.
pub const LISTEN_BACKLOG: i32 = 1024;
