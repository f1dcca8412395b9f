"""The short path of a rerun (headwise.run_stamp): `headwise run` with nothing changed answers
from the last run's stamp without importing TensorFlow; any change to what a run depends on
(config, gate, data, schema, code, served versions, request logs, ML Metadata, step overrides)
takes the full path. The real pipeline's rerun is in test_interrupted_run.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from headwise import config as config_lib
from headwise import request_logs, run_stamp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
name: tiny
data:
  csv: data.csv
features:
  x: numeric
  color: categorical
heads:
  - name: y
    label: y
    task: binary
    thresholds:
      auc: {min: 0.5}
validation:
  schema: schema.pbtxt
"""


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "data.csv").write_text("x,color,y\n" + "".join(
        f"{i},{'red' if i % 2 else 'blue'},{i % 2}\n" for i in range(40)))
    (tmp_path / "schema.pbtxt").write_text('feature { name: "x" type: FLOAT }\n')
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    return tmp_path


def _stamped(project, **steps):
    """A finished run's stamp, as `headwise run` writes it after the summary."""
    cfg = config_lib.load(str(project / "tiny.yaml"))
    out = str(project / "outputs")
    os.makedirs(os.path.join(out, "pipelines", cfg.name), exist_ok=True)
    open(os.path.join(out, "metadata.db"), "w").close()
    inputs = run_stamp.inputs(cfg, out, train_steps=steps.get("train"),
                              eval_steps=steps.get("eval"))
    run_stamp.write(out, cfg, inputs, table="head  task\ny     binary  (the table)",
                    exit_code=0)
    return cfg, out


def _matches(project, out, train=None, eval=None) -> bool:
    cfg = config_lib.load(str(project / "tiny.yaml"))
    inputs = run_stamp.inputs(cfg, out, train_steps=train, eval_steps=eval)
    return run_stamp.matching(out, cfg, inputs) is not None


def test_nothing_changed_matches(project):
    _, out = _stamped(project)
    assert _matches(project, out)


@pytest.mark.parametrize("change", [
    "gate", "feature", "data_rewritten", "data_touched", "schema", "pushed_version",
    "request_log", "metadata_deleted", "steps", "stamp_deleted", "stamp_corrupt"])
def test_any_change_takes_the_full_path(project, change):
    cfg, out = _stamped(project)
    train = None
    if change == "gate":
        (project / "tiny.yaml").write_text(CONFIG.replace("min: 0.5", "min: 0.6"))
    elif change == "feature":
        (project / "tiny.yaml").write_text(CONFIG.replace("  color: categorical\n", ""))
    elif change == "data_rewritten":
        with open(project / "data.csv", "a") as fh:
            fh.write("41,red,1\n")
    elif change == "data_touched":  # same bytes, a new modification time: ExampleGen reruns
        st = os.stat(project / "data.csv")
        os.utime(project / "data.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif change == "schema":
        (project / "schema.pbtxt").write_text('feature { name: "x" type: INT }\n')
    elif change == "pushed_version":
        version = os.path.join(out, "serving", cfg.model_name, "3")
        os.makedirs(version)
        open(os.path.join(version, "saved_model.pb"), "w").close()
    elif change == "request_log":
        logs = os.path.join(out, "request_logs", cfg.model_name)
        os.makedirs(logs)
        open(os.path.join(logs, f"{request_logs.PREFIX}1{request_logs.SUFFIX}"), "w").close()
    elif change == "metadata_deleted":
        os.remove(os.path.join(out, "metadata.db"))
    elif change == "steps":
        train = 100
    elif change == "stamp_deleted":
        os.remove(run_stamp.path(out, cfg.name))
    elif change == "stamp_corrupt":
        with open(run_stamp.path(out, cfg.name), "w") as fh:
            fh.write('{"format": 1, "inputs": ')
    assert not _matches(project, out, train=train)


def test_a_code_change_takes_the_full_path(project, tmp_path, monkeypatch):
    _, out = _stamped(project)
    copy = tmp_path / "repo"
    for package in run_stamp.CODE_PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(run_stamp, "ROOT", str(copy))
    assert _matches(project, out)  # the same files, elsewhere
    with open(copy / "components" / "pusher.py", "a") as fh:
        fh.write("\n# edited\n")
    assert not _matches(project, out)


def test_images_never_take_the_short_path(project):
    cfg = config_lib.load(str(project / "tiny.yaml"))
    assert run_stamp.inputs(cfg, str(project / "outputs"), train_steps=None,
                            eval_steps=None) is not None
    import dataclasses

    with_images = dataclasses.replace(cfg, features=(*cfg.features, config_lib.Feature(
        "picture", "image")))
    assert with_images.image_features
    assert run_stamp.inputs(with_images, str(project / "outputs"), train_steps=None,
                            eval_steps=None) is None


def test_request_log_names_are_the_servers():
    assert (run_stamp.REQUEST_LOG_PREFIX, run_stamp.REQUEST_LOG_SUFFIX) == (
        request_logs.PREFIX, request_logs.SUFFIX)


def _cli(project, *args) -> subprocess.CompletedProcess:
    """`headwise run` in a fresh process that reports whether it imported TensorFlow."""
    script = textwrap.dedent("""
        import sys
        from cli import main as cli
        code = cli.main(sys.argv[1:])
        print("tensorflow imported:", "tensorflow" in sys.modules)
        sys.exit(code)
    """)
    return subprocess.run(
        [sys.executable, "-c", script, "run", "--config", str(project / "tiny.yaml"),
         "--output-dir", str(project / "outputs"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_cli_answers_an_unchanged_rerun_from_the_stamp_without_tensorflow(project):
    cfg, out = _stamped(project)
    run_stamp.write(out, cfg, run_stamp.inputs(cfg, out, train_steps=None, eval_steps=None),
                    table="the last run's table", exit_code=1)
    done = _cli(project)
    assert done.returncode == 1, done.stdout + done.stderr  # the last run's exit code
    assert "nothing changed since the run" in done.stdout
    assert "the last run's table" in done.stdout
    assert "tensorflow imported: False" in done.stdout


def test_the_cli_checks_the_data_when_the_stamp_does_not_match(project):
    """A changed file is checked again before anything starts: the pre-flight's error, not
    the stamp."""
    _stamped(project)
    with open(project / "data.csv", "a") as fh:
        fh.write("forty-one,red,1\n")
    done = _cli(project)
    assert done.returncode == 2
    assert "'forty-one' is not a number" in done.stderr, done.stderr
    assert "nothing changed" not in done.stdout
