"""Serving latency and throughput over TF Serving's gRPC API, side by side in one run:

- the floor: the same signature called in-process (a session run, no gRPC);
- all heads of the multi-head model in one Predict (the examples signature) and in one
  MultiInference
  (Classify/Regress per head), 1 and 64 examples per request, 1 and 4 concurrent clients;
- one single-task model per head: N round trips (one Predict per model) for the same answer;
- the cost of the request log (`--request-log-dir`, every request logged): the same Predicts
  against a second server that logs them;
- TF Serving's REST API (`--rest-port`) on the same server: the examples signature, 1 and 64
  examples
  per request as {"b64": ...} instances over one keep-alive HTTP connection, next to gRPC;
- the quick client (`headwise predict --csv --rest-port`, no TensorFlow): wall time of a fresh
  process answering 5 rows, interpreter start included.

The server is `headwise serve --builtin` in its own process (as in production: the client does
not share its interpreter); the load comes from this process's threads over loopback.
"""

from __future__ import annotations

import base64
import csv
import http.client
import json
import os
import subprocess
import time

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from benchmarks import common
from headwise import contract, tasks
from headwise import examples as examples_lib
from headwise.versions import numeric_versions
from serving import tensors
from serving.servable import Servable


def latest_version_dir(model_dir: str) -> str:
    versions = numeric_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"{model_dir}: no model version (run `make run` first)")
    return os.path.join(model_dir, str(versions[-1]))


def start_server(model_dirs: list[str], port: int, log_path: str,
                 request_log_dir: str | None = None, rest_port: int | None = None
                 ) -> subprocess.Popen:
    cmd = [common.python(), "-m", "cli", "serve", "--builtin", "--port", str(port)]
    if rest_port is not None:
        cmd += ["--rest-port", str(rest_port)]
    for d in model_dirs:
        cmd += ["--model-dir", d]
    if request_log_dir:
        cmd += ["--request-log-dir", request_log_dir]
    log = open(log_path, "w")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(cmd, env=common.child_env(), cwd=common.ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    deadline = time.monotonic() + 180
    names = [os.path.basename(d.rstrip("/")) for d in model_dirs]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early; see {log_path}")
        try:
            for n in names:
                stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
                    model_spec=model_pb2.ModelSpec(name=n)), timeout=2)
            channel.close()
            return proc
        except grpc.RpcError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not come up in 180 s; see {log_path}")


def _predict_request(name: str, serialized: list[bytes]) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name=name, signature_name=contract.EXAMPLES_SIGNATURE))
    req.inputs["examples"].CopyFrom(tensors.to_proto(np.array(serialized, dtype=object)))
    return req


def _multi_request(name: str, info: dict, serialized: list[bytes]):
    req = inference_pb2.MultiInferenceRequest()
    for h in info["heads"]:
        req.tasks.add(model_spec=model_pb2.ModelSpec(name=name, signature_name=h["signature"]),
                      method_name=contract.METHODS[tasks.get(h["task"]).signature])
    req.input.example_list.examples.extend(example_pb2.Example.FromString(s) for s in serialized)
    return req


def _rest_predict(port: int, name: str, serialized: list[bytes]):
    """A call of the examples signature over REST on one keep-alive connection (as a client would
    keep its gRPC channel); the body is built once, as the gRPC request is."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"signature_name": contract.EXAMPLES_SIGNATURE,
                       "instances": [{"b64": base64.b64encode(s).decode()}
                                     for s in serialized]}).encode()
    path = f"/v1/models/{name}:predict"
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST predict: HTTP {response.status}: {data[:200]!r}")
    return call, conn


def quick_client_wall(csv_rows: list[dict], name: str, port: int, rest_port: int,
                      work_dir: str, runs: int) -> list[float]:
    """Seconds for `headwise predict --csv <5 rows> --rest-port` in a fresh process, each run."""
    path = os.path.join(work_dir, "quick_client_rows.csv")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows[:5])
    cmd = [common.python(), "-m", "cli", "predict", "--csv", path, "--model-name", name,
           "--port", str(port), "--rest-port", str(rest_port)]
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run(cmd, env=common.child_env(), cwd=common.ROOT,
                              capture_output=True, text=True, timeout=60)
        walls.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise RuntimeError(f"headwise predict --rest-port failed: {done.stderr[-500:]}")
    return walls


def run(multi_dir: str, single_dirs: dict[str, str] | None, csv_path: str, work_dir: str,
        quick: bool = False) -> dict:
    """Measure; returns a JSON-able dict of scenarios. single_dirs: head -> model directory."""
    n_seq = 300 if quick else 2000
    seconds = 3.0 if quick else 10.0
    version_dir = latest_version_dir(multi_dir)
    info = examples_lib.read_model_info(version_dir)
    with open(csv_path, newline="") as fh:
        rows = [r for _, r in zip(range(64), csv.DictReader(fh), strict=False)]
    one = examples_lib.to_examples(rows[:1], info["features"])
    batch = examples_lib.to_examples(rows, info["features"])
    name = os.path.basename(multi_dir.rstrip("/"))
    results: dict = {"model": name, "version_dir": version_dir, "heads": len(info["heads"]),
                     "scenarios": {}}
    sc = results["scenarios"]

    # The floor: the same session run in-process.
    servable = Servable(name, 0, version_dir)
    sig = servable.signature_defs[contract.EXAMPLES_SIGNATURE]
    fetch = [t.name for t in sig.outputs.values()]
    feed = sig.inputs["examples"].name
    for label, data in (("1", one), ("64", batch)):
        arr = np.array(data, dtype=object)
        sc[f"in_process_all_heads_batch{label}"] = common.percentiles(
            common.time_calls(lambda arr=arr: servable.run({feed: arr}, fetch), n_seq))
    servable.close_when_idle()

    port, rest_port = common.free_port(), common.free_port()
    dirs = [multi_dir, *(single_dirs or {}).values()]
    proc = start_server(dirs, port, os.path.join(work_dir, "server.log"), rest_port=rest_port)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        p1, p64 = _predict_request(name, one), _predict_request(name, batch)
        m1 = _multi_request(name, info, one)
        sc["grpc_predict_all_heads_batch1"] = common.percentiles(
            common.time_calls(lambda: stub.Predict(p1, timeout=10), n_seq))
        sc["grpc_multiinference_all_heads_batch1"] = common.percentiles(
            common.time_calls(lambda: stub.MultiInference(m1, timeout=10), n_seq))
        sc["grpc_predict_all_heads_batch64"] = common.percentiles(
            common.time_calls(lambda: stub.Predict(p64, timeout=10), n_seq // 4))
        sc["grpc_predict_all_heads_batch1_4clients"] = common.concurrent_load(
            lambda: stub.Predict(p1, timeout=10), 4, seconds)
        sc["grpc_multiinference_all_heads_batch1_4clients"] = common.concurrent_load(
            lambda: stub.MultiInference(m1, timeout=10), 4, seconds)
        load64 = common.concurrent_load(lambda: stub.Predict(p64, timeout=10), 4, seconds)
        load64["examples_per_s"] = load64["requests_per_s"] * len(batch)
        sc["grpc_predict_all_heads_batch64_4clients"] = load64
        if single_dirs:
            singles = [_predict_request(os.path.basename(d.rstrip("/")), one)
                       for d in single_dirs.values()]

            def round_trips() -> None:
                for r in singles:
                    stub.Predict(r, timeout=10)
            sc["grpc_single_task_models_batch1"] = common.percentiles(
                common.time_calls(round_trips, n_seq // 2))
            sc["grpc_single_task_models_batch1_4clients"] = common.concurrent_load(
                round_trips, 4, seconds)
            results["single_task_models"] = len(singles)
        channel.close()
        for label, data, n in (("1", one, n_seq), ("64", batch, n_seq // 4)):
            call, conn = _rest_predict(rest_port, name, data)
            sc[f"rest_predict_all_heads_batch{label}"] = common.percentiles(
                common.time_calls(call, n))
            conn.close()
        sc["quick_client_5_rows_fresh_process"] = common.percentiles(
            quick_client_wall(rows, name, port, rest_port, work_dir, 3 if quick else 10))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    logged_scenarios(multi_dir, work_dir, one, batch, n_seq, seconds, sc)
    results["grpc_overhead_p50_ms"] = (sc["grpc_predict_all_heads_batch1"]["p50_ms"]
                                       - sc["in_process_all_heads_batch1"]["p50_ms"])
    return results


def logged_scenarios(model_dir: str, work_dir: str, one: list[bytes], batch: list[bytes],
                     n_seq: int, seconds: float, sc: dict) -> None:
    """Predict, 1 and 64 examples, against a server that logs every request."""
    name = os.path.basename(model_dir.rstrip("/"))
    port = common.free_port()
    logs = os.path.join(work_dir, "request_logs")
    proc = start_server([model_dir], port, os.path.join(work_dir, "server_logged.log"), logs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            p1, p64 = _predict_request(name, one), _predict_request(name, batch)
            sc["grpc_predict_all_heads_batch1_logged"] = common.percentiles(
                common.time_calls(lambda: stub.Predict(p1, timeout=10), n_seq))
            load64 = common.concurrent_load(lambda: stub.Predict(p64, timeout=10), 4, seconds)
            load64["examples_per_s"] = load64["requests_per_s"] * len(batch)
            sc["grpc_predict_all_heads_batch64_4clients_logged"] = load64
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def summary(results: dict) -> str:
    sc = results["scenarios"]
    rows = []
    for key, v in sc.items():
        rows.append([key, v["p50_ms"], v["p99_ms"], v.get("requests_per_s", "-"),
                     v.get("examples_per_s", "-")])
    text = common.md_table(["scenario", "p50 ms", "p99 ms", "requests/s", "examples/s"], rows)
    text += (f"\n\ngRPC overhead over the in-process call (p50, 1 example): "
             f"{results['grpc_overhead_p50_ms']:.2f} ms")
    if "grpc_predict_all_heads_batch1_logged" in sc:
        p50 = (sc["grpc_predict_all_heads_batch1_logged"]["p50_ms"]
               / sc["grpc_predict_all_heads_batch1"]["p50_ms"])
        rate = (sc["grpc_predict_all_heads_batch64_4clients_logged"]["examples_per_s"]
                / sc["grpc_predict_all_heads_batch64_4clients"]["examples_per_s"])
        text += (f"\n\nRequest log on (every request written): {p50:.2f}x the p50 latency "
                 f"(1 example), {rate:.2f}x the throughput (64 examples, 4 clients)")
    if "rest_predict_all_heads_batch1" in sc:
        text += ("\n\nREST vs gRPC, Predict on the examples signature (p50/p99 ms): 1 example "
                 f"{sc['rest_predict_all_heads_batch1']['p50_ms']:.2f}/"
                 f"{sc['rest_predict_all_heads_batch1']['p99_ms']:.2f} vs "
                 f"{sc['grpc_predict_all_heads_batch1']['p50_ms']:.2f}/"
                 f"{sc['grpc_predict_all_heads_batch1']['p99_ms']:.2f}; 64 examples "
                 f"{sc['rest_predict_all_heads_batch64']['p50_ms']:.2f}/"
                 f"{sc['rest_predict_all_heads_batch64']['p99_ms']:.2f} vs "
                 f"{sc['grpc_predict_all_heads_batch64']['p50_ms']:.2f}/"
                 f"{sc['grpc_predict_all_heads_batch64']['p99_ms']:.2f}")
    if "quick_client_5_rows_fresh_process" in sc:
        quick = sc["quick_client_5_rows_fresh_process"]
        text += ("\n\nQuick client (`headwise predict --csv --rest-port`, no TensorFlow), 5 rows "
                 f"in a fresh process: {quick['p50_ms'] / 1e3:.2f} s p50, "
                 f"{quick['p99_ms'] / 1e3:.2f} s p99 wall ({quick['n']} runs)")
    if "grpc_single_task_models_batch1" in sc:
        ratio = (sc["grpc_predict_all_heads_batch1"]["p50_ms"]
                 / sc["grpc_single_task_models_batch1"]["p50_ms"])
        text += (f"\n\nAll heads in one request vs one request per single-task model "
                 f"({results['single_task_models']} round trips): {ratio:.2f}x the latency (p50)")
    return text
