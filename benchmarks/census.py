"""UCI census-income at full size (199,523 rows x 43 columns, the MMoE paper's data;
`headwise data census`), the 200k-row goals of issue 28, in one run on one machine:

  * `headwise check` (the run's pre-flight alone) and `headwise schema` (into a scratch file),
    each as a user runs it: a whole process;
  * a first `headwise run` of the shipped config into a fresh output folder: the whole process,
    each component's seconds (ML Metadata) and peak memory, ExampleGen's rows per second;
  * Transform's executor alone on that run's examples, as the pipeline configures it (TF1 graph
    mode, `force_tf_compat_v1`) against the same with TF2 tracing, alternating, `rounds` of
    each, each in a fresh process: the ratio of the medians.

`python -m benchmarks.census --transform-once ...` is one such executor run (the child)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import time
from typing import Any

from benchmarks import common, pipeline_cost
from headwise import config as config_lib

CONFIG = "pipeline/configs/census.yaml"
ROUNDS = 2
GOALS = {"run_s": 240.0, "check_s": 5.0, "schema_s": 20.0, "example_gen_rows_per_s": 20_000.0,
         "transform_s": 60.0}  # issue 28


def _artifact(root: str, component: str, output: str) -> str:
    """The newest artifact folder of a component's output under a pipeline root."""
    found = sorted(glob.glob(os.path.join(root, "**", component, output, "*"), recursive=True),
                   key=lambda p: int(os.path.basename(p)) if os.path.basename(p).isdigit() else -1)
    if not found:
        raise FileNotFoundError(f"no {component}.{output} under {root}")
    return found[-1]


def transform_once(config_path: str, examples: str, schema: str, out: str, tf1: bool) -> float:
    """One run of TFX's Transform executor with the pipeline's own exec properties
    (pipeline.transform_component), TF1 graph mode on or off; its seconds."""
    from tfx.components.transform import executor as transform_executor
    from tfx.types import channel, standard_artifacts

    from pipeline import local_runner
    from pipeline import pipeline as pipeline_lib

    cfg = config_lib.load(config_path, check_data=False)
    component = pipeline_lib.transform_component(
        cfg, channel.Channel(type=standard_artifacts.Examples),
        channel.Channel(type=standard_artifacts.Schema), version="bench")
    props = {k: v for k, v in component.exec_properties.items() if v is not None}
    props["force_tf_compat_v1"] = int(tf1)
    ex = standard_artifacts.Examples()
    ex.uri = examples
    ex.split_names = json.dumps(sorted(os.path.basename(p)[len("Split-"):]
                                       for p in glob.glob(os.path.join(examples, "Split-*"))))
    sc = standard_artifacts.Schema()
    sc.uri = schema
    graph, transformed = standard_artifacts.TransformGraph(), standard_artifacts.Examples()
    graph.uri, transformed.uri = os.path.join(out, "graph"), os.path.join(out, "examples")
    context = transform_executor.Executor.Context(
        # the pipeline's own Beam args: without a worker environment named, TFX builds and
        # stages a 49 MB sdist of itself into /tmp for every run
        beam_pipeline_args=local_runner.local_beam_args(
            list(cfg.beam_args or ()) or ["--direct_running_mode=in_memory",
                                          "--direct_num_workers=1"]),
        tmp_dir=os.path.join(out, "tmp"), unique_id="bench")
    started = time.monotonic()
    transform_executor.Executor(context).Do(
        {"examples": [ex], "schema": [sc]},
        {"transform_graph": [graph], "transformed_examples": [transformed]}, props)
    return time.monotonic() - started


def _timed(cmd: list[str], log: str) -> dict[str, float]:
    m = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT, log_path=log)
    return {"wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"]}


def run(work_dir: str, rounds: int = ROUNDS, config_path: str = CONFIG) -> dict[str, Any]:
    from benchmarks import quality

    cfg = quality.prepare(os.path.join(common.ROOT, config_path))
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    cli = [common.python(), "-m", "cli"]
    print("  headwise check ...", flush=True)
    check = _timed([*cli, "check", "--config", config_path], os.path.join(work_dir, "check.log"))
    print("  headwise schema ...", flush=True)
    schema = _timed([*cli, "schema", "--config", config_path, "--output",
                     os.path.join(work_dir, "schema.pbtxt")], os.path.join(work_dir, "schema.log"))
    print("  headwise run (a fresh output folder) ...", flush=True)
    out = os.path.join(work_dir, "run")
    first = pipeline_cost.measure_run(config_path, out, os.path.join(work_dir, "run.log"), cfg)
    components = first["components"]
    with open(cfg.resolve_data(), encoding="utf-8") as fh:  # census has no quoted line breaks
        n_rows = sum(1 for _ in fh) - 1
    examples = _artifact(out, "CsvExampleGen", "examples")
    schema_dir = _artifact(out, "ImportSchemaGen", "schema")
    modes: dict[str, list[float]] = {"tf1": [], "tf2": []}
    for i in range(rounds):
        for mode in ("tf1", "tf2") if i % 2 == 0 else ("tf2", "tf1"):
            print(f"  round {i + 1}/{rounds}: Transform's executor, {mode} ...", flush=True)
            scratch = os.path.join(work_dir, f"transform-{mode}-{i}")
            result = os.path.join(work_dir, f"transform-{mode}-{i}.json")
            common.run_measured([common.python(), "-m", "benchmarks.census", "--transform-once",
                                 "--config", config_path, "--examples", examples, "--schema",
                                 schema_dir, "--out", scratch, "--result", result,
                                 *(["--tf1"] if mode == "tf1" else [])],
                                env=common.child_env(), cwd=common.ROOT,
                                log_path=scratch + ".log")
            with open(result, encoding="utf-8") as fh:
                modes[mode].append(json.load(fh)["seconds"])
            shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(os.path.join(out, "pipelines"), ignore_errors=True)  # disk: 100s of MB
    return {
        "commit": common.commit(), "finished": time.strftime("%Y-%m-%d %H:%M"),
        "config": config_path, "rows": n_rows, "check": check, "schema": schema,
        "run": first,
        "example_gen_rows_per_s": n_rows / components["CsvExampleGen"]["seconds"],
        "transform_modes": {"rounds": modes,
                            "ratio_tf1_to_tf2": statistics.median(modes["tf1"])
                            / statistics.median(modes["tf2"])},
        "goals": GOALS,
    }


def rows(results: dict[str, Any]) -> list[list[str]]:
    """(measure, measured, goal, verdict) rows for the README's performance table."""
    g = results["goals"]
    comp = results["run"]["components"]
    transform = comp["Transform"]["seconds"]
    modes = results["transform_modes"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        [f"census-income ({results['rows']:,} rows): whole `headwise run`",
         f"{results['run']['wall_s']:.0f} s, peak {results['run']['peak_rss_mib']:,.0f} MiB",
         f"<= {g['run_s']:.0f} s", verdict(results["run"]["wall_s"] <= g["run_s"])],
        ["census-income: pre-flight (`headwise check`, a whole process)",
         f"{results['check']['wall_s']:.1f} s", f"<= {g['check_s']:.0f} s",
         verdict(results["check"]["wall_s"] <= g["check_s"])],
        ["census-income: `headwise schema`", f"{results['schema']['wall_s']:.1f} s",
         f"<= {g['schema_s']:.0f} s", verdict(results["schema"]["wall_s"] <= g["schema_s"])],
        ["census-income: ExampleGen", f"{results['example_gen_rows_per_s']:,.0f} rows/s",
         f">= {g['example_gen_rows_per_s']:,.0f}",
         verdict(results["example_gen_rows_per_s"] >= g["example_gen_rows_per_s"])],
        ["census-income: Transform", f"{transform:.1f} s (TF1 graph mode: "
         f"{modes['ratio_tf1_to_tf2']:.2f}x of TF2's time)", f"<= {g['transform_s']:.0f} s",
         verdict(transform <= g["transform_s"])],
    ]


def summary(results: dict[str, Any]) -> str:
    comp = results["run"]["components"]
    table = common.md_table(["component", "seconds", "peak MiB"],
                            [[c, r["seconds"], r["peak_rss_mib"]] for c, r in comp.items()])
    modes = results["transform_modes"]
    per_mode = "; ".join(f"{m}: {', '.join(f'{s:.1f}' for s in v)} s"
                         for m, v in modes["rounds"].items())
    return (f"`headwise bench --only census` at commit {results.get('commit', '?')} "
            f"({results.get('finished', '?')}): `headwise run --config {results['config']}` "
            "into a fresh output folder, its components (ML Metadata):\n\n" + table + "\n\n"
            + common.md_table(["measure", "measured", "goal", ""], rows(results))
            + f"\n\nTransform's executor alone on that run's examples, alternating ({per_mode}): "
              f"TF1 graph mode (the pipeline's) takes **{modes['ratio_tf1_to_tf2']:.2f}x** the "
              "time of TF2 tracing (ratio of medians).")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--transform-once", action="store_true")
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--examples")
    p.add_argument("--schema")
    p.add_argument("--out")
    p.add_argument("--result")
    p.add_argument("--tf1", action="store_true")
    args = p.parse_args()
    if not args.transform_once:
        p.error("run the benchmark with `headwise bench --only census`; this module's command "
                "line is its child, --transform-once")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    seconds = transform_once(args.config, args.examples, args.schema, args.out, args.tf1)
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump({"seconds": seconds, "tf1": args.tf1}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
