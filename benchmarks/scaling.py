"""How Transform, Trainer and Evaluator cost grows with data: the taxi CSV copied 1x, 10x, 50x,
through the pipeline's own ExampleGen, Transform and Trainer (one epoch over the train split, no
early stopping) in a child process whose memory is sampled, then the pipeline's Evaluator alone
(everything else from the cache) in a second child process, so that its peak memory is its own;
and which Beam direct-runner mode runs Transform fastest on this machine."""

from __future__ import annotations

import math
import os
import shutil

from benchmarks import common
from benchmarks import pipelines as bench_pipelines
from headwise import config as config_lib
from headwise.config import model as model_config
from pipeline import summary as summary_lib

BEAM_MODES = {
    "in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    "multi_threading": ["--direct_running_mode=multi_threading", "--direct_num_workers=0"],
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
}


def _copies(src: str, dst_dir: str, k: int) -> int:
    """dst_dir/data.csv = the header and k copies of src's rows; returns the row count."""
    os.makedirs(dst_dir, exist_ok=True)
    with open(src, encoding="utf-8") as fh:
        header, *rows = fh.read().splitlines()
    with open(os.path.join(dst_dir, "data.csv"), "w", encoding="utf-8") as out:
        out.write(header + "\n")
        for _ in range(k):
            out.write("\n".join(rows) + "\n")
    return len(rows) * k


def _measure(config_path: str, cfg, data_dir: str, work: str, rows: int,
             beam: list[str], one_epoch: bool, evaluate: bool = False) -> dict:
    train_rows = rows * cfg.hash_buckets()["train"] // sum(cfg.hash_buckets().values())
    # the batch size a --train-steps run trains with (the config's, or the step-mode default)
    batch = model_config.plan(cfg.trainer, train_rows, 1, train_steps=1).batch_size
    steps = max(1, math.ceil(train_rows / batch)) if one_epoch else 10
    cmd = [common.python(), "-m", "benchmarks.pipelines", "--config", config_path,
           "--data-root", data_dir, "--work-dir", work, "--variants", "multi", "--seeds", "42",
           "--train-steps", str(steps), "--eval-steps", "10", "--no-early-stopping"]
    for a in beam:
        cmd.append(f"--beam-arg={a}")
    m = common.run_measured(cmd + ["--cache"], env=common.child_env(), cwd=common.ROOT,
                            log_path=os.path.join(work + ".log"))
    runs = summary_lib.component_runs(bench_pipelines.metadata_path(work),
                                      bench_pipelines.PIPELINE_NAME)
    out = {"rows": rows, "train_steps": steps, "wall_s": m["wall_s"],
           "peak_rss_mib": m["peak_rss_mib"]}
    for cid, key in (("CsvExampleGen", "example_gen"), ("Transform", "transform"),
                     (bench_pipelines.trainer_id("multi", 42), "trainer")):
        r = runs[cid]
        out[key] = {"seconds": r.seconds,
                    "peak_rss_mib": common.peak_between(m["samples"], r.start_s, r.end_s)}
    if evaluate:
        e = common.run_measured(cmd + ["--cache", "--evaluate"], env=common.child_env(),
                                cwd=common.ROOT, log_path=os.path.join(work + ".evaluate.log"))
        r = summary_lib.component_runs(bench_pipelines.metadata_path(work),
                                       bench_pipelines.PIPELINE_NAME)[bench_pipelines.EVALUATOR_ID]
        assert r.state == "COMPLETE", r  # it ran, not from a cache
        out["evaluator"] = {"seconds": r.seconds, "process_peak_rss_mib": e["peak_rss_mib"],
                            "peak_rss_mib": common.peak_between(e["samples"], r.start_s,
                                                                r.end_s)}
        out["evaluator"]["test_rows_per_s"] = (
            rows * cfg.hash_buckets()["test"] / sum(cfg.hash_buckets().values()) / r.seconds)
    out["transform"]["rows_per_s"] = rows / out["transform"]["seconds"]
    out["trainer"]["rows_per_s"] = steps * batch / out["trainer"]["seconds"]
    return out


def run(config_path: str, work_dir: str, factors: list[int], mode_factor: int | None) -> dict:
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    src = cfg.resolve_data()
    results: dict = {"factors": {}, "beam_modes": {}}
    for k in factors:
        data = os.path.join(work_dir, f"data_{k}x")
        rows = _copies(src, data, k)
        print(f"  {k}x data ({rows:,} rows) ...", flush=True)
        results["factors"][k] = _measure(config_path, cfg, data, os.path.join(work_dir, f"{k}x"),
                                         rows, list(cfg.beam_args), one_epoch=True,
                                         evaluate=True)
        shutil.rmtree(os.path.join(work_dir, f"{k}x"), ignore_errors=True)  # disk
    if mode_factor:
        data = os.path.join(work_dir, f"data_{mode_factor}x")
        rows = _copies(src, data, mode_factor)
        for mode, beam in BEAM_MODES.items():
            print(f"  Beam {mode} on {mode_factor}x ...", flush=True)
            r = _measure(config_path, cfg, data, os.path.join(work_dir, f"mode_{mode}"), rows,
                         beam, one_epoch=False)
            results["beam_modes"][mode] = {"factor": mode_factor, "example_gen": r["example_gen"],
                                           "transform": r["transform"]}
            shutil.rmtree(os.path.join(work_dir, f"mode_{mode}"), ignore_errors=True)
    return results


def summary(results: dict) -> str:
    factors = results["factors"]
    base_k = min(factors, key=int)
    base = factors[base_k]
    rows = []
    for k, r in sorted(factors.items(), key=lambda kv: int(kv[0])):
        rows.append([f"{k}x", r["rows"], r["transform"]["seconds"], r["transform"]["rows_per_s"],
                     r["transform"]["peak_rss_mib"], r["trainer"]["seconds"],
                     r["trainer"]["rows_per_s"], r["trainer"]["peak_rss_mib"]])
    text = common.md_table(["data", "rows", "Transform s", "rows/s", "peak MiB", "Trainer s "
                            "(1 epoch)", "rows/s", "peak MiB"], rows)
    lines = []
    for k, r in sorted(factors.items(), key=lambda kv: int(kv[0])):
        if k == base_k:
            continue
        scale = r["rows"] / base["rows"]
        t = (r["transform"]["seconds"] + r["trainer"]["seconds"]) / (
            base["transform"]["seconds"] + base["trainer"]["seconds"])
        mem = max(r["transform"]["peak_rss_mib"], r["trainer"]["peak_rss_mib"]) / max(
            base["transform"]["peak_rss_mib"], base["trainer"]["peak_rss_mib"])
        lines.append(f"- {scale:.0f}x the rows: Transform + Trainer take {t:.1f}x the time "
                     f"({'at most' if t <= scale else 'MORE than'} linear) and "
                     f"{mem:.2f}x the peak memory.")
    text += "\n\n" + "\n".join(lines)
    evaluated = {k: r for k, r in factors.items() if "evaluator" in r}
    if evaluated:
        rows = [[f"{k}x", r["rows"], r["evaluator"]["seconds"],
                 r["evaluator"]["test_rows_per_s"], r["evaluator"]["peak_rss_mib"]]
                for k, r in sorted(evaluated.items(), key=lambda kv: int(kv[0]))]
        text += ("\n\nThe Evaluator alone (its own process; the rest of the pipeline from the "
                 "cache), on the test split:\n\n" + common.md_table(
                     ["data", "rows", "Evaluator s", "test rows/s", "peak MiB"], rows))
        if base_k in evaluated:
            eb = evaluated[base_k]["evaluator"]
            lines = []
            for k, r in sorted(evaluated.items(), key=lambda kv: int(kv[0])):
                if k == base_k:
                    continue
                mem = r["evaluator"]["peak_rss_mib"] / eb["peak_rss_mib"]
                lines.append(f"- {r['rows'] / base['rows']:.0f}x the rows: the Evaluator takes "
                             f"{r['evaluator']['seconds'] / eb['seconds']:.1f}x the time and "
                             f"{mem:.2f}x the peak memory (target: at most 1.5x at 50x).")
            text += "\n\n" + "\n".join(lines)
    if results["beam_modes"]:
        modes = results["beam_modes"]
        rows = [[m, r["example_gen"]["seconds"], r["transform"]["seconds"],
                 r["transform"]["peak_rss_mib"]] for m, r in modes.items()]
        k = next(iter(modes.values()))["factor"]
        text += (f"\n\nBeam direct-runner modes on {k}x data:\n\n"
                 + common.md_table(["mode", "ExampleGen s", "Transform s", "Transform peak MiB"],
                                   rows))
        best = min(modes, key=lambda m: modes[m]["transform"]["seconds"]
                   + modes[m]["example_gen"]["seconds"])
        text += f"\n\nFastest on this machine: **{best}**."
    return text
