//! The check a connection makes before it runs a command: one selector of the user must allow
//! the command, every key it names (with the access the key spec says) and every channel.

use super::keyspec::{K_VARIABLE_FLAGS, NEED_READ, NEED_WRITE, needs};
use super::{Id, Selector, User, command_id, entry, has_subcommands, subcommand};
use crate::command::{Args, CommandSpec, flags};
use crate::glob::glob_match;

/// What was refused. The order is Redis's: when no selector allows a command, the reason
/// reported is the one that got furthest (a key beats the command, a channel beats a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeniedKind {
    Command,
    Key,
    Channel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    pub kind: DeniedKind,
    /// The refused key's or channel's argument index (0 for the command).
    pub arg: usize,
    /// The command's ACL id (a subcommand's if it has one): `super::entry(id).name` names it
    /// as Redis does (`config|get`).
    pub id: Id,
}

/// The ACL id of a command as called: the subcommand's if it is a known one.
pub fn command_id_of(spec: &'static CommandSpec, args: Args) -> (Id, bool) {
    let id = command_id(spec);
    if args.len() >= 2
        && has_subcommands(id)
        && let Some(sub) = subcommand(id, args.get(1))
    {
        return (sub, true);
    }
    (id, false)
}

/// Whether `user` may run this command with these arguments.
#[inline]
pub fn check(user: &User, spec: &'static CommandSpec, args: Args) -> Result<(), Denied> {
    if user.unrestricted() {
        return Ok(());
    }
    check_command(user, spec, args)
}

/// `check` without the shortcut for a user allowed everything.
pub fn check_command(user: &User, spec: &'static CommandSpec, args: Args) -> Result<(), Denied> {
    check_command_with(user, spec, args, &mut Vec::new())
}

/// `check_command` with a buffer for the keys' needed access, kept by the caller between
/// commands (a connection's: no allocation per command).
pub fn check_command_with(
    user: &User,
    spec: &'static CommandSpec,
    args: Args,
    scratch: &mut Vec<(usize, u8)>,
) -> Result<(), Denied> {
    let (id, is_sub) = command_id_of(spec, args);
    let mut keys = Keys {
        found: false,
        buf: scratch,
    };
    let mut worst: Option<Denied> = None;
    for sel in std::iter::once(&user.root).chain(&user.selectors) {
        match check_selector(sel, spec, id, is_sub, args, &mut keys) {
            Ok(()) => return Ok(()),
            Err(d) => {
                if worst.is_none_or(|w| d.kind > w.kind || (d.kind == w.kind && d.arg > w.arg)) {
                    worst = Some(d);
                }
            }
        }
    }
    Err(worst.unwrap_or(Denied {
        kind: DeniedKind::Command,
        arg: 0,
        id,
    }))
}

fn check_selector(
    sel: &Selector,
    spec: &'static CommandSpec,
    id: Id,
    is_sub: bool,
    args: Args,
    keys: &mut Keys,
) -> Result<(), Denied> {
    let denied = |kind, arg| Denied { kind, arg, id };
    if spec.flags & flags::NO_AUTH == 0 && !sel.allows_command(id, is_sub, args) {
        return Err(denied(DeniedKind::Command, 0));
    }
    if !sel.all_keys {
        if !keys.found {
            key_needs(spec, id, args, keys.buf);
            keys.found = true;
        }
        for &(at, need) in keys.buf.iter() {
            let key = args.get(at);
            let ok = sel
                .keys
                .iter()
                .any(|k| k.perms & need == need && glob_match(&k.pattern, key));
            if !ok {
                return Err(denied(DeniedKind::Key, at));
            }
        }
    }
    if !sel.all_channels {
        let (from, pattern) = match spec.name {
            "publish" | "spublish" => (1, false),
            "subscribe" | "ssubscribe" => (1, false),
            "psubscribe" => (1, true),
            _ => return Ok(()),
        };
        let to = if matches!(spec.name, "publish" | "spublish") {
            2.min(args.len())
        } else {
            args.len()
        };
        for at in from..to {
            let ch = args.get(at);
            let ok = sel.channels.iter().any(|p| {
                if pattern {
                    p.as_slice() == ch
                } else {
                    glob_match(p, ch)
                }
            });
            if !ok {
                return Err(denied(DeniedKind::Channel, at));
            }
        }
    }
    Ok(())
}

/// Every key argument of the command and the access it needs (`NEED_READ`, `NEED_WRITE`,
/// both or neither). Positions come from the key specs, as Redis finds them; then every key
/// the command will route by (`CommandSpec::keys_of`) that they did not name is added with
/// the strictest access the specs give, so nothing the command touches goes unchecked.
fn key_needs(spec: &'static CommandSpec, id: Id, args: Args, out: &mut Vec<(usize, u8)>) {
    let e = entry(id);
    out.clear();
    let mut strictest = 0;
    for ks in e.keys {
        let mut flags = ks.flags;
        if flags & K_VARIABLE_FLAGS != 0 {
            flags = variable_flags(e.name, args).unwrap_or(flags);
        }
        strictest |= needs(ks.flags);
        if let Some((first, last, step)) = ks.range(args) {
            let n = needs(flags);
            for at in (first..=last).step_by(step) {
                out.push((at, n));
            }
        }
    }
    if e.keys.is_empty() {
        strictest = NEED_READ | NEED_WRITE;
    }
    if matches!(e.name, "sort" | "sort_ro")
        && let Some(at) = crate::command::sort::store_key_index(&args)
    {
        out.push((at, NEED_WRITE));
    }
    // (Sorted to look the routed keys up: a command of thousands of keys stays linear-ish.)
    out.sort_unstable_by_key(|&(at, _)| at);
    let named = out.len();
    for at in spec.keys_of(args) {
        if at < args.len() && out[..named].binary_search_by_key(&at, |&(p, _)| p).is_err() {
            out.push((at, strictest));
        }
    }
}

/// The keys' needed access, found once per command for all selectors.
struct Keys<'a> {
    found: bool,
    buf: &'a mut Vec<(usize, u8)>,
}

/// SET needs read access only with GET; BITFIELD only write access with SET or INCRBY.
fn variable_flags(name: &str, args: Args) -> Option<u16> {
    use super::keyspec::*;
    match name {
        "set" => Some(
            if args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
                K_RW | K_ACCESS | K_UPDATE
            } else {
                K_OW | K_UPDATE
            },
        ),
        "bitfield" => {
            let mut i = 2;
            let mut readonly = true;
            while i < args.len() {
                let rest = args.len() - i - 1;
                let a = args.get(i);
                if a.eq_ignore_ascii_case(b"get") && rest >= 2 {
                    i += 3;
                } else if a.eq_ignore_ascii_case(b"overflow") && rest >= 1 {
                    i += 2;
                } else {
                    // SET, INCRBY, or a syntax error: take it as a write.
                    readonly = false;
                    break;
                }
            }
            Some(if readonly {
                K_RO | K_ACCESS
            } else {
                K_RW | K_ACCESS | K_UPDATE
            })
        }
        _ => None,
    }
}

/// What ACL LOG records of a denial: its reason, and its object (the command's name as Redis
/// writes it, or the refused key or channel).
pub fn denial_log(d: &Denied, args: Args) -> (super::LogReason, String) {
    use super::LogReason;
    match d.kind {
        DeniedKind::Command => (LogReason::Command, entry(d.id).name.to_string()),
        DeniedKind::Key => (
            LogReason::Key,
            String::from_utf8_lossy(args.get(d.arg)).into_owned(),
        ),
        DeniedKind::Channel => (
            LogReason::Channel,
            String::from_utf8_lossy(args.get(d.arg)).into_owned(),
        ),
    }
}

/// The error a refused command is answered (Redis 7.2's wording: the command is named, a key
/// or a channel is not).
pub fn denial_message(d: &Denied, user: &str) -> String {
    match d.kind {
        DeniedKind::Command => format!(
            "NOPERM User {user} has no permissions to run the '{}' command",
            entry(d.id).name
        ),
        DeniedKind::Key => "NOPERM No permissions to access a key".to_string(),
        DeniedKind::Channel => "NOPERM No permissions to access a channel".to_string(),
    }
}

thread_local! {
    /// The user a script runs for on this thread (`set_caller`), whose permissions its
    /// `redis.call`s are checked against; `None`: allowed everything.
    static CALLER: std::cell::RefCell<Option<std::sync::Arc<User>>> =
        const { std::cell::RefCell::new(None) };
}

/// Puts back the caller before `set_caller` when dropped.
pub struct CallerGuard(Option<std::sync::Arc<User>>);

impl Drop for CallerGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CALLER.with(|c| *c.borrow_mut() = prev);
    }
}

/// Runs what follows (until the guard drops) for `user` (`None`: a user allowed
/// everything): the commands a script calls are checked against it. The driver sets it
/// around a client's job, and around a script it deferred.
pub fn set_caller(user: Option<std::sync::Arc<User>>) -> CallerGuard {
    let user = user.filter(|u| !u.unrestricted());
    CallerGuard(CALLER.with(|c| std::mem::replace(&mut *c.borrow_mut(), user)))
}

/// The user set by `set_caller`, if it is restricted.
pub fn caller() -> Option<std::sync::Arc<User>> {
    CALLER.with(|c| c.borrow().clone())
}

/// Where a shard thread's scripts report what their callers were refused (ACL LOG, context
/// `lua`): the reason, the object (command, key or channel) and the user.
pub type DenialSink = std::sync::Arc<dyn Fn(super::LogReason, String, &str) + Send + Sync>;

thread_local! {
    static SINK: std::cell::RefCell<Option<DenialSink>> = const { std::cell::RefCell::new(None) };
}

/// Sets this thread's `DenialSink` (the driver's ACL LOG), once per shard thread.
pub fn set_denial_sink(sink: DenialSink) {
    SINK.with(|s| *s.borrow_mut() = Some(sink));
}

/// Checks a command a script calls against the caller: the error to raise if refused (the
/// refusal also goes to the thread's `DenialSink`).
pub fn check_caller(spec: &'static CommandSpec, args: Args) -> Result<(), String> {
    CALLER.with(|c| match c.borrow().as_deref() {
        None => Ok(()),
        Some(u) => check_command(u, spec, args).map_err(|d| {
            let (reason, object) = denial_log(&d, args);
            SINK.with(|s| {
                if let Some(sink) = s.borrow().as_ref() {
                    sink(reason, object, &u.name);
                }
            });
            denial_message(&d, &u.name)
        }),
    })
}

/// SORT's BY and GET patterns name keys found only as it runs: Redis allows them only to a
/// user one of whose selectors allows the command on every key (reading).
pub fn sort_patterns_allowed(user: &User, spec: &'static CommandSpec, args: Args) -> bool {
    if user.unrestricted() {
        return true;
    }
    let (id, is_sub) = command_id_of(spec, args);
    std::iter::once(&user.root)
        .chain(&user.selectors)
        .any(|sel| {
            (spec.flags & flags::NO_AUTH != 0 || sel.allows_command(id, is_sub, args))
                && (sel.all_keys
                    || sel
                        .keys
                        .iter()
                        .any(|k| k.pattern == b"*" && k.perms & NEED_READ != 0))
        })
}

/// Whether a SORT's arguments use a BY or GET pattern (BY without `*` only skips sorting,
/// GET `#` is the element itself).
pub fn sort_uses_patterns(args: Args) -> Option<&'static str> {
    let mut i = 2;
    while i + 1 < args.len() {
        let (opt, val) = (args.get(i), args.get(i + 1));
        if opt.eq_ignore_ascii_case(b"by") && val.contains(&b'*') {
            return Some("BY");
        }
        if opt.eq_ignore_ascii_case(b"get") && val != b"#" {
            return Some("GET");
        }
        i += 1;
    }
    None
}
