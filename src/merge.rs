//! Merging the replies of a command's parts on several shard threads into the one reply the
//! client expects, as if one thread had run it.

use shardline_shards::command::Merge;
use shardline_shards::reply::Out;
use shardline_shards::rng::Rng;
use shardline_transport::resp;

/// The element count of an array reply and the bytes after its header.
fn array_body(part: &[u8]) -> Option<(usize, &[u8])> {
    if part.first() != Some(&b'*') {
        return None;
    }
    let eol = part.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(&part[1..eol]).ok()?.parse().ok()?;
    Some((n, &part[eol + 2..]))
}

fn int_of(part: &[u8]) -> Option<i64> {
    match resp::decode(part) {
        Ok(Some((resp::Value::Int(n), _))) => Some(n),
        _ => None,
    }
}

fn is_null(part: &[u8]) -> bool {
    part == b"$-1\r\n" || part == b"_\r\n"
}

/// Writes the merged reply of `parts` (in part order) into `out`. `order[i]` is the part holding
/// key `i` (positional merges only). Parts are replies this server produced, so a malformed one
/// is our bug: it is reported as an error reply rather than trusted.
/// `+OK` when every part applied. When none did, the first part's error (nothing changed, as
/// the error says). When some did and others were refused (`-OOM` on one shard thread), a
/// `-PARTIAL` error that says so: neither `+OK` nor a plain error would tell the truth.
fn all_ok(parts: &[&[u8]], out: &mut Out) {
    let failed: Vec<&[u8]> = parts
        .iter()
        .copied()
        .filter(|p| p.first() == Some(&b'-'))
        .collect();
    let Some(first) = failed.first() else {
        return out.ok();
    };
    if failed.len() == parts.len() {
        return out.raw(first);
    }
    let why = String::from_utf8_lossy(&first[1..]);
    out.error(&format!(
        "PARTIAL applied on {} of {} shard threads; the keys owned by the others were not written: {}",
        parts.len() - failed.len(),
        parts.len(),
        why.trim_end()
    ));
}

pub fn merge(merge: Merge, order: &[u16], parts: &[&[u8]], rng: &mut Rng, out: &mut Out) {
    match merge {
        Merge::Single => out.raw(parts[0]),
        Merge::AllOk => all_ok(parts, out),
        Merge::Sum => {
            let mut total = 0i64;
            for p in parts {
                match int_of(p) {
                    Some(n) => total += n,
                    None => {
                        return out.error("ERR internal: a shard thread sent a malformed reply");
                    }
                }
            }
            out.int(total)
        }
        Merge::Concat => {
            let mut bodies = Vec::with_capacity(parts.len());
            let mut n = 0;
            for p in parts {
                match array_body(p) {
                    Some((k, body)) => {
                        n += k;
                        bodies.push(body);
                    }
                    None => {
                        return out.error("ERR internal: a shard thread sent a malformed reply");
                    }
                }
            }
            out.array(n);
            for b in bodies {
                out.raw(b);
            }
        }
        Merge::Positional => {
            // Split each part's array into its elements, then take them in key order.
            let mut elems: Vec<std::collections::VecDeque<&[u8]>> = Vec::with_capacity(parts.len());
            for p in parts {
                let Some((k, mut body)) = array_body(p) else {
                    return out.error("ERR internal: a shard thread sent a malformed reply");
                };
                let mut q = std::collections::VecDeque::with_capacity(k);
                for _ in 0..k {
                    match resp::value_len(body) {
                        Ok(Some(len)) => {
                            q.push_back(&body[..len]);
                            body = &body[len..];
                        }
                        _ => {
                            return out
                                .error("ERR internal: a shard thread sent a malformed reply");
                        }
                    }
                }
                elems.push(q);
            }
            out.array(order.len());
            for &p in order {
                match elems.get_mut(p as usize).and_then(|q| q.pop_front()) {
                    Some(e) => out.raw(e),
                    None => out.null(),
                }
            }
        }
        Merge::AnyNonNull => {
            let start = rng.below(parts.len() as u64) as usize;
            for i in 0..parts.len() {
                let p = parts[(start + i) % parts.len()];
                if !is_null(p) {
                    return out.raw(p);
                }
            }
            out.null()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardline_shards::reply::Proto;

    fn run(m: Merge, order: &[u16], parts: &[&str]) -> String {
        let mut out = Out::new(Proto::Resp2);
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        merge(m, order, &parts, &mut Rng::new(1), &mut out);
        String::from_utf8(out.buf).unwrap()
    }

    #[test]
    fn positional_merge_restores_request_order() {
        // Keys k0 (part 1), k1 (part 0), k2 (part 1).
        let r = run(
            Merge::Positional,
            &[1, 0, 1],
            &["*1\r\n$1\r\nb\r\n", "*2\r\n$1\r\na\r\n$-1\r\n"],
        );
        assert_eq!(r, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    /// Regression (issue 15): a split MSET whose part on one thread was refused (`-OOM`) was
    /// answered `+OK`.
    #[test]
    fn all_ok_says_which_parts_failed() {
        assert_eq!(run(Merge::AllOk, &[], &["+OK\r\n", "+OK\r\n"]), "+OK\r\n");
        let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
        assert_eq!(run(Merge::AllOk, &[], &[oom, oom]), oom, "nothing applied");
        assert_eq!(
            run(Merge::AllOk, &[], &["+OK\r\n", oom]),
            "-PARTIAL applied on 1 of 2 shard threads; the keys owned by the others were not \
             written: OOM command not allowed when used memory > 'maxmemory'.\r\n"
        );
    }

    #[test]
    fn sums_concats_and_any() {
        assert_eq!(run(Merge::Sum, &[], &[":2\r\n", ":3\r\n"]), ":5\r\n");
        assert_eq!(
            run(
                Merge::Concat,
                &[],
                &["*1\r\n$1\r\na\r\n", "*0\r\n", "*1\r\n$1\r\nb\r\n"]
            ),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            run(Merge::AnyNonNull, &[], &["$-1\r\n", "$1\r\nk\r\n"]),
            "$1\r\nk\r\n"
        );
        assert_eq!(
            run(Merge::AnyNonNull, &[], &["$-1\r\n", "$-1\r\n"]),
            "$-1\r\n"
        );
        assert_eq!(
            run(Merge::Sum, &[], &["+OK\r\n"]),
            "-ERR internal: a shard thread sent a malformed reply\r\n"
        );
    }
}
