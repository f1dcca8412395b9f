"""Running a repository module as a child process of the pipeline's own Python.

The components that need the serving stack (InfraCheck, BatchScoring) run it this way, so the
pipeline's process imports no serving code (tests/test_layering.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, args: Sequence[str], timeout: float | None = None
               ) -> subprocess.CompletedProcess:
    """`python -m module args...` from the repository root, with the repository importable;
    stdout and stderr captured as text. subprocess.TimeoutExpired past `timeout`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
