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
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np


class Head(Protocol):
    """What a task reads of a head's config. `headwise.config.Head` is one; the config imports
    this module, never the reverse."""

    task: str
    classes: tuple[str, ...]  # multiclass/multilabel: named classes, in output order
    other_class: str | None  # multiclass: the name for every value not in `classes`
    delimiter: str  # multilabel: separates one example's labels
    positive: str | None  # binary: the label value that is the positive class


CLASSIFY, REGRESS = "classify", "regress"  # serving signature kinds (headwise.contract)
MULTILABEL_THRESHOLD = 0.5  # a multilabel class is "on" in a client's answer at this score


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric a head can report and gate on."""

    name: str  # as written in the heads config and logged by Keras (`<head>_<name>`)
    keras_class: str  # tf_keras.metrics class, computed in training
    higher_is_better: bool
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lower: float | None = 0.0  # the metric's range (None: unbounded)
    upper: float | None = None
    # The same quantity as a TFMA-native metric (a Beam combiner: no TF graph per batch, which
    # is what makes a wrapped Keras metric slow in the Evaluator): its class name, registered in
    # TFMA or defined in components.tfma_metrics, and arguments. Empty: TFMA wraps keras_class.
    tfma_class: str = ""
    tfma_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def tfma_config(self) -> tuple[str, str]:
        """(class name, JSON config) for TFMA's MetricConfig, named as in the heads config so
        that TFMA's metric key is the config's name."""
        if self.tfma_class:
            return self.tfma_class, json.dumps({"name": self.name, **self.tfma_kwargs})
        return self.keras_class, json.dumps({"name": self.name, **self.kwargs})


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
NUMBER_PATTERN = _NUMBER.pattern  # the graph form (trainer.heads) matches the same texts
TRUE, FALSE = ("true", "1"), ("false", "0")  # a binary label without `positive`


def canonical(value: Any) -> str | None:
    """A label value as labels are matched against `classes` and `positive`: numbers by value
    (1, 1.0, "1" and "1.0" are all "1"; 2.5 is "2.5"), other text stripped; None for a missing
    value. Trainer.heads computes the same text in the graph."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, str):
        value = value.strip()
        if not _NUMBER.match(value):
            return value
        value = float(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    f = float(value)
    if f != f:
        return None
    if f.is_integer() and abs(f) < 2 ** 53:
        return str(int(f))
    f32 = np.float32(f)  # what a float column of the examples holds
    return str(int(f32)) if float(f32).is_integer() else str(f32)  # shortest form


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


_PROBABILITY = {"lower": 0.0, "upper": 1.0}


def _count_and_sum(y: Sequence[Any]) -> dict[str, float]:
    """Sufficient statistics of scalar encoded labels: how many, and their sum."""
    y = np.asarray(y, float)
    return {"n": float(y.size), "sum": float(y.sum())}


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

    # --- The trivial baseline: a model that ignores every feature -------------------------
    # Fitted on the training labels, scored on the test labels, from sufficient statistics that
    # add up (dicts of numbers or NumPy arrays): the Evaluator sums them in Beam over any number
    # of examples, `baseline` over two lists. Missing labels are left out, as in training and
    # evaluation; so are values the label rule does not map (encode -> None).

    def fit_stats(self, head: Head, y: Sequence[Any]) -> dict[str, Any]:
        """Sufficient statistics of encoded training labels."""
        raise NotImplementedError

    def fit(self, head: Head, stats: Mapping[str, Any]) -> dict[str, Any]:
        """The baseline's parameters from the summed training statistics."""
        raise NotImplementedError

    def score_stats(self, head: Head, fitted: Mapping[str, Any], y: Sequence[Any]
                    ) -> dict[str, Any]:
        """Sufficient statistics of encoded test labels against the fitted baseline."""
        raise NotImplementedError

    def baseline_metrics(self, head: Head, fitted: Mapping[str, Any],
                         stats: Mapping[str, Any]) -> dict[str, float]:
        """Every metric of the task for the baseline, from the summed test statistics."""
        raise NotImplementedError

    def baseline(self, head: Head, train: Sequence[Any], evals: Sequence[Any]
                 ) -> dict[str, float]:
        """Every metric of the task for the trivial baseline, from raw label values."""
        fitted = self.fit(head, self.fit_stats(head, self.encoded(head, train)[1]))
        return self.baseline_metrics(head, fitted,
                                     self.score_stats(head, fitted, self.encoded(head, evals)[1]))

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
                       Metric("rmse", "RootMeanSquaredError", False,
                              tfma_class="RootMeanSquaredError"),
                       Metric("mse", "MeanSquaredError", False))
    default_metrics = ("mae", "rmse")
    signature = REGRESS

    def encode(self, head, raw):
        return float(raw)

    # Always predict the training mean.
    def fit_stats(self, head, y):
        return _count_and_sum(y)

    def fit(self, head, stats):
        return {"mean": stats["sum"] / stats["n"] if stats["n"] else 0.0}

    def score_stats(self, head, fitted, y):
        err = np.asarray(y, float) - fitted["mean"]
        return {"n": float(err.size), "abs": float(np.abs(err).sum()),
                "sq": float((err ** 2).sum())}

    def baseline_metrics(self, head, fitted, stats):
        n = stats["n"] or float("nan")
        mse = stats["sq"] / n
        return {"mae": stats["abs"] / n, "mse": mse, "rmse": float(np.sqrt(mse))}

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
        # With `positive`: that value is 1, any other value 0. Without: 0/1 or true/false
        # (case-insensitive); anything else counts as missing (the pre-flight check stops a run
        # whose labels hold other values).
        text = canonical(raw)
        if text is None:
            return None
        text = text.lower()
        if head.positive is not None:
            return float(text == head.positive.lower())
        return 1.0 if text in TRUE else 0.0 if text in FALSE else None

    # Always predict the training prior: AUC 0.5, the majority class's accuracy. Precision and
    # recall of a classifier that flags examples at random, at the training prior's rate: its
    # precision is the test set's positive rate, its recall that rate of flagging.
    def fit_stats(self, head, y):
        return _count_and_sum(y)  # the sum of 0/1 labels: the positives

    def fit(self, head, stats):
        return {"prior": stats["sum"] / stats["n"] if stats["n"] else 0.0}

    def score_stats(self, head, fitted, y):
        return self.fit_stats(head, y)

    def baseline_metrics(self, head, fitted, stats):
        rate = stats["sum"] / stats["n"] if stats["n"] else float("nan")
        majority = fitted["prior"] > 0.5
        return {"auc": 0.5, "pr_auc": rate, "accuracy": rate if majority else 1 - rate,
                "precision": rate, "recall": fitted["prior"]}

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
    metrics = _metrics(Metric("accuracy", "SparseCategoricalAccuracy", True, **_PROBABILITY,
                              tfma_class="MulticlassAccuracy", tfma_kwargs={"k": 1}),
                       Metric("top2_accuracy", "SparseTopKCategoricalAccuracy", True, {"k": 2},
                              **_PROBABILITY, tfma_class="MulticlassAccuracy",
                              tfma_kwargs={"k": 2}))
    default_metrics = ("accuracy",)
    takes_classes = True

    def class_names(self, head):
        return head.classes + ((head.other_class,) if head.other_class else ())

    def encode(self, head, raw):
        # The value (as `canonical` text); one of `classes`, else `other_class`, else missing.
        s = canonical(raw)
        if s is None:
            return None
        if s in head.classes:
            return head.classes.index(s)
        return len(head.classes) if head.other_class else None

    # Always rank the classes by their training frequency.
    def fit_stats(self, head, y):
        n = len(self.class_names(head))
        return {"counts": np.bincount(np.asarray(y, int), minlength=n).astype(float)}

    def fit(self, head, stats):
        return {"ranked": [int(i) for i in np.argsort(-stats["counts"], kind="stable")]}

    def score_stats(self, head, fitted, y):
        return self.fit_stats(head, y)

    def baseline_metrics(self, head, fitted, stats):
        counts, ranked = stats["counts"], fitted["ranked"]
        n = counts.sum() or float("nan")
        return {"accuracy": float(counts[ranked[0]] / n),
                "top2_accuracy": float(counts[ranked[:2]].sum() / n)}

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

    # Each class's training prior, as a binary head's baseline per class, macro-averaged.
    def fit_stats(self, head, y):
        y = np.asarray(y, float).reshape(-1, len(head.classes))
        return {"n": float(len(y)), "pos": y.sum(axis=0)}

    def fit(self, head, stats):
        n = stats["n"] or float("nan")
        return {"priors": [float(p) for p in stats["pos"] / n]}

    def score_stats(self, head, fitted, y):
        return self.fit_stats(head, y)

    def baseline_metrics(self, head, fitted, stats):
        rate = stats["pos"] / (stats["n"] or float("nan"))
        priors = np.asarray(fitted["priors"])
        accuracy = np.where(priors > 0.5, rate, 1 - rate)
        return {"auc": 0.5, "accuracy": float(accuracy.mean()),
                "precision": float(rate.mean()), "recall": float(priors.mean())}

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
