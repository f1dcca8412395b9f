"""TF Serving's PredictionService and ModelService semantics on request/response protos.

No transport here: every method takes a `tensorflow_serving.apis` request proto and returns the
response proto, or raises `ServingError(code, message)` with the status code and message that
`tensorflow_model_server` returns for the same request (tensorflow_serving/servables/tensorflow/
predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc, get_model_metadata_impl.cc,
get_model_status_impl.cc). The gRPC servicer in `server.py` only maps ServingError to a status,
the REST API in `rest.py` to an HTTP status and TF Serving's JSON error body.
"""

from __future__ import annotations

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    regression_pb2,
)

from headwise.contract import (
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD,
    CLASSIFY_OUTPUT_CLASSES,
    CLASSIFY_OUTPUT_SCORES,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_INPUTS,
    REGRESS_METHOD,
    REGRESS_OUTPUTS,
)
from headwise.request_logs import input_examples
from serving import tensors
from serving.servable import NotFound, Servable, VersionManager, not_found_message

SIGNATURE_DEF_FIELD = "signature_def"

Code = grpc.StatusCode


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _tf_error(e: Exception) -> ServingError:
    """A TensorFlow runtime error -> the same status code (TF and gRPC share the numbering)."""
    import tensorflow as tf

    if isinstance(e, tf.errors.OpError):
        code = next((c for c in Code if c.value[0] == e.error_code), Code.UNKNOWN)
        return ServingError(code, e.message)
    if isinstance(e, UnicodeDecodeError):
        # TensorFlow's status quoted the request's bytes (e.g. "Could not parse example input,
        # value: '...'") and its Python wrapper could not decode them: an input error.
        return ServingError(Code.INVALID_ARGUMENT,
                            "Could not parse example input (the input is not a serialized "
                            "tf.Example)")
    return ServingError(Code.INTERNAL, f"{type(e).__name__}: {e}")


class DataPlane:
    """One or more models by name, as a TF Serving model config lists them."""

    def __init__(self, managers: list[VersionManager], request_log=None):
        self.managers = {m.name: m for m in managers}
        self.request_log = request_log  # serving.request_log.RequestLog, or None

    def _logged(self, kind: str, request, response, model_spec):
        """Hand a successful request to the request log (TF Serving logs only those)."""
        if self.request_log is not None:
            self.request_log.log(kind, request, response, model_spec)
        return response

    # --- helpers shared by every RPC -------------------------------------------------------
    def _servable(self, spec):
        if not spec.name:
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        if spec.HasField("version_label"):
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {spec.version_label}")
        version = spec.version.value if spec.HasField("version") else None
        manager = self.managers.get(spec.name)
        try:
            if manager is None:
                raise NotFound(not_found_message(spec.name, version))
            return manager.servable(spec.name, version)
        except NotFound as e:
            raise ServingError(Code.NOT_FOUND, str(e)) from None

    def signature_defs(self, spec) -> dict:
        """The SignatureDefs of the servable a ModelSpec names (the REST API reads a signature's
        inputs to parse a request's JSON, as http_rest_api_handler.cc GetInfoMap does)."""
        with self._servable(spec) as servable:
            return dict(servable.signature_defs)

    @staticmethod
    def _run(servable: Servable, feeds: dict, fetches: list[str]) -> list[np.ndarray]:
        try:
            return servable.run(feeds, fetches)
        except Exception as e:  # noqa: BLE001 - reported to the caller as a status
            raise _tf_error(e) from None

    @staticmethod
    def _model_spec(out, name: str, signature: str | None, version: int) -> None:
        out.name = name
        out.version.value = version
        if signature is not None:
            out.signature_name = signature or DEFAULT_SIGNATURE

    # --- Predict ---------------------------------------------------------------------------
    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        with self._servable(request.model_spec) as servable:
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            sig = servable.signature_defs.get(name)
            if sig is None:
                raise ServingError(Code.FAILED_PRECONDITION,
                                   f'Serving signature key "{name}" not found.')
            if sig.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
                raise ServingError(Code.INTERNAL, (
                    "Expected prediction signature method_name to be one of {"
                    f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
                    f"Was: {sig.method_name}"))
            feeds = self._predict_inputs(sig, request)
            aliases = self._output_aliases(sig, request.output_filter)
            values = self._run(servable, feeds, [sig.outputs[a].name for a in aliases])
            response = predict_pb2.PredictResponse()
            self._model_spec(response.model_spec, request.model_spec.name, name,
                             servable.version)
            for alias, value in zip(aliases, values, strict=True):
                response.outputs[alias].CopyFrom(tensors.to_proto(value))
            return self._logged("predict_log", request, response, response.model_spec)

    @staticmethod
    def _predict_inputs(sig, request) -> dict[str, np.ndarray]:
        sent, expected = set(request.inputs), set(sig.inputs)
        if sent != expected:
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
        feeds = {}
        for alias, info in sig.inputs.items():
            proto = request.inputs[alias]
            try:
                value = tensors.from_proto(proto, alias)
            except tensors.TensorError as e:
                raise ServingError(Code.INVALID_ARGUMENT, str(e)) from None
            if proto.dtype != info.dtype:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"Expects arg[{sorted(sig.inputs).index(alias)}] to be "
                    f"{tensors.dtype_name(info.dtype)} but "
                    f"{tensors.dtype_name(proto.dtype)} is provided"))
            _check_shape(alias, value.shape, info.tensor_shape)
            feeds[info.name] = value
        return feeds

    @staticmethod
    def _output_aliases(sig, output_filter) -> list[str]:
        if not output_filter:
            return list(sig.outputs)
        seen: list[str] = []
        for alias in output_filter:
            if alias not in sig.outputs:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(sig.outputs))}}}."))
            if alias in seen:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen

    # --- Classify / Regress / MultiInference -----------------------------------------------
    def classify(self, request: classification_pb2.ClassificationRequest
                 ) -> classification_pb2.ClassificationResponse:
        return self._one_task(request, CLASSIFY_METHOD,
                              classification_pb2.ClassificationResponse())

    def regress(self, request: regression_pb2.RegressionRequest
                ) -> regression_pb2.RegressionResponse:
        return self._one_task(request, REGRESS_METHOD, regression_pb2.RegressionResponse())

    def _one_task(self, request, method: str, response):
        """Classify or Regress: one signature of that method over request.input."""
        kind, signature_tensors, fill_result, log_kind = _TASKS[method]
        with self._servable(request.model_spec) as servable:
            name, sig = self._method_signature(servable, request.model_spec, method, kind)
            input_name, outputs = signature_tensors(sig)
            examples = _serialized_examples(request.input)
            values = self._run(servable, {input_name: examples}, outputs)
            self._model_spec(response.model_spec, request.model_spec.name, name,
                             servable.version)
            fill_result(sig, len(examples), dict(zip(outputs, values, strict=True)),
                        response.result)
            return self._logged(log_kind, request, response, response.model_spec)

    @staticmethod
    def _method_signature(servable, spec, method: str, kind: str):
        name = spec.signature_name or DEFAULT_SIGNATURE
        sig = servable.signature_defs.get(name)
        if sig is None:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"No signature was found with the name: {name}")
        _check_method(sig, method, kind)
        return name, sig

    def multi_inference(self, request: inference_pb2.MultiInferenceRequest
                        ) -> inference_pb2.MultiInferenceResponse:
        if not request.tasks:
            raise ServingError(Code.INVALID_ARGUMENT, "Found ModelSpec with an empty model name.")
        model = request.tasks[0].model_spec
        with self._servable(model) as servable:
            input_name = None
            fetches: list[str] = []
            plan = []
            seen: set[str] = set()
            for task in request.tasks:
                spec = task.model_spec
                if not spec.name:
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       "Found ModelSpec with an empty model name.")
                if spec.name != model.name:
                    raise ServingError(Code.INVALID_ARGUMENT, (
                        "All ModelSpecs in a MultiInferenceRequest must access the same "
                        "model name."))
                name = spec.signature_name or DEFAULT_SIGNATURE
                if name in seen:
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       f"Duplicate evaluation of signature: {name}")
                seen.add(name)
                sig = servable.signature_defs.get(name)
                if sig is None:
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       f"Requested signature not found in model graph: {name}")
                if task.method_name not in _TASKS:
                    raise ServingError(Code.UNIMPLEMENTED,
                                       f"Unsupported signature method_name: {task.method_name}")
                kind, signature_tensors, _, _ = _TASKS[task.method_name]
                _check_method(sig, task.method_name, kind)
                task_input, outputs = signature_tensors(sig)
                if input_name is None:
                    input_name = task_input
                elif input_name != task_input:
                    raise ServingError(Code.INVALID_ARGUMENT,
                                       "Input tensor must be the same for all Signatures.")
                fetches.extend(o for o in outputs if o not in fetches)
                plan.append((task.method_name, sig))
            examples = _serialized_examples(request.input)
            values = dict(zip(fetches, self._run(servable, {input_name: examples}, fetches),
                              strict=True))
            response = inference_pb2.MultiInferenceResponse()
            for task, (method, sig) in zip(request.tasks, plan, strict=True):
                result = response.results.add()
                self._model_spec(result.model_spec, task.model_spec.name,
                                 task.model_spec.signature_name, servable.version)
                fill_result = _TASKS[method][2]
                fill_result(sig, len(examples), values, result.classification_result
                            if method == CLASSIFY_METHOD else result.regression_result)
            return self._logged("multi_inference_log", request, response,
                                response.results[0].model_spec)

    # --- Metadata and status ---------------------------------------------------------------
    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                           ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(Code.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for f in request.metadata_field:
            if f != SIGNATURE_DEF_FIELD:
                raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {f} is not supported")
        with self._servable(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for name, sig in servable.signature_defs.items():
                sig_map.signature_def[name].CopyFrom(sig)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(sig_map)
            return response

    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                         ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        if not request.HasField("model_spec") or not spec.name:
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        manager = self.managers.get(spec.name)
        states = manager.states() if manager is not None else []
        if spec.HasField("version"):
            states = [s for s in states if s.version == spec.version.value]
            if not states:
                raise ServingError(Code.NOT_FOUND, (
                    f"Could not find version {spec.version.value} of model {spec.name}"))
        elif not states:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in states:
            entry = response.model_version_status.add(version=s.version, state=s.state)
            entry.status.SetInParent()  # TF Serving always writes it: error_code OK when fine
            if s.error:
                entry.status.error_code = Code.UNKNOWN.value[0]
                entry.status.error_message = s.error
        return response


# --- Classify/Regress pre- and post-processing, as in classifier.cc and regressor.cc ------------
def _check_method(sig, method: str, kind: str) -> None:
    if sig.method_name != method:
        raise ServingError(Code.INVALID_ARGUMENT, (
            f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"))


def _classify_tensors(sig) -> tuple[str, list[str]]:
    if len(sig.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(sig.outputs) not in (1, 2):
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if CLASSIFY_INPUTS not in sig.inputs:
        raise ServingError(Code.FAILED_PRECONDITION,
                           "No classification inputs found in SignatureDef")
    outputs = [sig.outputs[k].name for k in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES)
               if k in sig.outputs]
    if not outputs:
        raise ServingError(Code.FAILED_PRECONDITION, (
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores".'))
    return sig.inputs[CLASSIFY_INPUTS].name, outputs


def _regress_tensors(sig) -> tuple[str, list[str]]:
    if len(sig.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(sig.outputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if REGRESS_INPUTS not in sig.inputs:
        raise ServingError(Code.FAILED_PRECONDITION, "No regression inputs found in SignatureDef")
    if REGRESS_OUTPUTS not in sig.outputs:
        raise ServingError(Code.FAILED_PRECONDITION,
                           "No regression outputs found in SignatureDef")
    return sig.inputs[REGRESS_INPUTS].name, [sig.outputs[REGRESS_OUTPUTS].name]


def _serialized_examples(inp: input_pb2.Input) -> np.ndarray:
    examples = input_examples(inp)
    if not examples:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    return np.array(examples, dtype=object)


def _classification_result(sig, n: int, values: dict[str, np.ndarray], out) -> None:
    classes = values.get(sig.outputs[CLASSIFY_OUTPUT_CLASSES].name) \
        if CLASSIFY_OUTPUT_CLASSES in sig.outputs else None
    scores = values.get(sig.outputs[CLASSIFY_OUTPUT_SCORES].name) \
        if CLASSIFY_OUTPUT_SCORES in sig.outputs else None
    for what, tensor in (("classes", classes), ("scores", scores)):
        if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != n):
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"Expected {what} Tensor shape: [batch_size num_classes] but got "
                f"{list(tensor.shape)}"))
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(n):
        entry = out.classifications.add()
        for c in range(num_classes):
            cls = entry.classes.add()
            if classes is not None:
                cls.label = classes[i, c].decode() if isinstance(classes[i, c], bytes) \
                    else str(classes[i, c])
            if scores is not None:
                cls.score = float(scores[i, c])


def _regression_result(sig, n: int, values: dict[str, np.ndarray], out) -> None:
    tensor = values[sig.outputs[REGRESS_OUTPUTS].name]
    if tensor.ndim == 2 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 1 or tensor.shape[0] != n:
        raise ServingError(Code.INVALID_ARGUMENT, (
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(tensor.shape)}"))
    for v in tensor.tolist():
        out.regressions.add(value=v)


# method -> (its name in TF Serving's messages, the signature's tensors, the result writer,
#            the PredictionLog field a request of it is logged in)
_TASKS = {
    CLASSIFY_METHOD: ("classification", _classify_tensors, _classification_result,
                      "classify_log"),
    REGRESS_METHOD: ("regression", _regress_tensors, _regression_result, "regress_log"),
}


def _check_shape(alias: str, shape: tuple[int, ...], expected) -> None:
    if expected.unknown_rank:
        return
    dims = [d.size for d in expected.dim]
    ok = len(shape) == len(dims) and all(d < 0 or d == s for d, s in zip(dims, shape,
                                                                           strict=True))
    if not ok:
        want = "[" + ",".join("?" if d < 0 else str(d) for d in dims) + "]"
        raise ServingError(Code.INVALID_ARGUMENT, (
            f"input tensor alias {alias} has shape {list(shape)}, the signature expects {want}"))
