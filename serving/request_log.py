"""Request logging in TF Serving's format: sampled PredictionLog records in TFRecord files.

TF Serving's `logging_config` writes each sampled request and its response as a
`tensorflow_serving.apis.PredictionLog` (classify_log, regress_log, predict_log or
multi_inference_log, plus log_metadata); BulkInferrer writes the same messages. The built-in
server writes them under `--request-log-dir`, and the pipeline's DataValidationGate reads the
examples back to compare what the served model is asked with what it was trained on (skew).

This is the writer. The file format (names, the `.tmp` rule) and the reading side are
`headwise/request_logs.py`, which the pipeline reads through without any serving code.

A file is written as `<name>.tmp` and renamed when it is closed (after `max_records` records,
`max_seconds` seconds, or on stop), so a reader never sees a half-written file; a killed server
leaves its open file as `.tmp`, which is never read. Requests are queued and written by one
background thread: a request never waits for the disk; when the queue is full, records are
dropped (counted, and said in the log) rather than slowing the server down.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from headwise import request_logs

log = logging.getLogger("headwise.serving")

_STOP = object()


class RequestLog:
    """Samples successful requests into PredictionLog TFRecord files under `log_dir`."""

    def __init__(self, log_dir: str, sampling_rate: float = 1.0, max_records: int = 10_000,
                 max_seconds: float = 60.0, queue_size: int = 10_000):
        if not 0 < sampling_rate <= 1:
            raise ValueError(f"sampling rate must be in (0, 1], got {sampling_rate}")
        self.log_dir, self.sampling_rate = log_dir, sampling_rate
        self.max_records, self.max_seconds = max_records, max_seconds
        self.written = self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._files = 0
        tf.io.gfile.makedirs(log_dir)
        self._thread = threading.Thread(target=self._write_loop, name="request-log",
                                        daemon=True)
        self._thread.start()

    def log(self, kind: str, request, response, model_spec) -> None:
        """Queue one request (kind: a PredictionLog field, e.g. "classify_log")."""
        if self.sampling_rate < 1 and random.random() >= self.sampling_rate:
            return
        try:
            self._queue.put_nowait((kind, request, response, model_spec, time.time()))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.warning("request log: the writer is behind; %d records dropped so far",
                            self.dropped)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, close the open file (renamed into place), stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _record(self, kind, request, response, model_spec, when) -> bytes:
        entry = prediction_log_pb2.PredictionLog()
        entry.log_metadata.model_spec.CopyFrom(model_spec)
        entry.log_metadata.sampling_config.sampling_rate = self.sampling_rate
        entry.log_metadata.saved_model_tags.append("serve")
        entry.log_metadata.timestamp_secs = int(when)
        body = getattr(entry, kind)
        body.request.CopyFrom(request)
        body.response.CopyFrom(response)
        return entry.SerializeToString()

    def _write_loop(self) -> None:
        writer = path = None
        opened = records = 0
        while True:
            timeout = None if writer is None else max(0.0, opened + self.max_seconds
                                                      - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None  # the open file is old enough: close it below
            record = None
            if item is not None and item is not _STOP:
                try:
                    record = self._record(*item)
                except Exception:  # noqa: BLE001 - one bad record must not stop logging
                    self.dropped += 1
                    log.exception("request log: cannot log a %s", item[0])
            try:
                if record is not None:
                    if writer is None:
                        path = self._new_path()
                        writer = tf.io.TFRecordWriter(path + request_logs.TMP_SUFFIX)
                        opened, records = time.monotonic(), 0
                    writer.write(record)
                    records += 1
                    self.written += 1
                full = records >= self.max_records or (
                    time.monotonic() - opened >= self.max_seconds)
                if writer is not None and (item is None or item is _STOP or full):
                    writer.close()
                    writer = None
                    tf.io.gfile.rename(path + request_logs.TMP_SUFFIX, path, overwrite=True)
            except Exception:  # noqa: BLE001 - a full disk must not stop the server or logging
                self.dropped += record is not None
                writer = None  # give the file up (it stays .tmp, never read); the next opens anew
                log.exception("request log: cannot write to %s", self.log_dir)
            if item is _STOP:
                return

    def _new_path(self) -> str:
        self._files += 1
        return os.path.join(self.log_dir, request_logs.file_name(
            time.time(), socket.gethostname(), os.getpid(), self._files))
