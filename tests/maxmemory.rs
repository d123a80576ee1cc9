//! maxmemory end to end: over the limit, writes evict keys by the policy (and INFO counts them),
//! or, under noeviction, are refused with Redis's OOM error while reads still work.

mod common;

use common::Server;
use redis::Commands;

fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn writes_over_maxmemory_evict_or_are_refused() {
    let mut s = Server::start("0-1", &[]);
    let mut c = s.client();
    let base = info_field(&mut c, "memory", "used_memory");
    let limit = base + 4 * 1024 * 1024;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut c)
        .unwrap();
    let value = "v".repeat(200);
    let n = 60_000; // about 18 MB of data: far over the limit
    let mut pipe = redis::pipe();
    for i in 0..n {
        if i == n - 1000 {
            // The last thousand writes come two seconds after the others: LRU (to the second,
            // as Redis's clock) must prefer the older keys.
            std::thread::sleep(std::time::Duration::from_millis(2100));
        }
        pipe.set(format!("key:{i}"), &value).ignore();
        if i % 1000 == 999 {
            let _: () = pipe.query(&mut c).unwrap();
            pipe = redis::pipe();
        }
    }
    // A node still over the limit after the last write goes on evicting in the background
    // (each shard thread at its next step): read the counts once they hold still.
    let (keys, evicted) = loop {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        let evicted = info_field(&mut c, "stats", "evicted_keys");
        let again: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        if again == keys {
            break (keys, evicted);
        }
    };
    assert!(keys < n as u64 / 2, "{keys} keys kept: nothing was evicted");
    assert!(keys > 1000, "{keys} keys kept: far too much was evicted");
    assert_eq!(
        evicted + keys,
        n as u64,
        "every write either stayed or was evicted"
    );
    // What the logs and snapshots hold is left out of the limit, as Redis leaves its AOF
    // buffers out (`mem_not_counted_for_evict`), and kept small beside it.
    let used = info_field(&mut c, "memory", "used_memory");
    let not_counted = info_field(&mut c, "memory", "mem_not_counted_for_evict");
    assert!(
        used - not_counted < limit + 2 * 1024 * 1024,
        "used {used} less {not_counted} stays near the limit {limit}"
    );
    assert!(
        not_counted < limit,
        "{not_counted} bytes of logs and snapshots beside a limit of {limit}"
    );
    // The latest writes survive LRU eviction (approximated by sampling, as Redis's: a recent
    // key goes only when every key sampled is as recent).
    let recent = (n - 1000..n).filter(|i| c.exists::<_, bool>(format!("key:{i}")).unwrap());
    let kept = recent.count();
    assert!(kept >= 900, "{kept} of the last 1000 writes kept");
    // Evictions are logged: after a crash the keyspace is what it was, evicted keys gone.
    // (Without the limit, nothing is evicted in the background between the count and the
    // crash.)
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut c)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let keys: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let sample: Vec<bool> = (0..n)
        .step_by(97)
        .map(|i| c.exists(format!("key:{i}")).unwrap())
        .collect();
    drop(c);
    s.kill_and_restart();
    let mut c = s.client();
    let after: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(after, keys, "the keys after a restart");
    let after: Vec<bool> = (0..n)
        .step_by(97)
        .map(|i| c.exists(format!("key:{i}")).unwrap())
        .collect();
    assert_eq!(
        after, sample,
        "the same keys after a restart, evicted ones gone"
    );

    // Under noeviction, writes that need memory are refused; reads and deletes still work.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .arg("maxmemory")
        .arg(base)
        .query(&mut c)
        .unwrap();
    let e: redis::RedisResult<()> = c.set("another", &value);
    let msg = common::msg(e.unwrap_err());
    assert!(
        msg.contains("OOM") && msg.contains("command not allowed when used memory > 'maxmemory'"),
        "{msg}"
    );
    let _: Option<String> = c.get(format!("key:{}", n - 1)).unwrap();
    let _: i64 = c.del(format!("key:{}", n - 1)).unwrap();
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut c)
        .unwrap();
    assert_eq!(policy, vec!["maxmemory-policy", "noeviction"]);
}
