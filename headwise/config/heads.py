"""The `heads` section: one head per label column, with its task, loss, metrics and gates.

What a task accepts (losses, metrics, default metrics, whether it takes classes) comes from the
task registry, `headwise.tasks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from headwise import gates, tasks
from headwise.config.fields import ConfigError, Fields, check_name

TASKS = tuple(tasks.TASKS)
COMMON_KEYS = ("name", "label", "task", "loss", "loss_weight", "metrics", "thresholds",
               "auxiliary", "tower", "gate", "baseline_margin")
HEAD_KEYS = COMMON_KEYS + tasks.TASK_KEYS  # the rest: keys some task takes (tasks.config_keys)


class Threshold(Mapping[str, float]):
    """The gates of one metric of one head: {key: value} for the gate registry's keys
    (`headwise.gates.GATES`: min / max, absolute bounds on the metric's value; max_regression,
    the largest allowed worsening against the last blessed model, in the metric's units). Unset
    keys are absent; a key also reads as an attribute (`threshold.min`, None when unset).
    Immutable, like the rest of the config."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float | None] | None = None, /,
                 **kwargs: float | None):
        given = {**(values or {}), **kwargs}
        known = gates.threshold_keys()
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"unknown threshold key(s) {unknown}; the gates take {list(known)}")
        object.__setattr__(self, "_values",
                           {k: given[k] for k in known if given.get(k) is not None})

    def __getattr__(self, key: str) -> float | None:
        if key.startswith("_") or key not in gates.threshold_keys():
            raise AttributeError(key)
        return self._values.get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {key!r}")

    def __getitem__(self, key: str) -> float:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __reduce__(self):
        return Threshold, (dict(self._values),)

    def __repr__(self) -> str:
        return f"Threshold({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


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
    target: str = "none"  # regression: the target transform (tasks.TARGETS)
    tower: tuple[int, ...] = ()  # hidden units of this head's own layers
    positive: tuple[str, ...] | None = None  # binary: the label value(s) of the positive class
    positive_if: tuple[str, float] | None = None  # binary: (comparison, number) on the label
    top_k: int | None = None  # multiclass without classes: learn at most this many
    # multiclass with `classes: {name: [values]}`: the label values each class merges (empty:
    # every class is its own value)
    class_values: tuple[tuple[str, ...], ...] = ()

    def values_of_classes(self) -> tuple[tuple[str, ...], ...]:
        """Per listed class, the label values that make it (multiclass)."""
        return self.class_values or tuple((c,) for c in self.classes)

    @property
    def main_metric(self) -> str:
        """The head's first metric: the one that must beat the trivial baseline."""
        return self.metrics[0]

    @property
    def learns_classes(self) -> bool:
        """A multiclass head without `classes`: Transform learns them from the training split
        (by frequency, at most `top_k`); the Trainer and Evaluator read them back."""
        return tasks.of(self).learns_classes(self)

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
        keys = gates.threshold_keys()  # the gate registry's, each validated by its gate
        t = Fields(f.source, f"{f.path}.thresholds.{metric}", bounds, keys)
        vals = {k: t.get(k, float, None) for k in keys}
        if not any(v is not None for v in vals.values()):
            t.fail(f"give at least one of {list(keys)}")
        for gate in gates.GATES.values():
            for k in gate.keys:
                problem = vals[k] is not None and gate.check(k, vals[k])
                if problem:
                    t.fail(problem, k)
        out[metric] = Threshold(vals)
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
    for key in tasks.TASK_KEYS:
        if key in spec and key not in t.config_keys:
            takers = "/".join(n for n, other in tasks.TASKS.items() if key in other.config_keys)
            f.fail(f"only {takers} heads take {key!r}, this head is {task}", key)
    own = t.parse(f, spec)  # the task's own keys, validated by its registry entry
    auxiliary = f.get("auxiliary", bool, False)
    margin = f.get("baseline_margin", float, 0.01)
    if not 0 <= margin < 1:
        f.fail(f"must be in [0, 1), got {margin}", "baseline_margin")
    return Head(
        name=name, label=label, task=task, loss=loss, loss_weight=weight, metrics=metrics,
        thresholds=parse_thresholds(f, task, metrics),
        auxiliary=auxiliary, gate=f.get("gate", bool, not auxiliary),
        baseline_margin=margin, tower=f.int_list("tower"), **own)


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
        "thresholds": {m: dict(t) for m, t in head.thresholds.items()},
        "auxiliary": head.auxiliary, "gate": head.gate, "baseline_margin": head.baseline_margin,
        "tower": list(head.tower)}
    task = tasks.TASKS.get(head.task)
    own = task.raw(head) if task else {}
    # A key that another task takes is written only when it differs from its default.
    for key in tasks.TASK_KEYS:
        value = getattr(head, key)
        if key not in own and value != getattr(default, key):
            own[key] = list(value) if isinstance(value, tuple) else value
    return {**out, **own}
