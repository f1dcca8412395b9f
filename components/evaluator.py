"""Evaluator with per-head trivial-baseline gates and a per-head report.

The stock Evaluator (TFMA) computes each head's metrics on the test split and judges the
EvalConfig's thresholds. This executor first computes each head's trivial baseline in a Beam
pipeline (fitted on the training split, scored on the test split; `headwise.tasks`; once per
examples and heads: a rerun after a gate or the model changed reads them back), then builds
the whole EvalConfig with every gate of the gate registry (`headwise.gates`, built into TFMA's
thresholds by `components.gates`) and runs TFMA with it; so TFMA's
one blessing, which Pusher and the latest-blessed-model resolver read, covers every gate. After
TFMA it reads the verdicts back from TFMA's ValidationResult and writes the report
(components.report), whose plots draw a fixed-size sample of the test split. TFMA's metrics
are kept per evaluation (components.evaluation_cache): a rerun where only gates changed has
TFMA's validator judge them under the new thresholds instead of computing them again.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import constants as stock_constants
from tfx.components.evaluator import executor as stock
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, json_utils, path_utils, proto_utils

from components import evaluation_cache
from components import gates as gates_lib
from components import report as report_lib
from headwise import config as config_lib
from headwise import contract, tasks
from headwise import examples as examples_lib
from headwise.config import HEADS_CONFIG_KEY
from headwise.config import data as data_config

SAMPLE_SIZE = 5000  # test examples the report's plots draw, whatever the split's size
BASELINES_FILE, SAMPLE_FILE = "baselines.json", "sample.tfrecord"
BASELINES_CACHE = ".baselines"  # beside the component's outputs: <pipeline root>/Evaluator/
METRICS_CACHE = ".metrics"  # TFMA's metrics of the last evaluation (components.evaluation_cache)


def label_values(record: bytes, columns: Sequence[str]) -> dict[str, Any]:
    """The raw values of `columns` in one serialized example (None where missing)."""
    feats = tf.train.Example.FromString(record).features.feature
    out = {}
    for c in columns:
        f = feats.get(c)
        kind = f.WhichOneof("kind") if f is not None else None
        vals = getattr(f, kind).value if kind else []
        v = vals[0] if len(vals) else None
        out[c] = v.decode() if isinstance(v, bytes) else v
    return out


_VALUE_TYPES = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}


def label_rows(records: Sequence[bytes], columns: Sequence[str]) -> list[dict[str, Any]]:
    """`label_values` of every record, parsed by TensorFlow's parser in one call instead of one
    protobuf message per record (census' 140k training examples: about 11 s of the Evaluator).
    A column's value type is read from the first record that holds it (ExampleGen writes one
    type per column); where records disagree, each is read on its own."""
    kinds: dict[str, str] = {}
    for record in records:
        if len(kinds) == len(columns):
            break
        feats = tf.train.Example.FromString(record).features.feature
        for c in columns:
            kind = feats[c].WhichOneof("kind") if c not in kinds and c in feats else None
            if kind:
                kinds[c] = kind
    rows: list[dict[str, Any]] = [dict.fromkeys(columns) for _ in records]
    if not kinds:
        return rows
    try:
        parsed = tf.io.parse_example(
            tf.constant(list(records), tf.string),
            {c: tf.io.VarLenFeature(_VALUE_TYPES[k]) for c, k in kinds.items()})
    except tf.errors.InvalidArgumentError:  # one column, several value types
        return [label_values(r, columns) for r in records]
    for c, values in parsed.items():
        at = values.indices.numpy()
        first = at[:, 1] == 0  # a row's first value (label_values reads the first)
        for row, v in zip(at[first, 0].tolist(), values.values.numpy()[first].tolist(),
                          strict=True):
            rows[row][c] = v.decode() if isinstance(v, bytes) else v
    return rows


def _add(a: Any, b: Any) -> Any:
    """Sum of two sufficient statistics: dicts (per head, per statistic) of numbers or arrays."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, dict):
        return {k: _add(a.get(k), b.get(k)) for k in {*a, *b}}
    return a + b


class _Sum(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, stats):
        return _add(acc, stats)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            out = _add(out, a)
        return out

    def extract_output(self, acc):
        return acc


def _stats(rows: list[dict], cfg: config_lib.PipelineConfig, fitted: dict | None = None
           ) -> dict[str, dict]:
    """Per head, the baseline's sufficient statistics of one batch of label rows: for fitting
    (training split) or, given the fitted baselines, for scoring (test split)."""
    out = {}
    for h in cfg.heads:
        task = tasks.of(h)
        _, y = task.encoded(h, [r[h.label] for r in rows])
        if fitted is None:
            out[h.name] = task.fit_stats(h, y)
        elif fitted.get(h.name) is not None:
            out[h.name] = task.score_stats(h, fitted[h.name], y)
    return out


def _fit(stats: dict | None, cfg: config_lib.PipelineConfig) -> dict:
    return {h.name: tasks.of(h).fit(h, stats[h.name]) for h in cfg.heads
            if stats and stats.get(h.name) is not None}


def _metrics(stats: dict | None, fitted: dict, cfg: config_lib.PipelineConfig) -> str:
    out = {h.name: tasks.of(h).baseline_metrics(h, fitted[h.name], stats[h.name])
           for h in cfg.heads if stats and stats.get(h.name) is not None and h.name in fitted}
    return json.dumps(out)


def compute_baselines(pipeline: beam.Pipeline, examples_uri: str,
                      cfg: config_lib.PipelineConfig, out_dir: str) -> None:
    """The Beam part of the Evaluator's own work: each head's trivial baseline, fitted on the
    training split and scored on the test split by adding up sufficient statistics (exact, in
    bounded memory, on any runner), and a fixed-size random sample of the test split for the
    report's plots. Writes out_dir/BASELINES_FILE (JSON: head -> metric -> value) and
    out_dir/SAMPLE_FILE."""
    columns = list(cfg.label_columns)

    def labels(split: str):
        records = pipeline | f"Read{split}" >> beam.io.ReadFromTFRecord(
            os.path.join(examples_uri, f"Split-{split}", "*"), coder=beam.coders.BytesCoder())
        rows = (records
                | f"Batch{split}" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
                | f"Labels{split}" >> beam.Map(label_rows, columns))
        return records, rows

    _, train = labels(data_config.TRAIN)
    test_records, test = labels(data_config.TEST)
    fitted = beam.pvalue.AsSingleton(
        train | "FitStats" >> beam.Map(_stats, cfg) | "SumFit" >> beam.CombineGlobally(_Sum())
        | "Fit" >> beam.Map(_fit, cfg))
    _ = (test | "ScoreStats" >> beam.Map(_stats, cfg, fitted)
         | "SumScore" >> beam.CombineGlobally(_Sum())
         | "Metrics" >> beam.Map(_metrics, fitted, cfg)
         | "WriteBaselines" >> beam.io.WriteToText(os.path.join(out_dir, BASELINES_FILE),
                                                    shard_name_template=""))
    _ = (test_records | "Sample" >> beam.combiners.Sample.FixedSizeGlobally(SAMPLE_SIZE)
         | "Flatten" >> beam.FlatMap(lambda sample: sample)
         | "WriteSample" >> beam.io.WriteToTFRecord(os.path.join(out_dir, SAMPLE_FILE),
                                                     shard_name_template=""))


def baselines_key(examples_uri: str, cfg: config_lib.PipelineConfig) -> str:
    """What the baselines and the sample depend on: the examples (a TFX artifact's files never
    change), the heads as training sees them (labels, tasks, classes; not their gates, so a
    gate-only change reuses them) and the code that computes them."""
    heads = json.loads(config_lib.to_json(cfg, config_lib.Scope.TRAINING))["config"]["heads"]
    h = hashlib.sha256(json.dumps([examples_uri, heads, SAMPLE_SIZE]).encode())
    for module in (__name__, tasks.__name__):
        with open(sys.modules[module].__file__, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def baselines_and_sample(make_pipeline, examples_uri: str, cfg: config_lib.PipelineConfig,
                         cache_root: str) -> tuple[dict[str, dict[str, float]], list[bytes]]:
    """Each head's trivial-baseline metrics and the report's sample of the test split, computed
    by `compute_baselines` in the Beam pipeline `make_pipeline()` makes, once per
    `baselines_key`: a rerun on the same examples (a gate or the model changed) reads them from
    cache_root/<key>/, where the baselines file is written last, so it marks a complete entry.
    Only the latest key's entry is kept."""
    key = baselines_key(examples_uri, cfg)
    cached = os.path.join(cache_root, key)
    if not tf.io.gfile.exists(os.path.join(cached, BASELINES_FILE)):
        work = f"{cached}.tmp-{uuid.uuid4().hex}"
        try:
            with make_pipeline() as pipeline:
                compute_baselines(pipeline, examples_uri, cfg, work)
            tf.io.gfile.makedirs(cached)
            for name in (SAMPLE_FILE, BASELINES_FILE):
                if name == SAMPLE_FILE and not tf.io.gfile.exists(os.path.join(work, name)):
                    continue  # no test examples, no sample
                tf.io.gfile.copy(os.path.join(work, name), os.path.join(cached, name),
                                 overwrite=True)
        finally:
            if tf.io.gfile.exists(work):
                tf.io.gfile.rmtree(work)
    else:
        logging.info("trivial baselines and sample from %s", cached)
    for name in tf.io.gfile.listdir(cache_root):  # older examples' entries (a sample of image
        name = name.rstrip("/")                    # examples can be large); not others' temps
        if name != key and ".tmp-" not in name:
            tf.io.gfile.rmtree(os.path.join(cache_root, name))
    with tf.io.gfile.GFile(os.path.join(cached, BASELINES_FILE)) as fh:
        computed = json.loads(fh.read())
    sample = [r.numpy() for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(cached, SAMPLE_FILE)))]
    return computed, sample


def _metric_values(evaluation_uri: str, cfg: config_lib.PipelineConfig):
    """Per head, on the overall slice: candidate values, changes against the baseline model,
    per-class values ((metric, class id) -> value), and the (weighted) example count."""
    values = {h.name: {} for h in cfg.heads}
    diffs = {h.name: {} for h in cfg.heads}
    class_values = {h.name: {} for h in cfg.heads}
    heads = gates_lib.output_names(cfg)
    for sm in tfma.load_metrics(evaluation_uri):
        if sm.slice_key.single_slice_keys:
            continue
        for kv in sm.metric_keys_and_values:
            k = kv.key
            head = heads.get(k.output_name)
            if head is None or k.model_name not in ("", "candidate"):
                continue
            if k.HasField("sub_key"):
                if k.sub_key.HasField("class_id") and not k.is_diff:
                    class_values[head][(k.name, k.sub_key.class_id.value)] = (
                        kv.value.double_value.value)
                continue
            (diffs if k.is_diff else values)[head][k.name] = kv.value.double_value.value
    counts = {head: v.get("weighted_example_count", v.get("example_count"))
              for head, v in values.items()}  # examples whose label for this head is present
    return values, diffs, class_values, counts


def learned_classes(cfg: config_lib.PipelineConfig, model_uri: str) -> dict[str, list[str]]:
    """The classes the model's Transform learned (heads without `classes`), read from the
    model's description, which names each output class."""
    if not any(h.learns_classes for h in cfg.heads):
        return {}
    path = os.path.join(path_utils.serving_model_path(model_uri), examples_lib.MODEL_INFO)
    with tf.io.gfile.GFile(path) as fh:
        info = {h["name"]: h for h in json.load(fh)["heads"]}
    out = {}
    for h in cfg.heads:
        if h.learns_classes:
            names = info[h.name]["classes"]
            out[h.name] = names[:-1] if h.other_class is not None else names
    return out


def predict(model_uri: str, serialized: list[bytes], batch: int = 1024) -> dict[str, np.ndarray]:
    """The served signature's outputs for a (bounded) list of serialized examples.

    Loaded as TF Serving loads it (the `serve` MetaGraph into a session, run on the tensors
    its SignatureDef names): about half the time of restoring the object graph with
    tf.saved_model.load, which the report does not need."""
    from tensorflow.python.util import deprecation

    graph = tf.Graph()
    with graph.as_default(), deprecation.silence(), tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(
            sess, [tf.saved_model.SERVING], path_utils.serving_model_path(model_uri))
        sig = meta_graph.signature_def[contract.EXAMPLES_SIGNATURE]
        feed = sig.inputs[contract.SERVING_INPUT].name
        fetches = {k: v.name for k, v in sig.outputs.items()}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in fetches}
        for i in range(0, len(serialized), batch):
            for k, v in sess.run(fetches, {feed: serialized[i:i + batch]}).items():
                parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def with_model_signatures(eval_config: tfma.EvalConfig, model_uri: str,
                          baseline_uri: str | None) -> tfma.EvalConfig:
    """The eval config with each model read through its own serialized-examples signature, as
    its description names it: a blessed baseline exported before the plain features became
    `serving_default` has its examples signature under that name."""
    if baseline_uri is None:
        return eval_config
    out = tfma.EvalConfig()
    out.CopyFrom(eval_config)
    (spec,) = out.model_specs
    candidate, baseline = tfma.ModelSpec(), tfma.ModelSpec()
    candidate.CopyFrom(spec)
    baseline.CopyFrom(spec)
    candidate.name, baseline.name = tfma.CANDIDATE_KEY, tfma.BASELINE_KEY
    baseline.is_baseline = True
    for model_spec, uri in ((candidate, model_uri), (baseline, baseline_uri)):
        path = os.path.join(path_utils.serving_model_path(uri), examples_lib.MODEL_INFO)
        with tf.io.gfile.GFile(path) as fh:
            model_spec.signature_name = contract.examples_signature(json.load(fh))
    del out.model_specs[:]
    out.model_specs.extend([candidate, baseline])
    return out


def write_blessing(input_dict: dict[str, list[types.Artifact]],
                   output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
                   evaluation_uri: str) -> None:
    """The blessing as TFX's Evaluator writes it after TFMA's pass
    (tfx.components.evaluator.executor): the candidate's and the baseline's URI and id, and
    BLESSED or NOT_BLESSED from the evaluation's ValidationResult."""
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY])
    (model,) = input_dict[standard_component_specs.MODEL_KEY]
    blessing.set_string_custom_property(
        stock_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(stock_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                     model.id)
    if input_dict.get(standard_component_specs.BASELINE_MODEL_KEY):
        baseline = input_dict[standard_component_specs.BASELINE_MODEL_KEY][0]
        blessing.set_string_custom_property(
            stock_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri)
        blessing.set_int_custom_property(
            stock_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id)
    if "current_component_id" in exec_properties:
        blessing.set_string_custom_property("component_id",
                                            exec_properties["current_component_id"])
    ok = tfma.load_validation_result(evaluation_uri).validation_ok
    io_utils.write_string_file(os.path.join(blessing.uri, stock_constants.BLESSED_FILE_NAME
                                            if ok else stock_constants.NOT_BLESSED_FILE_NAME), "")
    blessing.set_int_custom_property(
        stock_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        stock_constants.BLESSED_VALUE if ok else stock_constants.NOT_BLESSED_VALUE)


# TFMA calls the model's signatures with each batch of serialized examples as a positional
# argument. A signature function takes keywords, so TensorFlow first fails to bind the call and
# formats the whole batch into the TypeError it then discards (numpy prints up to 1,000 elements
# in full), before the flat call succeeds: 96 ms per 1,000 census examples against 10 ms for the
# model itself. TFMA runs with summarised printing (at most this many elements): census' TFMA
# pass 24.0 -> 22.0 s, the same metrics.
TFMA_PRINT_THRESHOLD = 20


def judge_kept(entry: str, eval_config: tfma.EvalConfig, evaluation_uri: str,
               input_dict: dict[str, list[types.Artifact]],
               output_dict: dict[str, list[types.Artifact]],
               exec_properties: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """What TFX's Evaluator does with eval_config, on the TFMA outputs kept in `entry` instead
    of a new TFMA pass: the config completed as it completes it, the evaluation written and
    judged (components.evaluation_cache), and the blessing where it writes one (the config has
    thresholds). Returns the report's predictions kept with them."""
    has_baseline = bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY))
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True)
    tfma.utils.verify_eval_config(eval_config)
    predictions = evaluation_cache.restore(entry, evaluation_uri, eval_config)
    if tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                         eval_config=eval_config):
        write_blessing(input_dict, output_dict, exec_properties, evaluation_uri)
    return predictions


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        cfg = config_lib.from_json(exec_properties[HEADS_CONFIG_KEY],
                                   require=config_lib.Scope.FULL)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        cfg = cfg.with_learned_classes(learned_classes(cfg, model.uri))
        baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        if baseline and baseline[0].uri == model.uri:
            # A rerun with a cached Trainer: the candidate *is* the blessed baseline. Comparing
            # it with itself only doubles TFMA's work; evaluate it alone (no change can fail).
            logging.info("the candidate is the latest blessed model itself; no comparison")
            input_dict = {k: v for k, v in input_dict.items()
                          if k != standard_component_specs.BASELINE_MODEL_KEY}
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY])
        component_root = os.path.dirname(os.path.dirname(artifact_utils.get_single_uri(
            output_dict[standard_component_specs.EVALUATION_KEY])))
        computed, sample = baselines_and_sample(
            self._make_beam_pipeline, examples.uri, cfg,
            os.path.join(component_root, BASELINES_CACHE))
        baselines = {h.name: {m: v for m, v in computed.get(h.name, {}).items()
                              if m in h.metrics} for h in cfg.heads}
        logging.info("trivial baselines per head: %s", baselines)

        blessed = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)
        blessed_uri = blessed[0].uri if blessed else None
        eval_config = with_model_signatures(gates_lib.eval_config(cfg, baselines), model.uri,
                                            blessed_uri)
        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY])
        cache_root = os.path.join(component_root, METRICS_CACHE)
        entry_key = evaluation_cache.key(eval_config, examples.uri, model.uri, blessed_uri,
                                         baselines_key(examples.uri, cfg))
        entry = evaluation_cache.lookup(cache_root, entry_key)
        if entry:
            # The same examples, models and metrics as an evaluation already made: only gates
            # changed. TFMA's validator judges its metrics under the new thresholds.
            logging.info("only gates changed since the evaluation kept in %s", entry)
            predictions = judge_kept(entry, eval_config, evaluation.uri, input_dict,
                                     output_dict, exec_properties)
        else:
            # The report's predictions on the sample: a second thread, while TFMA keeps one
            # core busy (TensorFlow releases the GIL while it runs the model).
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                predicted = pool.submit(predict, model.uri, sample) if sample else None
                props = {k: v for k, v in exec_properties.items() if k != HEADS_CONFIG_KEY}
                props[standard_component_specs.EVAL_CONFIG_KEY] = proto_utils.proto_to_json(
                    eval_config)
                with np.printoptions(threshold=TFMA_PRINT_THRESHOLD):
                    super().Do(input_dict, output_dict, props)
                predictions = predicted.result() if predicted else None
            if predictions is not None:  # the report draws the numeric outputs
                predictions = {k: v for k, v in predictions.items() if v.dtype != object}
            evaluation_cache.store(cache_root, entry_key, evaluation.uri, predictions)

        values, diffs, class_values, counts = _metric_values(evaluation.uri, cfg)
        validation = tfma.load_validation_result(evaluation.uri)
        failures = gates_lib.failures(validation, gates_lib.output_names(cfg))
        has_baseline_model = bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY))
        results = {h.name: gates_lib.head_rows(
                       h, gates_lib.head_bounds(h, baselines[h.name]), values[h.name],
                       diffs[h.name], [f for f in failures if f.head == h.name],
                       baselines[h.name], class_values[h.name], has_baseline_model)
                   for h in cfg.heads}
        labels = label_rows(sample, cfg.label_columns)
        path = report_lib.write_report(
            cfg, evaluation.uri, results, counts, validation.validation_ok, has_baseline_model,
            {c: [row[c] for row in labels] for c in cfg.label_columns}, predictions)
        logging.info("per-head validation report: %s", path)


class HeadwiseEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS,
                  HEADS_CONFIG_KEY: ExecutionParameter(type=str)}


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator interface (examples, model, baseline_model), with the EvalConfig built
    from the heads config; outputs `evaluation` and `blessing` like the stock one."""

    SPEC_CLASS = HeadwiseEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples, model, baseline_model, cfg: config_lib.PipelineConfig):
        spec = HeadwiseEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            # The gates without the trivial baselines, which the executor adds once it has
            # computed them (components.gates builds both).
            eval_config=gates_lib.eval_config(cfg),
            example_splits=json_utils.dumps([data_config.TEST]),  # never seen in training
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            heads_config=config_lib.to_json(cfg))
        super().__init__(spec=spec)
