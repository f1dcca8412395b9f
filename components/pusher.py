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
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx.v1.components import Pusher as StockPusher

PUSH_RECORD = os.path.join("assets.extra", "headwise_push.json")
TMP_PREFIX = ".tmp-"


@dataclasses.dataclass(frozen=True)
class PushResult:
    path: str
    version: int
    reused: bool  # True: this model was already the latest version; nothing was copied
    removed: tuple[int, ...] = ()


def serving_versions(base_dir: str) -> list[int]:
    """Numeric version directories under base_dir, oldest first (what TF Serving would load)."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(d) for d in os.listdir(base_dir)
                  if d.isdigit() and os.path.isdir(os.path.join(base_dir, d)))


def _source_of(version_dir: str) -> str | None:
    try:
        with open(os.path.join(version_dir, PUSH_RECORD), encoding="utf-8") as fh:
            return json.load(fh).get("source")
    except (OSError, ValueError):
        return None


def push_model(model_path: str, base_dir: str, source: str, keep_versions: int = 5,
               now: float | None = None) -> PushResult:
    """Publish the SavedModel at model_path as the next version under base_dir, atomically."""
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


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_dir = destination.filesystem.base_directory
        if destination.WhichOneof("destination") != "filesystem" or not _is_local(base_dir):
            return super().Do(input_dict, output_dict, exec_properties)

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
                            keep_versions=int(custom.get("keep_versions", 5)))
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


class Pusher(StockPusher):
    """The stock Pusher's interface with the atomic, deduplicating executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
