//! The subcommands of container commands (OBJECT, XINFO, CONFIG, ...): one table that gives
//! each its arity (Redis's, name and subcommand counted), its usage and what it does. It
//! drives the check a transaction makes when it queues one (Redis refuses an unknown
//! subcommand or a wrong count at queue time) and the `<COMMAND> HELP` reply.

use super::{Args, CommandSpec, err};
use crate::reply::Out;

pub struct Sub {
    pub name: &'static str,
    pub arity: i32,
    pub usage: &'static str,
    pub help: &'static str,
}

const fn s(name: &'static str, arity: i32, usage: &'static str, help: &'static str) -> Sub {
    Sub {
        name,
        arity,
        usage,
        help,
    }
}

/// Every table ends with it: the help reply lists it last, as Redis does.
const HELP: Sub = s("help", 2, "HELP", "Prints this help.");

pub static SUBCOMMANDS: &[(&str, &[Sub])] = &[
    (
        "function",
        &[
            s(
                "load",
                -3,
                "LOAD [REPLACE] <FUNCTION CODE>",
                "Create a new library with the given library name and code.",
            ),
            s(
                "delete",
                3,
                "DELETE <LIBRARY NAME>",
                "Delete the given library.",
            ),
            s(
                "list",
                -2,
                "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
                "Return general information on all the libraries:\n* Library name\n* The engine used to run the Library\n* Library description\n* Functions list\n* Library code (if WITHCODE is given)\nIt also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            ),
            s(
                "stats",
                2,
                "STATS",
                "Return information about the current function running:\n* Function name\n* Command used to run the function\n* Duration in MS that the function is running\nIf no function is running, return nil\nIn addition, returns a list of available engines.",
            ),
            s("kill", 2, "KILL", "Kill the current running function."),
            s(
                "flush",
                -2,
                "FLUSH [ASYNC|SYNC]",
                "Delete all the libraries.\nWhen called without the optional mode argument, the behavior is determined by the\nlazyfree-lazy-user-flush configuration directive. Valid modes are:\n* ASYNC: Asynchronously flush the libraries.\n* SYNC: Synchronously flush the libraries.",
            ),
            s(
                "dump",
                2,
                "DUMP",
                "Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            ),
            s(
                "restore",
                -3,
                "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
                "Restore the libraries represented by the given payload, it is possible to give a restore policy to\ncontrol how to handle existing libraries (default APPEND):\n* FLUSH: delete all existing libraries.\n* APPEND: appends the restored libraries to the existing libraries. On collision, abort.\n* REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old\n  libraries with the new libraries (notice that even on this option there is a chance of failure\n  in case of functions name collision with another library).",
            ),
            HELP,
        ],
    ),
    (
        "object",
        &[
            s(
                "encoding",
                3,
                "ENCODING <key>",
                "Return the kind of internal representation used in order to store the value associated with a <key>.",
            ),
            s(
                "freq",
                3,
                "FREQ <key>",
                "Return the access frequency index of the <key> (under an LFU maxmemory-policy).",
            ),
            s(
                "idletime",
                3,
                "IDLETIME <key>",
                "Return the idle time of the <key> (under an LRU maxmemory-policy).",
            ),
            s(
                "refcount",
                3,
                "REFCOUNT <key>",
                "Return the number of references of the value associated with the specified <key>.",
            ),
            HELP,
        ],
    ),
    (
        "slowlog",
        &[
            s(
                "get",
                -2,
                "GET [<count>]",
                "Return top <count> entries from the slowlog (default: 10, -1 mean all).\nEntries are made of:\nid, timestamp, time in microseconds, arguments array, client IP and port,\nclient name",
            ),
            s("len", 2, "LEN", "Return the length of the slowlog."),
            s("reset", 2, "RESET", "Reset the slowlog."),
            HELP,
        ],
    ),
    (
        "latency",
        &[
            s(
                "latest",
                2,
                "LATEST",
                "Return the latest latency samples for all events.",
            ),
            s(
                "history",
                3,
                "HISTORY <event>",
                "Return time-latency samples for the <event>.",
            ),
            s(
                "reset",
                -2,
                "RESET [<event> ...]",
                "Reset latency data of one or more <event> classes.\n(default: reset all data for all event classes)",
            ),
            HELP,
        ],
    ),
    (
        "memory",
        &[
            s("doctor", 2, "DOCTOR", "Return memory problems reports."),
            s(
                "malloc-stats",
                2,
                "MALLOC-STATS",
                "Return internal statistics report from the memory allocator.",
            ),
            s(
                "purge",
                2,
                "PURGE",
                "Attempt to purge dirty pages for reclamation by the allocator.",
            ),
            s(
                "stats",
                2,
                "STATS",
                "Return information about the memory usage of the server.",
            ),
            s(
                "usage",
                -3,
                "USAGE <key> [SAMPLES <count>]",
                "Return memory in bytes used by <key> and its value. Nested values are\nsampled up to <count> times (default: 5, 0 means sample all).",
            ),
            HELP,
        ],
    ),
    (
        "xinfo",
        &[
            s(
                "consumers",
                4,
                "CONSUMERS <key> <groupname>",
                "Show consumers of <groupname>.",
            ),
            s(
                "groups",
                3,
                "GROUPS <key>",
                "Show the stream consumer groups.",
            ),
            s(
                "stream",
                -3,
                "STREAM <key> [FULL [COUNT <count>]",
                "Show information about the stream.",
            ),
            HELP,
        ],
    ),
    (
        "xgroup",
        &[
            s(
                "create",
                -5,
                "CREATE <key> <groupname> <id|$> [option]",
                "Create a new consumer group. Options are: MKSTREAM, ENTRIESREAD entries_read.",
            ),
            s(
                "createconsumer",
                5,
                "CREATECONSUMER <key> <groupname> <consumer>",
                "Create a new consumer in the specified group.",
            ),
            s(
                "delconsumer",
                5,
                "DELCONSUMER <key> <groupname> <consumer>",
                "Remove the specified consumer.",
            ),
            s(
                "destroy",
                4,
                "DESTROY <key> <groupname>",
                "Remove the specified group.",
            ),
            s(
                "setid",
                -5,
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "Set the current group ID and entries_read counter.",
            ),
            HELP,
        ],
    ),
    (
        "acl",
        &[
            s(
                "cat",
                -2,
                "CAT [<category>]",
                "List all commands that belong to <category>, or all command categories\nwhen no category is specified.",
            ),
            s(
                "deluser",
                -3,
                "DELUSER <username> [<username> ...]",
                "Delete a list of users.",
            ),
            s(
                "dryrun",
                -4,
                "DRYRUN <username> <command> [<arg> ...]",
                "Returns whether the user can execute the given command without executing the command.",
            ),
            s(
                "getuser",
                3,
                "GETUSER <username>",
                "Get the user's details.",
            ),
            s(
                "list",
                2,
                "LIST",
                "Show users details in config file format.",
            ),
            s("users", 2, "USERS", "List all the registered usernames."),
            s(
                "setuser",
                -3,
                "SETUSER <username> [<attribs> ...]",
                "Create or modify a user with the specified attributes.",
            ),
            s(
                "save",
                2,
                "SAVE",
                "Save the current config to the ACL file.",
            ),
            s("load", 2, "LOAD", "Reload users from the ACL file."),
            s(
                "log",
                -2,
                "LOG [<count> | RESET]",
                "Show the ACL log entries.",
            ),
            s(
                "whoami",
                2,
                "WHOAMI",
                "Return the current connection username.",
            ),
            s(
                "genpass",
                -2,
                "GENPASS [<bits>]",
                "Generate a secure 256-bit user password. The optional `bits` argument can\nbe used to specify a different size.",
            ),
            HELP,
        ],
    ),
    (
        "config",
        &[
            s(
                "get",
                -3,
                "GET <pattern>",
                "Return parameters matching the glob-like <pattern> and their values.",
            ),
            s(
                "set",
                -4,
                "SET <directive> <value>",
                "Set the configuration <directive> to <value>.",
            ),
            s(
                "resetstat",
                2,
                "RESETSTAT",
                "Reset statistics reported by the INFO command.",
            ),
            s(
                "rewrite",
                2,
                "REWRITE",
                "Not supported: edit the TOML file given with --config.",
            ),
            HELP,
        ],
    ),
    (
        "client",
        &[
            s(
                "getname",
                2,
                "GETNAME",
                "Return the name of the current connection.",
            ),
            s("id", 2, "ID", "Return the ID of the current connection."),
            s(
                "info",
                2,
                "INFO",
                "Return information about the current client connection.",
            ),
            s(
                "kill",
                -3,
                "KILL <ip:port> | <option> <value> [<option> <value> ...]",
                "Kill connections: by address, or by ID, ADDR, LADDR, TYPE, USER and SKIPME filters.",
            ),
            s(
                "list",
                -2,
                "LIST [TYPE normal|pubsub] [ID <id> ...]",
                "Return information about client connections.",
            ),
            s(
                "setinfo",
                4,
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "Set client meta attributes.",
            ),
            s(
                "setname",
                3,
                "SETNAME <name>",
                "Assign the name <name> to the current connection.",
            ),
            HELP,
        ],
    ),
    (
        "cluster",
        &[
            s(
                "cancelmove",
                3,
                "CANCELMOVE <id>",
                "Cancel an open move: the replica goes back where it was.",
            ),
            s(
                "countkeysinslot",
                3,
                "COUNTKEYSINSLOT <slot>",
                "Return the number of keys in <slot>.",
            ),
            s(
                "drain",
                3,
                "DRAIN <node>",
                "Move every replica off a node that stays a member (UNDRAIN undoes it).",
            ),
            s(
                "forget",
                3,
                "FORGET <node-id>",
                "Remove a node from the cluster (its replicas move to the others).",
            ),
            s(
                "getkeysinslot",
                4,
                "GETKEYSINSLOT <slot> <count>",
                "Return key names stored by current node in a slot.",
            ),
            s("info", 2, "INFO", "Return information about the cluster."),
            s(
                "acluser",
                3,
                "ACLUSER <username>",
                "Used by a node forwarding a client's commands: run them as this ACL user.",
            ),
            s(
                "join",
                -8,
                "JOIN <args>",
                "Used by a node joining the cluster.",
            ),
            s(
                "keyslot",
                3,
                "KEYSLOT <key>",
                "Return the hash slot for <key>.",
            ),
            s(
                "load",
                2,
                "LOAD",
                "List each vShard's load as its leader measures it: commands, bytes written and CPU time a second.",
            ),
            s(
                "move",
                -4,
                "MOVE <vshard>|SLOTS <first> <last> <node> [FROM <node>]",
                "Move a vShard's replica (or the vShards of a slot range) to a node.",
            ),
            s(
                "moves",
                2,
                "MOVES",
                "List moves with their phase, bytes copied, rate and ETA.",
            ),
            s("myid", 2, "MYID", "Return the node id."),
            s(
                "nodes",
                2,
                "NODES",
                "Return cluster configuration seen by node.",
            ),
            s(
                "shards",
                2,
                "SHARDS",
                "Return information about slot range mappings and the nodes associated with them.",
            ),
            s(
                "slots",
                2,
                "SLOTS",
                "Return information about slots range mappings.",
            ),
            s(
                "undrain",
                3,
                "UNDRAIN <node>",
                "Give a drained node its share of replicas again.",
            ),
            HELP,
        ],
    ),
    (
        "command",
        &[
            s("count", 2, "COUNT", "Return the total number of commands."),
            s(
                "docs",
                -2,
                "DOCS [<command-name> ...]",
                "Return documentation details about multiple commands.",
            ),
            s(
                "info",
                -2,
                "INFO [<command-name> ...]",
                "Return details about multiple commands.",
            ),
            s("list", -2, "LIST", "Return a list of all commands."),
            HELP,
        ],
    ),
    (
        "pubsub",
        &[
            s(
                "channels",
                -2,
                "CHANNELS [<pattern>]",
                "Return the currently active channels matching a <pattern> (default: '*').",
            ),
            s(
                "numpat",
                2,
                "NUMPAT",
                "Return number of subscriptions to patterns.",
            ),
            s(
                "numsub",
                -2,
                "NUMSUB [<channel> ...]",
                "Return the number of subscribers for the specified channels, excluding pattern subscriptions.",
            ),
            s(
                "shardchannels",
                -2,
                "SHARDCHANNELS [<pattern>]",
                "Return the currently active shard level channels matching a <pattern> (default: '*').",
            ),
            s(
                "shardnumsub",
                -2,
                "SHARDNUMSUB [<shardchannel> ...]",
                "Return the number of subscribers for the specified shard level channel(s).",
            ),
            HELP,
        ],
    ),
];

fn subs_of(cmd: &str) -> Option<&'static [Sub]> {
    SUBCOMMANDS.iter().find(|(n, _)| *n == cmd).map(|(_, s)| *s)
}

/// Checks the subcommand of a container command and its argument count as Redis does before
/// running or queueing it; the error Redis gives otherwise.
pub fn check(spec: &CommandSpec, args: Args) -> Result<(), String> {
    let Some(subs) = subs_of(spec.name) else {
        return Ok(());
    };
    if args.len() < 2 {
        return Ok(());
    }
    let sub = args.get(1);
    let Some(found) = subs
        .iter()
        .find(|s| sub.eq_ignore_ascii_case(s.name.as_bytes()))
    else {
        return Err(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            err::sanitize(sub),
            spec.name.to_ascii_uppercase()
        ));
    };
    let (n, arity) = (args.len() as i32, found.arity);
    if (arity > 0 && n != arity) || n < -arity {
        return Err(format!(
            "ERR wrong number of arguments for '{}|{}' command",
            spec.name, found.name
        ));
    }
    Ok(())
}

/// `<COMMAND> HELP`: its subcommands as Redis lists them (one status line per subcommand and
/// one per description, HELP last). False if `cmd` has no subcommands here.
pub fn write_help(out: &mut Out, cmd: &str) -> bool {
    let Some(subs) = subs_of(cmd) else {
        return false;
    };
    // A description may run over several lines (`\n`), each indented as Redis indents them.
    out.array(
        1 + subs
            .iter()
            .map(|s| 1 + s.help.lines().count())
            .sum::<usize>(),
    );
    out.simple(&format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        cmd.to_ascii_uppercase()
    ));
    for sub in subs {
        out.simple(sub.usage);
        for line in sub.help.lines() {
            out.simple(&format!("    {line}"));
        }
    }
    true
}
