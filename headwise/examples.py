"""Raw rows (CSV strings or JSON values) -> serialized tf.Examples that a headwise model serves.

The dtypes come from the model's own description (`assets.extra/headwise.json`, written by the
trainer), so a client needs nothing but the pushed model directory or its metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2

MODEL_INFO = os.path.join("assets.extra", "headwise.json")


def read_model_info(model_dir: str) -> dict[str, Any]:
    """The model's description: {"features": {name: dtype}, "heads": [...]}."""
    path = os.path.join(model_dir, MODEL_INFO)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _feature(name: str, dtype: str, value: Any, row_no: int) -> feature_pb2.Feature | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None  # missing: the model imputes it
    try:
        if dtype == "int64":
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(as_float)]))
        if dtype == "float32":
            v = float(value)
            if math.isnan(v):
                return None
            return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[v]))
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[str(value).encode()]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"row {row_no}, column {name!r}: expected {dtype}, got {value!r} ({e})"
                         ) from None


def to_examples(rows: Iterable[Mapping[str, Any]], features: Mapping[str, str]) -> list[bytes]:
    """Serialize rows; only the model's feature columns are sent (labels and extras dropped)."""
    out = []
    for i, row in enumerate(rows, start=1):
        ex = example_pb2.Example()
        for name, dtype in features.items():
            f = _feature(name, dtype, row.get(name), i)
            if f is not None:
                ex.features.feature[name].CopyFrom(f)
        out.append(ex.SerializeToString())
    return out
