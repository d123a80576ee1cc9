//! A connection's ACL user (kept current as the users change; its denials logged), and the
//! ACL command: users (SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI), categories (CAT),
//! GENPASS, LOG, SAVE/LOAD of the aclfile, and DRYRUN.

use super::Conn;
use crate::pubsub::Kind;
use shardline_shards::acl::wire::{AclCmd, AclEntry};
use shardline_shards::acl::{self, DeniedKind, cats};
use shardline_shards::command::{self, Args, err};
use shardline_shards::reply::Out;
use std::sync::Arc;

/// A connection's ACL user: which it is, keeping it current, and what it was refused.
impl Conn {
    /// Runs as `user` from now on (AUTH, HELLO AUTH, RESET).
    pub fn set_user(&mut self, user: Arc<acl::User>) {
        self.acl_fixed = false;
        self.acl_gen = self.shard.node.cluster.acl.generation();
        self.acl_open = user.unrestricted();
        self.info.borrow_mut().user = user.name.as_str().into();
        self.user = user;
    }

    pub fn user(&self) -> &Arc<acl::User> {
        &self.user
    }

    /// Whether the connection may go on as its user: the users changed since it read it
    /// (one relaxed load per batch when they did not), it takes it again (`refresh_user`).
    pub(super) fn user_current(&mut self) -> bool {
        self.shard.node.cluster.acl.generation() == self.acl_gen || self.refresh_user()
    }

    /// The users changed: takes this connection's user again by name. False if it is gone,
    /// or no longer allowed a channel it is subscribed to (Redis disconnects both).
    fn refresh_user(&mut self) -> bool {
        if self.acl_fixed {
            self.acl_gen = self.shard.node.cluster.acl.generation();
            return true;
        }
        match self.shard.node.cluster.acl.user(self.user.name.as_bytes()) {
            (Some(u), generation) => {
                self.acl_open = u.unrestricted();
                self.user = u;
                self.acl_gen = generation;
                self.acl_open || self.subscriptions_allowed()
            }
            (None, _) => false,
        }
    }

    /// Whether the user may still hold every subscription of this connection.
    fn subscriptions_allowed(&self) -> bool {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        self.subscriptions.iter().all(|(kind, name)| {
            let cmd = match kind {
                Kind::Channel => "subscribe",
                Kind::Pattern => "psubscribe",
                Kind::Shard => "ssubscribe",
            };
            command::words_into(&[cmd.as_bytes(), name.as_slice()], &mut buf, &mut spans);
            let spec = command::lookup(cmd.as_bytes()).expect("in the table");
            acl::check_command(&self.user, spec, Args::new(&buf, &spans)).is_ok()
        })
    }

    /// Counts and logs (ACL LOG) a command `check` refused, and gives the error to answer
    /// (Redis 7.2's wording: the command is named, a key or channel is not).
    pub fn acl_denied(&mut self, d: acl::Denied, args: Args, context: &'static str) -> String {
        let (reason, object) = acl::denial_log(&d, args);
        self.acl_log(reason, context, object, self.user.name.clone());
        acl::denial_message(&d, &self.user.name)
    }

    /// Adds an ACL LOG entry (and counts it in INFO's `acl_access_denied_*`).
    pub fn acl_log(
        &mut self,
        reason: acl::LogReason,
        context: &'static str,
        object: String,
        username: String,
    ) {
        let info = self.info.borrow().line(self.shard.id);
        self.shard.node.cluster.acl.log(
            reason,
            context,
            object,
            username,
            info.trim_end().to_string(),
            self.now_us / 1000,
        );
    }
}

pub fn run(c: &mut Conn, a: Args) {
    let spec = command::lookup(b"acl").expect("in the table");
    if let Err(e) = command::check_subcommand(spec, a) {
        return c.out().error(&e);
    }
    let sub = a.get(1).to_ascii_lowercase();
    match sub.as_slice() {
        b"whoami" => {
            let name = c.user().name.clone();
            c.out().bulk(name.as_bytes())
        }
        b"users" => {
            let names: Vec<String> = c
                .shard()
                .node
                .cluster
                .acl
                .lock()
                .users
                .names()
                .map(String::from)
                .collect();
            let out = c.out();
            out.array(names.len());
            for n in names {
                out.bulk(n.as_bytes());
            }
        }
        b"list" => {
            let lines = c.shard().node.cluster.acl.lock().users.list();
            let out = c.out();
            out.array(lines.len());
            for l in lines {
                out.bulk(&l);
            }
        }
        b"getuser" => getuser(c, a.get(2)),
        b"setuser" => {
            let node = &c.shard().node;
            let all = node.config.lock().is_ok_and(|cfg| cfg.acl_pubsub_all);
            let new = node.cluster.acl.user(a.get(2)).0.is_none();
            let rules: Vec<&[u8]> = a.iter().skip(3).collect();
            let cmd = AclCmd::Set {
                name: a.get(2).to_vec(),
                rules: acl::with_pubsub_default(&rules, new, all)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            };
            propose(c, spec, a, cmd)
        }
        b"deluser" => {
            let cmd = AclCmd::Del {
                names: a.iter().skip(2).map(<[u8]>::to_vec).collect(),
            };
            propose(c, spec, a, cmd)
        }
        b"cat" => cat(c.out(), a),
        b"genpass" => {
            let bits = if a.len() > 2 {
                match shardline_shards::num::parse_i64(a.get(2)) {
                    Some(b) if (1..=4096).contains(&b) => b as usize,
                    _ => return c.out().error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"),
                }
            } else {
                256
            };
            c.out().bulk(crate::acl::genpass(bits).as_bytes())
        }
        b"log" => log(c, a),
        b"save" | b"load" => file(c, a, sub == b"save"),
        b"dryrun" => dryrun(c, a),
        b"help" => {
            command::err::unknown_subcommand(c.out(), b"help", "acl");
        }
        _ => err::unknown_subcommand(c.out(), a.get(1), "acl"),
    }
}

fn getuser(c: &mut Conn, name: &[u8]) {
    let (user, _) = c.shard().node.cluster.acl.user(name);
    let out = c.out();
    let Some(u) = user else {
        return out.null();
    };
    out.map(6);
    out.bulk(b"flags");
    let flags = u.flags();
    out.array(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"passwords");
    out.array(u.passwords.len());
    for p in &u.passwords {
        out.bulk(acl::hex(p).as_bytes());
    }
    selector(out, &u.root);
    out.bulk(b"selectors");
    out.array(u.selectors.len());
    for s in &u.selectors {
        out.map(3);
        selector(out, s);
    }
}

/// A selector's `commands`, `keys` and `channels` pairs.
fn selector(out: &mut Out, s: &acl::Selector) {
    out.bulk(b"commands");
    out.bulk(s.describe_commands().as_bytes());
    out.bulk(b"keys");
    out.bulk(&s.describe_keys());
    out.bulk(b"channels");
    out.bulk(&s.describe_channels());
}

fn cat(out: &mut Out, a: Args) {
    if a.len() == 2 {
        out.array(cats::NAMES.len());
        for n in cats::NAMES {
            out.bulk(n.as_bytes());
        }
        return;
    }
    if a.len() > 3 {
        return out.error("ERR wrong number of arguments for 'acl|cat' command");
    }
    let Some(cat) = cats::by_name(a.get(2)) else {
        return out.error(&format!(
            "ERR Unknown category '{}'",
            err::sanitize(a.get(2))
        ));
    };
    let names: Vec<&str> = (0..acl::ids() as acl::Id)
        .map(acl::entry)
        .filter(|e| e.cats & cat != 0)
        .map(|e| e.name)
        .collect();
    out.array(names.len());
    for n in names {
        out.bulk(n.as_bytes());
    }
}

fn log(c: &mut Conn, a: Args) {
    if a.len() > 3 {
        return c
            .out()
            .error("ERR wrong number of arguments for 'acl|log' command");
    }
    let mut count = usize::MAX;
    if a.len() == 3 {
        if a.get(2).eq_ignore_ascii_case(b"reset") {
            c.shard().node.cluster.acl.lock().log.reset();
            return c.out().ok();
        }
        match shardline_shards::num::parse_i64(a.get(2)) {
            Some(n) => count = n.max(0) as usize,
            None => return c.out().error(err::NOT_INT),
        }
    }
    let now_ms = crate::shard::unix_now_us() / 1000;
    let max = c
        .shard()
        .node
        .config
        .lock()
        .map_or(128, |cfg| cfg.acllog_max_len as usize);
    let entries: Vec<acl::LogEntry> = {
        let acl = c.shard().node.cluster.acl.lock();
        acl.log.entries().take(count.min(max)).cloned().collect()
    };
    let out = c.out();
    out.array(entries.len());
    for e in entries {
        out.map(10);
        out.bulk(b"count");
        out.int(e.count as i64);
        out.bulk(b"reason");
        out.bulk(e.reason.name().as_bytes());
        out.bulk(b"context");
        out.bulk(e.context.as_bytes());
        out.bulk(b"object");
        out.bulk(e.object.as_bytes());
        out.bulk(b"username");
        out.bulk(e.username.as_bytes());
        out.bulk(b"age-seconds");
        out.double(now_ms.saturating_sub(e.created_ms) as f64 / 1000.0);
        out.bulk(b"client-info");
        out.bulk(e.client_info.as_bytes());
        out.bulk(b"entry-id");
        out.int(e.entry_id as i64);
        out.bulk(b"timestamp-created");
        out.int(e.created_ms as i64);
        out.bulk(b"timestamp-last-updated");
        out.int(e.updated_ms as i64);
    }
}

/// ACL SAVE and ACL LOAD, with the aclfile.
fn file(c: &mut Conn, a: Args, save: bool) {
    let node = c.shard().node.clone();
    let cfg = node.config.lock().map(|c| c.clone());
    let Ok(cfg) = cfg else {
        return c.out().error("ERR the configuration is unavailable");
    };
    let Some(path) = cfg.aclfile.clone() else {
        return c.out().error("ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.");
    };
    if !save {
        // Read (and checked) here: the default user keeps requirepass if the file has none.
        let source = path.display().to_string();
        let loaded = std::fs::read(&path)
            .map_err(|e| format!("{source}: {e}"))
            .and_then(|text| crate::acl::load_file(&text, &source, &cfg));
        return match loaded {
            Ok(users) => {
                let spec = command::lookup(b"acl").expect("in the table");
                let file = users.to_file();
                propose(c, spec, a, AclCmd::Load { file, source })
            }
            Err(e) => c.out().error(&format!(
                "ERR {e} WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
            )),
        };
    }
    let users = node.cluster.acl.lock().users.clone();
    match crate::acl::save_file(&path, &users) {
        Ok(()) => c.out().ok(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ACL SAVE failed");
            c.out().error(&format!(
                "ERR There was an error trying to save the ACLs. Please check the server logs for more information ({}: {e})",
                path.display()
            ))
        }
    }
}

/// An ACL change goes through the metadata group, so every node applies it and it survives
/// restarts: checked here first (a refused change answers at once), then proposed on thread 0
/// and answered once applied. Where another node leads the metadata, the command is forwarded
/// there, as FUNCTION LOAD is.
fn propose(c: &mut Conn, spec: &'static command::CommandSpec, a: Args, cmd: AclCmd) {
    let cluster = c.shard().node.cluster.clone();
    let leader = cluster.leader(shardline_shards::slot::VShardId(cluster.meta_group() as u16));
    if leader != cluster.me && leader != crate::cluster::NodeId(0) {
        return c.proxy(leader, spec, a);
    }
    let acl = &cluster.acl;
    let (seed, mut trial) = {
        let s = acl.lock();
        if acl.is_cluster() {
            (Vec::new(), Some(s.users.clone()))
        } else {
            // The first change: this node's users (its configuration's) are the seed.
            (s.users.to_file(), None)
        }
    };
    let entry = AclEntry { seed, cmd };
    if let Err(e) = entry.apply(&mut trial) {
        return c.out().error(&e);
    }
    let mut b = Vec::new();
    entry.encode(&mut b);
    let op = c.push_op(0, crate::hop::Op::Meta(b));
    c.hole(
        vec![super::PartRef::Remote { thread: 0, op }],
        super::Finish::Raw,
    );
}

fn dryrun(c: &mut Conn, a: Args) {
    let (user, _) = c.shard().node.cluster.acl.user(a.get(2));
    let Some(user) = user else {
        return c
            .out()
            .error(&format!("ERR User '{}' not found", err::sanitize(a.get(2))));
    };
    let Some(spec) = command::lookup(a.get(3)) else {
        return c.out().error(&format!(
            "ERR Command '{}' not found",
            err::sanitize(a.get(3))
        ));
    };
    // The command as it would be called: its arguments from the command name on.
    let spans = &a.spans()[3..];
    let args = Args::new(a.buf(), spans);
    if !spec.arity_ok(args.len()) {
        return err::arity(c.out(), spec.name);
    }
    match acl::check(&user, spec, args) {
        Ok(()) => c.out().ok(),
        Err(d) => {
            let msg = match d.kind {
                DeniedKind::Command => format!(
                    "User {} has no permissions to run the '{}' command",
                    user.name,
                    acl::entry(d.id).name
                ),
                DeniedKind::Key => format!(
                    "User {} has no permissions to access the '{}' key",
                    user.name,
                    String::from_utf8_lossy(args.get(d.arg))
                ),
                DeniedKind::Channel => format!(
                    "User {} has no permissions to access the '{}' channel",
                    user.name,
                    String::from_utf8_lossy(args.get(d.arg))
                ),
            };
            c.out().bulk(msg.as_bytes())
        }
    }
}
