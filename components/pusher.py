"""Pusher that TF Serving can never catch half-way.

The stock Pusher copies files straight into `<base>/<unix time>/`, names versions by the second
(two pushes in one second: the second is silently skipped), and pushes the same model again as a
new version when a cached rerun re-blesses it. This executor, for local filesystem destinations:
  * copies into a hidden `.tmp-*` directory (TF Serving only loads numeric directories), then
    renames it to the version number in one atomic step;
  * numbers versions strictly increasing: max(unix time, latest version + 1);
  * does not push a model that is already the latest version (same Trainer artifact);
  * keeps the newest `keep_versions` versions and removes older ones and stale `.tmp-*` leftovers
    of interrupted pushes.
Remote destinations (gs://, s3://) fall back to the stock behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as stock
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils
from tfx.v1.components import Pusher as StockPusher

from components.data_gate import BASELINE_STATISTICS, DRIFT_SPLIT
from headwise.versions import numeric_versions

PUSH_RECORD = os.path.join("assets.extra", "headwise_push.json")
STATISTICS_KEY = "statistics"
TMP_PREFIX = ".tmp-"


@dataclasses.dataclass(frozen=True)
class PushResult:
    path: str
    version: int
    reused: bool  # True: this model was already the latest version; nothing was copied
    removed: tuple[int, ...] = ()


def serving_versions(base_dir: str) -> list[int]:
    """The versions under base_dir that TF Serving would load, oldest first."""
    return numeric_versions(base_dir)


def _source_of(version_dir: str) -> str | None:
    try:
        with open(os.path.join(version_dir, PUSH_RECORD), encoding="utf-8") as fh:
            return json.load(fh).get("source")
    except (OSError, ValueError):
        return None


def push_model(model_path: str, base_dir: str, source: str, keep_versions: int = 5,
               now: float | None = None, extra_files: dict[str, bytes] | None = None
               ) -> PushResult:
    """Publish the SavedModel at model_path as the next version under base_dir, atomically.
    extra_files ({path in the version: content}) are written before the version appears."""
    os.makedirs(base_dir, exist_ok=True)
    for d in os.listdir(base_dir):  # leftovers of pushes that were killed half-way
        if d.startswith(TMP_PREFIX):
            shutil.rmtree(os.path.join(base_dir, d), ignore_errors=True)
    versions = serving_versions(base_dir)
    if versions and _source_of(os.path.join(base_dir, str(versions[-1]))) == source:
        return PushResult(os.path.join(base_dir, str(versions[-1])), versions[-1], reused=True)

    version = max(int(now if now is not None else time.time()),
                  versions[-1] + 1 if versions else 0)
    tmp = os.path.join(base_dir, f"{TMP_PREFIX}{version}-{os.getpid()}")
    final = os.path.join(base_dir, str(version))
    try:
        shutil.copytree(model_path, tmp)
        os.makedirs(os.path.dirname(os.path.join(tmp, PUSH_RECORD)), exist_ok=True)
        with open(os.path.join(tmp, PUSH_RECORD), "w", encoding="utf-8") as fh:
            json.dump({"source": source, "version": version, "pushed_at": time.time()}, fh)
        for rel, content in (extra_files or {}).items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "wb") as fh:
                fh.write(content)
        os.rename(tmp, final)  # atomic: TF Serving sees no version or a complete one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    versions.append(version)
    removed = tuple(versions[:-keep_versions]) if keep_versions > 0 else ()
    for old in removed:
        shutil.rmtree(os.path.join(base_dir, str(old)), ignore_errors=True)
    return PushResult(final, version, reused=False, removed=removed)


def _is_local(path: str) -> bool:
    return "://" not in path


def _extra_files(input_dict) -> dict[str, bytes]:
    """The training data's statistics travel with the version: the next run's
    DataValidationGate measures drift against the data of the model being served."""
    if not input_dict.get(STATISTICS_KEY):
        return {}
    stats = stats_artifact_utils.load_statistics(artifact_utils.get_single_instance(
        input_dict[STATISTICS_KEY]), DRIFT_SPLIT).proto()
    return {BASELINE_STATISTICS: stats.SerializeToString()}


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_dir = destination.filesystem.base_directory
        extra = _extra_files(input_dict)
        if destination.WhichOneof("destination") != "filesystem" or not _is_local(base_dir):
            # gs:// and other remote stores (Kubeflow): the stock Pusher copies the model; the
            # statistics are added to the pushed version after it (TF Serving ignores them).
            super().Do(input_dict, output_dict, exec_properties)
            model_push = artifact_utils.get_single_instance(
                output_dict[standard_component_specs.PUSHED_MODEL_KEY])
            if model_push.get_int_custom_property("pushed") == 1:
                pushed = model_push.get_string_custom_property("pushed_destination")
                for rel, content in extra.items():
                    io_utils.write_bytes_file(os.path.join(pushed, rel), content)
            return

        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        custom = json.loads(exec_properties.get("custom_config") or "null") or {}
        model = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.MODEL_KEY])
        result = push_model(self.GetModelPath(input_dict), base_dir, source=model.uri,
                            keep_versions=int(custom.get("keep_versions", 5)), extra_files=extra)
        if result.reused:
            logging.info("Model %s is already served as version %d; not pushed again.",
                         model.uri, result.version)
        else:
            logging.info("Model pushed to %s (removed old versions: %s).", result.path,
                         list(result.removed))
            io_utils.copy_dir(self.GetModelPath(input_dict), model_push.uri)  # lineage archive
        self._MarkPushed(model_push, pushed_destination=result.path,
                         pushed_version=str(result.version))
        model_push.set_int_custom_property("already_served", int(result.reused))


class HeadwisePusherSpec(standard_component_specs.PusherSpec):
    """The stock Pusher's spec plus the training data's statistics (optional)."""

    INPUTS = {**standard_component_specs.PusherSpec.INPUTS,
              STATISTICS_KEY: component_spec.ChannelParameter(
                  type=standard_artifacts.ExampleStatistics, optional=True)}


class Pusher(StockPusher):
    """The stock Pusher's interface with the atomic, deduplicating executor above; pushed
    versions carry the statistics of the data they were trained on."""

    SPEC_CLASS = HeadwisePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, push_destination, custom_config=None,
                 statistics=None):
        # The stock constructor builds the stock spec; build this one the same way instead.
        base_component.BaseComponent.__init__(self, spec=HeadwisePusherSpec(
            model=model, model_blessing=model_blessing, push_destination=push_destination,
            custom_config=json_utils.dumps(custom_config),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            statistics=statistics))
