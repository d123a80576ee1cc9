use super::listpack::{self, Elem, Writer};
use super::*;
use crate::command::testing::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The payload in a bulk-string reply.
fn payload(reply: &[u8]) -> Vec<u8> {
    let nl = reply.iter().position(|&b| b == b'\n').unwrap();
    let n: usize = std::str::from_utf8(&reply[1..nl - 1])
        .unwrap()
        .parse()
        .unwrap();
    reply[nl + 1..nl + 1 + n].to_vec()
}

fn restore(h: &mut Harness, key: &str, ttl: &str, p: &[u8], opts: &[&str]) -> String {
    let mut argv: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), ttl.as_bytes(), p];
    argv.extend(opts.iter().map(|o| o.as_bytes()));
    h.run_args(&argv)
}

/// `body` (a type byte and a value) framed as a payload of `version`.
fn framed(body: &[u8], version: u16) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

#[test]
fn crc64_is_redis_jones_crc() {
    // Redis's crc64 self-test value.
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(crc64(b""), 0);
}

fn fill(h: &mut Harness) -> Vec<String> {
    h.run("SET {k}s hello PX 100000");
    h.run("SET {k}n 12345");
    h.run("SET {k}neg -70000");
    h.run("SET {k}big 9999999999");
    h.run(&format!("SET {{k}}long {}", "ab".repeat(300)));
    h.run("HSET {k}h a 1 b 2");
    h.run(&format!("HSET {{k}}hbig f {}", "y".repeat(100)));
    h.run("RPUSH {k}l x y z 12 -3");
    let many: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
    h.run(&format!("RPUSH {{k}}lbig {}", many.join(" ")));
    h.run("SADD {k}i 3 1 2 -9 5000000000");
    h.run("SADD {k}t a b c");
    h.run(&format!("SADD {{k}}tbig {}", many.join(" ")));
    h.run("ZADD {k}z 1.5 a -inf b 3 c 1e300 d");
    h.run(&format!(
        "ZADD {{k}}zbig {}",
        (0..200)
            .map(|i| format!("{i} m{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for i in 1..=250 {
        let fields = if i % 3 == 0 {
            "f v other w"
        } else {
            "f v g 12"
        };
        h.run(&format!("XADD {{k}}x {i}-1 {fields}"));
    }
    h.run("XDEL {k}x 2-1 100-1");
    h.run("XGROUP CREATE {k}x g 0");
    h.run("XREADGROUP GROUP g alice COUNT 3 STREAMS {k}x >");
    h.run("XGROUP CREATECONSUMER {k}x g bob");
    h.run("XGROUP CREATE {k}x g2 $ ENTRIESREAD 5");
    h.run("XADD {k}e 5-5 f v");
    h.run("XDEL {k}e 5-5");
    [
        "s", "n", "neg", "big", "long", "h", "hbig", "l", "lbig", "i", "t", "tbig", "z", "zbig",
        "x", "e",
    ]
    .iter()
    .map(|k| format!("{{k}}{k}"))
    .collect()
}

#[test]
fn every_type_round_trips_through_dump_and_restore() {
    let mut h = Harness::new();
    let keys = fill(&mut h);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = contents(&mut h, &refs);
    let mut saved = Vec::new();
    for k in &keys {
        let p = payload(&h.run_raw(&[b"DUMP", k.as_bytes()]));
        let pttl = h.run(&format!("PTTL {k}"));
        let ttl = pttl.trim_start_matches(':').trim_end().replace("-1", "0");
        saved.push((k.clone(), ttl, p));
    }
    h.run("FLUSHALL");
    for (k, ttl, p) in &saved {
        assert_eq!(restore(&mut h, k, ttl, p, &[]), "+OK\r\n", "{k}");
    }
    assert_eq!(contents(&mut h, &refs), before);
    // Compact encodings come back from the thresholds, as after a snapshot.
    assert_eq!(h.run("OBJECT ENCODING {k}i"), bulk("intset"));
    assert_eq!(h.run("OBJECT ENCODING {k}h"), bulk("listpack"));
    assert_eq!(h.run("OBJECT ENCODING {k}zbig"), bulk("skiplist"));
}

#[test]
fn payloads_written_by_redis_7_0_restore() {
    let mut h = Harness::new();
    // DUMPs taken from redis-server 7.0.15: a quicklist of listpacks, a hash (table), a sorted
    // set listpack, an LZF-compressed intset, an LZF-compressed string, an integer string.
    let cases = [
        (
            "l",
            "120102c31b405b135b00000005008161028162020c01ded402e04678e03c000148ff0a00e8df69312a559b9f",
            "LRANGE l 0 -1",
            arr(&["a", "b", "12", "-300", &"x".repeat(70)]),
        ),
        (
            "h",
            "040302663102763103626967c3094064017979e05700017979016ec287d612000a00a7560d11e8e9fb7f",
            "HGET h n",
            bulk("1234567"),
        ),
        (
            "z",
            "112a2a0000000800816202dffe0281610283312e3504816302f400ac23fc060000000981640283696e6604ff0a002d72d6bd27cfd0b5",
            "ZRANGE z 0 -1 WITHSCORES",
            arr(&["b", "-2", "a", "1.5", "c", "30000000000", "d", "inf"]),
        ),
        (
            "i",
            "0bc32028040800000004200301fbff80000001200b4000017011a00902f2052a200900000a0092628c140d00ba67",
            "SMISMEMBER i -5 1 70000 5000000000 2",
            "*5\r\n:1\r\n:1\r\n:1\r\n:1\r\n:0\r\n".to_string(),
        ),
        (
            "lzf",
            "00c30b40960361626361e087020162630a00cc4ffc25a4143aeb",
            "GET lzf",
            bulk(&"abc".repeat(50)),
        ),
        (
            "n",
            "00c290eefeff0a002875de7b13eb2800",
            "GET n",
            bulk("-70000"),
        ),
    ];
    for (key, hex, read, want) in cases {
        assert_eq!(
            restore(&mut h, key, "0", &unhex(hex), &[]),
            "+OK\r\n",
            "{key}"
        );
        assert_eq!(h.run(read), want, "{key}");
    }
    // A stream with a deleted entry, two groups, a PEL of two entries and a consumer without.
    let x = "130110000000000000000100000000000000014054540000001f0003010101020181660281670200010201000100018176020c010501030100010101817702dfff02050100010101dfff020101856f7468657206827a7a0306010201020104018276320307010501ff030305010101020402026731020081ffffffffffffffff0200000000000000010000000000000001adcc0b44a20100000100000000000000020000000000000000adcc0b44a2010000010205616c696365adcc0b44a201000002000000000000000100000000000000010000000000000002000000000000000003626f62adcc0b44a201000000026732030581ffffffffffffffff00000a005ed84e7c348ba257";
    assert_eq!(restore(&mut h, "x", "0", &unhex(x), &[]), "+OK\r\n");
    assert_eq!(
        h.run("XRANGE x - +"),
        "*3\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$2\r\n12\r\n\
         *2\r\n$3\r\n2-0\r\n*2\r\n$5\r\nother\r\n$2\r\nzz\r\n\
         *2\r\n$3\r\n3-5\r\n*4\r\n$1\r\nf\r\n$2\r\nv2\r\n$1\r\ng\r\n$1\r\n7\r\n"
    );
    assert_eq!(
        h.run("XPENDING x g1"),
        "*4\r\n:2\r\n$3\r\n1-1\r\n$3\r\n2-0\r\n*1\r\n*2\r\n$5\r\nalice\r\n$1\r\n2\r\n"
    );
    let info = h.run("XINFO STREAM x");
    assert!(
        info.contains("max-deleted-entry-id\r\n$3\r\n1-2\r\n$13\r\nentries-added\r\n:4\r\n"),
        "{info}"
    );
}

/// Encodings only older Redis versions write, built by hand from their documented layouts.
#[test]
fn ziplists_zipmaps_and_quicklists_of_older_versions_restore() {
    fn ziplist(elems: &[Elem]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut last = 10;
        for e in elems {
            let start = body.len();
            last = 10 + start;
            body.push(prev as u8);
            match e {
                Elem::Str(s) => {
                    body.push(s.len() as u8);
                    body.extend_from_slice(s);
                }
                Elem::Int(n) if (0..=12).contains(n) => body.push(0xf1 + *n as u8),
                Elem::Int(n) => {
                    body.push(0xc0);
                    body.extend_from_slice(&(*n as i16).to_le_bytes());
                }
            }
            prev = body.len() - start;
        }
        let mut z = Vec::new();
        z.extend_from_slice(&(body.len() as u32 + 11).to_le_bytes());
        z.extend_from_slice(&(last as u32).to_le_bytes());
        z.extend_from_slice(&(elems.len() as u16).to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xff);
        z
    }
    fn rdb_string(w: &mut Vec<u8>, s: &[u8]) {
        put_len(w, s.len() as u64);
        w.extend_from_slice(s);
    }
    let zl = ziplist(&[
        Elem::Str(b"a"),
        Elem::Int(7),
        Elem::Int(-1000),
        Elem::Str(b"bb"),
    ]);
    assert_eq!(
        listpack::ziplist(&zl).unwrap(),
        vec![
            Elem::Str(b"a"),
            Elem::Int(7),
            Elem::Int(-1000),
            Elem::Str(b"bb")
        ]
    );
    let mut h = Harness::new();
    let mut body = vec![T_LIST_ZIPLIST];
    rdb_string(&mut body, &zl);
    assert_eq!(restore(&mut h, "l", "0", &framed(&body, 6), &[]), "+OK\r\n");
    assert_eq!(h.run("LRANGE l 0 -1"), arr(&["a", "7", "-1000", "bb"]));
    let mut body = vec![T_LIST_QUICKLIST];
    put_len(&mut body, 2);
    rdb_string(&mut body, &zl);
    rdb_string(&mut body, &ziplist(&[Elem::Str(b"z")]));
    assert_eq!(restore(&mut h, "q", "0", &framed(&body, 9), &[]), "+OK\r\n");
    assert_eq!(h.run("LLEN q"), int(5));
    let mut body = vec![T_HASH_ZIPLIST];
    rdb_string(&mut body, &zl);
    assert_eq!(
        restore(&mut h, "hz", "0", &framed(&body, 9), &[]),
        "+OK\r\n"
    );
    assert_eq!(h.run("HGET hz -1000"), bulk("bb"));
    let mut body = vec![T_ZSET_ZIPLIST];
    let zs = ziplist(&[
        Elem::Str(b"a"),
        Elem::Int(7),
        Elem::Str(b"b"),
        Elem::Str(b"2.5"),
    ]);
    rdb_string(&mut body, &zs);
    assert_eq!(
        restore(&mut h, "zz", "0", &framed(&body, 9), &[]),
        "+OK\r\n"
    );
    assert_eq!(
        h.run("ZRANGE zz 0 -1 WITHSCORES"),
        arr(&["b", "2.5", "a", "7"])
    );
    // A zipmap: count, then (len key len free value [free bytes]) pairs, then 0xff.
    let zm = b"\x02\x01f\x02\x01vv\x00\x02gg\x01\x00w\xff";
    let mut body = vec![T_HASH_ZIPMAP];
    rdb_string(&mut body, zm);
    assert_eq!(
        restore(&mut h, "zm", "0", &framed(&body, 3), &[]),
        "+OK\r\n"
    );
    assert_eq!(h.run("HGETALL zm"), arr(&["f", "vv", "gg", "w"]));
    // The old text form of scores.
    let mut body = vec![T_ZSET];
    put_len(&mut body, 2);
    rdb_string(&mut body, b"m");
    body.extend_from_slice(b"\x032.5");
    rdb_string(&mut body, b"n");
    body.push(255);
    assert_eq!(
        restore(&mut h, "zt", "0", &framed(&body, 8), &[]),
        "+OK\r\n"
    );
    assert_eq!(
        h.run("ZRANGE zt 0 -1 WITHSCORES"),
        arr(&["n", "-inf", "m", "2.5"])
    );
}

#[test]
fn listpacks_written_read_back_with_every_integer_width() {
    let ints = [
        0,
        127,
        128,
        -1,
        -4096,
        4095,
        4096,
        -32768,
        32767,
        40000,
        -8388608,
        8388607,
        1 << 30,
        i32::MIN as i64,
        1 << 40,
        i64::MIN,
        i64::MAX,
    ];
    let mut w = Writer::default();
    for n in ints {
        w.int(n);
    }
    let long = vec![b'q'; 5000];
    for s in [
        &b""[..],
        b"x",
        &[b'a'; 63],
        &[b'b'; 64],
        &[b'c'; 4095],
        &long,
    ] {
        w.str(s);
    }
    let lp = w.finish();
    let got = listpack::listpack(&lp).unwrap();
    assert_eq!(got.len(), ints.len() + 6);
    for (g, n) in got.iter().zip(ints) {
        assert_eq!(*g, Elem::Int(n));
    }
    assert_eq!(got[ints.len() + 5], Elem::Str(&long));
}

#[test]
fn restore_options_and_errors_follow_redis() {
    let mut h = Harness::new();
    h.run("SET k v");
    let p = payload(&h.run_raw(&[b"DUMP", b"k"]));
    assert_eq!(h.run("DUMP missing"), "$-1\r\n");
    assert_eq!(
        restore(&mut h, "k", "0", &p, &[]),
        error("BUSYKEY Target key name already exists.")
    );
    assert_eq!(
        restore(&mut h, "k", "0", &p, &["BAD"]),
        error("ERR syntax error")
    );
    assert_eq!(
        restore(&mut h, "k", "0", &p, &["IDLETIME", "-1"]),
        error("ERR Invalid IDLETIME value, must be >= 0")
    );
    assert_eq!(
        restore(&mut h, "k", "0", &p, &["IDLETIME", "1", "FREQ", "1"]),
        error("ERR syntax error")
    );
    assert_eq!(
        restore(&mut h, "k", "0", &p, &["FREQ", "256"]),
        error("ERR Invalid FREQ value, must be >= 0 and <= 255")
    );
    // Options are checked before the key, the key before the TTL, the TTL before the payload.
    assert_eq!(
        restore(&mut h, "k", "-1", b"junk", &[]),
        error("BUSYKEY Target key name already exists.")
    );
    assert_eq!(
        restore(&mut h, "k2", "-1", b"junk", &[]),
        error("ERR Invalid TTL value, must be >= 0")
    );
    assert_eq!(
        restore(&mut h, "k2", "x", b"junk", &[]),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        restore(&mut h, "k2", "0", b"junk", &[]),
        error("ERR DUMP payload version or checksum are wrong")
    );
    let mut bad = p.clone();
    bad[1] ^= 1;
    assert_eq!(
        restore(&mut h, "k2", "0", &bad, &[]),
        error("ERR DUMP payload version or checksum are wrong")
    );
    let newer = framed(&p[..p.len() - 10], RDB_VERSION_MAX + 1);
    assert_eq!(
        restore(&mut h, "k2", "0", &newer, &[]),
        error("ERR DUMP payload version or checksum are wrong")
    );
    assert_eq!(
        restore(&mut h, "k2", "0", &framed(&[T_SET, 0], 10), &[]),
        error("ERR Bad data format")
    );
    assert_eq!(
        restore(&mut h, "k2", "0", &framed(&[7, 0], 10), &[]),
        error("ERR Bad data format")
    );
    assert_eq!(h.run("EXISTS k2"), int(0));
    // REPLACE, a relative TTL, ABSTTL, and an ABSTTL already past (nothing stored).
    h.run("SET k other");
    assert_eq!(restore(&mut h, "k", "5000", &p, &["REPLACE"]), "+OK\r\n");
    assert_eq!(h.run("GET k"), bulk("v"));
    assert_eq!(h.run("PTTL k"), int(5000));
    let at = (h.now_ms + 9000).to_string();
    assert_eq!(
        restore(&mut h, "k", &at, &p, &["REPLACE", "ABSTTL"]),
        "+OK\r\n"
    );
    assert_eq!(h.run("PTTL k"), int(9000));
    let past = (h.now_ms - 1).to_string();
    assert_eq!(
        restore(&mut h, "k", &past, &p, &["ABSTTL", "REPLACE"]),
        "+OK\r\n"
    );
    assert_eq!(h.run("EXISTS k"), int(0));
    // IDLETIME under an LRU policy (the default clock), FREQ under LFU.
    assert_eq!(
        restore(&mut h, "idle", "0", &p, &["IDLETIME", "1000"]),
        "+OK\r\n"
    );
    assert_eq!(h.run("OBJECT IDLETIME idle"), int(1000));
    h.db.tunables.maxmemory_policy = crate::evict::Policy::AllKeysLfu;
    assert_eq!(restore(&mut h, "hot", "0", &p, &["FREQ", "200"]), "+OK\r\n");
    assert_eq!(h.run("OBJECT FREQ hot"), int(200));
}

/// Every single-byte change and every cut of valid payloads, re-checksummed so the value decoder
/// sees them: refused or restored, never a panic, and a restored value is usable.
#[test]
fn damaged_payloads_are_refused_or_restored_never_a_panic() {
    let mut h = Harness::new();
    let keys = fill(&mut h);
    let mut payloads = Vec::new();
    for k in &keys {
        payloads.push(payload(&h.run_raw(&[b"DUMP", k.as_bytes()])));
    }
    let t = h.db.tunables;
    let mut refused = 0;
    let mut x = 0x5eed_u64;
    for p in &payloads {
        let body = &p[..p.len() - 10];
        let mut check = |b: &[u8]| {
            if load(b, &t).is_err() {
                refused += 1;
                return;
            }
            let mut h = Harness::new();
            assert_eq!(restore(&mut h, "k", "0", &framed(b, 10), &[]), "+OK\r\n");
            for cmd in [
                "TYPE k",
                "XINFO STREAM k FULL",
                "LRANGE k 0 -1",
                "ZRANGE k 0 -1",
            ] {
                h.run(cmd);
            }
        };
        for cut in 0..body.len().min(300) {
            check(&body[..cut]);
        }
        let positions: Vec<usize> = if body.len() <= 600 {
            (0..body.len()).collect()
        } else {
            (0..600)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % body.len() as u64) as usize
                })
                .collect()
        };
        for i in positions {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = body.to_vec();
                b[i] ^= flip;
                check(&b);
            }
        }
    }
    assert!(refused > 1000, "{refused}");
}
