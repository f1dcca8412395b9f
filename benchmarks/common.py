"""What every benchmark shares: timing statistics, peak memory of a child process tree, the
machine description, and writing results (JSON next to a Markdown summary)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def concurrent_load(fn: Callable[[], Any], clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads call fn for `seconds`; requests/s and latency percentiles."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                fn()
            except Exception:  # noqa: BLE001 - counted, reported
                errors[i] += 1
                continue
            samples[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [s for per in samples for s in per]
    return {**percentiles(flat), "requests_per_s": len(flat) / elapsed, "errors": sum(errors)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 log_path: str | None = None, poll_s: float = 0.2) -> dict[str, Any]:
    """Run a command; wall seconds, the peak resident memory of its whole process tree, and the
    memory samples [(unix time, bytes)] (to attribute peaks to pipeline components)."""
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    samples: list[tuple[float, int]] = []
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            samples.append((time.time(), sum(p.memory_info().rss for p in procs
                                             if p.is_running())))
        except psutil.Error:
            pass
        time.sleep(poll_s)
    wall = time.perf_counter() - start
    peak = max((b for _, b in samples), default=0)
    if log_path:
        out.close()
    if proc.returncode != 0:
        tail = open(log_path).read()[-3000:] if log_path else ""
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}\n{tail}")
    return {"wall_s": wall, "peak_rss_mib": peak / 2**20, "samples": samples}


def peak_between(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Peak memory (MiB) sampled while [start, end] ran (a component's execution)."""
    inside = [b for t, b in samples if start - 0.25 <= t <= end + 0.25]
    return max(inside, default=0) / 2**20


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def python() -> str:
    return sys.executable


# What `headwise bench` itself rewrites: a difference there says nothing about the code measured.
BENCH_OUTPUTS = ("benchmarks/results", "README.md")


def commit() -> str:
    """The checkout's short commit, "+changes" when tracked files other than the benchmarks' own
    outputs (BENCH_OUTPUTS: a second run in one checkout finds the first's) differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *(f":(exclude){p}" for p in BENCH_OUTPUTS)],
                               capture_output=True, text=True, cwd=ROOT).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(name: str, data: dict[str, Any]) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def paired(a: list[float], b: list[float], higher_is_better: bool,
           level: float = 0.95) -> dict[str, Any]:
    """a vs b, paired by seed: the mean difference (positive: a is better), its standard error,
    and a verdict: `better` / `worse` when the mean difference is beyond the two-sided
    Student-t interval at `level` (n - 1 degrees of freedom), else `within noise`."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = (a - b) if higher_is_better else (b - a)
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "se": None, "n": int(n), "t_critical": None,
                "verdict": "n/a (one seed: no noise estimate)"}
    se = float(d.std(ddof=1) / np.sqrt(n))
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    verdict = ("better" if mean > t * se else "worse" if mean < -t * se else "within noise")
    if se == 0.0:
        verdict = "better" if mean > 0 else "worse" if mean < 0 else "within noise"
    return {"mean": mean, "se": se, "n": int(n), "t_critical": t, "verdict": verdict}


def readme_block(readme: str, begin: str, end: str) -> str | None:
    """The text between a README's generated-block markers (None without them)."""
    if begin not in readme or end not in readme:
        return None
    return readme.split(begin, 1)[1].split(end, 1)[0]


def render_readme_block(readme_path: str, begin: str, end: str, text: str) -> bool:
    """Replace the README's block between `begin` and `end` with `text`; whether it changed
    (False too where the README has no such block)."""
    with open(readme_path, encoding="utf-8") as fh:
        readme = fh.read()
    block = readme_block(readme, begin, end)
    if block is None:
        return False
    new = readme.replace(begin + block + end, f"{begin}\n{text}\n{end}")
    if new != readme:
        with open(readme_path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != readme
