"""Model versions as TF Serving sees them under a model base path: no serving code in here.

The server (serving/servable.py) loads the highest; the Pusher numbers the next one after it; the
DataValidationGate reads the served version's training statistics (the drift baseline).
"""

from __future__ import annotations

import os

SAVED_MODEL = "saved_model.pb"


def numeric_versions(base_path: str) -> list[int]:
    """Version directories TF Serving would consider: numeric names holding saved_model.pb,
    oldest first. Non-numeric entries (the Pusher's `.tmp-*` staging dirs) are never looked at.
    Through tf.io.gfile, so a gs:// model base path (the gate on Kubeflow) works too."""
    import tensorflow as tf

    if not base_path or not tf.io.gfile.isdir(base_path):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(base_path))
    return sorted(int(n) for n in names if n.isdigit()
                  and tf.io.gfile.exists(os.path.join(base_path, n, SAVED_MODEL)))
