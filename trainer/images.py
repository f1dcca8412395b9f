"""Image features: decoding in the graph, and the pretrained Keras Applications model that reads
them.

An image feature travels as the encoded file's bytes (PNG, JPEG, GIF or BMP) from ExampleGen
through Transform (which passes the bytes on unchanged) to the model's input function and the
serving signatures, which both call `decode`: bytes -> float32 [batch, height, width, channels]
in [0, 255], resized to the feature's `size`. So a client sends image bytes, exactly as to TF
Serving, and corrupt bytes fail that request with INVALID_ARGUMENT (tf.io.decode_image's error).

`ImageEncoder` is the layer a backbone reads each image feature with (trainer.backbones): the
application without its top, global average pooling, then a dense layer of
`model.backbone.embedding_units`. The application's own input scaling
(`keras.applications.<module>.preprocess_input`) runs first, inside the model.

Weights: a file (`save_weights` of the same application without its top, h5 or TF checkpoint),
`imagenet` only where the Keras cache already holds Keras's file (nothing is downloaded at run
time: `load_application` fails with the file's expected place instead), or `none`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import tensorflow as tf
import tf_keras as keras

from headwise import image_files
from headwise.config import Feature, PipelineConfig
from headwise.config.features import graph_name
from headwise.config.model import APPLICATIONS as config_applications
from headwise.config.model import IMAGENET, NO_WEIGHTS, ImageBackbone

A = keras.applications
# name -> (constructor, its module's preprocess_input)
APPLICATIONS: dict[str, tuple[Callable, Callable]] = {
    "ResNet50": (A.ResNet50, A.resnet50.preprocess_input),
    "MobileNet": (A.MobileNet, A.mobilenet.preprocess_input),
    "MobileNetV2": (A.MobileNetV2, A.mobilenet_v2.preprocess_input),
    # MobileNetV3 and EfficientNet scale their [0, 255] input themselves (their
    # preprocess_input is the identity).
    "MobileNetV3Small": (A.MobileNetV3Small, A.mobilenet_v3.preprocess_input),
    "MobileNetV3Large": (A.MobileNetV3Large, A.mobilenet_v3.preprocess_input),
    "EfficientNetB0": (A.EfficientNetB0, A.efficientnet.preprocess_input),
}
# The config accepts exactly these names (headwise.config.model.APPLICATIONS, TF-free).
if set(APPLICATIONS) != set(config_applications):
    raise ImportError(f"trainer.images.APPLICATIONS {sorted(APPLICATIONS)} and "
                      f"headwise.config.model.APPLICATIONS {sorted(config_applications)} differ")




SCRATCH_BN_MOMENTUM = 0.9  # weights: none (see ImageEncoder)


class WeightsError(ValueError):
    """A backbone's weights cannot be loaded; the message says why and what to do."""


def decode(serialized: tf.Tensor, feature: Feature) -> tf.Tensor:
    """Encoded image bytes [batch] -> float32 [batch, height, width, channels] in [0, 255].
    An empty value (a missing image) or bytes that are no image fail with InvalidArgumentError
    naming the feature."""
    height, width = feature.size

    def one(data):
        tf.debugging.assert_greater(
            tf.strings.length(data), 0,
            message=f"image feature '{feature.name}': an example has no image bytes")
        head = tf.strings.substr(data, 0, 4)
        known = tf.reduce_any([tf.equal(tf.strings.substr(data, 0, len(magic)), magic)
                               for magic, _ in image_files.SIGNATURES])
        tf.debugging.Assert(known, [f"image feature '{feature.name}': the bytes are not a "
                                    f"{image_files.FORMATS} image; they begin with", head])
        image = tf.io.decode_image(data, channels=feature.channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), [height, width])
        return tf.ensure_shape(image, [height, width, feature.channels])

    serialized = tf.reshape(serialized, [-1])
    return tf.map_fn(one, serialized, fn_output_signature=tf.TensorSpec(
        [height, width, feature.channels], tf.float32))


@contextlib.contextmanager
def _cache_only() -> Iterator[None]:
    """Keras's get_file, but only from its cache: a file that is not there is a WeightsError
    that names where it should be, instead of a download."""
    from tf_keras.src.utils import data_utils

    original = data_utils.get_file

    def cached(fname=None, origin=None, cache_subdir="datasets", cache_dir=None, **_):
        base = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(
            os.path.expanduser("~"), ".keras")
        path = os.path.join(base, cache_subdir, fname)
        if not os.path.isfile(path):
            raise WeightsError(
                f"the ImageNet weights are not in the Keras cache: {path} is missing. headwise "
                f"downloads nothing at run time; fetch {origin} on a machine with network access "
                f"and copy it to {path}, or set model.backbone.weights to a weights file")
        return path

    data_utils.get_file = cached
    try:
        yield
    finally:
        data_utils.get_file = original


def _local_copy(path: str, tmp: str) -> str:
    """A weights file on any filesystem tf.io.gfile reads (gs://...), as a local path."""
    if "://" not in path:
        return path
    local = os.path.join(tmp, os.path.basename(path))
    tf.io.gfile.copy(path, local, overwrite=True)
    return local


def load_application(image: ImageBackbone, feature: Feature, weights_path: str | None = None,
                     name: str | None = None) -> keras.Model:
    """The application without its top, with global average pooling, for `feature`'s images,
    its weights loaded. `weights_path`: the resolved weights file (`image.weights` when it is a
    file)."""
    build, _ = APPLICATIONS[image.application]
    kwargs = {"include_top": False, "pooling": "avg",
              "input_shape": (*feature.size, feature.channels)}
    if image.alpha is not None:
        kwargs["alpha"] = image.alpha
    if image.weights == IMAGENET:
        if feature.channels != 3:
            raise WeightsError(f"features.{feature.name}: ImageNet weights take RGB images; set "
                               "channels: 3")
        with _cache_only():
            try:
                app = build(weights=IMAGENET, **kwargs)
            except WeightsError:
                raise
            except ValueError as e:  # e.g. an alpha or size without ImageNet weights
                raise WeightsError(f"{image.application} has no ImageNet weights for these "
                                   f"settings: {e}") from None
    else:
        app = build(weights=None, **kwargs)
        if image.weights != NO_WEIGHTS:
            path = weights_path or image.weights
            tmp = tempfile.mkdtemp(prefix="headwise-weights-")
            try:
                app.load_weights(_local_copy(path, tmp))
            except (ValueError, OSError, tf.errors.OpError) as e:
                raise WeightsError(
                    f"model.backbone.weights: {path} does not fit {image.application} without "
                    f"its top (alpha {image.alpha}, input {kwargs['input_shape']}): {e}. Write "
                    f"it with keras.applications.{image.application}(include_top=False, ...)"
                    ".save_weights(path)") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if name:
        app._name = name  # noqa: SLF001 (Keras names nested models by this attribute)
    return app


class ImageEncoder(keras.layers.Layer):
    """One image feature -> [batch, embedding_units]: the application's scaling, the
    application (no top, average pooling), a dense layer."""

    def __init__(self, cfg: PipelineConfig, feature: Feature, **kwargs):
        super().__init__(name=kwargs.pop("name", f"image_{graph_name(feature.name)}"), **kwargs)
        image = cfg.model.image
        self.feature, self.image = feature, image
        weights = None if image.weights in (IMAGENET, NO_WEIGHTS) else cfg.resolve_file(
            image.weights)
        self.application = load_application(image, feature, weights,
                                            name=f"{image.application}_{graph_name(feature.name)}")
        self.application.trainable = image.trainable
        if image.weights == NO_WEIGHTS:
            # Keras Applications' batch normalisation averages its statistics with momentum
            # 0.999 (ImageNet-long training): after a few hundred steps from scratch the moving
            # averages are still near their initial values, and served predictions are noise.
            for layer in self.application.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = SCRATCH_BN_MOMENTUM
        self.preprocess = APPLICATIONS[image.application][1]
        self.dense = keras.layers.Dense(image.embedding_units, activation=cfg.model.activation,
                                        name="embedding")

    def call(self, images, training=None):
        x = self.preprocess(images)
        # With pretrained weights, batch normalisation inside the application runs in inference
        # mode: its statistics stay the pretrained ones, also when layers are unfrozen for
        # fine-tuning (updating them on small batches destroys what the weights learned).
        # Without (weights: none), the network learns from scratch, its statistics too.
        pretrained = self.image.weights != NO_WEIGHTS
        x = self.application(x, training=False if pretrained else training)
        return self.dense(x)

    def unfreeze_top(self, layers: int) -> int:
        """Make the top `layers` layers of the application trainable, batch normalisation
        excepted; returns how many weights became trainable."""
        app = self.application
        app.trainable = True
        for layer in app.layers[:-layers]:
            layer.trainable = False
        for layer in app.layers[-layers:]:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        return sum(int(tf.size(w)) for w in app.trainable_weights)
