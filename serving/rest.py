"""TF Serving's REST API (`tensorflow_model_server --rest_api_port`) over the same `DataPlane`
as gRPC: the HTTP server (tensorflow_serving/model_servers/http_server.cc: only /v1/ paths are
handled, anything else is libevent's 404 page). What a request means is serving.rest_api
(http_rest_api_handler.cc); the JSON is serving.json_tensor (json_tensor.cc).

Known difference: request bodies must carry Content-Length (no chunked uploads).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.dataplane import DataPlane
from serving.rest_api import RestApi

log = logging.getLogger("headwise.serving.rest")

DEFAULT_REST_PORT = 8501
# http_rest_api_handler.cc's kPathRegex decides which requests the handler sees at all.
HANDLED_PATH = re.compile(r"(?i)/v1/.*")
# libevent's evhttp_send_error body: what TF Serving's HTTP server answers outside /v1/.
NOT_FOUND_BODY = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                  b"<H1>Not Found</H1>\n</BODY></HTML>\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's evhttp server
    # Headers and body go out in two writes; with Nagle's algorithm on, a keep-alive client's
    # delayed ACK holds the second for ~40 ms (measured: 48 ms p50 for one example).
    disable_nagle_algorithm = True
    server_version = "headwise"
    api: RestApi  # set on the subclass made by create_rest_server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = urllib.parse.urlsplit(self.path).path
        if not HANDLED_PATH.fullmatch(path):
            self._reply(404, NOT_FOUND_BODY, "text/html")
            return
        status, text = self.api.handle(self.command, path, body)
        self._reply(status, text.encode("utf-8", "surrogateescape"), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s " + format, self.address_string(), *args)


class RestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, api: RestApi):
        if ":" in host:
            self.address_family = socket.AF_INET6
        handler = type("Handler", (_Handler,), {"api": api})
        super().__init__((host, port), handler)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self.thread = threading.Thread(target=self.serve_forever, name="rest", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def create_rest_server(plane: DataPlane, host: str, port: int = DEFAULT_REST_PORT) -> RestServer:
    """An unstarted REST server bound to host:port (0: a free port, `.port` says which)."""
    try:
        return RestServer(host, port, RestApi(plane))
    except OSError as e:
        raise OSError(f"cannot bind {host}:{port} for REST ({e.strerror or e})") from None
