"""Loss balancing: how the per-head losses become the one loss that training minimises.

    static       total = sum_h w_h L_h
    uncertainty  total = sum_h w_h (exp(-s_h) L_h + s_h)     (Kendall, Gal & Cipolla, CVPR 2018)
    dwa          total = sum_h w_h lambda_h L_h               (Liu, Johns & Davison, CVPR 2019)
    gradnorm     total = sum_h w_h lambda_h L_h               (Chen et al., ICML 2018)

w_h is the head's `loss_weight` (it keeps its meaning under every method: an auxiliary head at
0.2 stays at a fifth of what the adaptive method gives it), L_h the head's masked loss, s_h a
learned log-variance, lambda_h an adaptive weight; the lambdas always sum to the number of heads
K, so they move weight between heads without changing the loss's overall scale.

Dynamic Weight Average (`dwa`): before each epoch t >= 3,
    lambda_h = K softmax_h(r_h / T),   r_h = L_h(t-1) / L_h(t-2),   T = DWA_TEMPERATURE,
with L_h(t) head h's mean training loss over epoch t. The head whose loss fell slowest in the
last epoch (r_h largest) gains weight. Free: it reads two numbers per head per epoch.

GradNorm (`gradnorm`): after each step, lambda takes one Adam step (the model's learning rate)
down the gradient of
    sum_h | lambda_h g_h - mean_k(lambda_k g_k) * q_h^alpha |,   q_h = (L_h / L_h(0)) / mean_k(.)
with g_h = ||dL_h / dW|| for the backbone's last shared weights W (`Backbone.shared_variables`)
and L_h(0) head h's first non-zero loss; then the lambdas are renormalised to sum to K. It
equalises the heads' gradient norms on the shared weights, and gives more to a head that trains
slower than the rest (alpha = GRADNORM_ALPHA). Costs one extra backward pass per head, onto the
last shared layer only.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import tensorflow as tf
import tf_keras as keras

from headwise.config.model import LOSS_BALANCING

# The config names the methods (TF-free, so that a config is checked before TensorFlow loads);
# this module implements each of them (trainer.model.MultiHeadModel.objective).
METHODS = LOSS_BALANCING
ADAPTIVE = ("dwa", "gradnorm")  # the methods with one weight lambda_h per head
DWA_TEMPERATURE = 2.0
GRADNORM_ALPHA = 1.5
MIN_WEIGHT = 1e-3  # no head's lambda falls below this (before renormalisation)


def dwa_weights(previous: list[float], before: list[float],
                temperature: float = DWA_TEMPERATURE) -> list[float]:
    """DWA's lambdas from each head's mean loss in the last two epochs (previous, before)."""
    k = len(previous)
    r = np.array([p / b if b > 0 else 1.0 for p, b in zip(previous, before, strict=True)])
    e = np.exp((r - r.max()) / temperature)
    return list(k * e / e.sum())


class DynamicWeightAverage(keras.callbacks.Callback):
    """Sets the model's lambdas (`MultiHeadModel.adaptive_weights`) before each epoch, from the
    heads' mean training losses (`<head>_loss` in the epoch's logs)."""

    def __init__(self, heads: list[str]):
        super().__init__()
        self.heads = heads
        self.history: list[list[float]] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        losses = [float(logs.get(f"{h}_loss", float("nan"))) for h in self.heads]
        if not all(math.isfinite(v) for v in losses):
            return  # StopOnNonFinite reports it
        self.history.append(losses)
        if len(self.history) >= 2:
            lam = dwa_weights(self.history[-1], self.history[-2])
            self.model.adaptive_weights.assign(np.asarray(lam, np.float32))
            logging.info("DWA weights for epoch %d: %s", epoch + 2, ", ".join(
                f"{h} {v:.3f}" for h, v in zip(self.heads, lam, strict=True)))


class GradNorm(tf.Module):
    """GradNorm's state (initial losses, Adam moments) and its update of the lambdas."""

    def __init__(self, weights: tf.Variable, learning_rate: float,
                 alpha: float = GRADNORM_ALPHA):
        super().__init__(name="gradnorm")
        k = int(weights.shape[0])
        self.weights, self.alpha, self.learning_rate = weights, alpha, learning_rate
        self.initial = tf.Variable(tf.zeros([k]), trainable=False, name="initial_losses")
        self.m = tf.Variable(tf.zeros([k]), trainable=False, name="adam_m")
        self.v = tf.Variable(tf.zeros([k]), trainable=False, name="adam_v")
        self.t = tf.Variable(0.0, trainable=False, name="adam_t")

    def targets(self, norms: tf.Tensor, losses: tf.Tensor) -> tf.Tensor:
        """GradNorm's target for each head's weighted gradient norm (a constant)."""
        rate = tf.math.divide_no_nan(losses, self.initial)
        rate = tf.math.divide_no_nan(rate, tf.reduce_mean(rate))
        return tf.stop_gradient(tf.reduce_mean(self.weights * norms) * rate ** self.alpha)

    def update(self, norms: tf.Tensor, losses: tf.Tensor) -> None:
        """One step on the lambdas, from the heads' unweighted gradient norms and losses."""
        self.initial.assign(tf.where(self.initial > 0, self.initial, losses))
        target = self.targets(norms, losses)
        # d/d lambda_h of sum_h |lambda_h g_h - target_h|: the target is held constant.
        grad = tf.sign(self.weights * norms - target) * norms
        b1, b2, eps = 0.9, 0.999, 1e-7
        self.t.assign_add(1.0)
        self.m.assign(b1 * self.m + (1 - b1) * grad)
        self.v.assign(b2 * self.v + (1 - b2) * grad * grad)
        step = (self.learning_rate * (self.m / (1 - b1 ** self.t))
                / (tf.sqrt(self.v / (1 - b2 ** self.t)) + eps))
        lam = tf.maximum(self.weights - step, MIN_WEIGHT)
        k = tf.cast(tf.size(lam), lam.dtype)
        self.weights.assign(k * lam / tf.reduce_sum(lam))
