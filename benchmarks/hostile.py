"""Hostile clients against `headwise serve --builtin` (REST and gRPC): what the server holds.

The server runs in its own process on a copy of the pushed model. Each scenario is one kind of
abuse, bounded in count and time, on 127.0.0.1 only:

  rest_slow_body       300 connections that send headers and 1 byte of a 1,000-byte body and
                       then nothing (the probe that took the old server from 18 to 318 threads)
  rest_huge_length     Content-Length: 100000000000 (the old server allocated it: MemoryError)
  rest_deep_json       100,000 nested `[` (the old server answered 500 "RecursionError")
  grpc_idle            300 TCP connections to the gRPC port, half silent, half stopped inside
                       HTTP/2's preface
  grpc_huge_shape      a Predict of a few bytes whose tensor is one value and a 10^12 shape
  grpc_concurrent      64 Predict calls at once (four times the handler threads), half of them
                       clients that give up after 1 ms

For each: the server's threads and RSS before, at the peak (sampled every 0.1 s) and after the
abuse ends; what the abusers were answered; and the latency of a healthy REST status call and a
healthy gRPC Predict made in the middle of it (the server must keep answering).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import grpc
import psutil
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as psg

from benchmarks import common
from benchmarks import serving as serving_bench
from components import pusher
from headwise import contract
from headwise import examples as examples_lib

SETTLE_S = 12.0  # after a scenario: past the REST server's 10 s request deadline


def _status(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


def _read_all(sock: socket.socket, wait: float) -> bytes:
    sock.settimeout(wait)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


class _Sampler:
    """The server process's threads and RSS every 0.1 s, in a thread of its own."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> tuple[int, float]:
        return self.process.num_threads(), self.process.memory_info().rss / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.now())
            time.sleep(0.1)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(model_dir: str, csv_path: str, work_dir: str) -> dict:
    version_dir = serving_bench.latest_version_dir(model_dir)
    name = os.path.basename(model_dir.rstrip("/"))
    shutil.rmtree(work_dir, ignore_errors=True)
    base = os.path.join(work_dir, "serving", name)
    pusher.push_model(version_dir, base, source="hostile")
    info = examples_lib.read_model_info(version_dir)
    with open(csv_path, newline="") as fh:
        rows = [r for _, r in zip(range(8), csv.DictReader(fh), strict=False)]
    healthy_request = serving_bench._predict_request(
        name, examples_lib.to_examples(rows, info["features"]))
    port, rest_port = common.free_port(), common.free_port()
    proc = serving_bench.start_server([base], port, os.path.join(work_dir, "server.log"),
                                      rest_port=rest_port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = psg.PredictionServiceStub(channel)
    status_url = f"http://127.0.0.1:{rest_port}/v1/models/{name}"

    def healthy() -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        started = time.monotonic()
        try:
            with urllib.request.urlopen(status_url, timeout=30) as response:
                response.read()
            out["rest_status_ms"] = 1000 * (time.monotonic() - started)
        except OSError as e:
            out["rest_status_ms"] = f"failed: {e}"
        started = time.monotonic()
        try:
            stub.Predict(healthy_request, timeout=30)
            out["grpc_predict_ms"] = 1000 * (time.monotonic() - started)
        except grpc.RpcError as e:
            out["grpc_predict_ms"] = f"failed: {e.code().name}"
        return out

    def post(length: str, body: bytes = b"") -> bytes:
        return (f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Content-Length: {length}\r\n\r\n").encode() + body

    def hold_sockets(target_port: int, n: int, payload: Callable[[int], bytes]) -> Counter:
        """n connections, each sent payload(i) and held open through a healthy call; then what
        each was answered once the server's deadline passed."""
        sockets = []
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", target_port), timeout=10)
            if payload(i):
                sock.sendall(payload(i))
            sockets.append(sock)
        during.update(healthy())
        answers: Counter = Counter()
        deadline = time.monotonic() + SETTLE_S
        for sock in sockets:
            answers[_status(_read_all(sock, max(0.05, deadline - time.monotonic())))] += 1
            sock.close()
        return answers

    def one_shot(target_port: int, n: int, data: bytes) -> Counter:
        answers: Counter = Counter()
        for i in range(n):
            with socket.create_connection(("127.0.0.1", target_port), timeout=10) as sock:
                sock.sendall(data)
                answers[_status(_read_all(sock, 10))] += 1
            if i == n // 2:
                during.update(healthy())
        return answers

    def huge_shape(n: int) -> Counter:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
            name=name, signature_name=contract.EXAMPLES_SIGNATURE))
        tensor = request.inputs["examples"]
        tensor.dtype = types_pb2.DT_STRING
        tensor.tensor_shape.dim.add(size=10**12)
        tensor.string_val.append(b"")
        answers: Counter = Counter()
        for i in range(n):
            try:
                stub.Predict(request, timeout=30)
                answers["OK"] += 1
            except grpc.RpcError as e:
                answers[e.code().name] += 1
            if i == n // 2:
                during.update(healthy())
        return answers

    def concurrent(n: int) -> Counter:
        answers: Counter = Counter()
        lock = threading.Lock()

        def one(i: int) -> None:
            try:
                stub.Predict(healthy_request, timeout=0.001 if i % 2 else 60)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            with lock:
                answers[code] += 1

        callers = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in callers:
            t.start()
        during.update(healthy())
        for t in callers:
            t.join()
        return answers

    preface = b"PRI * HTTP/2.0\r\n"
    scenarios: dict[str, Callable[[], Counter]] = {
        "rest_slow_body": lambda: hold_sockets(rest_port, 300, lambda i: post("1000", b"{")),
        "rest_huge_length": lambda: one_shot(rest_port, 20, post("100000000000")),
        "rest_deep_json": lambda: one_shot(
            rest_port, 20, post(str(14 + 100_000), b'{"instances": ' + b"[" * 100_000)),
        "grpc_idle": lambda: hold_sockets(port, 300, lambda i: preface if i % 2 else b""),
        "grpc_huge_shape": lambda: huge_shape(20),
        "grpc_concurrent": lambda: concurrent(64),
    }
    results: dict = {"model": name, "commit": common.commit(), "scenarios": {}}
    try:
        healthy()  # the first call pays for the graph's first run
        for scenario, abuse in scenarios.items():
            time.sleep(1.0)
            during: dict = {}
            with _Sampler(proc.pid) as sampler:
                before = sampler.now()
                started = time.monotonic()
                answers = abuse()
                seconds = time.monotonic() - started
                time.sleep(1.0)
                after = sampler.now()
            threads = [t for t, _ in sampler.samples] or [before[0]]
            rss = [m for _, m in sampler.samples] or [before[1]]
            results["scenarios"][scenario] = {
                "answers": dict(answers), "seconds": seconds, "healthy_during": during,
                "threads": {"before": before[0], "peak": max(threads), "after": after[0]},
                "rss_mib": {"before": before[1], "peak": max(rss), "after": after[1]},
            }
            print(f"  {scenario}: {dict(answers)}; threads {before[0]} -> peak {max(threads)} "
                  f"-> {after[0]}; RSS {before[1]:.0f} -> {max(rss):.0f} -> {after[1]:.0f} MiB; "
                  f"healthy {json.dumps(during)}", flush=True)
    finally:
        channel.close()
        proc.terminate()
        proc.wait(timeout=30)
    return results


def summary(r: dict) -> str:
    rows = []
    for name, s in r["scenarios"].items():
        healthy = s["healthy_during"]
        cells = [f"{v:.0f}" if isinstance(v, float) else str(v)
                 for v in (healthy.get("rest_status_ms"), healthy.get("grpc_predict_ms"))]
        rows.append([name, ", ".join(f"{k}: {v}" for k, v in sorted(s["answers"].items())),
                     f"{s['threads']['before']} / {s['threads']['peak']} / "
                     f"{s['threads']['after']}",
                     f"{s['rss_mib']['before']:.0f} / {s['rss_mib']['peak']:.0f} / "
                     f"{s['rss_mib']['after']:.0f}", *cells])
    return (f"`headwise bench --only hostile` at commit {r.get('commit', '?')}: `headwise serve "
            "--builtin` in its own process, abused one scenario at a time "
            "(benchmarks/hostile.py); threads and RSS of the server before / at the peak / "
            "1 s after; a healthy call's latency in the middle of the abuse.\n\n"
            + common.md_table(["scenario", "abusers were answered", "threads",
                               "RSS MiB", "healthy REST ms", "healthy gRPC ms"], rows))
