//! `--cluster` against two in-test nodes: node A claims every slot in CLUSTER SLOTS but answers
//! `-MOVED` for keys in even slots, which node B serves. The bench must finish every request
//! without an error, follow the redirects, and afterwards send even-slot keys straight to B.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node. With `moved_to`, keys in even slots are redirected there.
fn node(moved_to: Option<u16>) -> (u16, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let port = common::serve(move |args, port| {
        if args[0].eq_ignore_ascii_case(b"CLUSTER") {
            return format!(
                "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n"
            )
            .into_bytes();
        }
        let slot = shardline_shards::slot::key_slot(args.get(1).map_or(&[][..], |k| k));
        match moved_to {
            Some(b) if slot.is_multiple_of(2) => {
                format!("-MOVED {slot} 127.0.0.1:{b}\r\n").into_bytes()
            }
            _ => {
                counter.fetch_add(1, Ordering::Relaxed);
                b"+OK\r\n".to_vec()
            }
        }
    });
    (port, served)
}

#[test]
fn cluster_mode_follows_moved_and_learns_the_owner() {
    let (b_port, b_served) = node(None);
    let (a_port, a_served) = node(Some(b_port));
    let json = std::env::temp_dir().join(format!("bench-cluster-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-bench"))
        .args(["--port", &a_port.to_string(), "--cluster", "--quiet"])
        .args([
            "--requests",
            "4000",
            "--connections",
            "2",
            "--pipeline",
            "8",
        ])
        .args(["--keys", "200", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(&json);
    assert!(text.contains("\"requests\":4000,\"errors\":0"), "{text}");
    let served = a_served.load(Ordering::Relaxed) + b_served.load(Ordering::Relaxed);
    assert_eq!(served, 4000, "every request answered once by its owner");
    assert!(
        b_served.load(Ordering::Relaxed) > 1000,
        "even slots went to B"
    );
    // Each connection learns each even slot once: far fewer redirects than requests to B.
    let redirects: u64 = text
        .split("\"redirects\":")
        .nth(1)
        .and_then(|r| r.trim_end_matches(['}', '\n']).parse().ok())
        .unwrap_or_else(|| panic!("no redirects in {text}"));
    assert!(
        redirects > 0 && redirects <= 2 * 200,
        "{redirects} redirects"
    );
}
