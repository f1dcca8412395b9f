"""BatchScoring: after a push, every head's answers for a data set (the config's `scoring:`).

The stage is `headwise score` (serving/scoring.py: Beam, every head's columns next to the key
columns, the output written whole or not at all) run on the version the Pusher just published,
as a child process of the repository's own Python (`python -m cli score ...`): the pipeline's
process imports no serving code (tests/test_layering.py). It runs only when the Pusher pushed
(or found the model already served); otherwise it says so and writes nothing.

Its output artifact (TFX's InferenceResult, BulkInferrer's type) holds `scoring.json`: the
output path, rows, seconds, or the error. A failed scoring does not fail the pipeline run (the
model is pushed by then, and the run's summary must say so): `scored` is 0 and the summary shows
the error; `headwise run` exits 1.

(No `from __future__ import annotations` here: TFX reads the component's annotations at runtime.)
"""

import json
import os
import re
import time

import tensorflow as tf
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.child import run_module

RESULT_FILE = "scoring.json"
SCORED = re.compile(r"^scored ([\d,]+) rows in ([\d.]+) s")


def score_args(model_dir: str, data: str, output: str, keys: str) -> list[str]:
    """`headwise score`'s arguments (`python -m cli score ...`)."""
    args = ["score", "--model", model_dir, "--data", data, "--output", output]
    return args + (["--keys", keys] if keys else [])


def run_scoring(model_dir: str, data: str, output: str, keys: str) -> dict:
    """`headwise score` as a child process; what it did: {model, seconds, scored, rows} or
    {model, seconds, scored: False, error} (the command's own error line where it gave one)."""
    start = time.monotonic()
    done = run_module("cli", score_args(model_dir, data, output, keys))
    lines = (done.stdout + done.stderr).strip().splitlines()
    for line in lines:
        logging.info("scoring: %s", line)
    record = {"model": model_dir, "seconds": round(time.monotonic() - start, 1),
              "scored": False}
    found = [m for m in map(SCORED.match, lines) if m]
    if done.returncode == 0 and found:
        record.update(scored=True, rows=int(found[-1].group(1).replace(",", "")))
        return record
    errors = [ln for ln in lines if ln.startswith("headwise: error:")]
    record["error"] = (errors[-1].removeprefix("headwise: error: ") if errors else
                       f"`headwise score` exited with status {done.returncode}: "
                       + " | ".join(lines[-5:]))
    logging.error("scoring FAILED: %s", record["error"])
    return record


@component
def BatchScoring(
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    result: OutputArtifact[standard_artifacts.InferenceResult],
    data: Parameter[str],
    output: Parameter[str],
    keys: Parameter[str] = "",
    data_version: Parameter[str] = "",
) -> None:
    """Score `data` with the pushed version into `output` (`keys`: comma-separated key columns;
    `data_version` only keys TFX's cache: an edited data file is scored again)."""
    del data_version
    record = {"data": data, "output": output, "scored": False}
    if not pushed_model.get_int_custom_property("pushed"):
        record["skipped"] = "nothing was pushed"
        logging.info("scoring: not run, nothing was pushed")
    else:
        record.update(run_scoring(
            pushed_model.get_string_custom_property("pushed_destination"), data, output, keys))
    with tf.io.gfile.GFile(os.path.join(result.uri, RESULT_FILE), "w") as fh:
        fh.write(json.dumps(record, indent=1))
    result.set_int_custom_property("scored", int(record["scored"]))
