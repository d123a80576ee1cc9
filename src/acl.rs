//! The node's ACL users and ACL LOG (the rules and the check are `shardline_shards::acl`).
//!
//! Users change rarely and are read on every connection: they sit behind a mutex with a
//! generation number. A connection holds its user (`Arc<User>`) and the generation it read
//! it at; once per batch it compares the generation (one relaxed load) and, if it moved,
//! takes its user again by name (so ACL SETUSER applies to connections already open, as in
//! Redis) or closes if the user was deleted.

use crate::config::Config;
use shardline_shards::acl::{Log, LogReason, User, Users};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct State {
    pub users: Users,
    pub log: Log,
}

pub struct Acl {
    state: Mutex<State>,
    generation: AtomicU64,
    /// The users are the cluster's (the metadata group holds some): changes go through it.
    cluster: std::sync::atomic::AtomicBool,
    /// INFO stats `acl_access_denied_*`: auth, cmd, key, channel.
    pub denied: [AtomicU64; 4],
    /// `acllog-max-len`.
    log_max: AtomicU64,
}

impl Default for Acl {
    fn default() -> Self {
        Acl::new(Users::new())
    }
}

impl Acl {
    pub fn new(users: Users) -> Self {
        Acl {
            state: Mutex::new(State {
                users,
                log: Log::default(),
            }),
            generation: AtomicU64::new(1),
            cluster: std::sync::atomic::AtomicBool::new(false),
            denied: Default::default(),
            log_max: AtomicU64::new(128),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Changes the users; connections see it at their next batch.
    pub fn change<T>(&self, f: impl FnOnce(&mut Users) -> T) -> T {
        let mut s = self.lock();
        let r = f(&mut s.users);
        self.generation.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// The cluster's users as the metadata group applied them: they replace this node's.
    pub fn install_cluster(&self, users: Users) {
        self.cluster.store(true, Ordering::Release);
        self.change(|u| *u = users);
    }

    /// Whether the users are the cluster's (some ACL change went through the metadata group).
    pub fn is_cluster(&self) -> bool {
        self.cluster.load(Ordering::Acquire)
    }

    /// The user named `name` now, and the generation it was read at.
    pub fn user(&self, name: &[u8]) -> (Option<Arc<User>>, u64) {
        let s = self.lock();
        (s.users.get(name).cloned(), self.generation())
    }

    pub fn default_user(&self) -> (Arc<User>, u64) {
        let s = self.lock();
        (s.users.default_user().clone(), self.generation())
    }

    pub fn set_log_max(&self, n: u64) {
        self.log_max.store(n, Ordering::Relaxed);
    }

    /// Counts a denial and adds it to ACL LOG.
    pub fn log(
        &self,
        reason: LogReason,
        context: &'static str,
        object: String,
        username: String,
        client_info: String,
        now_ms: u64,
    ) {
        self.count_denied(reason);
        let max = self.log_max.load(Ordering::Relaxed) as usize;
        self.lock()
            .log
            .add(reason, context, object, username, client_info, now_ms, max);
    }

    pub fn count_denied(&self, reason: LogReason) {
        let i = match reason {
            LogReason::Auth => 0,
            LogReason::Command => 1,
            LogReason::Key => 2,
            LogReason::Channel => 3,
        };
        self.denied[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The users a node starts with: the default user (with `requirepass` as its password), then
/// the aclfile or the `user` lines. An error names the file, the line and the rule.
pub fn initial_users(cfg: &Config) -> Result<Users, String> {
    let mut users = Users::new();
    users.set_requirepass(cfg.requirepass.as_deref().map(str::as_bytes));
    if let Some(path) = &cfg.aclfile {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the aclfile {}: {e} (create it, even empty, or unset aclfile)",
                path.display()
            )
        })?;
        users = load_file(&text, &path.display().to_string(), cfg)?;
    }
    for line in &cfg.users {
        let words: Vec<&[u8]> = line.split_ascii_whitespace().map(str::as_bytes).collect();
        if let Some((name, rules)) = words.split_first() {
            let new = users.get(name).is_none();
            let rules = shardline_shards::acl::with_pubsub_default(rules, new, cfg.acl_pubsub_all);
            users
                .set(name, &rules)
                .map_err(|e| format!("user {}: {}", String::from_utf8_lossy(name), e.0))?;
        }
    }
    Ok(users)
}

/// An aclfile's users; the default user keeps `requirepass` unless the file defines it.
pub fn load_file(text: &[u8], source: &str, cfg: &Config) -> Result<Users, String> {
    let mut users = Users::parse_with(text, source, cfg.acl_pubsub_all)?;
    let defines_default = text.split(|&b| b == b'\n').any(|l| {
        let mut w = l
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        w.next() == Some(b"user".as_slice()) && w.next() == Some(b"default".as_slice())
    });
    if !defines_default {
        users.set_requirepass(cfg.requirepass.as_deref().map(str::as_bytes));
    }
    Ok(users)
}

/// ACL SAVE: the users to `path`, replaced whole (written beside it, synced, renamed).
pub fn save_file(path: &std::path::Path, users: &Users) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp-acl");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&users.to_file())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// ACL GENPASS: `bits` random bits as hex (rounded up to a whole hex digit).
pub fn genpass(bits: usize) -> String {
    use ring::rand::SecureRandom;
    let chars = bits.div_ceil(4);
    let mut bytes = vec![0u8; chars.div_ceil(2)];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random source");
    let mut s = shardline_shards::acl::hex(&bytes);
    s.truncate(chars);
    s
}

/// The identity a node of the cluster runs as on another's client port (under the cluster's
/// TLS): allowed everything, named `(cluster-node)`; kept apart from the users (a connection
/// running as it never looks it up by name).
pub fn node_user() -> Arc<User> {
    static NODE: std::sync::OnceLock<Arc<User>> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let mut u = User::default_user();
        u.name = "(cluster-node)".into();
        Arc::new(u)
    })
    .clone()
}
