"""The data contract: the committed schema, its environments, and the real preprocessing_fn on
a slice of the taxi data against committed golden values."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils

from components import data_gate
from headwise import config as config_lib
from headwise import examples as examples_lib
from pipeline import schema as schema_lib
from tests.tft_helpers import run_transform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
GOLDEN = os.path.join(ROOT, "tests", "golden", "taxi_transform.json")
DTYPES = {schema_pb2.INT: "int64", schema_pb2.FLOAT: "float32", schema_pb2.BYTES: "string"}


@pytest.fixture(scope="module")
def cfg():
    return config_lib.load(TAXI)


@pytest.fixture(scope="module")
def schema(cfg):
    return schema_lib.load_schema(cfg.schema_path())


def _rows(cfg, n=None):
    with open(cfg.resolve_data_csv(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:n] if n else rows


def test_committed_schema_is_the_contract_of_the_config(cfg, schema):
    features = {f.name: f for f in schema.feature}
    for column in cfg.columns:
        assert column in features, f"{column} missing from {cfg.schema_path()}"
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    for label in cfg.label_columns:
        assert list(features[label].not_in_environment) == ["SERVING"], label
    for f in cfg.features:
        assert not features[f.name].not_in_environment, f.name
    assert features["payment_type"].distribution_constraints.min_domain_mass == pytest.approx(
        1 - cfg.validation.max_unseen_fraction)
    assert features["trip_start_hour"].int_domain.min == 0
    assert features["trip_start_hour"].int_domain.max == 23
    assert 0.9 <= features["big_tipper"].presence.min_fraction < 1.0
    assert features["dropoff_census_tract"].presence.min_fraction == 0.0  # unused column


def test_curate_derives_limits_from_observed_data(tmp_path, cfg):
    path = tmp_path / "tiny.csv"
    rows = _rows(cfg, 400)
    for i, r in enumerate(rows):  # company present in exactly half of the rows
        r["company"] = "Acme" if i % 2 else ""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    schema = schema_lib.generate_schema(cfg, str(path))
    f = {x.name: x for x in schema.feature}
    slack = cfg.validation.missing_slack
    assert f["company"].presence.min_fraction == pytest.approx(0.5 - slack)
    assert f["fare"].presence.min_fraction == pytest.approx(1.0 - slack)
    assert list(f["tips"].not_in_environment) == ["SERVING"]
    assert f["trip_miles"].value_count.max == 1 and f["trip_miles"].value_count.min == 0


def _example_stats(rows, schema, tmp_path, drop=()):
    dtypes = {f.name: DTYPES[f.type] for f in schema.feature if f.name not in drop}
    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for ex in examples_lib.to_examples(rows, dtypes):
            w.write(ex)
    return tfdv.generate_statistics_from_tfrecord(path)


def test_serving_examples_without_labels_pass_the_serving_environment(cfg, schema, tmp_path):
    stats = _example_stats(_rows(cfg), schema, tmp_path, drop=cfg.label_columns)
    serving = tfdv.validate_statistics(stats, schema, environment="SERVING")
    assert not serving.anomaly_info, data_gate.describe({"serving": serving})
    # The same examples break the TRAINING environment, where labels are required.
    training = tfdv.validate_statistics(stats, schema, environment="TRAINING")
    assert set(cfg.label_columns) <= set(training.anomaly_info)


def test_gate_counts_empty_values_as_missing(schema, tmp_path):
    # As CsvExampleGen writes an empty cell: the feature is there, with an empty value list,
    # which TFDV counts as present.
    path = str(tmp_path / "empty_cells.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(100):
            ex = tf.train.Example()
            ex.features.feature["big_tipper"].int64_list.value.extend([1] if i < 10 else [])
            w.write(ex.SerializeToString())
    stats = tfdv.generate_statistics_from_tfrecord(path)
    common = stats.datasets[0].features[0].num_stats.common_stats
    assert common.num_non_missing == 100  # why TFDV's own presence check cannot see this
    problems = data_gate.missing_value_problems("train", stats.datasets[0], schema)
    assert len(problems) == 1
    assert "column 'big_tipper'" in problems[0] and "10.0% of examples" in problems[0]


def _transform_slice(cfg, schema, tmp_path, n=300):
    spec = {k: v for k, v in schema_utils.schema_as_feature_spec(schema).feature_spec.items()
            if k in cfg.columns}
    cast = {tf.int64: lambda v: int(float(v)), tf.float32: float, tf.string: str}
    rows = [{k: ([cast[spec[k].dtype](r[k])] if r[k] != "" else []) for k in spec}
            for r in _rows(cfg, n)]
    return run_transform(cfg, rows, spec, str(tmp_path / "tft"))


def test_preprocessing_fn_on_taxi_slice_matches_golden(cfg, schema, tmp_path):
    tft_output, data = _transform_slice(cfg, schema, tmp_path)
    spec = tft_output.transformed_feature_spec()
    got = {
        "transformed_spec": {k: [v.dtype.name, list(v.shape)] for k, v in sorted(spec.items())},
        "vocabulary_sizes": {f.name: tft_output.vocabulary_size_by_name(f.name)
                             for f in cfg.features if f.type == "categorical"},
        "first_rows": [{k: (np.round(v, 4).tolist() if isinstance(v, (float, list)) else v)
                        for k, v in sorted(row.items())} for row in data[:3]],
    }
    if os.environ.get("HEADWISE_UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as fh:
            json.dump(got, fh, indent=1, sort_keys=True)
    with open(GOLDEN) as fh:
        golden = json.load(fh)
    assert got["transformed_spec"] == golden["transformed_spec"]
    assert got["vocabulary_sizes"] == golden["vocabulary_sizes"]
    for g, e in zip(got["first_rows"], golden["first_rows"], strict=True):
        assert g.keys() == e.keys()
        for k in g:
            np.testing.assert_allclose(g[k], e[k], rtol=1e-4, atol=1e-4, err_msg=k)


def _taxi_stats(cfg, tmp_path, name: str, damage=None):
    with open(cfg.resolve_data_csv(), newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames), list(reader)
    for i, r in enumerate(rows):
        if damage:
            damage(i, r)
    path = tmp_path / name
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return tfdv.generate_statistics_from_csv(str(path))


def test_drift_is_measured_against_the_served_models_training_data(cfg, schema, tmp_path):
    """The Pusher stores the training statistics in the pushed version; the gate reads the latest
    version's and flags only the columns configured in validation.drift, over threshold."""
    from components import pusher

    baseline = _taxi_stats(cfg, tmp_path, "base.csv")
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"model")
    serving = str(tmp_path / "serving")
    assert data_gate.served_baseline(serving) is None  # nothing served yet: no drift check
    pushed = pusher.push_model(str(model), serving, source="m1", extra_files={
        data_gate.BASELINE_STATISTICS: baseline.SerializeToString()})
    version, stored = data_gate.served_baseline(serving)
    assert version == pushed.version and stored == baseline

    def more_cash_and_fares_doubled(i, r):
        if i % 10 < 6:
            r["payment_type"] = "Cash"
        if r["fare"]:
            r["fare"] = str(2 * float(r["fare"]))
    drifted = _taxi_stats(cfg, tmp_path, "drifted.csv", more_cash_and_fares_doubled)
    thresholds = dict(cfg.validation.drift)
    assert {"payment_type", "fare"} <= set(thresholds)
    problems = data_gate.drift_problems(drifted, stored, version, schema, thresholds)
    assert [p.split("'")[1] for p in problems] == ["fare", "payment_type"], problems
    assert f"served version {version}" in problems[1] and "(validation.drift: 0.1)" in problems[1]
    assert data_gate.drift_problems(baseline, stored, version, schema, thresholds) == []
    # Only configured columns are compared: the same drift with no thresholds is no problem.
    assert data_gate.drift_problems(drifted, stored, version, schema, {}) == []
