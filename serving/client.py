"""Query every head of a served headwise model with TF Serving's stock gRPC API.

The model describes itself (its `model_info` signature: feature dtypes, heads, class names), so
the client needs only the server's address. `predict_rows` turns raw rows (CSV strings or JSON
values) into tf.Examples, sends one MultiInference request per batch (Classify for classifier
heads, Regress for regression heads: class names and values in label units come back from the
server), and returns one `HeadPrediction` per row and head.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from headwise import contract, tasks
from headwise import examples as examples_lib
from serving import tensors


class ClientError(RuntimeError):
    """A failed query, with a message a person can act on."""


@dataclass
class HeadPrediction:
    head: str
    task: str
    value: float | None = None  # regression, in label units
    label: str | None = None  # classifiers: the top class (multilabel: classes >= 0.5, "|")
    score: float | None = None  # the top class's probability
    scores: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        if self.value is not None:
            return f"{self.value:.4g}"
        return f"{self.label} ({self.score:.2f})"


def read_rows(path: str, fmt: str = "csv") -> list[dict[str, Any]]:
    """Rows from a CSV file (header row), or JSON: a list of objects or one object per line."""
    if not os.path.isfile(path):
        raise ClientError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise ClientError(f"{path}: not UTF-8 text ({e})") from None
    if fmt == "json":
        try:
            stripped = text.lstrip()
            if stripped.startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ClientError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ClientError(f"{path}: expected a list of objects, one per row")
        return rows
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        if None in row:
            raise ClientError(f"{path}, line {reader.line_num}: more fields than the header has")
        rows.append(row)
    return rows


class HeadwiseClient:
    """A thin wrapper over PredictionServiceStub for one model (optionally one version)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8500, model_name: str = "taxi",
                 version: int | None = None, timeout: float = 10.0):
        self.address = f"{host}:{port}"
        self.model_name, self.version, self.timeout = model_name, version, timeout
        self.channel = grpc.insecure_channel(self.address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._info: dict[str, Any] | None = None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> HeadwiseClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def model_spec(self, signature: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature)
        if self.version is not None:
            spec.version.value = self.version
        return spec

    def _call(self, rpc, request):
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ClientError(
                    f"no answer from a model server at {self.address} ({code.name}: "
                    f"{e.details()}); is `headwise serve` running there?") from None
            raise ClientError(f"{code.name}: {e.details()}") from None

    def signatures(self) -> dict[str, Any]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(), metadata_field=["signature_def"])
        response = self._call(self.stub.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def model_info(self) -> dict[str, Any]:
        """The model's own description, read through Predict on its model_info signature."""
        if self._info is None:
            request = predict_pb2.PredictRequest(
                model_spec=self.model_spec(contract.MODEL_INFO_SIGNATURE))
            response = self._call(self.stub.Predict, request)
            raw = tensors.from_proto(response.outputs[contract.MODEL_INFO_OUTPUT],
                                     contract.MODEL_INFO_OUTPUT)
            self._info = json.loads(raw.item())
        return self._info

    def examples(self, rows: Iterable[Mapping[str, Any]]) -> list[bytes]:
        try:
            return examples_lib.to_examples(rows, self.model_info()["features"])
        except ValueError as e:
            raise ClientError(str(e)) from None

    def multi_inference(self, serialized: Sequence[bytes], heads: Sequence[dict] | None = None
                        ) -> inference_pb2.MultiInferenceResponse:
        """One request, one task per head (Classify or Regress signature)."""
        heads = heads if heads is not None else self.model_info()["heads"]
        request = inference_pb2.MultiInferenceRequest()
        for head in heads:
            request.tasks.add(model_spec=self.model_spec(head["signature"]),
                              method_name=contract.METHODS[_task(head).signature])
        request.input.example_list.examples.extend(
            example_pb2.Example.FromString(s) for s in serialized)
        return self._call(self.stub.MultiInference, request)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 64
                     ) -> Iterator[list[HeadPrediction]]:
        """Per row (in order), one HeadPrediction per head."""
        heads = self.model_info()["heads"]
        for start in range(0, len(rows), batch_size):
            response = self.multi_inference(self.examples(rows[start:start + batch_size]), heads)
            per_head = [_head_predictions(h, r) for h, r in zip(heads, response.results,
                                                                 strict=True)]
            yield from (list(row) for row in zip(*per_head, strict=True))


def _task(head: dict) -> tasks.Task:
    """The registry's task of a head in the model's description."""
    try:
        return tasks.get(head["task"])
    except KeyError:
        raise ClientError(f"head {head['name']!r}: the model was exported with a task this "
                          f"client does not know ({head['task']!r}); upgrade headwise") from None


def _head_predictions(head: dict, result) -> list[HeadPrediction]:
    task = _task(head)
    if task.signature == tasks.REGRESS:
        return [HeadPrediction(head["name"], head["task"], value=r.value)
                for r in result.regression_result.regressions]
    out = []
    for c in result.classification_result.classifications:
        classes = [(cls.label, cls.score) for cls in c.classes]
        label, score = task.decode(classes)
        out.append(HeadPrediction(head["name"], head["task"], label=label, score=score,
                                  scores=dict(classes)))
    return out


def table(predictions: Sequence[list[HeadPrediction]], first_row: int = 1) -> str:
    """A fixed-width table: one line per row, one column per head."""
    if not predictions:
        return "(no rows)"
    heads = [p.head for p in predictions[0]]
    cells = [[str(first_row + i)] + [p.text() for p in row] for i, row in enumerate(predictions)]
    header = ["row"] + heads
    widths = [max(len(r[j]) for r in [header, *cells]) for j in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
