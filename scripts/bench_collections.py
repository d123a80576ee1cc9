#!/usr/bin/env python3
"""Collections against redis-server, side by side in one run (see bench-collections.sh).

Memory: bytes per element of one 1M-member set, sorted set and hash, and of 100k small hashes of
10 fields (the packed encoding), from used_memory (each server's own allocator accounting) and
RSS deltas. Throughput: redis-benchmark (the same client for both) running LPUSH, LPOP, ZADD and
ZRANGE on one pinned server core, alternated A/B REPEATS times; medians and ratios.
"""

import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vs_redis as b  # noqa: E402

REPEATS = b.REPEATS
PIPELINES = [int(p) for p in os.environ.get("PIPELINES", "1,16").split(",")]
REQUESTS = int(os.environ.get("REQUESTS", "400000"))
MEMBERS = int(os.environ.get("MEMBERS", "1000000"))


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def send_all(port, commands):
    """Sends commands pipelined and reads one reply per command (integer replies: one line each)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"".join(commands))
    data = b""
    while data.count(b"\r\n") < len(commands):
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("server closed the connection")
        data += chunk
    s.close()
    if data.startswith(b"-") or b"\r\n-" in data:
        raise RuntimeError(data[:200])


def load(port, kind, n):
    batch, cmds = 1000, []
    if kind == "small-hashes":
        for k in range(n // 10):
            args = ["HSET", f"user:{k:07d}"]
            for f in range(10):
                args += [f"field{f}", f"value-{k:09d}"]
            cmds.append(resp(*args))
    else:
        for start in range(0, n, batch):
            if kind == "set":
                args = ["SADD", "big"] + [f"member:{i:08d}" for i in range(start, start + batch)]
            elif kind == "zset":
                args = ["ZADD", "big"]
                for i in range(start, start + batch):
                    args += [i * 7 % 1000003, f"member:{i:08d}"]
            else:
                args = ["HSET", "big"]
                for i in range(start, start + batch):
                    args += [f"field:{i:08d}", f"value-{i:09d}"]
            cmds.append(resp(*args))
    for i in range(0, len(cmds), 200):
        send_all(port, cmds[i:i + 200])


def rss(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * 4096


def memory(lines):
    lines.append(f"\n### memory per element ({MEMBERS} members in one key; small hashes: "
                 f"{MEMBERS // 10} keys x 10 fields of 16-byte values)\n")
    lines.append("| data | server | encoding | used_memory B/elem | RSS B/elem |")
    lines.append("|---|---|---|---|---|")
    for kind in ("set", "zset", "hash", "small-hashes"):
        row = {}
        for server in ("shardline", "redis"):
            srv = b.Server(server)
            try:
                before, rss0 = int(srv.info("memory")["used_memory"]), rss(srv.proc.pid)
                load(srv.port, kind, MEMBERS)
                after, rss1 = int(srv.info("memory")["used_memory"]), rss(srv.proc.pid)
                key = "big" if kind != "small-hashes" else "user:0000000"
                enc = subprocess.run(["redis-cli", "-p", str(srv.port), "OBJECT", "ENCODING", key],
                                     capture_output=True, text=True).stdout.strip()
                used, r = (after - before) / MEMBERS, (rss1 - rss0) / MEMBERS
                row[server] = used
                lines.append(f"| {kind} | {srv.name} | {enc} | {used:.1f} | {r:.1f} |")
                print(lines[-1], flush=True)
            finally:
                srv.stop()
        lines.append(f"| {kind} | ratio shardline/redis | | {row['shardline'] / row['redis']:.2f} | |")
        print(lines[-1], flush=True)


def bench(srv, test, pipeline):
    """One redis-benchmark run; returns rps, p50 and p99 in ms."""
    if test == "zrange":
        # A 1000-member sorted set to read the first 10 of (ZRANGE 0 9 WITHSCORES).
        args = ["ZRANGE", "myzset", "0", "9", "WITHSCORES"]
    else:
        args = ["-t", test]
    res = subprocess.run(["taskset", "-c", b.CLIENT_CORE, "redis-benchmark", "-p", str(srv.port),
                          "-c", str(b.CONNS), "-P", str(pipeline), "-r", "1000", "-n",
                          str(REQUESTS if pipeline > 1 else REQUESTS // 4), "--csv", "-q"] + args,
                         check=True, capture_output=True, text=True)
    rows = [l.replace('"', "").split(",") for l in res.stdout.strip().splitlines()]
    row = dict(zip(rows[0], rows[-1]))
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]), "p99": float(row["p99_latency_ms"])}


def prepare(srv, test):
    if test == "zrange":
        send_all(srv.port, [resp("ZADD", "myzset", i, f"element:{i:06d}") for i in range(1000)])
    if test == "lpop":
        # Enough elements that LPOP never runs dry.
        for _ in range(REQUESTS // 100_000 + 1):
            send_all(srv.port, [resp("RPUSH", "mylist", *(["x" * 3] * 1000)) for _ in range(100)])


def throughput(lines):
    lines.append(f"\n### throughput: redis-benchmark, server on core {b.SERVER_CORE} (shardline --cores "
                 f"{b.SERVER_CORE}), client on core {b.CLIENT_CORE}, {b.CONNS} connections, "
                 f"medians of {REPEATS} alternated runs\n")
    lines.append("| command | pipeline | shardline rps | redis rps | ratio | shardline p50/p99 ms | redis p50/p99 ms |")
    lines.append("|---|---|---|---|---|---|---|")
    for test in ("lpush", "lpop", "zadd", "zrange"):
        for pipeline in PIPELINES:
            runs = {"shardline": [], "redis": []}
            for _ in range(REPEATS):
                for server in ("shardline", "redis"):
                    srv = b.Server(server)
                    try:
                        prepare(srv, test)
                        runs[server].append(bench(srv, test, pipeline))
                    finally:
                        srv.stop()
            med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")}
                   for k, v in runs.items()}
            s, r = med["shardline"], med["redis"]
            lines.append(f"| {test.upper()} | {pipeline} | {s['rps']:.0f} | {r['rps']:.0f} | "
                         f"{s['rps'] / r['rps']:.2f} | {s['p50']:.3f}/{s['p99']:.3f} | "
                         f"{r['p50']:.3f}/{r['p99']:.3f} |")
            print(lines[-1], flush=True)


def main():
    lines = [f"## bench-collections, {time.strftime('%Y-%m-%d %H:%M')}",
             f"redis-server: {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.strip()}",
             f"machine: {os.cpu_count()} cores; REPEATS={REPEATS}"]
    if not os.environ.get("SKIP_MEMORY"):
        memory(lines)
    if not os.environ.get("SKIP_THROUGHPUT"):
        throughput(lines)
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(b.ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(b.ROOT, "target/bench/collections.md"), "w") as f:
        f.write(text)
    print("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
