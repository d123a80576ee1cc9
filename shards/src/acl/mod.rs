//! ACL users as Redis 7 has them: users with passwords (SHA-256), enabled or not, and a root
//! selector plus any number of extra selectors, each allowing commands (by name, subcommand,
//! first argument or category), keys (by pattern, for reading, writing or both) and pub/sub
//! channels (by pattern). A command runs if one selector allows all of it.
//!
//! Pure: the rules' grammar (`ACL SETUSER`, aclfile `user` lines), the descriptions `ACL LIST`
//! and `ACL GETUSER` give, and the check a connection makes before it runs a command. The
//! driver keeps the users (`Users`), hands each connection its user, and writes ACL LOG.
//! Categories and key specifications come from `table` (generated from redis-server's
//! COMMAND INFO), so `+@read` or `%W~` mean here what they mean there.

pub mod cats;
mod check;
pub mod keyspec;
mod rules;
pub mod table;
#[cfg(test)]
mod tests;
mod users;
pub mod wire;

pub use check::{
    CallerGuard, DenialSink, Denied, DeniedKind, caller, check, check_caller, check_command,
    check_command_with, command_id_of, denial_log, denial_message, set_caller, set_denial_sink,
    sort_patterns_allowed, sort_uses_patterns,
};
pub use rules::{RuleError, SetError};
pub use users::{Log, LogEntry, LogReason, Users, with_pubsub_default};

use crate::command::CommandSpec;
use keyspec::Entry;
use std::sync::OnceLock;

/// Bits for every command and subcommand id (`table::COMMANDS` then `table::SUBCOMMANDS`).
const WORDS: usize = 8;

/// A command's ACL id: its row in `table::COMMANDS`, or the count of those plus its row in
/// `table::SUBCOMMANDS`.
pub type Id = u16;

/// The table row of a command the server has.
pub fn command_id(spec: &'static CommandSpec) -> Id {
    crate::command::row(spec) as Id
}

/// The entry (name, categories, key specs) of an id.
pub fn entry(id: Id) -> &'static Entry {
    let id = id as usize;
    match table::COMMANDS.get(id) {
        Some(e) => e,
        None => &table::SUBCOMMANDS[id - table::COMMANDS.len()].1,
    }
}

/// The subcommand `sub` of the command with id `parent`, if Redis gives it one by that name.
pub fn subcommand(parent: Id, sub: &[u8]) -> Option<Id> {
    let (from, to) = sub_range(parent);
    let name = entry(parent).name;
    (from..to)
        .find(|&j| {
            let full = table::SUBCOMMANDS[j].1.name.as_bytes();
            full.len() == name.len() + 1 + sub.len()
                && full[name.len() + 1..].eq_ignore_ascii_case(sub)
        })
        .map(|j| (table::COMMANDS.len() + j) as Id)
}

/// Whether the command has subcommands (CONFIG, CLIENT, OBJECT, ...).
pub fn has_subcommands(id: Id) -> bool {
    let (from, to) = sub_range(id);
    from < to
}

/// The rows of `table::SUBCOMMANDS` that belong to command `parent` (they are contiguous).
fn sub_range(parent: Id) -> (usize, usize) {
    static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    let ranges = RANGES.get_or_init(|| {
        let mut r = vec![(0, 0); table::COMMANDS.len()];
        for (j, (p, _)) in table::SUBCOMMANDS.iter().enumerate() {
            let e = &mut r[*p as usize];
            if e.1 == 0 {
                *e = (j, j + 1);
            } else {
                e.1 = j + 1;
            }
        }
        r
    });
    ranges.get(parent as usize).copied().unwrap_or((0, 0))
}

/// The id of a command named as ACL rules name them: `get`, or `config|get`.
pub fn lookup(name: &[u8]) -> Option<Id> {
    match name.iter().position(|&b| b == b'|') {
        None => crate::command::lookup(name).map(command_id),
        Some(bar) => {
            let parent = crate::command::lookup(&name[..bar]).map(command_id)?;
            subcommand(parent, &name[bar + 1..])
        }
    }
}

/// How many ids there are.
pub fn ids() -> usize {
    table::COMMANDS.len() + table::SUBCOMMANDS.len()
}

/// The ids of a command and its subcommands.
fn with_subcommands(id: Id) -> impl Iterator<Item = Id> {
    let (from, to) = if (id as usize) < table::COMMANDS.len() {
        sub_range(id)
    } else {
        (0, 0)
    };
    std::iter::once(id).chain((from..to).map(|j| (table::COMMANDS.len() + j) as Id))
}

/// A key pattern and what it allows: reading (`%R~`), writing (`%W~`) or both (`~`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    pub pattern: Vec<u8>,
    /// `keyspec::NEED_READ` | `keyspec::NEED_WRITE`.
    pub perms: u8,
}

/// What one selector allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    allowed: [u64; WORDS],
    /// Set by `+@all` and cleared by `-@all`: commands the table does not know yet (none
    /// today) would be allowed. It decides whether the description starts `+@all` or `-@all`.
    all_future: bool,
    /// The command rules since the last `+@all`/`-@all`, in order, lower case, without a
    /// rule another one later overrode (`+get` then `-get` keeps `-get`).
    rules: Vec<String>,
    /// First arguments allowed for a command otherwise denied (`+select|0`), by id.
    first_args: Vec<(Id, Vec<Vec<u8>>)>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
}

impl Selector {
    /// Nothing allowed.
    pub fn new() -> Self {
        Selector {
            allowed: [0; WORDS],
            all_future: false,
            rules: Vec::new(),
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// Whether it allows everything: every command, key and channel (the default user).
    pub fn unrestricted(&self) -> bool {
        self.all_keys && self.all_channels && self.all_future && self.rules.is_empty()
    }

    fn bit(&self, id: Id) -> bool {
        self.allowed[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: Id, on: bool) {
        let (w, b) = (id as usize / 64, id % 64);
        if on {
            self.allowed[w] |= 1 << b;
        } else {
            self.allowed[w] &= !(1 << b);
        }
    }

    pub fn keys(&self) -> &[KeyPattern] {
        &self.keys
    }

    pub fn channels(&self) -> &[Vec<u8>] {
        &self.channels
    }

    pub fn all_keys(&self) -> bool {
        self.all_keys
    }

    pub fn all_channels(&self) -> bool {
        self.all_channels
    }

    /// The command rules as `ACL GETUSER` shows them: `+@all -debug`, `-@all +get`.
    pub fn describe_commands(&self) -> String {
        let mut s = String::from(if self.all_future { "+@all" } else { "-@all" });
        for r in &self.rules {
            s.push(' ');
            s.push_str(r);
        }
        s
    }

    /// The key patterns: `~*`, or `~a* %R~b*` (bytes: a pattern may be any bytes but
    /// spaces).
    pub fn describe_keys(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        let mut s = Vec::new();
        for k in &self.keys {
            if !s.is_empty() {
                s.push(b' ');
            }
            s.extend_from_slice(match k.perms {
                keyspec::NEED_READ => b"%R~",
                keyspec::NEED_WRITE => b"%W~",
                _ => b"~",
            });
            s.extend_from_slice(&k.pattern);
        }
        s
    }

    /// The channel patterns: `&*`, or `&a &b`.
    pub fn describe_channels(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        let mut s = Vec::new();
        for c in &self.channels {
            if !s.is_empty() {
                s.push(b' ');
            }
            s.push(b'&');
            s.extend_from_slice(c);
        }
        s
    }

    /// As `ACL LIST` writes it: keys, channels (`resetchannels` first unless all), commands.
    pub fn describe(&self) -> Vec<u8> {
        let mut s = Vec::new();
        let keys = self.describe_keys();
        if !keys.is_empty() {
            s.extend_from_slice(&keys);
            s.push(b' ');
        }
        if self.all_channels {
            s.extend_from_slice(b"&* ");
        } else {
            s.extend_from_slice(b"resetchannels ");
            let ch = self.describe_channels();
            if !ch.is_empty() {
                s.extend_from_slice(&ch);
                s.push(b' ');
            }
        }
        s.extend_from_slice(self.describe_commands().as_bytes());
        s
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::new()
    }
}

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// `Some(true)`: `sanitize-payload`; `Some(false)`: `skip-sanitize-payload`.
    pub sanitize: Option<bool>,
    /// SHA-256 of each password, in the order added.
    pub passwords: Vec<[u8; 32]>,
    pub root: Selector,
    pub selectors: Vec<Selector>,
}

impl User {
    /// A new user: off, no password, nothing allowed (`acl-pubsub-default resetchannels`).
    pub fn new(name: &str) -> Self {
        User {
            name: name.into(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            root: Selector::new(),
            selectors: Vec::new(),
        }
    }

    /// The default user of a fresh server: `on nopass ~* &* +@all`.
    pub fn default_user() -> Self {
        let mut u = User::new("default");
        for r in ["on", "nopass", "~*", "&*", "+@all"] {
            u.apply(r.as_bytes())
                .expect("the default user's rules are valid");
        }
        u
    }

    /// Whether every command, key and channel is allowed (checks can be skipped).
    pub fn unrestricted(&self) -> bool {
        self.root.unrestricted()
    }

    /// Whether `password` opens this user (enabled, and no password needed or one matching).
    pub fn password_ok(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = sha256(password);
        // Every stored hash is compared in full, matching or not.
        self.passwords.iter().fold(false, |ok, p| {
            ok | (p.iter().zip(&h).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0)
        })
    }

    /// The flags `ACL GETUSER` lists.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(true) => f.push("sanitize-payload"),
            Some(false) => f.push("skip-sanitize-payload"),
            None => {}
        }
        f
    }

    /// The user as `ACL LIST` and the aclfile write it, without the leading `user <name> `.
    pub fn describe(&self) -> Vec<u8> {
        let mut s = self.flags().join(" ").into_bytes();
        for p in &self.passwords {
            s.extend_from_slice(b" #");
            s.extend_from_slice(hex(p).as_bytes());
        }
        s.push(b' ');
        s.extend_from_slice(&self.root.describe());
        for sel in &self.selectors {
            s.extend_from_slice(b" (");
            s.extend_from_slice(&sel.describe());
            s.push(b')');
        }
        s
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}
