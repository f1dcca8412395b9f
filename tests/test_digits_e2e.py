"""End to end on images: scikit-learn's bundled 8x8 digits as a folder of PNG files plus a CSV
of labels (`headwise data digits`), pipeline/configs/digits.yaml with a MobileNetV2 backbone read
from a weights file this test writes, frozen for one epoch, then fine-tuned. Transform ->
Trainer -> Evaluator gates -> Pusher -> `headwise serve`, queried with image bytes through
Predict, Classify and MultiInference, and with `headwise predict --images`."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from headwise import config as config_lib
from headwise import datasets
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "pipeline", "configs", "digits.yaml")
TRAIN_STEPS = 100  # 2 epochs: 1 frozen, 1 fine-tuned


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("digits") / "digits")
    datasets.write_digits(out)
    return out


@pytest.fixture(scope="module")
def cfg(data_dir, tmp_path_factory) -> config_lib.PipelineConfig:
    """The shipped digits config on this test's copy of the data, with a weights file of the
    same small backbone (random weights: what matters here is that they are loaded and
    fine-tuned, not their quality)."""
    shipped = config_lib.load(DIGITS, check_data=False)
    image = shipped.model.image
    keras.utils.set_random_seed(11)
    app = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=image.alpha,
                                         input_shape=(*shipped.features[0].size, 3),
                                         pooling="avg")
    weights = str(tmp_path_factory.mktemp("weights") / "mobilenet_v2.h5")
    app.save_weights(weights)
    image = dataclasses.replace(image, weights=weights, trainable=False,
                                fine_tune=config_lib.FineTune(after_epochs=1, layers=20,
                                                              learning_rate=0.001))
    # With random frozen image features, the gating heads' signal in 100 steps is mostly `ink`:
    # read as a z-score (one input, as this test was sized for) rather than the default
    # piecewise encoding, whose extra layer needs more steps than this test gives it.
    features = tuple(dataclasses.replace(f, encoding="zscore", missing_indicator=False)
                     if f.type == "numeric" else f for f in shipped.features)
    return dataclasses.replace(
        shipped, data_path=os.path.join(data_dir, "labels.csv"),
        images_dir=os.path.join(data_dir, "images"), features=features,
        model=dataclasses.replace(shipped.model, image=image))


@pytest.fixture(scope="module")
def run(cfg, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("digits_run"))
    return out, local_runner.run(cfg, out, train_steps=TRAIN_STEPS, quiet=True)


def _png(data_dir: str, index: int) -> bytes:
    with open(os.path.join(data_dir, "images", f"{index:04d}.png"), "rb") as fh:
        return fh.read()


def test_images_train_gate_and_push(run, cfg):
    _, summary = run
    assert summary.blessed is True and summary.pushed, summary.table()
    for head in cfg.heads:
        assert summary.head(head.name).passed, summary.table()
    # The weights are random (this test is about loading and fine-tuning them, not their
    # quality: benchmarks/results/images.json is): the gates ask each gating head to beat its
    # trivial baseline (digit: accuracy of the most frequent class, about 0.1).
    assert summary.head("digit").metrics["accuracy"] > summary.head("digit").baseline
    assert not cfg.head("loops").gate and summary.head("loops").metrics["accuracy"] > 0
    info = json.load(open(os.path.join(summary.pushed_path, "assets.extra", "headwise.json")))
    assert info["images"] == {"image": {"size": [32, 32], "channels": 3}}
    assert info["features"]["image"] == "string"


def test_served_signatures_take_image_bytes(run, cfg, data_dir):
    """The pushed model, in process: the same PNG bytes the client sends give the same answer as
    the image decoded by hand, and MultiInference-style one placeholder serves every head."""
    _, summary = run
    loaded = tf.saved_model.load(summary.pushed_path)
    ex = tf.train.Example()
    ex.features.feature["image"].bytes_list.value.append(_png(data_dir, 0))
    ex.features.feature["ink"].float_list.value.append(0.3)
    out = loaded.signatures["examples"](examples=tf.constant([ex.SerializeToString()]))
    assert out["digit"].shape == (1, 10) and out["loops"].shape == (1, 3)
    np.testing.assert_allclose(out["digit"].numpy().sum(), 1.0, rtol=1e-5)
    classify = loaded.signatures["classify_digit"](inputs=tf.constant([ex.SerializeToString()]))
    assert [c.decode() for c in classify["classes"].numpy()[0]] == [str(d) for d in range(10)]
    np.testing.assert_allclose(classify["scores"].numpy(), out["digit"].numpy(), rtol=1e-6)
    # serving_default takes the same values as plain tensors: the file's bytes, the number
    plain = loaded.signatures["serving_default"](image=tf.constant([_png(data_dir, 0)]),
                                                 ink=tf.constant([0.3], tf.float32))
    for head, values in out.items():
        np.testing.assert_allclose(plain[head].numpy(), values.numpy(), rtol=1e-6, atol=1e-7)


def test_headwise_serve_answers_image_bytes_and_survives_corrupt_ones(run, cfg, data_dir,
                                                                      tmp_path, capsys):
    from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc as pb_grpc

    from cli import main as cli
    from serving import server as server_lib

    out, summary = run
    running = server_lib.start(os.path.join(out, "serving", cfg.model_name))
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        stub = pb_grpc.PredictionServiceStub(channel)

        def example(image: bytes) -> tf.train.Example:
            ex = tf.train.Example()
            ex.features.feature["image"].bytes_list.value.append(image)
            return ex

        def multi(image: bytes):
            req = inference_pb2.MultiInferenceRequest()
            for head in ("digit", "loops", "even"):
                task = req.tasks.add()
                task.model_spec.name = cfg.model_name
                task.model_spec.signature_name = f"classify_{head}"
                task.method_name = "tensorflow/serving/classify"
            req.input.example_list.examples.append(example(image))
            return stub.MultiInference(req, timeout=30)

        good = multi(_png(data_dir, 5))
        assert len(good.results) == 3
        for result in good.results:
            assert len(result.classification_result.classifications[0].classes) >= 2
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name, req.model_spec.signature_name = cfg.model_name, "classify_even"
        req.input.example_list.examples.append(example(_png(data_dir, 6)))
        assert len(stub.Classify(req, timeout=30).result.classifications) == 1
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name, predict.model_spec.signature_name = cfg.model_name, "examples"
        predict.inputs["examples"].CopyFrom(tf.make_tensor_proto(
            [example(_png(data_dir, 7)).SerializeToString()]))
        assert set(stub.Predict(predict, timeout=30).outputs) == {"digit", "loops", "even"}

        for corrupt in (b"not an image", _png(data_dir, 5)[:40]):
            with pytest.raises(grpc.RpcError) as e:
                multi(corrupt)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        again = multi(_png(data_dir, 5))  # the server keeps serving, with the same answer
        assert again == good

        # headwise predict --images: every file, every head.
        folder = tmp_path / "some"
        folder.mkdir()
        for i in (1, 2, 3):
            shutil.copy(os.path.join(data_dir, "images", f"{i:04d}.png"), folder)
        capsys.readouterr()
        rc = cli.main(["predict", "--images", str(folder), "--port", str(running.port),
                       "--model-name", cfg.model_name, "--format", "json"])
        answers = json.loads(capsys.readouterr().out)  # {file: {head: answer}}
        assert rc == 0 and sorted(answers) == ["0001.png", "0002.png", "0003.png"]
        for answer in answers.values():
            assert set(answer) == {"digit", "loops", "even"}
            assert answer["digit"]["label"] in [str(d) for d in range(10)]
    finally:
        running.stop()


def test_pushed_version_layout(run, cfg):
    out, _ = run
    versions = glob.glob(os.path.join(out, "serving", cfg.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1
