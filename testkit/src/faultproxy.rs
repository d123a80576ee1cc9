//! A fault-injecting TCP proxy for tests: put it between two processes on loopback, then cut the
//! link (`partition`: connections reset, new ones refused), silence it (`blackhole`: connections
//! stay open but bytes vanish, as a network that drops packets), slow it (`set_delay`), and
//! `heal` it. It only ever connects to loopback targets.
//!
//! It also forwards UDP datagrams sent to its port to the target's port under the same
//! faults (a partition or a blackhole drops them, a delay delays them): a node's SWIM packets
//! go to a member's bus address, so a proxied bus cuts membership as a network would.
//! Datagrams go one way: the target answers a member at that member's own address, not at
//! the datagram's source, so the proxy in the other direction carries the answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASS: u8 = 0;
const BLACKHOLE: u8 = 1;
const PARTITIONED: u8 = 2;

struct Shared {
    target: SocketAddr,
    mode: AtomicU8,
    delay_ms: AtomicU64,
    /// Both ends of every live link, to cut them on `partition`.
    links: Mutex<Vec<(TcpStream, TcpStream)>>,
    stopped: AtomicBool,
    forwarded_bytes: AtomicU64,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        if !target.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the fault proxy only forwards to loopback addresses",
            ));
        }
        // A TCP port whose UDP twin is free too.
        let (listener, udp) = {
            let mut tries = 0;
            loop {
                let l = TcpListener::bind("127.0.0.1:0")?;
                match UdpSocket::bind(l.local_addr()?) {
                    Ok(u) => break (l, u),
                    Err(e) if tries > 20 => return Err(e),
                    Err(_) => tries += 1,
                }
            }
        };
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            mode: AtomicU8::new(PASS),
            delay_ms: AtomicU64::new(0),
            links: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            forwarded_bytes: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, s))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy-udp".into())
            .spawn(move || datagram_loop(udp, s))?;
        Ok(FaultProxy { addr, shared })
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the link: every open connection is reset and new ones are closed at once.
    pub fn partition(&self) {
        self.shared.mode.store(PARTITIONED, Ordering::SeqCst);
        for (a, b) in self.shared.links.lock().expect("links").drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// Keeps connections open but drops every byte in both directions.
    pub fn blackhole(&self) {
        self.shared.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Delays every forwarded chunk by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Back to a working link (connections cut by a partition stay cut; new ones work).
    pub fn heal(&self) {
        self.shared.mode.store(PASS, Ordering::SeqCst);
        self.shared.delay_ms.store(0, Ordering::SeqCst);
    }

    /// Bytes handed to the other side so far, both directions (a chunk is counted before it is
    /// written, so a reply seen by a client is always counted).
    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.forwarded_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.partition();
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.mode.load(Ordering::SeqCst) == PARTITIONED {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(shared.target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        shared.links.lock().expect("links").push((c3, s3));
        let (a, b) = (shared.clone(), shared.clone());
        std::thread::spawn(move || pump(client, server, a));
        std::thread::spawn(move || pump(s2, c2, b));
    }
}

/// Forwards each datagram to the target's UDP port under the current mode until stopped.
fn datagram_loop(udp: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopped.load(Ordering::SeqCst) {
        let Ok((n, _)) = udp.recv_from(&mut buf) else {
            continue; // the read timeout: look at `stopped` again
        };
        if shared.mode.load(Ordering::SeqCst) != PASS {
            continue;
        }
        let delay = shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let _ = udp.send_to(&buf[..n], shared.target);
    }
}

/// Copies `from` to `to` under the current mode until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match shared.mode.load(Ordering::SeqCst) {
            PASS => {}
            BLACKHOLE => continue,
            _ => break,
        }
        let delay = shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        // Counted before the write: once the other side has the bytes (and may answer), the
        // count already has them (counted after, an echo could reach the client first).
        shared.forwarded_bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_bytes_then_blackholes_then_heals() {
        let p = FaultProxy::start(echo()).unwrap();
        let mut c = TcpStream::connect(p.addr()).unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").unwrap(), b"hello");
        p.blackhole();
        assert!(roundtrip(&mut c, b"lost").is_err(), "nothing comes back");
        p.heal();
        // The connection survived; what was sent during the blackhole is gone.
        assert_eq!(roundtrip(&mut c, b"again").unwrap(), b"again");
        assert!(p.forwarded_bytes() >= 20);
    }

    #[test]
    fn a_partition_resets_links_and_refuses_new_ones_until_healed() {
        let p = FaultProxy::start(echo()).unwrap();
        let mut c = TcpStream::connect(p.addr()).unwrap();
        assert_eq!(roundtrip(&mut c, b"x").unwrap(), b"x");
        p.partition();
        assert!(roundtrip(&mut c, b"y").is_err(), "the open link is cut");
        let mut fresh = TcpStream::connect(p.addr()).unwrap();
        assert!(roundtrip(&mut fresh, b"z").is_err(), "new links are closed");
        p.heal();
        let mut healed = TcpStream::connect(p.addr()).unwrap();
        assert_eq!(roundtrip(&mut healed, b"ok").unwrap(), b"ok");
    }

    #[test]
    fn delays_are_applied_to_each_chunk() {
        let p = FaultProxy::start(echo()).unwrap();
        p.set_delay(Duration::from_millis(100));
        let mut c = TcpStream::connect(p.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        c.write_all(b"slow").unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap();
        // Both directions are delayed: at least 200 ms (a lower bound, not a timing target).
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn datagrams_are_forwarded_then_dropped_by_a_partition_then_forwarded_again() {
        let target = UdpSocket::bind("127.0.0.1:0").unwrap();
        target
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        // A TCP listener on the target's port too (the proxy's target is a TCP address).
        let p = FaultProxy::start(target.local_addr().unwrap()).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 16];
        let mut got = |msg: &[u8]| -> bool {
            sender.send_to(msg, p.addr()).unwrap();
            matches!(target.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == msg)
        };
        assert!(got(b"one"));
        p.partition();
        assert!(!got(b"two"), "a partition drops datagrams");
        p.heal();
        assert!(got(b"three"));
        p.blackhole();
        assert!(!got(b"four"), "a blackhole drops datagrams");
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(FaultProxy::start("10.1.2.3:6379".parse().unwrap()).is_err());
    }
}
