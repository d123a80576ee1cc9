//! Scripts as transactions across vShards (issue 18, step 6): every participant's leader runs
//! the script alone from every participant's reads and logs its effects; they must agree.

use super::*;
use crate::calvin::seq::{Ordered, Submission, TxnId};
use crate::slot::VShardId;

/// Participant `v`'s reads of `keys` in `dbs`, own first (as the scheduler orders them).
fn reads_for(dbs: &mut [(VShardId, Db)], keys: &[Vec<u8>], v: VShardId, now_ms: u64) -> Vec<Read> {
    let layout = dbs[0].1.layout();
    let mut by: Vec<(VShardId, Vec<Read>)> = dbs
        .iter_mut()
        .map(|(w, db)| {
            let mine = keys
                .iter()
                .filter(|k| layout.vshard_of(key_slot(k)) == *w)
                .map(Vec::as_slice);
            (*w, exec::read(db, mine, now_ms))
        })
        .collect();
    by.sort_by_key(|(w, _)| *w != v);
    by.into_iter().flat_map(|(_, r)| r).collect()
}

fn ordered(seq: u64, cmds: Vec<Vec<Vec<u8>>>, layout: VShardLayout) -> Ordered {
    ordered_exec(seq, cmds, false, layout)
}

fn ordered_exec(seq: u64, cmds: Vec<Vec<Vec<u8>>>, exec: bool, layout: VShardLayout) -> Ordered {
    let keys = exec::keys_of(&cmds)
        .into_iter()
        .map(|k| (layout.vshard_of(key_slot(&k)), k))
        .collect();
    Ordered {
        seq,
        now_us: NOW_MS * 1000,
        seed: 99,
        sub: Submission {
            id: TxnId { origin: 1, n: seq },
            keys,
            cmds,
            exec,
            resp3: false,
            split: false,
            watch: None,
            block: false,
        },
        split: Default::default(),
    }
}

/// Each participant's leader runs `t` (in `leader`, a keyspace standing for its thread: its
/// Lua state) from its view of the reads; their effects.
fn run_everywhere(dbs: &mut [(VShardId, Db)], t: &Ordered) -> Vec<(VShardId, exec::Effects)> {
    let keys: Vec<Vec<u8>> = t.sub.keys.iter().map(|(_, k)| k.clone()).collect();
    let vs: Vec<VShardId> = dbs.iter().map(|(v, _)| *v).collect();
    vs.into_iter()
        .map(|v| {
            let reads = reads_for(dbs, &keys, v, NOW_MS);
            let held = t.sub.keys.iter().map(|(_, k)| k.as_slice());
            let txn = Txn {
                cmds: &t.sub.cmds,
                exec: t.sub.exec,
                now_us: t.now_us,
                seed: t.seed,
            };
            let leader = &mut dbs.iter_mut().find(|(w, _)| *w == v).unwrap().1;
            let fx = exec::run_script(leader, &reads, held, txn, Proto::Resp2)
                .expect("not stopped by SHUTDOWN");
            (v, fx)
        })
        .collect()
}

const MOVE: &str = "local v = redis.call('get', KEYS[1]) \
    redis.call('set', KEYS[2], v * 2 + math.random(1000)) \
    redis.call('del', KEYS[1]) \
    return {v, redis.call('get', KEYS[2]), redis.call('time')[1]}";

#[test]
fn a_script_across_vshards_runs_alike_on_every_participant_and_logs_its_effects() {
    let (layout, mut dbs) = two_participants();
    run(&mut dbs[0].1, &w(&["set", "from", "5"]), NOW_MS, 0);
    let t = ordered(7, vec![w(&["EVAL", MOVE, "2", "from", "to"])], layout);
    assert!(t.is_script());
    let ran = run_everywhere(&mut dbs, &t);
    // The same reply and the same values from each participant's run (its reads came in
    // another order, its Lua state is its own).
    assert_eq!(ran[0].1, ran[1].1);
    let reply = String::from_utf8_lossy(&ran[0].1.reply).into_owned();
    assert!(reply.starts_with("*3\r\n$1\r\n5\r\n"), "{reply}");
    assert!(
        reply.ends_with(&format!("{}\r\n", NOW_MS / 1000)),
        "{reply}"
    );
    let keys: Vec<&[u8]> = ran[0].1.writes.iter().map(|r| r.key.as_slice()).collect();
    assert_eq!(keys, [&b"to"[..], b"from"]);
    // Each proposes an entry with its own writes and reads; replicas apply the values.
    let keys = vec![b"from".to_vec(), b"to".to_vec()];
    for (v, fx) in ran {
        let reads = reads_for(&mut dbs, &keys, v, NOW_MS);
        let x = t.execution(v, reads, 6, layout, Some(fx.clone()));
        assert!(x.cmds.is_empty());
        assert!(
            x.reads
                .iter()
                .all(|r| layout.vshard_of(key_slot(&r.key)) == v)
        );
        assert!(x.effects.as_ref().unwrap().writes.len() == 1);
        let db = &mut dbs.iter_mut().find(|(w, _)| *w == v).unwrap().1;
        let entry = x.encode();
        assert_eq!(apply_entry(db, &entry).unwrap().as_bytes(), &fx.reply[..]);
        assert_eq!(db.vshard(v).unwrap().calvin_next, 8);
        // A repeated entry changes nothing and answers a null.
        assert_eq!(apply_entry(db, &entry).unwrap(), "$-1\r\n");
        // Its own reads are kept for a participant that asks again.
        assert_eq!(db.vshard(v).unwrap().calvin_sent[&7].len(), 1);
    }
    assert_eq!(
        run(&mut dbs[0].1, &w(&["exists", "from"]), NOW_MS, 0),
        b":0\r\n"
    );
    let to =
        String::from_utf8_lossy(&run(&mut dbs[1].1, &w(&["get", "to"]), NOW_MS, 0)).into_owned();
    assert!(
        reply.contains(&to[to.find('\n').unwrap() + 1..]),
        "{to} in {reply}"
    );
}

#[test]
fn an_effects_entry_round_trips_and_a_damaged_one_changes_nothing() {
    let (layout, mut dbs) = two_participants();
    run(&mut dbs[0].1, &w(&["set", "from", "5"]), NOW_MS, 0);
    let t = ordered(3, vec![w(&["EVAL", MOVE, "2", "from", "to"])], layout);
    let (v, fx) = run_everywhere(&mut dbs, &t).remove(0);
    let keys = vec![b"from".to_vec(), b"to".to_vec()];
    let reads = reads_for(&mut dbs, &keys, v, NOW_MS);
    let x = t.execution(v, reads, 2, layout, Some(fx));
    let e = x.encode();
    let d = crate::replicate::decode(&e).unwrap();
    let words = d.cmds.iter().map(|&(f, n)| {
        d.spans[f as usize..(f + n) as usize]
            .iter()
            .map(|&(s, t)| e[s as usize..t as usize].to_vec())
            .collect()
    });
    assert_eq!(
        exec::Execution::decode(x.now_us, x.seed, words).as_ref(),
        Some(&x)
    );
    for cut in 1..e.len() {
        let mut db = Db::new(layout, [v]);
        let (mut out, mut ends, mut clock) = (Out::new(Proto::Resp2), Vec::new(), 0);
        let mut scratch = crate::replicate::Scratch::default();
        let got = crate::replicate::apply(
            &mut db,
            &e[..cut],
            &mut clock,
            &mut out,
            &mut ends,
            &mut scratch,
        );
        assert!(got.is_err(), "cut at {cut}");
        assert_eq!(db.vshard(v).unwrap().calvin_next, 0);
    }
    // A write whose payload does not decode (a forged entry): refused, nothing applied.
    let mut forged = x;
    let fx = forged.effects.as_mut().unwrap();
    fx.writes.push(Read {
        key: b"from".to_vec(),
        value: Some((None, b"not a dump".to_vec())),
    });
    let mut db = Db::new(layout, [v]);
    run(&mut db, &w(&["set", "from", "kept"]), NOW_MS, 0);
    assert!(
        apply_entry(&mut db, &forged.encode())
            .unwrap()
            .starts_with("-ERR")
    );
    assert_eq!(
        run(&mut db, &w(&["get", "from"]), NOW_MS, 0),
        b"$4\r\nkept\r\n"
    );
    assert_eq!(db.vshard(v).unwrap().calvin_next, 0);
}

#[test]
fn a_script_across_vshards_names_only_its_keys_and_nothing_of_the_whole_keyspace() {
    let (layout, mut dbs) = two_participants();
    run(&mut dbs[0].1, &w(&["set", "other", "x"]), NOW_MS, 0);
    for (body, refused) in [
        (
            "redis.call('set', KEYS[1], 1) return redis.call('get', 'other')",
            "did not declare",
        ),
        (
            "return redis.call('dbsize')",
            "not allowed from a script whose keys",
        ),
        (
            "return redis.call('keys', '*')",
            "not allowed from a script whose keys",
        ),
        (
            "return redis.call('flushall')",
            "not allowed from a script whose keys",
        ),
    ] {
        let t = ordered(1, vec![w(&["EVAL", body, "2", "from", "to"])], layout);
        for (_, fx) in run_everywhere(&mut dbs, &t) {
            let reply = String::from_utf8_lossy(&fx.reply).into_owned();
            assert!(
                reply.starts_with("-ERR") && reply.contains(refused),
                "{body}: {reply}"
            );
            // (Redis keeps what a script wrote before its error; so do its effects.)
            let kept: Vec<&[u8]> = fx.writes.iter().map(|r| r.key.as_slice()).collect();
            assert!(kept.iter().all(|k| *k == b"from"), "{body}");
        }
    }
    let t = ordered(
        1,
        vec![w(&["EVAL", "return redis.call('ping')", "2", "from", "to"])],
        layout,
    );
    assert_eq!(run_everywhere(&mut dbs, &t)[0].1.reply, b"+PONG\r\n");
}

#[test]
fn a_script_across_vshards_stops_past_its_instruction_limit_and_keeps_nothing() {
    let mut db = Db::new_all(VShardLayout::new(1).unwrap());
    let body = "redis.call('set', KEYS[1], 'x') local n = 0 while true do n = n + 1 end";
    for limit in [1_000_000, 3_000_000] {
        db.scripts.txn = Some(crate::script::TxnRun {
            held: [b"k".to_vec()].into_iter().collect(),
            library: None,
            instructions_max: limit,
        });
        let reply =
            String::from_utf8_lossy(&run(&mut db, &w(&["EVAL", body, "1", "k"]), NOW_MS, 0))
                .into_owned();
        assert!(
            reply.contains("ran past the instructions a script across vShards may run"),
            "{reply}"
        );
        assert!(db.scripts.written.is_empty(), "nothing of it is kept");
    }
    // Outside a transaction the same state runs scripts without the count.
    db.scripts.txn = None;
    let reply = run(
        &mut db,
        &w(&[
            "EVAL",
            "local n = 0 for i = 1, 3000000 do n = n + 1 end return n",
            "0",
        ]),
        NOW_MS,
        0,
    );
    assert_eq!(reply, b":3000000\r\n");
}

const LIB_V1: &str =
    "#!lua name=lib\nredis.register_function('f', function(keys, args) return 'v1' end)";
const LIB_V2: &str = "#!lua name=lib\nredis.register_function('f', function(keys, args) redis.call('set', keys[1], 'v2') return 'v2' end)";

#[test]
fn the_origin_resolves_a_script_and_fcall_runs_the_library_it_carried() {
    let (layout, mut dbs) = two_participants();
    let origin = &mut dbs[0].1;
    // EVALSHA goes as EVAL with the body; an unknown one is refused at the origin.
    run(origin, &w(&["SCRIPT", "LOAD", "return 1"]), NOW_MS, 0);
    let sha = crate::script::sha1::hex(b"return 1");
    let mut cmds = vec![w(&["evalsha", &sha, "2", "from", "to"])];
    exec::resolve_script(origin, &mut cmds).unwrap();
    assert_eq!(cmds, vec![w(&["EVAL", "return 1", "2", "from", "to"])]);
    let mut cmds = vec![w(&["EVALSHA_RO", &"0".repeat(40), "0"])];
    assert!(
        exec::resolve_script(origin, &mut cmds)
            .unwrap_err()
            .starts_with("NOSCRIPT")
    );
    // FCALL carries its library's code as the origin holds it.
    run(origin, &w(&["FUNCTION", "LOAD", LIB_V2]), NOW_MS, 0);
    let mut cmds = vec![w(&["FCALL", "f", "2", "from", "to"])];
    exec::resolve_script(origin, &mut cmds).unwrap();
    assert_eq!(
        cmds[1],
        vec![exec::LIBRARY.to_vec(), LIB_V2.as_bytes().to_vec()]
    );
    let mut unknown = vec![w(&["FCALL", "nope", "0"])];
    assert_eq!(
        exec::resolve_script(origin, &mut unknown).unwrap_err(),
        "ERR Function not found"
    );
    // A participant whose thread holds another version of the library (a FUNCTION LOAD
    // REPLACE ordered in between) runs the carried one: every participant runs the same code.
    let participant = &mut dbs[1].1;
    run(participant, &w(&["FUNCTION", "LOAD", LIB_V1]), NOW_MS, 0);
    assert_eq!(
        run(participant, &w(&["FCALL", "f", "0"]), NOW_MS, 0),
        b"$2\r\nv1\r\n"
    );
    let t = ordered(1, cmds, layout);
    assert!(t.is_script());
    for (_, fx) in run_everywhere(&mut dbs, &t) {
        assert_eq!(fx.reply, b"$2\r\nv2\r\n");
        assert_eq!(fx.writes.len(), 1);
    }
    // FCALL_RO of a function that writes is refused alike everywhere.
    let mut ro = vec![w(&["FCALL_RO", "f", "2", "from", "to"])];
    exec::resolve_script(&mut dbs[0].1, &mut ro).unwrap();
    let t = ordered(2, ro, layout);
    for (_, fx) in run_everywhere(&mut dbs, &t) {
        assert!(String::from_utf8_lossy(&fx.reply).contains("write flag using *_ro"));
    }
}

#[test]
fn a_multi_exec_with_scripts_runs_whole_alike_on_every_participant() {
    let (layout, mut dbs) = two_participants();
    run(&mut dbs[0].1, &w(&["set", "from", "5"]), NOW_MS, 0);
    run(&mut dbs[0].1, &w(&["FUNCTION", "LOAD", LIB_V2]), NOW_MS, 0);
    let incr = "return redis.call('incrby', KEYS[1], ARGV[1])";
    let mut cmds = vec![
        w(&["incr", "from"]),
        w(&["EVAL", incr, "1", "to", "10"]),
        w(&["FCALL", "f", "1", "from"]),
        w(&["EVAL", incr, "1", "from", "1"]),
        w(&["get", "to"]),
    ];
    exec::resolve_script(&mut dbs[0].1, &mut cmds).unwrap();
    assert_eq!(cmds.len(), 6, "FCALL's library follows it");
    let t = ordered_exec(4, cmds, true, layout);
    assert!(t.is_script());
    let ran = run_everywhere(&mut dbs, &t);
    assert_eq!(ran[0].1, ran[1].1);
    // One array of five replies; FCALL set `from` to v2, which the next script cannot add to.
    let reply = String::from_utf8_lossy(&ran[0].1.reply).into_owned();
    assert!(
        reply.starts_with("*5\r\n:6\r\n:10\r\n$2\r\nv2\r\n-ERR value is not an integer"),
        "{reply}"
    );
    assert!(reply.ends_with("$2\r\n10\r\n"), "{reply}");
    let mut written: Vec<&[u8]> = ran[0].1.writes.iter().map(|r| r.key.as_slice()).collect();
    written.sort();
    assert_eq!(written, [&b"from"[..], b"to"]);
    // A WATCH verdict aborts it alike: nil, nothing written.
    let (v0, v1) = (dbs[0].0, dbs[1].0);
    let mut reads = vec![Read::watch_broken(v1)];
    reads.extend(reads_for(
        &mut dbs,
        &[b"from".to_vec(), b"to".to_vec()],
        v0,
        NOW_MS,
    ));
    let txn = Txn {
        cmds: &t.sub.cmds,
        exec: true,
        now_us: t.now_us,
        seed: t.seed,
    };
    let held = t.sub.keys.iter().map(|(_, k)| k.as_slice());
    let fx = exec::run_script(&mut dbs[0].1, &reads, held, txn, Proto::Resp2).unwrap();
    assert_eq!(fx.reply, b"*-1\r\n");
    assert!(fx.writes.is_empty());
}

#[test]
fn an_execution_entry_that_names_a_script_runs_none() {
    // A member's entry holding a script (our leaders log a script's effects) would run Lua on
    // every replica without a bound: refused alike by every replica.
    let (_, mut dbs) = two_participants();
    let es = entries(
        &mut dbs,
        2,
        &[w(&["EVAL", "while true do end", "2", "from", "to"])],
        false,
        NOW_MS,
    );
    for ((_, db), e) in dbs.iter_mut().zip(&es) {
        let reply = apply_entry(db, e).unwrap();
        assert!(reply.contains("scripting command"), "{reply}");
    }
    let mut db = Db::new_all(VShardLayout::new(1).unwrap());
    let mut e = crate::replicate::Encoder::new(crate::replicate::Kind::Commands, NOW_MS * 1000, 1);
    e.push([&b"EVAL"[..], b"while true do end", b"0"].into_iter());
    let reply = apply_entry(&mut db, &e.finish()).unwrap();
    assert!(reply.contains("scripting command"), "{reply}");
}
