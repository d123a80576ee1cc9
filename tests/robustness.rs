//! Bad input and operations: garbage, huge lengths, clients that never read, bad configuration,
//! signals. The server must answer with a clear error (or close a stream it cannot resynchronise),
//! stay up, and keep serving everyone else.

mod common;

use common::{Server, exchange};
use redis::Commands;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

fn still_serves(s: &Server) {
    let mut c = s.client();
    let _: () = c.set("alive", "yes").unwrap();
    assert_eq!(c.get::<_, String>("alive").unwrap(), "yes");
}

#[test]
fn garbage_and_malformed_frames_get_an_error_then_a_close() {
    let s = Server::start("0-1", &[]);
    let cases: &[(&[u8], &str)] = &[
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$99999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n:1\r\n",
            "-ERR Protocol error: expected ':', got ':'\r\n",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n$1\r\nabc\r\n",
            "-ERR Protocol error: bulk string not terminated by CRLF\r\n",
        ),
        (
            b"SET \"unbalanced\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (bytes, want) in cases {
        let mut raw = s.raw();
        let (got, closed) = exchange(&mut raw, bytes, Duration::from_secs(3));
        let want = want.replace("expected ':'", "expected '$'");
        assert_eq!(
            String::from_utf8_lossy(&got),
            want,
            "for {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(closed, "connection must close after a protocol error");
    }
    // Random bytes: any reply is an error or a close; never a crash.
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..50 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut raw = s.raw();
        let _ = exchange(&mut raw, &bytes, Duration::from_millis(200));
    }
    still_serves(&s);
}

#[test]
fn an_unterminated_frame_waits_and_a_dropped_client_is_cleaned_up() {
    let s = Server::start("0-1", &[]);
    let mut raw = s.raw();
    let (got, closed) = exchange(
        &mut raw,
        b"*2\r\n$3\r\nGET\r\n$10\r\nabc",
        Duration::from_millis(300),
    );
    assert!(
        got.is_empty() && !closed,
        "a partial frame is not an error: the server waits"
    );
    // Completing the frame gets the reply.
    let (got, _) = exchange(&mut raw, b"defghij\r\n", Duration::from_millis(300));
    assert_eq!(got, b"$-1\r\n");
    drop(raw);
    let mut c = s.client();
    std::thread::sleep(Duration::from_millis(100));
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
}

#[test]
fn a_client_that_never_reads_cannot_stall_others() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let big = "x".repeat(512 * 1024);
    let _: () = c.set("big", &big).unwrap();
    let _: () = c.set("{big}2", &big).unwrap();
    // Pipeline thousands of GETs of a 512 KiB value and never read a byte of the replies.
    let mut hog = s.raw();
    hog.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut req = Vec::new();
    for i in 0..2000 {
        let key = if i % 2 == 0 { "big" } else { "{big}2" };
        req.extend_from_slice(
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{}\r\n", key.len(), key).as_bytes(),
        );
    }
    let _ = hog.write_all(&req); // may block once the server stops reading: that is the point
    for i in 0..100 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
        assert_eq!(c.get::<_, i64>(format!("k{i}")).unwrap(), i);
    }
    // The server buffers a bounded amount for the hog: it stops reading instead of queueing 1 GB.
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        used < 256 << 20,
        "used_memory {used} grew with the unread replies"
    );
    drop(hog);
    still_serves(&s);
}

#[test]
fn query_buffer_limit_closes_a_client_that_declares_too_much() {
    let s = Server::start("0", &["--client-query-buffer-limit", "1mb"]);
    let mut raw = s.raw();
    let (got, closed) = exchange(
        &mut raw,
        b"*2\r\n$3\r\nGET\r\n$100000000\r\nab",
        Duration::from_secs(3),
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: query buffer limit exceeded\r\n"
    );
    assert!(closed);
    still_serves(&s);
}

#[test]
fn redis_cli_talks_to_the_server() {
    let s = Server::start("0-1", &[]);
    let out = Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "PING"])
        .output()
        .expect(
            "redis-cli is needed for this test: apt-get install redis-tools (.ci/run installs it)",
        );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    let out = Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "SET", "a b", "c"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let out = Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "GET", "a b"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c");
}

#[test]
fn sigterm_exits_zero_and_shutdown_command_stops_the_server() {
    let mut s = Server::start("0-1", &[]);
    let mut c = s.client();
    let _: () = c.set("k", "v").unwrap();
    let st = s.terminate();
    assert!(st.success(), "exit status {st:?}");
    let mut s = Server::start("0", &[]);
    let mut raw = s.raw();
    let _ = exchange(&mut raw, b"SHUTDOWN\r\n", Duration::from_secs(3));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SHUTDOWN did not stop the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configuration_is_refused_with_the_key_the_value_and_the_reason() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shardline"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--port", "99999"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'99999'") && err.contains("port") && err.contains("between"),
        "{err}"
    );
    let out = run(&["--bind", "0.0.0.0", "--port", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protected mode"));
    let out = run(&["--print-config", "--port", "7777"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("port = \"7777\""));
    // The vShard count is fixed when the data directory is created.
    let dir = std::env::temp_dir().join(format!("shardline-vs-{}", std::process::id()));
    let s = Server::start(
        "0",
        &["--data-dir", dir.to_str().unwrap(), "--vshards", "64"],
    );
    drop(s);
    let out = run(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--vshards",
        "128",
        "--port",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vshards = 64"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_server_cannot_take_the_same_port_or_data_directory() {
    let s = Server::start("0", &[]);
    let other_dir = std::env::temp_dir().join(format!("shardline-second-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "--port",
            &s.port.to_string(),
            "--cores",
            "0",
            "--data-dir",
            other_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "--port",
            "1",
            "--cores",
            "0",
            "--data-dir",
            s.dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&other_dir);
    still_serves(&s);
}
