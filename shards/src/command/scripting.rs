//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (issue 18): the arguments as Redis 7 checks
//! them, then the script runs in the thread's Lua state (`crate::script`).

use super::{Args, Ctx, err};
use crate::db::Db;
use crate::reply::Out;
use crate::script::{self, Call, Mode, Target, functions};

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
    let given = a.get(1);
    let lowered;
    let (body, sha): (std::sync::Arc<[u8]>, &str) = if by_sha {
        let sha = match std::str::from_utf8(given) {
            Ok(s) if !s.bytes().any(|b| b.is_ascii_uppercase()) => s,
            _ => {
                lowered = String::from_utf8_lossy(given).to_ascii_lowercase();
                &lowered
            }
        };
        match db.scripts.body(sha) {
            Some(body) => (body, sha),
            None => return out.error("NOSCRIPT No matching script. Please use EVAL."),
        }
    } else {
        // (A transaction's run is a participant's, not a client's EVAL: nothing is cached.)
        lowered = match db.scripts.txn {
            Some(_) => script::sha1::hex(given),
            None => db.scripts.cache.insert(given),
        };
        (std::sync::Arc::from(given), &lowered)
    };
    let mut mode = match script::shebang(&body) {
        Ok(m) => m,
        Err(e) => return out.error(&e),
    };
    mode.read_only |= ro;
    let call = Call {
        target: Target::Script { body: &body, sha },
        keys,
        argv,
        mode,
    };
    script::run(db, call, c, out);
}

/// FCALL and FCALL_RO: `<function> <numkeys> [key ...] [arg ...]`, checked in Redis's
/// order (the function, then the keys, then the flags).
fn fcall_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, ro: bool) {
    let name = String::from_utf8_lossy(a.get(1));
    let Some(flags) = script::flags_of(db, &name) else {
        return out.error("ERR Function not found");
    };
    let (keys, argv) = match keys_and_args(a) {
        Ok(ka) => ka,
        Err(e) if e == err::NOT_INT => return out.error("ERR Bad number of keys provided"),
        Err(e) => return out.error(e),
    };
    let no_writes = flags & functions::NO_WRITES != 0;
    if ro && !no_writes {
        return out.error("ERR Can not execute a script with write flag using *_ro command.");
    }
    let call = Call {
        target: Target::Function { name: &name },
        keys,
        argv,
        mode: Mode {
            read_only: ro || no_writes,
        },
    };
    script::run(db, call, c, out);
}

pub fn fcall(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    fcall_generic(db, a, c, out, false)
}

pub fn fcall_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    fcall_generic(db, a, c, out, true)
}

/// FUNCTION STATS' reply: the busy function among `threads` (any thread's; `now_ms` the
/// node's monotonic clock), and the libraries' counts.
pub fn function_stats(
    libs: &functions::Libraries,
    threads: &[std::sync::Arc<script::Busy>],
    now_ms: u64,
    out: &mut Out,
) {
    out.map(2);
    out.bulk(b"running_script");
    match script::running_function(threads, now_ms) {
        Some((r, ms)) => {
            out.map(3);
            out.bulk(b"name");
            out.bulk(&r.name);
            out.bulk(b"command");
            out.array(r.command.len());
            for w in &r.command {
                out.bulk(w);
            }
            out.bulk(b"duration_ms");
            out.int(ms as i64);
        }
        None => out.null(),
    }
    out.bulk(b"engines");
    out.map(1);
    out.bulk(b"LUA");
    out.map(2);
    out.bulk(b"libraries_count");
    out.int(libs.len() as i64);
    out.bulk(b"functions_count");
    out.int(libs.functions_count() as i64);
}

/// FUNCTION: LIST, STATS, DUMP, KILL and HELP read the node's libraries; LOAD, DELETE, FLUSH
/// and RESTORE change them. On a node, those go to the metadata group (the connection takes
/// them before this handler, `function_change`); here, where there is none (the command
/// layer's tests), they change the published set directly.
pub fn function(db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    let spec = super::lookup(b"function").expect("in the table");
    if let Err(e) = super::check_subcommand(spec, a) {
        return out.error(&e);
    }
    match a.get(1).to_ascii_lowercase().as_slice() {
        b"list" => function_list(db, a, out),
        b"stats" => {
            let now_ms = db.scripts.clock.map_or(0, |now| now());
            function_stats(
                &db.scripts.functions.get(),
                &db.scripts.node_busy,
                now_ms,
                out,
            );
        }
        b"dump" => {
            let libs = db.scripts.functions.get();
            out.bulk(&crate::rdb::dump_functions(
                libs.iter().map(|l| l.code.as_slice()),
            ))
        }
        b"kill" => out.error("NOTBUSY No scripts in execution right now."),
        b"help" => err::unknown_subcommand(out, a.get(1), "function"),
        _ => match function_change(db, a) {
            Ok(cmd) => match db.scripts.functions.apply_local(&cmd) {
                Ok(functions::FnApplied::Loaded(name)) => out.bulk(name.as_bytes()),
                Ok(functions::FnApplied::Done) => out.ok(),
                Err(e) => out.error(&e),
            },
            Err(e) => out.error(&e),
        },
    }
}

/// Whether `a` is a FUNCTION subcommand that changes the libraries (LOAD, DELETE, FLUSH,
/// RESTORE): what the connection sends to the metadata group.
pub fn changes_functions(a: Args) -> bool {
    a.len() >= 2
        && [&b"load"[..], b"delete", b"flush", b"restore"]
            .iter()
            .any(|s| a.get(1).eq_ignore_ascii_case(s))
}

/// FUNCTION LOAD, DELETE, FLUSH or RESTORE as a change to the libraries (what the metadata
/// group's log carries); new code is loaded once here, in this thread's Lua state, to find its
/// name and functions (`script::describe`). `Err`: the reply (nothing changed).
pub fn function_change(db: &mut Db, a: Args) -> Result<functions::FnCmd, String> {
    use functions::{FnCmd, Policy};
    let spec = super::lookup(b"function").expect("in the table");
    super::check_subcommand(spec, a)?;
    let n = a.len();
    match a.get(1).to_ascii_lowercase().as_slice() {
        b"load" => {
            for i in 2..n - 1 {
                if !a.get(i).eq_ignore_ascii_case(b"replace") {
                    return Err(format!(
                        "ERR Unknown option given: {}",
                        String::from_utf8_lossy(a.get(i))
                    ));
                }
            }
            let lib = script::describe(db, a.get(n - 1))?;
            Ok(FnCmd::Load {
                replace: n > 3,
                lib,
            })
        }
        b"delete" => Ok(FnCmd::Delete {
            name: String::from_utf8_lossy(a.get(2)).into_owned(),
        }),
        b"flush" => {
            if n > 3
                || (n == 3
                    && !a.get(2).eq_ignore_ascii_case(b"async")
                    && !a.get(2).eq_ignore_ascii_case(b"sync"))
            {
                return Err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option".to_string());
            }
            Ok(FnCmd::Flush)
        }
        b"restore" => {
            let policy = match n {
                3 => Policy::Append,
                _ => match a.get(3).to_ascii_lowercase().as_slice() {
                    b"append" => Policy::Append,
                    b"replace" => Policy::Replace,
                    b"flush" => Policy::Flush,
                    _ => return Err("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.".to_string()),
                },
            };
            let codes = crate::rdb::load_functions(a.get(2)).map_err(str::to_string)?;
            let libs = codes
                .iter()
                .map(|code| script::describe(db, code))
                .collect::<Result<_, _>>()?;
            Ok(FnCmd::Restore { policy, libs })
        }
        _ => Err(format!(
            "ERR unknown subcommand '{}'. Try FUNCTION HELP.",
            err::sanitize(a.get(1))
        )),
    }
}

/// FUNCTION LIST [WITHCODE] [LIBRARYNAME <pattern>].
fn function_list(db: &Db, a: Args, out: &mut Out) {
    let (mut code, mut pattern) = (false, None);
    let mut i = 2;
    while i < a.len() {
        let arg = a.get(i);
        if arg.eq_ignore_ascii_case(b"withcode") && !code {
            code = true;
        } else if arg.eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
            if i + 1 >= a.len() {
                return out.error("ERR library name argument was not given");
            }
            i += 1;
            pattern = Some(a.get(i));
        } else {
            return out.error(&format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(arg)
            ));
        }
        i += 1;
    }
    let libs = db.scripts.functions.get();
    let shown: Vec<_> = libs
        .iter()
        .filter(|l| pattern.is_none_or(|p| crate::glob::glob_match(p, l.name.as_bytes())))
        .collect();
    out.array(shown.len());
    for lib in shown {
        out.map(3 + code as usize);
        out.bulk(b"library_name");
        out.bulk(lib.name.as_bytes());
        out.bulk(b"engine");
        out.bulk(b"LUA");
        out.bulk(b"functions");
        out.array(lib.functions.len());
        for f in &lib.functions {
            out.map(3);
            out.bulk(b"name");
            out.bulk(f.name.as_bytes());
            out.bulk(b"description");
            match &f.description {
                Some(d) => out.bulk(d.as_bytes()),
                None => out.null(),
            }
            out.bulk(b"flags");
            let names: Vec<_> = functions::FLAG_NAMES
                .iter()
                .enumerate()
                .filter(|(b, _)| f.flags & (1 << b) != 0)
                .collect();
            out.set(names.len());
            for (_, name) in names {
                out.simple(name);
            }
        }
        if code {
            out.bulk(b"library_code");
            out.bulk(&lib.code);
        }
    }
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
        // Numbers given to redis.call are written as `%.17g`.
        assert_eq!(
            eval(
                &mut h,
                "redis.call('set','x',3.14) redis.call('set','y',1e15) redis.call('set','z',2^53+1) redis.call('set','w',1/3) redis.call('set','v',-0.0) redis.call('set','u',1e300) return redis.call('mget','x','y','z','w','v','u')",
                &["0"]
            ),
            "*6\r\n$18\r\n3.1400000000000001\r\n$16\r\n1000000000000000\r\n$16\r\n9007199254740992\r\n$19\r\n0.33333333333333331\r\n$2\r\n-0\r\n$23\r\n1.0000000000000001e+300\r\n"
        );
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
        h.db.tunables.script_stop_ms = 50;
        let b = "while true do end";
        let got = eval(&mut h, b, &["0"]);
        assert!(got.contains("without writing and was stopped"), "{got}");
        assert_eq!(h.run("PING"), "+PONG\r\n", "the thread is free again");
        // One that wrote first runs to its end, however long.
        h.db.tunables.script_stop_ms = 5;
        let b = "redis.call('set','w','1'); local n = 0; for i = 1, 3e6 do n = n + i end; return 'done'";
        let started = std::time::Instant::now();
        assert_eq!(eval(&mut h, b, &["0"]), "$4\r\ndone\r\n");
        assert!(
            started.elapsed() > std::time::Duration::from_millis(5),
            "ran past the limit"
        );
        // Past busy-reply-threshold the thread is busy for the others, and SCRIPT KILL from
        // one of them stops a script that has not written...
        h.db.tunables.script_stop_ms = 0;
        h.db.tunables.busy_reply_ms = 10;
        let killer = |function: bool, busy: std::sync::Arc<crate::script::Busy>| {
            std::thread::spawn(move || {
                while !busy.is_busy() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                crate::script::kill(&[busy], function)
            })
        };
        let k = killer(false, h.db.scripts.busy.clone());
        let got = eval(&mut h, "while true do end", &["0"]);
        assert!(
            got.contains("Script killed by user with SCRIPT KILL"),
            "{got}"
        );
        assert_eq!(k.join().unwrap(), Ok(()));
        assert!(!h.db.scripts.busy.is_busy(), "not busy once it ended");
        // ... but not one that wrote (UNKILLABLE), which runs to its end.
        let k = killer(false, h.db.scripts.busy.clone());
        let b = "redis.call('set','w','2'); local n = 0; for i = 1, 3e7 do n = n + i end; return 'done'";
        assert_eq!(eval(&mut h, b, &["0"]), "$4\r\ndone\r\n");
        assert!(k.join().unwrap().unwrap_err().starts_with("UNKILLABLE"));
        // FUNCTION KILL does not stop a script (nor SCRIPT KILL a function).
        let k = killer(true, h.db.scripts.busy.clone());
        let b = "local n = 0; for i = 1, 3e7 do n = n + i end; return 'done'";
        assert_eq!(eval(&mut h, b, &["0"]), "$4\r\ndone\r\n");
        assert!(k.join().unwrap().unwrap_err().starts_with("NOTBUSY"));
        h.db.tunables.busy_reply_ms = crate::script::BUSY_MS;
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

    /// FUNCTION LOAD of `code` (with REPLACE if `replace`).
    fn load(h: &mut Harness, code: &str, replace: bool) -> String {
        let mut argv: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
        if replace {
            argv.push(b"REPLACE");
        }
        argv.push(code.as_bytes());
        h.run_args(&argv)
    }

    const LIB: &str = "#!lua name=mylib\nredis.register_function('f1', function(keys, args) return redis.call('get', keys[1]) end)\nredis.register_function{function_name='f2', callback=function(keys, args) return args[1] end, flags={'no-writes','allow-oom'}, description='desc two'}";

    #[test]
    fn functions_load_list_call_and_delete_as_redis_7() {
        let mut h = Harness::new();
        // (Each expectation is what redis-server 7.0.15 answers.)
        assert_eq!(load(&mut h, LIB, false), "$5\r\nmylib\r\n");
        assert_eq!(
            load(&mut h, LIB, false),
            "-ERR Library 'mylib' already exists\r\n"
        );
        assert_eq!(
            load(
                &mut h,
                "#!lua name=other\nredis.register_function('f1', function() return 1 end)",
                false
            ),
            "-ERR Function f1 already exists\r\n"
        );
        h.run("SET k v");
        assert_eq!(h.run("FCALL f1 1 k"), "$1\r\nv\r\n");
        assert_eq!(h.run("FCALL f2 0 hello"), "$5\r\nhello\r\n");
        assert_eq!(h.run("FCALL_RO f2 0 hello"), "$5\r\nhello\r\n");
        assert_eq!(
            h.run("FCALL_RO f1 0"),
            "-ERR Can not execute a script with write flag using *_ro command.\r\n"
        );
        assert_eq!(h.run("FCALL nope 0"), "-ERR Function not found\r\n");
        assert_eq!(h.run("FCALL nope -1"), "-ERR Function not found\r\n");
        assert_eq!(h.run("FCALL f1 x"), "-ERR Bad number of keys provided\r\n");
        assert_eq!(
            h.run("FCALL f1 3 a"),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
        assert_eq!(
            h.run("FUNCTION LIST"),
            "*1\r\n*6\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n$6\r\nengine\r\n$3\r\nLUA\r\n$9\r\nfunctions\r\n*2\r\n*6\r\n$4\r\nname\r\n$2\r\nf1\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*0\r\n*6\r\n$4\r\nname\r\n$2\r\nf2\r\n$11\r\ndescription\r\n$8\r\ndesc two\r\n$5\r\nflags\r\n*2\r\n+no-writes\r\n+allow-oom\r\n"
        );
        assert_eq!(h.run("FUNCTION LIST LIBRARYNAME my"), "*0\r\n");
        assert!(
            h.run("FUNCTION LIST LIBRARYNAME my* WITHCODE")
                .contains("library_code")
        );
        assert_eq!(
            h.run("FUNCTION LIST WITHCODE WITHCODE"),
            "-ERR Unknown argument WITHCODE\r\n"
        );
        assert_eq!(
            h.run("FUNCTION LIST LIBRARYNAME"),
            "-ERR library name argument was not given\r\n"
        );
        assert_eq!(
            h.run("FUNCTION STATS"),
            "*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*2\r\n$3\r\nLUA\r\n*4\r\n$15\r\nlibraries_count\r\n:1\r\n$15\r\nfunctions_count\r\n:2\r\n"
        );
        h.proto = crate::reply::Proto::Resp3;
        assert!(
            h.run("FUNCTION LIST")
                .contains("~2\r\n+no-writes\r\n+allow-oom\r\n")
        );
        h.proto = crate::reply::Proto::Resp2;
        assert_eq!(h.run("FUNCTION DELETE nope"), "-ERR Library not found\r\n");
        assert_eq!(h.run("FUNCTION DELETE mylib"), "+OK\r\n");
        assert_eq!(h.run("FCALL f1 1 k"), "-ERR Function not found\r\n");
        assert_eq!(
            h.run("FUNCTION KILL"),
            "-NOTBUSY No scripts in execution right now.\r\n"
        );
        assert_eq!(
            h.run("FUNCTION STATS x"),
            "-ERR wrong number of arguments for 'function|stats' command\r\n"
        );
        assert_eq!(
            h.run("FUNCTION FOO"),
            "-ERR unknown subcommand 'FOO'. Try FUNCTION HELP.\r\n"
        );
        assert!(h.run("FUNCTION HELP").starts_with("*"));
        assert_eq!(
            h.run("FUNCTION FLUSH bad"),
            "-ERR FUNCTION FLUSH only supports SYNC|ASYNC option\r\n"
        );
        assert_eq!(h.run("FUNCTION FLUSH ASYNC"), "+OK\r\n");
    }

    #[test]
    fn function_load_errors_are_redis_7s() {
        let mut h = Harness::new();
        let cases = [
            (
                "redis.register_function('f1', function() return 1 end)",
                "ERR Missing library metadata",
            ),
            ("#!lua name=x\nreturn 1", "ERR No functions registered"),
            (
                "#!lua name=x-y\nreturn 1",
                "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
            ),
            (
                "#!lua name=x foo=bar\nreturn 1",
                "ERR Invalid metadata value given: foo=bar",
            ),
            (
                "#!lua name=x name=y\nreturn 1",
                "ERR Invalid metadata value, name argument was given multiple times",
            ),
            ("#!lua\nreturn 1", "ERR Library name was not given"),
            ("#!luax name=x\nreturn 1", "ERR Engine 'luax' not found"),
            (
                "#!lua name=x\nredis.call('ping')",
                "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'",
            ),
            (
                "#!lua name=x\nlocal x = string",
                "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'string'",
            ),
            (
                "#!lua name=x\nredis.register_function('f-1', function() end)",
                "ERR Error registering functions: ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
            ),
            (
                "#!lua name=x\nredis.register_function{function_name='f3', callback=function() end, flags={'bad'}}",
                "ERR Error registering functions: ERR unknown flag given",
            ),
            (
                "#!lua name=x\nredis.register_function{function_name='f3', callback=function() end, foo=1}",
                "ERR Error registering functions: ERR unknown argument given to redis.register_function",
            ),
            (
                "#!lua name=x\nredis.register_function('f3', 1)",
                "ERR Error registering functions: ERR second argument to redis.register_function must be a function",
            ),
            (
                "#!lua name=x\nredis.register_function()",
                "ERR Error registering functions: ERR wrong number of arguments to redis.register_function",
            ),
            (
                "#!lua name=x\nredis.register_function('a')",
                "ERR Error registering functions: ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            ),
            (
                "#!lua name=x\nredis.register_function{callback=function() end}",
                "ERR Error registering functions: ERR redis.register_function must get a function name argument",
            ),
            (
                "#!lua name=x\nredis.register_function{function_name='a'}",
                "ERR Error registering functions: ERR redis.register_function must get a callback argument",
            ),
            (
                "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags='no-writes'}",
                "ERR Error registering functions: ERR flags argument to redis.register_function must be a table representing function flags",
            ),
            (
                "#!lua name=x\nredis.register_function('a', function() end) redis.register_function('a', function() end)",
                "ERR Error registering functions: ERR Function already exists in the library",
            ),
            (
                "#!lua name=x\nlocal t = {} t.x.y = 1",
                "ERR Error registering functions: ERR user_function:2: attempt to index field 'x' (a nil value)",
            ),
            (
                "#!lua name=x\nsyntax error here",
                "ERR Error compiling function: user_function:2: '=' expected near 'error'",
            ),
        ];
        for (code, want) in cases {
            assert_eq!(load(&mut h, code, false), format!("-{want}\r\n"), "{code}");
        }
        assert_eq!(
            h.run_args(&[b"FUNCTION", b"LOAD", b"a", b"b"]),
            "-ERR Unknown option given: a\r\n"
        );
        assert_eq!(h.run("FUNCTION LIST"), "*0\r\n", "nothing was loaded");
        // A number is a name; the load-time API is not there at run time, the state's is.
        let code = "#!lua name=probe\nlocal function helper(s) return string.len(s) end\nredis.register_function(1, function(keys, args) return helper(args[1]) end)\nredis.register_function('probe2', function(keys, args) x = 1 return 1 end)\nredis.register_function('probe3', function(keys, args) return #KEYS end)\nredis.register_function('probe4', function(keys, args) return {keys[1], args[1], type(redis.register_function)} end)";
        assert_eq!(load(&mut h, code, false), "$5\r\nprobe\r\n");
        assert_eq!(h.run("FCALL 1 0 hello"), ":5\r\n");
        assert_eq!(
            h.run("FCALL probe2 0"),
            "-ERR user_function:4: Attempt to modify a readonly table script: probe2, on @user_function:4.\r\n"
        );
        assert_eq!(
            h.run("FCALL probe3 0"),
            "-ERR user_function:5: Script attempted to access nonexistent global variable 'KEYS' script: probe3, on @user_function:5.\r\n"
        );
        assert_eq!(
            h.run("FCALL probe4 1 k a"),
            "*3\r\n$1\r\nk\r\n$1\r\na\r\n$3\r\nnil\r\n"
        );
        let boom = "#!lua name=probe\nredis.register_function('probe', function(keys, args) error('boom') end)\nredis.register_function('probe2', function(keys, args) return redis.call('nosuch') end)";
        assert_eq!(load(&mut h, boom, true), "$5\r\nprobe\r\n");
        assert_eq!(
            h.run("FCALL probe 0"),
            "-ERR user_function:2: boom script: probe, on @user_function:2.\r\n"
        );
        assert_eq!(
            h.run("FCALL probe2 0"),
            "-ERR Unknown Redis command called from script script: probe2, on @user_function:3.\r\n"
        );
        // A function with no-writes may not write.
        let ro = "#!lua name=ro\nredis.register_function{function_name='w', callback=function(keys) return redis.call('set', keys[1], 'x') end, flags={'no-writes'}}";
        assert_eq!(load(&mut h, ro, false), "$2\r\nro\r\n");
        assert!(
            h.run("FCALL w 1 k")
                .contains("Write commands are not allowed from read-only scripts")
        );
    }

    #[test]
    fn function_dump_and_restore_follow_the_policies() {
        let mut h = Harness::new();
        load(&mut h, LIB, false);
        let dump = h.run_raw(&[b"FUNCTION", b"DUMP"]);
        let payload = &dump[dump.iter().position(|&b| b == b'\n').unwrap() + 1..dump.len() - 2];
        let restore = |h: &mut Harness, p: &[u8], policy: &[u8]| {
            let mut argv: Vec<&[u8]> = vec![b"FUNCTION", b"RESTORE", p];
            if !policy.is_empty() {
                argv.push(policy);
            }
            h.run_args(&argv)
        };
        assert_eq!(
            restore(&mut h, payload, b""),
            "-ERR Library mylib already exists\r\n"
        );
        assert_eq!(
            restore(&mut h, payload, b"APPEND"),
            "-ERR Library mylib already exists\r\n"
        );
        assert_eq!(restore(&mut h, payload, b"REPLACE"), "+OK\r\n");
        assert_eq!(restore(&mut h, payload, b"FLUSH"), "+OK\r\n");
        assert_eq!(
            restore(&mut h, payload, b"BAD"),
            "-ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.\r\n"
        );
        let mut bad = payload.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            restore(&mut h, &bad, b""),
            "-ERR DUMP payload version or checksum are wrong\r\n"
        );
        h.run("SET k v");
        let key = h.run_raw(&[b"DUMP", b"k"]);
        let key = &key[key.iter().position(|&b| b == b'\n').unwrap() + 1..key.len() - 2];
        assert_eq!(
            restore(&mut h, key, b""),
            "-ERR given type is not a function\r\n"
        );
        h.run("FUNCTION FLUSH");
        assert_eq!(h.run("FUNCTION LIST"), "*0\r\n");
        assert_eq!(restore(&mut h, payload, b""), "+OK\r\n");
        assert_eq!(h.run("FCALL f2 0 back"), "$4\r\nback\r\n");
        // Redis 7.0.15's own payload of the same library (its code LZF-compressed) restores.
        let redis = b"\xf5\xc3@\xbfA\x01\x1f#!lua name=mylib\nredis.register_\x0efunction('f1', \xe0\x00\x0e\x11keys, args) return \x06@9\x08call('get -@$\x08[1]) end)\xe0\x0fY\x00{\xc0S\x00_`\x85\x02'f2 9@E\x04back=\xc0\x1c\xe0\x0bp@} ^@] \x99\x12lags={'no-writes',' \x8a\x10ow-oom'}, descrip@\xcc\x01='@\x0c\x05 two'}\n\x00mj\x1fV\xaa\x97R\x80";
        assert_eq!(restore(&mut h, redis, b"FLUSH"), "+OK\r\n");
        assert_eq!(h.run("FCALL f2 0 again"), "$5\r\nagain\r\n");
        assert_eq!(
            h.run_raw(&[b"FUNCTION", b"DUMP"]),
            dump,
            "the same library dumps alike"
        );
    }

    /// A script run for a replicated group (`script::Isolation`): it sees its own writes,
    /// touches only its vShard, and once undone leaves the keyspace exactly as it was (its
    /// effects go through the log instead).
    #[test]
    fn an_isolated_script_is_undone_completely_and_stays_in_its_vshard() {
        use crate::script::Isolation;
        let mut h = Harness::new();
        h.run("SET {t}a 1");
        h.run("RPUSH {t}l x y");
        h.run("PEXPIRE {t}l 100000");
        let before = crate::command::testing::contents(&mut h, &["{t}a", "{t}l", "{t}new"]);
        let v = h.db.layout().vshard_of(crate::slot::key_slot(b"{t}a"));
        h.db.scripts.isolation = Some(Isolation::new(Some(v)));
        let body = "redis.call('incr', KEYS[1]); redis.call('del', KEYS[2]); redis.call('set', KEYS[3], 'n', 'EX', 5); return {redis.call('get', KEYS[1]), redis.call('exists', KEYS[2])}";
        assert_eq!(
            eval(&mut h, body, &["3", "{t}a", "{t}l", "{t}new"]),
            "*2\r\n$1\r\n2\r\n:0\r\n"
        );
        let mut written = h.db.scripts.written.clone();
        written.sort();
        assert_eq!(
            written,
            [b"{t}a".to_vec(), b"{t}l".to_vec(), b"{t}new".to_vec()]
        );
        // Another vShard's key, or a keyless write, is refused.
        assert!(
            eval(
                &mut h,
                "return redis.call('set', KEYS[1], 1)",
                &["1", "other"]
            )
            .contains("non local key")
        );
        assert!(eval(&mut h, "return redis.call('flushall')", &["0"]).contains("not allowed"));
        h.db.scripts.isolation.take().unwrap().undo(&mut h.db);
        let after = crate::command::testing::contents(&mut h, &["{t}a", "{t}l", "{t}new"]);
        assert_eq!(before, after);
    }
}
