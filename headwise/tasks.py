"""The task registry: everything that depends on a head's task, in one place, without TensorFlow.

A task (regression, binary, multiclass, multilabel) is one `Task` subclass and one entry in
`TASKS`. It says which losses and metrics a head of that task accepts (with each metric's Keras
class, TFMA name, direction and range), the default metrics, the classes the head outputs, the
rule that turns a raw label value into the encoded label (the one Transform's graph applies,
written here for what reads raw values outside TensorFlow), the trivial baseline, the serving
signature kind, and how a client reads an answer. Config validation, the model's heads, the eval
config and its gates, the report, the client and the benchmarks all read it.

Adding a task type means adding one `Task` here and one head class in `trainer/heads.py`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the config imports this module; only annotations go the other way
    from headwise.config import Head

CLASSIFY, REGRESS = "classify", "regress"  # serving signature kinds (headwise.contract)
MULTILABEL_THRESHOLD = 0.5  # a multilabel class is "on" in a client's answer at this score


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric a head can report and gate on."""

    name: str  # as written in the heads config and logged by Keras (`<head>_<name>`)
    keras_class: str  # tf_keras.metrics class; TFMA computes the same class by name
    higher_is_better: bool
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lower: float | None = 0.0  # the metric's range (None: unbounded)
    upper: float | None = None

    def tfma_config(self) -> tuple[str, str]:
        """(class name, JSON config) for TFMA's MetricConfig: the Keras metric, named as in the
        config so that TFMA's metric key is the config's name."""
        return self.keras_class, json.dumps({"name": self.name, **self.kwargs})


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


_PROBABILITY = {"lower": 0.0, "upper": 1.0}


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None and v == v]  # drops None and NaN


class Task:
    """What a head's task decides. Subclasses fill in the class attributes and methods."""

    name: str = ""
    losses: tuple[str, ...] = ()  # the first is the default
    metrics: Mapping[str, Metric] = {}
    default_metrics: tuple[str, ...] = ()
    signature: str = CLASSIFY  # CLASSIFY or REGRESS
    takes_classes: bool = False  # the config lists `classes`

    def metric(self, name: str) -> Metric:
        return self.metrics[name]

    def class_names(self, head: Head) -> tuple[str, ...]:
        """The classes the head outputs, in output order (none for regression)."""
        return ()

    def encode(self, head: Head, raw: Any) -> Any:
        """A raw label value -> the encoded label (None: the label counts as missing)."""
        raise NotImplementedError

    def baseline(self, head: Head, train: Sequence[Any], evals: Sequence[Any]
                 ) -> dict[str, float]:
        """Every metric of the task for the trivial baseline (a model that ignores every
        feature), fitted on the training labels and scored on the eval labels (raw values;
        missing ones are left out, as in training and evaluation)."""
        raise NotImplementedError

    def score(self, head: Head, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        """Every metric of the task, in NumPy, for encoded labels and the model's outputs
        (benchmarks score models outside TFMA with this)."""
        raise NotImplementedError

    def decode(self, classes: Sequence[tuple[str, float]]) -> tuple[str, float]:
        """A client's reading of one Classify answer: (label, score)."""
        label, score = max(classes, key=lambda c: c[1])
        return label, score

    def encoded(self, head: Head, raw: Sequence[Any]) -> tuple[list[int], np.ndarray]:
        """The rows whose label is present (as encoded), and their encoded labels."""
        keep, y = [], []
        for i, v in enumerate(raw):
            if v is None or v != v:
                continue
            e = self.encode(head, v)
            if e is not None:
                keep.append(i)
                y.append(e)
        return keep, np.asarray(y, float)


class RegressionTask(Task):
    name = "regression"
    losses = ("mse", "mae", "huber")
    metrics = _metrics(Metric("mae", "MeanAbsoluteError", False),
                       Metric("rmse", "RootMeanSquaredError", False),
                       Metric("mse", "MeanSquaredError", False))
    default_metrics = ("mae", "rmse")
    signature = REGRESS

    def encode(self, head, raw):
        return float(raw)

    def baseline(self, head, train, evals):
        # Always predict the training mean.
        mean = float(np.mean(np.asarray(_present(train), float)))
        err = np.asarray(_present(evals), float) - mean
        mse = float(np.mean(err ** 2))
        return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": float(np.sqrt(mse))}

    def score(self, head, y, pred):
        err = pred[:, 0] - y
        return {"mae": float(np.mean(np.abs(err))), "mse": float(np.mean(err ** 2)),
                "rmse": float(np.sqrt(np.mean(err ** 2)))}


class BinaryTask(Task):
    name = "binary"
    losses = ("binary_crossentropy",)
    metrics = _metrics(Metric("auc", "AUC", True, **_PROBABILITY),
                       Metric("accuracy", "BinaryAccuracy", True, **_PROBABILITY),
                       Metric("precision", "Precision", True, **_PROBABILITY),
                       Metric("recall", "Recall", True, **_PROBABILITY),
                       Metric("pr_auc", "AUC", True, {"curve": "PR"}, **_PROBABILITY))
    default_metrics = ("auc", "accuracy")
    CLASSES = ("0", "1")

    def class_names(self, head):
        return self.CLASSES

    def encode(self, head, raw):
        return float(raw)

    def baseline(self, head, train, evals):
        # Always predict the training prior: AUC 0.5, the majority class's accuracy.
        prior = float(np.mean(np.asarray(_present(train), float)))
        y = np.asarray(_present(evals), float)
        positive = prior > 0.5
        return {"auc": 0.5, "pr_auc": float(y.mean()),
                "accuracy": float(np.mean(y == float(positive))),
                "precision": float(y.mean()) if positive else 0.0,
                "recall": 1.0 if positive else 0.0}

    def score(self, head, y, pred):
        from sklearn import metrics as skm

        hard = pred[:, 0] >= 0.5
        return {"auc": float(skm.roc_auc_score(y, pred[:, 0])),
                "pr_auc": float(skm.average_precision_score(y, pred[:, 0])),
                "accuracy": float(np.mean(hard == (y > 0.5))),
                "precision": float(skm.precision_score(y, hard, zero_division=0)),
                "recall": float(skm.recall_score(y, hard, zero_division=0))}


class MulticlassTask(Task):
    name = "multiclass"
    losses = ("sparse_categorical_crossentropy",)
    metrics = _metrics(Metric("accuracy", "SparseCategoricalAccuracy", True, **_PROBABILITY),
                       Metric("top2_accuracy", "SparseTopKCategoricalAccuracy", True, {"k": 2},
                              **_PROBABILITY))
    default_metrics = ("accuracy",)
    takes_classes = True

    def class_names(self, head):
        return head.classes + ((head.other_class,) if head.other_class else ())

    def encode(self, head, raw):
        # The stripped text of the value; one of `classes`, else `other_class`, else missing.
        s = str(raw).strip()
        if s in head.classes:
            return head.classes.index(s)
        return len(head.classes) if head.other_class else None

    def baseline(self, head, train, evals):
        # Always rank the classes by their training frequency.
        n = len(self.class_names(head))
        train_idx = [i for i in (self.encode(head, v) for v in _present(train)) if i is not None]
        ranked = list(np.argsort(-np.bincount(train_idx, minlength=n), kind="stable"))
        y = [i for i in (self.encode(head, v) for v in _present(evals)) if i is not None]
        return {"accuracy": float(np.mean([i == ranked[0] for i in y])),
                "top2_accuracy": float(np.mean([i in ranked[:2] for i in y]))}

    def score(self, head, y, pred):
        ranked = np.argsort(-pred, axis=1)
        return {"accuracy": float(np.mean(ranked[:, 0] == y)),
                "top2_accuracy": float(np.mean([y[i] in ranked[i, :2] for i in range(len(y))]))}


class MultilabelTask(Task):
    """Several classes per example: the label column holds them joined by the head's
    `delimiter` (e.g. "news|sports"); the output is one sigmoid per class."""

    name = "multilabel"
    losses = ("binary_crossentropy",)
    metrics = _metrics(Metric("auc", "AUC", True, **_PROBABILITY),
                       Metric("accuracy", "BinaryAccuracy", True, **_PROBABILITY),
                       Metric("precision", "Precision", True, **_PROBABILITY),
                       Metric("recall", "Recall", True, **_PROBABILITY))
    default_metrics = ("auc",)
    takes_classes = True

    def class_names(self, head):
        return head.classes

    def encode(self, head, raw):
        tags = {t.strip() for t in str(raw).split(head.delimiter)}
        return [float(c in tags) for c in head.classes]

    def baseline(self, head, train, evals):
        # Each class's training prior.
        priors = np.mean([self.encode(head, v) for v in _present(train)], axis=0)
        y = np.asarray([self.encode(head, v) for v in _present(evals)])
        pred = priors > 0.5
        tp = (y * pred).sum(axis=0)
        classes = range(y.shape[1])
        return {"auc": 0.5, "accuracy": float(np.mean(y == pred)),
                "precision": float(np.mean([tp[c] / y[:, c].size if pred[c] else 0.0
                                            for c in classes])),
                "recall": float(np.mean([1.0 if pred[c] else 0.0 for c in classes]))}

    def score(self, head, y, pred):
        from sklearn import metrics as skm

        hard = pred >= 0.5
        return {"auc": float(skm.roc_auc_score(y, pred, average="macro")),
                "accuracy": float(np.mean(hard == (y > 0.5)))}

    def decode(self, classes):
        on = [label for label, score in classes if score >= MULTILABEL_THRESHOLD]
        return "|".join(on) or "-", max(score for _, score in classes)


TASKS: dict[str, Task] = {t.name: t for t in (RegressionTask(), BinaryTask(), MulticlassTask(),
                                              MultilabelTask())}


def get(name: str) -> Task:
    return TASKS[name]


def of(head: Head) -> Task:
    return TASKS[head.task]
