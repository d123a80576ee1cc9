//! Socket helpers for the shard threads.

use std::net::SocketAddr;

/// Whether `addr` is a loopback address (protected mode allows those without a password).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The listen backlog asked of the kernel for each shard thread's listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Fails if another process already listens on `addr`. The shard threads bind with SO_REUSEPORT,
/// which would otherwise silently share the port with a second server and split its traffic; a
/// plain bind first makes that an error, as it is for Redis.
pub fn check_port_free(addr: SocketAddr) -> std::io::Result<()> {
    bind_patiently(addr).map(drop)
}

/// Binds a listener, retrying for up to 3 s while the address is in use: a process killed a
/// moment ago can hold its listeners a little longer (io_uring tears a dead process's ring down
/// asynchronously, with the sockets its pending accepts reference), and a server restarted right
/// after a crash must not fail on that.
pub fn bind_patiently(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// An exclusive advisory lock on a file, held for the life of the value (one server per data
/// directory).
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    pub fn acquire(path: &std::path::Path) -> std::io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a valid open descriptor has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock { _file: file })
    }
}

/// Shuts a socket down both ways: a read pending on it ends (CLIENT KILL).
pub fn shutdown(fd: std::os::fd::RawFd) {
    // SAFETY: plain syscall on a descriptor; an invalid one yields an error, ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Whether the peer of a readable socket has closed it: a non-blocking one-byte `MSG_PEEK`
/// returns 0 at end of stream. Consumes nothing, so bytes the client sent stay for later reads.
pub fn peer_closed(fd: std::os::fd::RawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `b` is a valid writable one-byte buffer; an invalid `fd` yields an error.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    n < 0
        && !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        )
}

/// Which of `fds` are ready for `events` (`libc::POLLIN`, `libc::POLLOUT`) within
/// `timeout_ms` (0: now), in order; a descriptor in error or hung up counts as ready (the
/// read or write that follows says what happened). All not ready if the poll fails.
pub fn poll_ready(fds: &[std::os::fd::RawFd], events: i16, timeout_ms: i32) -> Vec<bool> {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: `set` is a valid array of `set.len()` pollfd structures, alive for the call.
    let n = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    set.iter().map(|p| p.revents != 0).collect()
}

/// Receives what a socket holds now, without waiting, appending at most `max` bytes to `buf`:
/// the count (0 at end of stream), or the error (`WouldBlock` when it holds nothing).
pub fn recv_now(fd: std::os::fd::RawFd, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: `spare` is `len` or more writable bytes of `buf`'s allocation; `recv` writes at
    // most `len` of them, and exactly the count it returns, which is then set as initialized.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel initialized `n` (<= `len`) bytes past the old length.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

/// Sends what a socket takes now of `bytes`, without waiting (no SIGPIPE): the count, or the
/// error (`WouldBlock` when it takes nothing).
pub fn send_now(fd: std::os::fd::RawFd, bytes: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `bytes` is a valid readable buffer of its length for the call.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Bytes of a bulk lane's UDP socket buffers (QUIC, issue 19): several of its 64 KiB
/// datagrams per round trip, so a burst is not dropped by the socket.
const LANE_UDP_BUFFER: libc::c_int = 8 << 20;

/// A UDP socket for a bulk lane's QUIC on `ip` (an ephemeral port): large buffers (beyond
/// `rmem_max` where the process may), and datagrams never fragmented (`IP_PMTUDISC_DO`):
/// QUIC's path MTU discovery then sees a datagram too large for the path as lost.
pub fn lane_udp(ip: std::net::IpAddr) -> std::io::Result<std::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let s = std::net::UdpSocket::bind((ip, 0))?;
    let fd = s.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is the open socket `s` owns; the option's value is a c_int on the
        // stack, its size passed with it.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if !set(libc::SOL_SOCKET, force, LANE_UDP_BUFFER) {
            set(libc::SOL_SOCKET, plain, LANE_UDP_BUFFER);
        }
    }
    let dont_fragment = match ip {
        std::net::IpAddr::V4(_) => set(
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        ),
        std::net::IpAddr::V6(_) => set(
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        ),
    };
    if !dont_fragment {
        return Err(std::io::Error::last_os_error());
    }
    s.set_nonblocking(true)?;
    Ok(s)
}
