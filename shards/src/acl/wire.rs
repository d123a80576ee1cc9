//! Users as cluster data: an ACL change is an entry of the metadata group's log (`ACL_TAG`),
//! applied alike by every node, and the users are part of that group's snapshot (as the
//! aclfile's text). A cluster holds no users until the first change: each node then uses its
//! configuration's; the first change carries its node's users as the seed it applies to.

use super::{SetError, Users};
use shardline_transport::wire::{self, Reader, WireError, WireErrorKind};

/// The first byte of an ACL entry of the metadata group (beside `FN_TAG`, `SEQ_TAG`, ...).
pub const ACL_TAG: u8 = 0xC9;
const VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclCmd {
    /// ACL SETUSER (and the default user's password).
    Set { name: Vec<u8>, rules: Vec<Vec<u8>> },
    /// ACL DELUSER.
    Del { names: Vec<Vec<u8>> },
    /// ACL LOAD: the users of an aclfile replace the cluster's.
    Load { file: Vec<u8>, source: String },
}

/// An entry: the change, and the users of the node that proposed it (its configuration's,
/// taken if the cluster holds none yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub seed: Vec<u8>,
    pub cmd: AclCmd,
}

/// What an applied entry answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclApplied {
    Ok,
    Deleted(i64),
}

impl AclEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(ACL_TAG);
        out.push(VERSION);
        wire::put_bytes_u32(out, &self.seed);
        match &self.cmd {
            AclCmd::Set { name, rules } => {
                out.push(1);
                wire::put_bytes_varint(out, name);
                wire::put_varint(out, rules.len() as u64);
                for r in rules {
                    wire::put_bytes_varint(out, r);
                }
            }
            AclCmd::Del { names } => {
                out.push(2);
                wire::put_varint(out, names.len() as u64);
                for n in names {
                    wire::put_bytes_varint(out, n);
                }
            }
            AclCmd::Load { file, source } => {
                out.push(3);
                wire::put_bytes_u32(out, file);
                wire::put_bytes_varint(out, source.as_bytes());
            }
        }
    }

    /// Decodes an entry's bytes after `ACL_TAG`.
    pub fn decode(b: &[u8]) -> Result<AclEntry, WireError> {
        let mut r = Reader::new(b);
        let v = r.u8()?;
        if v != VERSION {
            return Err(r.error(WireErrorKind::Flag(v)));
        }
        let seed = r.bytes_u32()?.to_vec();
        let words = |r: &mut Reader| -> Result<Vec<Vec<u8>>, WireError> {
            let n = r.varint()?;
            let n = r.count(n, 1)?;
            (0..n)
                .map(|_| r.bytes_varint().map(<[u8]>::to_vec))
                .collect()
        };
        let cmd = match r.u8()? {
            1 => AclCmd::Set {
                name: r.bytes_varint()?.to_vec(),
                rules: words(&mut r)?,
            },
            2 => AclCmd::Del {
                names: words(&mut r)?,
            },
            3 => AclCmd::Load {
                file: r.bytes_u32()?.to_vec(),
                source: String::from_utf8_lossy(r.bytes_varint()?).into_owned(),
            },
            b => return Err(r.error(WireErrorKind::Flag(b))),
        };
        r.finish()?;
        Ok(AclEntry { seed, cmd })
    }

    /// Applies the entry to the cluster's users (`None`: none yet; the seed is taken), all or
    /// nothing: the answer, or the error to reply (`ERR ...`) with nothing changed.
    pub fn apply(&self, users: &mut Option<Users>) -> Result<AclApplied, String> {
        let mut next = match users {
            Some(u) => u.clone(),
            // A seed that does not read (it was written by a node's own users) is no seed.
            None => Users::parse(&self.seed, "seed").unwrap_or_default(),
        };
        let answer = match &self.cmd {
            AclCmd::Set { name, rules } => {
                next.set(name, rules)
                    .map_err(|SetError(e)| format!("ERR {e}"))?;
                AclApplied::Ok
            }
            AclCmd::Del { names } => {
                let mut n = 0;
                for name in names {
                    n += next
                        .delete(name)
                        .map_err(|SetError(e)| format!("ERR {e}"))? as i64;
                }
                AclApplied::Deleted(n)
            }
            AclCmd::Load { file, source } => {
                next = Users::parse(file, source).map_err(|e| {
                    format!("ERR {e} WARNING: ACL errors detected, no change to the previously active ACL rules was performed")
                })?;
                AclApplied::Ok
            }
        };
        *users = Some(next);
        Ok(answer)
    }
}

/// The users' part of the metadata group's snapshot: present or not, then the aclfile text.
pub fn encode_users(users: Option<&Users>, out: &mut Vec<u8>) {
    match users {
        None => out.push(0),
        Some(u) => {
            out.push(1);
            out.extend_from_slice(&u.to_file());
        }
    }
}

/// Reads `encode_users`' bytes; an error says why (the text of an aclfile that does not read).
pub fn decode_users(b: &[u8]) -> Result<Option<Users>, String> {
    match b.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, text)) => Users::parse(text, "the snapshot's users").map(Some),
        _ => Err("the users' part of the metadata snapshot does not decode".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_apply_all_or_nothing_over_the_seed() {
        let mut seed = Users::new();
        seed.set(b"admin", &["on", ">pw", "+@all", "~*"]).unwrap();
        let entry = AclEntry {
            seed: seed.to_file(),
            cmd: AclCmd::Set {
                name: b"app".to_vec(),
                rules: vec![b"on".to_vec(), b"+get".to_vec(), b"~a:*".to_vec()],
            },
        };
        let mut b = Vec::new();
        entry.encode(&mut b);
        assert_eq!(b[0], ACL_TAG);
        assert_eq!(AclEntry::decode(&b[1..]), Ok(entry.clone()));
        for cut in 1..b.len() {
            assert!(AclEntry::decode(&b[1..cut]).is_err(), "cut at {cut}");
        }
        let mut users = None;
        assert_eq!(entry.apply(&mut users), Ok(AclApplied::Ok));
        let u = users.as_ref().unwrap();
        assert!(u.get(b"admin").is_some() && u.get(b"app").is_some());
        // A refused change changes nothing, and a later seed is not taken.
        let bad = AclEntry {
            seed: Users::new().to_file(),
            cmd: AclCmd::Set {
                name: b"app".to_vec(),
                rules: vec![b"+nocmd".to_vec()],
            },
        };
        let before = users.clone();
        assert!(
            bad.apply(&mut users)
                .unwrap_err()
                .starts_with("ERR Error in ACL SETUSER")
        );
        assert_eq!(users, before);
        let del = AclEntry {
            seed: Vec::new(),
            cmd: AclCmd::Del {
                names: vec![b"app".to_vec(), b"nobody".to_vec()],
            },
        };
        assert_eq!(del.apply(&mut users), Ok(AclApplied::Deleted(1)));
        let mut none = None;
        let bad_first = AclEntry {
            seed: seed.to_file(),
            cmd: bad.cmd.clone(),
        };
        assert!(bad_first.apply(&mut none).is_err());
        assert_eq!(none, None, "a refused first change takes no seed");
        let mut part = Vec::new();
        encode_users(users.as_ref(), &mut part);
        assert_eq!(decode_users(&part), Ok(users.clone()));
        let mut empty = Vec::new();
        encode_users(None, &mut empty);
        assert_eq!(decode_users(&empty), Ok(None));
        assert!(decode_users(&[2]).is_err());
    }
}
