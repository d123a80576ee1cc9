//! Blocking commands on a replicated cluster of real processes (docs/design/commands.md "Blocking
//! commands", step 5): they wait on the slot's leader and pop through the log, so every replica
//! pops the same element; racing timeouts lose nothing; a leader cut off from its quorum sends
//! its waiters elsewhere.

mod common;

use common::cluster::TestCluster;
use redis::Commands;
use std::time::{Duration, Instant};

/// The tests here run one at a time: each counts its waiters on one leader and expects it to
/// keep leading, which three debug-built clusters at once on 2 cores did not always allow (an
/// election under the load answered a waiter `-TRYAGAIN`; seen in sessions 24 and 25).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to node `i` whose reads wait up to 20 s (blocking commands).
fn conn(c: &TestCluster, i: usize) -> redis::Connection {
    let n = redis::Client::open(c.url(i))
        .unwrap()
        .get_connection()
        .unwrap();
    n.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    n
}

fn blocked_clients(c: &TestCluster, i: usize) -> u64 {
    let info = c.info_section(i, "clients").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until node `i` has `n` blocked clients (so a test orders waiters and writes).
fn wait_blocked(c: &TestCluster, i: usize, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked_clients(c, i) != n {
        assert!(
            Instant::now() < deadline,
            "node {i}: {} blocked clients, expected {n}",
            blocked_clients(c, i)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Returns once the tries of the blocking commands waiting on `key`'s vShard (node `i` leads it)
/// are applied, so they are parked: a write to the same vShard acknowledged after them (the log
/// applies in order).
fn settle(c: &TestCluster, i: usize, key: &str) {
    let mut n = conn(c, i);
    let _: () = n.set(format!("{{{key}}}:settle"), 1).unwrap();
}

/// Waits until every node's replica of `key` (READONLY) holds `want`.
fn replicas_hold(c: &TestCluster, key: &str, want: &[&str]) {
    for i in 0..c.ports.len() {
        let mut n = conn(c, i);
        let _: () = redis::cmd("READONLY").query(&mut n).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<String> = n.lrange(key, 0, -1).unwrap();
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} holds {got:?} at {key}, the leader {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Set when a waiter of `waiting_scenario` was answered `-TRYAGAIN` or `-MOVED`: its slot's
/// leadership moved mid-test (an election on a loaded machine), which this test is not about.
static LEADERSHIP_MOVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A waiter's answer; a redirect (the leadership moved) is noted for the retry below.
fn steady<T>(r: redis::RedisResult<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if matches!(e.code(), Some("TRYAGAIN") | Some("MOVED")) => {
            LEADERSHIP_MOVED.store(true, std::sync::atomic::Ordering::SeqCst);
            panic!("the slot's leadership moved mid-test: {e}")
        }
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn blocking_pops_wait_on_the_leader_in_arrival_order_and_pop_the_same_element_everywhere() {
    let _one = serial();
    // Run again on a fresh cluster if an election moved the waited slot's leader mid-test
    // (seen in sessions 24 and 25 under the full suite): the waiters are then redirected,
    // which `a_leader_cut_off_from_its_quorum_redirects_its_waiters` covers; any other
    // failure fails the test.
    for attempt in 1..=3 {
        LEADERSHIP_MOVED.store(false, std::sync::atomic::Ordering::SeqCst);
        match std::panic::catch_unwind(waiting_scenario) {
            Ok(()) => return,
            Err(_) if attempt < 3 && LEADERSHIP_MOVED.load(std::sync::atomic::Ordering::SeqCst) => {
                eprintln!(
                    "attempt {attempt}: the leadership moved mid-test; again on a fresh cluster"
                )
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

fn waiting_scenario() {
    // About waiting, not failure detection: a longer node timeout keeps a debug build on a
    // loaded 2-core machine from electing a new leader mid-test (a waiter is then redirected,
    // which `a_leader_cut_off_from_its_quorum_redirects_its_waiters` covers).
    let c = TestCluster::start(3, false, &["--cluster-node-timeout-ms", "5000"]);
    let k = c.key_led_by(0);
    let dst = format!("{{{k}}}:dst");
    let stream = format!("{{{k}}}:stream");
    let mut writer = c.client().get_connection().unwrap();

    // Two waiters, in order; one push of two elements serves both, first come first served.
    let first = {
        let (mut w, k) = (conn(&c, 0), k.clone());
        std::thread::spawn(move || -> (String, String) { steady(w.blpop(&k, 10.0)) })
    };
    wait_blocked(&c, 0, 1);
    let second = {
        let (mut w, k) = (conn(&c, 0), k.clone());
        std::thread::spawn(move || -> (String, String) { steady(w.blpop(&k, 10.0)) })
    };
    wait_blocked(&c, 0, 2);
    let _: () = writer.rpush(&k, &["a", "b", "c"]).unwrap();
    assert_eq!(first.join().unwrap(), (k.clone(), "a".to_string()));
    assert_eq!(second.join().unwrap(), (k.clone(), "b".to_string()));
    wait_blocked(&c, 0, 0);
    // Every replica popped the same two.
    replicas_hold(&c, &k, &["c"]);

    // A blocking move waits too, and moves on every replica.
    let mover = {
        let (mut w, dst) = (conn(&c, 0), dst.clone());
        let src = format!("{{{k}}}:src");
        std::thread::spawn(move || -> Option<String> {
            steady(
                redis::cmd("BLMOVE")
                    .arg(&src)
                    .arg(&dst)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(10)
                    .query(&mut w),
            )
        })
    };
    wait_blocked(&c, 0, 1);
    let _: () = writer.rpush(format!("{{{k}}}:src"), "moved").unwrap();
    assert_eq!(mover.join().unwrap().as_deref(), Some("moved"));
    replicas_hold(&c, &dst, &["moved"]);
    replicas_hold(&c, &format!("{{{k}}}:src"), &[]);

    // XREAD BLOCK with `$` sees only what is added after it waits.
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("f")
        .arg("old")
        .query(&mut writer)
        .unwrap();
    let reader = {
        let (mut w, stream) = (conn(&c, 0), stream.clone());
        std::thread::spawn(move || -> redis::Value {
            steady(
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(10_000)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg("$")
                    .query(&mut w),
            )
        })
    };
    wait_blocked(&c, 0, 1);
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("f")
        .arg("new")
        .query(&mut writer)
        .unwrap();
    let got = format!("{:?}", reader.join().unwrap());
    assert!(got.contains("new") && !got.contains("old"), "{got}");

    // Regression (issue 15): a waited key that becomes a string (or is filled and emptied in one
    // transaction) keeps BLPOP waiting, as in Redis, where it answered WRONGTYPE; the retry
    // goes through the log, so every replica decides the same.
    let list = format!("{{{k}}}:typed");
    let popper = {
        let (mut w, list) = (conn(&c, 0), list.clone());
        std::thread::spawn(move || -> Option<(String, String)> { steady(w.blpop(&list, 15.0)) })
    };
    wait_blocked(&c, 0, 1);
    let mut leader = conn(&c, 0);
    let _: () = writer.set(&list, "text").unwrap();
    let _: () = redis::pipe()
        .atomic()
        .del(&list)
        .rpush(&list, "gone")
        .del(&list)
        .set(&list, "text")
        .query(&mut leader)
        .unwrap();
    settle(&c, 0, &k);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(blocked_clients(&c, 0), 1, "still waiting");
    let _: () = redis::pipe()
        .del(&list)
        .rpush(&list, "real")
        .query(&mut leader)
        .unwrap();
    assert_eq!(
        popper.join().unwrap(),
        Some((list.clone(), "real".to_string()))
    );
    // XREADGROUP is told when its stream is deleted, as Redis 7.0 does.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("$")
        .query(&mut writer)
        .unwrap();
    let group_reader = {
        let (mut w, stream) = (conn(&c, 0), stream.clone());
        std::thread::spawn(move || -> redis::RedisResult<redis::Value> {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("BLOCK")
                .arg(15_000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query(&mut w)
        })
    };
    wait_blocked(&c, 0, 1);
    let _: () = writer.del(&stream).unwrap();
    let e = group_reader.join().unwrap().unwrap_err();
    assert_eq!(e.code(), Some("UNBLOCKED"), "{e:?}");
    wait_blocked(&c, 0, 0);

    // Nothing to pop: the timeout answer, after the timeout, and nothing left waiting.
    let mut w = conn(&c, 0);
    let t = Instant::now();
    let r: Option<(String, String)> = w.blpop(format!("{{{k}}}:empty"), 0.3).unwrap();
    assert_eq!(r, None);
    assert!(t.elapsed() >= Duration::from_millis(300));
    wait_blocked(&c, 0, 0);

    // A follower redirects a blocking command to the leader; READONLY does not change that.
    let mut f = conn(&c, 1);
    let _: () = redis::cmd("READONLY").query(&mut f).unwrap();
    let e = f.blpop::<_, Option<(String, String)>>(&k, 0.1).unwrap_err();
    assert_eq!(e.code(), Some("MOVED"), "{e:?}");
}

#[test]
fn blocking_pops_racing_their_timeouts_lose_and_duplicate_nothing() {
    let _one = serial();
    let c = TestCluster::start(3, false, &[]);
    let q = "{race}q";
    const N: usize = 300;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Consumers with timeouts short enough that many expire while a try is in the log.
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let mut w = c.leader_of(q);
            w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r: Option<(String, String)> = match w.blpop(q, 0.01) {
                        // An election on the loaded machine moved the leader: that pop was
                        // not applied (what is still queued is counted below); stop here.
                        Err(e) if matches!(e.code(), Some("MOVED") | Some("TRYAGAIN")) => break,
                        r => r.unwrap(),
                    };
                    got.extend(r.map(|(_, v)| v));
                }
                got
            })
        })
        .collect();
    let mut writer = c.client().get_connection().unwrap();
    for i in 0..N {
        let _: () = writer.rpush(q, i.to_string()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen: Vec<usize> = Vec::new();
    for h in consumers {
        seen.extend(
            h.join()
                .unwrap()
                .iter()
                .map(|v| v.parse::<usize>().unwrap()),
        );
    }
    let left: Vec<String> = writer.lrange(q, 0, -1).unwrap();
    seen.extend(left.iter().map(|v| v.parse::<usize>().unwrap()));
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "popped plus left must be what was pushed, once each ({} left)",
        left.len()
    );
}

#[test]
fn a_leader_cut_off_from_its_quorum_redirects_its_waiters() {
    let _one = serial();
    let c = TestCluster::start(3, true, &[]);
    let k = c.key_led_by(0);
    let waiter = {
        let (mut w, k) = (conn(&c, 0), k.clone());
        std::thread::spawn(move || w.blpop::<_, Option<(String, String)>>(&k, 30.0))
    };
    wait_blocked(&c, 0, 1);
    settle(&c, 0, &k);
    c.isolate(0);
    // Nothing was popped for it: an error that sends the client to the new leader (or asks
    // it to retry), well before its own timeout.
    let e = waiter.join().unwrap().expect_err("served while cut off");
    assert!(
        matches!(e.code(), Some("MOVED") | Some("TRYAGAIN")),
        "{e:?}"
    );
    c.heal();
    c.wait_served(Duration::from_secs(20));
    let mut writer = c.client().get_connection().unwrap();
    let _: () = writer.rpush(&k, "kept").unwrap();
    let v: Vec<String> = writer.lrange(&k, 0, -1).unwrap();
    assert_eq!(v, ["kept"]);
}
