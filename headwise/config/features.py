"""The `features` section: the input columns and how Transform encodes each."""

from __future__ import annotations

import dataclasses
from typing import Any

from headwise.config.fields import Fields

FEATURE_TYPES = ("numeric", "categorical", "bucketized")


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    type: str
    buckets: int = 10  # bucketized only
    oov_buckets: int = 1  # categorical only
    top_k: int | None = None  # categorical only: keep the top_k most frequent values


def parse_feature(source: str, name: str, spec: Any) -> Feature:
    path = f"features.{name}"
    if isinstance(spec, str):
        spec = {"type": spec}
    f = Fields(source, path, spec, ("type", "buckets", "oov_buckets", "top_k"))
    ftype = f.choice("type", FEATURE_TYPES, what="feature type")
    buckets = f.get("buckets", int, 10)
    oov = f.get("oov_buckets", int, 1)
    top_k = f.get("top_k", int, None) if spec.get("top_k") is not None else None
    if ftype != "bucketized" and "buckets" in spec:
        f.fail("only bucketized features take 'buckets'", "buckets")
    if ftype != "categorical" and ({"oov_buckets", "top_k"} & set(spec)):
        f.fail("only categorical features take 'oov_buckets'/'top_k'", "oov_buckets")
    if buckets < 2:
        f.fail("must be >= 2", "buckets")
    if oov < 1:
        f.fail("must be >= 1", "oov_buckets")
    return Feature(name=name, type=ftype, buckets=buckets, oov_buckets=oov, top_k=top_k)


def parse_features(top: Fields) -> tuple[Feature, ...]:
    features_raw = top.get("features", dict)
    if not features_raw:
        top.fail("needs at least one feature", "features")
    return tuple(parse_feature(top.source, n, s) for n, s in features_raw.items())


def raw_feature(feature: Feature) -> dict[str, Any]:
    """The YAML form of one feature (the inverse of parse_feature). A key that the feature's
    type does not take is written only when it differs from its default, so that parsing fails
    instead of silently dropping it."""
    default = Feature(name=feature.name, type=feature.type)
    out: dict[str, Any] = {"type": feature.type}
    if feature.type == "bucketized" or feature.buckets != default.buckets:
        out["buckets"] = feature.buckets
    if feature.type == "categorical" or feature.oov_buckets != default.oov_buckets:
        out["oov_buckets"] = feature.oov_buckets
    if feature.top_k is not None:
        out["top_k"] = feature.top_k
    return out
