"""End to end through the real Evaluator (TFMA): the beats-baseline gate alone blocks a push, and
a multilabel head's per-class failure alone blocks it and is named. (The no-regression gate's
own test is in test_pipeline_e2e, against a blessed model of that module's run.)

The data: taxi rows with two extra label columns whose relation to the inputs is known:
  noise  a standard normal draw per row: no model can beat predicting its mean;
  tags   multilabel: `long` (trip_miles > 2, easy to learn) and `coin` (a fair coin: AUC 0.5).
One pipeline run per verdict; the second changes only gates, so Trainer comes from the cache.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import pytest

from headwise import config as config_lib
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROWS = 6000
TRAIN_STEPS, EVAL_STEPS = 300, 20


@pytest.fixture(scope="module")
def data_path(tmp_path_factory) -> str:
    taxi = config_lib.load(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "pipeline", "configs", "taxi.yaml"))
    rng = np.random.default_rng(17)
    with open(taxi.resolve_data(), newline="") as fh:
        rows = [r for _, r in zip(range(ROWS), csv.DictReader(fh), strict=False)]
    path = tmp_path_factory.mktemp("gates") / "taxi_with_noise.csv"
    columns = ["trip_miles", "trip_start_hour", "pickup_community_area", "fare", "noise", "tags"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            tags = [t for t, on in (("long", float(r["trip_miles"] or 0) > 2),
                                    ("coin", rng.random() < 0.5)) if on]
            w.writerow({**r, "noise": f"{rng.normal():.6f}", "tags": "|".join(tags) or "short"})
    return str(path)


def make_cfg(data_path: str, *, noise_gates: bool, tags_gate: bool) -> config_lib.PipelineConfig:
    return config_lib.from_dict({
        "name": "gates", "data": {"csv": data_path},
        "features": {"trip_miles": "numeric", "trip_start_hour": "categorical",
                     "pickup_community_area": "categorical"},
        "heads": [
            {"name": "fare", "label": "fare", "task": "regression", "loss": "huber",
             "metrics": ["mae"]},
            # Only the beats-baseline gate: no thresholds, and no blessed model to compare with.
            {"name": "noise", "label": "noise", "task": "regression", "metrics": ["mae"],
             "baseline_margin": 0.05, "gate": noise_gates},
            {"name": "tags", "label": "tags", "task": "multilabel", "classes": ["long", "coin"],
             "metrics": ["auc"], "thresholds": {"auc": {"min": 0.6}}, "gate": tags_gate}],
        "trainer": {"train_steps": TRAIN_STEPS, "eval_steps": EVAL_STEPS},
    }, source=data_path)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("gates_out"))


@pytest.fixture(scope="module")
def noise_run(data_path, out):
    cfg = make_cfg(data_path, noise_gates=True, tags_gate=False)
    return cfg, local_runner.run(cfg, out, quiet=True)


def test_the_beats_baseline_gate_alone_blocks_the_push(noise_run, out):
    cfg, summary = noise_run
    assert summary.blessed is False and not summary.pushed, summary.table()
    noise = summary.head("noise")
    (failure,) = noise.failures
    assert failure.startswith("mae = ") and "fails beats trivial baseline (" in failure, failure
    assert "absolute" not in failure and "no regression" not in failure
    # Every other gate passed: this gate alone blocked the push.
    assert summary.head("fare").passed and summary.head("fare").failures == []
    assert not summary.head("tags").gating
    assert not os.listdir(os.path.join(out, "serving", cfg.model_name))
    report = open(os.path.join(summary.evaluation_uri, "report", "report.md")).read()
    assert "head `noise`: mae" in report and "beats trivial baseline" in report


def test_a_multilabel_class_failing_alone_blocks_the_push_and_is_named(noise_run, data_path, out,
                                                                       without_tfma):
    cfg = make_cfg(data_path, noise_gates=False, tags_gate=True)
    assert dataclasses.replace(cfg, heads=()) == dataclasses.replace(noise_run[0], heads=())
    without_tfma()
    summary = local_runner.run(cfg, out, quiet=True)
    # Only gates changed: Transform and Trainer come from the cache, and TFMA's validator judges
    # the metrics of the last evaluation (per class) under the new thresholds.
    assert summary.executions["Trainer"] == "CACHED"
    assert summary.executions["Evaluator"] == "COMPLETE"
    assert summary.blessed is False and not summary.pushed, summary.table()
    tags = summary.head("tags")
    assert tags.failures and all("(class coin)" in f for f in tags.failures), tags.failures
    assert any("absolute threshold" in f and "(>= 0.6" in f for f in tags.failures)
    # The macro average and the learnable class pass: one class alone fails the head.
    assert tags.metrics["auc"] >= 0.6
    assert not any("class long" in f for f in tags.failures)
    assert summary.head("fare").passed
    report = open(os.path.join(summary.evaluation_uri, "report", "report.md")).read()
    assert "head `tags`: auc (class coin)" in report
    assert "| auc (class coin) |" in report


def test_a_model_blessed_by_its_metrics_but_failing_in_the_server_is_not_pushed(
        noise_run, data_path, out, monkeypatch):
    """The Trainer's export gives one head's Classify signature another method name
    (tests/broken_export.py): TFMA blesses the model, the infra check loads it in a model
    server, Classify and REST :classify on that signature fail, and nothing is pushed."""
    from pipeline import pipeline as pipeline_lib

    monkeypatch.setattr(pipeline_lib, "RUN_FN", "tests.broken_export.run_fn")
    monkeypatch.setattr(pipeline_lib, "code_version", lambda root=None: "broken-export")
    cfg = make_cfg(data_path, noise_gates=False, tags_gate=False)
    summary = local_runner.run(cfg, out, quiet=True)
    assert summary.executions["Trainer"] == "COMPLETE"
    assert summary.blessed is True, summary.table()
    assert summary.infra_blessed is False and not summary.pushed, summary.table()
    assert not os.listdir(os.path.join(out, "serving", cfg.model_name))
    signature = "classify_tags"  # the first classify_/regress_ signature by name
    failed = "\n".join(summary.infra_failures)
    assert f"gRPC Classify {signature}: INVALID_ARGUMENT: Expected classification signature " \
           "method_name to be tensorflow/serving/classify" in failed, failed
    assert f"REST :classify {signature}: HTTP 400" in failed, failed
    assert f"gRPC MultiInference regress_fare, regress_noise, {signature}: INVALID_ARGUMENT: " \
           "Expected classification signature" in failed, failed
    # Nothing else failed: the regression heads, both Predict signatures, model_info, REST
    # :predict.
    assert len(summary.infra_failures) == 3, failed
    table = summary.table()
    assert "serving: FAILED, the model is not pushed" in table
    assert f"gRPC Classify {signature}" in table and "nothing pushed" in table
