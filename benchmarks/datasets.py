"""Every shipped dataset config, end to end as a user runs it (`headwise run`, a fresh output
directory, one process): wall time, peak memory, the verdict, and each head's test-split
metrics next to its trivial baseline. The taxi config's cost is the pipeline-cost benchmark's;
this one is for the other datasets (pipeline/configs/*.yaml), and for a synthetic head with
1,000 classes that Transform learns (`many_classes`: what a large label vocabulary costs)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import yaml

from benchmarks import common
from headwise import config as config_lib
from pipeline import summary as summary_lib

CONFIGS = ("pipeline/configs/penguins.yaml",)


def many_classes(work_dir: str, rows: int = 30_000, classes: int = 1000, seed: int = 0) -> str:
    """A CSV and config: a multiclass head with `classes` learned (1,000 of them, Zipf-like
    frequencies) and a regression head. The class is recoverable from the features: `group`
    (a category) names its hundred, `x` its position in it (with noise)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, classes + 1) ** 0.5
    k = rng.choice(classes, size=rows, p=weights / weights.sum())
    x = (k % 100) + rng.normal(scale=0.3, size=rows)
    value = 10 * np.sin(k) + x + rng.normal(size=rows)
    data = os.path.join(work_dir, "many_classes.csv")
    with open(data, "w", encoding="utf-8") as fh:
        fh.write("group,x,label,value\n")
        for i in range(rows):
            fh.write(f"g{k[i] // 100},{x[i]:.4f},class_{k[i]},{value[i]:.4f}\n")
    config = os.path.join(work_dir, "many_classes.yaml")
    with open(config, "w", encoding="utf-8") as fh:
        yaml.safe_dump({
            "name": "many_classes", "data": {"csv": data},
            "features": {"group": "categorical", "x": "numeric"},
            "heads": [{"name": "label", "label": "label", "task": "multiclass",
                       "metrics": ["accuracy", "top2_accuracy"]},  # no classes: learned
                      {"name": "value", "label": "value", "task": "regression"}],
            "model": {"hidden_units": [128, 64], "learning_rate": 0.003},
            "trainer": {"train_steps": 1000, "eval_steps": 20, "batch_size": 128},
            "beam_args": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        }, fh, sort_keys=False)
    return config


def run(work_dir: str, configs: tuple[str, ...] = CONFIGS) -> dict:
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    results: dict = {}
    for path in (*configs, many_classes(work_dir)):
        path = os.path.join(common.ROOT, path)
        cfg = config_lib.load(path)
        out = os.path.join(work_dir, cfg.name)
        print(f"  {cfg.name} ({path}) ...", flush=True)
        m = common.run_measured(
            [common.python(), "-m", "cli", "run", "--config", path, "--output-dir", out],
            env=common.child_env(), cwd=common.ROOT,
            log_path=os.path.join(work_dir, f"{cfg.name}.log"))
        s = summary_lib.summarize(cfg, os.path.join(out, "metadata.db"))
        results[cfg.name] = {
            "config": os.path.relpath(path, common.ROOT) if path.startswith(common.ROOT)
            else path, "data": cfg.data_path, "wall_s": m["wall_s"],
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
