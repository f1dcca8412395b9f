"""Raw rows (CSV strings, JSON values, or bytes) -> serialized tf.Examples that a headwise model
serves: the one tf.Example encoder of the clients, written in protocol buffers' wire format by
hand, so that no client needs TensorFlow to build a request:
  Example{features=1: Features{feature=1: map<string, Feature>}},
  Feature{oneof: bytes_list=1 BytesList{value=1 repeated bytes},
          float_list=2 FloatList{value=1 packed float}, int64_list=3 Int64List{value=1 packed}}.
Map entries are written sorted by key: what protobuf's deterministic serialization writes
(tests/test_rest.py checks the bytes against TensorFlow's own serialization).

The dtypes come from the model's own description (`assets.extra/headwise.json`, written by the
trainer; the same JSON its `model_info` signature returns), so a client needs nothing but the
pushed model directory or its metadata. An image feature (named in the description's `images`)
is a string feature holding the encoded file's bytes (PNG, JPEG, GIF or BMP), decoded inside the
serving graph: a row gives it as those bytes, or as the path of the file, which is read here.
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any

MODEL_INFO = os.path.join("assets.extra", "headwise.json")


def read_model_info(model_dir: str) -> dict[str, Any]:
    """The model's description: {"features": {name: dtype}, "images": {name: {"size": [h, w],
    "channels": c}}, "heads": [...]} (models exported before image features have no "images")."""
    path = os.path.join(model_dir, MODEL_INFO)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def typed_value(name: str, dtype: str, value: Any, row_no: int, *, image: bool = False,
                base_dir: str | None = None, missing: Collection[str] = ()
                ) -> int | float | bytes | None:
    """One raw value as the model's dtype (int64 -> int, float32 -> float, else bytes: `bytes`
    as they are, other values UTF-8 encoded); None when missing (None, a blank string, or NaN
    for a float): the model imputes it. For an image feature (`image`), a string is the path of
    the image file, relative to `base_dir` (default: the working directory), and the value is
    the file's bytes. `missing`: the texts that also mean a missing value (the training
    config's `data.missing_values`, which the model's description carries), compared stripped.
    ValueError names the row and column (and the path of a file that cannot be read). The rules
    of `to_examples`."""
    if value is None or (isinstance(value, str) and (value.strip() == ""
                                                     or value.strip() in missing)):
        return None
    if image:
        return _image_bytes(name, value, row_no, base_dir)
    try:
        if dtype == "int64":
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return int(as_float)
        if dtype == "float32":
            v = float(value)
            return None if math.isnan(v) else v
        return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"row {row_no}, column {name!r}: expected {dtype}, got {value!r} ({e})"
                         ) from None


def _image_bytes(name: str, value: Any, row_no: int, base_dir: str | None) -> bytes:
    """An image feature's value: bytes as they are, a string read as a file's path."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError(f"row {row_no}, column {name!r}: expected an image file's path or its "
                         f"bytes, got {value!r}")
    path = os.path.join(base_dir or "", value)  # an absolute path stays as it is
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise ValueError(f"row {row_no}, column {name!r}: cannot read the image file {path!r} "
                         f"({e.strerror or e})") from None


# --- Protocol buffers' wire format -------------------------------------------------------------
VARINT, I64, LEN, I32 = 0, 1, 2, 5  # wire types


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: ten bytes, two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | LEN) + varint(len(payload)) + payload


def varint_field(number: int, n: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(n)


def feature(value: int | float | bytes, dtype: str) -> bytes:
    """A serialized Feature holding one value already typed by `typed_value`."""
    if dtype == "int64":
        return len_field(3, len_field(1, varint(value)))
    if dtype == "float32":
        return len_field(2, len_field(1, struct.pack("<f", value)))
    return len_field(1, len_field(1, value))


def example(row: Mapping[str, Any], features: Mapping[str, str], row_no: int = 1,
            images: Collection[str] = (), base_dir: str | None = None,
            missing: Collection[str] = ()) -> bytes:
    """A serialized tf.Example of the row's feature columns (labels and extras dropped), by
    `typed_value`'s rules (`images`: the image features, whose string values are file paths
    relative to `base_dir`)."""
    entries = []
    for name in sorted(features):
        v = typed_value(name, features[name], row.get(name), row_no, image=name in images,
                        base_dir=base_dir, missing=missing)
        if v is not None:
            f = feature(v, features[name])
            entries.append(len_field(1, len_field(1, name.encode()) + len_field(2, f)))
    return len_field(1, b"".join(entries)) if entries else b""


def to_examples(rows: Iterable[Mapping[str, Any]], features: Mapping[str, str],
                images: Collection[str] = (), base_dir: str | None = None,
                first_row: int = 1, missing: Collection[str] = ()) -> list[bytes]:
    """Serialize rows; only the model's feature columns are sent (labels and extras dropped).
    `images`: the image features (the description's "images"), whose string values are file
    paths relative to `base_dir`; `first_row`: the number of rows[0] in error messages;
    `missing`: texts that mean a missing value (the model description's "missing_values")."""
    missing = frozenset(m.strip() for m in missing)
    return [example(r, features, i, images, base_dir, missing)
            for i, r in enumerate(rows, start=first_row)]


def json_bytes(value: bytes, text: bool = True) -> str | dict[str, str]:
    """Bytes as TF Serving's REST API takes them: the text when `text` and they are UTF-8,
    else {"b64": ...} (json_tensor.cc)."""
    if text:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode()}


def to_plain(rows: Iterable[Mapping[str, Any]], info: Mapping[str, Any],
             base_dir: str | None = None, first_row: int = 1) -> list[dict[str, Any]]:
    """Rows as plain JSON instances of the model's features signature (its description's
    "features_signature"), by `typed_value`'s rules: {input: value} with every input in every
    row, as TF Serving's row format requires; a missing value is NaN for a number (TF Serving's
    JSON takes the token) and "" for a string; an image's bytes, or a string that is not UTF-8,
    go as {"b64": ...}."""
    inputs = info["features_signature"]["inputs"]
    images = info.get("images", {})
    missing = frozenset(m.strip() for m in info.get("missing_values", ()))
    out = []
    for row_no, row in enumerate(rows, start=first_row):
        instance = {}
        for name, spec in inputs.items():
            v = typed_value(name, info["features"][name], row.get(name), row_no,
                            image=name in images, base_dir=base_dir, missing=missing)
            if spec["dtype"] != "string":
                v = math.nan if v is None else v
            elif v is None:
                v = ""
            else:
                v = json_bytes(v, text=name not in images)
            instance[spec["input"]] = v
        out.append(instance)
    return out
