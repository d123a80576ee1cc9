//! ACL users (issue 21) with real clients: the `redis` crate, redis-py and redis-cli against
//! a node; the aclfile and `user` lines across restarts; answers compared with
//! redis-server's.

mod common;

use common::acl::*;
use common::{Redis, Server};
use redis::{Connection, Value};
use std::process::Command;
use std::time::Duration;

#[test]
fn users_are_checked_on_commands_keys_channels_and_transactions() {
    let s = Server::start("0,1", &[]);
    let mut admin = s.client();
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">rpw",
            "~app:*",
            "%R~ro:*",
            "resetchannels",
            "&news.*",
            "-@all",
            "+@read",
            "+@connection",
            "+publish",
            "+multi",
            "+exec",
            "+acl|whoami",
        ],
    );
    ok(&mut admin, &["SET", "ro:1", "v"]);
    let mut r = conn_as(&s, "reader", "rpw").unwrap();
    assert_eq!(
        text(q(&mut r, &["ACL", "WHOAMI"]).unwrap_or(Value::Nil)),
        "reader"
    );
    assert_eq!(text(q(&mut r, &["GET", "ro:1"]).unwrap()), "v");
    // Not allowed: the command, a key (read-only pattern), a key outside every pattern, a
    // channel.
    let e = err(&mut r, &["SET", "app:1", "v"]);
    assert_eq!(
        e,
        "NOPERM User reader has no permissions to run the 'set' command"
    );
    ok(&mut admin, &["ACL", "SETUSER", "reader", "+set"]);
    // The change applies to the open connection.
    ok(&mut r, &["SET", "app:1", "v"]);
    assert!(
        err(&mut r, &["SET", "ro:1", "x"]).starts_with("NOPERM No permissions to access a key")
    );
    assert!(err(&mut r, &["GET", "other"]).starts_with("NOPERM"));
    ok(&mut r, &["PUBLISH", "news.today", "m"]);
    assert_eq!(
        err(&mut r, &["PUBLISH", "gossip", "m"]),
        "NOPERM No permissions to access a channel"
    );
    assert_eq!(
        text(q(&mut admin, &["GET", "ro:1"]).unwrap()),
        "v",
        "nothing written"
    );
    let entries = log(&mut admin);
    let reasons: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["reason"].as_str(), e["object"].as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("channel", "gossip"),
            ("key", "other"),
            ("key", "ro:1"),
            ("command", "set")
        ]
    );
    for e in &entries {
        assert_eq!(e["username"], "reader");
        assert_eq!(e["context"], "toplevel");
        assert_eq!(e["count"], "1");
        assert!(
            e["client-info"].contains("user=reader"),
            "{}",
            e["client-info"]
        );
    }
    // A transaction: a refused command is refused when queued and the EXEC is aborted.
    ok(&mut r, &["MULTI"]);
    assert!(err(&mut r, &["SET", "ro:2", "v"]).starts_with("NOPERM"));
    assert!(err(&mut r, &["EXEC"]).starts_with("EXECABORT"));
    // Permissions taken away between queueing and EXEC: nothing runs.
    ok(&mut r, &["MULTI"]);
    assert_eq!(text(q(&mut r, &["SET", "app:2", "v"]).unwrap()), "QUEUED");
    ok(&mut admin, &["ACL", "SETUSER", "reader", "-set"]);
    let e = err(&mut r, &["EXEC"]);
    assert!(e.starts_with("NOPERM ACLs rules changed"), "{e}");
    assert_eq!(q(&mut admin, &["GET", "app:2"]).unwrap(), Value::Nil);
    assert_eq!(log(&mut admin)[0]["context"], "multi");
    // A wrong password is refused and logged.
    let e = conn_as(&s, "reader", "bad").map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), redis::ErrorKind::AuthenticationFailed, "{e:?}");
    assert_eq!(log(&mut admin)[0]["reason"], "auth");
    // Counted in INFO stats.
    let info = text(q(&mut admin, &["INFO", "stats"]).unwrap());
    for (field, n) in [("auth", 1), ("cmd", 2), ("key", 3), ("channel", 1)] {
        assert!(
            info.contains(&format!("acl_access_denied_{field}:{n}\r\n")),
            "{field}: {info}"
        );
    }
    // CLIENT LIST names the user.
    let list = text(q(&mut admin, &["CLIENT", "LIST"]).unwrap());
    assert!(list.contains("user=reader"), "{list}");
    // A deleted user's connections close.
    assert_eq!(
        q(&mut admin, &["ACL", "DELUSER", "reader", "nobody"]).unwrap(),
        Value::Int(1)
    );
    assert!(q(&mut r, &["GET", "ro:1"]).is_err());
    assert!(conn_as(&s, "reader", "rpw").is_err());
    // ACL LOG RESET.
    ok(&mut admin, &["ACL", "LOG", "RESET"]);
    assert!(log(&mut admin).is_empty());
    // CLIENT KILL USER.
    ok(
        &mut admin,
        &["ACL", "SETUSER", "k", "on", "nopass", "+@all", "~*"],
    );
    let mut k = conn_as(&s, "k", "x").unwrap();
    ok(&mut k, &["PING"]);
    assert_eq!(
        q(&mut admin, &["CLIENT", "KILL", "USER", "k"]).unwrap(),
        Value::Int(1)
    );
    assert!(q(&mut k, &["PING"]).is_err());
    assert!(err(&mut admin, &["CLIENT", "KILL", "USER", "nobody"]).contains("No such user"));
}

#[test]
fn requirepass_is_the_default_users_password_and_a_disabled_default_user_locks_out() {
    let s = Server::start("0", &[]);
    let mut admin = s.client();
    ok(&mut admin, &["CONFIG", "SET", "requirepass", "sekret"]);
    let mut anon = s.client();
    assert!(err(&mut anon, &["GET", "k"]).starts_with("NOAUTH"));
    assert!(err(&mut anon, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    ok(&mut anon, &["AUTH", "sekret"]);
    ok(&mut anon, &["AUTH", "default", "sekret"]);
    let list = text(q(&mut admin, &["ACL", "LIST"]).unwrap_or(Value::Nil));
    let _ = list;
    let lines: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut admin).unwrap();
    assert!(lines[0].starts_with("user default on #"), "{lines:?}");
    ok(&mut admin, &["CONFIG", "SET", "requirepass", ""]);
    let mut anon = s.client();
    ok(&mut anon, &["GET", "k"]);
    assert!(err(&mut anon, &["AUTH", "x"]).contains("without any password configured"));
    // An administrator, then the default user off: new connections must authenticate.
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "root", "on", ">rootpw", "~*", "&*", "+@all",
        ],
    );
    ok(&mut admin, &["ACL", "SETUSER", "default", "off"]);
    let mut anon = s.client();
    assert!(err(&mut anon, &["PING"]).starts_with("NOAUTH"));
    let mut root = conn_as(&s, "root", "rootpw").unwrap();
    ok(&mut root, &["SET", "k", "v"]);
    // HELLO AUTH authenticates too; RESET goes back to the default user.
    let mut raw = s.client();
    let hello: redis::RedisResult<Value> = redis::cmd("HELLO")
        .arg(3)
        .arg("AUTH")
        .arg("root")
        .arg("rootpw")
        .query(&mut raw);
    assert!(hello.is_ok(), "{hello:?}");
    assert_eq!(text(q(&mut raw, &["ACL", "WHOAMI"]).unwrap()), "root");
    ok(&mut raw, &["RESET"]);
    assert!(err(&mut raw, &["GET", "k"]).starts_with("NOAUTH"));
}

#[test]
fn the_acl_command_answers_as_redis_documents() {
    let s = Server::start("0", &[]);
    let mut c = s.client();
    let cats: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut c).unwrap();
    assert_eq!(cats.len(), 21);
    assert_eq!(cats[0], "keyspace");
    let dangerous: Vec<String> = redis::cmd("ACL")
        .arg("CAT")
        .arg("dangerous")
        .query(&mut c)
        .unwrap();
    assert!(dangerous.contains(&"flushall".to_string()));
    assert!(dangerous.contains(&"config|set".to_string()));
    assert!(err(&mut c, &["ACL", "CAT", "nope"]).contains("Unknown category 'nope'"));
    let p = text(q(&mut c, &["ACL", "GENPASS"]).unwrap());
    assert_eq!(p.len(), 64);
    assert!(p.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(text(q(&mut c, &["ACL", "GENPASS", "5"]).unwrap()).len(), 2);
    assert!(err(&mut c, &["ACL", "GENPASS", "0"]).contains("up to 4096"));
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "v",
            "on",
            "nopass",
            "+set",
            "~k*",
            "(+get ~g*)",
        ],
    );
    let u: Vec<Value> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let fields: Vec<String> = u.iter().step_by(2).map(|v| text(v.clone())).collect();
    assert_eq!(
        fields,
        [
            "flags",
            "passwords",
            "commands",
            "keys",
            "channels",
            "selectors"
        ]
    );
    assert_eq!(text(u[5].clone()), "-@all +set");
    assert_eq!(text(u[7].clone()), "~k*");
    assert_eq!(
        q(&mut c, &["ACL", "GETUSER", "nobody"]).unwrap(),
        Value::Nil
    );
    assert_eq!(
        text(q(&mut c, &["ACL", "DRYRUN", "v", "set", "k1", "x"]).unwrap()),
        "OK"
    );
    assert_eq!(
        text(q(&mut c, &["ACL", "DRYRUN", "v", "get", "k1"]).unwrap()),
        "User v has no permissions to access the 'k1' key"
    );
    assert_eq!(
        text(q(&mut c, &["ACL", "DRYRUN", "v", "get", "g1"]).unwrap()),
        "OK"
    );
    assert!(
        err(&mut c, &["ACL", "DRYRUN", "nobody", "get", "x"]).contains("User 'nobody' not found")
    );
    assert!(err(&mut c, &["ACL", "DRYRUN", "v", "nocmd"]).contains("Command 'nocmd' not found"));
    assert_eq!(
        err(&mut c, &["ACL", "SETUSER", "v", "+nocmd"]),
        "ERR Error in ACL SETUSER modifier '+nocmd': Unknown command or category name in ACL"
    );
    assert!(err(&mut c, &["ACL", "DELUSER", "default"]).contains("cannot be removed"));
    assert!(err(&mut c, &["ACL", "SAVE"]).contains("not configured to use an ACL file"));
    assert!(
        err(&mut c, &["ACL", "WHOAMI", "x"]).contains("wrong number of arguments for 'acl|whoami'")
    );
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut c).unwrap();
    assert_eq!(users, ["default", "v"]);
    let help: Vec<String> = redis::cmd("ACL").arg("HELP").query(&mut c).unwrap();
    assert!(help[0].starts_with("ACL <subcommand>"));
    // acl-pubsub-default: what a new (or reset) user's channels start as.
    ok(
        &mut c,
        &["CONFIG", "SET", "acl-pubsub-default", "allchannels"],
    );
    ok(&mut c, &["ACL", "SETUSER", "ps"]);
    let lines: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut c).unwrap();
    assert!(
        lines.contains(&"user ps off &* -@all".to_string()),
        "{lines:?}"
    );
    assert!(err(&mut c, &["ACL", "SETUSER", "ps2", "&foo"]).contains("'allchannels' flag"));
    ok(&mut c, &["ACL", "SETUSER", "v", "reset"]);
    let lines: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut c).unwrap();
    assert!(
        lines.contains(&"user v off sanitize-payload &* -@all".to_string()),
        "{lines:?}"
    );
    ok(
        &mut c,
        &["CONFIG", "SET", "acl-pubsub-default", "resetchannels"],
    );
    ok(&mut c, &["ACL", "SETUSER", "ps3"]);
    let lines: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut c).unwrap();
    assert!(
        lines.contains(&"user ps3 off resetchannels -@all".to_string()),
        "{lines:?}"
    );
}

#[test]
fn the_aclfile_is_read_at_start_saved_loaded_and_refused_whole_when_wrong() {
    let dir = std::env::temp_dir().join(format!("shardline-aclfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.acl");
    std::fs::write(&file, "# users\nuser alice on >apw ~a:* &* +@all\n").unwrap();
    let path = file.display().to_string();
    let mut s = Server::start("0", &["--aclfile", &path]);
    let mut alice = conn_as(&s, "alice", "apw").unwrap();
    ok(&mut alice, &["SET", "a:1", "v"]);
    assert!(err(&mut alice, &["SET", "b:1", "v"]).starts_with("NOPERM"));
    let mut admin = s.client();
    ok(
        &mut admin,
        &["ACL", "SETUSER", "bob", "on", ">bpw", "+get", "~*"],
    );
    ok(&mut admin, &["ACL", "SAVE"]);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("user bob on #"), "{saved}");
    s.kill_and_restart();
    let mut bob = conn_as(&s, "bob", "bpw").unwrap();
    ok(&mut bob, &["GET", "a:1"]);
    // A file with an error changes nothing, and says where the error is.
    std::fs::write(&file, "user carol on +nocmd\n").unwrap();
    let mut admin = s.client();
    let e = err(&mut admin, &["ACL", "LOAD"]);
    assert!(
        e.contains(&format!("{path}:1:")) && e.contains("no change"),
        "{e}"
    );
    assert!(conn_as(&s, "bob", "bpw").is_ok());
    // A good one replaces the users (bob's connection closes: bob is gone).
    std::fs::write(&file, "user carol on >cpw ~* +@all\n").unwrap();
    ok(&mut admin, &["ACL", "LOAD"]);
    assert!(q(&mut bob, &["GET", "a:1"]).is_err());
    assert!(conn_as(&s, "carol", "cpw").is_ok());
    drop(s);
    // A bad file stops start-up with the file, the line and the reason.
    std::fs::write(&file, "user dave on +nocmd\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--aclfile",
            &path,
        ])
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{path}:1:")) && stderr.contains("+nocmd"),
        "{stderr}"
    );
    // `user` lines as flags, and not with an aclfile.
    let s = Server::start("0", &["--user", "erin on >epw ~* +@all"]);
    assert!(conn_as(&s, "erin", "epw").is_ok());
    drop(s);
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--aclfile",
            &path,
        ])
        .args(["--user", "erin on"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("aclfile"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_py_and_redis_cli_use_acl_users() {
    let s = Server::start("0", &[]);
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port})
assert r.acl_setuser("pyuser", enabled=True, passwords=["+pypw"], keys=["py:*"], commands=["+@all", "-flushall"])
u = r.acl_getuser("pyuser")
assert "on" in u["flags"], u
assert u["keys"] == ["py:*"] or u["keys"] == "~py:*" or "py:*" in str(u["keys"]), u
p = redis.Redis(port={port}, username="pyuser", password="pypw")
assert p.acl_whoami() in ("pyuser", b"pyuser")
p.set("py:1", "v")
try:
    p.set("other", "v")
    raise SystemExit("other was written")
except redis.exceptions.NoPermissionError:
    pass
try:
    p.flushall()
    raise SystemExit("flushall ran")
except redis.exceptions.NoPermissionError:
    pass
entries = r.acl_log()
assert entries[0]["reason"] == "command" and entries[0]["object"] == "flushall", entries
assert entries[1]["reason"] == "key" and entries[1]["object"] == "other", entries
assert r.acl_deluser("pyuser") == 1
print("ok")
"#,
        port = s.port
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok"),
        "redis-py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = s.client();
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "cli",
            "on",
            ">clipw",
            "~*",
            "+@all",
            "-@dangerous",
        ],
    );
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &s.port.to_string(),
                "--user",
                "cli",
                "--pass",
                "clipw",
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["ACL", "WHOAMI"]), "cli");
    assert_eq!(cli(&["SET", "k", "v"]), "OK");
    assert!(
        cli(&["KEYS", "*"]).contains("NOPERM"),
        "{}",
        cli(&["KEYS", "*"])
    );
}

/// The same users on redis-server and on a node: every command is allowed or refused alike
/// (ACL DRYRUN), for the same reason, and the rules read back alike.
#[test]
fn acl_answers_match_redis_servers() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-server is not installed: the comparison is skipped");
        return;
    }
    let redis = Redis::start().expect("redis-server starts");
    let mut theirs = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let s = Server::start("0", &[]);
    let mut ours = s.client();
    let users: &[&[&str]] = &[
        &[
            "rw",
            "on",
            "nopass",
            "+@all",
            "%R~read*",
            "%W~write*",
            "%RW~rw*",
            "&*",
        ],
        &[
            "cats",
            "on",
            "nopass",
            "~*",
            "+@all",
            "-@dangerous",
            "-@hash",
            "+hget",
            "resetchannels",
            "&ch*",
        ],
        &[
            "subs",
            "on",
            "nopass",
            "~*",
            "-@all",
            "+config|get",
            "+client",
            "-client|kill",
            "+select|0",
            "+@string",
        ],
        &[
            "sel",
            "on",
            "nopass",
            "~k*",
            "-@all",
            "+get",
            "(+set ~s*)",
            "(+@list ~l* %R~r*)",
        ],
        &["ro", "on", "nopass", "~*", "-@all", "+@read", "-@keyspace"],
    ];
    for u in users {
        let mut words = vec!["ACL", "SETUSER"];
        words.extend_from_slice(u);
        assert_eq!(
            q(&mut ours, &words).map_err(msg),
            q(&mut theirs, &words).map_err(msg),
            "{words:?}"
        );
    }
    let commands: &[&str] = &[
        "get read",
        "get write",
        "get rw",
        "set write v",
        "set read v",
        "set rw v get",
        "set write v get",
        "exists nothing",
        "exists read",
        "strlen write",
        "lmove read write left right",
        "lmove rw write left right",
        "copy read write",
        "copy write read",
        "sort read store write",
        "sort read store read",
        "zunionstore write 2 read rw",
        "georadius read 0 0 1 m store write",
        "georadius read 0 0 1 m storedist read",
        "eval x 1 rw",
        "eval x 1 read",
        "eval_ro x 1 read",
        "eval x 0 read",
        "xread streams read 0",
        "xread streams write 0",
        "mset write a read b",
        "bitfield read get u8 0",
        "bitfield read set u8 0 1",
        "object encoding read",
        "object encoding nothing",
        "hget h f",
        "hset h f v",
        "hdel h f",
        "flushall",
        "keys *",
        "publish ch1 m",
        "publish other m",
        "subscribe ch1 other",
        "psubscribe ch*",
        "psubscribe ch1*",
        "config get maxmemory",
        "config set maxmemory 1",
        "client id",
        "client kill id 1",
        "select 0",
        "select 1",
        "append k v",
        "set s1 v",
        "set k1 v",
        "lpush l1 v",
        "lrange r1 0 1",
        "lpush r1 v",
        "get k1",
        "get s1",
        "ping",
        "info",
        "type read",
        "del write",
        "del read",
        "hexists write f",
        "sintercard 2 write read",
        "touch nothing",
        "incr write",
        "incr rw",
    ];
    let mut differences = Vec::new();
    let mut refused = 0;
    for u in users {
        for cmd in commands {
            let mut words = vec!["ACL", "DRYRUN", u[0]];
            words.extend(cmd.split(' '));
            // 7.0 says "This user has...", 7.2 "User <name> has...": compare what follows.
            let norm = |r: redis::RedisResult<Value>| match r {
                Ok(v) => {
                    let t = text(v);
                    t.find("has no permissions")
                        .map_or(t.clone(), |i| t[i..].to_string())
                }
                Err(e) => msg(e),
            };
            let (a, b) = (norm(q(&mut ours, &words)), norm(q(&mut theirs, &words)));
            refused += a.contains("has no permissions") as usize;
            if a != b {
                differences.push(format!("{} {cmd}: ours {a:?}, redis-server {b:?}", u[0]));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(
        refused > 50,
        "the users refuse too little to compare: {refused}"
    );
    // What GETUSER says of keys, channels, flags and passwords is the same.
    for u in users {
        let get = |c: &mut Connection| -> Vec<String> {
            let v: Vec<Value> = redis::cmd("ACL").arg("GETUSER").arg(u[0]).query(c).unwrap();
            [1, 3, 7, 9]
                .iter()
                .map(|&i| format!("{:?}", v[i]))
                .collect()
        };
        assert_eq!(get(&mut ours), get(&mut theirs), "{}", u[0]);
    }
    // Rules refused alike.
    for bad in [
        "+nocmd",
        "+@nocat",
        "foo",
        "%X~a",
        "-select|0",
        "+config|get|x",
        "+config|nope",
        "#abc",
        "<nope",
    ] {
        let words = ["ACL", "SETUSER", "bad", bad];
        assert_eq!(
            q(&mut ours, &words).map_err(msg),
            q(&mut theirs, &words).map_err(msg),
            "{bad}"
        );
    }
}

#[test]
fn scripts_run_with_their_callers_permissions() {
    // Two shard threads: a script's keys on one thread run through a job, across threads
    // as a transaction.
    let s = Server::start("0,1", &[]);
    let mut admin = s.client();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "lua", "on", ">lpw", "~s:*", "-@all", "+eval", "+evalsha", "+get",
            "+fcall",
        ],
    );
    let mut u = conn_as(&s, "lua", "lpw").unwrap();
    // Allowed inside: GET of its keys.
    ok(&mut admin, &["SET", "s:1", "v"]);
    let v = q(
        &mut u,
        &["EVAL", "return redis.call('get', KEYS[1])", "1", "s:1"],
    )
    .unwrap();
    assert_eq!(text(v), "v");
    // Not allowed inside: SET (the command), a key it may not touch (even one it did not
    // declare), FLUSHALL.
    let e = err(
        &mut u,
        &["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "s:1"],
    );
    assert!(e.contains("NOPERM") && e.contains("'set'"), "{e}");
    let entries = log(&mut admin);
    assert_eq!(
        (
            entries[0]["reason"].as_str(),
            entries[0]["context"].as_str()
        ),
        ("command", "lua")
    );
    assert_eq!(
        (
            entries[0]["object"].as_str(),
            entries[0]["username"].as_str()
        ),
        ("set", "lua")
    );
    let e = err(&mut u, &["EVAL", "return redis.call('get', 'other')", "0"]);
    assert!(e.contains("NOPERM No permissions to access a key"), "{e}");
    let e = err(&mut u, &["EVAL", "return redis.call('flushall')", "0"]);
    assert!(e.contains("NOPERM"), "{e}");
    assert_eq!(text(q(&mut admin, &["GET", "s:1"]).unwrap()), "v");
    assert_eq!(q(&mut admin, &["DBSIZE"]).unwrap(), Value::Int(1));
    // pcall sees the refusal as an error reply.
    let v = q(
        &mut u,
        &[
            "EVAL",
            "local r = redis.pcall('set', KEYS[1], 'x'); return r['err']",
            "1",
            "s:1",
        ],
    )
    .unwrap();
    assert!(text(v).starts_with("NOPERM"));
    // Keys on both threads: a transaction, which cannot check yet: refused, nothing ran.
    let (a, b) = keys_on_two_threads(&mut admin);
    let e = err(
        &mut u,
        &["EVAL", "return redis.call('get', KEYS[1])", "2", &a, &b],
    );
    assert!(e.contains("NOPERM") && e.contains("span vShards"), "{e}");
    // The default user (allowed everything) runs the same script.
    let v = q(
        &mut admin,
        &["EVAL", "return redis.call('get', KEYS[1])", "2", &a, &b],
    );
    assert!(v.is_ok(), "{v:?}");
    // SORT BY/GET patterns need access to every key.
    ok(&mut admin, &["ACL", "SETUSER", "lua", "+sort", "+rpush"]);
    ok(&mut admin, &["RPUSH", "s:list", "1", "2"]);
    let e = err(&mut u, &["SORT", "s:list", "BY", "w_*"]);
    assert_eq!(
        e,
        "ERR BY option of SORT denied due to insufficient ACL permissions."
    );
    assert!(q(&mut u, &["SORT", "s:list"]).is_ok());
}

/// Two keys `s:<n>` whose slots belong to different shard threads of a two-thread node.
fn keys_on_two_threads(c: &mut Connection) -> (String, String) {
    let first = "s:0".to_string();
    for i in 1..1000 {
        let k = format!("s:{i}");
        let layout = shardline_shards::slot::VShardLayout::new(256).unwrap();
        let thread = |k: &str| {
            let v = layout.vshard_of(shardline_shards::slot::key_slot(k.as_bytes()));
            layout.owner_thread(v, 2)
        };
        if thread(&first) != thread(&k) {
            let _ = c;
            return (first, k);
        }
    }
    unreachable!("two threads")
}

#[test]
fn a_subscriber_no_longer_allowed_its_channel_is_disconnected() {
    let s = Server::start("0", &[]);
    let mut admin = s.client();
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "sub",
            "on",
            ">spw",
            "resetchannels",
            "&news.*",
            "+@all",
        ],
    );
    let mut c = conn_as(&s, "sub", "spw").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut ps = c.as_pubsub();
    ps.subscribe("news.a").unwrap();
    ok(&mut admin, &["PUBLISH", "news.a", "one"]);
    let m = ps.get_message().unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "one");
    ok(
        &mut admin,
        &["ACL", "SETUSER", "sub", "resetchannels", "&other"],
    );
    ok(&mut admin, &["PUBLISH", "news.a", "two"]);
    // The connection closes instead of delivering it.
    match ps.get_message() {
        Ok(m) => panic!(
            "delivered {:?} after the permission went",
            m.get_payload::<String>()
        ),
        Err(e) => assert!(e.is_io_error() || e.is_connection_dropped(), "{e:?}"),
    }
}

/// A blocked command is checked again when a write wakes it (as Redis 7.2 does): a user that
/// lost the command meanwhile is answered NOPERM and nothing is popped.
#[test]
fn a_blocked_command_is_checked_again_when_it_is_woken() {
    let s = Server::start("0", &[]);
    let mut admin = s.client();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "w", "on", ">wpw", "~q*", "+blpop", "+ping",
        ],
    );
    let port = s.port;
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://w:wpw@127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        q(&mut c, &["BLPOP", "q", "10"]).map_err(msg)
    });
    // Parked (CLIENT LIST shows it waiting on BLPOP).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !text(q(&mut admin, &["CLIENT", "LIST"]).unwrap()).contains("cmd=blpop") {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    ok(&mut admin, &["ACL", "SETUSER", "w", "-blpop"]);
    ok(&mut admin, &["RPUSH", "q", "x"]);
    let answer = waiter.join().unwrap();
    assert_eq!(
        answer,
        Err("NOPERM User w has no permissions to run the 'blpop' command".to_string())
    );
    assert_eq!(
        q(&mut admin, &["LLEN", "q"]).unwrap(),
        Value::Int(1),
        "nothing popped"
    );
}
