//! Reads right after a leader change (issue 15): a new leader's commit index can lag what the
//! previous leader acknowledged, so until it has committed an entry of its own term it must not
//! answer reads from its state. Writers write increasing values to their own keys; readers
//! check every GET against the highest value acknowledged before the GET was sent; nodes are
//! killed and restarted over and over, so leadership moves on every kill (an election) and on
//! every restart (the restarted node takes its preferred groups back).

mod common;

use common::cluster::TestCluster;
use redis::Commands;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KEYS: usize = 24;
const WRITERS: usize = 4;
const READERS: usize = 4;

fn key(k: usize) -> String {
    format!("mono:{k}")
}

#[test]
fn reads_after_failovers_and_handovers_never_miss_an_acknowledged_write() {
    let mut c = TestCluster::start(3, false, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    // Per key: the highest value whose SET was acknowledged.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let reads = Arc::new(AtomicU64::new(0));
    let stale = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let (cc, stop, acked) = (c.client(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut conn = cc.get_connection().unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Each writer owns the keys k with k % WRITERS == w, one value after another.
                for k in (w..KEYS).step_by(WRITERS) {
                    let r: redis::RedisResult<()> = conn.set(key(k), n);
                    if r.is_ok() {
                        acked[k].fetch_max(n, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for r in 0..READERS {
        let (urls, stop, acked) = (c.urls(), stop.clone(), acked.clone());
        let (reads, stale) = (reads.clone(), stale.clone());
        threads.push(std::thread::spawn(move || {
            // A plain connection to every node, so a read reaches a new leader the moment it
            // answers (a follower answers -MOVED, which is skipped).
            let mut conns: Vec<Option<redis::Connection>> = urls.iter().map(|_| None).collect();
            let mut k = r;
            while !stop.load(Ordering::Relaxed) {
                k = (k + 7) % KEYS;
                for (i, url) in urls.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] = redis::Client::open(url.as_str())
                            .unwrap()
                            .get_connection_with_timeout(Duration::from_millis(200))
                            .ok();
                    }
                    let Some(conn) = conns[i].as_mut() else {
                        continue;
                    };
                    let floor = acked[k].load(Ordering::SeqCst);
                    let v = match conn.get::<_, Option<u64>>(key(k)) {
                        Ok(v) => v.unwrap_or(0),
                        Err(e) => {
                            if e.is_io_error() || e.is_connection_dropped() {
                                conns[i] = None;
                            }
                            continue;
                        }
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    if v < floor {
                        stale.lock().unwrap().push(format!(
                            "{} on node {i}: read {v}, but {floor} was acknowledged before the \
                             read was sent",
                            key(k)
                        ));
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(400));
        let victim = round % 3;
        c.kill(victim);
        std::thread::sleep(Duration::from_millis(800));
        c.spawn(victim);
        c.wait_served(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let reads = reads.load(Ordering::Relaxed);
    let writes: u64 = acked.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    eprintln!(
        "{reads} reads checked, {writes} writes acknowledged in {:?}",
        start.elapsed()
    );
    assert!(reads > 1000 && writes > 1000, "the workload made progress");
    let stale = stale.lock().unwrap();
    assert!(
        stale.is_empty(),
        "{} stale reads, the first ones:\n{}",
        stale.len(),
        stale[..stale.len().min(10)].join("\n")
    );
}
