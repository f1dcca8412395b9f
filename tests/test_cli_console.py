"""What a new user sees on the console when they run a `headwise` command directly.

Each case starts the real `.venv/bin/headwise` in a fresh process, where TensorFlow is imported
for the first time (inside pytest it is already loaded, so only a subprocess shows the noise).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADWISE = os.path.join(os.path.dirname(sys.executable), "headwise")
# What TensorFlow 2.16 prints on a CPU machine as it loads, and its deprecation notices.
NOISE = ("Unable to register", "cuFFT", "cuDNN", "cuBLAS", "cuda drivers", "TensorRT",
         "is deprecated", "oneDNN")


def run_headwise(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "HEADWISE_VERBOSE")}
    environ.update(env)
    return subprocess.run([HEADWISE, *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def predict_without_server(tmp_path_factory) -> subprocess.CompletedProcess:
    rows = tmp_path_factory.mktemp("rows") / "rows.csv"
    rows.write_text("trip_miles,fare\n1.5,7.25\n")
    # Nothing listens on port 9 (discard); the client gives up after 1 s.
    return run_headwise("predict", "--csv", str(rows), "--port", "9", "--timeout", "1")


def test_a_command_prints_its_own_words_and_none_of_tensorflows(predict_without_server):
    out = predict_without_server.stdout + predict_without_server.stderr
    assert predict_without_server.returncode == 1, out
    assert "headwise: error:" in predict_without_server.stderr
    assert [n for n in NOISE if n in out] == [], out


def test_verbose_shows_what_tensorflow_printed(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("trip_miles,fare\n1.5,7.25\n")
    done = run_headwise("predict", "--csv", str(rows), "--port", "9", "--timeout", "1",
                        HEADWISE_VERBOSE="1")
    assert "Unable to register" in done.stderr, done.stderr


def test_help_answers_without_loading_tensorflow():
    done = run_headwise("run", "--help")
    assert done.returncode == 0 and "--config" in done.stdout
    assert "Unable to register" not in done.stderr
