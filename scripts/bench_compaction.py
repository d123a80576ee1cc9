"""Driver of scripts/bench-compaction.sh: see that file for what it measures."""
from bench_common import cli, wait
import json, os, shutil, statistics, subprocess, tempfile, time
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEW = os.environ.get("SHARDLINE", os.path.join(ROOT, "target/release/shardline"))
OLD = os.environ.get("OLD", "")
REPEATS = int(os.environ.get("REPEATS", "3"))
SIZE_MB = int(os.environ.get("SIZE_MB", "256"))
VALUE = int(os.environ.get("VALUE", "1000"))
SECONDS = float(os.environ.get("SECONDS", "20"))
LOG_BYTES = os.environ.get("LOG_BYTES", "16mb")
out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


BENCH = os.path.join(ROOT, "target/release/shardline-bench")
RATE = int(os.environ.get("RATE", "4000"))
WRITES = int(os.environ.get("WRITES", "10000"))
BGSAVE_EVERY = float(os.environ.get("BGSAVE_EVERY", "2"))


def bench(port, *args):
    return subprocess.Popen([BENCH, "--port", str(port), "--cores", "1", "--quiet", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_once(binary):
    """One run against `binary`, or against redis-server (`binary` None) made to BGSAVE every
    `BGSAVE_EVERY` seconds, Redis's way of writing a snapshot while serving (a fork)."""
    d = tempfile.mkdtemp(prefix="sl-compact-")
    port = 7701
    if binary:
        cmd = [binary, "--port", str(port), "--cores", "0", "--data-dir", d, "--raft-log-memory-bytes",
               LOG_BYTES, "--log-level", "warn"]
    else:
        cmd = ["taskset", "-c", "0", "redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--dir", d, "--logfile", ""]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saver = None
    try:
        wait(lambda: "PONG" in cli(port, "ping"), 30, "the server")
        keys = SIZE_MB * (1 << 20) // VALUE
        big = ["--key-prefix", "{big}:", "--keys", str(keys), "--value-size", str(VALUE), "--workload", "set"]
        fill = bench(port, *big, "--prefill", "--requests", "1", "--connections", "8", "--pipeline", "16")
        fill.wait()
        small = ["--key-prefix", "small:", "--keys", "1000", "--value-size", "100", "--workload", "get"]
        bench(port, *small, "--prefill", "--requests", "1").wait()
        r = redis.Redis(port=port)
        before = r.info("cluster").get("snapshot_captures")
        j = os.path.join(d, "reader.json")
        rd = bench(port, *small, "--rate", str(RATE), "--connections", "8", "--duration", str(SECONDS),
                   "--json", j)
        wr = bench(port, *big, "--rate", str(WRITES), "--connections", "4", "--duration", str(SECONDS),
                   "--json", os.path.join(d, "writer.json"))
        if not binary:
            saver = subprocess.Popen(["bash", "-c", f"for i in $(seq {int(SECONDS / BGSAVE_EVERY)}); do "
                                      f"sleep {BGSAVE_EVERY}; redis-cli -p {port} bgsave >/dev/null; done"])
        rd.wait()
        wr.wait()
        x = json.load(open(j))
        w = json.load(open(os.path.join(d, "writer.json")))
        info = r.info("cluster") if binary else r.info("persistence")
        if binary:
            caps = "-" if before is None else str(info["snapshot_captures"] - before)
        else:
            caps = f"{int(SECONDS / BGSAVE_EVERY)} BGSAVE (fork {r.info('stats')['latest_fork_usec']} us)"
        return {
            "p50": x["p50_us"] / 1e3, "p99": x["p99_us"] / 1e3, "p999": x["p999_us"] / 1e3,
            "max": x["max_us"] / 1e3, "reads": x["throughput"], "writes": w["throughput"],
            "captures": caps, "step_us": info.get("snapshot_capture_step_max_us", "-"),
        }
    finally:
        if saver:
            saver.kill()
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def redis_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return next((w.split("=")[1] for w in out.split() if w.startswith("v=")), "?")


def main():
    builds = [("this build", NEW)] + ([("old build", OLD)] if OLD else []) + [("redis-server", None)]
    say(f"## Compactions of a {SIZE_MB} MB vShard under load ({time.strftime('%Y-%m-%d %H:%M')})")
    say(f"one node on core 0 (`--raft-log-memory-bytes {LOG_BYTES}`), shardline-bench on core 1: a reader "
        f"GETs 100-byte keys of other vShards open loop at {RATE}/s over 8 connections (latency from the "
        f"intended send time); a writer overwrites the large vShard's {VALUE}-byte values open loop at "
        f"{WRITES}/s over 4 connections (its log compacts every {LOG_BYTES}); {SECONDS:.0f} s per run, builds alternated, "
        f"{REPEATS} runs each; redis-server {redis_version()} on core 0 under the same load, BGSAVE every "
        f"{BGSAVE_EVERY:.0f} s (its snapshot: a forked child writes it, on whichever core is free)")
    say()
    say("| build | run | reader p50 ms | p99 ms | p99.9 ms | max ms | reads/s | writes/s | captures | longest capture step us |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    res = {name: [] for name, _ in builds}
    for i in range(REPEATS):
        for name, b in builds:
            x = run_once(b)
            res[name].append(x)
            say(f"| {name} | {i + 1} | {x['p50']:.3f} | {x['p99']:.3f} | {x['p999']:.2f} | {x['max']:.1f} | "
                f"{x['reads']:.0f} | {x['writes']:.0f} | {x['captures']} | {x['step_us']} |")
    say()
    for name, xs in res.items():
        med = {k: statistics.median(x[k] for x in xs) for k in ("p50", "p99", "p999", "max", "reads", "writes")}
        say(f"median, {name}: p50 {med['p50']:.3f} ms, p99 {med['p99']:.3f} ms, p99.9 {med['p999']:.2f} ms, "
            f"max {med['max']:.1f} ms, {med['reads']:.0f} reads/s, {med['writes']:.0f} writes/s")
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/compaction.md"), "w") as f:
        f.write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
