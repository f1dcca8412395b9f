"""Pusher that TF Serving can never catch half-way, on local disk and object stores alike.

The stock Pusher copies files straight into `<base>/<unix time>/`, names versions by the second
(two pushes in one second: the second is silently skipped), and pushes the same model again as a
new version when a cached rerun re-blesses it. This executor, for every filesystem destination
(local disk, gs://, s3://, anything tf.io.gfile reaches):
  * copies the model into a hidden `.tmp-*` staging directory (TF Serving only considers numeric
    directories), with the push record and the drift baseline inside it;
  * publishes it as the version: on local disk by one atomic rename; on an object store, which
    has no rename and lists objects as they are written, by copying the staged files into
    `<version>/` with `saved_model.pb` last. TF Serving aspires any child whose name is a
    number, so on an object store the version is visible, and under TF Serving's default
    `latest` policy loadable, while it is copied. Then the push names the version in
    `<base>/models.config` (TF Serving's ModelServerConfig, a `specific` version policy;
    `headwise.versions`), written whole: a TF Serving started with `--model_config_file` on it
    (docs/serving.md; the Kubeflow manifests do) loads a version only once it is complete;
  * numbers versions strictly increasing: max(unix time, latest version + 1);
  * does not push a model that is already the latest version (same Trainer artifact);
  * keeps the newest `keep_versions` versions (an old version loses its `saved_model.pb` first)
    and removes what an interrupted push left: `.tmp-*` directories older than STALE_STAGING_S
    (a live push's staging is never touched) and numeric directories without `saved_model.pb`,
    which no server ever loaded.
Concurrent pushes on local disk (two processes, or two threads) never mix: each stages into a
directory of its own (`.tmp-<unix time>-<random>`), fsyncs every file and directory, and
claims its version by the rename itself, which fails when another push got that number first
(rename(2) never replaces a non-empty directory); it then takes the next number. On an object
store there is no atomic create-if-absent through tf.io.gfile: run one Pusher at a time per
model there (a pipeline does), see docs/serving.md.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import time
import uuid
from typing import Any

from tfx import types
from tfx.components import Pusher as StockPusher
from tfx.components.pusher import executor as stock
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from components import infra_check
from components.data_gate import BASELINE_STATISTICS, DRIFT_SPLIT
from headwise import contract
from headwise.versions import MODEL_CONFIG, SAVED_MODEL, model_config, numeric_versions

PUSH_RECORD = os.path.join("assets.extra", "headwise_push.json")
STATISTICS_KEY = "statistics"
TMP_PREFIX = ".tmp-"
STALE_STAGING_S = 3600  # a staging directory this old belongs to a push that died
_clock = time.time  # the staging names' time (tests move it on)
CLAIM_ATTEMPTS = 1000
SAVED_MODEL_FILES = (SAVED_MODEL, "saved_model.pbtxt")  # what makes a directory loadable


@dataclasses.dataclass(frozen=True)
class PushResult:
    path: str
    version: int
    reused: bool  # True: this model was already the latest version; nothing was copied
    removed: tuple[int, ...] = ()


class Storage:
    """The file operations a push needs, through tf.io.gfile (local disk, gs://, s3://, ...).
    `listdir`, `isdir` and `exists` have gfile's names, so `numeric_versions` reads any
    Storage. Tests substitute an object-store fake (tests/test_pusher.py)."""

    def __init__(self):
        import tensorflow as tf

        self.gfile = tf.io.gfile

    def listdir(self, path: str) -> list[str]:
        return [n.rstrip("/") for n in self.gfile.listdir(path)]

    def isdir(self, path: str) -> bool:
        return self.gfile.isdir(path)

    def exists(self, path: str) -> bool:
        return self.gfile.exists(path)

    def makedirs(self, path: str) -> None:
        self.gfile.makedirs(path)

    def files(self, root: str) -> list[str]:
        """Every file under root, as paths relative to it."""
        if not self.isdir(root):
            raise FileNotFoundError(f"no directory {root}")
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, fs in self.gfile.walk(root) for f in fs)

    def copy(self, src: str, dst: str) -> None:
        self.makedirs(os.path.dirname(dst))
        self.gfile.copy(src, dst, overwrite=True)

    def write(self, path: str, content: bytes) -> None:
        """The file whole or not at all: an object store writes an object whole; on local
        disk a temporary file, fsynced, is renamed over it."""
        self.makedirs(os.path.dirname(path))
        if "://" in path:
            with self.gfile.GFile(path, "wb") as fh:
                fh.write(content)
            return
        # named as a staging directory is: a push killed here leaves it to the stale clean-up
        tmp = os.path.join(os.path.dirname(path), f"{TMP_PREFIX}{int(_clock())}-"
                           f"{uuid.uuid4().hex}-{os.path.basename(path)}")
        with open(tmp, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def read(self, path: str) -> bytes:
        with self.gfile.GFile(path, "rb") as fh:
            return fh.read()

    def remove(self, path: str) -> None:
        """A file or a whole tree; absent is fine."""
        if self.isdir(path):
            self.gfile.rmtree(path)
        elif self.exists(path):
            self.gfile.remove(path)

    def rename_dir(self, src: str, dst: str) -> bool:
        """Rename a directory atomically where the filesystem can (local disk); False where
        it cannot (object stores: gfile would copy object by object). Raises FileExistsError
        when dst is already a version (another push claimed it)."""
        if "://" in src:
            return False
        try:
            os.rename(src, dst)  # never replaces a non-empty directory
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FileExistsError(errno.EEXIST, f"{dst} is already a version") from None
            raise
        _fsync_dir(os.path.dirname(dst))
        return True

    def sync(self, root: str) -> None:
        """Local disk: every file and directory under root on disk before it is published
        (an object store writes each object durably as it is closed)."""
        if "://" in root:
            return
        for d, _, fs in os.walk(root):
            for f in fs:
                fd = os.open(os.path.join(d, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(d)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def serving_versions(base_dir: str, storage: Storage | None = None) -> list[int]:
    """The versions under base_dir that TF Serving would load, oldest first."""
    return numeric_versions(base_dir, storage or Storage())


def _source_of(storage: Storage, version_dir: str) -> str | None:
    try:
        return json.loads(storage.read(os.path.join(version_dir, PUSH_RECORD))).get("source")
    except Exception:  # noqa: BLE001 - absent or unreadable record: not this push's model
        return None


def _staging_age(name: str, now: float) -> float:
    """Seconds since the push that named a staging directory started (`.tmp-<unix time>-...`);
    infinite for a name that says no time."""
    try:
        return now - int(name[len(TMP_PREFIX):].split("-", 1)[0])
    except ValueError:
        return float("inf")


def _leftovers(storage: Storage, base_dir: str) -> list[str]:
    """What interrupted pushes left: stale staging dirs, and numeric dirs no server would load
    (on local disk a version appears whole, by rename, so these only come from an object
    store's interrupted copy)."""
    out, now = [], _clock()
    for name in storage.listdir(base_dir):
        path = os.path.join(base_dir, name)
        if name.startswith(TMP_PREFIX):
            if _staging_age(name, now) > STALE_STAGING_S:
                out.append(path)
        elif name.isdigit() and not any(
                storage.exists(os.path.join(path, f)) for f in SAVED_MODEL_FILES):
            out.append(path)
    return out


def _publish(storage: Storage, staged: str, final: str) -> None:
    """Make the staged directory the version: one rename, or (object stores) a copy of every
    file with the SavedModel's graph file last, then the staging copy removed."""
    if storage.rename_dir(staged, final):
        return
    files = storage.files(staged)
    for rel in sorted(files, key=lambda f: f in SAVED_MODEL_FILES):  # graph last
        storage.copy(os.path.join(staged, rel), os.path.join(final, rel))
    try:
        storage.remove(staged)
    except Exception as e:  # noqa: BLE001 - the version is published; the next push cleans up
        logging.warning("could not remove the staging copy %s (%s); the next push will", staged,
                        e)


def _unpublish(storage: Storage, version_dir: str) -> None:
    """Remove a version so that it stops being loadable first (its graph file), then the rest."""
    for f in SAVED_MODEL_FILES:
        storage.remove(os.path.join(version_dir, f))
    storage.remove(version_dir)


def _name_newest(storage: Storage, base_dir: str) -> None:
    """Name the newest complete version in TF Serving's model config: a server that reads it
    loads a version only once every file is in place (an object store shows a version while it
    is copied). A push that lost a race to a newer one does not leave its own version named:
    each writer looks again after writing, and the last to look names the newest."""
    name = os.path.basename(base_dir.rstrip("/"))
    written = None
    while True:
        newest = serving_versions(base_dir, storage)[-1]
        if newest == written:
            return
        storage.write(os.path.join(base_dir, MODEL_CONFIG),
                      model_config(name, base_dir, [newest]).encode())
        written = newest


def push_model(model_path: str, base_dir: str, source: str, keep_versions: int = 5,
               now: float | None = None, extra_files: dict[str, bytes] | None = None,
               storage: Storage | None = None) -> PushResult:
    """Publish the SavedModel at model_path as the next version under base_dir, never visible
    half-written (module docstring). extra_files ({path in the version: content}) are in place
    before the version becomes loadable."""
    storage = storage or Storage()
    storage.makedirs(base_dir)
    for path in _leftovers(storage, base_dir):
        logging.info("removing %s, left by an interrupted push", path)
        storage.remove(path)
    versions = serving_versions(base_dir, storage)
    if versions and _source_of(storage, os.path.join(base_dir, str(versions[-1]))) == source:
        return PushResult(os.path.join(base_dir, str(versions[-1])), versions[-1], reused=True)

    version = max(int(now if now is not None else time.time()),
                  versions[-1] + 1 if versions else 0)
    staged = os.path.join(base_dir, f"{TMP_PREFIX}{int(_clock())}-{uuid.uuid4().hex}")
    final = os.path.join(base_dir, str(version))
    files = storage.files(model_path)
    if not any(f in SAVED_MODEL_FILES for f in files):
        raise FileNotFoundError(f"no SavedModel ({SAVED_MODEL}) under {model_path}")
    try:
        for rel in files:
            storage.copy(os.path.join(model_path, rel), os.path.join(staged, rel))
        for rel, content in (extra_files or {}).items():
            storage.write(os.path.join(staged, rel), content)
        for _ in range(CLAIM_ATTEMPTS):
            final = os.path.join(base_dir, str(version))
            record = {"source": source, "version": version, "pushed_at": time.time()}
            storage.write(os.path.join(staged, PUSH_RECORD), json.dumps(record).encode())
            storage.sync(staged)
            try:
                _publish(storage, staged, final)
                break
            except FileExistsError:  # another push claimed this number first: the next one
                listed = serving_versions(base_dir, storage)
                version = max(version + 1, listed[-1] + 1 if listed else 0)
        else:
            raise RuntimeError(f"could not claim a version under {base_dir} in "
                               f"{CLAIM_ATTEMPTS} attempts")
    except BaseException:
        storage.remove(staged)
        if final not in (os.path.join(base_dir, str(v))
                         for v in serving_versions(base_dir, storage)):
            storage.remove(final)  # a partial copy, never loadable
        raise
    _name_newest(storage, base_dir)
    versions = sorted({*serving_versions(base_dir, storage), version})
    removed = tuple(v for v in versions[:-keep_versions] if v != version) \
        if keep_versions > 0 else ()
    for old in removed:
        _unpublish(storage, os.path.join(base_dir, str(old)))
    return PushResult(final, version, reused=False, removed=removed)


def _extra_files(input_dict) -> dict[str, bytes]:
    """Files the version gets besides the model: the training data's statistics (the next
    run's DataValidationGate measures drift against the data of the model being served) and
    TF Serving's warm-up requests that the infra check's server replayed (components/
    infra_check.py)."""
    extra = {}
    if input_dict.get(STATISTICS_KEY):
        stats = stats_artifact_utils.load_statistics(artifact_utils.get_single_instance(
            input_dict[STATISTICS_KEY]), DRIFT_SPLIT).proto()
        extra[BASELINE_STATISTICS] = stats.SerializeToString()
    infra = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
    if infra:
        storage = Storage()
        warmup = os.path.join(artifact_utils.get_single_instance(infra).uri,
                              infra_check.WARMUP_FILE)
        if storage.exists(warmup):
            extra[contract.WARMUP_FILE] = storage.read(warmup)
    return extra


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            super().Do(input_dict, output_dict, exec_properties)  # not a model directory
            return
        base_dir = destination.filesystem.base_directory
        extra = _extra_files(input_dict)

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
    versions carry the statistics of the data they were trained on. With `infra_blessing`
    (an InfraBlessing), the model is pushed only if that blesses it too (the stock check)."""

    SPEC_CLASS = HeadwisePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, push_destination, custom_config=None,
                 statistics=None, infra_blessing=None):
        # The stock constructor builds the stock spec; build this one the same way instead.
        base_component.BaseComponent.__init__(self, spec=HeadwisePusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=push_destination,
            custom_config=json_utils.dumps(custom_config),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            statistics=statistics))
