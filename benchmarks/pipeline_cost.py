"""Where `make run`'s time and memory go, next to the official TFX taxi example pipeline with the
same Beam mode, in one run on one machine.

  * first runs, alternating (headwise, official, headwise, official, ...; `rounds` of each, a
    fresh output folder each time): wall time and peak memory of each whole process and of each
    component; the ratio is the median of the rounds' paired ratios;
  * a no-op rerun (nothing changed: `headwise run` answers from the last run's stamp);
  * a rerun after changing only a gate (one head's threshold moved by 0.01): the Evaluator and
    the Pusher run, everything else comes from TFX's cache.

The official example runs with headwise's own Beam args (`in_memory`, one worker: what `headwise
run` passes, pipeline/local_runner.local_beam_args), so the ratio compares the pipelines' own
work. headwise runs a copy of the config written beside it (so its relative paths hold), which
the gate change then edits."""

from __future__ import annotations

import os
import shutil
import statistics
import time

import yaml

from benchmarks import common, official_taxi
from headwise import config as config_lib
from pipeline import local_runner
from pipeline import summary as summary_lib

# headwise's Beam mode (pipeline/local_runner: the default when a config sets no beam_args).
IN_MEMORY = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
ROUNDS = 2
GOALS = {"first_vs_official": 0.5, "noop_s": 5.0, "gate_change_s": 15.0}  # issue 28


def _components(metadata: str, name: str, samples, since: float = 0.0) -> dict[str, dict]:
    """Each component's last execution that started after `since` (a unix time)."""
    runs = {cid: r for cid, r in summary_lib.component_runs(metadata, name).items()
            if r.start_s >= since}
    if not runs:
        return {}
    first = min(r.start_s for r in runs.values())
    return {cid: {"seconds": r.seconds, "state": r.state, "start_offset_s": r.start_s - first,
                  "peak_rss_mib": common.peak_between(samples, r.start_s, r.end_s)}
            for cid, r in runs.items()}


def gate_changed(raw: dict) -> tuple[dict, str]:
    """The config with its first head threshold moved by 0.01 (a lower bound down, an upper
    bound up: the verdict stays), and which one."""
    for head in raw["heads"]:
        for metric, bounds in (head.get("thresholds") or {}).items():
            for key, step in (("min", -0.01), ("max", 0.01)):
                if key in bounds:
                    bounds[key] = round(bounds[key] + step, 6)
                    return raw, f"heads[{head['name']}].thresholds.{metric}.{key}"
    raise ValueError("the config has no head threshold to change")


def measure_run(config: str, out: str, log: str, cfg) -> dict:
    """`headwise run --config config --output-dir out` in its own process: wall seconds, peak
    memory, and each component it executed (ML Metadata), with that component's peak."""
    since = time.time()
    m = common.run_measured([common.python(), "-m", "cli", "run", "--config", config,
                             "--output-dir", out], env=common.child_env(), cwd=common.ROOT,
                            log_path=log)
    return {"wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"],
            "components": _components(os.path.join(out, "metadata.db"), cfg.name,
                                      m["samples"], since)}


def _official(work: str, beam: list[str], log: str) -> dict:
    m = common.run_measured([common.python(), "-m", "benchmarks.official_taxi", "--work-dir",
                             work, *beam], env=common.child_env(), cwd=common.ROOT, log_path=log)
    return {"wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"], "beam_args": beam,
            "components": _components(official_taxi.metadata_path(work),
                                      official_taxi.PIPELINE_NAME, m["samples"])}


def run(config_path: str, work_dir: str, rounds: int = ROUNDS) -> dict:
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    with open(config_path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    copy = os.path.join(os.path.dirname(os.path.abspath(config_path)),
                        f".bench-{os.path.basename(config_path)}")
    beam = [f"--beam-arg={a}" for a in local_runner.local_beam_args(cfg.beam_args or IN_MEMORY)]
    ours: list[dict] = []
    theirs: list[dict] = []
    try:
        with open(copy, "w", encoding="utf-8") as fh:
            yaml.safe_dump(raw, fh, sort_keys=False)
        for i in range(rounds):
            print(f"  round {i + 1}/{rounds}: headwise first run ...", flush=True)
            out = os.path.join(work_dir, f"headwise-{i}")
            ours.append(measure_run(copy, out, os.path.join(work_dir, f"headwise-{i}.log"), cfg))
            print(f"  round {i + 1}/{rounds}: official taxi example (in_memory) ...", flush=True)
            theirs.append(_official(os.path.join(work_dir, f"official-{i}"), beam,
                                    os.path.join(work_dir, f"official-{i}.log")))
        print("  no-op rerun ...", flush=True)
        noop = measure_run(copy, out, os.path.join(work_dir, "noop.log"), cfg)
        changed, which = gate_changed(raw)
        with open(copy, "w", encoding="utf-8") as fh:
            yaml.safe_dump(changed, fh, sort_keys=False)
        print(f"  rerun after changing only {which} ...", flush=True)
        gate = measure_run(copy, out, os.path.join(work_dir, "gate_change.log"), cfg)
        gate["changed"] = which
    finally:
        if os.path.exists(copy):
            os.remove(copy)
    ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(ours, theirs, strict=True)]
    median_round = sorted(range(rounds), key=lambda i: ours[i]["wall_s"])[(rounds - 1) // 2]
    return {
        "commit": common.commit(), "finished": time.strftime("%Y-%m-%d %H:%M"),
        "rounds": {"headwise_first": ours, "official_taxi_in_memory": theirs},
        # the round whose headwise wall time is the median (the lower one of two)
        "headwise_first": ours[median_round],
        "official_taxi_in_memory": theirs[median_round],
        "headwise_noop": noop, "headwise_gate_change": gate,
        "ratios": {"headwise_vs_official_in_memory_wall": statistics.median(ratios),
                   "per_round": ratios},
        "goals": GOALS,
    }


def summary(results: dict) -> str:
    r = results["ratios"]
    rounds = results["rounds"]
    text = common.md_table(
        ["run", "wall s (process, median)", "peak RSS MiB (max)", "goal"], [
            ["headwise first run", statistics.median(x["wall_s"] for x in
                                                     rounds["headwise_first"]),
             max(x["peak_rss_mib"] for x in rounds["headwise_first"]),
             f"<= {GOALS['first_vs_official']}x official"],
            ["official taxi example (in_memory)",
             statistics.median(x["wall_s"] for x in rounds["official_taxi_in_memory"]),
             max(x["peak_rss_mib"] for x in rounds["official_taxi_in_memory"]), ""],
            ["no-op rerun", results["headwise_noop"]["wall_s"],
             results["headwise_noop"]["peak_rss_mib"], f"<= {GOALS['noop_s']:.0f} s"],
            [f"rerun, only {results['headwise_gate_change']['changed']} changed",
             results["headwise_gate_change"]["wall_s"],
             results["headwise_gate_change"]["peak_rss_mib"],
             f"<= {GOALS['gate_change_s']:.0f} s"]])
    text += (f"\n\nheadwise / official, median of {len(r['per_round'])} alternating rounds: "
             f"**{r['headwise_vs_official_in_memory_wall']:.2f}x** (rounds: "
             + ", ".join(f"{x:.2f}x" for x in r["per_round"]) + ").")
    first, official = results["headwise_first"], results["official_taxi_in_memory"]
    comps = sorted(first["components"], key=lambda c: first["components"][c]["start_offset_s"])
    comps += [c for c in sorted(official["components"],
                                key=lambda c: official["components"][c]["start_offset_s"])
              if c not in comps]
    gate = results["headwise_gate_change"]["components"]
    comps += [c for c in gate if c not in comps]

    def cell(runs: dict, c: str) -> str:
        e = runs.get(c)
        return "-" if e is None else (f"{e['seconds']:.1f}" if e["state"] != "CACHED"
                                      else "cached")
    text += ("\n\nPer component (seconds from ML Metadata; the median round):\n\n"
             + common.md_table(["component", "headwise first", "official (in_memory)",
                                "gate-only rerun"],
                               [[c, cell(first["components"], c),
                                 cell(official["components"], c), cell(gate, c)]
                                for c in comps]))
    return text
