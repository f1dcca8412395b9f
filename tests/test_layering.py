"""The repository's layers, read from the source: no import points upward.

Bottom up:
  headwise        config, the task registry, the serving contract, request-log reading, version
                  listing: light modules every other layer may import (not headwise.cli)
  trainer         the model, Transform's preprocessing, the export
  serving         TF Serving's API (gRPC); beside trainer: it imports the bottom layer only
  components      the pipeline's custom components
  pipeline        the TFX pipeline and its local runner
  kubeflow, benchmarks   on top of the pipeline; neither imports the other
  headwise.cli    the command line: the very top

A module may import its own layer and any layer below it. Besides, `pipeline` and everything
below import neither `serving` nor `grpc` (the pipeline's containers need no serving stack),
and `serving` imports nothing of the repository but the bottom layer.

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("headwise", "trainer", "components", "pipeline", "serving", "kubeflow", "benchmarks")

# Layer -> rank, bottom up. Layers of the same rank do not import each other.
RANK = {"headwise": 0, "trainer": 1, "serving": 1, "components": 2, "pipeline": 3,
        "kubeflow": 4, "benchmarks": 4, "headwise.cli": 5}
NO_SERVING = ("headwise", "trainer", "components", "pipeline")  # and so no grpc either
FORBIDDEN_THERE = ("serving", "grpc")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    line: int
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (`from a import b` -> "a.b")

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of the repository (None: not the repository's)."""
    if module == "headwise.cli" or module.startswith("headwise.cli."):
        return "headwise.cli"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _source_files() -> list[str]:
    found = []
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return found


def imports() -> list[Import]:
    """Every import statement of the repository's packages, anywhere in a module."""
    found = []
    for path in _source_files():
        module = _module_name(path)
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        rel = os.path.relpath(path, ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(rel, node.lineno, module, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    parts = module.split(".")[:len(module.split(".")) - node.level
                                                + (1 if is_package else 0)]
                    base = ".".join(parts + ([base] if base else []))
                found += [Import(rel, node.lineno, module,
                                 base if a.name == "*" else f"{base}.{a.name}")
                          for a in node.names]
    return found


def _fail_on(bad: list[Import], what: str) -> None:
    if bad:
        pytest.fail(f"{what}:\n  " + "\n  ".join(str(i) for i in sorted(bad, key=str)),
                    pytrace=False)


def test_the_scan_sees_every_package_and_both_kinds_of_import():
    found = imports()
    modules = {i.module for i in found}
    assert {layer_of(m) for m in modules} == set(RANK)
    # a function-level import (the CLI imports its commands lazily) and a module-level one
    assert any(i.module == "headwise.cli" and i.target.startswith("pipeline.") for i in found)
    assert any(i.module == "serving.server" and i.target.startswith("serving.") for i in found)


def test_no_import_points_upward():
    bad = []
    for i in imports():
        own, other = layer_of(i.module), layer_of(i.target)
        if other is None or other == own:
            continue
        if RANK[other] >= RANK[own]:
            bad.append(i)
    _fail_on(bad, "imports that point upward (or sideways, between layers of one rank)")


def test_the_pipeline_and_below_import_neither_serving_nor_grpc():
    bad = [i for i in imports() if layer_of(i.module) in NO_SERVING
           and i.target.split(".")[0] in FORBIDDEN_THERE]
    _fail_on(bad, "serving or grpc imported by the pipeline or a layer below")


def test_serving_imports_only_the_bottom_layer():
    bad = [i for i in imports() if layer_of(i.module) == "serving"
           and layer_of(i.target) not in (None, "serving", "headwise")]
    _fail_on(bad, "serving imports more of the repository than the bottom layer")


def test_the_bottom_layers_serving_modules_load_no_grpc():
    """What the pipeline reads of serving (the contract, request logs, versions) loads without
    the gRPC runtime, even through the protobuf modules it uses."""
    code = ("import sys; import headwise.contract, headwise.request_logs, headwise.versions; "
            "print('grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
