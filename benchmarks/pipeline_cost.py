"""Where `make run`'s time and memory go, next to the official TFX taxi example pipeline, in one
run on one machine: wall time and peak memory of each whole run and of each component, and
cached `make run`s (nothing changed) as a ratio of the first. The first cached rerun still runs
the Evaluator (it now has a blessed baseline, so its inputs differ from the first run's) and the
Pusher (which finds the model already served); the one after that is cached throughout."""

from __future__ import annotations

import os
import shutil

from benchmarks import common, official_taxi
from headwise import config as config_lib
from pipeline import local_runner
from pipeline import summary as summary_lib


def _components(metadata: str, name: str, samples) -> dict[str, dict]:
    runs = summary_lib.component_runs(metadata, name)
    first = min(r.start_s for r in runs.values())
    return {cid: {"seconds": r.seconds, "state": r.state, "start_offset_s": r.start_s - first,
                  "peak_rss_mib": common.peak_between(samples, r.start_s, r.end_s)}
            for cid, r in runs.items()}


RUNS = ("headwise_first", "headwise_cached", "headwise_cached_again")
OFFICIAL = ("official_taxi", "official_taxi_in_memory")
# headwise's Beam mode (pipeline/local_runner: the default when a config sets no beam_args).
IN_MEMORY = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def run(config_path: str, work_dir: str) -> dict:
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    ours = os.path.join(work_dir, "headwise")
    cmd = [common.python(), "-m", "cli", "run", "--config", config_path,
           "--output-dir", ours]
    results: dict = {}
    for label in RUNS:
        print(f"  {label.replace('_', ' ')} run ...", flush=True)
        m = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT,
                                log_path=os.path.join(work_dir, f"{label}.log"))
        results[label] = {"wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"],
                          "components": _components(os.path.join(ours, "metadata.db"),
                                                    cfg.name, m["samples"])}
    # "With headwise's Beam mode": the very Beam args `headwise run` uses (local_beam_args).
    ours_args = local_runner.local_beam_args(cfg.beam_args or IN_MEMORY)
    for label, beam in (("official_taxi", []),
                        ("official_taxi_in_memory", [f"--beam-arg={a}" for a in ours_args])):
        print(f"  {label.replace('_', ' ')} ...", flush=True)
        official = os.path.join(work_dir, label)
        m = common.run_measured([common.python(), "-m", "benchmarks.official_taxi", "--work-dir",
                                 official, *beam], env=common.child_env(), cwd=common.ROOT,
                                log_path=os.path.join(work_dir, f"{label}.log"))
        results[label] = {
            "wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"], "beam_args": beam,
            "components": _components(official_taxi.metadata_path(official),
                                      official_taxi.PIPELINE_NAME, m["samples"])}
    results["ratios"] = {
        "headwise_vs_official_wall": results["headwise_first"]["wall_s"]
        / results["official_taxi"]["wall_s"],
        # The same Beam mode on both sides: what is left is the pipelines' own work.
        "headwise_vs_official_in_memory_wall": results["headwise_first"]["wall_s"]
        / results["official_taxi_in_memory"]["wall_s"],
        "cached_vs_first_wall": results["headwise_cached"]["wall_s"]
        / results["headwise_first"]["wall_s"],
        "cached_again_vs_first_wall": results["headwise_cached_again"]["wall_s"]
        / results["headwise_first"]["wall_s"]}
    return results


def summary(results: dict) -> str:
    labels = [k for k in (*RUNS, *OFFICIAL) if k in results]
    text = common.md_table(["run", "wall s (process)", "peak RSS MiB"], [
        [k.replace("_", " "), results[k]["wall_s"], results[k]["peak_rss_mib"]] for k in labels])

    def order(label: str) -> list[str]:
        comps = results[label]["components"]
        return sorted(comps, key=lambda c: comps[c].get("start_offset_s", 0))
    comps = order("headwise_first") + [c for c in order("official_taxi")
                                        if c not in results["headwise_first"]["components"]]
    rows = []
    for c in comps:
        row = [c]
        for label in labels:
            e = results[label]["components"].get(c)
            row += [f"{e['seconds']:.1f}" if e else "-", f"{e['peak_rss_mib']:.0f}" if e else "-"]
        rows.append(row)
    header = ["component"]
    for label in labels:
        header += [f"{label.replace('headwise_', '').replace('_', ' ')} s", "MiB"]
    text += ("\n\nPer component, in execution order (seconds from ML Metadata; peak RSS of the "
             "whole run while it ran):\n\n" + common.md_table(header, rows))
    r = results["ratios"]
    text += (f"\n\n`make run` (5 heads) / official taxi example (1 head): "
             f"**{r['headwise_vs_official_wall']:.2f}x** wall time against it as shipped "
             "(multi_processing Beam), **"
             f"{r.get('headwise_vs_official_in_memory_wall', float('nan')):.2f}x** against it "
             "with headwise's Beam mode (in_memory). Cached re-runs / first run: "
             f"**{r['cached_vs_first_wall']:.2f}x** (the Evaluator runs once more: it now has a "
             f"baseline), then **{r.get('cached_again_vs_first_wall', float('nan')):.2f}x** "
             "(everything cached; what remains is starting Python, TensorFlow and TFX).")
    return text
