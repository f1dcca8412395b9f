"""The multi-head model on small synthetic data: wiring, losses, masking, balancing."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from headwise import config as config_lib
from trainer import model as model_lib

tf.keras.utils.set_random_seed(7)
N = 512
ROOT = Path(__file__).resolve().parents[1]


RAW_NUMERIC = {"type": "numeric", "encoding": "zscore", "missing_indicator": False}


def make_cfg(heads, features=None, **model):
    return config_lib.from_dict({
        "name": "synthetic", "data": {"csv": "unused.csv"},
        # The model's wiring on a raw input: x is fed as it is, as a zscore feature's
        # transformed value would be (the encodings have their own tests).
        "features": features or {"x": RAW_NUMERIC},
        # One shared MLP, static loss weights, no dropout (the model defaults before 6fdd31a):
        # the tests below read its wiring and losses; the other backbones and balancings
        # are named where they are tested.
        "heads": heads, "model": {"hidden_units": [32, 16], "learning_rate": 0.01,
                                  "backbone": "shared_bottom", "loss_balancing": "static",
                                  "dropout": 0.0, **model},
    })


def unit_stats(cfg):
    return {h.name: {"mean": 0.0, "std": 1.0} for h in cfg.heads if h.task == "regression"}


def fit(model, x, y, w=None, epochs=8):
    w = w or {k: np.ones(len(v), "float32") for k, v in y.items()}
    return model.fit(x, y, sample_weight=w, epochs=epochs, batch_size=32, verbose=0).history


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(N, 1)).astype("float32")


def test_two_regression_heads_both_learn(x):
    cfg = make_cfg([{"name": "lin", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "sq", "label": "b", "task": "regression", "loss": "mse"}])
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    hist = fit(model, {"x": x}, {"lin": 3 * x, "sq": x ** 2})
    for head in ("lin", "sq"):
        losses = hist[f"{head}_loss"]
        assert losses[-1] < 0.25 * losses[0], (head, losses)
    # Each head reads the shared backbone, never another head's output.
    backbone_out = model.get_layer("backbone").output
    for head in ("lin", "sq"):
        assert model.get_layer(head).input is backbone_out


def test_two_three_class_heads_on_one_input(x):
    cfg = make_cfg([
        {"name": "tercile", "label": "a", "task": "multiclass", "classes": ["lo", "mid", "hi"]},
        {"name": "sign", "label": "b", "task": "multiclass", "classes": ["neg", "zero", "pos"]}])
    model = model_lib.build_model(cfg, {}, {})
    assert len(model.inputs) == 1  # one Input feeds both heads
    cuts = np.quantile(x, [1 / 3, 2 / 3])
    y = {"tercile": np.digitize(x, cuts), "sign": np.digitize(x, [-0.1, 0.1])}
    hist = fit(model, {"x": x}, y, epochs=15)
    for head in ("tercile", "sign"):
        assert hist[f"{head}_accuracy"][-1] > 0.75, (head, hist[f"{head}_accuracy"])
    probs = model.predict({"x": x[:5]}, verbose=0)
    for head in ("tercile", "sign"):
        assert probs[head].shape == (5, 3)
        np.testing.assert_allclose(probs[head].sum(axis=1), 1.0, rtol=1e-5)


def _main_aux(aux_weight):
    cfg = make_cfg([
        {"name": "main", "label": "a", "task": "binary"},
        {"name": "aux", "label": "b", "task": "regression", "loss": "mse", "normalize": False,
         "loss_weight": aux_weight, "auxiliary": True}])
    tf.keras.utils.set_random_seed(1)  # the same initial weights for every aux_weight
    return model_lib.build_model(cfg, {}, {})


def _backbone_gradient(model, x, y):
    kernel = model.get_layer("backbone").blocks[0][0].kernel
    with tf.GradientTape() as tape:
        pred = model({"x": x}, training=False)
        total = model.compute_loss(y=y, y_pred=pred)
    return total, pred, tape.gradient(total, kernel).numpy()


def test_total_loss_is_the_weighted_sum_and_aux_weight_moves_the_backbone(x):
    y = {"main": (x > 0).astype("float32"), "aux": 2 * x + 1}
    grads = {}
    for weight in (0.0, 0.2, 1.0):
        model = _main_aux(weight)
        total, pred, grads[weight] = _backbone_gradient(model, x, y)
        bce = tf.keras.losses.BinaryCrossentropy()(y["main"], pred["main"])
        mse = tf.reduce_mean(tf.square(y["aux"] - pred["aux"]))
        np.testing.assert_allclose(total.numpy(), bce + weight * mse, rtol=1e-5)
    assert not np.allclose(grads[0.2], grads[1.0])
    # With weight 0 the auxiliary head contributes no gradient to the backbone:
    main_only = _main_aux(0.0)
    kernel = main_only.get_layer("backbone").blocks[0][0].kernel
    with tf.GradientTape() as tape:
        pred = main_only({"x": x}, training=False)
        bce = tf.keras.losses.BinaryCrossentropy()(y["main"], pred["main"])
    np.testing.assert_allclose(grads[0.0], tape.gradient(bce, kernel).numpy(), rtol=1e-4,
                               atol=1e-7)


def test_missing_labels_are_masked_not_learned(x):
    cfg = make_cfg([{"name": "full", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "half", "label": "b", "task": "regression", "loss": "mae"}])
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    present = np.arange(N) % 2 == 0
    target = 2 * x[:, 0] - 1
    # A missing label's stored value is garbage; only its weight of 0 keeps it out.
    half = np.where(present, target, 1e6).astype("float32")[:, None]
    w = {"full": np.ones(N, "float32"), "half": present.astype("float32")}
    hist = fit(model, {"x": x}, {"full": x, "half": half}, w, epochs=10)
    assert all(np.isfinite(v).all() for v in hist.values())
    pred = model.predict({"x": x}, verbose=0)["half"][:, 0]
    mae_model = np.abs(pred - target)[present].mean()
    mae_constant = np.abs(np.median(target[present]) - target[present]).mean()
    assert mae_model < 0.5 * mae_constant, (mae_model, mae_constant)


def test_an_all_missing_batch_gives_zero_loss_not_nan(x):
    cfg = make_cfg([{"name": "a", "label": "a", "task": "binary"},
                    {"name": "b", "label": "b", "task": "multiclass", "classes": ["p", "q"]}])
    model = model_lib.build_model(cfg, {}, {})
    pred = model({"x": x[:8]})
    zeros = {"a": tf.zeros(8), "b": tf.zeros(8)}
    terms = model.head_loss_terms({"a": tf.zeros((8, 1)), "b": tf.zeros((8, 1))}, pred, zeros)
    assert {k: float(v) for k, v in terms.items()} == {"a": 0.0, "b": 0.0}


def test_uncertainty_weighting_learns_stable_weights(x):
    cfg = make_cfg([{"name": "easy", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "noisy", "label": "b", "task": "regression", "loss": "mse"}],
                   loss_balancing="uncertainty")
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    def effective_weights():  # the multiplier each head's loss gets: w_h * exp(-s_h)
        return {h: float(np.exp(-np.clip(float(model.log_vars[h]), -8, 8)))
                for h in model.head_names}

    initial = effective_weights()
    assert initial == {"easy": 1.0, "noisy": 1.0}
    noise = np.random.default_rng(1).normal(scale=3.0, size=x.shape).astype("float32")
    hist = fit(model, {"x": x}, {"easy": x, "noisy": x + noise}, epochs=25)
    assert all(np.isfinite(v).all() for v in hist.values())
    learned = effective_weights()
    assert abs(learned["easy"] - 1.0) > 0.05 and abs(learned["noisy"] - 1.0) > 0.05
    # The noisy head is trusted less than the easy one.
    assert learned["noisy"] < learned["easy"], learned


def test_single_task_mode_is_the_same_backbone_with_one_head():
    cfg = make_cfg([{"name": "a", "label": "a", "task": "binary"},
                    {"name": "b", "label": "b", "task": "regression", "auxiliary": True,
                     "loss_weight": 0.2}])
    single = cfg.single_task("b")
    assert [h.name for h in single.heads] == ["b"]
    assert not single.heads[0].auxiliary and single.heads[0].loss_weight == 1.0
    assert single.model == cfg.model and single.features == cfg.features
    multi = model_lib.build_model(cfg, {}, unit_stats(cfg))
    one = model_lib.build_model(single, {}, unit_stats(single))
    assert list(one.output_names) == ["b"]
    assert [w.shape for w in multi.get_layer("backbone").weights] == \
        [w.shape for w in one.get_layer("backbone").weights]


def non_finite_message(seed: int) -> str:
    """Trains two regression heads where one row in ten of head `huge`'s labels is 1e30 (its
    mse overflows float32) and head `fine` is ordinary; returns StopOnNonFinite's message.
    The seed moves the rows and the batch order, so the first bad batch differs."""
    from trainer.callbacks import NonFiniteLoss, StopOnNonFinite

    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 1)).astype("float32")
    huge = np.where(rng.random(N) < 0.1, 1e30, x[:, 0]).astype("float32")[:, None]
    cfg = make_cfg([{"name": "fine", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "huge", "label": "b", "task": "regression", "loss": "mse",
                     "normalize": False}])
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    w = {k: np.ones(N, "float32") for k in ("fine", "huge")}
    try:
        model.fit({"x": x}, {"fine": x, "huge": huge}, sample_weight=w, epochs=5,
                  batch_size=32, verbose=0, callbacks=[StopOnNonFinite(cfg)])
    except NonFiniteLoss as e:
        return str(e)
    raise AssertionError("training did not stop")


def assert_names_huge(msg: str) -> None:
    assert "training stopped at epoch 1" in msg, msg
    assert "head 'huge' (label column 'b') went non-finite first" in msg, msg
    assert "head 'fine'" not in msg and "fine_loss" not in msg, msg
    assert "huge_loss = inf" in msg and "(finite then: fine)" in msg, msg
    assert "normalize: false" in msg, msg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_non_finite_head_loss_stops_training_naming_the_head(seed):
    """A label far outside float32's squares on a head without normalisation: training stops
    after the first epoch, before anything is exported, naming that head and not the one whose
    loss went NaN only after the bad gradients reached the shared backbone."""
    assert_names_huge(non_finite_message(seed))


def test_the_non_finite_head_is_named_on_one_thread():
    """The same on one inter-op and one intra-op thread, in a fresh process (TensorFlow reads
    the thread counts once, at start-up; the test above ran with the machine's defaults)."""
    code = ("from tests.test_trainer import non_finite_message\n"
            "for seed in (3, 4):\n    print(repr(non_finite_message(seed)))")
    env = {**os.environ, "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    messages = [ast.literal_eval(line) for line in out.stdout.splitlines()
                if line.startswith(("'", '"'))]
    assert len(messages) == 2, out.stdout
    for msg in messages:
        assert_names_huge(msg)


@pytest.mark.parametrize("model_cfg", [
    {"backbone": "mmoe", "experts": 3},
    {"backbone": "ple", "experts": 2, "task_experts": 1, "extraction_layers": 2},
])
def test_expert_backbones_give_each_head_its_own_mixture_and_both_heads_learn(x, model_cfg):
    """MMoE / PLE: each head reads its own gated mixture of experts (not one shared tensor),
    the gates are softmaxes over the experts, and two unrelated targets both get learned."""
    cfg = make_cfg([{"name": "lin", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "sq", "label": "b", "task": "regression", "loss": "mse"}],
                   hidden_units=[16], **model_cfg)
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    shared = model.backbone(model.backbone.inputs())
    assert isinstance(shared, dict) and set(shared) == {"lin", "sq"}
    gates = [layer for layer in model.backbone._flatten_layers() if "gate" in layer.name]
    want = 2 if model_cfg["backbone"] == "mmoe" else 2 * 2 + 1  # per head (x layers) + shared
    assert len(gates) == want, [g.name for g in gates]
    first = next(g for g in gates if g.name in ("gate_lin", "l0_gate_lin"))
    weights = first.dense(tf.constant(x[:5])).numpy()  # its input: the encoded features
    assert weights.shape == (5, model_cfg["experts"] + model_cfg.get("task_experts", 0))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    hist = fit(model, {"x": x}, {"lin": 3 * x, "sq": x ** 2}, epochs=12)
    for head in ("lin", "sq"):
        losses = hist[f"{head}_loss"]
        assert losses[-1] < 0.3 * losses[0], (head, losses)


def test_present_normalisation_is_the_mean_over_present_labels(x):
    """With `loss_normalization: present` a head's loss is the mean over the labels present in
    the batch (batch: divided by the whole batch, so 50% missing halves it); none present: 0."""
    heads = [{"name": "half", "label": "b", "task": "regression", "loss": "mse"}]
    y = {"half": tf.constant(np.arange(8, dtype="float32")[:, None])}
    pred = {"half": tf.zeros((8, 1))}
    w = {"half": tf.constant([1, 0, 1, 0, 1, 0, 1, 0], tf.float32)}
    want = np.mean(np.arange(0, 8, 2, dtype="float32") ** 2)  # present rows 0, 2, 4, 6
    terms = {}
    for norm in ("batch", "present"):
        cfg = make_cfg(heads, loss_normalization=norm)
        model = model_lib.build_model(cfg, {}, unit_stats(cfg))
        terms[norm] = float(model.head_loss_terms(y, pred, w)["half"])
        none = model.head_loss_terms(y, pred, {"half": tf.zeros(8)})["half"]
        assert float(none) == 0.0  # never NaN
    assert terms["present"] == pytest.approx(want, rel=1e-6)
    assert terms["batch"] == pytest.approx(want / 2, rel=1e-6)


def test_dwa_gives_weight_to_the_head_whose_loss_falls_slowest():
    """DWA (Liu et al. 2019): lambda_h = K softmax(r_h / T), r_h = L_h(t-1) / L_h(t-2)."""
    from trainer.balancing import dwa_weights

    same = dwa_weights([0.5, 0.5], [1.0, 1.0])
    assert same == pytest.approx([1.0, 1.0])
    lam = dwa_weights([1.0, 0.5, 0.9], [1.0, 1.0, 1.0])  # ratios 1.0, 0.5, 0.9
    assert sum(lam) == pytest.approx(3.0)
    assert lam[0] > lam[2] > lam[1]
    e = np.exp(np.array([1.0, 0.5, 0.9]) / 2.0)
    np.testing.assert_allclose(lam, 3 * e / e.sum(), rtol=1e-6)


def test_dwa_training_moves_weight_to_the_plateaued_head(x):
    """Trained with its callback: 'easy' (a learnable target) keeps falling, 'noise' (pure
    noise, nothing to learn) plateaus at once, so DWA weights the noise head up from epoch 3,
    and the total loss is sum_h w_h lambda_h L_h."""
    cfg = make_cfg([{"name": "easy", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "noise", "label": "b", "task": "regression", "loss": "mse"}],
                   loss_balancing="dwa")
    tf.keras.utils.set_random_seed(3)
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    assert model.adaptive_weights.numpy().tolist() == [1.0, 1.0]
    noise = np.random.default_rng(2).normal(size=x.shape).astype("float32")
    y = {"easy": 3 * x, "noise": noise}
    w = {k: np.ones(N, "float32") for k in y}
    model.fit({"x": x}, y, sample_weight=w, epochs=4, batch_size=32, verbose=0,
              callbacks=model.balancing_callbacks())
    lam = dict(zip(model.head_names, model.adaptive_weights.numpy(), strict=True))
    assert lam["noise"] > lam["easy"] + 0.02, lam
    assert sum(lam.values()) == pytest.approx(2.0, rel=1e-5)
    pred = model({"x": x[:64]})
    terms = model.head_loss_terms({k: v[:64] for k, v in y.items()}, pred)
    want = sum(lam[h] * float(terms[h]) for h in model.head_names)
    assert float(model.objective(terms)) == pytest.approx(want, rel=1e-5)


def test_gradnorm_update_equalises_the_gradient_norms():
    """GradNorm (Chen et al. 2018) with equal training rates drives lambda_h g_h to one common
    value (within 10%: Adam steps on a sign-valued gradient
    circle the balance point), from gradient norms 100x apart; the lambdas keep summing to K."""
    from trainer.balancing import GradNorm

    lam = tf.Variable(tf.ones([2]))
    gn = GradNorm(lam, learning_rate=0.003)  # the default model.learning_rate
    norms, losses = tf.constant([10.0, 0.1]), tf.constant([2.0, 0.5])
    for _ in range(2000):
        gn.update(norms, losses)  # losses never change: equal rates L/L0 = 1
    weighted = (lam * norms).numpy()
    assert weighted[0] == pytest.approx(weighted[1], rel=0.1), (lam.numpy(), weighted)
    assert float(tf.reduce_sum(lam)) == pytest.approx(2.0, rel=1e-5)


def test_gradnorm_favours_the_head_that_trains_slower():
    """Equal gradient norms, but head 0's loss is still at its start and head 1's fell to a
    quarter: head 0's target is (1 / 0.625)^1.5 vs (0.25 / 0.625)^1.5, so it gains weight."""
    from trainer.balancing import GradNorm

    lam = tf.Variable(tf.ones([2]))
    gn = GradNorm(lam, learning_rate=0.01)
    gn.update(tf.constant([1.0, 1.0]), tf.constant([4.0, 4.0]))  # initial losses
    for _ in range(500):
        gn.update(tf.constant([1.0, 1.0]), tf.constant([4.0, 1.0]))
    a, b = lam.numpy()
    assert a > 1.5 and b < 0.5, (a, b)


def _weighted_norms(model, x, y):
    """lambda_h * ||dL_h / dW|| on the backbone's last shared weights, for each head."""
    with tf.GradientTape(persistent=True) as tape:
        terms = model.head_loss_terms(y, model({"x": x}, training=True))
    shared = model.backbone.shared_variables()
    norms = np.array([float(tf.linalg.global_norm(tape.gradient(terms[h], shared)))
                      for h in model.head_names])
    lam = 1.0 if model.adaptive_weights is None else model.adaptive_weights.numpy()
    return lam * norms


def test_gradnorm_training_brings_the_heads_gradient_norms_together(x):
    """Two heads on one backbone, labels on scales 100x apart (no normalisation): with static
    weights the large head's gradient dominates the shared layer; GradNorm, trained for the
    same epochs, brings the two weighted gradient norms within a few times of each other."""
    heads = [{"name": "big", "label": "a", "task": "regression", "loss": "mse",
              "normalize": False},
             {"name": "small", "label": "b", "task": "regression", "loss": "mse",
              "normalize": False}]
    y = {"big": 30 * x, "small": 0.3 * x ** 2}
    ratios = {}
    for method in ("static", "gradnorm"):
        cfg = make_cfg(heads, loss_balancing=method)
        tf.keras.utils.set_random_seed(1)
        model = model_lib.build_model(cfg, {}, {})
        hist = fit(model, {"x": x}, y, epochs=6)
        assert all(np.isfinite(v).all() for v in hist.values())
        g = _weighted_norms(model, x, y)
        ratios[method] = g.max() / g.min()
    assert ratios["static"] > 20, ratios
    assert ratios["gradnorm"] < 5 and ratios["gradnorm"] < ratios["static"] / 10, ratios


# Validation losses per epoch of a real taxi run (the shipped config, seed 1, 14 epochs; tips is
# auxiliary, weight 0.2): big_tipper and payment_type are near chance and drift up after epoch
# 8, while fare and trip_seconds are still learning.
TAXI_CURVES = {
    "big_tipper": [0.5328, 0.5277, 0.5254, 0.5264, 0.5257, 0.5257, 0.5268, 0.5262, 0.5320,
                   0.5298, 0.5300, 0.5330, 0.5339, 0.5401],
    "fare": [0.1783, 0.1139, 0.0995, 0.0794, 0.0799, 0.0788, 0.0685, 0.0660, 0.0647, 0.0646,
             0.0619, 0.0632, 0.0622, 0.0626],
    "payment_type": [0.6847, 0.6654, 0.6623, 0.6633, 0.6662, 0.6615, 0.6629, 0.6614, 0.6773,
                     0.6695, 0.6693, 0.6735, 0.6775, 0.6843],
    "tips": [0.9479, 0.8884, 0.8826, 0.8863, 0.8713, 0.8668, 0.8726, 0.8746, 0.8917, 0.8746,
             0.8749, 0.8842, 0.8866, 0.8911],
    "trip_seconds": [0.2054, 0.1876, 0.1758, 0.1611, 0.1563, 0.1560, 0.1425, 0.1420, 0.1420,
                     0.1416, 0.1396, 0.1414, 0.1365, 0.1357],
}
TAXI_WEIGHTS = {"big_tipper": 1.0, "fare": 1.0, "payment_type": 1.0, "tips": 0.2,
                "trip_seconds": 1.0}


def run_early_stopping(criterion: str, patience: int = 3) -> int:
    """The epoch (1-based) whose weights EarlyStopping keeps, fed TAXI_CURVES's logs."""
    from trainer import callbacks as callbacks_lib

    model = tf.keras.Sequential()  # EarlyStopping reads and sets the model's weights only
    stopping = callbacks_lib.StoppingCriterion(TAXI_WEIGHTS, criterion)
    early = tf.keras.callbacks.EarlyStopping(monitor=stopping.KEY, patience=patience)
    for cb in (stopping, early):
        cb.set_model(model)
        cb.on_train_begin()
    epochs = len(TAXI_CURVES["fare"])
    for epoch in range(epochs):
        logs = {f"val_{h}_loss": v[epoch] for h, v in TAXI_CURVES.items()}
        logs["val_weighted_loss"] = sum(TAXI_WEIGHTS[h] * v for h, v in
                                        ((h, logs[f"val_{h}_loss"]) for h in TAXI_WEIGHTS))
        for cb in (stopping, early):
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    return early.best_epoch + 1


def test_early_stopping_on_the_geometric_mean_lets_a_small_loss_head_keep_learning():
    import math

    from trainer import callbacks as callbacks_lib

    logs = {"val_a_loss": 0.5, "val_b_loss": 0.02, "val_weighted_loss": 0.52}
    geo = callbacks_lib.StoppingCriterion({"a": 1.0, "b": 3.0}, "geomean").value(logs)
    assert geo == pytest.approx(math.exp((math.log(0.5) + 3 * math.log(0.02)) / 4))
    assert callbacks_lib.StoppingCriterion({"a": 1.0}, "weighted").value(logs) == 0.52
    # The taxi run: the weighted sum keeps epoch 8 (fare's loss 0.0660) and stops at 11; the
    # geometric mean trains on and keeps epoch 11 (fare 0.0619, trip_seconds 0.1396).
    assert run_early_stopping("weighted") == 8
    assert run_early_stopping("geomean") == 11
    # Relative to the first epoch's losses, fare's -65% and trip_seconds' -32% count as such:
    # epoch 11 as well.
    assert run_early_stopping("relative") == 11


def run_restarts(curve: list[float], cycle_epochs: int, cycles: int, patience: int = 2
                 ) -> tuple[int, int, float]:
    """(epochs run, best epoch, the epoch whose weights the model ends with; 1-based) of
    RestartingEarlyStopping fed `curve` as the validation criterion, each epoch's weights
    marked with its number."""
    from trainer import callbacks as callbacks_lib

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(1,))])
    stopping = callbacks_lib.RestartingEarlyStopping(
        cycle_epochs, cycles, monitor="val_loss", patience=patience, restore_best_weights=True)
    stopping.set_model(model)
    stopping.on_train_begin()
    run = 0
    for epoch in range(min(len(curve), cycle_epochs * cycles)):  # fit(epochs=...)'s end
        model.set_weights([np.full((1, 1), epoch + 1.0), np.zeros(1)])
        stopping.on_epoch_end(epoch, {"val_loss": curve[epoch]})
        run = epoch + 1
        if model.stop_training:
            break
    stopping.on_train_end()
    return run, stopping.best_epoch + 1, float(model.get_weights()[0][0, 0])


def test_a_run_still_improving_at_its_budgets_end_trains_another_cycle():
    # Overfitting in the first cycle: Keras' EarlyStopping exactly (stop at 5, keep 3).
    assert run_restarts([5, 4, 3, 3.5, 3.6, 2, 1, 0.5], 6, 3) == (5, 3, 3.0)
    # Still improving at the first cycle's end (epoch 6): a second cycle, whose first epochs
    # (back at the peak learning rate) are worse without stopping it; it improves and ends
    # improving (epoch 12), so a third runs; no better there: the run ends with epoch 12.
    rising = [5, 4, 3, 2.5, 2.2, 2.0, 3, 4, 3, 2.1, 1.9, 1.8, 2.5, 2.4, 2.3, 2.2, 2.1, 2.0]
    assert run_restarts(rising, 6, 3) == (18, 12, 12.0)
    # Improving in the second cycle, but not at its end: no third cycle.
    assert run_restarts(rising[:8] + [1.7, 1.9, 2.0, 2.1] + rising[12:], 6, 3) == (12, 9, 9.0)
    # One cycle (trainer.cycles: 1): the budget's end is the end.
    assert run_restarts(rising, 6, 1) == (6, 6, 6.0)
    # The third cycle keeps improving: the run ends at the last cycle's end all the same.
    assert run_restarts(rising[:12] + [1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1], 6, 3) == (18, 18, 18.0)


def test_relative_stopping_is_each_heads_loss_over_its_first_epochs():
    from trainer import callbacks as callbacks_lib

    c = callbacks_lib.StoppingCriterion({"a": 1.0, "b": 3.0}, "relative")
    assert c.value({"val_a_loss": 0.5, "val_b_loss": 0.02}) == pytest.approx(1.0)
    assert c.value({"val_a_loss": 0.25, "val_b_loss": 0.01}) == pytest.approx(0.5)
    # Weighted: b's 3 counts three times a's 1.
    assert c.value({"val_a_loss": 0.5, "val_b_loss": 0.01}) == pytest.approx((1 + 3 * 0.5) / 4)
    # The reference stays the first epoch's, through a later fit() (fine-tuning stages).
    c.on_train_begin()
    assert c.value({"val_a_loss": 0.5, "val_b_loss": 0.02}) == pytest.approx(1.0)
    assert c.value({"val_a_loss": 0.5}) is None  # a head's loss missing: nothing to compare


def test_a_loss_going_to_zero_keeps_geomean_training_but_not_relative():
    """Penguins' shape: species' loss falls toward 0 (it separates the classes) while the other
    heads' losses turn up after epoch 4. The geometric mean keeps "improving" with every halving
    of species' loss; relative and weighted keep an epoch near the others' best."""
    from trainer import callbacks as callbacks_lib

    curves = {"species": [0.4 * 0.5 ** e for e in range(16)],
              "sex": [0.60, 0.45, 0.38, 0.35, 0.34] + [0.34 + 0.02 * k for k in range(1, 12)],
              "mass": [0.50, 0.35, 0.28, 0.25, 0.24] + [0.24 + 0.02 * k for k in range(1, 12)]}
    weights = dict.fromkeys(curves, 1.0)

    def keeps(criterion, patience=4):
        stopping = callbacks_lib.StoppingCriterion(weights, criterion)
        best, best_epoch, wait = None, None, 0
        for epoch in range(16):
            logs = {f"val_{h}_loss": v[epoch] for h, v in curves.items()}
            logs["val_weighted_loss"] = sum(v[epoch] for v in curves.values())
            stopping.on_epoch_end(epoch, logs)
            value = logs[stopping.KEY]
            if best is None or value < best:
                best, best_epoch, wait = value, epoch + 1, 0
            elif (wait := wait + 1) >= patience:
                break
        return best_epoch

    assert keeps("weighted") in (5, 6)
    assert keeps("relative") in (5, 6)
    assert keeps("geomean") >= 12


def test_with_one_head_both_criteria_keep_the_same_epoch():
    from trainer import callbacks as callbacks_lib

    curve = TAXI_CURVES["big_tipper"]
    for criterion in ("geomean", "weighted", "relative"):
        c = callbacks_lib.StoppingCriterion({"big_tipper": 2.0}, criterion)
        values = [c.value({"val_big_tipper_loss": v, "val_weighted_loss": 2.0 * v})
                  for v in curve]
        assert int(np.argmin(values)) == int(np.argmin(curve))


def test_autograph_leaves_tf_keras_alone_and_still_converts_our_layers():
    """Importing the model adds TensorFlow's later rule not to convert tf_keras (trainer/
    autograph.py): Keras's own layers and training step run unconverted, as Keras 2 always
    did, while our layers' Python control flow is still converted. Without the rule, building
    and tracing the census model took 20 s more."""
    import tf_keras as keras
    from tensorflow.python.autograph.impl import conversion

    from trainer import autograph, backbones

    assert conversion.is_allowlisted(keras.layers.Dense(1).call)
    assert conversion.is_allowlisted(keras.Model.train_step)
    assert not conversion.is_allowlisted(backbones.run_blocks)  # our own code: converted
    before = len(autograph.config.CONVERSION_RULES)
    autograph.keep_unconverted()  # once only
    assert len(autograph.config.CONVERSION_RULES) == before


def test_the_epoch_line_gives_the_epochs_seconds_loss_and_each_heads_metrics(monkeypatch, capsys):
    from trainer import callbacks as callbacks_lib

    clock = iter([100.0, 112.34])
    monkeypatch.setattr(callbacks_lib.time, "monotonic", lambda: next(clock))
    line = callbacks_lib.EpochSummary(["fare", "tips"], epochs=25)
    line.on_epoch_begin(2)
    line.on_epoch_end(2, {"loss": 0.5, "val_fare_mae": 1.7, "val_fare_loss": 0.1,
                          "val_tips_mae": 1.25})
    assert capsys.readouterr().out == (
        "  epoch 3/25  12.3 s  loss 0.5000 | fare: mae 1.7 | tips: mae 1.25\n")


def test_the_epoch_line_of_a_one_head_model_gives_its_metrics(capsys):
    """Keras drops the output's name from a one-output model's metric keys (val_mae): the
    line of a single-task config showed `fare: ` and nothing else."""
    from trainer import callbacks as callbacks_lib

    line = callbacks_lib.EpochSummary(["fare"], epochs=25)
    line.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.2, "val_weighted_loss": 0.2,
                          "val_fare_loss": 0.2, "val_stopping_loss": 1.0, "val_mae": 1.6,
                          "val_rmse": 3.8})
    assert capsys.readouterr().out == "  epoch 1/25  loss 0.5000 | fare: mae 1.6, rmse 3.8\n"
    # After a warm restart (trainer.cycles) the run has no planned last epoch to show.
    line.on_epoch_end(30, {"loss": 0.4, "val_mae": 1.5})
    assert capsys.readouterr().out == "  epoch 31  loss 0.4000 | fare: mae 1.5\n"


def head_stopping(cfg):
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, head_stopping=True))


def test_a_stopped_head_no_longer_moves_the_backbone_but_still_trains_itself(x):
    """trainer.head_stopping: closing a head's `backbone_gradient` switch leaves every output
    as it was and the other head's gradient as it was, cuts that head's gradient into the
    shared backbone to 0 and keeps its gradient on its own layers."""
    off = make_cfg([{"name": "a", "label": "a", "task": "regression", "loss": "mse"},
                    {"name": "b", "label": "b", "task": "regression", "loss": "mse"}])
    cfg = head_stopping(off)
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    y = {"a": 3 * x, "b": x ** 2}
    backbone = model.get_layer("backbone").trainable_variables
    own = model.get_layer("b").trainable_variables

    def grads():
        with tf.GradientTape(persistent=True) as tape:
            pred = model({"x": x}, training=False)
            loss = {h: tf.reduce_mean(tf.square(y[h] - pred[h])) for h in y}
        out = {(h, part): [g.numpy() for g in tape.gradient(
                   loss[h], variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
               for h in y for part, variables in (("backbone", backbone), ("own", own))}
        return pred, out

    # Without the option (the default), and with one head, the heads have no switch: the
    # graph before it.
    for other in (off, cfg.single_task("a")):
        built = model_lib.build_model(other, {}, unit_stats(other))
        assert not any(hasattr(built.get_layer(h.name), "backbone_gradient")
                       for h in other.heads)

    before_pred, before = grads()
    model.get_layer("b").backbone_gradient.assign(0.0)
    after_pred, after = grads()
    for h in y:
        np.testing.assert_array_equal(before_pred[h].numpy(), after_pred[h].numpy())
    assert all(np.any(g != 0) for g in before[("b", "backbone")])
    assert all(np.all(g == 0) for g in after[("b", "backbone")])
    for key in (("a", "backbone"), ("b", "own")):
        for g0, g1 in zip(before[key], after[key], strict=True):
            np.testing.assert_array_equal(g0, g1)
        assert any(np.any(g != 0) for g in after[key])


def test_head_stopping_stops_a_head_after_patience_epochs_without_improvement(capsys):
    """Task-wise early stopping: each head by its own validation loss; a stopped head stays
    stopped; a head without a validation loss in the logs is left alone."""
    from trainer import callbacks as callbacks_lib

    cfg = head_stopping(make_cfg([{"name": h, "label": h, "task": "regression", "loss": "mse"}
                                  for h in ("a", "b", "c")]))
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    stopping = callbacks_lib.HeadStopping(["a", "b", "c"], patience=2)
    stopping.set_model(model)
    curves = {"a": [5, 4, 3, 2, 1, 0.5], "b": [5, 4, 4.5, 4.2, 1, 0.5]}  # b: best at epoch 2
    for epoch in range(6):
        stopping.on_epoch_end(epoch, {f"val_{h}_loss": c[epoch] for h, c in curves.items()})
        switch = {h: float(model.get_layer(h).backbone_gradient.numpy()) for h in "abc"}
        assert switch == {"a": 1.0, "b": 0.0 if epoch >= 3 else 1.0, "c": 1.0}, epoch
    assert stopping.stopped == {"b": 4}
    said = capsys.readouterr().out
    assert "epoch 4: head b's validation loss is no better than at epoch 2" in said


def test_a_warm_restart_lets_every_head_shape_the_backbone_again():
    """Heads stop within the first cycle only (trainer.cycles): a restart reopens them, and the
    worse epochs at the restarted peak learning rate stop none."""
    from trainer import callbacks as callbacks_lib

    cfg = head_stopping(make_cfg([{"name": h, "label": h, "task": "regression", "loss": "mse"}
                                  for h in ("a", "b")]))
    model = model_lib.build_model(cfg, {}, unit_stats(cfg))
    stopping = callbacks_lib.HeadStopping(["a", "b"], patience=2, cycle_epochs=5)
    stopping.set_model(model)
    curves = {"a": [5, 4, 3, 2, 1, 3, 4, 5, 6, 7], "b": [5, 4, 4.5, 4.2, 4.1, 6, 7, 8, 9, 9]}
    open_b = []
    for epoch in range(10):
        stopping.on_epoch_begin(epoch)
        stopping.on_epoch_end(epoch, {f"val_{h}_loss": c[epoch] for h, c in curves.items()})
        open_b.append(float(model.get_layer("b").backbone_gradient.numpy()))
        assert float(model.get_layer("a").backbone_gradient.numpy()) == 1.0
    assert open_b == [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    assert stopping.stopped == {"b": 4}
