"""`create_pipeline`: the one definition of the headwise TFX pipeline.

ExampleGen (CsvExampleGen or ParquetExampleGen: the data's source) -> ImportSchemaGen (the
curated schema) -> StatisticsGen (with that schema) -> ExampleValidator -> DataValidationGate ->
Transform -> Trainer -> Resolver (the latest blessed model) -> Evaluator (the candidate against
it) and, beside it, InfraCheck (the candidate answers real requests in a model server) -> Pusher
[-> BatchScoring, with a `scoring:` section: every head's answers for a data set].
Without a curated schema, SchemaGen infers one from StatisticsGen's output instead
(StatisticsGen then runs first).

Every input is explicit; runners (local, Kubeflow) only bind paths and call this. User code is
referenced by module path; the heads config and a fingerprint of that code travel in
`custom_config`, so a change to either invalidates TFX's cache for Transform and Trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

from tfx.components import ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components import data_sources, distributions
from components.batch_scoring import BatchScoring
from components.data_gate import DataValidationGate
from components.evaluator import Evaluator
from components.infra_check import InfraCheck
from components.pusher import Pusher
from headwise import config as config_lib
from headwise.config import HEADS_CONFIG_KEY, PipelineConfig, Scope
from headwise.config import data as data_config
from pipeline import imports as imports_lib
from pipeline import schema as schema_lib

PREPROCESSING_FN = "trainer.transform.preprocessing_fn"
RUN_FN = "trainer.run.run_fn"


def code_version(root: str | None = None) -> str:
    """A fingerprint of the code that Transform and Trainer run: the files that the modules of
    PREPROCESSING_FN and RUN_FN import, directly or indirectly (read from their imports,
    `pipeline.imports.closure`), by sorted relative path and content. Editing any of them, or
    adding an import, changes it; the command line, serving, the README do not."""
    root = root or imports_lib.ROOT
    entry = [fn.rpartition(".")[0] for fn in (PREPROCESSING_FN, RUN_FN)]
    h = hashlib.sha256()
    for rel in imports_lib.closure(entry, root):
        with open(os.path.join(root, rel), "rb") as fh:
            content = fh.read()
        h.update(f"{rel}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()[:16]


def example_gen_component(cfg: PipelineConfig, data_root: str):
    """The ExampleGen of the config's data source (components.data_sources) over the files
    under data_root, split into train, validation and test by hash (of the whole row, or of
    `data.split_on`) in the config's shares (headwise.config.data); cells that hold one of
    `data.missing_values` are missing, and image features' cells name files in the images
    folder, which ExampleGen reads into the examples (components.csv_example_gen). The folder is
    resolved here: data_root holds a staged copy of the data, not the images."""
    split = example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
        for name, buckets in cfg.hash_buckets().items()])
    if cfg.split_on:  # ExampleGen reads an empty name as a column named ''
        split.partition_feature_name = cfg.split_on
    reading = data_sources.READINGS[cfg.data_format]
    return reading.example_gen(
        input_base=data_root, output_config=example_gen_pb2.Output(split_config=split),
        missing_values=cfg.missing_values,
        image_columns=[f.name for f in cfg.image_features],
        images_dir=cfg.resolve_images_dir() if cfg.image_features else "",
        images_version=files_version(cfg.resolve_images_dir()) if cfg.image_features else "",
    ).with_id(reading.example_gen.__name__)  # CsvExampleGen, ParquetExampleGen


def files_version(path: str) -> str:
    """A fingerprint of a local file or folder tree: every file's relative path, size and
    modification time (not the content: cheap for thousands of images). TFX's cache keys on
    it, so an edited image or weights file reruns what reads it. "" for a URL (gs://...): there
    the cache cannot see a change; publish changed data under a new path."""
    if "://" in path or not os.path.exists(path):
        return ""
    h = hashlib.sha256()
    if os.path.isfile(path):
        st = os.stat(path)
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]
    for d, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(d, name)
            st = os.stat(full)
            h.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}\0"
                     .encode())
    return h.hexdigest()[:16]


def transform_component(cfg: PipelineConfig, examples, schema, version: str | None = None
                        ) -> Transform:
    """TFX's Transform. Its pre- and post-transform statistics are off: StatisticsGen has
    described the raw data already and nothing reads the transformed data's statistics, and
    computing them cost time (taxi: Transform 48.6 s -> 42.5 s without them, one run each).
    It writes transformed examples for the splits the Trainer reads (train, validation), not
    the test split, which only the Evaluator reads, raw, through the model's own transform.
    It writes no analyzer cache: the pipeline feeds none back (TFX reads one only through the
    `analyzer_cache` input, for span-by-span data), and writing it is a Beam write per analyzer
    output (census-income: 477 Beam bundles against 203 without, Transform 76 s -> 60 s).
    It traces preprocessing_fn in TF1 graph mode (`force_tf_compat_v1`): TF2 mode traces it
    as tf.functions several times (analysis, metadata, the saved transform), a fifth of census'
    Transform in a profile. Side by side, alternating, TF1 mode takes about three quarters of
    TF2's time (benchmarks/results/census.json, `headwise bench --only census`). The transform
    graph is then a TF1 SavedModel; TFTransformOutput loads it into the TF2 Trainer, Evaluator
    and exported model as before, and its outputs are TF2's to float rounding (census: every
    one of its 57 outputs within 5e-7 on 4,000 test rows)."""
    return Transform(
        examples=examples, schema=schema, preprocessing_fn=PREPROCESSING_FN,
        disable_statistics=True, disable_analyzer_cache=True, force_tf_compat_v1=True,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[data_config.TRAIN], transform=[data_config.TRAIN, data_config.VALIDATION]),
        custom_config={HEADS_CONFIG_KEY: config_lib.to_json(cfg, Scope.TRAINING),
                       "code_version": version or code_version()})


def trainer_component(cfg: PipelineConfig, transform, schema, train_steps: int | None = None,
                      eval_steps: int | None = None, distribution_strategy: str = "none",
                      version: str | None = None) -> Trainer:
    """The multi-head Trainer for cfg's heads (a single-task config trains one head).
    `version`: code_version(), when the caller has it (it reads every module's source)."""
    return Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        # Fitted on train; early stopping and model selection watch validation. The test split
        # is the Evaluator's alone.
        train_args=trainer_pb2.TrainArgs(splits=[data_config.TRAIN],
                                       num_steps=train_steps or cfg.trainer.train_steps),
        eval_args=trainer_pb2.EvalArgs(splits=[data_config.VALIDATION],
                                     num_steps=eval_steps or cfg.trainer.eval_steps),
        custom_config={HEADS_CONFIG_KEY: config_lib.to_json(cfg, Scope.TRAINING),
                       "code_version": version or code_version(),
                       "distribution_strategy": distribution_strategy,
                       # a replaced weights file under the same name trains again
                       "weights_version": _weights_version(cfg)})


def _weights_version(cfg: PipelineConfig) -> str:
    image = cfg.model.image
    if image is None or image.weights in ("imagenet", "none"):
        return ""
    return files_version(cfg.resolve_file(image.weights))


def create_pipeline(
    cfg: PipelineConfig,
    *,
    pipeline_root: str,
    data_root: str,
    serving_dir: str,
    schema_file: str | None = None,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = (),
    train_steps: int | None = None,
    eval_steps: int | None = None,
    enable_cache: bool = True,
    distribution_strategy: str = "none",
    request_log_dir: str = "",
    baselines_key: str = "",
) -> Pipeline:
    """The pipeline for cfg. `request_log_dir`: where `headwise serve` logs requests (the skew
    baseline); `baselines_key`: `data_gate.baselines_key(...)` of the moment, so the gate's
    cached verdict is reused only while the served version and the request logs are the same
    (empty: the runner caches nothing across baselines itself, as on Kubeflow)."""
    example_gen = example_gen_component(cfg, data_root)
    # The curated, reviewed data contract; without one, SchemaGen infers a schema below.
    imported = ImportSchemaGen(schema_file=schema_file) if schema_file else None
    # With the schema, categorical integers get category statistics (L-infinity distance).
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        schema=imported.outputs["schema"] if imported else None,
        # Without a curated schema, TFDV is told which columns hold image bytes, so that it
        # computes no vocabulary of them (the curated schema says so itself: image_domain).
        stats_options=distributions.stats_options(
            None if imported or not cfg.image_features else schema_lib.image_schema(cfg)))
    schema_gen = imported or SchemaGen(  # variable-length: values may be missing
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    data_gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"],
                                   statistics=statistics_gen.outputs["statistics"],
                                   schema=schema_gen.outputs["schema"],
                                   drift=json.dumps(cfg.validation.drift, sort_keys=True),
                                   serving_dir=serving_dir,
                                   skew=json.dumps(cfg.validation.skew, sort_keys=True),
                                   request_log_dir=request_log_dir,
                                   skew_min_examples=cfg.validation.skew_min_examples,
                                   baselines_key=baselines_key)
    version = code_version()  # of Transform's and the Trainer's code (both key TFX's cache on it)
    transform = transform_component(cfg, example_gen.outputs["examples"],
                                    schema_gen.outputs["schema"], version)
    transform.add_upstream_node(data_gate)  # no Transform (or anything after) on bad data
    trainer = trainer_component(cfg, transform, schema_gen.outputs["schema"], train_steps,
                                eval_steps, distribution_strategy, version)
    model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], cfg=cfg)
    # Beside the Evaluator, not after it (as TFX's InfraValidator): a gate-only rerun reuses it.
    infra_check = InfraCheck(model=trainer.outputs["model"],
                             examples=example_gen.outputs["examples"],
                             examples_per_request=cfg.infra_check_examples,
                             timeout_seconds=cfg.infra_check_timeout_s)
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_check.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)),
        custom_config={"keep_versions": cfg.keep_versions},
        statistics=statistics_gen.outputs["statistics"])

    scoring = [BatchScoring(
        pushed_model=pusher.outputs["pushed_model"],
        data=cfg.resolve_file(cfg.scoring_data), output=cfg.resolve_file(cfg.scoring_output),
        keys=",".join(cfg.scoring_keys),
        data_version=files_version(cfg.resolve_file(cfg.scoring_data)),
    )] if cfg.scoring_data is not None else []

    return Pipeline(
        pipeline_name=cfg.name,
        pipeline_root=pipeline_root,
        components=[example_gen, schema_gen, statistics_gen, example_validator, data_gate,
                    transform, trainer, model_resolver, evaluator, infra_check, pusher,
                    *scoring],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
