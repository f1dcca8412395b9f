"""Prediction heads: one Keras layer per head, one class per task type.

A head owns everything about one label column and knows nothing of other heads:
  * `transform_label` (a class method, run inside Transform's preprocessing_fn): raw label
    column -> encoded label and per-example weight (a missing label gets weight 0, so it adds
    nothing to this head's loss or metrics and the example still trains every other head);
  * as a layer: its own tower (`tower` hidden units) and output layer on top of what the
    backbone gives it; the layer is named after the head, which names the Keras output, the loss
    and metrics (`<head>_loss`, `<head>_<metric>`), the TFMA output and the serving output;
  * `loss`, `keras_metrics`: what Keras trains and logs for this output.
What depends only on the task (metric classes and directions, class names, the label rule as
plain Python) is in the task registry, `headwise.tasks`; transformed column names are in
`headwise.contract`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from headwise import tasks
from headwise.config import Head
from headwise.contract import (
    classes_vocabulary,
    label_key,
    label_stats_key,
    weight_key,
    zscore_key,
)

__all__ = ["HEAD_TYPES", "HeadLayer", "label_key", "make_head", "transform_label", "weight_key",
           "zscore_key"]


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


def label_equals(x: tf.Tensor, value: str) -> tf.Tensor:
    """Dense raw labels [batch] (any dtype) == a label value in `tasks.canonical` form: numbers
    compare by value (an int column's 1 equals "1"; a float column's 0.1 equals "0.1"), text
    after stripping; a text cell that is a number compares as that number."""
    number = re.match(tasks.NUMBER_PATTERN, value) is not None
    if x.dtype == tf.string:
        s = tf.strings.strip(x)
        if not number:
            return tf.equal(s, value)
        numeric = tf.strings.regex_full_match(s, tasks.NUMBER_PATTERN)
        as_number = tf.strings.to_number(tf.where(numeric, s, "0"), tf.float64)
        return numeric & tf.equal(as_number, float(value))
    if not number:
        return tf.zeros(tf.shape(x), tf.bool)
    if x.dtype.is_integer:
        v = float(value)
        return tf.equal(x, int(v)) if v.is_integer() else tf.zeros(tf.shape(x), tf.bool)
    return tf.equal(tf.cast(x, tf.float32), np.float32(float(value)))


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


SYMEXP_LIMIT = 40.0  # exp(40)^2 ~ 5.5e34: a squared error of the output stays finite in float32
TARGET_SPAN = 10.0  # a `log` head's output stays within the label's mean +- this many stds


class SymExp(keras.layers.Layer):
    """The `log` target's inverse (symexp): the head's output back in the label's units. The
    log-scale value is first clipped to [low, high] (the label's mean +- TARGET_SPAN stds on the
    log scale, from Transform): an untrained or diverging network cannot output a value the
    label never approaches (exp of a large z overflows the metrics, then stops training)."""

    def __init__(self, low: float = -SYMEXP_LIMIT, high: float = SYMEXP_LIMIT, **kwargs):
        super().__init__(**kwargs)
        self.low = float(max(low, -SYMEXP_LIMIT))
        self.high = float(min(high, SYMEXP_LIMIT))

    def call(self, z):
        return symexp(tf.clip_by_value(z, self.low, self.high))

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


class ScaledLoss(keras.losses.Loss):
    """A regression loss computed on (t(y_true) - t(y_pred)) / scale, where t is the target
    transform (identity, or symlog for a `log` target: the output is symexp of the network's
    value, so t(y_pred) is that value again): heads whose labels have different units (dollars,
    seconds) contribute comparably to the shared backbone."""

    def __init__(self, base: str, scale: float = 1.0, target: str = "none",
                 name: str | None = None, **kwargs):
        super().__init__(name=name or f"scaled_{base}", **kwargs)
        self.base, self.scale, self.target = base, float(scale), target
        self._base = REGRESSION_LOSSES[base]()

    def _t(self, y):
        return symlog(y) if self.target == "log" else y

    def call(self, y_true, y_pred):
        # The base loss's per-example values; this Loss applies weights and reduction.
        y_true = tf.cast(y_true, y_pred.dtype)
        return self._base.call(self._t(y_true) / self.scale, self._t(y_pred) / self.scale)

    def get_config(self):
        return {**super().get_config(), "base": self.base, "scale": self.scale,
                "target": self.target}


def poisson_deviance(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Per example, the graph form of `tasks.poisson_deviance`; [batch, 1] -> [batch]."""
    y = tf.cast(y_true, y_pred.dtype)
    mu = tf.maximum(y_pred, tasks.POISSON_MIN_RATE)
    return tf.reduce_mean(2.0 * (tf.math.xlogy(y, y / mu) - (y - mu)), axis=-1)


class PoissonDeviance(keras.metrics.MeanMetricWrapper):
    """The mean Poisson deviance of a count head (0: every count predicted exactly)."""

    def __init__(self, name: str = "poisson_deviance", dtype=None):
        super().__init__(poisson_deviance, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class HalfPoissonDeviance(keras.losses.Loss):
    """A count head's loss: half its Poisson deviance. The gradient is Keras's Poisson loss's
    (y_pred - y log y_pred, which differs by a term of the labels alone), but it is 0 at a
    perfect fit and never negative, so early stopping can compare it in relative terms
    (trainer.callbacks.StoppingCriterion)."""

    def call(self, y_true, y_pred):
        return 0.5 * poisson_deviance(y_true, y_pred)


# Keras metrics that tf_keras lacks, by the class name the task registry gives
# (`tasks.Metric.keras_class`).
KERAS_METRICS: dict[str, type[keras.metrics.Metric]] = {"PoissonDeviance": PoissonDeviance}


class HeadLayer(keras.layers.Layer):
    """One head: its tower and output layer. Subclasses set the task and the label rule."""

    task: str = ""
    activation: str | None = None

    def __init__(self, cfg: Head, stats: dict[str, float] | None = None,
                 tower_activation: str = "relu", stoppable: bool = False, **kwargs):
        super().__init__(name=cfg.name, **kwargs)
        self.cfg, self.stats = cfg, dict(stats or {})
        # trainer.head_stopping: a switch on the head's gradient into the backbone (without it
        # the graph is the one before the option, op for op, so a seed trains the same model)
        self.stoppable = stoppable
        self.tower = [keras.layers.Dense(units, activation=tower_activation,
                                         name=f"tower_{i}")
                      for i, units in enumerate(cfg.tower)]
        self.output_layers = self.make_output()

    @property
    def units(self) -> int:
        return len(tasks.of(self.cfg).class_names(self.cfg)) or 1

    def make_output(self) -> list[keras.layers.Layer]:
        """The layers after the tower, in order; the last gives the head's output."""
        return [keras.layers.Dense(self.units, activation=self.activation, name="output")]

    def build(self, input_shape):
        if self.stoppable:
            # 1: the head's gradient reaches the shared backbone; 0: it trains its own layers
            # only (trainer.callbacks.HeadStopping closes it). Not trained.
            self.backbone_gradient = self.add_weight(name="backbone_gradient", shape=(),
                                                     initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, x):
        if self.stoppable:
            # The same value forward; backward, the gradient into the backbone times the switch.
            held = tf.stop_gradient(x)
            x = held + self.backbone_gradient * (x - held)
        for layer in (*self.tower, *self.output_layers):
            x = layer(x)
        return x

    # --- Transform -------------------------------------------------------------------------
    @classmethod
    def transform_label(cls, cfg: Head, raw: Any) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    # --- Training --------------------------------------------------------------------------
    def loss(self) -> keras.losses.Loss:
        raise NotImplementedError

    def keras_metrics(self) -> list[keras.metrics.Metric]:
        task = tasks.of(self.cfg)
        out = []
        for m in self.cfg.metrics:
            spec = task.metric(m)
            cls = KERAS_METRICS.get(spec.keras_class) or getattr(keras.metrics, spec.keras_class)
            out.append(cls(name=m, **spec.kwargs))
        return out


def symlog(x: tf.Tensor) -> tf.Tensor:
    """sign(x) log(1 + |x|): a skewed label's scale (the `log` target transform)."""
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def symexp(z: tf.Tensor) -> tf.Tensor:
    """The inverse of symlog, sign(z) (exp(|z|) - 1); |z| is capped at SYMEXP_LIMIT so that the
    output, and its square in a metric, cannot overflow float32."""
    return tf.sign(z) * tf.math.expm1(tf.minimum(tf.abs(z), SYMEXP_LIMIT))


def target_space(cfg: Head, y: tf.Tensor) -> tf.Tensor:
    """A label (or prediction) in label units -> the space the head's loss is computed in."""
    return symlog(y) if cfg.target == "log" else y


def numeric_label(cfg: Head, raw: Any) -> dict[str, tf.Tensor]:
    """A numeric label as it is (float32) and its weight; when its task asks for them
    (`tasks.Task.label_statistics`), also its z-score and the mean and std of the present values,
    in float64 at any scale (timestamps, 1e12, 1e-6), z computed in float64 too; the trainer
    reads mean and std back, bit for bit, from the label_stats_key column
    (trainer.model.regression_stats)."""
    y64 = tf.cast(to_dense(raw, tf.zeros([], raw.dtype)), tf.float64)
    out = {label_key(cfg.name): tf.cast(y64, tf.float32), weight_key(cfg.name): presence(raw)}
    if tasks.of(cfg).label_statistics(cfg):
        # In the target space: the statistics of log(1 + y) for a `log` target.
        y64 = target_space(cfg, y64)
        v = target_space(cfg, tf.cast(values(raw), tf.float64))
        mean = tft.mean(v, output_dtype=tf.float64)
        var = tft.var(v, output_dtype=tf.float64)
        std = tf.where(var > 0, tf.sqrt(var), tf.ones_like(var))
        out[zscore_key(cfg.name)] = tf.cast((y64 - mean) / std, tf.float32)
        bits = tf.bitcast(tf.stack([mean, std]), tf.int64)  # [2]: exact float64 bits
        out[label_stats_key(cfg.name)] = tf.tile(bits[None, :], [tf.shape(y64)[0], 1])
    return out


class RegressionHead(HeadLayer):
    task = "regression"

    @classmethod
    def transform_label(cls, cfg, raw):
        return numeric_label(cfg, raw)

    def make_output(self):
        inverse = []
        if self.cfg.target == "log":
            span = {}
            if self.cfg.normalize:
                mean, std = self.stats["mean"], self.stats["std"]
                span = {"low": mean - TARGET_SPAN * std, "high": mean + TARGET_SPAN * std}
            inverse = [SymExp(name="from_log", **span)]
        if not self.cfg.normalize:
            return [keras.layers.Dense(1, name="output"), *inverse]
        # A normalised output, mapped back to the target space, then to label units.
        return [keras.layers.Dense(1, name="output_z"),
                Affine(self.stats["std"], self.stats["mean"], name="to_label_units"), *inverse]

    def loss(self):
        if self.cfg.normalize:
            return ScaledLoss(self.cfg.loss, self.stats["std"], self.cfg.target,
                              name=f"{self.name}_loss_fn")
        if self.cfg.target == "log":
            return ScaledLoss(self.cfg.loss, 1.0, self.cfg.target, name=f"{self.name}_loss_fn")
        return REGRESSION_LOSSES[self.cfg.loss]()


class CountHead(HeadLayer):
    """A Poisson model with a log link: the output layer gives the log rate, started at the log
    of the training mean (from Transform), and the head outputs its exponential, the expected
    count in the label's units."""

    task = "count"

    @classmethod
    def transform_label(cls, cfg, raw):
        return numeric_label(cfg, raw)

    def make_output(self):
        start = float(np.log(max(self.stats.get("mean", 1.0), tasks.POISSON_MIN_RATE)))
        return [keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(start),
                                   name="output_log_rate"),
                keras.layers.Activation("exponential", name="expected_count")]

    def loss(self):
        return HalfPoissonDeviance(name=f"{self.name}_loss_fn")


class BinaryHead(HeadLayer):
    task = "binary"
    activation = "sigmoid"

    @property
    def units(self) -> int:
        return 1  # P(positive); the Classify signature adds its complement

    @classmethod
    def transform_label(cls, cfg, raw):
        # The graph form of tasks.BinaryTask.encode.
        x = to_dense(raw, tf.zeros([], raw.dtype))
        weight = presence(raw)
        if cfg.positive_if is not None:
            op, number = cfg.positive_if
            if x.dtype == tf.string:  # text cells that are numbers; other text: missing
                s = tf.strings.strip(x)
                numeric = tf.strings.regex_full_match(s, tasks.NUMBER_PATTERN)
                weight = weight * tf.cast(numeric, tf.float32)
                x = tf.strings.to_number(tf.where(numeric, s, "0"), tf.float32)
            if x.dtype.is_integer:
                y = tasks.compare(op, tf.cast(x, tf.float64), number)
            else:  # float32 values against the threshold as float32 (tasks.threshold_holds)
                y = tasks.compare(op, tf.cast(x, tf.float32), np.float32(number))
            y = tf.cast(y, tf.float32)
        elif cfg.positive is not None:
            text = x if x.dtype != tf.string else tf.strings.lower(x)
            y = tf.cast(tf.reduce_any([label_equals(text, p.lower()) for p in cfg.positive],
                                      axis=0), tf.float32)
        elif x.dtype == tf.string:
            lower = tf.strings.lower(x)
            on = tf.reduce_any([label_equals(lower, t) for t in tasks.TRUE], axis=0)
            off = tf.reduce_any([label_equals(lower, t) for t in tasks.FALSE], axis=0)
            y = tf.cast(on, tf.float32)
            weight = weight * tf.cast(on | off, tf.float32)  # other text: missing
        else:
            y = tf.cast(x, tf.float32)
        return {label_key(cfg.name): y, weight_key(cfg.name): weight}

    def loss(self):
        return keras.losses.BinaryCrossentropy()


def label_text(x: tf.Tensor) -> tf.Tensor:
    """Dense raw labels [batch] as the text that names a learned class: text stripped, whole
    numbers without a decimal point (an int column's 3 and a float column's 3.0 are "3")."""
    if x.dtype == tf.string:
        return tf.strings.strip(x)
    if x.dtype.is_integer:
        return tf.strings.as_string(x)
    whole = tf.equal(x, tf.round(x)) & (tf.abs(x) < 2.0 ** 53)
    return tf.where(whole, tf.strings.as_string(tf.cast(x, tf.int64)),
                    tf.strings.as_string(x, shortest=True))


class MulticlassHead(HeadLayer):
    task = "multiclass"
    activation = "softmax"

    @classmethod
    def _learned_classes(cls, cfg, raw):
        """Classes learned from the data: one vocabulary (most frequent first, at most
        `top_k`) and one lookup, however many classes; a value outside it is `other_class`,
        else a missing label."""
        text = label_text(to_dense(raw, tf.zeros([], raw.dtype)))
        present = presence(raw) > 0
        name = classes_vocabulary(cfg.name)
        vocab = tft.vocabulary(tf.boolean_mask(text, present), top_k=cfg.top_k,
                               vocab_filename=name)
        idx = tft.apply_vocabulary(text, vocab, default_value=-1)
        known = idx >= 0
        weight = presence(raw)
        if cfg.other_class is None:
            weight = weight * tf.cast(known, tf.float32)
            idx = tf.maximum(idx, 0)
        else:
            size = tft.experimental.get_vocabulary_size_by_name(name)
            idx = tf.where(known, idx, tf.cast(size, tf.int64))
        return {label_key(cfg.name): idx, weight_key(cfg.name): weight}

    @classmethod
    def transform_label(cls, cfg, raw):
        if cfg.learns_classes:
            return cls._learned_classes(cfg, raw)
        # The graph form of tasks.MulticlassTask.encode.
        x = to_dense(raw, tf.zeros([], raw.dtype))
        other = len(cfg.classes)  # index of other_class, or "unknown" when there is none
        idx = tf.fill(tf.shape(x), tf.constant(other, tf.int64))
        for i, values in enumerate(cfg.values_of_classes()):
            match = tf.reduce_any([label_equals(x, v) for v in values], axis=0)
            idx = tf.where(match, tf.constant(i, tf.int64), idx)
        weight = presence(raw)
        if cfg.other_class is None:
            # A value outside `classes` with no catch-all class counts as a missing label.
            weight = weight * tf.cast(idx < other, tf.float32)
            idx = tf.minimum(idx, other - 1)
        return {label_key(cfg.name): idx, weight_key(cfg.name): weight}

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy()


class MultilabelHead(HeadLayer):
    task = "multilabel"
    activation = "sigmoid"

    @classmethod
    def transform_label(cls, cfg, raw):
        # The graph form of tasks.MultilabelTask.encode.
        tokens = tf.strings.strip(tf.strings.split(to_dense(as_text(raw), ""), sep=cfg.delimiter))
        hot = [tf.reduce_any(tf.equal(tokens, c), axis=1) for c in cfg.classes]
        multi_hot = tf.cast(tf.stack(hot, axis=1), tf.float32)  # [batch, classes]
        return {label_key(cfg.name): multi_hot, weight_key(cfg.name): presence(raw)}

    def keras_metrics(self):
        # AUC per class, averaged (as TFMA's macro average), not one AUC over all cells.
        return [keras.metrics.AUC(name=m, multi_label=True, num_labels=self.units)
                if m == "auc" else metric
                for m, metric in zip(self.cfg.metrics, super().keras_metrics(), strict=True)]

    def loss(self):
        return keras.losses.BinaryCrossentropy()


HEAD_TYPES: dict[str, type[HeadLayer]] = {
    h.task: h for h in (RegressionHead, CountHead, BinaryHead, MulticlassHead, MultilabelHead)}
assert set(HEAD_TYPES) == set(tasks.TASKS), "every task in headwise.tasks needs a head class"


def make_head(cfg: Head, stats: dict[str, float] | None = None,
              tower_activation: str = "relu", stoppable: bool = False) -> HeadLayer:
    return HEAD_TYPES[cfg.task](cfg, stats, tower_activation, stoppable)


def transform_label(cfg: Head, raw: Any) -> dict[str, tf.Tensor]:
    """The head's encoded label and weight columns, for Transform's preprocessing_fn."""
    return HEAD_TYPES[cfg.task].transform_label(cfg, raw)
