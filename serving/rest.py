"""TF Serving's REST API (`tensorflow_model_server --rest_api_port`) over the same `DataPlane`
as gRPC: the HTTP server (tensorflow_serving/model_servers/http_server.cc: only /v1/ paths are
handled, anything else is libevent's 404 page). What a request means is serving.rest_api
(http_rest_api_handler.cc); the JSON is serving.json_tensor (json_tensor.cc).

The HTTP layer holds against hostile clients (tests/test_rest.py, "hostile clients"):
  * at most `max_connections` connections are served at once, each by its own thread; one more
    is answered 503 and closed at once, so threads and memory stay bounded;
  * a request (its line, headers and body; on a kept-alive connection, also the wait for it)
    must arrive within `timeout` seconds in all, however slowly it trickles: a slow client is
    cut off (408, closed) and never holds a thread longer;
  * a body needs a valid Content-Length (none on a POST: 411; not a number, or two that
    differ: 400) of at most `max_body_bytes` (413, never read); `Transfer-Encoding` (chunked
    uploads) is refused with 501. Each of these answers closes the connection, so nothing
    left of the body is read as the next request;
  * a body cut short by a client that hung up is never processed.
Known difference: TF Serving's libevent server also reads chunked request bodies.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.dataplane import DataPlane
from serving.rest_api import RestApi

log = logging.getLogger("headwise.serving.rest")

DEFAULT_REST_PORT = 8501
MAX_CONNECTIONS = 64  # served at once; TF Serving's default REST threads: 4 per core
TIMEOUT_S = 10.0  # to receive one whole request
MAX_BODY_BYTES = 64 << 20
BODY_METHODS = ("POST", "PUT", "PATCH")
# http_rest_api_handler.cc's kPathRegex decides which requests the handler sees at all.
HANDLED_PATH = re.compile(r"(?i)/v1/.*")
# libevent's evhttp_send_error body: what TF Serving's HTTP server answers outside /v1/.
NOT_FOUND_BODY = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                  b"<H1>Not Found</H1>\n</BODY></HTML>\n")


class _DeadlineReader(socket.SocketIO):
    """The connection's reading side, with one deadline for a whole request: each read waits
    only for what is left of it, so a client that trickles a byte at a time is cut off too."""

    def __init__(self, sock: socket.socket, seconds: float):
        super().__init__(sock, "rb")
        self.seconds = seconds
        self.restart()

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def readinto(self, b) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request did not arrive within {self.seconds:g}s")
        self._sock.settimeout(left)
        return super().readinto(b)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's evhttp server
    # Headers and body go out in two writes; with Nagle's algorithm on, a keep-alive client's
    # delayed ACK holds the second for ~40 ms (measured: 48 ms p50 for one example).
    disable_nagle_algorithm = True
    server_version = "headwise"
    api: RestApi  # set on the subclass made by create_rest_server
    server: RestServer

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # StreamRequestHandler sets it on the socket
        super().setup()
        self._reader = _DeadlineReader(self.connection, self.server.timeout_s)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.restart()  # the next request (or the wait for it) gets the whole time
        super().handle_one_request()

    def _serve(self) -> None:
        try:
            body = self._body()
        except TimeoutError:
            self._refuse(408, f"the request did not arrive within {self.server.timeout_s:g}s")
            return
        if body is None:
            return  # refused, or the client hung up: the connection closes
        self.connection.settimeout(self.server.timeout_s)  # for writing the answer
        path = urllib.parse.urlsplit(self.path).path
        if not HANDLED_PATH.fullmatch(path):
            self._reply(404, NOT_FOUND_BODY, "text/html")
            return
        status, text = self.api.handle(self.command, path, body)
        self._reply(status, text.encode("utf-8", "surrogateescape"), "application/json")

    def _body(self) -> bytes | None:
        """The request's body, or None after refusing it (or when the client hung up)."""
        if "Transfer-Encoding" in self.headers:
            self._refuse(501, "Transfer-Encoding is not supported (chunked request bodies): "
                         "send the body with a Content-Length header")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            if self.command in BODY_METHODS:
                self._refuse(411, f"a {self.command} request needs a Content-Length header")
                return None
            return b""
        if len(set(v.strip() for v in lengths)) > 1 or not re.fullmatch(r"[0-9]+",
                                                                      lengths[0].strip()):
            self._refuse(400, f"invalid Content-Length: {', '.join(lengths)}")
            return None
        length = int(lengths[0])
        if length > self.server.max_body_bytes:
            self._refuse(413, f"the request body ({length} bytes) is over the limit of "
                         f"{self.server.max_body_bytes} bytes")
            return None
        chunks, left = [], length
        while left:
            chunk = self.rfile.read1(min(left, 1 << 16))
            if not chunk:  # the client hung up mid-body: nothing of it is processed
                self.close_connection = True
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _refuse(self, status: int, message: str) -> None:
        """Answer in TF Serving's error shape and close: the rest of the request is unread."""
        self.close_connection = True
        body = json.dumps({"error": message}).encode()
        try:
            self.connection.settimeout(self.server.timeout_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client is gone

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
    # The kernel's queue of connections not yet accepted (socketserver's default is 5). Past it
    # a client's SYN is dropped and retried a second later, so under a flood a healthy client
    # waited a second before the server saw it; now the server accepts it and answers (503
    # past max_connections) at once (benchmarks/hostile.py, rest_slow_body).
    request_queue_size = 1024

    def __init__(self, host: str, port: int, api: RestApi, *,
                 max_connections: int = MAX_CONNECTIONS, timeout_s: float = TIMEOUT_S,
                 max_body_bytes: int = MAX_BODY_BYTES):
        if ":" in host:
            self.address_family = socket.AF_INET6
        handler = type("Handler", (_Handler,), {"api": api})
        self.api = api
        self.max_connections, self.timeout_s = max_connections, timeout_s
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((host, port), handler)
        self.thread: threading.Thread | None = None

    def process_request(self, request, client_address) -> None:
        """A thread for the connection while fewer than max_connections are served; else 503
        and close, at once (the accepting thread never waits on a client)."""
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": f"the server is serving {self.max_connections} "
                               "connections, its limit: try again"}).encode()
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

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
