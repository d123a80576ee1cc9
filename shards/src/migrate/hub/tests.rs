//! Two hubs joined by lanes in virtual time: the leader's side (`a`, node 1) offers, the
//! follower's (`b`, node 2) wants; a drive loop moves each lane's bytes, in pieces, through
//! faults the test chooses; the installed blob is compared byte for byte.

use super::*;
use crate::rng::Rng;

/// `Hub::on_bytes` as a driver calls it: what it took leaves the buffer.
fn feed(
    h: &mut Hub,
    peer: NodeId,
    dir: Dir,
    buf: &mut Vec<u8>,
    now_ms: u64,
    store: Store<'_>,
) -> Result<(), LaneError> {
    let took = h.on_bytes(peer, dir, buf, now_ms, store)?;
    buf.drain(..took);
    Ok(())
}

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const G: u32 = 7;

fn limits() -> Limits {
    Limits {
        chunk_bytes: 64 << 10,
        window_bytes: 512 << 10,
        resend_after_ms: 200,
    }
}

fn blob(len: usize, seed: u64) -> Bytes {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| rng.next_u64() as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn wanted(total: u64) -> SnapshotWanted {
    SnapshotWanted {
        from: A,
        term: 3,
        last: LogId { term: 2, index: 40 },
        total,
    }
}

struct Pair {
    a: Hub,
    b: Hub,
    /// Bytes on their way, per lane: a's source lane to b, b's answers back.
    to_b: Vec<u8>,
    to_a: Vec<u8>,
    now_ms: u64,
    installed: Vec<Install>,
    rng: Rng,
    /// Per mille of each write whose bytes are damaged (one bit).
    damage: u64,
    /// The source's snapshot file, for copies offered with `offer_file`, and whether its
    /// reads fail.
    file: Vec<u8>,
    fail_reads: bool,
    /// Bytes of the file read.
    file_reads: u64,
    /// The target's store (`Pair::stored`: its hub stores every copy), whether its writes
    /// fail, and the offsets at which copies began afresh in it.
    store: Vec<u8>,
    fail_stores: bool,
    store_starts: Vec<u64>,
}

impl Pair {
    fn new(seed: u64) -> Pair {
        Pair {
            a: Hub::new(limits()),
            b: Hub::new(limits()),
            to_b: Vec::new(),
            to_a: Vec::new(),
            now_ms: 0,
            installed: Vec::new(),
            rng: Rng::new(seed),
            damage: 0,
            file: Vec::new(),
            fail_reads: false,
            file_reads: 0,
            store: Vec::new(),
            fail_stores: false,
            store_starts: Vec::new(),
        }
    }

    /// A pair whose target stores its copies (`Hub::store_copies`).
    fn stored(seed: u64) -> Pair {
        let mut p = Pair::new(seed);
        p.b.store_copies(|g| g == G);
        p
    }

    /// The bytes copy `i` installed: its blob, or what the store took.
    fn got(&self, i: usize) -> &[u8] {
        match &self.installed[i].blob {
            Some(b) => b,
            None => &self.store,
        }
    }

    fn connect(&mut self) {
        self.to_a.clear();
        self.to_b.clear();
        self.a.lane_up(B, Dir::Source);
        self.b.lane_up(A, Dir::Target);
    }

    fn disconnect(&mut self) {
        self.a.lane_down(B, Dir::Source);
        self.b.lane_down(A, Dir::Target);
        self.to_a.clear();
        self.to_b.clear();
    }

    /// One round: each side writes what it has, the other reads it in two pieces.
    fn round(&mut self) {
        self.now_ms += 1;
        let mut w = Vec::new();
        let (file, fail, reads) = (&self.file, self.fail_reads, &mut self.file_reads);
        let mut fetch = |g: u32, last: LogId, at: u64, buf: &mut [u8]| {
            assert_eq!((g, last), (G, wanted(0).last));
            let end = at as usize + buf.len();
            if fail || end > file.len() {
                return Err("an injected read error".to_string());
            }
            buf.copy_from_slice(&file[at as usize..end]);
            *reads += buf.len() as u64;
            Ok(())
        };
        self.a
            .poll(B, Dir::Source, &mut w, 256 << 10, self.now_ms, &mut fetch);
        if !w.is_empty() && self.rng.below(1000) < self.damage {
            let at = self.rng.below(w.len() as u64) as usize;
            if at >= 64 {
                // The data of a chunk, most likely (heads are few bytes).
                w[at] ^= 1;
            }
        }
        self.to_b.extend_from_slice(&w);
        let cut = self.to_b.len() / 2;
        let mut part: Vec<u8> = self.to_b.drain(..cut).collect();
        let (kept, fail, starts) = (&mut self.store, self.fail_stores, &mut self.store_starts);
        let mut store = |g: u32, w: &SnapshotWanted, at: u64, data: &[u8]| {
            assert_eq!((g, w.last), (G, wanted(0).last));
            if fail {
                return Err("an injected write error".to_string());
            }
            if at == 0 {
                kept.clear();
                starts.push(at);
            }
            assert_eq!(at, kept.len() as u64, "bytes in order, never a gap");
            kept.extend_from_slice(data);
            Ok(())
        };
        let read = feed(
            &mut self.b,
            A,
            Dir::Target,
            &mut part,
            self.now_ms,
            &mut store,
        );
        // What did not make a whole frame is read again with what follows.
        part.append(&mut self.to_b);
        self.to_b = part;
        let read = read.and_then(|()| {
            let now = self.now_ms;
            feed(&mut self.b, A, Dir::Target, &mut self.to_b, now, &mut store)
        });
        if read.is_err() {
            // A damaged head: the driver ends the connection and dials again.
            self.disconnect();
            self.connect();
            return;
        }
        let mut w = Vec::new();
        self.b.poll(
            A,
            Dir::Target,
            &mut w,
            usize::MAX,
            self.now_ms,
            &mut no_files,
        );
        self.to_a.extend_from_slice(&w);
        feed(
            &mut self.a,
            B,
            Dir::Source,
            &mut self.to_a,
            self.now_ms,
            &mut no_store,
        )
        .unwrap();
        self.installed.extend(self.b.take_installs());
        if self.now_ms.is_multiple_of(50) {
            self.a.tick(self.now_ms);
            self.b.tick(self.now_ms);
        }
    }

    fn run_until_installed(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.round();
            if !self.installed.is_empty() {
                return;
            }
        }
        panic!(
            "not installed after {rounds} rounds: {:?} / {:?}",
            self.a.stats(),
            self.b.stats()
        );
    }
}

fn offered(p: &mut Pair, data: &Bytes) {
    let w = wanted(data.len() as u64);
    p.a.offer(B, G, w.term, w.last, data, p.now_ms);
}

/// Offers `p.file` as read from its file, whose header says `crc`.
fn offered_file(p: &mut Pair, crc: u32) {
    let w = wanted(p.file.len() as u64);
    let total = p.file.len() as u64;
    p.a.offer_file(B, (G, w.term, w.last), total, crc, p.now_ms);
}

/// A pair whose source offers a file of `len` bytes (its CRC32C in the header) that the
/// target wants, connected; the CRC.
fn file_pair(seed: u64, len: usize) -> (Pair, u32) {
    let mut p = Pair::new(seed);
    p.file = blob(len, seed).to_vec();
    let crc = crc32c::crc32c(&p.file);
    p.connect();
    offered_file(&mut p, crc);
    p.b.want(G, Some(wanted(len as u64)), p.now_ms);
    (p, crc)
}

/// A copy that streams from the source's snapshot file (issue 19, step 3): the source holds
/// none of it in memory, reads each byte once, and the target installs exactly the file.
#[test]
fn a_copy_streamed_from_a_file_installs_its_bytes_and_holds_none_of_them() {
    let (mut p, _crc) = file_pair(11, 3 << 20 | 5);
    while p.b.stats().bytes_in < (1 << 20) {
        p.round();
        assert_eq!(p.a.held_bytes(), 0, "no blob in the source's memory");
    }
    assert!(p.a.reads_file(G, wanted(0).last));
    p.run_until_installed(1000);
    assert_eq!(p.got(0), &p.file[..]);
    assert_eq!(p.file_reads, p.file.len() as u64, "each byte read once");
    p.round();
    assert!(!p.a.reads_file(G, wanted(0).last), "the file may be closed");
    assert_eq!(p.a.take_errors().count(), 0);
}

/// A file whose bytes are not what its header's CRC32C says (damaged on disk after it was
/// written): the copy is cancelled at its end and never installs.
#[test]
fn a_file_that_does_not_check_is_never_installed() {
    let (mut p, _) = file_pair(12, 1 << 20);
    // Damaged after the header was written (nothing of it read yet).
    p.file[777] ^= 4;
    for _ in 0..500 {
        p.round();
    }
    assert!(p.installed.is_empty());
    let errors: Vec<_> = p.a.take_errors().collect();
    assert!(
        errors.len() == 1 && errors[0].1.contains("does not check"),
        "{errors:?}"
    );
    // The driver hears the file is damaged (it writes it anew).
    assert_eq!(p.a.take_damaged_files().collect::<Vec<_>>(), vec![G]);
    assert_eq!(p.a.sessions(), (0, 0));
    assert_eq!(p.b.sessions(), (0, 0), "the target was told");
}

/// A read that fails cancels the copy (the target is told); the leader's next offer starts
/// it again, and a source made anew continues from what the target holds, reading the CRC
/// of those bytes back from the file.
#[test]
fn a_failed_read_cancels_the_copy_and_a_new_session_resumes_from_the_file() {
    let (mut p, crc) = file_pair(13, 2 << 20);
    while p.b.stats().bytes_in < (1 << 20) {
        p.round();
    }
    p.fail_reads = true;
    for _ in 0..20 {
        p.round();
    }
    let errors: Vec<_> = p.a.take_errors().collect();
    assert!(errors.iter().all(|e| e.1.contains("injected")) && !errors.is_empty());
    assert!(p.a.take_damaged_files().all(|g| g == G));
    assert_eq!(p.a.sessions(), (0, 0));
    // The target's group still wants it: a new source session (a restarted source) takes
    // the copy up where the target is.
    p.fail_reads = false;
    p.b.want(G, Some(wanted(p.file.len() as u64)), p.now_ms);
    p.a = Hub::new(limits());
    p.disconnect();
    p.connect();
    offered_file(&mut p, crc);
    p.run_until_installed(1000);
    assert_eq!(p.got(0), &p.file[..]);
}

#[test]
fn an_offered_and_wanted_copy_installs_exactly_its_bytes() {
    let data = blob(3 << 20, 1);
    let mut p = Pair::new(1);
    p.connect();
    offered(&mut p, &data);
    // Offered, not wanted yet: nothing goes.
    for _ in 0..10 {
        p.round();
    }
    assert_eq!(
        p.a.stats().bytes_out,
        0,
        "no chunk before the target answers"
    );
    p.b.want(G, Some(wanted(data.len() as u64)), p.now_ms);
    p.run_until_installed(1000);
    let i = p.installed.pop().unwrap();
    assert_eq!(
        (i.group, i.wanted, &i.blob.unwrap()[..]),
        (G, wanted(data.len() as u64), &data[..])
    );
    // The source hears it was installed and ends its session; every byte went once.
    p.round();
    assert_eq!(p.a.sessions(), (0, 0));
    assert_eq!(p.a.stats().bytes_out, data.len() as u64);
    assert_eq!(p.a.stats().done_out, 1);
    assert_eq!(p.b.stats().done_in, 1);
}

#[test]
fn a_broken_lane_resumes_from_what_the_target_holds() {
    let data = blob(4 << 20, 2);
    let mut p = Pair::new(2);
    p.connect();
    offered(&mut p, &data);
    p.b.want(G, Some(wanted(data.len() as u64)), 0);
    while p.b.stats().bytes_in < (2 << 20) {
        p.round();
    }
    p.disconnect();
    for _ in 0..20 {
        p.round();
    }
    p.connect();
    p.run_until_installed(1000);
    assert_eq!(p.got(0), &data[..]);
    let sent = p.a.stats().bytes_out;
    assert!(
        sent < data.len() as u64 + (1 << 20),
        "resumed, not restarted: {sent} bytes sent"
    );
}

/// The source's session made again (its hub restarted, or dropped and offered anew) while
/// the target holds part of the copy: it continues from there, and the whole still checks.
#[test]
fn a_new_source_session_continues_what_the_target_holds() {
    let data = blob(2 << 20, 3);
    let mut p = Pair::new(3);
    p.connect();
    offered(&mut p, &data);
    p.b.want(G, Some(wanted(data.len() as u64)), 0);
    while p.b.stats().bytes_in < (1 << 20) {
        p.round();
    }
    p.a = Hub::new(limits());
    p.disconnect();
    p.connect();
    offered(&mut p, &data);
    p.run_until_installed(1000);
    assert_eq!(p.got(0), &data[..]);
    assert!(
        p.a.stats().bytes_out <= (1 << 20) + (512 << 10),
        "{:?}",
        p.a.stats()
    );
}

/// The target restarted mid-copy (found by the kill -9 test of `tests/moves.rs`): its new hub
/// holds nothing of the copy the source's session had sent half of; the source goes back to
/// what the target says it holds on the new lane, and the copy installs whole.
#[test]
fn a_target_that_restarted_mid_copy_gets_the_copy_from_the_start() {
    let data = blob(2 << 20, 5);
    let mut p = Pair::new(5);
    p.connect();
    offered(&mut p, &data);
    p.b.want(G, Some(wanted(data.len() as u64)), 0);
    while p.b.stats().bytes_in < (1 << 20) {
        p.round();
    }
    p.b = Hub::new(limits());
    p.disconnect();
    p.connect();
    p.b.want(G, Some(wanted(data.len() as u64)), p.now_ms);
    p.run_until_installed(1000);
    assert_eq!(p.got(0), &data[..]);
}

#[test]
fn damaged_chunks_are_sent_again_and_the_copy_installs_exactly() {
    let mut bad = 0;
    for seed in 0..10 {
        let data = blob(1 << 20, seed);
        let mut p = Pair::new(seed);
        p.damage = 300;
        p.connect();
        offered(&mut p, &data);
        p.b.want(G, Some(wanted(data.len() as u64)), 0);
        p.run_until_installed(20_000);
        assert_eq!(p.got(0), &data[..], "seed {seed}");
        bad += p.b.stats().bad_chunks;
    }
    assert!(bad > 0, "no damaged chunk was refused");
}

/// A group that stops wanting the copy (the leader's appends caught it up) drops what it
/// held and tells the source, which ends its session; a source whose group stops offering
/// drops its session too.
#[test]
fn a_copy_no_longer_wanted_or_offered_ends_on_both_sides() {
    let data = blob(2 << 20, 4);
    let mut p = Pair::new(4);
    p.connect();
    offered(&mut p, &data);
    p.b.want(G, Some(wanted(data.len() as u64)), 0);
    while p.b.stats().bytes_in == 0 {
        p.round();
    }
    p.b.want(G, None, p.now_ms);
    assert_eq!(p.b.sessions(), (0, 0));
    for _ in 0..5 {
        p.round();
    }
    assert_eq!(p.a.sessions(), (0, 0), "cancelled by the target");
    assert!(p.installed.is_empty());

    // Offered, then never again.
    offered(&mut p, &data);
    assert_eq!(p.a.sessions(), (1, 0));
    let t = p.now_ms + OFFER_STALE_MS + 100;
    p.a.tick(t);
    assert_eq!(p.a.sessions(), (0, 0));
    assert!(!p.a.wants_lane(B));
}

/// A newer offer (a later snapshot, or a new leader's) replaces the older one's session on
/// both sides; chunks of the older one change nothing.
#[test]
fn a_newer_offer_replaces_the_older_session() {
    let old = blob(1 << 20, 5);
    let new = blob(1 << 20, 6);
    let mut p = Pair::new(5);
    p.connect();
    offered(&mut p, &old);
    p.b.want(G, Some(wanted(old.len() as u64)), 0);
    while p.b.stats().bytes_in == 0 {
        p.round();
    }
    let w2 = SnapshotWanted {
        term: 4,
        last: LogId { term: 4, index: 90 },
        ..wanted(new.len() as u64)
    };
    p.a.offer(B, G, w2.term, w2.last, &new, p.now_ms);
    p.b.want(G, Some(w2), p.now_ms);
    p.run_until_installed(1000);
    let i = p.installed.pop().unwrap();
    assert_eq!((i.wanted, &i.blob.unwrap()[..]), (w2, &new[..]));
}

/// A peer's bytes never panic the hub: frames too long or too short, unknown kinds, answers
/// on the wrong lane end the connection with a reason; truncations wait for more.
#[test]
fn bad_lane_bytes_are_refused_with_a_reason() {
    let mut h = Hub::new(limits());
    h.lane_up(A, Dir::Target);
    h.lane_up(A, Dir::Source);
    let frame = |group: u32, body: &[u8]| {
        let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&group.to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    let mut ack = Vec::new();
    BulkMsg::Ack {
        session: 1,
        held: 0,
    }
    .encode(&mut ack);
    let mut chunk = Vec::new();
    BulkMsg::Chunk {
        session: 1,
        offset: 0,
        crc: 0,
        data: vec![1, 2, 3],
    }
    .encode(&mut chunk);
    let cases: Vec<(Dir, Vec<u8>)> = vec![
        (Dir::Target, u32::MAX.to_le_bytes().to_vec()),
        (Dir::Target, 3u32.to_le_bytes().to_vec()),
        (Dir::Target, frame(G, &[99; 20])),
        (Dir::Target, frame(G, &ack)),
        (Dir::Source, frame(G, &chunk)),
        (Dir::Target, frame(G, &chunk[..chunk.len() - 1])),
    ];
    for (dir, mut bytes) in cases {
        let r = feed(&mut h, A, dir, &mut bytes, 0, &mut no_store);
        assert!(r.is_err(), "{dir:?} {bytes:?}");
    }
    // A whole chunk for a session nobody wants: answered with a cancel, nothing kept.
    let mut bytes = frame(G, &chunk);
    feed(&mut h, A, Dir::Target, &mut bytes, 0, &mut no_store).unwrap();
    assert!(bytes.is_empty());
    let mut out = Vec::new();
    h.poll(A, Dir::Target, &mut out, usize::MAX, 0, &mut no_files);
    assert!(!out.is_empty(), "a cancel");
    // Every truncation of a good frame waits for more.
    let good = frame(G, &ack);
    for cut in 0..good.len() {
        let mut part = good[..cut].to_vec();
        feed(&mut h, A, Dir::Source, &mut part, 0, &mut no_store).unwrap();
        assert_eq!(part.len(), cut);
    }
}

/// With a rate set, a copy takes as long as the rate says (within a burst and a tick), and
/// still installs exactly; with none, at once.
#[test]
fn a_rate_caps_what_copies_send() {
    let data = blob(1 << 20, 9);
    let rate = 256 << 10;
    let mut p = Pair::new(9);
    p.a.set_rate(rate, 0);
    p.connect();
    offered(&mut p, &data);
    p.b.want(G, Some(wanted(data.len() as u64)), 0);
    p.run_until_installed(20_000);
    assert_eq!(p.got(0), &data[..]);
    let fastest = (data.len() as u64 - limits().chunk_bytes) * 1000 / rate;
    assert!(
        p.now_ms >= fastest && p.now_ms <= fastest + 1000,
        "{} ms for 1 MiB at 256 KiB/s",
        p.now_ms
    );
    // No cap: the same copy in a few rounds.
    let mut q = Pair::new(9);
    q.connect();
    offered(&mut q, &data);
    q.b.want(G, Some(wanted(data.len() as u64)), 0);
    q.run_until_installed(20_000);
    assert!(q.now_ms < 100, "{} ms uncapped", q.now_ms);
}

/// A second target of the same snapshot takes the bytes of the copy under way (the driver
/// reads a snapshot file back once); a finished copy's heartbeat offers are answered as
/// under way, so the file is not read again for them.
#[test]
fn a_copy_under_way_lends_its_bytes_and_a_finished_one_needs_none() {
    let data = blob(1 << 20, 6);
    let mut p = Pair::new(6);
    p.connect();
    offered(&mut p, &data);
    let w = wanted(data.len() as u64);
    assert_eq!(p.a.blob_of(G, w.last).as_deref(), Some(&data[..]));
    let other = LogId {
        term: w.last.term,
        index: w.last.index + 1,
    };
    assert!(p.a.blob_of(G, other).is_none());
    assert!(p.a.blob_of(G + 1, w.last).is_none());
    assert!(p.a.refresh_offer(B, G, w.term, w.last, p.now_ms));
    p.b.want(G, Some(w), 0);
    p.run_until_installed(1000);
    assert!(p.a.blob_of(G, w.last).is_none(), "the session ended");
    assert!(
        p.a.refresh_offer(B, G, w.term, w.last, p.now_ms),
        "just installed"
    );
    p.a.tick(p.now_ms + OFFER_STALE_MS + 1);
    assert!(!p.a.refresh_offer(B, G, w.term, w.last, p.now_ms + OFFER_STALE_MS + 1));
}

/// Issue 19, step 3: a target that stores its copies holds none of their bytes in its hub;
/// the store takes every byte once, in order, through damage and a broken lane, and the
/// install carries no bytes.
#[test]
fn a_stored_copy_goes_to_the_store_in_order_and_installs_without_bytes() {
    for seed in 0..10 {
        let data = blob(3 << 20 | 77, 70 + seed);
        let mut p = Pair::stored(70 + seed);
        p.damage = 50;
        p.connect();
        offered(&mut p, &data);
        p.b.want(G, Some(wanted(data.len() as u64)), 0);
        while p.b.stats().bytes_in < (1 << 20) {
            p.round();
            assert_eq!(p.b.held_bytes(), 0, "no copy in the target's memory");
        }
        assert!(p.b.receives(G, &wanted(data.len() as u64)));
        p.disconnect();
        p.connect();
        p.run_until_installed(5000);
        assert!(p.installed[0].blob.is_none());
        assert_eq!(p.got(0), &data[..], "seed {seed}");
        assert_eq!(
            p.installed[0].crc,
            crc32c::crc32c(&data),
            "the copy's CRC rides along"
        );
        assert_eq!(p.store_starts, [0], "resumed, never begun again");
    }
}

/// A store that fails cancels the copy on both ends (the error is reported once); the
/// group's next want and the leader's next offer begin it again from offset 0.
#[test]
fn a_store_that_fails_cancels_the_copy_and_the_next_want_begins_afresh() {
    let data = blob(2 << 20, 80);
    let mut p = Pair::stored(80);
    p.connect();
    offered(&mut p, &data);
    let w = wanted(data.len() as u64);
    p.b.want(G, Some(w), 0);
    while p.b.stats().bytes_in < (1 << 20) {
        p.round();
    }
    p.fail_stores = true;
    for _ in 0..20 {
        p.round();
    }
    let errors: Vec<_> = p.b.take_errors().collect();
    assert!(
        errors.len() == 1 && errors[0].1.contains("injected"),
        "{errors:?}"
    );
    assert!(!p.b.receives(G, &w));
    assert_eq!(p.b.sessions(), (0, 0));
    assert_eq!(p.a.sessions(), (0, 0), "the source was told");
    p.fail_stores = false;
    p.b.want(G, Some(w), p.now_ms);
    offered(&mut p, &data);
    p.run_until_installed(2000);
    assert_eq!(p.got(0), &data[..]);
    assert_eq!(p.store_starts, [0, 0]);
}
