"""TF Serving's warm-up file: real requests that the model server replays while it loads a
version, so that the first client request is not the one that pays for the graph's first run
(https://www.tensorflow.org/tfx/serving/saved_model_warmup).

The file is `assets.extra/tf_serving_warmup_requests` in the SavedModel: TFRecords, one
`PredictionLog` (tensorflow_serving/apis/prediction_log.proto) per request. TF Serving
(saved_model_warmup_util.cc) replays every record once when the version loads, fails the load on
a request that fails or on more than 1,000 records, and runs each request on the loading version
whatever model name it carries.

`requests` builds one record per call a client makes, from real examples (the infra check's:
the test split's first rows): Predict on `model_info`, on the examples signature and on
`serving_default` (the examples' values as plain tensors), Classify or Regress on every
head's signature, one MultiInference over every head. The infra check writes them once every
call has passed (serving/infra_check.py); the Pusher puts the file into the pushed
version; `replay` is what the built-in server does with it at load (serving/servable.py), as the
binary does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from headwise import contract, tasks
from serving import tensors
from serving.dataplane import DataPlane
from serving.predictions import task_of

FILE = contract.WARMUP_FILE  # assets.extra/tf_serving_warmup_requests
MAX_RECORDS = 1000  # saved_model_warmup_util.cc WarmupConsts::kMaxNumRecords


def _spec(out, model_name: str, signature: str) -> None:
    out.name = model_name
    out.signature_name = signature


def _example_list(out, examples: Sequence[bytes]) -> None:
    out.example_list.examples.extend(example_pb2.Example.FromString(s) for s in examples)


def predict(model_name: str, signature: str, input_name: str | None,
            examples: Sequence[bytes]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    _spec(request.model_spec, model_name, signature)
    if input_name is not None:
        request.inputs[input_name].CopyFrom(tensors.to_proto(np.array(examples, dtype=object)))
    return request


def plain_columns(info: dict[str, Any], examples: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Serialized tf.Examples as the features signature's inputs (the model description's
    "features_signature"): {input: [batch] array}, NaN or b"" where an example lacks the
    feature, as a client sends a missing value."""
    inputs = info["features_signature"]["inputs"]
    parsed = [example_pb2.Example.FromString(s).features.feature for s in examples]
    out = {}
    for column, spec in inputs.items():
        values = []
        for features in parsed:
            kind = features[column].WhichOneof("kind") if column in features else None
            found = list(getattr(features[column], kind).value) if kind else []
            values.append(found[0] if found else (b"" if spec["dtype"] == "string" else np.nan))
        out[spec["input"]] = np.array(values, dtype=object if spec["dtype"] == "string"
                                      else spec["dtype"])
    return out


def predict_features(model_name: str, info: dict[str, Any], examples: Sequence[bytes]
                     ) -> predict_pb2.PredictRequest:
    """Predict on the features signature with the examples' values as plain tensors."""
    request = predict_pb2.PredictRequest()
    _spec(request.model_spec, model_name, info["features_signature"]["name"])
    for name, values in plain_columns(info, examples).items():
        request.inputs[name].CopyFrom(tensors.to_proto(values))
    return request


def classify(model_name: str, signature: str, examples: Sequence[bytes]
             ) -> classification_pb2.ClassificationRequest:
    return _on_examples(classification_pb2.ClassificationRequest(), model_name, signature,
                        examples)


def regress(model_name: str, signature: str, examples: Sequence[bytes]
            ) -> regression_pb2.RegressionRequest:
    return _on_examples(regression_pb2.RegressionRequest(), model_name, signature, examples)


def _on_examples(request, model_name: str, signature: str, examples: Sequence[bytes]):
    _spec(request.model_spec, model_name, signature)
    _example_list(request.input, examples)
    return request


def multi_inference(model_name: str, heads: Sequence[dict[str, Any]], examples: Sequence[bytes]
                    ) -> inference_pb2.MultiInferenceRequest:
    """One task per head (its Classify or Regress signature), one shared input."""
    request = inference_pb2.MultiInferenceRequest()
    for head in heads:
        task = request.tasks.add(method_name=contract.METHODS[_kind(head)])
        _spec(task.model_spec, model_name, head["signature"])
    _example_list(request.input, examples)
    return request


def _kind(head: dict[str, Any]) -> str:
    return task_of(head).signature


def requests(model_name: str, info: dict[str, Any], examples: Sequence[bytes]
             ) -> list[prediction_log_pb2.PredictionLog]:
    """The warm-up records for a model with the description `info` (module doc)."""
    heads = info["heads"]
    logs = [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
                request=predict(model_name, contract.MODEL_INFO_SIGNATURE, None, ()))),
            prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
                request=predict(model_name, contract.examples_signature(info),
                                contract.SERVING_INPUT, examples)))]
    if "features_signature" in info:  # models exported before it have none
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
            request=predict_features(model_name, info, examples))))
    for head in heads:
        if _kind(head) == tasks.REGRESS:
            logs.append(prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(
                request=regress(model_name, head["signature"], examples))))
        else:
            logs.append(prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(
                    request=classify(model_name, head["signature"], examples))))
    if heads:
        logs.append(prediction_log_pb2.PredictionLog(
            multi_inference_log=prediction_log_pb2.MultiInferenceLog(
                request=multi_inference(model_name, heads, examples))))
    return logs


def write(path: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> int:
    """Write the records to `path` whole (a temporary name, then a rename); their count."""
    import tensorflow as tf

    logs = list(logs)
    if len(logs) > MAX_RECORDS:
        raise ValueError(f"{len(logs)} warm-up records; TF Serving refuses more than "
                         f"{MAX_RECORDS}")
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return len(logs)


def read(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """The records of a warm-up file, refused as TF Serving refuses them."""
    import tensorflow as tf

    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record.numpy())
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise ValueError(f"Failed to parse warmup record from {path}: {e}") from None
        logs.append(log)
        if len(logs) > MAX_RECORDS:
            raise ValueError(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) "
                             f"at {path}")
    return logs


def replay(plane, model_name: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> int:
    """Run every record through `plane` (a serving.dataplane.DataPlane that serves the loading
    version as `model_name`), as saved_model_warmup.cc does: the record's model name is
    ignored; the first failure raises (and fails the load). The number of records run."""
    count = 0
    for log in logs:
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request, run = log.predict_log.request, plane.predict
        elif kind == "classify_log":
            request, run = log.classify_log.request, plane.classify
        elif kind == "regress_log":
            request, run = log.regress_log.request, plane.regress
        elif kind == "multi_inference_log":
            request, run = log.multi_inference_log.request, plane.multi_inference
        else:
            raise ValueError(f"Unsupported log_type for warmup: {kind}")
        request = type(request).FromString(request.SerializeToString())
        specs = [t.model_spec for t in request.tasks] if kind == "multi_inference_log" \
            else [request.model_spec]
        for spec in specs:
            spec.name = model_name
        run(request)
        count += 1
    return count


class _Loading:
    """The version being loaded, as the one version of its model (what DataPlane asks of a
    VersionManager)."""

    def __init__(self, servable):
        self.name, self._servable = servable.name, servable

    def servable(self, name: str, version: int | None = None):
        self._servable.acquire()
        return self._servable


def replay_file(servable) -> int:
    """Replay the warm-up file of a version that is loading (serving.servable.Servable), if it
    has one: what the built-in server does at load (serving/servable.py's VersionManager)."""
    path = os.path.join(servable.path, FILE)
    if not os.path.exists(path):
        return 0
    return replay(DataPlane([_Loading(servable)]), servable.name, read(path))
