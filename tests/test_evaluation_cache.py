"""TFMA's metrics kept per evaluation (components.evaluation_cache): a change of gates alone is
judged from them exactly as a whole new TFMA pass judges it.

TFMA runs model-agnostic here (the predictions are features of the examples), through the same
`ExtractEvaluateAndWriteResults` TFX's Evaluator runs; the pipeline's own gate-only reruns, with
models and a baseline, are in tests/test_pipeline_e2e.py and tests/test_gates_e2e.py.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx_bsl.public.tfxio import TFExampleRecord

from components import evaluation_cache

ROWS = 300


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """Labels y, a model's scores p (informative), a slice feature s (a: 2 rows in 3, b)."""
    rng = np.random.default_rng(7)
    path = str(tmp_path_factory.mktemp("examples") / "data.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(ROWS):
            y = float(rng.random() < 0.4)
            p = float(np.clip(0.35 * y + 0.65 * rng.random(), 0, 1))
            feature = {"y": tf.train.Feature(float_list=tf.train.FloatList(value=[y])),
                       "p": tf.train.Feature(float_list=tf.train.FloatList(value=[p])),
                       "s": tf.train.Feature(bytes_list=tf.train.BytesList(
                           value=[b"a" if i % 3 else b"b"]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature))
                    .SerializeToString())
    return path


def _bounds(lower=None, upper=None) -> tfma.MetricThreshold:
    bounds = {**({"lower_bound": {"value": lower}} if lower is not None else {}),
              **({"upper_bound": {"value": upper}} if upper is not None else {})}
    return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(**bounds))


def _config(auc_min=None, count_max=None, slice_b_auc_min=None, missing_slice=False
            ) -> tfma.EvalConfig:
    """AUC and the example count, overall and per value of s, with the thresholds given."""
    auc = tfma.MetricConfig(class_name="AUC")
    if auc_min is not None:
        auc.threshold.CopyFrom(_bounds(lower=auc_min))
    if slice_b_auc_min is not None:
        auc.per_slice_thresholds.add(
            slicing_specs=[tfma.SlicingSpec(feature_values={"s": "b"})],
            threshold=_bounds(lower=slice_b_auc_min))
    if missing_slice:  # a slice no example falls in: TFMA fails it as missing
        auc.per_slice_thresholds.add(
            slicing_specs=[tfma.SlicingSpec(feature_values={"s": "zzz"})],
            threshold=_bounds(lower=0.0))
    count = tfma.MetricConfig(class_name="ExampleCount")
    if count_max is not None:
        count.threshold.CopyFrom(_bounds(upper=count_max))
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="y", prediction_key="p")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["s"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[auc, count])])
    # as TFX's Evaluator completes it before TFMA runs (and judge_kept before validating)
    return tfma.utils.update_eval_config_with_defaults(config, has_baseline=False,
                                                       rubber_stamp=True)


def _tfma(data: str, config: tfma.EvalConfig, out: str) -> str:
    with beam.Pipeline() as pipeline:
        _ = (pipeline | TFExampleRecord(data, raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
             .BeamSource()  # Arrow record batches, as TFX's Evaluator reads its examples
             | tfma.ExtractEvaluateAndWriteResults(eval_config=config, output_path=out))
    return out


def _canonical(message) -> object:
    """A proto as plain data with every repeated field's order fixed (Beam combines in any
    order)."""
    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return sorted((walk(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value
    return walk(json_format.MessageToDict(message))


def _metrics(uri: str) -> object:
    return sorted(json.dumps(_canonical(m), sort_keys=True) for m in tfma.load_metrics(uri))


CHANGES = {  # each: the thresholds a rerun judges the kept metrics with
    "a bound that passes": dict(auc_min=0.5, count_max=ROWS),
    "a bound that fails": dict(auc_min=0.999, count_max=ROWS),
    "a count bound that fails": dict(auc_min=0.5, count_max=ROWS - 1),
    "a per-slice bound that fails": dict(auc_min=0.5, slice_b_auc_min=0.999),
    "a slice no example falls in": dict(auc_min=0.5, missing_slice=True),
    "no thresholds": dict(),
}


@pytest.fixture(scope="module")
def kept(data, tmp_path_factory) -> str:
    """TFMA's outputs of a first evaluation (loose gates), kept as an entry."""
    first = _tfma(data, _config(auc_min=0.5), str(tmp_path_factory.mktemp("first")))
    root = str(tmp_path_factory.mktemp("cache"))
    evaluation_cache.store(root, "k", first, {"head": np.arange(3.0)})
    return evaluation_cache.lookup(root, "k")


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_gate_change_is_judged_as_a_new_tfma_pass_judges_it(change, data, kept, tmp_path):
    config = _config(**CHANGES[change])
    again = _tfma(data, config, str(tmp_path / "tfma"))
    restored = str(tmp_path / "restored")
    os.makedirs(restored)
    predictions = evaluation_cache.restore(kept, restored, config)
    expected = tfma.load_validation_result(again)
    got = tfma.load_validation_result(restored)
    assert _canonical(got) == _canonical(expected)
    assert got.validation_ok == (change == "a bound that passes")
    assert _metrics(restored) == _metrics(again)
    # the evaluation's config is the one judged; TFMA's reader loads the evaluation
    assert tfma.load_eval_result(restored).config == config
    np.testing.assert_array_equal(predictions["head"], np.arange(3.0))


def test_the_key_ignores_thresholds_only(tmp_path):
    loose, strict = _config(auc_min=0.5), _config(auc_min=0.99, slice_b_auc_min=0.9)
    assert evaluation_cache.key(loose, "examples/1", "model/2", None) == evaluation_cache.key(
        strict, "examples/1", "model/2", None)
    more = _config(auc_min=0.5)
    more.metrics_specs[0].metrics.add(class_name="MeanLabel")
    other_slices = _config(auc_min=0.5)
    del other_slices.slicing_specs[1:]
    base = evaluation_cache.key(loose, "examples/1", "model/2", None)
    for changed in (evaluation_cache.key(more, "examples/1", "model/2", None),
                    evaluation_cache.key(other_slices, "examples/1", "model/2", None),
                    evaluation_cache.key(loose, "examples/1", "model/3", None),
                    evaluation_cache.key(loose, "examples/1", "model/2", "model/1"),
                    evaluation_cache.key(loose, "examples/4", "model/2", None)):
        assert changed != base


def test_the_entries_stored_last_are_kept(tmp_path, kept, monkeypatch):
    monkeypatch.setattr(evaluation_cache, "KEEP", 2)
    root = str(tmp_path / "cache")
    os.makedirs(os.path.join(root, "broken"))  # a run that failed while storing
    assert evaluation_cache.lookup(root, "broken") is None
    for name in ("first", "second", "third"):
        evaluation_cache.store(root, name, kept, None)
        os.utime(os.path.join(root, name, evaluation_cache.COMPLETE_FILE),
                 ns=(len(os.listdir(root)) * 10**9,) * 2)  # in this order, whatever the clock
    assert sorted(os.listdir(root)) == ["second", "third"]
    assert evaluation_cache.lookup(root, "third") == os.path.join(root, "third")
    assert sorted(os.listdir(os.path.join(root, "third"))) == sorted(
        [evaluation_cache.COMPLETE_FILE, *(n for n in os.listdir(kept)
                                           if n.startswith(evaluation_cache.KEPT))])
