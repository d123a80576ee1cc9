//! `shardline ctl`: an operator's commands against a running cluster, over the client port
//! (issue 19, step 4). Each subcommand calls the CLUSTER command of the same name on the node
//! given (any member: changes are forwarded to the metadata leader), and `--wait` follows the
//! moves it started in `CLUSTER MOVES` until they finish, with a progress bar on a terminal.

use crate::client::{Client, Reply, text};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
usage: shardline ctl [-h <host:port>] [-a <password>] <command>

Commands (on any member of the cluster; changes go to its metadata leader):
  moves [--watch]                        list moves: phase, bytes copied, rate, ETA
  load                                   list the vShards' loads (commands, bytes written and
                                         CPU a second) and each node's, as the rebalancer
                                         weighs them
  move <vshard> <node> [--from <node>] [--wait]
                                         move a vShard's replica to a node
  move-slots <first> <last> <node> [--from <node>] [--wait]
                                         move the vShards of a slot range
  cancel <id>                            cancel an open move (the replica goes back)
  drain <node> [--wait]                  move every replica off a node that stays a member
  undrain <node> [--wait]                give a drained node its share again

Local (no node asked):
  certs <dir> <ip:port>...               a development cluster CA (kept in <dir>: ca.pem,
                                         ca.key; made once, reused after), a cluster secret
                                         (cluster.secret) and, for each member's client
                                         address, its certificate and key (<ip>_<port>.pem,
                                         <ip>_<port>.key) for the cluster-tls-* parameters

A node is its member number, its 40-character id (CLUSTER NODES) or its client address.
-h defaults to 127.0.0.1:6379; -a (or REDISCLI_AUTH) is the password.
--wait returns once every move it started has finished: status 0 when all are done, 1
when any was cancelled or overtaken.
";

/// `ctl certs`: the CA and the secret in `dir` (made when missing), and a certificate and
/// key for each member address in `addrs`. Keys are written readable by their owner only.
fn make_certs(dir: &std::path::Path, addrs: &[String]) -> Result<(), String> {
    use shardline_transport::tls::{dev, member_name};
    if addrs.is_empty() {
        return Err(format!(
            "certs wants at least one member address (ip:port)\n\n{USAGE}"
        ));
    }
    let addrs: Vec<std::net::SocketAddr> = addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("'{a}' is not an ip:port address"))
        })
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str, private: bool| -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()).map(|()| f))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        f.flush().map_err(|e| e.to_string())
    };
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_key = if ca_key.exists() {
        println!("using the CA in {}", ca_pem.display());
        std::fs::read_to_string(&ca_key)
            .map_err(|e| format!("cannot read {}: {e}", ca_key.display()))?
    } else {
        let (cert, key) = dev::ca()?;
        write("ca.pem", &cert, false)?;
        write("ca.key", &key, true)?;
        println!("made a CA: {}", ca_pem.display());
        key
    };
    if !dir.join("cluster.secret").exists() {
        let mut secret = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
            .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        write("cluster.secret", &format!("{hex}\n"), true)?;
        println!(
            "made a cluster secret: {}",
            dir.join("cluster.secret").display()
        );
    }
    for a in addrs {
        let (cert, key) = dev::node(&ca_key, a)?;
        let stem = format!("{}_{}", a.ip(), a.port());
        write(&format!("{stem}.pem"), &cert, false)?;
        write(&format!("{stem}.key"), &key, true)?;
        println!("{a}: {stem}.pem, {stem}.key (names {})", member_name(a));
    }
    Ok(())
}

/// How often `--wait` and `--watch` ask.
const POLL: Duration = Duration::from_millis(250);

/// Runs `shardline ctl <args>`; the process's exit status.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardline ctl: {e}");
            2
        }
    }
}

struct Opts {
    host: String,
    password: Option<String>,
    words: Vec<String>,
    from: Option<String>,
    wait: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        host: "127.0.0.1:6379".into(),
        password: std::env::var("REDISCLI_AUTH").ok(),
        words: Vec::new(),
        from: None,
        wait: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} wants a value"))
        };
        match a.as_str() {
            "-h" | "--host" => o.host = value(a)?,
            "-a" | "--password" => o.password = Some(value(a)?),
            "--from" => o.from = Some(value(a)?),
            "--wait" | "--watch" => o.wait = true,
            "--help" | "help" => return Err(USAGE.into()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}\n\n{USAGE}")),
            _ => o.words.push(a.clone()),
        }
    }
    Ok(o)
}

fn run(args: &[String]) -> Result<i32, String> {
    let o = parse(args)?;
    if let [certs, dir, addrs @ ..] = &o.words[..]
        && certs == "certs"
    {
        return make_certs(std::path::Path::new(dir), addrs).map(|()| 0);
    }
    let mut c = Client::connect(&o.host, o.password.as_deref())?;
    let w: Vec<&str> = o.words.iter().map(String::as_str).collect();
    let from: Vec<&str> = match &o.from {
        Some(f) => vec!["FROM", f],
        None => vec![],
    };
    let ids: Vec<u64> = match w[..] {
        ["load"] => {
            print!(
                "{}",
                load_table(&parse_load(&c.call(&["CLUSTER", "LOAD"])?)?)
            );
            return Ok(0);
        }
        ["moves"] => {
            if !o.wait {
                print!("{}", table(&moves(&mut c)?));
                return Ok(0);
            }
            return watch(&mut c, None);
        }
        ["move", v, node] => {
            let mut cmd = vec!["CLUSTER", "MOVE", v, node];
            cmd.extend(&from);
            started(c.call(&cmd)?)?
        }
        ["move-slots", first, last, node] => {
            let mut cmd = vec!["CLUSTER", "MOVE", "SLOTS", first, last, node];
            cmd.extend(&from);
            started(c.call(&cmd)?)?
        }
        ["cancel", id] => {
            ok(c.call(&["CLUSTER", "CANCELMOVE", id])?)?;
            println!("move {id} cancelled");
            return Ok(0);
        }
        [sub @ ("drain" | "undrain"), node] => {
            // The moves the drain opens: those of its kind after the last id seen before.
            let before = moves(&mut c)?.iter().map(|m| m.id).max().unwrap_or(0);
            ok(c.call(&["CLUSTER", &sub.to_ascii_uppercase(), node])?)?;
            let opened: Vec<u64> = poll_until_seen(&mut c, before)?
                .into_iter()
                .filter(|m| m.id > before && m.kind == "drain")
                .map(|m| m.id)
                .collect();
            println!("{sub}: {} replica move(s) opened", opened.len());
            opened
        }
        _ => return Err(USAGE.into()),
    };
    if !o.wait || ids.is_empty() {
        if !ids.is_empty() {
            println!(
                "started move(s) {}; follow with `shardline ctl moves`",
                list(&ids)
            );
        }
        return Ok(0);
    }
    watch(&mut c, Some(&ids))
}

/// A move as `CLUSTER MOVES` lists it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoveView {
    pub id: u64,
    pub vshard: u64,
    pub slots: String,
    pub from: u64,
    pub to: u64,
    pub kind: String,
    pub state: String,
    pub phase: String,
    pub copied: u64,
    pub total: u64,
    pub rate: u64,
    pub eta: i64,
}

fn moves(c: &mut Client) -> Result<Vec<MoveView>, String> {
    parse_moves(&c.call(&["CLUSTER", "MOVES"])?)
}

/// A reply that is an array of maps (`CLUSTER MOVES`, `CLUSTER LOAD`), each map's pairs as
/// text; `what` names the command in errors.
fn maps(r: &Reply, what: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let Reply::Array(items) = r else {
        return Err(format!("{what} answered {r:?}"));
    };
    items
        .iter()
        .map(|item| {
            let Reply::Array(kv) = item else {
                return Err(format!("{what}: an item that is not a map: {item:?}"));
            };
            Ok(kv
                .chunks_exact(2)
                .map(|p| {
                    let text = |r: &Reply| text(r).unwrap_or_default();
                    (text(&p[0]), text(&p[1]))
                })
                .collect())
        })
        .collect()
}

/// `CLUSTER MOVES`'s reply read into views.
pub fn parse_moves(r: &Reply) -> Result<Vec<MoveView>, String> {
    let mut out = Vec::new();
    for kv in maps(r, "CLUSTER MOVES")? {
        let mut m = MoveView::default();
        for (k, v) in kv {
            let n = || v.parse::<u64>().unwrap_or(0);
            match k.as_str() {
                "id" => m.id = n(),
                "vshard" => m.vshard = n(),
                "slots" => m.slots = v.clone(),
                "from" => m.from = n(),
                "to" => m.to = n(),
                "kind" => m.kind = v.clone(),
                "state" => m.state = v.clone(),
                "phase" => m.phase = v.clone(),
                "bytes-copied" => m.copied = n(),
                "bytes-total" => m.total = n(),
                "rate-bytes-per-sec" => m.rate = n(),
                "eta-seconds" => m.eta = v.parse().unwrap_or(-1),
                _ => {}
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// A vShard's load as `CLUSTER LOAD` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadView {
    pub vshard: u64,
    pub slots: String,
    pub leader: u64,
    pub ops: u64,
    pub bytes: u64,
    pub cpu_us: u64,
    pub weight: u64,
}

/// `CLUSTER LOAD`'s reply read into views.
pub fn parse_load(r: &Reply) -> Result<Vec<LoadView>, String> {
    let mut out = Vec::new();
    for kv in maps(r, "CLUSTER LOAD")? {
        let mut l = LoadView::default();
        for (k, v) in kv {
            let n = v.parse::<u64>().unwrap_or(0);
            match k.as_str() {
                "vshard" => l.vshard = n,
                "slots" => l.slots = v,
                "leader" => l.leader = n,
                "ops-per-sec" => l.ops = n,
                "write-bytes-per-sec" => l.bytes = n,
                "cpu-us-per-sec" => l.cpu_us = n,
                "weight" => l.weight = n,
                _ => {}
            }
        }
        out.push(l);
    }
    Ok(out)
}

/// The loaded vShards, heaviest first, then each leading node's total (what the rebalancer
/// compares).
fn load_table(all: &[LoadView]) -> String {
    let mut busy: Vec<&LoadView> = all.iter().filter(|l| l.weight > 0).collect();
    busy.sort_by_key(|l| (std::cmp::Reverse(l.weight), l.vshard));
    let mut t = format!(
        "{:>6} {:>11} {:>6} {:>9} {:>10} {:>8} {:>9}\n",
        "vshard", "slots", "leader", "ops/s", "writes/s", "cpu", "weight"
    );
    for l in &busy {
        t.push_str(&format!(
            "{:>6} {:>11} {:>6} {:>9} {:>10} {:>7.1}% {:>9}\n",
            l.vshard,
            l.slots,
            l.leader,
            l.ops,
            bytes(l.bytes),
            l.cpu_us as f64 / 1e4, // a core: a million µs a second
            l.weight
        ));
    }
    let mut nodes: Vec<u64> = all.iter().map(|l| l.leader).filter(|&n| n > 0).collect();
    nodes.sort_unstable();
    nodes.dedup();
    t.push_str(&format!("{:>6} {:>9}\n", "node", "weight"));
    for n in nodes {
        let w: u64 = all.iter().filter(|l| l.leader == n).map(|l| l.weight).sum();
        t.push_str(&format!("{n:>6} {w:>9}\n"));
    }
    t
}

fn ok(r: Reply) -> Result<(), String> {
    match r {
        Reply::Error(e) => Err(e),
        _ => Ok(()),
    }
}

/// The ids a CLUSTER MOVE answered (one, or an array for a slot range; refusals reported).
fn started(r: Reply) -> Result<Vec<u64>, String> {
    match r {
        Reply::Int(id) => Ok(vec![id as u64]),
        Reply::Error(e) => Err(e),
        Reply::Array(items) => {
            let mut ids = Vec::new();
            for item in items {
                match item {
                    Reply::Int(id) => ids.push(id as u64),
                    Reply::Error(e) => eprintln!("refused: {e}"),
                    other => return Err(format!("CLUSTER MOVE answered {other:?}")),
                }
            }
            Ok(ids)
        }
        other => Err(format!("CLUSTER MOVE answered {other:?}")),
    }
}

/// The moves after the node applied a change made elsewhere (the metadata leader answered;
/// this node's replica of the metadata may be a moment behind).
fn poll_until_seen(c: &mut Client, before: u64) -> Result<Vec<MoveView>, String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let all = moves(c)?;
        if all.iter().any(|m| m.id > before) || Instant::now() > deadline {
            return Ok(all);
        }
        std::thread::sleep(POLL / 5);
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Follows moves `ids` (all open ones: `None`, until none is open) until each finished;
/// on a terminal one line redrawn in place, else a line per change of phase.
fn watch(c: &mut Client, ids: Option<&[u64]>) -> Result<i32, String> {
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let mut missing_since: Option<Instant> = None;
    loop {
        let all = moves(c)?;
        let mine: Vec<&MoveView> = all
            .iter()
            .filter(|m| ids.is_none_or(|ids| ids.contains(&m.id)))
            .filter(|m| ids.is_some() || m.state == "open")
            .collect();
        // A record not listed yet (this node behind the leader) or dropped from the finished
        // ones kept: after a few seconds, counted as finished.
        let listed = ids.map_or(0, |ids| ids.len() - mine.len());
        if listed > 0 {
            let since = *missing_since.get_or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(POLL);
                continue;
            }
        }
        let open = mine.iter().filter(|m| m.state == "open").count();
        let line = status_line(&mine, open);
        if tty {
            print!("\r\x1b[2K{line}");
        } else if line != last {
            println!("{line}");
        }
        std::io::stdout().flush().ok();
        last = line;
        if open == 0 {
            if tty {
                println!();
            }
            let cancelled: Vec<u64> = mine
                .iter()
                .filter(|m| m.state == "cancelled")
                .map(|m| m.id)
                .collect();
            if !cancelled.is_empty() {
                println!("cancelled or overtaken: {}", list(&cancelled));
                return Ok(1);
            }
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

/// One line: moves finished of all, and the copy under way with a bar, its rate and ETA.
pub fn status_line(mine: &[&MoveView], open: usize) -> String {
    let done = mine.len() - open;
    let mut line = format!("{done}/{} moves finished", mine.len());
    let copying = mine.iter().find(|m| m.phase == "copying");
    let current = copying.or_else(|| mine.iter().find(|m| m.state == "open"));
    if let Some(m) = current {
        line.push_str(&format!(
            " | move {} vshard {} {}->{} {}",
            m.id, m.vshard, m.from, m.to, m.phase
        ));
        if m.phase == "copying" && m.total > 0 {
            let pct = (m.copied * 100 / m.total).min(100);
            let filled = (pct / 5) as usize;
            line.push_str(&format!(
                " [{}{}] {pct:>3}% {}/{} {}/s",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                bytes(m.copied),
                bytes(m.total),
                bytes(m.rate),
            ));
            if m.eta >= 0 {
                line.push_str(&format!(" ETA {}s", m.eta));
            }
        }
    }
    line
}

fn bytes(n: u64) -> String {
    match n {
        0..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// The moves as a table.
fn table(all: &[MoveView]) -> String {
    let mut t = format!(
        "{:>5} {:>6} {:>11} {:>5} {:>5} {:>8} {:>9} {:>12} {:>10} {:>10} {:>10} {:>6}\n",
        "id",
        "vshard",
        "slots",
        "from",
        "to",
        "kind",
        "state",
        "phase",
        "copied",
        "total",
        "rate/s",
        "eta"
    );
    for m in all {
        let eta = if m.eta >= 0 {
            format!("{}s", m.eta)
        } else {
            "-".into()
        };
        t.push_str(&format!(
            "{:>5} {:>6} {:>11} {:>5} {:>5} {:>8} {:>9} {:>12} {:>10} {:>10} {:>10} {:>6}\n",
            m.id,
            m.vshard,
            m.slots,
            m.from,
            m.to,
            m.kind,
            m.state,
            m.phase,
            bytes(m.copied),
            bytes(m.total),
            bytes(m.rate),
            eta
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_parse_and_the_status_line_shows_the_copy() {
        let kv = |k: &str, v: Reply| [Reply::Bulk(k.as_bytes().to_vec()), v];
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        let item: Vec<Reply> = [
            kv("id", Reply::Int(7)),
            kv("vshard", Reply::Int(5)),
            kv("slots", bulk("5120-6143")),
            kv("from", Reply::Int(2)),
            kv("to", Reply::Int(4)),
            kv("kind", bulk("operator")),
            kv("state", bulk("open")),
            kv("phase", bulk("copying")),
            kv("bytes-copied", Reply::Int(50_000_000)),
            kv("bytes-total", Reply::Int(200_000_000)),
            kv("rate-bytes-per-sec", Reply::Int(25_000_000)),
            kv("eta-seconds", Reply::Int(6)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let all = parse_moves(&Reply::Array(vec![Reply::Array(item)])).unwrap();
        assert_eq!(all[0].id, 7);
        assert_eq!(all[0].eta, 6);
        let line = status_line(&[&all[0]], 1);
        assert_eq!(
            line,
            "0/1 moves finished | move 7 vshard 5 2->4 copying [#####---------------]  25% 50.0 MB/200.0 MB 25.0 MB/s ETA 6s"
        );
        assert!(table(&all).contains("copying"));
        assert!(parse_moves(&Reply::Int(1)).is_err());
        assert_eq!(started(Reply::Int(3)).unwrap(), [3]);
        assert_eq!(
            started(Reply::Array(vec![Reply::Int(3), Reply::Error("x".into())])).unwrap(),
            [3]
        );
        assert!(started(Reply::Error("ERR no".into())).is_err());
    }

    #[test]
    fn load_parses_and_the_table_lists_busy_vshards_heaviest_first_and_node_totals() {
        let kv = |k: &str, v: Reply| [Reply::Bulk(k.as_bytes().to_vec()), v];
        let one = |v: i64, leader: i64, ops: i64, cpu: i64| {
            let item: Vec<Reply> = [
                kv("vshard", Reply::Int(v)),
                kv("slots", Reply::Bulk(b"0-1023".to_vec())),
                kv("leader", Reply::Int(leader)),
                kv("ops-per-sec", Reply::Int(ops)),
                kv("write-bytes-per-sec", Reply::Int(0)),
                kv("cpu-us-per-sec", Reply::Int(cpu)),
                kv("weight", Reply::Int(ops + cpu)),
            ]
            .into_iter()
            .flatten()
            .collect();
            Reply::Array(item)
        };
        let r = Reply::Array(vec![
            one(0, 1, 100, 50),
            one(1, 2, 0, 0),
            one(2, 1, 10, 250_000),
        ]);
        let all = parse_load(&r).unwrap();
        assert_eq!(all[2].cpu_us, 250_000);
        assert_eq!(all[0].weight, 150);
        let t = load_table(&all);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].trim_start().starts_with('2'), "{t}");
        assert!(lines[1].contains("25.0%"), "{t}");
        assert!(lines[2].trim_start().starts_with('0'), "{t}");
        assert!(
            lines[3].contains("node"),
            "an idle vShard is not listed: {t}"
        );
        assert!(t.ends_with("     1    250160\n     2         0\n"), "{t}");
        assert!(parse_load(&Reply::Int(1)).is_err());
    }
}
