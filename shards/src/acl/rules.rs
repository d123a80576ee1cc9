//! The rules' grammar: what `ACL SETUSER` arguments and aclfile `user` lines do to a user.

use super::keyspec::{NEED_READ, NEED_WRITE};
use super::{
    Id, KeyPattern, Selector, User, cats, entry, has_subcommands, lookup, with_subcommands,
};

/// Why a rule was refused (Redis's wording, after "Error in ACL SETUSER modifier '...': ").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    Unknown,
    Syntax,
    KeyAfterAll,
    ChannelAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl RuleError {
    pub fn message(self) -> &'static str {
        match self {
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeyAfterAll => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
            }
            RuleError::ChannelAfterAll => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        }
    }
}

/// A refused `ACL SETUSER` (or `user` line): the reply's text after `ERR `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetError(pub String);

impl User {
    /// Applies the rules of one `ACL SETUSER` (or aclfile line) in order, all or nothing:
    /// on an error the user is as it was. Arguments from one starting with `(` to one ending
    /// with `)` form one selector, as Redis joins them.
    pub fn apply_all<A: AsRef<[u8]>>(&mut self, rules: &[A]) -> Result<(), SetError> {
        let merged = merge_selectors(rules)?;
        let mut next = self.clone();
        for r in &merged {
            next.apply(r).map_err(|e| {
                SetError(format!(
                    "Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(r),
                    e.message()
                ))
            })?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one rule. On an error the user may be partly changed: `apply_all` works on a
    /// copy.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_slice() {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"sanitize-payload" => self.sanitize = Some(true),
            b"skip-sanitize-payload" => self.sanitize = Some(false),
            b"clearselectors" => self.selectors.clear(),
            b"reset" => {
                for r in [
                    "resetpass",
                    "resetkeys",
                    "resetchannels",
                    "off",
                    "sanitize-payload",
                    "clearselectors",
                    "-@all",
                ] {
                    self.apply(r.as_bytes())?;
                }
            }
            _ => match rule.first() {
                Some(b'>') => {
                    let h = super::sha256(&rule[1..]);
                    if !self.passwords.contains(&h) {
                        self.passwords.push(h);
                    }
                    self.nopass = false;
                }
                Some(b'#') => {
                    let h = parse_hash(&rule[1..]).ok_or(RuleError::BadHash)?;
                    if !self.passwords.contains(&h) {
                        self.passwords.push(h);
                    }
                    self.nopass = false;
                }
                Some(b'<') => {
                    let h = super::sha256(&rule[1..]);
                    let at = self.passwords.iter().position(|p| *p == h);
                    self.passwords.remove(at.ok_or(RuleError::NoSuchPassword)?);
                }
                Some(b'!') => {
                    let h = parse_hash(&rule[1..]).ok_or(RuleError::BadHash)?;
                    let at = self.passwords.iter().position(|p| *p == h);
                    self.passwords.remove(at.ok_or(RuleError::NoSuchPassword)?);
                }
                Some(b'(') if rule.last() == Some(&b')') => {
                    let mut sel = Selector::new();
                    for word in rule[1..rule.len() - 1]
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|w| !w.is_empty())
                    {
                        // (A word ending in `)` would end the selector when read back.)
                        if word.ends_with(b")") {
                            return Err(RuleError::Syntax);
                        }
                        sel.apply(word)?;
                    }
                    self.selectors.push(sel);
                }
                _ => self.root.apply(rule)?,
            },
        }
        Ok(())
    }
}

/// Joins `(+get` `~a)` into `(+get ~a)`; an opening parenthesis never closed is an error.
fn merge_selectors<A: AsRef<[u8]>>(rules: &[A]) -> Result<Vec<Vec<u8>>, SetError> {
    let mut out = Vec::with_capacity(rules.len());
    let mut open: Option<Vec<u8>> = None;
    for r in rules {
        let r = r.as_ref();
        match open.as_mut() {
            Some(acc) => {
                acc.push(b' ');
                acc.extend_from_slice(r);
                if r.last() == Some(&b')') {
                    out.push(open.take().unwrap_or_default());
                }
            }
            None if r.first() == Some(&b'(') && r.last() != Some(&b')') => open = Some(r.to_vec()),
            None => out.push(r.to_vec()),
        }
    }
    if let Some(acc) = open {
        let first = acc.split(|&b| b == b' ').next().unwrap_or_default();
        return Err(SetError(format!(
            "Unmatched parenthesis in acl selector starting at '{}'.",
            String::from_utf8_lossy(first)
        )));
    }
    Ok(out)
}

/// A pattern may not hold spaces or NULs (they would not read back from ACL LIST or a file).
fn has_spaces(p: &[u8]) -> bool {
    p.iter()
        .any(|&b| b.is_ascii_whitespace() || b == 0 || b == 0x0b)
}

fn parse_hash(h: &[u8]) -> Option<[u8; 32]> {
    if h.len() != 64
        || !h
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let nib = |b: u8| {
        if b.is_ascii_digit() {
            b - b'0'
        } else {
            b - b'a' + 10
        }
    };
    let mut out = [0; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(h[2 * i]) << 4) | nib(h[2 * i + 1]);
    }
    Some(out)
}

impl Selector {
    /// Applies one selector rule (keys, channels, commands).
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_slice() {
            b"allkeys" => return self.apply(b"~*"),
            b"resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            b"allchannels" => return self.apply(b"&*"),
            b"resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            b"allcommands" | b"+@all" => {
                self.allowed = [!0; super::WORDS];
                self.all_future = true;
                self.rules.clear();
                self.first_args.clear();
            }
            b"nocommands" | b"-@all" => {
                self.allowed = [0; super::WORDS];
                self.all_future = false;
                self.rules.clear();
                self.first_args.clear();
            }
            _ => match rule[0] {
                b'~' | b'%' => self.add_key_pattern(rule)?,
                b'&' => {
                    if self.all_channels {
                        return Err(RuleError::ChannelAfterAll);
                    }
                    let pat = &rule[1..];
                    if has_spaces(pat) {
                        return Err(RuleError::Syntax);
                    }
                    if pat == b"*" {
                        self.all_channels = true;
                        self.channels.clear();
                    } else if !self.channels.iter().any(|c| c == pat) {
                        self.channels.push(pat.to_vec());
                    }
                }
                b'+' | b'-' if lower.get(1) == Some(&b'@') => {
                    let cat = cats::by_name(&lower[2..]).ok_or(RuleError::Unknown)?;
                    let allow = rule[0] == b'+';
                    self.update_rules(&lower[1..], allow);
                    for id in 0..super::ids() as Id {
                        if super::entry(id).cats & cat != 0 {
                            self.change(id, allow);
                        }
                    }
                }
                b'+' | b'-' => self.command_rule(&lower[1..], rule[0] == b'+')?,
                _ => return Err(RuleError::Syntax),
            },
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        if self.all_keys {
            return Err(RuleError::KeyAfterAll);
        }
        let (perms, pat) = if rule[0] == b'%' {
            let tilde = rule
                .iter()
                .position(|&b| b == b'~')
                .ok_or(RuleError::Syntax)?;
            let mut perms = 0;
            for &f in &rule[1..tilde] {
                perms |= match f.to_ascii_uppercase() {
                    b'R' => NEED_READ,
                    b'W' => NEED_WRITE,
                    _ => return Err(RuleError::Syntax),
                };
            }
            if perms == 0 {
                return Err(RuleError::Syntax);
            }
            (perms, &rule[tilde + 1..])
        } else {
            (NEED_READ | NEED_WRITE, &rule[1..])
        };
        if has_spaces(pat) {
            return Err(RuleError::Syntax);
        }
        if pat == b"*" && perms == NEED_READ | NEED_WRITE {
            self.all_keys = true;
            self.keys.clear();
        } else if let Some(k) = self.keys.iter_mut().find(|k| k.pattern == pat) {
            k.perms |= perms;
        } else {
            self.keys.push(KeyPattern {
                pattern: pat.to_vec(),
                perms,
            });
        }
        Ok(())
    }

    /// `+get`, `-get`, `+config|get`, `+select|0` (lower case, sign stripped).
    fn command_rule(&mut self, name: &[u8], allow: bool) -> Result<(), RuleError> {
        let Some(bar) = name.iter().position(|&b| b == b'|') else {
            let id = lookup(name).ok_or(RuleError::Unknown)?;
            self.change(id, allow);
            self.update_rules(entry(id).name.as_bytes(), allow);
            return Ok(());
        };
        let (cmd, sub) = (&name[..bar], &name[bar + 1..]);
        let parent = lookup(cmd).ok_or(RuleError::Unknown)?;
        if sub.contains(&b'|') {
            // `config|get|x`: a first argument of a subcommand (only `+` gets this far in
            // Redis; `-` finds no such command).
            return Err(if allow {
                RuleError::FirstArgOfSubcommand
            } else {
                RuleError::Unknown
            });
        }
        if sub.is_empty() {
            return Err(if allow {
                RuleError::Syntax
            } else {
                RuleError::Unknown
            });
        }
        if has_subcommands(parent) {
            let id = super::subcommand(parent, sub).ok_or(RuleError::Unknown)?;
            self.change(id, allow);
        } else if allow {
            // A first argument of a command without subcommands (`+select|0`): allowed
            // although the command is not.
            match self.first_args.iter_mut().find(|(i, _)| *i == parent) {
                Some((_, v)) => {
                    if !v.iter().any(|a| a == sub) {
                        v.push(sub.to_vec());
                    }
                }
                None => self.first_args.push((parent, vec![sub.to_vec()])),
            }
        } else {
            return Err(RuleError::Unknown);
        }
        self.update_rules(name, allow);
        Ok(())
    }

    /// Allows or denies a command and its subcommands; its first-argument exceptions go.
    fn change(&mut self, id: Id, allow: bool) {
        for i in with_subcommands(id) {
            self.set_bit(i, allow);
        }
        self.first_args.retain(|(i, _)| *i != id);
    }

    /// Records a command or category rule: any earlier rule for the same name (and, for a
    /// command, for its subcommands or first arguments) goes, the new one goes last.
    fn update_rules(&mut self, name: &[u8], allow: bool) {
        let name = String::from_utf8_lossy(name).into_owned();
        self.rules.retain(|r| {
            let r = &r[1..];
            !(r == name
                || (r.len() > name.len()
                    && r.starts_with(&name)
                    && r.as_bytes()[name.len()] == b'|'))
        });
        self.rules
            .push(format!("{}{}", if allow { '+' } else { '-' }, name));
    }

    /// Whether a command with this id and these arguments passes the command rules.
    pub(super) fn allows_command(&self, id: Id, is_sub: bool, args: crate::command::Args) -> bool {
        if self.bit(id) {
            return true;
        }
        // A first argument allowed for a command otherwise denied (never a subcommand's).
        if is_sub || args.len() < 2 {
            return false;
        }
        let arg = args.get(1);
        self.first_args
            .iter()
            .find(|(i, _)| *i == id)
            .is_some_and(|(_, v)| v.iter().any(|a| a.eq_ignore_ascii_case(arg)))
    }
}
