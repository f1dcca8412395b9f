"""Query every head of a served headwise model with TF Serving's stock gRPC API.

The model describes itself (its `model_info` signature: feature dtypes, heads, class names), so
the client needs only the server's address. `predict_rows` turns raw rows (CSV strings or JSON
values) into tf.Examples, sends one MultiInference request per batch (Classify for classifier
heads, Regress for regression heads: class names and values in label units come back from the
server), and returns one `HeadPrediction` per row and head. What it shares with the quick REST
client (`serving/rest_client.py`, no TensorFlow) lives in `serving/predictions.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from serving import predictions, tensors
from serving.predictions import (  # noqa: F401 - the client's public names, shared with REST
    ClientError,
    HeadPrediction,
    read_rows,
    table,
    task_of,
)


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

    def examples(self, rows: Iterable[Mapping[str, Any]], base_dir: str | None = None,
                 first_row: int = 1) -> list[bytes]:
        """Rows -> serialized tf.Examples; an image feature's value is the file's bytes, or its
        path (relative to `base_dir`), read here. `first_row`: rows[0]'s number in errors."""
        return predictions.to_examples(self.model_info(), list(rows), base_dir, first_row)

    def multi_inference(self, serialized: Sequence[bytes], heads: Sequence[dict] | None = None
                        ) -> inference_pb2.MultiInferenceResponse:
        """One request, one task per head (Classify or Regress signature)."""
        heads = heads if heads is not None else self.model_info()["heads"]
        request = inference_pb2.MultiInferenceRequest()
        for head in heads:
            request.tasks.add(model_spec=self.model_spec(head["signature"]),
                              method_name=contract.METHODS[task_of(head).signature])
        request.input.example_list.examples.extend(
            example_pb2.Example.FromString(s) for s in serialized)
        return self._call(self.stub.MultiInference, request)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 64,
                     base_dir: str | None = None) -> Iterator[list[HeadPrediction]]:
        """Per row (in order), one HeadPrediction per head. `base_dir`: where relative image
        paths point (e.g. the CSV's folder)."""
        heads = self.model_info()["heads"]
        for start in range(0, len(rows), batch_size):
            serialized = self.examples(rows[start:start + batch_size], base_dir, start + 1)
            response = self.multi_inference(serialized, heads)
            per_head = [_head_predictions(h, r) for h, r in zip(heads, response.results,
                                                                 strict=True)]
            yield from (list(row) for row in zip(*per_head, strict=True))


def _head_predictions(head: dict, result) -> list[HeadPrediction]:
    if task_of(head).signature == tasks.REGRESS:
        return [predictions.regression(head, r.value)
                for r in result.regression_result.regressions]
    return [predictions.classification(head, [(cls.label, cls.score) for cls in c.classes])
            for c in result.classification_result.classifications]
