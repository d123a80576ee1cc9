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
