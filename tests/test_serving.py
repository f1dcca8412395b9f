"""The local model server against TF Serving's protocol, queried with the stock
`tensorflow_serving.apis` stubs over a real loopback gRPC channel.

The model is the synthetic four-task model exported by the trainer's own export code and pushed by
the project's Pusher; expected values are the Keras model's in-process predictions.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time

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
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from cli import main as cli
from components import pusher
from headwise import contract, request_logs, versions
from headwise import examples as examples_lib
from serving import client as client_lib
from serving import server as server_lib
from serving import tensors
from tests import synthetic

NAME = "syn"
N = synthetic.N


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two trained versions of the same config (different seeds) and their expected outputs."""
    tmp = tmp_path_factory.mktemp("serving")
    rows, tft_output, data = synthetic.transform(str(tmp / "transform"))
    out = {}
    for v, (epochs, seed) in {1: (2, 0), 2: (4, 1)}.items():
        path = str(tmp / f"export{v}")
        out[v] = (path, synthetic.train_and_export(tft_output, data, path, epochs, seed))
    serving_rows = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    return tmp, serving_rows, out


@pytest.fixture(scope="module")
def served(models):
    """The server on an ephemeral loopback port, serving version 1."""
    tmp, rows, exported = models
    base = str(tmp / "serving" / NAME)
    first = pusher.push_model(exported[1][0], base, source="run-1")
    running = server_lib.start(base, port=0, poll_seconds=0.2)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    info = examples_lib.read_model_info(exported[1][0])
    serialized = examples_lib.to_examples(rows, info["features"])
    yield {"running": running, "stub": stub, "channel": channel, "base": base, "rows": rows,
           "serialized": serialized, "version": first.version, "expected": exported[1][1],
           "exported": exported}
    channel.close()
    running.stop()


def spec(signature: str = "", name: str = NAME, version: int | None = None):
    s = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        s.version.value = version
    return s


def predict_request(serialized, signature: str = contract.EXAMPLES_SIGNATURE, **kw
                    ) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest(model_spec=spec(signature, **kw))
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
    return req


def example_input(serialized) -> dict:
    return {"example_list": {"examples": [example_pb2.Example.FromString(s) for s in serialized]}}


def error_of(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=10)
    return e.value.code(), e.value.details()


# --- each RPC ----------------------------------------------------------------------------------
def test_predict_returns_every_head_in_typed_fields(served):
    resp = served["stub"].Predict(predict_request(served["serialized"]), timeout=10)
    assert resp.model_spec.name == NAME
    assert resp.model_spec.version.value == served["version"]
    assert resp.model_spec.signature_name == "examples"
    assert set(resp.outputs) == {"r", "k", "m", "g"}
    for head, expected in served["expected"].items():
        proto = resp.outputs[head]
        assert proto.dtype == tf.float32.as_datatype_enum
        assert not proto.tensor_content  # TF Serving's wire form: float_val, as stock clients read
        assert len(proto.float_val) == expected.size
        assert tensors.shape_of(proto) == expected.shape
        np.testing.assert_allclose(tf.make_ndarray(proto), expected, rtol=1e-4, atol=1e-5)


def test_predict_output_filter_fetches_only_what_was_asked(served):
    req = predict_request(served["serialized"][:3])
    req.output_filter.extend(["m", "r"])
    resp = served["stub"].Predict(req, timeout=10)
    assert set(resp.outputs) == {"m", "r"}
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["m"]), served["expected"]["m"][:3],
                               rtol=1e-4, atol=1e-5)


def test_classify_returns_class_names_and_scores(served):
    req = classification_pb2.ClassificationRequest(
        model_spec=spec("classify_m"), input=example_input(served["serialized"]))
    resp = served["stub"].Classify(req, timeout=10)
    assert resp.model_spec.signature_name == "classify_m"
    assert resp.model_spec.version.value == served["version"]
    assert len(resp.result.classifications) == N
    first = resp.result.classifications[0]
    assert [c.label for c in first.classes] == ["p", "q", "Z"]
    scores = np.array([[c.score for c in cl.classes] for cl in resp.result.classifications])
    np.testing.assert_allclose(scores, served["expected"]["m"], rtol=1e-4, atol=1e-5)


def test_regress_returns_values_in_label_units(served):
    req = regression_pb2.RegressionRequest(
        model_spec=spec("regress_r"), input=example_input(served["serialized"]))
    resp = served["stub"].Regress(req, timeout=10)
    values = np.array([r.value for r in resp.result.regressions])
    np.testing.assert_allclose(values, served["expected"]["r"][:, 0], rtol=1e-4)
    assert 50 < np.median(values) < 150  # the labels are ~100 +- 10, not z-scores


def test_multi_inference_answers_every_head_in_one_request(served):
    req = inference_pb2.MultiInferenceRequest(input=example_input(served["serialized"]))
    for sig, method in [("regress_r", "tensorflow/serving/regress"),
                        ("classify_k", "tensorflow/serving/classify"),
                        ("classify_m", "tensorflow/serving/classify"),
                        ("classify_g", "tensorflow/serving/classify")]:
        req.tasks.add(model_spec=spec(sig), method_name=method)
    resp = served["stub"].MultiInference(req, timeout=10)
    assert [r.model_spec.signature_name for r in resp.results] == [
        "regress_r", "classify_k", "classify_m", "classify_g"]
    reg, binary, multi, tags = resp.results
    np.testing.assert_allclose([r.value for r in reg.regression_result.regressions],
                               served["expected"]["r"][:, 0], rtol=1e-4)
    p1 = [cl.classes[1].score for cl in binary.classification_result.classifications]
    np.testing.assert_allclose(p1, served["expected"]["k"][:, 0], rtol=1e-4, atol=1e-6)
    assert [c.label for c in multi.classification_result.classifications[5].classes] == [
        "p", "q", "Z"]
    tag_scores = [[c.score for c in cl.classes]
                  for cl in tags.classification_result.classifications]
    np.testing.assert_allclose(tag_scores, served["expected"]["g"], rtol=1e-4, atol=1e-6)


def test_metadata_lists_every_signature_with_method_names(served):
    req = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec(),
                                                         metadata_field=["signature_def"])
    resp = served["stub"].GetModelMetadata(req, timeout=10)
    assert resp.model_spec.name == NAME and resp.model_spec.version.value == served["version"]
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sig_map)
    sigs = sig_map.signature_def
    assert {"serving_default", "examples", "transform_features", "model_info", "regress_r",
            "classify_k", "classify_m", "classify_g"} <= set(sigs)
    assert sigs["classify_m"].method_name == "tensorflow/serving/classify"
    assert sigs["regress_r"].method_name == "tensorflow/serving/regress"
    assert set(sigs["serving_default"].outputs) == {"r", "k", "m", "g"}


def test_model_status_reports_the_served_version(served):
    stub = model_service_pb2_grpc.ModelServiceStub(served["channel"])
    resp = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec()),
                               timeout=10)
    states = {s.version: s.state for s in resp.model_version_status}
    assert states[served["version"]] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    code, msg = error_of(stub.GetModelStatus,
                         get_model_status_pb2.GetModelStatusRequest(model_spec=spec(name="nope")))
    assert code == grpc.StatusCode.NOT_FOUND and msg == "Could not find any versions of model nope"


# --- TF Serving's error codes ------------------------------------------------------------------
def test_errors_have_tf_servings_codes_and_the_server_survives(served):
    stub, ser = served["stub"], served["serialized"][:2]
    cases = []
    cases.append((stub.Predict, predict_request(ser, name="nope"), grpc.StatusCode.NOT_FOUND,
                  "Servable not found for request: Latest(nope)"))
    cases.append((stub.Predict, predict_request(ser, version=12345), grpc.StatusCode.NOT_FOUND,
                  f"Servable not found for request: Specific({NAME}, 12345)"))
    cases.append((stub.Predict, predict_request(ser, "no_such_sig"),
                  grpc.StatusCode.FAILED_PRECONDITION,
                  'Serving signature key "no_such_sig" not found.'))
    # Classify/Regress/MultiInference report an unknown signature as INVALID_ARGUMENT.
    cases.append((stub.Classify, classification_pb2.ClassificationRequest(
        model_spec=spec("no_such_sig"), input=example_input(ser)),
        grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: no_such_sig"))
    cases.append((stub.Classify, classification_pb2.ClassificationRequest(
        model_spec=spec("regress_r"), input=example_input(ser)),
        grpc.StatusCode.INVALID_ARGUMENT, "Expected classification signature method_name"))
    missing = predict_pb2.PredictRequest(model_spec=spec(contract.EXAMPLES_SIGNATURE))
    cases.append((stub.Predict, missing, grpc.StatusCode.INVALID_ARGUMENT,
                  "Missing but required: {examples}"))
    extra = predict_request(ser)
    extra.inputs["bogus"].CopyFrom(tf.make_tensor_proto([1.0]))
    cases.append((stub.Predict, extra, grpc.StatusCode.INVALID_ARGUMENT,
                  "Sent extra: {bogus}"))
    mistyped = predict_pb2.PredictRequest(model_spec=spec(contract.EXAMPLES_SIGNATURE))
    mistyped.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
    cases.append((stub.Predict, mistyped, grpc.StatusCode.INVALID_ARGUMENT,
                  "to be string but float is provided"))
    bad_filter = predict_request(ser)
    bad_filter.output_filter.append("nope")
    cases.append((stub.Predict, bad_filter, grpc.StatusCode.INVALID_ARGUMENT,
                  "output tensor alias not found in signature: nope"))
    garbage = predict_request([b"\xff\xfenot a tf.Example"])
    cases.append((stub.Predict, garbage, grpc.StatusCode.INVALID_ARGUMENT,
                  "Could not parse example input"))
    empty = classification_pb2.ClassificationRequest(model_spec=spec("classify_k"))
    cases.append((stub.Classify, empty, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."))
    mixed = inference_pb2.MultiInferenceRequest(input=example_input(ser))
    mixed.tasks.add(model_spec=spec("classify_k"), method_name="tensorflow/serving/classify")
    mixed.tasks.add(model_spec=spec("classify_k"), method_name="tensorflow/serving/classify")
    cases.append((stub.MultiInference, mixed, grpc.StatusCode.INVALID_ARGUMENT,
                  "Duplicate evaluation of signature: classify_k"))
    for call, request, want_code, want_msg in cases:
        code, msg = error_of(call, request)
        assert code == want_code, (request, code, msg)
        assert want_msg in msg, (want_msg, msg)
    # Still serving, with the same answers.
    resp = stub.Predict(predict_request(served["serialized"]), timeout=10)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["r"]), served["expected"]["r"],
                               rtol=1e-4)


# --- hostile clients over gRPC (REST's: tests/test_rest.py) -----------------------------------
MAX_WORKERS = 16  # server_lib.start's default: the gRPC handler threads


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _healthy(served) -> None:
    resp = served["stub"].Predict(predict_request(served["serialized"][:2]), timeout=10)
    assert set(resp.outputs) == {"r", "k", "m", "g"}


@pytest.mark.parametrize("dims", [[10**12], [2**40, 2**40], [2**62, 4]])
def test_a_tiny_request_with_a_huge_shape_is_refused_without_allocating_it(served, dims):
    """One value and a shape: TensorFlow fills the shape with the value, so a message of a few
    bytes could ask for terabytes (or a shape whose size overflows int64)."""
    before = _rss_mib()
    request = predict_pb2.PredictRequest(model_spec=spec(contract.EXAMPLES_SIGNATURE))
    tensor = request.inputs["examples"]
    tensor.dtype = types_pb2.DT_STRING
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    tensor.string_val.append(served["serialized"][0])
    assert request.ByteSize() < 200
    code, details = error_of(served["stub"].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("tensor parsing error: examples"), details
    assert _rss_mib() - before < 100
    _healthy(served)


def test_bytes_that_are_no_request_are_refused_and_the_server_answers_on(served):
    raw = served["channel"].unary_unary("/tensorflow.serving.PredictionService/Predict")
    for junk in (b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f", b"\x12" * 1000):
        with pytest.raises(grpc.RpcError) as e:
            raw(junk, timeout=10)
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    _healthy(served)


def test_a_flood_of_idle_and_half_open_connections_holds_the_threads_bounded(served):
    """200 TCP connections to the gRPC port: half send nothing, half stop inside HTTP/2's
    preface. Threads stay within the handler pool, and healthy calls are answered during the
    flood and after it."""
    port = served["running"].port
    _healthy(served)
    threads = threading.active_count()
    sockets = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                sock.sendall(b"PRI * HTTP/2.0\r\n")
            sockets.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        _healthy(served)
        assert time.monotonic() - started < 5
        assert threading.active_count() <= threads + MAX_WORKERS
    finally:
        for sock in sockets:
            sock.close()
    _healthy(served)


def test_more_calls_at_once_than_handler_threads_are_all_answered(served):
    """Four times the handler pool at once, half of them clients that give up at once: every
    patient call is answered, and the threads stay within the pool."""
    threads = threading.active_count()
    results: list[str] = []

    def one(i: int) -> None:
        try:
            served["stub"].Predict(predict_request(served["serialized"][:8]),
                                   timeout=0.001 if i % 2 else 60)
            results.append("ok")
        except grpc.RpcError as e:
            results.append(e.code().name)

    callers = [threading.Thread(target=one, args=(i,)) for i in range(4 * MAX_WORKERS)]
    for t in callers:
        t.start()
    peak = threading.active_count()
    for t in callers:
        t.join(timeout=120)
    assert results.count("ok") >= 2 * MAX_WORKERS, results
    assert set(results) <= {"ok", "DEADLINE_EXCEEDED"}, results
    assert peak <= threads + len(callers) + MAX_WORKERS
    _healthy(served)


# --- client and CLI ----------------------------------------------------------------------------
def test_client_labels_every_head_from_the_models_own_description(served):
    port = served["running"].port
    with client_lib.HeadwiseClient("127.0.0.1", port, NAME) as client:
        preds = list(client.predict_rows(served["rows"], batch_size=50))
    assert len(preds) == N and [p.head for p in preds[0]] == ["r", "k", "m", "g"]
    expected = served["expected"]
    for i, row in enumerate(preds):
        r, k, m, g = row
        assert r.value == pytest.approx(float(expected["r"][i, 0]), rel=1e-4)
        assert k.label == ("1" if expected["k"][i, 0] >= 0.5 else "0")
        assert m.label == ["p", "q", "Z"][int(np.argmax(expected["m"][i]))]
        assert m.score == pytest.approx(float(expected["m"][i].max()), rel=1e-4)
        on = [c for c, p in zip("uvt", expected["g"][i], strict=True) if p >= 0.5]
        assert g.label == ("|".join(on) or "-")


def test_clients_read_the_training_configs_missing_value_markers(served):
    """`NA` is one of the config's missing_values, so the model's description carries it and a
    client sends a cell holding it as a missing value, as training read it (without: `NA` in
    the numeric column `a` is an error naming row and column)."""
    rows = [dict(served["rows"][1], a=None), dict(served["rows"][1], a=" NA ")]
    with client_lib.HeadwiseClient("127.0.0.1", served["running"].port, NAME) as client:
        assert "NA" in client.model_info()["missing_values"]
        first, second = client.examples(rows)
        assert first == second
        preds = list(client.predict_rows(rows))
    assert preds[0][0].value == pytest.approx(preds[1][0].value)


def test_predict_cli_prints_a_table_per_head(served, tmp_path, capsys):
    csv_path = tmp_path / "rows.csv"
    lines = ["a,b,c,y_r,extra"] + [f"{r['a'] if r['a'] is not None else ''},{r['b']},{r['c']},,x"
                                   for r in served["rows"][:4]]
    csv_path.write_text("\n".join(lines) + "\n")
    rc = cli.main(["predict", "--csv", str(csv_path), "--port", str(served["running"].port),
                   "--model-name", NAME])
    out = capsys.readouterr().out
    assert rc == 0, out
    header, rule, *body = out.strip().splitlines()
    assert header.split() == ["row", "r", "k", "m", "g"]
    assert len(body) == 4
    assert body[0].split()[1] == f"{served['expected']['r'][0, 0]:.4g}"


def test_client_errors_say_what_to_do(served, tmp_path, capsys):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("a,b,c\nnot-a-number,x,0.5\n")
    rc = cli.main(["predict", "--csv", str(csv_path), "--port", str(served["running"].port),
                   "--model-name", NAME])
    assert rc == 1
    assert "row 1, column 'a': expected float32" in capsys.readouterr().err
    with socket_closed_port() as port:
        rc = cli.main(["predict", "--csv", str(csv_path), "--port", str(port), "--timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "is `headwise serve` running there?" in err, err


class socket_closed_port:  # noqa: N801 - used as a context manager
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        pass


# --- load and versions -------------------------------------------------------------------------
def _hammer(stub, requests: list, n: int, errors: list, versions: list | None = None,
            stop: threading.Event | None = None) -> None:
    for i in range(n):
        if stop is not None and stop.is_set():
            return
        try:
            resp = stub.Predict(requests[i % len(requests)], timeout=30)
            if versions is not None:
                versions.append((time.monotonic(), resp.model_spec.version.value,
                                 float(tf.make_ndarray(resp.outputs["r"])[0, 0])))
        except grpc.RpcError as e:  # collected, asserted empty by the caller
            errors.append((e.code(), e.details()))


def test_16_concurrent_clients_500_requests_each_without_error(served):
    requests = [predict_request(served["serialized"][i:i + 1]) for i in range(16)]
    errors: list = []
    threads = [threading.Thread(target=_hammer, args=(served["stub"], requests, 500, errors))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_new_version_is_picked_up_while_clients_run_and_broken_ones_are_not(served):
    """Push v2 under load: no request fails and answers switch to v2. Then a half-written and a
    corrupt version directory: never served, v2 keeps answering."""
    stub, base = served["stub"], served["base"]
    v1 = served["version"]
    request = predict_request(served["serialized"][:1])
    errors: list = []
    seen: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_hammer, args=(stub, [request], 10**6, errors, seen, stop))
               for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    path2, expected2 = served["exported"][2]
    v2 = pusher.push_model(path2, base, source="run-2").version
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(v == v2 for _, v, _ in seen[-4:]):
        time.sleep(0.1)
    time.sleep(0.5)  # some more requests on v2
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert v2 > v1 and {v for _, v, _ in seen} == {v1, v2}
    switch = min(t for t, v, _ in seen if v == v2)
    assert all(v == v2 for t, v, _ in seen if t > switch + 0.05)  # no flapping back
    want1, want2 = float(served["expected"]["r"][0, 0]), float(expected2["r"][0, 0])
    assert all(r == pytest.approx(want2 if v == v2 else want1, rel=1e-4) for _, v, r in seen)
    assert not np.allclose(served["expected"]["r"][0, 0], expected2["r"][0, 0], rtol=1e-3)

    # A copy in progress (no saved_model.pb yet) and a corrupt one: neither is ever served.
    import os
    import shutil

    half = os.path.join(base, str(v2 + 10))
    os.makedirs(os.path.join(half, "variables"))
    corrupt = os.path.join(base, str(v2 + 20))
    shutil.copytree(path2, corrupt)
    with open(os.path.join(corrupt, "saved_model.pb"), "wb") as fh:
        fh.write(b"truncated")
    # the model config names them (as a push names what it published): the server must not
    # take the named-but-incomplete one for a version, and must survive the corrupt one
    with open(os.path.join(base, versions.MODEL_CONFIG), "w") as fh:
        fh.write(versions.model_config(NAME, base, [v2, v2 + 10, v2 + 20]))
    status_stub = model_service_pb2_grpc.ModelServiceStub(served["channel"])
    deadline = time.monotonic() + 30
    status = {}
    while time.monotonic() < deadline and v2 + 20 not in status:
        time.sleep(0.2)
        resp = status_stub.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=spec()), timeout=10)
        status = {s.version: s for s in resp.model_version_status}
    assert status[v2 + 20].status.error_message  # the load failure is reported ...
    assert status[v2].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE  # ... v2 serves
    assert v2 + 10 not in status
    resp = stub.Predict(request, timeout=10)
    assert resp.model_spec.version.value == v2
    shutil.rmtree(half)
    shutil.rmtree(corrupt)


def test_server_binds_loopback_by_default(served):
    """Started with defaults, the port answers on 127.0.0.1 and on no other address."""
    import socket

    # No --host: serve_forever binds the loopback address (None is "not given", so that the
    # real binary can refuse a default it cannot honour: tests/test_rest.py).
    assert cli.build_parser().parse_args(["serve"]).host is None
    assert server_lib.LOOPBACK == "127.0.0.1"
    port = served["running"].port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    others = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    others |= {_outbound_address()}
    others = {a for a in others if a and not a.startswith("127.")}
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def _outbound_address() -> str:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the interface
        return s.getsockname()[0]
    except OSError:
        return ""
    finally:
        s.close()


# --- request log (the skew check's serving data) -------------------------------------------------
def test_request_log_keeps_successful_requests_as_tf_servings_prediction_logs(models, tmp_path):
    """Every answered Predict/Classify/Regress/MultiInference is logged as the PredictionLog TF
    Serving writes; a refused request is not; files appear whole (renamed after writing) and the
    examples read back are exactly the ones sent, newest last."""
    from tensorflow_serving.apis import prediction_log_pb2

    from headwise import request_logs

    tmp, rows, exported = models
    base = str(tmp_path / "serving" / NAME)
    pushed = pusher.push_model(exported[1][0], base, source="run-1")
    logs = str(tmp_path / "logs")
    running = server_lib.start(base, port=0, request_log_dir=logs)
    running.request_log.max_records = 2  # rotate often: several files
    info = examples_lib.read_model_info(exported[1][0])
    sent = examples_lib.to_examples(rows, info["features"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(predict_request(sent[:2]), timeout=10)
            stub.Classify(classification_pb2.ClassificationRequest(
                model_spec=spec("classify_m"), input=example_input(sent[2:5])), timeout=10)
            stub.Regress(regression_pb2.RegressionRequest(
                model_spec=spec("regress_r"), input=example_input(sent[5:6])), timeout=10)
            error_of(stub.Regress, regression_pb2.RegressionRequest(
                model_spec=spec("classify_m"), input=example_input(sent[6:7])))  # refused
            stub.Predict(predict_pb2.PredictRequest(model_spec=spec("model_info")), timeout=10)
            multi = inference_pb2.MultiInferenceRequest(input=example_input(sent[7:10]))
            multi.tasks.add(model_spec=spec("regress_r"), method_name="tensorflow/serving/regress")
            stub.MultiInference(multi, timeout=10)
    finally:
        running.stop()  # closes the open file
    files = request_logs.log_files(logs)
    assert len(files) == 3 and sorted(os.listdir(logs)) == [os.path.basename(f) for f in files]
    entries = [prediction_log_pb2.PredictionLog.FromString(r)
               for f in files for r in tf.data.TFRecordDataset(f).as_numpy_iterator()]
    assert [e.WhichOneof("log_type") for e in entries] == [
        "predict_log", "classify_log", "regress_log", "predict_log", "multi_inference_log"]
    for e in entries:
        assert e.log_metadata.model_spec.name == NAME
        assert e.log_metadata.model_spec.version.value == pushed.version
        assert list(e.log_metadata.saved_model_tags) == ["serve"]
    assert entries[1].classify_log.response.result.classifications[0].classes[0].label == "p"
    examples, read = request_logs.read_examples(logs, max_examples=100)
    assert read == 3
    assert examples == sent[:6] + sent[7:10]  # not the refused one, not model_info's
    newest, _ = request_logs.read_examples(logs, max_examples=4)
    assert newest == sent[5:6] + sent[7:10]


def test_a_logged_plain_features_request_reads_back_as_the_clients_examples():
    """Skew is measured on plain JSON requests too: serving_default's tensors become the
    tf.Examples the client's own encoder makes of the same rows (headwise.examples)."""
    rows = [{"a": 1.5, "n": 3, "Body Mass": "x"}, {"a": None, "n": None, "Body Mass": ""},
            {"a": -2.0, "n": -7, "Body Mass": "yz"}]
    odd = contract.features_input("Body Mass")
    request = predict_pb2.PredictRequest(model_spec=spec(contract.FEATURES_SIGNATURE))
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.array([1.5, np.nan, -2], np.float32)))
    request.inputs["n"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE,
                                                        double_val=[3, math.nan, -7]))
    request.inputs[odd].CopyFrom(tf.make_tensor_proto([b"x", b"", b"yz"]))
    assert request.inputs["a"].tensor_content  # numbers as TensorFlow's clients send them
    got = request_logs.plain_examples(request.inputs, {odd: "Body Mass"})
    want = examples_lib.to_examples(rows, {"a": "float32", "n": "int64", "Body Mass": "string"})
    assert [example_pb2.Example.FromString(e) for e in got] == \
        [example_pb2.Example.FromString(e) for e in want]


def test_logged_predict_requests_are_read_by_their_inputs_and_signature():
    """serving_default takes plain features now, and older models have it on tf.Examples: a
    logged Predict is serialized examples when its one string input is `examples` (or a head
    signature's `inputs`), plain features when it names serving_default, no signature or the
    older `features`, and nothing when it has no input (model_info)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from headwise import request_logs

    serialized = examples_lib.to_examples([{"a": 1.5}], {"a": "float32"})

    def logged(signature: str, inputs: dict) -> prediction_log_pb2.PredictionLog:
        request = predict_pb2.PredictRequest(model_spec=spec(signature))
        for name, tensor in inputs.items():
            request.inputs[name].CopyFrom(tensor)
        return prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))

    examples = tf.make_tensor_proto(serialized)
    plain = {"a": tf.make_tensor_proto(np.array([1.5], np.float32))}
    for signature in ("examples", "serving_default", "classify_k"):  # old and new models
        assert request_logs.examples_of(logged(signature, {"examples": examples})) == serialized
    assert request_logs.examples_of(logged("classify_k", {"inputs": examples})) == serialized
    for signature in ("", "serving_default", "features"):
        assert request_logs.examples_of(logged(signature, plain)) == serialized, signature
    # one string feature, plain, is not mistaken for serialized examples
    text = {"b": tf.make_tensor_proto([b"x"])}
    assert request_logs.examples_of(logged("", text)) == examples_lib.to_examples(
        [{"b": "x"}], {"b": "string"})
    assert request_logs.examples_of(logged(contract.MODEL_INFO_SIGNATURE, {})) == []


def test_request_log_samples_and_never_blocks_a_request(tmp_path):
    from serving import request_log

    log = request_log.RequestLog(str(tmp_path), sampling_rate=0.25, queue_size=10_000)
    req = regression_pb2.RegressionRequest(model_spec=spec("regress_r"))
    for _ in range(2000):
        log.log("regress_log", req, regression_pb2.RegressionResponse(), req.model_spec)
    log.close()
    assert 350 < log.written < 650 and log.dropped == 0  # ~500: a quarter of the requests
    stuck = threading.Event()
    full = request_log.RequestLog(str(tmp_path / "full"), queue_size=1)
    record = full._record
    full._record = lambda *a: stuck.wait(10) and record(*a)  # a disk that does not keep up
    full.log("regress_log", req, regression_pb2.RegressionResponse(), req.model_spec)
    while not full._queue.empty():  # the writer took the first one and is stuck on it
        time.sleep(0.01)
    started = time.monotonic()
    for _ in range(3):  # one fits in the queue; two are dropped and counted, never waited for
        full.log("regress_log", req, regression_pb2.RegressionResponse(), req.model_spec)
    assert full.dropped == 2 and time.monotonic() - started < 1
    stuck.set()
    full.close()
    assert full.written == 2
    with pytest.raises(ValueError, match="sampling rate"):
        request_log.RequestLog(str(tmp_path), sampling_rate=0)


def test_request_log_survives_a_failing_disk(tmp_path, monkeypatch):
    """A write that fails (disk full, a bucket that refuses) drops that record, says so in the
    log, and the next record goes to a new file: the writer never dies."""
    from headwise import request_logs
    from serving import request_log

    real = tf.io.TFRecordWriter
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return real(path)

    monkeypatch.setattr(tf.io, "TFRecordWriter", flaky)
    log = request_log.RequestLog(str(tmp_path))
    req = regression_pb2.RegressionRequest(model_spec=spec("regress_r"))
    log.log("regress_log", req, regression_pb2.RegressionResponse(), req.model_spec)
    while not log._queue.empty() or not calls:  # the first (failing) write has been tried
        time.sleep(0.01)
    log.log("regress_log", req, regression_pb2.RegressionResponse(), req.model_spec)
    log.close()
    assert (log.dropped, log.written) == (1, 1)
    assert len(request_logs.log_files(str(tmp_path))) == 1
