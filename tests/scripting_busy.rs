//! Busy scripts end to end (issue 18, step 2; `docs/design/scripting.md`, "Busy scripts"):
//! a script that loops without writing is stopped by the node, past `busy-reply-threshold`
//! the other threads answer `-BUSY` for jobs bound to the busy one, the busy thread's own
//! clients are answered by the script's hook (`-BUSY`, SCRIPT KILL, FUNCTION KILL, FUNCTION
//! STATS, SHUTDOWN NOSAVE, NOAUTH), and nothing a stopped script wrote is kept.

mod common;

use common::Server;
use std::time::Duration;

/// A script that loops without writing is stopped after `script-stop-ms` instead of holding
/// its shard thread forever (its own thread's clients cannot reach SCRIPT KILL while it runs),
/// and the node serves again.
#[test]
fn a_looping_script_does_not_hold_the_node() {
    let s = Server::start("0", &["--script-stop-ms", "3000"]);
    let mut c = s.client();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = std::time::Instant::now();
    let stopped: redis::RedisResult<()> = redis::cmd("EVAL")
        .arg("while true do end")
        .arg(0)
        .query(&mut c);
    assert!(
        format!("{stopped:?}").contains("was stopped"),
        "{stopped:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the limit"
    );
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let mut other = s.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut other)
        .unwrap();
}

/// Raw RESP on a socket: the command's bytes.
fn resp(argv: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", argv.len()).into_bytes();
    for a in argv {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// A raw connection to `port` with a 10 s read timeout, authenticated with `auth` (AUTH's
/// arguments) unless empty.
fn connect(port: u16, auth: &[&str]) -> std::net::TcpStream {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if !auth.is_empty() {
        let mut words = vec!["AUTH"];
        words.extend_from_slice(auth);
        c.write_all(&resp(&words)).unwrap();
        assert_eq!(read_n(&mut c, 5), "+OK\r\n");
    }
    c
}

/// Reads from `s` until `want` bytes arrived (or the timeout hits: what came).
fn read_n(s: &mut std::net::TcpStream, want: usize) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads from `s` until what came ends with `end` (or the timeout hits: what came).
fn read_until(s: &mut std::net::TcpStream, end: &str) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end.as_bytes()) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One shard thread: the clients of the busy script's own thread are answered while it runs
/// (the count hook serves them, `conn::busy`): `-BUSY` for every command, in order, a command
/// sent in two parts across the script's end answered after it, SCRIPT KILL from one of them
/// stops the script, FUNCTION STATS names a busy function and FUNCTION KILL stops it, and
/// with a password, a client that has not authenticated gets NOAUTH;
/// SHUTDOWN NOSAVE from one of them stops a script that wrote, and the node.
#[test]
fn a_busy_script_answers_its_own_threads_clients_and_takes_script_kill_from_them() {
    use std::io::Write;
    const BUSY: &str = "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";
    let s = Server::start(
        "0",
        &["--busy-reply-threshold", "100", "--requirepass", "pw"],
    );
    let connect = || connect(s.port, &["pw"]);
    let (mut r, mut partial, mut script) = (connect(), connect(), connect());
    let mut stranger = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
    // (Accepted and set up before the script holds the thread.)
    stranger.write_all(&resp(&["PING"])).unwrap();
    assert_eq!(read_n(&mut stranger, NOAUTH.len()), NOAUTH);
    script
        .write_all(&resp(&[
            "EVAL",
            "local i = 0 while true do i = i + 1 end",
            "0",
        ]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // Pipelined: each answered, in order.
    let mut two = resp(&["PING"]);
    two.extend(resp(&["GET", "k"]));
    r.write_all(&two).unwrap();
    assert_eq!(read_n(&mut r, 2 * BUSY.len()), format!("{BUSY}{BUSY}"));
    stranger.write_all(&resp(&["SCRIPT", "KILL"])).unwrap();
    assert_eq!(read_n(&mut stranger, NOAUTH.len()), NOAUTH);
    // Half a command now, the rest once the script has ended.
    let set = resp(&["SET", "k", "after"]);
    partial.write_all(&set[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    r.write_all(&resp(&["SCRIPT", "KILL"])).unwrap();
    assert_eq!(read_n(&mut r, 5), "+OK\r\n");
    let killed = read_n(&mut script, 20);
    assert!(
        killed.starts_with("-ERR Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    partial.write_all(&set[7..]).unwrap();
    assert_eq!(read_n(&mut partial, 5), "+OK\r\n");
    r.write_all(&resp(&["GET", "k"])).unwrap();
    assert_eq!(read_n(&mut r, 11), "$5\r\nafter\r\n");
    // A busy function: FUNCTION STATS names it (as Redis shows it), FUNCTION KILL stops it.
    let lib = "#!lua name=busylib\nredis.register_function{function_name='spin', callback=function(keys, args) while true do end end, flags={'no-writes'}}";
    r.write_all(&resp(&["FUNCTION", "LOAD", lib])).unwrap();
    assert_eq!(read_n(&mut r, 13), "$7\r\nbusylib\r\n");
    script
        .write_all(&resp(&["FCALL", "spin", "1", "k", "a1"]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    r.write_all(&resp(&["FUNCTION", "STATS"])).unwrap();
    let stats = read_until(&mut r, "$15\r\nfunctions_count\r\n:1\r\n");
    assert!(
        stats.starts_with("*4\r\n$14\r\nrunning_script\r\n*6\r\n$4\r\nname\r\n$4\r\nspin\r\n$7\r\ncommand\r\n*5\r\n$5\r\nfcall\r\n$4\r\nspin\r\n$1\r\n1\r\n$1\r\nk\r\n$2\r\na1\r\n$11\r\nduration_ms\r\n:"),
        "{stats}"
    );
    r.write_all(&resp(&["FUNCTION", "KILL"])).unwrap();
    assert_eq!(read_n(&mut r, 5), "+OK\r\n");
    let killed = read_n(&mut script, 20);
    assert!(killed.starts_with("-ERR Script killed by user"), "{killed}");
    // A script that wrote: SCRIPT KILL refuses; SHUTDOWN NOSAVE from the same thread ends it
    // and the node (what it wrote is not kept).
    script
        .write_all(&resp(&[
            "EVAL",
            "redis.call('set', KEYS[1], 'x') while true do end",
            "1",
            "k",
        ]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    r.write_all(&resp(&["SCRIPT", "KILL"])).unwrap();
    assert!(read_n(&mut r, 12).starts_with("-UNKILLABLE"));
    r.write_all(&resp(&["SHUTDOWN", "NOSAVE"])).unwrap();
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
    s.kill_and_restart();
    let mut c = s.client();
    let () = redis::cmd("AUTH").arg("pw").query(&mut c).unwrap();
    let kept: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(kept, "after", "nothing of the stopped script was kept");
}

/// Past `busy-reply-threshold` a script's thread is busy: a command for it from another
/// thread's connection is answered `-BUSY` at once, SCRIPT KILL (from there) stops a script
/// that has not written, answers `-UNKILLABLE` for one that has, and SHUTDOWN NOSAVE stops that
/// one too with nothing it wrote kept.
#[test]
fn a_busy_script_answers_busy_to_the_other_threads_and_script_kill_stops_it() {
    let mut s = Server::start("0-1", &["--busy-reply-threshold", "200"]);
    let spawn_script = |url: String, body: &'static str| {
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            redis::cmd("EVAL")
                .arg(body)
                .arg(1)
                .arg("busykey")
                .query::<()>(&mut c)
        })
    };
    // A connection of the other thread: the one whose GET of the key is answered -BUSY (one
    // the busy thread has not accepted yet waits for it instead).
    let other_thread = |s: &Server| {
        for _ in 0..24 {
            // (A connection the busy thread accepted is not even set up: a short timeout.)
            let Ok(mut c) = redis::Client::open(s.url())
                .unwrap()
                .get_connection_with_timeout(Duration::from_millis(300))
            else {
                continue;
            };
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let r: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg("busykey").query(&mut c);
            if let Err(e) = r
                && e.code() == Some("BUSY")
            {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return c;
            }
        }
        panic!("no connection answered -BUSY");
    };
    let looping = spawn_script(s.url(), "while true do end");
    std::thread::sleep(Duration::from_millis(600));
    let mut other = other_thread(&s);
    let () = redis::cmd("SCRIPT").arg("KILL").query(&mut other).unwrap();
    let killed = looping.join().unwrap();
    assert!(
        format!("{killed:?}").contains("Script killed by user"),
        "{killed:?}"
    );
    let none: Option<String> = redis::cmd("GET").arg("busykey").query(&mut other).unwrap();
    assert_eq!(none, None, "served again");
    let idle: redis::RedisResult<()> = redis::cmd("SCRIPT").arg("KILL").query(&mut other);
    assert!(
        format!("{idle:?}").to_uppercase().contains("NOTBUSY"),
        "{idle:?}"
    );
    // One that wrote cannot be killed; SHUTDOWN NOSAVE stops it and the node.
    let writer = spawn_script(
        s.url(),
        "redis.call('set', KEYS[1], 'half') while true do end",
    );
    std::thread::sleep(Duration::from_millis(600));
    let refused: redis::RedisResult<()> = redis::cmd("SCRIPT").arg("KILL").query(&mut other);
    assert!(
        format!("{refused:?}").to_uppercase().contains("UNKILLABLE"),
        "{refused:?}"
    );
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut other);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let stopped = writer.join().unwrap();
    assert!(stopped.is_err(), "{stopped:?}");
    s.kill_and_restart();
    let mut c = s.client();
    let kept: Option<String> = redis::cmd("GET").arg("busykey").query(&mut c).unwrap();
    assert_eq!(kept, None, "nothing of the stopped script was kept");
}

/// While a script holds the thread, its clients are still held to their ACL users: a user
/// without `@dangerous` may not SHUTDOWN or SCRIPT KILL (NOPERM), the default user may.
#[test]
fn a_busy_scripts_thread_checks_its_clients_acl_users() {
    use std::io::Write;
    let s = Server::start("0", &["--busy-reply-threshold", "100"]);
    let mut admin = connect(s.port, &[]);
    admin
        .write_all(&resp(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">apw",
            "~*",
            "+@all",
            "-@dangerous",
            "-script",
        ]))
        .unwrap();
    assert_eq!(read_n(&mut admin, 5), "+OK\r\n");
    let (mut app, mut script) = (connect(s.port, &["app", "apw"]), connect(s.port, &[]));
    script
        .write_all(&resp(&[
            "EVAL",
            "local i = 0 while true do i = i + 1 end",
            "0",
        ]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let refused = "-NOPERM User app has no permissions to run the 'shutdown' command\r\n";
    app.write_all(&resp(&["SHUTDOWN", "NOSAVE"])).unwrap();
    assert_eq!(read_n(&mut app, refused.len()), refused);
    let refused = "-NOPERM User app has no permissions to run the 'script|kill' command\r\n";
    app.write_all(&resp(&["SCRIPT", "KILL"])).unwrap();
    assert_eq!(read_n(&mut app, refused.len()), refused);
    admin.write_all(&resp(&["SCRIPT", "KILL"])).unwrap();
    assert_eq!(read_n(&mut admin, 5), "+OK\r\n");
    let killed = read_n(&mut script, 20);
    assert!(killed.starts_with("-ERR Script killed"), "{killed}");
    admin.write_all(&resp(&["PING"])).unwrap();
    assert_eq!(read_n(&mut admin, 7), "+PONG\r\n");
}
