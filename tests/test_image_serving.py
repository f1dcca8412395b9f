"""Image features through the serving stack: encoded image bytes in a tf.Example, decoded inside
the served graph, over gRPC and REST, from `headwise predict --images DIR` and from a CSV whose
column holds image paths.

The model is built here, small and exact: tf.function signatures that parse serialized
tf.Examples, decode `photo` with tf.io.decode_image and resize it to 4 x 4, and answer from the
mean pixel m (and an optional float feature x, missing: 0): head `bright` (regression) is m + x,
head `light` (binary, classes no/yes) is m / 255. Its saved_model.pb is rewritten by the
trainer's own `finalize_signatures` (TF Serving's method names, one shared input placeholder), so
MultiInference works as on an exported headwise model. A uniform image keeps its colour through
resizing, so every expected value is the mean of the colour the test painted.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from cli import main as cli
from headwise import examples as examples_lib
from serving import predictions as predictions_lib
from serving import server as server_lib

NAME = "img"
SIZE = 4  # the model's image size (height = width)
# The layout of a model exported before serving_default took plain features: serving_default on
# tf.Examples and no plain signature, which the clients still serve (rest_client falls back to
# base64 examples).
INFO = {
    "pipeline": NAME, "signature": "serving_default", "input": "examples",
    "features": {"photo": "string", "x": "float32"},
    "images": {"photo": {"size": [SIZE, SIZE], "channels": 3}},
    "heads": [
        {"name": "bright", "task": "regression", "auxiliary": False,
         "signature": "regress_bright"},
        {"name": "light", "task": "binary", "auxiliary": False, "signature": "classify_light",
         "classes": ["no", "yes"]},
    ],
}
# tf.io.decode_image's words (tensorflow/core/kernels/image/decode_image_op.cc)
NOT_AN_IMAGE = "Unknown image file format. One of JPEG, PNG, GIF, BMP required."
CORRUPT = b"\xff\xfe this is no image"


def export_image_model(export_dir: str) -> None:
    from trainer import export as export_lib

    spec = {"photo": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def forward(self, serialized):
            raw = tf.io.parse_example(serialized, spec)

            def mean_pixel(data):
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
                return tf.reduce_mean(tf.image.resize(tf.cast(image, tf.float32), [SIZE, SIZE]))

            m = tf.map_fn(mean_pixel, raw["photo"], fn_output_signature=tf.float32)
            return {"bright": tf.reshape(m + raw["x"], [-1, 1]),
                    "light": tf.reshape(m / 255.0, [-1, 1])}

    model = Model()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        return model.forward(examples)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        return {"outputs": tf.reshape(model.forward(inputs)["bright"], [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        p = model.forward(inputs)["light"]
        return {"classes": tf.tile(tf.constant([["no", "yes"]]), [tf.shape(p)[0], 1]),
                "scores": tf.concat([1.0 - p, p], axis=1)}

    info_json = json.dumps(INFO, sort_keys=True)

    @tf.function(input_signature=[])
    def describe():
        return {"json": tf.constant(info_json)}

    tf.saved_model.save(model, export_dir, signatures={
        "serving_default": serve, "regress_bright": regress, "classify_light": classify,
        "model_info": describe})
    export_lib.finalize_signatures(export_dir)
    info_path = os.path.join(export_dir, examples_lib.MODEL_INFO)
    os.makedirs(os.path.dirname(info_path))
    with open(info_path, "w", encoding="utf-8") as fh:
        json.dump(INFO, fh, indent=2)


def png(color, height: int = 3, width: int = 5) -> bytes:
    """A uniform RGB PNG (not the model's size: the graph resizes it)."""
    return tf.io.encode_png(np.full((height, width, 3), color, np.uint8)).numpy()


def bmp(color, height: int = 2, width: int = 3) -> bytes:
    """A uniform 24-bit BMP (BITMAPINFOHEADER, bottom-up rows of BGR padded to 4 bytes)."""
    row = bytes(reversed(color)) * width
    row += b"\0" * (-len(row) % 4)
    pixels = row * height
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835,
                         0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(header) + len(pixels), 0, 0,
                               14 + len(header)) + header + pixels


def example(photo: bytes | None = None, x: float | None = None) -> bytes:
    return examples_lib.to_examples([{"photo": photo, "x": x}], INFO["features"],
                                    INFO["images"])[0]


DARK, LIGHT = (10, 20, 60), (200, 220, 240)  # mean pixels 30 and 220


def mean(color) -> float:
    return sum(color) / 3


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The built-in server (gRPC and REST on free loopback ports) serving the image model."""
    tmp = tmp_path_factory.mktemp("images")
    base = tmp / "serving" / NAME
    export_image_model(str(base / "1"))
    running = server_lib.start(str(base), port=0, poll_seconds=0.2, rest_port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield {"running": running, "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "url": f"http://127.0.0.1:{running.rest_port}/v1/models/{NAME}", "tmp": tmp}
    channel.close()
    running.stop()


def spec(signature: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=NAME, signature_name=signature)


def predict_request(serialized: list[bytes]) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest(model_spec=spec())
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
    return req


def with_input(request, serialized: list[bytes]):
    request.input.example_list.examples.extend(tf.train.Example.FromString(s)
                                               for s in serialized)
    return request


def multi_inference_request(serialized: list[bytes]) -> inference_pb2.MultiInferenceRequest:
    req = inference_pb2.MultiInferenceRequest()
    req.tasks.add(model_spec=spec("regress_bright"), method_name="tensorflow/serving/regress")
    req.tasks.add(model_spec=spec("classify_light"), method_name="tensorflow/serving/classify")
    return with_input(req, serialized)


def grpc_requests(served, serialized: list[bytes]) -> dict:
    """One request per RPC that reads examples: name -> (rpc, request)."""
    stub = served["stub"]
    return {
        "Predict": (stub.Predict, predict_request(serialized)),
        "Classify": (stub.Classify, with_input(
            classification_pb2.ClassificationRequest(model_spec=spec("classify_light")),
            serialized)),
        "Regress": (stub.Regress, with_input(
            regression_pb2.RegressionRequest(model_spec=spec("regress_bright")), serialized)),
        "MultiInference": (stub.MultiInference, multi_inference_request(serialized)),
    }


def rest(served, verb: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{served['url']}:{verb}", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


# --- gRPC: every RPC that reads examples ---------------------------------------------------------
def test_png_bytes_answer_predict_classify_regress_and_multi_inference(served):
    colors = [DARK, LIGHT]
    serialized = [example(png(DARK)), example(png(LIGHT), x=0.5)]
    means = np.array([mean(c) for c in colors], np.float32)
    bright, light = means + np.float32([0.0, 0.5]), means / np.float32(255)
    calls = grpc_requests(served, serialized)

    rpc, req = calls["Predict"]
    outputs = rpc(req, timeout=10).outputs
    np.testing.assert_allclose(tf.make_ndarray(outputs["bright"])[:, 0], bright, rtol=1e-6)
    np.testing.assert_allclose(tf.make_ndarray(outputs["light"])[:, 0], light, rtol=1e-6)

    rpc, req = calls["Classify"]
    got = [[(c.label, c.score) for c in e.classes]
           for e in rpc(req, timeout=10).result.classifications]
    assert [[label for label, _ in e] for e in got] == [["no", "yes"]] * 2
    np.testing.assert_allclose([[s for _, s in e] for e in got],
                               np.stack([1 - light, light], axis=1), rtol=1e-6)

    rpc, req = calls["Regress"]
    np.testing.assert_allclose([r.value for r in rpc(req, timeout=10).result.regressions],
                               bright, rtol=1e-6)

    rpc, req = calls["MultiInference"]
    regressed, classified = rpc(req, timeout=10).results
    np.testing.assert_allclose([r.value for r in regressed.regression_result.regressions],
                               bright, rtol=1e-6)
    np.testing.assert_allclose(
        [e.classes[1].score for e in classified.classification_result.classifications],
        light, rtol=1e-6)


def test_bmp_bytes_are_decoded_too(served):
    rpc, req = grpc_requests(served, [example(bmp(LIGHT))])["Regress"]
    assert rpc(req, timeout=10).result.regressions[0].value == pytest.approx(mean(LIGHT))


@pytest.mark.parametrize("rpc_name", ["Predict", "Classify", "Regress", "MultiInference"])
def test_corrupt_image_bytes_are_invalid_argument_and_the_server_keeps_serving(served, rpc_name):
    rpc, bad = grpc_requests(served, [example(png(DARK)), example(CORRUPT)])[rpc_name]
    with pytest.raises(grpc.RpcError) as e:
        rpc(bad, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(NOT_AN_IMAGE), e.value.details()
    rpc, good = grpc_requests(served, [example(png(LIGHT))])[rpc_name]
    assert rpc(good, timeout=10).ByteSize() > 0


# --- REST: the same, as TF Serving's JSON -------------------------------------------------------
def test_rest_takes_image_bytes_as_b64_in_instances_and_examples(served):
    status, doc = rest(served, "predict", {"instances": [b64(example(png(DARK))),
                                                         b64(example(png(LIGHT), x=2.0))]})
    assert status == 200, doc
    assert [p["bright"][0] for p in doc["predictions"]] == \
        pytest.approx([mean(DARK), mean(LIGHT) + 2.0])
    examples = [{"photo": b64(png(DARK))}, {"photo": b64(png(LIGHT)), "x": 2.0}]
    status, doc = rest(served, "regress", {"signature_name": "regress_bright",
                                           "examples": examples})
    assert status == 200, doc
    assert doc["results"] == pytest.approx([mean(DARK), mean(LIGHT) + 2.0])
    status, doc = rest(served, "classify", {"signature_name": "classify_light",
                                            "examples": examples})
    assert status == 200, doc
    assert [[label for label, _ in e] for e in doc["results"]] == [["no", "yes"]] * 2
    assert [e[1][1] for e in doc["results"]] == \
        pytest.approx([mean(DARK) / 255, mean(LIGHT) / 255])


@pytest.mark.parametrize(("verb", "body", "rpc_name"), [
    ("predict", {"instances": [b64(example(CORRUPT))]}, "Predict"),
    ("classify", {"signature_name": "classify_light", "examples": [{"photo": b64(CORRUPT)}]},
     "Classify"),
    ("regress", {"signature_name": "regress_bright", "examples": [{"photo": b64(CORRUPT)}]},
     "Regress"),
])
def test_rest_answers_corrupt_image_bytes_with_400_and_grpcs_message(served, verb, body,
                                                                     rpc_name):
    rpc, req = grpc_requests(served, [example(CORRUPT)])[rpc_name]
    with pytest.raises(grpc.RpcError) as e:
        rpc(req, timeout=10)
    status, doc = rest(served, verb, body)
    assert (status, doc) == (400, {"error": e.value.details()})
    assert doc["error"].startswith(NOT_AN_IMAGE)
    status, doc = rest(served, "regress", {"signature_name": "regress_bright",
                                           "examples": [{"photo": b64(png(LIGHT))}]})
    assert (status, doc["results"]) == (200, pytest.approx([mean(LIGHT)]))


# --- headwise predict: --images DIR and a CSV of paths ------------------------------------------
@pytest.fixture(scope="module")
def image_dir(served):
    """Files of every kind --images reads (any case), and some it must skip."""
    folder = served["tmp"] / "photos"
    folder.mkdir()
    colors = {"b_light.PNG": LIGHT, "a_dark.png": DARK, "c.bmp": (90, 90, 90)}
    for name, color in colors.items():
        (folder / name).write_bytes(bmp(color) if name.endswith(".bmp") else png(color))
    (folder / "d.JPG").write_bytes(tf.io.encode_jpeg(
        np.full((8, 8, 3), 160, np.uint8), quality=100).numpy())
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "sub.png").mkdir()  # a folder, not a file
    return folder, {**colors, "d.JPG": (160, 160, 160)}


def predict_cli(served, capsys, *args: str, rest_api: bool = False) -> tuple[int, str, str]:
    running = served["running"]
    argv = ["predict", *args, "--model-name", NAME, "--port", str(running.port)]
    if rest_api:
        argv += ["--rest-port", str(running.rest_port)]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("rest_api", [False, True], ids=["grpc", "rest"])
def test_predict_images_answers_every_head_for_every_file(served, image_dir, capsys, rest_api):
    folder, colors = image_dir
    rc, out, err = predict_cli(served, capsys, "--images", str(folder), "--format", "json",
                               rest_api=rest_api)
    assert rc == 0, err
    assert "missing from every row and the model imputes them: x" in err
    doc = json.loads(out)
    assert list(doc) == ["a_dark.png", "b_light.PNG", "c.bmp", "d.JPG"]  # sorted, files only
    for name, answer in doc.items():
        m = mean(colors[name])
        tolerance = 2.0 if name.endswith(".JPG") else 1e-4  # JPEG is lossy
        assert answer["bright"] == {"task": "regression",
                                    "value": pytest.approx(m, abs=tolerance)}
        light = answer["light"]
        assert light["label"] == ("yes" if m > 127.5 else "no")
        assert light["scores"] == {"no": pytest.approx(1 - m / 255, abs=tolerance / 255),
                                   "yes": pytest.approx(m / 255, abs=tolerance / 255)}


def test_predict_images_table_names_the_files(served, image_dir, capsys):
    folder, colors = image_dir
    rc, out, err = predict_cli(served, capsys, "--images", str(folder), rest_api=True)
    assert rc == 0, err
    header, _, *body = out.strip().splitlines()
    assert header.split() == ["file", "bright", "light"]
    assert [line.split()[0] for line in body] == list(json.loads(predict_cli(
        served, capsys, "--images", str(folder), "--format", "json")[1]))
    assert body[0].split()[1:] == [f"{mean(DARK):.4g}", "no", f"({1 - mean(DARK) / 255:.2f})"]


def test_a_csv_column_of_image_paths_relative_to_the_csv(served, tmp_path, monkeypatch, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "dark.png").write_bytes(png(DARK))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "light.png").write_bytes(png(LIGHT))
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(f"photo,x,label\nimgs/dark.png,1.5,a\n{elsewhere / 'light.png'},,b\n")
    monkeypatch.chdir(elsewhere)  # relative paths are the CSV's, not the working directory's
    for rest_api in (False, True):
        rc, out, err = predict_cli(served, capsys, "--csv", str(csv_path), "--format", "json",
                                   rest_api=rest_api)
        assert rc == 0, err
        assert [row["bright"]["value"] for row in json.loads(out)] == \
            pytest.approx([mean(DARK) + 1.5, mean(LIGHT)])


@pytest.mark.parametrize("rest_api", [False, True], ids=["grpc", "rest"])
def test_unreadable_paths_and_corrupt_files_say_which(served, tmp_path, capsys, rest_api):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png(DARK))
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("photo\n0.png\n1.png\n2.png\nmissing.png\n")
    rc, _, err = predict_cli(served, capsys, "--csv", str(csv_path), "--batch-size", "2",
                             rest_api=rest_api)
    missing = os.path.join(str(tmp_path), "missing.png")
    assert rc == 1
    assert f"row 4, column 'photo': cannot read the image file {missing!r} (No such file or " \
           "directory)" in err, err
    images = tmp_path / "images"
    images.mkdir()
    (images / "bad.png").write_bytes(CORRUPT)
    rc, _, err = predict_cli(served, capsys, "--images", str(images), rest_api=rest_api)
    assert rc == 1
    assert (f"HTTP 400: {NOT_AN_IMAGE}" if rest_api else f"INVALID_ARGUMENT: {NOT_AN_IMAGE}") \
        in err, err


def test_images_needs_exactly_one_image_feature_and_some_files(tmp_path):
    two = {**INFO, "images": {"front": {}, "back": {}}}
    with pytest.raises(predictions_lib.ClientError,
                       match=r"2 image features \(front, back\): --images fills only one; use "
                       "--csv with one column of file paths per image feature"):
        predictions_lib.image_rows(two, ["a.png"])
    with pytest.raises(predictions_lib.ClientError, match="no image feature"):
        predictions_lib.image_rows({**INFO, "images": {}}, ["a.png"])
    assert predictions_lib.image_rows(INFO, ["a.png"]) == ([{"photo": "a.png"}], ["x"])
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(predictions_lib.ClientError,
                       match="no image files \\(extensions png, jpg, jpeg, gif, bmp\\)"):
        predictions_lib.image_files(str(tmp_path))
