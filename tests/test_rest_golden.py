"""The REST API against TF Serving's own answers (tests/golden/tf_serving_rest.json): the
requests and expected answers of TF Serving's REST handler test and of its REST API guide,
sent to the built-in server serving a model equivalent to the one those answers were recorded
on (half_plus_two, version 123: y = 0.5 x + 2, built here with TensorFlow's own SavedModel
builder and signature utilities). Unlike tests/test_rest.py, which compares REST with gRPC
answers of the same data plane, nothing here was produced by our code.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "tf_serving_rest.json")
with open(GOLDEN, encoding="utf-8") as _fh:
    SPEC = json.load(_fh, parse_constant=str)  # NaN and Infinity compare as their tokens


def half_plus_two(export_dir: str) -> None:
    """The model of TF Serving's handler test: `serving_default` (Predict) x -> y = 0.5 x + 2
    on any shape; `regress_x_to_y` and `classify_x_to_y` on serialized tf.Examples with a
    float feature x (the classification has scores and no classes)."""
    v1 = tf.compat.v1
    sig = v1.saved_model.signature_def_utils
    with tf.Graph().as_default(), v1.Session() as sess:
        a, b = v1.Variable(0.5, name="a"), v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, name="x")
        y = tf.identity(a * x + b, name="y")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        y_example = tf.identity(a * parsed["x"] + b, name="y_example")
        info = v1.saved_model.utils.build_tensor_info
        signatures = {
            "serving_default": sig.predict_signature_def({"x": x}, {"y": y}),
            "regress_x_to_y": sig.regression_signature_def(serialized, y_example),
            "classify_x_to_y": sig.build_signature_def(
                {"inputs": info(serialized)}, {"scores": info(y_example)},
                "tensorflow/serving/classify"),
        }
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(export_dir)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
        builder.save()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from serving import server as server_lib

    base = tmp_path_factory.mktemp("golden") / SPEC["model"]["name"]
    half_plus_two(str(base / str(SPEC["model"]["version"])))
    running = server_lib.start(str(base), SPEC["model"]["name"], rest_port=0)
    yield running
    running.stop()


def _call(port: int, case: dict) -> tuple[int, bytes]:
    path = case["path"].replace("{m}", SPEC["model"]["name"])
    body = case.get("body")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=case["method"],
        data=body.encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("case", SPEC["cases"],
                         ids=[f"{c['method']} {c['path']} {c.get('body', '')}"[:80]
                              for c in SPEC["cases"]])
def test_the_answer_is_tf_servings(server, case):
    status, body = _call(server.rest_port, case)
    assert status == case["status"], (status, body)
    answer = json.loads(body, parse_constant=str)
    if "json" in case:
        assert answer == case["json"], answer
    if "contains" in case:
        assert case["contains"] in answer["error"], answer
    if status != 200:
        assert set(answer) == {"error"}, answer  # api_rest.md: {"error": <message>}
