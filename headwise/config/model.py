"""The `model` and `trainer` sections: the network and how it is trained."""

from __future__ import annotations

import dataclasses
from typing import Any

from headwise.config.fields import Fields

LOSS_BALANCING = ("static", "uncertainty", "dwa", "gradnorm")  # trainer.balancing.METHODS
BACKBONE_TYPES = ("shared_bottom", "mmoe", "ple")  # trainer.backbones.BACKBONES
LOSS_NORMALIZATION = ("batch", "present")
ACTIVATIONS = ("relu", "gelu", "selu", "tanh", "swish")
TRAINER_KEYS = ("train_steps", "eval_steps", "batch_size", "seed", "early_stopping_patience")


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


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    train_steps: int = 2000
    eval_steps: int = 200
    batch_size: int = 128
    seed: int = 42  # model initialisation and shuffling
    early_stopping_patience: int = 2  # epochs without val_weighted_loss improvement; 0: all steps


def parse_model(top: Fields) -> ModelConfig:
    m = Fields(top.source, "model", top.get("model", dict, {}), (
        "hidden_units", "activation", "dropout", "batch_norm", "embedding_dim", "learning_rate",
        "loss_balancing", "backbone", "experts", "task_experts", "extraction_layers",
        "loss_normalization"))
    model = ModelConfig(
        hidden_units=m.int_list("hidden_units", ModelConfig.hidden_units),
        activation=m.choice("activation", ACTIVATIONS, "relu", what="activation"),
        dropout=m.get("dropout", float, 0.0), batch_norm=m.get("batch_norm", bool, False),
        embedding_dim=m.get("embedding_dim", int, 8),
        learning_rate=m.get("learning_rate", float, 0.003),
        loss_balancing=m.choice("loss_balancing", LOSS_BALANCING, "static", what="loss balancing"),
        backbone=m.choice("backbone", BACKBONE_TYPES, "shared_bottom", what="backbone"),
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
    takes = {"shared_bottom": (), "mmoe": ("experts",),
             "ple": ("experts", "task_experts", "extraction_layers")}[model.backbone]
    for key in ("experts", "task_experts", "extraction_layers"):
        if key not in takes:
            del out[key]
    return out


def raw_trainer(trainer: TrainerConfig) -> dict[str, Any]:
    """The YAML form of the trainer section (the inverse of parse_trainer)."""
    return dataclasses.asdict(trainer)
