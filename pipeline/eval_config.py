"""The Evaluator's EvalConfig, derived from the heads config.

Each head is one model output: its label and missing-label weight come from the model's
`transform_features` signature (`label__<head>`, `weight__<head>`), and it gets its own
MetricsSpec (`output_names=[head]`) with the head's metrics and thresholds. Auxiliary heads are
evaluated and reported but carry no thresholds, so they never block a push.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from headwise.config import Head, PipelineConfig, Threshold
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


def gates(head: Head) -> bool:
    """Whether this head's thresholds block the blessing."""
    return not head.auxiliary


def metrics_spec(head: Head) -> tfma.MetricsSpec:
    impl = heads_lib.make_head(head)
    configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for metric in head.metrics:
        class_name, config = impl.tfma_metric(metric)
        mc = tfma.MetricConfig(class_name=class_name, config=config)
        if gates(head) and metric in head.thresholds:
            mc.threshold.CopyFrom(metric_threshold(head.task, metric, head.thresholds[metric]))
        configs.append(mc)
    if head.task == "multilabel":
        # Each class as a binary problem, plus the macro average that the summary reports;
        # a threshold then holds for every class and for the average.
        return tfma.MetricsSpec(
            output_names=[head.name], metrics=configs,
            binarize=tfma.BinarizationOptions(class_ids={"values": range(len(head.classes))}),
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in range(len(head.classes))}))
    return tfma.MetricsSpec(output_names=[head.name], metrics=configs)


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
        metrics_specs=[metrics_spec(h) for h in cfg.heads],
        slicing_specs=[tfma.SlicingSpec()],
    )
