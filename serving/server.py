"""`headwise serve`: TF Serving's gRPC API for a pushed model directory.

When `tensorflow_model_server` is on PATH (the official `tensorflow/serving` image), that binary is
run. Otherwise this module serves the same API itself: the servicers below only convert between
gRPC and `DataPlane`, which holds TF Serving's semantics; `create_server` returns an unstarted
server bound to the given address (loopback unless told otherwise).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.dataplane import DataPlane, ServingError
from serving.request_log import RequestLog
from serving.servable import VersionManager

log = logging.getLogger("headwise.serving")

DEFAULT_PORT = 8500
LOOPBACK = "127.0.0.1"
MAX_MESSAGE_BYTES = 2**31 - 1  # tensorflow_model_server's limit (INT_MAX)
MODEL_SERVER_BINARY = "tensorflow_model_server"


def _call(method):
    """Servicer method -> DataPlane call; ServingError becomes the gRPC status."""
    def handler(self, request, context):
        try:
            return method(self.plane, request)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - a bad request must never take the server down
            log.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    handler.__name__ = method.__name__
    return handler


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane

    Predict = _call(DataPlane.predict)
    Classify = _call(DataPlane.classify)
    Regress = _call(DataPlane.regress)
    MultiInference = _call(DataPlane.multi_inference)
    GetModelMetadata = _call(DataPlane.get_model_metadata)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane

    GetModelStatus = _call(DataPlane.get_model_status)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802 - gRPC method name
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "headwise serves one model directory; restart with another --model-dir")


@dataclass
class RunningServer:
    server: grpc.Server
    managers: list[VersionManager]
    port: int
    request_log: RequestLog | None = None

    @property
    def manager(self) -> VersionManager:
        return self.managers[0]

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
        if self.request_log is not None:
            self.request_log.close()  # after the last request: the last file is complete
        for m in self.managers:
            m.stop()


def create_server(managers: list[VersionManager], host: str = LOOPBACK, port: int = DEFAULT_PORT,
                  max_workers: int = 16, request_log: RequestLog | None = None
                  ) -> tuple[grpc.Server, int]:
    """An unstarted gRPC server with both services; port 0 picks a free one (returned)."""
    plane = DataPlane(managers, request_log)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(plane), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(plane), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port} (in use, or not an address of this machine)")
    return server, bound


def model_name_of(model_dir: str) -> str:
    return os.path.basename(os.path.abspath(model_dir).rstrip("/"))


def start(model_dirs: str | list[str], model_name: str | None = None, host: str = LOOPBACK,
          port: int = 0, poll_seconds: float = 1.0, max_workers: int = 16,
          request_log_dir: str | None = None, sampling_rate: float = 1.0) -> RunningServer:
    """Load the latest version under each model dir and serve them (named by their directory,
    or model_name for a single dir); returns once the port is open. With request_log_dir,
    sampled requests are logged there (serving/request_log.py) for the skew check."""
    dirs = [model_dirs] if isinstance(model_dirs, str) else list(model_dirs)
    names = [model_name] if model_name and len(dirs) == 1 else [model_name_of(d) for d in dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"two model directories have the same name: {names}")
    managers = [VersionManager(n, os.path.abspath(d), poll_seconds)
                for n, d in zip(names, dirs, strict=True)]
    request_log = RequestLog(request_log_dir, sampling_rate) if request_log_dir else None
    for m in managers:
        m.start()
    server, bound = create_server(managers, host, port, max_workers, request_log)
    server.start()
    return RunningServer(server, managers, bound, request_log)


def model_server_command(binary: str, model_dir: str, model_name: str, port: int,
                         poll_seconds: float) -> list[str]:
    return [binary, f"--port={port}", f"--model_name={model_name}",
            f"--model_base_path={os.path.abspath(model_dir)}",
            f"--file_system_poll_wait_seconds={max(1, round(poll_seconds))}"]


def serve_forever(model_dirs: list[str], model_name: str | None, host: str, port: int,
                  poll_seconds: float, builtin: bool, request_log_dir: str | None = None,
                  sampling_rate: float = 1.0) -> int:
    """The `headwise serve` command: the real binary if installed, else the built-in server."""
    for d in model_dirs:
        if not os.path.isdir(d):
            log.error("model directory %s does not exist (run `make run` first, or pass "
                      "--model-dir outputs/serving/<model_name>)", d)
            return 2
    binary = shutil.which(MODEL_SERVER_BINARY)
    if binary and not builtin and len(model_dirs) == 1 and not request_log_dir:
        if host != LOOPBACK:
            log.warning("%s binds every interface; --host is ignored", MODEL_SERVER_BINARY)
        cmd = model_server_command(binary, model_dirs[0],
                                   model_name or model_name_of(model_dirs[0]), port, poll_seconds)
        log.info("running %s", " ".join(cmd))
        return subprocess.call(cmd)
    if binary and request_log_dir and not builtin:
        log.info("--request-log-dir: serving with the built-in server, which writes the "
                 "request log itself (%s's logging_config needs a LogCollector compiled "
                 "into the binary)", MODEL_SERVER_BINARY)
    running = start(model_dirs, model_name, host, port, poll_seconds,
                    request_log_dir=request_log_dir, sampling_rate=sampling_rate)
    if running.request_log is not None:
        log.info("logging %.0f%% of requests to %s", 100 * sampling_rate, request_log_dir)
    for m in running.managers:
        if m.current_version is None:
            log.info("model %r: no version yet under %s; waiting for one", m.name, m.base_path)
    log.info("listening on %s:%d (gRPC); Ctrl-C stops", host, running.port)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    log.info("stopping")
    running.stop()
    return 0
