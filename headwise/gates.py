"""The gate registry: every gate a head's metric can be held to, in one place, without TensorFlow.

A gate is one `Gate` subclass and one entry in `GATES` (in order: the order of the report's
columns, of a row's threshold text and of the gates a failure names). It says:
  * config: its keys under a head's `thresholds: {<metric>: {...}}` (`keys`) and their
    validation (`check`); the config parses exactly the keys the registry lists
    (`headwise.config.heads`), and Transform and Trainer never receive them
    (`headwise.config.scope.TRAINING_EXCLUDED`), so editing a gate never retrains. A gate may
    also read a key of the head itself (`head_keys`, excluded from training the same way);
  * TFMA: the bound it holds one metric to (`bound`): on the metric's value (`VALUE`: TFMA's
    value threshold) or on its change against the last blessed model (`CHANGE`: TFMA's change
    threshold, one-sided). `components.gates` puts every gate's bound into the metric's one
    MetricThreshold (the tightest of each kind), so TFMA's one verdict covers every gate;
  * verdict: how its own verdict is read back from TFMA's ValidationResult (`verdict`), and
    whether it has one at all without a blessed model to compare with (`needs_baseline_model`);
  * report: its key in gates.json's rows and in `MetricRow.verdicts` (`name`), its column's
    header in report.md (`column`) and how a failure names it (`title`).

The gates, all on the overall slice:
  absolute        `thresholds: {metric: {min, max}}`: the metric's value within bounds;
  no regression   `thresholds: {metric: {max_regression}}`: no worse than the last blessed model
                  by more than that (TFMA's change threshold against the baseline model);
  beats baseline  the head's main metric (its first) beats the trivial baseline (a model that
                  ignores every feature, `headwise.tasks`) by `baseline_margin`, a share of the
                  room between the baseline and the metric's best value (`baseline_bound`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Protocol

from headwise import tasks

VALUE, CHANGE = "value", "change"  # what a gate bounds: the metric's value, or its change
PASS, FAIL, NA = "pass", "FAIL", "-"  # a gate's verdict (NA: not set, or not applicable)


class GatedHead(Protocol):
    """What a gate reads of a head's config. `headwise.config.Head` is one; the config imports
    this module, never the reverse."""

    name: str
    main_metric: str  # the head's first metric
    baseline_margin: float


@dataclasses.dataclass(frozen=True)
class Target:
    """One metric of one gating head: what a gate computes its bound from."""

    head: GatedHead
    metric: tasks.Metric  # its direction and range
    settings: Mapping[str, float]  # the metric's entry under the head's `thresholds`
    baseline: float | None = None  # the trivial baseline's value (None: not computed yet)

    @property
    def higher(self) -> bool:
        return self.metric.higher_is_better

    @property
    def is_main(self) -> bool:
        return self.metric.name == self.head.main_metric


@dataclasses.dataclass(frozen=True)
class Bound:
    """What one gate holds one metric to: lower <= quantity <= upper (None: no bound on that
    side), the quantity being the metric's value (a VALUE gate) or its change against the last
    blessed model (a CHANGE gate)."""

    lower: float | None = None
    upper: float | None = None
    text: str = ""  # for a person: the report's threshold column and each failure's line

    def crossed_by(self, quantity: float | None) -> bool:
        return quantity is not None and ((self.lower is not None and quantity < self.lower)
                                         or (self.upper is not None and quantity > self.upper))


class Gate:
    """One gate; every entry of GATES is one (see the module's docstring)."""

    name: ClassVar[str]  # its key in gates.json's rows and in MetricRow.verdicts
    title: ClassVar[str]  # how a failure names it: "auc = 0.5 fails <title> (...)"
    column: ClassVar[str]  # its column's header in report.md
    kind: ClassVar[str] = VALUE  # VALUE or CHANGE: the part of TFMA's MetricThreshold it sets
    keys: ClassVar[tuple[str, ...]] = ()  # its keys under `thresholds: {<metric>: ...}`
    head_keys: ClassVar[tuple[str, ...]] = ()  # keys of the head itself that only it reads
    needs_baseline_model: ClassVar[bool] = False  # no verdict (NA) without a blessed model

    def check(self, key: str, value: float) -> str | None:
        """What is wrong with the value of one of its keys, for the config's error (None:
        nothing)."""
        return None

    def bound(self, target: Target) -> Bound | None:
        """Its bound for one metric of a gating head; None where it does not apply."""
        raise NotImplementedError

    def verdict(self, bound: Bound, quantity: float | None, failed: bool) -> str:
        """Its verdict, read from TFMA's: `failed` is whether TFMA failed the metric's threshold
        of this gate's kind (value or change), `quantity` the value or change judged (None: not
        known). TFMA judges the tightest bound of all gates of a kind at once: this gate failed
        where the quantity crosses its own bound. (Where TFMA failed a threshold that no gate's
        bound is crossed by, `components.gates` lets its verdict stand on the kind's last gate.)
        """
        return FAIL if failed and bound.crossed_by(quantity) else PASS


def baseline_bound(value: float, margin: float, metric: tasks.Metric) -> float:
    """What the head's main metric must reach to beat a baseline scoring `value` by `margin`:
    the margin is a share of the room left between the baseline and the metric's best value,
    so the bound is always reachable and never vacuous. Higher-is-better with a ceiling (AUC,
    accuracy, precision, recall; ceiling 1): b + margin * (1 - b). Lower-is-better with a floor
    (errors; floor 0): b - margin * (b - 0), i.e. margin as a share of the baseline's error.
    Without a ceiling or floor, margin as a share of |b|."""
    if metric.higher_is_better:
        room = metric.upper - value if metric.upper is not None else abs(value)
        return value + margin * max(room, 0.0)
    room = value - metric.lower if metric.lower is not None else abs(value)
    return value - margin * max(room, 0.0)


class Absolute(Gate):
    """`min` / `max`: absolute bounds on the metric's value."""

    name, title, column = "absolute", "absolute threshold", "absolute"
    keys = ("min", "max")

    def bound(self, target: Target) -> Bound | None:
        lower, upper = target.settings.get("min"), target.settings.get("max")
        if lower is None and upper is None:
            return None
        texts = ([f">= {lower:g}"] if lower is not None else []) + (
            [f"<= {upper:g}"] if upper is not None else [])
        return Bound(lower, upper, ", ".join(texts))


class NoRegression(Gate):
    """`max_regression`: the largest allowed worsening against the last blessed model, in the
    metric's units."""

    name, title, column = "no_regression", "no regression", "no regression"
    kind, keys, needs_baseline_model = CHANGE, ("max_regression",), True

    def check(self, key: str, value: float) -> str | None:
        return "must be >= 0" if value < 0 else None

    def bound(self, target: Target) -> Bound | None:
        worst = target.settings.get("max_regression")
        if worst is None:
            return None
        if target.higher:
            return Bound(lower=-worst, text=f"change >= -{worst:g}")
        return Bound(upper=worst, text=f"change <= +{worst:g}")


class BeatsBaseline(Gate):
    """The head's main metric beats the trivial baseline by the head's `baseline_margin`, once
    the Evaluator has computed the baseline (`baseline_bound`)."""

    name, title, column = "beats_baseline", "beats trivial baseline", "beats baseline"
    head_keys = ("baseline_margin",)

    def bound(self, target: Target) -> Bound | None:
        if not target.is_main or target.baseline is None:
            return None
        b = baseline_bound(target.baseline, target.head.baseline_margin, target.metric)
        if target.higher:
            return Bound(lower=b, text=f">= {b:.4g} (baseline)")
        return Bound(upper=b, text=f"<= {b:.4g} (baseline)")


#: The registry, by name, in order. A new gate is one `Gate` and one entry here.
GATES: dict[str, Gate] = {g.name: g for g in (Absolute(), NoRegression(), BeatsBaseline())}


def threshold_keys() -> tuple[str, ...]:
    """Every key a metric's entry under `thresholds` takes: the gates' keys, in order."""
    keys = tuple(k for g in GATES.values() for k in g.keys)
    if len(set(keys)) != len(keys):
        raise ValueError(f"two gates claim one threshold key: {list(keys)}")
    return keys
