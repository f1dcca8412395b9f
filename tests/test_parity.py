"""The image runs what the tests ran: the environment matches requirements.lock, and the
Dockerfile installs that lock and checks it while the image is built (offline: no Docker)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from headwise import parity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(ROOT, "requirements.lock")


def _dockerfile() -> str:
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as fh:
        return fh.read()


def test_this_environment_is_the_lock():
    """What .ci/run and `make venv` built: every pinned distribution at its pinned version. In
    a fresh interpreter, as the image build runs it (a test process's sys.path can hold other
    packages' metadata, e.g. what TFX builds for Beam)."""
    r = subprocess.run([sys.executable, "-m", "headwise.parity", LOCK], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "pinned distributions match" in r.stdout


def test_a_different_or_missing_version_is_named(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# a comment\napache-beam==2.74.0\n    # via tfx\n"
                    "Tensorflow_Transform==1.16.0\ndill==0.3.1.1 ; sys_platform == 'nonexistent'\n")
    have = {"apache-beam": "2.61.0"}
    assert parity.check(str(lock), have) == [
        f"apache-beam: pinned 2.74.0 in {lock}, installed 2.61.0",
        f"tensorflow-transform: pinned 1.16.0 in {lock}, not installed"]  # marker: skipped
    wrong = tmp_path / "wrong.lock"
    wrong.write_text("apache-beam==0.0.1\n")  # against this very environment
    r = subprocess.run([sys.executable, "-m", "headwise.parity", str(wrong)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "apache-beam: pinned 0.0.1" in r.stderr
    assert "pip install --no-deps -r" in r.stderr


def test_the_image_installs_the_lock_and_checks_it_at_build_time():
    text = _dockerfile()
    steps = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)$", text, re.M).group(1)
    assert parity.pins(LOCK)["apache-beam"] == beam  # Beam's SDK image at the lock's Beam
    assert any(s.startswith("FROM apache/beam_python3.10_sdk:${BEAM_VERSION}") for s in steps)
    with open(LOCK, encoding="utf-8") as fh:  # the lock is resolved for the image's Python
        assert re.search(r"^#\s+uv pip compile --python-version 3\.10 ", fh.read(), re.M)
    install_lock = next(i for i, s in enumerate(steps)
                        if "pip install" in s and "-r requirements.lock" in s)
    assert "--no-deps" in steps[install_lock]  # exactly the lock, no resolution
    install_project = next(i for i, s in enumerate(steps) if "pip install" in s and " -e ." in s)
    check = next(i for i, s in enumerate(steps)
                 if "python -m headwise.parity requirements.lock" in s)
    assert install_lock < install_project <= check
    assert "--no-deps" in steps[install_project]


def test_the_image_carries_the_production_model_server_for_the_infra_check():
    """On Kubeflow the InfraCheck runs in this image and loads the candidate in
    tensorflow_model_server, taken from the very image the cluster serves with."""
    from kubeflow import compile as kfp_compile

    text = _dockerfile()
    image = re.search(r"^ARG SERVING_IMAGE=(\S+)$", text, re.M).group(1)
    assert image == kfp_compile.SERVING_IMAGE
    assert re.search(r"^FROM \$\{SERVING_IMAGE\} AS model_server$", text, re.M)
    assert re.search(r"^COPY --from=model_server /usr/bin/tensorflow_model_server "
                     r"/usr/local/bin/tensorflow_model_server$", text, re.M)
    assert re.search(r"^COPY serving/ serving/$", text, re.M)  # the check's own client
