//! Helpers of the ACL tests (`tests/acl.rs`, `tests/acl_cluster.rs`): commands as words, their
//! replies as text, ACL LOG as maps.

use super::Server;
use redis::{Connection, Value};
use std::time::Duration;

/// An error reply as the server wrote it: `CODE detail`.
pub fn msg(e: redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(c), Some(d)) => format!("{c} {d}"),
        (Some(c), None) => c.to_string(),
        _ => e.to_string(),
    }
}

pub fn conn_as(s: &Server, user: &str, pass: &str) -> redis::RedisResult<Connection> {
    redis::Client::open(format!("redis://{user}:{pass}@127.0.0.1:{}/", s.port))?
        .get_connection_with_timeout(Duration::from_secs(5))
}

pub fn q(c: &mut Connection, words: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query(c)
}

/// `ok`, retrying while the cluster's metadata group has no leader yet (`TRYAGAIN`: nothing
/// was changed), as a client would.
pub fn ok_retrying(c: &mut Connection, words: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match q(c, words) {
            Ok(_) => return,
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{words:?}: {e}"),
        }
    }
}

pub fn ok(c: &mut Connection, words: &[&str]) {
    if let Err(e) = q(c, words) {
        panic!("{words:?}: {e}");
    }
}

pub fn err(c: &mut Connection, words: &[&str]) -> String {
    match q(c, words) {
        Ok(v) => panic!("{words:?} answered {v:?}, expected an error"),
        Err(e) => msg(e),
    }
}

pub fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// The ACL LOG entries as maps of field to text.
pub fn log(c: &mut Connection) -> Vec<std::collections::HashMap<String, String>> {
    let v: Vec<Vec<Value>> = redis::cmd("ACL").arg("LOG").query(c).unwrap();
    v.into_iter()
        .map(|e| {
            e.chunks(2)
                .map(|kv| (text(kv[0].clone()), text(kv[1].clone())))
                .collect()
        })
        .collect()
}
