"""Driver of scripts/bench-bulk.sh: see that file for what it measures."""
from bench_common import stop_all, cli, prefill, start_listed, wait
import json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDLINE = os.path.join(ROOT, "target/release/shardline")
BENCH = os.path.join(ROOT, "target/release/shardline-bench")
QUINN_PEER = os.path.join(ROOT, "bench/quinn-peer/target/release/quinn-peer")
BASE = os.environ.get("BASE")
REPEATS = int(os.environ.get("REPEATS", "3"))
KEYS = int(os.environ.get("KEYS", "300000"))
VALUE = int(os.environ.get("VALUE", "1000"))
VSHARDS = os.environ.get("VSHARDS", "16")
LANE_BYTES = int(os.environ.get("LANE_BYTES", str(2 << 30)))
JOIN = os.environ.get("JOIN", "1") != "0"
NCPU = os.cpu_count() or 2
out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


def field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    return None


def iperf():
    port = "5299"
    srv = subprocess.Popen(["taskset", "-c", str(1 % NCPU), "iperf3", "-s", "-1", "-p", port],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        r = subprocess.run(["taskset", "-c", "0", "iperf3", "-c", "127.0.0.1", "-p", port, "-t", "5", "-J"],
                           capture_output=True, text=True, check=True)
    finally:
        srv.wait(timeout=10)
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 8


def lane(carrier):
    """The bulk lane alone (the ignored test `bulk_lane_throughput`), the source's bytes on
    `carrier` (tcp or quic): bytes per second."""
    env = {**os.environ, "BULK_BENCH_BYTES": str(LANE_BYTES), "BULK_BENCH_CARRIER": carrier}
    r = subprocess.run(["cargo", "test", "--release", "-q", "-p", "shardline", "--bin", "shardline",
                        "bulk_lane_throughput", "--", "--ignored", "--nocapture"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    return rate_of(r, "BULK_LANE", "the lane benchmark")


def quinn_tokio():
    """quinn on tokio runtimes of their own, handing bytes to and from the shard threads
    through channels (bench/quinn-peer): bytes per second."""
    r = subprocess.run([QUINN_PEER, str(LANE_BYTES), "0", str(1 % NCPU)], capture_output=True, text=True)
    return rate_of(r, "QUINN_TOKIO", "quinn-peer")


def rate_of(r, tag, what):
    for line in r.stdout.splitlines():
        if line.startswith(tag):
            f = dict(kv.split("=") for kv in line.split()[1:])
            return float(f["mb_per_s"]) * 1e6
    raise SystemExit(f"{what} failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")


def join(binary):
    """Three nodes filled, a fourth joins: (copy bytes, copy seconds, join seconds)."""
    d = tempfile.mkdtemp(prefix="sl-bulk-")
    base = 7501
    common = ["--fsync", "always", "--log-level", "warn", "--raft-log-memory-bytes", "1048576",
              *os.environ.get("NODE_ARGS", "").split()]
    procs = []
    try:
        procs += start_listed(binary, 3, base, d, ["--vshards", VSHARDS, *common])
        prefill(BENCH, base, KEYS, VALUE)
        time.sleep(2)
        t0 = time.time()
        procs.append(subprocess.Popen(
            [binary, "--port", str(base + 3), "--cores", str(1 % NCPU), "--data-dir", os.path.join(d, "n3"),
             "--vshards", VSHARDS, "--cluster-join", f"127.0.0.1:{base}", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        samples = []
        settled = None
        deadline = t0 + 600
        while time.time() < deadline:
            if procs[3].poll() is not None:
                raise SystemExit(f"the joining node exited: {procs[3].stderr.read()}")
            now = time.time()
            try:
                info = cli(base + 3, "info", "cluster")
            except Exception:
                info = ""
            b = field(info, "bulk_bytes_in")
            if b is not None:
                samples.append((now, b))
            pending = [field(cli(base + i, "info", "cluster"), "cluster_moves_pending") for i in range(4)]
            replicas = field(info, "cluster_vshard_replicas") or 0
            if replicas > 0 and all(p == 0 for p in pending):
                settled = now
                break
            time.sleep(0.02)
        if settled is None:
            raise SystemExit("the join did not settle in 600 s")
        total = samples[-1][1] if samples else 0
        first = next((t for t, b in samples if b > 0), None)
        last = next((t for t, b in samples if b == total), None)
        secs = (last - first) if first and last and last > first else 0.0
        return total, secs, settled - t0
    finally:
        stop_all(procs, d)


def main():
    say(f"## Base copies vs iperf3 (one TCP stream, core 0 to core 1), medians of {REPEATS}")
    say("")
    say(f"Lane: one {LANE_BYTES / 2**30:.0f} GiB copy between two shard runtimes pinned to cores 0 and 1 "
        f"(`bulk_lane_throughput`), the source's bytes on TCP, then on QUIC (quinn-proto driven by the shard "
        f"threads); quinn on tokio: the same copy through quinn on a tokio thread per side, handing bytes to "
        f"and from the side's shard thread (bench/quinn-peer). Join: a node joining 3 (RF 3, {KEYS:,} keys of "
        f"{VALUE} B, --vshards {VSHARDS}), copies from the first byte to the last on the joiner, and the whole "
        f"join." + (" JOIN=0: no join." if not JOIN else ""))
    say("")
    rows = []
    for r in range(REPEATS):
        ip = iperf()
        ln = lane("tcp")
        lq = lane("quic")
        qt = quinn_tokio()
        total, secs, whole = join(SHARDLINE) if JOIN else (0, 0, 0)
        rate = total / secs if secs > 0 else 0
        old = join(BASE) if BASE else None
        rows.append((ip, ln, total, secs, rate, whole, old, lq, qt))
        extra = f", base binary join {old[2]:.2f} s" if old else ""
        say(f"  run {r + 1}: iperf3 {ip / 1e6:,.0f} MB/s; lane TCP {ln / 1e6:,.0f} MB/s ({ln / ip:.0%}); "
            f"lane QUIC {lq / 1e6:,.0f} MB/s ({lq / ip:.0%}); quinn on tokio {qt / 1e6:,.0f} MB/s ({qt / ip:.0%}); "
            f"join copies {total / 1e6:,.1f} MB in {secs:.2f} s = {rate / 1e6:,.0f} MB/s ({rate / ip:.0%}); "
            f"join {whole:.2f} s{extra}")
    med = lambda i: statistics.median(x[i] for x in rows)
    say("")
    say("| iperf3 MB/s | lane TCP MB/s | TCP / iperf3 | lane QUIC MB/s | QUIC / iperf3 | quinn on tokio MB/s | "
        "lane QUIC / quinn on tokio | join: copied MB | copy s | copy MB/s | copy / iperf3 | whole join s |"
        + (" base join s |" if BASE else ""))
    say("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if BASE else ""))
    base_col = f" {statistics.median(x[6][2] for x in rows):.2f} |" if BASE else ""
    copy_ratio = f"{med(4) / med(0):.0%}" if JOIN else "-"
    say(f"| {med(0) / 1e6:,.0f} | {med(1) / 1e6:,.0f} | {med(1) / med(0):.0%} | {med(7) / 1e6:,.0f} | "
        f"{med(7) / med(0):.0%} | {med(8) / 1e6:,.0f} | {med(7) / med(8):.2f}x | {med(2) / 1e6:,.1f} | {med(3):.2f} | "
        f"{med(4) / 1e6:,.0f} | {copy_ratio} | {med(5):.2f} |{base_col}")
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    open(os.path.join(ROOT, "target/bench/bulk.md"), "w").write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
