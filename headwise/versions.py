"""Model versions as TF Serving sees them under a model base path: no serving code in here.

The server (serving/servable.py) loads the highest; the Pusher numbers the next one after it; the
DataValidationGate reads the served version's training statistics (the drift baseline).
"""

from __future__ import annotations

import os

SAVED_MODEL = "saved_model.pb"


def numeric_versions(base_path: str, fs=None) -> list[int]:
    """Version directories TF Serving would load: numeric names holding saved_model.pb,
    oldest first. Non-numeric entries (the Pusher's `.tmp-*` staging dirs) are never looked at.
    Through tf.io.gfile (or `fs`, anything with gfile's listdir/isdir/exists), so a gs:// model
    base path (the gate on Kubeflow) works too."""
    if fs is None:
        import tensorflow as tf

        fs = tf.io.gfile
    if not base_path or not fs.isdir(base_path):
        return []
    names = (n.rstrip("/") for n in fs.listdir(base_path))
    return sorted(int(n) for n in names if n.isdigit()
                  and fs.exists(os.path.join(base_path, n, SAVED_MODEL)))
