#!/usr/bin/env python3
"""Orchestrates scripts/bench-vs-redis.sh: starts the servers, runs the clients, reads CPU time
from /proc, and prints medians and ratios. Standard library only."""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDLINE = os.path.join(ROOT, "target/release/shardline")
BENCH = os.path.join(ROOT, "target/release/shardline-bench")
SERVER_CORE = os.environ.get("SERVER_CORE", "0")
CLIENT_CORE = os.environ.get("CLIENT_CORE", "1")
REPEATS = int(os.environ.get("REPEATS", "3"))
DURATION = float(os.environ.get("DURATION", "5"))
# How the redis-server peer persists: everysec (default; Shardline's default for a node
# alone), always, or no (no persistence at all).
REDIS_AOF = os.environ.get("REDIS_AOF", "everysec")
KEYS = 100_000
CONNS = 50
VALUE = int(os.environ.get("VALUE", "64"))
# TLS=1: both servers also listen on a TLS port (a development CA from `shardline ctl certs`,
# client certificates required) and redis-benchmark --tls drives it; only redis-benchmark
# speaks TLS, so the shardline-bench comparison, scaling and memory are skipped.
TLS = os.environ.get("TLS") == "1"
CERTS = None


def certs():
    """The CA, and one certificate for 127.0.0.1 used by the servers and the client."""
    global CERTS
    if CERTS is None:
        d = tempfile.mkdtemp(prefix="bench-certs-")
        subprocess.run([SHARDLINE, "ctl", "certs", d, "127.0.0.1:1"], check=True,
                       stdout=subprocess.DEVNULL)
        CERTS = {"ca": os.path.join(d, "ca.pem"), "cert": os.path.join(d, "127.0.0.1_1.pem"),
                 "key": os.path.join(d, "127.0.0.1_1.key")}
    return CERTS


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def cpu_us(pid):
    """CPU time of every thread of pid, from /proc/PID/task/*/schedstat (ns on CPU)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total // 1000


class Server:
    def __init__(self, kind, cores=SERVER_CORE):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        self.tls_port = free_port() if TLS else None
        tls = []
        if TLS:
            c = certs()
            tls = ["--tls-port", str(self.tls_port), "--tls-cert-file", c["cert"], "--tls-key-file", c["key"],
                   "--tls-ca-cert-file", c["ca"]]
        if kind == "shardline":
            ncores = len(expand(cores))
            cmd = ["taskset", "-c", cores, SHARDLINE, "--port", str(self.port), "--cores", cores,
                   "--data-dir", self.dir, "--log-level", "warn", *tls]
            self.name = f"shardline({ncores} core{'s' if ncores > 1 else ''})"
        else:
            # The peer persists as Shardline does by default (a log fsynced every second),
            # unless REDIS_AOF=no asks for Redis without persistence.
            aof = ["--appendonly", "no"] if REDIS_AOF == "no" else \
                ["--appendonly", "yes", "--appendfsync", REDIS_AOF]
            cmd = ["taskset", "-c", cores, "redis-server", "--port", str(self.port), "--save", "",
                   *aof, "--dir", self.dir, "--protected-mode", "yes", *tls]
            self.name = "redis-server"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if TLS:
            wait_port(self.tls_port)

    def info(self, section):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "INFO", section], capture_output=True, text=True).stdout
        return dict(l.split(":", 1) for l in out.splitlines() if ":" in l)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def expand(cores):
    out = []
    for part in cores.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def run_shardline_bench(srv, workload, pipeline):
    out = os.path.join(tempfile.gettempdir(), f"sb-{os.getpid()}.json")
    before = cpu_us(srv.proc.pid)
    subprocess.run(["taskset", "-c", CLIENT_CORE, BENCH, "--port", str(srv.port), "--cores", CLIENT_CORE,
                    "--connections", str(CONNS), "--pipeline", str(pipeline), "--workload", workload,
                    "--keys", str(KEYS), "--value-size", str(VALUE), "--duration", str(DURATION),
                    "--json", out, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    after = cpu_us(srv.proc.pid)
    with open(out) as f:
        r = json.load(f)
    os.remove(out)
    return {"rps": r["throughput"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "cpu_us_per_req": (after - before) / max(r["requests"], 1)}


def run_redis_benchmark(srv, workload, pipeline):
    n = int(300_000 * (4 if pipeline > 1 else 1) * DURATION / 5)
    before = cpu_us(srv.proc.pid)
    tls = []
    if TLS:
        c = certs()
        tls = ["--tls", "--cacert", c["ca"], "--cert", c["cert"], "--key", c["key"]]
    port = srv.tls_port if TLS else srv.port
    res = subprocess.run(["taskset", "-c", CLIENT_CORE, "redis-benchmark", *tls, "-p", str(port), "-c", str(CONNS),
                          "-P", str(pipeline), "-d", str(VALUE), "-r", str(KEYS), "-n", str(n), "-t", workload,
                          "--csv", "-q"], check=True, capture_output=True, text=True)
    after = cpu_us(srv.proc.pid)
    rows = [l.replace('"', "").split(",") for l in res.stdout.strip().splitlines()]
    header, vals = rows[0], rows[-1]
    row = dict(zip(header, vals))
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]), "p99_ms": float(row["p99_latency_ms"]),
            "cpu_us_per_req": (after - before) / n}


def alternated(one):
    """Runs `one(srv)` on a fresh shardline and a fresh redis-server REPEATS times each, the
    order reversed every other round; each kind's results in a list."""
    runs = {"shardline": [], "redis": []}
    for i in range(REPEATS):
        order = ["shardline", "redis"] if i % 2 == 0 else ["redis", "shardline"]
        for kind in order:
            srv = Server(kind)
            try:
                runs[kind].append(one(srv))
            finally:
                srv.stop()
    return runs


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def prefill(srv):
    """Fills the key space so GETs hit."""
    subprocess.run([BENCH, "--port", str(srv.port), "--keys", str(KEYS), "--value-size", str(VALUE), "--prefill",
                    "--requests", "0", "--quiet", "--connections", "8"], check=True, stdout=subprocess.DEVNULL)


def compare(client, runner, lines):
    lines.append(f"\n### client: {client}{' over TLS' if TLS else ''} (server on core {SERVER_CORE}, client on core {CLIENT_CORE}, "
                 f"{CONNS} connections, {VALUE}-byte values, {KEYS} keys, medians of {REPEATS} alternated runs)\n")
    lines.append("| workload | pipeline | shardline req/s | redis req/s | ratio | shardline p99 ms | redis p99 ms "
                 "| shardline CPU us/req | redis CPU us/req | CPU ratio |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for workload in ("set", "get"):
        for pipeline in (1, 16):
            def one(srv):
                if workload == "get":
                    prefill(srv)
                return runner(srv, workload, pipeline)
            runs = alternated(one)
            s, r = runs["shardline"], runs["redis"]
            row = {k: (median_of(s, k), median_of(r, k)) for k in ("rps", "p99_ms", "cpu_us_per_req")}
            results[(workload, pipeline)] = row
            lines.append(f"| {workload.upper()} | {pipeline} | {row['rps'][0]:.0f} | {row['rps'][1]:.0f} | "
                         f"{row['rps'][0] / row['rps'][1]:.2f}x | {row['p99_ms'][0]:.3f} | {row['p99_ms'][1]:.3f} | "
                         f"{row['cpu_us_per_req'][0]:.2f} | {row['cpu_us_per_req'][1]:.2f} | "
                         f"{row['cpu_us_per_req'][0] / row['cpu_us_per_req'][1]:.2f}x |")
            print(lines[-1], flush=True)
    return results


def scaling(lines):
    lines.append(f"\n### scaling: shardline on 1 vs 2 shard cores (shardline-bench, SET and GET, pipeline 16, "
                 f"client on core {CLIENT_CORE}; with 2 cores the client shares a core with a shard)\n")
    lines.append("| workload | 1 core req/s | 2 cores req/s | ratio |")
    lines.append("|---|---|---|---|")
    for workload in ("set", "get"):
        one, two = [], []
        for i in range(REPEATS):
            for cores, dest in ((SERVER_CORE, one), ("0-1", two)):
                srv = Server("shardline", cores)
                try:
                    if workload == "get":
                        prefill(srv)
                    dest.append(run_shardline_bench(srv, workload, 16)["rps"])
                finally:
                    srv.stop()
        a, b = statistics.median(one), statistics.median(two)
        lines.append(f"| {workload.upper()} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
        print(lines[-1], flush=True)


def memory(lines):
    n = 1_000_000
    lines.append(f"\n### memory: {n} keys (16-byte names), 16-byte values, loaded by shardline-bench --prefill\n")
    lines.append("| server | used_memory bytes/key | RSS bytes/key |")
    lines.append("|---|---|---|")
    for kind in ("shardline", "redis"):
        srv = Server(kind)
        try:
            before = srv.info("memory")
            rss0 = int(open(f"/proc/{srv.proc.pid}/statm").read().split()[1]) * 4096
            subprocess.run([BENCH, "--port", str(srv.port), "--keys", str(n), "--value-size", "16", "--prefill",
                            "--requests", "0", "--quiet", "--connections", "8"], check=True, stdout=subprocess.DEVNULL)
            after = srv.info("memory")
            rss1 = int(open(f"/proc/{srv.proc.pid}/statm").read().split()[1]) * 4096
            keys = int(srv.info("keyspace").get("db0", "keys=0").split(",")[0].split("=")[1])
            used = (int(after["used_memory"]) - int(before["used_memory"])) / max(keys, 1)
            rss = (rss1 - rss0) / max(keys, 1)
            lines.append(f"| {srv.name} ({keys} keys) | {used:.1f} | {rss:.1f} |")
            print(lines[-1], flush=True)
        finally:
            srv.stop()


def main():
    lines = [f"## bench-vs-redis, {time.strftime('%Y-%m-%d %H:%M')}",
             f"redis-server: {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.strip()}",
             f"machine: {os.cpu_count()} cores; REPEATS={REPEATS}, DURATION={DURATION}s",
             "persistence: shardline as started with no flags (its log, fsync every second); "
             f"redis-server appendonly {'no' if REDIS_AOF == 'no' else 'yes, appendfsync ' + REDIS_AOF}"]
    if TLS:
        lines.append("TLS: both servers' TLS ports (TLS 1.3 as negotiated, client certificates required)")
        compare("redis-benchmark", run_redis_benchmark, lines)
    else:
        compare("shardline-bench", run_shardline_bench, lines)
        if not os.environ.get("SKIP_REDIS_BENCHMARK"):
            compare("redis-benchmark", run_redis_benchmark, lines)
        if not os.environ.get("SKIP_SCALING"):
            scaling(lines)
        if not os.environ.get("SKIP_MEMORY"):
            memory(lines)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "target/bench/vs-redis.md"), "w") as f:
        f.write(text)
    print("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
