"""Is one multi-head model better and cheaper than one model per head? Measured side by side.

Per dataset (`CONFIGS`: taxi and penguins), one TFX run (benchmarks/pipelines.py) trains, from
one Transform, the config's multi-head model (`multi`), every backbone x loss balancing variant
(`multi:<architecture>:<balancing>`, `GRID`), and one single-task model per head (same
features, step budget, early stopping and splits) at each seed. Then, per model: each head's
metrics on the test split (in-process, every metric the head lists), Trainer wall time (from ML
Metadata), parameter count, SavedModel size, and in-process serving latency of one example
(the examples signature; the single-task side pays one call per head). The config's own model also
gets the gRPC serving benchmark against the single-task models (taxi).

Separately (`MISSING`): one head's label blanked in half of the rows, the config trained with
`loss_normalization: batch` (each head's masked loss divided by the whole batch) and `present`
(divided by the head's present labels), to measure what the option changes on that head.
"""

from __future__ import annotations

import csv
import os
import shutil
import time

import numpy as np
import yaml

from benchmarks import common
from benchmarks import pipelines as bench_pipelines
from components.evaluator import label_values, predict
from headwise import config as config_lib
from headwise import contract, tasks
from headwise.config import data as data_config
from pipeline import local_runner
from pipeline import summary as summary_lib

CONFIGS = ("pipeline/configs/taxi.yaml", "pipeline/configs/penguins.yaml")
BALANCING = ("static", "uncertainty", "dwa", "gradnorm")
GRID = tuple(f"multi:{a}:{b}" for a in bench_pipelines.ARCHITECTURES for b in BALANCING)
# (config, head, share of rows whose label is blanked) for the loss normalisation measurement.
MISSING = ("pipeline/configs/taxi.yaml", "fare", 0.5)
NORMALIZATION = ("multi:shared_bottom:static:batch", "multi:shared_bottom:static:present")


def head_metrics(head: config_lib.Head, raw: list, pred: np.ndarray) -> dict[str, float]:
    """The head's metrics from raw eval labels (None: missing, skipped) and its predictions."""
    task = tasks.of(head)
    keep, y = task.encoded(head, raw)
    out = task.score(head, y, pred[keep])
    return {m: out[m] for m in head.metrics if m in out}


def _served(model_dir: str, example: bytes, calls: int = 200) -> tuple[int, float]:
    """Trainable parameter count, and the median latency (ms) of the examples signature on one
    serialized example, in process (after 10 warm-up calls)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    # Every variable the loaded object graph holds, once (the export's root is a plain
    # trackable: it has no `trainable_variables`); the optimizer's slots are not trainable.
    variables = {id(t): t for t in tf.train.TrackableView(loaded).descendants()
                 if isinstance(t, tf.Variable) and t.trainable}
    params = int(sum(np.prod(v.shape) for v in variables.values()))
    fn = loaded.signatures[contract.EXAMPLES_SIGNATURE]
    x = tf.constant([example])
    for _ in range(10):
        fn(examples=x)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(examples=x)
        times.append(time.perf_counter() - t)
    return params, float(np.median(times) * 1000)


def read_columns(examples_uri: str, split: str, columns: list[str]
                 ) -> tuple[dict[str, list], list[bytes]]:
    """Raw values of `columns` (None where missing) and the serialized examples of a split (a
    benchmark's split fits in memory; the Evaluator's work is in Beam)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    rows = [label_values(r, columns) for r in serialized]
    return {c: [r[c] for r in rows] for c in columns}, serialized


def training_summary(run) -> dict:
    """`fit_s` (seconds in Keras's fit) and `epochs_run` from the Trainer's
    training_summary.json (trainer.run), where it wrote one."""
    import json

    for uri in run.outputs.get("ModelRun", []):
        path = os.path.join(uri, "training_summary.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                s = json.load(fh)
            return {"fit_s": s["fit_seconds"], "epochs_run": s["epochs_run"]}
    return {}


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run_dataset(config_path: str, work_dir: str, seeds: list[int], train_steps: int | None,
                variants: list[str], serving: bool, serving_quick: bool = False,
                image_weights: str | None = None, validation: bool = False) -> dict:
    """Train `variants` x `seeds` on one config in one TFX run and measure every model.
    `image_weights`: the pretrained file that `image:<arm>` variants read
    (`benchmarks.pipelines.image_arm`). `validation`: also each model's metrics on the
    validation split (`validation_metrics`), where choices are made."""
    cfg = config_lib.load(config_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    data_root = os.path.join(work_dir, "data")
    local_runner.stage_data(cfg, data_root)
    cmd = [common.python(), "-m", "benchmarks.pipelines", "--config", config_path,
           "--data-root", data_root, "--work-dir", work_dir, "--variants", ",".join(variants),
           "--seeds", ",".join(map(str, seeds))]
    if train_steps:
        cmd += ["--train-steps", str(train_steps)]
    if image_weights:
        cmd += ["--image-weights", image_weights]
    print(f"  {cfg.name}: training {len(variants)} variants x {len(seeds)} seeds "
          f"(log: {work_dir}/pipeline.log) ...", flush=True)
    measured = common.run_measured(cmd, env=common.child_env(), cwd=common.ROOT,
                                   log_path=os.path.join(work_dir, "pipeline.log"))
    runs = summary_lib.component_runs(bench_pipelines.metadata_path(work_dir),
                                      bench_pipelines.PIPELINE_NAME)
    examples_uri = runs["CsvExampleGen"].outputs["Examples"][0]
    # Quality on the test split: never seen by training or early stopping.
    labels, serialized = read_columns(examples_uri, data_config.TEST, list(cfg.label_columns))
    if validation:
        val_labels, val_serialized = read_columns(examples_uri, data_config.VALIDATION,
                                                  list(cfg.label_columns))

    models: dict[str, dict[int, dict]] = {v: {} for v in variants}
    for seed in seeds:
        for v in variants:
            r = runs[bench_pipelines.trainer_id(v, seed)]
            model_uri = r.outputs["Model"][0]
            vcfg = bench_pipelines.variant_config(cfg, v, seed, image_weights=image_weights,
                                                  train_steps=train_steps)
            preds = predict(model_uri, serialized)
            serving_dir = os.path.join(model_uri, "Format-Serving")
            params, latency = _served(serving_dir, serialized[0])
            models[v][seed] = {
                "train_s": r.seconds, "params": params, "latency_ms": latency,
                **training_summary(r),
                "saved_model_bytes": _dir_bytes(serving_dir), "model_dir": serving_dir,
                "metrics": {h.name: head_metrics(h, labels[h.label], preds[h.name])
                            for h in vcfg.heads}}
            if validation:
                val_preds = predict(model_uri, val_serialized)
                models[v][seed]["validation_metrics"] = {
                    h.name: head_metrics(h, val_labels[h.label], val_preds[h.name])
                    for h in vcfg.heads}
            print(f"    {v:<36} seed {seed}: trained in {r.seconds:5.1f}s, "
                  f"{params:,} parameters", flush=True)

    out = {"config": os.path.relpath(config_path, common.ROOT), "name": cfg.name,
           "split": data_config.TEST, "seeds": seeds,
           "train_steps": train_steps or cfg.trainer.train_steps, "variants": variants,
           "models": models, "pipeline_wall_s": measured["wall_s"],
           "peak_rss_mib": measured["peak_rss_mib"],
           "warmup_trainer_s": runs[bench_pipelines.WARMUP_ID].seconds,
           "default": {"backbone": cfg.model.backbone,
                       "loss_balancing": cfg.model.loss_balancing},
           "heads": [{"name": h.name, "metrics": list(h.metrics), "main": h.main_metric,
                      "task": h.task, "auxiliary": h.auxiliary} for h in cfg.heads]}
    if serving and all(f"single:{h.name}" in models for h in cfg.heads):
        # Serving all heads over gRPC: the multi-head model vs one request per single-task model.
        serve_root = os.path.join(work_dir, "serving")

        def publish(name: str, model_dir: str) -> str:
            base = os.path.join(serve_root, name)
            shutil.copytree(model_dir, os.path.join(base, "1"))
            return base
        multi_dir = publish(cfg.model_name, models["multi"][seeds[0]]["model_dir"])
        singles = {h.name: publish(f"{cfg.model_name}_{h.name}",
                                   models[f"single:{h.name}"][seeds[0]]["model_dir"])
                   for h in cfg.heads}
        from benchmarks import serving as serving_bench

        out["serving"] = serving_bench.run(multi_dir, singles, cfg.resolve_data(), work_dir,
                                           quick=serving_quick)
    return out


def grid_variants(cfg: config_lib.PipelineConfig) -> list[str]:
    """The GRID variants that differ from the config's own model (`multi` is that one)."""
    return [v for v in GRID
            if bench_pipelines.variant_config(cfg, v, 0) != bench_pipelines.variant_config(
                cfg, "multi", 0)]


def blank_labels(config_path: str, head: str, share: float, work_dir: str,
                 seed: int = 0) -> str:
    """A copy of the config whose CSV has `head`'s label blanked in `share` of the rows (chosen
    at random, so missing completely at random); returns the new config's path."""
    cfg = config_lib.load(config_path)
    column = cfg.head(head).label
    os.makedirs(work_dir, exist_ok=True)
    data = os.path.join(work_dir, "data.csv")
    rng = np.random.default_rng(seed)
    with open(cfg.resolve_data(), newline="", encoding="utf-8") as src, \
            open(data, "w", newline="", encoding="utf-8") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if rng.random() < share:
                row[column] = ""
            writer.writerow(row)
    with open(config_path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    raw["name"] = f"{cfg.name}_{head}_missing"
    raw["data"]["csv"] = data
    schema = raw.get("validation", {}).get("schema")
    if schema:
        raw["validation"]["schema"] = os.path.normpath(
            os.path.join(os.path.dirname(os.path.abspath(config_path)), schema))
    path = os.path.join(work_dir, "config.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False)
    return path


def run(work_dir: str, seeds: list[int], train_steps: int | None, quick: bool,
        configs: tuple[str, ...] = CONFIGS) -> dict:
    """Every dataset's grid (quick: the config alone, first config only) and the loss
    normalisation measurement (full mode)."""
    out: dict = {"split": data_config.TEST, "seeds": seeds, "datasets": {}}
    for i, path in enumerate(configs[:1] if quick else configs):
        path = os.path.join(common.ROOT, path)
        cfg = config_lib.load(path)
        variants = ["multi"] + ([] if quick else grid_variants(cfg)) + [
            f"single:{h.name}" for h in cfg.heads]
        out["datasets"][cfg.name] = run_dataset(
            path, os.path.join(work_dir, cfg.name), seeds, train_steps, variants,
            serving=i == 0, serving_quick=quick)
    if not quick:
        config, head, share = MISSING
        missing_dir = os.path.join(work_dir, "missing")
        path = blank_labels(os.path.join(common.ROOT, config), head, share, missing_dir)
        print(f"  {head} label blanked in {share:.0%} of rows: loss_normalization batch vs "
              "present", flush=True)
        r = run_dataset(path, os.path.join(missing_dir, "run"), seeds, train_steps,
                        list(NORMALIZATION), serving=False)
        out["missing"] = {**r, "head": head, "share": share, "config": config}
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def verdict(a: tuple[float, float], b: tuple[float, float], higher_is_better: bool,
            seeds: int) -> str:
    """a vs b, each (mean, std over seeds): better / within noise / worse. The noise is the
    larger of the two standard deviations. For results without per-seed pairs (the images
    benchmark's summaries); per-seed results use `common.paired`."""
    if seeds < 2:
        return "n/a (one seed: no noise estimate)"
    delta = (a[0] - b[0]) if higher_is_better else (b[0] - a[0])  # > 0: a is better
    noise = max(a[1], b[1])
    return "better" if delta > noise else "within noise" if delta >= -noise else "worse"


def budget(heads: int) -> float:
    """The cost goal: the multi-head model's train time and parameters at most this share of
    all single-task models' together (one and a half single-task models; 0.35 at least)."""
    return max(0.35, 1.5 / heads)


def compare(results: dict, arm: str = "multi") -> dict:
    """Per head: `arm` vs single-task main metric (mean, std over seeds) and a verdict; cost
    ratios (medians over seeds); whether the goal is met."""
    models = results["models"]
    seeds = list(models[arm])  # ints, or strings after a JSON round trip
    heads = []
    for h in results["heads"]:
        m = h["main"]
        better = tasks.get(h["task"]).metric(m).higher_is_better
        entry = {"head": h["name"], "metric": m, "higher_is_better": better,
                 "gating": not h.get("auxiliary", False),
                 "multi": _stats([r["metrics"][h["name"]][m] for r in models[arm].values()]),
                 "single": _stats([r["metrics"][h["name"]][m]
                                   for r in models[f"single:{h['name']}"].values()])}
        # Paired by seed (same seed, same splits): the mean difference against its noise.
        order = sorted(models[arm], key=int)
        entry["paired"] = common.paired(
            [models[arm][s]["metrics"][h["name"]][m] for s in order],
            [models[f"single:{h['name']}"][s]["metrics"][h["name"]][m] for s in order], better)
        entry["verdict"] = entry["paired"]["verdict"]
        heads.append(entry)

    def median(v: str, key: str) -> float:
        return float(np.median([models[v][s][key] for s in seeds]))

    keys = ["train_s", "params", "saved_model_bytes"]
    if all("latency_ms" in r for v in models for r in models[v].values()):
        keys.append("latency_ms")
    singles = [f"single:{h['name']}" for h in results["heads"]]
    multi = {k: median(arm, k) for k in keys}
    single = {k: float(np.median([sum(models[v][s][k] for v in singles) for s in seeds]))
              for k in keys}
    ratios = {k: multi[k] / single[k] for k in keys}
    if "latency_ms" not in ratios and "serving" in results:
        sc = results["serving"]["scenarios"]
        ratios["serving_p50"] = (sc["grpc_predict_all_heads_batch1"]["p50_ms"]
                                 / sc["grpc_single_task_models_batch1"]["p50_ms"])
    limit = budget(len(results["heads"]))
    gating = [h for h in heads if h["gating"]]
    goal = {"budget": limit,
            "no_gating_head_worse": all(h["verdict"] != "worse" for h in gating),
            "a_head_better": any(h["verdict"] == "better" for h in heads),
            "cost_within_budget": ratios["train_s"] <= limit and ratios["params"] <= limit}
    goal["met"] = all(v for k, v in goal.items() if k != "budget")
    return {"arm": arm, "heads": heads, "multi": multi, "single_total": single,
            "ratios": ratios, "goal": goal}


def arms(results: dict) -> list[str]:
    return [v for v in results["models"] if v.startswith("multi")]


def best_arm(results: dict) -> str:
    """The arm that meets the goal, else comes closest: fewest gating heads worse, most heads
    better, then the lowest train time ratio."""
    def key(arm: str):
        c = compare(results, arm)
        worse = sum(h["verdict"] == "worse" for h in c["heads"] if h["gating"])
        better = sum(h["verdict"] == "better" for h in c["heads"])
        return (not c["goal"]["met"], worse, -better, c["ratios"]["train_s"])
    return min(arms(results), key=key)


def _label(results: dict, arm: str) -> str:
    if arm == "multi":
        d = results.get("default", {})
        return (f"config ({d.get('backbone', '?')}, {d.get('loss_balancing', '?')})"
                if d else "config")
    return arm.removeprefix("multi:").replace(":", ", ")


def grid_table(results: dict) -> str:
    """One row per multi-head arm: each head's main metric (mean ± std; better / worse than
    its single-task model beyond noise), cost ratios, and whether the goal is met."""
    heads = results["heads"]
    header = ["model"] + [f"{h['name']} ({h['main']})" for h in heads] + [
        "train x", "params x", "serve x", "goal"]
    first = compare(results, arms(results)[0])
    rows = [["single-task models"] + ["{:.4g} ± {:.2g}".format(*h["single"])
                                      for h in first["heads"]] + [1.0, 1.0, 1.0, "-"]]
    for arm in arms(results):
        c = compare(results, arm)
        cells = []
        for h in c["heads"]:
            mark = {"better": " **better**", "worse": " worse"}.get(h["verdict"], "")
            cells.append("{:.4g} ± {:.2g}".format(*h["multi"]) + mark)
        r = c["ratios"]
        rows.append([_label(results, arm)] + cells + [
            r["train_s"], r["params"], r.get("latency_ms", r.get("serving_p50", float("nan"))),
            "met" if c["goal"]["met"] else "no"])
    return common.md_table(header, rows)


def summary_dataset(results: dict) -> str:
    c = compare(results)
    text = (f"Quality on the {results.get('split', 'eval')} split, mean ± std over seeds "
            f"{results['seeds']} ({results['train_steps']} steps, early stopping as "
            "configured). A verdict is a paired comparison by seed: the mean difference beyond "
            "the 95% Student-t interval of its standard error.\n\n")
    if len(arms(results)) > 1:
        text += ("Every backbone x loss balancing, against one single-task model per head "
                 f"(cost: medians of train time, parameters and in-process serving latency of "
                 f"all heads, as a ratio of the single-task models together; goal: no gating "
                 f"head worse, one better, train time and parameters <= "
                 f"{c['goal']['budget']:.2f}x):\n\n" + grid_table(results) + "\n\n")
        best = best_arm(results)
        bc = compare(results, best)
        text += (f"Best arm: **{_label(results, best)}** (goal "
                 f"{'met' if bc['goal']['met'] else 'not met'}).\n\n")
    text += f"The config's own model ({_label(results, 'multi')}):\n\n"
    rows = [[h["head"], h["metric"], "{:.4g} ± {:.2g}".format(*h["multi"]),
             "{:.4g} ± {:.2g}".format(*h["single"]), h["verdict"]] for h in c["heads"]]
    text += common.md_table(["head", "metric", "multi-head", "single-task", "verdict"], rows)
    r = c["ratios"]
    text += ("\n\nCost of the multi-head model as a ratio of all single-task models together "
             "(medians over the seeds; train time is the Trainer component's wall time from ML "
             "Metadata, including its export):\n\n")
    cost = [["train wall time (s)", c["multi"]["train_s"], c["single_total"]["train_s"],
             r["train_s"]],
            ["parameters", c["multi"]["params"], c["single_total"]["params"], r["params"]],
            ["SavedModel size (MiB)", c["multi"]["saved_model_bytes"] / 2**20,
             c["single_total"]["saved_model_bytes"] / 2**20, r["saved_model_bytes"]]]
    if "latency_ms" in r:
        cost.append(["serve all heads in process, p50 ms (1 example)",
                     c["multi"]["latency_ms"], c["single_total"]["latency_ms"],
                     r["latency_ms"]])
    if "serving" in results:
        sc = results["serving"]["scenarios"]
        a, b = (sc["grpc_predict_all_heads_batch1"]["p50_ms"],
                sc["grpc_single_task_models_batch1"]["p50_ms"])
        cost.append(["serve all heads over gRPC, p50 ms (1 example)", a, b, a / b])
    text += common.md_table(["", "multi-head", "single-task total", "ratio"], cost)
    per_seed = ", ".join(f"{m['train_s']:.0f}" for m in results["models"]["multi"].values())
    text += f"\n\nMulti-head train time per seed: {per_seed} s."
    worse = [h for h in c["heads"] if h["verdict"] == "worse"]
    if worse:
        text += "\n\n**The multi-head model loses on " + ", ".join(
            f"{h['head']} ({h['metric']})" for h in worse) + " by more than the seeds' noise.**"
    return text


def summary_missing(results: dict) -> str:
    """Loss normalisation batch vs present with one head's label missing in a share of rows."""
    a, b = NORMALIZATION
    text = (f"`{results['head']}` label blanked in {results['share']:.0%} of the rows of "
            f"`{results['config']}` (at random), shared bottom, static weights; test split "
            f"(present labels), seeds {results['seeds']}:\n\n")
    rows = []
    for h in results["heads"]:
        m = h["main"]
        better = tasks.get(h["task"]).metric(m).higher_is_better
        order = sorted(results["models"][a], key=int)
        va = [results["models"][a][s]["metrics"][h["name"]][m] for s in order]
        vb = [results["models"][b][s]["metrics"][h["name"]][m] for s in order]
        sa, sb = _stats(va), _stats(vb)
        rows.append([h["name"] + (" (50% missing)" if h["name"] == results["head"] else ""),
                     m, "{:.4g} ± {:.2g}".format(*sa), "{:.4g} ± {:.2g}".format(*sb),
                     common.paired(vb, va, better)["verdict"]])
    return text + common.md_table(
        ["head", "metric", "batch (mean over the batch)", "present (mean over present labels)",
         "present vs batch"], rows)


def summary(results: dict) -> str:
    if "datasets" not in results:  # one dataset's results
        return summary_dataset(results)
    parts = []
    for name, r in results["datasets"].items():
        parts += [f"### {name}", "", summary_dataset(r), ""]
    if "missing" in results:
        parts += ["### Loss normalisation with missing labels", "",
                  summary_missing(results["missing"]), ""]
    return "\n".join(parts)
