"""Prediction heads: one small class per task type.

A head owns everything about one label column and knows nothing of other heads:
  * `transform_label`: raw label column -> transformed label and per-example weight (inside
    Transform's preprocessing_fn; a missing label gets weight 0, so it adds nothing to this
    head's loss or metrics and the example still trains every other head);
  * `output`: the head's output layer on top of the backbone (or its own tower);
  * `loss`, `keras_metrics`: what Keras compiles for this output;
  * `tfma_metrics`: the same metrics by name for the Evaluator.

Transformed column names are derived from the head name (`label_key`, `weight_key`), which keys
everything downstream: the Keras output, the loss, the TFMA output name and the serving output.
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from headwise.config import Head


def label_key(head_name: str) -> str:
    return f"label__{head_name}"


def weight_key(head_name: str) -> str:
    return f"weight__{head_name}"


def zscore_key(head_name: str) -> str:
    return f"zlabel__{head_name}"


def to_dense(x: Any, default: Any) -> tf.Tensor:
    """A raw Transform input (SparseTensor [batch, <=1] or dense [batch, 1]) -> dense [batch]."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def presence(x: Any) -> tf.Tensor:
    """1.0 where the raw column has a value, else 0.0; shape [batch]."""
    if isinstance(x, tf.sparse.SparseTensor):
        ones = tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.float32),
                               [x.dense_shape[0], 1])
        return tf.reshape(tf.sparse.to_dense(ones), [-1])
    return tf.ones([tf.shape(x)[0]], tf.float32)


def as_text(x: Any) -> Any:
    """A raw column (sparse or dense, any dtype) as strings, keeping its sparsity."""
    if x.dtype == tf.string:
        return x
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def values(x: Any) -> tf.Tensor:
    """The present values of a raw column, flat."""
    return x.values if isinstance(x, tf.sparse.SparseTensor) else tf.reshape(x, [-1])


class Affine(keras.layers.Layer):
    """y = x * scale + shift with constants: maps a normalised output back to label units."""

    def __init__(self, scale: float, shift: float, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.shift = float(scale), float(shift)

    def call(self, x):
        return x * self.scale + self.shift

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "shift": self.shift}


REGRESSION_LOSSES = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
                     "huber": keras.losses.Huber}


class ScaledLoss(keras.losses.Loss):
    """A regression loss computed on (y_true - y_pred) / scale, so that heads whose labels have
    different units (dollars, seconds) contribute comparably to the shared backbone."""

    def __init__(self, base: str, scale: float, name: str | None = None, **kwargs):
        super().__init__(name=name or f"scaled_{base}", **kwargs)
        self.base, self.scale = base, float(scale)
        self._base = REGRESSION_LOSSES[base]()

    def call(self, y_true, y_pred):
        # The base loss's per-example values; this Loss applies weights and reduction.
        return self._base.call(tf.cast(y_true, y_pred.dtype) / self.scale, y_pred / self.scale)

    def get_config(self):
        return {**super().get_config(), "base": self.base, "scale": self.scale}


# metric name -> (Keras class, kwargs, higher_is_better), by task
_METRICS: dict[str, dict[str, tuple[str, dict, bool]]] = {
    "regression": {
        "mae": ("MeanAbsoluteError", {}, False),
        "rmse": ("RootMeanSquaredError", {}, False),
        "mse": ("MeanSquaredError", {}, False),
    },
    "binary": {
        "auc": ("AUC", {}, True),
        "pr_auc": ("AUC", {"curve": "PR"}, True),
        "accuracy": ("BinaryAccuracy", {}, True),
        "precision": ("Precision", {}, True),
        "recall": ("Recall", {}, True),
    },
    "multiclass": {
        "accuracy": ("SparseCategoricalAccuracy", {}, True),
        "top2_accuracy": ("SparseTopKCategoricalAccuracy", {"k": 2}, True),
    },
    "multilabel": {
        "auc": ("AUC", {}, True),
        "accuracy": ("BinaryAccuracy", {}, True),
        "precision": ("Precision", {}, True),
        "recall": ("Recall", {}, True),
    },
}


def higher_is_better(task: str, metric: str) -> bool:
    return _METRICS[task][metric][2]


class BaseHead:
    task: str = ""

    def __init__(self, cfg: Head):
        self.cfg = cfg
        self.name = cfg.name

    # --- Transform -------------------------------------------------------------------------
    def transform_label(self, raw: Any) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    # --- Model -----------------------------------------------------------------------------
    @property
    def units(self) -> int:
        return 1

    def output(self, x: tf.Tensor, stats: dict[str, float]) -> tf.Tensor:
        """The head's output named after the head. `stats` holds values learned in Transform."""
        return keras.layers.Dense(self.units, activation=self.activation, name=self.name)(x)

    activation: str | None = None

    def loss(self, stats: dict[str, float]) -> keras.losses.Loss:
        raise NotImplementedError

    def keras_metrics(self) -> list[keras.metrics.Metric]:
        out = []
        for m in self.cfg.metrics:
            cls, kwargs, _ = _METRICS[self.task][m]
            out.append(getattr(keras.metrics, cls)(name=m, **kwargs))
        return out

    # --- Evaluation ------------------------------------------------------------------------
    def tfma_metric(self, metric: str) -> tuple[str, str]:
        """(Keras class name, JSON config) for TFMA's MetricConfig."""
        cls, kwargs, _ = _METRICS[self.task][metric]
        return cls, json.dumps({"name": metric, **kwargs})


class RegressionHead(BaseHead):
    task = "regression"

    def transform_label(self, raw):
        present = values(raw)
        y = tf.cast(to_dense(raw, tf.zeros([], raw.dtype)), tf.float32)
        out = {label_key(self.name): y, weight_key(self.name): presence(raw)}
        if self.cfg.normalize:
            # Learned over present values only; the trainer reads mean/std back from the
            # transform graph (see trainer.model.regression_stats).
            v = tf.cast(present, tf.float32)
            mean, var = tft.mean(v), tft.var(v)
            std = tf.where(var > 0, tf.sqrt(var), tf.ones_like(var))
            out[zscore_key(self.name)] = (y - mean) / std
        return out

    def output(self, x, stats):
        if not self.cfg.normalize:
            return keras.layers.Dense(1, name=self.name)(x)
        z = keras.layers.Dense(1, name=f"{self.name}__z")(x)
        return Affine(stats["std"], stats["mean"], name=self.name)(z)

    def loss(self, stats):
        if self.cfg.normalize:
            return ScaledLoss(self.cfg.loss, stats["std"], name=f"{self.name}_loss_fn")
        return REGRESSION_LOSSES[self.cfg.loss]()


class BinaryHead(BaseHead):
    task = "binary"
    activation = "sigmoid"

    def transform_label(self, raw):
        y = tf.cast(to_dense(raw, tf.zeros([], raw.dtype)), tf.float32)
        return {label_key(self.name): y, weight_key(self.name): presence(raw)}

    def loss(self, stats):
        return keras.losses.BinaryCrossentropy()


class MulticlassHead(BaseHead):
    task = "multiclass"
    activation = "softmax"

    @property
    def units(self) -> int:
        return len(self.cfg.class_names)

    def transform_label(self, raw):
        s = tf.strings.strip(to_dense(as_text(raw), ""))
        other = len(self.cfg.classes)  # index of other_class, or "unknown" when there is none
        idx = tf.fill(tf.shape(s), tf.constant(other, tf.int64))
        for i, c in enumerate(self.cfg.classes):
            idx = tf.where(tf.equal(s, c), tf.constant(i, tf.int64), idx)
        weight = presence(raw)
        if self.cfg.other_class is None:
            # A value outside `classes` with no catch-all class counts as a missing label.
            weight = weight * tf.cast(idx < other, tf.float32)
            idx = tf.minimum(idx, other - 1)
        return {label_key(self.name): idx, weight_key(self.name): weight}

    def loss(self, stats):
        return keras.losses.SparseCategoricalCrossentropy()


class MultilabelHead(BaseHead):
    """Several classes per example: the label column holds them joined by `delimiter`
    (e.g. "news|sports"); the output is one sigmoid per class."""

    task = "multilabel"
    activation = "sigmoid"

    @property
    def units(self) -> int:
        return len(self.cfg.classes)

    def transform_label(self, raw):
        tokens = tf.strings.strip(
            tf.strings.split(to_dense(as_text(raw), ""), sep=self.cfg.delimiter))
        hot = [tf.reduce_any(tf.equal(tokens, c), axis=1) for c in self.cfg.classes]
        multi_hot = tf.cast(tf.stack(hot, axis=1), tf.float32)  # [batch, classes]
        return {label_key(self.name): multi_hot, weight_key(self.name): presence(raw)}

    def keras_metrics(self):
        # AUC per class, averaged (as TFMA's macro average), not one AUC over all cells.
        return [keras.metrics.AUC(name=m, multi_label=True, num_labels=self.units)
                if m == "auc" else metric
                for m, metric in zip(self.cfg.metrics, super().keras_metrics(), strict=True)]

    def loss(self, stats):
        return keras.losses.BinaryCrossentropy()


HEAD_TYPES = {h.task: h for h in (RegressionHead, BinaryHead, MulticlassHead, MultilabelHead)}


def make_head(cfg: Head) -> BaseHead:
    return HEAD_TYPES[cfg.task](cfg)
