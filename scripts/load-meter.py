#!/usr/bin/env python3
"""What the rebalancer's CPU term is calibrated by (docs/BENCHMARKS.md, session 30): one node
on --server-core under shardline-bench (SET and GET, pipeline 16, alternated), comparing the
time its commands take to run as the load meter samples it (CLUSTER LOAD's cpu-us-per-sec
over ops-per-sec) with the server's whole CPU per request (/proc schedstat, every thread).
The difference is a command's cost around its run, which `rebalance::CPU_US_PER_OP` stands
for.

    scripts/load-meter.py [--rounds 3] [--binary target/release/shardline]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import BENCH, cpu_us, free_port, wait_port  # noqa: E402
import redis  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default="target/release/shardline")
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--client-core", default="1")
    a = ap.parse_args()
    port, d = free_port(), tempfile.mkdtemp(prefix="load-meter-")
    p = subprocess.Popen(["taskset", "-c", a.server_core, a.binary, "--port", str(port),
                          "--cores", a.server_core, "--data-dir", d, "--log-level", "warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        r = redis.Redis(port=port)
        out = os.path.join(d, "bench.json")
        for _ in range(a.rounds):
            for w in ["set", "get"]:
                c0 = cpu_us(p.pid)
                b = subprocess.Popen(["taskset", "-c", a.client_core, BENCH, "--port", str(port),
                                      "--cores", a.client_core, "--workload", w,
                                      "--connections", "50", "--pipeline", "16", "--keys",
                                      "100000", "--value-size", "64", "--duration", "8",
                                      "--quiet", "--json", out], stdout=subprocess.DEVNULL)
                time.sleep(6)  # the meter's moving average has settled on the load
                ops = run_us = 0
                for m in r.execute_command("CLUSTER", "LOAD"):
                    f = dict(zip(m[::2], m[1::2]))
                    ops += f[b"ops-per-sec"]
                    run_us += f[b"cpu-us-per-sec"]
                b.wait()
                c1 = cpu_us(p.pid)
                reqs = json.load(open(out))["requests"]
                run_ns, all_ns = run_us * 1000 / max(ops, 1), (c1 - c0) * 1000 / reqs
                print(f"{w} p16: run {run_ns:5.0f} ns/op (meter)  server {all_ns:5.0f} ns/req"
                      f"  around the run {all_ns - run_ns:5.0f} ns", flush=True)
    finally:
        p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
