"""InfraCheck: before a push, the candidate answers real requests in a model server of its own
(TFX's InfraValidator, done locally).

Blessing by metrics says nothing about whether the served graph answers: a signature with the
wrong method name, an op the server lacks or a graph that fails on a real example passes the
Evaluator (TFMA runs its own signature in its own process) and breaks every client after the
push. This component runs `python -m serving.infra_check` (serving/infra_check.py) as a child
process: it loads the candidate in `tensorflow_model_server` where that is on PATH, the
built-in server otherwise, and sends the test split's first examples to every signature a
client uses over gRPC and REST, under a time limit. Its output is TFX's InfraBlessing
(`blessed` 1 or 0, the INFRA_BLESSED / INFRA_NOT_BLESSED marker file), which TFX's Pusher
requires; `infra_check.json` beside it lists every call, and a failure names the signature and
the server's error. The check serves the candidate with TF Serving's warm-up file
(`tf_serving_warmup_requests`: one record per call a client makes, on the same examples), which
the server replays while loading; a passing check keeps the file beside the blessing, and the
Pusher puts it into the pushed version, so production's first request is not a cold one (TFX's
InfraValidator does the same with `make_warmup`).

Like TFX's InfraValidator, it takes the model and the examples only, not the Evaluator's
blessing: the two verdicts are independent (a run shows both), and a rerun that changes only a
gate reruns the Evaluator and reuses this check from the cache.

The pipeline's process imports no serving code (tests/test_layering.py): the check is a child
process of the repository's own Python. On Kubeflow the same component runs in the pipeline
image, which carries `tensorflow_model_server` (TFX's KFP v2 compiler refuses InfraValidator).

(No `from __future__ import annotations` here: TFX reads the component's annotations at runtime.)
"""

import json
import os
import signal
import subprocess
import tempfile

import tensorflow as tf
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from components.child import run_module
from headwise import contract
from headwise.config.data import TEST

CHECK_MODULE = "serving.infra_check"  # run as a child process: `python -m serving.infra_check`
RESULT_FILE = "infra_check.json"
# TF Serving's warm-up requests that the server replayed at load (serving/warmup.py); the
# Pusher puts this file into the pushed version (contract.WARMUP_FILE)
WARMUP_FILE = os.path.basename(contract.WARMUP_FILE)
BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # TFX's marker files
GRACE_S = 60  # beyond the check's own limit: the child's start (imports) and its cleanup


class CheckStopped(RuntimeError):
    """The check's process was stopped by a signal: InfraCheck fails and records no blessing."""


def _mark(blessing, blessed: bool, result: dict) -> None:
    with tf.io.gfile.GFile(os.path.join(blessing.uri, RESULT_FILE), "w") as fh:
        fh.write(json.dumps(result, indent=1))
    with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED_FILE if blessed
                                        else NOT_BLESSED_FILE), "w") as fh:
        fh.write("")
    blessing.set_int_custom_property("blessed", int(blessed))


def _test_files(examples) -> list[str]:
    uri = artifact_utils.get_split_uri([examples], TEST)
    return sorted(os.path.join(uri, f) for f in tf.io.gfile.listdir(uri))


def run_check(model_path: str, files: list[str], result_path: str, count: int, timeout_s: int,
              warmup_path: str | None = None) -> dict:
    """Run the check process; its result, or a failed result saying why it gave none. A check
    that passed leaves the warm-up file the server replayed at `warmup_path`. CheckStopped when
    a signal stopped the process (no result either way)."""
    args = ["--model", model_path, "--examples", *files, "--count", str(count), "--timeout",
            str(timeout_s), "--output", result_path]
    if warmup_path:
        args += ["--warmup", warmup_path]
    try:
        done = run_module(CHECK_MODULE, args, timeout=timeout_s + GRACE_S)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        output = f"{e.stdout or ''}{e.stderr or ''}"
        done = None
    if done is not None and done.returncode < 0:
        # Ctrl-C reaches the check's process group too; an out-of-memory kill ends it the same
        # way. Neither is a verdict on the model, and a verdict would be kept by TFX's cache.
        raise CheckStopped(f"the infra check's process was stopped by "
                           f"{signal.Signals(-done.returncode).name} before it finished: no "
                           "verdict on the model was recorded; run the pipeline again")
    if done is not None and done.returncode in (0, 1) and os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as fh:
            return json.loads(fh.read())
    why = (f"the check process did not finish within {timeout_s + GRACE_S} s" if done is None
           else f"the check process exited with status {done.returncode}")
    tail = "\n".join(output.strip().splitlines()[-20:])
    return {"model": model_path, "passed": False, "calls": [
        {"api": "run the infra check", "signature": "", "passed": False,
         "error": f"{why}: {tail}", "seconds": 0.0}]}


def failure_lines(result: dict) -> list[str]:
    """One line per failed call (the API, the signature, the error); what the summary shows."""
    return [" ".join(p for p in (c["api"], c["signature"]) if p) + f": {c['error']}"
            for c in result.get("calls", []) if not c["passed"]]


@component
def InfraCheck(
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    examples_per_request: Parameter[int] = 32,
    timeout_seconds: Parameter[int] = 300,
) -> None:
    """Bless the model for serving if every call of the check passed (module doc)."""
    with tempfile.TemporaryDirectory(prefix="headwise-infra-") as work:
        local_warmup = os.path.join(work, WARMUP_FILE)
        result = run_check(path_utils.serving_model_path(model.uri), _test_files(examples),
                           os.path.join(work, RESULT_FILE), examples_per_request,
                           timeout_seconds, local_warmup)
        if result.get("passed") and os.path.exists(local_warmup):
            tf.io.gfile.copy(local_warmup, os.path.join(blessing.uri, WARMUP_FILE),
                             overwrite=True)
    lines = failure_lines(result)
    for line in lines:
        logging.error("infra check FAILED: %s", line)
    if not lines and result.get("passed"):
        logging.info("infra check: passed, %d calls on %s examples (%s, %.1f s)",
                     len(result["calls"]), result.get("examples"), result.get("server"),
                     result.get("seconds", 0.0))
    _mark(blessing, result.get("passed", False) and not lines, result)
