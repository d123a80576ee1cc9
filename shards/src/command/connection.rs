//! The pure connection and server commands: PING ECHO TIME COMMAND. The stateful ones (HELLO, AUTH,
//! CLIENT, CONFIG, INFO, MULTI, ...) belong to the connection driver.

use super::{Args, COMMANDS, CommandSpec, Ctx, err, flags, lookup};
use crate::db::Db;
use crate::reply::Out;

pub fn ping(_db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    match a.len() {
        1 => out.simple("PONG"),
        2 => out.bulk(a.get(1)),
        _ => err::arity(out, "ping"),
    }
}

pub fn echo(_db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    out.bulk(a.get(1))
}

pub fn time(_db: &mut Db, _a: Args, c: &mut Ctx, out: &mut Out) {
    out.array(2);
    out.bulk_int((c.now_us / 1_000_000) as i64);
    out.bulk_int((c.now_us % 1_000_000) as i64);
}

/// One entry of COMMAND / COMMAND INFO, in Redis 7's shape.
fn command_entry(c: &'static CommandSpec, out: &mut Out) {
    out.array(10);
    out.bulk(c.name.as_bytes());
    out.int(c.arity as i64);
    let names: Vec<&str> = flags::NAMES
        .iter()
        .filter(|(f, _)| c.flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(names.len());
    for n in names {
        out.simple(n);
    }
    out.int(c.first_key as i64);
    out.int(c.last_key as i64);
    out.int(c.step as i64);
    // ACL categories, as ACL rules use them (`crate::acl::table`).
    let cats = crate::acl::entry(crate::acl::command_id(c)).cats;
    let names: Vec<&str> = crate::acl::cats::names(cats).collect();
    out.set(names.len());
    for n in names {
        out.simple(&format!("@{n}"));
    }
    out.set(0); // tips
    out.array(0); // key specs
    out.array(0); // subcommands
}

pub fn command(_db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    if a.len() == 1 {
        out.array(COMMANDS.len());
        for c in COMMANDS {
            command_entry(c, out);
        }
        return;
    }
    let sub = a.get(1).to_ascii_lowercase();
    match sub.as_slice() {
        b"count" if a.len() == 2 => out.int(COMMANDS.len() as i64),
        b"info" => {
            let specs: Vec<Option<&CommandSpec>> = if a.len() == 2 {
                COMMANDS.iter().map(Some).collect()
            } else {
                a.iter().skip(2).map(lookup).collect()
            };
            out.array(specs.len());
            for s in specs {
                match s {
                    Some(c) => command_entry(c, out),
                    None => out.null_array(),
                }
            }
        }
        b"docs" => {
            let specs: Vec<&CommandSpec> = if a.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                a.iter().skip(2).filter_map(lookup).collect()
            };
            out.map(specs.len());
            for c in specs {
                out.bulk(c.name.as_bytes());
                out.map(3);
                out.bulk(b"summary");
                out.bulk(c.summary.as_bytes());
                out.bulk(b"since");
                out.bulk(b"1.0.0");
                out.bulk(b"group");
                out.bulk(c.group.as_bytes());
            }
        }
        b"list" => {
            out.array(COMMANDS.len());
            for c in COMMANDS {
                out.bulk(c.name.as_bytes());
            }
        }
        _ => err::unknown_subcommand(out, a.get(1), "command"),
    }
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    #[test]
    fn ping_echo_command() {
        let mut h = Harness::new();
        assert_eq!(h.run("PING"), "+PONG\r\n");
        assert_eq!(h.run("PING hi"), bulk("hi"));
        assert_eq!(
            h.run("PING a b"),
            error("ERR wrong number of arguments for 'ping' command")
        );
        assert_eq!(h.run("ECHO x"), bulk("x"));
        let n = crate::command::COMMANDS.len();
        assert_eq!(h.run("COMMAND COUNT"), int(n as i64));
        assert!(
            h.run("COMMAND INFO get")
                .starts_with("*1\r\n*10\r\n$3\r\nget\r\n:2\r\n")
        );
        assert!(h.run("COMMAND INFO nosuch").starts_with("*1\r\n*-1\r\n"));
        assert!(h.run("COMMAND DOCS get").contains("summary"));
        assert_eq!(
            h.run("COMMAND FOO"),
            error("ERR unknown subcommand 'FOO'. Try COMMAND HELP.")
        );
        assert_eq!(
            h.run("NOSUCH a"),
            error("ERR unknown command 'NOSUCH', with args beginning with: 'a' ")
        );
        assert_eq!(
            h.run("GET"),
            error("ERR wrong number of arguments for 'get' command")
        );
    }
}
