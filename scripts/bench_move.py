"""Driver of scripts/bench-move.sh: see that file for what it measures."""
from bench_common import stop_all, cli, prefill, start_listed
import multiprocessing as mp
import logging, os, shutil, statistics, subprocess, tempfile, time
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDLINE = os.path.join(ROOT, "target/release/shardline")
BENCH = os.path.join(ROOT, "target/release/shardline-bench")
REPEATS = int(os.environ.get("REPEATS", "3"))
KEYS = int(os.environ.get("KEYS", "200000"))
VALUE = int(os.environ.get("VALUE", "1000"))
BASELINE = float(os.environ.get("BASELINE", "5"))
VSHARDS = 16
SLOTS_PER = 16384 // VSHARDS
out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


def keys_in(vshards, n):
    """`n` key names whose slots fall in `vshards`."""
    out, i = [], 0
    while len(out) < n:
        k = f"fg:{i}"
        if key_slot(k.encode()) // SLOTS_PER in vshards:
            out.append(k)
        i += 1
    return out


def client(port, name, keys, stop, q):
    """SETs round the keys until `stop` is set; sends (name, [(start time, latency or None)])."""
    logging.disable(logging.CRITICAL)  # redis-py logs each redirect it follows
    rc = RedisCluster(host="127.0.0.1", port=port, cluster_error_retry_attempts=20)
    value = b"x" * VALUE
    samples, i = [], 0
    while not stop.is_set():
        t = time.time()
        try:
            rc.set(keys[i % len(keys)], value)
            samples.append((t, time.time() - t))
        except Exception:
            samples.append((t, None))
        i += 1
    q.put((name, samples))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def window(samples, a, b):
    return [lat for t, lat in samples if a <= t < b and lat is not None]


def longest_gap(samples, a, b):
    """The longest time between two accepted writes that ended inside [a, b)."""
    ends = [t + lat for t, lat in samples if lat is not None and a <= t + lat < b]
    return max((y - x for x, y in zip(ends, ends[1:])), default=float("nan"))


def moves(port):
    r = redis.Redis(port=port)
    return [dict(zip([k.decode() for k in m[::2]], m[1::2])) for m in r.execute_command("CLUSTER", "MOVES")]


def run_once():
    d = tempfile.mkdtemp(prefix="sl-move-")
    base = 7601
    procs = []
    try:
        procs += start_listed(SHARDLINE, 4, base, d, [
            "--cluster-replicas", "3", "--vshards", str(VSHARDS), "--fsync", "always", "--log-level", "warn",
            "--raft-log-memory-bytes", "1048576", *os.environ.get("NODE_ARGS", "").split()])
        prefill(BENCH, base, KEYS, VALUE)
        time.sleep(2)
        # The vShard to move: one whose preferred leader's replica goes to the node lacking it.
        r = redis.Redis(port=base)
        slots = r.execute_command("CLUSTER", "SLOTS")
        holders = {}
        for a, b, *reps in slots:
            for s in range(a, b + 1, SLOTS_PER):
                holders[s // SLOTS_PER] = [int(x[1]) - base + 1 for x in reps]
        v = 3
        to = next(n for n in range(1, 5) if n not in holders[v])
        frm = holders[v][0]
        mine, others = keys_in({v}, 200), keys_in(set(range(VSHARDS)) - {v}, 200)
        q, stop = mp.Queue(), mp.Event()
        ps = [mp.Process(target=client, args=(base, name, ks, stop, q))
              for name, ks in (("moving", mine), ("others", others))]
        for p in ps:
            p.start()
        time.sleep(BASELINE)
        bulk_in = lambda: int(next(l.split(":")[1] for l in cli(base + to - 1, "info", "cluster").splitlines()
                                   if l.startswith("bulk_bytes_in:")))
        copied_before = bulk_in()
        start = time.time()
        mid = r.execute_command("CLUSTER", "MOVE", v, to, "FROM", frm)
        while True:
            m = next((m for m in moves(base) if int(m["id"]) == mid), None)
            if m and m["state"] != b"open":
                break
            time.sleep(0.05)
            if time.time() - start > 300:
                raise SystemExit("the move did not finish in 300 s")
        end = time.time()
        total = bulk_in() - copied_before
        time.sleep(2)
        stop.set()
        got = dict(q.get(timeout=60) for _ in ps)
        for p in ps:
            p.join()
        return dict(state=m["state"].decode(), start=start, end=end, total=total, samples=got,
                    v=v, frm=frm, to=to, t0=start - BASELINE)
    finally:
        stop_all(procs, d)


def summarize(res):
    a, s, e = res["t0"], res["start"], res["end"]
    out = {}
    for name in ("moving", "others"):
        smp = res["samples"][name]
        before, during = window(smp, a + 1, s), window(smp, s, e)
        out[name] = (pct(before, 0.5), pct(before, 0.99), pct(during, 0.5), pct(during, 0.99),
                     sum(1 for t, lat in smp if lat is None and s <= t < e))
    smp = res["samples"]["moving"]
    out["gap_before"] = longest_gap(smp, a + 1, s)
    out["gap_during"] = longest_gap(smp, s, e + 2)
    return out


def main():
    say(f"## A move under load: 4 nodes RF 3, {KEYS:,} keys of {VALUE} B, 16 vShards, medians of {REPEATS}")
    say("")
    rows = []
    for r in range(REPEATS):
        res = run_once()
        rows.append((res, summarize(res)))
        x = rows[-1][1]
        say(f"  run {r + 1}: vShard {res['v']} {res['frm']}->{res['to']} {res['state']}, "
            f"target received {res['total'] / 1e6:.1f} MB, move {res['end'] - res['start']:.2f} s; "
            f"moving vShard p50/p99 {x['moving'][0] * 1e3:.2f}/{x['moving'][1] * 1e3:.2f} ms before, "
            f"{x['moving'][2] * 1e3:.2f}/{x['moving'][3] * 1e3:.2f} ms during; others "
            f"{x['others'][0] * 1e3:.2f}/{x['others'][1] * 1e3:.2f} before, "
            f"{x['others'][2] * 1e3:.2f}/{x['others'][3] * 1e3:.2f} during; longest write gap "
            f"{x['gap_before'] * 1e3:.0f} ms before, {x['gap_during'] * 1e3:.0f} ms during")
    med = lambda f: statistics.median(f(x) for _, x in rows)
    say("")
    say("| client | p50 before ms | p99 before ms | p50 during ms | p99 during ms | p99 ratio | errors during |")
    say("|---|---|---|---|---|---|---|")
    for name in ("moving", "others"):
        say(f"| {name} vShard(s) | {med(lambda x: x[name][0]) * 1e3:.2f} | {med(lambda x: x[name][1]) * 1e3:.2f} | "
            f"{med(lambda x: x[name][2]) * 1e3:.2f} | {med(lambda x: x[name][3]) * 1e3:.2f} | "
            f"{med(lambda x: x[name][3] / x[name][1]):.2f}x | {med(lambda x: x[name][4]):.0f} |")
    say("")
    say(f"Moving vShard's longest gap between accepted writes: {med(lambda x: x['gap_before']) * 1e3:.0f} ms before "
        f"the move, {med(lambda x: x['gap_during']) * 1e3:.0f} ms during it (medians); move time "
        f"{statistics.median(r['end'] - r['start'] for r, _ in rows):.2f} s, "
        f"{statistics.median(r['total'] for r, _ in rows) / 1e6:.1f} MB of copies received by the target meanwhile "
        f"(its other groups' catch-ups included).")
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    open(os.path.join(ROOT, "target/bench/move.md"), "w").write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
