"""The `model` and `trainer` sections: the network and how it is trained."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from headwise.config.fields import Fields

LOSS_BALANCING = ("static", "uncertainty", "dwa", "gradnorm")  # implemented: trainer.balancing
BACKBONE_TYPES = ("shared_bottom", "mmoe", "ple")  # implemented: trainer.backbones.BACKBONES
LOSS_NORMALIZATION = ("batch", "present")
ACTIVATIONS = ("relu", "gelu", "selu", "tanh", "swish")
TRAINER_KEYS = ("train_steps", "eval_steps", "batch_size", "seed", "early_stopping_patience",
                "epochs", "early_stopping_on", "cycles", "head_stopping")
# What early stopping watches on the validation split (trainer.callbacks.StoppingCriterion):
# the weighted mean of each head's loss relative to its first epoch's (the default), the heads'
# weighted loss sum, or their weighted geometric mean.
STOPPING_CRITERIA = ("weighted", "relative", "geomean")
SCHEDULES = ("constant", "warmup_cosine")
# Keras Applications models an image feature can be read with (trainer.images.APPLICATIONS).
APPLICATIONS = ("ResNet50", "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large",
                "EfficientNetB0")
WITH_ALPHA = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large")
IMAGENET, NO_WEIGHTS = "imagenet", "none"
BACKBONE_KEYS = ("type", "application", "weights", "alpha", "embedding_units", "trainable",
                 "fine_tune")


@dataclasses.dataclass(frozen=True)
class FineTune:
    """Frozen for `after_epochs` epochs, then the top `layers` layers of the application
    (batch normalisation excepted) train at `learning_rate`."""

    after_epochs: int
    layers: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class ImageBackbone:
    """The pretrained image model every image feature is read with: a Keras Applications model
    without its top, global average pooling, then a dense layer of `embedding_units`. The
    embedding is concatenated with the tabular features before the backbone's `type`."""

    application: str
    weights: str  # a weights file (relative to the config file), `imagenet` or `none`
    alpha: float | None = None  # MobileNet family: the width multiplier
    embedding_units: int = 128
    trainable: bool = False  # the whole application trains from the first step
    fine_tune: FineTune | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network. The defaults are the tabular recipe every shipped tabular config runs and
    the quality benchmark measures (README "Model quality"): three MMoE experts of [64, 32]
    with uncertainty weighting and dropout 0.1; before commit 6fdd31a, one shared MLP with
    static weights and no dropout (`backbone: shared_bottom, loss_balancing: static,
    dropout: 0` gives that back)."""

    hidden_units: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.1
    batch_norm: bool = False
    embedding_dim: int = 8
    learning_rate: float = 0.003
    # static: loss_weight; uncertainty: Kendall et al. 2018; dwa: Liu et al. 2019; gradnorm:
    # Chen et al. 2018 (trainer.balancing)
    loss_balancing: str = "uncertainty"
    # shared_bottom: one MLP (hidden_units) for every head; mmoe: `experts` such MLPs mixed by
    # one softmax gate per head (Ma et al. 2018); ple: per extraction layer, `experts` shared and
    # `task_experts` per head, mixed by gates (Tang et al. 2020).
    backbone: str = "mmoe"
    experts: int = 3
    task_experts: int = 1
    extraction_layers: int = 1
    # A head's masked loss, divided by the batch size (batch: a head with labels in a share p of
    # rows trains at p x its weight) or by its present labels in the batch (present: the mean
    # over them; 0 when there are none).
    loss_normalization: str = "batch"
    # model.backbone as a mapping with `application`: image features' pretrained model
    image: ImageBackbone | None = None
    # constant: `learning_rate` throughout; warmup_cosine: linear warm-up over the first
    # `warmup` share of the planned steps, then cosine decay to 0 at the last planned step.
    schedule: str = "warmup_cosine"
    warmup: float = 0.05
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay (0: Adam)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How long the Trainer trains (`plan`). Unset values are derived from the size of the
    training split; `train_steps` switches to a fixed step budget (the behaviour before
    epochs existed)."""

    train_steps: int | None = None  # a fixed step budget instead of epochs
    eval_steps: int | None = None  # validation batches per epoch (default: the whole split)
    batch_size: int | None = None  # default: auto_batch_size(training rows)
    seed: int = 42  # model initialisation and shuffling
    # epochs without improvement of early_stopping_on before stopping (the best epoch's weights
    # are kept); 0: never stop early. Default: auto_patience(epochs)
    early_stopping_patience: int | None = None
    epochs: int | None = None  # the most epochs; default: auto_epochs(steps per epoch)
    # relative: the weighted mean of each head's validation loss over its first epoch's (each
    # head's relative change counts, whatever its loss's scale); weighted: the heads' validation
    # losses' weighted sum (the default before the relative one); geomean: their weighted
    # geometric mean
    early_stopping_on: str = "relative"
    # the most learning-rate cycles over `epochs` each: a run still improving when a cycle ends
    # (its best epoch among the last `patience`) trains another cycle from a warm restart of the
    # schedule (SGDR, Loshchilov & Hutter 2017); 1: stop at `epochs` as before cycles existed.
    # Needs early stopping; a fixed step budget and an image fine-tune schedule run one cycle.
    cycles: int = 3
    # task-wise early stopping (trainer.callbacks.HeadStopping): a head whose own validation
    # loss has not improved for `patience` epochs stops shaping the shared backbone (its
    # gradient no longer reaches it) while its own layers go on training. Multi-head models
    # with early stopping only. Off by default: on the validation split it helped taxi's fare
    # and hurt penguins' body mass, both beyond noise (benchmarks/results/
    # recipe_head_stopping.json)
    head_stopping: bool = False


# The derived training budget (TrainerConfig's unset values): measured with the quality
# benchmark (benchmarks/quality.py) on every dataset there, chosen on the validation split.
BATCH_ROWS_PER_STEP = 256  # batch size ~ training rows / this, a power of two,
MIN_BATCH, MAX_BATCH = 64, 1024  # within these
TARGET_STEPS = 4000  # epochs enough for about this many optimizer steps,
MIN_EPOCHS, MAX_EPOCHS = 8, 100  # within these
STEP_MODE_BATCH = 128  # the batch size of a fixed step budget (train_steps) when unset


def auto_batch_size(train_rows: int) -> int:
    rows = max(1, train_rows) / BATCH_ROWS_PER_STEP
    return int(min(MAX_BATCH, max(MIN_BATCH, 2 ** round(math.log2(max(rows, 1.0))))))


def auto_epochs(steps_per_epoch: int) -> int:
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch))))


def auto_patience(epochs: int) -> int:
    """A tenth of the epochs, at least 3."""
    return max(3, epochs // 10)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the Trainer runs: `epochs` of `steps_per_epoch` batches of `batch_size`, each
    followed by `validation_steps` validation batches; stop after `patience` epochs without
    improvement (0: never)."""

    batch_size: int
    epochs: int
    steps_per_epoch: int
    validation_steps: int
    patience: int
    why: str  # one line: where each number came from
    cycles: int = 1  # the most cycles of `epochs` (TrainerConfig.cycles)

    @property
    def total_steps(self) -> int:
        """The steps of one cycle: the learning-rate schedule's period."""
        return self.epochs * self.steps_per_epoch


def plan(trainer: TrainerConfig, train_rows: int, eval_rows: int,
         train_steps: int | None = None, eval_steps: int | None = None,
         restarts: bool = True) -> Plan:
    """The training budget. `train_steps`/`eval_steps` override the config's (the CLI's
    --train-steps). With a step budget: epochs_for(steps) epochs splitting it, batch size
    STEP_MODE_BATCH unless set. Otherwise: epochs over the training split, each
    ceil(train_rows / batch_size) steps."""
    steps = train_steps or trainer.train_steps
    evals = eval_steps or trainer.eval_steps
    if steps:
        batch = trainer.batch_size or STEP_MODE_BATCH
        epochs = epochs_for(steps)
        per_epoch = max(1, steps // epochs)
        why = f"a fixed budget of {steps} steps of {batch} examples"
    else:
        batch = trainer.batch_size or auto_batch_size(train_rows)
        per_epoch = max(1, math.ceil(train_rows / batch))
        epochs = trainer.epochs or auto_epochs(per_epoch)
        why = (f"at most {epochs} epochs ({'trainer.epochs' if trainer.epochs else 'derived'}) "
               f"of {train_rows:,} training rows in batches of {batch} "
               f"({'trainer.batch_size' if trainer.batch_size else 'derived'})")
    patience = (trainer.early_stopping_patience if trainer.early_stopping_patience is not None
                else 2 if steps else auto_patience(epochs))
    validation = evals or max(1, math.ceil(eval_rows / batch))
    # Warm restarts need early stopping to say "still improving"; a step budget is fixed, and
    # a fine-tune schedule's stages (restarts=False) are fit() calls of their own.
    cycles = trainer.cycles if patience and not steps and restarts else 1
    if cycles > 1:
        why += f", up to {cycles} cycles of them while still improving"
    return Plan(batch_size=batch, epochs=epochs, steps_per_epoch=per_epoch,
                validation_steps=validation, patience=patience, why=why, cycles=cycles)


def parse_image_backbone(m: Fields, raw) -> tuple[str, ImageBackbone | None]:
    """`model.backbone`: a backbone type, or a mapping with the image application (and `type`,
    the tabular backbone: ModelConfig's default type when not given)."""
    if not isinstance(raw, dict):
        return m.choice("backbone", BACKBONE_TYPES, ModelConfig.backbone, what="backbone"), None
    b = Fields(m.source, "model.backbone", raw, BACKBONE_KEYS)
    kind = b.choice("type", BACKBONE_TYPES, ModelConfig.backbone, what="backbone")
    if "application" not in raw:
        b.fail("is required in a backbone mapping (or write `backbone: "
               f"{kind}`); choose one of {list(APPLICATIONS)}", "application")
    application = b.choice("application", APPLICATIONS, what="Keras Applications model")
    weights = b.get("weights", str, None)
    if weights is None:
        b.fail(f"is required: a weights file for {application} without its top (relative to "
               f"the config file), '{IMAGENET}' (read from the Keras cache; nothing is "
               f"downloaded at run time) or '{NO_WEIGHTS}' (random initialisation)", "weights")
    alpha = b.get("alpha", float, None)
    if alpha is not None and application not in WITH_ALPHA:
        b.fail(f"{application} takes no alpha (only {list(WITH_ALPHA)})", "alpha")
    if alpha is not None and not 0 < alpha <= 2:
        b.fail(f"expected a width multiplier in (0, 2], got {alpha}", "alpha")
    units = b.get("embedding_units", int, 128)
    if units < 1:
        b.fail("must be >= 1", "embedding_units")
    trainable = b.get("trainable", bool, False)
    fine_tune = None
    if raw.get("fine_tune") is not None:
        if trainable:
            b.fail("a fine-tune schedule unfreezes a frozen application: set trainable: false "
                   "(trainable: true trains all its layers from the first step)", "fine_tune")
        ft = Fields(m.source, "model.backbone.fine_tune", raw["fine_tune"],
                    ("after_epochs", "layers", "learning_rate"))
        fine_tune = FineTune(after_epochs=ft.get("after_epochs", int),
                             layers=ft.get("layers", int),
                             learning_rate=ft.get("learning_rate", float))
        if fine_tune.after_epochs < 1:
            ft.fail("must be >= 1 (epochs with the application frozen)", "after_epochs")
        if fine_tune.layers < 1:
            ft.fail("must be >= 1 (the top layers to unfreeze)", "layers")
        if not 0 < fine_tune.learning_rate:
            ft.fail("must be > 0", "learning_rate")
    return kind, ImageBackbone(application=application, weights=weights, alpha=alpha,
                               embedding_units=units, trainable=trainable, fine_tune=fine_tune)


def parse_model(top: Fields) -> ModelConfig:
    m = Fields(top.source, "model", top.get("model", dict, {}), (
        "hidden_units", "activation", "dropout", "batch_norm", "embedding_dim", "learning_rate",
        "loss_balancing", "backbone", "experts", "task_experts", "extraction_layers",
        "loss_normalization", "schedule", "warmup", "weight_decay"))
    backbone, image = parse_image_backbone(m, m.value.get("backbone"))
    model = ModelConfig(
        hidden_units=m.int_list("hidden_units", ModelConfig.hidden_units),
        activation=m.choice("activation", ACTIVATIONS, ModelConfig.activation,
                            what="activation"),
        dropout=m.get("dropout", float, ModelConfig.dropout),
        batch_norm=m.get("batch_norm", bool, ModelConfig.batch_norm),
        embedding_dim=m.get("embedding_dim", int, ModelConfig.embedding_dim),
        learning_rate=m.get("learning_rate", float, ModelConfig.learning_rate),
        loss_balancing=m.choice("loss_balancing", LOSS_BALANCING, ModelConfig.loss_balancing,
                                what="loss balancing"),
        backbone=backbone, image=image,
        experts=m.get("experts", int, ModelConfig.experts),
        task_experts=m.get("task_experts", int, ModelConfig.task_experts),
        extraction_layers=m.get("extraction_layers", int, ModelConfig.extraction_layers),
        loss_normalization=m.choice("loss_normalization", LOSS_NORMALIZATION,
                                    ModelConfig.loss_normalization, what="loss normalization"),
        schedule=m.choice("schedule", SCHEDULES, ModelConfig.schedule, what="schedule"),
        warmup=m.get("warmup", float, ModelConfig.warmup),
        weight_decay=m.get("weight_decay", float, ModelConfig.weight_decay))
    if not 0 <= model.warmup < 1:
        m.fail(f"must be in [0, 1) (a share of the planned steps), got {model.warmup}", "warmup")
    if model.weight_decay < 0:
        m.fail(f"must be >= 0, got {model.weight_decay}", "weight_decay")
    if not 0 <= model.dropout < 1:
        m.fail(f"must be in [0, 1), got {model.dropout}", "dropout")
    for key in ("experts", "extraction_layers"):
        if getattr(model, key) < 1:
            m.fail("must be >= 1", key)
    if model.task_experts < 0:
        m.fail("must be >= 0", "task_experts")
    if model.backbone == "shared_bottom":
        for key in ("experts", "task_experts", "extraction_layers"):
            if key in m.value:
                m.fail(f"only the mmoe and ple backbones take {key}", key)
    elif model.backbone == "mmoe":
        for key in ("task_experts", "extraction_layers"):
            if key in m.value:
                m.fail(f"only the ple backbone takes {key}", key)
    return model


def epochs_for(train_steps: int) -> int:
    """The epochs the Trainer splits a step budget into: one per 50 steps, 1 to 10 (a learning
    curve in the history; a fine-tune schedule's `after_epochs` counts in them)."""
    return max(1, min(10, train_steps // 50))


def parse_trainer(top: Fields) -> TrainerConfig:
    t = Fields(top.source, "trainer", top.get("trainer", dict, {}), TRAINER_KEYS)
    trainer = TrainerConfig(
        **{k: t.get(k, int, getattr(TrainerConfig, k)) for k in TRAINER_KEYS
           if k not in ("early_stopping_on", "head_stopping")},
        head_stopping=t.get("head_stopping", bool, TrainerConfig.head_stopping),
        early_stopping_on=t.choice("early_stopping_on", STOPPING_CRITERIA, "relative",
                                   what="early stopping criterion"))
    if trainer.cycles < 1:
        t.fail("must be >= 1 (1: no warm restarts)", "cycles")
    for k in ("train_steps", "eval_steps", "batch_size", "epochs"):
        if getattr(trainer, k) is not None and getattr(trainer, k) < 1:
            t.fail("must be >= 1 (or leave it out: derived from the data size)", k)
    if trainer.early_stopping_patience is not None and trainer.early_stopping_patience < 0:
        t.fail("must be >= 0 (0: never stop early)", "early_stopping_patience")
    if trainer.train_steps and trainer.epochs:
        t.fail("give train_steps (a fixed step budget) or epochs, not both", "epochs")
    return trainer


def raw_model(model: ModelConfig) -> dict[str, Any]:
    """The YAML form of the model section (the inverse of parse_model); the expert keys only
    for the backbones that take them."""
    out = {**dataclasses.asdict(model), "hidden_units": list(model.hidden_units)}
    del out["image"]
    if model.image is not None:
        image = {k: v for k, v in dataclasses.asdict(model.image).items() if v is not None}
        out["backbone"] = {"type": model.backbone, **image}
    takes = {"shared_bottom": (), "mmoe": ("experts",),
             "ple": ("experts", "task_experts", "extraction_layers")}[model.backbone]
    for key in ("experts", "task_experts", "extraction_layers"):
        if key not in takes:
            del out[key]
    return out


def raw_trainer(trainer: TrainerConfig) -> dict[str, Any]:
    """The YAML form of the trainer section (the inverse of parse_trainer): unset values are
    left out (derived at training time)."""
    return {k: v for k, v in dataclasses.asdict(trainer).items() if v is not None}
