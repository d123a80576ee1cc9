"""Helpers the benchmark drivers share (scripts/bench_*.py): redis-cli calls and bounded waits."""
import subprocess, time


def cli(port, *args):
    """redis-cli's output for one command to 127.0.0.1:`port` (5 s at most)."""
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5)
    return r.stdout


def wait(cond, timeout, what, every=0.02):
    """Polls `cond` (exceptions count as not yet) until it holds, or exits naming `what`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def start_listed(binary, n, base, data_dir, extra):
    """`n` nodes of one listed cluster on ports `base`.. (node i on core i mod cores, data in
    `data_dir`/n<i>), waited for until every slot is served and nothing moves: their processes."""
    import os
    ncpu = os.cpu_count() or 2
    nodes = ",".join(f"127.0.0.1:{base + i}" for i in range(n))
    procs = [subprocess.Popen(
        [binary, "--port", str(base + i), "--cores", str(i % ncpu), "--data-dir", os.path.join(data_dir, f"n{i}"),
         "--cluster-nodes", nodes, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(n)]
    for i in range(n):
        wait(lambda: "cluster_slots_ok:16384" in cli(base + i, "cluster", "info"), 60, f"node {i}")
        wait(lambda: "cluster_moves_pending:0" in cli(base + i, "info", "cluster"), 60, f"node {i} settled")
    return procs


def prefill(bench, port, keys, value):
    """`keys` keys of `value` bytes through shardline-bench's cluster mode. A leadership
    handover right after formation can leave a slot unserved for a moment: it asks again."""
    for _ in range(5):
        r = subprocess.run([bench, "--port", str(port), "--cluster", "--keys", str(keys), "--value-size",
                            str(value), "--prefill", "--requests", "1", "--connections", "32", "--pipeline", "16",
                            "--quiet", "--workload", "set"], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"prefill failed: {r.stderr}")


def stop_all(procs, data_dir):
    """Kills the nodes `procs` and removes their data directory."""
    import shutil
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(data_dir, ignore_errors=True)
