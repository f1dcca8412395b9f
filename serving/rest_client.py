"""The quick client: `headwise predict --rest-port`, every head of a served model in well under a
second, without TensorFlow.

Importing TensorFlow takes seconds, so nothing here imports it, nor `tensorflow_serving.apis`
(its protos import TensorFlow's): rows go as plain JSON instances ({"trip_miles": 1.2, ...},
typed by the model's description, `headwise.examples.to_plain`) to the model's plain-features
signature (its description's `features_signature`: serving_default, or `features` in models
exported before it was the default) over TF Serving's REST API (urllib); image bytes travel
as {"b64": ...}, as TF Serving's REST API takes binary data. A model exported before any
plain-features signature gets serialized tf.Examples (the clients' one encoder,
`headwise.examples`) as {"b64": ...} instances to its serving_default signature.
Each head's outputs are read as its Classify/Regress signature reads them (trainer/export.py),
through the same rule of the task registry (`Task.class_scores`, in float32 as the graph
computes it).
The answers are the gRPC client's (`serving/client.py`), printed by the same `table`.

The model's description comes from its `model_info` signature, which takes no input. TF Serving's
REST API cannot call such a signature (json_tensor.cc FillPredictRequestFromJson: "Failed to get
input map for signature"), so that one call goes over gRPC, as raw bytes (`wire.predict_request`)
through grpc's generic unary call: one tiny request to the server's gRPC port.
"""

from __future__ import annotations

import base64
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from headwise import contract, tasks
from headwise import examples as examples_lib
from serving import wire
from serving.predictions import (
    ClientError,
    HeadPrediction,
    classification,
    regression,
    task_of,
    to_examples,
)

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


def error_message(e: urllib.error.HTTPError) -> str:
    """TF Serving's {"error": ...} body of an HTTP error, or the status's reason."""
    try:
        return json.loads(e.read())["error"]
    except (ValueError, KeyError, TypeError):
        return str(e.reason)


def _float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


class RestClient:
    """One model (optionally one version) behind `headwise serve --rest-port`."""

    def __init__(self, host: str = "127.0.0.1", rest_port: int = 8501, grpc_port: int = 8500,
                 model_name: str = "taxi", version: int | None = None, timeout: float = 10.0):
        self.host, self.rest_port, self.grpc_port = host, rest_port, grpc_port
        self.model_name, self.version, self.timeout = model_name, version, timeout
        netloc = f"[{host}]" if ":" in host else host
        model = urllib.parse.quote(model_name, safe="")
        version_part = f"/versions/{version}" if version is not None else ""
        self.url = f"http://{netloc}:{rest_port}/v1/models/{model}{version_part}"
        self._info: dict[str, Any] | None = None

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def post(self, verb: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST <model>:<verb>; TF Serving's {"error": ...} becomes a ClientError."""
        request = urllib.request.Request(f"{self.url}:{verb}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise ClientError(f"HTTP {e.code}: {error_message(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"no answer from a REST API at {self.host}:{self.rest_port} "
                              f"({reason}); is `headwise serve --rest-port "
                              f"{self.rest_port}` running there?") from None

    def model_info(self) -> dict[str, Any]:
        """The model's description (its model_info signature), over gRPC: see the module doc."""
        if self._info is None:
            import grpc  # no TensorFlow in it; imported only here

            address = f"[{self.host}]:{self.grpc_port}" if ":" in self.host \
                else f"{self.host}:{self.grpc_port}"
            request = wire.predict_request(self.model_name, contract.MODEL_INFO_SIGNATURE,
                                           self.version)
            with grpc.insecure_channel(address) as channel:
                call = channel.unary_unary(PREDICT_METHOD)
                try:
                    response = call(request, timeout=self.timeout)
                except grpc.RpcError as e:
                    code = e.code()
                    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise ClientError(
                            f"no answer from a model server at {address} ({code.name}: "
                            f"{e.details()}); the model's description is read over gRPC "
                            "(--port)") from None
                    raise ClientError(f"{code.name}: {e.details()}") from None
            values = wire.predict_response_strings(response).get(contract.MODEL_INFO_OUTPUT)
            if not values:
                raise ClientError(f"model {self.model_name!r} has no "
                                  f"{contract.MODEL_INFO_SIGNATURE} signature: was it exported "
                                  "by headwise?")
            self._info = json.loads(values[0])
        return self._info

    def examples(self, rows: Sequence[Mapping[str, Any]], base_dir: str | None = None,
                 first_row: int = 1) -> list[bytes]:
        """As the gRPC client's `examples` (image paths relative to `base_dir` are read here)."""
        return to_examples(self.model_info(), rows, base_dir, first_row)

    def predict(self, serialized: Sequence[bytes]) -> list[dict[str, Any]]:
        """The examples signature over REST (base64 tf.Examples), row format: per example,
        {head: outputs}."""
        info = self.model_info()
        answer = self.post("predict", {
            "signature_name": contract.examples_signature(info),
            "instances": [{"b64": base64.b64encode(s).decode()} for s in serialized]})
        return self._by_head(answer["predictions"])

    def predict_plain(self, rows: Sequence[Mapping[str, Any]], base_dir: str | None = None,
                      first_row: int = 1) -> list[dict[str, Any]]:
        """The features signature over REST with plain JSON rows (headwise.examples.to_plain):
        per row, {head: outputs}."""
        info = self.model_info()
        try:
            instances = examples_lib.to_plain(rows, info, base_dir, first_row)
        except ValueError as e:
            raise ClientError(str(e)) from None
        answer = self.post("predict", {"signature_name": info["features_signature"]["name"],
                                       "instances": instances})
        return self._by_head(answer["predictions"])

    def _by_head(self, rows: list) -> list[dict[str, Any]]:
        heads = [h["name"] for h in self.model_info()["heads"]]
        if len(heads) == 1:  # one output: TF Serving writes it bare, not keyed by name
            rows = [{heads[0]: r} for r in rows]
        return rows

    def predict_rows(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 64,
                     base_dir: str | None = None) -> Iterator[list[HeadPrediction]]:
        """Per row (in order), one HeadPrediction per head: plain JSON to the plain-features
        signature; base64 tf.Examples to serving_default for a model exported before there
        was one. `base_dir`: where relative image paths point (the CSV's folder)."""
        info = self.model_info()
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            if "features_signature" in info:
                answers = self.predict_plain(batch, base_dir, start + 1)
            else:
                answers = self.predict(self.examples(batch, base_dir, start + 1))
            for outputs in answers:
                yield [head_prediction(h, outputs[h["name"]]) for h in info["heads"]]


def head_prediction(head: dict, output) -> HeadPrediction:
    """One head's Predict output for one example, read as its Classify or Regress
    signature reads it (trainer/export.py)."""
    values = [_float32(v) for v in (output if isinstance(output, list) else [output])]
    if task_of(head).signature == tasks.REGRESS:
        return regression(head, values[0])
    # The outputs as one score per class, by the rule the Classify signature applies.
    scores = task_of(head).class_scores(np.asarray([values], np.float32),
                                        lambda parts: np.concatenate(parts, axis=1))
    return classification(head, list(zip(head["classes"], map(float, scores[0]), strict=True)))
