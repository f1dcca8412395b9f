"""Evaluator with per-head trivial-baseline gates and a per-head report.

The stock Evaluator (TFMA) computes each head's metrics and applies the absolute and
no-regression thresholds of the EvalConfig. This executor first reads the labels of the train
and eval splits, computes each head's trivial baseline (components.baselines) and adds "beat
the baseline by `baseline_margin`" to the value threshold of every gating head's main metric;
so TFMA's one blessing, which Pusher and the latest-blessed-model resolver read, covers all
three gates. After TFMA it writes the report (components.report) next to the evaluation.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as stock
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, path_utils, proto_utils

from components import baselines as baselines_lib
from components import report as report_lib
from headwise import config as config_lib
from pipeline.eval_config import overall_threshold
from trainer.heads import higher_is_better

HEADS_CONFIG_KEY = "heads_config"


def read_columns(examples_uri: str, split: str, columns: list[str]) -> tuple[dict, list[bytes]]:
    """Raw values of `columns` (None where missing) and the serialized examples of a split."""
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    out: dict[str, list[Any]] = {c: [] for c in columns}
    serialized = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        raw = record.numpy()
        serialized.append(raw)
        feats = tf.train.Example.FromString(raw).features.feature
        for c in columns:
            f = feats.get(c)
            kind = f.WhichOneof("kind") if f is not None else None
            vals = getattr(f, kind).value if kind else []
            v = vals[0] if len(vals) else None
            out[c].append(v.decode() if isinstance(v, bytes) else v)
    return out, serialized


def add_baseline_thresholds(eval_config: tfma.EvalConfig, cfg: config_lib.PipelineConfig,
                            baselines: dict[str, dict[str, float]]) -> None:
    """Tighten each gating head's main-metric value threshold to beat its trivial baseline."""
    for head in cfg.heads:
        if not head.gate:
            continue
        m = head.main_metric
        higher = higher_is_better(head.task, m)
        bound = baselines_lib.baseline_bound(baselines[head.name][m], head.baseline_margin,
                                             higher)
        spec = next(s for s in eval_config.metrics_specs if list(s.output_names) == [head.name])
        mc = next(c for c in spec.metrics if json.loads(c.config or "{}").get("name") == m)
        vt = overall_threshold(mc).value_threshold
        if higher:
            vt.lower_bound.value = max(bound, vt.lower_bound.value) if vt.HasField(
                "lower_bound") else bound
        else:
            vt.upper_bound.value = min(bound, vt.upper_bound.value) if vt.HasField(
                "upper_bound") else bound


def _metric_values(evaluation_uri: str, cfg: config_lib.PipelineConfig):
    """Per head, on the overall slice: candidate values, changes against the baseline model,
    the metrics whose change gate failed, and the (weighted) example count."""
    values = {h.name: {} for h in cfg.heads}
    diffs = {h.name: {} for h in cfg.heads}
    counts = {}
    for sm in tfma.load_metrics(evaluation_uri):
        if sm.slice_key.single_slice_keys:
            continue
        for kv in sm.metric_keys_and_values:
            k = kv.key
            if k.output_name not in values or k.HasField("sub_key") or k.model_name not in (
                    "", "candidate"):
                continue
            (diffs if k.is_diff else values)[k.output_name][k.name] = kv.value.double_value.value
    for head, v in values.items():  # examples whose label for this head is present
        counts[head] = v.get("weighted_example_count", v.get("example_count"))
    change_failures = {h.name: set() for h in cfg.heads}
    validation = tfma.load_validation_result(evaluation_uri)
    for per_slice in validation.metric_validations_per_slice:
        for f in per_slice.failures:
            if f.metric_key.is_diff and f.metric_key.output_name in change_failures:
                change_failures[f.metric_key.output_name].add(f.metric_key.name)
    return values, diffs, change_failures, counts, validation.validation_ok


def predict(model_uri: str, serialized: list[bytes], batch: int = 1024) -> dict[str, np.ndarray]:
    serve = tf.saved_model.load(path_utils.serving_model_path(model_uri)).signatures[
        "serving_default"]
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(serialized), batch):
        for k, v in serve(examples=tf.constant(serialized[i:i + batch])).items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        cfg = config_lib.from_dict(json.loads(exec_properties[HEADS_CONFIG_KEY]))
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        if baseline and baseline[0].uri == model.uri:
            # A rerun with a cached Trainer: the candidate *is* the blessed baseline. Comparing
            # it with itself only doubles TFMA's work; evaluate it alone (no change can fail).
            logging.info("the candidate is the latest blessed model itself; no comparison")
            input_dict = {k: v for k, v in input_dict.items()
                          if k != standard_component_specs.BASELINE_MODEL_KEY}
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY])
        columns = list(cfg.label_columns)
        train, _ = read_columns(examples.uri, "train", columns)
        evals, serialized = read_columns(examples.uri, "eval", columns)
        baselines = {h.name: baselines_lib.baseline_metrics(h, train[h.label], evals[h.label])
                     for h in cfg.heads}
        logging.info("trivial baselines per head: %s", baselines)

        eval_config = tfma.EvalConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
                                  eval_config)
        add_baseline_thresholds(eval_config, cfg, baselines)
        props = {k: v for k, v in exec_properties.items() if k != HEADS_CONFIG_KEY}
        props[standard_component_specs.EVAL_CONFIG_KEY] = proto_utils.proto_to_json(eval_config)
        super().Do(input_dict, output_dict, props)

        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY])
        values, diffs, change_failures, counts, blessed = _metric_values(evaluation.uri, cfg)
        results = {h.name: report_lib.head_rows(h, values[h.name], diffs[h.name],
                                                change_failures[h.name], baselines[h.name])
                   for h in cfg.heads}
        predictions = predict(model.uri, serialized)
        path = report_lib.write_report(
            cfg, evaluation.uri, results, counts, blessed,
            bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)), evals,
            predictions)
        logging.info("per-head validation report: %s", path)


class HeadwiseEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS,
                  HEADS_CONFIG_KEY: ExecutionParameter(type=str)}


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator interface (examples, model, baseline_model, eval_config) plus the heads
    config; outputs `evaluation` and `blessing` like the stock one."""

    SPEC_CLASS = HeadwiseEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples, model, baseline_model, eval_config: tfma.EvalConfig,
                 cfg: config_lib.PipelineConfig):
        spec = HeadwiseEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            eval_config=eval_config, example_splits=json_utils.dumps(None),
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            heads_config=json.dumps(cfg.to_dict(), sort_keys=True))
        super().__init__(spec=spec)
