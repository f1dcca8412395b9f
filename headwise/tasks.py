"""The task registry: everything that depends on a head's task, in one place, without TensorFlow.

A task (regression, count, binary, multiclass, multilabel) is one `Task` subclass and one entry
in `TASKS`. It says:
  * config: the head keys only this task takes and their validation (`config_keys`, `parse`,
    `raw`), whether the head learns its classes from the data;
  * data: whether the label column holds numbers and which values it accepts (`numeric_label`,
    `value_error`, the pre-flight check of the values seen, `check_labels`), and the label's
    domain in the curated schema (`schema_domain`);
  * training: which losses and metrics a head of that task accepts (with each metric's Keras
    class, TFMA name, direction and range), the default metrics, whether Transform computes
    the label's mean and spread for the model (`label_statistics`), what to suspect when the
    loss goes non-finite;
  * evaluation: the classes the head outputs, the rule that turns a raw label value into the
    encoded label (the one Transform's graph applies, written here for what reads raw values
    outside TensorFlow), the trivial baseline, whether gates hold per class, the report's plot;
  * serving: the signature kind, how a head's output becomes class scores, how a client reads
    an answer.
Config validation, the pre-flight check, the schema, the model's heads, the eval config and its
gates, the report, the clients and the benchmarks all read it.

Adding a task type means adding one `Task` here and one head class in `trainer/heads.py`
(tests/test_tasks.py fails if a task name is written anywhere else).
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


# positive_if's comparisons (a binary label derived from a numeric column), as the report says
# them; `compare` is the rule, trainer.heads the same rule in the graph.
COMPARISONS = {"greater_than": ">", "greater_or_equal": ">=", "less_than": "<",
               "less_or_equal": "<="}


def compare(op: str, x: Any, number: float) -> Any:
    """x `op` number, for a float or an array (or tensor) of them."""
    return {"greater_than": lambda: x > number, "greater_or_equal": lambda: x >= number,
            "less_than": lambda: x < number, "less_or_equal": lambda: x <= number}[op]()


def threshold_holds(op: str, text: str, number: float) -> bool:
    """positive_if on one numeric label (`canonical` text): a whole number (an int column's
    value) compared exactly, any other value as the float32 a float column holds, against the
    threshold as float32 (so `0.1` in the config matches a cell `0.1`); trainer.heads compares
    the same way in the graph."""
    v = float(text)
    if v.is_integer():
        return bool(compare(op, v, number))
    return bool(compare(op, np.float32(v), np.float32(number)))


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


def label_value(f: Any, value: Any, key: str) -> str:
    """A class or positive value from the config, as labels are matched (`canonical`: 1 and 1.0
    are "1"); `f` (headwise.config.fields.Fields) names the field in an error."""
    if isinstance(value, bool):
        f.fail(f"{value!r} is a YAML boolean (yes/no, true/false and on/off are); quote the "
               f"label value as it is written in the data, e.g. 'yes'", key)
    if not isinstance(value, str | int | float) or canonical(value) in (None, ""):
        f.fail(f"expected a label value (text or number), got {value!r}", key)
    return canonical(value)


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


_PROBABILITY = {"lower": 0.0, "upper": 1.0}


def _count_and_sum(y: Sequence[Any]) -> dict[str, float]:
    """Sufficient statistics of scalar encoded labels: how many, and their sum."""
    y = np.asarray(y, float)
    return {"n": float(y.size), "sum": float(y.sum())}


NUMERIC, CATEGORICAL, TAGS = "numeric", "categorical", "tags"  # a label's schema domain
CLASSIFIER, REGRESSOR, POISSON = "classifier", "regressor", "poisson"  # Task.gbdt


class Task:
    """What a head's task decides. Subclasses fill in the class attributes and methods."""

    name: str = ""
    losses: tuple[str, ...] = ()  # the first is the default
    metrics: Mapping[str, Metric] = {}
    default_metrics: tuple[str, ...] = ()
    signature: str = CLASSIFY  # CLASSIFY or REGRESS
    config_keys: tuple[str, ...] = ()  # the head keys only this task takes
    numeric_label: bool = False  # the label column holds numbers (checked row by row)
    schema_domain: str = CATEGORICAL  # NUMERIC: a value range; CATEGORICAL: a vocabulary;
    #                                   TAGS: combinations of tags, no domain
    per_class: bool = False  # the Evaluator scores (and gates) each class, then their average
    # The per-head gradient-boosted model benchmarks compare a head with
    # (benchmarks/quality.py): CLASSIFIER, REGRESSOR or POISSON; None: no such comparison.
    gbdt: str | None = None

    def from_class_probabilities(self, head: Head, probs: Any) -> Any:
        """Probabilities of every class ([n, classes], the head's class order) -> the head's
        output (a classifier's; e.g. binary: P(positive), one column)."""
        return probs

    def metric(self, name: str) -> Metric:
        return self.metrics[name]

    # --- Config ---------------------------------------------------------------------------
    def parse(self, f: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The head fields that this task's own keys (`config_keys`) set, validated. `f` is the
        head's reader (headwise.config.fields.Fields: get, choice, fail name the field)."""
        return {}

    def raw(self, head: Head) -> dict[str, Any]:
        """This task's keys in the YAML form of a head (the inverse of `parse`)."""
        return {}

    def derivation(self, head: Head) -> str | None:
        """How the head's label is derived from its column, for the report (None: the column's
        values are the labels)."""
        return None

    def learns_classes(self, head: Head) -> bool:
        """Transform learns the head's classes from the training split."""
        return False

    # --- Data -----------------------------------------------------------------------------
    def value_error(self, head: Head, value: float) -> str | None:
        """A numeric label (`numeric_label`) that this task refuses: why; None if it is fine."""
        return None

    def seen(self, head: Head, cell: str) -> list[str | None]:
        """The values one present cell of the label column holds, as the pre-flight check
        counts them (not for numeric labels)."""
        return [canonical(cell)]

    def check_labels(self, head: Head, seen: Mapping[str, int], shown) -> str | None:
        """Why the values seen in the label column (value -> count) cannot train this head,
        naming the fix; None when they can. `shown(values)` formats a few of them."""
        return None

    # --- Training -------------------------------------------------------------------------
    def label_statistics(self, head: Head) -> bool:
        """Transform computes the label's mean and spread for the model (trainer.heads)."""
        return False

    def non_finite_hint(self, head: Head) -> str:
        """A likely cause, beside extreme labels and the learning rate, when the loss of a head
        of this task goes non-finite ("" for none)."""
        return ""

    # --- Evaluation -----------------------------------------------------------------------
    def plot(self, ax, head: Head, y: np.ndarray, pred: np.ndarray) -> None:
        """The task's picture of encoded labels `y` against the outputs `pred` [n, units], on a
        matplotlib Axes (the report's second panel)."""
        ax.hist(y - pred[:, 0], bins=50, color="gray")
        ax.set_title("residuals (label - prediction)")

    # --- Serving --------------------------------------------------------------------------
    def class_scores(self, scores: Any, concat=list) -> Any:
        """The head's outputs as one score per class (`class_names` order), in the serving
        graph (`concat` joins [batch, 1] tensors along the class axis) and in a client (one
        row's outputs, a list)."""
        return scores

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


class _MeanBaseline(Task):
    """A numeric label's trivial baseline: always predict the training mean (its absolute and
    squared errors summed; subclasses add what their metrics need)."""

    def fit_stats(self, head, y):
        return _count_and_sum(y)

    def fit(self, head, stats):
        return {"mean": stats["sum"] / stats["n"] if stats["n"] else 0.0}

    def score_stats(self, head, fitted, y):
        err = np.asarray(y, float) - fitted["mean"]
        return {"n": float(err.size), "abs": float(np.abs(err).sum()),
                "sq": float((err ** 2).sum())}


# A regression head's target transform: the space its loss is computed in. `log`: the
# symmetric log, sign(y) log(1 + |y|), for skewed labels (prices, durations, amounts); the
# head's output is mapped back (sign(z) (exp(|z|) - 1)) inside the model, so every output,
# metric and served value is in the label's units.
TARGETS = ("none", "log")


class RegressionTask(_MeanBaseline):
    name = "regression"
    losses = ("mse", "mae", "huber")
    metrics = _metrics(Metric("mae", "MeanAbsoluteError", False),
                       Metric("rmse", "RootMeanSquaredError", False,
                              tfma_class="RootMeanSquaredError"),
                       Metric("mse", "MeanSquaredError", False))
    default_metrics = ("mae", "rmse")
    signature = REGRESS
    gbdt = REGRESSOR
    config_keys = ("normalize", "target")
    numeric_label = True
    schema_domain = NUMERIC

    def parse(self, f, spec):
        return {"normalize": f.get("normalize", bool, True),
                "target": f.choice("target", TARGETS, "none", what="target transform")}

    def raw(self, head):
        return {"normalize": head.normalize, "target": head.target}

    def label_statistics(self, head):
        return head.normalize  # the loss is scaled by the label's spread

    def non_finite_hint(self, head):
        return "" if head.normalize else "a regression label on a large scale with normalize: false"

    def encode(self, head, raw):
        return float(raw)

    def baseline_metrics(self, head, fitted, stats):
        n = stats["n"] or float("nan")
        mse = stats["sq"] / n
        return {"mae": stats["abs"] / n, "mse": mse, "rmse": float(np.sqrt(mse))}

    def score(self, head, y, pred):
        err = pred[:, 0] - y
        return {"mae": float(np.mean(np.abs(err))), "mse": float(np.mean(err ** 2)),
                "rmse": float(np.sqrt(np.mean(err ** 2)))}


POISSON_MIN_RATE = 1e-8  # a predicted count is at least this (log 0 is -inf)


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Each example's Poisson deviance 2 (y log(y / mu) - (y - mu)), with y log y = 0 at y = 0;
    0 for a perfect prediction. The Keras metric (trainer.heads) and the Evaluator's
    (components.tfma_metrics) compute the same."""
    y, mu = np.asarray(y, float), np.maximum(np.asarray(mu, float), POISSON_MIN_RATE)
    ratio = np.where(y > 0, y / mu, 1.0)
    return 2.0 * (np.where(y > 0, y * np.log(ratio), 0.0) - (y - mu))


class CountTask(_MeanBaseline):
    """Non-negative whole numbers (sales, trips, clicks): a Poisson model with a log link; the
    output is the expected count, in the label's units."""

    name = "count"
    losses = ("poisson",)
    metrics = _metrics(Metric("mae", "MeanAbsoluteError", False),
                       Metric("rmse", "RootMeanSquaredError", False,
                              tfma_class="RootMeanSquaredError"),
                       Metric("poisson_deviance", "PoissonDeviance", False,
                              tfma_class="PoissonDeviance"))
    # Deviance first: the main metric, which must beat the training mean. The model fits the
    # expected count, which minimises deviance; MAE rewards the median, which for a skewed count
    # (most often 0) can sit far from the mean: a good Poisson model can lose to the mean on MAE.
    default_metrics = ("poisson_deviance", "mae")
    gbdt = POISSON
    signature = REGRESS
    numeric_label = True
    schema_domain = NUMERIC

    def value_error(self, head, value):
        if value < 0 or not float(value).is_integer():
            return "a count head's label must be a non-negative whole number"
        return None

    def label_statistics(self, head):
        return True  # the training mean starts the output's log rate

    def encode(self, head, raw):
        return float(raw)

    def score_stats(self, head, fitted, y):
        y = np.asarray(y, float)
        return {**super().score_stats(head, fitted, y), "deviance": float(
            poisson_deviance(y, np.full_like(y, fitted["mean"])).sum())}

    def baseline_metrics(self, head, fitted, stats):
        n = stats["n"] or float("nan")
        return {"mae": stats["abs"] / n, "rmse": float(np.sqrt(stats["sq"] / n)),
                "poisson_deviance": stats["deviance"] / n}

    def score(self, head, y, pred):
        err = pred[:, 0] - y
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                "poisson_deviance": float(np.mean(poisson_deviance(y, pred[:, 0])))}


class BinaryTask(Task):
    name = "binary"
    losses = ("binary_crossentropy",)
    metrics = _metrics(Metric("auc", "AUC", True, **_PROBABILITY),
                       Metric("accuracy", "BinaryAccuracy", True, **_PROBABILITY),
                       Metric("precision", "Precision", True, **_PROBABILITY),
                       Metric("recall", "Recall", True, **_PROBABILITY),
                       Metric("pr_auc", "AUC", True, {"curve": "PR"}, **_PROBABILITY))
    default_metrics = ("auc", "accuracy")
    gbdt = CLASSIFIER
    CLASSES = ("0", "1")
    config_keys = ("positive", "positive_if")

    def parse(self, f, spec):
        positive = spec.get("positive")
        if positive is not None and "positive_if" in spec:
            f.fail("takes `positive` (label values) or `positive_if` (a comparison with a "
                   "number), not both", "positive_if")
        if isinstance(positive, list):
            if not positive:
                f.fail("an empty list; name the label value(s) of the positive class",
                       "positive")
            positive = tuple(dict.fromkeys(label_value(f, v, "positive") for v in positive))
        elif positive is not None:
            positive = (label_value(f, positive, "positive"),)
        positive_if = None
        if "positive_if" in spec:
            rule = spec["positive_if"]
            if (not isinstance(rule, dict) or len(rule) != 1
                    or next(iter(rule)) not in COMPARISONS):
                f.fail(f"expected one comparison with a number, e.g. `{{greater_than: 50000}}`"
                       f" ({', '.join(COMPARISONS)}); got {rule!r}", "positive_if")
            (op, number), = rule.items()
            if isinstance(number, bool) or not isinstance(number, int | float) \
                    or number != number:
                f.fail(f"{op}: expected a number, got {number!r}", "positive_if")
            positive_if = (op, float(number))
        return {"positive": positive, "positive_if": positive_if}

    def raw(self, head):
        if head.positive_if is not None:
            op, number = head.positive_if
            return {"positive_if": {op: int(number) if number.is_integer() else number}}
        if head.positive is None:
            return {}
        return {"positive": head.positive[0] if len(head.positive) == 1
                else list(head.positive)}

    def derivation(self, head):
        if head.positive_if is not None:
            op, number = head.positive_if
            return (f"1 when {head.label} {COMPARISONS[op]} {number:g}, 0 otherwise (a "
                    "missing or non-numeric value: missing)")
        if head.positive is not None and len(head.positive) > 1:
            return (f"1 when {head.label} is one of {', '.join(head.positive)} (any case), "
                    "0 for any other value")
        if head.positive is not None:
            return f"1 when {head.label} is {head.positive[0]} (any case), 0 for any other value"
        return None

    def check_labels(self, head, seen, shown):
        lower: dict[str, int] = {}
        for v, n in seen.items():
            lower[v.lower()] = lower.get(v.lower(), 0) + n
        if head.positive_if is not None:
            text = [v for v in lower if not _NUMBER.match(v)]
            if text:
                return (f"positive_if compares numbers, and the column holds text: "
                        f"{shown(text)}; mark such cells as missing (data.missing_values) or "
                        "use `positive: [values]`")
            op, number = head.positive_if
            sides = {threshold_holds(op, v, number) for v in lower}
            if len(sides) == 1:
                return (f"positive_if: {'every' if sides.pop() else 'no'} value is "
                        f"{COMPARISONS[op]} {number:g} (the values are {shown(lower)}): the "
                        "label would be one class only")
            return None
        if head.positive is not None:
            # Two values, or some values against the rest (a column of several values: a
            # binary label derived from it, e.g. marital status -> never married).
            wanted = {p.lower() for p in head.positive}
            if lower and not wanted & set(lower):
                which = (f"{head.positive[0]!r} never occurs" if len(head.positive) == 1
                         else f"none of {list(head.positive)} occurs")
                return f"positive: {which}; the values are {shown(lower)}"
            if lower and set(lower) <= wanted:
                return (f"positive: every value is a positive one ({shown(lower)}): the label "
                        "would be one class only")
            return None
        other = set(lower) - set(TRUE) - set(FALSE)
        if other:
            rarest = min(other, key=lambda v: (lower[v], str(v)))  # the positive class, often
            return (f"holds {shown(other)}; a binary label must be 0/1 or true/false, or say "
                    "which value is the positive class: add `positive: <value>` to the head "
                    f"(e.g. `positive: {rarest}`), or `positive_if: {{greater_than: <number>}}`"
                    " for a numeric column")
        return None

    def plot(self, ax, head, y, pred):
        p = pred[:, 0]
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, edges) - 1, 0, 9)
        mids = [(p[idx == b].mean(), y[idx == b].mean()) for b in range(10) if (idx == b).any()]
        ax.plot([0, 1], [0, 1], "k--", label="perfect")
        ax.plot(*zip(*mids, strict=True), "o-", label="model")
        ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
        ax.legend()

    def from_class_probabilities(self, head, probs):
        return probs[:, 1:2]  # the sigmoid unit: P(positive)

    def class_scores(self, scores, concat=list):
        # One sigmoid unit for two classes: it is the second class's probability.
        return concat([1.0 - scores, scores])

    def class_names(self, head):
        return self.CLASSES

    def encode(self, head, raw):
        # With `positive`: that value is 1, any other value 0. Without: 0/1 or true/false
        # (case-insensitive); anything else counts as missing (the pre-flight check stops a run
        # whose labels hold other values).
        text = canonical(raw)
        if text is None:
            return None
        if head.positive_if is not None:
            if not _NUMBER.match(text):
                return None
            return float(threshold_holds(head.positive_if[0], text, head.positive_if[1]))
        text = text.lower()
        if head.positive is not None:
            return float(text in {p.lower() for p in head.positive})
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
    config_keys = ("classes", "other_class", "top_k")
    MAX_LABELLED_CLASSES = 20  # the report's confusion matrix names classes up to this many
    gbdt = CLASSIFIER

    def parse(self, f, spec):
        merged = spec.get("classes") if isinstance(spec.get("classes"), dict) else None
        class_values: tuple[tuple[str, ...], ...] = ()
        if merged is not None:  # {class name: value or [values]}: values merged into classes
            listed = [str(name) for name in merged]
            class_values = tuple(
                tuple(dict.fromkeys(label_value(f, v, "classes") for v in (
                    vals if isinstance(vals, list) else [vals])))
                for vals in merged.values())
            if any(not vals for vals in class_values):
                f.fail("each class names the label value(s) it merges, e.g. `classes: {card: "
                       "[Credit Card, Prcard], cash: Cash}`", "classes")
            every = [v for vals in class_values for v in vals]
            twice = sorted({v for v in every if every.count(v) > 1})
            if twice:
                f.fail(f"{', '.join(map(repr, twice))} is in two classes", "classes")
            classes = tuple(listed)
        else:
            listed = f.get("classes", list, None)
            classes = tuple(label_value(f, c, "classes") for c in listed or ())
        other = f.get("other_class", str, None)
        top_k = None
        if listed is None:  # learned by Transform
            top_k = f.get("top_k", int, None)
            if top_k is not None and top_k < 2:
                f.fail(f"must be >= 2, got {top_k}", "top_k")
        elif len(classes) + (other is not None) < 2 or len(set(classes)) != len(classes):
            f.fail("a multiclass head needs at least two distinct classes "
                   "(counting other_class), or no classes at all to learn them", "classes")
        elif "top_k" in spec:
            f.fail("top_k limits learned classes; this head lists its classes", "top_k")
        if other in classes:
            f.fail(f"{other!r} is also listed in classes", "other_class")
        return {"classes": classes, "other_class": other, "top_k": top_k,
                "class_values": class_values}

    def raw(self, head):
        out: dict[str, Any] = {} if self.learns_classes(head) else {"classes": list(head.classes)}
        if head.class_values:
            out["classes"] = {c: list(v) for c, v in zip(head.classes, head.class_values,
                                                         strict=True)}
        if head.other_class is not None:
            out["other_class"] = head.other_class
        if head.top_k is not None:
            out["top_k"] = head.top_k
        return out

    def learns_classes(self, head):
        return not head.classes

    def check_labels(self, head, seen, shown):
        if self.learns_classes(head):
            if len(seen) < 2:
                return (f"classes are learned from the data, which holds {len(seen)} distinct "
                        f"value(s): {shown(seen)}")
            return None
        values = [v for vals in head.values_of_classes() for v in vals]
        if seen and not set(seen) & set(values):
            return (f"none of its values is one of classes {values} (values: "
                    f"{shown(seen)}); list the classes as they are written in the data")
        return None

    def derivation(self, head):
        if not head.class_values:
            return None
        merged = "; ".join(f"{c} = {', '.join(v)}" for c, v in zip(
            head.classes, head.class_values, strict=True))
        rest = f"any other value: {head.other_class}" if head.other_class else \
            "any other value: missing"
        return f"classes merge label values: {merged}; {rest}"

    def plot(self, ax, head, y, pred):
        names = self.class_names(head)
        n = len(names)
        cm = np.zeros((n, n), int)
        for actual, row in zip(y.astype(int), pred, strict=True):
            cm[actual, int(np.argmax(row))] += 1
        if n > self.MAX_LABELLED_CLASSES:  # a thousand classes: the matrix's shape, no labels
            ax.imshow(np.log1p(cm), cmap="Blues")
            ax.set(xlabel="predicted class id", ylabel="actual class id",
                   title=f"confusion matrix, {n} classes (log scale)")
        else:
            ax.imshow(cm, cmap="Blues")
            for (r, c), v in np.ndenumerate(cm):
                ax.text(c, r, str(v), ha="center", va="center")
            ax.set_xticks(range(n), names, rotation=30)
            ax.set_yticks(range(n), names)
            ax.set(xlabel="predicted", ylabel="actual", title="confusion matrix")

    def class_names(self, head):
        return head.classes + ((head.other_class,) if head.other_class else ())

    def encode(self, head, raw):
        # The value (as `canonical` text); one of `classes`, else `other_class`, else missing.
        s = canonical(raw)
        if s is None:
            return None
        for i, values in enumerate(head.values_of_classes()):
            if s in values:
                return i
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
    config_keys = ("classes", "delimiter")
    schema_domain = TAGS
    per_class = True

    def parse(self, f, spec):
        classes = tuple(label_value(f, c, "classes") for c in f.get("classes", list))
        if not classes or len(set(classes)) != len(classes):
            f.fail("a multilabel head needs at least one class, each once", "classes")
        delimiter = f.get("delimiter", str, "|")
        if not delimiter:
            f.fail("must not be empty", "delimiter")
        return {"classes": classes, "delimiter": delimiter}

    def raw(self, head):
        return {"classes": list(head.classes), "delimiter": head.delimiter}

    def seen(self, head, cell):
        # Tag by tag: "b|a" and "a|b" are the same two tags.
        return [t for t in {t.strip() for t in cell.split(head.delimiter)} if t]

    def check_labels(self, head, seen, shown):
        # Tags outside `classes` are allowed (a head may model a few of many tags); none inside
        # means a wrong delimiter or names.
        if seen and not set(seen) & set(head.classes):
            return (f"none of its tags (split on {head.delimiter!r}) is one of classes "
                    f"{list(head.classes)} (tags: {shown(seen)}); check `delimiter` and the "
                    "class names")
        return None

    def plot(self, ax, head, y, pred):
        k = np.arange(len(head.classes))
        ax.bar(k - 0.2, y.mean(axis=0), 0.4, label="observed rate")
        ax.bar(k + 0.2, pred.mean(axis=0), 0.4, label="mean prediction")
        ax.set_xticks(k, head.classes)
        ax.set_title("per-class rate")
        ax.legend()

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


TASKS: dict[str, Task] = {t.name: t for t in (RegressionTask(), CountTask(), BinaryTask(),
                                              MulticlassTask(), MultilabelTask())}
# Every head key that some task takes (headwise.config.heads: a key the head's task does not
# take is an error that names the tasks that do).
TASK_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for t in TASKS.values() for k in t.config_keys))


def get(name: str) -> Task:
    return TASKS[name]


def of(head: Head) -> Task:
    return TASKS[head.task]
