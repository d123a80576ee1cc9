//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (issue 18): the arguments as Redis 7 checks
//! them, then the script runs in the thread's Lua state (`crate::script`).

use super::{Args, Ctx, err};
use crate::db::Db;
use crate::reply::Out;
use crate::script::{self, Call};

/// A script's keys and arguments.
type KeysAndArgs<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>);

/// EVAL's keys and arguments, after checking `numkeys`.
fn keys_and_args<'a>(a: Args<'a>) -> Result<KeysAndArgs<'a>, &'static str> {
    let Some(n) = crate::num::parse_i64(a.get(2)) else {
        return Err(err::NOT_INT);
    };
    if n < 0 {
        return Err("ERR Number of keys can't be negative");
    }
    if n as usize > a.len() - 3 {
        return Err("ERR Number of keys can't be greater than number of args");
    }
    let n = n as usize;
    Ok((
        (3..3 + n).map(|i| a.get(i)).collect(),
        (3 + n..a.len()).map(|i| a.get(i)).collect(),
    ))
}

fn eval_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, by_sha: bool, ro: bool) {
    let (keys, argv) = match keys_and_args(a) {
        Ok(ka) => ka,
        Err(e) => return out.error(e),
    };
    let (body, sha) = if by_sha {
        match db.scripts.cache.get(a.get(1)) {
            Some(body) => {
                let sha = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
                (body, sha)
            }
            None => return out.error("NOSCRIPT No matching script. Please use EVAL."),
        }
    } else {
        let sha = db.scripts.cache.insert(a.get(1));
        (std::sync::Arc::from(a.get(1)), sha)
    };
    let mut mode = match script::shebang(&body) {
        Ok(m) => m,
        Err(e) => return out.error(&e),
    };
    mode.read_only |= ro;
    let call = Call {
        body: &body,
        sha: &sha,
        keys,
        argv,
        mode,
    };
    script::run(db, call, c, out);
}

pub fn eval(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    eval_generic(db, a, c, out, false, false)
}

pub fn evalsha(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    eval_generic(db, a, c, out, true, false)
}

pub fn eval_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    eval_generic(db, a, c, out, false, true)
}

pub fn evalsha_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    eval_generic(db, a, c, out, true, true)
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// SCRIPT LOAD, EXISTS, FLUSH, KILL and HELP.
pub fn script(db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    let sub = a.get(1).to_ascii_lowercase();
    match (sub.as_slice(), a.len()) {
        (b"load", 3) => {
            let sha = db.scripts.cache.insert(a.get(2));
            out.bulk(sha.as_bytes())
        }
        (b"exists", n) if n >= 3 => {
            out.array(n - 2);
            for i in 2..n {
                out.int(db.scripts.cache.get(a.get(i)).is_some() as i64);
            }
        }
        (b"flush", 2) => {
            db.scripts.cache.flush();
            out.ok()
        }
        (b"flush", 3)
            if a.get(2).eq_ignore_ascii_case(b"async")
                || a.get(2).eq_ignore_ascii_case(b"sync") =>
        {
            db.scripts.cache.flush();
            out.ok()
        }
        (b"flush", _) => out.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
        // A script runs to its end on its thread before anything else there is served.
        (b"kill", 2) => out.error("NOTBUSY No scripts in execution right now."),
        (b"help", 2) => {
            out.array(SCRIPT_HELP.len());
            for line in SCRIPT_HELP {
                out.simple(line);
            }
        }
        _ => out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SCRIPT HELP.",
            String::from_utf8_lossy(a.get(1))
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::command::testing::Harness;

    /// EVAL `body` with `rest` (numkeys, keys, args) as separate words.
    fn eval(h: &mut Harness, body: &str, rest: &[&str]) -> String {
        let mut argv: Vec<&[u8]> = vec![b"EVAL", body.as_bytes()];
        argv.extend(rest.iter().map(|w| w.as_bytes()));
        h.run_args(&argv)
    }

    fn sha(body: &str) -> String {
        crate::script::sha1::hex(body.as_bytes())
    }

    #[test]
    fn replies_and_errors_are_redis_7s() {
        let mut h = Harness::new();
        // (Each expectation is what redis-server 7.0.15 answers.)
        assert_eq!(
            eval(&mut h, "return {1,2,{3,'a'},nil,5}", &["0"]),
            "*3\r\n:1\r\n:2\r\n*2\r\n:3\r\n$1\r\na\r\n"
        );
        assert_eq!(eval(&mut h, "return 3.99", &["0"]), ":3\r\n");
        assert_eq!(
            eval(&mut h, "return {1e20}", &["0"]),
            "*1\r\n:-9223372036854775808\r\n"
        );
        assert_eq!(eval(&mut h, "return true", &["0"]), ":1\r\n");
        assert_eq!(eval(&mut h, "return false", &["0"]), "$-1\r\n");
        assert_eq!(
            eval(&mut h, "return redis.status_reply('FINE')", &["0"]),
            "+FINE\r\n"
        );
        assert_eq!(eval(&mut h, "return {err='MY bad'}", &["0"]), "-MY bad\r\n");
        assert_eq!(
            eval(&mut h, "return redis.sha1hex('')", &["0"]),
            "$40\r\nda39a3ee5e6b4b0d3255bfef95601890afd80709\r\n"
        );
        assert_eq!(
            eval(&mut h, "return redis.REDIS_VERSION", &["0"]),
            "$6\r\n7.0.15\r\n"
        );
        assert_eq!(eval(&mut h, "return _VERSION", &["0"]), "$7\r\nLua 5.1\r\n");
        assert_eq!(eval(&mut h, "return table.getn({1,2})", &["0"]), ":2\r\n");
        let b = "return redis.call('incr','x','y')";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR Wrong number of args calling Redis command from script script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        h.run("SET s v");
        let b = "return redis.call('incr','s')";
        assert_eq!(
            eval(&mut h, b, &["1", "s"]),
            format!(
                "-ERR value is not an integer or out of range script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        assert_eq!(
            eval(&mut h, "return redis.pcall('incr','s')", &["1", "s"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        let b = "return x";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        let b = "x = 1";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR user_script:1: Attempt to modify a readonly table script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        let b = "error('boom')";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR user_script:1: boom script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        let b = "error({err='CUSTOM thing'})";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!("-CUSTOM thing script: {}, on @user_script:1.\r\n", sha(b))
        );
        let b = "return redis.call('nosuch')";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR Unknown Redis command called from script script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        let b = "return redis.call('eval','return 1','0')";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR This Redis command is not allowed from script script: {}, on @user_script:1.\r\n",
                sha(b)
            )
        );
        assert_eq!(
            eval(&mut h, "return 1 +", &["0"]),
            "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'\r\n"
        );
        let b = "local a = 1\nlocal b = 2\nerror('third')";
        assert_eq!(
            eval(&mut h, b, &["0"]),
            format!(
                "-ERR user_script:3: third script: {}, on @user_script:3.\r\n",
                sha(b)
            )
        );
        for gone in ["os", "debug", "print", "require", "getfenv"] {
            let b = format!("return type({gone})");
            assert!(
                eval(&mut h, &b, &["0"]).contains("nonexistent global variable"),
                "{gone}"
            );
        }
        assert_eq!(
            eval(&mut h, "return 1", &["-1"]),
            "-ERR Number of keys can't be negative\r\n"
        );
        assert_eq!(
            eval(&mut h, "return 1", &["5", "a"]),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
        assert_eq!(
            h.run("EVALSHA ffffffffffffffffffffffffffffffffffffffff 0"),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n"
        );
    }

    #[test]
    fn a_script_that_runs_too_long_without_writing_is_stopped_and_one_that_wrote_is_not() {
        fn now_ms() -> u64 {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_millis() as u64
        }
        let mut h = Harness::new();
        h.db.scripts.clock = Some(now_ms);
        h.db.scripts.busy_ms = 50;
        let b = "while true do end";
        let got = eval(&mut h, b, &["0"]);
        assert!(got.contains("without writing and was stopped"), "{got}");
        assert_eq!(h.run("PING"), "+PONG\r\n", "the thread is free again");
        // One that wrote first runs to its end, however long.
        h.db.scripts.busy_ms = 5;
        let b = "redis.call('set','w','1'); local n = 0; for i = 1, 3e6 do n = n + i end; return 'done'";
        let started = std::time::Instant::now();
        assert_eq!(eval(&mut h, b, &["0"]), "$4\r\ndone\r\n");
        assert!(
            started.elapsed() > std::time::Duration::from_millis(5),
            "ran past the limit"
        );
        // A script may not take the node's memory.
        h.db.scripts.memory_max = 64 << 20;
        let b = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e6) .. i end";
        assert!(eval(&mut h, b, &["0"]).contains("memory"));
    }

    #[test]
    fn scripts_read_and_write_keys_and_the_cache_names_them() {
        let mut h = Harness::new();
        let body =
            "redis.call('set', KEYS[1], ARGV[1]); return redis.call('incrby', KEYS[2], ARGV[2])";
        assert_eq!(eval(&mut h, body, &["2", "a", "n", "hello", "5"]), ":5\r\n");
        assert_eq!(h.run("GET a"), "$5\r\nhello\r\n");
        let written: Vec<&[u8]> = h.db.scripts.written.iter().map(Vec::as_slice).collect();
        assert_eq!(written, [&b"a"[..], b"n"], "the keys it wrote, for the log");
        let id = sha(body);
        assert_eq!(
            h.run(&format!("SCRIPT EXISTS {id} {}", "0".repeat(40))),
            "*2\r\n:1\r\n:0\r\n"
        );
        let mut argv: Vec<&[u8]> = vec![b"EVALSHA", id.as_bytes(), b"2", b"a", b"n", b"x", b"1"];
        assert_eq!(h.run_args(&argv), ":6\r\n");
        let upper = id.to_ascii_uppercase();
        argv[1] = upper.as_bytes();
        assert_eq!(h.run_args(&argv), ":7\r\n", "an id in any case");
        let loaded = h.run_args(&[b"SCRIPT", b"LOAD", b"return 42"]);
        assert_eq!(loaded, format!("$40\r\n{}\r\n", sha("return 42")));
        assert_eq!(h.run(&format!("EVALSHA {} 0", sha("return 42"))), ":42\r\n");
        // A script's error table, caught by the script's own pcall, is a table.
        let caught = "local ok, e = pcall(redis.call, 'incr', 'a'); return {tostring(ok), e.err}";
        assert_eq!(
            eval(&mut h, caught, &["0"]),
            "*2\r\n$5\r\nfalse\r\n$43\r\nERR value is not an integer or out of range\r\n"
        );
        assert_eq!(h.run("SCRIPT FLUSH"), "+OK\r\n");
        assert!(
            h.run(&format!("EVALSHA {} 0", sha("return 42")))
                .starts_with("-NOSCRIPT")
        );
        // Read-only: EVAL_RO and the no-writes flag refuse writes, reads run.
        let mut argv: Vec<&[u8]> = vec![b"EVAL_RO", b"return redis.call('set','a','b')", b"0"];
        assert!(
            h.run_args(&argv)
                .contains("Write commands are not allowed from read-only scripts")
        );
        argv[1] = b"return redis.call('get','a')";
        assert_eq!(h.run_args(&argv), "$1\r\nx\r\n");
        let ro = "#!lua flags=no-writes\nreturn redis.call('set','a','b')";
        assert!(eval(&mut h, ro, &["0"]).contains("Write commands are not allowed"));
        assert!(
            eval(&mut h, "#!python\nreturn 1", &["0"]).starts_with("-ERR Could not find engine")
        );
        // pcall hands an error back as a table; nil in RESP2 is false.
        assert_eq!(
            eval(
                &mut h,
                "local r = redis.pcall('get'); return type(r) .. ':' .. r.err",
                &["0"]
            ),
            "$64\r\ntable:ERR Wrong number of args calling Redis command from script\r\n"
        );
        assert_eq!(
            eval(&mut h, "return type(redis.call('get','nokey'))", &["0"]),
            "$7\r\nboolean\r\n"
        );
        assert_eq!(
            eval(&mut h, "return redis.call('ping')['ok']", &["0"]),
            "$4\r\nPONG\r\n"
        );
        // A table holding itself ends at the depth limit instead of the stack.
        assert_eq!(
            eval(&mut h, "local t = {}; t[1] = t; return t", &["0"])
                .matches("*1\r\n")
                .count(),
            1001
        );
    }
}
