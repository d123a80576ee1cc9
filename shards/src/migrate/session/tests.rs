//! The session's pair harness (quinn's `Pair`, in virtual time): a source and a target over a
//! link that loses, repeats, damages and reorders nothing or some of what it carries, a
//! bounded drive loop, and the copy checked byte for byte at the end.

use super::*;
use crate::rng::Rng;

/// What the link does to each message, in per-mille.
#[derive(Clone, Copy, Default)]
struct Faults {
    drop: u64,
    repeat: u64,
    damage: u64,
}

struct Pair {
    sender: Sender,
    receiver: Receiver,
    source: Vec<u8>,
    built: Vec<u8>,
    installed: Option<Vec<u8>>,
    to_target: Vec<BulkMsg>,
    to_source: Vec<BulkMsg>,
    rng: Rng,
    faults: Faults,
    now_ms: u64,
    /// Chunk bytes the source sent.
    sent_bytes: u64,
}

impl Pair {
    fn new(total: usize, limits: Limits, seed: u64, faults: Faults) -> Pair {
        let mut rng = Rng::new(seed);
        let source: Vec<u8> = (0..total).map(|_| rng.next_u64() as u8).collect();
        Pair {
            sender: Sender::new(7, total as u64, limits, 0),
            receiver: Receiver::new(7, total as u64),
            source,
            built: Vec::new(),
            installed: None,
            to_target: Vec::new(),
            to_source: Vec::new(),
            rng,
            faults,
            now_ms: 0,
            sent_bytes: 0,
        }
    }

    /// Puts `msg` on the link, through its faults.
    fn carry(rng: &mut Rng, faults: Faults, queue: &mut Vec<BulkMsg>, mut msg: BulkMsg) {
        if rng.below(1000) < faults.drop {
            return;
        }
        if rng.below(1000) < faults.damage
            && let BulkMsg::Chunk { data, .. } = &mut msg
            && !data.is_empty()
        {
            let at = rng.below(data.len() as u64) as usize;
            data[at] ^= 0x40;
        }
        // (Through its bytes, as a transport carries it.)
        let mut b = Vec::new();
        msg.encode(&mut b);
        let msg = BulkMsg::decode(&b).expect("what it encoded decodes");
        if rng.below(1000) < faults.repeat {
            queue.push(msg.clone());
        }
        queue.push(msg);
    }

    /// One round: the source sends what its window allows, the target answers, time moves.
    fn round(&mut self) {
        while let Some((offset, len)) = self.sender.next_chunk() {
            let data = self.source[offset as usize..(offset + len) as usize].to_vec();
            self.sent_bytes += len;
            let msg = self.sender.chunk(data);
            Self::carry(&mut self.rng, self.faults, &mut self.to_target, msg);
        }
        for msg in std::mem::take(&mut self.to_target) {
            let (what, answer) = self.receiver.on_msg(msg);
            match what {
                Received::Accepted(data) => self.built.extend_from_slice(&data),
                Received::Install => self.installed = Some(std::mem::take(&mut self.built)),
                Received::Drop => self.built.clear(),
                Received::Nothing => {}
            }
            assert_eq!(
                self.built.len() as u64,
                self.receiver.held().min(self.built.len() as u64)
            );
            if let Some(a) = answer {
                Self::carry(&mut self.rng, self.faults, &mut self.to_source, a);
            }
        }
        for msg in std::mem::take(&mut self.to_source) {
            if let Some(m) = self.sender.on_msg(&msg, self.now_ms) {
                Self::carry(&mut self.rng, self.faults, &mut self.to_target, m);
            }
        }
        self.now_ms += 10;
        if let Some(m) = self.sender.tick(self.now_ms) {
            Self::carry(&mut self.rng, self.faults, &mut self.to_target, m);
        }
    }

    /// Rounds until the source is done (at most `max`); the rounds it took.
    fn drive(&mut self, max: usize) -> usize {
        for i in 0..max {
            if self.sender.state() == SenderState::Done {
                return i;
            }
            self.round();
        }
        panic!(
            "not done after {max} rounds: {:?}, acked {}, held {}",
            self.sender.state(),
            self.sender.acked(),
            self.receiver.held()
        );
    }

    fn check(&self) {
        assert_eq!(self.sender.state(), SenderState::Done);
        assert!(self.receiver.is_installed());
        assert!(
            self.installed.as_ref() == Some(&self.source),
            "the copy is the source's"
        );
    }
}

fn limits() -> Limits {
    Limits {
        chunk_bytes: 64 << 10,
        window_bytes: 256 << 10,
        resend_after_ms: 100,
    }
}

#[test]
fn a_copy_on_a_clean_link_goes_once_with_the_window_full() {
    let mut p = Pair::new(3 << 20, limits(), 1, Faults::default());
    let rounds = p.drive(1000);
    p.check();
    assert_eq!(p.sent_bytes, 3 << 20, "every byte sent once");
    assert_eq!((p.sender.resends, p.sender.restarts), (0, 0));
    // Four chunks a round (the window), then the last acknowledgement and Finish.
    assert!(rounds <= (3 << 20) / (256 << 10) + 3, "{rounds} rounds");
}

#[test]
fn a_copy_survives_loss_repeats_and_damage_and_installs_exactly_the_source() {
    for seed in 0..40 {
        let faults = Faults {
            drop: 80,
            repeat: 50,
            damage: 50,
        };
        let mut p = Pair::new(1 << 20 | (seed as usize * 977), limits(), seed, faults);
        p.drive(20_000);
        p.check();
        assert!(p.receiver.bad_chunks > 0 || seed % 10 != 0 || p.sender.resends > 0);
    }
}

#[test]
fn a_damaged_first_chunk_right_after_the_target_s_first_answer_goes_again_at_once() {
    let l = limits();
    let mut s = Sender::new(7, 4 * l.chunk_bytes, l, 0);
    let mut r = Receiver::new(7, 4 * l.chunk_bytes);
    // The target's first answer: it holds nothing (a `Resend` of where the sender stands).
    assert_eq!(s.on_msg(&r.hello(), 0), None);
    assert_eq!(s.resends, 0, "nothing was rewound");
    let data = vec![9u8; l.chunk_bytes as usize];
    let (offset, crc) = s.chunk_ref(&data);
    let mut damaged = data.clone();
    damaged[5] ^= 1;
    let (taken, answer) = r.on_chunk(7, offset, crc, &damaged);
    assert!(!taken);
    let (_, crc1) = s.chunk_ref(&data);
    // The next chunk meets a gap: the same answer again.
    let (_, gap) = r.on_chunk(7, l.chunk_bytes, crc1, &data);
    assert_eq!(answer, gap);
    // The sender goes back at once (not at the window's timeout), once for both answers.
    s.on_msg(&answer.unwrap(), 1);
    s.on_msg(&gap.unwrap(), 1);
    assert_eq!(s.resends, 1);
    assert_eq!(s.next_chunk(), Some((0, l.chunk_bytes)));
}

#[test]
fn a_broken_link_resumes_from_what_the_target_holds() {
    let mut p = Pair::new(2 << 20, limits(), 3, Faults::default());
    for _ in 0..3 {
        p.round();
    }
    let held = p.receiver.held();
    assert!(held > 0 && held < 2 << 20);
    // The link breaks: what was in flight is gone; a new link starts with the target's word.
    p.to_target.clear();
    p.to_source.clear();
    p.sender.rewind();
    let hello = p.receiver.hello();
    assert_eq!(hello, BulkMsg::Resend { session: 7, held });
    p.sender.on_msg(&hello, p.now_ms);
    let before = p.sent_bytes;
    p.drive(1000);
    p.check();
    assert!(
        p.sent_bytes - before <= (2 << 20) - held + (256 << 10),
        "it resumed from {held}, not from nothing"
    );
    assert_eq!(p.sender.restarts, 0);
}

#[test]
fn a_whole_copy_that_does_not_check_starts_again_and_never_installs() {
    let mut p = Pair::new(512 << 10, limits(), 4, Faults::default());
    // Every byte arrives, but the target's running CRC is off (a reassembly bug).
    while p.receiver.held() < 512 << 10 {
        p.round();
    }
    assert!(!p.receiver.is_installed(), "its Finish is still on the way");
    p.receiver.crc ^= 1;
    p.drive(1000);
    p.check();
    assert_eq!(p.receiver.bad_copies, 1);
    assert_eq!(p.sender.restarts, 1);
}

#[test]
fn what_a_peer_should_not_send_changes_nothing() {
    let mut r = Receiver::new(1, 100);
    let chunk = |offset, data: &[u8]| BulkMsg::Chunk {
        session: 1,
        offset,
        crc: crc32c::crc32c(data),
        data: data.to_vec(),
    };
    // Outside the copy, empty, another session's: nothing accepted.
    assert_eq!(r.on_msg(chunk(99, b"ab")).0, Received::Nothing);
    assert_eq!(r.on_msg(chunk(0, b"")).0, Received::Nothing);
    let other = BulkMsg::Chunk {
        session: 2,
        offset: 0,
        crc: 0,
        data: b"x".to_vec(),
    };
    assert_eq!(r.on_msg(other), (Received::Nothing, None));
    assert_eq!(r.held(), 0);
    // A Finish before every byte: told what is held.
    let finish = BulkMsg::Finish {
        session: 1,
        total: 100,
        crc: 0,
    };
    assert_eq!(
        r.on_msg(finish),
        (
            Received::Nothing,
            Some(BulkMsg::Ack {
                session: 1,
                held: 0
            })
        )
    );
    // The source: an acknowledgement past what it sent, or past the copy, is ignored.
    let mut s = Sender::new(1, 100, limits(), 0);
    assert_eq!(
        s.on_msg(
            &BulkMsg::Ack {
                session: 1,
                held: 50
            },
            0
        ),
        None
    );
    assert_eq!(s.acked(), 0);
    // Cancelled by the target: nothing more to send.
    s.on_msg(&BulkMsg::Cancel { session: 1 }, 0);
    assert_eq!((s.state(), s.next_chunk()), (SenderState::Cancelled, None));
    let (what, _) = r.on_msg(BulkMsg::Cancel { session: 1 });
    assert_eq!(what, Received::Drop);
}

#[test]
fn every_message_round_trips_and_every_truncation_is_refused() {
    let msgs = [
        BulkMsg::Chunk {
            session: 9,
            offset: 1 << 40,
            crc: 0xdead_beef,
            data: b"payload".to_vec(),
        },
        BulkMsg::Finish {
            session: 9,
            total: 12,
            crc: 3,
        },
        BulkMsg::Ack {
            session: 9,
            held: 5,
        },
        BulkMsg::Resend {
            session: 9,
            held: 5,
        },
        BulkMsg::Installed { session: 9 },
        BulkMsg::Restart { session: 9 },
        BulkMsg::Cancel { session: 9 },
    ];
    for m in msgs {
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(BulkMsg::decode(&b), Ok(m));
        for cut in 0..b.len() {
            assert!(BulkMsg::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        b.push(0);
        assert!(BulkMsg::decode(&b).is_err(), "a trailing byte");
    }
    assert!(BulkMsg::decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}
