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

from components import data_gate, distributions
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
    with open(cfg.resolve_data(), newline="") as fh:
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


def test_preprocessing_fn_on_taxi_slice_matches_the_documented_rules(cfg, schema, tmp_path):
    """Every row of the slice against values computed here from the raw CSV by the rules the
    README documents (not against a snapshot of Transform's own output): a numeric feature's
    quantile position (the empirical CDF of the present values, within the bins' resolution)
    with missing -> 0.5 and its missing indicator, vocabulary ids by descending frequency,
    missing labels weighted 0, z-scored regression labels (of log(1 + y) for a `log` target),
    class indices."""
    from collections import Counter

    n = 300
    tft_output, data = _transform_slice(cfg, schema, tmp_path, n)
    rows = _rows(cfg, n)
    for f in cfg.features:
        raw = [r[f.name].strip() for r in rows]
        got = [d[f.name] for d in data]
        if f.type == "numeric":
            assert f.encoding == "piecewise", "the shipped taxi config's numeric encoding"
            present = np.sort(np.array([float(v) for v in raw if v], float))
            cdf = [np.searchsorted(present, float(v), side="right") / len(present) if v
                   else 0.5 for v in raw]
            np.testing.assert_allclose(got, cdf, atol=2 / f.quantile_bins + 0.01, err_msg=f.name)
            assert [d[f"present__{f.name}"] for d in data] == [
                1.0 if v else 0.0 for v in raw], f.name
        elif f.type == "categorical":
            # TFT orders a vocabulary by frequency, ties by the value (descending bytes). An
            # empty (missing) value is no vocabulary entry: it gets an out-of-vocabulary id.
            text = [str(int(float(v))) if v and f.name != "company" else v for v in raw]
            counts = Counter(v for v in text if v)
            order = sorted(counts, key=lambda v: (counts[v], v.encode()), reverse=True)
            vocab = [v.decode() for v in tft_output.vocabulary_by_name(f.name)]
            assert vocab == order, (f.name, " ".join(vocab), " ".join(order))
            assert [g for g, v in zip(got, text, strict=True) if v] == [
                order.index(v) for v in text if v], f.name
            assert all(len(order) <= g < len(order) + f.oov_buckets
                       for g, v in zip(got, text, strict=True) if not v), f.name
        else:  # quantile buckets: ordered like the values, missing in its own bucket
            assert all(0 <= g < f.buckets for g, v in zip(got, raw, strict=True) if v), f.name
            assert all(g == f.buckets for g, v in zip(got, raw, strict=True) if not v), f.name
            pairs = sorted((float(v), g) for g, v in zip(got, raw, strict=True) if v)
            assert [g for _, g in pairs] == sorted(g for _, g in pairs), f.name
    for h in cfg.heads:
        raw = [r[h.label].strip() for r in rows]
        weights = [d[f"weight__{h.name}"] for d in data]
        assert weights == [1.0 if v else 0.0 for v in raw], h.name
        labels = [d[f"label__{h.name}"] for d in data]
        if h.task == "regression":
            present = np.array([float(v) for v in raw if v], float)
            np.testing.assert_allclose(labels, [float(v) if v else 0.0 for v in raw],
                                       rtol=1e-6, err_msg=h.name)
            if h.target == "log":
                present = np.log1p(present)
            z = [((np.log1p(float(v)) if h.target == "log" else float(v)) - present.mean())
                 / present.std() for v in raw if v]
            np.testing.assert_allclose([d[f"zlabel__{h.name}"] for d, v in
                                        zip(data, raw, strict=True) if v], z, rtol=1e-4,
                                       atol=1e-4, err_msg=h.name)
        elif h.task == "binary":
            assert labels == [float(v) if v else 0.0 for v in raw], h.name
        elif h.task == "multiclass":
            names = h.class_names
            assert [lab for lab, v in zip(labels, raw, strict=True) if v] == [
                names.index(v) if v in h.classes else len(h.classes) for v in raw if v], h.name


def _taxi_stats(cfg, tmp_path, name: str, damage=None, keep=None):
    """Statistics of the taxi CSV as StatisticsGen computes them (schema, 100 quantiles);
    damage(i, row) edits rows, keep(i) picks a sample."""
    with open(cfg.resolve_data(), newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames), list(reader)
    rows = [r for i, r in enumerate(rows) if keep is None or keep(i)]
    for i, r in enumerate(rows):
        if damage:
            damage(i, r)
    path = tmp_path / name
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return tfdv.generate_statistics_from_csv(
        str(path), stats_options=distributions.stats_options(
            schema_lib.load_schema(cfg.schema_path())))


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


def test_healthy_samples_of_the_same_data_neither_drift_nor_skew(cfg, schema, tmp_path):
    """Two disjoint random samples of the taxi CSV (2/3 and 1/3) are the same data: no column of
    the configured drift and skew checks may be flagged. (TFDV's Jensen-Shannon comparator
    flagged trip_miles at 0.70 here: components/distributions.py.)"""
    pick = np.random.default_rng(7).random(15_002) < 2 / 3
    a = _taxi_stats(cfg, tmp_path, "a.csv", keep=lambda i: pick[i])
    b = _taxi_stats(cfg, tmp_path, "b.csv", keep=lambda i: not pick[i])
    every = {c: 0.1 for c in ("trip_miles", "fare", "pickup_latitude", "dropoff_longitude",
                              "trip_start_hour", "company", "payment_type")}
    assert {**cfg.validation.drift, **cfg.validation.skew}.keys() <= every.keys()
    assert data_gate.drift_problems(a, b, 1, schema, every) == []
    features = {c: t for c, t in every.items() if c not in cfg.label_columns}
    assert data_gate.skew_problems(a, b, 5000, "logs", schema, features) == []
    # ... while the same comparison does see a real move in each kind of column.
    def moved(i, r):
        if i % 3 == 0:
            r.update(trip_start_hour="3", company="Zoom Cabs" if r["company"] else "",
                     trip_miles=str(3 * float(r["trip_miles"] or 0)))
    c = _taxi_stats(cfg, tmp_path, "c.csv", moved, keep=lambda i: not pick[i])
    problems = data_gate.skew_problems(a, c, 5000, "logs", schema, features)
    assert [p.split("'")[1] for p in problems] == ["company", "trip_miles", "trip_start_hour"]


def _quantiles(values, buckets=100):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    edges = np.quantile(values, np.linspace(0, 1, buckets + 1))
    h = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        h.buckets.add(low_value=low, high_value=high, sample_count=len(values) / buckets)
    return h


def test_ks_distance_is_the_largest_gap_between_the_cdfs():
    u = np.linspace(0, 1, 10_001)
    assert distributions.ks_distance(_quantiles(u), _quantiles(u)) == 0
    # U(0,1) vs U(0.2,1.2): F differs by exactly 0.2 on [0.2, 1].
    assert distributions.ks_distance(_quantiles(u), _quantiles(u + 0.2)) == pytest.approx(
        0.2, abs=1e-3)
    # Point masses: 60% zeros vs 20% zeros (the rest uniform on (0, 1]): the CDFs jump at 0
    # by 0.6 and 0.2, so the gap there is 0.4 (to within one bucket, 0.01).
    a = np.r_[np.zeros(6000), np.linspace(1e-3, 1, 4000)]
    b = np.r_[np.zeros(2000), np.linspace(1e-3, 1, 8000)]
    assert distributions.ks_distance(_quantiles(a), _quantiles(b)) == pytest.approx(0.4, abs=0.01)
    # Disjoint supports: the whole mass lies between them.
    assert distributions.ks_distance(_quantiles(u), _quantiles(u + 5)) == pytest.approx(1.0)


def test_skew_is_measured_against_the_logged_requests(cfg, schema, tmp_path):
    """Requests logged by the server (PredictionLog files) become serving statistics; healthy
    requests pass, requests from another distribution are flagged by column, with the number
    of examples and the log's location."""
    from tensorflow_serving.apis import classification_pb2

    from serving import request_log

    rows = _rows(cfg)
    features = {f.name: DTYPES[f.type] for f in schema.feature if f.name in cfg.columns
                and f.name not in cfg.label_columns}
    train = _taxi_stats(cfg, tmp_path, "train.csv")

    def log_requests(log_dir, picked, sent=features):
        log = request_log.RequestLog(str(log_dir))
        for start in range(0, len(picked), 64):
            req = classification_pb2.ClassificationRequest()
            req.model_spec.name = "taxi"
            for s in examples_lib.to_examples(picked[start:start + 64], sent):
                req.input.example_list.examples.add().ParseFromString(s)
            log.log("classify_log", req, classification_pb2.ClassificationResponse(),
                    req.model_spec)
        log.close()

    healthy = [rows[i] for i in range(5, len(rows), 20)]  # 750 rows, labels dropped by to_examples
    log_requests(tmp_path / "healthy", healthy)
    stats, n = data_gate.serving_statistics(str(tmp_path / "healthy"), schema, 100_000)
    assert n == len(healthy) and stats.datasets[0].num_examples == n
    assert data_gate.skew_problems(train, stats, n, "h", schema, dict(cfg.validation.skew)) == []

    skewed = [dict(r, company="Zoom Cabs") if i % 2 and r["company"] else r
              for i, r in enumerate(healthy)]
    log_requests(tmp_path / "skewed", skewed)
    stats, n = data_gate.serving_statistics(str(tmp_path / "skewed"), schema, 100_000)
    problems = data_gate.skew_problems(train, stats, n, str(tmp_path / "skewed"), schema,
                                       dict(cfg.validation.skew))
    assert len(problems) == 1 and "column 'company'" in problems[0], problems
    assert f"skew against the {n} examples" in problems[0] and "Zoom Cabs" in problems[0]
    assert str(tmp_path / "skewed") in problems[0] and "(validation.skew: 0.1)" in problems[0]
    assert data_gate.serving_statistics(str(tmp_path / "none"), schema, 100) is None
    # A client that never sends a feature: the model imputes it in every request.
    log_requests(tmp_path / "partial", healthy,
                 {k: v for k, v in features.items() if k != "trip_miles"})
    stats, n = data_gate.serving_statistics(str(tmp_path / "partial"), schema, 100_000)
    problems = data_gate.skew_problems(train, stats, n, "p", schema, dict(cfg.validation.skew))
    assert len(problems) == 1 and "column 'trip_miles'" in problems[0], problems
    assert "the requests never carry a value for it" in problems[0]
    # ... or sends it in only some requests: flagged by the gap in presence.
    half = [dict(r, company="") if i % 2 else r for i, r in enumerate(healthy)]
    log_requests(tmp_path / "half", half)
    stats, n = data_gate.serving_statistics(str(tmp_path / "half"), schema, 100_000)
    problems = data_gate.skew_problems(train, stats, n, "p", schema, dict(cfg.validation.skew))
    assert len(problems) == 1 and "column 'company'" in problems[0], problems
    with_company = sum(1 for r in half if r["company"]) / len(half)
    assert f"{with_company:.1%} of the requests carry a value for it" in problems[0]
