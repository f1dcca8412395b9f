"""The `model` and `trainer` sections: the network and how it is trained."""

from __future__ import annotations

import dataclasses
from typing import Any

from headwise.config.fields import Fields

LOSS_BALANCING = ("static", "uncertainty")
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
    loss_balancing: str = "static"  # static: loss_weight; uncertainty: Kendall et al. 2018


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    train_steps: int = 2000
    eval_steps: int = 200
    batch_size: int = 128
    seed: int = 42  # model initialisation and shuffling
    early_stopping_patience: int = 2  # epochs without val_loss improvement; 0: train all steps


def parse_model(top: Fields) -> ModelConfig:
    m = Fields(top.source, "model", top.get("model", dict, {}), (
        "hidden_units", "activation", "dropout", "batch_norm", "embedding_dim", "learning_rate",
        "loss_balancing"))
    model = ModelConfig(
        hidden_units=m.int_list("hidden_units", ModelConfig.hidden_units),
        activation=m.choice("activation", ACTIVATIONS, "relu", what="activation"),
        dropout=m.get("dropout", float, 0.0), batch_norm=m.get("batch_norm", bool, False),
        embedding_dim=m.get("embedding_dim", int, 8),
        learning_rate=m.get("learning_rate", float, 0.003),
        loss_balancing=m.choice("loss_balancing", LOSS_BALANCING, "static", what="loss balancing"))
    if not 0 <= model.dropout < 1:
        m.fail(f"must be in [0, 1), got {model.dropout}", "dropout")
    return model


def parse_trainer(top: Fields) -> TrainerConfig:
    t = Fields(top.source, "trainer", top.get("trainer", dict, {}), TRAINER_KEYS)
    trainer = TrainerConfig(*(t.get(k, int, getattr(TrainerConfig, k)) for k in TRAINER_KEYS))
    for k in ("train_steps", "eval_steps", "batch_size"):
        if getattr(trainer, k) < 1:
            t.fail("must be >= 1", k)
    return trainer


def raw_model(model: ModelConfig) -> dict[str, Any]:
    """The YAML form of the model section (the inverse of parse_model)."""
    return {**dataclasses.asdict(model), "hidden_units": list(model.hidden_units)}


def raw_trainer(trainer: TrainerConfig) -> dict[str, Any]:
    """The YAML form of the trainer section (the inverse of parse_trainer)."""
    return dataclasses.asdict(trainer)
