"""Trivial baselines per head: what a model that ignores every feature scores.

Each baseline is fitted on the training split's labels and scored on the eval split's labels:
  regression  -> always predict the training mean;
  binary      -> always predict the training prior (accuracy of the majority class; AUC 0.5);
  multiclass  -> always rank classes by training frequency (accuracy of the majority class);
  multilabel  -> each class's training prior.
A head passes its baseline gate when its main metric beats the baseline's by `baseline_margin`
(relative): value >= b * (1 + margin) where higher is better, value <= b * (1 - margin) where
lower is better. Missing labels (None) are left out, as in training and evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from headwise.config import Head


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None and v == v]  # drops None and NaN


def class_index(head: Head, value: Any) -> int | None:
    """The multiclass head's index of a raw label value (None: counts as missing)."""
    s = str(value).strip()
    if s in head.classes:
        return head.classes.index(s)
    return len(head.classes) if head.other_class else None


def multi_hot(head: Head, value: Any) -> list[float]:
    tags = {t.strip() for t in str(value).split(head.delimiter)}
    return [float(c in tags) for c in head.classes]


def baseline_metrics(head: Head, train: Sequence[Any], evals: Sequence[Any]) -> dict[str, float]:
    """Every metric the head lists, for its trivial baseline (raw label values; None: missing)."""
    task = head.task
    if task == "regression":
        mean = float(np.mean(np.asarray(_present(train), float)))
        err = np.asarray(_present(evals), float) - mean
        mse = float(np.mean(err ** 2))
        values = {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": float(np.sqrt(mse))}
    elif task == "binary":
        prior = float(np.mean(np.asarray(_present(train), float)))
        y = np.asarray(_present(evals), float)
        positive = prior > 0.5
        values = {"auc": 0.5, "pr_auc": float(y.mean()),
                  "accuracy": float(np.mean(y == float(positive))),
                  "precision": float(y.mean()) if positive else 0.0,
                  "recall": 1.0 if positive else 0.0}
    elif task == "multiclass":
        n = len(head.class_names)
        train_idx = [i for i in (class_index(head, v) for v in _present(train)) if i is not None]
        counts = np.bincount(train_idx, minlength=n)
        ranked = list(np.argsort(-counts, kind="stable"))
        y = [i for i in (class_index(head, v) for v in _present(evals)) if i is not None]
        values = {"accuracy": float(np.mean([i == ranked[0] for i in y])),
                  "top2_accuracy": float(np.mean([i in ranked[:2] for i in y]))}
    elif task == "multilabel":
        priors = np.mean([multi_hot(head, v) for v in _present(train)], axis=0)
        y = np.asarray([multi_hot(head, v) for v in _present(evals)])
        pred = priors > 0.5
        tp = (y * pred).sum(axis=0)
        values = {"auc": 0.5, "accuracy": float(np.mean(y == pred)),
                  "precision": float(np.mean([tp[c] / y[:, c].size if pred[c] else 0.0
                                              for c in range(y.shape[1])])),
                  "recall": float(np.mean([1.0 if pred[c] else 0.0 for c in range(y.shape[1])]))}
    else:
        raise ValueError(f"unknown task {task!r}")
    return {m: values[m] for m in head.metrics}


def baseline_bound(value: float, margin: float, higher_is_better: bool) -> float:
    """The bound the head's metric must reach to beat a baseline scoring `value`."""
    return value * (1 + margin) if higher_is_better else value * (1 - margin)
