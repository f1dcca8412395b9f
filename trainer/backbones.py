"""Backbones: the shared part of the multi-head model, one replaceable object per architecture.

The interface every backbone implements (`Backbone`):
  * `inputs()`: the Keras Inputs it reads, one per transformed feature, by feature name;
  * called on those inputs: either one tensor [batch, d] that every head reads (a shared bottom),
    or a dict {head name: tensor [batch, d_h]} when the architecture gives each head its own
    representation (expert mixtures such as MMoE or PLE).
The model (`trainer.model.MultiHeadModel`) puts one head on top of whichever it gets.

`SharedBottom` is the MLP every head shares: embeddings for integer features, concatenated
with the numeric ones, then `model.hidden_units` dense layers.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from headwise.config import PipelineConfig


class Backbone(keras.layers.Layer):
    """Transformed features -> what the heads read. Subclasses implement `represent`."""

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int], **kwargs):
        super().__init__(name=kwargs.pop("name", "backbone"), **kwargs)
        self.cfg, self.cardinalities = cfg, dict(cardinalities)
        m = cfg.model
        self.embeddings = {
            f.name: keras.layers.Embedding(self.cardinalities[f.name], m.embedding_dim,
                                           name=f"embed_{f.name}")
            for f in cfg.features if f.type != "numeric"}

    def inputs(self) -> dict[str, keras.Input]:
        """One Keras Input of shape [batch, 1] per transformed feature."""
        return {f.name: keras.Input(shape=(1,), name=f.name,
                                    dtype=tf.float32 if f.type == "numeric" else tf.int64)
                for f in self.cfg.features}

    def encode(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Every feature as one flat vector: numeric values as they are, integer ids embedded."""
        parts = []
        for f in self.cfg.features:
            x = inputs[f.name]
            if f.type == "numeric":
                parts.append(tf.cast(x, tf.float32))
            else:
                parts.append(tf.reshape(self.embeddings[f.name](x),
                                        [-1, self.cfg.model.embedding_dim]))
        return tf.concat(parts, axis=1)

    def represent(self, x: tf.Tensor, training=None) -> tf.Tensor | dict[str, tf.Tensor]:
        raise NotImplementedError

    def call(self, inputs, training=None):
        return self.represent(self.encode(inputs), training=training)


class SharedBottom(Backbone):
    """One MLP shared by every head (`model.hidden_units`, activation, batch norm, dropout)."""

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int], **kwargs):
        super().__init__(cfg, cardinalities, **kwargs)
        m = cfg.model
        self.blocks = []
        for i, units in enumerate(m.hidden_units):
            block = [keras.layers.Dense(units, name=f"dense_{i}")]
            if m.batch_norm:
                block.append(keras.layers.BatchNormalization(name=f"bn_{i}"))
            block.append(keras.layers.Activation(m.activation, name=f"act_{i}"))
            if m.dropout:
                block.append(keras.layers.Dropout(m.dropout, name=f"dropout_{i}"))
            self.blocks.append(block)

    def represent(self, x, training=None):
        for block in self.blocks:
            for layer in block:
                x = layer(x, training=training) if isinstance(
                    layer, keras.layers.BatchNormalization | keras.layers.Dropout) else layer(x)
        return x


BACKBONES = {"shared_bottom": SharedBottom}


def make_backbone(cfg: PipelineConfig, cardinalities: dict[str, int]) -> Backbone:
    return BACKBONES["shared_bottom"](cfg, cardinalities)
