//! Sealed SWIM datagrams (`shardline_transport::seal`, issue 20 step 5), as anyone on the
//! network may send them to a node's UDP port, and the join proofs a client may send with
//! CLUSTER JOIN. The fuzzer's bytes are steps: a raw datagram to open, a genuine one (sealed
//! by one of three senders under the secret, maybe damaged, maybe sent again), time passing,
//! or a proof to check. Never panics; a damaged datagram never opens; a genuine one opens with
//! its payload, and again only after its sender was silent past the window's idle time; an
//! arbitrary proof never matches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::seal::{Opener, Sealer, WINDOW_IDLE_MS, proof, proof_matches};

const SECRET: &[u8] = &[0x42; 32];

fuzz_target!(|data: &[u8]| {
    let mut opener = Opener::new(SECRET);
    let mut sealers: Vec<Sealer> = (0..3).map(|i| Sealer::new(SECRET, i, 1 + i)).collect();
    let mut now = 0u64;
    let mut sent: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut opened = std::collections::HashSet::new();
    // When each sender's datagram last opened, and whether it was ever silent past the idle
    // time (its window forgotten: older datagrams may open once more, as documented).
    let mut heard = [0u64; 3];
    let mut forgotten = [false; 3];
    let mut b = data;
    while let Some((&op, rest)) = b.split_first() {
        b = rest;
        let len = (b.first().copied().unwrap_or(0) as usize).min(b.len().saturating_sub(1));
        let body = b.get(1..1 + len).unwrap_or(&[]).to_vec();
        b = b.get(1 + len..).unwrap_or(&[]);
        match op % 5 {
            0 => {
                let _ = opener.open(&body, now);
            }
            1 => {
                let who = op as usize / 5 % 3;
                let s = &mut sealers[who];
                let mut p = Vec::new();
                s.seal(&body, &mut p);
                if op & 0x80 != 0 && !p.is_empty() {
                    let i = body.len() % p.len();
                    p[i] ^= 1 << (op % 8);
                    assert!(opener.open(&p, now).is_err(), "a damaged datagram opened");
                } else {
                    let got = opener.open(&p, now).map(|x| x.to_vec());
                    if let Ok(x) = &got {
                        assert_eq!(x, &body);
                        assert!(opened.insert(p.clone()), "a datagram opened twice");
                        forgotten[who] |= now - heard[who] > WINDOW_IDLE_MS;
                        heard[who] = now;
                    }
                    sent.push((who, p, body));
                }
            }
            2 => {
                if let Some((who, p, payload)) = sent.get(op as usize % sent.len().max(1)) {
                    if let Ok(x) = opener.open(p, now) {
                        assert_eq!(x, &payload[..]);
                        forgotten[*who] |= now - heard[*who] > WINDOW_IDLE_MS;
                        assert!(
                            opened.insert(p.clone()) || forgotten[*who],
                            "a replay opened"
                        );
                        heard[*who] = now;
                    }
                }
            }
            3 => now += u64::from(op) * 1000,
            _ => {
                let text = String::from_utf8_lossy(&body);
                let genuine = proof(SECRET, "join", b"msg");
                assert!(text == genuine || !proof_matches(SECRET, "join", b"msg", &text));
            }
        }
    }
});
