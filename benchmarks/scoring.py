"""Batch scoring throughput and memory: `headwise score` (serving/scoring.py) on the taxi CSV
copied 1x and 10x, as a user runs it (a whole `headwise` process: start-up, model load, Beam,
the joined output), in-memory with one worker and, at 10x, the DirectRunner's multi_processing
mode with 2 workers. Peak memory is the whole process tree's (workers included)."""

from __future__ import annotations

import datetime
import os
import re

from benchmarks import common, quality
from benchmarks.scaling import _copies

MODES = {"in_memory": ["--workers", "1"], "multi_processing": ["--workers", "2"]}


def run(model_dir: str, csv_path: str, work_dir: str, factors=(1, 10),
        multi_factor: int | None = 10) -> dict:
    os.makedirs(work_dir, exist_ok=True)
    cases = [(k, "in_memory") for k in factors]
    if multi_factor:
        cases.append((multi_factor, "multi_processing"))
    runs = []
    for k, mode in cases:
        data_dir = os.path.join(work_dir, f"x{k}")
        rows = _copies(csv_path, data_dir, k)
        out = os.path.join(work_dir, f"scored_x{k}_{mode}.parquet")
        log = os.path.join(work_dir, f"x{k}_{mode}.log")
        cmd = [common.python(), "-m", "cli", "score", "--model", model_dir,
               "--data", os.path.join(data_dir, "data.csv"), "--output", out, *MODES[mode]]
        m = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT, log_path=log)
        with open(log, encoding="utf-8") as fh:
            said = re.search(r"scored ([\d,]+) rows in ([\d.]+) s", fh.read())
        assert said and int(said.group(1).replace(",", "")) == rows, f"see {log}"
        job_s = float(said.group(2))
        runs.append({"factor": k, "mode": mode, "rows": rows, "wall_s": m["wall_s"],
                     "job_s": job_s, "rows_per_s_wall": rows / m["wall_s"],
                     "rows_per_s_job": rows / job_s, "peak_rss_mib": m["peak_rss_mib"]})
        print(f"  x{k} {mode}: {rows:,} rows, {m['wall_s']:.1f} s wall "
              f"({rows / m['wall_s']:,.0f} rows/s), job {job_s:.1f} s, peak "
              f"{m['peak_rss_mib']:.0f} MiB", flush=True)
        os.remove(out)
    return {"model": os.path.relpath(model_dir, common.ROOT) if model_dir.startswith(
        common.ROOT) else model_dir, "data": os.path.basename(csv_path), "runs": runs,
        "commit": quality._commit(),
        "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


def summary(r: dict) -> str:
    rows = [[f"{x['factor']}x", x["mode"], f"{x['rows']:,}", x["wall_s"], x["rows_per_s_wall"],
             x["job_s"], x["rows_per_s_job"], x["peak_rss_mib"]] for x in r["runs"]]
    head = f"Run {r.get('finished', '?')} at commit {r.get('commit', '?')}, model {r['model']}.\n\n"
    text = head + common.md_table(["data", "mode", "rows", "wall s", "rows/s (wall)", "job s",
                            "rows/s (job)", "peak MiB"], rows)
    return text + ("\n\n`headwise score` as a user runs it; wall: the whole process (start-up, "
                   "TensorFlow and Beam imports, model load, scoring, the joined output); job: "
                   "from the Beam job's start to the output's rename, as the command reports it.")
