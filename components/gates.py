"""A head's gates, in one place: built into TFMA's EvalConfig before TFMA runs, and read back
from TFMA's ValidationResult, the one verdict that blesses a model (and that Pusher reads).

The gates are the gate registry's (`headwise.gates.GATES`: absolute, no regression, beats
trivial baseline; each entry says its config keys, its bound, its verdict and its report
column), held by every gating head (`gate: true`, every head that is not auxiliary by default),
all on the overall slice (a gate judged on each hour's few examples is noise, not a gate). This
module is what they share, written once for every gate: the EvalConfig, reading the verdicts
back, the rows of the report. Heads with `gate: false` are evaluated and reported, with no
thresholds.

The gates of one kind share the metric's one TFMA threshold (the tightest bound of them: the
value gates its value threshold, the change gates its change threshold); a failure is
attributed to whichever gate(s) of that kind the value or change crosses.

Each head is one model output: its label and missing-label weight come from the model's
`transform_features` signature (`label__<head>`, `weight__<head>`). Only
the head's own `metrics` are computed (each costs Evaluator time on every example: list the ones
you want to see), with each class and the macro average for multilabel heads (a threshold then
holds for every class and for the average).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import tensorflow_model_analysis as tfma

from headwise import contract, tasks
from headwise.config import Head, PipelineConfig
from headwise.gates import (  # noqa: F401 (baseline_bound: the formula, read from here too)
    CHANGE,
    FAIL,
    GATES,
    NA,
    PASS,
    VALUE,
    Bound,
    Target,
    baseline_bound,
)

Bounds = Mapping[str, Bound]  # one metric's bounds, by gate name (the gates that apply)


def head_bounds(head: Head, baselines: Mapping[str, float] | None) -> dict[str, Bounds]:
    """Per metric of a gating head, each gate's bound, by gate name in the registry's order
    (a metric that no gate applies to is left out); {} for a head that does not gate.
    `baselines`: the trivial baseline's value per metric, once computed."""
    if not head.gate:
        return {}
    task = tasks.of(head)
    out = {}
    for m in head.metrics:
        target = Target(head, task.metric(m), head.thresholds.get(m) or {},
                        (baselines or {}).get(m))
        found = {g.name: b for g in GATES.values() if (b := g.bound(target)) is not None}
        if found:
            out[m] = found
    return out


def _tightest(bounds: Bounds, kind: str) -> tuple[float | None, float | None]:
    """The (lower, upper) bound that holds every gate of one kind: the tightest of theirs."""
    mine = [bounds[g.name] for g in GATES.values() if g.kind == kind and g.name in bounds]
    lowers = [b.lower for b in mine if b.lower is not None]
    uppers = [b.upper for b in mine if b.upper is not None]
    return max(lowers, default=None), min(uppers, default=None)


def _threshold(bounds: Bounds) -> tfma.MetricThreshold | None:
    out = tfma.MetricThreshold()
    lower, upper = _tightest(bounds, VALUE)
    if lower is not None:
        out.value_threshold.lower_bound.value = lower
    if upper is not None:
        out.value_threshold.upper_bound.value = upper
    lower, upper = _tightest(bounds, CHANGE)
    if lower is not None and upper is not None:
        raise ValueError(f"TFMA's change threshold bounds one side; the gates set both: {bounds}")
    if lower is not None:  # the change may not fall below: higher is better
        out.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
        out.change_threshold.absolute.value = lower
    elif upper is not None:
        out.change_threshold.direction = tfma.MetricDirection.LOWER_IS_BETTER
        out.change_threshold.absolute.value = upper
    return out if out.ByteSize() else None


def _module(class_name: str) -> str:
    """Where TFMA finds a metric class: its own registry or Keras by name (""), else ours."""
    from components import tfma_metrics

    return tfma_metrics.__name__ if class_name in tfma_metrics.METRICS else ""


def output_names(cfg: PipelineConfig) -> dict[str, str]:
    """Each head's output name in TFMA's metrics specs and metric keys -> the head. A one-head
    model's is "": TFMA takes a model's only output out of its dict (inference_base), so its
    metrics must name no output, and its labels and weights are keys, not dicts."""
    if len(cfg.heads) == 1:
        return {"": cfg.heads[0].name}
    return {h.name: h.name for h in cfg.heads}


def metrics_specs(head: Head, baselines: Mapping[str, float] | None = None,
                  output_name: str | None = None) -> list[tfma.MetricsSpec]:
    """`output_name`: the head's in TFMA (`output_names`); default its name."""
    name = head.name if output_name is None else output_name
    outputs = [name] if name else []
    task = tasks.of(head)
    bounds = head_bounds(head, baselines)
    configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for name in head.metrics:
        metric = task.metric(name)
        class_name, config = metric.tfma_config()
        mc = tfma.MetricConfig(class_name=class_name, config=config, module=_module(class_name))
        threshold = _threshold(bounds[name]) if name in bounds else None
        if threshold is not None:
            mc.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()]).threshold.CopyFrom(
                threshold)
        configs.append(mc)
    classes = range(len(task.class_names(head)))
    if task.per_class:  # each class binarized and gated, then their macro average
        return [tfma.MetricsSpec(
            output_names=outputs, metrics=configs,
            binarize=tfma.BinarizationOptions(class_ids={"values": classes}),
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in classes}))]
    return [tfma.MetricsSpec(output_names=outputs, metrics=configs)]


def eval_config(cfg: PipelineConfig,
                baselines: Mapping[str, Mapping[str, float]] | None = None) -> tfma.EvalConfig:
    """The EvalConfig with every gate: those set in the config always; those that need the
    trivial baselines (per head, per metric; beats-baseline) once they are known, which the
    Evaluator computes."""
    names = output_names(cfg)
    outputs = {head: name for name, head in names.items()}
    if "" in names:  # one head: its label and weight are keys, as its output is no dict
        keys = {"label_key": contract.label_key(names[""]),
                "example_weight_key": contract.weight_key(names[""])}
    else:
        keys = {"label_keys": {h.name: contract.label_key(h.name) for h in cfg.heads},
                "example_weight_keys": {h.name: contract.weight_key(h.name) for h in cfg.heads}}
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # Evaluate through the exported signatures, as TF Serving calls them; as a Keras
            # model, TFMA would also feed raw features to the model's own call, past Transform.
            model_type=tfma.constants.TF_GENERIC,
            signature_name=contract.EXAMPLES_SIGNATURE,
            preprocessing_function_names=[contract.TRANSFORM_FEATURES_SIGNATURE],
            **keys,
        )],
        metrics_specs=[spec for h in cfg.heads
                       for spec in metrics_specs(h, (baselines or {}).get(h.name),
                                                 outputs[h.name])],
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
    verdicts: dict[str, str]  # gate name -> PASS / FAIL / NA, every gate, in registry order
    class_name: str | None = None  # a multilabel/multiclass head's class, when per class

    def failed_gates(self) -> list[str]:
        return [g for g, verdict in self.verdicts.items() if verdict == FAIL]

    def failure_text(self) -> str:
        what = self.metric + (f" (class {self.class_name})" if self.class_name else "")
        value = "-" if self.value is None else f"{self.value:.4g}"
        return (f"{what} = {value} fails "
                f"{' and '.join(GATES[g].title for g in self.failed_gates())} ({self.threshold})")

    def as_json(self) -> dict[str, Any]:
        """The row in gates.json: its fields, with each gate's verdict under the gate's name."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        verdicts, class_name = row.pop("verdicts"), row.pop("class_name")
        clash = set(verdicts) & {*row, "class_name"}
        if clash:
            raise ValueError(f"a gate is named like a row's field: {sorted(clash)}")
        return {**row, **verdicts, "class_name": class_name}


def threshold_text(bounds: Bounds | None) -> str:
    """What a metric must meet, for a person: each gate's bound, in registry order."""
    texts = [bounds[g].text for g in GATES if bounds and g in bounds and bounds[g].text]
    return ", ".join(texts) or NA


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failure of TFMA's ValidationResult on the overall slice."""

    head: str
    metric: str
    class_id: int | None
    is_diff: bool
    value: float | None


def failures(validation: tfma.ValidationResult,
             heads: Mapping[str, str] | None = None) -> list[Failure]:
    """`heads`: TFMA output name -> head (`output_names`); default the names as they are."""
    out = []
    for per_slice in validation.metric_validations_per_slice:
        if per_slice.slice_key.single_slice_keys:
            continue  # gates are on the overall slice only
        for f in per_slice.failures:
            k = f.metric_key
            class_id = k.sub_key.class_id.value if k.sub_key.HasField("class_id") else None
            value = f.metric_value.double_value.value if f.metric_value.HasField(
                "double_value") else None
            head = k.output_name if heads is None else heads.get(k.output_name, k.output_name)
            out.append(Failure(head, k.name, class_id, k.is_diff, value))
    return out


def gate_verdicts(bounds: Bounds | None, value: float | None, change: float | None,
                  fails: list[Failure], has_baseline_model: bool = True) -> dict[str, str]:
    """Every gate's verdict on one metric (or one class of it), by gate name in registry order,
    from TFMA's failures of its threshold: a gate that is set gives its own (`Gate.verdict`);
    one that is not set, or needs a blessed model where there is none, is NA."""
    out = {name: NA for name in GATES}
    for kind, quantity in ((VALUE, value), (CHANGE, change)):
        failed = any(f.is_diff == (kind == CHANGE) for f in fails)
        mine = [g for g in GATES.values() if g.kind == kind and bounds and g.name in bounds
                and (has_baseline_model or not g.needs_baseline_model)]
        for g in mine:
            out[g.name] = g.verdict(bounds[g.name], quantity, failed)
        if failed and mine and not any(out[g.name] == FAIL for g in mine):
            # TFMA failed a bound that no gate's own is crossed by (rounding at the bound, or a
            # change not known here): its verdict stands, on the kind's last gate. (TFMA judges
            # only the thresholds these gates set: a failure of a kind has a gate of it.)
            out[mine[-1].name] = FAIL
    return out


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
        fails = [f for f in head_failures if f.metric == m]
        overall = [f for f in fails if f.class_id is None]
        rows.append(MetricRow(m, values.get(m), baselines.get(m), threshold_text(b),
                              diffs.get(m), gate_verdicts(b, values.get(m), diffs.get(m), overall,
                                                          has_baseline_model)))
        for class_id in sorted({f.class_id for f in fails if f.class_id is not None}):
            per_class = [f for f in fails if f.class_id == class_id]
            value = (class_values or {}).get((m, class_id), per_class[0].value)
            rows.append(MetricRow(m, value, None, threshold_text(b), None,
                                  gate_verdicts(b, value, None, per_class, has_baseline_model),
                                  class_name=names[class_id] if class_id < len(names)
                                  else str(class_id)))
    return rows


def head_passed(rows: list[MetricRow]) -> bool:
    return not any(r.failed_gates() for r in rows)
