"""TFMA's metrics kept per evaluation, so that a change of gates alone is judged without
recomputing them.

What TFMA computes (metrics, plots, attributions) depends on the examples, the candidate and
baseline models and the EvalConfig less its thresholds; only the verdict depends on the
thresholds. The Evaluator `store`s TFMA's outputs and the report's predictions under a `key` of
everything but the thresholds. On a rerun where only gates changed, `restore` copies them into
the new evaluation and judges them with TFMA's own validator: `metrics_validator.validate_metrics`
per slice, combined by the writer's `CombineValidations` (missing slices, no thresholds), the
result written where and as TFMA's writer writes it. Thresholds on metrics whose values are not
plain numbers (none of headwise's gates) fail as "Metric not found".
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import sys
import uuid
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer

# TFMA's outputs that do not depend on the thresholds, by file name prefix; the validations
# (and the report, written after TFMA) do.
KEPT = (tfma.constants.METRICS_KEY, tfma.constants.PLOTS_KEY, tfma.constants.ATTRIBUTIONS_KEY,
        eval_config_writer.EVAL_CONFIG_FILE)
PREDICTIONS_FILE = "predictions.npz"
COMPLETE_FILE = "COMPLETE"  # written last: marks a whole entry
KEEP = 8  # entries kept: each holds metrics, plots and the report's predictions (~100s of KB)
VALIDATIONS_FILE = f"{tfma.constants.VALIDATIONS_KEY}.tfrecord"  # as TFMA's writer names it
EVAL_CONFIG_FILE = (f"{eval_config_writer.EVAL_CONFIG_FILE}."
                    f"{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}")

_THRESHOLD_FIELDS = ("thresholds", "per_slice_thresholds", "cross_slice_thresholds")
_METRIC_THRESHOLD_FIELDS = ("threshold", "per_slice_thresholds", "cross_slice_thresholds")


def without_thresholds(eval_config: config_pb2.EvalConfig) -> config_pb2.EvalConfig:
    """The config with every threshold removed: what TFMA's metrics depend on."""
    out = config_pb2.EvalConfig()
    out.CopyFrom(eval_config)
    for spec in out.metrics_specs:
        for field in _THRESHOLD_FIELDS:
            spec.ClearField(field)
        for metric in spec.metrics:
            for field in _METRIC_THRESHOLD_FIELDS:
                metric.ClearField(field)
    return out


def key(eval_config: config_pb2.EvalConfig, *inputs: str | None) -> str:
    """The entry's name: the config without thresholds, the inputs TFMA reads (artifact URIs:
    a TFX artifact's files never change; None for an absent one), TFMA's version, and the code
    of this module and of every metric module the config names."""
    config = json_format.MessageToJson(without_thresholds(eval_config), sort_keys=True)
    h = hashlib.sha256(json.dumps([list(inputs), tfma.__version__, config]).encode())
    modules = {m.module for spec in eval_config.metrics_specs for m in spec.metrics if m.module}
    for name in sorted(modules) + [__name__]:
        path = getattr(sys.modules.get(name) or importlib.import_module(name), "__file__", None)
        if path:
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:16]


def lookup(cache_root: str, entry_key: str) -> str | None:
    """The entry's folder if a whole entry is there."""
    entry = os.path.join(cache_root, entry_key)
    return entry if tf.io.gfile.exists(os.path.join(entry, COMPLETE_FILE)) else None


def store(cache_root: str, entry_key: str, evaluation_uri: str,
          predictions: Mapping[str, np.ndarray] | None) -> None:
    """Keeps TFMA's threshold-independent outputs in evaluation_uri and the report's predictions
    as cache_root/entry_key/, marked complete last. The KEEP entries stored last are kept (a
    rerun may go back to an earlier model: a code change tried and reverted); older ones and
    incomplete ones are removed."""
    entry = os.path.join(cache_root, entry_key)
    if tf.io.gfile.exists(entry):  # an entry left incomplete by a failed run
        tf.io.gfile.rmtree(entry)
    tf.io.gfile.makedirs(entry)
    for name in tf.io.gfile.listdir(evaluation_uri):
        if name.startswith(KEPT) and not tf.io.gfile.isdir(os.path.join(evaluation_uri, name)):
            tf.io.gfile.copy(os.path.join(evaluation_uri, name), os.path.join(entry, name))
    if predictions is not None:
        data = io.BytesIO()
        np.savez(data, **predictions)
        with tf.io.gfile.GFile(os.path.join(entry, PREDICTIONS_FILE), "wb") as fh:
            fh.write(data.getvalue())
    with tf.io.gfile.GFile(os.path.join(entry, COMPLETE_FILE), "w") as fh:
        fh.write(evaluation_uri)
    stored = []  # (when, name) of every whole entry; incomplete ones are removed
    for name in tf.io.gfile.listdir(cache_root):
        name = name.rstrip("/")
        marker = os.path.join(cache_root, name, COMPLETE_FILE)
        if tf.io.gfile.exists(marker):
            stored.append((tf.io.gfile.stat(marker).mtime_nsec, name))
        else:
            tf.io.gfile.rmtree(os.path.join(cache_root, name))
    for _, name in sorted(stored, reverse=True)[KEEP:]:
        tf.io.gfile.rmtree(os.path.join(cache_root, name))


def validate(evaluation_uri: str, eval_config: config_pb2.EvalConfig
             ) -> validation_result_pb2.ValidationResult:
    """TFMA's verdict on the metrics in evaluation_uri under eval_config's thresholds, as its
    evaluator and writer reach it (eval_config as TFX's Evaluator completes it with
    `update_eval_config_with_defaults`; rubber stamping off, as TFX's Evaluator runs TFMA)."""
    combine = writer.CombineValidations(eval_config, rubber_stamp=False)
    accumulator = combine.create_accumulator()
    for sliced in tfma.load_metrics(evaluation_uri):
        if sliced.HasField("cross_slice_key"):
            slice_key = slicer_lib.deserialize_cross_slice_key(sliced.cross_slice_key)
        else:
            slice_key = slicer_lib.deserialize_slice_key(sliced.slice_key)
        metrics = {metric_types.MetricKey.from_proto(kv.key): kv.value.double_value.value
                   for kv in sliced.metric_keys_and_values if kv.value.HasField("double_value")}
        accumulator = combine.add_input(
            accumulator, metrics_validator.validate_metrics((slice_key, metrics), eval_config))
    return combine.extract_output(accumulator)


def restore(entry: str, evaluation_uri: str, eval_config: config_pb2.EvalConfig
            ) -> dict[str, np.ndarray] | None:
    """Writes the entry's TFMA outputs into evaluation_uri with eval_config as the evaluation's
    config and TFMA's verdict under its thresholds (`validate`); returns the stored predictions.
    The validations file is written last, through a temporary name."""
    tf.io.gfile.makedirs(evaluation_uri)
    for name in tf.io.gfile.listdir(entry):
        if name.startswith(KEPT) and name != EVAL_CONFIG_FILE:
            tf.io.gfile.copy(os.path.join(entry, name), os.path.join(evaluation_uri, name),
                             overwrite=True)
    run = config_pb2.EvalRun()
    with tf.io.gfile.GFile(os.path.join(entry, EVAL_CONFIG_FILE)) as fh:
        json_format.Parse(fh.read(), run)
    run.eval_config.CopyFrom(eval_config)
    with tf.io.gfile.GFile(os.path.join(evaluation_uri, EVAL_CONFIG_FILE), "w") as fh:
        fh.write(json_format.MessageToJson(run))
    result = validate(evaluation_uri, eval_config)
    temporary = os.path.join(evaluation_uri, f".{VALIDATIONS_FILE}.{uuid.uuid4().hex}")
    with tf.io.TFRecordWriter(temporary) as w:
        w.write(result.SerializeToString())
    tf.io.gfile.rename(temporary, os.path.join(evaluation_uri, VALIDATIONS_FILE),
                       overwrite=True)
    logging.info("TFMA's metrics from %s, judged under the new thresholds: validation_ok=%s",
                 entry, result.validation_ok)
    path = os.path.join(entry, PREDICTIONS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as fh:
        data = io.BytesIO(fh.read())
    with np.load(data, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}
