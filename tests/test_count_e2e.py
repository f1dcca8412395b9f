"""End to end: a `count` head (non-negative whole numbers, a Poisson model with a log link)
beside a binary head, through the real pipeline: the pre-flight check, Transform, Trainer, the
Evaluator's gates and baseline, the report, the push, and the served Regress signature. The data
is a folder of two Parquet files (`data.parquet`), so ParquetExampleGen runs here too (its
examples are byte-identical to a CSV's of the same rows: tests/test_sources.py).

The data: counts drawn with a known rate, exp(0.2 + 0.8 x + 0.6 [zone = far]), so a model that
reads the features must beat the training mean on deviance, and predicted counts must follow
the rate."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from headwise import config as config_lib
from headwise import contract
from headwise import examples as examples_lib
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROWS = 3000


def rate(x: float, zone: str) -> float:
    return float(np.exp(0.2 + 0.8 * x + (0.6 if zone == "far" else 0.0)))


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> config_lib.PipelineConfig:
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("count") / "trips"
    folder.mkdir()
    x = rng.normal(size=ROWS)
    zone = np.array(["far", "near"] * (ROWS // 2))
    n = rng.poisson([rate(a, z) for a, z in zip(x, zone, strict=True)])
    trips = pa.array([None if i % 50 == 0 else int(v) for i, v in enumerate(n)], pa.int64())
    table = pa.table({"x": np.round(x, 5), "zone": zone, "trips": trips,
                      "busy": (n >= 3).astype(np.int64)})
    pq.write_table(table.slice(0, ROWS // 2), folder / "part-0.parquet")
    pq.write_table(table.slice(ROWS // 2), folder / "part-1.parquet")
    path = folder
    return config_lib.from_dict({
        "name": "trips", "data": {"parquet": str(path)},
        "features": {"x": "numeric", "zone": "categorical"},
        "heads": [{"name": "trips", "label": "trips", "task": "count",
                   "metrics": ["poisson_deviance", "mae"]},
                  {"name": "busy", "label": "busy", "task": "binary"}],
        "model": {"hidden_units": [16, 8]},
        "trainer": {"train_steps": 300, "eval_steps": 20},
    }, source=str(path))


@pytest.fixture(scope="module")
def run(cfg, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("count_out"))
    return out, local_runner.run(cfg, out, quiet=True)


def test_the_count_head_beats_its_baseline_passes_its_gates_and_is_pushed(run):
    out, summary = run
    assert summary.executions["ParquetExampleGen"] == "COMPLETE", summary.executions
    assert summary.blessed is True and summary.pushed, summary.table()
    trips = summary.head("trips")
    assert trips.passed and trips.failures == []
    assert trips.metrics["poisson_deviance"] < 0.85 * trips.baseline, summary.table()
    assert trips.metrics["mae"] > 0
    with open(os.path.join(summary.evaluation_uri, "report", "gates.json")) as fh:
        rows = {r["metric"]: r for r in json.load(fh)["heads"]["trips"]["rows"]}
    assert rows["poisson_deviance"]["beats_baseline"] == "pass"
    assert rows["mae"]["value"] < rows["mae"]["baseline"]
    report = open(os.path.join(summary.evaluation_uri, "report", "report.md")).read()
    assert "| poisson_deviance |" in report and "![trips](trips.png)" in report
    assert os.path.exists(os.path.join(summary.evaluation_uri, "report", "trips.png"))


def test_the_served_count_is_the_expected_count_in_the_labels_units(run, cfg):
    out, _ = run
    (version,) = glob.glob(os.path.join(out, "serving", cfg.model_name, "*"))
    info = examples_lib.read_model_info(version)
    (head,) = [h for h in info["heads"] if h["name"] == "trips"]
    assert head["task"] == "count"
    assert head["signature"] == contract.head_signature("trips", "regress")
    grid = [{"x": x, "zone": zone} for zone in ("near", "far") for x in (-1.5, 0.0, 1.5)]
    model = tf.saved_model.load(version)
    examples = tf.constant(examples_lib.to_examples(grid, info["features"]))
    regress = model.signatures[head["signature"]]
    predicted = regress(**{contract.REGRESS_INPUTS: examples})[contract.REGRESS_OUTPUTS].numpy()
    expected = np.array([rate(r["x"], r["zone"]) for r in grid])
    assert np.all(predicted > 0), predicted
    # A Poisson model of 300 steps: the right order and within a factor of the true rate.
    assert np.all(np.diff(predicted[:3]) > 0) and np.all(np.diff(predicted[3:]) > 0), predicted
    assert np.all(predicted[3:] > predicted[:3]), predicted
    assert np.all((predicted > expected / 2) & (predicted < expected * 2)), (predicted, expected)
