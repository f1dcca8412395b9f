"""A small synthetic heads config with every task (regression, binary, multiclass, multilabel),
its rows, a real tf.Transform run over them, and a trained, exported model: shared by the export
and serving tests so both exercise the trainer's own export code on seconds of work."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from headwise import config as config_lib
from tests.tft_helpers import run_transform
from trainer import export as export_lib
from trainer import heads as heads_lib
from trainer import model as model_lib

N = 120
CFG = config_lib.from_dict({
    "name": "synthetic", "data": {"csv": "unused.csv"},
    "features": {"a": "numeric", "b": "categorical", "c": {"type": "bucketized", "buckets": 4}},
    "heads": [
        {"name": "r", "label": "y_r", "task": "regression", "loss": "mse", "target": "log",
         "metrics": ["mae", "rmse", "mse"]},
        {"name": "k", "label": "y_k", "task": "binary"},
        {"name": "m", "label": "y_m", "task": "multiclass", "classes": ["p", "q"],
         "other_class": "Z", "metrics": ["accuracy", "top2_accuracy"]},
        {"name": "g", "label": "y_g", "task": "multilabel", "classes": ["u", "v", "t"],
         "metrics": ["auc", "accuracy"], "thresholds": {"auc": {"min": 0.0}}},
    ],
    "model": {"hidden_units": [8]},
})
SPEC = {"a": tf.io.VarLenFeature(tf.float32), "b": tf.io.VarLenFeature(tf.string),
        "c": tf.io.VarLenFeature(tf.float32), "y_r": tf.io.VarLenFeature(tf.float32),
        "y_k": tf.io.VarLenFeature(tf.int64), "y_m": tf.io.VarLenFeature(tf.string),
        "y_g": tf.io.VarLenFeature(tf.string)}
TAGS = ["u", "v", "u|v", "t| u", "v"]


def rows():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(N):
        a = float(rng.normal())
        rows.append({
            "a": [a] if i % 10 else [],  # every 10th feature value missing
            "b": [["x", "y", "z"][i % 3]], "c": [float(rng.uniform())],
            "y_r": [10 * a + 100] if i % 4 else [],  # every 4th label missing
            "y_k": [int(a > 0)], "y_m": [["p", "q", "w"][i % 3]],  # "w" is not a named class
            "y_g": [TAGS[i % 5]] if i % 7 else [],  # multilabel, every 7th missing
        })
    return rows


def transform(out_dir: str):
    """(rows, TFTransformOutput, transformed rows) of a real Beam run over rows()."""
    raw = rows()
    tft_output, data = run_transform(CFG, raw, SPEC, out_dir)
    return raw, tft_output, data


def train_and_export(tft_output, data: list[dict], export_dir: str, epochs: int = 2,
                     seed: int = 0, cfg=None, callbacks=None) -> dict[str, np.ndarray]:
    """Fit the multi-head model on the transformed rows, save it with the trainer's export code,
    and return the model's in-process predictions per head (what serving must reproduce).
    `cfg`: CFG with other model or trainer settings (the same features and heads);
    `callbacks`: Keras callbacks for the fit."""
    cfg = cfg or CFG
    tf.keras.utils.set_random_seed(seed)
    model = model_lib.build_model(cfg, model_lib.feature_cardinalities(cfg, tft_output),
                                  model_lib.regression_stats(cfg, tft_output))
    columns = {k: tf.constant(np.array([t[k] for t in data])) for k in data[0]}
    feats = {k: v.numpy() for k, v in export_lib.model_features(cfg, columns).items()}
    labels = {h.name: np.array([t[heads_lib.label_key(h.name)] for t in data])
              for h in cfg.heads}
    labels = {k: v[:, None] if v.ndim == 1 else v for k, v in labels.items()}
    weights = {h.name: np.array([t[heads_lib.weight_key(h.name)] for t in data], "float32")
               for h in cfg.heads}
    model.fit(feats, labels, sample_weight=weights, epochs=epochs, batch_size=16, verbose=0,
              callbacks=callbacks)
    export_lib.save(model, cfg, tft_output, export_dir)
    return model.predict(feats, verbose=0)
