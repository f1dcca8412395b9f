"""Protocol buffers' wire format by hand, for the quick client that must not import TensorFlow.

Importing TensorFlow (or `tensorflow_serving.apis`, whose protos import TensorFlow's) costs
seconds; `headwise predict --rest-port` answers a few rows in well under that. It needs only:

- serialized tf.Examples (tensorflow/core/example/example.proto, feature.proto):
  Example{features=1: Features{feature=1: map<string, Feature>}},
  Feature{oneof: bytes_list=1 BytesList{value=1 repeated bytes},
          float_list=2 FloatList{value=1 packed float}, int64_list=3 Int64List{value=1 packed}};
- one PredictRequest (tensorflow_serving/apis/predict.proto, model.proto) and the string values
  of its response, for the model's `model_info` signature over gRPC.

`examples` types values with `headwise.examples.typed_value`, the rules of the TensorFlow
encoder `headwise.examples.to_examples` (tests/test_rest.py checks the two byte for byte): bytes
go as they are, so an image feature holds the encoded file's bytes (read from its path there).
Map entries are written sorted by key: what protobuf's deterministic serialization writes.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from headwise import examples as examples_lib

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: ten bytes, two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _varint_field(number: int, n: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(n)


def feature(value: int | float | bytes, dtype: str) -> bytes:
    """A serialized Feature holding one value already typed by `examples.typed_value`."""
    if dtype == "int64":
        return _len_field(3, _len_field(1, _varint(value)))
    if dtype == "float32":
        return _len_field(2, _len_field(1, struct.pack("<f", value)))
    return _len_field(1, _len_field(1, value))


def example(row: Mapping[str, Any], features: Mapping[str, str], row_no: int = 1,
            images: Collection[str] = (), base_dir: str | None = None) -> bytes:
    """A serialized tf.Example of the row's feature columns (labels and extras dropped), by
    headwise/examples.py's value rules (`images`: the image features, whose string values are
    file paths relative to `base_dir`)."""
    entries = []
    for name in sorted(features):
        v = examples_lib.typed_value(name, features[name], row.get(name), row_no,
                                     image=name in images, base_dir=base_dir)
        if v is not None:
            f = feature(v, features[name])
            entries.append(_len_field(1, _len_field(1, name.encode()) + _len_field(2, f)))
    return _len_field(1, b"".join(entries)) if entries else b""


def examples(rows: Iterable[Mapping[str, Any]], features: Mapping[str, str],
             images: Collection[str] = (), base_dir: str | None = None,
             first_row: int = 1) -> list[bytes]:
    """`headwise.examples.to_examples`, without TensorFlow."""
    return [example(r, features, i, images, base_dir)
            for i, r in enumerate(rows, start=first_row)]


# --- Predict over gRPC, for model_info -------------------------------------------------------
def predict_request(model_name: str, signature: str, version: int | None = None) -> bytes:
    """PredictRequest{model_spec=1: ModelSpec{name=1, version=2 Int64Value{value=1},
    signature_name=3}} with no inputs."""
    spec = _len_field(1, model_name.encode())
    if version is not None:
        spec += _len_field(2, _varint_field(1, version))
    spec += _len_field(3, signature.encode())
    return _len_field(1, spec)


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; length-delimited values are bytes."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == _VARINT:
            value, i = _read_varint(data, i)
        elif kind == _I64:
            value, i = data[i:i + 8], i + 8
        elif kind == _I32:
            value, i = data[i:i + 4], i + 4
        elif kind == _LEN:
            n, i = _read_varint(data, i)
            value, i = data[i:i + n], i + n
        else:
            raise ValueError(f"unsupported wire type {kind}")
        yield number, kind, value


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def predict_response_strings(data: bytes) -> dict[str, list[bytes]]:
    """PredictResponse{outputs=1: map<string, TensorProto>} -> {alias: string_val (field 8)}."""
    out = {}
    for number, _, entry in fields(data):
        if number != 1:
            continue
        key, tensor = "", b""
        for n, _, v in fields(entry):
            if n == 1:
                key = v.decode()
            elif n == 2:
                tensor = v
        out[key] = [v for n, kind, v in fields(tensor) if n == 8 and kind == _LEN]
    return out
