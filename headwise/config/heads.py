"""The `heads` section: one head per label column, with its task, loss, metrics and gates.

What a task accepts (losses, metrics, default metrics, whether it takes classes) comes from the
task registry, `headwise.tasks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from headwise import tasks
from headwise.config.fields import ConfigError, Fields, check_name

TASKS = tuple(tasks.TASKS)
THRESHOLD_KEYS = ("min", "max", "max_regression")
HEAD_KEYS = ("name", "label", "task", "loss", "loss_weight", "metrics", "thresholds",
             "auxiliary", "classes", "other_class", "delimiter", "normalize", "tower", "gate",
             "baseline_margin", "positive", "top_k")


@dataclasses.dataclass(frozen=True)
class Threshold:
    """Gate for one metric of one head.

    min / max: absolute bounds on the metric's value.
    max_regression: the largest allowed worsening against the last blessed model (absolute units).
    """

    min: float | None = None
    max: float | None = None
    max_regression: float | None = None


@dataclasses.dataclass(frozen=True)
class Head:
    name: str
    label: str
    task: str
    loss: str
    loss_weight: float = 1.0
    metrics: tuple[str, ...] = ()
    thresholds: Mapping[str, Threshold] = dataclasses.field(default_factory=dict)
    auxiliary: bool = False
    gate: bool = True  # its gates block the push (default: every head that is not auxiliary)
    baseline_margin: float = 0.01  # share of the room between the baseline and the best value
    classes: tuple[str, ...] = ()  # multiclass/multilabel: named classes, in output order
    other_class: str | None = None  # multiclass: name for every value not in `classes`
    delimiter: str = "|"  # multilabel: separates the labels of one example in the column
    normalize: bool = True  # regression: scale the loss by the label's spread
    tower: tuple[int, ...] = ()  # hidden units of this head's own layers
    positive: str | None = None  # binary: the label value that is the positive class
    top_k: int | None = None  # multiclass without classes: learn at most this many

    @property
    def main_metric(self) -> str:
        """The head's first metric: the one that must beat the trivial baseline."""
        return self.metrics[0]

    @property
    def learns_classes(self) -> bool:
        """A multiclass head without `classes`: Transform learns them from the training split
        (by frequency, at most `top_k`); the Trainer and Evaluator read them back."""
        return self.task == "multiclass" and not self.classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Output classes in order (multiclass); the catch-all class comes last."""
        return self.classes + ((self.other_class,) if self.other_class else ())


def parse_thresholds(f: Fields, task: str, metrics: tuple[str, ...]) -> dict[str, Threshold]:
    known = list(tasks.TASKS[task].metrics)
    raw = f.get("thresholds", dict, {})
    out = {}
    for metric, bounds in raw.items():
        if metric not in known:
            f.fail(f"unknown metric {metric!r} for a {task} head; "
                   f"choose from {known}", f"thresholds.{metric}")
        if metric not in metrics:
            f.fail(f"metric {metric!r} has a threshold but is not in this head's metrics "
                   f"{list(metrics)}", f"thresholds.{metric}")
        t = Fields(f.source, f"{f.path}.thresholds.{metric}", bounds, THRESHOLD_KEYS)
        vals = {k: t.get(k, float, None) for k in THRESHOLD_KEYS}
        if not any(v is not None for v in vals.values()):
            t.fail(f"give at least one of {list(THRESHOLD_KEYS)}")
        if vals["max_regression"] is not None and vals["max_regression"] < 0:
            t.fail("must be >= 0", "max_regression")
        out[metric] = Threshold(**vals)
    return out


def parse_head(source: str, index: int, spec: Any) -> Head:
    f = Fields(source, f"heads[{index}]", spec, HEAD_KEYS)
    name = check_name(f, "name")
    f.path = f"heads[{index}] ({name})"
    label = f.get("label", str)
    task = f.choice("task", TASKS, what="task")
    t = tasks.TASKS[task]
    loss = f.choice("loss", t.losses, t.losses[0], what=f"loss for a {task} head")
    weight = f.get("loss_weight", float, 1.0)
    if weight < 0:
        f.fail(f"must be >= 0, got {weight}", "loss_weight")
    metrics = f.get("metrics", list, list(t.default_metrics))
    for m in metrics:
        if m not in t.metrics:
            f.fail(f"unknown metric {m!r} for a {task} head; choose from {list(t.metrics)}",
                   "metrics")
    if len(set(metrics)) != len(metrics) or not metrics:
        f.fail(f"needs at least one metric, each once; got {metrics}", "metrics")
    metrics = tuple(metrics)
    classes: tuple[str, ...] = ()
    other = None
    top_k = None
    if t.takes_classes:
        listed = f.get("classes", list, None if task == "multiclass" else dataclasses.MISSING)
        classes = tuple(_label_value(f, c, "classes") for c in listed or ())
        if task == "multiclass":
            other = f.get("other_class", str, None)
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
        else:
            if not classes or len(set(classes)) != len(classes):
                f.fail(f"a {task} head needs at least one class, each once", "classes")
            if "other_class" in spec:
                f.fail("only multiclass heads take other_class", "other_class")
    elif "classes" in spec or "other_class" in spec:
        f.fail(f"only multiclass/multilabel heads take classes, this head is {task}", "classes")
    if "top_k" in spec and task != "multiclass":
        f.fail("only multiclass heads take top_k", "top_k")
    delimiter = f.get("delimiter", str, "|")
    if "delimiter" in spec and task != "multilabel":
        f.fail("only multilabel heads take 'delimiter'", "delimiter")
    if not delimiter:
        f.fail("must not be empty", "delimiter")
    positive = None
    if "positive" in spec:
        if task != "binary":
            f.fail(f"only binary heads take 'positive', this head is {task}", "positive")
        positive = _label_value(f, spec["positive"], "positive")
    auxiliary = f.get("auxiliary", bool, False)
    margin = f.get("baseline_margin", float, 0.01)
    if not 0 <= margin < 1:
        f.fail(f"must be in [0, 1), got {margin}", "baseline_margin")
    if task != "regression" and "normalize" in spec:
        f.fail("only regression heads take 'normalize'", "normalize")
    return Head(
        name=name, label=label, task=task, loss=loss, loss_weight=weight, metrics=metrics,
        thresholds=parse_thresholds(f, task, metrics),
        auxiliary=auxiliary, gate=f.get("gate", bool, not auxiliary),
        baseline_margin=margin, classes=classes, other_class=other,
        delimiter=delimiter,
        normalize=f.get("normalize", bool, True), tower=f.int_list("tower"), positive=positive,
        top_k=top_k)


def _label_value(f: Fields, value: Any, key: str) -> str:
    """A class or positive value as labels are matched (tasks.canonical: 1 and 1.0 are "1")."""
    if isinstance(value, bool):
        f.fail(f"{value!r} is a YAML boolean (yes/no, true/false and on/off are); quote the "
               f"label value as it is written in the data, e.g. 'yes'", key)
    if not isinstance(value, str | int | float) or tasks.canonical(value) in (None, ""):
        f.fail(f"expected a label value (text or number), got {value!r}", key)
    return tasks.canonical(value)


def parse_heads(top: Fields, feature_names: Iterable[str]) -> tuple[Head, ...]:
    """Every head; names are unique, no label is an input feature, one head at least is main."""
    source = top.source
    heads_raw = top.get("heads", list)
    if not heads_raw:
        top.fail("needs at least one head", "heads")
    heads = tuple(parse_head(source, i, h) for i, h in enumerate(heads_raw))
    seen: dict[str, int] = {}
    for i, h in enumerate(heads):
        if h.name in seen:
            raise ConfigError(f"{source}: heads[{i}].name: duplicate head name {h.name!r} "
                              f"(also heads[{seen[h.name]}])")
        seen[h.name] = i
    feature_names = set(feature_names)
    for i, h in enumerate(heads):
        if h.label in feature_names:
            raise ConfigError(
                f"{source}: heads[{i}] ({h.name}).label: label column {h.label!r} is also an "
                f"input feature (features.{h.label}); a label must never be an input "
                "(label leakage)")
    if all(h.auxiliary for h in heads):
        top.fail("every head is auxiliary; at least one head must be a main head", "heads")
    return heads


def raw_head(head: Head) -> dict[str, Any]:
    """The YAML form of one head (the inverse of parse_head). Every key is written, defaults
    too; a key that the head's task does not take only when it differs from its default, so that
    parsing fails instead of silently dropping it."""
    default = Head(name=head.name, label=head.label, task=head.task, loss=head.loss)
    out: dict[str, Any] = {
        "name": head.name, "label": head.label, "task": head.task, "loss": head.loss,
        "loss_weight": head.loss_weight, "metrics": list(head.metrics),
        "thresholds": {m: {k: getattr(t, k) for k in THRESHOLD_KEYS if getattr(t, k) is not None}
                       for m, t in head.thresholds.items()},
        "auxiliary": head.auxiliary, "gate": head.gate, "baseline_margin": head.baseline_margin,
        "tower": list(head.tower)}
    takes_classes = head.task in tasks.TASKS and tasks.TASKS[head.task].takes_classes
    if (takes_classes and not head.learns_classes) or head.classes != default.classes:
        out["classes"] = list(head.classes)
    if head.top_k is not None:
        out["top_k"] = head.top_k
    if head.other_class is not None:
        out["other_class"] = head.other_class
    if head.task == "multilabel" or head.delimiter != default.delimiter:
        out["delimiter"] = head.delimiter
    if head.task == "regression" or head.normalize != default.normalize:
        out["normalize"] = head.normalize
    if head.positive is not None:
        out["positive"] = head.positive
    return out
