"""Every shipped dataset config, end to end as a user runs it (`headwise run`, a fresh output
directory, one process): wall time, peak memory, the verdict, and each head's test-split
metrics next to its trivial baseline. The taxi config's cost is the pipeline-cost benchmark's;
this one is for the other datasets (pipeline/configs/*.yaml)."""

from __future__ import annotations

import dataclasses
import os
import shutil

from benchmarks import common
from headwise import config as config_lib
from pipeline import summary as summary_lib

CONFIGS = ("pipeline/configs/penguins.yaml",)


def run(work_dir: str, configs: tuple[str, ...] = CONFIGS) -> dict:
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    results: dict = {}
    for path in configs:
        cfg = config_lib.load(os.path.join(common.ROOT, path))
        out = os.path.join(work_dir, cfg.name)
        print(f"  {cfg.name} ({path}) ...", flush=True)
        m = common.run_measured(
            [common.python(), "-m", "headwise.cli", "run", "--config", path, "--output-dir", out],
            env=common.child_env(), cwd=common.ROOT,
            log_path=os.path.join(work_dir, f"{cfg.name}.log"))
        s = summary_lib.summarize(cfg, os.path.join(out, "metadata.db"))
        results[cfg.name] = {
            "config": path, "data": cfg.data_csv, "wall_s": m["wall_s"],
            "peak_rss_mib": m["peak_rss_mib"], "blessed": s.blessed, "pushed": s.pushed,
            "heads": [dataclasses.asdict(h) for h in s.heads]}
    return results


def summary(results: dict) -> str:
    parts = []
    for name, r in results.items():
        parts.append(f"**{name}** (`{r['config']}`, data `{r['data']}`): `headwise run` "
                     f"{r['wall_s']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB, blessed "
                     f"{'yes' if r['blessed'] else 'no'}, pushed {'yes' if r['pushed'] else 'no'}."
                     " Test split:")
        parts.append("")
        parts.append(common.md_table(
            ["head", "task", "metric", "value", "trivial baseline", "examples", "gate"],
            [[h["name"], h["task"], h["main_metric"], h["metrics"].get(h["main_metric"]),
              h["baseline"], h["example_count"],
              "-" if not h["gating"] else ("pass" if not h["failures"] else "FAIL")]
             for h in r["heads"]]))
        parts.append("")
    return "\n".join(parts)
