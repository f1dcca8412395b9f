"""End to end: a `count` head (non-negative whole numbers, a Poisson model with a log link)
beside labels derived from columns (binary: a threshold on the count, and two values of a
four-valued column against the rest; multiclass: classes that merge that column's values),
through the real pipeline: the pre-flight
check, Transform, Trainer, the Evaluator's gates and baseline, the report, the push, the served
Regress and Classify signatures, and the scoring stage on the data. The data is a folder of two
Parquet files (`data.parquet`), so ParquetExampleGen runs here too (its examples are
byte-identical to a CSV's of the same rows: tests/test_sources.py).

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
    quartile = np.array(["q1", "q2", "q3", "Q4"])[np.searchsorted(np.quantile(x, [.25, .5, .75]),
                                                                   x)]
    table = pa.table({"x": np.round(x, 5), "zone": zone, "trips": trips, "xq": quartile})
    pq.write_table(table.slice(0, ROWS // 2), folder / "part-0.parquet")
    pq.write_table(table.slice(ROWS // 2), folder / "part-1.parquet")
    path = folder
    return config_lib.from_dict({
        "name": "trips", "data": {"parquet": str(path)},
        "features": {"x": "numeric", "zone": "categorical"},
        "heads": [{"name": "trips", "label": "trips", "task": "count",
                   "metrics": ["poisson_deviance", "mae"]},
                  # binary labels derived from columns: a threshold on the count, and two
                  # of a four-valued column's values against the other two
                  {"name": "busy", "label": "trips", "task": "binary",
                   "positive_if": {"greater_or_equal": 3}},
                  {"name": "upper", "label": "xq", "task": "binary",
                   "positive": ["q3", "q4"]},
                  # a multiclass head whose classes merge values of the same column
                  {"name": "band", "label": "xq", "task": "multiclass",
                   "classes": {"low": ["q1", "q2"], "mid": "q3"}, "other_class": "top"}],
        "model": {"hidden_units": [16, 8]},
        "trainer": {"train_steps": 300, "eval_steps": 20},
        # the pipeline's scoring stage, after the push: every head on the same folder
        "scoring": {"data": str(path), "output": str(folder.parent / "scored.parquet"),
                    "keys": ["xq"]},
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


def test_derived_binary_labels_train_gate_and_say_how_they_were_derived(run):
    """busy = trips >= 3 and upper = xq in {q3, q4} (the data holds `Q4`: any case): both beat
    the trivial baseline by far (the rate and x decide them), pass their gates, and the report
    says how each label was made."""
    out, summary = run
    for name in ("busy", "upper"):
        head = summary.head(name)
        assert head.passed and head.failures == [], summary.table()
        assert head.metrics["auc"] > 0.75, summary.table()
    report = open(os.path.join(summary.evaluation_uri, "report", "report.md")).read()
    assert "derived from the column `trips`: 1 when trips >= 3, 0 otherwise" in report
    assert "derived from the column `xq`: 1 when xq is one of q3, q4 (any case)" in report
    assert "classes merge label values: low = q1, q2; mid = q3; any other value: top" in report
    band = summary.head("band")
    assert band.passed and band.metrics["accuracy"] > 0.6, summary.table()


def test_derived_heads_are_served_and_scored(run, cfg):
    """The served Classify signature of `upper` follows x; the pipeline's scoring stage
    (`headwise score` on the pushed version) writes every head's columns for the Parquet
    folder, the derived ones with their 0/1 classes, and the summary says where."""
    out, summary = run
    (version,) = glob.glob(os.path.join(out, "serving", cfg.model_name, "[0-9]*"))
    info = examples_lib.read_model_info(version)
    model = tf.saved_model.load(version)
    grid = [{"x": x, "zone": "near"} for x in (-1.5, 1.5)]
    examples = tf.constant(examples_lib.to_examples(grid, info["features"]))
    got = model.signatures[contract.classify_signature("upper")](
        **{contract.CLASSIFY_INPUTS: examples})
    p_upper = got[contract.CLASSIFY_OUTPUT_SCORES].numpy()[:, 1]
    assert p_upper[0] < 0.2 < 0.8 < p_upper[1], p_upper
    assert summary.executions["BatchScoring"] == "COMPLETE"
    scored = cfg.resolve_file(cfg.scoring_output)
    assert summary.scoring["scored"] and summary.scoring["rows"] == ROWS, summary.scoring
    assert summary.scoring["model"] == summary.pushed_path
    assert f"scored:  {scored} ({ROWS:,} rows of {cfg.resolve_data()}" in summary.table()
    table = pq.read_table(scored).to_pydict()
    assert table["xq"] == pq.read_table(cfg.resolve_data()).column("xq").to_pylist()
    upper = np.array(table["upper_p_1"])
    high = np.isin(np.char.lower(np.array(table["xq"], dtype=str)), ["q3", "q4"])
    assert upper[high].mean() > 0.7 > 0.3 > upper[~high].mean()
    assert set(table["busy"]) == {"0", "1"} and set(table["upper"]) == {"0", "1"}
    band = np.array(table["band"])  # the merged classes, by name
    assert set(band) == {"low", "mid", "top"}
    low = np.isin(np.array(table["xq"], dtype=str), ["q1", "q2"])
    assert (band[low] == "low").mean() > 0.8


def test_the_served_count_is_the_expected_count_in_the_labels_units(run, cfg):
    out, _ = run
    (version,) = glob.glob(os.path.join(out, "serving", cfg.model_name, "[0-9]*"))
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
