"""The shared-backbone multi-head Keras model.

    transformed features --> backbone --+--> head (tower, output) --> head A
                                        +--> head (tower, output) --> head B ...

`MultiHeadModel(backbone, heads)`: one replaceable backbone (`trainer.backbones`; it gives one
tensor every head reads, or one per head) and one head layer per head (`trainer.heads`), named
after the head. A head reads the backbone's output, never another head's. Keras logs
`<head>_loss` and `<head>_<metric>`, and the same names flow into the serving outputs and the
Evaluator.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from headwise import tasks
from headwise.config import PipelineConfig
from headwise.config import features as features_lib
from headwise.contract import label_stats_key
from trainer import autograph, balancing
from trainer import backbones as backbones_lib
from trainer import heads as heads_lib

autograph.keep_unconverted()  # before any model is built or traced


def feature_cardinalities(cfg: PipelineConfig, tft_output: tft.TFTransformOutput
                          ) -> dict[str, int]:
    """Number of distinct ids of each integer feature, read from Transform's output."""
    sizes = {}
    for f in cfg.features:
        if f.type == "categorical":
            vocab = features_lib.graph_name(f.name)  # Transform's vocabulary file
            sizes[f.name] = tft_output.vocabulary_size_by_name(vocab) + f.oov_buckets
        elif f.type == "bucketized":
            sizes[f.name] = f.buckets + 1  # quantile bucketing may produce fewer, never more
    return sizes


class NonFiniteRecord(tf.Module):
    """Which losses were NaN or infinite at the first step (training or validation) where any
    was: one flag per head, then one for the total.

    It is set inside that step, from the losses computed with weights that were still finite:
    once the step's NaN gradients reach the shared backbone every head reads spoiled weights, so
    a check at the end of the batch or epoch could no longer tell which head went first. Kept
    across epochs (Keras resets metrics). Per-replica under a distribution strategy, summed on
    read, so a head that went bad on any replica is flagged.
    """

    def __init__(self, heads: list[str]):
        super().__init__(name="non_finite")
        self.names = [*heads, None]  # None: the total loss
        per_replica = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM)
        self.nan = tf.Variable(tf.zeros([len(self.names)]), name="nan", **per_replica)
        self.inf = tf.Variable(tf.zeros([len(self.names)]), name="inf", **per_replica)

    def record(self, head_losses: list[tf.Tensor], total: tf.Tensor) -> None:
        """Flags this step's non-finite losses if no earlier step had one."""
        values = tf.cast(tf.stack([*head_losses, total]), tf.float32)
        first = tf.logical_and(tf.reduce_all(tf.equal(self.nan + self.inf, 0.0)),
                               tf.logical_not(tf.reduce_all(tf.math.is_finite(values))))
        self.nan.assign(tf.where(first, tf.cast(tf.math.is_nan(values), tf.float32), self.nan))
        self.inf.assign(tf.where(first, tf.cast(tf.math.is_inf(values), tf.float32), self.inf))

    def first(self) -> dict[str | None, str]:
        """{head name (None for the total): "nan" or "inf"} at the first non-finite step; empty
        while every loss has been finite."""
        nan, inf = self.nan.read_value().numpy(), self.inf.read_value().numpy()
        return {name: "nan" if n > 0 else "inf"
                for name, n, i in zip(self.names, nan, inf, strict=True) if n > 0 or i > 0}


def _replica_share(total: tf.Tensor) -> tf.Tensor:
    """A replica's share of the loss to minimise: under a strategy with N replicas in sync the
    optimizer sums their gradients, so each contributes its batch mean over N, and the sum is
    the gradient of the global batch's mean (what Model.compile's losses do). One replica: the
    loss itself."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return total if replicas == 1 else total / replicas


class MultiHeadModel(keras.Model):
    """A functional model whose training loss combines one loss per head
    (`model.loss_balancing`; the formulas are in `trainer.balancing`).

    L_h is head h's loss with its missing labels weighted 0 (an all-missing batch gives 0, not
    NaN). Under `uncertainty`, s_h = log(sigma_h^2) is a learned log-variance per head, clipped
    to [-LOG_VAR_LIMIT, LOG_VAR_LIMIT] so that exp(-s_h) can neither overflow nor vanish. Under
    `dwa` and `gradnorm`, `adaptive_weights` holds the lambdas, in head order.

    Logged: `loss` (what is minimised), `<head>_loss` per head, and `weighted_loss` =
    sum_h w_h L_h, the same quantity under every balancing: early stopping watches its
    validation value, which an adaptive method cannot lower by moving weight between heads.
    """

    LOG_VAR_LIMIT = 8.0

    def __init__(self, backbone: backbones_lib.Backbone, heads: list[heads_lib.HeadLayer],
                 loss_balancing: str = "static", loss_normalization: str = "batch",
                 learning_rate: float = 0.001, **kwargs):
        inputs = backbone.inputs()
        shared = backbone(inputs)
        outputs = {h.name: h(shared[h.name] if isinstance(shared, dict) else shared)
                   for h in heads}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone, self.heads = backbone, {h.name: h for h in heads}
        self.head_names = [h.name for h in heads]
        self.head_losses = {h.name: h.loss() for h in heads}
        for loss in self.head_losses.values():
            # Each head's loss is its mean over this replica's batch, as Model.compile's losses
            # are; compute_loss then takes the replicas' share (Keras's own rule).
            loss._allow_sum_over_batch_size = True  # noqa: SLF001
        self.head_loss_weights = {h.name: h.cfg.loss_weight for h in heads}
        if loss_balancing not in balancing.METHODS:
            raise ValueError(f"unknown loss balancing {loss_balancing!r}")
        self.loss_balancing = loss_balancing
        self.loss_normalization = loss_normalization
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.weighted_loss_tracker = keras.metrics.Mean(name="weighted_loss")
        self.head_loss_trackers = {h: keras.metrics.Mean(name=f"{h}_loss")
                                   for h in self.head_names}
        self.log_vars = {}
        if loss_balancing == "uncertainty":
            self.log_vars = {h: self.add_weight(name=f"log_var_{h}", shape=(),
                                                initializer="zeros", trainable=True)
                             for h in self.head_names}
        self.adaptive_weights = self.gradnorm = None
        if loss_balancing in balancing.ADAPTIVE:
            self.adaptive_weights = self.add_weight(
                name="adaptive_weights", shape=(len(heads),), initializer="ones",
                trainable=False)
        if loss_balancing == "gradnorm":
            self.gradnorm = balancing.GradNorm(self.adaptive_weights, learning_rate)
        self.non_finite = NonFiniteRecord(self.head_names)

    def head_loss_terms(self, y, y_pred, sample_weight=None) -> dict[str, tf.Tensor]:
        """Each head's loss on this batch, missing labels weighted out. Keras divides the
        weighted sum by the batch size; with `loss_normalization: present` it is divided by
        the head's present labels instead (their mean; 0 when the batch has none)."""
        sample_weight = sample_weight or {}
        out = {}
        for h in self.head_names:
            w = sample_weight.get(h)
            loss = self.head_losses[h](y[h], y_pred[h], sample_weight=w)
            if self.loss_normalization == "present" and w is not None:
                w = tf.cast(w, loss.dtype)
                loss = loss * tf.math.divide_no_nan(tf.cast(tf.size(w), loss.dtype),
                                                    tf.reduce_sum(w))
            out[h] = loss
        return out

    def _log_var(self, h):
        return tf.clip_by_value(self.log_vars[h], -self.LOG_VAR_LIMIT, self.LOG_VAR_LIMIT)

    def objective(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        """The total loss from the heads' losses, under the model's balancing; updates the
        loss trackers."""
        total = tf.constant(0.0)
        weighted = tf.constant(0.0)
        for i, (h, loss) in enumerate(terms.items()):
            self.head_loss_trackers[h].update_state(loss)
            w = self.head_loss_weights[h]
            weighted += w * loss
            if h in self.log_vars:
                s = self._log_var(h)
                total += w * (tf.exp(-s) * loss + s)
            elif self.adaptive_weights is not None:
                total += w * self.adaptive_weights[i] * loss
            else:
                total += w * loss
        if self.losses:
            total += tf.add_n(self.losses)
            weighted += tf.add_n(self.losses)
        self.non_finite.record([terms[h] for h in self.head_names], total)
        self.total_loss_tracker.update_state(total)
        self.weighted_loss_tracker.update_state(weighted)
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return _replica_share(self.objective(self.head_loss_terms(y, y_pred, sample_weight)))

    def train_step(self, data):
        """Keras's step; under `gradnorm`, also each head's gradient norm on the last shared
        weights, and GradNorm's update of the lambdas."""
        if self.gradnorm is None:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            terms = self.head_loss_terms(y, y_pred, sample_weight)
            total = _replica_share(self.objective(terms))
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        shared = self.backbone.shared_variables()
        norms = tf.stack([tf.linalg.global_norm(tape.gradient(
            terms[h], shared, unconnected_gradients=tf.UnconnectedGradients.ZERO))
            for h in self.head_names])
        del tape
        self.gradnorm.update(norms, tf.stack([terms[h] for h in self.head_names]))
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def balancing_callbacks(self) -> list[keras.callbacks.Callback]:
        """The callbacks that training under this model's balancing needs."""
        if self.loss_balancing == "dwa":
            return [balancing.DynamicWeightAverage(self.head_names)]
        return []

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.weighted_loss_tracker,
                *self.head_loss_trackers.values(), *super().metrics]


def build_model(cfg: PipelineConfig, cardinalities: dict[str, int],
                stats: dict[str, dict[str, float]], total_steps: int | None = None,
                train_rows: int | None = None) -> MultiHeadModel:
    """The compiled multi-head model. `stats[head]` holds label statistics (regression).
    `total_steps`: the planned optimizer steps, which `model.schedule` spans (without them the
    learning rate is constant). `train_rows`: the training split's size (it caps piecewise
    components, `features.piecewise_components`).

    For a one-head config (`PipelineConfig.single_task`) this is the single-task model with the
    very same backbone, which is what benchmarks compare against.
    """
    # Backbone first, then the heads in config order: layers draw their initial weights in the
    # order they are made, so this order is what a seed reproduces.
    backbone = backbones_lib.make_backbone(cfg, cardinalities, train_rows)
    stoppable = cfg.trainer.head_stopping and len(cfg.heads) > 1
    heads = [heads_lib.make_head(h, stats.get(h.name, {}), cfg.model.activation, stoppable)
             for h in cfg.heads]
    model = MultiHeadModel(backbone, heads, loss_balancing=cfg.model.loss_balancing,
                           loss_normalization=cfg.model.loss_normalization,
                           learning_rate=cfg.model.learning_rate,
                           name=f"{cfg.name}_multihead")
    model.weight_decay = cfg.model.weight_decay
    return compile_model(model, learning_rate_schedule(cfg, total_steps), cfg.model.weight_decay)


def learning_rate_schedule(cfg: PipelineConfig, total_steps: int | None):
    """`model.learning_rate` under `model.schedule` over `total_steps` optimizer steps (one
    cycle; the schedule repeats for the next)."""
    m = cfg.model
    if m.schedule == "constant" or not total_steps:
        return m.learning_rate
    warmup = int(m.warmup * total_steps)
    # CosineDecay's warm-up goes linearly from initial_learning_rate to warmup_target.
    return Periodic(keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else m.learning_rate,
        decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=m.learning_rate if warmup else None, warmup_steps=warmup), total_steps)


class Periodic(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` over its first `period` steps, then again from its start: each cycle of a
    run with warm restarts (trainer.cycles) warms up and decays as the first did."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, period: int):
        self.schedule, self.period = schedule, int(period)

    def __call__(self, step):
        return self.schedule(step % self.period)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "period": self.period}

    @classmethod
    def from_config(cls, config):
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["period"])


def compile_model(model: MultiHeadModel, learning_rate, weight_decay: float = 0.0
                  ) -> MultiHeadModel:
    """(Re)compile with Adam (AdamW when `weight_decay` > 0; the uncertainty log-variances are
    not decayed) at `learning_rate` (a float or a schedule): after changing which weights train
    (the image fine-tune schedule) Keras must compile again for the change to take effect."""
    if weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["log_var_"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        weighted_metrics={h: layer.keras_metrics() for h, layer in model.heads.items()},
        run_eagerly=model._run_eagerly,  # noqa: SLF001 (a recompile keeps the setting)
    )
    return model


def unfreeze_images(model: MultiHeadModel, layers: int) -> int:
    """Unfreeze the top `layers` layers of every image feature's application (batch
    normalisation excepted); returns the application weights that now train."""
    return sum(encoder.unfreeze_top(layers)
               for encoder in model.backbone.image_encoders.values())


def regression_stats(cfg: PipelineConfig, tft_output: tft.TFTransformOutput
                     ) -> dict[str, dict[str, float]]:
    """Mean and std of each label whose task asks Transform for them
    (`tasks.Task.label_statistics`: a normalised regression label, a count), exactly as
    Transform's analyzers computed them in float64: the graph's label_stats_key output holds
    their bits (it depends on no input, so one probe row reads it)."""
    out = {}
    raw_spec = tft_output.raw_feature_spec()
    layer = None
    for h in cfg.heads:
        if not tasks.of(h).label_statistics(h):
            continue
        layer = layer or tft_output.transform_features_layer()
        probe = tf.zeros([1, 1], raw_spec[h.label].dtype)
        if isinstance(raw_spec[h.label], tf.io.VarLenFeature):
            probe = tf.SparseTensor([[0, 0]], tf.reshape(probe, [-1]), [1, 1])
        bits = layer({h.label: probe})[label_stats_key(h.name)]
        mean, std = (float(v) for v in tf.bitcast(tf.reshape(bits, [2]), tf.float64).numpy())
        out[h.name] = {"mean": mean, "std": std}
    return out
