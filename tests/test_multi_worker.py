"""The Trainer under tf.distribute.MultiWorkerMirroredStrategy: two worker processes on
127.0.0.1 (TF_CONFIG), each running TFX's own Trainer executor with the pipeline's run_fn on
the same Transform output (tests/trainer_worker.py), as a training cluster runs it. They train
one model in sync: the chief exports it, the other worker leaves nothing behind, and its heads
score the test split like the single-process Trainer's."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from headwise import examples as examples_lib
from tests import penguins_components

pytestmark = pytest.mark.e2e

ROOT = penguins_components.ROOT
WORKERS = 2


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(root: str, out: str, strategy: str, tf_config: dict | None = None):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.trainer_worker", "--root", root, "--config",
         penguins_components.PENGUINS, "--out", out, "--strategy", strategy],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs) -> list[str]:
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=900)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-5000:]
    return logs


@pytest.fixture(scope="module")
def single(penguins_in_memory, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("single"))
    return out, _finish([_start(penguins_in_memory, out, "none")])


@pytest.fixture(scope="module")
def multi(penguins_in_memory, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("multi"))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(WORKERS)]}
    procs = [_start(penguins_in_memory, out, "multi_worker_mirrored",
                    {"cluster": cluster, "task": {"type": "worker", "index": i}})
             for i in range(WORKERS)]
    return out, _finish(procs)


def _model_dir(out: str) -> str:
    return os.path.join(out, "model", "Format-Serving")


def test_the_workers_train_in_sync_and_the_chief_exports_one_model(multi):
    out, logs = multi
    for log in logs:
        assert f"trained with {WORKERS} replicas in sync (multi_worker_mirrored)" in log, \
            log[-3000:]
    assert os.path.exists(os.path.join(_model_dir(out), "saved_model.pb"))
    assert os.listdir(os.path.join(out, "model")) == ["Format-Serving"]
    # The chief's training summary, one TensorBoard run; the other worker wrote into a scratch
    # folder that is gone.
    assert os.path.exists(os.path.join(out, "model_run", "training_summary.json"))
    assert len(glob.glob(os.path.join(out, "model_run", "train", "events.*"))) == 1
    for log in logs:
        assert "headwise-worker-" not in log


def _test_split(root: str) -> list[bytes]:
    examples = penguins_components.output(root, "CsvExampleGen", "examples")
    files = glob.glob(os.path.join(examples, "Split-test", "*"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _scores(model_dir: str, records: list[bytes]) -> dict[str, float]:
    """Each head's test metric: species and sex accuracy, body mass MAE (rows with a label)."""
    info = examples_lib.read_model_info(model_dir)
    classes = {h["name"]: h.get("classes") for h in info["heads"]}
    serve = tf.saved_model.load(model_dir).signatures["examples"]
    outputs = {k: v.numpy() for k, v in serve(examples=tf.constant(records)).items()}
    labels = {"species": [], "sex": [], "body_mass_g": []}
    for r in records:
        feature = tf.train.Example.FromString(r).features.feature
        for name in labels:
            values = (feature[name].bytes_list.value or feature[name].float_list.value
                      or feature[name].int64_list.value) if name in feature else []
            labels[name].append(values[0] if values else None)
    species = [(classes["species"][int(np.argmax(p))], y.decode())
               for p, y in zip(outputs["species"], labels["species"], strict=True) if y]
    sex = [(float(np.ravel(p)[0]) > 0.5, y == b"female")
           for p, y in zip(outputs["sex"], labels["sex"], strict=True) if y]
    mass = [abs(float(np.ravel(p)[0]) - y)
            for p, y in zip(outputs["body_mass"], labels["body_mass_g"], strict=True)
            if y is not None]
    return {"species_accuracy": float(np.mean([a == b for a, b in species])),
            "sex_accuracy": float(np.mean([a == b for a, b in sex])),
            "body_mass_mae": float(np.mean(mass)),
            "body_mass_mae_of_the_mean": float(np.mean(np.abs(
                np.array([y for y in labels["body_mass_g"] if y is not None])
                - np.mean([y for y in labels["body_mass_g"] if y is not None]))))}


def test_every_head_scores_like_the_single_process_trainers(penguins_in_memory, single, multi):
    """Within the noise of about 50 test rows (two binomial standard errors of an accuracy
    near 0.85 are about 0.1), and far from a feature-blind model."""
    records = _test_split(penguins_in_memory)
    one = _scores(_model_dir(single[0]), records)
    two = _scores(_model_dir(multi[0]), records)
    assert two["species_accuracy"] > 0.8 and abs(two["species_accuracy"]
                                                 - one["species_accuracy"]) <= 0.1, (one, two)
    assert two["sex_accuracy"] > 0.7 and abs(two["sex_accuracy"]
                                             - one["sex_accuracy"]) <= 0.15, (one, two)
    assert two["body_mass_mae"] < 0.6 * two["body_mass_mae_of_the_mean"], (one, two)
    assert 2 / 3 <= two["body_mass_mae"] / one["body_mass_mae"] <= 3 / 2, (one, two)
