//! Routing a command to the shard threads of this node that own its keys. Pure: the slot layout
//! and the thread count come in, a [`Plan`] comes out.

use crate::command::{Args, CommandSpec, Merge, Scope};
use crate::slot::{Slot, VShardId, VShardLayout, key_slot};

/// Where a command runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Whole, on thread `t` (which may be the connection's own).
    On(usize),
    /// Split by keys: each part runs on its thread with the listed argument indexes (the key and
    /// the `step - 1` arguments after it), in request order. Replies merge with `merge`.
    Split { parts: Vec<Part>, merge: Merge },
    /// On every shard thread; replies merge with `merge`.
    All(Merge),
    /// Refused without running anywhere.
    Refuse(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub thread: usize,
    /// Argument indexes of this part's keys; the values that follow each key (`step - 1` of
    /// them) go with it.
    pub keys: Vec<u32>,
}

/// The plan's refusal of a command that cannot be split by thread and whose keys span threads
/// (a node alone runs it as a Calvin transaction instead: `docs/design/calvin.md`).
pub const ACROSS_THREADS: &str = "CROSSSLOT Keys in request don't hash to the same shard thread (transactions across shard threads are sequenced by the node that leads the cluster's metadata; from other nodes: not built yet)";

/// Redis Cluster's refusal of a command whose keys are in different slots (here: vShards).
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// On a replicated node, where a command on keys goes: the vShard of all its keys and the first
/// key's slot (`None` without keys), or `CROSSSLOT` when they span vShards (each vShard is its own
/// Raft group, so one command cannot be applied atomically across them).
pub fn vshard_of_keys(
    spec: &CommandSpec,
    args: Args,
    layout: VShardLayout,
) -> Result<Option<(VShardId, Slot)>, &'static str> {
    let mut found: Option<(VShardId, Slot)> = None;
    for k in spec.keys_of(args) {
        let slot = key_slot(args.get(k));
        let v = layout.vshard_of(slot);
        match found {
            None => found = Some((v, slot)),
            Some((fv, _)) if fv != v => return Err(CROSSSLOT),
            _ => {}
        }
    }
    Ok(found)
}

/// Which thread owns `key`.
#[inline]
pub fn thread_of(key: &[u8], layout: VShardLayout, threads: usize) -> usize {
    layout.owner_thread(layout.vshard_of(key_slot(key)), threads)
}

/// Plans `spec` with `args` on a node of `threads` shard threads; `here` is the connection's.
pub fn plan(
    spec: &CommandSpec,
    args: Args,
    layout: VShardLayout,
    threads: usize,
    here: usize,
) -> Plan {
    match spec.scope {
        Scope::Keyless | Scope::Conn => Plan::On(here),
        Scope::AllShards(merge) => {
            if threads == 1 {
                Plan::On(here)
            } else {
                Plan::All(merge)
            }
        }
        Scope::Cursor => match crate::num::parse_cursor(args.get(1)) {
            Some(c) => {
                Plan::On(layout.owner_thread(layout.vshard_of((c & 0x3fff) as u16), threads))
            }
            None => Plan::On(here),
        },
        Scope::Keys(merge) => plan_keys(spec, args, layout, threads, here, merge),
    }
}

fn plan_keys(
    spec: &CommandSpec,
    args: Args,
    layout: VShardLayout,
    threads: usize,
    here: usize,
    merge: Merge,
) -> Plan {
    if threads == 1 {
        // One shard thread owns everything: no need to hash the keys here.
        return Plan::On(here);
    }
    let mut keys = spec.keys_of(args);
    let Some(first) = keys.next() else {
        return Plan::On(here);
    };
    let first_slot = key_slot(args.get(first));
    let first_thread = layout.owner_thread(layout.vshard_of(first_slot), threads);
    let mut spread = false;
    for i in keys {
        let slot = key_slot(args.get(i));
        if layout.owner_thread(layout.vshard_of(slot), threads) != first_thread {
            spread = true;
            break;
        }
    }
    if !spread {
        return Plan::On(first_thread);
    }
    // A split part takes each key with the `step - 1` arguments after it: a request whose last
    // key lacks them (`MSET a 1 b`) is not split but run where it is, and its handler refuses
    // it with the arity error, having applied nothing.
    let step = spec.step.max(1) as usize;
    if step > 1 && spec.keys_of(args).any(|i| i + step > args.len()) {
        return Plan::On(here);
    }
    if merge == Merge::Single {
        return Plan::Refuse(ACROSS_THREADS);
    }
    let mut parts: Vec<Part> = Vec::new();
    for i in spec.keys_of(args) {
        let t = thread_of(args.get(i), layout, threads);
        match parts.iter_mut().find(|p| p.thread == t) {
            Some(p) => p.keys.push(i as u32),
            None => parts.push(Part {
                thread: t,
                keys: vec![i as u32],
            }),
        }
    }
    Plan::Split { parts, merge }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Span, lookup};

    fn args_of(words: &[&str]) -> (Vec<u8>, Vec<Span>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in words {
            let s = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push((s, buf.len() as u32));
        }
        (buf, spans)
    }

    fn plan_of(words: &[&str], threads: usize) -> Plan {
        let (buf, spans) = args_of(words);
        let spec = lookup(words[0].as_bytes()).unwrap();
        plan(
            spec,
            Args::new(&buf, &spans),
            VShardLayout::new(256).unwrap(),
            threads,
            0,
        )
    }

    #[test]
    fn single_key_goes_to_its_owner() {
        let layout = VShardLayout::new(256).unwrap();
        // foo is slot 12182, vShard 190, thread 190 % 2 == 0; bar is 5061, vShard 79, thread 1.
        assert_eq!(thread_of(b"foo", layout, 2), 0);
        assert_eq!(thread_of(b"bar", layout, 2), 1);
        assert_eq!(plan_of(&["get", "foo"], 2), Plan::On(0));
        assert_eq!(plan_of(&["get", "bar"], 2), Plan::On(1));
        assert_eq!(plan_of(&["get", "bar"], 1), Plan::On(0));
    }

    #[test]
    fn spanning_multi_key_commands_split_in_request_order() {
        let p = plan_of(&["mset", "foo", "1", "bar", "2", "{foo}x", "3"], 2);
        assert_eq!(
            p,
            Plan::Split {
                parts: vec![
                    Part {
                        thread: 0,
                        keys: vec![1, 5]
                    },
                    Part {
                        thread: 1,
                        keys: vec![3]
                    }
                ],
                merge: Merge::AllOk
            }
        );
        assert_eq!(plan_of(&["mget", "foo", "{foo}a"], 2), Plan::On(0));
    }

    /// Regression (issue 15): `MSET a 1 b` on two shard threads was split before its arguments
    /// were checked, and a part sliced past the end (the node aborted). Every splittable
    /// command, with every argument count up to 8: each part's keys and the arguments that
    /// follow them lie within the request.
    #[test]
    fn split_parts_never_reach_past_the_arguments() {
        let words = ["foo", "bar", "{foo}a", "{bar}b", "baz", "qux", "x", "y"];
        for spec in crate::command::COMMANDS {
            for n in 0..=words.len() {
                let mut w = vec![spec.name];
                w.extend_from_slice(&words[..n]);
                let (buf, spans) = args_of(&w);
                let args = Args::new(&buf, &spans);
                if !spec.arity_ok(args.len()) {
                    continue; // refused before routing
                }
                let p = plan(spec, args, VShardLayout::new(256).unwrap(), 2, 0);
                if let Plan::Split { parts, .. } = p {
                    let step = spec.step.max(1) as usize;
                    for part in parts {
                        for &k in &part.keys {
                            assert!(
                                k as usize + step <= args.len(),
                                "{w:?}: key {k} with step {step}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(plan_of(&["mset", "foo", "1", "bar"], 2), Plan::On(0));
    }

    #[test]
    fn unsplittable_commands_are_refused_across_owners_by_the_plan() {
        assert!(matches!(
            plan_of(&["msetnx", "foo", "1", "bar", "2"], 2),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan_of(&["rename", "foo", "{foo}x"], 2),
            Plan::On(0)
        ));
        // Keys of two slots are no refusal of their own (Redis Cluster's is): the node runs
        // them atomically, on one thread or as a Calvin transaction across threads.
        assert_eq!(plan_of(&["rename", "foo", "other"], 1), Plan::On(0));
    }

    #[test]
    fn movable_keys_route_by_their_count() {
        // LMPOP 2 foo {foo}x LEFT: both keys on thread 0; "LEFT" is not taken for a key.
        assert_eq!(
            plan_of(&["lmpop", "2", "foo", "{foo}x", "LEFT"], 2),
            Plan::On(0)
        );
        assert!(matches!(
            plan_of(&["lmpop", "2", "foo", "bar", "LEFT"], 2),
            Plan::Refuse(_)
        ));
        assert_eq!(plan_of(&["lmpop", "1", "bar", "LEFT"], 2), Plan::On(1));
        // ZUNIONSTORE dest 2 a b: the destination is a key too.
        assert_eq!(
            plan_of(&["zunionstore", "foo", "2", "{foo}a", "{foo}b"], 2),
            Plan::On(0)
        );
        assert!(matches!(
            plan_of(&["zunionstore", "bar", "2", "{foo}a", "{foo}b"], 2),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn keyspace_commands_run_everywhere_and_scan_follows_its_cursor() {
        assert_eq!(plan_of(&["dbsize"], 2), Plan::All(Merge::Sum));
        assert_eq!(plan_of(&["dbsize"], 1), Plan::On(0));
        assert_eq!(plan_of(&["scan", "64"], 2), Plan::On(1));
        assert_eq!(plan_of(&["scan", "0"], 2), Plan::On(0));
        assert_eq!(plan_of(&["ping"], 2), Plan::On(0));
    }
}
