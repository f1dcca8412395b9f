"""Training pipelines for benchmarks: one CsvExampleGen and one Transform (the multi-head config's,
so every model sees the same features, labels and splits), then one Trainer per variant.

A variant is the pipeline's config (`multi`), the same with another backbone, loss balancing
or loss normalisation (`multi:<architecture>:<balancing>[:<normalization>]`), or one head alone
(`single:<head>`, `PipelineConfig.single_task`), at a given seed (`variant_config`). The
components are the pipeline's own (`pipeline.pipeline`), so what is measured is what `make run`
runs. Run as a module, it executes in its own process so that the parent can
sample that process's memory:

    python -m benchmarks.pipelines --config C --data-root D --work-dir W \\
        --variants multi,single:fare --seeds 1,2 [--train-steps N] [--no-early-stopping]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from headwise import config as config_lib

PIPELINE_NAME = "headwise_bench"
WARMUP_ID = "Trainer_warmup"
WARMUP_STEPS = 20


ARCHITECTURES = ("shared_bottom", "mmoe", "ple")


def architecture(model: config_lib.ModelConfig, name: str) -> config_lib.ModelConfig:
    """The config's model section with another backbone. Expert backbones get experts half as
    wide as the shared bottom's layers, so that their parameter count stays within reach of the
    cost goal (one shared model at most about 1.5 single-task models): MMoE 3 experts, PLE one
    shared and one per-head expert in one extraction layer. The shared bottom's width is the
    config's `hidden_units`, or twice that when the config's backbone has experts (its units
    are already an expert's), so the arms are the same whichever backbone the config ships."""
    wide = (model.hidden_units if model.backbone == "shared_bottom"
            else tuple(2 * u for u in model.hidden_units))
    if name == "shared_bottom":
        return dataclasses.replace(model, backbone="shared_bottom", hidden_units=wide)
    narrow = tuple(max(4, u // 2) for u in wide)
    if name == "mmoe":
        return dataclasses.replace(model, backbone="mmoe", experts=3, hidden_units=narrow)
    if name == "ple":
        return dataclasses.replace(model, backbone="ple", experts=1, task_experts=1,
                                   extraction_layers=1, hidden_units=narrow)
    raise ValueError(f"unknown architecture {name!r}; one of {ARCHITECTURES}")


def variant_config(cfg: config_lib.PipelineConfig, variant: str, seed: int,
                   early_stopping: bool = True) -> config_lib.PipelineConfig:
    """`multi`: the config as it is; `multi:<architecture>:<balancing>[:<normalization>]`: the
    config with another backbone (`architecture`), model.loss_balancing and
    model.loss_normalization; `single:<head>`: that head alone (`PipelineConfig.single_task`)."""
    kind, _, rest = variant.partition(":")
    if variant == "multi":
        out = cfg
    elif kind == "multi":
        arch, balancing, *norm = rest.split(":")
        model = dataclasses.replace(architecture(cfg.model, arch), loss_balancing=balancing)
        if norm:
            model = dataclasses.replace(model, loss_normalization=norm[0])
        out = dataclasses.replace(cfg, model=model)
    elif kind == "single":
        out = cfg.single_task(rest)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    trainer = dataclasses.replace(out.trainer, seed=seed)
    if not early_stopping:
        trainer = dataclasses.replace(trainer, early_stopping_patience=0)
    return dataclasses.replace(out, trainer=trainer)


def trainer_id(variant: str, seed: int) -> str:
    return f"Trainer_{variant.replace(':', '_')}_s{seed}"


EVALUATOR_ID = "Evaluator"


def build(cfg: config_lib.PipelineConfig, data_root: str, work_dir: str, variants: list[str],
          seeds: list[int], train_steps: int | None, eval_steps: int | None,
          early_stopping: bool, beam_args: list[str], evaluate: bool = False,
          cache: bool = False):
    """`evaluate`: also run the pipeline's Evaluator on the first variant's first model (no
    baseline model). `cache`: reuse earlier executions from the same metadata store, so a second
    process with `evaluate` runs the Evaluator alone and its memory is the Evaluator's."""
    from tfx import v1 as tfx

    from pipeline import local_runner
    from pipeline import pipeline as pipeline_lib

    example_gen = pipeline_lib.example_gen_component(cfg, data_root)
    schema_file = local_runner.stage_schema(cfg, os.path.join(work_dir, "schema"))
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    transform = pipeline_lib.transform_component(cfg, example_gen.outputs["examples"],
                                                 schema_gen.outputs["schema"])
    # The first Trainer in a process pays one-time costs (imports, tracing); a short unmeasured
    # one runs first so that no measured variant pays them.
    trainers = [pipeline_lib.trainer_component(
        variant_config(cfg, variants[0], seeds[0], early_stopping), transform,
        schema_gen.outputs["schema"], WARMUP_STEPS, WARMUP_STEPS).with_id(WARMUP_ID)]
    for seed in seeds:
        for v in variants:
            vcfg = variant_config(cfg, v, seed, early_stopping)
            trainers.append(pipeline_lib.trainer_component(
                vcfg, transform, schema_gen.outputs["schema"], train_steps, eval_steps
            ).with_id(trainer_id(v, seed)))
    extra = []
    if evaluate:
        from components.evaluator import Evaluator

        extra.append(Evaluator(examples=example_gen.outputs["examples"],
                               model=trainers[1].outputs["model"], baseline_model=None,
                               cfg=variant_config(cfg, variants[0], seeds[0], early_stopping)
                               ).with_id(EVALUATOR_ID))
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME, pipeline_root=os.path.join(work_dir, "root"),
        components=[example_gen, schema_gen, transform, *trainers, *extra], enable_cache=cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path(work_dir)),
        beam_pipeline_args=local_runner.local_beam_args(beam_args))


def metadata_path(work_dir: str) -> str:
    return os.path.join(work_dir, "metadata.db")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipelines")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--variants", default="multi")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--no-early-stopping", action="store_true")
    parser.add_argument("--beam-arg", action="append", help="default: the config's beam_args")
    parser.add_argument("--evaluate", action="store_true",
                        help="also run the Evaluator on the first variant's first model")
    parser.add_argument("--cache", action="store_true",
                        help="reuse executions recorded in --work-dir's metadata store")
    args = parser.parse_args(argv)
    cfg = config_lib.load(args.config)
    from tfx import v1 as tfx

    from pipeline import local_runner

    p = build(cfg, os.path.abspath(args.data_root), os.path.abspath(args.work_dir),
              args.variants.split(","), [int(s) for s in args.seeds.split(",")],
              args.train_steps, args.eval_steps, not args.no_early_stopping,
              args.beam_arg if args.beam_arg else list(cfg.beam_args), args.evaluate,
              args.cache)
    with local_runner.neutral_argv():
        tfx.orchestration.LocalDagRunner().run(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
