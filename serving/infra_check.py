"""The infra check: load a candidate model in a model server and send it real requests on every
signature a client uses, before it may be pushed (TFX's InfraValidator, done locally).

`python -m serving.infra_check --model DIR --examples FILE... --output RESULT.json` is run as a
child process by the pipeline's InfraCheck component (components/infra_check.py), so the model
is loaded and queried in a process of its own, never in the pipeline's:
  * the server is `tensorflow_model_server` where it is on PATH (as production runs it; it binds
    every interface, on free ports), the built-in server (`serving.server.start`, loopback)
    otherwise. Either serves the candidate as version 1 of a base directory made for the check;
  * the requests carry the first `--count` tf.Examples of the files given (the test split), as
    they are: TF Serving ignores the label columns in them;
  * every signature a client uses is called, each through every API that reaches it: gRPC
    GetModelStatus, GetModelMetadata, Predict (model_info, the examples signature, the same rows
    as plain tensors to serving_default, which must answer the same, transform_features),
    Classify or Regress per head (its classify_/regress_ signature), one MultiInference over
    every head, and REST (model status, metadata, :predict on the examples as base64 and on
    the same rows as plain JSON naming no signature, as a REST client sends them,
    :classify/:regress per head with the examples as JSON objects);
  * an answer must have one result per example and only finite numbers;
  * once every call has passed, TF Serving's warm-up file (serving/warmup.py: one request per
    call a client makes, on the same examples) is replayed, the check's last call: the binary
    loads the candidate again as a second version with the file, replaying it while loading;
    the built-in server's replay (what it runs while loading a version) runs on the version it
    has loaded. `--warmup PATH` keeps that file, for the Pusher to put into the pushed version;
  * everything runs under one time limit (`--timeout`), loading included.
The result file lists every call (API, signature, passed, error, seconds) and says which server
ran; the exit status is 0 when every call passed, 1 when one failed, 2 when the check could not
run (no model, no examples).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from headwise import contract, tasks
from headwise import examples as examples_lib
from serving import rest_client, tensors, warmup
from serving import server as server_lib
from serving.client import HeadwiseClient
from serving.dataplane import DataPlane
from serving.predictions import ClientError, task_of

log = logging.getLogger("headwise.infra_check")

MODEL_NAME = "candidate"
VERSION = 1
WARM_VERSION = 2  # the candidate again, with its warm-up file, loaded after every call passed
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


class CheckFailed(Exception):
    """One call's answer was wrong (an error from the server is a grpc.RpcError or HTTP error)."""


def read_examples(files: Sequence[str], count: int) -> list[bytes]:
    """The first `count` serialized tf.Examples of the TFRecord files (gzip or not: ExampleGen
    writes .gz), in file order."""
    import tensorflow as tf

    out: list[bytes] = []
    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            out.append(record.numpy())
            if len(out) == count:
                return out
    return out


def example_json(serialized: bytes) -> dict[str, Any]:
    """A tf.Example as TF Serving's REST :classify/:regress take it: {feature: value or list};
    bytes that are not UTF-8 text go as {"b64": ...} (json_tensor.cc)."""
    from tensorflow.core.example import example_pb2

    out: dict[str, Any] = {}
    for name, feature in example_pb2.Example.FromString(serialized).features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        values = list(getattr(feature, kind).value)
        if kind == "bytes_list":
            values = [examples_lib.json_bytes(v) for v in values]
        if values:
            out[name] = values[0] if len(values) == 1 else values
    return out


def _finite(values, what: str) -> None:
    array = np.asarray(values, dtype=np.float64)
    if array.size and not np.all(np.isfinite(array)):
        raise CheckFailed(f"{what}: {int(np.sum(~np.isfinite(array)))} of {array.size} values "
                          "are not finite")


def _same_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """The plain-features signature's outputs against the examples signature's for the same
    rows."""
    if set(got) != set(want):
        raise CheckFailed(f"outputs {sorted(got)}, the examples signature gives {sorted(want)}")
    for name, values in want.items():
        values = np.asarray(values, np.float64)
        answer = np.asarray(got[name], np.float64)
        if answer.shape != values.shape:
            raise CheckFailed(f"output {name!r} has shape {answer.shape}, the examples "
                              f"signature's {values.shape}")
        if not np.allclose(answer, values, rtol=1e-4, atol=1e-5, equal_nan=True):
            worst = float(np.nanmax(np.abs(answer - values)))
            raise CheckFailed(f"output {name!r} differs from the examples signature's for the "
                              f"same rows (by up to {worst:.3g})")


def _count(n: int, expected: int, what: str) -> None:
    if n != expected:
        raise CheckFailed(f"{what}: {n} results for {expected} examples")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Checker:
    """The calls of one check, against a server at host:port (gRPC) and rest_port (REST)."""

    def __init__(self, host: str, port: int, rest_port: int, examples: list[bytes],
                 deadline: float):
        self.host, self.port, self.rest_port = host, port, rest_port
        self.examples, self.deadline = examples, deadline
        self.client = HeadwiseClient(host, port, MODEL_NAME)
        self.calls: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}  # the model's description, once read

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())

    def call(self, api: str, signature: str, fn: Callable[[], None]) -> bool:
        """Run one check; record it, with the server's error or the wrong answer."""
        start = time.monotonic()
        error = ""
        if time.monotonic() >= self.deadline:
            error = "not run: the check's time limit was reached"
        else:
            self.client.timeout = self.remaining()
            try:
                fn()
            except grpc.RpcError as e:
                error = f"{e.code().name}: {e.details()}"
            except ClientError as e:  # the gRPC client's own wrapping of an RpcError
                error = str(e)
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}: {rest_client.error_message(e)}"
            except Exception as e:  # noqa: BLE001 - any failure of the call is the verdict
                error = f"{type(e).__name__}: {e}"
        self.calls.append({"api": api, "signature": signature, "passed": not error,
                           "error": error, "seconds": round(time.monotonic() - start, 3)})
        if error:
            log.error("%s %s: %s", api, signature or "-", error)
        return not error

    # --- gRPC ----------------------------------------------------------------------------
    def wait_until_available(self, server: subprocess.Popen | None, version: int | None = None
                             ) -> None:
        """Until the model (`version` of it, if given) is AVAILABLE; its load error if the
        server gave up on it."""
        stub = model_service_pb2_grpc.ModelServiceStub(self.client.channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL_NAME
        while True:
            if server is not None and server.poll() is not None:
                raise CheckFailed(f"the model server exited with status {server.returncode} "
                                  "before the model was available")
            try:
                response = stub.GetModelStatus(request, timeout=min(5.0, self.remaining()))
                states = [s for s in response.model_version_status
                          if version is None or s.version == version]
                if any(s.state == AVAILABLE for s in states):
                    return
                failed = [s.status.error_message for s in states
                          if s.state == END and s.status.error_message]
                if failed:
                    raise CheckFailed(f"the model did not load: {failed[0]}")
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                                    grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
            if time.monotonic() >= self.deadline:
                raise CheckFailed("the model was not available within the time limit")
            time.sleep(0.2)

    def predict(self, signature: str, input_name: str | None, with_examples: bool = True,
                finite: bool = True) -> dict[str, np.ndarray]:
        request = warmup.predict(MODEL_NAME, signature, input_name, self.examples)
        response = self.client.stub.Predict(request, timeout=self.remaining())
        out = {k: tensors.from_proto(v, k) for k, v in response.outputs.items()}
        if with_examples:
            for name, value in out.items():
                _count(value.shape[0] if value.ndim else 1, len(self.examples),
                       f"output {name!r}")
                if finite and value.dtype.kind in "fiu":
                    _finite(value, f"output {name!r}")
        return out

    def predict_features(self, by_example: dict[str, np.ndarray]) -> None:
        """Predict on the plain-features signature with the examples' values as plain tensors:
        the same outputs as the examples signature gave for the examples themselves."""
        request = warmup.predict_features(MODEL_NAME, self.info, self.examples)
        response = self.client.stub.Predict(request, timeout=self.remaining())
        _same_outputs({k: tensors.from_proto(v, k) for k, v in response.outputs.items()},
                      by_example)

    def rest_predict_features(self, by_example: dict[str, np.ndarray]) -> None:
        """The same over REST, as plain JSON rows (NaN for a missing number); naming no
        signature where the plain one is the default, as a REST client sends it."""
        columns = warmup.plain_columns(self.info, self.examples)
        instances = [{k: (examples_lib.json_bytes(v[i]) if v.dtype == object else v[i].item())
                      for k, v in columns.items()} for i in range(len(self.examples))]
        body: dict[str, Any] = {"instances": instances}
        if self.info["features_signature"]["name"] != contract.DEFAULT_SIGNATURE:
            body["signature_name"] = self.info["features_signature"]["name"]
        answer = self.rest("POST", ":predict", body)
        rows = answer["predictions"]
        if len(by_example) == 1:  # one output: TF Serving writes it bare
            rows = [{next(iter(by_example)): r} for r in rows]
        _count(len(rows), len(self.examples), "predictions")
        _same_outputs({k: np.array([r[k] for r in rows], np.float32) for k in by_example},
                      by_example)

    def classify(self, signature: str) -> None:
        request = warmup.classify(MODEL_NAME, signature, self.examples)
        result = self.client.stub.Classify(request, timeout=self.remaining()).result
        _count(len(result.classifications), len(self.examples), "classifications")
        _finite([c.score for r in result.classifications for c in r.classes], "scores")

    def regress(self, signature: str) -> None:
        request = warmup.regress(MODEL_NAME, signature, self.examples)
        result = self.client.stub.Regress(request, timeout=self.remaining()).result
        _count(len(result.regressions), len(self.examples), "regressions")
        _finite([r.value for r in result.regressions], "values")

    def multi_inference(self, heads: list[dict]) -> None:
        response = self.client.multi_inference(self.examples, heads)
        _count(len(response.results), len(heads), "MultiInference results (one per head)")
        for head, result in zip(heads, response.results, strict=True):
            if task_of(head).signature == tasks.REGRESS:
                values = [r.value for r in result.regression_result.regressions]
            else:
                values = [c.score for r in result.classification_result.classifications
                          for c in r.classes]
                _count(len(result.classification_result.classifications), len(self.examples),
                       f"head {head['name']!r}")
            _finite(values, f"head {head['name']!r}")

    # --- REST ----------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        url = f"http://{self.host}:{self.rest_port}/v1/models/{MODEL_NAME}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.remaining()) as response:
            return json.loads(response.read())

    def rest_predict(self, signature: str) -> None:
        answer = self.rest("POST", ":predict", {
            "signature_name": signature,
            "instances": [{"b64": base64.b64encode(s).decode()} for s in self.examples]})
        _count(len(answer["predictions"]), len(self.examples), "predictions")
        _finite(_numbers(answer["predictions"]), "predictions")

    def rest_classify_regress(self, verb: str, signature: str) -> None:
        answer = self.rest("POST", f":{verb}", {
            "signature_name": signature, "examples": [example_json(s) for s in self.examples]})
        _count(len(answer["results"]), len(self.examples), "results")
        _finite(_numbers(answer["results"]), "results")

    def run(self) -> None:
        """Every call, in the order a client makes them; a failed call does not stop the
        others (the result names each failure)."""
        info = self.info

        def read_info() -> None:
            out = self.predict(contract.MODEL_INFO_SIGNATURE, None, with_examples=False)
            info.update(json.loads(out[contract.MODEL_INFO_OUTPUT].item()))
            if not info.get("heads"):
                raise CheckFailed("the model's description lists no heads")

        self.call("gRPC GetModelMetadata", "", lambda: self.client.signatures())
        if not self.call("gRPC Predict", contract.MODEL_INFO_SIGNATURE, read_info):
            return  # without the model's description no head can be checked
        heads = info["heads"]
        by_example: dict[str, np.ndarray] = {}
        examples = contract.examples_signature(info)
        self.call("gRPC Predict", examples, lambda: by_example.update(
            self.predict(examples, contract.SERVING_INPUT)))
        plain = info.get("features_signature", {}).get("name")  # older models have none
        if plain and by_example:
            self.call("gRPC Predict", plain, lambda: self.predict_features(by_example))
        self.call("gRPC Predict", contract.TRANSFORM_FEATURES_SIGNATURE,
                  # a missing label is NaN there, by design: counts only
                  lambda: self.predict(contract.TRANSFORM_FEATURES_SIGNATURE,
                                       contract.SERVING_INPUT, finite=False))
        for head in heads:
            signature = head["signature"]
            if task_of(head).signature == tasks.REGRESS:
                self.call("gRPC Regress", signature, lambda s=signature: self.regress(s))
            else:
                self.call("gRPC Classify", signature, lambda s=signature: self.classify(s))
        self.call("gRPC MultiInference", ", ".join(h["signature"] for h in heads),
                  lambda: self.multi_inference(heads))
        self.call("REST GET status", "", lambda: self.rest("GET", ""))
        self.call("REST GET metadata", "", lambda: self.rest("GET", "/metadata"))
        self.call("REST :predict", examples, lambda: self.rest_predict(examples))
        if plain and by_example:
            self.call("REST :predict", plain, lambda: self.rest_predict_features(by_example))
        for head in heads:
            verb = "regress" if task_of(head).signature == tasks.REGRESS else "classify"
            self.call(f"REST :{verb}", head["signature"],
                      lambda v=verb, s=head["signature"]: self.rest_classify_regress(v, s))


def _numbers(value: Any) -> list[float]:
    """Every number in a JSON answer (nested lists and objects); NaN/Infinity included."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def _stage(model: str, work: str) -> str:
    """A base directory that serves the candidate as version VERSION: a link to a local model,
    a copy of one on an object store (gs://...: Kubeflow's artifacts)."""
    base = os.path.join(work, MODEL_NAME)
    os.makedirs(base)
    version = os.path.join(base, str(VERSION))
    if "://" not in model:
        os.symlink(os.path.abspath(model), version)
        return base
    import tensorflow as tf

    for d, _, files in tf.io.gfile.walk(model):
        local = os.path.join(version, os.path.relpath(d, model))
        os.makedirs(local, exist_ok=True)
        for f in files:
            tf.io.gfile.copy(os.path.join(d, f), os.path.join(local, f))
    return base


def _stage_warm(base: str, logs: list) -> str:
    """Version WARM_VERSION beside VERSION: the same files (links) plus TF Serving's warm-up
    file, which the server replays while it loads the version, as it will after the push.
    The file's path."""
    source = os.path.realpath(os.path.join(base, str(VERSION)))
    version = os.path.join(base, str(WARM_VERSION))
    extra_dir = os.path.dirname(warmup.FILE)  # assets.extra
    os.makedirs(os.path.join(version, extra_dir))
    for entry in os.listdir(source):
        if entry != extra_dir:
            os.symlink(os.path.join(source, entry), os.path.join(version, entry))
    if os.path.isdir(os.path.join(source, extra_dir)):
        for f in os.listdir(os.path.join(source, extra_dir)):
            if f != os.path.basename(warmup.FILE):  # one the model came with is replaced
                os.symlink(os.path.join(source, extra_dir, f),
                           os.path.join(version, extra_dir, f))
    path = os.path.join(version, warmup.FILE)
    warmup.write(path, logs)
    return path


def check(model: str, examples: list[bytes], timeout: float, binary: str | None = None,
          warmup_output: str | None = None) -> dict[str, Any]:
    """Serve `model` and run every call against it; the result (see the module doc). The
    warm-up file the server replayed is copied to `warmup_output` if every call passed."""
    start = time.monotonic()
    deadline = start + timeout
    result: dict[str, Any] = {"model": model, "examples": len(examples), "calls": []}
    with tempfile.TemporaryDirectory(prefix="headwise-infra-check-") as work:
        base = _stage(model, work)
        # the binary needs ports named up front; the built-in server picks free ones itself
        port, rest_port = (free_port(), free_port()) if binary else (0, 0)
        process = running = None
        if binary:
            result["server"] = binary
            cmd = server_lib.model_server_command(binary, base, MODEL_NAME, port, 1.0,
                                                  rest_port)
            stderr = open(os.path.join(work, "server.log"), "w+b")  # noqa: SIM115 - read below
            process = subprocess.Popen(cmd, stdout=stderr, stderr=subprocess.STDOUT)
        else:
            result["server"] = "the built-in model server"
            running = server_lib.start(base, MODEL_NAME, server_lib.LOOPBACK, port,
                                       poll_seconds=0.5, rest_port=rest_port)
            port, rest_port = running.port, running.rest_port
        checker = Checker("127.0.0.1", port, rest_port, examples, deadline)
        try:
            if checker.call("gRPC GetModelStatus", "",
                            lambda: checker.wait_until_available(process)):
                checker.run()
            if checker.calls and all(c["passed"] for c in checker.calls):
                # the heads of the model's description, as the server gave it (model_info)
                logs = warmup.requests(checker.info.get("pipeline") or MODEL_NAME,
                                       checker.info, examples)
                result["warmup_records"] = len(logs)
                if process is not None:  # the binary loads the version with the file
                    warm_file = _stage_warm(base, logs)
                    checker.call(f"load with TF Serving's warm-up file ({len(logs)} requests)",
                                 "", lambda: checker.wait_until_available(process, WARM_VERSION))
                else:
                    # The built-in server replays a version's file with warmup.replay while it
                    # loads it; here the same replay runs on the version already loaded (a
                    # second load of the same model with the file cost 8 s of census' check).
                    warm_file = os.path.join(work, os.path.basename(warmup.FILE))
                    warmup.write(warm_file, logs)
                    checker.call(
                        f"replay TF Serving's warm-up file ({len(logs)} requests)", "",
                        lambda: warmup.replay(DataPlane(running.managers), MODEL_NAME,
                                              warmup.read(warm_file)))
        finally:
            checker.client.close()
            if running is not None:
                running.stop()
            if process is not None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                stderr.seek(0)
                tail = stderr.read()[-4000:].decode(errors="replace")
                stderr.close()
                if not all(c["passed"] for c in checker.calls):
                    result["server_log"] = tail
        result["calls"] = checker.calls
        result["passed"] = bool(checker.calls) and all(c["passed"] for c in checker.calls)
        if warmup_output and result["passed"]:
            shutil.copyfile(warm_file, warmup_output)
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """One line per failed call: the API, the signature and the error."""
    return [f"{c['api']} {c['signature']}: {c['error']}".replace("  ", " ")
            for c in result.get("calls", []) if not c["passed"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.infra_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the SavedModel directory")
    parser.add_argument("--examples", nargs="+", required=True,
                        help="TFRecord files of serialized tf.Examples (.gz: gzip)")
    parser.add_argument("--count", type=int, default=32, help="examples per request")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds for the whole check, loading included")
    parser.add_argument("--output", required=True, help="the result, JSON")
    parser.add_argument("--warmup", help="where to copy TF Serving's warm-up file that the "
                                         "server replayed at load, if every call passed")
    parser.add_argument("--builtin", action="store_true",
                        help=f"the built-in server even where {server_lib.MODEL_SERVER_BINARY} "
                             "is on PATH")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="infra check: %(message)s")
    if "://" not in args.model and not os.path.isdir(args.model):
        log.error("no model directory %s", args.model)
        return 2
    examples = read_examples(args.examples, args.count)
    if not examples:
        log.error("no examples in %s: the check needs at least one", ", ".join(args.examples))
        return 2
    binary = None if args.builtin else shutil.which(server_lib.MODEL_SERVER_BINARY)
    try:
        result = check(args.model, examples, args.timeout, binary, args.warmup)
    except Exception as e:  # noqa: BLE001 - the server did not start: that is the verdict
        result = {"model": args.model, "examples": len(examples), "passed": False,
                  "calls": [{"api": "start the model server", "signature": "", "passed": False,
                             "error": f"{type(e).__name__}: {e}", "seconds": 0.0}]}
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, args.output)
    for line in failures(result):
        log.error("FAILED %s", line)
    log.info("%s: %d calls on %d examples, %s, %.1f s", "passed" if result["passed"]
             else "FAILED", len(result["calls"]), len(examples), result.get("server", "no"),
             result.get("seconds", 0.0))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
