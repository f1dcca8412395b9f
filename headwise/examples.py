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

MODEL_INFO = os.path.join("assets.extra", "headwise.json")


def read_model_info(model_dir: str) -> dict[str, Any]:
    """The model's description: {"features": {name: dtype}, "heads": [...]}."""
    path = os.path.join(model_dir, MODEL_INFO)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def typed_value(name: str, dtype: str, value: Any, row_no: int) -> int | float | bytes | None:
    """One raw value as the model's dtype (int64 -> int, float32 -> float, else UTF-8 bytes);
    None when missing (empty, or NaN for a float): the model imputes it. ValueError names the
    row and column. The rules of both encoders: `to_examples` and the TF-free serving/wire.py."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        if dtype == "int64":
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return int(as_float)
        if dtype == "float32":
            v = float(value)
            return None if math.isnan(v) else v
        return str(value).encode()
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"row {row_no}, column {name!r}: expected {dtype}, got {value!r} ({e})"
                         ) from None


def to_examples(rows: Iterable[Mapping[str, Any]], features: Mapping[str, str]) -> list[bytes]:
    """Serialize rows; only the model's feature columns are sent (labels and extras dropped)."""
    from tensorflow.core.example import example_pb2

    out = []
    for i, row in enumerate(rows, start=1):
        ex = example_pb2.Example()
        for name, dtype in features.items():
            v = typed_value(name, dtype, row.get(name), i)
            if v is None:
                continue
            f = ex.features.feature[name]
            (f.int64_list if dtype == "int64" else f.float_list if dtype == "float32"
             else f.bytes_list).value.append(v)
        out.append(ex.SerializeToString())
    return out
