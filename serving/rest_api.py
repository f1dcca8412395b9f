"""TF Serving's REST request dispatch (tensorflow_serving/model_servers/
http_rest_api_handler.cc, http_rest_api_util.cc): a (method, path, body) -> (HTTP status, JSON
body) over the same `DataPlane` as gRPC, so the two APIs of one server cannot disagree. The
paths, messages and status codes are TF Serving's; the JSON conversions are serving.json_tensor;
the HTTP server is serving.rest.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.dataplane import DataPlane, ServingError
from serving.json_tensor import (
    _invalid,
    classification_json,
    classify_regress_request,
    dumps,
    metadata_json,
    parse_json,
    predict_json,
    predict_request,
    regression_json,
    status_json,
)

log = logging.getLogger("headwise.serving.rest")
Code = grpc.StatusCode

# http_rest_api_util.cc: kPredictionApiGegex, kModelStatusApiRegex.
PREDICTION_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|"
                             r"(?:/labels/([^/:]+)))?:(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|"
                         r"(?:/labels/([^/:]+)))?(?:\/(metadata))?")

# http_server.cc, ToHTTPStatusCode.
HTTP_STATUS = {
    Code.OK: 200, Code.CANCELLED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504, Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403, Code.RESOURCE_EXHAUSTED: 429, Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409, Code.OUT_OF_RANGE: 400, Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503, Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401,
}


class RestApi:
    """http_rest_api_handler.cc ProcessRequest: (method, path, body) -> (HTTP status, JSON)."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        try:
            return 200, self._dispatch(method, path, body)
        except ServingError as e:
            return HTTP_STATUS.get(e.code, 500), dumps({"error": e.message})
        except RecursionError:  # a value nested deeper than any tensor, past the parse
            return 400, dumps({"error": "JSON Value: nested too deep to be a tensor"})
        except Exception as e:  # noqa: BLE001 - a bad request must never take the server down
            log.exception("internal error in %s %s", method, path)
            return 500, dumps({"error": f"{type(e).__name__}: {e}"})

    def _dispatch(self, method: str, path: str, body: bytes) -> str:
        malformed = _invalid("Malformed request: ", method, " ", path)
        if method == "POST":
            m = PREDICTION_PATH.fullmatch(path)
            if not m:
                raise malformed
            spec_args, verb = m.groups()[:3], m.group(4)
            if verb == "predict":
                request = predict_pb2.PredictRequest()
                _model_spec(request.model_spec, *spec_args)
                fmt = predict_request(parse_json(body), request, self.plane)
                return predict_json(self.plane.predict(request).outputs, fmt)
            if verb in ("classify", "regress"):
                request = (classification_pb2.ClassificationRequest() if verb == "classify"
                           else regression_pb2.RegressionRequest())
                _model_spec(request.model_spec, *spec_args)
                classify_regress_request(parse_json(body), request)
                if verb == "classify":
                    return classification_json(self.plane.classify(request).result)
                return regression_json(self.plane.regress(request).result)
            raise malformed  # the regex ignores case, the dispatch does not
        if method == "GET":
            m = STATUS_PATH.fullmatch(path)
            if not m:
                raise malformed
            name, version, label, subresource = m.groups()
            if not name:
                raise _invalid("Missing model name in request.")
            if subresource == "metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    metadata_field=["signature_def"])
                _model_spec(request.model_spec, name, version, label)
                return metadata_json(self.plane.get_model_metadata(request))
            request = get_model_status_pb2.GetModelStatusRequest()
            _model_spec(request.model_spec, name, version, label)
            return status_json(self.plane.get_model_status(request))
        raise malformed


def _model_spec(spec, name: str, version: str | None, label: str | None) -> None:
    """http_rest_api_util.cc ParseModelInfo and FillModelSpecWithNameVersionAndLabel."""
    spec.name = urllib.parse.unquote(name)
    if version:
        try:
            spec.version.value = int(version)
        except ValueError:
            raise _invalid(f"Failed to convert version: {version} to numeric.") from None
        if not -2**63 <= int(version) < 2**63:
            raise _invalid(f"Failed to convert version: {version} to numeric.")
    if label:
        spec.version_label = urllib.parse.unquote(label)
