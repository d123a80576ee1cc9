#![no_main]
//! Scripts (issue 18): the fuzzer's bytes as a script body and its keys and arguments (split
//! at zero bytes), run by EVAL on a keyspace, then again by EVALSHA; from the same
//! arguments, `redis.call` with whatever they name; and the body as a library's code
//! (FUNCTION LOAD), then FCALL of a function it may have registered. No script may panic the node, and none
//! may hold it past its budget (a 20 ms one here) or its Lua memory cap (32 MiB here).

use libfuzzer_sys::fuzz_target;
use shardline_shards::command::{self, Args, Ctx};
use shardline_shards::db::Db;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::rng::Rng;
use shardline_shards::slot::VShardLayout;

fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

fn run(db: &mut Db, argv: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    command::words_into(argv, &mut buf, &mut spans);
    let mut out = Out::new(Proto::Resp2);
    let mut ctx = Ctx {
        now_ms: 1_700_000_000_000,
        now_us: 1_700_000_000_000_000,
        rng,
    };
    command::execute(db, Args::new(&buf, &spans), &mut ctx, &mut out);
    out.buf
}

fuzz_target!(|data: &[u8]| {
    let mut db = Db::new_all(VShardLayout::new(16).expect("a layout"));
    db.scripts.clock = Some(now_ms);
    db.tunables.script_stop_ms = 20;
    db.scripts.memory_max = 32 << 20;
    let mut rng = Rng::new(1);
    let mut parts = data.split(|&b| b == 0);
    let body = parts.next().unwrap_or_default();
    let rest: Vec<&[u8]> = parts.take(8).collect();
    let numkeys = rest.len().min(2).to_string();
    let mut argv: Vec<&[u8]> = vec![b"EVAL", body, numkeys.as_bytes()];
    argv.extend(&rest);
    let started = std::time::Instant::now();
    let reply = run(&mut db, &argv, &mut rng);
    assert!(!reply.is_empty(), "every script answers");
    let sha = shardline_shards::script::sha1::hex(body);
    argv[0] = b"EVALSHA";
    argv[1] = sha.as_bytes();
    run(&mut db, &argv, &mut rng);
    // The arguments as a command from a script.
    let call = "local a = {} for i = 1, #ARGV do a[i] = ARGV[i] end return redis.pcall(unpack(a))";
    let mut argv: Vec<&[u8]> = vec![b"EVAL", call.as_bytes(), b"0"];
    argv.extend(&rest);
    run(&mut db, &argv, &mut rng);
    // The body as a library's code (its load time-limited: 500 ms), then a call of whatever
    // it registered under the first argument's name.
    let mut code = b"#!lua name=fuzzlib\n".to_vec();
    code.extend_from_slice(body);
    run(&mut db, &[b"FUNCTION", b"LOAD", b"REPLACE", &code], &mut rng);
    let name = rest.first().copied().unwrap_or(b"f");
    let mut argv: Vec<&[u8]> = vec![b"FCALL", name, numkeys.as_bytes()];
    argv.extend(&rest);
    run(&mut db, &argv, &mut rng);
    run(&mut db, &[b"FUNCTION", b"LIST", b"WITHCODE"], &mut rng);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "scripts held the thread for {:?}",
        started.elapsed()
    );
});
