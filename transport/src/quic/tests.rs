//! A lane's two QUIC ends through a network in virtual time: datagrams lost, repeated,
//! reordered; strangers' datagrams; certificates that are not the announced ones.

use super::*;

const SOURCE_AT: &str = "10.0.0.1:4000";
const TARGET_AT: &str = "10.0.0.2:5000";

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `pm` per mille.
    fn chance(&mut self, pm: u64) -> bool {
        self.next() % 1000 < pm
    }
}

/// Faults of the network between the two ends, per mille of datagrams.
#[derive(Clone, Copy, Default)]
struct Faults {
    lost: u64,
    repeated: u64,
    reordered: u64,
}

struct Net {
    now: Instant,
    source: Pipe,
    target: Pipe,
    /// Datagrams under way: (to the target?, bytes).
    wire: VecDeque<(bool, Vec<u8>)>,
    rng: Rng,
    faults: Faults,
    /// The largest datagram sent.
    largest: usize,
}

fn at(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9) as u8 ^ (i >> 11) as u8)
        .collect()
}

impl Net {
    /// The two ends, each pinning the certificate given for its peer.
    fn with(
        source: &Identity,
        target: &Identity,
        source_pins: Fingerprint,
        target_pins: Fingerprint,
        seed: u64,
        faults: Faults,
    ) -> Net {
        let now = Instant::now();
        Net {
            source: Pipe::client(source, source_pins, at(TARGET_AT), now).unwrap(),
            target: Pipe::server(target, target_pins).unwrap(),
            now,
            wire: VecDeque::new(),
            rng: Rng(seed | 1),
            faults,
            largest: 0,
        }
    }

    fn new(seed: u64, faults: Faults) -> Net {
        let (s, t) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        Net::with(&s, &t, t.fingerprint, s.fingerprint, seed, faults)
    }

    /// Sends what both ends have to send; delivers what is on the wire; when nothing moved,
    /// time jumps to the next timer. Whether anything moved.
    fn step(&mut self) -> bool {
        let mut out = Vec::new();
        let mut moved = false;
        for to_target in [true, false] {
            loop {
                let from = if to_target {
                    &mut self.source
                } else {
                    &mut self.target
                };
                let Some(dest) = from.transmit(self.now, &mut out) else {
                    break;
                };
                let want = if to_target { TARGET_AT } else { SOURCE_AT };
                assert_eq!(dest, at(want));
                self.largest = self.largest.max(out.len());
                moved = true;
                let f = self.faults;
                if self.rng.chance(f.lost) {
                    continue;
                }
                if self.rng.chance(f.repeated) {
                    self.wire.push_back((to_target, out.clone()));
                }
                if self.rng.chance(f.reordered) {
                    self.wire.push_front((to_target, out.clone()));
                } else {
                    self.wire.push_back((to_target, out.clone()));
                }
            }
        }
        while let Some((to_target, d)) = self.wire.pop_front() {
            moved = true;
            let d = BytesMut::from(&d[..]);
            if to_target {
                self.target.datagram(self.now, at(SOURCE_AT), d);
            } else {
                self.source.datagram(self.now, at(TARGET_AT), d);
            }
        }
        // A little time passes with every round (a path of 100 µs each way).
        self.now += Duration::from_micros(100);
        if !moved {
            let next = [self.source.timeout(), self.target.timeout()]
                .into_iter()
                .flatten()
                .min();
            if let Some(t) = next {
                self.now = self.now.max(t);
            }
            self.source.on_timeout(self.now);
            self.target.on_timeout(self.now);
        }
        moved
    }

    /// Writes `data` from the source, reading on the target, until all of it arrived (or
    /// either end failed, or `rounds` ran out): what the target read.
    fn copy(&mut self, data: &[u8], rounds: usize) -> Vec<u8> {
        let mut sent = 0;
        let mut got = Vec::new();
        for _ in 0..rounds {
            if sent < data.len() {
                sent += self.source.write(&data[sent..]).unwrap();
            }
            self.step();
            self.target.read(&mut got, 1 << 20).unwrap();
            if got.len() == data.len() {
                break;
            }
        }
        got
    }
}

#[test]
fn bytes_cross_whole_and_in_order_and_datagrams_grow_past_ethernet_size() {
    let mut net = Net::new(7, Faults::default());
    let data = pattern(6 << 20 | 4321);
    let got = net.copy(&data, 100_000);
    assert!(net.source.connected() && net.target.connected());
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes read differ from those written");
    // Path MTU discovery climbed past 1,500 bytes (the lane's upper bound is 65,000).
    assert!(net.largest > 8_000, "largest datagram {}", net.largest);
    assert!(net.largest <= UDP_PAYLOAD_MAX as usize);
}

#[test]
fn bytes_cross_whole_and_in_order_over_a_path_that_loses_repeats_and_reorders() {
    let faults = Faults {
        lost: 50,
        repeated: 30,
        reordered: 30,
    };
    for seed in 1..=8u64 {
        let mut net = Net::new(seed * 0x9E37_79B9, faults);
        let data = pattern(1 << 20 | (seed as usize * 997));
        let got = net.copy(&data, 400_000);
        assert!(
            got == data,
            "seed {seed}: read {} of {} bytes ({:?} / {:?})",
            got.len(),
            data.len(),
            net.source.failed(),
            net.target.failed()
        );
    }
}

/// Runs the pair until both ends failed or `rounds` ran out.
fn until_failed(net: &mut Net, rounds: usize) {
    for _ in 0..rounds {
        let _ = net.source.write(b"hello");
        let mut got = Vec::new();
        let _ = net.target.read(&mut got, 1 << 20);
        assert!(
            got.is_empty(),
            "bytes crossed to a peer that was not the one announced"
        );
        if net.source.failed().is_some() && net.target.failed().is_some() {
            return;
        }
        net.step();
    }
}

#[test]
fn a_target_whose_certificate_is_not_the_announced_one_is_refused() {
    let (s, t, other) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );
    // The source expects `other`'s certificate; the target presents its own.
    let mut net = Net::with(
        &s,
        &t,
        other.fingerprint,
        s.fingerprint,
        3,
        Faults::default(),
    );
    until_failed(&mut net, 10_000);
    assert!(!net.source.connected());
    let why = net.source.failed().expect("the source refused");
    assert!(why.starts_with("QUIC"), "{why}");
    assert!(net.source.write(b"x").is_err());
}

#[test]
fn a_source_whose_certificate_is_not_the_announced_one_is_refused() {
    let (s, t, other) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );
    // The target expects `other`'s certificate; the source presents its own.
    let mut net = Net::with(
        &s,
        &t,
        t.fingerprint,
        other.fingerprint,
        4,
        Faults::default(),
    );
    until_failed(&mut net, 10_000);
    assert!(net.target.failed().is_some_and(|w| w.starts_with("QUIC")));
    assert!(net.source.failed().is_some_and(|w| w.starts_with("QUIC")));
    let mut got = Vec::new();
    assert!(net.target.read(&mut got, 100).is_err());
}

#[test]
fn strangers_datagrams_and_garbage_change_nothing() {
    let (s, t) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let mut net = Net::with(&s, &t, t.fingerprint, s.fingerprint, 11, Faults::default());
    let data = pattern(2 << 20);
    let mut rng = Rng(99);
    // Garbage of every size to both ends, from the peer's address and from strangers.
    for n in [0usize, 1, 7, 20, 1199, 1200, 1500, 9000] {
        let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let now = net.now;
        net.target
            .datagram(now, at(SOURCE_AT), BytesMut::from(&junk[..]));
        net.target
            .datagram(now, at("10.9.9.9:1"), BytesMut::from(&junk[..]));
        net.source
            .datagram(now, at(TARGET_AT), BytesMut::from(&junk[..]));
    }
    let got = net.copy(&data, 100_000);
    assert!(got == data);
    // A second client gets no connection, even with the source's own certificate (one
    // replayed, say): the target takes one connection, the lane's.
    let now = net.now;
    let mut stranger = Pipe::client(&s, t.fingerprint, at(TARGET_AT), now).unwrap();
    let mut out = Vec::new();
    for _ in 0..50 {
        while stranger.transmit(net.now, &mut out).is_some() {
            let d = BytesMut::from(&out[..]);
            net.target.datagram(net.now, at("10.9.9.9:2"), d);
        }
        while let Some(to) = net.target.transmit(net.now, &mut out) {
            if to == at("10.9.9.9:2") {
                stranger.datagram(net.now, at(TARGET_AT), BytesMut::from(&out[..]));
            } else {
                net.source
                    .datagram(net.now, at(TARGET_AT), BytesMut::from(&out[..]));
            }
        }
        net.now += Duration::from_millis(1);
        stranger.on_timeout(net.now);
    }
    assert!(!stranger.connected());
    // A flood of strangers' connections: the target answers at most RESPONSES_MAX of them
    // at a time (what it queues is bounded, whatever arrives).
    for i in 0..200u16 {
        let mut s = Pipe::client(&t, t.fingerprint, at(TARGET_AT), net.now).unwrap();
        let from: SocketAddr = format!("10.8.{}.{}:9", i / 250, i % 250).parse().unwrap();
        while s.transmit(net.now, &mut out).is_some() {
            net.target.datagram(net.now, from, BytesMut::from(&out[..]));
        }
    }
    assert!(net.target.responses.len() <= RESPONSES_MAX);
    assert!(!net.target.responses.is_empty(), "strangers are refused");
    while !net.target.responses.is_empty() {
        let to = net.target.transmit(net.now, &mut out).unwrap();
        assert!(to.ip().to_string().starts_with("10.8."), "{to}");
    }
    // The lane's connection still carries bytes.
    let more = pattern(100_000);
    assert!(net.copy(&more, 100_000) == more);
}
