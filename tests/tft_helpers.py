"""Run the real preprocessing_fn through tf.Transform (Beam DirectRunner) on in-memory rows."""

from __future__ import annotations

import functools
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from headwise.config import HEADS_CONFIG_KEY, PipelineConfig, Scope, to_json
from trainer import transform


def to_sparse(rows: list[dict], feature_spec: dict) -> dict[str, tf.SparseTensor]:
    """Instance dicts of lists -> a batch of SparseTensors [len(rows), <=1], as parsed."""
    out = {}
    for name, spec in feature_spec.items():
        idx = [[i, 0] for i, r in enumerate(rows) if r[name]]
        vals = [r[name][0] for r in rows if r[name]]
        out[name] = tf.SparseTensor(
            tf.constant(idx or np.zeros((0, 2)), tf.int64), tf.constant(vals, spec.dtype),
            [len(rows), 1])
    return out


def run_transform(cfg: PipelineConfig, rows: list[dict], feature_spec: dict,
                  out_dir: str) -> tuple[tft.TFTransformOutput, list[dict]]:
    """Analyze `rows` with Beam, write the transform graph to out_dir, and apply it to the
    rows; returns the TFTransformOutput and the transformed rows (dicts of Python scalars)."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    fn = functools.partial(transform.preprocessing_fn,
                           custom_config={HEADS_CONFIG_KEY: to_json(cfg, Scope.TRAINING)})
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        raw = p | beam.Create(rows, reshuffle=False)
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
        # The raw schema, as TFX's Transform writes it (raw_feature_spec() reads it).
        _ = metadata | tft_beam.WriteMetadata(
            os.path.join(out_dir, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline=p)
    tft_output = tft.TFTransformOutput(out_dir)
    batch = tft_output.transform_raw_features(to_sparse(rows, feature_spec))
    columns = {k: v.numpy().tolist() for k, v in batch.items()}
    return tft_output, [{k: columns[k][i] for k in columns} for i in range(len(rows))]
