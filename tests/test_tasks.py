"""The task registry is the one place a task is defined: no task name is written as a literal
anywhere else in the library, and the `count` task, added through its registry entry
(headwise/tasks.py) and its head layer (trainer/heads.py), works in every stage that reads a
task (config, pre-flight check, Transform, model, baseline, metrics)."""

from __future__ import annotations

import ast
import math
import os

import numpy as np
import pytest

from headwise import config as config_lib
from headwise import data_check, tasks
from pipeline import imports as imports_lib

# Where task names may be written: the registry and the head layers.
HOMES = ("headwise/tasks.py", "trainer/heads.py")
# Literals that equal a task name but mean something else.
NOT_A_TASK = {("serving/dataplane.py", "regression"): "TF Serving's word for a Regress request"}
# Benchmarks declare configs ({"task": "multiclass"}): data, not task knowledge. They may still
# not branch on a task name.
DECLARES_CONFIGS = ("benchmarks",)
# x fed to the model as it is (a zscore feature's transformed value; no missing indicator)
RAW_NUMERIC = {"type": "numeric", "encoding": "zscore", "missing_indicator": False}


def task_literals(root: str = imports_lib.ROOT) -> list[str]:
    """`file:line: 'name'` for every string constant equal to a task name outside HOMES (in
    DECLARES_CONFIGS packages, only those compared with something)."""
    found = []
    for module, rel in imports_lib.modules(root).items():
        if rel in HOMES:
            continue
        with open(os.path.join(root, rel), encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), rel)
        compared = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                    for c in ast.walk(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and node.value in tasks.TASKS):
                continue
            if (rel, node.value) in NOT_A_TASK:
                continue
            if module.split(".")[0] in DECLARES_CONFIGS and id(node) not in compared:
                continue
            found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_no_task_name_is_written_outside_the_registry_and_the_head_layers():
    found = task_literals()
    assert not found, ("task names outside headwise/tasks.py and trainer/heads.py (move the "
                       "rule into the task's registry entry):\n  " + "\n  ".join(found))


def test_the_literal_check_sees_a_task_name_put_back(tmp_path):
    import shutil

    for package in imports_lib.PACKAGES:
        shutil.copytree(os.path.join(imports_lib.ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    schema = tmp_path / "pipeline" / "schema.py"
    schema.write_text(schema.read_text() + "\n\ndef f(h):\n    return h.task == 'count'\n")
    bench = tmp_path / "benchmarks" / "datasets.py"
    bench.write_text(bench.read_text() + "\n\ndef g(h):\n    return h.task in ('binary',)\n")
    found = task_literals(str(tmp_path))
    assert any(f.startswith("pipeline/schema.py:") and "'count'" in f for f in found), found
    assert any(f.startswith("benchmarks/datasets.py:") and "'binary'" in f for f in found)
    assert len(found) == 2, found  # the benchmark's config declarations are not flagged


def test_every_task_key_is_a_field_of_the_head():
    assert set(tasks.TASK_KEYS) <= {f.name for f in config_lib.Head.__dataclass_fields__.values()}


# --- count ------------------------------------------------------------------------------------

def count_cfg(**head):
    return config_lib.from_dict({
        "name": "c", "data": {"csv": "unused.csv"}, "features": {"x": RAW_NUMERIC},
        "heads": [{"name": "trips", "label": "n", "task": "count", **head}]})


def test_a_count_head_defaults_to_poisson_loss_deviance_and_mae():
    """Deviance is the main metric (the gate against the training mean): what the Poisson
    loss fits; `headwise init`'s count heads rely on it."""
    (head,) = count_cfg().heads
    assert head.loss == "poisson" and head.metrics == ("poisson_deviance", "mae")
    assert head.main_metric == "poisson_deviance"
    assert tasks.of(head).signature == tasks.REGRESS
    for key, value, takers in (("normalize", False, "regression"), ("positive", "1", "binary"),
                               ("delimiter", ";", "multilabel")):
        with pytest.raises(config_lib.ConfigError,
                           match=rf"heads\[0\] \(trips\)\.{key}: only {takers} heads take "
                                 rf"'{key}', this head is count"):
            count_cfg(**{key: value})
    with pytest.raises(config_lib.ConfigError, match="loss for a count head"):
        count_cfg(loss="mse")
    cfg = count_cfg(metrics=["poisson_deviance", "rmse"])
    assert config_lib.from_json(config_lib.to_json(cfg)) == cfg


def test_the_count_baseline_is_the_training_mean():
    head = count_cfg().heads[0]
    train, test = ["0", "2", "4", None], [1, 3, None]
    got = tasks.of(head).baseline(head, train, test)
    mean = 2.0
    y = np.array([1.0, 3.0])
    deviance = np.mean(2 * (y * np.log(y / mean) - (y - mean)))
    assert got["mae"] == pytest.approx(1.0) and got["rmse"] == pytest.approx(1.0)
    assert got["poisson_deviance"] == pytest.approx(deviance)
    # A zero count adds 2 * mu (y log y = 0 at y = 0).
    assert tasks.poisson_deviance(np.array([0.0]), np.array([3.0]))[0] == pytest.approx(6.0)


def test_the_keras_metric_is_the_registrys_formula():
    import tensorflow as tf

    from trainer import heads as heads_lib

    y = np.array([[0.0], [1.0], [5.0], [2.0]], "float32")
    mu = np.array([[0.5], [1.0], [3.0], [4.0]], "float32")
    w = np.array([1.0, 0.0, 1.0, 1.0], "float32")
    metric = heads_lib.PoissonDeviance()
    metric.update_state(tf.constant(y), tf.constant(mu), sample_weight=tf.constant(w))
    expected = np.average(tasks.poisson_deviance(y[:, 0], mu[:, 0]), weights=w)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cell,why", [("-1", "-1"), ("2.5", "2.5"), ("inf", "inf")])
def test_the_preflight_check_refuses_a_count_that_is_not_a_whole_number(tmp_path, cell, why):
    path = tmp_path / "d.csv"
    path.write_text(f"x,n\n1,3\n2,NA\n3,{cell}\n")
    cfg = count_cfg()
    with pytest.raises(data_check.DataError) as e:
        data_check.check_csv(str(path), cfg)
    msg = str(e.value)
    assert f"{path}, line 4, column 'n': '{why}'" in msg, msg
    assert "non-negative whole number" in msg and "head 'trips'" in msg, msg
    path.write_text("x,n\n1,3\n2,NA\n3,0\n")
    assert data_check.check_csv(str(path), cfg) == 3


def test_a_count_head_learns_a_poisson_rate():
    """Counts drawn with rate exp(0.3 + 0.9 x): the model's deviance falls well below the
    training-mean baseline's, and every predicted count is positive."""
    from trainer import model as model_lib

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 1)).astype("float32")
    y = rng.poisson(np.exp(0.3 + 0.9 * x[:, 0])).astype("float32")[:, None]
    cfg = config_lib.from_dict({
        "name": "c", "data": {"csv": "unused.csv"}, "features": {"x": RAW_NUMERIC},
        "heads": [{"name": "trips", "label": "n", "task": "count"}],
        "model": {"hidden_units": [16], "learning_rate": 0.01}})
    model = model_lib.build_model(cfg, {}, {"trips": {"mean": float(y.mean()), "std": 1.0}})
    start = model.predict({"x": x[:4]}, verbose=0)["trips"]
    assert np.allclose(start, y.mean(), rtol=0.5)  # the output starts near the mean count
    model.fit({"x": x}, {"trips": y}, sample_weight={"trips": np.ones(len(x), "float32")},
              epochs=8, batch_size=64, verbose=0)
    pred = model.predict({"x": x}, verbose=0)["trips"]
    assert np.all(pred > 0)
    head = cfg.heads[0]
    ours = tasks.of(head).score(head, y[:, 0], pred)["poisson_deviance"]
    baseline = tasks.of(head).baseline(head, list(y[:, 0]), list(y[:, 0]))["poisson_deviance"]
    assert math.isfinite(ours) and ours < 0.7 * baseline, (ours, baseline)


def test_a_count_heads_loss_is_half_its_deviance_with_kerass_poisson_gradient():
    """Never negative, 0 at a perfect fit (so early stopping can compare it in relative terms),
    and the same gradient as Keras's Poisson loss: training is unchanged."""
    import tensorflow as tf
    import tf_keras as keras

    from trainer import heads as heads_lib

    y = tf.constant([[0.0], [1.0], [4.0], [9.0]])
    mu = tf.Variable([[0.5], [1.0], [2.0], [12.0]])
    loss = heads_lib.HalfPoissonDeviance()
    expected = 0.5 * tasks.poisson_deviance(y.numpy()[:, 0], mu.numpy()[:, 0]).mean()
    assert float(loss(y, mu)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(y, tf.maximum(y, 1e-9))) == pytest.approx(0.0, abs=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        ours, kerass = loss(y, mu), keras.losses.Poisson()(y, mu)
    assert float(kerass) < 0  # why Keras's own loss cannot be compared in relative terms
    np.testing.assert_allclose(tape.gradient(ours, mu), tape.gradient(kerass, mu), rtol=1e-4,
                               atol=1e-6)
