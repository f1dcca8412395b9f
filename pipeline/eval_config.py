"""The Evaluator's EvalConfig, derived from the heads config.

Each head is one model output: its label and missing-label weight come from the model's
`transform_features` signature (`label__<head>`, `weight__<head>`), and it gets its own
MetricsSpec (`output_names=[head]`) with the head's metrics and thresholds. Heads with
`gate: false` (auxiliary heads by default) are evaluated and reported but carry no thresholds,
so they never block a push.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from headwise.config import METRICS, Head, PipelineConfig, Threshold
from trainer import heads as heads_lib


def metric_threshold(task: str, metric: str, t: Threshold) -> tfma.MetricThreshold:
    higher = heads_lib.higher_is_better(task, metric)
    out = tfma.MetricThreshold()
    if t.min is not None or t.max is not None:
        bound = tfma.GenericValueThreshold()
        if t.min is not None:
            bound.lower_bound.value = t.min
        if t.max is not None:
            bound.upper_bound.value = t.max
        out.value_threshold.CopyFrom(bound)
    if t.max_regression is not None:
        out.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER if higher
                                          else tfma.MetricDirection.LOWER_IS_BETTER)
        out.change_threshold.absolute.value = -t.max_regression if higher else t.max_regression
    return out


def overall_threshold(mc: tfma.MetricConfig) -> tfma.MetricThreshold:
    """The metric's threshold on the overall slice only (TFMA would apply `threshold` to every
    slice, and a gate judged on each hour's few examples is noise, not a gate)."""
    for t in mc.per_slice_thresholds:
        if list(t.slicing_specs) == [tfma.SlicingSpec()]:
            return t.threshold
    return mc.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()]).threshold


def metrics_specs(head: Head) -> list[tfma.MetricsSpec]:
    """The head's metrics: every metric of its task (the head's own `metrics` are the ones the
    summary shows and the gates use), calibration for binary heads, and per-class precision and
    recall for multiclass heads."""
    impl = heads_lib.make_head(head)
    configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for metric in dict.fromkeys([*head.metrics, *METRICS[head.task]]):
        class_name, config = impl.tfma_metric(metric)
        mc = tfma.MetricConfig(class_name=class_name, config=config)
        if head.gate and metric in head.thresholds:
            overall_threshold(mc).CopyFrom(
                metric_threshold(head.task, metric, head.thresholds[metric]))
        configs.append(mc)
    if head.task == "binary":
        configs.append(tfma.MetricConfig(class_name="Calibration"))
    if head.task == "multilabel":
        # Each class as a binary problem, plus the macro average that the summary reports;
        # a threshold then holds for every class and for the average.
        return [tfma.MetricsSpec(
            output_names=[head.name], metrics=configs,
            binarize=tfma.BinarizationOptions(class_ids={"values": range(len(head.classes))}),
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in range(len(head.classes))}))]
    specs = [tfma.MetricsSpec(output_names=[head.name], metrics=configs)]
    if head.task == "multiclass":
        specs.append(tfma.MetricsSpec(
            output_names=[head.name],
            metrics=[tfma.MetricConfig(class_name="Precision"),
                     tfma.MetricConfig(class_name="Recall")],
            binarize=tfma.BinarizationOptions(
                class_ids={"values": range(len(head.class_names))})))
    return specs


def eval_config(cfg: PipelineConfig) -> tfma.EvalConfig:
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # Evaluate through the exported signatures, as TF Serving calls them; as a Keras
            # model, TFMA would also feed raw features to the model's own call, past Transform.
            model_type=tfma.constants.TF_GENERIC,
            signature_name="serving_default",
            preprocessing_function_names=["transform_features"],
            label_keys={h.name: heads_lib.label_key(h.name) for h in cfg.heads},
            example_weight_keys={h.name: heads_lib.weight_key(h.name) for h in cfg.heads},
        )],
        metrics_specs=[spec for h in cfg.heads for spec in metrics_specs(h)],
        slicing_specs=[tfma.SlicingSpec(),
                       *(tfma.SlicingSpec(feature_keys=[c]) for c in cfg.evaluation_slices)],
    )
