//! SLOWLOG and LATENCY on a connection (issue 20, step 6): every shard thread is asked
//! (`Op::Slow`) and the answers merged (`crate::slowlog`).

use super::{Conn, Finish};
use crate::hop::Op;
use crate::slowlog::{SlowMerge, SlowOp};
use shardline_shards::command::{self, Args, Merge, err, lookup};

impl Conn {
    /// SLOWLOG GET [count] | LEN | RESET, LATENCY LATEST | HISTORY <event> | RESET [event ...]
    /// (and HELP, from the subcommand table).
    pub(super) fn slow(&mut self, name: &'static str, args: Args) {
        if let Err(msg) =
            command::check_subcommand(lookup(name.as_bytes()).expect("in the table"), args)
        {
            return self.out.error(&msg);
        }
        let sub = args.get(1).to_ascii_lowercase();
        let (op, finish) = match (name, sub.as_slice()) {
            ("slowlog", b"get") => {
                let n = match args.len() {
                    2 => 10,
                    _ => match std::str::from_utf8(args.get(2))
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(-1) => usize::MAX,
                        Some(n) if n >= 0 => n as usize,
                        _ => {
                            return self
                                .out
                                .error("ERR count should be greater than or equal to -1");
                        }
                    },
                };
                (SlowOp::Get(n), Finish::Slow(SlowMerge::Get(n)))
            }
            ("slowlog", b"len") => (SlowOp::Len, Finish::Merge(Merge::Sum, Vec::new())),
            ("slowlog", b"reset") => (SlowOp::Reset, Finish::Merge(Merge::AllOk, Vec::new())),
            ("latency", b"latest") => (SlowOp::Latest, Finish::Slow(SlowMerge::Latest)),
            ("latency", b"history") => (
                SlowOp::History(args.get(2).to_vec()),
                Finish::Slow(SlowMerge::History),
            ),
            ("latency", b"reset") => (
                SlowOp::LatencyReset(args.iter().skip(2).map(<[u8]>::to_vec).collect()),
                Finish::UnionCount,
            ),
            _ => return err::unknown_subcommand(&mut self.out, args.get(1), name),
        };
        let parts = (0..self.shard.node.threads)
            .map(|t| self.thread_part(t, Op::Slow(op.clone())))
            .collect();
        self.hole(parts, finish);
    }
}
