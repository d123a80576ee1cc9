//! Redis Cluster's view of this node: CLUSTER KEYSLOT MYID INFO SLOTS SHARDS NODES
//! COUNTKEYSINSLOT GETKEYSINSLOT, and READONLY/READWRITE/ASKING. Until replication and multi-node
//! clusters exist (issue 3) a node is a one-node cluster that serves all 16384 slots as master,
//! which is what lets cluster-aware clients (`redis-cli -c`, the `redis` crate's cluster client,
//! redis-py's RedisCluster) talk to it.

use super::*;
use shardline_shards::slot::{SLOTS, Slot, key_slot};

const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node.",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOTS",
    "    Return information about slots range mappings.",
    "HELP",
    "    Print this help.",
];

impl Conn {
    /// The address clients should use for this node: the one this connection reached.
    fn endpoint(&self) -> (String, u16) {
        let laddr = self.info.borrow().laddr;
        (laddr.ip().to_string(), laddr.port())
    }

    pub(super) fn cluster(&mut self, args: Args) {
        let sub = args.get(1).to_ascii_lowercase();
        let arity_ok = match sub.as_slice() {
            b"help" | b"myid" | b"info" | b"slots" | b"shards" | b"nodes" => args.len() == 2,
            b"keyslot" | b"countkeysinslot" => args.len() == 3,
            b"getkeysinslot" => args.len() == 4,
            _ => return err::unknown_subcommand(&mut self.out, args.get(1), "cluster"),
        };
        if !arity_ok {
            return err::arity(
                &mut self.out,
                &format!("cluster|{}", String::from_utf8_lossy(&sub)),
            );
        }
        let id = self.shard.node.node_id.clone();
        let (ip, port) = self.endpoint();
        match sub.as_slice() {
            b"help" => {
                self.out.array(HELP.len());
                for l in HELP {
                    self.out.simple(l);
                }
            }
            b"keyslot" => self.out.int(key_slot(args.get(2)) as i64),
            b"myid" => self.out.bulk(id.as_bytes()),
            b"info" => {
                let text = "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n";
                self.out.verbatim(text.as_bytes());
            }
            b"slots" => {
                self.out.array(1);
                self.out.array(3);
                self.out.int(0);
                self.out.int(SLOTS as i64 - 1);
                self.out.array(4);
                self.out.bulk(ip.as_bytes());
                self.out.int(port as i64);
                self.out.bulk(id.as_bytes());
                self.out.map(0);
            }
            b"shards" => {
                self.out.array(1);
                self.out.map(2);
                self.out.bulk(b"slots");
                self.out.array(2);
                self.out.int(0);
                self.out.int(SLOTS as i64 - 1);
                self.out.bulk(b"nodes");
                self.out.array(1);
                self.out.map(7);
                for (k, v) in [("id", id.as_str()), ("endpoint", &ip), ("ip", &ip)] {
                    self.out.bulk(k.as_bytes());
                    self.out.bulk(v.as_bytes());
                }
                self.out.bulk(b"port");
                self.out.int(port as i64);
                for (k, v) in [("role", "master"), ("health", "online")] {
                    self.out.bulk(k.as_bytes());
                    self.out.bulk(v.as_bytes());
                }
                self.out.bulk(b"replication-offset");
                self.out.int(0);
            }
            b"nodes" => {
                let line = format!(
                    "{id} {ip}:{port}@{} myself,master - 0 0 1 connected 0-{}\n",
                    port as u32 + 10000,
                    SLOTS - 1
                );
                self.out.verbatim(line.as_bytes());
            }
            _ => self.slot_keys(args, sub == b"getkeysinslot"),
        }
    }

    /// COUNTKEYSINSLOT / GETKEYSINSLOT: asked of the shard thread that owns the slot.
    fn slot_keys(&mut self, args: Args, list: bool) {
        let slot = match shardline_shards::num::parse_i64(args.get(2)) {
            Some(s) if (0..SLOTS as i64).contains(&s) => s as Slot,
            _ => return self.out.error("ERR Invalid slot"),
        };
        let count = if list {
            match shardline_shards::num::parse_i64(args.get(3)) {
                Some(n) if n >= 0 => Some(n.min(u32::MAX as i64) as u32),
                _ => return self.out.error("ERR Invalid number of keys"),
            }
        } else {
            None
        };
        let node = &self.shard.node;
        let t = node
            .layout
            .owner_thread(node.layout.vshard_of(slot), node.threads);
        let op = Op::SlotKeys { slot, count };
        if t == self.shard.id {
            let mut out = Out::new(self.proto);
            self.shard.run_op(&op, &[], &[], self.now_us, &mut out);
            self.out.raw(&out.buf);
        } else {
            let op = self.push_op(t, op);
            self.hole(vec![PartRef::Remote { thread: t, op }], Finish::Raw);
        }
    }
}
