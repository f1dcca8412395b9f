"""TFMA-native metrics that TFMA 0.47 lacks, for the Evaluator (`components.gates` names this
module in a MetricConfig; TFMA imports it in each Beam worker).

Native means a Beam combiner over numpy batches. TFMA can also wrap any Keras metric, but it
then runs a traced TF graph for every batch of every slice, which costs the Evaluator seconds
per metric even on small data.
"""

from __future__ import annotations

import math

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import mean_regression_error, metric_types, metric_util

from headwise import tasks


class RootMeanSquaredError(metric_types.Metric):
    """The square root of TFMA's MeanSquaredError (same weighting and slicing)."""

    def __init__(self, name: str = "root_mean_squared_error"):
        super().__init__(metric_util.merge_per_key_computations(_rmse_computations), name=name)


def _rmse_computations(name: str, eval_config=None, model_name: str = "",
                       output_name: str = "", example_weighted: bool = False, sub_key=None,
                       aggregation_type=None, class_weights=None, preprocessors=None
                       ) -> metric_types.MetricComputations:
    mse = mean_regression_error._mean_squared_error_computations(  # noqa: SLF001
        name=f"__{name}_mse", eval_config=eval_config, model_name=model_name,
        output_name=output_name, example_weighted=example_weighted, sub_key=sub_key,
        aggregation_type=aggregation_type, class_weights=class_weights,
        preprocessors=preprocessors)
    mse_key = mse[0].keys[0]
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted,
                                 aggregation_type=aggregation_type)

    def result(metrics):
        return {key: math.sqrt(metrics[mse_key])}

    return [*mse, metric_types.DerivedMetricComputation(keys=[key], result=result)]


class MulticlassAccuracy(metric_types.Metric):
    """Share of (weighted) examples whose class is among the k highest scores (k=1: accuracy),
    for a multiclass output (scores [classes]) and a class-id label. One key per metric, with no
    sub key, so thresholds and changes attach to it as to any scalar metric."""

    def __init__(self, name: str = "accuracy", k: int = 1):
        super().__init__(metric_util.merge_per_key_computations(_accuracy_computations),
                         name=name, k=k)


def _accuracy_computations(name: str, k: int = 1, eval_config=None, model_name: str = "",
                           output_name: str = "", example_weighted: bool = False, sub_key=None,
                           aggregation_type=None, class_weights=None, preprocessors=None
                           ) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted,
                                 aggregation_type=aggregation_type)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=preprocessors,
        combiner=_AccuracyCombiner(key, eval_config, k, example_weighted))]


class _WeightedMean(beam.CombineFn):
    """The example-weighted mean of `value(label, prediction)` over one output's examples;
    subclasses give the value (and whether TFMA flattens and squeezes the arrays)."""

    flatten = squeeze = True

    def __init__(self, key, eval_config, example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._example_weighted = example_weighted

    def value(self, label, prediction) -> float:
        raise NotImplementedError

    def create_accumulator(self):
        return [0.0, 0.0]  # weighted sum of values, weight

    def add_input(self, acc, element):
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._example_weighted,
                flatten=self.flatten, squeeze=self.squeeze):
            w = float(np.sum(weight))
            if w == 0:
                continue
            acc[0] += w * self.value(label, prediction)
            acc[1] += w
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            out[0] += a[0]
            out[1] += a[1]
        return out

    def extract_output(self, acc):
        return {self._key: acc[0] / acc[1] if acc[1] else float("nan")}


class _AccuracyCombiner(_WeightedMean):
    flatten = squeeze = False

    def __init__(self, key, eval_config, k: int, example_weighted: bool):
        super().__init__(key, eval_config, example_weighted)
        self._k = k

    def value(self, label, scores) -> float:
        scores = np.asarray(scores, float).reshape(-1)
        cls = int(np.asarray(label).reshape(-1)[0])
        # Ties count against: the label's class must beat all but k-1 other classes.
        return float(np.sum(scores > scores[cls]) < self._k)


class PoissonDeviance(metric_types.Metric):
    """The (weighted) mean Poisson deviance of a count output against its label
    (`headwise.tasks.poisson_deviance`, the formula the Trainer's Keras metric computes)."""

    def __init__(self, name: str = "poisson_deviance"):
        super().__init__(metric_util.merge_per_key_computations(_deviance_computations),
                         name=name)


def _deviance_computations(name: str, eval_config=None, model_name: str = "",
                           output_name: str = "", example_weighted: bool = False, sub_key=None,
                           aggregation_type=None, class_weights=None, preprocessors=None
                           ) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted,
                                 aggregation_type=aggregation_type)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=preprocessors,
        combiner=_DevianceCombiner(key, eval_config, example_weighted))]


class _DevianceCombiner(_WeightedMean):
    def value(self, label, prediction) -> float:
        return float(np.sum(tasks.poisson_deviance(label, prediction)))


METRICS = {cls.__name__: cls for cls in (RootMeanSquaredError, MulticlassAccuracy,
                                         PoissonDeviance)}
