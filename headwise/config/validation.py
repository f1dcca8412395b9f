"""The `validation` section: the data contract (schema, slacks) and the drift/skew checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from headwise.config.features import Feature
from headwise.config.fields import Fields
from headwise.config.heads import Head

VALIDATION_KEYS = ("schema", "missing_slack", "max_unseen_fraction", "range_slack", "drift",
                   "skew", "skew_min_examples")


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """The data contract. `schema`: the curated schema file, relative to the config file (none:
    the pipeline infers one with SchemaGen). The two fractions are used when it is generated."""

    schema: str | None = None
    missing_slack: float = 0.05  # a column may be missing this much more often than observed
    max_unseen_fraction: float = 0.05  # share of values outside a categorical column's domain
    # Numeric columns may range over [min - k*span, max + k*span] of the observed values (span =
    # max - min): a value far outside (1e30, a unit change) is an anomaly. NaN/inf always are.
    range_slack: float = 10.0
    # Drift against the data that trained the model being served: {column: threshold}. The
    # distance is a share of examples: L-infinity between category frequencies for string and
    # categorical columns, Kolmogorov-Smirnov for numeric ones (components/distributions.py).
    drift: dict[str, float] = dataclasses.field(default_factory=dict)
    # Skew against what the served model is asked (the request log of `headwise serve`):
    # {feature column: threshold}, the same distances; checked once skew_min_examples examples
    # were logged (fewer say little: two healthy samples of 500 differ by up to ~0.06).
    skew: dict[str, float] = dataclasses.field(default_factory=dict)
    skew_min_examples: int = 500


def parse_validation(top: Fields, features: Iterable[Feature], heads: Iterable[Head]
                     ) -> ValidationConfig:
    val = Fields(top.source, "validation", top.get("validation", dict, {}), VALIDATION_KEYS)
    validation = ValidationConfig(
        schema=val.get("schema", str, None), missing_slack=val.get("missing_slack", float, 0.05),
        max_unseen_fraction=val.get("max_unseen_fraction", float, 0.05),
        range_slack=val.get("range_slack", float, 10.0),
        drift=val.get("drift", dict, {}), skew=val.get("skew", dict, {}),
        skew_min_examples=val.get("skew_min_examples", int, 500))
    if validation.range_slack < 0:
        val.fail(f"must be >= 0, got {validation.range_slack}", "range_slack")
    if validation.skew_min_examples < 1:
        val.fail(f"must be >= 1, got {validation.skew_min_examples}", "skew_min_examples")
    features = list(features)
    for f in features:
        for key in ("drift", "skew"):
            if f.type == "image" and f.name in getattr(validation, key):
                val.fail(f"{f.name!r} is an image feature: its encoded bytes have no "
                         "distribution to compare; check drift on a derived feature column "
                         "instead", key)
    feature_columns = {f.name for f in features}
    label_columns = {h.label for h in heads}
    for key, allowed, what in (
            ("drift", feature_columns | label_columns, "a feature or label column"),
            ("skew", feature_columns, "a feature column (labels are not sent to the server)")):
        for column, threshold in getattr(validation, key).items():
            if column not in allowed:
                val.fail(f"{column!r} is not {what}", key)
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
                    0 < threshold <= 1):
                val.fail(f"{column}: threshold must be a number in (0, 1], got {threshold!r}",
                         key)
    for k in ("missing_slack", "max_unseen_fraction"):
        if not 0 <= getattr(validation, k) < 1:
            val.fail(f"must be in [0, 1), got {getattr(validation, k)}", k)
    return validation


def raw_validation(validation: ValidationConfig) -> dict[str, Any]:
    """The YAML form of the validation section (the inverse of parse_validation)."""
    out = {**dataclasses.asdict(validation), "drift": dict(validation.drift),
           "skew": dict(validation.skew)}
    if validation.schema is None:
        del out["schema"]
    return out
