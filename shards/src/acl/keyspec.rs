//! Key specifications as Redis 7 describes them (COMMAND INFO's key specs): where a command's
//! keys are in its arguments and what it does to each (reads its data, writes it, or only
//! looks at its existence or size). ACL key patterns with `%R~` / `%W~` are checked against
//! these flags; the table (`super::table`) holds one list per command.

use crate::command::Args;

pub const K_RO: u16 = 1 << 0;
pub const K_RW: u16 = 1 << 1;
pub const K_OW: u16 = 1 << 2;
pub const K_RM: u16 = 1 << 3;
/// Returns, copies or otherwise uses the value's data: needs read permission.
pub const K_ACCESS: u16 = 1 << 4;
/// Overwrites the value: needs write permission (as do insert and delete).
pub const K_UPDATE: u16 = 1 << 5;
pub const K_INSERT: u16 = 1 << 6;
pub const K_DELETE: u16 = 1 << 7;
pub const K_NOT_KEY: u16 = 1 << 8;
pub const K_INCOMPLETE: u16 = 1 << 9;
/// The flags depend on the arguments (SET with or without GET, BITFIELD with only GETs).
pub const K_VARIABLE_FLAGS: u16 = 1 << 10;

/// Flag names as COMMAND INFO spells them, bit by bit.
pub const FLAG_NAMES: [&str; 11] = [
    "RO",
    "RW",
    "OW",
    "RM",
    "access",
    "update",
    "insert",
    "delete",
    "not_key",
    "incomplete",
    "variable_flags",
];

/// The permission a key needs: read (`%R~`), write (`%W~`), both, or neither (a pattern of
/// either kind matching it is enough: EXISTS, TYPE, STRLEN).
pub const NEED_READ: u8 = 1;
pub const NEED_WRITE: u8 = 2;

pub fn needs(flags: u16) -> u8 {
    let mut n = 0;
    if flags & K_ACCESS != 0 {
        n |= NEED_READ;
    }
    if flags & (K_UPDATE | K_INSERT | K_DELETE) != 0 {
        n |= NEED_WRITE;
    }
    n
}

#[derive(Clone, Copy, Debug)]
pub enum Begin {
    /// The first key is at this argument.
    Index(i32),
    /// The first key follows this keyword, searched from `startfrom` (from the end if
    /// negative).
    Keyword(&'static str, i32),
    Unknown,
}

#[derive(Clone, Copy, Debug)]
pub enum Find {
    /// Keys up to `last` (relative to the first key; from the end if negative, or a `1/limit`
    /// share of what remains), every `step`.
    Range {
        last: i32,
        step: i32,
        limit: i32,
    },
    /// The key count is at `at` (relative to the begin), keys from `first` on, every `step`.
    Keynum {
        at: i32,
        first: i32,
        step: i32,
    },
    Unknown,
}

#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    pub flags: u16,
    pub begin: Begin,
    pub find: Find,
}

/// One command (or subcommand) as ACL rules see it.
pub struct Entry {
    /// `get`, or `config|get` for a subcommand.
    pub name: &'static str,
    /// Category bits (`super::cats`).
    pub cats: u32,
    pub keys: &'static [KeySpec],
}

pub const fn e(name: &'static str, cats: u32, keys: &'static [KeySpec]) -> Entry {
    Entry { name, cats, keys }
}

impl KeySpec {
    /// The argument range `(first, last, step)` this spec names in `args`, or `None` when it
    /// cannot say (an unknown spec, a keyword not found, a count out of range: Redis then
    /// leaves it to the command's own parsing, which refuses the arguments).
    pub fn range(&self, args: Args) -> Option<(usize, usize, usize)> {
        let argc = args.len() as i64;
        let first = match self.begin {
            Begin::Index(i) => i as i64,
            Begin::Keyword(kw, from) => {
                let (mut i, end, step) = if from > 0 {
                    (from as i64, argc - 1, 1)
                } else {
                    (argc + from as i64, 1, -1)
                };
                let mut found = None;
                while (step > 0 && i <= end) || (step < 0 && i >= end) {
                    if i < 1 || i >= argc {
                        break;
                    }
                    if args.get(i as usize).eq_ignore_ascii_case(kw.as_bytes()) {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                found?
            }
            Begin::Unknown => return None,
        };
        let (first, last, step) = match self.find {
            Find::Range { last, step, limit } => {
                let last = if last >= 0 {
                    first + last as i64
                } else if limit <= 1 {
                    argc + last as i64
                } else {
                    first + ((argc - first) / limit as i64 + last as i64)
                };
                (first, last, step as i64)
            }
            Find::Keynum {
                at,
                first: fk,
                step,
            } => {
                let at = first + at as i64;
                if at >= argc {
                    return None;
                }
                let n = crate::num::parse_i64(args.get(at as usize)).filter(|&n| n >= 0)?;
                let first = first + fk as i64;
                (first, first + n - 1, step as i64)
            }
            Find::Unknown => return None,
        };
        if last >= argc || last < first || first >= argc || first < 1 || step < 1 {
            return None;
        }
        Some((first as usize, last as usize, step as usize))
    }
}
