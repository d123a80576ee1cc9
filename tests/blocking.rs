//! Blocking commands end to end: a client parked on one shard thread is woken by a push from any
//! connection, in arrival order, with timeouts, and no element is ever lost to a client that timed
//! out or hung up.

mod common;

use common::Server;
use redis::{Commands, Value};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn blpop_in_thread(url: String, key: &'static str, timeout: f64) -> mpsc::Receiver<Value> {
    let mut cmd = redis::cmd("BLPOP");
    cmd.arg(key).arg(timeout);
    in_thread(url, cmd)
}

/// Runs `cmd` on a connection of its own in a thread; its reply comes on the channel.
fn in_thread(url: String, cmd: redis::Cmd) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _ = tx.send(cmd.query::<Value>(&mut c).unwrap());
    });
    rx
}

fn popped(key: &str, v: &str) -> Value {
    Value::Array(vec![
        Value::BulkString(key.as_bytes().to_vec()),
        Value::BulkString(v.as_bytes().to_vec()),
    ])
}

#[test]
fn a_push_from_another_connection_wakes_the_blocked_client() {
    let s = Server::start("0-1", &[]);
    let mut pusher = s.client();
    // foo is owned by shard thread 0, bar by thread 1; the blocked connections land on either.
    for key in ["foo", "bar", "foo", "bar"] {
        let rx = blpop_in_thread(s.url(), key, 0.0);
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "BLPOP on an empty list must block");
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut pusher)
            .unwrap();
        assert!(info.contains("blocked_clients:1"), "{info}");
        let _: () = pusher.rpush(key, "v").unwrap();
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("woken by the push");
        assert_eq!(got, popped(key, "v"));
    }
    assert_eq!(pusher.exists::<_, i64>(&["foo", "bar"]).unwrap(), 0);
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let s = Server::start("0-1", &[]);
    let first = blpop_in_thread(s.url(), "q", 0.0);
    std::thread::sleep(Duration::from_millis(100));
    let second = blpop_in_thread(s.url(), "q", 0.0);
    std::thread::sleep(Duration::from_millis(100));
    let mut c = s.client();
    let _: () = c.rpush("q", "1").unwrap();
    assert_eq!(
        first.recv_timeout(Duration::from_secs(5)).unwrap(),
        popped("q", "1")
    );
    assert!(second.recv_timeout(Duration::from_millis(200)).is_err());
    let _: () = c.rpush("q", "2").unwrap();
    assert_eq!(
        second.recv_timeout(Duration::from_secs(5)).unwrap(),
        popped("q", "2")
    );
}

#[test]
fn timeouts_answer_nil_and_lose_nothing() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let start = Instant::now();
    let v: Value = redis::cmd("BLPOP")
        .arg("empty")
        .arg(0.2)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Nil);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "returned before its timeout"
    );
    // Many short waits racing with pushes: every element is either received or still queued.
    let rxs: Vec<_> = (0..20)
        .map(|_| blpop_in_thread(s.url(), "race", 0.05))
        .collect();
    let mut pushed = 0;
    for i in 0..20 {
        let _: () = c.rpush("race", i).unwrap();
        pushed += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    let received = rxs
        .into_iter()
        .filter(|rx| rx.recv_timeout(Duration::from_secs(5)).unwrap() != Value::Nil)
        .count();
    let left: i64 = c.llen("race").unwrap();
    assert_eq!(
        received as i64 + left,
        pushed,
        "an element was lost or duplicated"
    );
}

#[test]
fn a_client_that_hangs_up_while_blocked_does_not_take_an_element() {
    let s = Server::start("0-1", &[]);
    let mut raw = s.raw();
    use std::io::Write;
    raw.write_all(b"*3\r\n$5\r\nBLPOP\r\n$4\r\ngone\r\n$1\r\n0\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = s.client();
    let _: () = c.rpush("gone", "kept").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let left: Vec<String> = c.lrange("gone", 0, -1).unwrap();
    assert_eq!(left, vec!["kept"]);
}

#[test]
fn blmove_and_bzpopmin_wake_too_and_multi_does_not_block() {
    let s = Server::start("0-1", &[]);
    let url = s.url();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: Value = redis::cmd("BLMOVE")
            .arg("src")
            .arg("{src}dst")
            .arg("LEFT")
            .arg("RIGHT")
            .arg(0)
            .query(&mut c)
            .unwrap();
        let _ = tx.send(v);
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut c = s.client();
    let _: () = c.rpush("src", "x").unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Value::BulkString(b"x".to_vec())
    );
    let moved: Vec<String> = c.lrange("{src}dst", 0, -1).unwrap();
    assert_eq!(moved, vec!["x"]);
    let mut bzpopmin = redis::cmd("BZPOPMIN");
    bzpopmin.arg("z").arg(0);
    let rx = in_thread(s.url(), bzpopmin);
    std::thread::sleep(Duration::from_millis(100));
    let _: () = c.zadd("z", "m", 5).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"z".to_vec()),
            Value::BulkString(b"m".to_vec()),
            Value::BulkString(b"5".to_vec())
        ])
    );
    // Inside MULTI a blocking command answers at once.
    let r: (Value,) = redis::pipe()
        .atomic()
        .cmd("BLPOP")
        .arg("nothing")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(r.0, Value::Nil);
    // Keys on two shard threads (foo and bar): it waits on both, as on one Redis.
    let none: Value = redis::cmd("BLPOP")
        .arg("foo")
        .arg("bar")
        .arg(0.1)
        .query(&mut c)
        .unwrap();
    assert_eq!(none, Value::Nil);
    // Regression (issue 15): a timeout is a null array for BLMOVE and BRPOPLPUSH too, as in
    // Redis; inside MULTI they answer as LMOVE does (a null bulk).
    let mut raw = s.raw();
    let (got, _) = common::exchange(
        &mut raw,
        b"BLMOVE none {none}d LEFT RIGHT 0.05\r\nBRPOPLPUSH none {none}d 0.05\r\n\
          MULTI\r\nBLMOVE none {none}d LEFT RIGHT 0\r\nEXEC\r\n",
        Duration::from_millis(500),
    );
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "*-1\r\n*-1\r\n+OK\r\n+QUEUED\r\n*1\r\n$-1\r\n"
    );
}

/// Regression (issue 15): a waited key that becomes another type, or that one transaction fills
/// and empties, keeps the client waiting (it answered WRONGTYPE); a blocked XREADGROUP is told
/// when its stream is flushed or its group destroyed, as Redis 7.0 does (it stayed blocked).
#[test]
fn waiters_see_type_changes_deletions_and_flushes_as_redis_does() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let url = s.url();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: redis::RedisResult<Value> = redis::cmd("BZPOPMIN").arg("z").arg(0).query(&mut c);
        let _ = tx.send(v);
    });
    std::thread::sleep(Duration::from_millis(100));
    let _: () = c.set("z", "text").unwrap();
    let _: () = redis::pipe()
        .atomic()
        .del("z")
        .zadd("z", "m", 1)
        .del("z")
        .set("z", "text")
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "still waiting");
    let _: () = redis::pipe()
        .atomic()
        .del("z")
        .zadd("z", "m", 1)
        .query(&mut c)
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"z".to_vec()),
            Value::BulkString(b"m".to_vec()),
            Value::BulkString(b"1".to_vec())
        ])
    );
    for (end, code) in [("FLUSHALL", "UNBLOCKED"), ("XGROUP", "NOGROUP")] {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut c)
            .unwrap();
        let url = s.url();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let v: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("BLOCK")
                .arg(0)
                .arg("STREAMS")
                .arg("s")
                .arg(">")
                .query(&mut c);
            let _ = tx.send(v);
        });
        std::thread::sleep(Duration::from_millis(100));
        if end == "FLUSHALL" {
            let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        } else {
            let _: () = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg("s")
                .arg("g")
                .query(&mut c)
                .unwrap();
        }
        let e = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code(), Some(code), "{end}: {e:?}");
    }
}

/// On a node alone, a blocking command whose keys are in several vShards of one shard thread
/// waits on all of them as on a single Redis (one shard thread here: every vShard is its);
/// what it pops or moves is logged, so a restart after SIGKILL shows the same lists.
#[test]
fn a_blocking_command_across_vshards_of_one_thread_waits_and_its_pops_survive_a_restart() {
    let mut s = Server::start("0", &[]);
    let mut c = s.client();
    // "a" and "b" hash to different slots, so to different vShards.
    let slot = |k: &str| {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(k)
            .query::<i64>(&mut s.client())
    };
    assert_ne!(slot("a").unwrap() / 64, slot("b").unwrap() / 64);
    // Served at once from the second key.
    let _: () = c.rpush("b", &["x", "y"]).unwrap();
    let got: Value = redis::cmd("BLPOP")
        .arg("a")
        .arg("b")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(got, popped("b", "x"));
    // Parked on both, woken by a push to the first.
    let (tx, rx) = mpsc::channel();
    let url = s.url();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: Value = redis::cmd("BLPOP")
            .arg("a")
            .arg("c")
            .arg(5)
            .query(&mut c)
            .unwrap();
        let _ = tx.send(v);
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "BLPOP on empty lists must block");
    let _: () = c.rpush("a", &["1", "2"]).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("woken");
    assert_eq!(got, popped("a", "1"));
    // BLMOVE across vShards moves the element; a timeout answers nil and moves nothing.
    let moved: String = redis::cmd("BLMOVE")
        .arg("a")
        .arg("dst")
        .arg("LEFT")
        .arg("RIGHT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "2");
    let none: Value = redis::cmd("BLPOP")
        .arg("a")
        .arg("c")
        .arg(0.1)
        .query(&mut c)
        .unwrap();
    assert_eq!(none, Value::Nil);
    drop(c);
    s.kill_and_restart();
    let mut c = s.client();
    assert_eq!(c.lrange::<_, Vec<String>>("b", 0, -1).unwrap(), vec!["y"]);
    assert!(!c.exists::<_, bool>("a").unwrap(), "a was emptied");
    assert_eq!(c.lrange::<_, Vec<String>>("dst", 0, -1).unwrap(), vec!["2"]);
}

/// Blocking commands whose keys are on several shard threads (issue 17): each try is a
/// Calvin transaction, and a stand-in on each participant wakes the client when one of its
/// keys is written. Woken by a push to either thread's key, BLMOVE across threads, a timeout
/// answers nil; six consumers on four lists of two threads take 400 pushed elements, each
/// exactly once.
#[test]
fn blocking_commands_across_shard_threads_wait_on_every_key_and_pop_each_element_once() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    // "foo" and "bar" are owned by different shard threads.
    for (key, value) in [("foo", "1"), ("bar", "2")] {
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("foo").arg("bar").arg(5);
        let rx = in_thread(s.url(), blpop);
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "BLPOP on empty lists must block");
        let info: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
        assert!(info.contains("blocked_clients:1\r\n"), "{info}");
        let _: () = c.rpush(key, value).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(4)).expect("woken");
        assert_eq!(got, popped(key, value));
    }
    let _: () = c.rpush("foo", &["x", "y"]).unwrap();
    let moved: String = redis::cmd("BLMOVE")
        .arg("foo")
        .arg("bar")
        .arg("LEFT")
        .arg("RIGHT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "x");
    assert_eq!(c.lrange::<_, Vec<String>>("bar", 0, -1).unwrap(), vec!["x"]);
    let t0 = std::time::Instant::now();
    let none: Value = redis::cmd("BLPOP")
        .arg("nothing")
        .arg("bar2")
        .arg(0.3)
        .query(&mut c)
        .unwrap();
    assert_eq!(none, Value::Nil);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    // A queue over four lists of both threads.
    let lists = ["q:a", "q:b", "q:qq", "q:zz"];
    let (tx, rx) = mpsc::channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumers: Vec<_> = (0..6)
        .map(|_| {
            let (url, tx, stop) = (s.url(), tx.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: Option<(String, String)> = redis::cmd("BLPOP")
                        .arg(&lists[..])
                        .arg(0.5)
                        .query(&mut c)
                        .unwrap();
                    if let Some((_, item)) = v {
                        let _ = tx.send(item);
                    }
                }
            })
        })
        .collect();
    for i in 0..400 {
        let _: () = c.rpush(lists[i % 4], i).unwrap();
    }
    let mut got: Vec<i64> = (0..400)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in consumers {
        t.join().unwrap();
    }
    got.sort_unstable();
    assert_eq!(got, (0..400).collect::<Vec<i64>>(), "each element once");
    assert!(rx.try_recv().is_err(), "nothing more");
}
