//! ACL rules (`shardline_shards::acl`, issue 21), as any client with ACL SETUSER, an aclfile
//! or a `user` line may write them: the fuzzer's bytes are words (split at spaces and
//! newlines) given to ACL SETUSER, then a command checked against the user, then the whole
//! text read as an aclfile, as an ACL entry of the metadata group's log and as a snapshot's
//! users. Never panics; a refused SETUSER changes nothing; what ACL LIST
//! says of the user reads back as the same user (what ACL SAVE persists is what was set).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::acl::wire::{AclEntry, decode_users};
use shardline_shards::acl::{User, Users, check};
use shardline_shards::command::{Args, Span, lookup, words_into};

fuzz_target!(|data: &[u8]| {
    let words: Vec<&[u8]> = data
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|w| !w.is_empty())
        .collect();
    let (rules, cmd) = match words.iter().position(|w| *w == b"|") {
        Some(at) => (&words[..at], &words[at + 1..]),
        None => (&words[..], &words[..0]),
    };
    let mut users = Users::new();
    let before = users.clone();
    if users.set(b"u", rules).is_err() {
        assert_eq!(users, before, "a refused SETUSER changed the users");
    }
    if let Some(u) = users.get(b"u") {
        let text = u.describe();
        let back: Vec<&[u8]> = text.split(|&b| b == b' ').collect();
        let mut again = User::new("u");
        again
            .apply_all(&back)
            .unwrap_or_else(|e| {
                panic!("{} does not read back: {}", String::from_utf8_lossy(&text), e.0)
            });
        assert_eq!(again.describe(), text);
        if let Some(spec) = cmd.first().and_then(|n| lookup(n)) {
            let (mut buf, mut spans): (Vec<u8>, Vec<Span>) = (Vec::new(), Vec::new());
            words_into(cmd, &mut buf, &mut spans);
            let args = Args::new(&buf, &spans);
            assert_eq!(check(u, spec, args), check(&again, spec, args));
        }
    }
    let _ = Users::parse(data, "fuzz");
    // The same bytes as a metadata-group entry and as a snapshot's users part, as a peer's
    // log or snapshot may carry them: never a panic; an entry that applies changes the users
    // only if it answers OK (or a count).
    if let Ok(entry) = AclEntry::decode(data) {
        let mut users = None;
        if entry.apply(&mut users).is_err() {
            assert!(users.is_none(), "a refused entry took its seed");
        }
    }
    let _ = decode_users(data);
});
