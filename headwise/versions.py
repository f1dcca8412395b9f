"""Model versions as TF Serving sees them under a model base path: no serving code in here.

The server (serving/servable.py) loads the highest; the Pusher numbers the next one after it; the
DataValidationGate reads the served version's training statistics (the drift baseline).

TF Serving's file-system source (file_system_storage_path_source.cc) aspires every child of the
base path whose name parses as a number, whatever it holds; with its default policy it loads the
highest. On an object store a version being copied is such a child from its first object on, so
the Pusher also writes `MODEL_CONFIG` into the base path: TF Serving's ModelServerConfig naming,
as a `specific` version policy, the one version that is complete. A server started with
`--model_config_file=<base>/models.config --model_config_file_poll_wait_seconds=<s>` loads a
version only once the Pusher has named it (the file is written whole, after every file of the
version). The built-in server reads the same file when it is there (`served_versions`).
"""

from __future__ import annotations

import os
import re

SAVED_MODEL = "saved_model.pb"
MODEL_CONFIG = "models.config"  # in the base path; not a number, so never taken for a version
_VERSION_LINE = re.compile(r"^\s*versions:\s*(\d+)\s*$", re.MULTILINE)


def model_config(name: str, base_path: str, versions: list[int]) -> str:
    """TF Serving's ModelServerConfig (text format) serving `versions` of the model."""
    lines = "".join(f"        versions: {v}\n" for v in versions)
    return ("model_config_list {\n  config {\n"
            f"    name: {_quoted(name)}\n    base_path: {_quoted(base_path)}\n"
            '    model_platform: "tensorflow"\n'
            "    model_version_policy {\n      specific {\n" + lines + "      }\n    }\n"
            "  }\n}\n")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def configured_versions(base_path: str, fs=None) -> list[int] | None:
    """The versions the base path's MODEL_CONFIG names (sorted), or None without one."""
    fs = fs or _gfile()
    path = os.path.join(base_path, MODEL_CONFIG)
    if not base_path or not fs.exists(path):
        return None
    if hasattr(fs, "read"):
        text = fs.read(path)
    else:
        with fs.GFile(path, "rb") as fh:
            text = fh.read()
    return sorted({int(v) for v in _VERSION_LINE.findall(text.decode("utf-8"))})


def served_versions(base_path: str, fs=None) -> list[int]:
    """The versions a server loads from the base path, oldest first: those MODEL_CONFIG names
    and that exist, when it is there; else the complete numeric versions (`numeric_versions`)."""
    fs = fs or _gfile()
    named = configured_versions(base_path, fs)
    complete = numeric_versions(base_path, fs)
    if named is None:
        return complete
    return [v for v in complete if v in named]


class LocalFs:
    """Local disk as the `fs` these functions take, without TensorFlow (which takes seconds to
    import): gfile's listdir/isdir/exists, and read."""

    listdir = staticmethod(os.listdir)
    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)

    @staticmethod
    def read(path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def numeric_versions(base_path: str, fs=None) -> list[int]:
    """Version directories TF Serving would load: numeric names holding saved_model.pb,
    oldest first. Non-numeric entries (the Pusher's `.tmp-*` staging dirs) are never looked at.
    Through tf.io.gfile (or `fs`, anything with gfile's listdir/isdir/exists), so a gs:// model
    base path (the gate on Kubeflow) works too."""
    fs = fs or _gfile()
    if not base_path or not fs.isdir(base_path):
        return []
    names = (n.rstrip("/") for n in fs.listdir(base_path))
    return sorted(int(n) for n in names if n.isdigit()
                  and fs.exists(os.path.join(base_path, n, SAVED_MODEL)))
