"""A quiet console on a CPU machine, without losing anything that a log file should keep.

Importing TensorFlow 2.16 prints, straight to file descriptor 2 and before any Python logging is
set up, `Unable to register cuFFT/cuDNN/cuBLAS factory` errors and GPU/TensorRT notices. A new
user reads them as failures. Every entry point calls `setup()` first: it sets TensorFlow's
environment, imports TensorFlow with file descriptor 2 captured, and keeps what was printed
(`import_log()`) so that `headwise run` can write it at the top of its log file. Set
HEADWISE_VERBOSE=1 to see everything on the console instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings

_captured: str = ""
_done = False


def _environment() -> None:
    # Keras 2 for TFX 1.16 (TF picks its Keras the first time tf.keras is used), and no C++
    # INFO/WARNING lines (oneDNN, cuda drivers, TF-TRT).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Third-party noise on every run: google-cloud libraries that TFX imports warn about their
    # own versions; TFMA's PR-AUC divides by zero on empty thresholds (its result is still right).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            module=r"tensorflow_model_analysis\.")


@contextlib.contextmanager
def _capture_fd2():
    """Everything written to file descriptor 2 (C++ and Python alike) goes to a temporary file;
    yields a callable that returns what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text.append(tmp.read().decode("utf-8", "replace"))


def setup() -> None:
    """Set TensorFlow's environment and import it quietly; idempotent."""
    global _captured, _done
    _environment()
    if _done:
        return
    _done = True
    if os.environ.get("HEADWISE_VERBOSE"):
        return
    if "tensorflow" not in sys.modules:
        imported = False
        try:
            with _capture_fd2() as read:
                import tensorflow  # noqa: F401 - the import is the point
            imported = True
        finally:
            _captured = read()
            if not imported:  # a broken install: what it printed is the diagnosis
                sys.stderr.write(_captured)
    import tensorflow as tf

    # TensorFlow's own Python deprecation notices ("WARNING:tensorflow:From ... is deprecated"),
    # raised by TFDV/TFT internals, not by anything a user wrote: errors only. `headwise run`
    # lowers this again for its log file while it holds the console at ERROR (local_runner).
    tf.get_logger().setLevel(logging.ERROR)
    # The same for what TensorFlow says through absl's logger: loading a model whose columns
    # have spaces or punctuation in their names warns, per input, that "`class type_values` is
    # not a valid tf.function parameter name. Sanitizing to ..." (TF renames them itself).
    # `headwise run` holds absl at INFO for its log file and restores this after.
    logging.getLogger("absl").setLevel(logging.ERROR)


def import_log() -> str:
    """What importing TensorFlow printed (empty when nothing was captured)."""
    return _captured
