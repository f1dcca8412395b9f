"""A head's gates, in one place: built into TFMA's EvalConfig before TFMA runs, and read back
from TFMA's ValidationResult, the one verdict that blesses a model (and that Pusher reads).

Three gates per gating head (`gate: true`, every head that is not auxiliary by default), all on
the overall slice (a gate judged on each hour's few examples is noise, not a gate):
  absolute        `thresholds: {metric: {min, max}}`: the metric's value within bounds;
  no regression   `thresholds: {metric: {max_regression}}`: no worse than the last blessed model
                  by more than that (TFMA's change threshold against the baseline model);
  beats baseline  the head's main metric (its first) beats the trivial baseline (a model that
                  ignores every feature, `headwise.tasks`) by `baseline_margin`, a share of the
                  room between the baseline and the metric's best value (`baseline_bound`).
Heads with `gate: false` are evaluated and reported, with no thresholds.

The absolute and beats-baseline gates share TFMA's value threshold (the tighter bound of the
two); a value failure is attributed to whichever bound(s) the value crosses.

Each head is one model output: its label and missing-label weight come from the model's
`transform_features` signature (`label__<head>`, `weight__<head>`). Only
the head's own `metrics` are computed (each costs Evaluator time on every example: list the ones
you want to see), with each class and the macro average for multilabel heads (a threshold then
holds for every class and for the average).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import tensorflow_model_analysis as tfma

from headwise import contract, tasks
from headwise.config import Head, PipelineConfig

ABSOLUTE, NO_REGRESSION, BEATS_BASELINE = "absolute", "no_regression", "beats_baseline"
GATE_TITLES = {ABSOLUTE: "absolute threshold", NO_REGRESSION: "no regression",
               BEATS_BASELINE: "beats trivial baseline"}
PASS, FAIL, NA = "pass", "FAIL", "-"


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


@dataclasses.dataclass(frozen=True)
class Bounds:
    """What one gating metric of one head must meet (None: that bound does not apply)."""

    min: float | None = None  # absolute
    max: float | None = None  # absolute
    max_regression: float | None = None
    baseline: float | None = None  # the trivial baseline's value
    baseline_bound: float | None = None  # what beating it by the margin takes

    def value_bound(self, higher_is_better: bool) -> tuple[float | None, float | None]:
        """The (lower, upper) bound of TFMA's value threshold: the tighter of both gates."""
        lower, upper = self.min, self.max
        if self.baseline_bound is not None:
            if higher_is_better:
                lower = self.baseline_bound if lower is None else max(lower, self.baseline_bound)
            else:
                upper = self.baseline_bound if upper is None else min(upper, self.baseline_bound)
        return lower, upper


def head_bounds(head: Head, baselines: Mapping[str, float] | None) -> dict[str, Bounds]:
    """Per metric of a gating head, what it must meet; {} for a head that does not gate."""
    if not head.gate:
        return {}
    task = tasks.of(head)
    out = {}
    for m in head.metrics:
        t = head.thresholds.get(m)
        kwargs = dataclasses.asdict(t) if t is not None else {}
        if m == head.main_metric and baselines and m in baselines:
            b = baselines[m]
            kwargs.update(baseline=b, baseline_bound=baseline_bound(
                b, head.baseline_margin, task.metric(m)))
        if kwargs:
            out[m] = Bounds(**kwargs)
    return out


def _threshold(bounds: Bounds, higher: bool) -> tfma.MetricThreshold | None:
    out = tfma.MetricThreshold()
    lower, upper = bounds.value_bound(higher)
    if lower is not None:
        out.value_threshold.lower_bound.value = lower
    if upper is not None:
        out.value_threshold.upper_bound.value = upper
    if bounds.max_regression is not None:
        out.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER if higher
                                          else tfma.MetricDirection.LOWER_IS_BETTER)
        out.change_threshold.absolute.value = (-bounds.max_regression if higher
                                               else bounds.max_regression)
    return out if out.ByteSize() else None


def _module(class_name: str) -> str:
    """Where TFMA finds a metric class: its own registry or Keras by name (""), else ours."""
    from components import tfma_metrics

    return tfma_metrics.__name__ if class_name in tfma_metrics.METRICS else ""


def metrics_specs(head: Head, baselines: Mapping[str, float] | None = None
                  ) -> list[tfma.MetricsSpec]:
    task = tasks.of(head)
    bounds = head_bounds(head, baselines)
    configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for name in head.metrics:
        metric = task.metric(name)
        class_name, config = metric.tfma_config()
        mc = tfma.MetricConfig(class_name=class_name, config=config, module=_module(class_name))
        threshold = _threshold(bounds[name], metric.higher_is_better) if name in bounds else None
        if threshold is not None:
            mc.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()]).threshold.CopyFrom(
                threshold)
        configs.append(mc)
    classes = range(len(task.class_names(head)))
    if head.task == "multilabel":
        return [tfma.MetricsSpec(
            output_names=[head.name], metrics=configs,
            binarize=tfma.BinarizationOptions(class_ids={"values": classes}),
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in classes}))]
    return [tfma.MetricsSpec(output_names=[head.name], metrics=configs)]


def eval_config(cfg: PipelineConfig,
                baselines: Mapping[str, Mapping[str, float]] | None = None) -> tfma.EvalConfig:
    """The EvalConfig with every gate: absolute and no-regression always; beats-baseline once
    the trivial baselines (per head, per metric) are known, which the Evaluator computes."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # Evaluate through the exported signatures, as TF Serving calls them; as a Keras
            # model, TFMA would also feed raw features to the model's own call, past Transform.
            model_type=tfma.constants.TF_GENERIC,
            signature_name=contract.DEFAULT_SIGNATURE,
            preprocessing_function_names=[contract.TRANSFORM_FEATURES_SIGNATURE],
            label_keys={h.name: contract.label_key(h.name) for h in cfg.heads},
            example_weight_keys={h.name: contract.weight_key(h.name) for h in cfg.heads},
        )],
        metrics_specs=[spec for h in cfg.heads
                       for spec in metrics_specs(h, (baselines or {}).get(h.name))],
        slicing_specs=[tfma.SlicingSpec(),
                       *(tfma.SlicingSpec(feature_keys=[c]) for c in cfg.evaluation_slices)],
    )


# --- Reading the verdict back ---------------------------------------------------------------

@dataclasses.dataclass
class MetricRow:
    """One metric of one head (or of one class of a multilabel head) and its gates' verdicts."""

    metric: str
    value: float | None
    baseline: float | None
    threshold: str  # what it must meet, for a person
    change: float | None  # candidate - last blessed model (None: no baseline model)
    absolute: str  # PASS / FAIL / NA
    no_regression: str
    beats_baseline: str
    class_name: str | None = None  # a multilabel/multiclass head's class, when per class

    def failed_gates(self) -> list[str]:
        return [g for g in (ABSOLUTE, NO_REGRESSION, BEATS_BASELINE) if getattr(self, g) == FAIL]

    def failure_text(self) -> str:
        what = self.metric + (f" (class {self.class_name})" if self.class_name else "")
        value = "-" if self.value is None else f"{self.value:.4g}"
        return (f"{what} = {value} fails "
                f"{' and '.join(GATE_TITLES[g] for g in self.failed_gates())} ({self.threshold})")


def threshold_text(bounds: Bounds | None, higher: bool) -> str:
    if bounds is None:
        return NA
    texts = []
    texts += [f">= {bounds.min:g}"] if bounds.min is not None else []
    texts += [f"<= {bounds.max:g}"] if bounds.max is not None else []
    if bounds.max_regression is not None:
        texts.append(f"change {'>= -' if higher else '<= +'}{bounds.max_regression:g}")
    if bounds.baseline_bound is not None:
        texts.append(f"{'>=' if higher else '<='} {bounds.baseline_bound:.4g} (baseline)")
    return ", ".join(texts) or NA


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failure of TFMA's ValidationResult on the overall slice."""

    head: str
    metric: str
    class_id: int | None
    is_diff: bool
    value: float | None


def failures(validation: tfma.ValidationResult) -> list[Failure]:
    out = []
    for per_slice in validation.metric_validations_per_slice:
        if per_slice.slice_key.single_slice_keys:
            continue  # gates are on the overall slice only
        for f in per_slice.failures:
            k = f.metric_key
            class_id = k.sub_key.class_id.value if k.sub_key.HasField("class_id") else None
            value = f.metric_value.double_value.value if f.metric_value.HasField(
                "double_value") else None
            out.append(Failure(k.output_name, k.name, class_id, k.is_diff, value))
    return out


def _crosses(value: float | None, lower: float | None, upper: float | None) -> bool:
    return value is not None and ((lower is not None and value < lower)
                                  or (upper is not None and value > upper))


def head_rows(head: Head, bounds: Mapping[str, Bounds], values: Mapping[str, float],
              diffs: Mapping[str, float], head_failures: list[Failure],
              baselines: Mapping[str, float], class_values: Mapping[tuple[str, int], float]
              | None = None, has_baseline_model: bool = True) -> list[MetricRow]:
    """The head's rows, with each gate's verdict taken from TFMA's failures: a gate that is set
    and has no failure passed; one that is not set (or not gating) is NA. Per-class failures of
    a multilabel head get a row of their own, naming the class."""
    task = tasks.of(head)
    names = task.class_names(head)
    rows = []
    for m in head.metrics:
        b = bounds.get(m)
        higher = task.metric(m).higher_is_better
        fails = [f for f in head_failures if f.metric == m]

        def verdicts(value, fails, b=b, higher=higher):
            value_fail = [f for f in fails if not f.is_diff]
            diff_fail = any(f.is_diff for f in fails)
            out = {ABSOLUTE: NA, NO_REGRESSION: NA, BEATS_BASELINE: NA}
            if b is None:
                return out
            if b.min is not None or b.max is not None:
                out[ABSOLUTE] = FAIL if value_fail and _crosses(value, b.min, b.max) else PASS
            if b.baseline_bound is not None:
                lo, hi = (b.baseline_bound, None) if higher else (None, b.baseline_bound)
                out[BEATS_BASELINE] = FAIL if value_fail and _crosses(value, lo, hi) else PASS
            if b.max_regression is not None and has_baseline_model:
                out[NO_REGRESSION] = FAIL if diff_fail else PASS
            if value_fail and out[ABSOLUTE] != FAIL and out[BEATS_BASELINE] != FAIL:
                # TFMA failed a bound the value does not cross (rounding at the bound): its
                # verdict stands; name the gate that owns the tighter bound.
                out[BEATS_BASELINE if b.baseline_bound is not None else ABSOLUTE] = FAIL
            return out

        overall = [f for f in fails if f.class_id is None]
        rows.append(MetricRow(m, values.get(m), baselines.get(m), threshold_text(b, higher),
                              diffs.get(m), **verdicts(values.get(m), overall)))
        for class_id in sorted({f.class_id for f in fails if f.class_id is not None}):
            per_class = [f for f in fails if f.class_id == class_id]
            value = (class_values or {}).get((m, class_id), per_class[0].value)
            rows.append(MetricRow(m, value, None, threshold_text(b, higher), None,
                                  **verdicts(value, per_class),
                                  class_name=names[class_id] if class_id < len(names)
                                  else str(class_id)))
    return rows


def head_passed(rows: list[MetricRow]) -> bool:
    return not any(r.failed_gates() for r in rows)
