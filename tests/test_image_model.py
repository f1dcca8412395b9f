"""Image features on the model side: the config, decoding in the graph, the pretrained
application (weights from a file or the Keras cache, never a download), frozen / trainable /
fine-tune schedule, and the image embedding concatenated with tabular features."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from headwise import config as config_lib
from trainer import images as images_lib
from trainer import model as model_lib
from trainer import run as run_lib

SIZE = 32


def raw_config(weights: str, **backbone) -> dict:
    return {
        "name": "imgs", "data": {"csv": "unused.csv"},
        # ink is fed as it is (a zscore feature's transformed value, no missing indicator)
        "features": {"image": {"type": "image", "size": [SIZE, SIZE]},
                     "ink": {"type": "numeric", "encoding": "zscore", "missing_indicator": False}},
        "heads": [
            {"name": "digit", "label": "digit", "task": "multiclass", "classes": list("0123")},
            {"name": "aux", "label": "aux", "task": "binary", "auxiliary": True, "tower": [8],
             "loss_weight": 0.2}],
        # digits.yaml's image recipe: one shared MLP, static weights, no dropout
        "model": {"backbone": {"type": "shared_bottom", "application": "MobileNetV2",
                               "alpha": 0.35, "weights": weights, "embedding_units": 16,
                               **backbone},
                  "hidden_units": [16], "learning_rate": 0.01, "loss_balancing": "static",
                  "dropout": 0.0},
    }


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> str:
    """A MobileNetV2 (alpha 0.35) without its top with known random weights, as a user's
    pretrained file would be written."""
    keras.utils.set_random_seed(3)
    app = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                         input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = str(tmp_path_factory.mktemp("weights") / "mobilenet_v2_035.h5")
    app.save_weights(path)
    return path


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    digit = rng.integers(0, 4, n)
    # The class is written into the image: a bright square whose corner is the class.
    img = rng.uniform(0, 40, (n, SIZE, SIZE, 3)).astype("float32")
    for i, d in enumerate(digit):
        r, c = divmod(int(d), 2)
        img[i, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 200
    x = {"image": img, "ink": img.mean(axis=(1, 2, 3))[:, None] / 255}
    y = {"digit": digit[:, None], "aux": (digit % 2)[:, None].astype("float32")}
    return x, y


def app_weights(model):
    return [w.numpy().copy() for w in model.backbone.image_encoders["image"].application.weights]


# ---------------------------------------------------------------------------- config


def test_config_round_trips_through_tfx_boundary(weights_file):
    cfg = config_lib.from_dict(raw_config(weights_file, fine_tune={
        "after_epochs": 2, "layers": 10, "learning_rate": 1e-4}))
    back = config_lib.from_json(config_lib.to_json(cfg, config_lib.Scope.TRAINING))
    assert back.model == cfg.model and back.features == cfg.features
    assert back.model.image.fine_tune.layers == 10 and back.features[0].size == (SIZE, SIZE)


@pytest.mark.parametrize("edit, field, words", [
    (lambda r: r["model"].pop("backbone"), "features.image", "model.backbone"),
    (lambda r: r["model"]["backbone"].pop("weights"), "model.backbone.weights", "imagenet"),
    (lambda r: r["model"]["backbone"].update(application="VGG16"),
     "model.backbone.application", "MobileNetV2"),
    (lambda r: r["model"]["backbone"].update(trainable=True,
                                             fine_tune={"after_epochs": 1, "layers": 2,
                                                        "learning_rate": 1e-4}),
     "model.backbone.fine_tune", "trainable: false"),
    (lambda r: r["model"]["backbone"].update(fine_tune={"after_epochs": 0, "layers": 2,
                                                        "learning_rate": 1e-4}),
     "model.backbone.fine_tune.after_epochs", ">= 1"),
    (lambda r: r["model"]["backbone"].update(application="ResNet50"),
     "model.backbone.alpha", "no alpha"),
    (lambda r: r["features"]["image"].update(size=[8, 8]), "features.image.size", "32, 32"),
    (lambda r: r["features"]["image"].update(channels=4), "features.image.channels", "RGB"),
    (lambda r: r["features"].update(ink={"type": "numeric", "size": [32, 32]}),
     "features.ink.size", "only image"),
    (lambda r: r.update(validation={"drift": {"image": 0.1}}), "validation.drift",
     "image feature"),
    (lambda r: r["features"].pop("image"), "model.backbone.application", "type image"),
])
def test_config_errors_name_the_field(edit, field, words):
    raw = copy.deepcopy(raw_config("w.h5"))
    edit(raw)
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.from_dict(raw, source="imgs.yaml")
    assert f"imgs.yaml: {field}" in str(e.value) and words in str(e.value), str(e.value)


def test_load_refuses_a_missing_weights_file(tmp_path):
    import yaml

    (tmp_path / "unused.csv").write_text("image,ink,digit,aux\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw_config("nope/w.h5")))
    with pytest.raises(config_lib.ConfigError, match=r"model.backbone.weights: no such file: .*"
                                                     r"nope/w.h5"):
        config_lib.load(str(tmp_path / "c.yaml"))


# ---------------------------------------------------------------------------- decoding


def test_decode_png_and_jpeg_to_the_configured_size():
    feature = config_lib.from_dict(raw_config("none")).features[0]
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 4
    png = tf.io.encode_png(grey).numpy()
    out = images_lib.decode(tf.constant([png, png]), feature).numpy()
    assert out.shape == (2, SIZE, SIZE, 3) and out.dtype == np.float32
    expected = tf.image.resize(tf.cast(np.repeat(grey, 3, axis=2), tf.float32), [SIZE, SIZE])
    np.testing.assert_allclose(out[0], expected.numpy(), atol=1e-4)
    # A JPEG of the full size keeps its size (no resize) and its values within JPEG's error.
    rgb = np.full((SIZE, SIZE, 3), 120, np.uint8)
    jpeg = tf.io.encode_jpeg(rgb, quality=100).numpy()
    np.testing.assert_allclose(images_lib.decode(tf.constant([jpeg]), feature)[0], rgb, atol=2)


@pytest.mark.parametrize("data, words", [
    (b"", "an example has no image bytes"),
    (b"not an image at all", "not a PNG, JPEG, GIF or BMP image"),
    (b"\x89PNG\r\n\x1a\n truncated", "PNG"),
])
def test_bad_bytes_are_invalid_argument_naming_the_feature(data, words):
    feature = config_lib.from_dict(raw_config("none")).features[0]
    with pytest.raises(tf.errors.InvalidArgumentError, match=words) as e:
        images_lib.decode(tf.constant([data]), feature)
    if words != "PNG":
        assert "image feature 'image'" in str(e.value)


# ---------------------------------------------------------------------------- weights


def test_weights_file_is_loaded_and_frozen_by_default(weights_file):
    cfg = config_lib.from_dict(raw_config(weights_file))
    model = model_lib.build_model(cfg, {}, {})
    stored = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                            input_shape=(SIZE, SIZE, 3), pooling="avg")
    stored.load_weights(weights_file)
    for got, want in zip(app_weights(model), stored.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # Frozen: training leaves it as it is (the fine-tune test's first epoch shows it).
    assert not model.backbone.image_encoders["image"].application.trainable


def test_trainable_application_trains(weights_file):
    model = model_lib.build_model(config_lib.from_dict(raw_config(weights_file, trainable=True)),
                                  {}, {})
    first_conv = model.backbone.image_encoders["image"].application.layers[1]
    before = first_conv.kernel.numpy().copy()
    x, y = data(32)
    model.run_eagerly = True  # a few steps: cheaper than tracing the training step
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert not np.allclose(before, first_conv.kernel.numpy())


def test_fine_tune_schedule_unfreezes_only_the_top_layers_after_n_epochs(weights_file):
    cfg = config_lib.from_dict(raw_config(weights_file, fine_tune={
        "after_epochs": 1, "layers": 12, "learning_rate": 1e-3}))
    model = model_lib.build_model(cfg, {}, {})
    app = model.backbone.image_encoders["image"].application
    x, y = data(32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([w.numpy().copy() for w in app.weights])

    start = [w.numpy().copy() for w in app.weights]
    model.run_eagerly = True  # a few steps: cheaper than tracing the training step
    run_lib.fine_tune(model, cfg.model.image.fine_tune, 3, tf.distribute.get_strategy(),
                      dict(x=ds, steps_per_epoch=2, verbose=0, callbacks=[Record()]))
    assert len(seen) == 3
    for a, b in zip(start, seen[0], strict=True):  # epoch 1: frozen
        np.testing.assert_array_equal(a, b)
    top = {id(w) for layer in app.layers[-12:] if not isinstance(
        layer, keras.layers.BatchNormalization) for w in layer.trainable_weights}
    assert top, "the top 12 layers hold trainable weights"
    for w, a, b in zip(app.weights, start, seen[-1], strict=True):
        if id(w) in top:
            assert not np.array_equal(a, b), w.name  # unfrozen: trained in epochs 2-3
        else:
            np.testing.assert_array_equal(a, b, err_msg=w.name)  # lower layers, all BN: frozen


def test_imagenet_is_read_from_the_keras_cache_only(tmp_path, monkeypatch, weights_file):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    raw = raw_config("imagenet")
    with pytest.raises(images_lib.WeightsError) as e:
        model_lib.build_model(config_lib.from_dict(raw), {}, {})
    message = str(e.value)
    assert "downloads nothing" in message and str(tmp_path / "models") in message
    # Where Keras's file is in the cache, it is used as it is.
    cached = message.split(" is missing")[0].split("cache: ")[1]
    os.makedirs(os.path.dirname(cached))
    import shutil

    shutil.copy(weights_file, cached)
    model = model_lib.build_model(config_lib.from_dict(raw), {}, {})
    want = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                          input_shape=(SIZE, SIZE, 3), pooling="avg")
    want.load_weights(weights_file)
    np.testing.assert_array_equal(app_weights(model)[0], want.get_weights()[0])


def test_a_weights_file_of_another_architecture_is_refused(tmp_path):
    other = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=1.0,
                                           input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = str(tmp_path / "wide.h5")
    other.save_weights(path)
    with pytest.raises(images_lib.WeightsError, match="does not fit MobileNetV2"):
        model_lib.build_model(config_lib.from_dict(raw_config(path)), {}, {})


def test_image_embedding_is_concatenated_with_tabular_features(weights_file):
    """Every backbone reads [image embedding, tabular features]: the encoded vector has both,
    and the tabular value changes the prediction with the image fixed."""
    for kind in ("shared_bottom", "mmoe"):
        cfg = config_lib.from_dict(raw_config(weights_file, type=kind))
        model = model_lib.build_model(cfg, {}, {})
        x, _ = data(4)
        encoded = model.backbone.encode({k: tf.constant(v) for k, v in x.items()})
        assert encoded.shape == (4, 16 + 1)
        np.testing.assert_allclose(encoded[:, -1:], x["ink"])
        moved = dict(x, ink=x["ink"] + 5.0)
        assert not np.allclose(model(x)["digit"], model(moved)["digit"]), kind
