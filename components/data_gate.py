"""DataValidationGate: stop the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator records anomalies (and a per-split `blessed` flag) but lets the
pipeline go on. This gate reads them and fails, naming every column and anomaly, so that
Transform, Trainer, Evaluator and Pusher never run on data that breaks the contract and the
model already pushed stays the one served. Transform depends on the gate explicitly.

(No `from __future__ import annotations` here: TFX reads the component's annotations at runtime.)
"""


import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"


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


@tfx.dsl.components.component
def DataValidationGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
    """Fails the run if any split of the examples has an anomaly or too many missing values."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe(read_anomalies(anomalies.uri, splits))
    contract = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    for split in splits:
        split_stats = stats_artifact_utils.load_statistics(statistics, split).proto()
        problems += missing_value_problems(split, split_stats.datasets[0], contract)
    if problems:
        raise DataValidationError(
            "the examples break the data contract (schema); nothing was trained or pushed:\n  "
            + "\n  ".join(problems))
