use super::*;

/// A command as its owned arguments.
type Cmd = Vec<Vec<u8>>;

/// Parses every complete command in `buf`; returns the commands and the bytes consumed.
fn parse_all(buf: &[u8], limits: &Limits) -> Result<(Vec<Cmd>, usize), ProtocolError> {
    let mut spans = Vec::new();
    let mut scratch = Vec::new();
    let mut pos = 0;
    let mut cmds = Vec::new();
    while let Some(frame) = parse_command(&buf[pos..], limits, &mut spans, &mut scratch)? {
        assert!(frame.consumed > 0, "a frame always consumes bytes");
        let base: &[u8] = if frame.in_scratch {
            &scratch
        } else {
            &buf[pos..]
        };
        if !spans.is_empty() {
            cmds.push(
                spans
                    .iter()
                    .map(|&(s, e)| base[s as usize..e as usize].to_vec())
                    .collect(),
            );
        }
        pos += frame.consumed;
    }
    Ok((cmds, pos))
}

fn words(cmd: &[&str]) -> Vec<Vec<u8>> {
    cmd.iter().map(|w| w.as_bytes().to_vec()).collect()
}

const STREAM: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n*0\r\nPING\r\n\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\nset \"a b\" 'c\\'d' \"\\x41\\n\"\n*-1\r\n*1\r\n$4\r\nPING\r\n";

fn expected() -> Vec<Cmd> {
    vec![
        words(&["SET", "key", "va\r\nl"]),
        words(&["PING"]),
        words(&["ECHO", ""]),
        vec![
            b"set".to_vec(),
            b"a b".to_vec(),
            b"c'd".to_vec(),
            b"A\n".to_vec(),
        ],
        words(&["PING"]),
    ]
}

#[test]
fn parses_multibulk_inline_and_empty_commands() {
    let (cmds, used) = parse_all(STREAM, &Limits::default()).unwrap();
    assert_eq!(cmds, expected());
    assert_eq!(used, STREAM.len());
}

#[test]
fn every_split_point_gives_the_same_commands() {
    let limits = Limits::default();
    for cut in 0..=STREAM.len() {
        let mut buf = STREAM[..cut].to_vec();
        let (mut cmds, used) = parse_all(&buf, &limits).unwrap();
        buf.drain(..used);
        buf.extend_from_slice(&STREAM[cut..]);
        let (rest, used2) = parse_all(&buf, &limits).unwrap();
        cmds.extend(rest);
        assert_eq!(cmds, expected(), "split at {cut}");
        assert_eq!(used2, buf.len(), "split at {cut}");
    }
}

#[test]
fn byte_at_a_time_feeding_gives_the_same_commands() {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut cmds = Vec::new();
    for &b in STREAM {
        buf.push(b);
        let (c, used) = parse_all(&buf, &limits).unwrap();
        cmds.extend(c);
        buf.drain(..used);
    }
    assert_eq!(cmds, expected());
    assert!(buf.is_empty());
}

#[test]
fn limits_and_malformed_frames_are_errors_with_redis_wording() {
    let limits = Limits {
        max_bulk_len: 100,
        max_multibulk_len: 10,
        max_inline_len: 32,
    };
    let err = |b: &[u8]| parse_all(b, &limits).unwrap_err().0;
    assert_eq!(
        err(b"*11\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(
        err(b"*x\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(
        err(b"*1\r\n$101\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(b"*1\r\n$99999999999999999999\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(b"*1\r\n$-5\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err(b"*1\r\n+ok\r\n"),
        "ERR Protocol error: expected '$', got '+'"
    );
    assert_eq!(
        err(b"*1\r\n$2\r\nabcd\r\n"),
        "ERR Protocol error: bulk string not terminated by CRLF"
    );
    assert_eq!(
        err(&[b'a'; 40]),
        "ERR Protocol error: too big inline request"
    );
    assert_eq!(
        err(b"set \"abc\n"),
        "ERR Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        err(b"set \"a\"b\n"),
        "ERR Protocol error: unbalanced quotes in request"
    );
    // Unterminated frames are not errors: they wait for more bytes.
    assert_eq!(
        parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\n", &limits).unwrap().1,
        0
    );
    assert_eq!(parse_all(b"*1\r\n$100\r\n", &limits).unwrap().1, 0);
    assert_eq!(bytes_needed(b"*1\r\n$100\r\nab"), Some(4 + 6 + 102));
}

/// xorshift64*, so the garbage test is deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_garbage_never_panics_and_frames_stay_in_bounds() {
    let limits = Limits {
        max_bulk_len: 1000,
        max_multibulk_len: 100,
        max_inline_len: 1000,
    };
    let alphabet = b"*$+-:\r\n0123456789-\"'\\ xab";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut spans = Vec::new();
    let mut scratch = Vec::new();
    for _ in 0..50_000 {
        let len = (rng.next() % 64) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if r.is_multiple_of(4) {
                    r as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                }
            })
            .collect();
        if let Ok(Some(frame)) = parse_command(&buf, &limits, &mut spans, &mut scratch) {
            assert!(frame.consumed > 0 && frame.consumed <= buf.len());
            let base_len = if frame.in_scratch {
                scratch.len()
            } else {
                buf.len()
            };
            for &(s, e) in &spans {
                assert!(s <= e && e as usize <= base_len);
            }
        }
        let _ = value_len(&buf);
        let _ = decode(&buf);
    }
}

#[test]
fn decodes_resp2_and_resp3_replies() {
    let buf = b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*2\r\n,1.5\r\n_\r\n";
    let (v, n) = decode(buf).unwrap().unwrap();
    assert_eq!(n, buf.len());
    assert_eq!(
        v,
        Value::Map(vec![
            (Value::Simple("a".into()), Value::Int(1)),
            (
                Value::Bulk(b"b".to_vec()),
                Value::Array(vec![Value::Double(1.5), Value::Null])
            ),
        ])
    );
    assert_eq!(value_len(b"$5\r\nhel").unwrap(), None);
    assert_eq!(value_len(b"$-1\r\n").unwrap(), Some(5));
    assert!(value_len(b"?x\r\n").is_err());
    let deep = "*1\r\n".repeat(100);
    assert!(value_len(deep.as_bytes()).is_err());
    let mut enc = Vec::new();
    encode_command(&["GET", "k"], &mut enc);
    assert_eq!(enc, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
}

#[test]
fn inline_nul_bytes_are_argument_bytes_not_separators() {
    // Regression: a NUL made the splitter emit empty arguments forever.
    let (cmds, _) = parse_all(b"a\0b c\n", &Limits::default()).unwrap();
    assert_eq!(cmds, vec![vec![b"a\0b".to_vec(), b"c".to_vec()]]);
}

/// Regression (issue 15): an integer reply of a negative 19-digit number was refused as
/// malformed, so a proxying node or an EXEC reading it could not find where the reply ends.
#[test]
fn integer_replies_span_every_i64() {
    for (text, n) in [
        (":-9223372036854775808\r\n", i64::MIN),
        (":-9223372036854775807\r\n", i64::MIN + 1),
        (":9223372036854775807\r\n", i64::MAX),
        (":-1\r\n", -1),
        (":0\r\n", 0),
    ] {
        assert_eq!(
            decode(text.as_bytes()).unwrap(),
            Some((Value::Int(n), text.len())),
            "{text:?}"
        );
        assert_eq!(value_len(text.as_bytes()).unwrap(), Some(text.len()));
    }
    for bad in [
        ":9223372036854775808\r\n",
        ":-9223372036854775809\r\n",
        ":-\r\n",
        ":1a\r\n",
    ] {
        assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
    }
}
