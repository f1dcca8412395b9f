"""Loaded model versions and the policy that swaps them, without any gRPC in it.

A `Servable` is one SavedModel version loaded the way TF Serving loads it: the MetaGraph tagged
`serve` imported into its own graph and session, its SignatureDefs read from saved_model.pb, and
requests run as `session.run(feeds, fetches)` on the tensors those SignatureDefs name. So the
signatures, method names, shared inputs and runtime errors are exactly those TF Serving sees.

`VersionManager` follows TF Serving's default policy for one model: watch the base directory,
serve the highest numeric version, and on a new one load it and warm it up (its TF Serving
warm-up file replayed, as saved_model_warmup_util.cc does; a request there that fails fails the
load) *before* swapping, then retire the old one once its in-flight requests have finished
(TF Serving's "availability preserving" policy). Non-numeric entries (the Pusher's `.tmp-*`
staging dirs) are never looked at; a version that fails to load is reported and the previous one
keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from headwise import contract
from headwise.versions import served_versions

log = logging.getLogger("headwise.serving")

SERVE_TAG = "serve"
INIT_OP_SIGNATURE = "__saved_model_init_op"

# tensorflow_serving.apis.get_model_status_pb2.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50


class Servable:
    """One loaded version. `run` is thread-safe (TensorFlow sessions are)."""

    def __init__(self, name: str, version: int, path: str):
        import tensorflow as tf
        from tensorflow.python.util import deprecation

        self.name, self.version, self.path = name, version, path
        self._graph = tf.Graph()
        # The TF1 loader is what TF Serving's C++ loader does; its deprecation notice is noise.
        with self._graph.as_default(), deprecation.silence():
            self._session = tf.compat.v1.Session(graph=self._graph)
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
        self.signature_defs = dict(meta_graph.signature_def)
        self._outputs: dict[str, object] = {}  # tensor name -> TF_Output
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)

    def run(self, feeds: dict[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Feed tensors by graph name, return the fetched tensors' values in order.

        This is `Session.run` minus its per-call Python bookkeeping (fetch handlers, feed
        re-validation): the graph is final after loading, so the C API is called directly with
        the resolved tensors, which takes ~0.3 ms off every request."""
        try:
            feed_dict = {self._output(n): v for n, v in feeds.items()}
            fetch_list = [self._output(n) for n in fetches]
        except (KeyError, ValueError) as e:
            raise ValueError(f"no tensor named {e} in the model's graph") from None
        return self._session._call_tf_sessionrun(None, feed_dict, fetch_list, [], None)

    def _output(self, name: str):
        out = self._outputs.get(name)
        if out is None:
            with self._lock:
                out = self._graph.get_tensor_by_name(name)._as_tf_output()
                self._outputs[name] = out
        return out

    def warm_up(self) -> None:
        """Run every signature that reads serialized examples once, on one tf.Example with every
        feature missing, so that the first request pays no graph-setup cost (used when the
        version has no TF Serving warm-up file). An image feature cannot be missing (decoding
        no bytes fails), so the example gives each image feature the model's description names
        (assets.extra/headwise.json) a one-pixel PNG."""
        by_input: dict[str, list[str]] = {}
        for name, sig in self.signature_defs.items():
            if name == INIT_OP_SIGNATURE or len(sig.inputs) != 1:
                continue
            ((key, info),) = sig.inputs.items()
            if key not in (contract.SERVING_INPUT, contract.CLASSIFY_INPUTS):
                continue  # plain features (serving_default), not serialized examples
            by_input.setdefault(info.name, []).extend(t.name for t in sig.outputs.values())
        example = self._warm_up_example()
        for input_name, outputs in by_input.items():
            self.run({input_name: np.array([example], dtype=object)}, sorted(set(outputs)))

    def _warm_up_example(self) -> bytes:
        import tensorflow as tf

        from headwise import examples as examples_lib

        try:
            images = examples_lib.read_model_info(self.path).get("images") or {}
        except (OSError, ValueError, AttributeError):
            images = {}  # not a headwise model, or one without image features
        if not images:
            return b""
        pixel = tf.io.encode_png(np.zeros((1, 1, 3), np.uint8)).numpy()
        return examples_lib.example({name: pixel for name in images},
                                    dict.fromkeys(images, "string"))

    # In-flight accounting: a retired version is closed only once nobody is using it.
    def __enter__(self) -> Servable:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        with self._lock:
            self._inflight += 1

    def release(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def close_when_idle(self, timeout: float = 60.0) -> None:
        with self._lock:
            self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)
        self._session.close()


@dataclass
class VersionState:
    version: int
    state: int
    error: str = ""  # non-empty: the load failed with this message


@dataclass
class _Failed:
    mtime: float
    message: str


class NotFound(LookupError):
    pass


def not_found_message(name: str, version: int | None) -> str:
    """TF Serving's words for a model or version it does not serve."""
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return f"Servable not found for request: {request}"


@dataclass
class VersionManager:
    """Serves the latest version under `base_path` as model `name`; `poll()` finds new ones."""

    name: str
    base_path: str
    poll_seconds: float = 1.0
    _current: Servable | None = None
    _states: dict[int, VersionState] = field(default_factory=dict)
    _failed: dict[int, _Failed] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # run on a version after it loads and before it serves (the server passes the replay of
    # TF Serving's warm-up file, serving/warmup.py): the number of requests it ran (0: no
    # file); a failure fails the load
    warm_up: Callable[[Servable], int] | None = None

    def poll(self) -> None:
        """Load the highest version if it is not the one being served: of the versions the
        base path's TF Serving model config names, when the Pusher wrote one, else of every
        complete numeric version (headwise.versions.served_versions)."""
        versions = served_versions(self.base_path)
        if not versions:
            if self._current is None:
                log.warning("no versions of model %r found under %s", self.name, self.base_path)
            return
        latest = versions[-1]
        current = self._current
        if current is not None and current.version == latest:
            return
        path = os.path.join(self.base_path, str(latest))
        mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
        failed = self._failed.get(latest)
        if failed is not None and failed.mtime == mtime:
            return  # already reported; tried again only if the directory changes
        self._set_state(latest, LOADING)
        try:
            servable = Servable(self.name, latest, path)
            if not (self.warm_up is not None and self.warm_up(servable)):
                self._first_run(servable)
        except Exception as e:  # noqa: BLE001 - any load failure keeps the old version serving
            message = f"{type(e).__name__}: {e}"
            log.error("model %r version %d failed to load, still serving %s: %s", self.name,
                      latest, current.version if current else "nothing", message)
            self._failed[latest] = _Failed(mtime, message)
            self._set_state(latest, END, message)
            return
        with self._lock:
            self._current = servable
            self._states[latest] = VersionState(latest, AVAILABLE)
        log.info("model %r: serving version %d from %s", self.name, latest, path)
        if current is not None:
            self._set_state(current.version, UNLOADING)
            threading.Thread(target=self._retire, args=(current,), daemon=True).start()

    def _first_run(self, servable: Servable) -> None:
        """Without a warm-up file, run the graph once anyway (Servable.warm_up), so the first
        request pays no graph-setup cost. Best effort: TF Serving serves a model it could load
        whatever such a run would say (a model with a required feature fails on the empty
        example and is served)."""
        try:
            servable.warm_up()
        except Exception as e:  # noqa: BLE001 - the version still loads, as in TF Serving
            log.info("model %r version %d: no warm-up file, and a run on an empty example "
                     "failed (%s: %s); serving it", self.name, servable.version,
                     type(e).__name__, str(e).splitlines()[0][:200])

    def _retire(self, servable: Servable) -> None:
        servable.close_when_idle()
        self._set_state(servable.version, END)
        log.info("model %r: unloaded version %d", self.name, servable.version)

    def _set_state(self, version: int, state: int, error: str = "") -> None:
        with self._lock:
            self._states[version] = VersionState(version, state, error)

    def servable(self, name: str, version: int | None = None) -> Servable:
        """The servable for a request (latest when version is None), already acquired: use it as
        `with manager.servable(...) as s:` so it is released (and may be retired) afterwards.
        Raises NotFound with TF Serving's message when there is none."""
        with self._lock:
            current = self._current
            if name != self.name or current is None or (
                    version is not None and version != current.version):
                raise NotFound(not_found_message(name, version))
            current.acquire()
        return current

    def states(self) -> list[VersionState]:
        with self._lock:
            return sorted(self._states.values(), key=lambda s: s.version, reverse=True)

    @property
    def current_version(self) -> int | None:
        current = self._current
        return None if current is None else current.version

    def start(self) -> None:
        """Load what is there now, then poll in the background every poll_seconds."""
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the poller must outlive a bad directory
                log.exception("model %r: polling %s failed", self.name, self.base_path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self._current
        if current is not None:
            current.close_when_idle(timeout=5)
