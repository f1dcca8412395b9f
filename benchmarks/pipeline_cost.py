"""Where `make run`'s time and memory go, next to the official TFX taxi example pipeline, in one
run on one machine: wall time and peak memory of each whole run and of each component, and a
second, cached `make run` (nothing changed) as a ratio of the first."""

from __future__ import annotations

import os
import shutil

from benchmarks import common, official_taxi
from headwise import config as config_lib
from pipeline import summary as summary_lib


def _components(metadata: str, name: str, samples) -> dict[str, dict]:
    runs = summary_lib.component_runs(metadata, name)
    return {cid: {"seconds": r.seconds, "state": r.state,
                  "peak_rss_mib": common.peak_between(samples, r.start_s, r.end_s)}
            for cid, r in sorted(runs.items(), key=lambda kv: kv[1].start_s)}


def run(config_path: str, work_dir: str) -> dict:
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    ours = os.path.join(work_dir, "headwise")
    cmd = [common.python(), "-m", "headwise.cli", "run", "--config", config_path,
           "--output-dir", ours]
    results: dict = {}
    for label in ("headwise_first", "headwise_cached"):
        print(f"  {label.replace('_', ' ')} run ...", flush=True)
        m = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT,
                                log_path=os.path.join(work_dir, f"{label}.log"))
        results[label] = {"wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"],
                          "components": _components(os.path.join(ours, "metadata.db"),
                                                    cfg.name, m["samples"])}
    print("  official TFX taxi example ...", flush=True)
    official = os.path.join(work_dir, "official")
    m = common.run_measured([common.python(), "-m", "benchmarks.official_taxi", "--work-dir",
                             official], env=common.child_env(), cwd=common.ROOT,
                            log_path=os.path.join(work_dir, "official.log"))
    results["official_taxi"] = {
        "wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"],
        "components": _components(official_taxi.metadata_path(official),
                                  official_taxi.PIPELINE_NAME, m["samples"])}
    results["ratios"] = {
        "headwise_vs_official_wall": results["headwise_first"]["wall_s"]
        / results["official_taxi"]["wall_s"],
        "cached_vs_first_wall": results["headwise_cached"]["wall_s"]
        / results["headwise_first"]["wall_s"]}
    return results


def summary(results: dict) -> str:
    rows = []
    for label in ("headwise_first", "headwise_cached", "official_taxi"):
        r = results[label]
        rows.append([label.replace("_", " "), r["wall_s"], r["peak_rss_mib"]])
    text = common.md_table(["run", "wall s (process)", "peak RSS MiB"], rows)
    first, official = results["headwise_first"]["components"], results["official_taxi"][
        "components"]
    comps = list(first) + [c for c in official if c not in first]  # in execution order
    rows = []
    for c in comps:
        row = [c]
        for label in ("headwise_first", "headwise_cached", "official_taxi"):
            e = results[label]["components"].get(c)
            row += [f"{e['seconds']:.1f}" if e else "-",
                    f"{e['peak_rss_mib']:.0f}" if e else "-"]
        rows.append(row)
    text += "\n\nPer component (seconds from ML Metadata; peak RSS of the run while it ran):\n\n"
    text += common.md_table(["component", "headwise s", "MiB", "cached s", "MiB", "official s",
                             "MiB"], rows)
    r = results["ratios"]
    text += (f"\n\n`make run` (5 heads) / official taxi example (1 head): "
             f"**{r['headwise_vs_official_wall']:.2f}x** wall time; cached re-run / first run: "
             f"**{r['cached_vs_first_wall']:.2f}x**.")
    return text
