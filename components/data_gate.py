"""DataValidationGate: stop the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator records anomalies (and a per-split `blessed` flag) but lets the
pipeline go on. This gate reads them and fails, naming every column and anomaly, so that
Transform, Trainer, Evaluator and Pusher never run on data that breaks the contract and the
model already pushed stays the one served. Transform depends on the gate explicitly.

TFX 1.16's ExampleValidator sees one statistics set, so the gate also compares this run's
training statistics with two others (distances in components/distributions.py):
- drift (`validation.drift`): the data that trained the model being served. The Pusher stores
  its statistics in each pushed version as `assets.extra/headwise_statistics.pb`. The first
  run, with nothing served yet, has no baseline and no drift check.
- skew (`validation.skew`): what the served model is actually asked. `headwise serve
  --request-log-dir` logs requests as TF Serving's PredictionLog records; the gate computes
  the statistics of the newest logged examples (at most `skew_max_examples`) and compares,
  once at least `skew_min_examples` were logged (fewer: no skew check, said in the log).

Both baselines change outside the pipeline's inputs, so the runner passes `baselines_key`
(the served version and the finished log files): TFX reuses a cached verdict only while they
are unchanged.

(No `from __future__ import annotations` here: TFX reads the component's annotations at runtime.)
"""


import hashlib
import json
import os

import tensorflow as tf
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components import distributions
from headwise import contract as contract_lib
from headwise import request_logs
from headwise.versions import served_versions

ANOMALIES_FILE = "SchemaDiff.pb"
BASELINE_STATISTICS = os.path.join("assets.extra", "headwise_statistics.pb")
DRIFT_SPLIT = "train"  # the split compared with the served model's data and with requests


class DataValidationError(RuntimeError):
    """The examples break the data contract (the schema)."""


def read_anomalies(anomalies_uri: str, split_names: list[str]
                   ) -> dict[str, anomalies_pb2.Anomalies]:
    """ExampleValidator's per-split anomalies (`<uri>/Split-<split>/SchemaDiff.pb`)."""
    return {split: anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(
                os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)))
            for split in split_names}


def describe(anomalies: dict[str, anomalies_pb2.Anomalies]) -> list[str]:
    """One line per (split, column, anomaly): what a person needs to find the problem."""
    lines = []
    for split, a in sorted(anomalies.items()):
        for column, info in sorted(a.anomaly_info.items()):
            lines.append(f"{split}: column '{column}': {info.short_description} -- "
                         f"{info.description}")
        if a.HasField("dataset_anomaly_info"):
            info = a.dataset_anomaly_info
            lines.append(f"{split}: dataset: {info.short_description} -- {info.description}")
    return lines


def missing_value_problems(split: str, stats: statistics_pb2.DatasetFeatureStatistics,
                           schema: schema_pb2.Schema) -> list[str]:
    """Columns whose share of examples with a value is below presence.min_fraction.

    CsvExampleGen writes an empty cell as an empty value list, which TFDV counts as present, so
    TFDV's own presence check cannot see missing values; for a single-valued column the share
    of examples with a value is tot_num_values / num_examples.
    """
    by_name = {f.path.step[0]: f for f in stats.features if f.path.step}
    problems = []
    for feature in schema.feature:
        need = feature.presence.min_fraction
        f = by_name.get(feature.name)
        if not need or f is None or feature.value_count.max != 1 or not stats.num_examples:
            continue
        common = f.num_stats.common_stats if f.HasField("num_stats") else (
            f.string_stats.common_stats if f.HasField("string_stats") else
            f.bytes_stats.common_stats)
        have = common.tot_num_values / stats.num_examples
        if have < need:
            problems.append(
                f"{split}: column '{feature.name}': too many missing values -- "
                f"{have:.1%} of examples have a value; the schema requires at least {need:.0%} "
                "(presence.min_fraction)")
    return problems


def served_baseline(serving_dir: str):
    """(version, statistics) of the data that trained the latest pushed version, or None."""
    versions = served_versions(serving_dir)
    if not versions:
        return None
    version = versions[-1]
    path = os.path.join(serving_dir, str(version), BASELINE_STATISTICS)
    if not tf.io.gfile.exists(path):
        return None  # pushed before headwise stored statistics: nothing to compare with
    return version, statistics_pb2.DatasetFeatureStatisticsList.FromString(
        io_utils.read_bytes_file(path))


def drift_problems(current: statistics_pb2.DatasetFeatureStatisticsList,
                   baseline: statistics_pb2.DatasetFeatureStatisticsList, version: int,
                   contract: schema_pb2.Schema, thresholds: dict[str, float]) -> list[str]:
    """One line per column whose distribution moved further than its threshold."""
    return [f"{DRIFT_SPLIT}: column '{s.column}': drift against the data that trained the "
            f"served version {version} -- {s.description} (validation.drift: {s.threshold})"
            for s in distributions.shifts(current, baseline, contract, thresholds, skew=False)]


def serving_statistics(log_dir: str, contract: schema_pb2.Schema, max_examples: int):
    """(statistics, examples) of the newest logged requests' examples, or None if none."""
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    columns = {contract_lib.features_input(f.name): f.name for f in contract.feature}
    examples, _ = request_logs.read_examples(log_dir, max_examples, columns)
    if not examples:
        return None
    try:
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples)
    except Exception as e:  # noqa: BLE001 - say which logs hold what cannot be read
        raise DataValidationError(f"request log {log_dir}: the logged requests' examples "
                                  f"cannot be decoded: {e}") from e
    stats = stats_impl.generate_statistics_in_memory(
        batch, distributions.stats_options(contract))
    return stats, len(examples)


def skew_problems(current: statistics_pb2.DatasetFeatureStatisticsList,
                  serving: statistics_pb2.DatasetFeatureStatisticsList, examples: int,
                  log_dir: str, contract: schema_pb2.Schema, thresholds: dict[str, float]
                  ) -> list[str]:
    """One line per column whose training and serving distributions differ beyond threshold."""
    return [f"{DRIFT_SPLIT}: column '{s.column}': skew against the {examples:,} examples the "
            f"served model was asked (request log {log_dir}) -- {s.description} "
            f"(validation.skew: {s.threshold})"
            for s in distributions.shifts(current, serving, contract, thresholds, skew=True)]


def baselines_key(serving_dir: str, log_dir: str) -> str:
    """What the drift and skew baselines are now: the latest pushed version and the finished
    request log files (a digest of their names). A new value makes TFX run the gate again on
    cached data."""
    versions = served_versions(serving_dir)
    names = "\n".join(os.path.basename(f) for f in request_logs.log_files(log_dir))
    return json.dumps({"served": versions[-1] if versions else None,
                       "request_logs": hashlib.sha256(names.encode()).hexdigest()[:16]})


@component
def DataValidationGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    drift: Parameter[str] = "{}",
    serving_dir: Parameter[str] = "",
    skew: Parameter[str] = "{}",
    request_log_dir: Parameter[str] = "",
    skew_min_examples: Parameter[int] = 500,
    skew_max_examples: Parameter[int] = 100_000,
    baselines_key: Parameter[str] = "",
) -> None:
    """Fails the run if any split of the examples has an anomaly or too many missing values,
    the training split drifted from the served model's training data (`drift`: JSON
    {column: threshold}; `serving_dir`: where the Pusher pushes versions), or it is skewed
    against the logged requests (`skew`: JSON {column: threshold}; `request_log_dir`).
    `baselines_key` is not read: it only keys TFX's cache (see `baselines_key()`)."""
    del baselines_key
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe(read_anomalies(anomalies.uri, splits))
    contract = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    for split in splits:
        split_stats = stats_artifact_utils.load_statistics(statistics, split).proto()
        problems += missing_value_problems(split, split_stats.datasets[0], contract)
    if DRIFT_SPLIT in splits:
        current = stats_artifact_utils.load_statistics(statistics, DRIFT_SPLIT).proto()
        thresholds = json.loads(drift or "{}")
        baseline = served_baseline(serving_dir) if thresholds else None
        if baseline is not None:
            problems += drift_problems(current, baseline[1], baseline[0], contract, thresholds)
        thresholds = json.loads(skew or "{}")
        served = serving_statistics(request_log_dir, contract, skew_max_examples) \
            if thresholds and request_log_dir else None
        if served is not None and served[1] >= skew_min_examples:
            problems += skew_problems(current, served[0], served[1], request_log_dir, contract,
                                      thresholds)
            logging.info("skew: compared with %d logged examples", served[1])
        elif thresholds:
            logging.info("skew: not checked, %d logged examples under %r (at least %d needed)",
                     served[1] if served else 0, request_log_dir, skew_min_examples)
    if problems:
        raise DataValidationError(
            "the examples break the data contract (schema); nothing was trained or pushed:\n  "
            + "\n  ".join(problems))
