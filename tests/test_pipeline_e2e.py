"""End to end: the real TFX pipeline on the taxi data with LocalDagRunner (small step counts).

One module-scoped run feeds every test here; the last test reruns the pipeline and checks that
TFX's cache makes the rerun reuse every component.
"""

from __future__ import annotations

import csv
import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from headwise import config as config_lib
from headwise import examples as examples_lib
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
TRAIN_STEPS, EVAL_STEPS = 300, 20
COMPONENTS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
              "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher"}


@pytest.fixture(scope="module")
def cfg():
    return config_lib.load(TAXI)


@pytest.fixture(scope="module")
def first_run(cfg, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("outputs"))
    summary = local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS)
    return out, summary


def test_every_component_executed(first_run):
    _, summary = first_run
    assert set(summary.executions) == COMPONENTS
    assert set(summary.executions.values()) == {"COMPLETE"}, summary.executions


def test_evaluator_reports_every_head(first_run, cfg):
    _, summary = first_run
    eval_rows = None
    for head in cfg.heads:
        result = summary.head(head.name)
        assert set(result.metrics) == set(head.metrics), (head.name, result.metrics)
        assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
        assert result.example_count and result.example_count > 1000
        if head.name == "big_tipper":
            eval_rows = result.example_count
    # trip_seconds has a few missing labels in the CSV: they are masked, not imputed.
    assert summary.head("trip_seconds").example_count < eval_rows
    assert summary.head("fare").example_count == eval_rows
    # Sanity of the numbers themselves: probabilities and errors in plausible ranges.
    assert 0.5 < summary.head("big_tipper").metrics["auc"] <= 1.0
    assert 0.0 < summary.head("fare").metrics["mae"] < 11.5  # fare's own std is ~11.5


def test_blessed_and_pushed_in_tf_serving_layout(first_run, cfg):
    out, summary = first_run
    assert summary.blessed is True, summary.table()
    assert summary.pushed, summary.table()
    versions = glob.glob(os.path.join(out, "serving", cfg.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1, versions
    version_dir = os.path.dirname(versions[0])
    assert os.path.basename(version_dir).isdigit()  # TF Serving loads numeric versions only
    assert os.path.realpath(summary.pushed_path) == os.path.realpath(version_dir)
    table = summary.table()
    for head in cfg.heads:
        assert head.name in table
    assert "blessed: yes" in table and version_dir in table


def _raw_rows(cfg, n: int) -> list[dict[str, str]]:
    with open(cfg.resolve_data_csv(), newline="") as fh:
        rows = [r for _, r in zip(range(n), csv.DictReader(fh), strict=False)]
    for r in rows:  # what a serving client has: no label columns at all
        for label in cfg.label_columns:
            del r[label]
    return rows


def test_pushed_model_answers_raw_rows_without_labels(first_run, cfg):
    _, summary = first_run
    info = examples_lib.read_model_info(summary.pushed_path)
    assert [h["name"] for h in info["heads"]] == [h.name for h in cfg.heads]
    rows = _raw_rows(cfg, 8)
    serialized = examples_lib.to_examples(rows, info["features"])
    for s in serialized:  # the examples really carry no label column
        ex = tf.train.Example.FromString(s)
        assert not set(ex.features.feature) & set(cfg.label_columns)

    model = tf.saved_model.load(summary.pushed_path)
    assert {"serving_default", "transform_features"} <= set(model.signatures)
    outputs = model.signatures["serving_default"](examples=tf.constant(serialized))
    assert set(outputs) == {h.name for h in cfg.heads}  # exactly one output per head
    big = outputs["big_tipper"].numpy()
    assert big.shape == (8, 1) and np.all((big >= 0) & (big <= 1))
    probs = outputs["payment_type"].numpy()
    assert probs.shape == (8, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    fare = outputs["fare"].numpy()
    assert fare.shape == (8, 1) and np.all(np.isfinite(fare))
    # Regression outputs come back in label units (dollars), not z-scores.
    assert 1.0 < float(np.median(fare)) < 60.0


def test_rerun_reuses_the_cache_and_does_not_push_twice(first_run, cfg):
    out, first = first_run
    again = local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS, quiet=True)
    assert again.run_id != first.run_id
    cached = {c for c, state in again.executions.items() if state == "CACHED"}
    # Nothing changed: data, schema, Transform and Trainer are reused from ML Metadata.
    assert {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
            "Trainer"} <= cached, again.executions
    # The Evaluator runs again because it now has a baseline: the first run's blessed model.
    assert again.executions["Evaluator"] == "COMPLETE"
    assert again.blessed is True and again.pushed and again.already_served, again.table()
    assert again.pushed_path == first.pushed_path
    versions = glob.glob(os.path.join(out, "serving", cfg.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1, "the same model must not be pushed as a second version"
