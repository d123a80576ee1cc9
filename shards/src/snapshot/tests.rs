use super::*;
use crate::command::testing::*;

fn install(h: &mut Harness, bytes: &[u8]) {
    let t = h.db.tunables;
    let vs = decode(bytes, &t).unwrap();
    h.db.install(vs);
}

#[test]
fn every_type_round_trips_with_expiry_and_stream_groups() {
    let mut h = Harness::new();
    // All keys share a hashtag: one slot, one vShard.
    h.run("SET {k}s hello PX 100000");
    h.run("SET {k}n 12345");
    h.run("HSET {k}h a 1 b 2");
    h.run("RPUSH {k}l x y z");
    h.run("SADD {k}i 3 1 2");
    h.run("SADD {k}t a b c");
    h.run("ZADD {k}z 1.5 a -inf b 3 c");
    h.run("XADD {k}x 1-1 f v");
    h.run("XADD {k}x 2-1 f w");
    h.run("XGROUP CREATE {k}x g 0");
    h.run("XREADGROUP GROUP g alice COUNT 1 STREAMS {k}x >");
    h.run("XGROUP CREATECONSUMER {k}x g bob");
    h.run("SET {k}gone v PX 5");
    // A stream of several nodes, with deleted entries and an exact trim inside a node.
    for i in 1..=260 {
        h.run(&format!(
            "XADD {{k}}y {i}-0 f {} g {}",
            "x".repeat(i % 90),
            i * 1000
        ));
    }
    h.run("XDEL {k}y 5-0 150-0");
    h.run("XTRIM {k}y MINID = 40-0");
    let keys = [
        "{k}s", "{k}n", "{k}h", "{k}l", "{k}i", "{k}t", "{k}z", "{k}x", "{k}gone", "{k}y",
    ];
    h.now_ms += 10;
    let before = contents(&mut h, &keys);
    let nodes = |h: &mut Harness| match h.db.peek(b"{k}y") {
        Some(Value::Stream(s)) => s.nodes.clone(),
        _ => panic!("no stream"),
    };
    let layout = nodes(&mut h);
    assert!(layout.len() > 3);
    let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}s"));
    let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
    h.run("FLUSHALL");
    install(&mut h, &bytes);
    assert_eq!(contents(&mut h, &keys), before);
    assert_eq!(nodes(&mut h), layout);
    assert_eq!(h.run("OBJECT ENCODING {k}i"), bulk("intset"));
}

/// Random keyspaces of every type (and sizes on both sides of the encoding thresholds)
/// survive a snapshot round trip.
#[test]
fn random_keyspaces_round_trip() {
    let mut x = 0xC0FF_EE11u64;
    for round in 0..30 {
        let mut h = Harness::new();
        h.db.tunables.hash_max_listpack_entries = 4;
        h.db.tunables.zset_max_listpack_entries = 4;
        h.db.tunables.set_max_listpack_entries = 4;
        h.db.tunables.list_max_listpack_size = 4;
        let mut keys = Vec::new();
        for step in 0..200u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = format!("{{r}}k{}", x % 12);
            let m = format!("m{}", (x >> 8) % 9);
            let cmd = match (x >> 16) % 6 {
                0 => format!("SET {k} v{step}"),
                1 => format!("HSET {k}h {m} {step}"),
                2 => format!("RPUSH {k}l {m}"),
                3 => format!("SADD {k}s {m} {}", step % 7),
                4 => format!("ZADD {k}z {} {m}", step % 5),
                _ => format!("XADD {k}x * {m} {step}"),
            };
            h.run(&cmd);
            let key = cmd.split_whitespace().nth(1).unwrap().to_string();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let before = contents(&mut h, &key_refs);
        let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{r}"));
        let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
        h.run("FLUSHALL");
        install(&mut h, &bytes);
        assert_eq!(contents(&mut h, &key_refs), before, "round {round}");
    }
}

/// A snapshot of the first format (written by the build before stream nodes were tracked,
/// kept in `shards/tests/golden/`) still installs: its streams get a node layout.
#[test]
fn a_version_1_snapshot_installs_with_stream_nodes_laid_out() {
    let v1 = include_bytes!("../../tests/golden/snapshot-v1.bin");
    assert_eq!(&v1[8..12], &1u32.to_le_bytes());
    let mut h = Harness::new();
    install(&mut h, v1);
    let mut fresh = Harness::new();
    for i in 1..=250 {
        let f = if i % 3 == 0 {
            "f v other w"
        } else {
            "f v g 12"
        };
        fresh.run(&format!("XADD {{k}}x {i}-1 {f}"));
    }
    fresh.run("XDEL {k}x 2-1 100-1");
    fresh.run("XGROUP CREATE {k}x g 0");
    fresh.run("XREADGROUP GROUP g alice COUNT 3 STREAMS {k}x >");
    fresh.run("SET {k}s hello");
    let keys = ["{k}x", "{k}s"];
    assert_eq!(contents(&mut h, &keys), contents(&mut fresh, &keys));
    let Some(Value::Stream(s)) = h.db.peek(b"{k}x") else {
        panic!("no stream");
    };
    assert_eq!(s.check_nodes(), Ok(()));
    assert_eq!(s.nodes.len(), 3);
    // Approximate trimming works on the laid-out nodes.
    assert_eq!(h.run("XTRIM {k}x MAXLEN ~ 100"), int(100));
}

/// Found by the `snapshot_decode` fuzz target: a well-checksummed format-1 snapshot whose
/// stream entry has an odd number of fields and values panicked laying out its nodes.
#[test]
fn a_stream_entry_with_an_odd_field_count_is_refused() {
    let mut w = W(Vec::new());
    w.0.extend_from_slice(&MAGIC);
    w.0.extend_from_slice(&1u32.to_le_bytes());
    w.0.extend_from_slice(&0u16.to_le_bytes());
    w.u64(1);
    w.bytes(b"s");
    w.u64(0);
    w.0.push(T_STREAM);
    w.varint(1);
    w.id(StreamId::new(1, 1));
    w.varint(1);
    w.bytes(b"lonely-field");
    w.id(StreamId::new(1, 1));
    w.id(StreamId::MIN);
    w.u64(1);
    w.varint(0);
    let crc = crc32c::crc32c(&w.0);
    w.0.extend_from_slice(&crc.to_le_bytes());
    let err = decode(&w.0, &Tunables::default()).err().expect("refused");
    assert_eq!(
        err.reason,
        "a stream entry with an odd number of fields and values"
    );
}

/// A keyspace with every type, a value larger than any piece and many small keys.
fn varied(h: &mut Harness) -> (Vec<String>, Vec<u8>) {
    let mut keys = Vec::new();
    for i in 0..300 {
        h.run(&format!("SET {{k}}s{i} {}", "v".repeat(i * 7 % 1500)));
        keys.push(format!("{{k}}s{i}"));
    }
    h.run(&format!("SET {{k}}big {}", "B".repeat(300_000)));
    for i in 0..400 {
        h.run(&format!("HSET {{k}}h f{i} {}", "x".repeat(i % 50)));
        h.run(&format!("RPUSH {{k}}l e{i}"));
        h.run(&format!("ZADD {{k}}z {i} m{i}"));
    }
    h.run("SADD {k}t a b c");
    h.run("XADD {k}x 1-1 f v");
    h.run("XGROUP CREATE {k}x g 0");
    h.run("SET {k}e soon PX 100000");
    keys.extend(["{k}big", "{k}h", "{k}l", "{k}z", "{k}t", "{k}x", "{k}e"].map(String::from));
    let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}"));
    let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
    (keys, bytes)
}

/// Issue 19, step 3: a snapshot whose bytes come in pieces of any size decodes to what
/// the whole blob does, holding at most an entry's bytes, with linear parsing work.
#[test]
fn a_snapshot_fed_in_pieces_of_any_size_decodes_as_a_whole_one() {
    let mut h = Harness::new();
    let (keys, bytes) = varied(&mut h);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = contents(&mut h, &keys);
    let t = h.db.tunables;
    let mut x = 0x5EED_u64;
    for piece in [1usize, 3, 17, 4096, 65_536, 1 << 20, 0] {
        let mut d = Decoder::new(bytes.len() as u64, &t).unwrap();
        let mut at = 0;
        let mut most_held = 0;
        while at < bytes.len() {
            // Piece 0: random sizes.
            let n = if piece == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1 + (x % 200_000) as usize
            } else {
                piece
            };
            let end = (at + n).min(bytes.len());
            d.feed(&bytes[at..end]).unwrap();
            most_held = most_held.max(d.pending.len());
            at = end;
        }
        assert!(
            d.parsed <= 4 * bytes.len() as u64 + 4096,
            "piece {piece}: parsed {} bytes of {}",
            d.parsed,
            bytes.len()
        );
        // At most twice the largest entry (the 300 kB value: its bytes double before it
        // is parsed again) and a piece.
        assert!(
            most_held < 2 * 300_100 + n_or(piece, 200_000),
            "piece {piece}: held {most_held}"
        );
        let vs = d.finish().unwrap();
        h.run("FLUSHALL");
        h.db.install(vs);
        assert_eq!(contents(&mut h, &keys), before, "piece {piece}");
    }
}

fn n_or(piece: usize, random: usize) -> usize {
    if piece == 0 { random } else { piece }
}

/// A stream that is damaged, cut short or too long is refused (at a piece or at the end),
/// never finished into a vShard.
#[test]
fn a_damaged_stream_is_refused_by_a_piece_or_at_its_end() {
    let mut h = Harness::new();
    let (_, bytes) = varied(&mut h);
    let t = h.db.tunables;
    let run = |b: &[u8], total: u64| -> Result<VShard, SnapshotError> {
        let mut d = Decoder::new(total, &t)?;
        for c in b.chunks(4096) {
            d.feed(c)?;
        }
        d.finish()
    };
    assert!(run(&bytes, bytes.len() as u64).is_ok());
    // A byte of a value's content: only the checksum can tell, at the end.
    let big = bytes.windows(4).position(|w| w == b"BBBB").unwrap();
    let mut b = bytes.clone();
    b[big + 10] = b'C';
    assert_eq!(
        run(&b, b.len() as u64).err().unwrap().reason,
        "checksum mismatch"
    );
    // A type tag: refused while bytes are still to come.
    let mut b = bytes.clone();
    // The first entry: its key's length (one byte), the key, its expiry, its tag.
    let tag = HEADER_BYTES + 1 + bytes[HEADER_BYTES] as usize + 8;
    b[tag] = 0xEE;
    let mut d = Decoder::new(b.len() as u64, &t).unwrap();
    let e = b.chunks(4096).try_for_each(|c| d.feed(c));
    assert!(
        e.is_err(),
        "a bad tag in the first piece is refused by that piece"
    );
    // Cut short, too long, or too short for a header.
    assert!(run(&bytes[..bytes.len() - 100], bytes.len() as u64).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(run(&long, bytes.len() as u64).is_err());
    assert!(Decoder::new(10, &t).is_err());
}

/// A snapshot encoded in pieces (a compaction written straight to its file) is byte for
/// byte the one encoded whole.
#[test]
fn a_snapshot_encoded_in_pieces_is_the_one_encoded_whole() {
    let mut h = Harness::new();
    let (_, whole) = varied(&mut h);
    let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}"));
    for piece in [1, 1000, 1 << 20] {
        let mut parts = Vec::new();
        let mut out = Vec::new();
        let n = encode_to(h.db.vshard(vid).unwrap(), h.now_ms, piece, &mut |b| {
            parts.push(b.len());
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!((n, &out), (whole.len() as u64, &whole), "piece {piece}");
        assert!(parts.len() > 1);
    }
}

#[test]
fn damaged_snapshots_are_refused_never_installed() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.run(&format!("HSET {{k}}h{i} f{i} {i}"));
    }
    let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}"));
    let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
    let t = h.db.tunables;
    assert!(decode(&bytes, &t).is_ok());
    for i in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert!(decode(&b, &t).is_err(), "flip at {i}");
    }
    for cut in [0, 10, bytes.len() - 5] {
        assert!(decode(&bytes[..cut], &t).is_err(), "cut at {cut}");
    }
    // A well-checksummed snapshot that lies about its counts is refused, not allocated for.
    let mut lie = bytes[..bytes.len() - 4].to_vec();
    lie[14..22].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&lie);
    lie.extend_from_slice(&crc.to_le_bytes());
    assert!(decode(&lie, &t).is_err());
}
