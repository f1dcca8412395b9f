"""TensorProto <-> numpy in TF Serving's wire form.

TF Serving answers Predict with `Tensor::AsProtoField`: the values go in the typed repeated field
of their dtype (`float_val`, `int64_val`, `string_val`, ...), never in `tensor_content`. Clients
written against TF Serving read those fields, so the local server writes them the same way.
Requests may use either form (`tf.make_tensor_proto` writes `tensor_content`); both are read.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# dtype -> (TensorProto field, numpy dtype of the values in that field)
_FIELDS = {
    types_pb2.DT_FLOAT: ("float_val", np.float32),
    types_pb2.DT_DOUBLE: ("double_val", np.float64),
    types_pb2.DT_INT32: ("int_val", np.int32),
    types_pb2.DT_INT16: ("int_val", np.int16),
    types_pb2.DT_INT8: ("int_val", np.int8),
    types_pb2.DT_UINT8: ("int_val", np.uint8),
    types_pb2.DT_INT64: ("int64_val", np.int64),
    types_pb2.DT_BOOL: ("bool_val", np.bool_),
    types_pb2.DT_STRING: ("string_val", object),
}
_NUMPY_TO_DTYPE = {
    np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int16): types_pb2.DT_INT16,
    np.dtype(np.int8): types_pb2.DT_INT8, np.dtype(np.uint8): types_pb2.DT_UINT8,
    np.dtype(np.int64): types_pb2.DT_INT64, np.dtype(np.bool_): types_pb2.DT_BOOL,
}

# The most one request tensor may take once decoded. A TensorProto may give one value and a
# shape, which TensorFlow fills (below); the message is a few bytes whatever the shape.
MAX_TENSOR_BYTES = 1 << 30


class TensorError(ValueError):
    """A request tensor that cannot be read (TF Serving: INVALID_ARGUMENT)."""


def dtype_name(dtype: int) -> str:
    """DT_FLOAT -> 'float', as TensorFlow's error messages spell dtypes."""
    return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()


def shape_of(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    return tuple(d.size for d in proto.tensor_shape.dim)


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A numpy array (object arrays hold bytes) -> TensorProto with typed fields."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":
        dtype = types_pb2.DT_STRING
    else:
        dtype = _NUMPY_TO_DTYPE.get(array.dtype)
        if dtype is None:
            raise TypeError(f"no TensorProto field for numpy dtype {array.dtype}")
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]))
    field = _FIELDS[dtype][0]
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        getattr(proto, field).extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


def from_proto(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """TensorProto (typed fields or tensor_content) -> numpy; strings come back as bytes."""
    if proto.dtype not in _FIELDS:
        raise TensorError(f"tensor parsing error: {alias} (unsupported dtype "
                          f"{types_pb2.DataType.Name(proto.dtype)})")
    shape = shape_of(proto)
    if any(s < 0 for s in shape) or proto.tensor_shape.unknown_rank:
        raise TensorError(f"tensor parsing error: {alias} (shape must be fully defined)")
    size = math.prod(shape)  # Python's ints: no overflow on hostile shapes
    field, np_dtype = _FIELDS[proto.dtype]
    if size * np.dtype(np_dtype).itemsize > MAX_TENSOR_BYTES:
        # a few bytes on the wire (one value, TensorFlow fills the shape with it) must not make
        # the server allocate terabytes; TF Serving answers the same when its allocation fails
        raise TensorError(f"tensor parsing error: {alias} (shape {list(shape)} is {size:,} "
                          f"values, beyond the {MAX_TENSOR_BYTES >> 20} MiB a request's tensor "
                          "may take here)")
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        values = np.frombuffer(proto.tensor_content, dtype=np_dtype)
    else:
        values = np.array(list(getattr(proto, field)), dtype=np_dtype)
    if values.size == size:
        return values.reshape(shape)
    if values.size == 1 and size > 0:
        # TensorFlow's convention: one value fills the whole shape.
        return np.full(shape, values[0], dtype=values.dtype)
    raise TensorError(f"tensor parsing error: {alias} ({values.size} values for shape "
                      f"{list(shape)})")
