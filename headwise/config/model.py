"""The `model` and `trainer` sections: the network and how it is trained."""

from __future__ import annotations

import dataclasses
from typing import Any

from headwise.config.fields import Fields

LOSS_BALANCING = ("static", "uncertainty", "dwa", "gradnorm")  # implemented: trainer.balancing
BACKBONE_TYPES = ("shared_bottom", "mmoe", "ple")  # implemented: trainer.backbones.BACKBONES
LOSS_NORMALIZATION = ("batch", "present")
ACTIVATIONS = ("relu", "gelu", "selu", "tanh", "swish")
TRAINER_KEYS = ("train_steps", "eval_steps", "batch_size", "seed", "early_stopping_patience")
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
    hidden_units: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    embedding_dim: int = 8
    learning_rate: float = 0.003
    # static: loss_weight; uncertainty: Kendall et al. 2018; dwa: Liu et al. 2019; gradnorm:
    # Chen et al. 2018 (trainer.balancing)
    loss_balancing: str = "static"
    # shared_bottom: one MLP (hidden_units) for every head; mmoe: `experts` such MLPs mixed by
    # one softmax gate per head (Ma et al. 2018); ple: per extraction layer, `experts` shared and
    # `task_experts` per head, mixed by gates (Tang et al. 2020).
    backbone: str = "shared_bottom"
    experts: int = 4
    task_experts: int = 1
    extraction_layers: int = 1
    # A head's masked loss, divided by the batch size (batch: a head with labels in a share p of
    # rows trains at p x its weight) or by its present labels in the batch (present: the mean
    # over them; 0 when there are none).
    loss_normalization: str = "batch"
    # model.backbone as a mapping with `application`: image features' pretrained model
    image: ImageBackbone | None = None


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    train_steps: int = 2000
    eval_steps: int = 200
    batch_size: int = 128
    seed: int = 42  # model initialisation and shuffling
    early_stopping_patience: int = 2  # epochs without val_weighted_loss improvement; 0: all steps


def parse_image_backbone(m: Fields, raw) -> tuple[str, ImageBackbone | None]:
    """`model.backbone`: a backbone type, or a mapping with the image application (and `type`,
    the tabular backbone: shared_bottom by default)."""
    if not isinstance(raw, dict):
        return m.choice("backbone", BACKBONE_TYPES, "shared_bottom", what="backbone"), None
    b = Fields(m.source, "model.backbone", raw, BACKBONE_KEYS)
    kind = b.choice("type", BACKBONE_TYPES, "shared_bottom", what="backbone")
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
        "loss_normalization"))
    backbone, image = parse_image_backbone(m, m.value.get("backbone"))
    model = ModelConfig(
        hidden_units=m.int_list("hidden_units", ModelConfig.hidden_units),
        activation=m.choice("activation", ACTIVATIONS, "relu", what="activation"),
        dropout=m.get("dropout", float, 0.0), batch_norm=m.get("batch_norm", bool, False),
        embedding_dim=m.get("embedding_dim", int, 8),
        learning_rate=m.get("learning_rate", float, 0.003),
        loss_balancing=m.choice("loss_balancing", LOSS_BALANCING, "static", what="loss balancing"),
        backbone=backbone, image=image,
        experts=m.get("experts", int, 4), task_experts=m.get("task_experts", int, 1),
        extraction_layers=m.get("extraction_layers", int, 1),
        loss_normalization=m.choice("loss_normalization", LOSS_NORMALIZATION, "batch",
                                    what="loss normalization"))
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
    trainer = TrainerConfig(*(t.get(k, int, getattr(TrainerConfig, k)) for k in TRAINER_KEYS))
    for k in ("train_steps", "eval_steps", "batch_size"):
        if getattr(trainer, k) < 1:
            t.fail("must be >= 1", k)
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
    """The YAML form of the trainer section (the inverse of parse_trainer)."""
    return dataclasses.asdict(trainer)
