"""Backbones: the shared part of the multi-head model, one replaceable object per architecture.

The interface every backbone implements (`Backbone`):
  * `inputs()`: the Keras Inputs it reads, one per transformed feature, by feature name (an
    image feature: its decoded image, float32 [batch, height, width, channels]);
  * `encode`: every feature as one flat vector: numeric values, embedded integer ids, and each
    image feature's embedding from the pretrained application (`trainer.images.ImageEncoder`),
    concatenated, so that any architecture below combines images with the tabular features;
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
from headwise.config import features as features_lib
from headwise.config.model import BACKBONE_TYPES
from trainer import images as images_lib


class PiecewiseLinear(keras.layers.Layer):
    """A numeric feature's quantile position u in [0, 1] ([batch, 1]) -> `bins` piecewise-linear
    components clip(u * bins - i, 0, 1), i = 0 .. bins-1 (Gorishniy et al. 2022's PLE with
    quantile bins: Transform's quantile position makes every bin one `1 / bins` wide), then a
    dense layer of `units` with ReLU: [batch, units]."""

    def __init__(self, bins: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.bins, self.units = int(bins), int(units)
        self.dense = keras.layers.Dense(self.units, activation="relu", name="dense")

    def components(self, u: tf.Tensor) -> tf.Tensor:
        steps = tf.range(self.bins, dtype=tf.float32)
        return tf.clip_by_value(u * float(self.bins) - steps, 0.0, 1.0)

    def call(self, u):
        return self.dense(self.components(tf.reshape(u, [-1, 1])))

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "units": self.units}


class Backbone(keras.layers.Layer):
    """Transformed features -> what the heads read. Subclasses implement `represent`."""

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int],
                 train_rows: int | None = None, **kwargs):
        """`train_rows`: the training split's size, which caps piecewise components
        (`features.piecewise_components`); None: every feature's `bins`."""
        super().__init__(name=kwargs.pop("name", "backbone"), **kwargs)
        self.cfg, self.cardinalities = cfg, dict(cardinalities)
        m = cfg.model
        self.embeddings = {
            f.name: keras.layers.Embedding(self.cardinalities[f.name], m.embedding_dim,
                                           name=f"embed_{features_lib.graph_name(f.name)}")
            for f in cfg.features if f.type in ("categorical", "bucketized")}
        self.image_encoders = {f.name: images_lib.ImageEncoder(cfg, f)
                               for f in cfg.image_features}
        self.piecewise = {f.name: PiecewiseLinear(features_lib.piecewise_components(
                              f, train_rows), m.embedding_dim,
                              name=f"ple_{features_lib.graph_name(f.name)}")
                          for f in cfg.features
                          if f.type == "numeric" and f.encoding == "piecewise"}

    def inputs(self) -> dict[str, keras.Input]:
        """One Keras Input per transformed feature: [batch, 1], or an image feature's decoded
        [batch, height, width, channels]."""
        def one(f):
            if f.type == "image":
                return keras.Input(shape=(*f.size, f.channels),
                                   name=features_lib.graph_name(f.name), dtype=tf.float32)
            return keras.Input(shape=(1,), name=features_lib.graph_name(f.name),
                               dtype=tf.float32 if f.type == "numeric" else tf.int64)
        out = {f.name: one(f) for f in self.cfg.features}
        for f in self.cfg.features:
            for key in f.side_inputs():
                out[key] = keras.Input(shape=(1,), name=features_lib.graph_name(key),
                                       dtype=tf.float32)
        return out

    def encode(self, inputs: dict[str, tf.Tensor], training=None) -> tf.Tensor:
        """Every feature as one flat vector: numeric values as they are, integer ids embedded,
        images through their encoder."""
        parts = []
        for f in self.cfg.features:
            x = inputs[f.name]
            if f.type == "numeric":
                x = tf.cast(x, tf.float32)
                parts.append(self.piecewise[f.name](x) if f.name in self.piecewise else x)
                parts.extend(tf.cast(inputs[key], tf.float32) for key in f.side_inputs())
            elif f.type == "image":
                parts.append(self.image_encoders[f.name](x, training=training))
            else:
                parts.append(tf.reshape(self.embeddings[f.name](x),
                                        [-1, self.cfg.model.embedding_dim]))
        return tf.concat(parts, axis=1)

    def represent(self, x: tf.Tensor, training=None) -> tf.Tensor | dict[str, tf.Tensor]:
        raise NotImplementedError

    def shared_variables(self) -> list[tf.Variable]:
        """The last weights that every head's loss reaches (GradNorm measures each head's
        gradient norm on them). Subclasses name their last shared layer; by default, all."""
        return list(self.trainable_weights)

    def call(self, inputs, training=None):
        return self.represent(self.encode(inputs, training=training), training=training)


def mlp_blocks(cfg: PipelineConfig, prefix: str = "") -> list[list[keras.layers.Layer]]:
    """`model.hidden_units` dense blocks (dense, batch norm, activation, dropout)."""
    m = cfg.model
    blocks = []
    for i, units in enumerate(m.hidden_units):
        block = [keras.layers.Dense(units, name=f"{prefix}dense_{i}")]
        if m.batch_norm:
            block.append(keras.layers.BatchNormalization(name=f"{prefix}bn_{i}"))
        block.append(keras.layers.Activation(m.activation, name=f"{prefix}act_{i}"))
        if m.dropout:
            block.append(keras.layers.Dropout(m.dropout, name=f"{prefix}dropout_{i}"))
        blocks.append(block)
    return blocks


def run_blocks(blocks: list[list[keras.layers.Layer]], x: tf.Tensor, training=None) -> tf.Tensor:
    for block in blocks:
        for layer in block:
            x = layer(x, training=training) if isinstance(
                layer, keras.layers.BatchNormalization | keras.layers.Dropout) else layer(x)
    return x


class SharedBottom(Backbone):
    """One MLP shared by every head (`model.hidden_units`, activation, batch norm, dropout)."""

    kind = "shared_bottom"  # its name in the config (model.backbone)

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int], **kwargs):
        super().__init__(cfg, cardinalities, **kwargs)
        self.blocks = mlp_blocks(cfg)

    def represent(self, x, training=None):
        return run_blocks(self.blocks, x, training)

    def shared_variables(self):
        return list(self.blocks[-1][0].trainable_weights) if self.blocks else \
            super().shared_variables()


class _Gate(keras.layers.Layer):
    """A softmax over experts, computed from the gate's input: sum_e g_e(x) * expert_e."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(n, activation="softmax", name="weights")

    def call(self, x, experts: list[tf.Tensor]):
        g = self.dense(x)  # [batch, n]
        return tf.einsum("bn,nbd->bd", g, tf.stack(experts))


class MMoE(Backbone):
    """Multi-gate mixture of experts (Ma et al., KDD 2018): `model.experts` MLPs on the encoded
    features, and per head a softmax gate that mixes them into that head's input."""

    kind = "mmoe"  # its name in the config (model.backbone)

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int], **kwargs):
        super().__init__(cfg, cardinalities, **kwargs)
        self.experts = [mlp_blocks(cfg, f"expert_{e}_") for e in range(cfg.model.experts)]
        self.gates = {h.name: _Gate(cfg.model.experts, name=f"gate_{h.name}")
                      for h in cfg.heads}

    def represent(self, x, training=None):
        outs = [run_blocks(blocks, x, training) for blocks in self.experts]
        return {head: gate(x, outs) for head, gate in self.gates.items()}

    def shared_variables(self):
        """Every expert's last dense layer (the gates are per head)."""
        if not self.cfg.model.hidden_units:
            return super().shared_variables()
        return [w for blocks in self.experts for w in blocks[-1][0].trainable_weights]


class PLE(Backbone):
    """Progressive layered extraction (Tang et al., RecSys 2020): per extraction layer,
    `model.experts` shared experts and `model.task_experts` experts per head. A head's gate mixes
    its own experts with the shared ones; between layers a shared gate mixes them all. Each
    expert is a `model.hidden_units` MLP."""

    kind = "ple"  # its name in the config (model.backbone)

    def __init__(self, cfg: PipelineConfig, cardinalities: dict[str, int], **kwargs):
        super().__init__(cfg, cardinalities, **kwargs)
        m, heads = cfg.model, [h.name for h in cfg.heads]
        self.heads = heads
        self.layers_ = []
        for level in range(m.extraction_layers):
            last = level == m.extraction_layers - 1
            self.layers_.append({
                "shared": [mlp_blocks(cfg, f"l{level}_shared_{e}_") for e in range(m.experts)],
                "task": {h: [mlp_blocks(cfg, f"l{level}_{h}_{e}_")
                             for e in range(m.task_experts)] for h in heads},
                "gates": {h: _Gate(m.task_experts + m.experts, name=f"l{level}_gate_{h}")
                          for h in heads},
                "shared_gate": None if last else _Gate(
                    m.experts + m.task_experts * len(heads), name=f"l{level}_gate_shared")})

    def represent(self, x, training=None):
        task_in = {h: x for h in self.heads}
        shared_in = x
        for layer in self.layers_:
            shared = [run_blocks(b, shared_in, training) for b in layer["shared"]]
            own = {h: [run_blocks(b, task_in[h], training) for b in layer["task"][h]]
                   for h in self.heads}
            out = {h: layer["gates"][h](task_in[h], own[h] + shared) for h in self.heads}
            if layer["shared_gate"] is not None:
                everything = [e for h in self.heads for e in own[h]] + shared
                shared_in = layer["shared_gate"](shared_in, everything)
            task_in = out
        return task_in

    def shared_variables(self):
        """The last extraction layer's shared experts' last dense layers."""
        if not self.cfg.model.hidden_units:
            return super().shared_variables()
        return [w for blocks in self.layers_[-1]["shared"]
                for w in blocks[-1][0].trainable_weights]


BACKBONES: dict[str, type[Backbone]] = {b.kind: b for b in (SharedBottom, MMoE, PLE)}
# The config accepts exactly these names (headwise.config.model.BACKBONE_TYPES, TF-free).
if set(BACKBONES) != set(BACKBONE_TYPES):
    raise ImportError(f"trainer.backbones.BACKBONES {sorted(BACKBONES)} and "
                      f"headwise.config.model.BACKBONE_TYPES {sorted(BACKBONE_TYPES)} differ")


def make_backbone(cfg: PipelineConfig, cardinalities: dict[str, int],
                  train_rows: int | None = None) -> Backbone:
    return BACKBONES[cfg.model.backbone](cfg, cardinalities, train_rows=train_rows)
