"""Keras callbacks of the Trainer: a readable line per epoch, and a stop at the first
non-finite loss that names the head. Light to import (no TFX)."""

from __future__ import annotations

import math
import time

import tf_keras as keras

from headwise import config as config_lib
from headwise import tasks


class StoppingCriterion(keras.callbacks.Callback):
    """Adds what early stopping watches to each epoch's logs, as `val_stopping_loss`; put it
    before EarlyStopping (and TensorBoard, which then plots it).

    `weighted`: the heads' validation losses' weighted sum (`val_weighted_loss`,
    trainer.model). Its unit is each loss's own, so a head with a large loss decides: a
    regression head whose loss is still falling from 0.070 to 0.062 (-12%) is outvoted by a
    binary head near chance drifting from 0.526 to 0.533 (+1%).

    `relative` (the default): sum_h w_h L_h / L_h(first epoch) / sum_h w_h, each head's loss
    as a fraction of its value after the first epoch, weighted by the `loss_weight`s. Every
    head counts by its relative change, whatever its loss's scale, and a head whose loss nears
    0 (a class it separates perfectly) can gain at most its weight's share, so it does not keep
    training going while the others overfit. No learned weight enters it, so no balancing can
    lower it by moving weight.

    `geomean`: exp(sum_h w_h log L_h / sum_h w_h), the weighted geometric mean. Scale-free as
    `relative`, but unbounded below: a loss nearing 0 keeps "improving" by large relative
    steps (penguins' species kept it training 50-79 epochs). It is what uncertainty weighting
    minimises once its log-variances are at their optimum; every head's loss must be positive
    (the count head's is its half Poisson deviance for that reason).

    With one head all three order epochs exactly as that head's loss does."""

    KEY = "val_stopping_loss"
    FLOOR = 1e-12  # a loss of 0 (e.g. a head without validation labels) stays finite

    def __init__(self, weights: dict[str, float], criterion: str = "weighted"):
        super().__init__()
        self.weights = {h: w for h, w in weights.items() if w > 0}
        self.criterion = criterion
        self.first: dict[str, float] | None = None  # `relative`: the first epoch's losses

    def value(self, logs: dict) -> float | None:
        if self.criterion == "weighted":
            return logs.get("val_weighted_loss")
        losses = {h: logs.get(f"val_{h}_loss") for h in self.weights}
        if not losses or any(v is None for v in losses.values()):
            return None
        total = sum(self.weights.values())
        if self.criterion == "relative":
            # The reference is kept across fit() calls (a fine-tuning schedule's stages), so
            # the values stay comparable over the whole run.
            if self.first is None:
                self.first = {h: max(float(v), self.FLOOR) for h, v in losses.items()}
            return sum(w * float(losses[h]) / self.first[h]
                       for h, w in self.weights.items()) / total
        return math.exp(sum(w * math.log(max(float(losses[h]), self.FLOOR))
                            for h, w in self.weights.items()) / total)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            value = self.value(logs)
            if value is not None:
                logs[self.KEY] = value


class RestartingEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping (best weights kept and restored) over up to `cycles` cycles of
    `cycle_epochs`, the learning-rate schedule's period (trainer.model.Periodic).

    The first cycle is EarlyStopping exactly: it stops after `patience` epochs without
    improvement. A run that reaches a cycle's end still improving (its best epoch among the
    last `patience`) has not used up what its budget could give and trains the next cycle
    from a warm restart of the schedule; a later cycle does not stop early (its first epochs,
    back at the peak learning rate, are expected to be worse) but only at its end, unless it
    ends still improving and cycles are left. Runs that stop early in the first cycle are
    unchanged."""

    def __init__(self, cycle_epochs: int, cycles: int, **kwargs):
        super().__init__(**kwargs)
        self.cycle_epochs, self.cycles = cycle_epochs, cycles

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.cycle_epochs:
            super().on_epoch_end(epoch, logs)
        else:
            current = self.get_monitor_value(logs)
            if current is not None and self._is_improvement(current, self.best):
                self.best, self.best_epoch = current, epoch
                self.best_weights = self.model.get_weights()
        cycle, at = divmod(epoch + 1, self.cycle_epochs)
        if self.model.stop_training or at or cycle >= self.cycles:
            return  # within a cycle, or the last one's end: fit() ends there
        if epoch - self.best_epoch < self.patience:
            print(f"  epoch {epoch + 1}: still improving at the end of cycle {cycle} "
                  f"(best epoch {self.best_epoch + 1}): a warm restart for another "
                  f"{self.cycle_epochs} epochs", flush=True)
        else:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class HeadStopping(keras.callbacks.Callback):
    """Task-wise early stopping (Zhang et al., ECCV 2014, who stopped auxiliary tasks once
    they began to overfit): a head whose validation loss has not improved for `patience`
    epochs stops shaping the shared backbone. Its gradient no longer reaches the backbone (the
    head's `backbone_gradient` switch, trainer.heads.HeadLayer); its own layers go on
    training on what the backbone gives. The model's early stopping is unchanged and still
    decides when training ends and which epoch's weights are kept. Within the first cycle
    only: a warm restart (`cycle_epochs`, trainer.cycles) lets every head train the backbone
    again.

    A head that is learning nothing more from the data (a near-chance head overfitting from
    its fifth epoch) otherwise goes on pulling the shared weights towards its noise while the
    others still learn: on taxi, fare's and trip_seconds' validation errors were closer to
    their single-task models' when big_tipper, payment_type and tips were left out. A head on
    a small, noisy validation split can look done and still have more to learn (penguins'
    body mass): trainer.head_stopping is off by default (docs/config.md has the numbers)."""

    def __init__(self, heads: list[str], patience: int, cycle_epochs: int | None = None):
        super().__init__()
        self.heads, self.patience, self.cycle_epochs = list(heads), patience, cycle_epochs
        self.best = dict.fromkeys(self.heads, math.inf)
        self.best_epoch = dict.fromkeys(self.heads, 0)
        self.stopped: dict[str, int] = {}  # head -> the epoch (1-based) after which it stopped

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.cycle_epochs and self.stopped:
            # A warm restart (RestartingEarlyStopping): the run was still improving, so every
            # head trains the backbone again, and none is stopped in a later cycle (its first
            # epochs, back at the peak learning rate, are expected to be worse).
            for h in self.stopped:
                self.model.get_layer(h).backbone_gradient.assign(1.0)
            print(f"  epoch {epoch + 1}: a warm restart; every head shapes the shared backbone "
                  "again", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.cycle_epochs is not None and epoch >= self.cycle_epochs:
            return
        for h in self.heads:
            loss = logs.get(f"val_{h}_loss")
            if loss is None or h in self.stopped:
                continue
            if loss < self.best[h]:
                self.best[h], self.best_epoch[h] = float(loss), epoch
            elif epoch - self.best_epoch[h] >= self.patience:
                self.stopped[h] = epoch + 1
                self.model.get_layer(h).backbone_gradient.assign(0.0)
                print(f"  epoch {epoch + 1}: head {h}'s validation loss is no better than at "
                      f"epoch {self.best_epoch[h] + 1}; it no longer shapes the shared backbone",
                      flush=True)


class EpochSummary(keras.callbacks.Callback):
    """One readable line per epoch: its seconds (training and validation), the total loss, then
    each head's validation metrics (a single-task config's too)."""

    def __init__(self, heads: list[str], epochs: int):
        super().__init__()
        self.heads, self.epochs = heads, epochs
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        took = "" if self._started is None else f"  {time.monotonic() - self._started:.1f} s"
        of = f"/{self.epochs}" if epoch < self.epochs else ""  # a later cycle: no planned end
        parts = [f"epoch {epoch + 1}{of}{took}  "
                 f"loss {logs.get('loss', float('nan')):.4f}"]
        for head in self.heads:
            # Keras names a one-output model's metrics without the output's name (val_mae).
            prefix = f"val_{head}_" if len(self.heads) > 1 else "val_"
            vals = [f"{k[len(prefix):]} {v:.4g}" for k, v in logs.items()
                    if k.startswith(prefix) and not k.endswith("_loss")]
            parts.append(f"{head}: {', '.join(vals)}")
        lam = getattr(self.model, "adaptive_weights", None)
        if lam is not None:  # dwa / gradnorm: the weights the next epoch trains with
            parts.append("weights " + ", ".join(
                f"{h} {v:.3f}" for h, v in zip(self.heads, lam.numpy(), strict=True)))
        print("  " + " | ".join(parts), flush=True)


class NonFiniteLoss(RuntimeError):
    """Training produced a non-finite loss or head metric."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the end of the first epoch with a NaN or infinite loss or metric
    (training or validation), naming the head whose loss went non-finite first: a NaN that
    reaches the shared backbone spoils every head, and an exported NaN model would only fail
    later. Which head was first is recorded inside the step where it happened
    (`MultiHeadModel.non_finite`), before that step's gradients reached the shared weights."""

    def __init__(self, cfg: config_lib.PipelineConfig):
        super().__init__()
        self.cfg = cfg

    def on_epoch_end(self, epoch, logs=None):
        first = self.model.non_finite.first()
        bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if not first and not bad:
            return
        stop = f"training stopped at epoch {epoch + 1}"
        if not first:  # a metric overflowed while every loss stayed finite
            raise NonFiniteLoss(f"{stop}: {_listing(bad)}; every loss stayed finite. No model "
                                "was exported.")
        heads = [h for h in self.cfg.heads if h.name in first]
        if heads:
            named = ", ".join(f"head {h.name!r} (label column {h.label!r})" for h in heads)
            hints = dict.fromkeys(tasks.of(h).non_finite_hint(h) for h in heads)
            cause = (f"{named} went non-finite first; likely causes: extreme or non-finite "
                     "label values (check the column's statistics), "
                     + "".join(f"{hint}, " for hint in hints if hint)
                     + f"or a learning rate too high (model.learning_rate "
                     f"{self.cfg.model.learning_rate})")
        else:
            cause = ("every head's own loss was finite at that step, so the total overflowed: "
                     "lower loss_weight values or model.learning_rate")
        finite = [h.name for h in self.cfg.heads if h.name not in first]
        values = _listing({"loss" if name is None else f"{name}_loss": v
                           for name, v in first.items()})
        raise NonFiniteLoss(
            f"{stop}: at the first step with a non-finite loss, {values}"
            + (f" (finite then: {', '.join(finite)})" if finite else "")
            + f". {cause}. No model was exported.")


def _listing(values: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in sorted(values.items()))
