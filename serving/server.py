"""`headwise serve`: TF Serving's gRPC API (and, with --rest-port, its REST API) for a pushed
model directory.

The built-in server: the servicers below only convert between gRPC and `DataPlane`, which holds TF
Serving's semantics; `create_server` returns an unstarted gRPC server bound to the given address
(loopback unless told otherwise); `start` adds the REST API (`serving/rest.py`) on the same
address and plane.

`tensorflow_model_server` (the official `tensorflow/serving` image) is run instead when it is on
PATH, but only where that does what was asked: it binds gRPC on 0.0.0.0:<port>
(tensorflow_serving/model_servers/server.cc) and REST on [::]:<port>
(tensorflow_serving/util/net_http/server/internal/evhttp_server.cc; http_server.cc sets no
address) and has no flag to bind one address. So it runs for `--host 0.0.0.0` (or `::`) only;
any other --host, the loopback default included, is refused with the two ways out
(`binary_refusal`).
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

from serving import warmup
from serving.dataplane import DataPlane, ServingError
from serving.request_log import RequestLog
from serving.rest import RestServer, create_rest_server
from serving.servable import VersionManager

log = logging.getLogger("headwise.serving")

DEFAULT_PORT = 8500
LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = ("0.0.0.0", "::")  # what tensorflow_model_server binds (it takes no address)
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
    rest: RestServer | None = None

    @property
    def manager(self) -> VersionManager:
        return self.managers[0]

    @property
    def rest_port(self) -> int | None:
        """The REST API's port (None: not started)."""
        return self.rest.port if self.rest is not None else None

    def stop(self, grace: float = 1.0) -> None:
        if self.rest is not None:
            self.rest.stop()
        self.server.stop(grace).wait()
        if self.request_log is not None:
            self.request_log.close()  # after the last request: the last file is complete
        for m in self.managers:
            m.stop()


def create_server(managers: list[VersionManager], host: str = LOOPBACK, port: int = DEFAULT_PORT,
                  max_workers: int = 16, request_log: RequestLog | None = None,
                  plane: DataPlane | None = None) -> tuple[grpc.Server, int]:
    """An unstarted gRPC server with both services; port 0 picks a free one (returned)."""
    plane = plane or DataPlane(managers, request_log)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(plane), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(plane), server)
    bound = server.add_insecure_port(_address(host, port))
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port} (in use, or not an address of this machine)")
    return server, bound


def model_name_of(model_dir: str) -> str:
    return os.path.basename(os.path.abspath(model_dir).rstrip("/"))


def start(model_dirs: str | list[str], model_name: str | None = None, host: str = LOOPBACK,
          port: int = 0, poll_seconds: float = 1.0, max_workers: int = 16,
          request_log_dir: str | None = None, sampling_rate: float = 1.0,
          rest_port: int | None = None) -> RunningServer:
    """Load the latest version under each model dir and serve them (named by their directory,
    or model_name for a single dir); returns once the port is open. With request_log_dir,
    sampled requests are logged there (serving/request_log.py) for the skew check. With
    rest_port (0: a free one, `RunningServer.rest_port`), TF Serving's REST API is served on the
    same host from the same data plane."""
    dirs = [model_dirs] if isinstance(model_dirs, str) else list(model_dirs)
    names = [model_name] if model_name and len(dirs) == 1 else [model_name_of(d) for d in dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"two model directories have the same name: {names}")
    # Each version replays its TF Serving warm-up file at load, as the binary does.
    managers = [VersionManager(n, os.path.abspath(d), poll_seconds, warm_up=warmup.replay_file)
                for n, d in zip(names, dirs, strict=True)]
    request_log = RequestLog(request_log_dir, sampling_rate) if request_log_dir else None
    plane = DataPlane(managers, request_log)
    rest = create_rest_server(plane, host, rest_port) if rest_port is not None else None
    try:
        server, bound = create_server(managers, host, port, max_workers, plane=plane)
    except OSError:
        if rest is not None:
            rest.server_close()
        raise
    for m in managers:
        m.start()
    server.start()
    if rest is not None:
        rest.start()
    return RunningServer(server, managers, bound, request_log, rest)


def model_server_command(binary: str, model_dir: str, model_name: str, port: int,
                         poll_seconds: float, rest_port: int | None = None) -> list[str]:
    cmd = [binary, f"--port={port}", f"--model_name={model_name}",
           f"--model_base_path={os.path.abspath(model_dir)}",
           f"--file_system_poll_wait_seconds={max(1, round(poll_seconds))}"]
    if rest_port is not None:
        cmd.append(f"--rest_api_port={rest_port}")
    return cmd


def binary_refusal(host: str | None, port: int, rest_port: int | None) -> str:
    """Why tensorflow_model_server is not run for this --host, and the two ways out."""
    asked = f"--host {host}" if host else f"the default --host {LOOPBACK} (loopback only)"
    rest = f" and REST on [::]:{rest_port}" if rest_port is not None else ""
    return (f"{MODEL_SERVER_BINARY} is on PATH, and it binds every interface (gRPC on "
            f"0.0.0.0:{port}{rest}): it has no flag for the address to bind (only --port and "
            f"--rest_api_port), so it cannot honour {asked}. Either pass --host 0.0.0.0 to run "
            f"{MODEL_SERVER_BINARY} on every interface, or --builtin to serve with the built-in "
            f"server on {host or LOOPBACK}.")


def serve_forever(model_dirs: list[str], model_name: str | None, host: str | None, port: int,
                  poll_seconds: float, builtin: bool, request_log_dir: str | None = None,
                  sampling_rate: float = 1.0, rest_port: int | None = None) -> int:
    """The `headwise serve` command: the real binary if installed and --host allows it (every
    interface), else the built-in server; host None is the default, loopback."""
    for d in model_dirs:
        if not os.path.isdir(d):
            log.error("model directory %s does not exist (run `make run` first, or pass "
                      "--model-dir outputs/serving/<model_name>)", d)
            return 2
    binary = shutil.which(MODEL_SERVER_BINARY)
    if binary and not builtin and len(model_dirs) == 1 and not request_log_dir:
        if host not in EVERY_INTERFACE:
            log.error("%s", binary_refusal(host, port, rest_port))
            return 2
        cmd = model_server_command(binary, model_dirs[0],
                                   model_name or model_name_of(model_dirs[0]), port, poll_seconds,
                                   rest_port)
        rest = f", REST on [::]:{rest_port}" if rest_port is not None else ""
        log.info("running %s: gRPC on 0.0.0.0:%d%s (every interface)", MODEL_SERVER_BINARY,
                 port, rest)
        log.info("%s", " ".join(cmd))
        return subprocess.call(cmd)
    host = host or LOOPBACK
    if binary and request_log_dir and not builtin:
        log.info("--request-log-dir: serving with the built-in server, which writes the "
                 "request log itself (%s's logging_config needs a LogCollector compiled "
                 "into the binary)", MODEL_SERVER_BINARY)
    running = start(model_dirs, model_name, host, port, poll_seconds,
                    request_log_dir=request_log_dir, sampling_rate=sampling_rate,
                    rest_port=rest_port)
    if running.request_log is not None:
        log.info("logging %.0f%% of requests to %s", 100 * sampling_rate, request_log_dir)
    for m in running.managers:
        if m.current_version is None:
            log.info("model %r: no version yet under %s; waiting for one", m.name, m.base_path)
    log.info("listening on %s (gRPC)", _address(host, running.port))
    if running.rest is not None:
        log.info("listening on %s (REST: http://%s/v1/models/<name>)",
                 _address(host, running.rest_port), _address(host, running.rest_port))
    log.info("Ctrl-C stops")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    log.info("stopping")
    running.stop()
    return 0


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
