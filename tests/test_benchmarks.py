"""The benchmarks' arithmetic on made-up measurements (the measurements themselves are never
asserted: timings belong in benchmarks/results/, not in tests)."""

from __future__ import annotations

import json
import os

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
    # r: 0.1 lower MAE at every seed, paired: better although the spreads overlap.
    assert {h["head"]: h["verdict"] for h in c["heads"]} == {"k": "better", "r": "better"}
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
    """The shipped taxi config is MMoE + uncertainty with [64, 32] experts: its own grid arm is
    that config (so the grid skips it as a duplicate of `multi`), and the shared-bottom arm is
    the [128, 64] MLP twice as wide, which the expert arms are measured against."""
    import dataclasses

    from benchmarks import pipelines

    cfg = config_lib.load("pipeline/configs/taxi.yaml")
    arm = pipelines.variant_config(cfg, "multi:mmoe:uncertainty", 1)
    assert arm == pipelines.variant_config(cfg, "multi", 1)
    assert "multi:mmoe:uncertainty" not in multihead.grid_variants(cfg)
    assert len(multihead.grid_variants(cfg)) == len(multihead.GRID) - 1
    shared = pipelines.variant_config(cfg, "multi:shared_bottom:static", 1).model
    assert (shared.backbone, shared.hidden_units) == ("shared_bottom", (128, 64))
    old = dataclasses.replace(cfg, model=shared)  # a shared-bottom config: the same arms
    assert pipelines.variant_config(old, "multi:mmoe:uncertainty", 1).model == arm.model


# ---------------------------------------------------------------------------- images benchmark

DIGITS = "pipeline/configs/digits.yaml"


def _digits():
    return config_lib.load(DIGITS, check_data=False)  # data/digits is written by the benchmark


def test_trainer_epochs_follow_the_trainer_one_per_50_steps_between_1_and_10():
    from benchmarks import pipelines

    assert [pipelines.trainer_epochs(n) for n in (20, 99, 100, 400, 500, 1500)] == [
        1, 1, 2, 8, 10, 10]


def test_image_arms_from_scratch_frozen_and_fine_tuned():
    import os

    from benchmarks import pipelines

    cfg = _digits()
    assert cfg.model.image.weights == "none" and cfg.model.image.trainable  # as shipped
    none = pipelines.variant_config(cfg, "image:none", 2, image_weights="w.h5")
    assert none.model == cfg.model and none.trainer.seed == 2  # the shipped arm is the config

    frozen = pipelines.variant_config(cfg, "image:frozen", 1, image_weights="w.h5").model.image
    assert frozen.weights == os.path.abspath("w.h5")  # the Trainer runs in another directory
    assert not frozen.trainable and frozen.fine_tune is None
    assert frozen.application == cfg.model.image.application
    assert frozen.alpha == cfg.model.image.alpha

    steps = cfg.trainer.train_steps
    tuned = pipelines.variant_config(cfg, "image:finetune", 1, image_weights="w.h5").model
    epochs = max(1, min(10, steps // 50))
    assert not tuned.image.trainable and tuned.image.weights == os.path.abspath("w.h5")
    assert tuned.image.fine_tune.after_epochs == epochs // 2
    assert tuned.image.fine_tune.layers == pipelines.FINE_TUNE_LAYERS
    assert tuned.image.fine_tune.learning_rate == pytest.approx(cfg.model.learning_rate / 10)
    assert tuned.learning_rate == cfg.model.learning_rate  # only the fine-tune phase's is lower
    # The schedule follows the budget the Trainer really gets (--train-steps), never below 1.
    short = pipelines.variant_config(cfg, "image:finetune", 1, image_weights="w.h5",
                                     train_steps=100).model.image.fine_tune
    assert short.after_epochs == 1
    assert pipelines.variant_config(cfg, "image:finetune", 1, image_weights="w.h5",
                                    train_steps=20).model.image.fine_tune.after_epochs == 1


def test_image_arms_reach_the_trainer_through_the_config_boundary():
    from benchmarks import pipelines

    vcfg = pipelines.variant_config(_digits(), "image:finetune", 3, image_weights="/w/p.h5")
    back = config_lib.from_json(config_lib.to_json(vcfg, config_lib.Scope.TRAINING))
    assert back.model.image == vcfg.model.image and back.trainer.seed == 3


@pytest.mark.parametrize("config, variant, weights, words", [
    (DIGITS, "image:frozen", None, "--image-weights"),
    (DIGITS, "image:finetune", "", "--image-weights"),
    (DIGITS, "image:imagenet", "w.h5", "unknown image arm"),
    ("pipeline/configs/taxi.yaml", "image:none", "w.h5", "image application"),
])
def test_bad_image_arms_are_named(config, variant, weights, words):
    from benchmarks import pipelines

    cfg = config_lib.load(config, check_data=False)
    with pytest.raises(ValueError, match=words):
        pipelines.variant_config(cfg, variant, 1, image_weights=weights)


def test_rotations_turn_counterclockwise_and_are_labelled_by_quarter_turns():
    from benchmarks import images

    x = np.zeros((2, 3, 3, 1), np.uint8)
    x[:, 0, 0] = 255  # a bright top-left corner
    r = images.rotations(x)
    assert r.shape == (2, 4, 3, 3, 1)
    corners = [tuple(np.argwhere(r[0, k, :, :, 0])[0]) for k in range(4)]
    # counterclockwise: top-left -> bottom-left -> bottom-right -> top-right
    assert corners == [(0, 0), (2, 0), (2, 2), (0, 2)]
    assert images.rotation_labels(2).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="square"):
        images.rotations(np.zeros((1, 3, 4, 1)))


def test_crop_boxes_stay_inside_their_columns_and_side_range():
    from benchmarks import images

    assert images.split_columns(640) == ((0, 427), (427, 640))
    photos = [np.zeros((427, 640, 3), np.uint8)] * 2
    assert images.max_crop_side(photos) == 213
    rng = np.random.default_rng(0)
    boxes = images.crop_boxes(427, (427, 640), 500, 16, 213, rng)
    top, left, side = boxes.T
    assert (side >= 16).all() and (side <= 213).all()
    assert (top >= 0).all() and (top + side <= 427).all()
    assert (left >= 427).all() and (left + side <= 640).all()
    assert np.median(side) < (16 + 213) / 2  # log-uniform: more small crops than large
    with pytest.raises(ValueError, match="do not fit"):
        images.crop_boxes(427, (0, 10), 1, 16, 213, rng)


def test_held_out_crops_never_see_the_training_columns():
    from benchmarks import images

    photo = np.zeros((100, 150, 3), np.uint8)
    photo[:, 100:] = 255  # the held-out third is white, the training columns black
    rng = np.random.default_rng(1)
    train = images.crops([photo], 50, False, (32, 32), 3, rng)
    held = images.crops([photo], 50, True, (32, 32), 3, rng)
    assert train.shape == held.shape == (50, 32, 32, 3) and train.dtype == np.uint8
    assert train.max() == 0 and held.min() == 255
    grey = images.crops([photo], 2, True, (32, 32), 1, rng)
    assert grey.shape == (2, 32, 32, 1)


def test_throughput_is_the_median_of_per_step_rates():
    from benchmarks import images

    r = images.step_rates([10.0, 10.1, 10.3, 10.4], batch=64)
    # steps of 0.1, 0.2 and 0.1 s: rates 640, 320, 640 images/s
    assert r["images_per_s"] == pytest.approx(640)
    assert r["images_per_s_window"] == pytest.approx(64 * 3 / 0.4)
    assert r["step_ms_p50"] == pytest.approx(100) and r["steps"] == 3
    with pytest.raises(ValueError):
        images.step_rates([1.0], batch=64)
    c = images.call_rates([0.01, 0.03, 0.02], batch=64)
    assert c["images_per_s"] == pytest.approx(64 / 0.02) and c["p50_ms"] == pytest.approx(20)


def _image_results():
    heads = [{"name": "digit", "metrics": ["accuracy"], "main": "accuracy",
              "task": "multiclass", "auxiliary": False},
             {"name": "even", "metrics": ["auc", "accuracy"], "main": "auc", "task": "binary",
              "auxiliary": False}]
    digit = {"image:none": [0.90, 0.92, 0.94], "image:frozen": [0.50, 0.52, 0.54],
             "image:finetune": [0.91, 0.93, 0.95]}
    models = {arm: {s: {"train_s": 10.0 * s, "params": 1000, "metrics": {
        "digit": {"accuracy": a}, "even": {"auc": 0.9, "accuracy": 0.75}}}
        for s, a in zip([1, 2, 3], acc, strict=True)} for arm, acc in digit.items()}
    quality = {"split": "test", "seeds": [1, 2, 3], "train_steps": 400,
               "variants": list(digit), "heads": heads, "models": models}
    pretrain = {"application": "MobileNetV2", "alpha": 0.35, "size": [32, 32],
                "train_examples": 8192, "train_crops": 2048, "steps": 1200, "batch": 64,
                "train_s": 100.0, "held_out_accuracy": 0.41, "held_out_examples": 1024,
                "train_accuracy": 0.5}
    train = {k: {"batch": 64, "images_per_s": v, "step_ms_p50": 64e3 / v,
                 "peak_rss_mib": 900.0} for k, v in (("frozen", 800.0), ("trainable", 300.0))}
    serve = {f"batch{b}": {"batch": b, "images_per_s": v, "p50_ms": b * 1e3 / v,
                           "peak_rss_mib": 700.0} for b, v in ((1, 100.0), (64, 2000.0))}
    return {"config": DIGITS, "mode": "full", "quality": quality, "pretrain": pretrain,
            "params": {a: {"total": 500_000, "trainable": 20_000} for a in digit},
            "throughput": {"train": train, "serve": serve},
            "machine": {"cpus": 2, "processor": "x86_64", "platform": "Linux"}}


def test_image_arms_mean_std_per_head_and_verdict_against_from_scratch():
    from benchmarks import images

    s = images.arm_stats(_image_results()["quality"])
    mean, std = s["image:frozen"]["metrics"]["digit"]["accuracy"]
    assert mean == pytest.approx(0.52) and std == pytest.approx(0.02)  # sample std, ddof 1
    assert s["image:none"]["train_s"] == pytest.approx((20.0, 10.0))
    assert "vs_none" not in s["image:none"]
    assert s["image:frozen"]["vs_none"] == {"digit": "worse", "even": "within noise"}
    assert s["image:finetune"]["vs_none"]["digit"] == "within noise"  # 0.01 < std 0.02


def test_images_summary_says_what_pretrained_means_and_lists_arms_and_costs():
    from benchmarks import images

    text = images.summary(_image_results())
    assert "no ImageNet" in text and "china.jpg, flower.jpg" in text and "**0.410**" in text
    assert ("| image:frozen (pretrained file, frozen) | 0.52 ± 0.02 worse | 0.9 ± 0 | "
            "0.75 ± 0 | 20 ± 10 | 500,000 / 20,000 |") in text
    assert "| train, frozen application (pretrained file) | 64 | 800 | 80 | 900 |" in text
    assert "| serve `examples` in process, 64 PNG examples | 64 | 2,000 | 32 | 700 |" \
        in text


def test_render_has_an_images_section(tmp_path):
    import json

    from benchmarks import run

    (tmp_path / "images.json").write_text(json.dumps(_image_results()))
    text = run.render(str(tmp_path))
    assert "## Images: a backbone pretrained without a download (digits)" in text
    assert "images" in run.ALL


def test_the_scoring_figures_in_the_docs_are_the_results_files():
    """docs/serving.md's batch-scoring table is benchmarks/scoring.py's rendering of
    benchmarks/results/scoring.json, not numbers typed by hand."""
    from benchmarks import scoring

    with open(os.path.join(common.RESULTS, "scoring.json"), encoding="utf-8") as fh:
        rendered = scoring.summary(json.load(fh))
    with open(os.path.join(common.ROOT, "docs", "serving.md"), encoding="utf-8") as fh:
        assert rendered in fh.read()


def test_the_gate_change_moves_one_threshold_outward_and_keeps_the_rest():
    import copy

    from benchmarks import pipeline_cost

    raw = {"heads": [{"name": "a", "label": "a"},
                     {"name": "b", "thresholds": {"auc": {"min": 0.55, "max_regression": 0.02}}},
                     {"name": "c", "thresholds": {"mae": {"max": 4.0}}}]}
    before = copy.deepcopy(raw)
    changed, which = pipeline_cost.gate_changed(raw)
    assert which == "heads[b].thresholds.auc.min"
    assert changed["heads"][1]["thresholds"]["auc"] == {"min": 0.54, "max_regression": 0.02}
    assert changed["heads"][2] == before["heads"][2] and changed["heads"][0] == before["heads"][0]
    upper, which = pipeline_cost.gate_changed({"heads": [{"name": "c", "thresholds": {
        "mae": {"max": 4.0}}}]})
    assert which == "heads[c].thresholds.mae.max" and upper["heads"][0]["thresholds"] == {
        "mae": {"max": 4.01}}
    with pytest.raises(ValueError, match="no head threshold"):
        pipeline_cost.gate_changed({"heads": [{"name": "a"}]})


def test_pipeline_cost_summary_reports_medians_ratio_and_reruns():
    from benchmarks import pipeline_cost

    def run(wall, comps):
        return {"wall_s": wall, "peak_rss_mib": 1000.0, "components": {
            c: {"seconds": s, "state": "CACHED" if s is None else "COMPLETE",
                "start_offset_s": i, "peak_rss_mib": 900.0} for i, (c, s) in enumerate(comps)}}
    ours = [run(60.0, [("Transform", 20.0)]), run(80.0, [("Transform", 30.0)])]
    theirs = [run(120.0, [("Transform", 25.0)]), run(100.0, [("Transform", 24.0)])]
    gate = run(14.0, [("Transform", None), ("Evaluator", 9.0)])
    gate["changed"] = "heads[b].thresholds.auc.min"
    results = {"rounds": {"headwise_first": ours, "official_taxi_in_memory": theirs},
               "headwise_first": ours[0], "official_taxi_in_memory": theirs[0],
               "headwise_noop": run(1.2, []), "headwise_gate_change": gate,
               "ratios": {"headwise_vs_official_in_memory_wall": (0.5 + 0.8) / 2,
                          "per_round": [0.5, 0.8]}}
    text = pipeline_cost.summary(results)
    assert "| headwise first run | 70 |" in text  # the median of 60 and 80
    assert "**0.65x**" in text and "0.50x, 0.80x" in text
    assert "| Transform | 20.0 | 25.0 | cached |" in text
    assert "| Evaluator | - | - | 9.0 |" in text


def test_the_readme_performance_table_is_the_one_rendered_from_the_results():
    from benchmarks import performance

    def load(name):
        with open(os.path.join(common.RESULTS, f"{name}.json"), encoding="utf-8") as fh:
            return json.load(fh)
    with open(os.path.join(common.ROOT, "README.md"), encoding="utf-8") as fh:
        block = performance.readme_block(fh.read())
    assert block is not None, f"README.md has no {performance.README_BEGIN} ... block"
    assert block.strip() == performance.readme_table(
        load("pipeline_cost"), load("scaling"), load("census")).strip(), (
        "the README's performance table differs from benchmarks/results/: run "
        "`headwise bench --render`")


def test_performance_rows_compare_each_figure_with_its_goal():
    from benchmarks import performance

    def run(wall):
        return {"wall_s": wall, "peak_rss_mib": 1.0, "components": {}}
    pipeline = {"rounds": {"headwise_first": [run(50.0), run(70.0)],
                           "official_taxi_in_memory": [run(110.0), run(130.0)]},
                "ratios": {"headwise_vs_official_in_memory_wall": 0.49},
                "headwise_noop": run(1.5), "headwise_gate_change": {**run(16.0), "changed": "g"}}
    step = {"seconds": 10.0}
    scaling = {"factors": {
        "1": {"rows": 100, "peak_rss_mib": 1000.0, "example_gen": step, "transform": step,
              "trainer": step},
        "50": {"rows": 5000, "peak_rss_mib": 1600.0, "example_gen": {"seconds": 200.0},
               "transform": {"seconds": 600.0}, "trainer": {"seconds": 100.0}}}}
    got = {r[0].split(" (")[0].split(",")[0]: r for r in performance.rows(pipeline, scaling)}
    first = got["taxi first run"]
    assert first[1].startswith("60 s vs 120 s: **0.49x**") and first[3] == "met"
    assert got["rerun with nothing changed"][3] == "met"
    assert got["rerun after changing only a gate"][3] == "**not met**"  # 16 s > 15 s
    assert got["peak memory"][1].endswith("**1.60x**") and got["peak memory"][3] == "**not met**"
    growth = got["time at 50x the rows / at 1x"]
    assert growth[1] == "examplegen 20.0x, transform 60.0x, trainer 10.0x"
    assert growth[3] == "**not met**"  # Transform grew 60x for 50x the rows


def _census_results(run_s=230.0, check_s=2.0, schema_s=25.0, example_gen_s=8.0,
                    transform_s=55.0, tf1=(50.0, 54.0), tf2=(70.0, 66.0)) -> dict:
    from benchmarks import census

    return {"config": census.CONFIG, "rows": 199_523,
            "check": {"wall_s": check_s, "peak_rss_mib": 100.0},
            "schema": {"wall_s": schema_s, "peak_rss_mib": 900.0},
            "run": {"wall_s": run_s, "peak_rss_mib": 2400.0, "components": {
                "CsvExampleGen": {"seconds": example_gen_s, "peak_rss_mib": 900.0},
                "Transform": {"seconds": transform_s, "peak_rss_mib": 1900.0}}},
            "example_gen_rows_per_s": 199_523 / example_gen_s,
            "transform_modes": {"rounds": {"tf1": list(tf1), "tf2": list(tf2)},
                                "ratio_tf1_to_tf2": (sum(tf1) / 2) / (sum(tf2) / 2)},
            "goals": census.GOALS}


def test_census_rows_judge_each_200k_row_goal():
    from benchmarks import census

    got = {r[0]: r for r in census.rows(_census_results())}
    assert got["census-income (199,523 rows): whole `headwise run`"][3] == "met"  # 230 <= 240
    assert got["census-income: pre-flight (`headwise check`, a whole process)"][3] == "met"
    assert got["census-income: `headwise schema`"][3] == "**not met**"  # 25 s > 20 s
    assert got["census-income: ExampleGen"][1] == "24,940 rows/s"
    transform = got["census-income: Transform"]
    assert transform[1] == "55.0 s (TF1 graph mode: 0.76x of TF2's time)"
    assert transform[3] == "met"
    slow = {r[0]: r for r in census.rows(_census_results(run_s=250.0, transform_s=61.0,
                                                          example_gen_s=10.5))}
    assert slow["census-income (199,523 rows): whole `headwise run`"][3] == "**not met**"
    assert slow["census-income: Transform"][3] == "**not met**"
    assert slow["census-income: ExampleGen"][3] == "**not met**"  # 19,002 rows/s
    text = census.summary(_census_results())
    assert "tf1: 50.0, 54.0 s; tf2: 70.0, 66.0 s" in text and "**0.76x**" in text


def test_census_finds_the_newest_artifact_of_a_component(tmp_path):
    from benchmarks import census

    for n in ("3", "12", "7"):
        (tmp_path / "pipelines" / "census" / "CsvExampleGen" / "examples" / n).mkdir(
            parents=True)
    assert census._artifact(str(tmp_path), "CsvExampleGen", "examples").endswith(
        os.path.join("examples", "12"))
    with pytest.raises(FileNotFoundError, match="no Transform.transform_graph"):
        census._artifact(str(tmp_path), "Transform", "transform_graph")
