"""The stamp of a finished `headwise run`: what it ran on, and its summary. A rerun whose inputs
are all as they were answers from the stamp in a second, without importing TensorFlow or asking
TFX, whose cache would reuse every component anyway (after about 30 s of imports and one
metadata round trip per component).

The inputs (`inputs()`), each of which changes what a run does:
  * the config as it crosses into TFX (`config.fingerprint`: features, heads, gates, trainer,
    Beam args, ...) and the command line's step overrides;
  * the data: each file's path, size and modification time (what `sources.stage` compares before
    copying, and so what keys ExampleGen's cache);
  * the curated schema's bytes;
  * the code: every module of the repository's packages (not only the Trainer's: a component's
    executor, the Pusher, the summary) and the Python and TFX versions;
  * the output folder's state: ML Metadata and the pipeline root present, the versions served
    under the model's base path, and the finished request logs (the skew baseline), as the
    DataValidationGate keys its own cache (`components.data_gate.baselines_key`).
The stamp is written after the run, so "as they were" includes the version that run pushed.
A config with image features (the images are files the CSV names) and an output folder that is
not on this machine never take the short path.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

from headwise import versions

STAMP = "last_run.json"
FORMAT = 1
# The repository's packages whose code a run executes (cli is the entry point; benchmarks never
# run inside a pipeline).
CODE_PACKAGES = ("cli", "headwise", "trainer", "components", "pipeline", "serving", "kubeflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUEST_LOG_PREFIX, REQUEST_LOG_SUFFIX = "requests-", ".tfrecord"  # headwise.request_logs


def path(output_dir: str, pipeline_name: str) -> str:
    return os.path.join(output_dir, "pipelines", pipeline_name, STAMP)


def _code_digest() -> str:
    root, digest = ROOT, hashlib.sha256()
    for package in CODE_PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(f for f in filenames if f.endswith(".py")):
                file = os.path.join(dirpath, name)
                digest.update(os.path.relpath(file, root).encode() + b"\0")
                with open(file, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


def _tfx_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("tfx")
    except metadata.PackageNotFoundError:
        return None


def _request_logs(log_dir: str) -> list[str]:
    if not os.path.isdir(log_dir):
        return []
    return sorted(n for n in os.listdir(log_dir)
                  if n.startswith(REQUEST_LOG_PREFIX) and n.endswith(REQUEST_LOG_SUFFIX))


def inputs(cfg: Any, output_dir: str, *, train_steps: int | None,
           eval_steps: int | None) -> dict[str, Any] | None:
    """What a run of cfg into output_dir depends on (see the module docstring); None where the
    short path is never taken."""
    from headwise import config as config_lib
    from headwise import sources

    if cfg.image_features or "://" in output_dir or "://" in cfg.resolve_data():
        return None
    output_dir = os.path.abspath(output_dir)
    data = []
    for f in sources.of(cfg).files(cfg.resolve_data()):
        st = os.stat(f)
        data.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
    schema = cfg.read_schema()
    serving_dir = os.path.join(output_dir, "serving", cfg.model_name)
    served = [[v, os.stat(os.path.join(serving_dir, str(v), versions.SAVED_MODEL)).st_mtime_ns]
              for v in versions.numeric_versions(serving_dir, fs=versions.LocalFs)]
    return {
        "config": config_lib.fingerprint(cfg),
        "steps": [train_steps, eval_steps],
        "data": data,
        "schema": hashlib.sha256(schema).hexdigest() if schema is not None else None,
        "code": _code_digest(),
        "python": sys.version,
        "tfx": _tfx_version(),
        "metadata": os.path.exists(os.path.join(output_dir, "metadata.db")),
        "pipeline_root": os.path.isdir(os.path.join(output_dir, "pipelines", cfg.name)),
        "served": served,
        "request_logs": _request_logs(os.path.join(output_dir, "request_logs", cfg.model_name)),
    }


def write(output_dir: str, cfg: Any, stamp_inputs: dict[str, Any] | None, *, table: str,
          exit_code: int) -> None:
    """Record a finished run (atomically: a half-written stamp is never read)."""
    if stamp_inputs is None:
        return
    target = path(output_dir, cfg.name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    record = {"format": FORMAT, "inputs": stamp_inputs, "finished": time.time(),
              "table": table, "exit_code": exit_code}
    with open(target + ".tmp", "w") as fh:
        json.dump(record, fh)
    os.replace(target + ".tmp", target)


def matching(output_dir: str, cfg: Any, stamp_inputs: dict[str, Any] | None
             ) -> dict[str, Any] | None:
    """The stamp of the last run when this run's inputs are all as they were; else None."""
    if stamp_inputs is None:
        return None
    try:
        with open(path(output_dir, cfg.name)) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    # Through JSON so that tuples and lists compare alike.
    if record.get("inputs") != json.loads(json.dumps(stamp_inputs)):
        return None
    return record


def clear(output_dir: str, cfg: Any) -> None:
    """Forget the last run (a run is starting: if it fails midway, nothing stale answers)."""
    try:
        os.remove(path(output_dir, cfg.name))
    except FileNotFoundError:
        pass
