"""Protocol buffers' wire format by hand, for the quick client that must not import TensorFlow.

Importing TensorFlow (or `tensorflow_serving.apis`, whose protos import TensorFlow's) costs
seconds; `headwise predict --rest-port` answers a few rows in well under that. Its serialized
tf.Examples come from the clients' one encoder, `headwise.examples.to_examples` (hand-written
wire format too); this module adds one PredictRequest (tensorflow_serving/apis/predict.proto,
model.proto) and the string values of its response, for the model's `model_info` signature
over gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from headwise.examples import I32, I64, LEN, VARINT, len_field, varint_field


# --- Predict over gRPC, for model_info -------------------------------------------------------
def predict_request(model_name: str, signature: str, version: int | None = None) -> bytes:
    """PredictRequest{model_spec=1: ModelSpec{name=1, version=2 Int64Value{value=1},
    signature_name=3}} with no inputs."""
    spec = len_field(1, model_name.encode())
    if version is not None:
        spec += len_field(2, varint_field(1, version))
    spec += len_field(3, signature.encode())
    return len_field(1, spec)


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; length-delimited values are bytes."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == VARINT:
            value, i = _read_varint(data, i)
        elif kind == I64:
            value, i = data[i:i + 8], i + 8
        elif kind == I32:
            value, i = data[i:i + 4], i + 4
        elif kind == LEN:
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
        out[key] = [v for n, kind, v in fields(tensor) if n == 8 and kind == LEN]
    return out
