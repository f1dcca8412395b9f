"""The request log's file format, and reading it back: no gRPC, no server.

`headwise serve --request-log-dir` (serving/request_log.py, the writer) samples requests into
TF Serving's own format: each request and its response as a
`tensorflow_serving.apis.PredictionLog` (classify_log, regress_log, predict_log or
multi_inference_log, plus log_metadata) in TFRecord files. The pipeline's DataValidationGate
reads the examples back to compare what the served model is asked with what it was trained on
(skew), and the runner lists the files to key the gate's cache; both read through this module.

Files: `requests-<UTC time>-<host>-<pid>-<n>.tfrecord` (several replicas can share one
directory; names sort by time). A file is written as `<name>.tmp` and renamed when it is
closed, so a reader never sees a half-written file; a killed server leaves its open file as
`.tmp`, which is never read.

Directories are read through tf.io.gfile, so gs:// works too.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from collections.abc import Mapping

from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2, prediction_log_pb2

from headwise import contract

log = logging.getLogger("headwise.serving")

PREFIX = "requests-"
SUFFIX = ".tfrecord"
TMP_SUFFIX = ".tmp"  # an open (or abandoned) file: never read


def file_name(when: float, host: str, pid: int, n: int) -> str:
    """The name of a writer's n-th file, opened at `when` (seconds since the epoch)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
    host = re.sub(r"[^A-Za-z0-9.]", "_", host) or "host"
    return f"{PREFIX}{stamp}-{host}-{pid}-{n:05d}{SUFFIX}"


def log_files(log_dir: str) -> list[str]:
    """The finished log files under log_dir, oldest first (names sort by time)."""
    import tensorflow as tf

    if not log_dir or not tf.io.gfile.isdir(log_dir):
        return []
    names = [n for n in tf.io.gfile.listdir(log_dir)
             if n.startswith(PREFIX) and n.endswith(SUFFIX)]
    return [os.path.join(log_dir, n) for n in sorted(names)]


def input_examples(inp: input_pb2.Input) -> list[bytes]:
    """A Classify/Regress/MultiInference Input -> the serialized tf.Examples the model parses
    (context bytes prepended, as TF Serving does: a proto parse of concatenated messages merges
    them)."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in inp.example_list.examples]
    if kind == "example_list_with_context":
        ctx = inp.example_list_with_context.context.SerializeToString()
        return [ctx + e.SerializeToString() for e in inp.example_list_with_context.examples]
    return []


_PLAIN_NUMBERS = {types_pb2.DT_FLOAT: ("float_val", "<f"),
                  types_pb2.DT_DOUBLE: ("double_val", "<d")}


def plain_examples(inputs, columns: Mapping[str, str] | None = None) -> list[bytes]:
    """A plain-features request's tensors (contract.FEATURES_SIGNATURE) -> one
    serialized tf.Example per row, holding what a client's example of the row would hold: a
    float32 input as floats, a float64 one as the integers it stands for (contract.
    FEATURES_DTYPES), strings as bytes; NaN and empty strings (missing) left out. `columns`
    maps an input's name to its column (contract.features_input; default: the same name)."""
    from tensorflow.core.example import example_pb2, feature_pb2

    rows: list[example_pb2.Example] = []
    for name, tensor in inputs.items():
        column = (columns or {}).get(name, name)
        if tensor.dtype == types_pb2.DT_STRING:
            values = list(tensor.string_val)
        elif tensor.dtype in _PLAIN_NUMBERS:
            field, little_endian = _PLAIN_NUMBERS[tensor.dtype]
            values = (list(getattr(tensor, field)) if not tensor.tensor_content else
                      [v for (v,) in struct.iter_unpack(little_endian, tensor.tensor_content)])
        else:
            continue
        while len(rows) < len(values):
            rows.append(example_pb2.Example())
        for row, value in zip(rows, values, strict=False):
            if isinstance(value, bytes):
                if value.strip():
                    row.features.feature[column].CopyFrom(
                        feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value])))
            elif value == value:  # not NaN
                feature = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[value])) \
                    if tensor.dtype == types_pb2.DT_FLOAT else \
                    feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(value)]))
                row.features.feature[column].CopyFrom(feature)
    return [r.SerializeToString() for r in rows]


def examples_of(entry: prediction_log_pb2.PredictionLog,
                columns: Mapping[str, str] | None = None) -> list[bytes]:
    """The serialized tf.Examples a logged request asked about (none for other requests);
    plain features become the examples a client would have sent (`plain_examples`)."""
    kind = entry.WhichOneof("log_type")
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return input_examples(getattr(entry, kind).request.input)
    if kind == "predict_log":
        request = entry.predict_log.request
        inputs = request.inputs
        # A signature over serialized examples has one string input (`examples`, or `inputs`
        # of a head's signature); no plain-features input has either name
        # (contract.features_input).
        if len(inputs) == 1:
            ((name, tensor),) = inputs.items()
            if tensor.dtype == types_pb2.DT_STRING and name in (contract.SERVING_INPUT,
                                                                 contract.CLASSIFY_INPUTS):
                return list(tensor.string_val)
        # Plain features: to serving_default (a request that names none means it), or to
        # `features` in models exported before that was the default. Other Predict requests
        # (model_info) have no inputs.
        if inputs and request.model_spec.signature_name in (
                "", contract.FEATURES_SIGNATURE, contract.LEGACY_FEATURES_SIGNATURE):
            return plain_examples(inputs, columns)
    return []


def read_examples(log_dir: str, max_examples: int, columns: Mapping[str, str] | None = None
                  ) -> tuple[list[bytes], int]:
    """Up to max_examples serialized tf.Examples from the newest log files; (examples, files
    read). A truncated file (a server killed mid-write never renames its file, but a copy may
    be cut short) ends that file's records, not the read."""
    import tensorflow as tf

    found: list[bytes] = []
    files = 0
    for path in reversed(log_files(log_dir)):
        files += 1
        batch: list[bytes] = []
        try:
            for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                batch.extend(examples_of(prediction_log_pb2.PredictionLog.FromString(raw),
                                         columns))
        except tf.errors.DataLossError:
            log.warning("request log: %s is truncated; read up to the damage", path)
        found[:0] = batch  # keep time order: older files before newer ones
        if len(found) >= max_examples:
            return found[-max_examples:], files
    return found, files
