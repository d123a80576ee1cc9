//! Test support: a linearizability workload over a cluster (register histories per key).
#![allow(dead_code)]

use super::cluster::TestCluster;
use redis::Commands;
use shardline_testkit::lincheck::{Op, OpKind, check_register};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One register history per key, from clients that write unique values and read, while the
/// test does something to the cluster; errors (a killed node, a timeout) count as unknown.
pub struct Workload {
    stop: Arc<AtomicBool>,
    history: History,
    threads: Vec<std::thread::JoinHandle<()>>,
    start: Instant,
    acked: Arc<std::sync::atomic::AtomicU64>,
}

/// `(key index, operation)` from every client.
pub type History = Arc<Mutex<Vec<(usize, Op<u64>)>>>;

pub const KEYS: usize = 8;

pub fn key(k: usize) -> String {
    format!("reg:{k}")
}

impl Workload {
    pub fn start(c: &TestCluster, clients: u32) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let history: History = Arc::default();
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let threads = (0..clients)
            .map(|client| {
                let cc = c.client();
                let (stop, history, acked) = (stop.clone(), history.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut conn = cc.get_connection().unwrap();
                    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (client as u64 + 1);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = (x % KEYS as u64) as usize;
                        let call = start.elapsed().as_nanos() as u64;
                        n += 1;
                        let op = if x & 0x30 != 0 {
                            let v = (client as u64 + 1) * 1_000_000 + n;
                            let r: redis::RedisResult<()> = conn.set(key(k), v);
                            if r.is_ok() {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Op {
                                client,
                                call,
                                ret: r.is_ok().then(|| start.elapsed().as_nanos() as u64),
                                kind: OpKind::Write(v),
                            }
                        } else {
                            let r: redis::RedisResult<Option<u64>> = conn.get(key(k));
                            let Ok(v) = r else { continue };
                            Op {
                                client,
                                call,
                                ret: Some(start.elapsed().as_nanos() as u64),
                                kind: OpKind::Read(v),
                            }
                        };
                        history.lock().unwrap().push((k, op));
                        std::thread::sleep(Duration::from_millis(8));
                    }
                })
            })
            .collect();
        Workload {
            stop,
            history,
            threads,
            start,
            acked,
        }
    }

    /// Stops the clients, reads every key once more through `c`, and checks each key's history.
    pub fn finish_and_check(self, c: &TestCluster) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut conn = c.client().get_connection().unwrap();
        let mut all = self.history.lock().unwrap();
        for k in 0..KEYS {
            let call = self.start.elapsed().as_nanos() as u64;
            let v: Option<u64> = conn.get(key(k)).unwrap();
            all.push((
                k,
                Op {
                    client: 999,
                    call,
                    ret: Some(self.start.elapsed().as_nanos() as u64),
                    kind: OpKind::Read(v),
                },
            ));
        }
        assert!(
            self.acked.load(Ordering::Relaxed) > 50,
            "the workload made progress"
        );
        for k in 0..KEYS {
            let ops: Vec<Op<u64>> = all
                .iter()
                .filter(|(i, _)| *i == k)
                .map(|(_, o)| o.clone())
                .collect();
            if let Err(h) = check_register(&ops) {
                panic!("{}: not linearizable:\n{h}", key(k));
            }
        }
    }
}
