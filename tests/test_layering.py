"""The repository's layers, read from the source: no import points upward, no import cycle.

Bottom up:
  headwise        config, the task registry, the serving contract, request-log reading, version
                  listing: the core every other layer may import
  trainer         the model, Transform's preprocessing, the export
  serving         TF Serving's API (gRPC, REST); beside trainer: it imports the bottom layer only
  components      the pipeline's custom components
  pipeline        the TFX pipeline and its local runner
  kubeflow, benchmarks   on top of the pipeline; neither imports the other
  cli             the `headwise` command line: the very top

A module may import its own layer and any layer below it. Besides, `pipeline` and everything
below import neither `serving` nor `grpc` (the pipeline's containers need no serving stack),
and `serving` imports nothing of the repository but the bottom layer. No exemption.

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`
(pipeline.imports reads them).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline import imports as imports_lib
from pipeline.imports import Import, imports

ROOT = imports_lib.ROOT

# Layer -> rank, bottom up. Layers of the same rank do not import each other.
RANK = {"headwise": 0, "trainer": 1, "serving": 1, "components": 2, "pipeline": 3,
        "kubeflow": 4, "benchmarks": 4, "cli": 5}
NO_SERVING = ("headwise", "trainer", "components", "pipeline")  # and so no grpc either
FORBIDDEN_THERE = ("serving", "grpc")


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of the repository (None: not the repository's)."""
    top = module.split(".")[0]
    return top if top in RANK else None


def _fail_on(bad: list[Import], what: str) -> None:
    if bad:
        pytest.fail(f"{what}:\n  " + "\n  ".join(str(i) for i in sorted(bad, key=str)),
                    pytrace=False)


def test_the_scan_sees_every_package_and_both_kinds_of_import():
    found = imports()
    modules = {i.module for i in found}
    assert {layer_of(m) for m in modules} == set(RANK) == set(imports_lib.PACKAGES)
    # a function-level import (the CLI imports its commands lazily) and a module-level one
    assert any(i.module == "cli.main" and i.target.startswith("pipeline.") for i in found)
    assert any(i.module == "serving.server" and i.target.startswith("serving.") for i in found)
    # `from a import name` loads module a; `from a import module` loads a.module
    by_target = {i.target: i.resolved for i in found}
    assert by_target["headwise.config.Head"] == "headwise.config"
    assert by_target["headwise.config.heads.raw_head"] == "headwise.config.heads"


def test_no_import_cycle():
    """Not even through an import under TYPE_CHECKING or inside a function: each concept can be
    read, tested and replaced from the bottom up."""
    found = imports_lib.cycles(imports())
    assert not found, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_a_type_checking_import(tmp_path):
    import shutil

    for package in imports_lib.PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    tasks = tmp_path / "headwise" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\nif TYPE_CHECKING:\n"
                     "    from headwise.config import Head as ConfigHead  # noqa\n")
    found = imports_lib.cycles(imports(str(tmp_path)))
    assert any({"headwise.tasks", "headwise.config", "headwise.config.heads"} <= set(c)
               for c in found), found


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


def test_a_run_imports_no_tfx_v1_and_so_no_cloud_sdks():
    """`tfx.v1` imports its `extensions` eagerly, and with them the Google Cloud AI Platform,
    BigQuery and Pub/Sub SDKs: a third of importing TFX, paid by every `headwise run`, gate-only
    reruns included. The pipeline and its components import TFX's own modules instead."""
    code = ("import sys; import pipeline.local_runner, pipeline.pipeline, components.evaluator, "
            "trainer.run; print(sorted(m for m in sys.modules if m.startswith('tfx.v1') "
            "or m.startswith('google.cloud.aiplatform'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                          "TF_USE_LEGACY_KERAS": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr[-2000:]


def test_the_cycle_check_sees_a_cycle_through_a_package_init(tmp_path):
    """Importing headwise.config.fields runs headwise/config/__init__.py, which imports the
    config's modules: if one of them imports back into the importer, the import fails at run
    time when the importer is imported first (a partially initialised module), though no two
    modules import each other by name."""
    import shutil

    for package in imports_lib.PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    check = tmp_path / "headwise" / "data_check.py"
    text = check.read_text()
    assert "from headwise.errors import ConfigError" in text
    check.write_text(text.replace("from headwise.errors import ConfigError",
                                  "from headwise.config.fields import ConfigError"))
    found = imports_lib.cycles(imports(str(tmp_path)))
    assert any({"headwise.data_check", "headwise.config", "headwise.sources"} <= set(c)
               for c in found), found


@pytest.mark.parametrize("module", sorted(m for m in imports_lib.modules()
                                          if m.split(".")[0] == "headwise"))
def test_every_core_module_imports_first_in_a_fresh_interpreter(module):
    """What the cycle check reasons about, run: each module of the core imported before any
    other, as a client or a component does."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                         capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
