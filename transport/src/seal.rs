//! Sealed datagrams (issue 20, step 5): SWIM's UDP packets carry an HMAC-SHA256 with the
//! cluster's shared secret, and a sender's run and sequence number, so a receiver refuses a
//! forged packet, a packet of another cluster and a replayed one. Sans-IO: bytes in, bytes out.
//!
//! A sealed packet: `b'S'`, version 1, the sender (u64 LE: its member id), its run (u64 LE: its
//! start time in nanoseconds), its sequence number in that run (u64 LE, from 1), the payload,
//! then the first 16 bytes of HMAC-SHA256(key, everything before). The receiver keeps, per
//! sender (named inside the packet, not by its address: a proxy or NAT may share one), the
//! newest run seen and a 64-packet window below its highest sequence number (IPsec's scheme,
//! RFC 4303 §3.4.3): a packet of an older run, one at or below the window, or one the window
//! has seen is refused. A window silent for [`WINDOW_IDLE_MS`] is forgotten (a sender that restarts
//! with its clock stepped back is heard again after it).
//!
//! The key is derived from the secret (HMAC-SHA256(secret, "shardline swim v1")), so the same
//! secret keys other things without any two sharing a key: [`proof`] (a joining node's, label
//! "shardline join v1") is the other.

use std::collections::HashMap;

const TAG: u8 = b'S';
const VERSION: u8 = 1;
const HEADER: usize = 2 + 8 + 8 + 8;
const MAC: usize = 16;
/// Bytes a seal adds to a packet.
pub const OVERHEAD: usize = HEADER + MAC;
/// Packets below the highest sequence number seen that may still arrive (reordered).
const WINDOW: u64 = 64;
/// A sender's window is forgotten after this long without a packet from it (ms).
pub const WINDOW_IDLE_MS: u64 = 60_000;
/// Senders remembered at once; past it the longest silent is forgotten.
const SENDERS_MAX: usize = 4096;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a sealed packet of this version, or too short.
    Malformed,
    /// The MAC does not match: another cluster's secret, or a forged or damaged packet.
    BadMac,
    /// Authentic, but seen before, older than the window, or from an earlier run.
    Replayed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Malformed => "not a sealed packet",
            Refused::BadMac => "its MAC does not match (another cluster's secret, or forged)",
            Refused::Replayed => "replayed (seen before, or from an earlier run)",
        })
    }
}

const SWIM_LABEL: &str = "shardline swim v1";

fn key_of(secret: &[u8], label: &str) -> ring::hmac::Key {
    let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let derived = ring::hmac::sign(&root, label.as_bytes());
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

/// HMAC-SHA256 of `msg` under the key `label` derives from `secret`, in hex: a proof that the
/// sender holds the secret, bound to `msg`.
pub fn proof(secret: &[u8], label: &str, msg: &[u8]) -> String {
    let tag = ring::hmac::sign(&key_of(secret, label), msg);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `hex` is [`proof`]`(secret, label, msg)` (compared in constant time).
pub fn proof_matches(secret: &[u8], label: &str, msg: &[u8], hex: &str) -> bool {
    let Some(tag) = from_hex(hex) else {
        return false;
    };
    ring::hmac::verify(&key_of(secret, label), msg, &tag).is_ok()
}

/// Bytes from hex (either case); `None` when it is not.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Seals this node's packets.
pub struct Sealer {
    key: ring::hmac::Key,
    sender: u64,
    run: u64,
    seq: u64,
}

impl Sealer {
    /// A sealer for sender `sender`'s run named `run` (the start time in nanoseconds: later
    /// runs are larger).
    pub fn new(secret: &[u8], sender: u64, run: u64) -> Sealer {
        Sealer {
            key: key_of(secret, SWIM_LABEL),
            sender,
            run,
            seq: 0,
        }
    }

    /// Appends the sealed form of `payload` to `out`.
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.seq += 1;
        let start = out.len();
        out.reserve(payload.len() + OVERHEAD);
        out.extend_from_slice(&[TAG, VERSION]);
        out.extend_from_slice(&self.sender.to_le_bytes());
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(payload);
        let tag = ring::hmac::sign(&self.key, &out[start..]);
        out.extend_from_slice(&tag.as_ref()[..MAC]);
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    run: u64,
    top: u64,
    /// Bit `i`: sequence number `top - i` was seen.
    seen: u64,
    /// When its sender was last heard (ms, the caller's clock).
    heard: u64,
}

impl Window {
    /// Whether `(run, seq)` is new, marking it seen when it is.
    fn admit(&mut self, run: u64, seq: u64) -> bool {
        if run < self.run {
            return false;
        }
        if run > self.run {
            *self = Window {
                run,
                top: seq,
                seen: 1,
                heard: self.heard,
            };
            return true;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.top = seq;
            return true;
        }
        let back = self.top - seq;
        if back >= WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// Opens the packets this node receives.
pub struct Opener {
    key: ring::hmac::Key,
    windows: HashMap<u64, Window>,
}

impl Opener {
    pub fn new(secret: &[u8]) -> Opener {
        Opener {
            key: key_of(secret, SWIM_LABEL),
            windows: HashMap::new(),
        }
    }

    /// The payload of `packet` at `now` (ms, any monotonic clock), or why it is refused. Only
    /// an authentic packet touches the windows.
    pub fn open<'p>(&mut self, packet: &'p [u8], now: u64) -> Result<&'p [u8], Refused> {
        if packet.len() < OVERHEAD || packet[0] != TAG || packet[1] != VERSION {
            return Err(Refused::Malformed);
        }
        let (body, mac) = packet.split_at(packet.len() - MAC);
        let want = ring::hmac::sign(&self.key, body);
        // Constant time: `ring::hmac::verify` wants the whole tag, this packet carries 16 bytes.
        let diff = want.as_ref()[..MAC]
            .iter()
            .zip(mac)
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return Err(Refused::BadMac);
        }
        let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
        let (from, run, seq) = (word(2), word(10), word(18));
        if !self.windows.contains_key(&from) && self.windows.len() >= SENDERS_MAX {
            self.forget_idle(now);
            if self.windows.len() >= SENDERS_MAX
                && let Some(oldest) = self.windows.iter().min_by_key(|(_, w)| w.heard)
            {
                let oldest = *oldest.0;
                self.windows.remove(&oldest);
            }
        }
        let w = self.windows.entry(from).or_insert(Window {
            run,
            top: seq,
            seen: 0,
            heard: now,
        });
        if now.saturating_sub(w.heard) > WINDOW_IDLE_MS {
            *w = Window {
                run,
                top: seq,
                seen: 0,
                heard: now,
            };
        }
        if !w.admit(run, seq) {
            return Err(Refused::Replayed);
        }
        w.heard = now;
        Ok(&body[HEADER..])
    }

    /// Forgets the windows of senders silent for [`WINDOW_IDLE_MS`].
    pub fn forget_idle(&mut self, now: u64) {
        self.windows
            .retain(|_, w| now.saturating_sub(w.heard) <= WINDOW_IDLE_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(s: &mut Sealer, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.seal(payload, &mut out);
        out
    }

    #[test]
    fn a_sealed_packet_opens_once_and_its_replay_is_refused() {
        let now = 1_000u64;
        let mut s = Sealer::new(b"secret", 1, 10);
        let mut o = Opener::new(b"secret");
        let p = sealed(&mut s, b"ping");
        assert_eq!(p.len(), 4 + OVERHEAD);
        assert_eq!(o.open(&p, now), Ok(&b"ping"[..]));
        assert_eq!(o.open(&p, now), Err(Refused::Replayed));
        // Another sender's window is its own, even from the same address.
        let mut s2 = Sealer::new(b"secret", 2, 10);
        assert_eq!(o.open(&sealed(&mut s2, b"x"), now), Ok(&b"x"[..]));
    }

    #[test]
    fn another_secret_a_flipped_bit_or_a_short_packet_is_refused() {
        let now = 1_000u64;
        let mut o = Opener::new(b"secret");
        let p = sealed(&mut Sealer::new(b"other", 1, 1), b"ping");
        assert_eq!(o.open(&p, now), Err(Refused::BadMac));
        let mut p = sealed(&mut Sealer::new(b"secret", 1, 1), b"ping");
        for i in 0..p.len() {
            p[i] ^= 0x20;
            let r = o.open(&p, now);
            assert!(r.is_err(), "byte {i} flipped: {r:?}");
            p[i] ^= 0x20;
        }
        assert_eq!(o.open(&p[..OVERHEAD - 1], now), Err(Refused::Malformed));
        assert_eq!(o.open(b"", now), Err(Refused::Malformed));
        // Nothing above touched the window: the packet still opens once.
        assert!(o.open(&p, now).is_ok());
    }

    #[test]
    fn reordered_packets_within_the_window_open_and_older_ones_do_not() {
        let now = 1_000u64;
        let mut s = Sealer::new(b"k", 1, 5);
        let mut o = Opener::new(b"k");
        let ps: Vec<Vec<u8>> = (0..100).map(|i| sealed(&mut s, &[i as u8])).collect();
        assert!(o.open(&ps[10], now).is_ok());
        assert!(o.open(&ps[3], now).is_ok(), "older, but within 64");
        assert!(o.open(&ps[99], now).is_ok());
        assert_eq!(o.open(&ps[20], now), Err(Refused::Replayed), "79 back");
        assert!(o.open(&ps[40], now).is_ok(), "59 back");
        assert_eq!(o.open(&ps[40], now), Err(Refused::Replayed));
        assert_eq!(o.open(&ps[99], now), Err(Refused::Replayed));
    }

    #[test]
    fn a_new_run_resets_the_window_and_an_old_run_is_refused_until_idle() {
        let now = 1_000u64;
        let mut o = Opener::new(b"k");
        let mut old = Sealer::new(b"k", 1, 100);
        let stale = sealed(&mut old, b"a");
        let later_old = sealed(&mut old, b"b");
        assert!(o.open(&stale, now).is_ok());
        let mut new = Sealer::new(b"k", 1, 200);
        assert!(o.open(&sealed(&mut new, b"c"), now).is_ok());
        assert_eq!(o.open(&later_old, now), Err(Refused::Replayed));
        // A sender silent past the idle time is heard afresh (a restart with the clock back).
        let mut back = Sealer::new(b"k", 1, 50);
        let p = sealed(&mut back, b"d");
        assert_eq!(o.open(&p, now), Err(Refused::Replayed));
        let later = now + WINDOW_IDLE_MS + 1000;
        assert!(o.open(&p, later).is_ok());
    }

    #[test]
    fn proofs_match_their_message_and_secret_only() {
        let p = proof(b"secret", "join", b"msg");
        assert_eq!(p.len(), 64);
        assert!(proof_matches(b"secret", "join", b"msg", &p));
        assert!(proof_matches(b"secret", "join", b"msg", &p.to_uppercase()));
        assert!(!proof_matches(b"secret", "join", b"msh", &p));
        assert!(!proof_matches(b"secreu", "join", b"msg", &p));
        assert!(!proof_matches(b"secret", "swim", b"msg", &p));
        assert!(!proof_matches(b"secret", "join", b"msg", &p[..62]));
        assert!(!proof_matches(b"secret", "join", b"msg", "zz"));
        assert_eq!(from_hex("0aFf"), Some(vec![10, 255]));
        assert_eq!(from_hex("0"), None);
    }

    #[test]
    fn senders_past_the_bound_evict_the_longest_silent() {
        let now = 1_000u64;
        let mut o = Opener::new(b"k");
        for i in 0..SENDERS_MAX + 10 {
            let mut s = Sealer::new(b"k", i as u64, 1);
            let t = now + i as u64;
            assert!(o.open(&sealed(&mut s, b"x"), t).is_ok());
        }
        assert_eq!(o.windows.len(), SENDERS_MAX);
        assert!(!o.windows.contains_key(&0));
    }
}
