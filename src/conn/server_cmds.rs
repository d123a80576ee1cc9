//! Connection and server commands that need connection or node state: HELLO AUTH SELECT QUIT RESET
//! CLIENT CONFIG SHUTDOWN LASTSAVE. (MULTI, EXEC, WATCH and INFO live in `conn`.)

use super::Conn;
use crate::config;
use shardline_shards::command::{Args, CommandSpec, err};
use shardline_shards::reply::Proto;
use std::sync::atomic::Ordering;

pub fn run(c: &mut Conn, spec: &'static CommandSpec, a: Args) {
    match spec.name {
        "hello" => hello(c, a),
        "auth" => auth(c, a),
        "select" => match shardline_shards::num::parse_i64(a.get(1)) {
            Some(0) => c.out().ok(),
            Some(_) => c
                .out()
                .error("ERR DB index is out of range (Shardline serves db 0 only)"),
            None => c.out().error(err::NOT_INT),
        },
        "quit" => {
            c.out().ok();
            c.close_after_reply();
        }
        "reset" => {
            c.reset();
            c.out().simple("RESET");
        }
        "client" => client(c, a),
        "config" => config_cmd(c, a),
        "acl" => super::acl::run(c, a),
        "shutdown" => shutdown(c, a),
        "lastsave" => {
            let at = c.shard().node.last_save.load(Ordering::Relaxed);
            c.out().int(at as i64)
        }
        _ => err::unknown_command(c.out(), a),
    }
}

/// Authenticates as `user` with `pass` (ACL users; `requirepass` is the default user's
/// password). Writes the error and returns false if refused (logged in ACL LOG as Redis does).
fn check_password(c: &mut Conn, user: &[u8], pass: &[u8]) -> bool {
    let (found, _) = c.shard().node.cluster.acl.user(user);
    match found {
        Some(u) if u.password_ok(pass) => {
            c.set_user(u);
            c.set_authed(true);
            true
        }
        _ => {
            let name = String::from_utf8_lossy(user).into_owned();
            c.acl_log(
                shardline_shards::acl::LogReason::Auth,
                "toplevel",
                "AUTH".into(),
                name,
            );
            c.out()
                .error("WRONGPASS invalid username-password pair or user is disabled.");
            false
        }
    }
}

fn auth(c: &mut Conn, a: Args) {
    let ok = match a.len() {
        2 if c.shard().node.cluster.acl.default_user().0.nopass => {
            return c.out().error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
        }
        2 => check_password(c, b"default", a.get(1)),
        3 => check_password(c, a.get(1), a.get(2)),
        _ => return c.out().error(err::SYNTAX),
    };
    if ok {
        c.out().ok()
    }
}

fn hello(c: &mut Conn, a: Args) {
    let mut proto = c.proto();
    let mut i = 1;
    if a.len() > 1 {
        match shardline_shards::num::parse_i64(a.get(1)) {
            Some(2) => proto = Proto::Resp2,
            Some(3) => proto = Proto::Resp3,
            Some(_) => return c.out().error("NOPROTO unsupported protocol version"),
            None => {
                return c
                    .out()
                    .error("ERR Protocol version is not an integer or out of range");
            }
        }
        i = 2;
    }
    let mut name: Option<Vec<u8>> = None;
    while i < a.len() {
        let opt = a.get(i);
        if opt.eq_ignore_ascii_case(b"auth") && i + 2 < a.len() {
            if !check_password(c, a.get(i + 1), a.get(i + 2)) {
                return;
            }
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && i + 1 < a.len() {
            name = Some(a.get(i + 1).to_vec());
            i += 2;
        } else {
            return c.out().error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                err::sanitize(opt)
            ));
        }
    }
    if !c.is_authed() {
        return c.out().error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = name {
        c.info().borrow_mut().name = n;
    }
    c.set_proto(proto);
    let id = c.info().borrow().id;
    let out = c.out();
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(crate::info::REDIS_COMPAT_VERSION.as_bytes());
    out.bulk(b"proto");
    out.int(if proto == Proto::Resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
}

fn client(c: &mut Conn, a: Args) {
    let sub = a.get(1).to_ascii_lowercase();
    match (sub.as_slice(), a.len()) {
        (b"id", 2) => {
            let id = c.info().borrow().id;
            c.out().int(id as i64)
        }
        (b"setname", 3) => {
            let name = a.get(2);
            if name.iter().any(|&b| b <= b' ' || b > b'~') {
                return c.out().error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            c.info().borrow_mut().name = name.to_vec();
            c.out().ok()
        }
        (b"getname", 2) => {
            let name = c.info().borrow().name.clone();
            if name.is_empty() {
                c.out().null()
            } else {
                c.out().bulk(&name)
            }
        }
        (b"list", 2) => c.client_list(),
        (b"info", 2) => {
            let line = c.info().borrow().line(c.shard().id);
            c.out().verbatim(line.as_bytes())
        }
        (b"setinfo", 4) => c.out().ok(),
        (b"kill", n) if n >= 3 => client_kill(c, a),
        (b"list" | b"id" | b"getname" | b"info" | b"setname" | b"setinfo", _) => err::arity(
            c.out(),
            &format!("client|{}", String::from_utf8_lossy(&sub)),
        ),
        _ => err::unknown_subcommand(c.out(), a.get(1), "client"),
    }
}

/// CLIENT KILL addr, or CLIENT KILL <filter value> ... (ID, ADDR, LADDR, TYPE, USER, SKIPME),
/// as Redis 7.0 parses them.
fn client_kill(c: &mut Conn, a: Args) {
    let me = c.info().borrow().id;
    let mut f = crate::shard::KillFilter {
        requester: me,
        ..Default::default()
    };
    if a.len() == 3 {
        f.addr = Some(a.get(2).to_vec());
        return c.client_kill(f, true);
    }
    if a.len() % 2 != 0 {
        return c.out().error("ERR syntax error");
    }
    f.skip_me = true;
    for i in (2..a.len()).step_by(2) {
        let (opt, v) = (a.get(i).to_ascii_lowercase(), a.get(i + 1));
        match opt.as_slice() {
            b"id" => match shardline_shards::num::parse_i64(v) {
                Some(id) if id >= 1 => f.id = Some(id as u64),
                _ => return c.out().error("ERR client-id should be greater than 0"),
            },
            b"type" => {
                f.pubsub = match v.to_ascii_lowercase().as_slice() {
                    b"normal" => Some(false),
                    b"pubsub" => Some(true),
                    // No replication links here: nothing is of these types.
                    b"master" | b"replica" | b"slave" => {
                        f.none = true;
                        None
                    }
                    _ => {
                        return c.out().error(&format!(
                            "ERR Unknown client type '{}'",
                            String::from_utf8_lossy(v)
                        ));
                    }
                }
            }
            b"addr" => f.addr = Some(v.to_vec()),
            b"laddr" => f.laddr = Some(v.to_vec()),
            b"user" => {
                if c.shard().node.cluster.acl.user(v).0.is_none() {
                    return c.out().error(&format!(
                        "ERR No such user '{}'",
                        String::from_utf8_lossy(v)
                    ));
                }
                f.user = Some(v.to_vec());
            }
            b"skipme" => {
                f.skip_me = match v.to_ascii_lowercase().as_slice() {
                    b"yes" => true,
                    b"no" => false,
                    _ => return c.out().error("ERR syntax error"),
                }
            }
            _ => return c.out().error("ERR syntax error"),
        }
    }
    c.client_kill(f, false)
}

/// Parameters Redis tools read that Shardline answers with a fixed value.
const FIXED: &[(&str, &str)] = &[("databases", "1"), ("cluster-enabled", "no")];

fn config_cmd(c: &mut Conn, a: Args) {
    let sub = a.get(1).to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if a.len() >= 3 => {
            let cfg = c
                .shard()
                .node
                .config
                .lock()
                .map(|x| x.clone())
                .expect("config lock");
            let mut pairs: Vec<(String, String)> = Vec::new();
            for pat in a.iter().skip(2) {
                let pat = pat.to_ascii_lowercase();
                for p in config::PARAMS {
                    if shardline_shards::glob::glob_match(&pat, p.name.as_bytes())
                        && !pairs.iter().any(|(n, _)| n == p.name)
                    {
                        pairs.push((p.name.to_string(), p.get(&cfg)));
                    }
                }
                for p in config::inert::INERT {
                    if shardline_shards::glob::glob_match(&pat, p.name.as_bytes())
                        && !pairs.iter().any(|(n, _)| n == p.name)
                    {
                        let v = cfg.inert.get(p.name).map_or(p.default, |v| v.as_str());
                        pairs.push((p.name.to_string(), v.to_string()));
                    }
                }
                for (n, v) in FIXED {
                    if shardline_shards::glob::glob_match(&pat, n.as_bytes())
                        && !pairs.iter().any(|(x, _)| x == n)
                    {
                        pairs.push((n.to_string(), v.to_string()));
                    }
                }
            }
            let out = c.out();
            out.map(pairs.len());
            for (n, v) in pairs {
                out.bulk(n.as_bytes());
                out.bulk(v.as_bytes());
            }
        }
        b"set" if a.len() >= 4 && a.len() % 2 == 0 => {
            let node = c.shard().node.clone();
            let mut cfg = node.config.lock().expect("config lock");
            let mut next = cfg.clone();
            for i in (2..a.len()).step_by(2) {
                let name = String::from_utf8_lossy(a.get(i)).to_string();
                let value = String::from_utf8_lossy(a.get(i + 1)).to_string();
                if let Some(p) = config::inert::find(&name) {
                    if let Err(why) = config::inert::check(p.kind, &value) {
                        drop(cfg);
                        return c.out().error(&format!(
                            "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                            p.name
                        ));
                    }
                    next.inert.insert(p.name, value);
                    continue;
                }
                let Some(p) = config::find(&name) else {
                    drop(cfg);
                    return c.out().error(&format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        err::sanitize(a.get(i))
                    ));
                };
                if !p.runtime {
                    drop(cfg);
                    return c.out().error(&format!("ERR CONFIG SET failed (possibly related to argument '{}') - can't set immutable config", p.name));
                }
                if let Err(why) = p.set(&mut next, &value) {
                    drop(cfg);
                    return c.out().error(&format!(
                        "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                        p.name
                    ));
                }
            }
            let tls_changed = (2..a.len())
                .step_by(2)
                .any(|i| a.get(i).len() > 4 && a.get(i)[..4].eq_ignore_ascii_case(b"tls-"));
            if tls_changed && next.tls_port != 0 {
                // New connections get the files as they are now; on an error nothing changes.
                match config::client_tls(&next) {
                    Ok(t) => *node.client_tls.lock().expect("client tls lock") = t,
                    Err(why) => {
                        drop(cfg);
                        return c
                            .out()
                            .error(&format!("ERR CONFIG SET failed (TLS) - {why}"));
                    }
                }
            }
            let pass_changed = (2..a.len())
                .step_by(2)
                .any(|i| a.get(i).eq_ignore_ascii_case(b"requirepass"));
            if pass_changed && node.cluster.acl.is_cluster() {
                drop(cfg);
                return c.out().error("ERR CONFIG SET failed (possibly related to argument 'requirepass') - the users are the cluster's since an ACL command changed them: set the default user's password with ACL SETUSER default resetpass >password");
            }
            if pass_changed {
                // requirepass is the default user's password, as in Redis.
                let pass = next.requirepass.clone();
                node.cluster
                    .acl
                    .change(|u| u.set_requirepass(pass.as_deref().map(str::as_bytes)));
            }
            *cfg = next;
            node.live.load(&cfg);
            node.cluster.acl.set_log_max(cfg.acllog_max_len);
            drop(cfg);
            c.out().ok()
        }
        b"resetstat" if a.len() == 2 => {
            // Per-thread counters (commandstats, keyspace hits/misses) reset on their threads.
            c.shard().node.stats_epoch.fetch_add(1, Ordering::Relaxed);
            for s in &c.shard().node.stats {
                for a in [
                    &s.commands,
                    &s.connections,
                    &s.net_input_bytes,
                    &s.net_output_bytes,
                    &s.hops_sent,
                    &s.jobs_run,
                    &s.rejected_connections,
                    &s.protocol_errors,
                ] {
                    a.store(0, Ordering::Relaxed);
                }
                s.latency_us.reset();
            }
            c.out().ok()
        }
        b"rewrite" => c
            .out()
            .error("ERR CONFIG REWRITE is not supported: edit the TOML file given with --config"),
        b"get" | b"set" | b"resetstat" => err::arity(
            c.out(),
            &format!("config|{}", String::from_utf8_lossy(&sub)),
        ),
        _ => err::unknown_subcommand(c.out(), a.get(1), "config"),
    }
}

fn shutdown(c: &mut Conn, a: Args) {
    for opt in a.iter().skip(1) {
        let o = opt.to_ascii_lowercase();
        if !matches!(o.as_slice(), b"nosave" | b"save" | b"now" | b"force") {
            return c.out().error(err::SYNTAX);
        }
    }
    tracing::info!(
        client = c.info().borrow().id,
        "SHUTDOWN requested by a client"
    );
    c.shard().node.request_shutdown();
    c.close_after_reply();
}
