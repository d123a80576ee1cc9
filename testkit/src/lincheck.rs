//! Linearizability of a single-key register history, by Wing and Gong's search with memoization
//! (as Knossos and Porcupine do it): find an order of the operations, each taking effect at one
//! instant between its call and its return, in which every read returns the latest write.
//!
//! Operations whose outcome the client does not know (a timeout, a connection lost mid-request)
//! have no return time: they may take effect at any instant after their call, or never. A read
//! of unknown outcome constrains nothing and may be left out of the history.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind<V> {
    Write(V),
    /// A read and the value it returned (`None`: the key did not exist).
    Read(Option<V>),
}

/// One client operation: when it was invoked and when its reply arrived (`None`: unknown).
#[derive(Clone, Debug)]
pub struct Op<V> {
    pub client: u32,
    pub call: u64,
    pub ret: Option<u64>,
    pub kind: OpKind<V>,
}

/// Checks that `history` (one key, starting absent) is linearizable. On failure, the error holds
/// the whole history in call order, to be printed by the failing test.
pub fn check_register<V: Clone + Eq + Hash + Debug>(history: &[Op<V>]) -> Result<(), String> {
    for op in history {
        if op.ret.is_some_and(|r| r < op.call) {
            return Err(format!("operation returns before it is called: {op:?}"));
        }
    }
    // An unknown write whose (unique) value no read returned can be left out: if it took effect,
    // nothing observed it, so a linearization without it is just as valid. Keeping such writes
    // pending makes the search exponential in their number (a crash leaves many).
    let observed: HashSet<&V> = history
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let kept: Vec<Op<V>> = history
        .iter()
        .filter(|op| {
            op.ret.is_some() || !matches!(&op.kind, OpKind::Write(v) if !observed.contains(v))
        })
        .cloned()
        .collect();
    let history = &kept[..];
    // Events in time order: (time, is_return, op). Calls sort before returns at the same instant
    // (operations that touch are concurrent). Unknown outcomes never return.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (i, op) in history.iter().enumerate() {
        events.push((op.call, false, i));
        if let Some(r) = op.ret {
            events.push((r, true, i));
        }
    }
    events.sort_by_key(|e| (e.0, e.1, e.2));
    let n = history.len();
    let mut done = vec![false; n];
    let mut seen: HashSet<(Vec<u64>, Option<V>)> = HashSet::new();
    if search(history, &events, &mut done, None, &mut seen) {
        Ok(())
    } else {
        Err(describe(history))
    }
}

fn bits(done: &[bool]) -> Vec<u64> {
    let mut v = vec![0u64; done.len().div_ceil(64)];
    for (i, &d) in done.iter().enumerate() {
        if d {
            v[i / 64] |= 1 << (i % 64);
        }
    }
    v
}

/// Depth-first: linearize, one at a time, an operation that is called before the first pending
/// return; memoize (linearized set, register value) states already explored.
fn search<V: Clone + Eq + Hash>(
    h: &[Op<V>],
    events: &[(u64, bool, usize)],
    done: &mut Vec<bool>,
    value: Option<V>,
    seen: &mut HashSet<(Vec<u64>, Option<V>)>,
) -> bool {
    // Finished when every operation with a known return is linearized.
    if events.iter().all(|&(_, ret, i)| !ret || done[i]) {
        return true;
    }
    if !seen.insert((bits(done), value.clone())) {
        return false;
    }
    for &(_, is_return, i) in events {
        if is_return {
            if done[i] {
                continue;
            }
            // The earliest pending return: whatever takes effect next was called before it.
            break;
        }
        if done[i] {
            continue;
        }
        let next = match &h[i].kind {
            OpKind::Write(v) => Some(Some(v.clone())),
            OpKind::Read(r) if *r == value => Some(value.clone()),
            OpKind::Read(_) => None,
        };
        if let Some(next) = next {
            done[i] = true;
            if search(h, events, done, next, seen) {
                return true;
            }
            done[i] = false;
        }
    }
    false
}

fn describe<V: Debug>(h: &[Op<V>]) -> String {
    let mut ops: Vec<&Op<V>> = h.iter().collect();
    ops.sort_by_key(|o| o.call);
    let mut s = String::from("history is not linearizable (call..return, client, operation):\n");
    for o in ops {
        let ret = o.ret.map_or("?".to_string(), |r| r.to_string());
        s.push_str(&format!(
            "  {:>8}..{:<8} c{:<3} {:?}\n",
            o.call, ret, o.client, o.kind
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: u32, call: u64, ret: u64, v: u32) -> Op<u32> {
        Op {
            client,
            call,
            ret: Some(ret),
            kind: OpKind::Write(v),
        }
    }

    fn r(client: u32, call: u64, ret: u64, v: Option<u32>) -> Op<u32> {
        Op {
            client,
            call,
            ret: Some(ret),
            kind: OpKind::Read(v),
        }
    }

    #[test]
    fn sequential_histories_are_checked_against_the_register() {
        assert!(check_register(&[w(1, 0, 1, 5), r(1, 2, 3, Some(5))]).is_ok());
        assert!(check_register(&[r(1, 0, 1, None), w(1, 2, 3, 5)]).is_ok());
        let stale = [w(1, 0, 1, 5), w(1, 2, 3, 6), r(2, 4, 5, Some(5))];
        let err = check_register(&stale).unwrap_err();
        assert!(err.contains("Read(Some(5))") && err.contains("c2"), "{err}");
        assert!(
            check_register(&[r(1, 0, 1, Some(1))]).is_err(),
            "read of a never-written value"
        );
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The write overlaps both reads: old then new is fine, new then old is not.
        let ok = [w(1, 0, 10, 7), r(2, 1, 2, None), r(3, 3, 4, Some(7))];
        assert!(check_register(&ok).is_ok());
        let bad = [w(1, 0, 10, 7), r(2, 1, 2, Some(7)), r(3, 3, 4, None)];
        assert!(
            check_register(&bad).is_err(),
            "a later read cannot go back in time"
        );
        // Two overlapping writes, read back in either order.
        let either = [w(1, 0, 5, 1), w(2, 0, 5, 2), r(3, 6, 7, Some(1))];
        assert!(check_register(&either).is_ok());
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        let lost = Op {
            client: 1,
            call: 0,
            ret: None,
            kind: OpKind::Write(9),
        };
        assert!(
            check_register(&[lost.clone(), r(2, 5, 6, None)]).is_ok(),
            "never applied"
        );
        assert!(
            check_register(&[lost.clone(), r(2, 5, 6, Some(9))]).is_ok(),
            "applied late"
        );
        // But once seen, it cannot be unseen.
        let flicker = [lost, r(2, 5, 6, Some(9)), r(2, 7, 8, None)];
        assert!(check_register(&flicker).is_err());
    }

    #[test]
    fn many_unobserved_unknown_writes_do_not_blow_up_the_search() {
        // A crash leaves many writes of unknown outcome pending forever; those nobody read are
        // left out, so 60 of them cost nothing, while an observed one still counts.
        let mut h: Vec<Op<u32>> = (0..60)
            .map(|i| Op {
                client: i,
                call: i as u64,
                ret: None,
                kind: OpKind::Write(1000 + i),
            })
            .collect();
        h.push(w(99, 100, 101, 5));
        h.push(r(98, 102, 103, Some(5)));
        h.push(r(98, 104, 105, Some(1007)));
        check_register(&h).unwrap();
        h.push(r(98, 106, 107, Some(5)));
        assert!(
            check_register(&h).is_err(),
            "the observed 1007 cannot be unseen"
        );
    }

    #[test]
    fn large_concurrent_histories_finish_quickly() {
        // 8 clients, 400 operations each overlapping its neighbours; a register whose value
        // follows the writes: the checker must find the order without exploding.
        let mut h = Vec::new();
        let mut x = 1u64;
        let mut last = None;
        for i in 0..400u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let client = (x >> 60) as u32;
            let t = i * 10;
            if x & 1 == 0 {
                h.push(w(client, t, t + 15, i as u32));
                last = Some(i as u32);
            } else {
                h.push(r(client, t + 16, t + 18, last));
            }
        }
        check_register(&h).unwrap();
        // And one stale read in the middle of it is found.
        let i = h
            .iter()
            .rposition(|o| matches!(o.kind, OpKind::Read(Some(_))))
            .unwrap();
        h[i].kind = OpKind::Read(Some(u32::MAX));
        assert!(check_register(&h).is_err());
    }
}
