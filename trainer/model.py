"""The shared-backbone multi-head Keras model.

    transformed features --> Backbone (embeddings + shared MLP) --+--> head tower --> head A
                                                                  +--> head tower --> head B ...

One `Input` per transformed feature, one backbone shared by every head, and each head's output
layer (named after the head) reads the backbone's output -- never another head's. Losses,
loss weights and metrics are dicts keyed by head name, so Keras logs `<head>_loss` and
`<head>_<metric>`, and the same names flow into the serving outputs and the Evaluator.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from headwise.config import PipelineConfig
from trainer import heads as heads_lib


def feature_inputs(cfg: PipelineConfig) -> dict[str, keras.Input]:
    """One Keras Input of shape [batch, 1] per transformed feature."""
    return {f.name: keras.Input(shape=(1,), name=f.name,
                                dtype=tf.float32 if f.type == "numeric" else tf.int64)
            for f in cfg.features}


def feature_cardinalities(cfg: PipelineConfig, tft_output: tft.TFTransformOutput
                          ) -> dict[str, int]:
    """Number of distinct ids of each integer feature, read from Transform's output."""
    sizes = {}
    for f in cfg.features:
        if f.type == "categorical":
            sizes[f.name] = tft_output.vocabulary_size_by_name(f.name) + f.oov_buckets
        elif f.type == "bucketized":
            sizes[f.name] = f.buckets + 1  # quantile bucketing may produce fewer, never more
    return sizes


class Backbone:
    """Embeddings for integer features, concatenated with numeric ones, then a shared MLP."""

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int]):
        self.cfg, self.cardinalities = cfg, cardinalities

    def __call__(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        m = self.cfg.model
        parts = []
        for f in self.cfg.features:
            x = inputs[f.name]
            if f.type == "numeric":
                parts.append(x)
            else:
                emb = keras.layers.Embedding(self.cardinalities[f.name], m.embedding_dim,
                                             name=f"embed_{f.name}")(x)
                parts.append(keras.layers.Flatten(name=f"flat_{f.name}")(emb))
        x = keras.layers.Concatenate(name="backbone_concat")(parts)
        for i, units in enumerate(m.hidden_units):
            x = keras.layers.Dense(units, name=f"backbone_dense_{i}")(x)
            if m.batch_norm:
                x = keras.layers.BatchNormalization(name=f"backbone_bn_{i}")(x)
            x = keras.layers.Activation(m.activation, name=f"backbone_act_{i}")(x)
            if m.dropout:
                x = keras.layers.Dropout(m.dropout, name=f"backbone_dropout_{i}")(x)
        return x


def build_model(cfg: PipelineConfig, cardinalities: dict[str, int],
                stats: dict[str, dict[str, float]]) -> keras.Model:
    """The compiled multi-head model. `stats[head]` holds label statistics (regression)."""
    inputs = feature_inputs(cfg)
    shared = Backbone(cfg, cardinalities)(inputs)
    heads = [heads_lib.make_head(h) for h in cfg.heads]
    outputs = {}
    for head in heads:
        x = shared
        for i, units in enumerate(head.cfg.tower):
            x = keras.layers.Dense(units, activation=cfg.model.activation,
                                   name=f"{head.name}_tower_{i}")(x)
        outputs[head.name] = head.output(x, stats.get(head.name, {}))
    model = keras.Model(inputs=inputs, outputs=outputs, name=f"{cfg.name}_multihead")
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.model.learning_rate),
        loss={h.name: h.loss(stats.get(h.name, {})) for h in heads},
        loss_weights={h.name: h.cfg.loss_weight for h in heads},
        weighted_metrics={h.name: h.keras_metrics() for h in heads},
    )
    return model


def regression_stats(cfg: PipelineConfig, tft_output: tft.TFTransformOutput
                     ) -> dict[str, dict[str, float]]:
    """Mean and std of each normalised regression label, as learned by Transform.

    Transform emits z = (y - mean) / std for such heads; feeding the raw label values 0 and 1
    through the transform graph gives z0 = -mean/std and z1 = (1 - mean)/std, hence
    std = 1 / (z1 - z0) and mean = -z0 * std, exactly, without a second pass over the data.
    """
    out = {}
    raw_spec = tft_output.raw_feature_spec()
    layer = None
    for h in cfg.heads:
        if h.task != "regression" or not h.normalize:
            continue
        layer = layer or tft_output.transform_features_layer()
        dtype = raw_spec[h.label].dtype
        probe = tf.constant([[0], [1]], dtype=dtype)
        if isinstance(raw_spec[h.label], tf.io.VarLenFeature):
            probe = tf.SparseTensor([[0, 0], [1, 0]], tf.reshape(probe, [-1]), [2, 1])
        z = np.asarray(layer({h.label: probe})[heads_lib.zscore_key(h.name)]).reshape(-1)
        std = float(1.0 / (z[1] - z[0]))
        out[h.name] = {"mean": float(-z[0] * std), "std": std}
    return out
