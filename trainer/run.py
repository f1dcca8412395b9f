"""TFX Trainer entry point (`run_fn`) and the SavedModel's signatures.

Signatures of the exported model:
  serving_default(examples: string[batch])  serialized tf.Examples *without* label columns
      -> {<head name>: float32[batch, units]} (probability for binary heads, class
         probabilities for multiclass heads, the value in label units for regression heads)
  transform_features(examples: string[batch])  serialized tf.Examples *with* labels
      -> every transformed column (features, `label__<head>`, `weight__<head>`); the Evaluator
         reads each head's label and missing-label weight from here.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from headwise import config as config_lib
from headwise import examples as examples_lib
from trainer import heads as heads_lib
from trainer import model as model_lib

SERVING_INPUT = "examples"


def model_features(cfg: config_lib.PipelineConfig, transformed: dict) -> dict[str, tf.Tensor]:
    """Transformed columns [batch] -> the model's inputs [batch, 1]."""
    return {f.name: tf.reshape(transformed[f.name], [-1, 1]) for f in cfg.features}


def input_fn(file_pattern, data_accessor, tft_output: tft.TFTransformOutput,
             cfg: config_lib.PipelineConfig, batch_size: int) -> tf.data.Dataset:
    """Batches of (features, {head: label}, {head: weight}); repeats forever, shuffled."""
    ds = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size),
        tft_output.transformed_metadata.schema)

    def split(t):
        labels = {h.name: tf.reshape(t[heads_lib.label_key(h.name)], [-1, 1]) for h in cfg.heads}
        weights = {h.name: t[heads_lib.weight_key(h.name)] for h in cfg.heads}
        return model_features(cfg, t), labels, weights

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_signatures(model: keras.Model, cfg: config_lib.PipelineConfig,
                    tft_output: tft.TFTransformOutput) -> dict:
    model.tft_layer = tft_output.transform_features_layer()  # tracked: its assets are saved
    raw_spec = tft_output.raw_feature_spec()
    feature_spec = {f.name: raw_spec[f.name] for f in cfg.features}
    eval_spec = {**feature_spec, **{c: raw_spec[c] for c in cfg.label_columns}}
    examples = tf.TensorSpec([None], tf.string, name=SERVING_INPUT)

    @tf.function(input_signature=[examples])
    def serve(examples):
        raw = tf.io.parse_example(examples, feature_spec)
        outputs = model(model_features(cfg, model.tft_layer(raw)), training=False)
        return {name: tf.identity(outputs[name], name=name) for name in outputs}

    @tf.function(input_signature=[examples])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, eval_spec))

    return {"serving_default": serve, "transform_features": transform_features}


class EpochSummary(keras.callbacks.Callback):
    """One readable line per epoch: the total loss, then each head's validation metrics."""

    def __init__(self, heads: list[str], epochs: int):
        super().__init__()
        self.heads, self.epochs = heads, epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}"]
        for head in self.heads:
            prefix = f"val_{head}_"
            vals = [f"{k[len(prefix):]} {v:.4g}" for k, v in logs.items()
                    if k.startswith(prefix) and not k.endswith("_loss")]
            parts.append(f"{head}: {', '.join(vals)}")
        print("  " + " | ".join(parts), flush=True)


def model_info(cfg: config_lib.PipelineConfig, tft_output: tft.TFTransformOutput) -> dict:
    """What a client needs to query the model: input dtypes and, per head, its outputs."""
    raw_spec = tft_output.raw_feature_spec()
    return {
        "pipeline": cfg.name,
        "signature": "serving_default",
        "input": SERVING_INPUT,
        "features": {f.name: raw_spec[f.name].dtype.name for f in cfg.features},
        "heads": [{"name": h.name, "task": h.task, "auxiliary": h.auxiliary,
                   **({"classes": list(h.class_names)} if h.task == "multiclass" else {})}
                  for h in cfg.heads],
    }


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    cfg = config_lib.from_dict(fn_args.custom_config["heads_config"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    batch = cfg.trainer.batch_size
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tft_output, cfg, batch)
    evals = input_fn(fn_args.eval_files, fn_args.data_accessor, tft_output, cfg, batch)

    stats = model_lib.regression_stats(cfg, tft_output)
    for head, s in stats.items():
        logging.info("head %s: label mean %.4g, std %.4g (from Transform)", head, s["mean"],
                     s["std"])
    model = model_lib.build_model(cfg, model_lib.feature_cardinalities(cfg, tft_output), stats)

    # Several epochs over the step budget give a learning curve in the history and TensorBoard.
    epochs = max(1, min(10, fn_args.train_steps // 50))
    model.fit(
        train, epochs=epochs, steps_per_epoch=max(1, fn_args.train_steps // epochs),
        validation_data=evals, validation_steps=max(1, fn_args.eval_steps), verbose=0,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
                   EpochSummary([h.name for h in cfg.heads], epochs)])
    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=make_signatures(model, cfg, tft_output))
    info_path = os.path.join(fn_args.serving_model_dir, examples_lib.MODEL_INFO)
    tf.io.gfile.makedirs(os.path.dirname(info_path))
    with tf.io.gfile.GFile(info_path, "w") as fh:
        json.dump(model_info(cfg, tft_output), fh, indent=2)
    logging.info("saved the %d-head model to %s", len(cfg.heads),
                 os.path.abspath(fn_args.serving_model_dir))
