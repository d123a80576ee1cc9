"""Driver of scripts/copy-memory.sh: see that file for what it measures."""
from bench_common import stop_all, cli, start_listed, wait
import os, shutil, statistics, tempfile, threading, time
import redis
from redis.crc import key_slot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEW = os.path.join(ROOT, "target/release/shardline")
SIZE_MB = int(os.environ.get("SIZE_MB", "2048"))
VALUE = int(os.environ.get("VALUE", "16384"))
REPEATS = int(os.environ.get("REPEATS", "1"))
VSHARDS = 16
SLOTS_PER = 16384 // VSHARDS
MIB = 1 << 20
out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no {field} for {pid}")


def used(port):
    """INFO's used_memory: what the allocator holds live (RSS also keeps what it freed)."""
    for line in cli(port, "info", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def sampler(ports, stop, peaks, series):
    """The highest used_memory of each port until `stop` is set, every 50 ms; each sample
    also goes to `series` as (seconds, port, bytes)."""
    t0 = time.time()
    while not stop.is_set():
        for p in ports:
            try:
                u = used(p)
                peaks[p] = max(peaks.get(p, 0), u)
                series.append((time.time() - t0, p, u))
            except Exception:
                pass
        time.sleep(0.05)


def run_once(binary):
    d = tempfile.mkdtemp(prefix="sl-copymem-")
    base = 7701
    procs = []
    try:
        procs += start_listed(binary, 2, base, d, [
            "--cluster-replicas", "1", "--vshards", str(VSHARDS), "--log-level", "warn"])
        v = key_slot(b"{big}") // SLOTS_PER
        r0 = redis.Redis(port=base)
        holder = None
        for a, b, *reps in r0.execute_command("CLUSTER", "SLOTS"):
            if a <= v * SLOTS_PER <= b:
                holder = int(reps[0][1]) - base + 1
        frm, to = holder, 3 - holder
        src, dst = procs[frm - 1].pid, procs[to - 1].pid
        r = redis.Redis(port=base + frm - 1)
        value = b"v" * VALUE
        keys = SIZE_MB * MIB // VALUE
        p = r.pipeline(transaction=False)
        for i in range(keys):
            p.set(f"{{big}}:{i}", value)
            if i % 64 == 63:
                p.execute()
        p.execute()
        data = keys * VALUE
        time.sleep(2)
        before = {n: status(pid, "VmRSS") for n, pid in (("source", src), ("target", dst))}
        ports = {"source": base + frm - 1, "target": base + to - 1}
        used_before = {n: used(p) for n, p in ports.items()}
        stop, peaks, series = threading.Event(), {}, []
        th = threading.Thread(target=sampler, args=(list(ports.values()), stop, peaks, series))
        th.start()
        for pid in (src, dst):
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        start = time.time()
        mid = r0.execute_command("CLUSTER", "MOVE", v, to, "FROM", frm)

        def done():
            for m in r0.execute_command("CLUSTER", "MOVES"):
                m = dict(zip([k.decode() for k in m[::2]], m[1::2]))
                if int(m["id"]) == mid:
                    return m["state"] != b"open"
            return False
        wait(done, 1800, "the move", every=0.1)
        took = time.time() - start
        time.sleep(1)
        stop.set()
        th.join()
        res = dict(data=data, took=took)
        for n, p in ports.items():
            res["used_" + n] = (used_before[n], peaks.get(p, 0), used(p))
        name = {p: n for n, p in ports.items()}
        with open(os.path.join(ROOT, "target/bench/copy-memory-series.csv"), "a") as f:
            for t, p, u in series:
                f.write(f"{os.path.basename(binary)},{t:.2f},{name[p]},{u}\n")
        for n, pid in (("source", src), ("target", dst)):
            res[n] = (before[n], status(pid, "VmHWM"), status(pid, "VmRSS"))
        # Every key is on the target now.
        rt = redis.Redis(port=base + to - 1)
        got = rt.execute_command("DBSIZE")
        if got != keys:
            raise SystemExit(f"the target holds {got} keys, not {keys}")
        return res
    finally:
        stop_all(procs, d)


def main():
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    open(os.path.join(ROOT, "target/bench/copy-memory-series.csv"), "w").close()
    builds = [("this build", NEW)]
    if os.environ.get("OLD"):
        builds.append(("OLD", os.environ["OLD"]))
    say(f"## Memory of a base copy: one vShard of {SIZE_MB} MiB ({VALUE} B values) moved between two nodes (RF 1), {REPEATS} run(s), medians")
    say("")
    say("Resident memory (VmRSS; the peak is VmHWM, reset before the move):")
    say("")
    say("| build | data MiB | source before / peak / after MiB | peak over before | target before / peak / after MiB | peak over after | move s |")
    say("|---|---|---|---|---|---|---|")
    rows = []
    for name, binary in builds:
        runs = [run_once(binary) for _ in range(REPEATS)]
        med = lambda f: statistics.median(f(x) for x in runs)
        data = runs[0]["data"] / MIB
        s = [med(lambda x, i=i: x["source"][i] / MIB) for i in range(3)]
        t = [med(lambda x, i=i: x["target"][i] / MIB) for i in range(3)]
        say(f"| {name} | {data:.0f} | {s[0]:.0f} / {s[1]:.0f} / {s[2]:.0f} | {(s[1] - s[0]) / data:.2f}x data | "
            f"{t[0]:.0f} / {t[1]:.0f} / {t[2]:.0f} | {(t[1] - t[2]) / data:.2f}x data | {med(lambda x: x['took']):.1f} |")
        us = [med(lambda x, i=i: x["used_source"][i] / MIB) for i in range(3)]
        ut = [med(lambda x, i=i: x["used_target"][i] / MIB) for i in range(3)]
        rows.append(f"| {name} | {us[0]:.0f} / {us[1]:.0f} / {us[2]:.0f} | {(us[1] - us[0]) / data:.2f}x data | "
                    f"{ut[0]:.0f} / {ut[1]:.0f} / {ut[2]:.0f} | {(ut[1] - ut[2]) / data:.2f}x data |")
    say("")
    say("Live allocations (INFO used_memory, sampled every 50 ms during the move):")
    say("")
    say("| build | source before / peak / after MiB | peak over before | target before / peak / after MiB | peak over after |")
    say("|---|---|---|---|---|")
    for row in rows:
        say(row)
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/copy-memory.md"), "w") as f:
        f.write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
