"""Training pipelines for benchmarks: one CsvExampleGen and one Transform (the multi-head config's,
so every model sees the same features, labels and splits), then one Trainer per variant.

A variant is the pipeline's config (`multi`), the same with another backbone, loss balancing
or loss normalisation (`multi:<architecture>:<balancing>[:<normalization>]`), one head alone
(`single:<head>`, `PipelineConfig.single_task`), or, for a config with image features, another
way of using its image application (`image:none|frozen|finetune`, `image_arm`; the pretrained
weights file from `--image-weights`), at a given seed (`variant_config`). The
components are the pipeline's own (`pipeline.pipeline`), so what is measured is what `make run`
runs. Run as a module, it executes in its own process so that the parent can
sample that process's memory:

    python -m benchmarks.pipelines --config C --data-root D --work-dir W \\
        --variants multi,single:fare --seeds 1,2 [--train-steps N] [--no-early-stopping]
        [--image-weights FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from headwise import config as config_lib
from headwise.config.model import NO_WEIGHTS, epochs_for

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


IMAGE_ARMS = ("none", "frozen", "finetune")
FINE_TUNE_LAYERS = 20  # of MobileNetV2's 155 (no top): part of block 15, block 16 and Conv_1


trainer_epochs = epochs_for  # the Trainer's own rule (headwise.config.model)


def image_arm(model: config_lib.ModelConfig, arm: str, weights: str | None,
              train_steps: int) -> config_lib.ModelConfig:
    """The model section with its image application used another way:
    `none`: random initialisation, the whole application trains (the digits config as shipped);
    `frozen`: the pretrained `weights` file, the application frozen;
    `finetune`: the `weights` file, frozen for half of the Trainer's epochs at `train_steps`,
    then its top FINE_TUNE_LAYERS layers train at a tenth of model.learning_rate."""
    if model.image is None:
        raise ValueError("image:<arm> variants need a config with an image application "
                         "(model.backbone.application)")
    if arm == "none":
        return dataclasses.replace(model, image=dataclasses.replace(
            model.image, weights=NO_WEIGHTS, trainable=True, fine_tune=None))
    if arm not in IMAGE_ARMS:
        raise ValueError(f"unknown image arm {arm!r}; one of {IMAGE_ARMS}")
    if not weights:
        raise ValueError(f"image:{arm} needs a pretrained weights file (--image-weights)")
    schedule = None
    if arm == "finetune":
        schedule = config_lib.FineTune(after_epochs=max(1, trainer_epochs(train_steps) // 2),
                                       layers=FINE_TUNE_LAYERS,
                                       learning_rate=model.learning_rate / 10)
    # Absolute: the Trainer resolves a relative path against the config file, not the cwd.
    return dataclasses.replace(model, image=dataclasses.replace(
        model.image, weights=os.path.abspath(weights), trainable=False, fine_tune=schedule))


def variant_config(cfg: config_lib.PipelineConfig, variant: str, seed: int,
                   early_stopping: bool = True, image_weights: str | None = None,
                   train_steps: int | None = None) -> config_lib.PipelineConfig:
    """`multi`: the config as it is; `multi:<architecture>:<balancing>[:<normalization>]`: the
    config with another backbone (`architecture`), model.loss_balancing and
    model.loss_normalization; `single:<head>`: that head alone (`PipelineConfig.single_task`);
    `image:<arm>`: the image application from scratch, frozen or fine-tuned (`image_arm`, with
    `image_weights`; `train_steps`: the Trainer's budget, default the config's)."""
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
    elif kind == "image":
        out = dataclasses.replace(cfg, model=image_arm(
            cfg.model, rest, image_weights, train_steps or cfg.trainer.train_steps))
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
          cache: bool = False, image_weights: str | None = None):
    """`evaluate`: also run the pipeline's Evaluator on the first variant's first model (no
    baseline model). `cache`: reuse earlier executions from the same metadata store, so a second
    process with `evaluate` runs the Evaluator alone and its memory is the Evaluator's.
    `image_weights`: the pretrained file of `image:frozen` and `image:finetune`."""
    from tfx import v1 as tfx

    from pipeline import local_runner
    from pipeline import pipeline as pipeline_lib

    example_gen = pipeline_lib.example_gen_component(cfg, data_root)
    schema_file = local_runner.stage_schema(cfg, os.path.join(work_dir, "schema"))
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    version = pipeline_lib.code_version()  # one source walk for every Trainer below
    transform = pipeline_lib.transform_component(cfg, example_gen.outputs["examples"],
                                                 schema_gen.outputs["schema"], version)
    # The first Trainer in a process pays one-time costs (imports, tracing); a short unmeasured
    # one runs first so that no measured variant pays them.
    warmup = variant_config(cfg, variants[0], seeds[0], early_stopping, image_weights,
                            WARMUP_STEPS)
    trainers = [pipeline_lib.trainer_component(
        warmup, transform, schema_gen.outputs["schema"], WARMUP_STEPS, WARMUP_STEPS,
        version=version).with_id(WARMUP_ID)]
    for seed in seeds:
        for v in variants:
            vcfg = variant_config(cfg, v, seed, early_stopping, image_weights, train_steps)
            trainers.append(pipeline_lib.trainer_component(
                vcfg, transform, schema_gen.outputs["schema"], train_steps, eval_steps,
                version=version).with_id(trainer_id(v, seed)))
    extra = []
    if evaluate:
        from components.evaluator import Evaluator

        extra.append(Evaluator(examples=example_gen.outputs["examples"],
                               model=trainers[1].outputs["model"], baseline_model=None,
                               cfg=variant_config(cfg, variants[0], seeds[0], early_stopping,
                                                  image_weights, train_steps)
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
    parser.add_argument("--image-weights",
                        help="the pretrained application's weights file for image:frozen and "
                        "image:finetune variants")
    args = parser.parse_args(argv)
    cfg = config_lib.load(args.config)
    from tfx import v1 as tfx

    from pipeline import local_runner

    p = build(cfg, os.path.abspath(args.data_root), os.path.abspath(args.work_dir),
              args.variants.split(","), [int(s) for s in args.seeds.split(",")],
              args.train_steps, args.eval_steps, not args.no_early_stopping,
              args.beam_arg if args.beam_arg else list(cfg.beam_args), args.evaluate,
              args.cache, args.image_weights)
    with local_runner.neutral_argv():
        tfx.orchestration.LocalDagRunner().run(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
