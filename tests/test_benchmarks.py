"""The benchmarks' arithmetic on made-up measurements (the measurements themselves are never
asserted: timings belong in benchmarks/results/, not in tests)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import common, load, multihead, scaling
from headwise import config as config_lib


def _model(train_s, params, size, metrics):
    return {"train_s": train_s, "params": params, "saved_model_bytes": size, "metrics": metrics}


def _results(multi_auc, single_auc, multi_mae, single_mae):
    seeds = [1, 2, 3]
    models = {
        "multi": {s: _model(30.0, 10_000, 2 * 2**20, {"k": {"auc": a}, "r": {"mae": m}})
                  for s, a, m in zip(seeds, multi_auc, multi_mae, strict=True)},
        "single:k": {s: _model(20.0, 8_000, 2**20, {"k": {"auc": a}})
                     for s, a in zip(seeds, single_auc, strict=True)},
        "single:r": {s: _model(25.0, 12_000, 2**20, {"r": {"mae": m}})
                     for s, m in zip(seeds, single_mae, strict=True)},
    }
    scenarios = {"grpc_predict_all_heads_batch1": {"p50_ms": 1.5},
                 "grpc_single_task_models_batch1": {"p50_ms": 4.5}}
    return {"seeds": seeds, "train_steps": 100, "models": models,
            "serving": {"scenarios": scenarios},
            "heads": [{"name": "k", "main": "auc", "task": "binary"},
                      {"name": "r", "main": "mae", "task": "regression"}]}


def test_verdicts_use_the_direction_of_each_metric_and_the_seeds_noise():
    # auc: higher is better; multi clearly above. mae: lower is better; multi clearly worse.
    r = _results([0.70, 0.71, 0.72], [0.60, 0.61, 0.62], [3.0, 3.1, 3.2], [2.0, 2.1, 2.2])
    c = multihead.compare(r)
    verdicts = {h["head"]: h["verdict"] for h in c["heads"]}
    assert verdicts == {"k": "better", "r": "worse"}
    k = next(h for h in c["heads"] if h["head"] == "k")
    assert k["multi"][0] == pytest.approx(0.71) and k["multi"][1] == pytest.approx(0.01)
    assert c["ratios"]["train_s"] == pytest.approx(30.0 / 45.0)  # medians of equal values
    assert c["ratios"]["params"] == pytest.approx(10_000 / 20_000)
    assert c["ratios"]["saved_model_bytes"] == pytest.approx(1.0)
    assert c["ratios"]["serving_p50"] == pytest.approx(1 / 3)
    text = multihead.summary(r)
    assert "loses on r (mae)" in text and "k (auc)" not in text.split("loses on")[1]


def test_overlap_within_one_standard_deviation_is_noise():
    r = _results([0.70, 0.72, 0.74], [0.71, 0.73, 0.69], [2.0, 2.2, 2.4], [2.1, 2.3, 1.9])
    assert {h["verdict"] for h in multihead.compare(r)["heads"]} == {"within noise"}


def test_head_metrics_match_their_definitions():
    head = config_lib.Head(name="r", label="y", task="regression", loss="mse",
                           metrics=("mae", "rmse"))
    raw = [1.0, None, 3.0, float("nan"), 5.0]
    pred = np.array([[2.0], [9.0], [3.0], [9.0], [1.0]])
    m = multihead.head_metrics(head, raw, pred)  # missing and NaN labels are skipped
    assert m["mae"] == pytest.approx((1 + 0 + 4) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 16) / 3))


def test_scaling_summary_says_whether_growth_is_linear():
    def factor(rows, t, mem):
        return {"rows": rows, "transform": {"seconds": t, "rows_per_s": rows / t,
                                            "peak_rss_mib": mem},
                "trainer": {"seconds": t, "rows_per_s": rows / t, "peak_rss_mib": mem}}
    text = scaling.summary({"factors": {1: factor(100, 10, 1000), 10: factor(1000, 40, 1200)},
                            "beam_modes": {}})
    assert "10x the rows: Transform + Trainer take 4.0x the time (at most linear)" in text
    assert "1.20x the peak memory" in text


def test_load_verdict_fails_on_any_failed_request_or_missed_switch():
    base = {"requests": 100, "clients": 4, "good": 90, "good_failed": 0, "bad": 10,
            "bad_invalid_argument": 10, "versions_answered": {"1": 50, "2": 40},
            "seconds_to_switch": 1.5, "requests_per_s": 100.0, "pushed_version": 2,
            "server_rss_mib": {"after_warmup": 700, "max": 900, "end": 800},
            "steady_memory_growth": 1.01}
    assert "**PASS**" in load.summary(base)
    assert "**FAIL**" in load.summary({**base, "good_failed": 1})
    assert "**FAIL**" in load.summary({**base, "bad_invalid_argument": 9})
    assert "**FAIL**" in load.summary({**base, "seconds_to_switch": None})


def test_percentiles_are_in_milliseconds():
    p = common.percentiles([0.001] * 99 + [0.1])
    assert p["p50_ms"] == pytest.approx(1.0) and p["n"] == 100
    assert common.peak_between([(1.0, 2**20), (2.0, 3 * 2**20), (9.0, 9 * 2**20)], 1.0, 2.0) == 3


def test_goal_needs_no_gating_head_worse_one_better_and_cost_within_budget():
    """The multi-head benchmark's goal, per arm: the cost budget is max(0.35, 1.5 / N) of the
    single-task models together; an auxiliary head may lose without failing the goal."""
    assert multihead.budget(5) == pytest.approx(0.35) and multihead.budget(3) == 0.5
    r = _results([0.70, 0.71, 0.72], [0.60, 0.61, 0.62], [3.0, 3.1, 3.2], [2.0, 2.1, 2.2])
    # 2 heads: budget 0.75; train 30 / 45 = 0.67, params 0.5: within; but r is worse.
    c = multihead.compare(r)
    assert c["goal"]["budget"] == pytest.approx(0.75)
    assert c["goal"]["cost_within_budget"] and c["goal"]["a_head_better"]
    assert not c["goal"]["no_gating_head_worse"] and not c["goal"]["met"]
    r["heads"][1]["auxiliary"] = True  # the losing head only helps train: the goal holds
    assert multihead.compare(r)["goal"]["met"]
    for s in r["models"]["multi"].values():
        s["train_s"] = 40.0  # 40 / 45 > 0.75
    assert not multihead.compare(r)["goal"]["met"]


def test_the_best_arm_meets_the_goal_or_comes_closest_and_the_grid_names_every_arm():
    r = _results([0.70, 0.71, 0.72], [0.60, 0.61, 0.62], [3.0, 3.1, 3.2], [2.0, 2.1, 2.2])
    good = {s: _model(30.0, 10_000, 2**20, {"k": {"auc": 0.71}, "r": {"mae": m}})
            for s, m in zip([1, 2, 3], [1.9, 2.0, 2.1], strict=True)}
    r["models"]["multi:mmoe:gradnorm"] = good
    r["default"] = {"backbone": "shared_bottom", "loss_balancing": "static"}
    assert multihead.best_arm(r) == "multi:mmoe:gradnorm"
    c = multihead.compare(r, "multi:mmoe:gradnorm")
    assert {h["head"]: h["verdict"] for h in c["heads"]} == {"k": "better",
                                                              "r": "within noise"}
    text = multihead.summary({"datasets": {"toy": r}})
    assert "| mmoe, gradnorm |" in text and "| config (shared_bottom, static) |" in text
    assert "Best arm: **mmoe, gradnorm** (goal met)" in text


def test_loss_normalisation_summary_compares_present_with_batch_per_head():
    a, b = multihead.NORMALIZATION
    models = {a: {s: {"metrics": {"k": {"auc": 0.6}, "r": {"mae": m}}}
                  for s, m in zip([1, 2, 3], [2.0, 2.1, 2.2], strict=True)},
              b: {s: {"metrics": {"k": {"auc": 0.6}, "r": {"mae": m}}}
                  for s, m in zip([1, 2, 3], [1.5, 1.6, 1.7], strict=True)}}
    r = {"head": "r", "share": 0.5, "config": "c.yaml", "seeds": [1, 2, 3], "models": models,
         "heads": [{"name": "k", "main": "auc", "task": "binary"},
                   {"name": "r", "main": "mae", "task": "regression"}]}
    text = multihead.summary_missing(r)
    assert "| r (50% missing) | mae | 2.1 ± 0.1 | 1.6 ± 0.1 | better |" in text
    assert "| k | auc | 0.6 ± 0 | 0.6 ± 0 | within noise |" in text


def test_the_grid_arms_do_not_depend_on_the_backbone_the_config_ships():
    """The shipped taxi config is MMoE + uncertainty with [32, 16] experts: its own grid arm is
    that config (so the grid skips it as a duplicate of `multi`), and the shared-bottom arm is
    the [64, 32] MLP the benchmark measured it against."""
    import dataclasses

    from benchmarks import pipelines

    cfg = config_lib.load("pipeline/configs/taxi.yaml")
    arm = pipelines.variant_config(cfg, "multi:mmoe:uncertainty", 1)
    assert arm == pipelines.variant_config(cfg, "multi", 1)
    assert "multi:mmoe:uncertainty" not in multihead.grid_variants(cfg)
    assert len(multihead.grid_variants(cfg)) == len(multihead.GRID) - 1
    shared = pipelines.variant_config(cfg, "multi:shared_bottom:static", 1).model
    assert (shared.backbone, shared.hidden_units) == ("shared_bottom", (64, 32))
    old = dataclasses.replace(cfg, model=shared)  # a shared-bottom config: the same arms
    assert pipelines.variant_config(old, "multi:mmoe:uncertainty", 1).model == arm.model
