"""DataValidationGate: stop the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator records anomalies (and a per-split `blessed` flag) but lets the
pipeline go on. This gate reads them and fails, naming every column and anomaly, so that
Transform, Trainer, Evaluator and Pusher never run on data that breaks the contract and the
model already pushed stays the one served. Transform depends on the gate explicitly.

Drift: TFX 1.16's ExampleValidator sees one statistics set, so the gate also compares this
run's training statistics with those of the data that trained the model being served (the
Pusher stores them in each pushed version as `assets.extra/headwise_statistics.pb`), using the
thresholds of the heads config's `validation.drift` (L-infinity distance for string and
categorical columns, approximate Jensen-Shannon divergence for numeric ones). The first run,
with nothing served yet, has no baseline and no drift check.

(No `from __future__ import annotations` here: TFX reads the component's annotations at runtime.)
"""


import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"
BASELINE_STATISTICS = os.path.join("assets.extra", "headwise_statistics.pb")
DRIFT_SPLIT = "train"
_DRIFT_REASONS = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                  anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}


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
    if not serving_dir or not tf.io.gfile.isdir(serving_dir):
        return None
    versions = sorted((int(d.rstrip("/")) for d in tf.io.gfile.listdir(serving_dir)
                       if d.rstrip("/").isdigit()), reverse=True)
    if not versions:
        return None
    path = os.path.join(serving_dir, str(versions[0]), BASELINE_STATISTICS)
    if not tf.io.gfile.exists(path):
        return None  # pushed before headwise stored statistics: nothing to compare with
    return versions[0], statistics_pb2.DatasetFeatureStatisticsList.FromString(
        io_utils.read_bytes_file(path))


def drift_problems(current: statistics_pb2.DatasetFeatureStatisticsList,
                   baseline: statistics_pb2.DatasetFeatureStatisticsList, version: int,
                   contract: schema_pb2.Schema, thresholds: dict[str, float]) -> list[str]:
    """One line per column whose distribution moved further than its threshold."""
    import tensorflow_data_validation as tfdv

    schema = schema_pb2.Schema()
    schema.CopyFrom(contract)
    for feature in schema.feature:
        if feature.name not in thresholds:
            continue
        categorical = feature.type == schema_pb2.BYTES or (
            feature.HasField("int_domain") and feature.int_domain.is_categorical) or (
            feature.HasField("bool_domain"))
        comparator = feature.drift_comparator
        if categorical:
            comparator.infinity_norm.threshold = thresholds[feature.name]
        else:
            comparator.jensen_shannon_divergence.threshold = thresholds[feature.name]
    found = tfdv.validate_statistics(current, schema, previous_statistics=baseline)
    problems = []
    for column, info in sorted(found.anomaly_info.items()):
        reasons = [r for r in info.reason if r.type in _DRIFT_REASONS]
        for r in reasons:
            problems.append(
                f"{DRIFT_SPLIT}: column '{column}': drift against the data that trained the "
                f"served version {version} -- {r.description} (validation.drift: "
                f"{thresholds[column]})")
    return problems


@tfx.dsl.components.component
def DataValidationGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    drift: tfx.dsl.components.Parameter[str] = "{}",
    serving_dir: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Fails the run if any split of the examples has an anomaly or too many missing values,
    or the training split drifted from the served model's training data (`drift`: JSON
    {column: threshold}; `serving_dir`: where the Pusher pushes versions)."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe(read_anomalies(anomalies.uri, splits))
    contract = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    for split in splits:
        split_stats = stats_artifact_utils.load_statistics(statistics, split).proto()
        problems += missing_value_problems(split, split_stats.datasets[0], contract)
    thresholds = json.loads(drift or "{}")
    baseline = served_baseline(serving_dir) if thresholds else None
    if baseline is not None and DRIFT_SPLIT in splits:
        current = stats_artifact_utils.load_statistics(statistics, DRIFT_SPLIT).proto()
        problems += drift_problems(current, baseline[1], baseline[0], contract, thresholds)
    if problems:
        raise DataValidationError(
            "the examples break the data contract (schema); nothing was trained or pushed:\n  "
            + "\n  ".join(problems))
