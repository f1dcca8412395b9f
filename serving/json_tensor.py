"""TF Serving's JSON <-> request and response protos, as tensorflow_serving/util/json_tensor.cc
and json_tensor_test.cc define them: the row ("instances") and columnar ("inputs") predict
formats, {"b64": ...}, the classify/regress "examples" format (JSON -> tf.Example), the
"predictions"/"outputs"/"results" bodies and how numbers are written; and the status and
metadata JSON of http_rest_api_util.cc. No HTTP and no dispatch here (serving.rest_api,
serving.rest).

Known differences: JSON parse errors name Python's parser position with rapidjson's wording for
the common cases; whitespace in response bodies is close to, not byte-equal to, rapidjson's
PrettyWriter; outputs of a multi-output response are written in sorted order (TF Serving: the
protobuf map's order).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from headwise.contract import DEFAULT_SIGNATURE
from serving import tensors
from serving.dataplane import DataPlane, ServingError

Code = grpc.StatusCode
_INT32 = (types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8)
_FLOAT32_MAX_INT = (1 << 24) - 1  # json_tensor.cc IsLosslessDecimal<float>
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _invalid(*parts) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, "".join(str(p) for p in parts))


# --- JSON text, written as json_tensor.cc writes it ---------------------------------------------
class _Raw(str):
    """A JSON token written as is (a decimal number in WriteDecimal's form)."""


def decimal(value: float, float32: bool = True) -> _Raw:
    """json_tensor.cc WriteDecimal: shortest "%g" form if it reads back to the same value, else
    full precision; ".0" on whole numbers; NaN and Infinity unquoted."""
    if math.isnan(value):
        return _Raw("NaN")
    if math.isinf(value):
        return _Raw("-Infinity" if value < 0 else "Infinity")
    cast = np.float32 if float32 else float
    text = f"{value:g}"
    if cast(float(text)) != cast(value):
        text = f"{value:.9g}" if float32 else f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return _Raw(text)


def dumps(value, indent: int = 0) -> str:
    """JSON with objects on lines of their own and arrays on one line (rapidjson's PrettyWriter
    with kFormatSingleLineArray, as the response writers use it); _Raw tokens as they are."""
    pad = "    " * (indent + 1)
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {dumps(v, indent + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "    " * indent + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v, indent) for v in value) + "]"
    if isinstance(value, float):
        return str(decimal(value, float32=False))
    return json.dumps(value, ensure_ascii=False)


def _value_text(value) -> str:
    """json_tensor.cc JsonValueToString: a request value quoted in an error message (rapidjson's
    writer writes nothing for NaN and the infinities)."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, float):
        return str(decimal(value, float32=False))
    return json.dumps(value, indent=4, ensure_ascii=False)


def _type_name(value) -> str:
    """json_tensor.cc JsonTypeString."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


# rapidjson's GetParseError_En for what Python's parser reports.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Extra data": "The document root must not be followed by other values.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid control character at": "Invalid encoding in string.",
}


def _parse_error(text: str, e: json.JSONDecodeError) -> str:
    if e.msg == "Expecting ',' delimiter":
        depth = []
        in_string = escaped = False
        for ch in text[:e.pos]:
            if in_string:
                escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
            elif ch == '"':
                in_string = True
            elif ch in "[{":
                depth.append(ch)
            elif ch in "]}" and depth:
                depth.pop()
        if depth and depth[-1] == "[":
            return "Missing a comma or ']' after an array element."
        return "Missing a comma or '}' after an object member."
    return _PARSE_ERRORS.get(e.msg, e.msg)


class _NumberError(ValueError):
    """A JSON number or constant that rapidjson's default parse refuses (see parse_json)."""

    def __init__(self, token: str, message: str):
        super().__init__(message)
        self.token, self.message = token, message


def _float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _NumberError(token, "Number too big to be stored in double.")
    return value


def _int(token: str) -> int | float:
    # rapidjson keeps what fits in 64 bits as an integer and the rest as a double; Python's
    # int() of a long digit string is slow, and refused past 4,300 digits.
    digits = token.lstrip("-")
    if len(digits) <= 19 and -2**63 <= int(token) < 2**64:
        return int(token)
    return _float(token)


def _constant(token: str) -> float:
    # TF Serving parses with rapidjson's kParseNanAndInfFlag: NaN, Infinity and -Infinity are
    # numbers (api_rest.md, "JSON conformance"). rapidjson also takes "Inf"; Python's parser
    # does not, and that spelling is refused here.
    return float(token)


def parse_json(body: bytes) -> dict:
    """json_tensor.cc ParseJson: an object, or INVALID_ARGUMENT as TF Serving words it.
    TF Serving's rapidjson parse takes the tokens NaN, Infinity and -Infinity, and refuses a
    number beyond a double's range (1e999); arrays and objects nested past Python's recursion
    limit are refused too (rapidjson has no limit, and a request nested so deep is not a
    tensor)."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    text = body.decode("utf-8", "surrogateescape")  # rapidjson takes the bytes as they are
    try:
        doc = json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise _invalid("JSON Parse error: ", _parse_error(text, e), " at offset: ",
                       len(text[:e.pos].encode("utf-8", "surrogateescape"))) from None
    except _NumberError as e:
        at = max(text.find(e.token), 0)
        raise _invalid("JSON Parse error: ", e.message, " at offset: ",
                       len(text[:at].encode("utf-8", "surrogateescape"))) from None
    except RecursionError:
        raise _invalid("JSON Parse error: arrays and objects nested too deep") from None
    if not isinstance(doc, dict):
        raise _invalid("JSON Value: ", _value_text(doc), " Is not object")
    return doc


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _is_b64(value) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str))


def _b64decode(value) -> bytes:
    """json_tensor.cc JsonDecodeBase64Object."""
    if not _is_b64(value):
        raise _invalid("JSON Value: ", _value_text(value),
                       " not formatted correctly for base64 data")
    decoded = base64_unescape(value["b64"])
    if decoded is None:
        raise _invalid("Unable to base64 decode")
    return decoded


_B64_SPACE = re.compile(rb"[ \t\n\v\f\r]")  # absl::ascii_isspace
_B64_TEXT = re.compile(rb"([A-Za-z0-9+/]*)([=.]*)")


def base64_unescape(text: str) -> bytes | None:
    """absl::Base64Unescape (absl/strings/escaping.cc Base64UnescapeInternal), None where it
    fails: the standard alphabet; ASCII whitespace anywhere is skipped; the padding ('=', or
    '.') is optional, but if present it must be exactly what the length calls for ("QQ==" or
    "QQ", never "QQ="); one character too many ("QUJDR") is an error; the unused bits of the
    last character are ignored."""
    m = _B64_TEXT.fullmatch(_B64_SPACE.sub(b"", _bytes(text)))
    if m is None:
        return None
    data, padding = m.groups()
    expected = -len(data) % 4  # 0, 2 or 1 ('=' signs); 3: one character too many
    if expected == 3 or (padding and len(padding) != expected):
        return None
    return binascii.a2b_base64(data + b"=" * expected)


def _signature(doc: dict, request) -> None:
    """json_tensor.cc FillSignature."""
    if "signature_name" in doc:
        if not isinstance(doc["signature_name"], str):
            raise _invalid("JSON Value: ", _value_text(doc), " not formatted correctly. "
                           "'signature_name' key must be a string value.")
        request.model_spec.signature_name = doc["signature_name"]


# --- Predict: JSON -> TensorProto -> JSON -------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _add_value(value, dtype: int, tensor: tensor_pb2.TensorProto) -> None:
    """json_tensor.cc AddValueToTensor."""
    def type_error():
        return _invalid("JSON Value: ", _value_text(value), " Type: ", _type_name(value),
                        " is not of expected type: ", tensors.dtype_name(dtype))

    is_number = _is_int(value) or isinstance(value, float)
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise type_error()
        if dtype == types_pb2.DT_FLOAT and not _lossless_float(value):
            raise _invalid("Cannot convert JSON value: ", _value_text(value),
                           " to float without loss of precision.")
        (tensor.float_val if dtype == types_pb2.DT_FLOAT else tensor.double_val).append(value)
    elif dtype in _INT32:
        if not (_is_int(value) and -2**31 <= value < 2**31):
            raise type_error()
        tensor.int_val.append(value)
    elif dtype == types_pb2.DT_INT64:
        if not (_is_int(value) and -2**63 <= value < 2**63):
            raise type_error()
        tensor.int64_val.append(value)
    elif dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise type_error()
        tensor.string_val.append(_bytes(value))
    elif dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise type_error()
        tensor.bool_val.append(value)
    else:
        raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {_value_text(value)} "
                           f"to type: {tensors.dtype_name(dtype)}")


def _lossless_float(value) -> bool:
    """json_tensor.cc IsLosslessDecimal<float>."""
    if isinstance(value, float):
        return not math.isfinite(value) or -_FLOAT32_MAX <= value <= _FLOAT32_MAX
    return abs(value) <= _FLOAT32_MAX_INT


def _shape(value) -> list[int]:
    """json_tensor.cc GetDenseTensorShape: sizes along the first element of each level."""
    dims = []
    while isinstance(value, list):
        dims.append(len(value))
        if not value:
            break
        value = value[0]
    return dims


def _fill(value, level: int, dims: list[int], dtype: int, tensor) -> int:
    """json_tensor.cc FillTensorProto; returns the number of values added."""
    rank = len(dims)
    if not isinstance(value, list):
        if level != rank:
            raise _invalid("JSON Value: ", _value_text(value), " found at incorrect level: ",
                           level + 1, " in the JSON DOM. Expected at level: ", rank)
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _invalid("JSON Value: ", _value_text(value), " Type: Object is not of "
                               "expected type: ", tensors.dtype_name(dtype))
            tensor.string_val.append(_b64decode(value))
        else:
            _add_value(value, dtype, tensor)
        return 1
    if level >= rank:
        raise _invalid("Encountered list at unexpected level: ", level, " expected < ", rank)
    if len(value) != dims[level]:
        raise _invalid("Encountered list at unexpected size: ", len(value), " at level: ",
                       level, " expected size: ", dims[level])
    return sum(_fill(v, level + 1, dims, dtype, tensor) for v in value)


def _tensor(value, dtype: int) -> tuple[tensor_pb2.TensorProto, int]:
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    dims = _shape(value)
    for d in dims:
        tensor.tensor_shape.dim.add(size=d)
    return tensor, _fill(value, 0, dims, dtype, tensor)


def _shape_text(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _instances(items: list, infos: dict, request) -> None:
    """json_tensor.cc FillTensorMapFromInstancesList: rows batched along a new first axis."""
    def is_object(v):
        return isinstance(v, dict) and not _is_b64(v)

    if not isinstance(items[0], dict) and len(infos) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")
    objects = is_object(items[0])
    parts: dict[str, list[tensor_pb2.TensorProto]] = {}
    first: dict[str, tuple[int, list[int]]] = {}

    def add(item, name: str):
        if name not in infos:
            raise _invalid("JSON object: does not have named input: ", name)
        tensor, size = _tensor(item, infos[name].dtype)
        dims = [d.size for d in tensor.tensor_shape.dim]
        if name not in first:
            first[name] = (size, dims)
        elif first[name][0] != size:
            raise _invalid("Expecting tensor size: ", first[name][0], " but got: ", size)
        elif first[name][1] != dims:
            raise _invalid("Expecting shape ", _shape_text(first[name][1]), " but got: ",
                           _shape_text(dims))
        parts.setdefault(name, []).append(tensor)

    for i, item in enumerate(items):
        if objects:
            if not is_object(item):
                raise _invalid(f"Expecting object but got list at item {i} of input list")
            for name, v in item.items():
                try:
                    add(v, name)
                except ServingError as e:
                    raise _invalid(f"Failed to process element: {i} key: {name} of 'instances' "
                                   f"list. Error: {_status_text(e)}") from None
            if set(item) != set(infos):
                raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON "
                               f"object: {_value_text(item)} keys must be equal to: "
                               f"{','.join(sorted(infos))}")
        else:
            if is_object(item):
                raise _invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                add(item, next(iter(sorted(infos))))
            except ServingError as e:
                raise _invalid(f"Failed to process element: {i} of 'instances' list. Error: "
                               f"{_status_text(e)}") from None
    for name, pieces in parts.items():
        out = request.inputs[name]
        out.dtype = infos[name].dtype
        out.tensor_shape.dim.add(size=len(items))
        for d in first[name][1]:
            out.tensor_shape.dim.add(size=d)
        for p in pieces:
            out.MergeFrom(tensor_pb2.TensorProto(
                float_val=p.float_val, double_val=p.double_val, int_val=p.int_val,
                int64_val=p.int64_val, string_val=p.string_val, bool_val=p.bool_val))


def _status_text(e: ServingError) -> str:
    """tensorflow::Status::ToString, as TF Serving nests one error in another."""
    return f"{e.code.name}: {e.message}"


def _columns(value, infos: dict, request) -> None:
    """json_tensor.cc FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(infos) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        name = next(iter(infos))
        request.inputs[name].CopyFrom(_tensor(value, infos[name].dtype)[0])
        return
    for name in sorted(infos):
        if name not in value:
            raise _invalid("Missing named input: ", name, " in 'inputs' object.")
        request.inputs[name].CopyFrom(_tensor(value[name], infos[name].dtype)[0])


def predict_request(doc: dict, request: predict_pb2.PredictRequest, plane: DataPlane) -> str:
    """json_tensor.cc FillPredictRequestFromJson; returns the format ("row" or "columnar")."""
    _signature(doc, request)
    name = request.model_spec.signature_name
    sigs = plane.signature_defs(request.model_spec)
    sig = sigs.get(name or DEFAULT_SIGNATURE)
    if sig is None:  # http_rest_api_handler.cc GetInfoMap
        raise _invalid(f'Serving signature name: "{name or DEFAULT_SIGNATURE}" not found in '
                       "signature def")
    infos = dict(sig.inputs)
    if not infos:
        raise _invalid("Failed to get input map for signature: ", name or "DEFAULT")
    if "instances" in doc:
        if "inputs" in doc:
            raise _invalid("JSON Value: ", _value_text(doc), " Not formatted correctly "
                           "expecting only one of 'inputs' or 'instances' keys to exist ")
        if not isinstance(doc["instances"], list):
            raise _invalid("JSON Value: ", _value_text(doc),
                           " Excepting 'instances' to be an list/array")
        if not doc["instances"]:
            raise _invalid("JSON Value: ", _value_text(doc), " No values in 'instances' array")
        _instances(doc["instances"], infos, request)
        return "row"
    if "inputs" in doc:
        _columns(doc["inputs"], infos, request)
        return "columnar"
    raise _invalid("Missing 'inputs' or 'instances' key")


def _json_values(proto: tensor_pb2.TensorProto, name: str) -> list:
    """A response tensor's values, flat, as AddSingleValueAndAdvance writes them; DT_STRING
    outputs whose name ends in `_bytes` as {"b64": ...}, others as (UTF-8) strings."""
    array = tensors.from_proto(proto, name).ravel()
    if proto.dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):
            return [{"b64": base64.b64encode(v).decode()} for v in array]
        return [v.decode("utf-8", "replace") for v in array]
    if proto.dtype in (types_pb2.DT_FLOAT, types_pb2.DT_HALF):
        return [decimal(float(v)) for v in array]
    if proto.dtype == types_pb2.DT_DOUBLE:
        return [decimal(float(v), float32=False) for v in array]
    return array.tolist()


def _nest(flat: list, dims: list[int]):
    if not dims:
        return flat[0]
    if len(dims) == 1:
        return list(flat)
    step = len(flat) // dims[0] if dims[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def predict_json(outputs, fmt: str) -> str:
    """json_tensor.cc MakeJsonFromTensors: {"predictions": [...]} per row, or {"outputs": ...};
    one output is written bare, several as an object keyed by output name."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    values = {n: (_json_values(outputs[n], n), tensors.shape_of(outputs[n])) for n in names}
    if fmt == "columnar":
        cols = {n: _nest(flat, list(dims)) for n, (flat, dims) in values.items()}
        return dumps({"outputs": cols if len(names) > 1 else cols[names[0]]})
    batch = -1
    for n, (_, dims) in values.items():
        if not dims:
            raise _invalid("Tensor name: ", n, " has no shape information ")
        if batch >= 0 and dims[0] != batch:
            raise _invalid("Tensor name: ", n, " has inconsistent batch size: ", dims[0],
                           " expecting: ", batch)
        batch = dims[0]
    rows = []
    for i in range(batch):
        row = {}
        for n, (flat, dims) in values.items():
            step = len(flat) // batch if batch else 0
            row[n] = _nest(flat[i * step:(i + 1) * step], list(dims[1:]))
        rows.append(row if len(names) > 1 else row[names[0]])
    return dumps({"predictions": rows})


# --- Classify and Regress: the "examples" format -> tf.Example ----------------------------------
def _feature_kind_error(name: str, feature: feature_pb2.Feature) -> ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind"), "UNKNOWN")
    return _invalid("Unexpected element type in feature: ", name, " expecting type: ", kind)


def _add_feature_value(value, name: str, feature: feature_pb2.Feature) -> None:
    """json_tensor.cc AddValueToFeature: bools and ints -> int64_list, other numbers ->
    float_list, strings and {"b64"} -> bytes_list; one kind per feature."""
    def expect(kind: str):
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise _feature_kind_error(name, feature)
        return getattr(feature, kind)

    if value is None or isinstance(value, list) or (isinstance(value, dict)
                                                    and not _is_b64(value)):
        raise _invalid("Feature: ", name, " has element with unexpected JSON type: ",
                       _type_name(value))
    if isinstance(value, bool):
        expect("int64_list").value.append(1 if value else 0)
    elif isinstance(value, dict):
        expect("bytes_list").value.append(_b64decode(value))
    elif isinstance(value, str):
        expect("bytes_list").value.append(_bytes(value))
    elif isinstance(value, float) or value >= 2**64 or value < -2**63:
        values = expect("float_list")
        if not _lossless_float(float(value)):
            raise _invalid("Cannot convert JSON value: ", _value_text(value),
                           " to float without loss of precision.")
        values.value.append(float(value))
    else:
        values = expect("int64_list")
        if value >= 2**63:
            raise _invalid("Feature: ", name, " has uint64 element. Only int64 is supported.")
        values.value.append(value)


def _example(value, out: example_pb2.Example) -> None:
    """json_tensor.cc MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise _invalid("Example must be JSON object but got JSON ", _type_name(value))
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for v in content if isinstance(content, list) else [content]:
            _add_feature_value(v, name, feature)
        out.features.feature[name].CopyFrom(feature)


def classify_regress_request(doc: dict, request) -> None:
    """json_tensor.cc FillClassifyRegressRequestFromJson."""
    _signature(doc, request)
    has_context = "context" in doc
    if has_context:
        _example(doc["context"], request.input.example_list_with_context.context)
    if "examples" not in doc:
        raise _invalid("JSON Value: ", _value_text(doc), " When method is classify, key "
                       "'examples' is expected and was not found")
    if not isinstance(doc["examples"], list):
        raise _invalid("JSON Value: ", _value_text(doc),
                       " Expecting 'examples' value to be an list/array")
    if not doc["examples"]:
        raise _invalid("JSON Value: ", _value_text(doc), " 'examples' value is an empty array")
    target = (request.input.example_list_with_context if has_context
              else request.input.example_list).examples
    for v in doc["examples"]:
        _example(v, target.add())


def classification_json(result) -> str:
    """json_tensor.cc MakeJsonFromClassificationResult: per example, [label, score] per class."""
    if not result.classifications:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    return dumps({"results": [[[c.label, decimal(c.score)] for c in entry.classes]
                              for entry in result.classifications]})


def regression_json(result) -> str:
    """json_tensor.cc MakeJsonFromRegressionResult."""
    if not result.regressions:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    return dumps({"results": [decimal(r.value) for r in result.regressions]})


# --- Status and metadata -----------------------------------------------------------------------
def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> str:
    """http_rest_api_util.cc ToJsonString(GetModelStatusResponse): add_whitespace,
    always_print_primitive_fields; the protos' json_name keeps snake_case names."""
    return json_format.MessageToJson(response, including_default_value_fields=True, indent=1)


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
    """http_rest_api_util.cc ToJsonString(GetModelMetadataResponse): model_spec and the
    unpacked SignatureDefMap printed one by one (proto field names) and concatenated."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)

    def text(message) -> str:
        return json_format.MessageToJson(message, including_default_value_fields=True,
                                         preserving_proto_field_name=True, indent=1)

    return (f'{{\n"model_spec":{text(response.model_spec)},\n'
            f'"metadata": {{"signature_def": {text(sig_map)}}}\n}}\n')
