"""The infra check (serving/infra_check.py, components/infra_check.py) on the synthetic four-task
model exported by the trainer's own code: an intact model answers every signature over gRPC and
REST; a model whose Classify signature has another method name, or whose server cannot answer in
time, fails, and the failure names the signature and the server's error.

(The pipeline-level check, a model blessed by the Evaluator but stopped by this check, is in
tests/test_gates_e2e.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from components import infra_check as component
from headwise import contract
from serving import infra_check
from tests import broken_export, synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = [h.name for h in synthetic.CFG.heads]


def _example(row: dict) -> bytes:
    feature = {}
    for name, values in row.items():
        if not values:
            continue
        if isinstance(values[0], str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() for v in values]))
        elif isinstance(values[0], int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model dir, the test examples' gzipped TFRecord file): labels in the examples, as
    ExampleGen writes them."""
    tmp = tmp_path_factory.mktemp("infra")
    rows, tft_output, data = synthetic.transform(str(tmp / "transform"))
    model = str(tmp / "model")
    synthetic.train_and_export(tft_output, data, model)
    examples = str(tmp / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(examples, options="GZIP") as w:
        for row in rows[:40]:
            w.write(_example(row))
    return model, examples


@pytest.fixture
def broken(exported, tmp_path):
    model = str(tmp_path / "broken")
    shutil.copytree(exported[0], model)
    name = broken_export.corrupt_method(model, contract.classify_signature("k"))
    return model, name


def test_an_intact_model_answers_every_signature_over_grpc_and_rest(exported, tmp_path):
    """The command the pipeline's component runs, as a process of its own."""
    model, examples = exported
    out, warm = str(tmp_path / "result.json"), str(tmp_path / "warmup")
    done = subprocess.run(
        [sys.executable, "-m", "serving.infra_check", "--model", model, "--examples",
         examples, "--count", "16", "--output", out, "--builtin", "--warmup", warm],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.load(open(out))
    assert result["passed"] and result["examples"] == 16
    assert "built-in" in result["server"]
    calls = {(c["api"], c["signature"]) for c in result["calls"] if c["passed"]}
    assert len(calls) == len(result["calls"])
    for head in synthetic.CFG.heads:
        kind = "Regress" if head.task == "regression" else "Classify"
        signature = contract.head_signature(head.name, kind.lower())
        assert (f"gRPC {kind}", signature) in calls
        assert (f"REST :{kind.lower()}", signature) in calls
    for signature in (contract.EXAMPLES_SIGNATURE, contract.TRANSFORM_FEATURES_SIGNATURE,
                      contract.MODEL_INFO_SIGNATURE, contract.DEFAULT_SIGNATURE):
        assert ("gRPC Predict", signature) in calls
    assert ("REST :predict", contract.EXAMPLES_SIGNATURE) in calls
    # plain features to the default signature, answered as the examples signature answers the
    # same rows' examples
    assert ("REST :predict", contract.DEFAULT_SIGNATURE) in calls
    assert any(api == "gRPC MultiInference" for api, _ in calls)
    # Last, TF Serving's warm-up file, replayed by the built-in server's own replay.
    records = 3 + len(synthetic.CFG.heads) + 1  # see _assert_warmup_records
    assert result["calls"][-1]["api"] == f"replay TF Serving's warm-up file ({records} requests)"
    assert result["calls"][-1]["passed"] and result["warmup_records"] == records
    _assert_warmup_records(warm, 16)


def _assert_warmup_records(path: str, n: int) -> None:
    """TF Serving's format (TFRecords of PredictionLog): one request per call a client makes,
    each on the n examples: model_info, the examples signature, the same rows as plain features
    to serving_default, each head's own signature, and one MultiInference over every head."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
    kinds = [log.WhichOneof("log_type") for log in logs]
    heads = synthetic.CFG.heads
    assert kinds == ["predict_log", "predict_log", "predict_log"] + [
        "regress_log" if h.task == "regression" else "classify_log" for h in heads
    ] + ["multi_inference_log"], kinds
    info, examples = logs[0].predict_log.request, logs[1].predict_log.request
    assert info.model_spec.signature_name == contract.MODEL_INFO_SIGNATURE and not info.inputs
    assert examples.model_spec.signature_name == contract.EXAMPLES_SIGNATURE
    assert examples.inputs[contract.SERVING_INPUT].tensor_shape.dim[0].size == n
    plain = logs[2].predict_log.request
    assert plain.model_spec.signature_name == contract.DEFAULT_SIGNATURE
    assert {k: (v.dtype, v.tensor_shape.dim[0].size) for k, v in plain.inputs.items()} == {
        "a": (types_pb2.DT_FLOAT, n), "b": (types_pb2.DT_STRING, n), "c": (types_pb2.DT_FLOAT, n)}
    for head, log in zip(heads, logs[3:], strict=False):
        request = getattr(log, log.WhichOneof("log_type")).request
        kind = "regress" if head.task == "regression" else "classify"
        assert request.model_spec.signature_name == contract.head_signature(head.name, kind)
        assert len(request.input.example_list.examples) == n
    multi = logs[-1].multi_inference_log.request
    assert [t.model_spec.signature_name for t in multi.tasks] == [
        contract.head_signature(h.name, "regress" if h.task == "regression" else "classify")
        for h in heads]
    assert len(multi.input.example_list.examples) == n


def test_a_warm_up_request_that_fails_fails_the_load_as_in_tf_serving(exported, broken,
                                                                      tmp_path):
    """The built-in server replays a version's warm-up file while loading it (as
    saved_model_warmup_util.cc does): a request that fails there fails the load, and the
    version is not served."""
    from headwise import examples as examples_lib
    from serving import server as server_lib
    from serving import warmup

    model, name = broken
    examples = infra_check.read_examples([exported[1]], 4)
    info = examples_lib.read_model_info(model)
    warmup.write(os.path.join(model, contract.WARMUP_FILE), warmup.requests("m", info, examples))
    base = tmp_path / "serving" / "m"
    base.mkdir(parents=True)
    os.symlink(model, base / "1")
    running = server_lib.start(str(base), "m", poll_seconds=60)
    try:
        (state,) = running.manager.states()
        assert running.manager.current_version is None
        assert "Expected classification signature method_name" in state.error, state
    finally:
        running.stop()


def test_a_wrong_method_name_fails_the_check_and_is_named(exported, broken):
    model, name = broken
    examples = infra_check.read_examples([exported[1]], 8)
    result = infra_check.check(model, examples, timeout=120)
    assert not result["passed"]
    failed = {(c["api"], c["signature"]): c["error"] for c in result["calls"]
              if not c["passed"]}
    # The head's own Classify, the MultiInference that includes it, and REST :classify fail;
    # nothing else does.
    assert set(failed) == {("gRPC Classify", name), ("REST :classify", name),
                           next(k for k in failed if k[0] == "gRPC MultiInference")}, failed
    assert failed[("gRPC Classify", name)].startswith("INVALID_ARGUMENT: Expected "
                                                       "classification signature method_name")
    assert contract.PREDICT_METHOD in failed[("REST :classify", name)]
    lines = component.failure_lines(result)
    assert f"gRPC Classify {name}: INVALID_ARGUMENT: Expected classification" in "\n".join(lines)


def test_the_time_limit_fails_the_check(exported):
    examples = infra_check.read_examples([exported[1]], 8)
    result = infra_check.check(exported[0], examples, timeout=0.0)
    assert not result["passed"]
    assert all("time limit" in c["error"] for c in result["calls"] if not c["passed"])


def test_a_check_that_cannot_run_gives_a_failed_result_that_says_why(exported, tmp_path):
    empty = str(tmp_path / "empty.gz")
    with tf.io.TFRecordWriter(empty, options="GZIP"):
        pass
    result = component.run_check(exported[0], [empty], str(tmp_path / "r.json"), 8, 60)
    assert not result["passed"]
    (line,) = component.failure_lines(result)
    assert "exited with status 2" in line and "no examples in" in line, line


def test_rest_examples_are_json_objects_with_b64_for_binary_bytes():
    example = tf.train.Example(features=tf.train.Features(feature={
        "a": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
        "t": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"y"])),
        "img": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff\xd8"])),
        "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    assert infra_check.example_json(example.SerializeToString()) == {
        "a": 1.5, "t": ["x", "y"], "img": {"b64": "/9g="}, "n": 3}
    numbers = infra_check._numbers({"r": [[1, float("nan")], {"s": 2.0}], "b": True, "c": "x"})
    assert numbers[0] == 1.0 and np.isnan(numbers[1]) and numbers[2:] == [2.0]


def test_a_warm_up_file_that_fails_its_replay_fails_the_check(exported, monkeypatch, tmp_path):
    """A request of the warm-up file that the server refuses fails the check's last call (TF
    Serving would refuse to load the pushed version), and no file is kept for the Pusher."""
    from serving import warmup

    model, examples = exported
    good = warmup.requests

    def with_a_bad_signature(name, info, examples):
        logs = good(name, info, examples)
        logs[1].predict_log.request.model_spec.signature_name = "no_such_signature"
        return logs
    monkeypatch.setattr(warmup, "requests", with_a_bad_signature)
    kept = str(tmp_path / "kept_warmup")
    result = infra_check.check(model, infra_check.read_examples([examples], 4), timeout=120,
                               warmup_output=kept)
    assert not result["passed"]
    last = result["calls"][-1]
    assert last["api"].startswith("replay TF Serving's warm-up file") and not last["passed"]
    assert "no_such_signature" in last["error"], last
    assert all(c["passed"] for c in result["calls"][:-1])
    assert not os.path.exists(kept)


def test_a_check_stopped_by_a_signal_records_no_verdict(exported, tmp_path, monkeypatch):
    """Ctrl-C reaches the check's process group: the component fails instead of writing a
    "not blessed" that TFX's cache would keep for every later run."""
    (tmp_path / "stopped_check.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(component, "CHECK_MODULE", "stopped_check")
    with pytest.raises(component.CheckStopped, match="stopped by SIGINT before it finished"):
        component.run_check(exported[0], [exported[1]], str(tmp_path / "r.json"), 8, 60)
