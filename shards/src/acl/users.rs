//! The set of users (what `ACL SETUSER`, `DELUSER`, `LOAD` change; what `ACL LIST`, `SAVE`
//! and an aclfile hold) and ACL LOG.

use super::User;
use super::rules::SetError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Every user by name (sorted, as `ACL USERS` and `ACL LIST` give them). `default` is always
/// there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    map: BTreeMap<String, Arc<User>>,
}

impl Default for Users {
    fn default() -> Self {
        Users::new()
    }
}

impl Users {
    /// Only the default user, allowed everything without a password.
    pub fn new() -> Self {
        let mut map = BTreeMap::new();
        map.insert("default".to_string(), Arc::new(User::default_user()));
        Users { map }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        std::str::from_utf8(name).ok().and_then(|n| self.map.get(n))
    }

    pub fn default_user(&self) -> &Arc<User> {
        &self.map["default"]
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.map.values()
    }

    /// `ACL SETUSER name rules...`: creates the user if it does not exist; all or nothing.
    pub fn set<A: AsRef<[u8]>>(&mut self, name: &[u8], rules: &[A]) -> Result<(), SetError> {
        if name.iter().any(|&b| b == b' ' || b == 0) || std::str::from_utf8(name).is_err() {
            return Err(SetError(
                "Usernames can't contain spaces or null characters".into(),
            ));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut u = match self.map.get(&name) {
            Some(u) => User::clone(u),
            None => User::new(&name),
        };
        u.apply_all(rules)?;
        self.map.insert(name, Arc::new(u));
        Ok(())
    }

    /// `ACL DELUSER`: whether it existed. The default user cannot go.
    pub fn delete(&mut self, name: &[u8]) -> Result<bool, SetError> {
        if name == b"default" {
            return Err(SetError("The 'default' user cannot be removed".into()));
        }
        Ok(std::str::from_utf8(name).is_ok_and(|n| self.map.remove(n).is_some()))
    }

    /// `requirepass`: the default user's password (`None`: no password needed).
    pub fn set_requirepass(&mut self, pass: Option<&[u8]>) {
        let mut rules: Vec<Vec<u8>> = vec![b"resetpass".to_vec()];
        match pass {
            Some(p) => rules.push([b">".as_slice(), p].concat()),
            None => rules.push(b"nopass".to_vec()),
        }
        self.set(b"default", &rules)
            .expect("password rules are always valid");
    }

    /// `ACL LIST`: one `user <name> <rules>` line per user.
    pub fn list(&self) -> Vec<Vec<u8>> {
        self.map
            .values()
            .map(|u| [format!("user {} ", u.name).as_bytes(), &u.describe()].concat())
            .collect()
    }

    /// What `ACL SAVE` writes: the lines of `list`, each ending in a newline.
    pub fn to_file(&self) -> Vec<u8> {
        let mut s = Vec::new();
        for l in self.list() {
            s.extend_from_slice(&l);
            s.push(b'\n');
        }
        s
    }

    /// Reads an aclfile (or the config's `user` lines): `user <name> <rules...>` per line,
    /// blank lines and `#` comments skipped. Every error is reported with its line, and any
    /// error refuses the whole file (errors read `<source>:<line>: <what>.`). A file that does
    /// not define `default` gets the default user of a fresh server.
    pub fn parse(text: &[u8], source: &str) -> Result<Users, String> {
        Users::parse_with(text, source, false)
    }

    /// `parse`, new users starting with every channel when `all_channels`
    /// (`acl-pubsub-default allchannels`).
    pub fn parse_with(text: &[u8], source: &str, all_channels: bool) -> Result<Users, String> {
        let mut users = Users::new();
        let mut seen = std::collections::HashSet::new();
        let mut errors = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let words: Vec<&[u8]> = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() || words[0].starts_with(b"#") {
                continue;
            }
            let name = String::from_utf8_lossy(words.get(1).copied().unwrap_or_default());
            if words[0] != b"user" || words.len() < 2 {
                errors.push(format!(
                    "{source}:{}: should start with user keyword.",
                    n + 1
                ));
                continue;
            }
            if !seen.insert(words[1]) {
                errors.push(format!(
                    "{source}:{}: Duplicate user '{name}' found.",
                    n + 1
                ));
                continue;
            }
            if words[1] == b"default" {
                // The file says all of it: start from nothing.
                users
                    .map
                    .insert("default".into(), Arc::new(User::new("default")));
            }
            let rules = with_pubsub_default(&words[2..], true, all_channels);
            if let Err(e) = users.set(words[1], &rules) {
                errors.push(format!("{source}:{}: {}.", n + 1, e.0));
            }
        }
        if errors.is_empty() {
            Ok(users)
        } else {
            Err(errors.join(" "))
        }
    }
}

/// The rules of an ACL SETUSER as `acl-pubsub-default allchannels` makes them: a new user
/// starts with every channel, and so does one `reset`. (The users are the cluster's: this is
/// applied where the change is made, so every node applies the same rules.)
pub fn with_pubsub_default<'a>(rules: &[&'a [u8]], new: bool, all_channels: bool) -> Vec<&'a [u8]> {
    if !all_channels {
        return rules.to_vec();
    }
    let mut out = Vec::with_capacity(rules.len() + 2);
    if new {
        out.push(b"allchannels".as_slice());
    }
    for r in rules {
        out.push(r);
        if r.eq_ignore_ascii_case(b"reset") {
            out.push(b"allchannels".as_slice());
        }
    }
    out
}

/// What ACL LOG records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogReason {
    Command,
    Key,
    Channel,
    Auth,
}

impl LogReason {
    pub fn name(self) -> &'static str {
        match self {
            LogReason::Command => "command",
            LogReason::Key => "key",
            LogReason::Channel => "channel",
            LogReason::Auth => "auth",
        }
    }
}

/// One ACL LOG line: denials alike (same reason, context, object and user) within a minute
/// of each other are counted in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub count: u64,
    pub reason: LogReason,
    /// `toplevel`, `multi`, `lua` (where the command was).
    pub context: &'static str,
    pub object: String,
    pub username: String,
    pub client_info: String,
    pub entry_id: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// ACL LOG: newest first, at most `max_len` entries.
#[derive(Clone, Debug, Default)]
pub struct Log {
    entries: VecDeque<LogEntry>,
    next_id: u64,
}

/// Denials alike within this long are counted in one entry (Redis's 60 s).
const GROUP_MS: u64 = 60_000;

impl Log {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        reason: LogReason,
        context: &'static str,
        object: String,
        username: String,
        client_info: String,
        now_ms: u64,
        max_len: usize,
    ) {
        let same = self.entries.iter().position(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now_ms.saturating_sub(e.updated_ms) <= GROUP_MS
        });
        if let Some(i) = same {
            let mut e = self.entries.remove(i).expect("found above");
            e.count += 1;
            e.updated_ms = now_ms;
            e.client_info = client_info;
            self.entries.push_front(e);
        } else {
            self.entries.push_front(LogEntry {
                count: 1,
                reason,
                context,
                object,
                username,
                client_info,
                entry_id: self.next_id,
                created_ms: now_ms,
                updated_ms: now_ms,
            });
            self.next_id += 1;
        }
        self.entries.truncate(max_len);
    }

    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}
