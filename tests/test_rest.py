"""TF Serving's REST API (`headwise serve --rest-port`) against its gRPC API on one server, the
quick TensorFlow-free client, and how `headwise serve` runs the real binary.

Plain HTTP clients (urllib, http.client) talk to the built-in server serving the synthetic
four-task model; every REST answer is compared with the gRPC answer to the same question, every
error with the message and HTTP status TF Serving writes (tensorflow_serving/util/json_tensor.cc,
model_servers/http_rest_api_handler.cc, http_server.cc).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from cli import main as cli
from components import pusher
from headwise import contract
from headwise import examples as examples_lib
from serving import client as client_lib
from serving import json_tensor, rest_client
from serving import rest as rest_lib
from serving import rest_api as rest_api_lib
from serving import server as server_lib
from tests import synthetic

NAME = "syn"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One trained version, served over gRPC and REST (free loopback ports)."""
    tmp = tmp_path_factory.mktemp("rest")
    raw, tft_output, data = synthetic.transform(str(tmp / "transform"))
    export = str(tmp / "export")
    synthetic.train_and_export(tft_output, data, export, epochs=1)
    base = str(tmp / "serving" / NAME)
    version = pusher.push_model(export, base, source="run-1").version
    running = server_lib.start(base, port=0, poll_seconds=0.2, rest_port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    rows = [{k: (v[0] if v else None) for k, v in r.items()} for r in raw][:12]
    info = examples_lib.read_model_info(export)
    yield {"running": running, "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "status_stub": model_service_pb2_grpc.ModelServiceStub(channel), "rows": rows,
           "serialized": examples_lib.to_examples(rows, info["features"]), "info": info,
           "version": version, "url": f"http://127.0.0.1:{running.rest_port}", "tmp": tmp,
           "export": export}
    channel.close()
    running.stop()


def call(served, path: str, body=None, method: str | None = None) -> tuple[int, str]:
    """(HTTP status, body text); body: a JSON-able value, or bytes sent as they are."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(served["url"] + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ok(served, path: str, body=None) -> dict:
    status, text = call(served, path, body)
    assert status == 200, text
    return json.loads(text)


def error(served, path: str, body=None, method: str | None = None) -> tuple[int, str]:
    status, text = call(served, path, body, method)
    assert status != 200, text
    doc = json.loads(text)
    assert list(doc) == ["error"], text
    return status, doc["error"]


EXAMPLES = {"signature_name": contract.EXAMPLES_SIGNATURE}  # the tf.Example signature


def b64(serialized) -> list[dict]:
    return [{"b64": base64.b64encode(s).decode()} for s in serialized]


def spec(signature: str = "", version: int | None = None, name: str = NAME):
    s = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        s.version.value = version
    return s


def grpc_predict(served, serialized, signature: str = contract.EXAMPLES_SIGNATURE
                 ) -> dict[str, np.ndarray]:
    req = predict_pb2.PredictRequest(model_spec=spec(signature))
    req.inputs["inputs" if signature.startswith(("classify_", "regress_")) else "examples"] \
        .CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
    resp = served["stub"].Predict(req, timeout=10)
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def grpc_error(rpc, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        rpc(request, timeout=10)
    return e.value.code(), e.value.details()


# --- Predict -----------------------------------------------------------------------------------
def test_row_format_gives_one_object_per_example_with_every_head(served):
    expected = grpc_predict(served, served["serialized"])
    doc = ok(served, f"/v1/models/{NAME}:predict",
             {**EXAMPLES, "instances": b64(served["serialized"])})
    assert list(doc) == ["predictions"]
    assert len(doc["predictions"]) == len(served["serialized"])
    for head, values in expected.items():
        got = np.array([p[head] for p in doc["predictions"]], np.float32)
        np.testing.assert_array_equal(got, values)  # float32 written so that it reads back


def test_columnar_format_gives_one_object_keyed_by_output(served):
    expected = grpc_predict(served, served["serialized"])
    doc = ok(served, f"/v1/models/{NAME}/versions/{served['version']}:predict",
             {**EXAMPLES, "inputs": b64(served["serialized"])})
    assert list(doc) == ["outputs"] and set(doc["outputs"]) == set(expected)
    for head, values in expected.items():
        np.testing.assert_array_equal(np.array(doc["outputs"][head], np.float32), values)


def test_plain_json_features_answer_as_tf_examples_do_and_as_tensorflows_runner(served):
    """The issue's request: plain JSON features naming no signature reach serving_default and
    answer every head, as the same rows' tf.Examples do and as TensorFlow's own signature
    runner does for the same values."""
    rows = served["rows"]
    assert any(r["a"] is None for r in rows)  # a missing number goes as NaN
    plain = [{"a": math.nan if r["a"] is None else r["a"], "b": r["b"] or "", "c": r["c"]}
             for r in rows]
    body = json.dumps({"instances": plain}).encode()
    assert b"NaN" in body  # the token TF Serving's JSON parser takes
    doc = ok(served, f"/v1/models/{NAME}:predict", body)
    columnar = ok(served, f"/v1/models/{NAME}:predict", json.dumps(
        {"inputs": {k: [p[k] for p in plain] for k in ("a", "b", "c")}}).encode())
    by_example = grpc_predict(served, served["serialized"])
    loaded = tf.saved_model.load(served["export"])  # TensorFlow's own signature runner
    by_runner = loaded.signatures["serving_default"](
        a=tf.constant([p["a"] for p in plain], tf.float32), b=tf.constant([p["b"] for p in plain]),
        c=tf.constant([p["c"] for p in plain], tf.float32))
    assert set(doc["predictions"][0]) == set(by_example) == {"r", "k", "m", "g"}
    for head, values in by_example.items():
        got = np.array([p[head] for p in doc["predictions"]], np.float32)
        np.testing.assert_allclose(got, values, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got, by_runner[head].numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(np.array(columnar["outputs"][head], np.float32), got)


@pytest.mark.parametrize(("instance", "message"), [
    ({"a": None, "b": "x", "c": 0.5},
     "JSON Value: null Type: Null is not of expected type: float"),
    ({"a": 1.0, "b": "x"}, "keys must be equal to: a,b,c"),
    ({"a": 1.0, "b": 3, "c": 0.5}, "JSON Value: 3 Type: Number is not of expected type: string"),
])
def test_plain_json_features_refuse_what_tf_serving_refuses(served, instance, message):
    status, text = error(served, f"/v1/models/{NAME}:predict",
                         {"instances": [instance]})
    assert status == 400 and message in text, text


def test_one_output_is_written_bare_and_named_instances_are_accepted(served):
    serialized = served["serialized"][:4]
    expected = grpc_predict(served, serialized, "regress_r")["outputs"]
    named = [{"inputs": v} for v in b64(serialized)]
    rows = ok(served, f"/v1/models/{NAME}:predict",
              {"signature_name": "regress_r", "instances": named})
    np.testing.assert_array_equal(np.array(rows["predictions"], np.float32), expected)
    cols = ok(served, f"/v1/models/{NAME}:predict",
              {"signature_name": "regress_r", "inputs": {"inputs": b64(serialized)}})
    np.testing.assert_array_equal(np.array(cols["outputs"], np.float32), expected)


def test_string_outputs_are_text_and_bytes_outputs_base64(served):
    expected = grpc_predict(served, served["serialized"][:2], "classify_m")
    doc = ok(served, f"/v1/models/{NAME}:predict",
             {"signature_name": "classify_m", "instances": b64(served["serialized"][:2])})
    assert [p["classes"] for p in doc["predictions"]] == \
        [[c.decode() for c in row] for row in expected["classes"]]
    # json_tensor.cc IsNamedTensorBytes: a DT_STRING output named *_bytes is {"b64": ...}
    outputs = {"x_bytes": tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"\xff"]),
               "y": tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"t"])}
    for t in outputs.values():
        t.tensor_shape.dim.add(size=1)
    assert json.loads(json_tensor.predict_json(outputs, "row")) == \
        {"predictions": [{"x_bytes": {"b64": "/w=="}, "y": "t"}]}


def test_decimals_are_written_as_tf_serving_writes_them():
    # json_tensor.cc WriteDecimal; expected forms from json_tensor_test.cc
    assert json_tensor.decimal(0.2) == "0.2" and json_tensor.decimal(9000000.0) == "9e+06"
    assert json_tensor.decimal(1.0) == "1.0" and json_tensor.decimal(float("nan")) == "NaN"
    assert json_tensor.decimal(float("-inf")) == "-Infinity"
    third = float(np.float32(1 / 3))
    assert np.float32(float(json_tensor.decimal(third))) == np.float32(third)


# --- Classify and Regress ----------------------------------------------------------------------
def json_examples(rows, features) -> list[dict]:
    """Rows in the REST "examples" format: floats as JSON floats, strings as strings."""
    out = []
    for r in rows:
        ex = {}
        for name, dtype in features.items():
            v = r.get(name)
            if v is None:
                continue
            ex[name] = float(v) if dtype == "float32" else str(v)
        out.append(ex)
    return out


def test_classify_and_regress_answer_as_grpc_does(served):
    rows, features = served["rows"], served["info"]["features"]
    examples = [example_pb2.Example.FromString(s) for s in served["serialized"]]
    creq = classification_pb2.ClassificationRequest(model_spec=spec("classify_g"))
    creq.input.example_list.examples.extend(examples)
    expected = served["stub"].Classify(creq, timeout=10).result.classifications
    doc = ok(served, f"/v1/models/{NAME}:classify",
             {"signature_name": "classify_g", "examples": json_examples(rows, features)})
    assert [[(label, np.float32(score)) for label, score in e] for e in doc["results"]] == \
        [[(c.label, np.float32(c.score)) for c in e.classes] for e in expected]
    rreq = regression_pb2.RegressionRequest(model_spec=spec("regress_r"))
    rreq.input.example_list.examples.extend(examples)
    expected = served["stub"].Regress(rreq, timeout=10).result.regressions
    doc = ok(served, f"/v1/models/{NAME}:regress",
             {"signature_name": "regress_r", "examples": json_examples(rows, features)})
    assert [np.float32(v) for v in doc["results"]] == [np.float32(r.value) for r in expected]


def test_context_and_base64_features_build_the_same_examples(served):
    rows = served["rows"][:3]
    plain = json_examples(rows, served["info"]["features"])
    for ex in plain:
        ex["b"] = "y"
    without_b = [{k: v for k, v in ex.items() if k != "b"} for ex in plain]
    with_context = ok(served, f"/v1/models/{NAME}:classify",
                      {"signature_name": "classify_k", "context": {"b": {"b64": "eQ=="}},
                       "examples": without_b})
    inline = ok(served, f"/v1/models/{NAME}:classify",
                {"signature_name": "classify_k", "examples": plain})
    assert with_context == inline


# --- Status and metadata -----------------------------------------------------------------------
def test_status_is_get_model_status_as_json(served):
    v = served["version"]
    expected = {"model_version_status": [{"version": str(v), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert ok(served, f"/v1/models/{NAME}") == expected
    assert ok(served, f"/v1/models/{NAME}/versions/{v}") == expected
    req = get_model_status_pb2.GetModelStatusRequest(model_spec=spec(version=v + 7))
    code, message = grpc_error(served["status_stub"].GetModelStatus, req)
    assert error(served, f"/v1/models/{NAME}/versions/{v + 7}") == (404, message)
    assert code == grpc.StatusCode.NOT_FOUND


def test_metadata_lists_the_signatures_grpc_lists(served):
    doc = ok(served, f"/v1/models/{NAME}/metadata")
    assert doc["model_spec"] == {"name": NAME, "signature_name": "",
                                 "version": str(served["version"])}
    req = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec(),
                                                         metadata_field=["signature_def"])
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    served["stub"].GetModelMetadata(req, timeout=10).metadata["signature_def"].Unpack(sig_map)
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == set(sig_map.signature_def)
    assert sigs["classify_k"]["method_name"] == "tensorflow/serving/classify"
    assert sigs["examples"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert {k: v["dtype"] for k, v in sigs["serving_default"]["inputs"].items()} == {
        "a": "DT_FLOAT", "b": "DT_STRING", "c": "DT_FLOAT"}


# --- Errors ------------------------------------------------------------------------------------
PREDICT = f"/v1/models/{NAME}:predict"


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    (PREDICT, b"", 400, "JSON Parse error: The document is empty"),
    (PREDICT, b"{", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
    (PREDICT, b"[1]", 400, "JSON Value: [\n    1\n] Is not object"),
    (PREDICT, {**EXAMPLES, "instances": [{"b64": "%%%"}]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Unable to "
     "base64 decode"),
    (PREDICT, {**EXAMPLES, "inputs": [{"b64": "%%%"}]}, 400, "Unable to base64 decode"),
    (PREDICT, {**EXAMPLES, "instances": [1]}, 400, "Failed to process element: 0 of "
     "'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1 Type: Number is not of expected "
     "type: string"),
    # plain features are serving_default's: a base64 tf.Example where they are expected is
    # refused as TF Serving refuses it, as a value for one of its inputs (TF Serving takes the
    # first of its map, whose order is its own: the message may name another input)
    (PREDICT, {"instances": [{"b64": "eQ=="}]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: {\n"
     "    \"b64\": \"eQ==\"\n} Type: Object is not of expected type: float"),
    (PREDICT, {"signature_name": "nope", "instances": ["x"]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    (PREDICT, {"signature_name": "model_info", "inputs": {}}, 400,
     "Failed to get input map for signature: model_info"),
    (PREDICT, {"instance": []}, 400, "Missing 'inputs' or 'instances' key"),
    (f"/v1/models/{NAME}:classify", {"signature_name": "classify_k"}, 400,
     "JSON Value: {\n    \"signature_name\": \"classify_k\"\n} When method is classify, key "
     "'examples' is expected and was not found"),
    (f"/v1/models/{NAME}:classify", {"signature_name": "classify_k", "examples": [{"a": [1, "x"]}]},
     400, "Unexpected element type in feature: a expecting type: int64"),
    (f"/v1/models/{NAME}:classify", {"examples": [{"b": "x"}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. Was: "
     "tensorflow/serving/predict"),
    (f"/v1/models/{NAME}/labels/stable:predict", {"instances": ["x"]}, 400,
     "Unrecognized servable version label: stable"),
    ("/v1/models/nope:predict", {"instances": ["x"]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("/v1/models", None, 400, "Missing model name in request."),
    ("/v1/models/x/versions/1:explain", {}, 400,
     "Malformed request: POST /v1/models/x/versions/1:explain"),
])
def test_bad_requests_get_tf_servings_status_and_message(served, path, body, status, message):
    if path == "/v1/models/nope:predict":  # the gRPC message for the same request
        req = predict_pb2.PredictRequest(model_spec=spec(name="nope"))
        message = grpc_error(served["stub"].Predict, req)[1]
    assert error(served, path, body) == (status, message)


def test_corrupt_example_bytes_get_grpcs_invalid_argument(served):
    junk = [b"\xff\x00not an example"]
    req = predict_pb2.PredictRequest(model_spec=spec(contract.EXAMPLES_SIGNATURE))
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(junk, dtype=tf.string))
    code, message = grpc_error(served["stub"].Predict, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error(served, PREDICT, {**EXAMPLES, "instances": b64(junk)}) == (400, message)


def test_other_methods_and_paths_and_the_server_keeps_serving(served):
    assert error(served, f"/v1/models/{NAME}", b"{}", method="PUT") == \
        (400, f"Malformed request: PUT /v1/models/{NAME}")
    conn = http.client.HTTPConnection("127.0.0.1", served["running"].rest_port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 404 and b"Not Found" in resp.read()
    conn.request("POST", PREDICT, body=b'{"instances": [', headers={"Content-Length": "15"})
    resp = conn.getresponse()
    assert resp.status == 400 and "JSON Parse error" in json.loads(resp.read())["error"]
    conn.close()
    assert ok(served, f"/v1/models/{NAME}")["model_version_status"][0]["state"] == "AVAILABLE"
    assert len(ok(served, PREDICT, {**EXAMPLES, "instances": b64(served["serialized"][:1])})
               ["predictions"]) == 1


# --- The quick client --------------------------------------------------------------------------
def _tensorflow_examples(rows, features, images, base_dir):
    """The same rows through TensorFlow's own protos (an independent encoder, for the test)."""
    from tensorflow.core.example import example_pb2

    out = []
    for i, row in enumerate(rows, start=1):
        ex = example_pb2.Example()
        for name, dtype in features.items():
            v = examples_lib.typed_value(name, dtype, row.get(name), i, image=name in images,
                                         base_dir=base_dir)
            if v is not None:
                f = ex.features.feature[name]
                (f.int64_list if dtype == "int64" else f.float_list if dtype == "float32"
                 else f.bytes_list).value.append(v)
        out.append(ex.SerializeToString(deterministic=True))
    return out


def test_hand_written_examples_are_the_ones_tensorflow_writes(served, tmp_path):
    features = {"i": "int64", "f": "float32", "s": "string", "p": "string",
                **served["info"]["features"]}
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    rows = [{**r, "i": n, "f": x, "s": s, "p": p} for r, n, x, s, p in zip(
        served["rows"], [3, "-7", "2.0", -2**62, None, ""] * 2,
        [0.1, "1e-3", math.nan, -3.5, "", None] * 2,
        ["é", "", "x y", 5, None, b"\xff\xfe\x00 not UTF-8"] * 2,
        ["a.png", str(tmp_path / "a.png"), b"\x80raw", None, "", b""] * 2, strict=True)]
    args = (features, {"p": {"size": [8, 8], "channels": 3}}, str(tmp_path))
    ours, theirs = examples_lib.to_examples(rows, *args), _tensorflow_examples(rows, *args)
    assert ours == theirs  # byte for byte: protobuf's deterministic serialization
    sent = [tf.train.Example.FromString(a).features.feature for a in ours[:6]]
    assert sent[5]["s"].bytes_list.value == [b"\xff\xfe\x00 not UTF-8"]  # bytes as they are
    assert [list(f["p"].bytes_list.value) for f in sent] == \
        [[b"\x89PNG\r\n\x1a\n\x00\xff"]] * 2 + [[b"\x80raw"], [], [], [b""]]
    assert list(sent[3]["i"].int64_list.value) == [-2**62]
    with pytest.raises(ValueError, match="row 1, column 'i': expected int64"):
        examples_lib.to_examples([{"i": "1.5"}], {"i": "int64"})
    with pytest.raises(ValueError, match=f"row 7, column 'p': cannot read the image file "
                       f"'{tmp_path}/b.png' \\(No such file or directory\\)"):
        examples_lib.to_examples([{"p": "b.png"}], features, *args[1:], first_row=7)


def test_base64_is_decoded_as_abseil_decodes_it():
    # absl::Base64Unescape (json_tensor.cc JsonDecodeBase64Object): padding optional but exact
    # when present, '.' pads too, ASCII whitespace anywhere is skipped.
    for text, expected in [("QUJD", b"ABC"), ("QUI", b"AB"), ("QUI=", b"AB"), ("QQ", b"A"),
                           ("QQ==", b"A"), ("QQ..", b"A"), ("Q Q\n=\t=", b"A"), ("", b""),
                           ("QR==", b"A"), ("/+8=", b"\xff\xef")]:
        assert json_tensor.base64_unescape(text) == expected, text
    for text in ["QQ=", "QUI==", "QUJD=", "QUJDR", "Q===", "QQ==QQ==", "Q=Q=", "-_8=", "QQ\x00",
                 "éAAA"]:
        assert json_tensor.base64_unescape(text) is None, text
    request = classification_pb2.ClassificationRequest()
    json_tensor.classify_regress_request({"examples": [{"p": {"b64": "/+8"}}]}, request)
    assert request.input.example_list.examples[0].features.feature["p"].bytes_list.value == \
        [b"\xff\xef"]
    with pytest.raises(json_tensor.ServingError, match="^Unable to base64 decode$"):
        json_tensor.classify_regress_request({"examples": [{"p": {"b64": "QQ="}}]}, request)


def test_the_quick_client_answers_as_the_grpc_client(served):
    running = served["running"]
    with client_lib.HeadwiseClient("127.0.0.1", running.port, NAME) as grpc_client:
        expected = list(grpc_client.predict_rows(served["rows"], batch_size=5))
    with rest_client.RestClient("127.0.0.1", running.rest_port, running.port, NAME) as quick:
        assert list(quick.predict_rows(served["rows"], batch_size=5)) == expected


def test_predict_over_rest_loads_no_tensorflow_and_prints_the_grpc_table(served, capsys):
    running, csv_path = served["running"], served["tmp"] / "rows.csv"
    columns = ["a", "b", "c"]
    lines = [",".join(columns)] + [",".join("" if r[c] is None else str(r[c]) for c in columns)
                                   for r in served["rows"][:5]]
    csv_path.write_text("\n".join(lines) + "\n")
    args = ["predict", "--csv", str(csv_path), "--model-name", NAME, "--port", str(running.port)]
    assert cli.main(args) == 0
    grpc_table = capsys.readouterr().out
    script = ("import sys, time; t = time.monotonic(); from cli import main as cli; "
              f"rc = cli.main({args + ['--rest-port', str(running.rest_port)]!r}); "
              "print('WALL', time.monotonic() - t, 'TF', 'tensorflow' in sys.modules, "
              "'TFS', 'tensorflow_serving' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table, _, footer = done.stdout.rpartition("WALL")
    assert footer.split()[2:] == ["False", "TFS", "False"], footer
    assert table == grpc_table
    # Its wall time is measured in benchmarks/serving.py (quick_client_5_rows_fresh_process),
    # never asserted here.


def test_the_quick_client_says_when_no_server_answers(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")
    done = subprocess.run([sys.executable, "-m", "cli", "predict", "--csv", str(rows),
                           "--port", "9", "--rest-port", "9", "--timeout", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "headwise: error: no answer from a model server at 127.0.0.1:9" in done.stderr


# --- Wiring: start() and `headwise serve` with the real binary -----------------------------------
def test_rest_stops_with_the_server(served, tmp_path):
    running = server_lib.start(str(tmp_path), port=0, rest_port=0)
    port = running.rest_port
    assert port and port != running.port
    status, _ = rest_call(port, "/v1/models/x")
    assert status == 404  # no version yet: TF Serving's NOT_FOUND
    running.stop()
    with pytest.raises(OSError):
        rest_call(port, "/v1/models/x")


def rest_call(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def fake_binary(tmp_path, monkeypatch):
    """A `tensorflow_model_server` on PATH that records its argv and exits 0."""
    bin_dir, record = tmp_path / "bin", tmp_path / "argv.json"
    bin_dir.mkdir()
    script = bin_dir / "tensorflow_model_server"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model_dir = tmp_path / "models" / "taxi"
    model_dir.mkdir(parents=True)
    return record, str(model_dir)


def argv_of(record) -> list[str] | None:
    return json.loads(record.read_text()) if record.exists() else None


@pytest.mark.parametrize("host", [None, "127.0.0.1", "10.1.2.3"])
def test_the_binary_is_refused_where_it_would_bind_more_than_asked(fake_binary, host, caplog):
    record, model_dir = fake_binary
    args = ["serve", "--model-dir", model_dir] + (["--host", host] if host else [])
    assert cli.main(args) == 2
    assert argv_of(record) is None
    text = caplog.text
    assert "binds every interface" in text and "no flag for the address" in text
    assert "--host 0.0.0.0" in text and "--builtin" in text
    assert (f"--host {host}" if host else "default --host 127.0.0.1") in text


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_the_binary_runs_for_every_interface_with_the_rest_port(fake_binary, host):
    record, model_dir = fake_binary
    assert cli.main(["serve", "--model-dir", model_dir, "--host", host, "--port", "8600",
                     "--rest-port", "8601"]) == 0
    assert argv_of(record) == ["--port=8600", "--model_name=taxi",
                               f"--model_base_path={model_dir}",
                               "--file_system_poll_wait_seconds=1", "--rest_api_port=8601"]
    record.unlink()
    assert cli.main(["serve", "--model-dir", model_dir, "--host", host]) == 0
    assert not any(a.startswith("--rest_api_port") for a in argv_of(record))


# --- Hostile clients ---------------------------------------------------------------------------
# A second REST server over the same DataPlane with small limits, so that each case takes about
# a second: TIMEOUT_S for a whole request, MAX_CONNECTIONS at once. Every case ends with the
# server answering a healthy request.
TIMEOUT_S, MAX_CONNECTIONS = 1.0, 6


class _CountingApi(rest_api_lib.RestApi):
    """The REST dispatch, counting the requests it was handed (a refused or cut-off request
    must never reach it)."""

    def __init__(self, plane):
        super().__init__(plane)
        self.handled = 0

    def handle(self, method, path, body):
        self.handled += 1
        return super().handle(method, path, body)


@pytest.fixture(scope="module")
def strict(served):
    api = _CountingApi(served["running"].rest.api.plane)
    server = rest_lib.RestServer("127.0.0.1", 0, api, max_connections=MAX_CONNECTIONS,
                                 timeout_s=TIMEOUT_S, max_body_bytes=1 << 20)
    server.start()
    yield server
    server.stop()


def _healthy(server) -> None:
    status, body = rest_call(server.port, f"/v1/models/{NAME}")
    assert status == 200, body


def _raw(server, data: bytes, *, read: bool = True, wait: float = 5.0) -> bytes:
    """Send bytes on a new connection; everything the server sends until it closes (or `wait`
    seconds pass)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<still open>"
        return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _post(length: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"{extra}\r\n").encode() + body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (_post("abc", b"{}"), 400),
    (_post("-5", b'GET /v1/models/syn HTTP/1.1\r\n\r\n'), 400),  # no second request is read
    (_post("2, 3", b"{}"), 400),
    (_post("2", b"{}", "Content-Length: 3\r\n"), 400),
    (_post("100000000000"), 413),
    (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 411),
    (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "2\r\n{}\r\n0\r\n\r\n".encode(), 501),
])
def test_bad_lengths_are_refused_and_the_connection_closed(strict, request_bytes, status):
    handled = strict.api.handled
    answer = _raw(strict, request_bytes)
    assert _status(answer) == status, answer
    assert answer.count(b"HTTP/1.1 ") == 1 and not answer.endswith(b"<still open>"), answer
    doc = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert list(doc) == ["error"], doc
    assert strict.api.handled == handled  # never dispatched
    _healthy(strict)


def test_a_body_cut_short_by_a_client_that_hung_up_is_never_processed(strict):
    handled = strict.api.handled
    body = json.dumps({"instances": ["x"] * 50}).encode()
    _raw(strict, _post(str(len(body)), body[:len(body) // 2]), read=False)  # then hangs up
    time.sleep(0.3)
    assert strict.api.handled == handled
    _healthy(strict)


def test_a_slow_client_is_cut_off_however_slowly_it_sends(strict):
    """Headers and one byte of a 1,000-byte body; then a client that sends a header byte every
    0.2 s (each read is quick: only the whole request's deadline stops it)."""
    started = time.monotonic()
    answer = _raw(strict, _post("1000", b"{"))
    assert _status(answer) == 408 and time.monotonic() - started < TIMEOUT_S + 2, answer
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /v1/models/syn HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > TIMEOUT_S + 3:
                break
        if not closed:
            sock.settimeout(2)
            try:
                closed = sock.recv(100) == b""
            except ConnectionResetError:
                closed = True
    assert closed and time.monotonic() - started < TIMEOUT_S + 3
    _healthy(strict)


def test_a_flood_of_slow_connections_holds_a_bounded_number_of_threads(served):
    """Four times the connection limit, each stuck in its headers: MAX_CONNECTIONS are held
    (the rest get 503 at once), every one is released after the timeout (5 s here, so that
    opening them all on a loaded machine fits in it), and the server answers after."""
    api = served["running"].rest.api
    server = rest_lib.RestServer("127.0.0.1", 0, api, max_connections=MAX_CONNECTIONS,
                                 timeout_s=5.0)
    server.start()
    threads = threading.active_count()
    sockets, refused = [], 0
    try:
        for _ in range(4 * MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /v1/models/syn HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        time.sleep(0.3)
        assert threading.active_count() <= threads + MAX_CONNECTIONS
        for sock in sockets:
            sock.settimeout(server.timeout_s + 2)
            try:
                answer = sock.recv(1000)
            except (TimeoutError, ConnectionResetError):
                answer = b""
            refused += _status(answer) == 503
        assert refused >= 2 * MAX_CONNECTIONS, refused
        time.sleep(0.5)
        assert threading.active_count() <= threads
        _healthy(server)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": ' + b"[" * 100_000, "JSON Parse error: arrays and objects nested too deep"),
    (b'{"instances": ' + b"[" * 900 + b'"x"' + b"]" * 900 + b"}", None),
    (b'{"instances": [' + b"7" * 5000 + b"]}",
     "JSON Parse error: Number too big to be stored in double. at offset: 15"),
    (b'{"instances": [1e999]}',
     "JSON Parse error: Number too big to be stored in double. at offset: 15"),
    # TF Serving parses NaN and Infinity as numbers (kParseNanAndInfFlag), which a string input
    # refuses; rapidjson's writer quotes them as nothing.
    (b'{"instances": [NaN], "signature_name": "examples"}',
     "Failed to process element: 0 of 'instances' list. Error: "
     "INVALID_ARGUMENT: JSON Value:  Type: Number is not of expected type: string"),
    (b'{"instances": [-Infinity], "signature_name": "examples"}',
     "Failed to process element: 0 of 'instances' list. Error: "
     "INVALID_ARGUMENT: JSON Value:  Type: Number is not of expected type: string"),
])
def test_hostile_json_gets_400_in_tf_servings_shape(served, body, message):
    status, text = error(served, PREDICT, body)
    assert status == 400, text
    if message is not None:
        assert text == message
    for internal in ("Error:", "Traceback", "RecursionError", "ValueError", "limit (4300)"):
        assert internal not in text or text.startswith("Failed to process element"), text
    assert ok(served, PREDICT, {**EXAMPLES, "instances": b64(served["serialized"][:1])}
              )["predictions"]
