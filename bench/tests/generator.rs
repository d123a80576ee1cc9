//! The load generator against a small in-test RESP responder: request counts, pipelining, open
//! loop, error counting and the JSON summary are checked end to end on the real binary.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Answers every command: `+OK` to SET, `$-1` to GET, or `-ERR` to everything when `fail`.
/// Returns the port and the count of commands it saw.
fn responder(fail: bool) -> (u16, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let port = common::serve(move |args, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        let name = args.first().map(|a| a.to_ascii_uppercase());
        match (fail, name.as_deref()) {
            (true, _) => b"-ERR nope\r\n".to_vec(),
            (false, Some(b"GET")) => b"$-1\r\n".to_vec(),
            _ => b"+OK\r\n".to_vec(),
        }
    });
    (port, seen)
}

fn run(port: u16, args: &[&str]) -> String {
    let json = std::env::temp_dir().join(format!("bench-{}-{port}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-bench"))
        .args([
            "--port",
            &port.to_string(),
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(&json);
    text
}

fn field(json: &str, name: &str) -> f64 {
    let at = json
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let rest = &json[at + name.len() + 3..];
    rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
}

#[test]
fn closed_loop_sends_exactly_the_requested_count_with_pipelining() {
    let (port, seen) = responder(false);
    let json = run(
        port,
        &[
            "--requests",
            "5000",
            "--connections",
            "4",
            "--pipeline",
            "16",
            "--workload",
            "mixed",
        ],
    );
    assert_eq!(field(&json, "requests"), 5000.0);
    assert_eq!(field(&json, "errors"), 0.0);
    assert!(field(&json, "p50_us") > 0.0 && field(&json, "p99_us") >= field(&json, "p50_us"));
    assert_eq!(seen.load(Ordering::Relaxed), 5000);
}

#[test]
fn open_loop_paces_requests_and_counts_error_replies() {
    let (port, seen) = responder(true);
    let start = std::time::Instant::now();
    let json = run(
        port,
        &["--requests", "2000", "--rate", "4000", "--connections", "2"],
    );
    // 2000 requests at 4000/s are scheduled over half a second: the run cannot be much shorter.
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(400),
        "open loop did not pace"
    );
    assert_eq!(field(&json, "requests"), 2000.0);
    assert_eq!(field(&json, "errors"), 2000.0);
    assert_eq!(seen.load(Ordering::Relaxed), 2000);
}

#[test]
fn prefill_sets_every_key_once() {
    let (port, seen) = responder(false);
    run(
        port,
        &[
            "--prefill",
            "--keys",
            "3000",
            "--requests",
            "0",
            "--connections",
            "3",
        ],
    );
    assert_eq!(seen.load(Ordering::Relaxed), 3000);
}

#[test]
fn bad_options_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-bench"))
        .args(["--workload", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
}
