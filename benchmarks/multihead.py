"""Is one multi-head model better and cheaper than one model per head? Measured side by side.

One TFX run (benchmarks/pipelines.py) trains, from one Transform, the multi-head model and one
single-task model per head (same features, backbone, step budget, early stopping and splits) at
each seed. Then, per model: the head's metrics on the test split (in-process, every metric the
head lists), Trainer wall time (from ML Metadata), parameter count and SavedModel size; and the
serving cost of all heads (one request vs one request per single-task model).
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from benchmarks import common
from benchmarks import pipelines as bench_pipelines
from components.evaluator import label_values, predict
from headwise import config as config_lib
from headwise import tasks
from headwise.config import data as data_config
from pipeline import local_runner
from pipeline import summary as summary_lib


def head_metrics(head: config_lib.Head, raw: list, pred: np.ndarray) -> dict[str, float]:
    """The head's metrics from raw eval labels (None: missing, skipped) and its predictions."""
    task = tasks.of(head)
    keep, y = task.encoded(head, raw)
    out = task.score(head, y, pred[keep])
    return {m: out[m] for m in head.metrics if m in out}


def _param_count(model_dir: str) -> int:
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    variables = getattr(loaded, "trainable_variables", None) or loaded.variables
    return int(sum(np.prod(v.shape) for v in variables))


def read_columns(examples_uri: str, split: str, columns: list[str]
                 ) -> tuple[dict[str, list], list[bytes]]:
    """Raw values of `columns` (None where missing) and the serialized examples of a split (a
    benchmark's split fits in memory; the Evaluator's work is in Beam)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    rows = [label_values(r, columns) for r in serialized]
    return {c: [r[c] for r in rows] for c in columns}, serialized


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(config_path: str, work_dir: str, seeds: list[int], train_steps: int | None,
        uncertainty: bool, serving_quick: bool) -> dict:
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    data_root = os.path.join(work_dir, "data")
    local_runner.stage_data(cfg, data_root)
    variants = ["multi"] + (["multi_uncertainty"] if uncertainty else []) + [
        f"single:{h.name}" for h in cfg.heads]
    cmd = [common.python(), "-m", "benchmarks.pipelines", "--config", config_path,
           "--data-root", data_root, "--work-dir", work_dir, "--variants", ",".join(variants),
           "--seeds", ",".join(map(str, seeds))]
    if train_steps:
        cmd += ["--train-steps", str(train_steps)]
    print(f"  training {len(variants)} variants x {len(seeds)} seeds "
          f"(log: {work_dir}/pipeline.log) ...", flush=True)
    measured = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT,
                                   log_path=os.path.join(work_dir, "pipeline.log"))
    runs = summary_lib.component_runs(bench_pipelines.metadata_path(work_dir),
                                      bench_pipelines.PIPELINE_NAME)
    examples_uri = runs["CsvExampleGen"].outputs["Examples"][0]
    # Quality on the test split: never seen by training or early stopping.
    labels, serialized = read_columns(examples_uri, data_config.TEST, list(cfg.label_columns))

    models: dict[str, dict[int, dict]] = {v: {} for v in variants}
    for seed in seeds:
        for v in variants:
            r = runs[bench_pipelines.trainer_id(v, seed)]
            model_uri = r.outputs["Model"][0]
            vcfg = bench_pipelines.variant_config(cfg, v, seed)
            preds = predict(model_uri, serialized)
            serving_dir = os.path.join(model_uri, "Format-Serving")
            models[v][seed] = {
                "train_s": r.seconds, "params": _param_count(serving_dir),
                "saved_model_bytes": _dir_bytes(serving_dir), "model_dir": serving_dir,
                "metrics": {h.name: head_metrics(h, labels[h.label], preds[h.name])
                            for h in vcfg.heads}}
            print(f"    {v:<24} seed {seed}: trained in {r.seconds:5.1f}s", flush=True)

    # Serving all heads: the multi-head model vs one request per single-task model.
    serve_root = os.path.join(work_dir, "serving")
    seed = seeds[0]

    def publish(name: str, model_dir: str) -> str:
        base = os.path.join(serve_root, name)
        shutil.copytree(model_dir, os.path.join(base, "1"))
        return base
    multi_dir = publish(cfg.model_name, models["multi"][seed]["model_dir"])
    singles = {h.name: publish(f"{cfg.model_name}_{h.name}",
                               models[f"single:{h.name}"][seed]["model_dir"])
               for h in cfg.heads}
    from benchmarks import serving as serving_bench

    serving = serving_bench.run(multi_dir, singles, cfg.resolve_data_csv(), work_dir,
                                quick=serving_quick)
    return {"config": config_path, "split": data_config.TEST, "seeds": seeds,
            "train_steps": train_steps or
            cfg.trainer.train_steps, "variants": variants, "models": models,
            "pipeline_wall_s": measured["wall_s"], "peak_rss_mib": measured["peak_rss_mib"],
            "warmup_trainer_s": runs[bench_pipelines.WARMUP_ID].seconds,
            "serving": serving, "heads": [{"name": h.name, "metrics": list(h.metrics),
                                            "main": h.main_metric, "task": h.task}
                                           for h in cfg.heads]}


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def compare(results: dict) -> dict:
    """Per head: multi vs single main metric (mean, std over seeds) and a verdict; cost ratios."""
    models = results["models"]
    heads = []
    for h in results["heads"]:
        m = h["main"]
        entry = {"head": h["name"], "metric": m}
        for arm in ("multi", "multi_uncertainty", f"single:{h['name']}"):
            if arm in models:
                key = "single" if arm.startswith("single") else arm
                entry[key] = _stats([r["metrics"][h["name"]][m] for r in models[arm].values()])
        mean_m, _ = entry["multi"]
        mean_s, std_s = entry["single"]
        better = entry["higher_is_better"] = tasks.get(h["task"]).metric(m).higher_is_better
        delta = (mean_m - mean_s) if better else (mean_s - mean_m)  # > 0: multi-head is better
        noise = max(std_s, entry["multi"][1])
        if len(results["seeds"]) < 2:
            entry["verdict"] = "n/a (one seed: no noise estimate)"
        else:
            entry["verdict"] = ("better" if delta > noise else "within noise" if delta >= -noise
                                else "worse")
        heads.append(entry)
    seeds = list(models["multi"])  # ints, or strings after a JSON round trip

    # Costs: medians over seeds (early stopping ends each seed's training at another epoch).
    def total(arm_prefix: str, key: str) -> float:
        return float(np.median([sum(models[v][s][key] for v in models
                                    if v.startswith(arm_prefix)) for s in seeds]))
    multi = {k: float(np.median([models["multi"][s][k] for s in seeds]))
             for k in ("train_s", "params", "saved_model_bytes")}
    single = {k: total("single:", k) for k in ("train_s", "params", "saved_model_bytes")}
    sc = results["serving"]["scenarios"]
    ratios = {k: multi[k] / single[k] for k in multi}
    ratios["serving_p50"] = (sc["grpc_predict_all_heads_batch1"]["p50_ms"]
                             / sc["grpc_single_task_models_batch1"]["p50_ms"])
    return {"heads": heads, "multi": multi, "single_total": single, "ratios": ratios}


def summary(results: dict) -> str:
    c = compare(results)
    has_unc = any("multi_uncertainty" in h for h in c["heads"])
    header = ["head", "metric", "multi-head", "single-task"] + (
        ["multi-head, uncertainty weighting"] if has_unc else []) + ["verdict"]
    rows = []
    for h in c["heads"]:
        row = [h["head"], h["metric"], "{:.4g} ± {:.2g}".format(*h["multi"]),
               "{:.4g} ± {:.2g}".format(*h["single"])]
        if has_unc:
            row.append("{:.4g} ± {:.2g}".format(*h["multi_uncertainty"]))
        rows.append(row + [h["verdict"]])
    # Results written before the three-way split carry no "split": they are on the eval split,
    # which early stopping also watched.
    text = (f"Quality on the {results.get('split', 'eval')} split, mean ± std over seeds "
            f"{results['seeds']} "
            f"({results['train_steps']} steps, early stopping as configured):\n\n")
    text += common.md_table(header, rows)
    r = c["ratios"]
    text += ("\n\nCost of the multi-head model as a ratio of all single-task models together "
             "(medians over the seeds; train time is the Trainer component's wall time from ML "
             "Metadata, including its export):\n\n")
    per_seed = ", ".join(f"{m['train_s']:.0f}" for m in results["models"]["multi"].values())
    text += common.md_table(["", "multi-head", "single-task total", "ratio"], [
        ["train wall time (s)", c["multi"]["train_s"], c["single_total"]["train_s"],
         r["train_s"]],
        ["parameters", c["multi"]["params"], c["single_total"]["params"], r["params"]],
        ["SavedModel size (MiB)", c["multi"]["saved_model_bytes"] / 2**20,
         c["single_total"]["saved_model_bytes"] / 2**20, r["saved_model_bytes"]],
        ["serve all heads, p50 ms (1 example)",
         results["serving"]["scenarios"]["grpc_predict_all_heads_batch1"]["p50_ms"],
         results["serving"]["scenarios"]["grpc_single_task_models_batch1"]["p50_ms"],
         r["serving_p50"]]])
    text += f"\n\nMulti-head train time per seed: {per_seed} s."
    worse = [h for h in c["heads"] if h["verdict"] == "worse"]
    if worse:
        text += "\n\n**The multi-head model loses on " + ", ".join(
            f"{h['head']} ({h['metric']})" for h in worse) + " by more than the seeds' noise.**"
        if has_unc:
            text += " Measured with `model.loss_balancing: uncertainty` (column above):"
            for h in worse:
                u, single = h["multi_uncertainty"], h["single"]
                if _uncertainty_fixes(h):
                    verdict = "within noise of the single-task model, or better: fixed"
                elif abs(u[0] - single[0]) < abs(h["multi"][0] - single[0]):
                    verdict = ("closer to the single-task model, still worse; a larger "
                               "`loss_weight` or a `tower` for this head is the next thing to try")
                else:
                    verdict = "no better; try a larger `loss_weight` or a `tower` for this head"
                text += (f"\n- {h['head']}: {u[0]:.4g} ± {u[1]:.2g} vs single-task "
                         f"{single[0]:.4g} ± {single[1]:.2g}: {verdict}.")
        else:
            text += (" Try `model.loss_balancing: uncertainty` or a larger `loss_weight` for "
                     "that head (the full `make bench` measures the former).")
    return text


def _uncertainty_fixes(h: dict) -> bool:
    """Uncertainty weighting is as good as the single-task model, or better, within noise."""
    if "multi_uncertainty" not in h:
        return False
    mean_u, std_u = h["multi_uncertainty"]
    mean_s, std_s = h["single"]
    noise = max(std_u, std_s, 1e-12)
    return mean_u >= mean_s - noise if h["higher_is_better"] else mean_u <= mean_s + noise
