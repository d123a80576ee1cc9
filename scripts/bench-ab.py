#!/usr/bin/env python3
"""A/B runs of server variants in one run, alternated, medians: the tool behind the A/B
figures in docs/BENCHMARKS.md (two builds, or one build with different environment, against
each other and redis-server).

    scripts/bench-ab.py --rounds 3 --workload set --pipeline 1 \\
        base=/tmp/base/shardline new=target/release/shardline redis

A variant is `name=BINARY[;ENV=VALUE;...]` (a shardline binary started with no flags but its
port, core and a fresh data directory: a node alone, fsync every second) or `redis`
(redis-server with `appendonly yes, appendfsync everysec`, the same persistence). Each round
runs every variant once, the order reversed every other round; the server is pinned to
--server-core, the client to --client-core. The client is shardline-bench (`--client bench`:
throughput, p99) or redis-benchmark (`--client redis-benchmark`: throughput). The server's CPU
per request comes from /proc/<pid>/task/*/schedstat (every thread of the server).
Prints every run and the medians with ratios to the first variant.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import BENCH, cpu_us, free_port, wait_port  # noqa: E402  (shared helpers)


def start(variant, a):
    port, d, env = free_port(), tempfile.mkdtemp(prefix="bench-ab-"), dict(os.environ)
    name, _, spec = variant.partition("=")
    if name == "redis":
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "yes",
               "--appendfsync", "everysec", "--dir", d]
    else:
        binary, *envs = spec.split(";")
        for kv in envs:
            k, _, v = kv.partition("=")
            env[k] = v
        cmd = [binary, "--port", str(port), "--cores", a.server_core, "--data-dir", d,
               "--log-level", "warn"]
    p = subprocess.Popen(["taskset", "-c", a.server_core, *cmd], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.5)
    return p, port, d


def client(a, port, workload, pipeline, seconds):
    """Runs the load; returns (requests per second, p99 in ms or None, requests)."""
    pin = ["taskset", "-c", a.client_core]
    if a.client == "redis-benchmark":
        n = int(a.requests)
        out = subprocess.run([*pin, "redis-benchmark", "-p", str(port), "-c", str(a.connections),
                              "-n", str(n), "-r", str(a.keys), "-d", str(a.value_size),
                              "-P", str(pipeline), "-t", workload, "--csv"],
                             capture_output=True, text=True, check=True).stdout
        rps = float(out.strip().splitlines()[-1].replace('"', "").split(",")[1])
        return rps, None, n
    out = tempfile.mktemp()
    subprocess.run([*pin, BENCH, "--port", str(port), "--cores", a.client_core, "--workload",
                    workload, "--connections", str(a.connections), "--pipeline", str(pipeline),
                    "--keys", str(a.keys), "--value-size", str(a.value_size), "--duration",
                    str(seconds), "--json", out, "--quiet"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with open(out) as f:
        r = json.load(f)
    os.remove(out)
    return r["throughput"], r["p99_us"] / 1000, r["requests"]


def run(variant, a):
    p, port, d = start(variant, a)
    try:
        if a.workload == "get":
            client(a, port, "set", 16, 2)  # the keys, for reads to find
        before = cpu_us(p.pid)
        rps, p99, n = client(a, port, a.workload, a.pipeline, a.duration)
        cpu = (cpu_us(p.pid) - before) * 1000 / max(n, 1)
        return rps, p99, cpu
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workload", default="set", choices=["set", "get"])
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--client", default="bench", choices=["bench", "redis-benchmark"])
    ap.add_argument("--duration", type=float, default=5, help="seconds per shardline-bench run")
    ap.add_argument("--requests", type=int, default=400_000, help="per redis-benchmark run")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=64)
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--client-core", default="1")
    a = ap.parse_args()
    results = {v: [] for v in a.variants}
    for i in range(a.rounds):
        for v in a.variants if i % 2 == 0 else a.variants[::-1]:
            rps, p99, cpu = run(v, a)
            results[v].append((rps, p99, cpu))
            p99s = f"p99 {p99:6.3f} ms" if p99 is not None else ""
            print(f"round {i + 1} {v:40.40s} {rps:10.0f} req/s {p99s} cpu/req {cpu:6.0f} ns", flush=True)
    print(f"== {a.workload.upper()} pipeline {a.pipeline}, {a.client}, medians of {a.rounds}")
    base = results[a.variants[0]]
    b_rps = statistics.median(r[0] for r in base)
    b_cpu = statistics.median(r[2] for r in base)
    for v in a.variants:
        rps = statistics.median(r[0] for r in results[v])
        cpu = statistics.median(r[2] for r in results[v])
        p99 = [r[1] for r in results[v] if r[1] is not None]
        p99s = f"p99 {statistics.median(p99):6.3f} ms  " if p99 else ""
        print(f"{v:40.40s} {rps:10.0f} req/s ({rps / b_rps:4.2f}x)  {p99s}cpu/req {cpu:6.0f} ns ({cpu / b_cpu:4.2f}x)")


if __name__ == "__main__":
    main()
