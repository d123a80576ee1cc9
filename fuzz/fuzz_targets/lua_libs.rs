#![no_main]
//! Redis's Lua libraries (issue 18, step 4) on the fuzzer's bytes: `cjson.decode`,
//! `cmsgpack.unpack` (all, one, a limited number from an offset) and `struct.unpack` with a
//! format from the input, each under `pcall`, and what decoded encoded again. None may panic
//! the node or blow its stack (their nesting is bounded, `script::libs`).

use libfuzzer_sys::fuzz_target;
use shardline_shards::command::{self, Args, Ctx};
use shardline_shards::db::Db;
use shardline_shards::reply::{Out, Proto};
use shardline_shards::rng::Rng;
use shardline_shards::slot::VShardLayout;

const SCRIPT: &str = "
local s, fmt = ARGV[1], ARGV[2]
local out = {}
local ok, v = pcall(cjson.decode, s)
out[#out + 1] = tostring(ok)
if ok then out[#out + 1] = tostring(pcall(cjson.encode, v)) end
local r = {pcall(cmsgpack.unpack, s)}
out[#out + 1] = tostring(r[1])
if r[1] then out[#out + 1] = tostring(pcall(cmsgpack.pack, unpack(r, 2))) end
out[#out + 1] = tostring(pcall(cmsgpack.unpack_one, s, #fmt % (#s + 1)))
out[#out + 1] = tostring(pcall(cmsgpack.unpack_limit, s, #fmt % 4, 0))
out[#out + 1] = tostring(pcall(struct.unpack, fmt, s))
out[#out + 1] = tostring(pcall(struct.size, fmt))
out[#out + 1] = tostring(pcall(bit.tohex, #s, #fmt - 4))
return out
";

fuzz_target!(|data: &[u8]| {
    let mut db = Db::new_all(VShardLayout::new(16).expect("a layout"));
    db.scripts.memory_max = 64 << 20;
    let mut rng = Rng::new(1);
    let cut = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (s, fmt) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let fmt = &fmt[..fmt.len().min(64)];
    let argv: Vec<&[u8]> = vec![b"EVAL", SCRIPT.as_bytes(), b"0", s, fmt];
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    command::words_into(&argv, &mut buf, &mut spans);
    let mut out = Out::new(Proto::Resp2);
    let mut ctx = Ctx {
        now_ms: 1_700_000_000_000,
        now_us: 1_700_000_000_000_000,
        rng: &mut rng,
    };
    command::execute(&mut db, Args::new(&buf, &spans), &mut ctx, &mut out);
    assert!(out.buf.starts_with(b"*"), "{}", String::from_utf8_lossy(&out.buf));
});
