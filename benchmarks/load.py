"""Serving under load while a new version lands (reliability, not speed).

`headwise serve --builtin` in its own process on a copy of the pushed model; 16 client threads
send a fixed mix of requests: well-formed Predict and MultiInference (all heads), and malformed
ones (mistyped input, bytes that are not a tf.Example, an unknown input name, an empty
MultiInference). A third of the way through, the Pusher publishes a new version. Counted:
failed well-formed requests (must be 0), malformed ones not answered with INVALID_ARGUMENT (must
be 0), the versions that answered, how long after the push the new version answered, and the
server's memory over time (flat once the new version has replaced the old).
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import threading
import time

import grpc
import numpy as np
import psutil
from tensorflow_serving.apis import model_pb2, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as psg

from benchmarks import common
from benchmarks import serving as serving_bench
from components import pusher
from headwise import contract
from headwise import examples as examples_lib
from serving import tensors

MAX_EXTRA_SECONDS = 120  # a run keeps going until the new version answered, at most this long


def _requests(name: str, info: dict, rows: list[dict]) -> dict[str, list]:
    one = examples_lib.to_examples(rows[:1], info["features"])
    eight = examples_lib.to_examples(rows[:8], info["features"])
    good = [("Predict", serving_bench._predict_request(name, one)),
            ("Predict", serving_bench._predict_request(name, eight)),
            ("MultiInference", serving_bench._multi_request(name, info, one)),
            ("MultiInference", serving_bench._multi_request(name, info, eight))]
    mistyped = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name=name, signature_name=contract.EXAMPLES_SIGNATURE))
    mistyped.inputs["examples"].CopyFrom(tensors.to_proto(np.array([1.0, 2.0], np.float32)))
    garbage = serving_bench._predict_request(name, [b"\xff\x00 not an Example"])
    wrong_name = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name=name, signature_name=contract.EXAMPLES_SIGNATURE))
    wrong_name.inputs["inputs"].CopyFrom(tensors.to_proto(np.array(one, dtype=object)))
    empty = serving_bench._multi_request(name, info, [])
    bad = [("Predict", mistyped), ("Predict", garbage), ("Predict", wrong_name),
           ("MultiInference", empty)]
    return {"good": good, "bad": bad}


def run(model_dir: str, csv_path: str, work_dir: str, total: int = 20_000, clients: int = 16,
        bad_fraction: float = 0.05) -> dict:
    version_dir = serving_bench.latest_version_dir(model_dir)
    name = os.path.basename(model_dir.rstrip("/"))
    shutil.rmtree(work_dir, ignore_errors=True)
    base = os.path.join(work_dir, "serving", name)
    first = pusher.push_model(version_dir, base, source="load-test-v1")
    info = examples_lib.read_model_info(version_dir)
    with open(csv_path, newline="") as fh:
        rows = [r for _, r in zip(range(8), csv.DictReader(fh), strict=False)]
    reqs = _requests(name, info, rows)
    port = common.free_port()
    proc = serving_bench.start_server([base], port, os.path.join(work_dir, "server.log"))
    server = psutil.Process(proc.pid)
    memory: list[tuple[float, float]] = []
    done = threading.Event()

    def sample_memory() -> None:
        while not done.is_set():
            memory.append((time.monotonic(), server.memory_info().rss / 2**20))
            time.sleep(0.25)

    counters = {"good": 0, "good_failed": 0, "bad": 0, "bad_invalid_argument": 0}
    failures: list[str] = []
    versions: dict[int, int] = {}
    first_answer: dict[int, float] = {}
    lock = threading.Lock()
    counter = iter(range(10**9))  # next() on a shared iterator is atomic under the GIL
    pushed: dict = {}
    deadline = time.monotonic() + MAX_EXTRA_SECONDS

    def requests_left():
        """Request indices: `total` of them, and more until the new version has answered (a
        short run must still see the swap), but never past the deadline."""
        for i in counter:
            v2 = pushed.get("v2")
            since = first_answer.get(v2.version) if v2 is not None else None
            swapped = since is not None and time.monotonic() - since > 3.0  # steady state seen
            if i >= total and (swapped or time.monotonic() > deadline):
                return
            yield i

    def client(seed: int) -> None:
        rng = random.Random(seed)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = psg.PredictionServiceStub(channel)
        for i in requests_left():
            if i == total // 3 and not pushed:  # a new version lands
                pushed["v2"] = pusher.push_model(version_dir, base, source="load-test-v2")
                pushed["at"] = time.monotonic()
            kind = "bad" if rng.random() < bad_fraction else "good"
            method, req = rng.choice(reqs[kind])
            try:
                resp = getattr(stub, method)(req, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code, resp = e.code(), e.details()
            with lock:
                counters[kind] += 1
                if kind == "good":
                    if code != grpc.StatusCode.OK:
                        counters["good_failed"] += 1
                        failures.append(f"{method}: {code.name}: {resp}")
                    else:
                        v = (resp.model_spec.version.value if method == "Predict"
                             else resp.results[0].model_spec.version.value)
                        versions[v] = versions.get(v, 0) + 1
                        first_answer.setdefault(v, time.monotonic())
                elif code == grpc.StatusCode.INVALID_ARGUMENT:
                    counters["bad_invalid_argument"] += 1
                else:
                    failures.append(f"malformed {method}: {code.name}: {resp}")
        channel.close()

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    proc.terminate()
    proc.wait(timeout=30)
    warm = [m for t, m in memory if t - start > elapsed * 0.1] or [m for _, m in memory]
    v2 = pushed["v2"].version
    switched = first_answer.get(v2)
    # Steady state: from 2 s after the new version answered (the old one is unloaded by then).
    steady = [m for t, m in memory if switched is not None and t > switched + 2.0]
    sent = counters["good"] + counters["bad"]
    return {
        "requests": sent, "clients": clients, "seconds": elapsed,
        "requests_per_s": sent / elapsed, **counters, "failures": failures[:20],
        "versions_answered": {str(k): v for k, v in sorted(versions.items())},
        "first_version": first.version, "pushed_version": pushed["v2"].version,
        "seconds_to_switch": (switched - pushed["at"]) if switched is not None else None,
        "server_rss_mib": {"after_warmup": warm[0], "end": warm[-1], "max": max(warm),
                           "steady_start": steady[0] if steady else None},
        "steady_memory_growth": (steady[-1] / steady[0]) if len(steady) > 1 else None,
    }


def summary(r: dict) -> str:
    switched = r["seconds_to_switch"] is not None
    ok = (r["good_failed"] == 0 and r["bad_invalid_argument"] == r["bad"] and switched)
    text = common.md_table(["", "value"], [
        ["requests (clients)", f"{r['requests']:,} ({r['clients']})"],
        ["well-formed / failed", f"{r['good']:,} / {r['good_failed']}"],
        ["malformed / answered INVALID_ARGUMENT", f"{r['bad']:,} / {r['bad_invalid_argument']:,}"],
        ["versions that answered (requests)", ", ".join(
            f"{k}: {v:,}" for k, v in r["versions_answered"].items())],
        ["new version answering after the push (s)",
         f"{r['seconds_to_switch']:.1f}" if switched else "never"],
        ["throughput (requests/s)", r["requests_per_s"]],
        ["server RSS MiB after warm-up / max / end",
         "{after_warmup:.0f} / {max:.0f} / {end:.0f}".format(**r["server_rss_mib"])],
        ["memory growth once the new version serves (end / 2 s after switch)",
         f"{r['steady_memory_growth']:.3f}x" if r["steady_memory_growth"] else "-"],
    ])
    verdict = "PASS" if ok else "FAIL"
    return text + (f"\n\nVerdict: **{verdict}** (version {r['pushed_version']} pushed a third of "
                   "the way through; the old one is unloaded once its requests finish).")
