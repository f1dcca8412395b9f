"""The tabular recipe: numeric encodings computed by Transform, the `log` target, the training
budget in epochs, the learning-rate schedule and weight decay. Each on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from headwise import config as config_lib
from headwise import contract
from headwise.config import features as features_lib
from headwise.config import model as model_config
from headwise.errors import ConfigError
from tests.tft_helpers import run_transform
from trainer import backbones
from trainer import heads as heads_lib
from trainer import model as model_lib
from trainer.transform import quantile_position


def cfg_of(features, heads=None, **model):
    return config_lib.from_dict({
        "name": "recipe", "data": {"csv": "unused.csv"}, "features": features,
        "heads": heads or [{"name": "y", "label": "y", "task": "regression"}],
        # one shared MLP: the tests read its first layer's kernel
        "model": {"hidden_units": [8], "backbone": "shared_bottom", **model}})


# --- numeric encodings ----------------------------------------------------------------------
def test_quantile_position_is_linear_between_edges_and_clipped_outside():
    edges = tf.constant([0.0, 1.0, 2.0, 4.0])  # 3 bins: [0, 1], [1, 2], [2, 4]
    x = tf.constant([-1.0, 0.0, 0.5, 1.0, 3.0, 4.0, 10.0])
    np.testing.assert_allclose(quantile_position(x, edges).numpy(),
                               [0, 0, 1 / 6, 1 / 3, 2.5 / 3, 1, 1], atol=1e-6)


def test_quantile_position_puts_a_point_mass_at_the_top_of_its_bins():
    """Two thirds of the values are 0: 0 maps to 2/3 (its share of the CDF), and values above
    it continue from there."""
    edges = tf.constant([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(quantile_position(tf.constant([0.0, 0.5, 1.0]), edges).numpy(),
                               [2 / 3, 2.5 / 3, 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def heavy_tailed(tmp_path_factory):
    """1,000 rows of a log-normal column (heavy right tail, one extreme 1e9), every 10th
    missing, encoded three ways by a real Transform run."""
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 2.0, size=1000)
    values[5] = 1e9
    rows = [{"q": [] if i % 10 == 0 else [float(v)], "p": [] if i % 10 == 0 else [float(v)],
             "z": [float(v)], "y": [1.0]} for i, v in enumerate(values)]
    spec = {k: tf.io.VarLenFeature(tf.float32) for k in ("q", "p", "z", "y")}
    cfg = cfg_of({"q": {"type": "numeric", "encoding": "quantile", "bins": 20},
                  "p": {"type": "numeric", "bins": 20},  # the default encoding: piecewise
                  "z": {"type": "numeric", "encoding": "zscore", "clip": 3.0,
                        "missing_indicator": False}})
    _, out = run_transform(cfg, rows, spec, str(tmp_path_factory.mktemp("tft")))
    return values, rows, out


def test_quantile_encoding_is_the_empirical_cdf_with_missing_at_the_median(heavy_tailed):
    values, rows, out = heavy_tailed
    present = [i for i, r in enumerate(rows) if r["q"]]
    u = np.array([out[i]["q"] for i in present])
    x = values[present]
    cdf = np.searchsorted(np.sort(x), x, side="right") / len(x)
    assert np.all((u >= 0) & (u <= 1))
    assert np.max(np.abs(u - cdf)) < 2 / 20 + 0.01, np.max(np.abs(u - cdf))
    assert np.all(np.diff(u[np.argsort(x)]) >= -1e-6)  # monotone in x
    assert out[5]["q"] == 1.0  # the extreme value: at the top, not 1e9 / std
    for i, r in enumerate(rows):
        assert out[i][contract.presence_key("q")] == float(bool(r["q"]))
        if not r["q"]:
            assert out[i]["q"] == 0.5 and out[i]["p"] == 0.5
    # piecewise shares Transform's encoding with quantile; the model expands it.
    np.testing.assert_allclose([o["p"] for o in out], [o["q"] for o in out], atol=1e-6)
    assert contract.linear_key("q") not in out[0]  # quantile has no linear term


def test_piecewise_linear_term_is_the_clipped_zscore_of_present_values(heavy_tailed):
    values, rows, out = heavy_tailed
    present = np.array([bool(r["p"]) for r in rows])
    x = values[present]
    z = np.array([o[contract.linear_key("p")] for o in out])
    unclipped = (values - x.mean()) / x.std()
    assert z.max() == pytest.approx(features_lib.LINEAR_CLIP)  # 1e9: clipped, not 30 std
    assert z.min() >= -features_lib.LINEAR_CLIP
    inside = present & (np.abs(unclipped) < features_lib.LINEAR_CLIP)
    np.testing.assert_allclose(z[inside], unclipped[inside], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(z[~present], 0.0, atol=1e-6)  # missing: the mean


def test_zscore_is_clipped_and_has_no_indicator_when_asked(heavy_tailed):
    values, _, out = heavy_tailed
    z = np.array([o["z"] for o in out])
    assert z.max() == pytest.approx(3.0) and z.min() >= -3.0
    assert contract.presence_key("z") not in out[0]
    unclipped = (values - values.mean()) / values.std()
    inside = np.abs(unclipped) < 3
    np.testing.assert_allclose(z[inside], unclipped[inside], rtol=1e-3, atol=1e-4)


def test_piecewise_linear_components_and_their_sum():
    layer = backbones.PiecewiseLinear(bins=4, units=3)
    comps = layer.components(tf.constant([[0.3], [0.0], [1.0], [0.6]])).numpy()
    np.testing.assert_allclose(comps, [[1, 0.2, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1],
                                       [1, 1, 0.4, 0]], atol=1e-6)
    # Each component is one bin's share: their sum / bins is the position again.
    np.testing.assert_allclose(comps.sum(axis=1) / 4, [0.3, 0.0, 1.0, 0.6], atol=1e-6)
    assert layer(tf.constant([[0.3]])).shape == (1, 3)


def test_the_model_reads_each_numeric_feature_and_its_indicator():
    cfg = cfg_of({"a": "numeric", "b": {"type": "numeric", "encoding": "quantile",
                                        "missing_indicator": False},
                  "c": {"type": "numeric", "linear": False}})
    model = model_lib.build_model(cfg, {}, {"y": {"mean": 0.0, "std": 1.0}})
    assert sorted(model.input_names) == sorted(
        ["a", contract.presence_key("a"), contract.linear_key("a"), "b", "c",
         contract.presence_key("c")])
    # a: 32 piecewise components -> 8 units, + its indicator and linear term; b: its position;
    # c: 8 units + its indicator. 20 in all.
    assert model.get_layer("backbone").blocks[0][0].kernel.shape[0] == 8 + 2 + 1 + 8 + 1


@pytest.mark.parametrize("spec,words", [
    ({"type": "numeric", "encoding": "piecewise", "clip": 3}, "only the zscore encoding"),
    ({"type": "numeric", "encoding": "zscore", "bins": 8}, "only the quantile and piecewise"),
    ({"type": "categorical", "encoding": "zscore"}, "only numeric features take"),
    ({"type": "numeric", "encoding": "rank"}, "unknown numeric encoding 'rank'"),
    ({"type": "numeric", "bins": 1}, "must be >= 2"),
    ({"type": "numeric", "encoding": "quantile", "linear": True}, "only the piecewise"),
])
def test_bad_encoding_options_name_the_field(spec, words):
    with pytest.raises(ConfigError, match=words):
        cfg_of({"a": spec})


def test_encodings_survive_the_yaml_round_trip():
    cfg = cfg_of({"a": {"type": "numeric", "encoding": "zscore", "clip": 4.0},
                  "b": {"type": "numeric", "bins": 16, "missing_indicator": False},
                  "c": {"type": "numeric", "linear": False}})
    again = config_lib.from_dict(config_lib.to_raw(cfg))
    assert again.features == cfg.features


# --- the log target -------------------------------------------------------------------------
def test_symlog_and_symexp_are_inverse():
    x = tf.constant([-1e6, -3.0, 0.0, 0.5, 1e8])
    np.testing.assert_allclose(heads_lib.symexp(heads_lib.symlog(x)).numpy(), x.numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(heads_lib.symlog(tf.constant([math.e - 1])).numpy(), [1.0],
                               rtol=1e-6)


def test_a_log_heads_output_is_bounded_so_metrics_stay_finite():
    """A diverging network (z = 1e4 on the log scale) outputs at most exp(mean + 10 std) - 1,
    and its squared error is finite (exp(80), the old cap, squared is inf in float32)."""
    cfg = cfg_of({"x": {"type": "numeric", "encoding": "zscore", "missing_indicator": False}},
                 [{"name": "y", "label": "y", "task": "regression", "target": "log"}])
    head = heads_lib.make_head(cfg.heads[0], {"mean": 2.0, "std": 0.5})
    inverse = head.output_layers[-1]
    out = inverse(tf.constant([[1e4], [-1e4], [2.0]])).numpy()[:, 0]
    # Clipped to [2 - 5, 2 + 5] on the log scale; -3 maps to -(e^3 - 1).
    np.testing.assert_allclose(out, [np.expm1(7.0), -np.expm1(3.0), np.expm1(2.0)], rtol=1e-5)
    plain = heads_lib.symexp(tf.constant([1e4]))
    assert np.isfinite(float(tf.reduce_mean(tf.square(plain))))


def test_log_target_loss_is_computed_on_the_log_scale():
    loss = heads_lib.ScaledLoss("mae", 2.0, "log")
    y, p = np.array([[0.0], [9.0]], "float32"), np.array([[1.0], [99.0]], "float32")
    want = np.mean(np.abs(np.log1p(y) - np.log1p(p))) / 2.0
    assert float(loss(y, p)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("target,centre", [("log", "median"), ("none", "mean")])
def test_mse_on_a_log_target_fits_the_median_and_outputs_label_units(target, centre):
    """Log-normal labels (median 20, mean 20 e^0.5 ~ 33) that no feature explains: with MSE on
    the log scale the output tends to exp(E[log y]), the median, in the label's units; with
    MSE on the label itself, to the mean. A broken inversion (no symexp) would output ~3."""
    rng = np.random.default_rng(0)
    y = rng.lognormal(math.log(20.0), 1.0, size=(4096, 1)).astype("float32")
    x = np.zeros((4096, 1), "float32")
    cfg = cfg_of({"x": {"type": "numeric", "encoding": "zscore", "missing_indicator": False}},
                 [{"name": "y", "label": "y", "task": "regression", "loss": "mse",
                   "target": target}], learning_rate=0.05, weight_decay=0.0)
    ty = np.log1p(y) if target == "log" else y
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(cfg, {}, {"y": {"mean": float(ty.mean()),
                                                  "std": float(ty.std())}})
    model.fit({"x": x}, {"y": y}, sample_weight={"y": np.ones(len(y), "float32")}, epochs=6,
              batch_size=256, verbose=0)
    pred = float(model.predict({"x": x[:1]}, verbose=0)["y"][0, 0])
    want = {"median": float(np.expm1(np.log1p(y).mean())), "mean": float(y.mean())}[centre]
    assert pred == pytest.approx(want, rel=0.1), (pred, want)


def test_target_is_a_regression_key():
    with pytest.raises(ConfigError, match="only regression heads take 'target'"):
        cfg_of({"a": "numeric"}, [{"name": "y", "label": "y", "task": "binary",
                                   "target": "log"}])
    with pytest.raises(ConfigError, match="unknown target transform 'sqrt'"):
        cfg_of({"a": "numeric"}, [{"name": "y", "label": "y", "task": "regression",
                                   "target": "sqrt"}])


# --- the training budget --------------------------------------------------------------------
def test_the_budget_is_epochs_derived_from_the_training_rows():
    small = model_config.plan(model_config.TrainerConfig(), train_rows=240, eval_rows=52)
    assert (small.batch_size, small.steps_per_epoch, small.epochs) == (64, 4, 100)
    assert small.validation_steps == 1 and small.patience == 10
    big = model_config.plan(model_config.TrainerConfig(), train_rows=140_000, eval_rows=30_000)
    assert big.batch_size == 512 and big.steps_per_epoch == 274
    assert big.epochs == math.ceil(model_config.TARGET_STEPS / 274) == 15
    assert big.validation_steps == math.ceil(30_000 / 512) and big.patience == 3
    huge = model_config.plan(model_config.TrainerConfig(), train_rows=5_000_000, eval_rows=1)
    assert huge.batch_size == 1024 and huge.epochs == model_config.MIN_EPOCHS


def test_a_step_budget_and_set_values_win():
    fixed = model_config.plan(model_config.TrainerConfig(), 10_000, 2_000, train_steps=600,
                              eval_steps=5)
    assert (fixed.batch_size, fixed.epochs, fixed.steps_per_epoch) == (128, 10, 60)
    assert (fixed.validation_steps, fixed.patience) == (5, 2)
    mine = model_config.plan(model_config.TrainerConfig(batch_size=32, epochs=3,
                                                        early_stopping_patience=0), 1000, 100)
    assert (mine.batch_size, mine.epochs, mine.steps_per_epoch, mine.patience) == (32, 3, 32, 0)


def test_warm_restart_cycles_only_where_early_stopping_decides():
    derived = model_config.plan(model_config.TrainerConfig(), 10_000, 2_000)
    assert derived.cycles == 3 and "up to 3 cycles" in derived.why
    assert model_config.plan(model_config.TrainerConfig(cycles=1), 10_000, 2_000).cycles == 1
    # A fixed step budget is what it says; without early stopping nothing says "improving".
    assert model_config.plan(model_config.TrainerConfig(), 10_000, 2_000, train_steps=600
                             ).cycles == 1
    assert model_config.plan(model_config.TrainerConfig(early_stopping_patience=0), 10_000,
                             2_000).cycles == 1
    fine_tune = model_config.plan(model_config.TrainerConfig(), 10_000, 2_000, restarts=False)
    assert fine_tune.cycles == 1 and "cycles" not in fine_tune.why
    with pytest.raises(ConfigError, match=r"trainer\.cycles.*>= 1"):
        config_lib.from_dict({"name": "t", "data": {"csv": "u.csv"}, "features": {"a": "numeric"},
                              "heads": [{"name": "y", "label": "y", "task": "regression"}],
                              "trainer": {"cycles": 0}})


def test_steps_and_epochs_together_are_refused():
    with pytest.raises(ConfigError, match="trainer.epochs"):
        config_lib.from_dict({"name": "t", "data": {"csv": "u.csv"}, "features": {"a": "numeric"},
                              "heads": [{"name": "y", "label": "y", "task": "regression"}],
                              "trainer": {"train_steps": 100, "epochs": 3}})


def test_warmup_then_cosine_to_zero():
    cfg = cfg_of({"a": "numeric"}, learning_rate=0.01, warmup=0.1)
    schedule = model_lib.learning_rate_schedule(cfg, total_steps=1000)
    lr = [float(schedule(s)) for s in (0, 50, 100, 550, 1000)]
    assert lr[0] == pytest.approx(0.0, abs=1e-9)
    assert lr[1] == pytest.approx(0.005, rel=1e-3)  # half way up the warm-up
    assert lr[2] == pytest.approx(0.01, rel=1e-3)  # the peak
    assert lr[3] == pytest.approx(0.005, rel=1e-2)  # half way down the cosine
    assert lr[4] == pytest.approx(0.0, abs=1e-7)
    # The next cycle (trainer.cycles) warms up and decays again, step for step.
    for step in (0, 50, 100, 550, 999):
        assert float(schedule(1000 + step)) == pytest.approx(float(schedule(step)), abs=1e-9)
        assert float(schedule(2000 + step)) == pytest.approx(float(schedule(step)), abs=1e-9)
    assert float(schedule(999)) < 1e-6 < float(schedule(1050))
    constant = cfg_of({"a": "numeric"}, learning_rate=0.01, schedule="constant")
    assert model_lib.learning_rate_schedule(constant, 1000) == 0.01


def test_weight_decay_uses_adamw_and_spares_the_log_variances():
    cfg = cfg_of({"a": "numeric"}, weight_decay=0.01, loss_balancing="uncertainty",
                 heads=None)
    model = model_lib.build_model(cfg, {}, {"y": {"mean": 0.0, "std": 1.0}}, total_steps=10)
    opt = model.optimizer
    assert type(opt).__name__ == "AdamW" and opt.weight_decay == pytest.approx(0.01)
    log_var = next(v for v in model.trainable_variables if "log_var_" in v.name)
    kernel = model.get_layer("backbone").blocks[0][0].kernel
    assert opt._use_weight_decay(kernel) and not opt._use_weight_decay(log_var)  # noqa: SLF001
    plain = model_lib.build_model(cfg_of({"a": "numeric"}, weight_decay=0.0),
                                  {}, {"y": {"mean": 0.0, "std": 1.0}})
    assert type(plain.optimizer).__name__ == "Adam"


def test_small_data_gets_fewer_piecewise_components():
    auto = config_lib.Feature(name="a", type="numeric")
    assert features_lib.piecewise_components(auto, None) == features_lib.DEFAULT_BINS == 32
    assert features_lib.piecewise_components(auto, 100_000) == 32
    assert features_lib.piecewise_components(auto, 256) == 256 // features_lib.ROWS_PER_COMPONENT
    assert features_lib.piecewise_components(auto, 10) == 2
    # bins set in the config: exactly that many, whatever the data size
    set_ = config_lib.Feature(name="a", type="numeric", bins=32)
    assert features_lib.piecewise_components(set_, 256) == 32
    cfg = cfg_of({"a": "numeric", "b": {"type": "numeric", "bins": 16}})
    model = model_lib.build_model(cfg, {}, {"y": {"mean": 0.0, "std": 1.0}}, train_rows=256)
    layers = model.get_layer("backbone").piecewise
    assert (layers["a"].bins, layers["b"].bins) == (8, 16)
    assert layers["a"].components(tf.constant([[0.3]])).shape == (1, 8)
