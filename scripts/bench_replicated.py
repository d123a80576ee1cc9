"""Driver of scripts/bench-replicated.sh: see that file for what it measures."""
from bench_common import cli, wait
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARDLINE = os.environ.get("SHARDLINE") or os.path.join(ROOT, "target/release/shardline")
BENCH = os.path.join(ROOT, "target/release/shardline-bench")
REPEATS = int(os.environ.get("REPEATS", "3"))
DURATION = os.environ.get("DURATION", "10")
CONNECTIONS = os.environ.get("CONNECTIONS", "50")
KILLS = int(os.environ.get("KILLS", "10"))
NCPU = os.cpu_count() or 2
out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw).stdout


def tls_flags(d, port):
    """`shardline ctl certs` in `d` (the CA and secret made once) for the node on `port`."""
    sh(SHARDLINE, "ctl", "certs", d, f"127.0.0.1:{port}")
    stem = os.path.join(d, f"127.0.0.1_{port}")
    return ["--cluster-tls-ca-file", os.path.join(d, "ca.pem"), "--cluster-tls-cert-file", stem + ".pem",
            "--cluster-tls-key-file", stem + ".key", "--cluster-secret-file", os.path.join(d, "cluster.secret")]


class Shardline:
    def __init__(self, n, base, extra=(), tls=False):
        self.n, self.base, self.dir = n, base, tempfile.mkdtemp(prefix="sl-bench-")
        nodes = ",".join(f"127.0.0.1:{base + i}" for i in range(n))
        self.procs = [None] * n
        certs = os.path.join(self.dir, "certs")
        self.args = [[SHARDLINE, "--port", str(base + i), "--cores", str(i % NCPU), "--data-dir",
                      os.path.join(self.dir, f"n{i}"), "--cluster-nodes", nodes, "--fsync", "always",
                      "--log-level", "warn", *(tls_flags(certs, base + i) if tls else []), *extra]
                     for i in range(n)]
        for i in range(n):
            self.start(i)
        self.wait_served()
        self.wait_settled()

    def start(self, i):
        self.procs[i] = subprocess.Popen(self.args[i], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_served(self, timeout=60):
        for i in range(self.n):
            if self.procs[i] is not None:
                wait(lambda: "cluster_slots_ok:16384" in cli(self.base + i, "cluster", "info"), timeout,
                     f"node {i} to see a leader for every slot")

    def wait_settled(self, timeout=60):
        # Leaders handed over to the placement's preferred replicas: a leader handing over
        # refuses writes (-TRYAGAIN) for a moment, which is not what the steady state measures.
        for i in range(self.n):
            if self.procs[i] is not None:
                wait(lambda: "cluster_moves_pending:0" in cli(self.base + i, "info", "cluster"), timeout,
                     f"node {i} to have no move or handover pending")

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = None

    def stop(self):
        for p in self.procs:
            if p:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(port, extra, value_size="64"):
    r = subprocess.run([BENCH, "--port", str(port), "--connections", CONNECTIONS, "--value-size", value_size,
                        "--keys", "100000", "--duration", DURATION, "--quiet", "--json", "/tmp/slb.json",
                        "--workload", "set", *extra], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"shardline-bench failed: {r.stderr}")
    return json.load(open("/tmp/slb.json"))


def etcd_cluster():
    d = tempfile.mkdtemp(prefix="etcd-bench-")
    peers = ",".join(f"e{i}=http://127.0.0.1:{23791 + 10 * i}" for i in range(3))
    procs = []
    for i in range(3):
        c, p = 23790 + 10 * i, 23791 + 10 * i
        procs.append(subprocess.Popen(
            ["taskset", "-c", str(i % NCPU), "etcd", "--name", f"e{i}", "--data-dir", os.path.join(d, f"e{i}"),
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", peers, "--initial-cluster-state", "new", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    eps = ",".join(f"http://127.0.0.1:{23790 + 10 * i}" for i in range(3))
    def healthy():
        r = subprocess.run(["etcdctl", "--endpoints", eps, "endpoint", "health"], capture_output=True, text=True)
        return (r.stdout + r.stderr).count("is healthy") == 3
    wait(healthy, 60, "etcd")
    status = json.loads(sh("etcdctl", "--endpoints", eps, "endpoint", "status", "-w", "json"))
    leader = next(s["Endpoint"] for s in status if s["Status"]["leader"] == s["Status"]["header"]["member_id"])
    return procs, d, int(leader.rsplit(":", 1)[1])


def stop_all(procs, d):
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(d, ignore_errors=True)


def row(name, runs):
    t = statistics.median(r["throughput"] for r in runs)
    p50 = statistics.median(r["p50_us"] for r in runs)
    p99 = statistics.median(r["p99_us"] for r in runs)
    errs = sum(r["errors"] for r in runs)
    return t, p50, p99, errs


def table(title, pairs, peer):
    say(f"### {title}")
    say("")
    say(f"| workload | shardline ops/s | {peer} ops/s | ratio | shardline p50/p99 µs | {peer} p50/p99 µs | errors |")
    say("|---|---|---|---|---|---|---|")
    for name, a, b in pairs:
        ta, a50, a99, ea = row(name, a)
        tb, b50, b99, eb = row(name, b)
        say(f"| {name} | {ta:,.0f} | {tb:,.0f} | {ta / tb:.2f}x | {a50:.0f} / {a99:.0f} | {b50:.0f} / {b99:.0f} | {ea} / {eb} |")
    say("")


def vs_etcd():
    a, b = [], []
    for r in range(REPEATS):
        c = Shardline(3, 7201)
        try:
            a.append(bench(7201, ["--cluster"]))
        finally:
            c.stop()
        procs, d, leader = etcd_cluster()
        try:
            b.append(bench(leader, ["--etcd"]))
        finally:
            stop_all(procs, d)
        say(f"  run {r + 1}: shardline {a[-1]['throughput']:,.0f}/s p99 {a[-1]['p99_us']} µs, "
            f"etcd {b[-1]['throughput']:,.0f}/s p99 {b[-1]['p99_us']} µs")
    table(f"3 nodes, RF 3, fsync always vs etcd 3.4 (3 members), {CONNECTIONS} connections, pipeline 1, "
          f"64 B values, medians of {REPEATS}", [("put / SET", a, b)], "etcd")


def vs_aof():
    pairs = []
    for pipeline in ("1", "16"):
        a, b = [], []
        for r in range(REPEATS):
            c = Shardline(1, 7301)
            try:
                a.append(bench(7301, ["--pipeline", pipeline]))
            finally:
                c.stop()
            d = tempfile.mkdtemp(prefix="aof-bench-")
            p = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", "7302", "--save", "",
                                  "--appendonly", "yes", "--appendfsync", "always", "--dir", d],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait(lambda: "PONG" in cli(7302, "ping"), 10, "redis-server")
                b.append(bench(7302, ["--pipeline", pipeline]))
            finally:
                p.kill()
                p.wait()
                shutil.rmtree(d, ignore_errors=True)
        pairs.append((f"SET pipeline {pipeline}", a, b))
    table(f"1 node, RF 1, fsync always vs redis-server appendfsync always, both on core 0, "
          f"{CONNECTIONS} connections, medians of {REPEATS}", pairs, "redis AOF")


def vs_clear():
    """The cost of mutual TLS on the bus: the same 3-node RF 3 cluster with its links in clear
    and under TLS, runs interleaved, the same load generator."""
    pairs = []
    for pipeline, size in (("1", "1024"), ("16", "1024")):
        a, b = [], []
        for r in range(REPEATS):
            for tls, runs in ((True, a), (False, b)):
                c = Shardline(3, 7601, tls=tls)
                try:
                    runs.append(bench(7601, ["--cluster", "--pipeline", pipeline], size))
                finally:
                    c.stop()
            say(f"  run {r + 1}, pipeline {pipeline}: TLS {a[-1]['throughput']:,.0f}/s p99 {a[-1]['p99_us']} µs, "
                f"clear {b[-1]['throughput']:,.0f}/s p99 {b[-1]['p99_us']} µs")
        pairs.append((f"SET {size} B pipeline {pipeline}", a, b))
    table(f"3 nodes, RF 3, fsync always: bus and lanes mutual TLS (shardline) vs in clear (peer), "
          f"{CONNECTIONS} connections, medians of {REPEATS}", pairs, "clear")


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def idle():
    c = Shardline(3, 7401, ["--vshards", "1024"])
    try:
        time.sleep(3)
        pid = c.procs[0].pid
        before, t0 = cpu_ticks(pid), time.time()
        time.sleep(20)
        used = (cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")
        say(f"### Idle cost: a node hosting 1,024 vShard replicas (3 nodes, RF 3), no client")
        say("")
        say(f"CPU over {time.time() - t0:.0f} s: {100 * used / (time.time() - t0):.2f}% of one core")
        say("")
    finally:
        c.stop()


def failover():
    c = Shardline(3, 7501)
    times = []
    try:
        for k in range(KILLS):
            victim = k % 3
            survivor = (victim + 1) % 3
            port = 7501 + survivor
            t0 = time.time()
            c.kill(victim)

            def recovered():
                # Every slot has a leader, and the victim leads none of them any more.
                if "cluster_slots_ok:16384" not in cli(port, "cluster", "info"):
                    return False
                line = next(l for l in cli(port, "cluster", "nodes").splitlines() if f":{7501 + victim}@" in l)
                return "master" not in line.split()[2]
            wait(recovered, 30, "failover")
            # And a write lands on every slot range the victim led.
            times.append(time.time() - t0)
            say(f"  kill {k + 1} (node {victim + 1}): every slot led by a live node after {1000 * times[-1]:.0f} ms")
            c.start(victim)
            c.wait_served()
            time.sleep(1)
    finally:
        c.stop()
    say(f"### Failover after kill -9 of one of 3 nodes (256 vShards, RF 3), {KILLS} kills")
    say("")
    say(f"time until the survivors name a live leader for every slot: median {1000 * statistics.median(times):.0f} ms, "
        f"max {1000 * max(times):.0f} ms")
    say("")


if __name__ == "__main__":
    if os.environ.get("ONLY_TLS"):
        for k in ("SKIP_ETCD", "SKIP_AOF", "SKIP_IDLE", "SKIP_FAILOVER"):
            os.environ[k] = "1"
    if os.environ.get("ONLY_TLS") or os.environ.get("TLS"):
        vs_clear()
    if not os.environ.get("SKIP_ETCD"):
        vs_etcd()
    if not os.environ.get("SKIP_AOF"):
        vs_aof()
    if not os.environ.get("SKIP_IDLE"):
        idle()
    if not os.environ.get("SKIP_FAILOVER"):
        failover()
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    open(os.path.join(ROOT, "target/bench/replicated.md"), "w").write("\n".join(out_lines) + "\n")
