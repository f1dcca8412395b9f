"""The quality benchmark's method (benchmarks/quality.py): paired verdicts, the per-head GBDT
arm with early stopping on the validation split, the comparison, and the README's table, which
must be the one rendered from benchmarks/results/quality.json."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from benchmarks import common, quality
from headwise import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paired_verdict_uses_the_paired_differences_not_the_spread_of_each_arm():
    """Seed-to-seed spread of each arm (0.01) dwarfs the gap (0.002), but the gap is the same
    at every seed: paired, it is beyond noise."""
    base = np.array([0.90, 0.91, 0.92, 0.93, 0.94])
    a, b = base + 0.002 + np.array([0, 1e-4, -1e-4, 0, 2e-4]), base
    p = quality.paired(list(a), list(b), higher_is_better=True)
    assert p["verdict"] == "better" and p["mean"] == pytest.approx(0.00204, rel=1e-3)
    assert p["n"] == 5 and p["t_critical"] == pytest.approx(2.776, rel=1e-3)
    # Lower is better (MAE): the same numbers read the other way.
    assert quality.paired(list(a), list(b), higher_is_better=False)["verdict"] == "worse"
    noisy = quality.paired([1.0, 2.0, 0.5], [1.2, 1.1, 1.0], higher_is_better=True)
    assert noisy["verdict"] == "within noise"
    assert quality.paired([1.0], [0.5], True)["verdict"].startswith("n/a")


def test_relative_gap_is_worse_by_a_share_of_the_reference():
    assert quality.relative_gap(0.94, 0.95, True) == pytest.approx(0.01 / 0.95)
    assert quality.relative_gap(105.0, 100.0, False) == pytest.approx(0.05)
    assert quality.relative_gap(95.0, 100.0, False) == pytest.approx(-0.05)


def _cfg(features, heads):
    return config_lib.from_dict({"name": "q", "data": {"csv": "u.csv"}, "features": features,
                                 "heads": heads})


def test_feature_matrix_codes_categories_from_training_and_keeps_missing_as_nan():
    cfg = _cfg({"c": "categorical", "x": "numeric"},
               [{"name": "y", "label": "y", "task": "regression"}])
    x, categorical = quality.feature_matrix(cfg, {
        "train": {"c": ["b", "a", "b", None], "x": [1.0, None, 3.0, 4.0]},
        "test": {"c": ["a", "z", " b "], "x": [None, 2.0, 5.0]}})
    assert categorical == [True, False]
    np.testing.assert_array_equal(x["train"][:, 0], [0, 1, 0, np.nan])  # b most frequent
    np.testing.assert_array_equal(x["test"][:, 0], [1, np.nan, 0])  # unseen z: NaN
    np.testing.assert_array_equal(x["test"][:, 1], [np.nan, 2.0, 5.0])


def test_gbdt_stops_where_the_validation_loss_is_lowest():
    """Noisy labels: more boosting iterations overfit. The arm's iteration count must be the
    argmin of the validation log loss of a plain scikit-learn fit (computed here
    independently), and its test AUC that fit's at that iteration."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)

    def split(n):
        x = rng.normal(size=(n, 3))
        p = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
        return x, (rng.uniform(size=n) < p).astype(int)
    xs, ys = zip(*(split(n) for n in (600, 400, 400)), strict=True)
    names = ("train", "validation", "test")
    head = _cfg({"a": "numeric"}, [{"name": "y", "label": "y", "task": "binary"}]).heads[0]
    r = quality.gbdt_head(head, dict(zip(names, xs, strict=True)),
                          {s: [int(v) for v in y] for s, y in zip(names, ys, strict=True)},
                          [False, False, False], seed=0)
    plain = HistGradientBoostingClassifier(max_iter=r["fitted_iterations"],
                                           early_stopping=False).fit(xs[0], ys[0])
    losses = [-np.mean(ys[1] * np.log(p[:, 1]) + (1 - ys[1]) * np.log(p[:, 0]))
              for p in plain.staged_predict_proba(xs[1])]
    assert r["iterations"] == int(np.argmin(losses)) + 1
    assert r["iterations"] < r["fitted_iterations"] < quality.GBDT_MAX_ITER
    best = list(plain.staged_predict_proba(xs[2]))[r["iterations"] - 1][:, 1]
    assert r["metrics"]["auc"] == pytest.approx(roc_auc_score(ys[2], best), rel=1e-9)


def _results(multi, single, gbdt, train):
    heads = [{"name": "h", "main": "auc", "task": "binary", "auxiliary": False}]
    models = {
        "multi": {s: {"metrics": {"h": {"auc": v}}, "train_s": t, "fit_s": t - 10,
                      "latency_ms": 1.0} for s, (v, t) in enumerate(zip(multi, train,
                                                                             strict=True))},
        "single:h": {s: {"metrics": {"h": {"auc": v}}, "train_s": 20.0, "fit_s": 10.0,
                         "latency_ms": 1.0} for s, v in enumerate(single)}}
    g = {"metrics": {"auc": gbdt}, "train_s": 1.0, "latency_ms": 0.1}
    return {"heads": heads, "models": models, "gbdt": {"h": dict.fromkeys(range(len(multi)), g)}}


def test_compare_reads_the_goal_from_the_paired_numbers():
    c = quality.compare(_results([0.951, 0.9515, 0.9505], [0.950, 0.950, 0.949], 0.953,
                                 [30.0, 30.0, 30.0]))
    h = c["heads"][0]
    assert h["gbdt"] == 0.953 and h["multi"] == pytest.approx(0.951)
    assert h["within_goal"]  # 0.2% below, within 1%
    assert h["multi_vs_gbdt"]["verdict"] == "worse"
    assert c["cost"]["fixed_trainer_s"] == 10.0
    assert c["cost"]["train_ratio_total"] == pytest.approx(1.5)
    far = quality.compare(_results([0.90, 0.91, 0.90], [0.9, 0.9, 0.9], 0.953, [30.0] * 3))
    assert not far["heads"][0]["within_goal"]
    assert not far["goal"]["every_gating_head_within_goal"]


def test_the_single_task_goal_needs_a_better_head_and_the_cost_under_its_cap():
    better = quality.compare(_results([0.951, 0.9515, 0.9505], [0.940, 0.941, 0.939], 0.953,
                                      [30.0] * 3))
    g = better["goal"]["vs_single"]
    assert g["cost_cap"] == 1.5  # one single-task model: max(0.35, 1.5 / 1)
    assert g["a_gating_head_better"] and g["no_gating_head_worse"]
    assert (g["met_total"], g["met_marginal"]) == (True, True)  # 30 s against 20 s: 1.5x
    slow = quality.compare(_results([0.951, 0.9515, 0.9505], [0.940, 0.941, 0.939], 0.953,
                                    [40.0] * 3))["goal"]["vs_single"]
    assert not slow["cost_total_within"] and not slow["met_total"]
    noise = quality.compare(_results([0.951, 0.9515, 0.9505], [0.951, 0.950, 0.952], 0.953,
                                     [30.0] * 3))["goal"]["vs_single"]
    assert not noise["a_gating_head_better"] and not noise["met_total"]
    line = quality.single_task_line({"datasets": {"d": _results(
        [0.951, 0.9515, 0.9505], [0.951, 0.950, 0.952], 0.953, [30.0] * 3)}})
    assert "d not met: no gating head better (1.500x / 1.500x of cap 1.500)" in line
    line = quality.single_task_line({"datasets": {"d": _results(
        [0.951, 0.9515, 0.9505], [0.951, 0.950, 0.952], 0.953, [40.0] * 3)}})
    assert "d not met: no gating head better, over the cost cap (2.000x / 2.000x" in line
    line = quality.single_task_line({"datasets": {"d": _results(
        [0.951, 0.9515, 0.9505], [0.940, 0.941, 0.939], 0.953, [40.0] * 3)}})
    assert "d not met: over the cost cap (2.000x / 2.000x of cap 1.500)" in line


def test_the_readme_table_is_the_one_rendered_from_quality_json():
    path = os.path.join(ROOT, "benchmarks", "results", "quality.json")
    if not os.path.exists(path):
        pytest.skip("no benchmarks/results/quality.json yet")
    with open(path, encoding="utf-8") as fh:
        results = json.load(fh)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    block = quality.readme_block(readme)
    assert block is not None, f"README.md has no {quality.README_BEGIN} ... block"
    assert block.strip() == quality.readme_table(results).strip(), (
        "the README's quality table differs from benchmarks/results/quality.json: run "
        "`headwise bench --render`")


def test_the_committed_results_describe_the_model_the_shipped_configs_train():
    """quality.json records each dataset's backbone and balancing as measured; the shipped
    configs (which leave the model to the defaults) must still train that model, or the
    README's table describes something a user no longer gets."""
    path = os.path.join(ROOT, "benchmarks", "results", "quality.json")
    if not os.path.exists(path):
        pytest.skip("no benchmarks/results/quality.json yet")
    with open(path, encoding="utf-8") as fh:
        results = json.load(fh)
    for name, r in results["datasets"].items():
        cfg = config_lib.load(os.path.join(ROOT, r["config"]), check_data=False)
        assert r["default"] == {"backbone": cfg.model.backbone,
                                "loss_balancing": cfg.model.loss_balancing}, (
            f"{name}: measured {r['default']}, the config now trains {cfg.model.backbone}, "
            f"{cfg.model.loss_balancing}: run `headwise bench --only quality` again")


def test_recipe_ablations_replace_only_their_part(tmp_path):
    """no_linear turns off piecewise's linear term and all_components fixes 32 components, on
    every piecewise feature and nothing else; a part a config does not use is not run."""
    import yaml

    path = os.path.join(ROOT, "pipeline", "configs", "penguins.yaml")
    with open(path, encoding="utf-8") as fh:
        shipped = yaml.safe_load(fh)
    for name, key, value in (("no_linear", "linear", False), ("all_components", "bins", 32)):
        variant = quality.ablation_config(path, name, str(tmp_path / name))
        cfg = config_lib.load(variant)
        numeric = [f for f in cfg.features if f.type == "numeric"]
        assert numeric and all(getattr(f, key) == value for f in numeric), name
        others = {f.name: f for f in cfg.features if f.type != "numeric"}
        assert set(others) == {n for n, s in shipped["features"].items()
                               if (s if isinstance(s, str) else s["type"]) != "numeric"}
        assert cfg.heads == config_lib.load(path).heads
    assert quality.ablation_config(path, "no_log_target", str(tmp_path / "log")) is None
    shipped_on = config_lib.load(path).trainer.early_stopping_on
    for criterion in ("weighted", "relative", "geomean"):
        variant = quality.ablation_config(path, f"{criterion}_stopping", str(tmp_path / criterion))
        if criterion == shipped_on:  # the arm would be the shipped config: not run
            assert variant is None
            continue
        stopping = config_lib.load(variant)
        assert stopping.trainer.early_stopping_on == criterion
        assert stopping.features == config_lib.load(path).features
    randhie = os.path.join(ROOT, "pipeline", "configs", "randhie.yaml")  # one head: no change
    assert quality.ablation_config(randhie, "geomean_stopping", str(tmp_path / "r")) is None
    one = config_lib.load(quality.ablation_config(path, "one_cycle", str(tmp_path / "one")))
    assert one.trainer.cycles == 1 and config_lib.load(path).trainer.cycles > 1
    assert one.trainer == dataclasses.replace(config_lib.load(path).trainer, cycles=1)
    assert not config_lib.load(path).trainer.head_stopping  # the default
    heads = config_lib.load(quality.ablation_config(path, "head_stopping", str(tmp_path / "h")))
    assert heads.trainer == dataclasses.replace(config_lib.load(path).trainer, head_stopping=True)
    assert quality.ablation_config(randhie, "head_stopping", str(tmp_path / "rh")) is None


def test_the_recipe_retrains_the_shipped_arm_unless_the_quality_run_is_this_code(
        tmp_path, monkeypatch):
    trained = []

    def run_dataset(path, work_dir, seeds, *args, **kwargs):
        trained.append(work_dir.split(os.sep)[-2:])
        return {"models": {"multi": {str(s): {"validation_metrics": {}} for s in seeds}}}

    monkeypatch.setattr(quality.multihead_bench, "run_dataset", run_dataset)
    monkeypatch.setattr(quality.common, "write_json", lambda *a: None)
    penguins = ("pipeline/configs/penguins.yaml",)
    reused = {"models": {"multi": {"1": {"validation_metrics": {"old": 1}}}}}
    for commit, retrained in (("0ld0ld0", True), (common.commit(), "+changes" in
                                                   common.commit())):
        trained.clear()
        out = quality.run_ablations(str(tmp_path), [1], {"commit": commit, "datasets": {
            "penguins": reused}}, configs=penguins, names=("geomean_stopping",))
        assert (["penguins", "shipped"] in trained) == retrained, (commit, trained)
        assert ["geomean_stopping", "run"] in trained
        assert set(out["datasets"]["penguins"]["arms"]) == {"shipped", "geomean_stopping"}
    trained.clear()  # penguins has no log target: nothing to compare, nothing trained
    out = quality.run_ablations(str(tmp_path), [1], None, names=("no_log_target",),
                                configs=penguins)
    assert trained == [] and out["datasets"] == {}
    out = quality.run_ablations(str(tmp_path), [1], None, names=("geomean_stopping",),
                                configs=("pipeline/configs/randhie.yaml",))  # one head
    assert trained == [] and out["datasets"] == {}  # and its data need not exist


def test_recipe_summary_names_the_parts_run_and_those_left_out():
    seeds = {"1": {"validation_metrics": {"y": {"auc": 0.9}}},
             "2": {"validation_metrics": {"y": {"auc": 0.91}}}}
    worse = {s: {"validation_metrics": {"y": {"auc": v["validation_metrics"]["y"]["auc"] - 0.01}}}
             for s, v in seeds.items()}
    results = {"seeds": [1, 2], "commit": "abc", "ablations": ["no_linear"],
               "datasets": {"d": {"heads": [{"name": "y", "main": "auc", "task": "binary",
                                             "auxiliary": False}],
                                  "arms": {"shipped": seeds, "no_linear": worse}}}}
    text = quality.recipe_summary(results)
    assert "no_linear: piecewise without its clipped z-score input" in text
    assert ("Not run here: zscore, all_components, no_log_target, fixed_steps, "
            "geomean_stopping, relative_stopping, weighted_stopping, one_cycle, "
            "head_stopping." in text)
    header = next(line for line in text.splitlines() if line.startswith("| dataset |"))
    assert header.count("| vs ") == 1 and "vs no_linear" in header  # only the parts run
    row = next(line for line in text.splitlines() if line.startswith("| d |"))
    assert "+0.01" in row


def test_bench_refuses_an_unknown_ablation_before_running_anything(capsys, monkeypatch):
    from benchmarks import run as bench

    def ran(*args, **kwargs):
        raise AssertionError("the recipe ran with an unknown ablation")
    monkeypatch.setattr(quality, "run_ablations", ran)
    assert bench.main(only=["recipe"], ablations=["no_linear", "bogus"],
                      work_dir="/nonexistent/never-made") == 2
    assert "unknown part(s) ['bogus']" in capsys.readouterr().err


def test_the_recipe_runs_on_the_seeds_it_is_given(tmp_path, monkeypatch, capsys):
    """`headwise bench --only recipe --seeds 5 --first-seed 7`: a confirmatory run on seeds
    that chose nothing before (the default stays seeds 1-3)."""
    from benchmarks import common
    from benchmarks import run as bench
    from cli import main as cli

    seen = []
    monkeypatch.setattr(quality, "run_ablations",
                        lambda work_dir, seeds, *a, **k: seen.append(seeds) or {})
    monkeypatch.setattr(quality, "run", lambda work_dir, seeds, **k: seen.append(seeds) or {})
    monkeypatch.setattr(common, "write_json", lambda *a, **k: None)
    monkeypatch.setattr(bench, "render", lambda *a, **k: "")
    work = ["--work-dir", str(tmp_path)]
    assert cli.main(["bench", "--only", "recipe", "--seeds", "5", "--first-seed", "7", *work]) == 0
    assert cli.main(["bench", "--only", "recipe", *work]) == 0
    assert seen == [[7, 8, 9, 10, 11], [1, 2, 3]]
    for flags, said in ((["--seeds", "0"], "--seeds must be >= 1, got 0"),
                        (["--first-seed", "-1"], "--first-seed must be >= 0, got -1")):
        assert cli.main(["bench", "--only", "recipe", *flags, *work]) == 2
        assert said in capsys.readouterr().err
    assert cli.main(["bench", "--only", "quality", "--first-seed", "7", *work]) == 2
    assert "--first-seed goes with --only recipe" in capsys.readouterr().err
    assert len(seen) == 2  # refused before anything ran


def test_a_dataset_that_a_command_writes_is_written_before_its_config_is_checked(
        tmp_path, monkeypatch):
    """A fresh machine has no data/randhie: the benchmark writes it (as `headwise data randhie`
    would) and only then loads the config against the data's columns."""
    import yaml

    raw = {"name": "written", "data": {"csv": str(tmp_path / "data" / "w.csv")},
           "features": {"x": "numeric"}, "heads": [{"name": "y", "label": "y",
                                                    "task": "regression"}]}
    config = tmp_path / "written.yaml"
    config.write_text(yaml.safe_dump(raw))

    def write(out_dir):
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "w.csv"), "w") as fh:
            fh.write("x,y\n1,2\n3,4\n")
    monkeypatch.setitem(quality.WRITERS, "written", write)
    cfg = quality.prepare(str(config))
    assert cfg.name == "written" and (tmp_path / "data" / "w.csv").exists()


def test_a_rerun_replaces_only_the_named_datasets_and_says_so(tmp_path, monkeypatch):
    ran = []

    def run(work_dir, seeds, quick=False, configs=quality.CONFIGS):
        ran.append(configs)
        return {"commit": "new1234", "seconds": 9.0, "seeds": seeds,
                "datasets": {"diamonds": {"models": "fresh"}}}

    monkeypatch.setattr(quality, "run", run)
    previous = {"commit": "old1234", "seeds": [1, 2], "split": "test",
                "datasets": {"taxi": {"models": "kept"}, "diamonds": {"models": "stale"}}}
    out = quality.rerun(previous, str(tmp_path), ["diamonds"], [1, 2])
    assert ran == [("pipeline/configs/diamonds.yaml",)]
    assert out["datasets"] == {"taxi": {"models": "kept"}, "diamonds": {"models": "fresh"}}
    assert out["commit"] == "old1234" and previous["datasets"]["diamonds"]["models"] == "stale"
    assert out["reruns"] == [{"datasets": ["diamonds"], "commit": "new1234", "seconds": 9.0}]
    assert quality.provenance(out) == ("commit old1234 (diamonds: run again at commit "
                                       "new1234)")
    ran.clear()
    with pytest.raises(ValueError, match=r"no quality dataset \['diamond'\]; choose from "
                                         r"penguins, ofp, randhie, taxi, diamonds, census"):
        quality.rerun(previous, str(tmp_path), ["diamond"], [1, 2])
    with pytest.raises(ValueError, match=r"has seeds \[1, 2\], this one \[1, 2, 3\]"):
        quality.rerun(previous, str(tmp_path), ["diamonds"], [1, 2, 3])
    assert ran == []  # refused before anything ran


def test_datasets_goes_with_the_quality_benchmark_only(capsys):
    from cli import main as cli

    assert cli.main(["bench", "--only", "recipe", "--datasets", "diamonds"]) == 2
    assert "--datasets goes with --only quality" in capsys.readouterr().err
