"""Runs killed half-way (SIGKILL to `headwise run`'s whole process group, during Transform and
then during Trainer; then Ctrl-C's SIGINT while the Evaluator and InfraCheck run) and run again:
finished components come from ML Metadata's cache, a killed or stopped component runs again
from scratch, nothing partial is consumed, and exactly one complete version is pushed. A killed
run leaves no stamp (headwise.run_stamp); a final rerun with nothing changed answers from the
finished run's stamp, with no new execution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from components import infra_check, pusher
from headwise import config as config_lib
from headwise import run_stamp
from pipeline import summary as summary_lib

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
STEPS = ["--train-steps", "300", "--eval-steps", "20"]
BEFORE = {"Transform": ["CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                        "DataValidationGate"],
          "Trainer": ["CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                      "DataValidationGate", "Transform"]}


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_USE_LEGACY_KERAS": "1",
       "TF_CPP_MIN_LOG_LEVEL": "2"}


def _command(out: str) -> list[str]:
    return [sys.executable, "-m", "cli", "run", "--config", TAXI, "--output-dir", out, *STEPS]


def _headwise_run(out: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)


def _child_started(group: int, module: str) -> bool:
    """Whether a process of the process group `group` runs `python -m module`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
            if module.encode() in args and os.getpgid(int(pid)) == group:
                return True
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
    return False


def _kill_during(component: str, out: str, seconds_in: float,
                 sig: signal.Signals = signal.SIGKILL,
                 child: str | None = None) -> tuple[list[str], int]:
    """Start `headwise run`, send `sig` to its whole process group `seconds_in` after
    `component` started (with `child`: after that module's process started too), and wait for
    it to end (SIGINT: as Ctrl-C in a terminal does); what it printed and its exit status."""
    proc = subprocess.Popen(
        _command(out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 600
    try:
        for line in proc.stdout:
            seen.append(line.rstrip())
            if f"{component} " in line and "running" in line:
                # On a loaded machine the component may take seconds to start its child; a
                # Ctrl-C before that leaves the child to give a whole, real verdict.
                while child and not _child_started(proc.pid, child):
                    assert time.monotonic() < deadline and proc.poll() is None, seen
                    time.sleep(0.1)
                time.sleep(seconds_in)
                break
            assert time.monotonic() < deadline, seen
        else:
            pytest.fail(f"the run ended before {component} started:\n" + "\n".join(seen))
    finally:
        os.killpg(proc.pid, sig)  # the CLI, Beam workers, the infra check's server: everything
        seen += proc.communicate(timeout=120)[0].splitlines()
    return seen, proc.returncode


def test_killed_runs_resume_from_the_cache_and_push_once(tmp_path):
    """Kill during Transform; run again and kill during Trainer; run again to the end."""
    cfg = config_lib.load(TAXI)
    out = str(tmp_path / "outputs")
    metadata = os.path.join(out, "metadata.db")
    base = os.path.join(out, "serving", cfg.model_name)

    # 5 s in: the taxi Transform takes 13-15 s on 2 cores (it took over 20 s before its
    # vocabularies became one pass), and the kill must land while it runs.
    _kill_during("Transform", out, 5.0)
    first = summary_lib.component_runs(metadata, cfg.name)
    assert first["Transform"].state == "RUNNING"  # recorded as started, never completed
    assert not first["Transform"].outputs  # and no output was ever published
    assert "Trainer" not in first

    _kill_during("Trainer", out, 8.0)
    second = summary_lib.component_runs(metadata, cfg.name)
    assert {c: second[c].state for c in BEFORE["Transform"]} == dict.fromkeys(
        BEFORE["Transform"], "CACHED")
    assert second["Transform"].state == "COMPLETE"  # the killed Transform ran again, fully
    assert second["Transform"].execution_id != first["Transform"].execution_id
    assert second["Trainer"].state == "RUNNING" and not second["Trainer"].outputs
    assert pusher.serving_versions(base) == []  # nothing was pushed by either killed run

    # Ctrl-C while the Evaluator and the infra check run side by side: the check's model server
    # is stopped by the same SIGINT, which must not be recorded (and cached) as a verdict.
    said, status = _kill_during("InfraCheck", out, 1.0, signal.SIGINT,
                                child=infra_check.CHECK_MODULE)
    said = "\n".join(said)
    assert "headwise: interrupted. The next `headwise run` reuses every component" in said, said
    assert "Traceback" not in said and status == 130, (status, said)
    stopped = summary_lib.component_runs(metadata, cfg.name)
    assert stopped["Trainer"].state == "COMPLETE"
    assert stopped["InfraCheck"].state != "COMPLETE" and not stopped["InfraCheck"].outputs
    assert pusher.serving_versions(base) == []

    assert not os.path.exists(run_stamp.path(out, cfg.name))  # a killed run leaves no stamp
    done = _headwise_run(out)
    assert done.returncode == 0, done.stdout
    summary = summary_lib.summarize(cfg, metadata)
    states = summary.executions
    assert all(states[c] == "CACHED" for c in BEFORE["Trainer"] + ["Trainer"]), states
    assert states["InfraCheck"] == "COMPLETE", states  # run again, not the stopped one's
    assert summary.blessed and summary.pushed, summary.table()
    assert len(pusher.serving_versions(base)) == 1
    # no staging copy left; TF Serving's model config names the version
    assert not [d for d in os.listdir(base) if not d.isdigit() and d != "models.config"]
    third = summary_lib.component_runs(metadata, cfg.name)
    killed = {first["Transform"].execution_id, second["Trainer"].execution_id,
              stopped["InfraCheck"].execution_id}
    # TFX writes each output under <component>/<key>/<execution id>: everything the final run
    # consumed was written by a completed execution, never by a killed one.
    consumed = [u for c in ("Transform", "Trainer", "Evaluator", "InfraCheck") for uris in
                third[c].outputs.values() for u in uris]
    assert consumed and not [u for u in consumed
                             if int(os.path.basename(u.rstrip("/"))) in killed], consumed
    assert third["Transform"].outputs == second["Transform"].outputs  # reused from the cache
    assert third["Trainer"].outputs == stopped["Trainer"].outputs
    with open(os.path.join(summary.pushed_path, pusher.PUSH_RECORD), encoding="utf-8") as fh:
        assert json.load(fh)["source"] in third["Trainer"].outputs["Model"]

    # Run again with nothing changed: the stamp of the finished run answers, without TensorFlow
    # and without one more execution in ML Metadata.
    again = _headwise_run(out)
    assert again.returncode == 0, again.stdout
    assert "nothing changed since the run" in again.stdout, again.stdout
    assert summary.pushed_path in again.stdout, again.stdout
    assert summary_lib.component_runs(metadata, cfg.name) == third
    assert len(pusher.serving_versions(base)) == 1
