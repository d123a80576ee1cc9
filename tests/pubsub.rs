//! Pub/sub end to end over raw RESP connections (so the exact pushes are visible): messages reach
//! subscribers on every shard thread, patterns match, RESP2 subscribed mode refuses other
//! commands, RESP3 gets push frames, and PUBSUB introspection adds up over threads.

mod common;

use common::{Server, exchange};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn send(s: &mut TcpStream, cmd: &str) {
    let mut buf = Vec::new();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    shardline_transport::resp::encode_command(&words, &mut buf);
    s.write_all(&buf).unwrap();
}

/// Reads until `want` bytes arrived or a second passed.
fn read_for(s: &mut TcpStream, want: usize) -> String {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got.len() < want && std::time::Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn messages_reach_subscribers_on_every_thread() {
    let s = Server::start("0-1", &[]);
    // Several subscriber connections: the kernel spreads them over both shard threads.
    let mut subs: Vec<TcpStream> = (0..6).map(|_| s.raw()).collect();
    for sub in subs.iter_mut() {
        send(sub, "SUBSCRIBE news");
        let confirm = read_for(sub, 33);
        assert_eq!(confirm, "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    }
    let mut publisher = s.raw();
    let (reply, _) = exchange(
        &mut publisher,
        b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
        Duration::from_millis(300),
    );
    assert_eq!(String::from_utf8_lossy(&reply), ":6\r\n");
    for sub in subs.iter_mut() {
        let msg = read_for(sub, 40);
        assert_eq!(msg, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    }
    let (reply, _) = exchange(
        &mut publisher,
        b"*3\r\n$7\r\nPUBLISH\r\n$6\r\nnobody\r\n$1\r\nx\r\n",
        Duration::from_millis(300),
    );
    assert_eq!(String::from_utf8_lossy(&reply), ":0\r\n");
}

#[test]
fn patterns_subscribed_mode_and_introspection() {
    let s = Server::start("0-1", &[]);
    let mut sub = s.raw();
    send(&mut sub, "PSUBSCRIBE news.*");
    assert_eq!(
        read_for(&mut sub, 38),
        "*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:1\r\n"
    );
    send(&mut sub, "SUBSCRIBE a b");
    let confirms = read_for(&mut sub, 58);
    assert!(confirms.ends_with("$1\r\nb\r\n:3\r\n"), "{confirms}");
    send(&mut sub, "GET k");
    assert!(read_for(&mut sub, 10).starts_with("-ERR Can't execute 'get': only (P|S)SUBSCRIBE"));
    send(&mut sub, "PING");
    assert_eq!(read_for(&mut sub, 20), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    let mut c = s.raw();
    send(&mut c, "PUBLISH news.tech hi");
    assert_eq!(read_for(&mut c, 4), ":1\r\n");
    assert_eq!(
        read_for(&mut sub, 50),
        "*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"
    );
    send(&mut c, "PUBSUB NUMSUB a zz");
    assert_eq!(
        read_for(&mut c, 30),
        "*4\r\n$1\r\na\r\n:1\r\n$2\r\nzz\r\n:0\r\n"
    );
    send(&mut c, "INFO stats");
    let info = read_for(&mut c, 400);
    assert!(
        info.contains("pubsub_channels:2") && info.contains("pubsub_patterns:1"),
        "{info}"
    );
    send(&mut c, "PUBSUB NUMPAT");
    assert_eq!(read_for(&mut c, 4), ":1\r\n");
    send(&mut c, "PUBSUB CHANNELS");
    let channels = read_for(&mut c, 18);
    assert!(
        channels.starts_with("*2\r\n")
            && channels.contains("$1\r\na\r\n")
            && channels.contains("$1\r\nb\r\n"),
        "{channels}"
    );
    send(&mut sub, "UNSUBSCRIBE");
    let un = read_for(&mut sub, 60);
    assert!(un.contains("unsubscribe") && un.ends_with(":1\r\n"), "{un}");
    send(&mut sub, "PUNSUBSCRIBE");
    assert!(read_for(&mut sub, 40).ends_with(":0\r\n"));
    send(&mut sub, "GET k");
    assert_eq!(
        read_for(&mut sub, 5),
        "$-1\r\n",
        "out of subscribed mode, commands work again"
    );
}

#[test]
fn resp3_subscribers_get_push_frames_and_keep_full_command_access() {
    let s = Server::start("0-1", &[]);
    let mut sub = s.raw();
    send(&mut sub, "HELLO 3");
    let _ = read_for(&mut sub, 60);
    send(&mut sub, "SUBSCRIBE ch");
    assert_eq!(
        read_for(&mut sub, 31),
        ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    send(&mut sub, "SET k v");
    assert_eq!(read_for(&mut sub, 5), "+OK\r\n");
    let mut c = s.raw();
    send(&mut c, "PUBLISH ch m");
    assert_eq!(read_for(&mut c, 4), ":1\r\n");
    assert_eq!(
        read_for(&mut sub, 34),
        ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n"
    );
}

#[test]
fn keyspace_notifications_reach_subscribers_on_every_thread() {
    let s = Server::start("0-1", &[]);
    let mut subs: Vec<TcpStream> = (0..4).map(|_| s.raw()).collect();
    for sub in subs.iter_mut() {
        send(sub, "PSUBSCRIBE __key*@0__:*");
        read_for(sub, 44);
    }
    let mut c = s.raw();
    send(&mut c, "CONFIG SET notify-keyspace-events KEA");
    assert_eq!(read_for(&mut c, 5), "+OK\r\n");
    // foo and bar live on different shard threads.
    for (cmd, key, event) in [
        ("SET foo 1", "foo", "set"),
        ("LPUSH bar x", "bar", "lpush"),
        ("DEL foo", "foo", "del"),
    ] {
        send(&mut c, cmd);
        read_for(&mut c, 4);
        for sub in subs.iter_mut() {
            let space = format!("__keyspace@0__:{key}");
            let evch = format!("__keyevent@0__:{event}");
            let want = format!(
                "*4\r\n$8\r\npmessage\r\n$12\r\n__key*@0__:*\r\n${}\r\n{space}\r\n${}\r\n{event}\r\n\
                 *4\r\n$8\r\npmessage\r\n$12\r\n__key*@0__:*\r\n${}\r\n{evch}\r\n${}\r\n{key}\r\n",
                space.len(),
                event.len(),
                evch.len(),
                key.len()
            );
            assert_eq!(read_for(sub, want.len()), want, "{cmd}");
        }
    }
    // Turned off, nothing more is published.
    let mut off = Vec::new();
    shardline_transport::resp::encode_command(
        &["CONFIG", "SET", "notify-keyspace-events", ""],
        &mut off,
    );
    c.write_all(&off).unwrap();
    assert_eq!(read_for(&mut c, 5), "+OK\r\n");
    send(&mut c, "CONFIG GET notify-keyspace-events");
    assert!(read_for(&mut c, 44).contains("notify-keyspace-events"));
    send(&mut c, "SET foo 2");
    read_for(&mut c, 5);
    assert_eq!(read_for(&mut subs[0], 1), "");
}
